"""Cases for archdsl/ops/ham.py: nmf2d."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe, shape_of_rank


@st.composite
def nmf2d_case(draw):
    s = draw(st.integers(1, 2))
    attrs: dict = {}
    if s > 1:
        attrs["S"] = s
    maybe(draw, attrs, "R", draw(st.integers(1, 6)))
    maybe(draw, attrs, "eval_steps", draw(st.integers(0, 3)))
    maybe(draw, attrs, "train_steps", draw(st.integers(0, 3)))
    return Case("nmf2d", attrs, [(draw(batch), s * draw(st.integers(1, 4)), draw(st.integers(1, 4)),
                                  draw(st.integers(1, 4)))])


@st.composite
def nmf2d_invalid(draw):
    kind = draw(st.sampled_from(["divide", "rank", "R", "steps"]))
    if kind == "divide":
        return Case("nmf2d", {"S": 2}, [(1, 3, 2, 2)])
    if kind == "rank":
        return Case("nmf2d", {}, [draw(shape_of_rank(draw(st.sampled_from([2, 3, 5]))))])
    if kind == "R":
        return Case("nmf2d", {"R": draw(st.integers(-2, 0))}, [(1, 4, 2, 2)])
    return Case("nmf2d", {"eval_steps": -1}, [(1, 4, 2, 2)])


VALID = {"nmf2d": nmf2d_case()}
INVALID = {"nmf2d": nmf2d_invalid()}
