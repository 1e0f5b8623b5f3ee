"""Sequence pieces: the embedding table and the GRU.

Inputs of integer dtype (token ids, class labels) are declared `in y: [B] as int64`; the IR
records shapes only, so index ranges are checked by torch at run time.
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, recipe, register


class EmbeddingAttrs(Attrs):
    num: int
    dim: int


@register
class Embedding(Op):
    """A lookup table (nn.Embedding): int64 indices in [0, num) → rows of `weight`.

    keys: weight [num, dim]. shape: [...] → [..., dim].
    flops: 0. other_flops: 0 (a gather: data movement).
    """
    name = "embedding"
    Attrs = EmbeddingAttrs
    positional = ("num", "dim")

    def infer(self, a, ins):
        if a.num <= 0 or a.dim <= 0:
            raise ShapeError(f"embedding needs num > 0 and dim > 0, got num={a.num}, dim={a.dim}")
        return (*ins[0], a.dim)

    def params(self, a, ins):
        return {"weight": (a.num, a.dim)}

    def other_flops(self, a, ins, out):
        return 0

    def build(self, a, ins):
        from torch import nn
        return recipe(nn.Embedding, a.num, a.dim)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class GRUAttrs(Attrs):
    hidden: int
    layers: int = 1
    batch_first: bool = True
    bidirectional: bool = False
    bias: bool = True
    dropout: float = 0.0
    return_state: bool = False


def _gru_layer_inputs(a, features: int) -> list[int]:
    d = 2 if a.bidirectional else 1
    return [features] + [d * a.hidden] * (a.layers - 1)


@register
class GRU(Op):
    """Gated recurrent unit (Cho et al. 2014), nn.GRU: input [B, T, I] (batch_first) or
    [T, B, I], and optionally the initial state h0 [layers · D, B, hidden] (D = 2 when
    bidirectional, else 1). Output: the sequence [B, T, D · hidden] (or [T, B, D · hidden]);
    with return_state=true, the pair (sequence, h_n [layers · D, B, hidden]).

    keys: nn.GRU's weight_ih_l{k}[_reverse] [3 · hidden, I_k], weight_hh_l{k} [3 · hidden, hidden],
    bias_ih_l{k}, bias_hh_l{k} [3 · hidden] (bias=true); I_0 = I, I_k = D · hidden.
    flops: FlopCounterMode sees the CPU GRU as mm/addmm (one input projection per step and
    one hidden projection per step): Σ_k D · 2 · B · T · 3 · hidden · (I_k + hidden).
    other_flops: layers · D · B · T · hidden · (11 + 6 when bias) (gate adds, two sigmoids, tanh,
    reset product, interpolation; the bias adds).
    torch.compile(fullgraph=True) traces nn.GRU only with torch._dynamo.config.allow_rnn = True
    (a torch limitation; otherwise Dynamo breaks the graph there).
    """
    name = "gru"
    Attrs = GRUAttrs
    positional = ("hidden", "layers")
    n_inputs = None

    def _dims(self, a, x):
        if a.batch_first:
            return x[0], x[1], x[2]
        return x[1], x[0], x[2]

    def infer(self, a, ins):
        if len(ins) > 2:
            raise ShapeError(f"gru takes the sequence and optionally h0, got {len(ins)} inputs")
        x = ins[0]
        if len(x) != 3:
            raise ShapeError(f"gru expects a rank-3 sequence ([B, T, I] with batch_first), got "
                             f"shape {list(x)}")
        if a.hidden <= 0 or a.layers <= 0:
            raise ShapeError(f"gru needs hidden > 0 and layers > 0, got hidden={a.hidden}, "
                             f"layers={a.layers}")
        if not 0.0 <= a.dropout < 1.0:
            raise ShapeError(f"gru dropout must be in [0, 1), got {a.dropout}")
        b, t, _ = self._dims(a, x)
        d = 2 if a.bidirectional else 1
        state = (a.layers * d, b, a.hidden)
        if len(ins) == 2 and tuple(ins[1]) != state:
            raise ShapeError(f"gru h0 must be [layers · D, B, hidden] = {list(state)}, got {list(ins[1])}")
        seq = (b, t, d * a.hidden) if a.batch_first else (t, b, d * a.hidden)
        return (seq, state) if a.return_state else seq

    def params(self, a, ins):
        h, p = a.hidden, {}
        for k, i in enumerate(_gru_layer_inputs(a, ins[0][2])):
            for suffix in ("", "_reverse") if a.bidirectional else ("",):
                p[f"weight_ih_l{k}{suffix}"] = (3 * h, i)
                p[f"weight_hh_l{k}{suffix}"] = (3 * h, h)
                if a.bias:
                    p[f"bias_ih_l{k}{suffix}"] = (3 * h,)
                    p[f"bias_hh_l{k}{suffix}"] = (3 * h,)
        return p

    def flops(self, a, ins, out):
        b, t, f = self._dims(a, ins[0])
        d = 2 if a.bidirectional else 1
        return sum(d * 2 * b * t * 3 * a.hidden * (i + a.hidden) for i in _gru_layer_inputs(a, f))

    def other_flops(self, a, ins, out):
        b, t, _ = self._dims(a, ins[0])
        d = 2 if a.bidirectional else 1
        return a.layers * d * b * t * a.hidden * (11 + (6 if a.bias else 0))

    def build(self, a, ins):
        from torch import nn
        return recipe(nn.GRU, ins[0][2], a.hidden, a.layers, bias=a.bias, batch_first=a.batch_first,
                      dropout=a.dropout if a.layers > 1 else 0.0, bidirectional=a.bidirectional)

    def emit(self, a, ins, fx, args):
        import operator
        out = fx.module(*args)
        return out if a.return_state else fx.call(operator.getitem, out, 0)
