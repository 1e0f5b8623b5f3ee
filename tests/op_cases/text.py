"""Cases for archdsl/ops/text.py: lookup (a shared embedding table), sinusoid_pos."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, small


@st.composite
def lookup_case(draw):
    v = draw(st.integers(1, 6))
    ids = draw(st.tuples(batch, small)) if draw(st.booleans()) else (draw(batch),)
    return Case("lookup", {}, [ids, (v, draw(small))], dtypes=["int64", "float32"], int_high=v)


@st.composite
def lookup_invalid(draw):
    return Case("lookup", {}, [(draw(batch), 2), (3, 2, 2)], dtypes=["int64", "float32"], int_high=1)


@st.composite
def sinusoid_case(draw):
    return Case("sinusoid_pos", {}, [(draw(batch), draw(small), 2 * draw(small))])


@st.composite
def sinusoid_invalid(draw):
    if draw(st.booleans()):
        return Case("sinusoid_pos", {}, [(draw(batch), draw(small), 2 * draw(small) + 1)])
    return Case("sinusoid_pos", {}, [(draw(batch), 4)])


VALID = {"lookup": lookup_case(), "sinusoid_pos": sinusoid_case()}
INVALID = {"lookup": lookup_invalid(), "sinusoid_pos": sinusoid_invalid()}
ZERO_OTHER_FLOPS = {"lookup": "a gather: data movement"}
