"""Token ops for vision transformers: Swin patch merging, class/mask tokens, a learned query
broadcast over the batch, sincos position tables, MAE random masking and its inverse, BEiT
block-wise masks.

Patch embedding itself is a DSL block (stdlib/blocks/patch_embed.arch: conv k=p s=p → flatten →
transpose → optional norm), and so are learned position embeddings (`param pos_embed: [1, N, D]`
and an add) and Swin's PatchMerging (stdlib/blocks/patch_merging.arch: `patch_merge` → norm →
linear). other_flops: 0 for the data-movement ops (patch_merge, prepend_token, expand_batch,
restore_tokens), for the constant table (sincos_pos_embed, built once) and for block_mask (random
mask generation, no arithmetic on tensor data); see each op for the others.
"""
from __future__ import annotations

import math
from typing import Optional, Union

from archdsl.ops.base import Attrs, NoAttrs, Op, ShapeError, expect_rank, pair, recipe, register
from archdsl.nn.rules import keep_count

IntOrPair = Union[int, tuple[int, int]]


class _Movement(Op):
    def other_flops(self, a, ins, out):
        return 0


def _grid(grid, n: int, what: str) -> tuple[int, int]:
    """(H, W) of a token grid of n tokens: the given grid, or the square root of n."""
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ShapeError(f"{what}: {n} tokens are not a square grid", hint="give grid=[H, W]")
        return side, side
    gh, gw = pair(grid)
    if gh <= 0 or gw <= 0:
        raise ShapeError(f"{what}: grid sizes must be positive, got {[gh, gw]}")
    if gh * gw != n:
        raise ShapeError(f"{what}: grid {gh}x{gw} holds {gh * gw} tokens, the input has {n}")
    return gh, gw


