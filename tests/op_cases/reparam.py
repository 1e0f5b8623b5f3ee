"""Cases for archdsl/ops/reparam.py: dirac_conv (DiracNet's Dirac-parameterised conv)."""
from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from op_cases.common import Case, batch, int_or_pair, maybe, pair, small

# all of dirac_conv's arithmetic is the conv (flops) plus the bias add; the batch-independent
# weight transform is documented on the op and not counted per activation
MAC_OPS = {"dirac_conv"}


@st.composite
def dirac_conv_case(draw):
    cin, out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if draw(st.booleans()):  # DiracNet's own shapes: Cin == out, or Cin == 2·out after NCReLU
        cin = draw(st.sampled_from([out, 2 * out]))
    k, s, d = draw(int_or_pair(1, 3)), draw(int_or_pair(1, 2)), draw(int_or_pair(1, 2))
    attrs: dict = {"out": out}
    maybe(draw, attrs, "kernel", k)
    kk = pair(attrs.get("kernel", 3))
    if s != 1:
        attrs["stride"] = s
    if d != 1:
        attrs["dilation"] = d
    ss, dd = pair(s), pair(d)
    mode = draw(st.sampled_from(["default", "int", "pair"]))
    if mode == "int":
        attrs["pad"] = draw(st.integers(0, 2))
    elif mode == "pair":
        attrs["pad"] = draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
    p = pair(attrs["pad"]) if "pad" in attrs else \
        tuple(((ss[i] - 1) + dd[i] * (kk[i] - 1)) // 2 for i in range(2))
    maybe(draw, attrs, "bias", draw(st.booleans()))
    maybe(draw, attrs, "alpha", draw(st.floats(-2.0, 5.0)))
    maybe(draw, attrs, "beta", draw(st.floats(-1.0, 1.0)))
    hw = [draw(st.integers(max(1, dd[i] * (kk[i] - 1) + 1 - 2 * p[i]),
                           max(1, dd[i] * (kk[i] - 1) + 1 - 2 * p[i]) + 4)) for i in range(2)]
    return Case("dirac_conv", attrs, [(draw(batch), cin, *hw)])


@st.composite
def dirac_conv_invalid(draw):
    kind = draw(st.sampled_from(["rank", "too_big", "nonpositive", "same_stride", "negative_pad"]))
    b, c, h, w = draw(batch), draw(small), draw(small), draw(small)
    attrs: dict = {"out": draw(small)}
    if kind == "rank":
        return Case("dirac_conv", attrs, [draw(st.sampled_from([(b, c), (b, c, h), (b, c, h, w, 2)]))])
    if kind == "too_big":  # the kernel exceeds the padded input
        k = draw(st.integers(2, 5))
        assume(h < k)
        attrs.update(kernel=(k, 1), pad=0)
    elif kind == "nonpositive":
        attrs[draw(st.sampled_from(["out", "kernel", "stride", "dilation"]))] = draw(st.integers(-2, 0))
    elif kind == "same_stride":
        attrs.update(pad="same", stride=2)
    else:
        attrs["pad"] = draw(st.sampled_from([-1, (-1, 0), (0, -2)]))
        h, w = h + 4, w + 4
    return Case("dirac_conv", attrs, [(b, c, h, w)])


VALID = {"dirac_conv": dirac_conv_case()}
INVALID = {"dirac_conv": dirac_conv_invalid()}
