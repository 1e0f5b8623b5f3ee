"""Cases for archdsl/ops/generative.py: vq, reparam, sigmoid_focal_loss."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, batch, maybe, quantiser_input, small


@st.composite
def vq_case(draw):
    x, axis, attrs = quantiser_input(draw)
    if draw(st.booleans()):
        attrs["dim"] = x[axis]
    maybe(draw, attrs, "beta", draw(st.floats(0.0, 1.0)))
    return Case("vq", attrs, [x])


@st.composite
def vq_invalid(draw):
    kind = draw(st.sampled_from(["rank", "codes", "dim", "axis"]))
    b, d = draw(batch), draw(small)
    if kind == "rank":
        return Case("vq", {"num_codes": 4}, [(b,)])
    if kind == "codes":
        return Case("vq", {"num_codes": draw(st.integers(-2, 0))}, [(b, d, 2)])
    if kind == "dim":
        return Case("vq", {"num_codes": 4, "dim": d + draw(st.integers(1, 3))}, [(b, d, 2, 2)])
    return Case("vq", {"num_codes": 4, "axis": draw(st.sampled_from([3, 4, -4]))}, [(b, d, 2)])


@st.composite
def reparam_case(draw):
    x = draw(any_shape(2, 4))
    attrs: dict = {}
    maybe(draw, attrs, "reduction", draw(st.sampled_from(["mean", "sum", "none"])))
    maybe(draw, attrs, "eval_sample", draw(st.booleans()))
    if draw(st.booleans()):
        return Case("reparam", attrs, [x, x])
    return Case("reparam", attrs, [(x[0], 2 * x[1], *x[2:])])


@st.composite
def reparam_invalid(draw):
    kind = draw(st.sampled_from(["odd", "mismatch", "rank", "three"]))
    b, z = draw(batch), draw(small)
    if kind == "odd":
        return Case("reparam", {}, [(b, 2 * z + 1)])
    if kind == "mismatch":
        return Case("reparam", {}, [(b, z), (b, z + 1)])
    if kind == "rank":
        return Case("reparam", {}, [(b,)])
    return Case("reparam", {}, [(b, z), (b, z), (b, z)])


@st.composite
def focal_case(draw):
    x = draw(any_shape(1, 4))
    attrs: dict = {}
    maybe(draw, attrs, "alpha", draw(st.sampled_from([-1.0, 0.25, 0.5, 0.9])))
    maybe(draw, attrs, "gamma", draw(st.sampled_from([0.0, 1.0, 1.5, 2.0])))
    maybe(draw, attrs, "reduction", draw(st.sampled_from(["none", "mean", "sum"])))
    return Case("sigmoid_focal_loss", attrs, [x, x])


focal_invalid = st.tuples(any_shape(1, 4), st.integers(1, 3)).map(
    lambda t: Case("sigmoid_focal_loss", {}, [t[0], (*t[0][:-1], t[0][-1] + t[1])]))


VALID = {
    "vq": vq_case(),
    "reparam": reparam_case(),
    "sigmoid_focal_loss": focal_case(),
}

INVALID = {
    "vq": vq_invalid(),
    "reparam": reparam_invalid(),
    "sigmoid_focal_loss": focal_invalid,
}
