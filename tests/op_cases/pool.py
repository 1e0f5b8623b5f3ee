"""Cases for blur_pool (archdsl/ops/pool.py); the other pools' cases are in tests/test_ops.py."""
from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe, small

# a fixed depthwise conv with no bias: all its arithmetic is multiply-adds, counted in flops
MAC_OPS = {"blur_pool"}


def _padding(kernel: int, stride: int) -> int:
    return (stride - 1 + kernel - 1) // 2


@st.composite
def blur_pool_case(draw):
    attrs: dict = {}
    maybe(draw, attrs, "kernel", draw(st.integers(2, 5)))
    maybe(draw, attrs, "stride", draw(st.integers(1, 3)))
    maybe(draw, attrs, "pad_mode", draw(st.sampled_from(["reflect", "constant"])))
    k, s = attrs.get("kernel", 3), attrs.get("stride", 2)
    p = _padding(k, s)
    lo = max(k - 2 * p, p + 1 if attrs.get("pad_mode", "reflect") == "reflect" else 1, 1)
    h, w = draw(st.integers(lo, lo + 5)), draw(st.integers(lo, lo + 5))
    return Case("blur_pool", attrs, [(draw(batch), draw(small), h, w)])


@st.composite
def blur_pool_invalid(draw):
    kind = draw(st.sampled_from(["rank", "nonpositive", "reflect_small", "too_big"]))
    b, c, h, w = draw(batch), draw(small), draw(small), draw(small)
    if kind == "rank":
        return Case("blur_pool", {}, [draw(st.sampled_from([(b, c), (b, c, h), (b, c, h, w, 2)]))])
    if kind == "nonpositive":
        field_ = draw(st.sampled_from(["kernel", "stride"]))
        return Case("blur_pool", {field_: draw(st.integers(-1, 1 if field_ == "kernel" else 0))},
                    [(b, c, h, w)])
    if kind == "reflect_small":  # reflect padding needs more pixels than it pads
        k, s = draw(st.integers(2, 5)), draw(st.integers(1, 3))
        p = _padding(k, s)
        assume(p >= 1)
        h = draw(st.integers(1, p))
        return Case("blur_pool", {"kernel": k, "stride": s}, [(b, c, h, w + p)])
    # an even filter at stride 1 pads k/2 - 1 on each side: a 1-pixel row is too short
    k = draw(st.sampled_from([2, 4]))
    return Case("blur_pool", {"kernel": k, "stride": 1, "pad_mode": "constant"}, [(b, c, 1, w)])


VALID = {"blur_pool": blur_pool_case()}
INVALID = {"blur_pool": blur_pool_invalid()}
