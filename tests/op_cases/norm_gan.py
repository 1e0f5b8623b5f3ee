"""Cases for archdsl/ops/norm_gan.py: pixel_norm, adain, cond_bn, minibatch_std, noise,
sn_conv, sn_linear."""
from __future__ import annotations

import math

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, batch, maybe, shape_of_rank, small
from op_cases.scaled import conv_like

MAC_OPS = {"sn_conv", "sn_linear"}


@st.composite
def pixel_norm_case(draw):
    attrs: dict = {}
    maybe(draw, attrs, "eps", draw(st.sampled_from([1e-8, 1e-5])))
    return Case("pixel_norm", attrs, [draw(any_shape(2, 4))])


pixel_norm_invalid = st.one_of(
    any_shape(1, 1).map(lambda x: Case("pixel_norm", {}, [x])),
    st.tuples(st.floats(-1.0, -1e-9), any_shape(2, 4)).map(
        lambda t: Case("pixel_norm", {"eps": t[0]}, [t[1]])))


@st.composite
def adain_case(draw):
    x = list(draw(any_shape(3, 4)))
    if math.prod(x[2:]) == 1:
        x[2] = 2
    attrs: dict = {}
    maybe(draw, attrs, "eps", draw(st.sampled_from([1e-5, 1e-3])))
    return Case("adain", attrs, [tuple(x), (x[0], 2 * x[1])])


@st.composite
def adain_invalid(draw):
    kind = draw(st.sampled_from(["rank", "one_position", "style", "eps"]))
    b, c = draw(batch), draw(small)
    if kind == "rank":
        return Case("adain", {}, [(b, c), (b, 2 * c)])
    if kind == "one_position":
        return Case("adain", {}, [(b, c, 1, 1), (b, 2 * c)])
    if kind == "style":
        return Case("adain", {}, [(b, c, 3, 3), draw(st.sampled_from([(b, c), (b, 2 * c, 1), (b + 1, 2 * c)]))])
    return Case("adain", {"eps": -1.0}, [(b, c, 3, 3), (b, 2 * c)])


@st.composite
def cond_bn_case(draw):
    n = draw(st.integers(1, 5))
    x = draw(any_shape(2, 4))
    attrs: dict = {"num_classes": n}
    maybe(draw, attrs, "eps", draw(st.sampled_from([1e-5, 1e-3])))
    maybe(draw, attrs, "momentum", draw(st.floats(0.0, 1.0)))
    return Case("cond_bn", attrs, [x, (x[0],)], dtypes=["float32", "int64"], int_high=n)


@st.composite
def cond_bn_invalid(draw):
    kind = draw(st.sampled_from(["rank", "labels", "classes", "eps"]))
    b, c = draw(batch), draw(small)
    if kind == "rank":
        return Case("cond_bn", {"num_classes": 3}, [(b,), (b,)])
    if kind == "labels":
        return Case("cond_bn", {"num_classes": 3}, [(b, c, 2), draw(st.sampled_from([(b + 1,), (b, 1)]))])
    if kind == "classes":
        return Case("cond_bn", {"num_classes": draw(st.integers(-2, 0))}, [(b, c), (b,)])
    return Case("cond_bn", {"num_classes": 3, "eps": -0.5}, [(b, c), (b,)])


@st.composite
def minibatch_std_case(draw):
    g = draw(st.integers(1, 4))
    f = draw(st.integers(1, 3))
    b = draw(st.sampled_from([k for k in range(1, 9) if k % min(g, k) == 0]))
    x = (b, f * draw(st.integers(1, 3)), draw(small), draw(small))
    attrs: dict = {"group_size": g}
    if f != 1 or draw(st.booleans()):
        attrs["features"] = f
    return Case("minibatch_std", attrs, [x])


