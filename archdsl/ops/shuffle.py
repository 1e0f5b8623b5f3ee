"""Channel shuffle (ShuffleNet) and patchify (ViT/MAE). other_flops: 0 (data movement)."""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, register


class ShuffleAttrs(Attrs):
    groups: int


@register
class ChannelShuffle(Op):
    """[B, C, H, W] → same shape, channels reordered as (groups, C/groups) → (C/groups, groups)."""
    name = "channel_shuffle"
    Attrs = ShuffleAttrs
    positional = ("groups",)

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, "channel_shuffle")
        if a.groups <= 0 or c % a.groups:
            raise ShapeError(f"channel_shuffle groups={a.groups} must divide the {c} channels")
        return ins[0]

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        # Only the channel dim is reshaped: the module runs at any batch size and resolution,
        # not only at the H, W it was elaborated with.
        c = ins[0][1]
        x = fx.method("unflatten", args[0], 1, (a.groups, c // a.groups))
        x = fx.method("transpose", x, 1, 2)
        return fx.method("flatten", x, 1, 2)


class PatchAttrs(Attrs):
    patch: int


@register
class Patchify(Op):
    """[B, C, H, W] → [B, (H/p)(W/p), p·p·C] in MAE's order (row, col, then p, p, C)."""
    name = "patchify"
    Attrs = PatchAttrs
    positional = ("patch",)

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, "patchify")
        p = a.patch
        if p <= 0 or h % p or w % p:
            raise ShapeError(f"patchify({p}) needs the {h}x{w} input to divide into patches",
                             hint="resize the input or pick a patch size that divides it")
        return (b, (h // p) * (w // p), p * p * c)

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        b, c, h, w = ins[0]
        p = a.patch
        x = fx.method("reshape", args[0], -1, c, h // p, p, w // p, p)
        x = fx.method("permute", x, 0, 2, 4, 3, 5, 1)
        return fx.method("reshape", x, -1, (h // p) * (w // p), p * p * c)
