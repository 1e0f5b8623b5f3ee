"""nn.Modules for the GAN normalisation and noise ops (archdsl/ops/norm_gan.py): noise
injection, minibatch standard deviation and class-conditional batch norm.

Each class depends on torch alone, so its source can be copied into a standalone file. Parameter
names follow the reference implementation named on each class.
"""
from __future__ import annotations

import torch
from torch import nn


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
