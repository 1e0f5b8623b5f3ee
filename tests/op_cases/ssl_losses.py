"""Cases for archdsl/ops/ssl_losses.py: SwAV, memory-bank NCE and its negative draw, InvaSpread and CPC losses."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe, small

temperature = st.floats(0.05, 1.0)


@st.composite
def swav_case(draw):
    b, k, views = draw(batch), draw(small), draw(st.integers(2, 4))
    attrs = {"n_views": views, "n_assign": draw(st.integers(1, views))}
    maybe(draw, attrs, "temperature", draw(temperature))
    maybe(draw, attrs, "epsilon", draw(st.floats(0.05, 1.0)))
    maybe(draw, attrs, "iters", draw(st.integers(0, 4)))
    return Case("swav_loss", attrs, [(views * b, k)])


@st.composite
def swav_invalid(draw):
    b, k = draw(batch), draw(small)
    kind = draw(st.sampled_from(["one view", "indivisible", "assign"]))
    if kind == "one view":
        return Case("swav_loss", {"n_views": 1, "n_assign": 1}, [(b, k)])
    if kind == "indivisible":
        return Case("swav_loss", {"n_views": 2}, [(2 * b + 1, k)])
    return Case("swav_loss", {"n_views": 2, "n_assign": 3}, [(2 * b, k)])


@st.composite
def nce_case(draw):
    b, d, n = draw(batch), draw(small), draw(st.integers(1, 6))
    attrs = {"negatives": draw(st.integers(1, 8))}
    maybe(draw, attrs, "temperature", draw(temperature))
    return Case("nce_bank", attrs, [(b, d), (b,), (n, d), ()],
                dtypes=["float32", "int64", "float32", "float32"], int_high=n)


@st.composite
def nce_invalid(draw):
    b, d, n = draw(batch), draw(small), draw(st.integers(1, 6))
    return Case("nce_bank", {}, [(b, d), (b,), (n, d + draw(st.integers(1, 3))), ()],
                dtypes=["float32", "int64", "float32", "float32"], int_high=1)


@st.composite
def nce_draw_case(draw):
    n = draw(st.integers(1, 6))
    return Case("nce_draw", {"n": n, "negatives": draw(st.integers(1, 8))}, [(draw(batch),)],
                dtypes=["int64"], int_high=n)


@st.composite
def nce_draw_invalid(draw):
    if draw(st.booleans()):   # indices are a vector
        return Case("nce_draw", {"n": 4}, [(draw(batch), 2)], dtypes=["int64"], int_high=4)
    return Case("nce_draw", {"n": 4, "negatives": 0}, [(draw(batch),)], dtypes=["int64"], int_high=4)


@st.composite
def spread_case(draw):
    attrs: dict = {}
    maybe(draw, attrs, "temperature", draw(temperature))
    return Case("inva_spread", attrs, [(2 * draw(batch), draw(small))])


@st.composite
def spread_invalid(draw):
    return Case("inva_spread", {}, [(2 * draw(batch) + 1, draw(small))])


@st.composite
def cpc_case(draw):
    b, d, steps = draw(batch), draw(small), draw(st.integers(1, 3))
    t = steps + draw(st.integers(1, 4))
    return Case("cpc_nce", {"steps": steps}, [(b, t, d), (b, t, steps * d)])


@st.composite
def cpc_invalid(draw):
    b, d, steps = draw(batch), draw(small), draw(st.integers(1, 3))
    if draw(st.booleans()):  # no future latent to predict
        return Case("cpc_nce", {"steps": steps}, [(b, steps, d), (b, steps, steps * d)])
    return Case("cpc_nce", {"steps": steps}, [(b, steps + 2, d), (b, steps + 2, steps * d + 1)])


VALID = {
    "swav_loss": swav_case(),
    "nce_bank": nce_case(),
    "nce_draw": nce_draw_case(),
    "inva_spread": spread_case(),
    "cpc_nce": cpc_case(),
}
INVALID = {
    "swav_loss": swav_invalid(),
    "nce_bank": nce_invalid(),
    "nce_draw": nce_draw_invalid(),
    "inva_spread": spread_invalid(),
    "cpc_nce": cpc_invalid(),
}
