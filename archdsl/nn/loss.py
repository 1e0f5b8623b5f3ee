"""Training losses, as plain functions of tensors. Each is wrapped as a graph op in
archdsl/ops/loss.py (shape rule, costs); the formulas and conventions are stated here.

Conventions: logits-based losses take raw scores; every loss returns a scalar mean over the
batch; temperatures divide similarities; embeddings are L2-normalised by the caller unless said.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from archdsl.nn import dist


def info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo's InfoNCE: the positive is (q, k), negatives are the queue's columns [D, K].
    logits = [q·k, q·queue] / T; cross-entropy towards index 0. k and queue get no gradient."""
    pos = (q * k.detach()).sum(dim=1, keepdim=True)
    neg = q @ queue.detach()
    logits = torch.cat([pos, neg], dim=1) / temperature
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, sum_views: bool = False) -> torch.Tensor:
    """SimCLR's NT-Xent over 2N views: each view's positive is its pair, negatives are the other
    2N − 2 views; self-pairs are excluded. The mean over the 2N views, or (sum_views) twice that:
    the official TF code sums the two views' means. Across ranks, the negatives are gathered with
    the local gradient kept (dist.gather_with_grad)."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    local = torch.cat([z1, z2], dim=0)                       # [2n, D]
    everything = dist.gather_with_grad(local)                # [2n·world, D]
    n = z1.shape[0]
    offset = dist.rank() * 2 * n
    sim = local @ everything.t() / temperature               # [2n, 2n·world]
    idx = torch.arange(2 * n, device=sim.device)
    self_mask = F.one_hot(idx + offset, sim.shape[1]).bool()
    sim = sim.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([idx[n:], idx[:n]]) + offset
    return F.cross_entropy(sim, positives) * (2.0 if sum_views else 1.0)


def neg_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """−cos(p, sg(z)) averaged over the batch (SimSiam; BYOL's 2 − 2 cos is 2 + 2 · this)."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with class indices [B] or soft targets [B, C] (mixup/cutmix, distillation;
    integer [B, C] targets are read as one-hot or count weights). The shape decides, as in the
    op's static rule: float [B] targets are class indices too."""
    if target.dim() == logits.dim() - 1 and target.is_floating_point():
        target = target.long()
    if target.dim() == logits.dim():  # soft targets, smoothed too: (1 − eps) · t + eps / K
        target = target.to(logits.dtype)
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
        return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)


