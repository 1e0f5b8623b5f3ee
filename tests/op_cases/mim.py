"""Cases for archdsl/ops/mim.py: masked_token_ce."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, small


@st.composite
def masked_token_ce_case(draw):
    b, n, v = draw(batch), draw(small), draw(st.integers(2, 6))
    return Case("masked_token_ce", {}, [(b, n, v), (b, n), (b, n)], dtypes=["float32", "int64", "bool"],
                int_high=v)


@st.composite
def masked_token_ce_invalid(draw):
    b, n, v = draw(batch), draw(small), draw(small)
    kind = draw(st.sampled_from(["rank", "target", "mask"]))
    if kind == "rank":
        return Case("masked_token_ce", {}, [(b, v), (b,), (b,)], dtypes=["float32", "int64", "bool"])
    if kind == "target":
        return Case("masked_token_ce", {}, [(b, n, v), (b, n + 1), (b, n)], dtypes=["float32", "int64", "bool"])
    return Case("masked_token_ce", {}, [(b, n, v), (b, n), (b + 1, n)], dtypes=["float32", "int64", "bool"])


VALID = {"masked_token_ce": masked_token_ce_case()}
INVALID = {"masked_token_ce": masked_token_ce_invalid()}
