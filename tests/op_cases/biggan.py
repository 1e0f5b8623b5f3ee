"""Cases for archdsl/ops/biggan.py: sn_embedding, truncated_randn, rand_class."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, small

ZERO_OTHER_FLOPS = {"sn_embedding": "a table lookup (data movement; σ is per forward, not per sample)"}


@st.composite
def sn_embedding_case(draw):
    n = draw(st.integers(1, 8))
    attrs = {"num": n, "dim": draw(st.integers(1, 5))}
    if draw(st.booleans()):
        attrs["n_power_iterations"] = draw(st.integers(1, 3))
    return Case("sn_embedding", attrs, [draw(any_shape(1, 3))], dtypes=["int64"], int_high=n)


@st.composite
def sn_embedding_invalid(draw):
    kind = draw(st.sampled_from(["num", "dim", "iters", "eps"]))
    attrs = {"num": 3, "dim": 2}
    if kind in ("num", "dim"):
        attrs[kind] = draw(st.integers(-2, 0))
    elif kind == "iters":
        attrs["n_power_iterations"] = draw(st.integers(-2, 0))
    else:
        attrs["eps"] = draw(st.sampled_from([0.0, -1e-6]))
    return Case("sn_embedding", attrs, [draw(any_shape(1, 3))], dtypes=["int64"], int_high=3)


@st.composite
def truncated_randn_case(draw):
    attrs = {"shape": draw(st.lists(small, min_size=1, max_size=3))}
    if draw(st.booleans()):
        attrs["threshold"] = draw(st.floats(0.01, 4.0))
    return Case("truncated_randn", attrs, [draw(any_shape(1, 3))])


@st.composite
def truncated_randn_invalid(draw):
    if draw(st.booleans()):
        return Case("truncated_randn", {"shape": [draw(small), draw(st.integers(-2, 0))]}, [draw(any_shape(1, 3))])
    t = draw(st.sampled_from([0.0, -0.5, float("inf"), float("nan")]))
    return Case("truncated_randn", {"shape": [draw(small)], "threshold": t}, [draw(any_shape(1, 3))])


@st.composite
def rand_class_case(draw):
    return Case("rand_class", {"num_classes": draw(st.integers(1, 10))}, [draw(any_shape(1, 4))])


rand_class_invalid = st.tuples(st.integers(-3, 0), any_shape(1, 3)).map(
    lambda t: Case("rand_class", {"num_classes": t[0]}, [t[1]]))


VALID = {"sn_embedding": sn_embedding_case(), "truncated_randn": truncated_randn_case(),
         "rand_class": rand_class_case()}
INVALID = {"sn_embedding": sn_embedding_invalid(), "truncated_randn": truncated_randn_invalid(),
           "rand_class": rand_class_invalid}
