"""Samplers of the BigGAN ops (archdsl/ops/biggan.py): truncated noise and random class labels."""
from __future__ import annotations

import math


def truncated_noise_like(x, shape: tuple[int, ...], threshold: float):
    """The truncation trick (BigGAN §3.1): N(0, 1) noise [B, *shape] on x's device and dtype,
    truncated to [−threshold, threshold]. BigGAN redraws every entry with |z| > threshold until
    none is left; the accepted values are distributed as the normal truncated to the interval,
    which is what this draws directly, without a data-dependent loop (so it traces under
    torch.compile): z = √2 · erfinv(u) with u ~ U(−erf(t/√2), erf(t/√2)) (inverse-CDF sampling),
    clamped to [−t, t] against rounding."""
    import torch
    p = math.erf(threshold / math.sqrt(2.0))
    u = (torch.rand((x.shape[0], *shape), device=x.device, dtype=x.dtype) * 2.0 - 1.0) * p
    return (torch.erfinv(u) * math.sqrt(2.0)).clamp(-threshold, threshold)


def rand_class_like(x, num_classes: int):
    """Class labels [B] (int64) drawn uniformly from range(num_classes), on x's device."""
    import torch
    return torch.randint(0, num_classes, (x.shape[0],), device=x.device)
