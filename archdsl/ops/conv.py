"""Convolution: dense, grouped, depthwise, pointwise, dilated, `pad='same'`; 2-d, and 1-d / 3-d."""
from __future__ import annotations

import math
from typing import Generic, Literal, TypeVar, Union

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, numel, pair, register

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
        """Checks and the output shape; subclasses (ws_conv, eq_conv, sn_conv, dirac_conv) reuse
        it, so its messages carry the op's own name."""
        name = self.name
        b, c, h, w = expect_rank(ins, {4}, name)
        if a.out <= 0 or a.groups <= 0:
            raise ShapeError(f"{name} needs out > 0 and groups > 0, got out={a.out}, groups={a.groups}")
        if c % a.groups or a.out % a.groups:
            raise ShapeError(f"{name} groups={a.groups} must divide input channels ({c}) and "
                             f"output channels ({a.out})")
        (kh, kw), (sh, sw), (dh, dw) = pair(a.kernel), pair(a.stride), pair(a.dilation)
        if min(kh, kw, sh, sw, dh, dw) <= 0:
            raise ShapeError(f"{name} kernel, stride and dilation must be positive")
        ph, pw = conv_padding(a)
        if min(ph, pw) < 0:
            raise ShapeError(f"{name} padding must be non-negative, got {[ph, pw]}")
        ho, wo = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"{name} kernel {kh}x{kw} (dilation {dh}) with padding {ph} is larger "
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


# ---------------------------------------------------------------------------------------------
# 1-d and 3-d convolution (ECA's channel conv, the lambda layer's position lambdas)

def _ntuple(v, n: int, what: str) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)):
        if len(v) != n:
            raise ShapeError(f"{what}: expected one value or {n}, got {list(v)}")
        return tuple(int(x) for x in v)
    return (int(v),) * n


class _ConvNd(Op):
    """Shared rules of conv1d / conv3d; `rank` spatial dims."""
    rank = 1
    positional = ("out", "kernel", "stride", "pad")

    def _geom(self, a):
        n = self.rank
        k = _ntuple(a.kernel, n, self.name)
        s = _ntuple(a.stride, n, self.name)
        d = _ntuple(a.dilation, n, self.name)
        if a.pad == "auto":
            p = tuple(((s[i] - 1) + d[i] * (k[i] - 1)) // 2 for i in range(n))
        elif a.pad == "same":
            if any(x != 1 for x in s):
                raise ShapeError(f"{self.name} pad='same' needs stride 1",
                                 hint="use pad='auto' or an explicit pad")
            if any((d[i] * (k[i] - 1)) % 2 for i in range(n)):
                raise ShapeError(f"{self.name} pad='same' needs an odd effective kernel size",
                                 hint="give an explicit pad")
            p = tuple(d[i] * (k[i] - 1) // 2 for i in range(n))
        else:
            p = _ntuple(a.pad, n, self.name)
        return k, s, p, d

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != self.rank + 2:
            raise ShapeError(f"{self.name} expects a rank-{self.rank + 2} input [B, C, …], "
                             f"got {list(x)}")
        b, c = x[:2]
        if a.out <= 0 or a.groups <= 0:
            raise ShapeError(f"{self.name} needs out > 0 and groups > 0, got out={a.out}, "
                             f"groups={a.groups}")
        if c % a.groups or a.out % a.groups:
            raise ShapeError(f"{self.name} groups={a.groups} must divide input channels ({c}) and "
                             f"output channels ({a.out})")
        k, s, p, d = self._geom(a)
        if min(*k, *s, *d) <= 0:
            raise ShapeError(f"{self.name} kernel, stride and dilation must be positive")
        if min(p) < 0:
            raise ShapeError(f"{self.name} padding must be non-negative, got {list(p)}")
        sizes = tuple(conv_out(x[2 + i], k[i], s[i], p[i], d[i]) for i in range(self.rank))
        if min(sizes) <= 0:
            raise ShapeError(f"{self.name} kernel {list(k)} (dilation {list(d)}, padding "
                             f"{list(p)}) is larger than the input {list(x[2:])}",
                             hint="use a smaller kernel or a larger input")
        return (b, a.out, *sizes)

    def params(self, a, ins):
        k, _, _, _ = self._geom(a)
        p = {"weight": (a.out, ins[0][1] // a.groups, *k)}
        if a.bias:
            p["bias"] = (a.out,)
        return p

    def flops(self, a, ins, out):
        k, _, _, _ = self._geom(a)
        return 2 * numel(out) * (ins[0][1] // a.groups) * math.prod(k)

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def window(self, a):
        k, s, _, d = self._geom(a)
        return (k[0], s[0], d[0])

    def build(self, a, ins):
        from torch import nn
        k, s, p, d = self._geom(a)
        cls = nn.Conv1d if self.rank == 1 else nn.Conv3d
        sq = (lambda t: t[0]) if self.rank == 1 else (lambda t: t)
        return cls(ins[0][1], a.out, sq(k), sq(s), sq(p), sq(d), a.groups, a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


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
