"""Attention: scaled dot-product attention, head split/merge, Swin windows (partition, reverse,
shifted-window mask), relative position bias (Swin, BEiT).

Blocks built from these live in stdlib/blocks (attention, window_attention, sk, split_attn,
eca, lambda_layer, msca).
"""
from __future__ import annotations

from typing import Optional, Union

from dataclasses import replace

from archdsl.ops.base import Attrs, Op, ShapeError, pair, recipe, register


# ---------------------------------------------------------------------------------------------
# scaled dot-product attention

class SDPAAttrs(Attrs):
    causal: bool = False
    scale: Optional[float] = None
    dropout: float = 0.0


@register
class SDPA(Op):
    """Scaled dot-product attention, `torch.nn.functional.scaled_dot_product_attention`:
    softmax(q kᵀ · scale + mask) v, with scale = E^-0.5 unless given.

    inputs: q [B, H, Lq, E], k [B, H, Lk, E], v [B, H, Lk, Ev], and optionally a mask of rank 2
    to 4 that broadcasts to [B, H, Lq, Lk] (a bool mask keeps the True entries; a float mask is
    added to the scores). `causal=true` masks the upper triangle (not together with a mask).
    `dropout` drops attention weights in training only.
    shape: → [B, H, Lq, Ev].
    flops: 2 · B · H · Lq · Lk · (E + Ev), i.e. 4 · B · H · Lq · Lk · D when E = Ev = D (torch's
    SDPA formula: q kᵀ and the weighted sum of v).
    other_flops: B · H · Lq · Lk · (4 + 1 if masked): the scale, the softmax (exp, sum, divide),
    and the mask add when there is a mask or `causal`.
    """
    name = "sdpa"
    Attrs = SDPAAttrs
    positional = ("causal", "scale")
    n_inputs = None

    def receptive(self, a, ins, f):
        return f.mixed()   # every query sees every key: the whole map, or its window

    def infer(self, a, ins):
        if len(ins) not in (3, 4):
            raise ShapeError(f"sdpa takes q, k, v and an optional mask, got {len(ins)} tensors")
        q, k, v = (tuple(s) for s in ins[:3])
        for name, s in (("q", q), ("k", k), ("v", v)):
            if len(s) != 4:
                raise ShapeError(f"sdpa expects {name} as [B, heads, L, dim], got {list(s)}")
        if q[:2] != k[:2] or q[:2] != v[:2]:
            raise ShapeError(f"sdpa: q {list(q)}, k {list(k)} and v {list(v)} must share batch "
                             f"and heads")
        if k[3] != q[3]:
            raise ShapeError(f"sdpa: q and k need one feature size, got {q[3]} and {k[3]}")
        if k[2] != v[2]:
            raise ShapeError(f"sdpa: k and v need one length, got {k[2]} and {v[2]}")
        if not 0.0 <= a.dropout < 1.0:
            raise ShapeError(f"sdpa dropout must be in [0, 1), got {a.dropout}")
        if len(ins) == 4:
            if a.causal:
                raise ShapeError("sdpa takes a mask or causal=true, not both",
                                 hint="fold the causal triangle into the mask")
            m = tuple(ins[3])
            full = (q[0], q[1], q[2], k[2])
            fits = all(x in (1, y) for x, y in zip(reversed(m), reversed(full)))
            if not 2 <= len(m) <= 4 or not fits:
                raise ShapeError(f"sdpa mask {list(m)} does not broadcast to {list(full)}")
        return (q[0], q[1], q[2], v[3])

    def flops(self, a, ins, out):
        b, h, lq, e = ins[0]
        lk, ev = ins[1][2], ins[2][3]
        return 2 * b * h * lq * lk * (e + ev)

    def other_flops(self, a, ins, out):
        b, h, lq, _ = ins[0]
        masked = len(ins) == 4 or a.causal
        return b * h * lq * ins[1][2] * (4 + int(masked))

    def build(self, a, ins):
        if a.dropout == 0.0:
            return None
        from archdsl.nn.attention import ScaledDotProductAttention
        return recipe(ScaledDotProductAttention, a.dropout, a.causal, a.scale)

    def emit(self, a, ins, fx, args):
        if a.dropout != 0.0:
            return fx.module(*args)
        import torch.nn.functional as F
        kwargs = {}
        if a.scale is not None:
            kwargs["scale"] = a.scale
        if len(args) == 4:
            from archdsl.nn.attention import masked_sdpa
            return fx.call(masked_sdpa, *args, **kwargs)
        if a.causal:
            kwargs["is_causal"] = True
        return fx.call(F.scaled_dot_product_attention, *args[:3], **kwargs)


# ---------------------------------------------------------------------------------------------
# heads

class HeadsAttrs(Attrs):
    heads: int
    parts: int = 1


