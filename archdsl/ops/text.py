"""Sequence-model pieces around a shared embedding table (Vaswani et al. 2017, §3.4-3.5):
`lookup` reads rows of a table given as a tensor input (a `param`), so one table can serve the
encoder, the decoder and the pre-softmax projection; `sinusoid_pos` is the fixed 1-d sinusoidal
position table."""
from __future__ import annotations

import math

from archdsl.ops.base import NoAttrs, Op, ShapeError, numel, register


def lookup_rows(ids, table):
    import torch.nn.functional as F
    return F.embedding(ids, table)


def sinusoid_table(x):
    """PE[pos, 2i] = sin(pos / 10000^(2i/D)), PE[pos, 2i+1] = cos(pos / 10000^(2i/D)): [1, L, D]."""
    import torch
    length, d = x.shape[1], x.shape[2]
    pos = torch.arange(length, device=x.device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d, 2, device=x.device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=x.device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.unsqueeze(0).to(x.dtype)


@register
class Lookup(Op):
    """Rows of a table: inputs ids [...] (int64, in [0, V)) and table [V, D] → [..., D]
    (F.embedding with the table as an input: a shared, tied embedding). other_flops: 0 (a gather)."""
    name = "lookup"
    n_inputs = 2

    def infer(self, a, ins):
        ids, table = ins
        if len(table) != 2:
            raise ShapeError(f"lookup needs a table [V, D], got {list(table)}")
        return (*ids, table[1])

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        return fx.call(lookup_rows, *args)


@register
class SinusoidPos(Op):
    """The fixed sinusoidal position table of "Attention Is All You Need" (§3.5) for tokens
    x [B, L, D] → [1, L, D] (add it: `x + sinusoid_pos(x)`); D must be even. No parameters or
    buffers (computed from L and D). other_flops: 2 · L · D (an exp or product and a sin/cos per entry)."""
    name = "sinusoid_pos"
    Attrs = NoAttrs

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 3 or x[2] % 2:
            raise ShapeError(f"sinusoid_pos expects tokens [B, L, D] with D even, got {list(x)}")
        return (1, x[1], x[2])

    def other_flops(self, a, ins, out):
        return 2 * numel(out)

    def emit(self, a, ins, fx, args):
        return fx.call(sinusoid_table, args[0])
