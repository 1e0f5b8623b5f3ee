"""Convolution: dense, grouped, depthwise, pointwise, dilated, `pad='same'`."""
from __future__ import annotations

from typing import Literal, Union

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, numel, pair, register

IntOrPair = Union[int, tuple[int, int]]


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class ConvAttrs(Attrs):
    out: int
    kernel: IntOrPair = 1
    stride: IntOrPair = 1
    pad: Union[IntOrPair, Literal["same", "auto"]] = "auto"
    dilation: IntOrPair = 1
    groups: int = 1
    bias: bool = True


def conv_params(a, in_channels: int) -> dict:
    """weight [out, in / groups, kh, kw] (and bias [out]) of a 2-d conv with attrs `a`."""
    kh, kw = pair(a.kernel)
    p = {"weight": (a.out, in_channels // a.groups, kh, kw)}
    if a.bias:
        p["bias"] = (a.out,)
    return p


def conv_flops(a, in_channels: int, out) -> int:
    """2 · numel(out) · (in / groups) · kh · kw: FlopCounterMode's count for a 2-d conv."""
    kh, kw = pair(a.kernel)
    return 2 * numel(out) * (in_channels // a.groups) * kh * kw


def conv_padding(a: ConvAttrs) -> tuple[int, int]:
    """'auto' keeps the size at stride 1: ((s - 1) + d (k - 1)) // 2, as timm's get_padding."""
    k, s, d = pair(a.kernel), pair(a.stride), pair(a.dilation)
    if a.pad == "auto":
        return tuple(((s[i] - 1) + d[i] * (k[i] - 1)) // 2 for i in range(2))
    if a.pad == "same":
        if s != (1, 1):
            raise ShapeError("pad='same' needs stride 1", hint="use pad='auto' or an explicit pad")
        if any((d[i] * (k[i] - 1)) % 2 for i in range(2)):
            raise ShapeError("pad='same' needs an odd effective kernel size",
                             hint="give an explicit pad")
        return tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
    return pair(a.pad)


@register
class Conv(Op):
    """2-d convolution. Only the output channels are written; input channels come from shape.

    shape: [B, Cin, H, W] → [B, out, (H + 2p - d(k-1) - 1) // s + 1, …]
    flops: 2 · B · out · Ho · Wo · (Cin / groups) · kh · kw (bias adds are not counted, as
    FlopCounterMode); other_flops: the bias add, B · out · Ho · Wo when bias=true.
    """
    name = "conv"
    Attrs = ConvAttrs
    positional = ("out", "kernel", "stride", "pad")

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, "conv")
        if a.out <= 0 or a.groups <= 0:
            raise ShapeError(f"conv needs out > 0 and groups > 0, got out={a.out}, groups={a.groups}")
        if c % a.groups or a.out % a.groups:
            raise ShapeError(f"conv groups={a.groups} must divide input channels ({c}) and "
                             f"output channels ({a.out})")
        (kh, kw), (sh, sw), (dh, dw) = pair(a.kernel), pair(a.stride), pair(a.dilation)
        if min(kh, kw, sh, sw, dh, dw) <= 0:
            raise ShapeError("conv kernel, stride and dilation must be positive")
        ph, pw = conv_padding(a)
        if min(ph, pw) < 0:
            raise ShapeError(f"conv padding must be non-negative, got {[ph, pw]}")
        ho, wo = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"conv kernel {kh}x{kw} (dilation {dh}) with padding {ph} is larger "
                             f"than the {h}x{w} input", hint="use a smaller kernel or a larger input")
        return (b, a.out, ho, wo)

    def params(self, a, ins):
        return conv_params(a, ins[0][1])

    def flops(self, a, ins, out):
        return conv_flops(a, ins[0][1], out)

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def window(self, a):
        return (pair(a.kernel)[0], pair(a.stride)[0], pair(a.dilation)[0])

    def build(self, a, ins):
        from torch import nn
        return nn.Conv2d(ins[0][1], a.out, pair(a.kernel), pair(a.stride), conv_padding(a),
                         pair(a.dilation), a.groups, a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
