"""Normalisation: batch norm, layer norm (last dim and over channels), group norm.

other_flops: batch norm in eval is a per-element scale and shift (2 · numel); layer and group
norm compute mean, variance, normalise and scale-shift (5 · numel when affine, 3 without).
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, numel, recipe, register


class BNAttrs(Attrs):
    eps: float = 1e-5
    momentum: float = 0.1
    affine: bool = True
    bias: bool = True


@register
class BatchNorm(Op):
    """Batch norm over dim 1 of [B, C], [B, C, L] or [B, C, H, W]. `affine`: a learned scale
    `weight` and shift `bias`; `bias=false` keeps the scale only (TensorFlow's center=False,
    SimCLR's last projection layer)."""
    name = "batch_norm"
    aliases = ("bn",)
    Attrs = BNAttrs
    positional = ("eps", "momentum")

    def infer(self, a, ins):
        if a.eps < 0:
            raise ShapeError(f"batch_norm eps must be non-negative, got {a.eps}")
        return expect_rank(ins, {2, 3, 4}, "batch_norm")

    def params(self, a, ins):
        c = ins[0][1]
        return ({"weight": (c,), **({"bias": (c,)} if a.bias else {})}) if a.affine else {}

    def buffers(self, a, ins):
        c = ins[0][1]
        return {"running_mean": (c,), "running_var": (c,)}

    def other_flops(self, a, ins, out):
        return 2 * numel(out)

    def train_problem(self, a, ins):
        per_channel = numel(ins[0]) // ins[0][1]
        if per_channel < 2:  # torch refuses it: no variance to normalise by
            return f"batch norm sees {per_channel} value per channel (batch × spatial size) in training"
        return None

    def build(self, a, ins):
        from torch import nn

        from archdsl.nn.norm import without_bias
        cls = nn.BatchNorm2d if len(ins[0]) == 4 else nn.BatchNorm1d
        bn = recipe(cls, ins[0][1], eps=a.eps, momentum=a.momentum, affine=a.affine)
        return recipe(without_bias, bn) if a.affine and not a.bias else bn

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class LNAttrs(Attrs):
    eps: float = 1e-5
    affine: bool = True
    bias: bool = True


def _ln_cost(a, out) -> int:
    return (5 if a.affine else 3) * numel(out)


@register
class LayerNorm(Op):
    """Layer norm over the last dim: [..., C] → [..., C]."""
    name = "layer_norm"
    aliases = ("ln",)
    Attrs = LNAttrs
    positional = ("eps",)

    def infer(self, a, ins):
        if len(ins[0]) < 1:
            raise ShapeError("layer_norm needs at least one dim")
        return ins[0]

    def params(self, a, ins):
        c = ins[0][-1]
        if not a.affine:
            return {}
        return {"weight": (c,), "bias": (c,)} if a.bias else {"weight": (c,)}

    def other_flops(self, a, ins, out):
        return _ln_cost(a, out)

    def build(self, a, ins):
        from torch import nn
        return recipe(nn.LayerNorm, ins[0][-1], eps=a.eps, elementwise_affine=a.affine, bias=a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


@register
class LayerNorm2d(Op):
    """Layer norm over the channels of [B, C, H, W] (as timm's LayerNorm2d: permute to channels
    last, normalise the last dim, permute back)."""
    name = "layer_norm2d"
    aliases = ("ln2d",)
    Attrs = LNAttrs
    positional = ("eps",)

    def infer(self, a, ins):
        return expect_rank(ins, {4}, "layer_norm2d")

    def params(self, a, ins):
        return LayerNorm.params(self, a, ((*ins[0][:1], *ins[0][2:], ins[0][1]),))

    def other_flops(self, a, ins, out):
        return _ln_cost(a, out)

    def build(self, a, ins):
        from torch import nn
        return recipe(nn.LayerNorm, ins[0][1], eps=a.eps, elementwise_affine=a.affine, bias=a.bias)

    def emit(self, a, ins, fx, args):
        x = fx.method("permute", args[0], 0, 2, 3, 1)
        return fx.method("permute", fx.module(x), 0, 3, 1, 2)


class GNAttrs(Attrs):
    groups: int | None = None
    group_size: int | None = None
    eps: float = 1e-5
    affine: bool = True


def _groups(a, c: int) -> int:
    """The number of groups: `groups`, or C / `group_size` (timm's GroupNormAct(group_size=…))."""
    if (a.groups is None) == (a.group_size is None):
        raise ShapeError("group_norm takes exactly one of groups and group_size",
                         hint="groups=G splits the channels in G groups; group_size=S in groups of S")
    if a.group_size is not None:
        if a.group_size <= 0 or c % a.group_size:
            raise ShapeError(f"group_norm group_size={a.group_size} must divide the {c} channels")
        return c // a.group_size
    if a.groups <= 0 or c % a.groups:
        raise ShapeError(f"group_norm groups={a.groups} must divide the {c} channels")
    return a.groups


@register
class GroupNorm(Op):
    """Group norm over dim 1 of [B, C, ...] with `groups` groups, or groups of `group_size`
    channels (either must divide C)."""
    name = "group_norm"
    aliases = ("gn",)
    Attrs = GNAttrs
    positional = ("groups", "eps")

    def infer(self, a, ins):
        x = ins[0]
        if len(x) < 2:
            raise ShapeError(f"group_norm expects [B, C, ...], got {list(x)}")
        g = _groups(a, x[1])
        if x[0] * (x[1] // g) * numel(x[2:]) == 1:  # torch's F.group_norm refuses this
            raise ShapeError(f"group_norm needs more than one value per group, got shape {list(x)} "
                             f"with {g} groups", hint="use fewer groups or a larger input")
        return x

    def params(self, a, ins):
        c = ins[0][1]
        return {"weight": (c,), "bias": (c,)} if a.affine else {}

    def other_flops(self, a, ins, out):
        return _ln_cost(a, out)

    def build(self, a, ins):
        from torch import nn
        return recipe(nn.GroupNorm, _groups(a, ins[0][1]), ins[0][1], eps=a.eps, affine=a.affine)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
