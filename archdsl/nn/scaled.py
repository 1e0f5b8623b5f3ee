"""nn.Modules for the weight-scaling ops (archdsl/ops/scaled.py): weight standardisation,
equalized learning rate and StyleGAN2's modulated convolution.

Each class depends on torch alone (torch, nn, F, math), so its source can be copied into a
standalone file. Parameter names follow the reference implementation named on each class.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ScaledStdConv2d(nn.Conv2d):
    """Conv2d with (scaled) weight standardisation, as timm's `ScaledStdConv2d` (NF-ResNet,
    NFNet) when `scaled`, else as timm's `StdConv2d` (BiT): each output filter of the weight is
    standardised over Cin·kh·kw (biased variance, eps inside the root), then, when scaled,
    multiplied by gain · gamma / sqrt(fan_in). Keys: weight, bias, gain [out, 1, 1, 1]."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, gamma=1.0, eps=1e-6, gain_init=1.0, scaled=True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, bias=bias)
        self.eps = eps
        self.scaled = scaled
        self.scale = gamma * self.weight[0].numel() ** -0.5 if scaled else 1.0
        if scaled:
            self.gain = nn.Parameter(torch.full((out_channels, 1, 1, 1), float(gain_init)))

    def standardized_weight(self) -> torch.Tensor:
        w = self.weight.reshape(1, self.out_channels, -1)
        gain = (self.gain * self.scale).view(-1) if self.scaled else None
        w = F.batch_norm(w, None, None, weight=gain, training=True, momentum=0.0, eps=self.eps)
        return w.reshape_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class EqualConv2d(nn.Module):
    """Equalized-learning-rate conv (Karras et al., ProGAN/StyleGAN): weight ~ N(0, 1) / lr_mul,
    used as weight · gain / sqrt(fan_in) · lr_mul at run time; bias used as bias · lr_mul.
    Keys: weight [out, Cin / groups, kh, kw], bias [out] (as rosinality's EqualConv2d)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, gain=1.0, lr_mul=1.0, bias_init=0.0):
        super().__init__()
        kh, kw = kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels // groups, kh, kw) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init))) if bias else None
        self.scale = gain / math.sqrt(in_channels // groups * kh * kw) * lr_mul
        self.lr_mul = lr_mul
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.conv2d(x, self.weight * self.scale, bias, self.stride, self.padding,
                        self.dilation, self.groups)


class EqualLinear(nn.Module):
    """Equalized-learning-rate linear layer (rosinality's EqualLinear): y = x (W · gain /
    sqrt(in) · lr_mul)ᵀ + b · lr_mul, W ~ N(0, 1) / lr_mul; with fused_lrelu, then
    leaky_relu(y, 0.2) · √2. Keys: weight [out, in], bias [out]."""

    def __init__(self, in_features, out_features, bias=True, gain=1.0, lr_mul=1.0,
                 bias_init=0.0, fused_lrelu=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = gain / math.sqrt(in_features) * lr_mul
        self.lr_mul = lr_mul
        self.fused_lrelu = fused_lrelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        y = F.linear(x, self.weight * self.scale, bias)
        return F.leaky_relu(y, 0.2) * math.sqrt(2.0) if self.fused_lrelu else y


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (Karras et al. 2020, Eq. 1–3), as rosinality's
    ModulatedConv2d without up/down-sampling: s = modulation(w) (an equalized linear with
    bias 1), W'_b = scale · W · s_b, demodulated W''_b = W'_b / sqrt(Σ W'_b² + eps), and the
    per-sample convolutions run as one grouped convolution (groups = batch).
    Keys: weight [1, out, Cin, k, k], modulation.weight [Cin, style_dim], modulation.bias [Cin]."""

    def __init__(self, in_channels, out_channels, kernel_size, style_dim, demodulate=True,
                 eps=1e-8):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, gain=1.0, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.demodulate = demodulate
        self.eps = eps

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.modulation(style).view(b, 1, c, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(b, self.out_channels, 1, 1, 1)
        weight = weight.view(b * self.out_channels, c, self.kernel_size, self.kernel_size)
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, padding=self.padding, groups=b)
        return out.view(b, self.out_channels, out.shape[-2], out.shape[-1])
