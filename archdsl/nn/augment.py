"""Batch augmentations a topology applies as graph ops (archdsl/ops/augment.py): mixup / cutmix
with soft, label-smoothed targets; pseudo labels; RandAugment on float image tensors. torch only,
batched, on the input's device.

Targets (timm `Mixup`, "batch" mode): one-hot targets smoothed with eps become
    off = eps / K,  on = 1 − eps + off;   t = lam · t(y) + (1 − lam) · t(y.flip(0))
and the images x̃ = lam · x + (1 − lam) · x.flip(0) (mixup, Zhang et al. 2018; the partner of
sample i is sample B − 1 − i), or a box of x.flip(0) pasted into x (cutmix, Yun et al. 2019), with
lam re-computed as 1 − box area / (H · W) after the box is clipped to the image, so the targets
mix in exactly the proportion of pixels. lam ~ Beta(alpha, alpha), one draw per batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from archdsl.nn.rules import MAX_MAGNITUDE, OPS  # the op's vocabulary and scale


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot [B, K] with label smoothing: eps / K off target, 1 − eps + eps / K on it."""
    off = smoothing / num_classes
    t = torch.full((y.shape[0], num_classes), off, dtype=dtype, device=y.device)
    return t.scatter_(1, y.long().view(-1, 1), 1.0 - smoothing + off)


