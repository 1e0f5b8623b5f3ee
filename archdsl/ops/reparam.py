"""Structural re-parameterisation: the DiracNet convolution.

RepVGG and ACNet are compositions of plain convs and BNs (stdlib/blocks/repvgg.arch); what
cannot be written as a composition is a conv whose weight is itself a function of parameters,
DiracNet's. `archdsl.lower.deploy.deploy` folds it (and the RepVGG/ACNet branches) into one
plain conv with bias for inference.
"""
from __future__ import annotations

from typing import Literal, Union

from archdsl.ops.base import Attrs, pair, recipe, register
from archdsl.ops.conv import Conv, ConvAttrs, IntOrPair, conv_padding


class DiracConvAttrs(Attrs):
    out: int
    kernel: IntOrPair = 3
    stride: IntOrPair = 1
    pad: Union[IntOrPair, Literal["same", "auto"]] = "auto"
    dilation: IntOrPair = 1
    bias: bool = True
    alpha: float = 5.0    # initial a (diracnet.py initialises a = 5, b = 1e-3)
    beta: float = 1e-3    # initial b

    def conv(self) -> ConvAttrs:
        return ConvAttrs(out=self.out, kernel=self.kernel, stride=self.stride, pad=self.pad,
                         dilation=self.dilation, groups=1, bias=self.bias)


@register
class DiracConv(Conv):
    """Dirac-parameterised 2-d convolution (Zagoruyko & Komodakis, "DiracNets", 2017):
    y = conv2d(x, Ŵ) + bias with Ŵ = diag(a)·δ + diag(b)·W_norm, where W_norm normalises each
    output filter of W to unit L2 norm (over Cin·kh·kw), a and b are per-output-channel vectors
    and δ is the Dirac kernel: 1 at the kernel centre where o ≡ i (mod min(Cin, out)), else 0 —
    the identity when Cin == out, and [I I] when Cin == 2·out (DiracNet's NCReLU input), as the
    official `dirac_delta`.

    keys: weight [out, Cin, kh, kw], bias [out] (when bias=true), alpha [out], beta [out]; δ is a
    non-persistent buffer (`delta`, not in the state_dict: it depends on the shape alone).
    shape: as `conv` with groups=1: [B, Cin, H, W] → [B, out, (H + 2p - d(k-1) - 1) // s + 1, …]
    flops: as `conv`: 2 · B · out · Ho · Wo · Cin · kh · kw.
    other_flops: the bias add, B · out · Ho · Wo when bias=true. The weight transform
    (≈ 6 · out · Cin · kh · kw per forward: square, sum, divide, two scales, add) does not depend
    on the batch and is not included (other_flops counts per-activation work); `deploy` removes
    it altogether.
    """
    name = "dirac_conv"
    Attrs = DiracConvAttrs
    positional = ("out", "kernel", "stride", "pad")

    def infer(self, a, ins):
        return super().infer(a.conv(), ins)

    def params(self, a, ins):
        return {**super().params(a.conv(), ins), "alpha": (a.out,), "beta": (a.out,)}

    def flops(self, a, ins, out):
        return super().flops(a.conv(), ins, out)

    def build(self, a, ins):
        from archdsl.nn.reparam import DiracConv2d
        return recipe(DiracConv2d, ins[0][1], a.out, pair(a.kernel), pair(a.stride),
                      conv_padding(a.conv()), pair(a.dilation), a.bias, a.alpha, a.beta)
