"""Pointwise activations. shape: unchanged. other_flops: one per element (numel)."""
from __future__ import annotations

from typing import Literal

from archdsl.ops.base import Attrs, NoAttrs, Op, register


class _Pointwise(Op):
    fn_name: str = ""

    def infer(self, a, ins):
        return ins[0]

    def _fn(self):
        import torch.nn.functional as F
        return getattr(F, self.fn_name)

    def emit(self, a, ins, fx, args):
        return fx.call(self._fn(), args[0], **self._kwargs(a))

    def _kwargs(self, a) -> dict:
        return {}


def _simple(op_name: str, fn: str, doc: str) -> type[Op]:
    cls = type(op_name.title().replace("_", ""), (_Pointwise,),
               {"name": op_name, "fn_name": fn, "Attrs": NoAttrs, "__doc__": doc})
    return register(cls)


_simple("relu", "relu", "max(x, 0)")
_simple("relu6", "relu6", "min(max(x, 0), 6)")
_simple("silu", "silu", "x · sigmoid(x) (swish)")
_simple("sigmoid", "sigmoid", "1 / (1 + e^-x)")
_simple("tanh", "tanh", "tanh(x)")
_simple("hardswish", "hardswish", "x · relu6(x + 3) / 6")
_simple("hardsigmoid", "hardsigmoid", "relu6(x + 3) / 6")


class GeluAttrs(Attrs):
    approximate: Literal["none", "tanh"] = "none"


@register
class Gelu(_Pointwise):
    """x · Φ(x); approximate='tanh' for the tanh form."""
    name = "gelu"
    fn_name = "gelu"
    Attrs = GeluAttrs
    positional = ("approximate",)

    def _kwargs(self, a):
        return {"approximate": a.approximate} if a.approximate != "none" else {}


class LeakyAttrs(Attrs):
    negative_slope: float = 0.01


@register
class LeakyRelu(_Pointwise):
    """max(x, 0) + negative_slope · min(x, 0)."""
    name = "leaky_relu"
    fn_name = "leaky_relu"
    Attrs = LeakyAttrs
    positional = ("negative_slope",)

    def _kwargs(self, a):
        return {"negative_slope": a.negative_slope}


@register
class Identity(Op):
    """Returns its input. other_flops: 0."""
    name = "identity"

    def infer(self, a, ins):
        return ins[0]

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        return args[0]