def cutmix_box(h: int, w: int, lam: float, generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """Cutmix's box (y0, y1, x0, x1): sides sqrt(1 − lam) · (H, W), centre uniform over the image,
    clipped to it (Yun et al. 2019, Algorithm A1)."""
    ratio = math.sqrt(1.0 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy = int(torch.randint(0, h, (), generator=generator))
    cx = int(torch.randint(0, w, (), generator=generator))
    return (max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w))


def mix(x: torch.Tensor, y: torch.Tensor, num_classes: int, lam: float, box=None,
        smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix a batch with its reverse at weight lam (mixup), or paste `box` of the reversed batch
    (cutmix; lam then becomes 1 − box area / image area). Returns (images, targets, lam)."""
    t = smooth_one_hot(y, num_classes, smoothing, x.dtype if x.is_floating_point() else torch.float32)
    partner = x.flip(0)
    if box is None:
        x = x * lam + partner * (1.0 - lam)
    else:
        y0, y1, x0, x1 = box
        x = x.clone()
        x[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (x.shape[-2] * x.shape[-1])
    return x, t * lam + t.flip(0) * (1.0 - lam), lam


def beta(alpha: float, generator: torch.Generator | None = None) -> float:
    """One draw of Beta(alpha, alpha), from two gamma draws (torch only)."""
    a = torch.full((2,), float(alpha))
    g = torch._standard_gamma(a) if generator is None else _gamma(a, generator)
    if not float(g.sum()) > 0:  # both draws underflow at tiny alpha: Beta(a, a) → Bernoulli(1/2)
        return float(torch.rand(()) < 0.5)
    return float(g[0] / g.sum())


def _gamma(a: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # Marsaglia–Tsang with a seeded generator (torch's gamma sampler takes no generator)
    out = []
    for alpha in a.tolist():
        boost = 1.0
        if alpha < 1.0:
            boost = float(torch.rand((), generator=generator)) ** (1.0 / alpha)
            alpha += 1.0
        d = alpha - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            z = float(torch.randn((), generator=generator))
            v = (1.0 + c * z) ** 3
            u = float(torch.rand((), generator=generator))
            if v > 0 and math.log(max(u, 1e-300)) < 0.5 * z * z + d - d * v + d * math.log(v):
                out.append(d * v * boost)
                break
    return torch.tensor(out)


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 0.2,
              cutmix_alpha: float = 0.0, prob: float = 1.0, switch_prob: float = 0.5,
              smoothing: float = 0.0):
    """mixup / cutmix with label smoothing, as a training phase applies it (every call draws):
    with probability `prob` the batch is mixed; with both alphas > 0, cutmix is chosen with
    `switch_prob` (timm's convention). Returns (images, targets [B, K], lam as a 0-d tensor)."""
    lam, box = 1.0, None
    if (alpha > 0 or cutmix_alpha > 0) and float(torch.rand(())) < prob:
        use_cutmix = cutmix_alpha > 0 and (alpha <= 0 or float(torch.rand(())) < switch_prob)
        lam = beta(cutmix_alpha if use_cutmix else alpha)
        if use_cutmix:
            box = cutmix_box(x.shape[-2], x.shape[-1], lam)
    x, t, lam = mix(x, y, num_classes, lam, box, smoothing)
    return x, t, torch.tensor(lam, dtype=t.dtype, device=t.device)


def pseudo_label(logits: torch.Tensor, kind: str = "hard", temperature: float = 1.0) -> torch.Tensor:
    """A teacher's labels, with no gradient: "hard" = argmax [B] (int64), "soft" =
    softmax(logits / T) [B, K] (Noisy Student's soft pseudo labels)."""
    logits = logits.detach()
    if kind == "hard":
        return logits.argmax(dim=-1)
    return F.softmax(logits / temperature, dim=-1)


# ---- RandAugment (Cubuk et al. 2020) on float images in [0, 1], [B, C, H, W]

FILL = 0.5           # what geometric ops move into the image (timm: 128 / 255)

SIGNED = {"rotate", "color", "contrast", "brightness", "sharpness", "shear_x", "shear_y",
          "translate_x", "translate_y"}


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    return x.mean(dim=1, keepdim=True)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance: b + factor · (a − b), clipped to [0, 1] (factor 1 = a)."""
    return (b + factor * (a - b)).clamp(0.0, 1.0)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample x at theta · (output coords) in normalised coordinates; outside → FILL."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + FILL


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per image and channel over 256 levels (torchvision's algorithm)."""
    b, c = x.shape[:2]
    q = (x.clamp(0, 1) * 255).round().long().flatten(2)                 # [B, C, HW]
    hist = torch.zeros(b, c, 256, dtype=torch.long, device=x.device).scatter_add_(2, q, torch.ones_like(q))
    last = hist.gather(2, q.max(dim=2, keepdim=True).values)            # count of the top level
    step = (hist.sum(dim=2, keepdim=True) - last) // 255
    safe = step.clamp(min=1)
    lut = (hist.cumsum(dim=2) + safe // 2) // safe
    lut = torch.cat([torch.zeros_like(lut[..., :1]), lut[..., :-1]], dim=2).clamp(0, 255)
    out = lut.gather(2, q).to(x.dtype) / 255
    out = torch.where(step == 0, q.to(x.dtype) / 255, out)              # one level only: unchanged
    return out.view_as(x)


def apply_op(x: torch.Tensor, op: str, magnitude: float, sign: torch.Tensor | None = None) -> torch.Tensor:
    """One RandAugment op at magnitude M ∈ [0, 30] on images x [B, C, H, W] in [0, 1];
    `sign` ([B], ±1) negates the signed ops per image. At M = 0 every op with a magnitude is the
    identity; identity, autocontrast and equalize take no magnitude."""
    b, _, h, w = x.shape
    f = float(magnitude) / MAX_MAGNITUDE
    s = torch.ones(b, dtype=x.dtype, device=x.device) if sign is None else sign.to(x.dtype)
    if op == "identity":
        return x
    if op == "autocontrast":
        lo = x.amin(dim=(2, 3), keepdim=True)
        hi = x.amax(dim=(2, 3), keepdim=True)
        flat = hi <= lo
        return torch.where(flat, x, (x - lo) / torch.where(flat, torch.ones_like(hi), hi - lo))
    if op == "equalize":
        return _equalize(x)
    if op == "solarize":   # invert the pixels above the threshold 1 − M/30 (none at M = 0)
        return torch.where(x > 1.0 - f, 1.0 - x, x)
    if op == "posterize":  # keep 8 − round(4M/30) bits of each 8-bit value (all 8 at M = 0)
        bits = 8 - round(4 * f)
        if bits >= 8:
            return x
        q = (x.clamp(0, 1) * 255).round().long()
        return ((q >> (8 - bits)) << (8 - bits)).to(x.dtype) / 255
    factor = (1.0 + 0.9 * f * s).view(b, 1, 1, 1)
    if op == "brightness":
        return _blend(x, torch.zeros_like(x), factor)
    if op == "color":
        return _blend(x, _gray(x).expand_as(x), factor)
    if op == "contrast":
        return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x), factor)
    if op == "sharpness":  # blend with PIL's smoothing filter, borders kept
        # kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 as shifted sums (elementwise work, no conv)
        p = F.pad(x, (1, 1, 1, 1))
        blurred = (sum(p[..., i:i + h, j:j + w] for i in range(3) for j in range(3)) + 4 * x) / 13
        inner = torch.zeros_like(x, dtype=torch.bool)
        inner[..., 1:-1, 1:-1] = True
        return _blend(x, torch.where(inner, blurred, x), factor)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    if op == "rotate":   # by 30·M/30 degrees, about the centre, in pixel space
        a = math.radians(30.0 * f) * s
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a) * h / w
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) * w / h, torch.cos(a)
    elif op == "shear_x":
        theta[:, 0, 1] = 0.3 * f * s * h / w
    elif op == "shear_y":
        theta[:, 1, 0] = 0.3 * f * s * w / h
    elif op == "translate_x":   # by (150/331)·W·M/30 pixels (torchvision's range)
        theta[:, 0, 2] = -2.0 * (150.0 / 331.0) * f * s
    elif op == "translate_y":
        theta[:, 1, 2] = -2.0 * (150.0 / 331.0) * f * s
    else:
        raise ValueError(f"unknown RandAugment op {op!r}; one of {', '.join(OPS)}")
    return _affine(x, theta)


def draw(batch: int, n: int, n_ops: int, generator: torch.Generator | None = None):
    """The random choices of one RandAugment call: op indices [N, B] and signs [N, B] (±1)."""
    choice = torch.randint(0, n_ops, (n, batch), generator=generator)
    sign = torch.randint(0, 2, (n, batch), generator=generator) * 2 - 1
    return choice, sign


def randaugment(x: torch.Tensor, n: int = 2, m: float = 9, ops=OPS,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """RandAugment: for each image, N ops drawn uniformly (with replacement) from `ops`, applied
    one after another, each at magnitude M (signed ops get a random sign per image)."""
    choice, sign = draw(x.shape[0], n, len(ops), generator)
    choice, sign = choice.to(x.device), sign.to(x.device)
    out = x
    for i in range(n):
        nxt = out.clone()
        for k, op in enumerate(ops):
            idx = (choice[i] == k).nonzero().flatten()
            if idx.numel():
                nxt[idx] = apply_op(out[idx], op, m, sign[i, idx])
        out = nxt
    return out
