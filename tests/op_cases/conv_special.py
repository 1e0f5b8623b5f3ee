"""Cases for archdsl/ops/conv_special.py: conv_transpose, conv_with, deform_conv, fourier_unit,
dynamic_conv."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, int_or_pair, maybe, pair

MAC_OPS = {"conv_transpose", "conv_with", "dynamic_conv"}


def _conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _auto_pad(k, s, d):
    return ((s - 1) + d * (k - 1)) // 2


@st.composite
def _window(draw, kmax=3, smax=2, dmax=2):
    """kernel, stride, dilation, pad attr and the resolved padding, as conv's rules."""
    k, s, d = draw(int_or_pair(1, kmax)), draw(int_or_pair(1, smax)), draw(int_or_pair(1, dmax))
    mode = draw(st.sampled_from(["auto", "default", "int", "pair", "same"]))
    kk, ss, dd = pair(k), pair(s), pair(d)
    if mode == "same":
        if ss != (1, 1) or any((dd[i] * (kk[i] - 1)) % 2 for i in range(2)):
            mode = "auto"
    if mode in ("auto", "default", "same"):
        p = tuple(_auto_pad(kk[i], ss[i], dd[i]) for i in range(2))
        pad = None if mode == "default" else mode
    elif mode == "int":
        pad = draw(st.integers(0, 2))
        p = (pad, pad)
    else:
        pad = draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
        p = pad
    return k, s, d, pad, p


def _attrs(k, s, d, pad) -> dict:
    attrs: dict = {"kernel": k}
    if s != 1:
        attrs["stride"] = s
    if d != 1:
        attrs["dilation"] = d
    if pad is not None:
        attrs["pad"] = pad
    return attrs


@st.composite
def _spatial(draw, k, d, p):
    """An h x w input the dilated kernel fits in (with the padding), and a few sizes beyond."""
    kk, dd = pair(k), pair(d)
    lo = [max(1, dd[i] * (kk[i] - 1) + 1 - 2 * p[i]) for i in range(2)]
    return [draw(st.integers(lo[i], lo[i] + 4)) for i in range(2)]


# ---------------------------------------------------------------------------------------------
# conv_transpose

@st.composite
def conv_transpose_case(draw):
    g = draw(st.integers(1, 3))
    cin, out = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 3))
    k, s, d = draw(int_or_pair(1, 4)), draw(int_or_pair(1, 3)), draw(int_or_pair(1, 2))
    kk, ss, dd = pair(k), pair(s), pair(d)
    pad = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2))))
    pp = pair(pad)
    op = tuple(draw(st.integers(0, max(ss[i], dd[i]) - 1)) for i in range(2))
    hw = []
    for i in range(2):
        h = 1
        while (h - 1) * ss[i] - 2 * pp[i] + dd[i] * (kk[i] - 1) + op[i] + 1 <= 0:
            h += 1
        hw.append(draw(st.integers(h, h + 3)))
    attrs: dict = {"out": out, "kernel": k, "stride": s}
    if d != 1 or draw(st.booleans()):
        attrs["dilation"] = d
    if pp != (0, 0) or draw(st.booleans()):
        attrs["pad"] = pad
    if op != (0, 0) or draw(st.booleans()):
        attrs["output_padding"] = op if op[0] != op[1] else op[0]
    if g != 1:
        attrs["groups"] = g
    maybe(draw, attrs, "bias", draw(st.booleans()))
    return Case("conv_transpose", attrs, [(draw(batch), cin, *hw)])


