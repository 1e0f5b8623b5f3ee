"""Cases for archdsl/ops/spatial.py: affine_grid_sample, affine_head, pixel_shuffle,
pixel_unshuffle, upsample, pad, same_pad."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, batch, maybe, shape_of_rank, small

ZERO_OTHER_FLOPS = {
    "pixel_shuffle": "data movement",
    "pixel_unshuffle": "data movement",
    "pad": "data movement",
    "same_pad": "data movement",
}


def _not_rank(ranks: set[int], lo: int = 1, hi: int = 5):
    return st.integers(lo, hi).filter(lambda r: r not in ranks).flatmap(lambda r: shape_of_rank(r))


# --- affine_grid_sample ------------------------------------------------------------------------

@st.composite
def grid_sample_case(draw):
    x = draw(shape_of_rank(4, 1, 6))
    attrs: dict = {}
    if draw(st.booleans()):
        side = st.integers(1, 6)
        attrs["out_size"] = draw(st.one_of(side, st.tuples(side, side)))
    maybe(draw, attrs, "mode", draw(st.sampled_from(["bilinear", "nearest"])))
    maybe(draw, attrs, "padding", draw(st.sampled_from(["zeros", "border", "reflection"])))
    maybe(draw, attrs, "align_corners", draw(st.booleans()))
    return Case("affine_grid_sample", attrs, [x, (x[0], 2, 3)])


@st.composite
def grid_sample_invalid(draw):
    x = draw(shape_of_rank(4))
    kind = draw(st.sampled_from(["theta", "batch", "rank", "size"]))
    if kind == "theta":
        theta = draw(st.sampled_from([(3, 3), (2, 2), (2, 4), (6,)]))
        return Case("affine_grid_sample", {}, [x, (x[0], *theta)])
    if kind == "batch":
        return Case("affine_grid_sample", {}, [x, (x[0] + draw(st.integers(1, 2)), 2, 3)])
    if kind == "rank":
        y = draw(_not_rank({4}))
        return Case("affine_grid_sample", {}, [y, (y[0], 2, 3)])
    return Case("affine_grid_sample", {"out_size": [draw(st.integers(-2, 0)), 3]}, [x, (x[0], 2, 3)])


# --- affine_head -------------------------------------------------------------------------------

@st.composite
def affine_head_case(draw):
    return Case("affine_head", {}, [(draw(batch), draw(st.integers(1, 8)))])


# --- pixel_shuffle / pixel_unshuffle -----------------------------------------------------------

@st.composite
def pixel_shuffle_case(draw):
    r = draw(st.integers(1, 3))
    lead = draw(st.lists(st.integers(1, 2), max_size=1))  # [B, C, H, W] or [B, T, C, H, W]
    return Case("pixel_shuffle", {"factor": r},
                [(draw(batch), *lead, r * r * draw(st.integers(1, 2)), draw(small), draw(small))])


@st.composite
def pixel_unshuffle_case(draw):
    r = draw(st.integers(1, 3))
    return Case("pixel_unshuffle", {"factor": r},
                [(draw(batch), draw(small), r * draw(st.integers(1, 3)), r * draw(st.integers(1, 3)))])


@st.composite
def pixel_shuffle_invalid(draw):
    kind = draw(st.sampled_from(["divide", "nonpositive", "rank"]))
    if kind == "divide":
        r = draw(st.integers(2, 3))
        return Case("pixel_shuffle", {"factor": r}, [(1, r * r + draw(st.integers(1, r * r - 1)), 2, 2)])
    if kind == "nonpositive":
        return Case("pixel_shuffle", {"factor": draw(st.integers(-2, 0))}, [(1, 4, 2, 2)])
    return Case("pixel_shuffle", {"factor": 1}, [draw(shape_of_rank(draw(st.integers(1, 2))))])


@st.composite
def pixel_unshuffle_invalid(draw):
    kind = draw(st.sampled_from(["divide", "nonpositive", "rank"]))
    if kind == "divide":
        r = draw(st.integers(2, 3))
        return Case("pixel_unshuffle", {"factor": r}, [(1, 2, r * 2 + draw(st.integers(1, r - 1)), r)])
    if kind == "nonpositive":
        return Case("pixel_unshuffle", {"factor": draw(st.integers(-2, 0))}, [(1, 1, 4, 4)])
    return Case("pixel_unshuffle", {"factor": 1}, [draw(shape_of_rank(draw(st.integers(1, 2))))])


# --- upsample ----------------------------------------------------------------------------------

@st.composite
def upsample_case(draw):
    x = draw(shape_of_rank(4, 1, 5))
    mode = draw(st.sampled_from(["nearest", "nearest-exact", "bilinear", "bicubic"]))
    attrs: dict = {}
    if mode != "nearest" or draw(st.booleans()):
        attrs["mode"] = mode
    if draw(st.booleans()):
        attrs["size"] = draw(st.one_of(st.integers(1, 8), st.tuples(st.integers(1, 8), st.integers(1, 8))))
    else:
        s = draw(st.one_of(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]), st.floats(0.3, 3.0),
                           st.tuples(st.sampled_from([1.0, 2.0, 2.5]), st.sampled_from([0.5, 2.0]))))
        sh, sw = s if isinstance(s, tuple) else (s, s)
        if int(x[2] * sh) < 1 or int(x[3] * sw) < 1:
            s = 2.0
        attrs["scale"] = s
    if mode in ("bilinear", "bicubic"):
        maybe(draw, attrs, "align_corners", draw(st.booleans()))
    return Case("upsample", attrs, [x])


@st.composite
def upsample_invalid(draw):
    x = draw(shape_of_rank(4))
    kind = draw(st.sampled_from(["both", "neither", "align", "scale", "size", "empty", "rank"]))
    if kind == "both":
        return Case("upsample", {"scale": 2.0, "size": 4}, [x])
    if kind == "neither":
        return Case("upsample", {}, [x])
    if kind == "align":
        return Case("upsample", {"scale": 2.0, "mode": draw(st.sampled_from(["nearest", "nearest-exact"])),
                                 "align_corners": draw(st.booleans())}, [x])
    if kind == "scale":
        return Case("upsample", {"scale": draw(st.floats(-3.0, 0.0))}, [x])
    if kind == "size":
        return Case("upsample", {"size": [draw(st.integers(-2, 0)), 3]}, [x])
    if kind == "empty":  # ⌊H · scale⌋ == 0
        return Case("upsample", {"scale": 0.1}, [(x[0], x[1], draw(st.integers(1, 9)), 4)])
    return Case("upsample", {"scale": 2.0}, [draw(_not_rank({4}))])


# --- pad ---------------------------------------------------------------------------------------

@st.composite
def pad_case(draw):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    if mode == "constant":
        x = draw(any_shape(1, 4))
        k = draw(st.integers(1, len(x)))
    else:
        k = draw(st.integers(1, 3))
        x = draw(shape_of_rank(k + draw(st.integers(1, 2)), 1, 4))
    pads = []
    for i in range(k):
        size = x[len(x) - 1 - i]
        hi = {"reflect": size - 1, "circular": size}.get(mode, 3)
        pads += [draw(st.integers(0, max(0, min(hi, 3)))), draw(st.integers(0, max(0, min(hi, 3))))]
    attrs: dict = {"pads": pads}
    if mode != "constant" or draw(st.booleans()):
        attrs["mode"] = mode
    if mode == "constant":
        maybe(draw, attrs, "value", draw(st.floats(-2.0, 2.0)))
    return Case("pad", attrs, [x])


@st.composite
def pad_invalid(draw):
    kind = draw(st.sampled_from(["odd", "long", "negative", "value", "rank", "reflect", "circular"]))
    x = draw(shape_of_rank(4, 1, 4))
    if kind == "odd":
        return Case("pad", {"pads": [1, 1, 1]}, [x])
    if kind == "long":
        return Case("pad", {"pads": [1] * 10}, [x])
    if kind == "negative":
        return Case("pad", {"pads": [1, -1]}, [x])
    if kind == "value":
        return Case("pad", {"pads": [1, 1, 1, 1], "mode": "replicate", "value": 1.0}, [x])
    if kind == "rank":
        mode = draw(st.sampled_from(["reflect", "replicate", "circular"]))
        return Case("pad", {"pads": [1, 1], "mode": mode},
                    [draw(st.sampled_from([(3,), (1, 2, 3, 4)]))])
    if kind == "reflect":
        return Case("pad", {"pads": [0, x[3], 0, 0], "mode": "reflect"}, [x])
    return Case("pad", {"pads": [x[3] + 1, 0, 0, 0], "mode": "circular"}, [x])


# --- same_pad ----------------------------------------------------------------------------------

@st.composite
def same_pad_case(draw):
    x = draw(shape_of_rank(4, 1, 9))
    one = st.integers(1, 4)
    attrs: dict = {"kernel": draw(st.one_of(one, st.lists(one, min_size=2, max_size=2)))}
    maybe(draw, attrs, "stride", draw(st.one_of(one, st.lists(one, min_size=2, max_size=2))))
    maybe(draw, attrs, "dilation", draw(st.integers(1, 3)))
    return Case("same_pad", attrs, [x])


@st.composite
def same_pad_invalid(draw):
    kind = draw(st.sampled_from(["rank", "zero", "length"]))
    if kind == "rank":
        return Case("same_pad", {"kernel": 3}, [draw(_not_rank({4}))])
    x = draw(shape_of_rank(4, 1, 4))
    if kind == "zero":
        return Case("same_pad", {"kernel": 3, "stride": 0}, [x])
    return Case("same_pad", {"kernel": [3, 3, 3]}, [x])


VALID = {
    "affine_grid_sample": grid_sample_case(),
    "affine_head": affine_head_case(),
    "pixel_shuffle": pixel_shuffle_case(),
    "pixel_unshuffle": pixel_unshuffle_case(),
    "upsample": upsample_case(),
    "pad": pad_case(),
    "same_pad": same_pad_case(),
}

INVALID = {
    "affine_grid_sample": grid_sample_invalid(),
    "affine_head": _not_rank({2}).map(lambda x: Case("affine_head", {}, [x])),
    "pixel_shuffle": pixel_shuffle_invalid(),
    "pixel_unshuffle": pixel_unshuffle_invalid(),
    "upsample": upsample_invalid(),
    "pad": pad_invalid(),
    "same_pad": same_pad_invalid(),
}
