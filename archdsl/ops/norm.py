"""Normalisation: batch norm, layer norm (last dim and over channels), group norm, RMS norm and
timm's SimpleNorm (last dim and over channels).

other_flops: batch norm in eval is a per-element scale and shift (2 · numel); layer and group
norm compute mean, variance, normalise and scale-shift (5 · numel when affine, 3 without); RMS
norm squares, sums and scales (4 · numel with its learned scale, 3 without), SimpleNorm also
subtracts the mean for its variance (5 and 4).
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


class RMSAttrs(Attrs):
    eps: float = 1e-6
    affine: bool = True


class _RootMeanNorm(Op):
    """x / sqrt(m + eps) · weight along one dim (`dim`): m the mean square (RMS norm) or, with
    `centered`, the unbiased variance (timm's SimpleNorm). No shift."""
    Attrs = RMSAttrs
    positional = ("eps",)
    dim = -1
    centered = False
    ranks: set[int] | None = None

    def infer(self, a, ins):
        x = expect_rank(ins, self.ranks, self.name) if self.ranks else ins[0]
        if not x:
            raise ShapeError(f"{self.name} needs at least one dim")
        if a.eps < 0:
            raise ShapeError(f"{self.name} eps must be non-negative, got {a.eps}")
        if self.centered and x[self.dim] < 2:  # the unbiased variance of one value is NaN
            raise ShapeError(f"{self.name} needs at least 2 values along its dim, got shape {list(x)}",
                             hint="an RMS norm (no mean subtracted) works on one")
        return x

    def params(self, a, ins):
        return {"weight": (ins[0][self.dim],)} if a.affine else {}

    def other_flops(self, a, ins, out):
        return (3 + int(a.affine) + int(self.centered)) * numel(out)

    def build(self, a, ins):
        from archdsl.nn.norm import RootMeanNorm
        return recipe(RootMeanNorm, ins[0][self.dim], eps=a.eps, affine=a.affine, dim=self.dim,
                      centered=self.centered)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


@register
class RmsNorm(_RootMeanNorm):
    """RMS norm over the last dim (Zhang & Sennrich 2019; torch's nn.RMSNorm, timm's RmsNorm):
    x / sqrt(mean(x²) + eps) · weight. keys: weight [C] (affine)."""
    name = "rms_norm"


@register
class RmsNorm2d(_RootMeanNorm):
    """RMS norm over the channels of [B, C, H, W] (timm's RmsNorm2d). keys: weight [C] (affine)."""
    name = "rms_norm2d"
    dim = 1
    ranks = {4}


@register
class SimpleNorm(_RootMeanNorm):
    """timm's SimpleNorm over the last dim: x / sqrt(var(x) + eps) · weight, var unbiased — a
    layer norm that divides by the spread but keeps the mean, and has no shift. The dim needs
    at least 2 values. keys: weight [C] (affine)."""
    name = "simple_norm"
    centered = True


@register
class SimpleNorm2d(_RootMeanNorm):
    """timm's SimpleNorm2d: SimpleNorm over the channels of [B, C, H, W] (C ≥ 2). keys: weight
    [C] (affine)."""
    name = "simple_norm2d"
    dim = 1
    centered = True
    ranks = {4}
