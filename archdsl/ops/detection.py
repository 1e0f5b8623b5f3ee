"""Dense detection (RetinaNet, Lin et al. 2017): a convolution shared across pyramid levels,
the anchor grid, and the RetinaNet loss. Runtime in archdsl/nn/detection.py.

Pyramid levels are *packed*: n maps [B, C, H_i, W_i] are held as one tensor [B, C, Σ H_i·W_i]
(each level flattened row-major, levels in order: `cat([p.flatten(2) ...], dim=2)`), so one
head applied to every level — the same weights, as RetinaNet's subnets — is a chain of ops.
"""
from __future__ import annotations

from typing import Literal

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, numel, pair, recipe, register
from archdsl.ops.conv import ConvAttrs, conv_flops, conv_out, conv_padding, conv_params
from archdsl.nn.rules import level_grid


def _levels(levels) -> list[tuple[int, int]]:
    out = []
    for lv in levels:
        if not isinstance(lv, (list, tuple)) or len(lv) != 2:
            raise ShapeError(f"each level is [H, W], got {lv!r}")
        h, w = int(lv[0]), int(lv[1])
        if h <= 0 or w <= 0:
            raise ShapeError(f"level sizes must be positive, got {[h, w]}")
        out.append((h, w))
    if not out:
        raise ShapeError("level_conv needs at least one level")
    return out


class LevelConvAttrs(ConvAttrs):
    levels: list[tuple[int, int]]


@register
class LevelConv(Op):
    """A 2-d convolution with one weight applied to every pyramid level of a packed input
    (RetinaNet's class and box subnets "shared across all pyramid levels", Lin et al. 2017 §4).
    `levels` lists [H_i, W_i]; the input [B, Cin, Σ H_i·W_i] is split into the levels, each is
    convolved as `conv` would (same attributes, keys weight [out, Cin/groups, kh, kw] and bias
    [out]) and the outputs are packed again.

    shape: [B, Cin, Σ H_i·W_i] → [B, out, Σ Ho_i·Wo_i] (Ho_i, Wo_i by conv's rules).
    flops: Σ_i 2 · B · out · Ho_i · Wo_i · (Cin / groups) · kh · kw (one conv per level, as
    FlopCounterMode counts them); other_flops: the bias add, numel(out) when bias=true.
    """
    name = "level_conv"
    Attrs = LevelConvAttrs
    positional = ("out", "kernel", "stride", "pad")

    def _out_levels(self, a) -> list[tuple[int, int]]:
        (kh, kw), (sh, sw), (dh, dw) = pair(a.kernel), pair(a.stride), pair(a.dilation)
        if min(kh, kw, sh, sw, dh, dw) <= 0:
            raise ShapeError("level_conv kernel, stride and dilation must be positive")
        ph, pw = conv_padding(a)
        if min(ph, pw) < 0:
            raise ShapeError(f"level_conv padding must be non-negative, got {[ph, pw]}")
        out = []
        for h, w in _levels(a.levels):
            ho, wo = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
            if ho <= 0 or wo <= 0:
                raise ShapeError(f"level_conv kernel {kh}x{kw} is larger than the {h}x{w} level")
            out.append((ho, wo))
        return out

    def infer(self, a, ins):
        b, c, n = expect_rank(ins, {3}, "level_conv")
        if a.out <= 0 or a.groups <= 0:
            raise ShapeError(f"level_conv needs out > 0 and groups > 0, got out={a.out}, groups={a.groups}")
        if c % a.groups or a.out % a.groups:
            raise ShapeError(f"level_conv groups={a.groups} must divide input channels ({c}) and "
                             f"output channels ({a.out})")
        total = sum(h * w for h, w in _levels(a.levels))
        if total != n:
            raise ShapeError(f"level_conv levels {[list(lv) for lv in a.levels]} hold {total} positions, "
                             f"the input has {n}", hint="pack the levels with cat([p.flatten(2) ...], dim=2)")
        return (b, a.out, sum(h * w for h, w in self._out_levels(a)))

    def params(self, a, ins):
        return conv_params(a, ins[0][1])

    def flops(self, a, ins, out):
        return conv_flops(a, ins[0][1], out)

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def build(self, a, ins):
        from torch import nn
        return recipe(nn.Conv2d, ins[0][1], a.out, pair(a.kernel), pair(a.stride), conv_padding(a),
                      pair(a.dilation), a.groups, a.bias)

    def emit(self, a, ins, fx, args):
        import operator

        import torch
        levels = _levels(a.levels)
        c = ins[0][1]
        parts = fx.call(torch.split, args[0], [h * w for h, w in levels], dim=2)
        outs = []
        for i, (h, w) in enumerate(levels):
            x = fx.method("reshape", fx.call(operator.getitem, parts, i), -1, c, h, w)
            outs.append(fx.method("flatten", fx.module(x), 2))
        return fx.call(torch.cat, outs, dim=2)


class AnchorAttrs(Attrs):
    strides: list[int]
    sizes: list[list[float]]
    ratios: list[float] = [0.5, 1.0, 2.0]


