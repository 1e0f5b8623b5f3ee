"""Sequence-model pieces around a shared embedding table (Vaswani et al. 2017, §3.4-3.5):
`lookup` reads rows of a table given as a tensor input (a `param`), so one table can serve the
encoder, the decoder and the pre-softmax projection; `sinusoid_pos` is the fixed 1-d sinusoidal
position table."""
from __future__ import annotations

from archdsl.ops.base import NoAttrs, Op, ShapeError, numel, register


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
        from archdsl.nn.text import lookup_rows
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
        from archdsl.nn.text import sinusoid_table
        return fx.call(sinusoid_table, args[0])
