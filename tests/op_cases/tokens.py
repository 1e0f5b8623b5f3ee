"""Cases for archdsl/ops/tokens.py: patch_merge, prepend_token, expand_batch, sincos_pos_embed,
random_masking, restore_tokens, block_mask, fill_masked."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe, shape_of_rank, small

ZERO_OTHER_FLOPS = {
    "patch_merge": "data movement (a 2x2 gather)",
    "prepend_token": "data movement (expand + cat)",
    "expand_batch": "a view (expand)",
    "restore_tokens": "data movement (cat + gather)",
    "sincos_pos_embed": "a constant table computed once at build time",
    "block_mask": "random mask generation, no arithmetic on tensor data",
}


def _not_rank(ranks: set[int], lo: int = 1, hi: int = 5):
    return st.integers(lo, hi).filter(lambda r: r not in ranks).flatmap(lambda r: shape_of_rank(r))


def _grid_attr(draw, gh: int, gw: int, attrs: dict) -> None:
    """Give the grid explicitly, or leave it to the square default when the grid is square."""
    if gh != gw or draw(st.booleans()):
        attrs["grid"] = [gh, gw] if gh != gw or draw(st.booleans()) else gh


# --- patch_merge -------------------------------------------------------------------------------

@st.composite
def patch_merge_case(draw):
    return Case("patch_merge", {}, [(draw(batch), draw(st.integers(1, 6)), draw(st.integers(1, 6)),
                                     draw(small))])


# --- prepend_token -----------------------------------------------------------------------------

@st.composite
def prepend_token_case(draw):
    b, n, d = draw(batch), draw(small), draw(small)
    return Case("prepend_token", {}, [(b, n, d), (1, draw(st.integers(1, 2)), d)])


@st.composite
def prepend_token_invalid(draw):
    b, n, d = draw(batch), draw(small), draw(small)
    kind = draw(st.sampled_from(["dim", "batch", "rank"]))
    if kind == "dim":
        return Case("prepend_token", {}, [(b, n, d), (1, 1, d + draw(st.integers(1, 3)))])
    if kind == "batch":
        return Case("prepend_token", {}, [(b, n, d), (draw(st.integers(2, 3)), 1, d)])
    return Case("prepend_token", {}, [draw(_not_rank({3})), (1, 1, d)])


# --- expand_batch ------------------------------------------------------------------------------

@st.composite
def expand_batch_case(draw):
    rest = draw(st.lists(small, min_size=0, max_size=3))
    like = (draw(batch), *draw(st.lists(small, min_size=0, max_size=3)))
    return Case("expand_batch", {}, [(1, *rest), like])


@st.composite
def expand_batch_invalid(draw):
    b, d = draw(batch), draw(small)
    kind = draw(st.sampled_from(["batch", "scalar"]))
    if kind == "batch":
        return Case("expand_batch", {}, [(draw(st.integers(2, 3)), d), (b, d)])
    return draw(st.sampled_from([Case("expand_batch", {}, [(), (b, d)]),
                                 Case("expand_batch", {}, [(1, d), ()])]))


# --- sincos_pos_embed --------------------------------------------------------------------------

@st.composite
def sincos_case(draw):
    gh, gw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    attrs: dict = {}
    _grid_attr(draw, gh, gw, attrs)
    maybe(draw, attrs, "cls_token", draw(st.booleans()))
    return Case("sincos_pos_embed", attrs, [(draw(batch), gh * gw, 4 * draw(st.integers(1, 3)))])


@st.composite
def sincos_invalid(draw):
    kind = draw(st.sampled_from(["dim", "grid", "square", "rank"]))
    b = draw(batch)
    if kind == "dim":
        return Case("sincos_pos_embed", {"grid": 2}, [(b, 4, 4 * draw(small) + draw(st.integers(1, 3)))])
    if kind == "grid":
        gh, gw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        return Case("sincos_pos_embed", {"grid": [gh, gw]}, [(b, gh * gw + draw(st.integers(1, 3)), 8)])
    if kind == "square":
        return Case("sincos_pos_embed", {}, [(b, draw(st.sampled_from([2, 3, 5, 6, 7, 8])), 8)])
    return Case("sincos_pos_embed", {}, [draw(_not_rank({3}))])


# --- random_masking ----------------------------------------------------------------------------

@st.composite
def random_masking_case(draw):
    length = draw(st.integers(1, 8))
    ratio = draw(st.floats(0.0, 0.95))
    if int(length * (1 - ratio)) < 1:
        ratio = 0.0
    attrs: dict = {}
    if ratio != 0.75:
        attrs["ratio"] = ratio
    return Case("random_masking", attrs, [(draw(batch), length, draw(small))])


@st.composite
def random_masking_invalid(draw):
    kind = draw(st.sampled_from(["ratio", "keeps_none", "rank"]))
    if kind == "ratio":
        r = draw(st.one_of(st.floats(1.0, 5.0), st.floats(-5.0, -1e-6)))
        return Case("random_masking", {"ratio": r}, [(1, 4, 2)])
    if kind == "keeps_none":  # int(L·(1 − r)) == 0
        length = draw(st.integers(1, 4))
        return Case("random_masking", {"ratio": 1 - 0.5 / length}, [(1, length, 2)])
    return Case("random_masking", {}, [draw(_not_rank({3}))])


# --- restore_tokens ----------------------------------------------------------------------------

@st.composite
def restore_case(draw):
    b, length, d = draw(batch), draw(st.integers(1, 6)), draw(small)
    kept = draw(st.integers(0, length))
    prefix = draw(st.integers(0, 2))
    attrs: dict = {}
    if prefix or draw(st.booleans()):
        attrs["prefix"] = prefix
    if prefix + kept == 0:
        kept = 1
    return Case("restore_tokens", attrs, [(b, prefix + kept, d), (1, 1, d), (b, length)],
                dtypes=["float32", "float32", "int64"], int_high=length)


@st.composite
def restore_invalid(draw):
    b, length, d = draw(batch), draw(st.integers(1, 4)), draw(small)
    kind = draw(st.sampled_from(["too_many", "token", "batch", "prefix", "rank"]))
    ins = [(b, length, d), (1, 1, d), (b, length)]
    attrs: dict = {}
    if kind == "too_many":
        ins[0] = (b, length + draw(st.integers(1, 3)), d)
    elif kind == "token":
        ins[1] = draw(st.sampled_from([(1, 1, d + 1), (1, 2, d), (b + 1, 1, d), (d,)]))
    elif kind == "batch":
        ins[2] = (b + draw(st.integers(1, 2)), length)
    elif kind == "prefix":
        attrs["prefix"] = draw(st.one_of(st.integers(-3, -1), st.integers(length + 1, length + 3)))
    else:
        ins[2] = (b, length, 1)
    return Case("restore_tokens", attrs, ins, dtypes=["float32", "float32", "int64"], int_high=length)


# --- block_mask --------------------------------------------------------------------------------

@st.composite
def block_mask_case(draw):
    gh, gw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    attrs: dict = {"num_masking_patches": draw(st.integers(0, gh * gw))}
    _grid_attr(draw, gh, gw, attrs)
    maybe(draw, attrs, "min_num_patches", draw(st.integers(1, 4)))
    maybe(draw, attrs, "max_num_patches", draw(st.one_of(st.none(), st.integers(1, 8))))
    maybe(draw, attrs, "min_aspect", draw(st.floats(0.1, 1.0)))
    maybe(draw, attrs, "max_aspect", draw(st.one_of(st.none(), st.floats(1.0, 4.0))))
    rest = draw(st.lists(small, max_size=2))
    return Case("block_mask", attrs, [(draw(batch), gh * gw, *rest)])


@st.composite
def block_mask_invalid(draw):
    kind = draw(st.sampled_from(["count", "min", "aspect", "grid", "rank"]))
    b = draw(batch)
    if kind == "count":
        n = draw(st.one_of(st.integers(-3, -1), st.integers(17, 20)))
        return Case("block_mask", {"num_masking_patches": n}, [(b, 16, 3)])
    if kind == "min":
        key = draw(st.sampled_from(["min_num_patches", "max_num_patches"]))
        return Case("block_mask", {"num_masking_patches": 4, key: draw(st.integers(-2, 0))}, [(b, 16, 3)])
    if kind == "aspect":
        key = draw(st.sampled_from(["min_aspect", "max_aspect"]))
        return Case("block_mask", {"num_masking_patches": 4, key: draw(st.floats(-2.0, 0.0))}, [(b, 16, 3)])
    if kind == "grid":
        return Case("block_mask", {"num_masking_patches": 1, "grid": [2, 3]}, [(b, 7, 3)])
    return Case("block_mask", {"num_masking_patches": 1}, [(draw(small),)])


# --- fill_masked -------------------------------------------------------------------------------

@st.composite
def fill_masked_case(draw):
    b, n, d = draw(batch), draw(small), draw(small)
    mask_dtype = draw(st.sampled_from(["float32", "int64", "bool"]))
    return Case("fill_masked", {}, [(b, n, d), (b, n), (1, 1, d)],
                dtypes=["float32", mask_dtype, "float32"], int_high=2)


@st.composite
def fill_masked_invalid(draw):
    b, n, d = draw(batch), draw(small), draw(small)
    kind = draw(st.sampled_from(["mask", "token", "rank"]))
    ins = [(b, n, d), (b, n), (1, 1, d)]
    if kind == "mask":
        ins[1] = draw(st.sampled_from([(b, n + 1), (b + 1, n), (b, n, 1)]))
    elif kind == "token":
        ins[2] = draw(st.sampled_from([(1, 1, d + 1), (1, d), (b + 1, 1, d)]))
    else:
        ins[0] = draw(st.sampled_from([(b, n), (b, n, d, 1)]))
    return Case("fill_masked", {}, ins)


VALID = {
    "patch_merge": patch_merge_case(),
    "prepend_token": prepend_token_case(),
    "expand_batch": expand_batch_case(),
    "sincos_pos_embed": sincos_case(),
    "random_masking": random_masking_case(),
    "restore_tokens": restore_case(),
    "block_mask": block_mask_case(),
    "fill_masked": fill_masked_case(),
}

INVALID = {
    "patch_merge": _not_rank({4}).map(lambda x: Case("patch_merge", {}, [x])),
    "prepend_token": prepend_token_invalid(),
    "expand_batch": expand_batch_invalid(),
    "sincos_pos_embed": sincos_invalid(),
    "random_masking": random_masking_invalid(),
    "restore_tokens": restore_invalid(),
    "block_mask": block_mask_invalid(),
    "fill_masked": fill_masked_invalid(),
}
