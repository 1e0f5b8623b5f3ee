"""Cases for archdsl/ops/conv.py's conv1d and conv3d (the 2-d conv's cases are in
tests/test_ops.py)."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe

MAC_OPS = {"conv1d", "conv3d"}



def _auto(k, s, d):
    return ((s - 1) + d * (k - 1)) // 2


@st.composite
def conv1d_case(draw):
    g = draw(st.integers(1, 3))
    cin, out = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 3))
    k, s, d = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    mode = draw(st.sampled_from(["default", "auto", "same", "int"]))
    if mode == "same" and (s != 1 or (d * (k - 1)) % 2):
        mode = "auto"
    attrs: dict = {"out": out, "kernel": k}
    if s != 1 or draw(st.booleans()):
        attrs["stride"] = s
    if d != 1 or draw(st.booleans()):
        attrs["dilation"] = d
    if mode == "int":
        p = draw(st.integers(0, 2))
        attrs["pad"] = p
    else:
        p = _auto(k, s, d)
        if mode != "default":
            attrs["pad"] = mode
    if g != 1:
        attrs["groups"] = g
    maybe(draw, attrs, "bias", draw(st.booleans()))
    lo = max(1, d * (k - 1) + 1 - 2 * p)
    return Case("conv1d", attrs, [(draw(batch), cin, draw(st.integers(lo, lo + 6)))])


@st.composite
def conv1d_invalid(draw):
    kind = draw(st.sampled_from(["groups", "too_big", "rank", "same_stride", "nonpositive",
                                 "negative_pad"]))
    attrs: dict = {"out": 2, "kernel": 3}
    x = (draw(batch), 4, 6)
    if kind == "groups":
        attrs["groups"] = 3
    elif kind == "too_big":
        attrs.update(kernel=5, pad=0)
        x = (x[0], 4, draw(st.integers(1, 4)))
    elif kind == "rank":
        x = draw(st.sampled_from([(1, 4), (1, 4, 4, 4)]))
    elif kind == "same_stride":
        attrs.update(pad="same", stride=2)
    elif kind == "negative_pad":
        attrs["pad"] = draw(st.integers(-2, -1))
    else:
        key = draw(st.sampled_from(["out", "kernel", "stride", "dilation", "groups"]))
        attrs[key] = draw(st.integers(-2, 0))
    return Case("conv1d", attrs, [x])


@st.composite
def conv3d_case(draw):
    g = draw(st.integers(1, 2))
    cin, out = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(3))
    s = tuple(draw(st.integers(1, 2)) for _ in range(3))
    attrs: dict = {"out": out, "kernel": k if len(set(k)) > 1 else k[0]}
    if s != (1, 1, 1):
        attrs["stride"] = s
    if draw(st.booleans()):
        p = tuple(draw(st.integers(0, 1)) for _ in range(3))
        attrs["pad"] = p
    else:
        p = tuple(_auto(k[i], s[i], 1) for i in range(3))
    if g != 1:
        attrs["groups"] = g
    maybe(draw, attrs, "bias", draw(st.booleans()))
    lo = [max(1, k[i] - 2 * p[i]) for i in range(3)]
    sizes = [draw(st.integers(lo[i], lo[i] + 3)) for i in range(3)]
    return Case("conv3d", attrs, [(draw(batch), cin, *sizes)])


@st.composite
def conv3d_invalid(draw):
    kind = draw(st.sampled_from(["groups", "too_big", "rank", "triple"]))
    attrs: dict = {"out": 2, "kernel": 3}
    x = (1, 4, 4, 4, 4)
    if kind == "groups":
        attrs["groups"] = 3
    elif kind == "too_big":
        attrs.update(kernel=(1, 5, 1), pad=0)
    elif kind == "rank":
        x = (1, 4, 4, 4)
    else:
        attrs["stride"] = (1, 0, 1)
    return Case("conv3d", attrs, [x])


VALID = {
    "conv1d": conv1d_case(),
    "conv3d": conv3d_case(),
}

INVALID = {
    "conv1d": conv1d_invalid(),
    "conv3d": conv3d_invalid(),
}
