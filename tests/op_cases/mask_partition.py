"""Cases for archdsl/ops/mask_partition.py: mask_partition."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, small


@st.composite
def mask_partition_case(draw):
    b, length, d = draw(batch), draw(small), draw(small)
    xb = draw(st.sampled_from([1, b]))
    return Case("mask_partition", {"num_masked": draw(st.integers(0, length))}, [(xb, length, d), (b, length)],
                dtypes=["float32", "bool"])


@st.composite
def mask_partition_invalid(draw):
    b, length, d = draw(batch), draw(small), draw(small)
    kind = draw(st.sampled_from(["count", "length", "batch", "rank"]))
    if kind == "count":
        n = draw(st.sampled_from([-1, length + 1]))
        return Case("mask_partition", {"num_masked": n}, [(b, length, d), (b, length)], dtypes=["float32", "bool"])
    if kind == "length":
        return Case("mask_partition", {"num_masked": 0}, [(b, length, d), (b, length + 1)], dtypes=["float32", "bool"])
    if kind == "batch":
        return Case("mask_partition", {"num_masked": 0}, [(b + 1, length, d), (b, length)] if b + 1 != 1 else
                    [(3, length, d), (2, length)], dtypes=["float32", "bool"])
    return Case("mask_partition", {"num_masked": 0}, [(b, length), (b, length)], dtypes=["float32", "bool"])


VALID = {"mask_partition": mask_partition_case()}
INVALID = {"mask_partition": mask_partition_invalid()}
