"""Spatial resampling: spatial transformer sampling (affine grid + grid sample) and its identity-
initialised regressor, pixel shuffle / unshuffle, upsampling (interpolate) and padding.

Channel split (ShuffleNet v2) needs no op of its own: `split([C/2, C/2], dim=1)` or `chunk(2)`
(archdsl/ops/tensor.py) are multi-output and index as `parts[0]`, `parts[1]`.

other_flops: 0 for pure data movement (pixel_shuffle, pixel_unshuffle, pad); the sampling ops
state their formulas (FlopCounterMode counts none of affine_grid, grid_sample or interpolate).
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Union

from archdsl.nn.rules import same_pads
from archdsl.ops.base import (Attrs, NoAttrs, Op, ShapeError, expect_rank, ntuple, numel, pair,
                              recipe, register)

IntOrPair = Union[int, tuple[int, int]]
FloatOrPair = Union[float, tuple[float, float]]


class GridSampleAttrs(Attrs):
    out_size: Optional[IntOrPair] = None
    mode: Literal["bilinear", "nearest"] = "bilinear"
    padding: Literal["zeros", "border", "reflection"] = "zeros"
    align_corners: bool = False


# per output location / per output element work of grid sampling (see AffineGridSample)
_GRID_COORDS = 12                       # affine_grid: 2 coordinates × 3 multiply-adds
_SAMPLE_LOC = {"bilinear": 16, "nearest": 6}
_SAMPLE_ELEM = {"bilinear": 7, "nearest": 0}


@register
class AffineGridSample(Op):
    """Spatial transformer sampling (Jaderberg et al. 2015): inputs x [B, C, H, W] and theta
    [B, 2, 3] → [B, C, Ho, Wo] = F.grid_sample(x, F.affine_grid(theta, [B, C, Ho, Wo],
    align_corners), mode, padding_mode=padding, align_corners); `out_size` [Ho, Wo] defaults to
    [H, W]. other_flops (FlopCounterMode counts none of it), per output location (B·Ho·Wo):
    12 for the affine grid (2 coordinates × 3 multiply-adds), plus for bilinear 16 (un-normalise two
    coordinates: 4; four corner weights: 3 each) and 7 per output element (B·C·Ho·Wo: 4 multiplies,
    3 adds); for nearest 6 per location (un-normalise and round) and 0 per element (a gather).
    The clamping/reflection of border and reflection padding is not counted."""
    name = "affine_grid_sample"
    Attrs = GridSampleAttrs
    positional = ("out_size",)
    n_inputs = 2

    def _out(self, a, ins):
        x, theta = ins
        if len(x) != 4:
            raise ShapeError(f"affine_grid_sample expects x [B, C, H, W], got {list(x)}")
        if tuple(theta) != (x[0], 2, 3):
            raise ShapeError(f"affine_grid_sample expects theta [{x[0]}, 2, 3] for x {list(x)}, "
                             f"got {list(theta)}")
        ho, wo = pair(a.out_size) if a.out_size is not None else x[2:]
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"affine_grid_sample out_size must be positive, got {[ho, wo]}")
        return x[0], x[1], ho, wo

    def infer(self, a, ins):
        return self._out(a, ins)

    def other_flops(self, a, ins, out):
        b, c, ho, wo = out
        loc = b * ho * wo
        return loc * (_GRID_COORDS + _SAMPLE_LOC[a.mode]) + loc * c * _SAMPLE_ELEM[a.mode]

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        x, theta = args
        _, c, ho, wo = self._out(a, ins)
        grid = fx.call(F.affine_grid, theta, [fx.method("size", theta, 0), c, ho, wo],
                       align_corners=a.align_corners)
        return fx.call(F.grid_sample, x, grid, mode=a.mode, padding_mode=a.padding,
                       align_corners=a.align_corners)


@register
class AffineHead(Op):
    """The spatial transformer's regression layer: a linear layer to 6 numbers initialised to the
    identity transform (zero weight, bias [1, 0, 0, 0, 1, 0], Jaderberg et al. 2015; PyTorch's STN
    tutorial `fc_loc[2]`), reshaped to theta: [B, F] → [B, 2, 3]. Parameters `weight` [6, F] and
    `bias` [6] (an nn.Linear; an op because the language's `linear` has no initialiser argument).
    flops: 2·B·F·6 (addmm); other_flops: 6·B (the bias add)."""
    name = "affine_head"
    Attrs = NoAttrs

    def infer(self, a, ins):
        b, f = expect_rank(ins, {2}, "affine_head")
        return (b, 2, 3)

    def params(self, a, ins):
        return {"weight": (6, ins[0][1]), "bias": (6,)}

    def flops(self, a, ins, out):
        return 2 * ins[0][0] * ins[0][1] * 6

    def other_flops(self, a, ins, out):
        return 6 * ins[0][0]

    def build(self, a, ins):
        from archdsl.nn.spatial import IdentityAffineLinear
        return recipe(IdentityAffineLinear, ins[0][1])

    def emit(self, a, ins, fx, args):
        return fx.method("reshape", fx.module(args[0]), -1, 2, 3)


class FactorAttrs(Attrs):
    factor: int


@register
class PixelShuffle(Op):
    """Sub-pixel convolution's rearrangement (Shi et al. 2016), F.pixel_shuffle:
    [..., C·r², H, W] → [..., C, H·r, W·r]. other_flops: 0 (data movement)."""
    name = "pixel_shuffle"
    Attrs = FactorAttrs
    positional = ("factor",)

    def infer(self, a, ins):
        x = ins[0]
        r = a.factor
        if len(x) < 3:
            raise ShapeError(f"pixel_shuffle expects [..., C, H, W], got {list(x)}")
        if r <= 0 or x[-3] % (r * r):
            raise ShapeError(f"pixel_shuffle({r}) needs the {x[-3]} channels divisible by {r}² = {r * r}")
        return (*x[:-3], x[-3] // (r * r), x[-2] * r, x[-1] * r)

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        return fx.call(F.pixel_shuffle, args[0], a.factor)


@register
class PixelUnshuffle(Op):
    """The inverse of pixel_shuffle, F.pixel_unshuffle: [..., C, H, W] → [..., C·r², H/r, W/r]
    (r must divide H and W). other_flops: 0 (data movement)."""
    name = "pixel_unshuffle"
    Attrs = FactorAttrs
    positional = ("factor",)

    def infer(self, a, ins):
        x = ins[0]
        r = a.factor
        if len(x) < 3:
            raise ShapeError(f"pixel_unshuffle expects [..., C, H, W], got {list(x)}")
        if r <= 0 or x[-2] % r or x[-1] % r:
            raise ShapeError(f"pixel_unshuffle({r}) needs H and W ({x[-2]}x{x[-1]}) divisible by {r}")
        return (*x[:-3], x[-3] * r * r, x[-2] // r, x[-1] // r)

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        return fx.call(F.pixel_unshuffle, args[0], a.factor)


class UpsampleAttrs(Attrs):
    scale: Optional[FloatOrPair] = None
    size: Optional[IntOrPair] = None
    mode: Literal["nearest", "nearest-exact", "bilinear", "bicubic"] = "nearest"
    align_corners: Optional[bool] = None


_INTERP_COST = {"nearest": 1, "nearest-exact": 1, "bilinear": 7, "bicubic": 35}


@register
class Upsample(Op):
    """Resize [B, C, H, W] with F.interpolate to `size` [Ho, Wo] or by `scale` (Ho = ⌊H·scale⌋, as
    torch); exactly one of them. `align_corners` only with bilinear/bicubic (torch's rule).
    other_flops per output element: nearest 1 (the source index), bilinear 7 (4 taps: 4 multiplies,
    3 adds), bicubic 35 (five 4-tap filters of 4 multiplies and 3 adds); the per-row/column weight
    computation is not counted."""
    name = "upsample"
    aliases = ("interpolate",)
    Attrs = UpsampleAttrs
    positional = ("scale", "mode")

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, "upsample")
        if 0 in (c, h, w):   # torch refuses these (an empty batch is fine)
            raise ShapeError(f"upsample needs channels and pixels, got {c} channels of {h}x{w}")
        if (a.scale is None) == (a.size is None):
            raise ShapeError("upsample takes exactly one of scale and size")
        if a.align_corners is not None and a.mode not in ("bilinear", "bicubic"):
            raise ShapeError(f"upsample align_corners applies to bilinear and bicubic, not {a.mode!r}")
        if a.size is not None:
            ho, wo = pair(a.size)
        else:
            sh, sw = a.scale if isinstance(a.scale, tuple) else (a.scale, a.scale)
            if not (0 < sh < 1e6 and 0 < sw < 1e6):
                raise ShapeError(f"upsample scale must be positive (and finite), got {a.scale}")
            ho, wo = math.floor(h * float(sh)), math.floor(w * float(sw))
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"upsample of {h}x{w} gives an empty {ho}x{wo} output")
        return (b, c, ho, wo)

    def other_flops(self, a, ins, out):
        return numel(out) * _INTERP_COST[a.mode]

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        kw = {"mode": a.mode}
        if a.size is not None:
            kw["size"] = pair(a.size)
        else:
            kw["scale_factor"] = a.scale
        if a.align_corners is not None:
            kw["align_corners"] = a.align_corners
        return fx.call(F.interpolate, args[0], **kw)


class PadAttrs(Attrs):
    pads: list[int]
    mode: Literal["constant", "reflect", "replicate", "circular"] = "constant"
    value: float = 0.0


@register
class Pad(Op):
    """F.pad: `pads` = [left, right, top, bottom, …] pairs from the last dim backwards (non-
    negative). constant (fill `value`): any rank ≥ len(pads)/2. reflect / replicate / circular
    (torch's rules): 2, 4 or 6 pads on a tensor of rank len(pads)/2 + 1 or + 2, reflect needs
    each pad < its dim, circular ≤ its dim. other_flops: 0 (data movement)."""
    name = "pad"
    Attrs = PadAttrs
    positional = ("pads", "mode")

    def infer(self, a, ins):
        x = ins[0]
        p = list(a.pads)
        if not p or len(p) % 2 or len(p) > 2 * len(x):
            raise ShapeError(f"pad needs an even number of pads, at most two per dim of {list(x)}, "
                             f"got {p}")
        if min(p) < 0:
            raise ShapeError(f"pad sizes must be non-negative, got {p}")
        k = len(p) // 2
        if a.mode != "constant":
            if a.value != 0.0:
                raise ShapeError(f"pad mode {a.mode!r} takes no fill value")
            if k > 3 or len(x) not in (k + 1, k + 2):
                raise ShapeError(f"pad mode {a.mode!r} pads the last 1, 2 or 3 dims of a tensor with "
                                 f"one or two leading dims: {len(p)} pads on {list(x)} do not fit")
        out = list(x)
        for i in range(k):
            d = len(x) - 1 - i
            lo, hi = p[2 * i], p[2 * i + 1]
            if a.mode == "reflect" and max(lo, hi) >= x[d]:
                raise ShapeError(f"reflect pad {max(lo, hi)} must be smaller than dim {d} (size {x[d]})")
            if a.mode == "circular" and max(lo, hi) > x[d]:
                raise ShapeError(f"circular pad {max(lo, hi)} must be at most dim {d} (size {x[d]})")
            out[d] = x[d] + lo + hi
        return tuple(out)

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        if a.mode == "constant":
            return fx.call(F.pad, args[0], list(a.pads), mode="constant", value=a.value)
        return fx.call(F.pad, args[0], list(a.pads), mode=a.mode)


class SamePadAttrs(Attrs):
    kernel: Union[int, list[int]]
    stride: Union[int, list[int]] = 1
    dilation: Union[int, list[int]] = 1


@register
class SamePad(Op):
    """TensorFlow's "SAME" padding before a conv or pool of `kernel`/`stride`/`dilation` on
    [B, C, H, W]: each spatial dim padded (zeros) so that the strided window covers
    ceil(size / stride) positions, the odd pixel at the end. The amounts are computed from the
    tensor when the module runs, so a model built at one input size pads correctly at another
    (a `pad` with amounts computed at elaboration would not). other_flops: 0 (data movement)."""
    name = "same_pad"
    Attrs = SamePadAttrs
    positional = ("kernel", "stride", "dilation")
    fixes_exported_size = ("SAME padding (`same_pad`) follows the size by a remainder that makes "
                           "torch.export's symbolic sizes minutes to solve")

    def infer(self, a, ins):
        x = expect_rank(ins, {4}, self.name)
        sizes = [ntuple(v, 2, self.name) for v in (a.kernel, a.stride, a.dilation)]
        if min(min(v) for v in sizes) < 1:
            raise ShapeError(f"same_pad kernel, stride and dilation must be positive, got "
                             f"{a.kernel}, {a.stride}, {a.dilation}")
        (kh, kw), (sh, sw), (dh, dw) = sizes
        return (x[0], x[1], x[2] + sum(same_pads(x[2], kh, sh, dh)), x[3] + sum(same_pads(x[3], kw, sw, dw)))

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        from archdsl.nn.spatial import same_pad
        return fx.call(same_pad, args[0], list(pair(a.kernel)), list(pair(a.stride)), list(pair(a.dilation)))
