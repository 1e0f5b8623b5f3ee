"""Convolution: dense, grouped, depthwise, pointwise, dilated, `pad='same'`; 2-d, and 1-d / 3-d."""
from __future__ import annotations

import math
from typing import Generic, Literal, TypeVar, Union

from archdsl.ops.base import Attrs, Op, ShapeError, ntuple, numel, recipe, register

IntOrPair = Union[int, tuple[int, int]]
Triple = Union[int, tuple[int, int, int]]
Size = TypeVar("Size")   # one size per spatial dim, or one for all: int, IntOrPair, Triple


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


class ConvNdAttrs(Attrs, Generic[Size]):
    """What every convolution takes; conv, conv1d and conv3d differ in the type of a size."""
    out: int
    kernel: Size = 1
    stride: Size = 1
    pad: Union[Size, Literal["same", "auto"]] = "auto"
    dilation: Size = 1
    groups: int = 1
    bias: bool = True


class ConvAttrs(ConvNdAttrs[IntOrPair]):
    pass


def conv_geometry(a, rank: int = 2, name: str = "conv"):
    """(kernel, stride, padding, dilation), one value per spatial dim, of a rank-d conv's attrs.
    pad 'auto' keeps the size at stride 1, ((s - 1) + d (k - 1)) // 2 as timm's get_padding;
    'same' needs stride 1 and an odd effective kernel."""
    k, s, d = (ntuple(v, rank, name) for v in (a.kernel, a.stride, a.dilation))
    if min(*k, *s, *d) <= 0:
        raise ShapeError(f"{name} kernel, stride and dilation must be positive")
    if a.pad == "auto":
        p = tuple(((s[i] - 1) + d[i] * (k[i] - 1)) // 2 for i in range(rank))
    elif a.pad == "same":
        if any(x != 1 for x in s):
            raise ShapeError(f"{name} pad='same' needs stride 1", hint="use pad='auto' or an explicit pad")
        if any((d[i] * (k[i] - 1)) % 2 for i in range(rank)):
            raise ShapeError(f"{name} pad='same' needs an odd effective kernel size",
                             hint="give an explicit pad")
        p = tuple(d[i] * (k[i] - 1) // 2 for i in range(rank))
    else:
        p = ntuple(a.pad, rank, name)
    if min(p) < 0:
        raise ShapeError(f"{name} padding must be non-negative, got {list(p)}")
    return k, s, p, d


def conv_padding(a) -> tuple[int, int]:
    """The (ph, pw) padding of a 2-d conv's attributes (see conv_geometry)."""
    return conv_geometry(a)[2]


def conv_params(a, in_channels: int, rank: int = 2) -> dict:
    """weight [out, in / groups, *kernel] (and bias [out]) of a conv with attrs `a`."""
    k = ntuple(a.kernel, rank, "conv")
    p = {"weight": (a.out, in_channels // a.groups, *k)}
    if a.bias:
        p["bias"] = (a.out,)
    return p


def conv_flops(a, in_channels: int, out, rank: int = 2) -> int:
    """2 · numel(out) · (in / groups) · prod(kernel): FlopCounterMode's count for a conv."""
    return 2 * numel(out) * (in_channels // a.groups) * math.prod(ntuple(a.kernel, rank, "conv"))


def _by(v) -> str:
    return "x".join(map(str, v))


def _one_or_by(v) -> str:
    return str(v[0]) if len(set(v)) == 1 else _by(v)


class _ConvNd(Op):
    """The rules every convolution shares, over `rank` spatial dims; subclasses (ws_conv,
    eq_conv, sn_conv, dirac_conv) reuse them, so the messages carry the op's own name."""
    rank = 2
    positional = ("out", "kernel", "stride", "pad")

    def infer(self, a, ins):
        name, x = self.name, ins[0]
        if len(x) != self.rank + 2:
            raise ShapeError(f"{name} expects a rank-{self.rank + 2} input [B, C, …], got shape {list(x)}")
        b, c = x[:2]
        if a.out <= 0 or a.groups <= 0:
            raise ShapeError(f"{name} needs out > 0 and groups > 0, got out={a.out}, groups={a.groups}")
        if c % a.groups or a.out % a.groups:
            raise ShapeError(f"{name} groups={a.groups} must divide input channels ({c}) and "
                             f"output channels ({a.out})")
        k, s, p, d = conv_geometry(a, self.rank, name)
        sizes = tuple(conv_out(x[2 + i], k[i], s[i], p[i], d[i]) for i in range(self.rank))
        if min(sizes) <= 0:
            raise ShapeError(f"{name} kernel {_by(k)} (dilation {_one_or_by(d)}) with padding "
                             f"{_one_or_by(p)} is larger than the {_by(x[2:])} input",
                             hint="use a smaller kernel or a larger input")
        return (b, a.out, *sizes)

    def params(self, a, ins):
        return conv_params(a, ins[0][1], self.rank)

    def flops(self, a, ins, out):
        return conv_flops(a, ins[0][1], out, self.rank)

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def window(self, a):
        k, s, _, d = conv_geometry(a, self.rank, self.name)
        return (k[0], s[0], d[0])

    def build(self, a, ins):
        from torch import nn
        k, s, p, d = conv_geometry(a, self.rank, self.name)
        cls = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[self.rank]
        return recipe(cls, ins[0][1], a.out, k, s, p, d, a.groups, a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


@register
class Conv(_ConvNd):
    """2-d convolution. Only the output channels are written; input channels come from shape.

    shape: [B, Cin, H, W] → [B, out, (H + 2p - d(k-1) - 1) // s + 1, …]
    flops: 2 · B · out · Ho · Wo · (Cin / groups) · kh · kw (bias adds are not counted, as
    FlopCounterMode); other_flops: the bias add, B · out · Ho · Wo when bias=true.
    """
    name = "conv"
    Attrs = ConvAttrs
    rank = 2


@register
class Conv1d(_ConvNd):
    """1-d convolution over [B, Cin, L] (ECA's conv across channels). Only `out` is written.

    shape: [B, Cin, L] → [B, out, (L + 2p - d(k-1) - 1) // s + 1]; pad 'auto' keeps L at
    stride 1 (((s - 1) + d (k - 1)) // 2, as conv).
    flops: 2 · B · out · Lo · (Cin / groups) · k; other_flops: the bias add, B · out · Lo.
    """
    name = "conv1d"
    Attrs = ConvNdAttrs[int]
    rank = 1


@register
class Conv3d(_ConvNd):
    """3-d convolution over [B, Cin, D, H, W] (the lambda layer's local position lambdas:
    timm's `conv_lambda`, kernel [r, r, 1]). Only `out` is written.

    shape: [B, Cin, D, H, W] → [B, out, Do, Ho, Wo], each as conv.
    flops: 2 · numel(out) · (Cin / groups) · kd · kh · kw; other_flops: the bias add,
    numel(out).
    """
    name = "conv3d"
    Attrs = ConvNdAttrs[Triple]
    rank = 3