@register
class SplitHeads(Op):
    """Split the features of tokens into heads (and q/k/v parts), as timm's
    `reshape(B, N, parts, heads, D).permute(2, 0, 3, 1, 4).unbind(0)`.

    shape: [B, N, parts · heads · D] → [B, heads, N, D] (parts = 1), or a tuple of `parts` such
    tensors (index them: `qkv[0]`). other_flops: 0 (data movement).
    """
    name = "split_heads"
    Attrs = HeadsAttrs
    positional = ("heads", "parts")

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 3:
            raise ShapeError(f"split_heads expects tokens [B, N, C], got {list(x)}")
        if a.heads <= 0 or a.parts <= 0:
            raise ShapeError(f"split_heads needs heads > 0 and parts > 0, got {a.heads} and "
                             f"{a.parts}")
        b, n, c = x
        if c % (a.heads * a.parts):
            raise ShapeError(f"split_heads: {c} features do not split into {a.parts} part(s) of "
                             f"{a.heads} heads")
        one = (b, a.heads, n, c // (a.heads * a.parts))
        return one if a.parts == 1 else tuple(one for _ in range(a.parts))

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        _, n, c = ins[0]
        d = c // (a.heads * a.parts)
        if a.parts == 1:
            return fx.method("transpose", fx.method("reshape", args[0], -1, n, a.heads, d), 1, 2)
        x = fx.method("reshape", args[0], -1, n, a.parts, a.heads, d)
        return fx.method("unbind", fx.method("permute", x, 2, 0, 3, 1, 4), 0)


@register
class MergeHeads(Op):
    """Merge heads back into token features: `x.transpose(1, 2).reshape(B, N, H · D)`.

    shape: [B, H, N, D] → [B, N, H · D]. other_flops: 0 (data movement).
    """
    name = "merge_heads"

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 4:
            raise ShapeError(f"merge_heads expects [B, heads, N, D], got {list(x)}")
        b, h, n, d = x
        return (b, n, h * d)

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        _, h, n, d = ins[0]
        return fx.method("reshape", fx.method("transpose", args[0], 1, 2), -1, n, h * d)


# ---------------------------------------------------------------------------------------------
# Swin windows

IntOrPair = Union[int, tuple[int, int]]


def _window(a) -> tuple[int, int]:
    wh, ww = pair(a.window)
    if wh <= 0 or ww <= 0:
        raise ShapeError(f"window size must be positive, got {[wh, ww]}")
    return wh, ww


def _padded(h: int, w: int, wh: int, ww: int) -> tuple[int, int]:
    return -(-h // wh) * wh, -(-w // ww) * ww


class WindowAttrs(Attrs):
    window: IntOrPair


@register
class WindowPartition(Op):
    """Cut channels-last feature maps into non-overlapping windows (timm `window_partition`),
    zero-padding the bottom and right up to whole windows first (as timm's Swin block does).

    shape: [B, H, W, C] → [B · ⌈H/wh⌉ · ⌈W/ww⌉, wh · ww, C], windows in row-major order per
    image.
    other_flops: 0 (data movement and zero padding).
    """
    name = "window_partition"
    Attrs = WindowAttrs
    positional = ("window",)

    def receptive(self, a, ins, f):
        return replace(f, span=max(_window(a)))

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 4:
            raise ShapeError(f"window_partition expects channels-last [B, H, W, C], got {list(x)}")
        wh, ww = _window(a)
        b, h, w, c = x
        hp, wp = _padded(h, w, wh, ww)
        return (b * (hp // wh) * (wp // ww), wh * ww, c)

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        wh, ww = _window(a)
        _, h, w, c = ins[0]
        hp, wp = _padded(h, w, wh, ww)
        x = args[0]
        if (hp, wp) != (h, w):
            x = fx.call(F.pad, x, (0, 0, 0, wp - w, 0, hp - h))
        x = fx.method("reshape", x, -1, hp // wh, wh, wp // ww, ww, c)
        x = fx.method("permute", x, 0, 1, 3, 2, 4, 5)
        return fx.method("reshape", x, -1, wh * ww, c)


class WindowReverseAttrs(Attrs):
    window: IntOrPair
    size: IntOrPair


@register
class WindowReverse(Op):
    """Put windows back into channels-last feature maps of `size` [H, W] (timm `window_reverse`),
    cropping the padding `window_partition` added.

    shape: [B · nW, wh · ww, C] → [B, H, W, C], nW = ⌈H/wh⌉ · ⌈W/ww⌉.
    other_flops: 0 (data movement).
    """
    name = "window_reverse"
    Attrs = WindowReverseAttrs
    positional = ("window", "size")

    def receptive(self, a, ins, f):
        return replace(f, span=None)

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 3:
            raise ShapeError(f"window_reverse expects windows [B*nW, wh*ww, C], got {list(x)}")
        wh, ww = _window(a)
        h, w = pair(a.size)
        if h <= 0 or w <= 0:
            raise ShapeError(f"window_reverse size must be positive, got {[h, w]}")
        hp, wp = _padded(h, w, wh, ww)
        nw = (hp // wh) * (wp // ww)
        if x[1] != wh * ww:
            raise ShapeError(f"window_reverse: windows of {x[1]} tokens are not {wh}x{ww}")
        if x[0] % nw:
            raise ShapeError(f"window_reverse: {x[0]} windows are not a whole number of {h}x{w} "
                             f"maps ({nw} windows each)")
        return (x[0] // nw, h, w, x[2])

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        wh, ww = _window(a)
        h, w = pair(a.size)
        hp, wp = _padded(h, w, wh, ww)
        c = ins[0][2]
        x = fx.method("reshape", args[0], -1, hp // wh, wp // ww, wh, ww, c)
        x = fx.method("permute", x, 0, 1, 3, 2, 4, 5)
        x = fx.method("reshape", x, -1, hp, wp, c)
        if hp != h:
            x = fx.method("narrow", x, 1, 0, h)
        if wp != w:
            x = fx.method("narrow", x, 2, 0, w)
        return x


class ShiftMaskAttrs(Attrs):
    window: IntOrPair
    shift: IntOrPair
    size: IntOrPair


@register
class ShiftWindowMask(Op):
    """The attention mask of shifted windows (Swin SW-MSA, timm `get_attn_mask`): after a cyclic
    shift by `shift`, tokens that came from different regions of the `size` [H, W] map (padded to
    whole windows) must not attend to each other: 0 within a region, -100 across regions.

    input: the windowed tokens [B · nW, wh · ww, C] (only their number is used).
    shape: → [B · nW, 1, wh · ww, wh · ww], to add to a [1, heads, N, N] bias for `sdpa`.
    The mask is a non-persistent buffer (not in the state_dict), computed from the shapes.
    other_flops: 0 (a constant, tiled over the batch).
    """
    name = "shift_window_mask"
    Attrs = ShiftMaskAttrs
    positional = ("window", "shift", "size")

    def _geom(self, a):
        wh, ww = _window(a)
        sh, sw = pair(a.shift)
        h, w = pair(a.size)
        return wh, ww, sh, sw, h, w

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 3:
            raise ShapeError(f"shift_window_mask expects windows [B*nW, wh*ww, C], got {list(x)}")
        wh, ww, sh, sw, h, w = self._geom(a)
        if h <= 0 or w <= 0:
            raise ShapeError(f"shift_window_mask size must be positive, got {[h, w]}")
        if not (0 <= sh < wh and 0 <= sw < ww):
            raise ShapeError(f"shift_window_mask: shift {[sh, sw]} must be in [0, window) for a "
                             f"{wh}x{ww} window")
        hp, wp = _padded(h, w, wh, ww)
        nw = (hp // wh) * (wp // ww)
        if x[1] != wh * ww or x[0] % nw:
            raise ShapeError(f"shift_window_mask: {list(x)} are not {wh}x{ww} windows of "
                             f"{h}x{w} maps")
        n = wh * ww
        return (x[0], 1, n, n)

    def other_flops(self, a, ins, out):
        return 0

    def build(self, a, ins):
        from archdsl.nn.attention import ShiftWindowMask as Module
        wh, ww, sh, sw, h, w = self._geom(a)
        return recipe(Module, h, w, wh, ww, sh, sw)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


# ---------------------------------------------------------------------------------------------
# relative position bias

class RelPosAttrs(Attrs):
    window: IntOrPair


@register
class RelPosBias(Op):
    """Relative position bias of Swin (timm `WindowAttention._get_rel_pos_bias`): gathers the
    bias table by the pair-wise relative position index of a wh × ww window.

    input: the table [(2wh - 1)(2ww - 1), heads] (declare it as a block parameter,
    `param relative_position_bias_table: [...]`, so its key sits where timm's does).
    shape: → [1, heads, wh · ww, wh · ww]. The index is a non-persistent int64 buffer
    `relative_position_index` (not in the state_dict, as in timm ≥ 1.0).
    other_flops: 0 (a gather).
    """
    name = "rel_pos_bias"
    Attrs = RelPosAttrs
    positional = ("window",)
    cls_token = False

    def _rows(self, wh, ww) -> int:
        return (2 * wh - 1) * (2 * ww - 1) + (3 if self.cls_token else 0)

    def infer(self, a, ins):
        t = ins[0]
        wh, ww = _window(a)
        rows = self._rows(wh, ww)
        if len(t) != 2 or t[0] != rows:
            raise ShapeError(f"{self.name}: a {wh}x{ww} window needs a table [{rows}, heads], "
                             f"got {list(t)}")
        n = wh * ww + (1 if self.cls_token else 0)
        return (1, t[1], n, n)

    def other_flops(self, a, ins, out):
        return 0

    def build(self, a, ins):
        from archdsl.nn.attention import RelPosBias as Module
        wh, ww = _window(a)
        return recipe(Module, wh, ww, self.cls_token)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


@register
class BeitRelPosBias(RelPosBias):
    """Relative position bias of BEiT (timm beit `Attention._get_rel_pos_bias`): as rel_pos_bias
    with a class token in front, so the table has 3 more rows (cls→token, token→cls, cls→cls).

    input: the table [(2wh - 1)(2ww - 1) + 3, heads].
    shape: → [1, heads, wh · ww + 1, wh · ww + 1]. other_flops: 0 (a gather).
    """
    name = "beit_rel_pos_bias"
    cls_token = True

