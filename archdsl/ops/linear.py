"""Fully connected layers over the last dimension."""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, numel, recipe, register


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
        return recipe(nn.Linear, ins[0][-1], a.out, a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class WNLinearAttrs(Attrs):
    out: int
    bias: bool = False
    fix_g: bool = True


@register
class WNLinear(Op):
    """Weight-normalised linear layer (Salimans & Kingma 2016): W = g · v / ‖v‖ per output row,
    as `torch.nn.utils.weight_norm(nn.Linear(...))` (DINO's `last_layer`). g starts at 1;
    `fix_g=true` keeps it there (DINO's norm_last_layer: weight_g.requires_grad = False, in the
    state_dict and the parameter count, never trained).

    keys: weight_g [out, 1], weight_v [out, Cin], bias [out] (bias=true). shape: [..., Cin] →
    [..., out]. flops: as `linear`. other_flops: the bias add, numel(out) when bias=true; the
    normalisation of W (≈ 3 · out · Cin per forward, whatever the batch) is not included.
    """
    name = "wn_linear"
    Attrs = WNLinearAttrs
    positional = ("out", "bias")

    def infer(self, a, ins):
        return linear_shape(self.name, a.out, ins[0])

    def params(self, a, ins):
        return {"weight_g": (a.out, 1), "weight_v": (a.out, ins[0][-1]), **({"bias": (a.out,)} if a.bias else {})}

    def flops(self, a, ins, out):
        return linear_flops(ins[0][-1], out)

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def build(self, a, ins):
        from archdsl.nn.linear import WeightNormLinear
        return recipe(WeightNormLinear, ins[0][-1], a.out, a.bias, a.fix_g)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
