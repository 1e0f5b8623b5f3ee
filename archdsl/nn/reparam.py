"""nn.Modules for structural re-parameterisation (the DiracNet convolution)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dirac_delta(out: int, cin: int, kernel: tuple[int, int]) -> torch.Tensor:
    """δ[o, i, kh // 2, kw // 2] = 1 where o ≡ i (mod min(out, cin)): the identity for out == cin,
    [I I] for cin == 2·out and [I; I] for out == 2·cin, as DiracNet's `dirac_delta`."""
    n = min(out, cin)
    o = torch.arange(out).view(-1, 1)
    i = torch.arange(cin).view(1, -1)
    delta = torch.zeros(out, cin, *kernel)
    delta[:, :, kernel[0] // 2, kernel[1] // 2] = (o % n == i % n).float()
    return delta


class DiracConv2d(nn.Conv2d):
    """conv2d(x, diag(alpha)·δ + diag(beta)·normalize(weight)) + bias (DiracNets, Eq. 4)."""

    def __init__(self, cin: int, out: int, kernel, stride, padding, dilation, bias: bool,
                 alpha: float = 5.0, beta: float = 1e-3):
        super().__init__(cin, out, kernel, stride, padding, dilation, 1, bias)
        self.alpha = nn.Parameter(torch.full((out,), float(alpha)))
        self.beta = nn.Parameter(torch.full((out,), float(beta)))
        self.register_buffer("delta", dirac_delta(out, cin, self.kernel_size), persistent=False)

    def effective_weight(self) -> torch.Tensor:
        w = F.normalize(self.weight.flatten(1), dim=1).view_as(self.weight)
        return self.alpha.view(-1, 1, 1, 1) * self.delta + self.beta.view(-1, 1, 1, 1) * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.effective_weight(), self.bias, self.stride, self.padding,
                        self.dilation)