def distill_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation: T² · KL(softmax(t/T) ‖ softmax(s/T)); the teacher gets no gradient."""
    t = F.softmax(teacher.detach() / temperature, dim=-1)
    log_s = F.log_softmax(student / temperature, dim=-1)
    return F.kl_div(log_s, t, reduction="batchmean") * temperature ** 2


def dino_loss(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, n_global: int,
              student_temp: float, teacher_temp: float, temp: torch.Tensor | None = None) -> torch.Tensor:
    """DINO's cross-entropy between sharpened, centred teacher outputs (global crops only, no
    gradient) and student outputs over all crops, skipping same-view pairs.
    student: [V·B, K] (views stacked, globals first); teacher: [G·B, K]; `temp`, when given,
    is the teacher temperature of this step (a scalar tensor), replacing `teacher_temp`."""
    if temp is not None:
        teacher_temp = temp.detach().reshape(())
    views = student.shape[0] // (teacher.shape[0] // n_global)
    if views < 2:
        raise ValueError("DINO needs at least two views: a single view gives no cross-view pairs")
    s = (student / student_temp).chunk(views)
    t = F.softmax((teacher.detach() - center) / teacher_temp, dim=-1).chunk(n_global)
    total, pairs = 0.0, 0
    for i, ti in enumerate(t):
        for j, sj in enumerate(s):
            if i == j:
                continue
            total = total + torch.sum(-ti * F.log_softmax(sj, dim=-1), dim=-1).mean()
            pairs += 1
    return total / pairs


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = False) -> torch.Tensor:
    """MAE: mean squared error on masked patches only (mask = 1 where removed). With norm_pix, each
    target patch is normalised: (x − mean) / sqrt(var + 1e-6)."""
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
              max_scale: float | None = None) -> torch.Tensor:
    """CLIP's symmetric loss: (CE(img→txt) + CE(txt→img)) / 2 over cosine similarities scaled
    by exp(logit_scale) (open_clip's ClipLoss). The official training clamps the stored
    log-scale after each step (`after clamp(...)`); `max_scale` clamps it here instead."""
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    scale = (logit_scale if max_scale is None else logit_scale.clamp(max=max_scale)).exp()
    logits = scale * image @ text.t()
    labels = torch.arange(image.shape[0], device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


def gan_loss(real_or_fake: torch.Tensor, kind: str, fake: torch.Tensor | None = None) -> torch.Tensor:
    """GAN objectives on discriminator logits.
    d_nonsat: softplus(−D(x)) + softplus(D(G(z)));  g_nonsat: softplus(−D(G(z)));
    d_hinge: relu(1 − D(x)) + relu(1 + D(G(z)));   g_hinge / g_wgan: −D(G(z));
    d_wgan: D(G(z)) − D(x) (add a gradient penalty separately);
    d_lsgan: mean((D(x) − 1)²) + mean(D(G(z))²);  g_lsgan: mean((D(G(z)) − 1)²) (least squares,
    Mao et al. 2017, targets 1 and 0 as CycleGAN's GANLoss('lsgan'); CycleGAN halves the D loss)."""
    if kind == "g_nonsat":
        return F.softplus(-real_or_fake).mean()
    if kind == "g_lsgan":
        return (real_or_fake - 1).square().mean()
    if kind == "d_lsgan":
        assert fake is not None
        return (real_or_fake - 1).square().mean() + fake.square().mean()
    if kind in ("g_hinge", "g_wgan"):
        return -real_or_fake.mean()
    assert fake is not None
    if kind == "d_nonsat":
        return F.softplus(-real_or_fake).mean() + F.softplus(fake).mean()
    if kind == "d_hinge":
        return F.relu(1 - real_or_fake).mean() + F.relu(1 + fake).mean()
    if kind == "d_wgan":
        return fake.mean() - real_or_fake.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (pix2pix L1, CycleGAN cycle and identity terms)."""
    return (a - b).abs().mean()


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return ((a - b) ** 2).mean()


def kl_gauss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) ‖ N(0, 1)), summed over features, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).flatten(1).sum(dim=1).mean()


def gradient_penalty(d_out: torch.Tensor, x: torch.Tensor, kind: str = "r1") -> torch.Tensor:
    """A gradient penalty on the discriminator's input gradient g = ∂ Σ D(x) / ∂x, taken with
    create_graph=True so the penalty's own gradient reaches D's parameters (second order).
    kind "r1" (Mescheder et al. 2018; StyleGAN): mean over the batch of ‖g‖² (the per-sample sum of
    squares) — the spec multiplies by gamma / 2. kind "wgan_gp" (Gulrajani et al. 2017; PGGAN):
    mean over the batch of (‖g‖₂ − 1)², x being the interpolates — the spec multiplies by lambda.
    x must require grad and d_out must have been computed from it."""
    if kind not in ("r1", "wgan_gp"):
        raise ValueError(f"unknown gradient penalty {kind!r}: 'r1' or 'wgan_gp'")
    (grad,) = torch.autograd.grad(d_out.sum(), x, create_graph=True)
    sq = grad.pow(2).flatten(1).sum(dim=1)
    if kind == "r1":
        return sq.mean()
    return ((sq + 1e-12).sqrt() - 1.0).pow(2).mean()


def noise_like(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise [B, *shape] on x's device, in x's dtype."""
    return torch.randn((x.shape[0], *shape), device=x.device, dtype=x.dtype)
