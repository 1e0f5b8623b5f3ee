"""Pooling: max, average, adaptive, global, blur (anti-aliased); `mean` over chosen dims.

other_flops: a window op costs one per window element per output element (numel(out) · k²);
adaptive and global pooling and `mean` cost one per input element.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from archdsl.ops.base import (Attrs, Op, ShapeError, expect_rank, norm_dim, numel, pair,
                              position_dims, recipe, register)

IntOrPair = Union[int, tuple[int, int]]


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p:  # the last window must start inside the input
        out -= 1
    return out


class PoolAttrs(Attrs):
    kernel: IntOrPair
    stride: Optional[IntOrPair] = None
    pad: IntOrPair = 0
    dilation: IntOrPair = 1
    ceil: bool = False
    count_include_pad: bool = True


class _WindowPool(Op):
    Attrs = PoolAttrs
    positional = ("kernel", "stride", "pad")

    def _geom(self, a):
        k = pair(a.kernel)
        s = pair(a.stride) if a.stride is not None else k
        return k, s, pair(a.pad), pair(a.dilation)

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, self.name)
        k, s, p, d = self._geom(a)
        if min(*k, *s, *d) <= 0:
            raise ShapeError(f"{self.name} kernel, stride and dilation must be positive")
        if min(p) < 0:
            raise ShapeError(f"{self.name} padding must be non-negative, got {list(p)}")
        if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
            raise ShapeError(f"{self.name} padding {list(p)} must be at most half the kernel {list(k)}")
        ho = _pool_out(h, k[0], s[0], p[0], d[0], a.ceil)
        wo = _pool_out(w, k[1], s[1], p[1], d[1], a.ceil)
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"{self.name} window {k[0]}x{k[1]} is larger than the {h}x{w} input",
                             hint="use a smaller kernel or a larger input")
        return (b, c, ho, wo)

    def other_flops(self, a, ins, out):
        k = pair(a.kernel)
        return numel(out) * k[0] * k[1]

    def window(self, a):
        k, s, _, d = self._geom(a)
        return (k[0], s[0], d[0])


@register
class MaxPool(_WindowPool):
    """Max pooling over [B, C, H, W]; stride defaults to the kernel."""
    name = "maxpool"

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        k, s, p, d = self._geom(a)
        return fx.call(F.max_pool2d, args[0], k, s, p, d, ceil_mode=a.ceil)


@register
class AvgPool(_WindowPool):
    """Average pooling over [B, C, H, W]; stride defaults to the kernel."""
    name = "avgpool"

    def infer(self, a, ins):
        if pair(a.dilation) != (1, 1):
            raise ShapeError("avgpool has no dilation")
        return super().infer(a, ins)

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        k, s, p, _ = self._geom(a)
        return fx.call(F.avg_pool2d, args[0], k, s, p, ceil_mode=a.ceil,
                       count_include_pad=a.count_include_pad)


class AdaptiveAttrs(Attrs):
    size: IntOrPair = 1


class _Adaptive(Op):
    Attrs = AdaptiveAttrs
    positional = ("size",)
    fn_name = ""

    def infer(self, a, ins):
        b, c, _, _ = expect_rank(ins, {4}, self.name)
        oh, ow = pair(a.size)
        if oh <= 0 or ow <= 0:
            raise ShapeError(f"{self.name} output size must be positive")
        return (b, c, oh, ow)

    def other_flops(self, a, ins, out):
        return numel(ins[0])

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        return fx.call(getattr(F, self.fn_name), args[0], pair(a.size))


@register
class AdaptiveAvgPool(_Adaptive):
    """Adaptive average pooling to a fixed output size."""
    name = "adaptive_avgpool"
    fn_name = "adaptive_avg_pool2d"


@register
class AdaptiveMaxPool(_Adaptive):
    """Adaptive max pooling to a fixed output size."""
    name = "adaptive_maxpool"
    fn_name = "adaptive_max_pool2d"


class GlobalAttrs(Attrs):
    keepdim: bool = False


@register
class GlobalAvgPool(Op):
    """Mean over all spatial dims: [B, C, *S] → [B, C] (or [B, C, 1, …] with keepdim)."""
    name = "global_avgpool"
    Attrs = GlobalAttrs
    positional = ("keepdim",)

    def receptive(self, a, ins, f):
        return f.mixed()

    def infer(self, a, ins):
        x = ins[0]
        if len(x) < 3:
            raise ShapeError(f"{self.name} expects [B, C, spatial...], got {list(x)}")
        return (*x[:2], *([1] * (len(x) - 2))) if a.keepdim else x[:2]

    def other_flops(self, a, ins, out):
        return numel(ins[0])

    def emit(self, a, ins, fx, args):
        dims = tuple(range(2, len(ins[0])))
        return fx.method("mean", args[0], dims, keepdim=a.keepdim)


@register
class GlobalMaxPool(GlobalAvgPool):
    """Max over all spatial dims: [B, C, *S] → [B, C] (or keepdim)."""
    name = "global_maxpool"

    def emit(self, a, ins, fx, args):
        dims = tuple(range(2, len(ins[0])))
        return fx.method("amax", args[0], dims, keepdim=a.keepdim)


class MeanAttrs(Attrs):
    dims: Union[int, list[int]]
    keepdim: bool = False


@register
class Mean(Op):
    """Mean over `dims`."""
    name = "mean"
    Attrs = MeanAttrs
    positional = ("dims", "keepdim")

    def _dims(self, a, rank):
        dims = [a.dims] if isinstance(a.dims, int) else list(a.dims)
        if not dims:  # torch reads an empty dim list as "every dim"
            raise ShapeError("mean needs at least one dim", hint="list the dims: `mean(dims=[2, 3])`")
        out = sorted({norm_dim(d, rank) for d in dims})
        if len(out) != len(dims):
            raise ShapeError(f"mean dims {dims} repeat a dim")
        return out

    def infer(self, a, ins):
        x = ins[0]
        dims = self._dims(a, len(x))
        if a.keepdim:
            return tuple(1 if i in dims else s for i, s in enumerate(x))
        return tuple(s for i, s in enumerate(x) if i not in dims)

    def other_flops(self, a, ins, out):
        return numel(ins[0])

    def receptive(self, a, ins, f):
        rank = len(ins[0])
        return f.mixed() if set(self._dims(a, rank)) & position_dims(rank) else f

    def emit(self, a, ins, fx, args):
        return fx.method("mean", args[0], tuple(self._dims(a, len(ins[0]))), keepdim=a.keepdim)



class BlurPoolAttrs(Attrs):
    kernel: int = 3
    stride: int = 2
    pad_mode: Literal["reflect", "constant"] = "reflect"


@register
class BlurPool(Op):
    """Anti-aliased downsampling (Zhang, "Making Convolutional Networks Shift-Invariant Again",
    ICML 2019; timm's BlurPool2d): each channel is padded by ((stride - 1) + (kernel - 1)) // 2 on
    every side (`pad_mode` "reflect", or "constant" zeros as timm's "blurpc"), then convolved
    with the fixed binomial filter b·bᵀ, b_k = C(kernel - 1, k) / 2^(kernel - 1), at `stride`.
    The filter is a non-persistent buffer: no state_dict key. flops: the depthwise conv's,
    2 · numel(out) · kernel² (FlopCounterMode counts it); padding is data movement."""
    name = "blur_pool"
    Attrs = BlurPoolAttrs
    positional = ("kernel", "stride")

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, self.name)
        if a.kernel < 2 or a.stride < 1:
            raise ShapeError(f"blur_pool needs kernel >= 2 and stride >= 1, got kernel={a.kernel} "
                             f"stride={a.stride}")
        if min(c, h, w) < 1:
            raise ShapeError(f"blur_pool needs channels and pixels, got shape {list(ins[0])}")
        p = blur_padding(a)
        if a.pad_mode == "reflect" and min(h, w) <= p:
            raise ShapeError(f"blur_pool reflect-pads {p} on each side: the {h}x{w} input must be "
                             f"larger than {p}", hint="use pad_mode=\"constant\" or a larger input")
        if min(h, w) + 2 * p < a.kernel:
            raise ShapeError(f"blur_pool's {a.kernel}x{a.kernel} filter is larger than the {h}x{w} "
                             f"input padded by {p}", hint="use a smaller kernel or a larger input")
        return (b, c, *((n + 2 * p - a.kernel) // a.stride + 1 for n in (h, w)))

    def flops(self, a, ins, out):
        return 2 * numel(out) * a.kernel ** 2

    def other_flops(self, a, ins, out):
        return 0

    def window(self, a):
        return (a.kernel, a.stride, 1)

    def build(self, a, ins):
        from archdsl.nn.pool import BlurPool2d
        return recipe(BlurPool2d, ins[0][1], a.kernel, a.stride, blur_padding(a), a.pad_mode)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


def blur_padding(a: BlurPoolAttrs) -> int:
    return (a.stride - 1 + a.kernel - 1) // 2
