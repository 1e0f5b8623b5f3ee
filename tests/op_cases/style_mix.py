"""Cases for archdsl/ops/style_mix.py: style_mix."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, small

ZERO_OTHER_FLOPS = {"style_mix": "a broadcast and a select"}


@st.composite
def style_mix_case(draw):
    b, s = draw(batch), draw(small)
    attrs = {"layers": draw(st.integers(1, 6))}
    if draw(st.booleans()):
        attrs["prob"] = draw(st.floats(0.0, 1.0))
    return Case("style_mix", attrs, [(b, s)] * draw(st.integers(1, 2)))


@st.composite
def style_mix_invalid(draw):
    b, s = draw(batch), draw(small)
    kind = draw(st.sampled_from(["layers", "prob", "shapes", "rank", "count"]))
    if kind == "layers":
        return Case("style_mix", {"layers": draw(st.integers(-2, 0))}, [(b, s)])
    if kind == "prob":
        return Case("style_mix", {"layers": 2, "prob": draw(st.sampled_from([-0.5, 1.5]))}, [(b, s)])
    if kind == "shapes":
        return Case("style_mix", {"layers": 2}, [(b, s), (b, s + 1)])
    if kind == "rank":
        return Case("style_mix", {"layers": 2}, [(b, s, 2)])
    return Case("style_mix", {"layers": 2}, [(b, s)] * 3)


VALID = {"style_mix": style_mix_case()}
INVALID = {"style_mix": style_mix_invalid()}
