"""nn.Modules for the normalisation-and-scaling ops (archdsl/ops/scaled.py, norm_gan.py).

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


class NoiseInjection(nn.Module):
    """StyleGAN noise input: x + weight · noise, noise [B, 1, H, W] ~ N(0, 1) drawn per call
    unless given. Key: weight, [1, C, 1, 1] per channel (StyleGAN, rosinality's
    style-based-gan-pytorch) or [1] shared (StyleGAN2), initialised to 0."""

    def __init__(self, channels: int, per_channel: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, channels, 1, 1) if per_channel else torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = x.shape
            noise = x.new_empty(b, 1, h, w).normal_()
        return x + self.weight * noise


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (ProGAN, StyleGAN2's `minibatch_stddev_layer`, rosinality's
    form): the std over groups of min(group_size, B) samples, averaged over each of `features`
    channel groups and all positions, appended as `features` constant feature maps."""

    def __init__(self, group_size: int = 4, features: int = 1, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.features, self.eps = group_size, features, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(b, self.group_size)
        y = x.view(g, -1, self.features, c // self.features, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + self.eps)
        y = y.mean([2, 3, 4], keepdim=True).squeeze(2)
        y = y.repeat(g, 1, h, w)
        return torch.cat([x, y], 1)


class ConditionalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Class-conditional batch norm (de Vries et al. 2017; Miyato & Koyama 2018): batch norm
    without affine, then gamma[y] · x̂ + beta[y] from per-class embeddings. Keys as
    crcrpar/pytorch.sngan_projection's CategoricalConditionalBatchNorm: running_mean,
    running_var, num_batches_tracked, weights.weight [classes, C] (init 1), biases.weight
    [classes, C] (init 0)."""

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=False)
        self.weights = nn.Embedding(num_classes, num_features)
        self.biases = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.weights.weight)
        nn.init.zeros_(self.biases.weight)

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least a 2-d input, got {x.dim()}-d")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        shape = (x.shape[0], self.num_features) + (1,) * (x.dim() - 2)
        return self.weights(y).view(shape) * out + self.biases(y).view(shape)