@st.composite
def conv_transpose_invalid(draw):
    kind = draw(st.sampled_from(["rank", "groups", "output_padding", "too_much_pad", "nonpositive",
                                 "negative"]))
    b, c, h, w = draw(batch), draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    attrs: dict = {"out": draw(st.integers(1, 4)), "kernel": draw(st.integers(1, 3))}
    if kind == "rank":
        return Case("conv_transpose", attrs, [draw(st.sampled_from([(b, c), (b, c, h), (b, c, h, w, 2)]))])
    if kind == "groups":
        attrs["groups"] = draw(st.integers(2, 3))
        c = attrs["groups"] * c + 1
    elif kind == "output_padding":
        s = draw(st.integers(1, 3))
        attrs.update(stride=s, output_padding=(s + draw(st.integers(0, 1)), 0))
    elif kind == "too_much_pad":
        attrs.update(kernel=1, pad=(0, draw(st.integers(1, 3))), stride=1)
        w = 1
    elif kind == "nonpositive":
        attrs[draw(st.sampled_from(["out", "kernel", "stride", "dilation", "groups"]))] = draw(st.integers(-2, 0))
    else:
        attrs[draw(st.sampled_from(["pad", "output_padding"]))] = draw(st.integers(-2, -1))
    return Case("conv_transpose", attrs, [(b, c, h, w)])


# ---------------------------------------------------------------------------------------------
# conv_with

