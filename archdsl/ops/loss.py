"""Training losses and the small ops topologies use around them. Each loss returns a scalar;
its function (and the formula) lives in archdsl/nn/loss.py.

flops: the matmuls FlopCounterMode counts in each implementation (stated per op);
other_flops: the elementwise work, counted as a few operations per element touched (per op).
"""
from __future__ import annotations

from typing import Literal

from archdsl.ops.base import Attrs, Op, ShapeError, norm_dim, numel, register


def _losses():
    from archdsl.nn import loss
    return loss


def _same(name: str, a, b):
    if tuple(a) != tuple(b):
        raise ShapeError(f"{name} needs two tensors of one shape, got {list(a)} and {list(b)}")


def _matrix(name: str, s, what: str = "[N, D]"):
    if len(s) != 2:
        raise ShapeError(f"{name} expects {what}, got {list(s)}")


class _Loss(Op):
    fn_name = ""

    def emit(self, a, ins, fx, args):
        return fx.call(getattr(_losses(), self.fn_name), *args, **self._kwargs(a))

    def _kwargs(self, a) -> dict:
        return dict(a)


@register
class StopGrad(Op):
    """No gradient flows back through this edge (x.detach()). shape: unchanged. other_flops: 0."""
    name = "stop_grad"

    def infer(self, a, ins):
        return ins[0]

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        return fx.method("detach", args[0])


class NormAttrs(Attrs):
    dim: int = -1
    eps: float = 1e-12


@register
class L2Normalize(Op):
    """x / max(‖x‖₂, eps) along `dim`. shape: unchanged. other_flops: 3 · numel (square, sum, divide)."""
    name = "l2_normalize"
    Attrs = NormAttrs
    positional = ("dim",)

    def infer(self, a, ins):
        norm_dim(a.dim, len(ins[0]))
        return ins[0]

    def other_flops(self, a, ins, out):
        return 3 * numel(out)

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        return fx.call(F.normalize, args[0], dim=a.dim, eps=a.eps)


class TempAttrs(Attrs):
    temperature: float = 0.07


@register
class InfoNCE(_Loss):
    """MoCo InfoNCE. inputs: q [N, D], k [N, D], queue [D, K] → scalar.
    flops: 2·N·D·K (the q·queue matmul); other_flops: 2·N·D (q·k as multiply and sum) +
    4·N·(K + 1) (scale, softmax, log)."""
    name = "info_nce"
    fn_name = "info_nce"
    Attrs = TempAttrs
    positional = ("temperature",)
    n_inputs = 3

    def infer(self, a, ins):
        q, k, queue = ins
        _matrix(self.name, q)
        _same(self.name, q, k)
        if len(queue) != 2 or queue[0] != q[1]:
            raise ShapeError(f"info_nce queue must be [D, K] with D = {q[1]}, got {list(queue)}")
        if a.temperature <= 0:
            raise ShapeError("temperature must be positive")
        return ()

    def flops(self, a, ins, out):
        (n, d), (_, k) = ins[0], ins[2]
        return 2 * n * d * k

    def other_flops(self, a, ins, out):
        (n, d), (_, k) = ins[0], ins[2]
        return 2 * n * d + 4 * n * (k + 1)


class NTXentAttrs(TempAttrs):
    sum_views: bool = False


@register
class NTXent(_Loss):
    """SimCLR NT-Xent. inputs: z1, z2 [N, D] → scalar: the mean over the 2N views (the paper's
    L = 1/2N Σ ℓ), or with `sum_views=true` the sum of the two views' means, 2× that (the official
    TF code's `tf.reduce_mean(loss_a + loss_b)`, objective.py add_contrastive_loss).
    flops: 2 · (2N)² · D (similarities); other_flops: 6·N·D (normalise) + 4·(2N)² (scale, mask, softmax)."""
    name = "nt_xent"
    fn_name = "nt_xent"
    min_batch = 2
    Attrs = NTXentAttrs
    positional = ("temperature",)
    n_inputs = 2

    def infer(self, a, ins):
        _matrix(self.name, ins[0])
        _same(self.name, *ins)
        return ()

    def flops(self, a, ins, out):
        n, d = ins[0]
        return 2 * (2 * n) ** 2 * d

    def other_flops(self, a, ins, out):
        n, d = ins[0]
        return 6 * n * d + 4 * (2 * n) ** 2


@register
class NegCosine(_Loss):
    """−cos(p, stop_grad(z)), mean over the batch. inputs: p, z [..., D] → scalar.
    flops: 0; other_flops: 4 · numel (products, norms)."""
    name = "neg_cosine"
    fn_name = "neg_cosine"
    n_inputs = 2

    def infer(self, a, ins):
        _same(self.name, *ins)
        return ()

    def other_flops(self, a, ins, out):
        return 4 * numel(ins[0])


