"""Cases for archdsl/ops/scaled.py: ws_conv, scaled_act, eq_conv, eq_linear, mod_conv."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, batch, int_or_pair, maybe, pair, small

MAC_OPS = {"ws_conv", "eq_conv", "eq_linear"}
NO_INVALID = {"scaled_act"}  # pointwise over any shape; act is a closed Literal

_ACTS = ["identity", "celu", "elu", "gelu", "leaky_relu", "log_sigmoid", "relu", "relu6", "selu",
         "sigmoid", "silu", "softsign", "softplus", "tanh"]


@st.composite
def conv_like(draw, name: str, min_fan_in: int = 1):
    """A valid conv configuration (groups, kernel, stride, dilation, pad modes) for a conv-shaped op."""
    g = draw(st.integers(1, 2))
    cin, out = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    k, s, d = draw(int_or_pair(1, 3)), draw(int_or_pair(1, 2)), draw(int_or_pair(1, 2))
    kk, ss, dd = pair(k), pair(s), pair(d)
    if (cin // g) * kk[0] * kk[1] < min_fan_in:
        k, kk = 3, (3, 3)
    attrs: dict = {"out": out, "kernel": k}
    if s != 1:
        attrs["stride"] = s
    if d != 1:
        attrs["dilation"] = d
    if g != 1:
        attrs["groups"] = g
    mode = draw(st.sampled_from(["default", "int", "pair"]))
    if mode == "int":
        attrs["pad"] = draw(st.integers(0, 2))
    elif mode == "pair":
        attrs["pad"] = draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
    if mode == "default":
        p = tuple(((ss[i] - 1) + dd[i] * (kk[i] - 1)) // 2 for i in range(2))
    else:
        p = pair(attrs["pad"])
    maybe(draw, attrs, "bias", draw(st.booleans()))
    hw = [draw(st.integers(max(1, dd[i] * (kk[i] - 1) + 1 - 2 * p[i]),
                           max(1, dd[i] * (kk[i] - 1) + 1 - 2 * p[i]) + 4)) for i in range(2)]
    return Case(name, attrs, [(draw(batch), cin, *hw)])


@st.composite
def ws_conv_case(draw):
    case = draw(conv_like("ws_conv", min_fan_in=2))
    scaled = draw(st.booleans())
    if not scaled:
        case.attrs["scaled"] = False
    else:
        maybe(draw, case.attrs, "gamma", draw(st.one_of(st.floats(0.5, 2.0), st.sampled_from(_ACTS))))
        maybe(draw, case.attrs, "gain_init", draw(st.floats(-1.0, 2.0)))
    maybe(draw, case.attrs, "eps", draw(st.sampled_from([1e-6, 1e-5, 1e-3])))
    return case


@st.composite
def ws_conv_invalid(draw):
    kind = draw(st.sampled_from(["fan_in_one", "gamma_name", "eps", "unscaled_gamma", "rank", "groups"]))
    b, h, w = draw(batch), draw(small), draw(small)
    if kind == "fan_in_one":
        return Case("ws_conv", {"out": draw(small), "kernel": 1}, [(b, 1, h, w)])
    if kind == "gamma_name":
        return Case("ws_conv", {"out": 2, "kernel": 1, "gamma": draw(st.sampled_from(["swish", "", "same"]))},
                    [(b, 3, h, w)])
    if kind == "eps":
        return Case("ws_conv", {"out": 2, "kernel": 1, "eps": draw(st.floats(-1.0, 0.0))}, [(b, 3, h, w)])
    if kind == "unscaled_gamma":
        return Case("ws_conv", {"out": 2, "kernel": 1, "scaled": False, "gamma": "relu"}, [(b, 3, h, w)])
    if kind == "rank":
        return Case("ws_conv", {"out": 2, "kernel": 1}, [draw(st.sampled_from([(b, 3), (b, 3, h)]))])
    return Case("ws_conv", {"out": 4, "kernel": 1, "groups": 2}, [(b, 3, h, w)])


@st.composite
def scaled_act_case(draw):
    attrs: dict = {}
    maybe(draw, attrs, "act", draw(st.sampled_from(_ACTS)))
    maybe(draw, attrs, "gamma", draw(st.floats(-2.0, 2.0)))
    return Case("scaled_act", attrs, [draw(any_shape(1, 4))])


@st.composite
def eq_conv_case(draw):
    case = draw(conv_like("eq_conv"))
    maybe(draw, case.attrs, "gain", draw(st.floats(0.5, 2.0)))
    maybe(draw, case.attrs, "lr_mul", draw(st.sampled_from([0.01, 0.5, 1.0])))
    maybe(draw, case.attrs, "bias_init", draw(st.floats(-1.0, 1.0)))
    return case


@st.composite
def eq_conv_invalid(draw):
    kind = draw(st.sampled_from(["lr_mul", "rank", "groups", "too_big"]))
    b = draw(batch)
    if kind == "lr_mul":
        return Case("eq_conv", {"out": 2, "kernel": 1, "lr_mul": draw(st.floats(-1.0, 0.0))}, [(b, 3, 4, 4)])
    if kind == "rank":
        return Case("eq_conv", {"out": 2}, [(b, 3, 4)])
    if kind == "groups":
        return Case("eq_conv", {"out": 3, "groups": 2}, [(b, 4, 4, 4)])
    return Case("eq_conv", {"out": 2, "kernel": 5, "pad": 0}, [(b, 3, 4, 4)])


@st.composite
def eq_linear_case(draw):
    attrs: dict = {"out": draw(st.integers(1, 6))}
    maybe(draw, attrs, "bias", draw(st.booleans()))
    maybe(draw, attrs, "gain", draw(st.floats(0.5, 2.0)))
    maybe(draw, attrs, "lr_mul", draw(st.sampled_from([0.01, 0.5, 1.0])))
    maybe(draw, attrs, "bias_init", draw(st.floats(-1.0, 1.0)))
    if attrs.get("bias", True):
        maybe(draw, attrs, "act", draw(st.sampled_from(["none", "fused_lrelu"])))
    return Case("eq_linear", attrs, [draw(any_shape(2, 4))])


eq_linear_invalid = st.one_of(
    any_shape(1, 1).map(lambda x: Case("eq_linear", {"out": 3}, [x])),
    st.tuples(st.integers(-3, 0), any_shape(2, 4)).map(lambda t: Case("eq_linear", {"out": t[0]}, [t[1]])),
    st.tuples(st.floats(-1.0, 0.0), any_shape(2, 4)).map(
        lambda t: Case("eq_linear", {"out": 2, "lr_mul": t[0]}, [t[1]])),
    any_shape(2, 4).map(lambda x: Case("eq_linear", {"out": 2, "bias": False, "act": "fused_lrelu"}, [x])))


@st.composite
def mod_conv_case(draw):
    k = draw(st.integers(1, 3))
    attrs: dict = {"out": draw(st.integers(1, 4)), "kernel": k}
    maybe(draw, attrs, "demodulate", draw(st.booleans()))
    maybe(draw, attrs, "eps", draw(st.sampled_from([1e-8, 1e-5])))
    b = draw(batch)
    lo = max(1, k - 2 * (k // 2))
    x = (b, draw(st.integers(1, 4)), draw(st.integers(lo, lo + 4)), draw(st.integers(lo, lo + 4)))
    return Case("mod_conv", attrs, [x, (b, draw(st.integers(1, 5)))])


@st.composite
def mod_conv_invalid(draw):
    kind = draw(st.sampled_from(["batch", "style_rank", "x_rank", "nonpositive", "eps"]))
    b = draw(batch)
    x, s = (b, 3, 4, 4), (b, 5)
    attrs: dict = {"out": 2, "kernel": 3}
    if kind == "batch":
        s = (b + draw(st.integers(1, 2)), 5)
    elif kind == "style_rank":
        s = (b, 5, 1)
    elif kind == "x_rank":
        x = (b, 3, 4)
    elif kind == "nonpositive":
        attrs[draw(st.sampled_from(["out", "kernel"]))] = draw(st.integers(-2, 0))
    else:
        attrs["eps"] = -1.0
    return Case("mod_conv", attrs, [x, s])


VALID = {
    "ws_conv": ws_conv_case(),
    "scaled_act": scaled_act_case(),
    "eq_conv": eq_conv_case(),
    "eq_linear": eq_linear_case(),
    "mod_conv": mod_conv_case(),
}

INVALID = {
    "ws_conv": ws_conv_invalid(),
    "eq_conv": eq_conv_invalid(),
    "eq_linear": eq_linear_invalid,
    "mod_conv": mod_conv_invalid(),
}
