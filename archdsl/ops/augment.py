"""Training-time augmentation and targets, as graph ops a topology's phase applies: mixup /
cutmix with label smoothing, RandAugment, a teacher's pseudo labels. The torch code and its
conventions live in archdsl/nn/augment.py. None has parameters or counted flops.
"""
from __future__ import annotations

from typing import Literal

from archdsl.ops.base import Attrs, Op, ShapeError, numel, register
from archdsl.nn.rules import MAX_MAGNITUDE, OPS


class MixAttrs(Attrs):
    num_classes: int
    alpha: float = 0.2
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    smoothing: float = 0.0


@register
class Mixup(Op):
    """mixup (Zhang et al. 2018) / cutmix (Yun et al. 2019) with label-smoothed soft targets.
    inputs: images x [B, ...] (cutmix: [B, C, H, W]) and labels y [B] (int64) → three outputs:
    mixed images (x's shape), targets [B, num_classes] and lam []. One lam ~ Beta(alpha, alpha)
    per batch mixes sample i with sample B − 1 − i; cutmix's lam is the kept-area fraction. With
    both alphas > 0, cutmix is picked with `switch_prob`; mixing happens with probability `prob`
    (a training-step op: it draws on every call). Needs num_classes ≥ 1, alphas ≥ 0,
    probabilities and smoothing in [0, 1]. flops: 0; other_flops: 3 · numel(x) (mixup's two
    products and sum) + 4 · B · K (targets)."""
    name = "mixup"
    Attrs = MixAttrs
    positional = ("num_classes",)
    n_inputs = 2

    def infer(self, a, ins):
        x, y = ins
        if len(y) != 1 or not x or x[0] != y[0]:
            raise ShapeError(f"mixup takes images [B, ...] and labels [B], got {list(x)} and {list(y)}")
        if a.cutmix_alpha > 0 and len(x) != 4:
            raise ShapeError(f"cutmix needs images [B, C, H, W], got {list(x)}")
        if a.num_classes < 1 or a.alpha < 0 or a.cutmix_alpha < 0:
            raise ShapeError("mixup needs num_classes ≥ 1 and alphas ≥ 0")
        for k in ("prob", "switch_prob", "smoothing"):
            if not 0.0 <= getattr(a, k) <= 1.0:
                raise ShapeError(f"mixup {k} must be in [0, 1], got {getattr(a, k)}")
        return (tuple(x), (x[0], a.num_classes), ())

    def other_flops(self, a, ins, out):
        return 3 * numel(ins[0]) + 4 * ins[0][0] * a.num_classes

    def emit(self, a, ins, fx, args):
        from archdsl.nn.augment import mix_batch
        return fx.call(mix_batch, *args, a.num_classes, a.alpha, a.cutmix_alpha, a.prob, a.switch_prob,
                       a.smoothing)


class RandAugmentAttrs(Attrs):
    n: int = 2
    m: float = 9
    ops: list[str] | None = None


@register
class RandAugmentOp(Op):
    """RandAugment (Cubuk et al. 2020) on float images [B, C, H, W] in [0, 1]: per image, N ops
    drawn uniformly from the 14 of the paper (or `ops`), each at magnitude M on the paper's
    0..30 scale (a training-step op: it draws on every call). shape: unchanged. Needs N ≥ 1,
    0 ≤ M ≤ 30. flops: 0; other_flops: 10 · N · numel (a resample or blend per op)."""
    name = "randaugment"
    Attrs = RandAugmentAttrs
    positional = ("n", "m")

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 4:
            raise ShapeError(f"randaugment expects images [B, C, H, W], got {list(x)}")
        if a.n < 1 or not 0 <= a.m <= MAX_MAGNITUDE:
            raise ShapeError(f"randaugment needs n ≥ 1 and 0 ≤ m ≤ {MAX_MAGNITUDE}, got n={a.n}, m={a.m}")
        bad = [o for o in (a.ops or []) if o not in OPS]
        if bad or a.ops == []:
            raise ShapeError(f"randaugment ops must be a non-empty list of {', '.join(OPS)}; got {a.ops}")
        return tuple(x)

    def other_flops(self, a, ins, out):
        return 10 * a.n * numel(ins[0])

    def emit(self, a, ins, fx, args):
        from archdsl.nn.augment import randaugment
        return fx.call(randaugment, args[0], a.n, a.m, tuple(a.ops or OPS))


class PseudoAttrs(Attrs):
    kind: Literal["hard", "soft"] = "hard"
    temperature: float = 1.0


@register
class PseudoLabel(Op):
    """A teacher's pseudo labels, with no gradient. logits [B, K] → "hard": argmax [B] (int64);
    "soft": softmax(logits / temperature) [B, K]. Needs temperature > 0. other_flops: B · K
    (argmax) or 3 · B · K (softmax)."""
    name = "pseudo_label"
    Attrs = PseudoAttrs
    positional = ("kind",)

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 2:
            raise ShapeError(f"pseudo_label expects logits [B, K], got {list(x)}")
        if a.temperature <= 0:
            raise ShapeError(f"pseudo_label temperature must be positive, got {a.temperature}")
        return (x[0],) if a.kind == "hard" else tuple(x)

    def other_flops(self, a, ins, out):
        return (1 if a.kind == "hard" else 3) * numel(ins[0])

    def emit(self, a, ins, fx, args):
        from archdsl.nn.augment import pseudo_label
        return fx.call(pseudo_label, args[0], a.kind, a.temperature)
