"""Cases for archdsl/ops/history_pool.py: CycleGAN's image history pool (its behaviour — fill,
then swap with probability p — is tested in tests/test_gen_a.py)."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, batch

ZERO_OTHER_FLOPS = {"history_pool": "data movement: copies and random draws"}


@st.composite
def history_pool_case(draw):
    x = draw(any_shape(1, 4))
    pool = (draw(st.integers(1, 4)), *x[1:])
    attrs = {"p": draw(st.floats(0.0, 1.0))} if draw(st.booleans()) else {}
    return Case("history_pool", attrs, [x, pool, ()], dtypes=["float32", "float32", "int64"],
                int_high=pool[0] + 1)


@st.composite
def history_pool_invalid(draw):
    x = draw(any_shape(2, 4))
    kind = draw(st.sampled_from(["image", "rank", "count", "p"]))
    pool, count, attrs = (draw(batch), *x[1:]), (), {}
    if kind == "image":
        pool = (pool[0], x[1] + draw(st.integers(1, 3)), *x[2:])
    elif kind == "rank":
        pool = pool[:-1]
    elif kind == "count":
        count = (draw(batch),)
    else:
        attrs["p"] = draw(st.sampled_from([-0.5, 1.5]))
    return Case("history_pool", attrs, [x, pool, count])


VALID = {"history_pool": history_pool_case()}
INVALID = {"history_pool": history_pool_invalid()}
