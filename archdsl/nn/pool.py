"""The nn.Module of the blur pool op (archdsl/ops/pool.py)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BlurPool2d(nn.Module):
    """Pad, then a depthwise conv with the fixed binomial filter b·bᵀ (b_k = C(n, k) / 2^n,
    n = kernel - 1) at `stride`. The filter is a non-persistent buffer, so the state_dict holds
    nothing (as timm's BlurPool2d)."""

    def __init__(self, channels: int, kernel: int, stride: int, padding: int, pad_mode: str):
        super().__init__()
        self.channels, self.stride, self.pad_mode = channels, stride, pad_mode
        self.padding = (padding,) * 4
        b = torch.tensor([math.comb(kernel - 1, k) for k in range(kernel)], dtype=torch.float32)
        b = b / 2 ** (kernel - 1)
        self.register_buffer("filt", (b[:, None] * b[None, :]).expand(channels, 1, kernel, kernel)
                             .clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding, mode=self.pad_mode)
        return F.conv2d(x, self.filt, stride=self.stride, groups=self.channels)
