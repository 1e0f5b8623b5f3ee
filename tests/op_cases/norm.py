"""Cases for the RMS norms of archdsl/ops/norm.py: rms_norm, rms_norm2d, simple_norm,
simple_norm2d (the older norms of that file have theirs in tests/test_ops.py)."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape

RANKS = {"rms_norm": (1, 4), "simple_norm": (1, 4), "rms_norm2d": (4, 4), "simple_norm2d": (4, 4)}


def _dim(name: str) -> int:
    return 1 if name.endswith("2d") else -1


def rms_case(name: str):
    @st.composite
    def s(draw):
        attrs: dict = {}
        if draw(st.booleans()):
            attrs["eps"] = draw(st.sampled_from([0.0, 1e-6, 1e-5, 1e-3]))
        if draw(st.booleans()):
            attrs["affine"] = draw(st.booleans())
        x = list(draw(any_shape(*RANKS[name])))
        if name.startswith("simple") and x[_dim(name)] < 2:  # unbiased variance: 2 values at least
            x[_dim(name)] = 2
        return Case(name, attrs, [tuple(x)])
    return s()


def rms_invalid(name: str):
    @st.composite
    def s(draw):
        kinds = ["eps"] + (["rank"] if name.endswith("2d") else []) + \
            (["one_value"] if name.startswith("simple") else [])
        kind = draw(st.sampled_from(kinds))
        if kind == "rank":
            return Case(name, {}, [draw(any_shape(1, 3))])
        x = list(draw(any_shape(*RANKS[name])))
        if kind == "one_value":
            x[_dim(name)] = 1
            return Case(name, {}, [tuple(x)])
        x[_dim(name)] = max(x[_dim(name)], 2)
        return Case(name, {"eps": -draw(st.floats(1e-9, 1.0))}, [tuple(x)])
    return s()


VALID = {name: rms_case(name) for name in RANKS}
INVALID = {name: rms_invalid(name) for name in RANKS}