@st.composite
def conv_with_case(draw):
    g = draw(st.integers(1, 3))
    cin, out = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 3))
    k, s, d, pad, p = draw(_window(kmax=4, smax=3))
    h, w = draw(_spatial(k, d, p))
    attrs = _attrs(1, s, d, pad)
    del attrs["kernel"]
    if g != 1:
        attrs["groups"] = g
    bias = draw(st.booleans())
    ins = [(draw(batch), cin, h, w), (out, cin // g, *pair(k))]
    if bias:
        attrs["bias"] = True
        ins.append((out,))
    elif draw(st.booleans()):
        attrs["bias"] = False
    return Case("conv_with", attrs, ins)


@st.composite
def conv_with_invalid(draw):
    x = (draw(batch), 4, 5, 5)
    wgt = (3, 4, 3, 3)
    kind = draw(st.sampled_from(["channels", "bias_missing", "bias_extra", "bias_shape", "rank",
                                 "too_big", "groups"]))
    if kind == "channels":
        return Case("conv_with", {}, [x, (3, draw(st.sampled_from([1, 2, 3, 5])), 3, 3)])
    if kind == "bias_missing":
        return Case("conv_with", {"bias": True}, [x, wgt])
    if kind == "bias_extra":
        return Case("conv_with", {}, [x, wgt, (3,)])
    if kind == "bias_shape":
        return Case("conv_with", {"bias": True}, [x, wgt, draw(st.sampled_from([(2,), (4,), (3, 1)]))])
    if kind == "rank":
        return Case("conv_with", {}, [x, (3, 4, 3)])
    if kind == "too_big":
        return Case("conv_with", {"pad": 0}, [x, (3, 4, 7, 1)])
    return Case("conv_with", {"groups": 2}, [x, (3, 2, 3, 3)])


# ---------------------------------------------------------------------------------------------
# deform_conv

@st.composite
def deform_conv_case(draw):
    g, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    cin, out = g * og * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    k, s, d, pad, p = draw(_window())
    h, w = draw(_spatial(k, d, p))
    kk, ss, dd = pair(k), pair(s), pair(d)
    ho, wo = (_conv_out(h, kk[0], ss[0], p[0], dd[0]), _conv_out(w, kk[1], ss[1], p[1], dd[1]))
    attrs = _attrs(k, s, d, pad)
    attrs["out"] = out
    if g != 1:
        attrs["groups"] = g
    if og != 1 or draw(st.booleans()):
        attrs["offset_groups"] = og
    maybe(draw, attrs, "bias", draw(st.booleans()))
    b = draw(batch)
    taps = kk[0] * kk[1]
    ins = [(b, cin, h, w), (b, 2 * og * taps, ho, wo)]
    if draw(st.booleans()):
        ins.append((b, og * taps, ho, wo))
    return Case("deform_conv", attrs, ins)


@st.composite
def deform_conv_invalid(draw):
    b = draw(batch)
    x = (b, 4, 5, 5)
    kind = draw(st.sampled_from(["offset_channels", "offset_size", "mask", "offset_groups", "inputs",
                                 "batch", "groups"]))
    attrs = {"out": 2, "kernel": 3}
    off, mask = (b, 18, 5, 5), (b, 9, 5, 5)
    if kind == "offset_channels":
        return Case("deform_conv", attrs, [x, (b, draw(st.sampled_from([9, 17, 36])), 5, 5)])
    if kind == "offset_size":
        return Case("deform_conv", {**attrs, "stride": 2}, [x, off])
    if kind == "mask":
        return Case("deform_conv", attrs, [x, off, draw(st.sampled_from([(b, 18, 5, 5), (b, 9, 4, 5), (b, 9)]))])
    if kind == "offset_groups":
        og = draw(st.sampled_from([-1, 0, 3]))
        return Case("deform_conv", {**attrs, "offset_groups": og}, [x, (b, 2 * 9 * max(og, 1), 5, 5)])
    if kind == "inputs":
        return Case("deform_conv", attrs, draw(st.sampled_from([[x], [x, off, mask, mask]])))
    if kind == "batch":
        return Case("deform_conv", attrs, [x, (b + 1, 18, 5, 5)])
    return Case("deform_conv", {**attrs, "groups": 3}, [x, off])


# ---------------------------------------------------------------------------------------------
# fourier_unit

@st.composite
def fourier_unit_case(draw):
    c, out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    attrs: dict = {"out": out}
    divisors = [g for g in range(1, 9) if (2 * c) % g == 0 and (2 * out) % g == 0]
    gr = draw(st.sampled_from(divisors))
    if gr != 1 or draw(st.booleans()):
        attrs["groups"] = gr
    return Case("fourier_unit", attrs, [(draw(batch), c, draw(st.integers(1, 7)), draw(st.integers(1, 7)))])


@st.composite
def fourier_unit_invalid(draw):
    kind = draw(st.sampled_from(["rank", "groups", "out"]))
    x = (draw(batch), 3, 4, 4)
    if kind == "rank":
        return Case("fourier_unit", {"out": 2}, [draw(st.sampled_from([(1, 3), (1, 3, 4), (1, 3, 4, 4, 1)]))])
    if kind == "groups":
        return Case("fourier_unit", {"out": 2, "groups": draw(st.sampled_from([-1, 0, 3, 4, 5]))}, [x])
    return Case("fourier_unit", {"out": draw(st.integers(-2, 0))}, [x])


# ---------------------------------------------------------------------------------------------
# dynamic_conv

@st.composite
def dynamic_conv_case(draw):
    g = draw(st.integers(1, 2))
    cin, out = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    k, s, d, pad, p = draw(_window())
    h, w = draw(_spatial(k, d, p))
    attrs = _attrs(k, s, d, pad)
    attrs["out"] = out
    if g != 1:
        attrs["groups"] = g
    maybe(draw, attrs, "bias", draw(st.booleans()))
    b = draw(batch)
    return Case("dynamic_conv", attrs, [(b, cin, h, w), (b, draw(st.integers(1, 4)))])


@st.composite
def dynamic_conv_invalid(draw):
    b = draw(batch)
    x = (b, 4, 5, 5)
    kind = draw(st.sampled_from(["attn_batch", "attn_rank", "groups", "too_big"]))
    attrs = {"out": 2, "kernel": 3}
    if kind == "attn_batch":
        return Case("dynamic_conv", attrs, [x, (b + 1, 4)])
    if kind == "attn_rank":
        return Case("dynamic_conv", attrs, [x, draw(st.sampled_from([(b,), (b, 4, 1)]))])
    if kind == "groups":
        return Case("dynamic_conv", {**attrs, "groups": 3}, [x, (b, 4)])
    return Case("dynamic_conv", {**attrs, "kernel": 7, "pad": 0}, [x, (b, 4)])


VALID = {
    "conv_transpose": conv_transpose_case(),
    "conv_with": conv_with_case(),
    "deform_conv": deform_conv_case(),
    "fourier_unit": fourier_unit_case(),
    "dynamic_conv": dynamic_conv_case(),
}
INVALID = {
    "conv_transpose": conv_transpose_invalid(),
    "conv_with": conv_with_invalid(),
    "deform_conv": deform_conv_invalid(),
    "fourier_unit": fourier_unit_invalid(),
    "dynamic_conv": dynamic_conv_invalid(),
}