@st.composite
def minibatch_std_invalid(draw):
    kind = draw(st.sampled_from(["batch", "channels", "rank", "nonpositive"]))
    if kind == "batch":
        return Case("minibatch_std", {"group_size": 4}, [(draw(st.sampled_from([5, 6, 7])), 2, 3, 3)])
    if kind == "channels":
        return Case("minibatch_std", {"group_size": 1, "features": 2}, [(2, 3, 3, 3)])
    if kind == "rank":
        return Case("minibatch_std", {}, [draw(st.sampled_from([(2, 3), (2, 3, 4), (2, 3, 4, 4, 4)]))])
    return Case("minibatch_std", {draw(st.sampled_from(["group_size", "features"])): draw(st.integers(-2, 0))},
                [(2, 2, 3, 3)])


@st.composite
def noise_case(draw):
    x = draw(shape_of_rank(4))
    attrs: dict = {}
    maybe(draw, attrs, "per_channel", draw(st.booleans()))
    ins = [x]
    if draw(st.booleans()):
        ins.append((draw(st.sampled_from([1, x[0]])), 1, x[2], x[3]))
    return Case("noise", attrs, ins)


@st.composite
def noise_invalid(draw):
    kind = draw(st.sampled_from(["rank", "noise_shape", "three"]))
    x = draw(shape_of_rank(4))
    if kind == "rank":
        return Case("noise", {}, [draw(st.sampled_from([(2, 3), (2, 3, 4)]))])
    if kind == "three":
        n = (1, 1, x[2], x[3])
        return Case("noise", {}, [x, n, n])
    bad = draw(st.sampled_from([(x[0], 2, x[2], x[3]), (x[0] + 1, 1, x[2], x[3]), (x[0], 1, x[2] + 1, x[3]),
                                (x[0], 1, x[2])]))
    return Case("noise", {}, [x, bad])


@st.composite
def sn_conv_case(draw):
    case = draw(conv_like("sn_conv"))
    maybe(draw, case.attrs, "n_power_iterations", draw(st.integers(1, 3)))
    maybe(draw, case.attrs, "eps", draw(st.sampled_from([1e-12, 1e-6])))
    return case


@st.composite
def sn_conv_invalid(draw):
    kind = draw(st.sampled_from(["iters", "eps", "rank", "groups"]))
    b = draw(batch)
    if kind == "iters":
        return Case("sn_conv", {"out": 2, "n_power_iterations": draw(st.integers(-2, 0))}, [(b, 3, 4, 4)])
    if kind == "eps":
        return Case("sn_conv", {"out": 2, "eps": draw(st.floats(-1.0, 0.0))}, [(b, 3, 4, 4)])
    if kind == "rank":
        return Case("sn_conv", {"out": 2}, [(b, 3)])
    return Case("sn_conv", {"out": 3, "groups": 2}, [(b, 4, 4, 4)])


@st.composite
def sn_linear_case(draw):
    attrs: dict = {"out": draw(st.integers(1, 6))}
    maybe(draw, attrs, "bias", draw(st.booleans()))
    maybe(draw, attrs, "n_power_iterations", draw(st.integers(1, 3)))
    return Case("sn_linear", attrs, [draw(any_shape(2, 4))])


sn_linear_invalid = st.one_of(
    any_shape(1, 1).map(lambda x: Case("sn_linear", {"out": 3}, [x])),
    st.tuples(st.integers(-3, 0), any_shape(2, 4)).map(lambda t: Case("sn_linear", {"out": t[0]}, [t[1]])),
    st.tuples(st.integers(-3, 0), any_shape(2, 4)).map(
        lambda t: Case("sn_linear", {"out": 2, "n_power_iterations": t[0]}, [t[1]])))


VALID = {
    "pixel_norm": pixel_norm_case(),
    "adain": adain_case(),
    "cond_bn": cond_bn_case(),
    "minibatch_std": minibatch_std_case(),
    "noise": noise_case(),
    "sn_conv": sn_conv_case(),
    "sn_linear": sn_linear_case(),
}

INVALID = {
    "pixel_norm": pixel_norm_invalid,
    "adain": adain_invalid(),
    "cond_bn": cond_bn_invalid(),
    "minibatch_std": minibatch_std_invalid(),
    "noise": noise_invalid(),
    "sn_conv": sn_conv_invalid(),
    "sn_linear": sn_linear_invalid,
}