@register
class PatchMerge(_Movement):
    """Swin's 2x2 patch merging gather (timm `PatchMerging` before its norm and reduction), NHWC:
    [B, H, W, C] → [B, ⌈H/2⌉, ⌈W/2⌉, 4C]. An odd H or W is zero-padded at the bottom/right first, as
    timm 1.0 does. The 4C channels are ordered (w offset, h offset, C), i.e. the concatenation
    [x(0,0), x(1,0), x(0,1), x(1,1)] of Swin's x0, x1, x2, x3 — the order timm's `reduction`
    weights expect. other_flops: 0 (data movement)."""
    name = "patch_merge"

    def infer(self, a, ins):
        b, h, w, c = expect_rank(ins, {4}, "patch_merge")
        return (b, (h + 1) // 2, (w + 1) // 2, 4 * c)

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        b, h, w, c = ins[0]
        x = args[0]
        if h % 2 or w % 2:
            x = fx.call(F.pad, x, (0, 0, 0, w % 2, 0, h % 2))
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        x = fx.method("reshape", x, -1, h2, 2, w2, 2, c)
        x = fx.method("permute", x, 0, 1, 3, 4, 2, 5)
        return fx.method("flatten", x, 3)


@register
class PrependToken(_Movement):
    """Prepend learned tokens (a class token, DeiT's distillation token) to a sequence:
    inputs x [B, N, D] and token [1, T, D] (a `param`) → [B, T + N, D]; the token is expanded over
    the batch (timm/MAE: `cat((cls_token.expand(B, -1, -1), x), dim=1)`). other_flops: 0."""
    name = "prepend_token"
    n_inputs = 2

    def infer(self, a, ins):
        x, t = ins
        if len(x) != 3 or len(t) != 3:
            raise ShapeError(f"prepend_token expects x [B, N, D] and a token [1, T, D], got "
                             f"{list(x)} and {list(t)}")
        if t[0] != 1 or t[2] != x[2]:
            raise ShapeError(f"prepend_token: the token {list(t)} must be [1, T, {x[2]}] for x {list(x)}")
        return (x[0], t[1] + x[1], x[2])

    def emit(self, a, ins, fx, args):
        import torch
        x, t = args
        tokens = fx.method("expand", t, fx.method("size", x, 0), -1, -1)
        return fx.call(torch.cat, [tokens, x], dim=1)


@register
class ExpandBatch(_Movement):
    """A learned tensor broadcast over the batch of another: inputs t [1, *S] (a `param`, such as
    an attention pool's latent query) and x [B, ...] → [B, *S], a view (timm's
    `latent.expand(B, -1, -1)`). B is read from x when the module runs, so one module serves every
    batch size (`expand([B, ...])` would fix the batch it was built for). other_flops: 0."""
    name = "expand_batch"
    n_inputs = 2

    def infer(self, a, ins):
        t, x = ins
        if len(t) < 1 or t[0] != 1 or len(x) < 1:
            raise ShapeError(f"expand_batch expects a tensor [1, ...] and x [B, ...], got {list(t)} "
                             f"and {list(x)}")
        return (x[0], *t[1:])

    def emit(self, a, ins, fx, args):
        t, x = args
        return fx.method("expand", t, fx.method("size", x, 0), *[-1] * (len(ins[0]) - 1))


class SincosAttrs(Attrs):
    grid: Optional[IntOrPair] = None
    cls_token: bool = False


@register
class SincosPosEmbed(Op):
    """MAE's fixed 2-d sine-cosine position table (`get_2d_sincos_pos_embed`): input patch tokens
    x [B, N, D] (N = H·W; `grid` [H, W] defaults to a square) → the constant [1, N (+1), D]; with
    `cls_token` a zero row for the class token comes first. D must be divisible by 4. The first D/2
    channels encode the column, the last D/2 the row (MAE's order). Held as MAE holds it: a
    parameter `weight` [1, N (+1), D] with requires_grad=False (in the state_dict and the parameter
    count, never trained). Use: `pe = x -> pos: sincos_pos_embed(cls_token=true)`, then slice it
    with `split([1, N], dim=1)` as MAE does. other_flops: 0 (a constant computed once at build)."""
    name = "sincos_pos_embed"
    Attrs = SincosAttrs
    positional = ("grid",)
    frozen = frozenset({"weight"})

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 3:
            raise ShapeError(f"sincos_pos_embed expects patch tokens [B, N, D], got {list(x)}")
        _grid(a.grid, x[1], "sincos_pos_embed")
        if x[2] % 4:
            raise ShapeError(f"sincos_pos_embed needs D divisible by 4 (sin and cos for rows and "
                             f"columns), got D={x[2]}")
        return (1, x[1] + int(a.cls_token), x[2])

    def params(self, a, ins):
        x = ins[0]
        return {"weight": (1, x[1] + int(a.cls_token), x[2])}

    def other_flops(self, a, ins, out):
        return 0

    def build(self, a, ins):
        from archdsl.nn.tokens import SincosPosEmbed as Module
        gh, gw = _grid(a.grid, ins[0][1], "sincos_pos_embed")
        return recipe(Module, gh, gw, ins[0][2], a.cls_token)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class RatioAttrs(Attrs):
    ratio: float = 0.75


@register
class RandomMasking(Op):
    """MAE's random masking (models_mae.py `random_masking`): x [B, L, D] → three outputs
    (x_kept [B, K, D], mask [B, L] with 1 = removed, ids_restore [B, L] int64), K = int(L·(1−ratio)).
    Per sample: uniform noise → argsort (ids_shuffle) → keep the first K; ids_restore =
    argsort(ids_shuffle). Masks in train and eval mode alike (as MAE's forward). Needs
    0 ≤ ratio < 1 and K ≥ 1. other_flops: 2·B·L·⌈log₂ L⌉ (two argsorts, as comparisons) + B·L
    (the mask compare); the gather is data movement."""
    name = "random_masking"
    Attrs = RatioAttrs
    positional = ("ratio",)

    def infer(self, a, ins):
        x = ins[0]
        if len(x) != 3:
            raise ShapeError(f"random_masking expects tokens [B, L, D], got {list(x)}")
        if not 0.0 <= a.ratio < 1.0:
            raise ShapeError(f"random_masking ratio must be in [0, 1), got {a.ratio}")
        b, length, d = x
        keep = keep_count(length, a.ratio)
        if keep < 1:
            raise ShapeError(f"random_masking({a.ratio}) keeps no token of {length}",
                             hint="lower the ratio or use more tokens")
        return ((b, keep, d), (b, length), (b, length))

    def other_flops(self, a, ins, out):
        b, length, _ = ins[0]
        return 2 * b * length * math.ceil(math.log2(length)) + b * length

    def build(self, a, ins):
        from archdsl.nn.tokens import RandomMasking as Module
        return recipe(Module, a.ratio)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class RestoreAttrs(Attrs):
    prefix: int = 0


@register
class RestoreTokens(_Movement):
    """MAE's decoder un-shuffle: inputs x [B, P + K, D] (P prefix tokens, e.g. the class token,
    then the K kept tokens), mask_token [1, 1, D] and ids_restore [B, L] int64 → [B, P + L, D]:
    L − K mask tokens are appended after the kept tokens and the L tokens gathered back into their
    original order by ids_restore; the prefix stays in front (MAE: `prefix=1`). other_flops: 0."""
    name = "restore_tokens"
    aliases = ("unshuffle",)
    Attrs = RestoreAttrs
    positional = ("prefix",)
    n_inputs = 3

    def infer(self, a, ins):
        x, t, ids = ins
        if len(x) != 3 or len(ids) != 2:
            raise ShapeError(f"restore_tokens expects x [B, P + K, D], a mask token [1, 1, D] and "
                             f"ids_restore [B, L], got {list(x)}, {list(t)}, {list(ids)}")
        b, n, d = x
        if tuple(t) != (1, 1, d):
            raise ShapeError(f"restore_tokens: the mask token must be [1, 1, {d}], got {list(t)}")
        if ids[0] != b:
            raise ShapeError(f"restore_tokens: ids_restore {list(ids)} and x {list(x)} differ in batch")
        if a.prefix < 0 or a.prefix > n:
            raise ShapeError(f"restore_tokens prefix={a.prefix} must be in [0, {n}]")
        kept = n - a.prefix
        if kept > ids[1]:
            raise ShapeError(f"restore_tokens: {kept} kept tokens are more than the {ids[1]} of "
                             f"ids_restore")
        return (b, a.prefix + ids[1], d)

    def emit(self, a, ins, fx, args):
        import torch
        (b, n, d), _, (_, length) = ins
        x, token, ids = args
        body = fx.method("narrow", x, 1, a.prefix, n - a.prefix) if a.prefix else x
        parts = [body]
        if length > n - a.prefix:
            parts.append(fx.method("expand", token, fx.method("size", x, 0), length - (n - a.prefix), -1))
        x_ = fx.call(torch.cat, parts, dim=1) if len(parts) > 1 else body
        index = fx.method("expand", fx.method("unsqueeze", ids, -1), -1, -1, d)
        x_ = fx.call(torch.gather, x_, 1, index)
        if a.prefix:
            x_ = fx.call(torch.cat, [fx.method("narrow", x, 1, 0, a.prefix), x_], dim=1)
        return x_


class BlockMaskAttrs(Attrs):
    num_masking_patches: int
    min_num_patches: int = 16
    max_num_patches: Optional[int] = None
    min_aspect: float = 0.3
    max_aspect: Optional[float] = None
    grid: Optional[IntOrPair] = None
    exact: bool = False


@register
class BlockMask(Op):
    """BEiT's block-wise masking (`MaskingGenerator`): input tokens x [B, N, ...] (N = H·W; `grid`
    [H, W] defaults to a square) → a random bool mask [B, H, W] (True = masked), drawn per sample:
    rectangles of area U(min_num_patches, remaining) and aspect ratio log-uniform in
    [min_aspect, max_aspect or 1/min_aspect] are added until num_masking_patches are masked (never
    more; like BEiT v1, fewer when ten attempts in a row add nothing; with `exact`, as CAE's
    generator, it keeps drawing until exactly num_masking_patches are masked, topping up with
    single random patches after 100 rounds in which no rectangle fits). BEiT-base: 75 of
    14×14, min 16. Python loops per sample: a data-pipeline op, not capturable by torch.compile.
    other_flops: 0 (random generation; no arithmetic on tensor data)."""
    name = "block_mask"
    Attrs = BlockMaskAttrs
    positional = ("num_masking_patches",)

    def infer(self, a, ins):
        x = ins[0]
        if len(x) < 2:
            raise ShapeError(f"block_mask expects tokens [B, N, ...], got {list(x)}")
        gh, gw = _grid(a.grid, x[1], "block_mask")
        if not 0 <= a.num_masking_patches <= gh * gw:
            raise ShapeError(f"block_mask: num_masking_patches={a.num_masking_patches} must be in "
                             f"[0, {gh * gw}]")
        if a.min_num_patches < 1 or (a.max_num_patches is not None and a.max_num_patches < 1):
            raise ShapeError("block_mask: min_num_patches and max_num_patches must be at least 1")
        if a.min_aspect <= 0 or (a.max_aspect is not None and a.max_aspect <= 0):
            raise ShapeError("block_mask: aspect ratios must be positive")
        return (x[0], gh, gw)

    def other_flops(self, a, ins, out):
        return 0

    def build(self, a, ins):
        from archdsl.nn.tokens import BlockMask as Module
        gh, gw = _grid(a.grid, ins[0][1], "block_mask")
        return recipe(Module, gh, gw, a.num_masking_patches, a.min_num_patches, a.max_num_patches,
                      a.min_aspect, a.max_aspect, exact=a.exact)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


@register
class FillMasked(Op):
    """Replace masked tokens by a learned mask token (BEiT / SimMIM): inputs x [B, N, D], mask
    [B, N] (bool or 0/1, 1 = masked) and mask_token [1, 1, D] → [B, N, D] =
    x·(1 − w) + token·w with w = mask as x's dtype (BEiT's formula). other_flops: B·N (1 − w) +
    3·B·N·D (two multiplies and an add per element)."""
    name = "fill_masked"
    Attrs = NoAttrs
    n_inputs = 3

    def infer(self, a, ins):
        x, m, t = ins
        if len(x) != 3 or tuple(m) != tuple(x[:2]) or tuple(t) != (1, 1, x[2]):
            raise ShapeError(f"fill_masked expects x [B, N, D], a mask [B, N] and a token [1, 1, D], "
                             f"got {list(x)}, {list(m)}, {list(t)}")
        return tuple(x)

    def other_flops(self, a, ins, out):
        b, n, d = ins[0]
        return b * n + 3 * b * n * d

    def emit(self, a, ins, fx, args):
        import operator
        x, m, t = args
        w = fx.method("type_as", fx.method("unsqueeze", m, -1), x)
        keep = fx.call(operator.sub, 1, w)
        return fx.call(operator.add, fx.call(operator.mul, x, keep), fx.call(operator.mul, t, w))
