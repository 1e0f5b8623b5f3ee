"""Fully connected layers over the last dimension."""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, numel, register


class LinearAttrs(Attrs):
    out: int
    bias: bool = True


@register
class Linear(Op):
    """y = x Wᵀ + b over the last dim. shape: [..., Cin] → [..., out].

    flops: 2 · numel(out) · Cin (FlopCounterMode's addmm/mm); other_flops: numel(out) for the bias.
    """
    name = "linear"
    Attrs = LinearAttrs
    positional = ("out", "bias")

    def infer(self, a, ins):
        x = ins[0]
        if len(x) < 2:
            raise ShapeError(f"linear expects at least a rank-2 input, got shape {list(x)}",
                             hint="flatten first: `-> flatten -> linear(...)`")
        if a.out <= 0:
            raise ShapeError(f"linear needs out > 0, got {a.out}")
        return (*x[:-1], a.out)

    def params(self, a, ins):
        p = {"weight": (a.out, ins[0][-1])}
        if a.bias:
            p["bias"] = (a.out,)
        return p

    def flops(self, a, ins, out):
        return 2 * numel(out) * ins[0][-1]

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def build(self, a, ins):
        from torch import nn
        return nn.Linear(ins[0][-1], a.out, a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
