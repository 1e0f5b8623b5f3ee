"""Dropout, drop path (stochastic depth) and layer scale.

other_flops: dropout and drop path count 0 (identity at inference); layer scale one multiply
per element.
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, recipe, register


class PAttrs(Attrs):
    p: float = 0.0


class _Prob(Op):
    Attrs = PAttrs
    positional = ("p",)

    def infer(self, a, ins):
        if not 0.0 <= a.p < 1.0:
            raise ShapeError(f"{self.name} probability must be in [0, 1), got {a.p}")
        return ins[0]

    def other_flops(self, a, ins, out):
        return 0


@register
class Dropout(_Prob):
    """Elementwise dropout with probability p (identity in eval)."""
    name = "dropout"

    def build(self, a, ins):
        from torch import nn
        return recipe(nn.Dropout, a.p)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


@register
class DropPath(_Prob):
    """Drops whole samples with probability p in training (identity in eval)."""
    name = "drop_path"

    def build(self, a, ins):
        from archdsl.nn.regularization import DropPath as Module
        return recipe(Module, a.p)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class LSAttrs(Attrs):
    init: float = 1e-5


@register
class LayerScale(Op):
    """x · gamma over the last dim; parameter `gamma` [C] filled with `init`."""
    name = "layer_scale"
    Attrs = LSAttrs
    positional = ("init",)

    def infer(self, a, ins):
        return ins[0]

    def params(self, a, ins):
        return {"gamma": (ins[0][-1],)}

    def build(self, a, ins):
        from archdsl.nn.regularization import LayerScale as Module
        return recipe(Module, ins[0][-1], a.init)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
