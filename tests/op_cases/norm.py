"""Cases for the RMS norm of archdsl/ops/norm.py (the other norms' cases are in test_ops.py)."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, maybe


@st.composite
def rms_norm_case(draw):
    attrs: dict = {}
    maybe(draw, attrs, "eps", draw(st.sampled_from([1e-6, 1e-5, 1e-3])))
    maybe(draw, attrs, "affine", draw(st.booleans()))
    return Case("rms_norm", attrs, [draw(any_shape(2, 4))])


@st.composite
def rms_norm_invalid(draw):
    if draw(st.booleans()):
        return Case("rms_norm", {}, [()])
    return Case("rms_norm", {"eps": -draw(st.sampled_from([1e-6, 1.0]))}, [draw(any_shape(1, 3))])


VALID = {"rms_norm": rms_norm_case()}
INVALID = {"rms_norm": rms_norm_invalid()}
