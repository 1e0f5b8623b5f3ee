"""Torch code of the norm ops (archdsl/ops/norm.py)."""
from __future__ import annotations

import torch
from torch import nn


def without_bias(module: nn.Module) -> nn.Module:
    """The norm layer with its shift removed: F.batch_norm takes a scale without a shift."""
    module.register_parameter("bias", None)
    return module


class RootMeanNorm(nn.Module):
    """x / sqrt(m + eps) · weight along `dim`, m the mean square (RMS norm, as timm's rms_norm /
    rms_norm2d) or, `centered`, the unbiased variance (timm's simple_norm)."""

    def __init__(self, channels: int, eps: float = 1e-6, affine: bool = True, dim: int = -1,
                 centered: bool = False):
        super().__init__()
        self.eps, self.dim, self.centered = eps, dim, centered
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.centered:
            m = torch.var(x, dim=self.dim, keepdim=True)
        else:
            m = x.pow(2).mean(dim=self.dim, keepdim=True)
        x = x * torch.rsqrt(m + self.eps)
        if self.weight is None:
            return x
        shape = [-1] + [1] * (x.ndim - 2) if self.dim == 1 else [-1]
        return x * self.weight.reshape(shape)