class CEAttrs(Attrs):
    label_smoothing: float = 0.0


@register
class CrossEntropy(_Loss):
    """Cross-entropy. inputs: logits [N, C] and targets [N] (int64) or [N, C] (soft) → scalar.
    other_flops: 4 · N · C (softmax, log, pick)."""
    name = "cross_entropy"
    fn_name = "cross_entropy"
    Attrs = CEAttrs
    positional = ("label_smoothing",)
    n_inputs = 2

    def infer(self, a, ins):
        logits, target = ins
        _matrix(self.name, logits, "[N, C] logits")
        if tuple(target) not in ((logits[0],), tuple(logits)):
            raise ShapeError(f"cross_entropy targets must be [{logits[0]}] or {list(logits)}, got {list(target)}")
        if not 0.0 <= a.label_smoothing < 1.0:
            raise ShapeError("label_smoothing must be in [0, 1)")
        return ()

    def other_flops(self, a, ins, out):
        return 4 * numel(ins[0])


@register
class DistillKL(_Loss):
    """Distillation KL with temperature. inputs: student, teacher logits [N, C] → scalar.
    other_flops: 8 · N · C (two softmaxes, log, product)."""
    name = "distill_kl"
    fn_name = "distill_kl"
    Attrs = TempAttrs
    positional = ("temperature",)
    n_inputs = 2

    def infer(self, a, ins):
        _matrix(self.name, ins[0], "[N, C] logits")
        _same(self.name, *ins)
        return ()

    def other_flops(self, a, ins, out):
        return 8 * numel(ins[0])


class DinoAttrs(Attrs):
    n_global: int = 2
    student_temp: float = 0.1
    teacher_temp: float = 0.04


@register
class DinoLoss(_Loss):
    """DINO cross-entropy. inputs: student [V·B, K] (all crops, global first), teacher
    [G·B, K] (global crops), center [1, K], and optionally the teacher temperature as a scalar
    tensor [] (a scheduled state: DINO's warm-up), which then replaces `teacher_temp` → scalar.
    Same-view pairs are skipped.
    other_flops: 4 · (V + G) · B · K (sharpen, centre, softmaxes) + 3 · B · K per pair."""
    name = "dino_loss"
    fn_name = "dino_loss"
    Attrs = DinoAttrs
    n_inputs = None

    def infer(self, a, ins):
        if len(ins) not in (3, 4) or (len(ins) == 4 and tuple(ins[3]) not in ((), (1,))):
            raise ShapeError("dino_loss takes student, teacher, center and optionally a scalar teacher "
                             f"temperature, got {[list(i) for i in ins]}")
        s, t, c = ins[:3]
        _matrix(self.name, s, "[V·B, K]")
        _matrix(self.name, t, "[G·B, K]")
        if t[1] != s[1] or tuple(c) != (1, s[1]) or a.n_global <= 0 or t[0] % a.n_global:
            raise ShapeError(f"dino_loss: student {list(s)}, teacher {list(t)}, center {list(c)} and "
                             f"n_global={a.n_global} do not fit")
        b = t[0] // a.n_global
        if s[0] % b or s[0] // b < 2:
            raise ShapeError("dino_loss needs at least two views per sample",
                             hint="give the student every crop, the teacher the global crops")
        return ()

    def other_flops(self, a, ins, out):
        s, t = ins[:2]
        b = t[0] // a.n_global
        views = s[0] // b
        pairs = a.n_global * views - min(a.n_global, views)
        return 4 * (s[0] + t[0]) * s[1] + 3 * b * s[1] * pairs

    def emit(self, a, ins, fx, args):
        temp = {"temp": args[3]} if len(args) == 4 else {}
        return fx.call(_losses().dino_loss, *args[:3], **dict(a), **temp)


class MaeAttrs(Attrs):
    norm_pix: bool = False


@register
class MaeLoss(_Loss):
    """MAE masked MSE. inputs: pred, target [B, L, P], mask [B, L] (1 = removed) → scalar.
    other_flops: 3 · numel(pred) (+ 5 · numel with norm_pix) + 2 · B · L."""
    name = "mae_loss"
    fn_name = "mae_loss"
    Attrs = MaeAttrs
    positional = ("norm_pix",)
    n_inputs = 3

    def infer(self, a, ins):
        pred, target, mask = ins
        _same(self.name, pred, target)
        if len(pred) != 3 or tuple(mask) != tuple(pred[:2]):
            raise ShapeError(f"mae_loss expects pred/target [B, L, P] and mask [B, L], got "
                             f"{list(pred)} and {list(mask)}")
        return ()

    def other_flops(self, a, ins, out):
        return (8 if a.norm_pix else 3) * numel(ins[0]) + 2 * numel(ins[2])


