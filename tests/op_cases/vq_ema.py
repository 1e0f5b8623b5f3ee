"""Cases for archdsl/ops/vq_ema.py: the EMA-codebook vector quantiser (its update rule is tested
against a hand-written port of rosinality's Quantize in tests/test_vqvae2.py)."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe, quantiser_input, small


@st.composite
def vq_ema_case(draw):
    x, _, attrs = quantiser_input(draw)
    maybe(draw, attrs, "decay", draw(st.floats(0.0, 0.999)))
    maybe(draw, attrs, "beta", draw(st.floats(0.0, 1.0)))
    maybe(draw, attrs, "eps", draw(st.sampled_from([1e-5, 1e-3, 0.1])))
    return Case("vq_ema", attrs, [x])


@st.composite
def vq_ema_invalid(draw):
    kind = draw(st.sampled_from(["rank", "codes", "decay", "eps", "beta", "axis"]))
    b, d = draw(batch), draw(small)
    if kind == "rank":
        return Case("vq_ema", {"num_codes": 4}, [(b,)])
    if kind == "codes":
        return Case("vq_ema", {"num_codes": draw(st.integers(-2, 0))}, [(b, d, 2)])
    if kind == "decay":
        return Case("vq_ema", {"num_codes": 4, "decay": draw(st.sampled_from([-0.1, 1.0, 1.5]))}, [(b, d, 2)])
    if kind == "eps":
        return Case("vq_ema", {"num_codes": 4, "eps": draw(st.sampled_from([0.0, -1e-5]))}, [(b, d, 2)])
    if kind == "beta":
        return Case("vq_ema", {"num_codes": 4, "beta": -0.25}, [(b, d, 2)])
    return Case("vq_ema", {"num_codes": 4, "axis": draw(st.sampled_from([3, 4, -4]))}, [(b, d, 2)])


VALID = {"vq_ema": vq_ema_case()}
INVALID = {"vq_ema": vq_ema_invalid()}