@register
class AnchorGrid(Op):
    """RetinaNet's anchors (torchvision's AnchorGenerator) for an image batch [B, C, H, W]: per
    level l of stride s_l (⌈H / s_l⌉ × ⌈W / s_l⌉ cells, as a ResNet-FPN leaves), one anchor per
    (aspect ratio, size of `sizes[l]`) at every cell → [N, 4] boxes (x1, y1, x2, y2), ordered by
    level, row, column, ratio, size: the order of the head's outputs. RetinaNet: strides 8..128,
    sizes 32·2^l·{2^0, 2^(1/3), 2^(2/3)}, ratios {1:2, 1:1, 2:1} (9 anchors per cell).

    shape: [B, C, H, W] → [N, 4], N = Σ_l ⌈H/s_l⌉·⌈W/s_l⌉ · len(ratios) · len(sizes[l]).
    other_flops: 4 · N (one shift add per coordinate); the base anchors are not counted.
    """
    name = "anchor_grid"
    Attrs = AnchorAttrs

    def infer(self, a, ins):
        _, _, h, w = expect_rank(ins, {4}, "anchor_grid")
        if not a.strides or len(a.strides) != len(a.sizes):
            raise ShapeError(f"anchor_grid needs one list of sizes per stride, got {len(a.strides)} "
                             f"strides and {len(a.sizes)} size lists")
        if any(s <= 0 for s in a.strides) or any(not lv or any(x <= 0 for x in lv) for lv in a.sizes):
            raise ShapeError("anchor_grid strides and sizes must be positive (and each level needs a size)")
        if not a.ratios or any(r <= 0 for r in a.ratios):
            raise ShapeError("anchor_grid aspect ratios must be positive (and at least one)")
        n = sum(level_grid(h, s) * level_grid(w, s) * len(a.ratios) * len(lv)
                for s, lv in zip(a.strides, a.sizes))
        return (n, 4)

    def other_flops(self, a, ins, out):
        return 4 * out[0]

    def emit(self, a, ins, fx, args):
        from archdsl.nn.detection import anchor_grid
        return fx.call(anchor_grid, args[0], strides=list(a.strides), sizes=[list(s) for s in a.sizes],
                       ratios=list(a.ratios))


class RetinaLossAttrs(Attrs):
    alpha: float = 0.25
    gamma: float = 2.0
    fg_iou: float = 0.5
    bg_iou: float = 0.4
    box_loss: Literal["l1", "smooth_l1"] = "l1"
    beta: float = 0.11
    part: Literal["total", "cls", "box"] = "total"


@register
class RetinaLoss(Op):
    """RetinaNet's loss (archdsl/nn/detection.py `retina_loss`): inputs cls_logits [B, N, K],
    bbox_regression [B, N, 4], anchors [N, 4], boxes [B, G, 4] and labels [B, G] (int64, −1 pads)
    → scalar: focal loss (alpha, gamma) over non-ignored anchors plus the L1 (or smooth L1, beta)
    box loss of foreground anchors, each normalised by the number of foreground anchors of the
    image, averaged over images. Anchors are foreground at IoU ≥ fg_iou, background under bg_iou.
    `part` 'cls' or 'box' gives one term (for logging).

    other_flops: IoU 12 · B · G · N; focal loss 18 · B · N · K; box targets and loss 22 · B · N
    (counted as if every anchor were foreground: an upper bound).
    """
    name = "retina_loss"
    Attrs = RetinaLossAttrs
    n_inputs = 5

    def infer(self, a, ins):
        cls, box, anchors, boxes, labels = ins
        if len(cls) != 3 or len(box) != 3 or box[2] != 4 or tuple(box[:2]) != tuple(cls[:2]):
            raise ShapeError(f"retina_loss needs cls_logits [B, N, K] and bbox_regression [B, N, 4], "
                             f"got {list(cls)} and {list(box)}")
        if tuple(anchors) != (cls[1], 4):
            raise ShapeError(f"retina_loss: {cls[1]} anchors predicted, but the anchors are {list(anchors)}",
                             hint="the anchor grid must match the detector's levels and anchors per cell")
        if len(boxes) != 3 or boxes[2] != 4 or boxes[0] != cls[0] or tuple(labels) != tuple(boxes[:2]):
            raise ShapeError(f"retina_loss needs boxes [B, G, 4] and labels [B, G] with B = {cls[0]}, "
                             f"got {list(boxes)} and {list(labels)}")
        if not 0 < a.bg_iou <= a.fg_iou <= 1:
            raise ShapeError(f"retina_loss needs 0 < bg_iou <= fg_iou <= 1, got {a.bg_iou} and {a.fg_iou}")
        if a.gamma < 0 or a.alpha > 1 or a.beta < 0:
            raise ShapeError("retina_loss needs gamma >= 0, alpha <= 1 (negative: no weighting), beta >= 0")
        return ()

    def other_flops(self, a, ins, out):
        (b, n, k), g = ins[0], ins[3][1]
        return 12 * b * g * n + 18 * b * n * k + 22 * b * n

    def emit(self, a, ins, fx, args):
        from archdsl.nn.detection import retina_loss
        return fx.call(retina_loss, *args, alpha=a.alpha, gamma=a.gamma, fg_iou=a.fg_iou, bg_iou=a.bg_iou,
                       box_loss=a.box_loss, beta=a.beta, part=a.part)