class ClipAttrs(Attrs):
    max_scale: float | None = None


@register
class ClipLoss(_Loss):
    """CLIP symmetric loss. inputs: image [N, D], text [N, D], logit_scale [] → scalar: the mean of
    the two cross-entropies over exp(logit_scale) · cosine similarities. `max_scale` clamps the
    log-scale in the forward (its gradient is then 0 above it); the official training instead
    clamps the stored parameter after each step (`after clamp(logit_scale, min=0, max=log_e(100))`).
    flops: 2 · N² · D; other_flops: 6 · N · D (normalise) + 8 · N² (scale, two softmax CEs)."""
    name = "clip_loss"
    fn_name = "clip_loss"
    min_batch = 2
    Attrs = ClipAttrs
    n_inputs = 3

    def infer(self, a, ins):
        img, txt, scale = ins
        _matrix(self.name, img)
        _same(self.name, img, txt)
        if tuple(scale) not in ((), (1,)):
            raise ShapeError(f"clip_loss logit_scale must be a scalar, got {list(scale)}")
        return ()

    def flops(self, a, ins, out):
        n, d = ins[0]
        return 2 * n * n * d

    def other_flops(self, a, ins, out):
        n, d = ins[0]
        return 6 * n * d + 8 * n * n


class GanAttrs(Attrs):
    kind: Literal["d_nonsat", "g_nonsat", "d_hinge", "g_hinge", "d_wgan", "g_wgan", "d_lsgan", "g_lsgan"]


@register
class GanLoss(_Loss):
    """GAN objective on D logits: d_* take (D(real), D(fake)), g_* take D(fake) → scalar.
    other_flops: 3 per logit."""
    name = "gan_loss"
    fn_name = "gan_loss"
    Attrs = GanAttrs
    positional = ("kind",)
    n_inputs = None

    def infer(self, a, ins):
        want = 2 if a.kind.startswith("d_") else 1
        if len(ins) != want:
            raise ShapeError(f"gan_loss '{a.kind}' takes {want} input(s), got {len(ins)}")
        return ()

    def other_flops(self, a, ins, out):
        return 3 * sum(numel(s) for s in ins)

    def emit(self, a, ins, fx, args):
        fn = _losses().gan_loss
        if len(args) == 2:
            return fx.call(fn, args[0], a.kind, args[1])
        return fx.call(fn, args[0], a.kind)


class _Pair(_Loss):
    n_inputs = 2

    def infer(self, a, ins):
        _same(self.name, *ins)
        return ()

    def other_flops(self, a, ins, out):
        return 3 * numel(ins[0])


@register
class L1(_Pair):
    """Mean absolute error of two same-shape tensors → scalar. other_flops: 3 · numel."""
    name = "l1_loss"
    fn_name = "l1"


@register
class MSE(_Pair):
    """Mean squared error of two same-shape tensors → scalar. other_flops: 3 · numel."""
    name = "mse_loss"
    fn_name = "mse"


@register
class KLGauss(_Pair):
    """KL(N(mu, e^logvar) ‖ N(0, 1)) summed over features, mean over the batch → scalar.
    other_flops: 6 · numel."""
    name = "kl_gauss"
    fn_name = "kl_gauss"

    def infer(self, a, ins):
        if len(ins[0]) < 2:  # the loss flattens the features from dim 1
            raise ShapeError(f"kl_gauss expects [B, features...] inputs, got shape {list(ins[0])}")
        return super().infer(a, ins)

    def other_flops(self, a, ins, out):
        return 6 * numel(ins[0])




class NoiseAttrs(Attrs):
    shape: list[int]


@register
class Noise(Op):
    """N(0, 1) noise of shape [B, *shape], on the device and dtype of its input (whose batch
    size B it takes): `z = real -> randn([100])`. other_flops: numel (one draw per element)."""
    name = "randn"
    Attrs = NoiseAttrs
    positional = ("shape",)

    def infer(self, a, ins):
        if not ins[0]:
            raise ShapeError("noise takes its batch size from a tensor with a batch dim")
        if any(d <= 0 for d in a.shape):
            raise ShapeError(f"noise sizes must be positive, got {a.shape}")
        return (ins[0][0], *a.shape)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.loss import noise_like
        return fx.call(noise_like, args[0], tuple(a.shape))
