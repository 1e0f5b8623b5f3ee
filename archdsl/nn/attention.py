"""Torch functions that the attention ops (archdsl/ops/attention.py) call."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_sdpa(q, k, v, mask, scale=None):
    """F.scaled_dot_product_attention with a mask. A float mask that takes gradients (a learned
    relative-position bias, as in Swin and BEiT) on the CPU is applied explicitly, as timm does:
    SDPA has no fused CPU kernel for it and its fallback is ~15 % slower a training step."""
    if mask.requires_grad and torch.is_grad_enabled() and q.device.type == "cpu" and mask.is_floating_point():
        s = q.shape[-1] ** -0.5 if scale is None else scale
        return ((q * s) @ k.transpose(-2, -1) + mask).softmax(-1) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
