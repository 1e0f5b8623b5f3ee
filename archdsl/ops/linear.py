"""Fully connected layers over the last dimension."""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, numel, register


def linear_shape(name: str, out: int, x: tuple) -> tuple:
    """[..., Cin] → [..., out]: the shape rule of every linear-like op called `name`."""
    if len(x) < 2:
        raise ShapeError(f"{name} expects at least a rank-2 input, got shape {list(x)}",
                         hint=f"flatten first: `-> flatten -> {name}(...)`")
    if out <= 0:
        raise ShapeError(f"{name} needs out > 0, got {out}")
    return (*x[:-1], out)


def linear_params(out: int, in_features: int, bias: bool) -> dict:
    """weight [out, in] (and bias [out]) of a linear layer."""
    return {"weight": (out, in_features), **({"bias": (out,)} if bias else {})}


def linear_flops(in_features: int, out) -> int:
    """2 · numel(out) · in: FlopCounterMode's count for addmm/mm over the last dim."""
    return 2 * numel(out) * in_features


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
        return linear_shape(self.name, a.out, ins[0])

    def params(self, a, ins):
        return linear_params(a.out, ins[0][-1], a.bias)

    def flops(self, a, ins, out):
        return linear_flops(ins[0][-1], out)

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def build(self, a, ins):
        from torch import nn
        return nn.Linear(ins[0][-1], a.out, a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
