"""nn.Modules for the special convolutions (archdsl/ops/conv_special.py) that torch lacks.

Each class is self-contained (it uses only `torch`, `torch.nn.functional as F` and `nn`), so the
standalone source writer can copy it verbatim; `init_args` holds its constructor arguments.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DeformConv2d(nn.Module):
    """Deformable convolution v1 (Dai et al. 2017) and, given a mask, v2 (Zhu et al. 2019).

    forward(x, offset, mask=None): x [B, C, H, W], offset [B, 2·og·kh·kw, Ho, Wo], mask
    [B, og·kh·kw, Ho, Wo] → [B, out, Ho, Wo]. The layout and the bilinear sampling are those of
    `torchvision.ops.deform_conv2d`: for offset group g and tap k = i·kw + j, channel
    2·(g·kh·kw + k) of `offset` is the row offset and the next one the column offset; the tap
    samples x at (ho·sh − ph + i·dh + dy, wo·sw − pw + j·dw + dx) bilinearly, points with
    y <= −1, y >= H, x <= −1 or x >= W give 0, and corners outside the image count as 0.

    Vectorised: four gathers (one per bilinear corner) build the sampled columns
    [B, C·kh·kw, Ho·Wo] and one (grouped, batched) matmul with the weight gives the output.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, offset_groups: int = 1, bias: bool = True):
        super().__init__()

        def two(v):
            return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))

        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = two(kernel_size), two(stride)
        self.padding, self.dilation = two(padding), two(dilation)
        self.groups, self.offset_groups = groups, offset_groups
        self.init_args = dict(in_channels=in_channels, out_channels=out_channels,
                              kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                              dilation=self.dilation, groups=groups, offset_groups=offset_groups,
                              bias=bias)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # as nn.Conv2d (and torchvision's DeformConv2d)
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        if self.bias is not None:
            fan_in = self.weight[0].numel()
            bound = 1 / fan_in ** 0.5 if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        (ph, pw), (dh, dw) = self.padding, self.dilation
        og, ho, wo = self.offset_groups, offset.shape[-2], offset.shape[-1]
        k = kh * kw
        n = k * ho * wo
        opts = dict(device=x.device, dtype=x.dtype)
        # sampling positions [B, og, K, Ho, Wo]
        off = offset.reshape(b, og, k, 2, ho, wo)
        tap_y = (torch.arange(kh, **opts) * dh).repeat_interleave(kw).view(1, 1, k, 1, 1)
        tap_x = (torch.arange(kw, **opts) * dw).repeat(kh).view(1, 1, k, 1, 1)
        py = (torch.arange(ho, **opts) * sh - ph).view(1, 1, 1, ho, 1) + tap_y + off[:, :, :, 0]
        px = (torch.arange(wo, **opts) * sw - pw).view(1, 1, 1, 1, wo) + tap_x + off[:, :, :, 1]
        inside = (py > -1) & (py < h) & (px > -1) & (px < w)
        y0, x0 = py.floor(), px.floor()
        ly, lx = py - y0, px - x0
        hy, hx = 1 - ly, 1 - lx
        y0, x0 = y0.long(), x0.long()
        flat = x.reshape(b, og, c // og, h * w)
        cols = x.new_zeros(())
        for dy, dx, weight in ((0, 0, hy * hx), (0, 1, hy * lx), (1, 0, ly * hx), (1, 1, ly * lx)):
            yy, xx = y0 + dy, x0 + dx
            valid = inside & (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            index = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).reshape(b, og, 1, n)
            taps = flat.gather(3, index.expand(b, og, c // og, n))
            cols = cols + taps * (weight * valid).reshape(b, og, 1, n)
        if mask is not None:
            cols = cols * mask.reshape(b, og, 1, n)
        # [B, og, C/og, K·Ho·Wo] → [B, groups, (C/groups)·K, Ho·Wo]
        g = self.groups
        cols = cols.reshape(b, g, (c // g) * k, ho * wo)
        out = torch.matmul(self.weight.reshape(g, self.out_channels // g, (c // g) * k), cols)
        out = out.reshape(b, self.out_channels, ho, wo)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.init_args.items())


class FourierUnit(nn.Module):
    """The Fourier unit of Fast Fourier Convolution (Chi, Jiang, Mu; NeurIPS 2020).

    rfft2 over (H, W) with norm="ortho" → real and imaginary parts stacked into channels
    (interleaved: 2c is the real part of channel c, 2c + 1 its imaginary part, as the reference
    code's permute) → 1x1 conv `conv_layer` (no bias) → BN `bn` → ReLU → back to complex →
    irfft2 to the input's H x W. Keys as the reference FourierUnit: conv_layer, bn.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1):
        super().__init__()
        self.init_args = dict(in_channels=in_channels, out_channels=out_channels, groups=groups)
        self.conv_layer = nn.Conv2d(in_channels * 2, out_channels * 2, kernel_size=1, groups=groups,
                                    bias=False)
        self.bn = nn.BatchNorm2d(out_channels * 2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ff = torch.fft.rfft2(x, norm="ortho")                      # [B, C, H, W//2+1] complex
        ff = torch.stack((ff.real, ff.imag), dim=2).reshape(b, 2 * c, h, ff.shape[-1])
        ff = self.relu(self.bn(self.conv_layer(ff)))
        ff = ff.reshape(b, -1, 2, h, ff.shape[-1])
        return torch.fft.irfft2(torch.complex(ff[:, :, 0], ff[:, :, 1]), s=(h, w), norm="ortho")

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.init_args.items())


class DynamicConv2d(nn.Module):
    """Dynamic convolution (Chen et al., CVPR 2020): K kernels mixed per sample by attention.

    forward(x, attn): x [B, C, H, W], attn [B, K] (softmax weights, computed by the caller) →
    [B, out, Ho, Wo]. The per-sample kernel Σ_k attn[b, k] · weight[k] is one mm, and the B
    per-sample convolutions run as one grouped conv with the batch folded into the groups (the
    reference implementation's trick). Keys as the reference `Dynamic_conv2d`: weight, bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, num_kernels: int, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True):
        super().__init__()

        def two(v):
            return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))

        self.in_channels, self.out_channels, self.num_kernels = in_channels, out_channels, num_kernels
        self.kernel_size, self.stride = two(kernel_size), two(stride)
        self.padding, self.dilation, self.groups = two(padding), two(dilation), groups
        self.init_args = dict(in_channels=in_channels, out_channels=out_channels,
                              kernel_size=self.kernel_size, num_kernels=num_kernels, stride=self.stride,
                              padding=self.padding, dilation=self.dilation, groups=groups, bias=bias)
        self.weight = nn.Parameter(torch.empty(num_kernels, out_channels, in_channels // groups,
                                               *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(num_kernels, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for k in range(self.num_kernels):  # each kernel as an nn.Conv2d weight
            nn.init.kaiming_uniform_(self.weight.data[k], a=5 ** 0.5)
        if self.bias is not None:
            fan_in = self.weight[0, 0].numel()
            bound = 1 / fan_in ** 0.5 if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kh, kw = self.kernel_size
        weight = torch.mm(attn, self.weight.reshape(self.num_kernels, -1))
        weight = weight.reshape(b * self.out_channels, c // self.groups, kh, kw)
        bias = torch.mm(attn, self.bias).reshape(-1) if self.bias is not None else None
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, bias, self.stride, self.padding,
                       self.dilation, self.groups * b)
        return out.reshape(b, self.out_channels, out.shape[-2], out.shape[-1])

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.init_args.items())
