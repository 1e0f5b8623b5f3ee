"""Cases for archdsl/ops/clip_text.py: eot_pool."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, small


@st.composite
def eot_pool_case(draw):
    b, length, d = draw(batch), draw(small), draw(small)
    return Case("eot_pool", {}, [(b, length, d), (b, length)], dtypes=["float32", "int64"], int_high=50)


@st.composite
def eot_pool_invalid(draw):
    b, length, d = draw(batch), draw(small), draw(small)
    kind = draw(st.sampled_from(["rank", "batch", "length"]))
    if kind == "rank":
        return Case("eot_pool", {}, [(b, length), (b, length)], dtypes=["float32", "int64"])
    if kind == "batch":
        return Case("eot_pool", {}, [(b, length, d), (b + 1, length)], dtypes=["float32", "int64"])
    return Case("eot_pool", {}, [(b, length, d), (b, length + 1)], dtypes=["float32", "int64"])


VALID = {"eot_pool": eot_pool_case()}
INVALID = {"eot_pool": eot_pool_invalid()}
