"""Cases for archdsl/ops/detection.py: level_conv, anchor_grid, retina_loss."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe, shape_of_rank, small

MAC_OPS = {"level_conv"}   # all its arithmetic is multiply-adds, but for the bias add


@st.composite
def level_conv_case(draw):
    levels = draw(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=3))
    groups = draw(st.integers(1, 2))
    cin, out = groups * draw(small), groups * draw(small)
    attrs: dict = {"out": out, "levels": [list(lv) for lv in levels]}
    k = draw(st.sampled_from([1, 3]))
    maybe(draw, attrs, "kernel", k)
    if attrs.get("kernel", 1) == 3 and draw(st.booleans()):
        attrs["pad"] = 1
    if groups > 1:
        attrs["groups"] = groups
    maybe(draw, attrs, "bias", draw(st.booleans()))
    return Case("level_conv", attrs, [(draw(batch), cin, sum(h * w for h, w in levels))])


@st.composite
def level_conv_invalid(draw):
    kind = draw(st.sampled_from(["total", "rank", "empty", "big", "groups"]))
    if kind == "total":
        return Case("level_conv", {"out": 2, "levels": [[2, 3]]}, [(1, 3, 6 + draw(st.integers(1, 4)))])
    if kind == "rank":
        return Case("level_conv", {"out": 2, "levels": [[2, 3]]}, [draw(shape_of_rank(4))])
    if kind == "empty":
        return Case("level_conv", {"out": 2, "levels": []}, [(1, 3, 1)])
    if kind == "big":   # a 5x5 kernel without padding on a 2x2 level
        return Case("level_conv", {"out": 2, "kernel": 5, "pad": 0, "levels": [[2, 2]]}, [(1, 3, 4)])
    return Case("level_conv", {"out": 3, "groups": 2, "levels": [[2, 2]]}, [(1, 4, 4)])


@st.composite
def anchor_grid_case(draw):
    n = draw(st.integers(1, 3))
    strides = [2 ** (i + draw(st.integers(0, 2))) for i in range(n)]
    sizes = [draw(st.lists(st.sampled_from([4.0, 8.0, 10.0, 16.0]), min_size=1, max_size=3)) for _ in range(n)]
    attrs: dict = {"strides": strides, "sizes": sizes}
    maybe(draw, attrs, "ratios", draw(st.lists(st.sampled_from([0.5, 1.0, 2.0]), min_size=1, max_size=3)))
    return Case("anchor_grid", attrs, [(draw(batch), 3, draw(st.integers(1, 20)), draw(st.integers(1, 20)))])


@st.composite
def anchor_grid_invalid(draw):
    kind = draw(st.sampled_from(["count", "stride", "size", "ratio", "rank"]))
    x = (1, 3, 16, 16)
    if kind == "count":
        return Case("anchor_grid", {"strides": [8, 16], "sizes": [[32.0]]}, [x])
    if kind == "stride":
        return Case("anchor_grid", {"strides": [draw(st.integers(-2, 0))], "sizes": [[32.0]]}, [x])
    if kind == "size":
        return Case("anchor_grid", {"strides": [8], "sizes": [draw(st.sampled_from([[], [-4.0], [0.0]]))]}, [x])
    if kind == "ratio":
        return Case("anchor_grid", {"strides": [8], "sizes": [[32.0]], "ratios": [0.0]}, [x])
    return Case("anchor_grid", {"strides": [8], "sizes": [[32.0]]}, [draw(shape_of_rank(3))])


@st.composite
def retina_loss_case(draw):
    b, n, k, g = draw(batch), draw(st.integers(1, 12)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    attrs: dict = {}
    maybe(draw, attrs, "box_loss", draw(st.sampled_from(["l1", "smooth_l1"])))
    maybe(draw, attrs, "part", draw(st.sampled_from(["total", "cls", "box"])))
    maybe(draw, attrs, "gamma", draw(st.sampled_from([0.0, 1.0, 2.0])))
    maybe(draw, attrs, "alpha", draw(st.sampled_from([-1.0, 0.25, 0.5])))
    return Case("retina_loss", attrs, [(b, n, k), (b, n, 4), (n, 4), (b, g, 4), (b, g)],
                dtypes=["float32"] * 4 + ["int64"], int_high=k)


@st.composite
def retina_loss_invalid(draw):
    b, n, k, g = 2, 6, 3, 2
    good = [(b, n, k), (b, n, 4), (n, 4), (b, g, 4), (b, g)]
    kind = draw(st.sampled_from(["anchors", "box", "targets", "iou", "gamma"]))
    ins, attrs = list(good), {}
    if kind == "anchors":
        ins[2] = (n + draw(st.integers(1, 3)), 4)
    elif kind == "box":
        ins[1] = (b, n, draw(st.sampled_from([3, 5])))
    elif kind == "targets":
        ins[4] = (b, g + 1)
    elif kind == "iou":
        attrs = {"fg_iou": 0.4, "bg_iou": 0.5}
    else:
        attrs = {"gamma": -1.0}
    return Case("retina_loss", attrs, ins, dtypes=["float32"] * 4 + ["int64"], int_high=k)


VALID = {
    "level_conv": level_conv_case(),
    "anchor_grid": anchor_grid_case(),
    "retina_loss": retina_loss_case(),
}

INVALID = {
    "level_conv": level_conv_invalid(),
    "anchor_grid": anchor_grid_invalid(),
    "retina_loss": retina_loss_invalid(),
}
