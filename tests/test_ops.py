"""Property tests for every op in `archdsl.ops.REGISTRY`, one op at a time.

Each op gets a hypothesis strategy of VALID cases (attributes + input shapes). A case is turned
into a one-op IR graph built by hand (no spec text involved), lowered with
`archdsl.lower.build.build`, run in eval mode, and the op's static rules are checked against
torch:

- `infer` == the runtime shape (each output of a multi-output op);
- `params` == the module's parameters (names, order, shapes), and their total ==
  `cost(graph).totals.params`; `buffers` == the float buffers of the state_dict;
- `flops` == `torch.utils.flop_counter.FlopCounterMode`'s total for the forward;
- `other_flops` > 0 for ops that compute; 0 only for the ops listed in `ZERO_OTHER_FLOPS`;
- every cost is linear in the batch when the op keeps the batch dim.

Invalid configurations: `INVALID` strategies generate cases that must be rejected, and `infer`
must reject them with `ShapeError` (no other exception). A schema-driven fuzzer (`wild_case`)
throws arbitrary type-correct attributes and shapes at every op: `infer` either raises
`ShapeError` or accepts a configuration that torch runs with the same shapes and costs.

Ops without a strategy fail `test_every_op_has_a_strategy`, so a new op cannot be forgotten.
"""
from __future__ import annotations

import math
import os
import types
from typing import Any, Literal, Union, get_args, get_origin

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from archdsl.testing.flops import flop_counter

from archdsl.ir.cost import cost
from archdsl.ir.graph import Graph, Node
from archdsl.lower.build import build
from archdsl.ops import REGISTRY
from archdsl.ops.base import ShapeError
from archdsl.ops.conv import ConvAttrs, conv_padding

Shape = tuple[int, ...]

# Every op once (aliases share the instance), keyed by its canonical name.
OPS = {op.name: op for op in {id(op): op for op in REGISTRY.values()}.values()}

# Ops whose `other_flops` is legitimately 0: pure data movement, identity, and the ops that are
# the identity at inference (dropout, drop path). Conv and linear without bias also have 0 (all
# their arithmetic is in `flops`); that is checked separately.
ZERO_OTHER_FLOPS = {
    "identity": "returns its input",
    "dropout": "identity in eval",
    "drop_path": "identity in eval",
    "cat": "data movement", "split": "data movement", "chunk": "data movement",
    "getitem": "data movement", "reshape": "data movement", "flatten": "data movement",
    "permute": "data movement", "transpose": "data movement",
    "channel_shuffle": "data movement", "patchify": "data movement",
}
# Ops whose arithmetic is all multiply-adds counted in `flops`; the bias add is `other_flops`.
MAC_OPS = {"conv", "linear", "wn_linear"}

# ARCHDSL_TEST_SCALE=10 multiplies every example count (a deeper search than the default run).
SCALE = max(1, int(os.environ.get("ARCHDSL_TEST_SCALE", "1")))
HEALTH = [HealthCheck.too_slow, HealthCheck.filter_too_much]


def examples(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, suppress_health_check=HEALTH)


from op_cases import family_modules  # noqa: E402
from op_cases.common import (Case, any_shape, batch, int_or_pair, maybe, pair,  # noqa: E402,F401
                             shape_of_rank, small)


# ---------------------------------------------------------------------------------------------
# VALID cases, one strategy per op


def pointwise(name):
    @st.composite
    def s(draw):
        attrs = {}
        if name == "gelu":
            maybe(draw, attrs, "approximate", draw(st.sampled_from(["none", "tanh"])))
        if name == "leaky_relu":
            maybe(draw, attrs, "negative_slope", draw(st.floats(0.0, 1.0)))
        return Case(name, attrs, [draw(any_shape(1, 4))])
    return s()


@st.composite
def conv_case(draw):
    g = draw(st.integers(1, 3))
    cin, out = g * draw(st.integers(1, 3)), g * draw(st.integers(1, 3))
    mode = draw(st.sampled_from(["default", "auto", "same", "int", "pair"]))
    if mode == "same":  # needs stride 1 and an odd effective kernel
        k = draw(st.one_of(st.sampled_from([1, 3, 5]), st.tuples(st.sampled_from([1, 3]),
                                                                  st.sampled_from([1, 3, 5]))))
        s, d = 1, draw(int_or_pair(1, 2))
    else:
        k, s, d = draw(int_or_pair(1, 4)), draw(int_or_pair(1, 3)), draw(int_or_pair(1, 2))
    attrs: dict = {"out": out, "kernel": k}
    if s != 1 or draw(st.booleans()):
        attrs["stride"] = s
    if d != 1 or draw(st.booleans()):
        attrs["dilation"] = d
    if mode == "same":
        attrs["pad"] = "same"
    elif mode == "auto":
        attrs["pad"] = "auto"
    elif mode == "int":
        attrs["pad"] = draw(st.integers(0, 2))
    elif mode == "pair":
        attrs["pad"] = draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
    if g != 1:
        attrs["groups"] = g
    maybe(draw, attrs, "bias", draw(st.booleans()))
    p = conv_padding(ConvAttrs(**attrs))
    kk, dd = pair(k), pair(d)
    # smallest input the (dilated) kernel fits in, with the padding; then a few sizes beyond
    hw = [draw(st.integers(max(1, dd[i] * (kk[i] - 1) + 1 - 2 * p[i]),
                           max(1, dd[i] * (kk[i] - 1) + 1 - 2 * p[i]) + 6)) for i in range(2)]
    return Case("conv", attrs, [(draw(batch), cin, *hw)])


@st.composite
def linear_case(draw):
    attrs = {"out": draw(st.integers(1, 6))}
    maybe(draw, attrs, "bias", draw(st.booleans()))
    return Case("linear", attrs, [draw(any_shape(2, 4))])


@st.composite
def wn_linear_case(draw):
    attrs = {"out": draw(st.integers(1, 6))}
    maybe(draw, attrs, "bias", draw(st.booleans()))
    maybe(draw, attrs, "fix_g", draw(st.booleans()))
    return Case("wn_linear", attrs, [draw(any_shape(2, 4))])


@st.composite
def batch_norm_case(draw):
    attrs: dict = {}
    maybe(draw, attrs, "eps", draw(st.sampled_from([1e-5, 1e-3, 0.1])))
    maybe(draw, attrs, "momentum", draw(st.floats(0.0, 1.0)))
    maybe(draw, attrs, "affine", draw(st.booleans()))
    return Case("batch_norm", attrs, [draw(any_shape(2, 4))])


def ln_case(name, ranks):
    @st.composite
    def s(draw):
        attrs: dict = {}
        maybe(draw, attrs, "eps", draw(st.sampled_from([1e-6, 1e-5, 1e-3])))
        maybe(draw, attrs, "affine", draw(st.booleans()))
        maybe(draw, attrs, "bias", draw(st.booleans()))
        return Case(name, attrs, [draw(any_shape(*ranks))])
    return s()


@st.composite
def group_norm_case(draw):
    g = draw(st.integers(1, 4))
    x = list(draw(any_shape(2, 4)))
    x[1] = g * draw(st.integers(1, 3))
    if x[0] * (x[1] // g) * math.prod(x[2:]) == 1:  # torch refuses one value per group
        x[0] = 2
    # groups of group_size channels (timm's GroupNormAct) name the same split
    attrs: dict = draw(st.sampled_from([{"groups": g}, {"group_size": x[1] // g}]))
    maybe(draw, attrs, "eps", draw(st.sampled_from([1e-5, 1e-3])))
    maybe(draw, attrs, "affine", draw(st.booleans()))
    return Case("group_norm", attrs, [tuple(x)])


def window_pool_case(name):
    @st.composite
    def s(draw):
        k = draw(int_or_pair(1, 4))
        kk = pair(k)
        attrs: dict = {"kernel": k}
        stride = draw(st.one_of(st.none(), int_or_pair(1, 3)))
        if stride is not None:
            attrs["stride"] = stride
        pad = draw(st.tuples(st.integers(0, kk[0] // 2), st.integers(0, kk[1] // 2)))
        attrs["pad"] = pad[0] if pad[0] == pad[1] and draw(st.booleans()) else pad
        d = draw(int_or_pair(1, 2)) if name == "maxpool" else 1
        if d != 1 or draw(st.booleans()):
            attrs["dilation"] = d
        maybe(draw, attrs, "ceil", draw(st.booleans()))
        if name == "avgpool":
            maybe(draw, attrs, "count_include_pad", draw(st.booleans()))
        dd = pair(d)
        hw = [draw(st.integers(max(1, dd[i] * (kk[i] - 1) + 1 - 2 * pad[i]),
                               max(1, dd[i] * (kk[i] - 1) + 1 - 2 * pad[i]) + 6)) for i in range(2)]
        return Case(name, attrs, [(draw(batch), draw(small), *hw)])
    return s()


def adaptive_case(name):
    @st.composite
    def s(draw):
        attrs: dict = {}
        maybe(draw, attrs, "size", draw(int_or_pair(1, 4)))
        return Case(name, attrs, [draw(shape_of_rank(4, 1, 7))])
    return s()


def global_case(name):
    @st.composite
    def s(draw):
        attrs: dict = {}
        maybe(draw, attrs, "keepdim", draw(st.booleans()))
        return Case(name, attrs, [draw(any_shape(3, 5))])
    return s()


@st.composite
def mean_case(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    dims = draw(st.lists(st.integers(0, r - 1), min_size=1, max_size=r, unique=True))
    dims = [d - r if draw(st.booleans()) else d for d in dims]  # negative spellings too
    attrs: dict = {"dims": dims[0] if len(dims) == 1 and draw(st.booleans()) else dims}
    maybe(draw, attrs, "keepdim", draw(st.booleans()))
    return Case("mean", attrs, [x])


def prob_case(name):
    @st.composite
    def s(draw):
        attrs: dict = {}
        maybe(draw, attrs, "p", draw(st.floats(0.0, 0.95)))
        return Case(name, attrs, [draw(any_shape(1, 4))])
    return s()


@st.composite
def layer_scale_case(draw):
    attrs: dict = {}
    maybe(draw, attrs, "init", draw(st.floats(-1.0, 1.0)))
    return Case("layer_scale", attrs, [draw(any_shape(1, 4))])


@st.composite
def channel_shuffle_case(draw):
    g = draw(st.integers(1, 4))
    b, _, h, w = draw(shape_of_rank(4))
    return Case("channel_shuffle", {"groups": g}, [(b, g * draw(st.integers(1, 3)), h, w)])


@st.composite
def patchify_case(draw):
    p = draw(st.integers(1, 3))
    return Case("patchify", {"patch": p},
                [(draw(batch), draw(small), p * draw(st.integers(1, 3)), p * draw(st.integers(1, 3)))])


@st.composite
def cat_case(draw):
    base = draw(any_shape(1, 4))
    r = len(base)
    d = draw(st.integers(-r, r - 1))
    n = draw(st.integers(1, 3))
    ins = []
    for _ in range(n):
        s = list(base)
        s[d] = draw(small)
        ins.append(tuple(s))
    attrs: dict = {}
    if d != 1 or draw(st.booleans()):
        attrs["dim"] = d
    if r < 2 and "dim" not in attrs:
        attrs["dim"] = d
    return Case("cat", attrs, ins)


@st.composite
def split_case(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    d = draw(st.integers(-r, r - 1))
    size = x[d]
    if draw(st.booleans()):
        sizes: Any = draw(st.integers(1, size + 1))
    else:  # a random composition of the size
        cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=3))) if size > 1 else []
        bounds = [0, *cuts, size]
        sizes = [bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1)]
    return Case("split", {"sizes": sizes, "dim": d}, [x])


@st.composite
def chunk_case(draw):
    x = list(draw(any_shape(1, 4)))
    r = len(x)
    d = draw(st.integers(-r, r - 1))
    n = draw(st.integers(1, 3))
    x[d] = n * draw(st.integers(1, 3))
    attrs: dict = {"chunks": n, "dim": d}
    return Case("chunk", attrs, [tuple(x)])


@st.composite
def getitem_case(draw):
    pre = draw(st.one_of(split_case(), chunk_case()))
    n = len(REGISTRY[pre.op].infer(REGISTRY[pre.op].Attrs(**pre.attrs), pre.ins))
    index = draw(st.integers(-n, n - 1))
    return Case("getitem", {"index": index}, pre.ins, pre=(pre.op, pre.attrs))


def _factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


@st.composite
def reshape_case(draw):
    x = draw(any_shape(1, 4))
    factors = draw(st.permutations(_factors(math.prod(x))))
    rank = draw(st.integers(1, 4))
    target = [1] * rank
    for f in factors:
        target[draw(st.integers(0, rank - 1))] *= f
    if draw(st.booleans()):
        target[draw(st.integers(0, rank - 1))] = -1
    return Case("reshape", {"shape": target}, [x])


@st.composite
def flatten_case(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    s = draw(st.integers(0, r - 1))
    e = draw(st.integers(s, r - 1))
    attrs: dict = {}
    if s != 1 or r < 2 or draw(st.booleans()):
        attrs["start"] = s - r if draw(st.booleans()) else s
    if e != r - 1 or draw(st.booleans()):
        attrs["end"] = e - r if draw(st.booleans()) else e
    return Case("flatten", attrs, [x])


@st.composite
def permute_case(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    dims = [d - r if draw(st.booleans()) else d for d in draw(st.permutations(range(r)))]
    return Case("permute", {"dims": dims}, [x])


@st.composite
def transpose_case(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    return Case("transpose", {"dim0": draw(st.integers(-r, r - 1)),
                              "dim1": draw(st.integers(-r, r - 1))}, [x])


def binary_case(name):
    @st.composite
    def s(draw):
        out = draw(any_shape(1, 4))
        if draw(st.booleans()):  # tensor ⊕ scalar
            attrs: dict = {"scalar": draw(st.one_of(st.integers(-3, 3).map(float),
                                                    st.floats(-2.0, 2.0, allow_nan=False)))}
            if name == "div" and attrs["scalar"] == 0:
                attrs["scalar"] = 2.0
            maybe(draw, attrs, "reverse", draw(st.booleans()))
            return Case(name, attrs, [out])

        def operand():  # a suffix of `out`, with some dims squeezed to 1
            k = draw(st.integers(1, len(out)))
            return tuple(1 if draw(st.booleans()) else d for d in out[-k:])
        a, b = operand(), operand()
        if len(a) < len(b):
            a, b = b, a
        return Case(name, {}, [a, b] if draw(st.booleans()) else [b, a])
    return s()


VALID: dict[str, st.SearchStrategy[Case]] = {
    **{n: pointwise(n) for n in ("relu", "relu6", "silu", "sigmoid", "tanh", "hardswish",
                                  "hardsigmoid", "gelu", "leaky_relu", "identity")},
    "conv": conv_case(),
    "linear": linear_case(),
    "wn_linear": wn_linear_case(),
    "batch_norm": batch_norm_case(),
    "layer_norm": ln_case("layer_norm", (1, 4)),
    "layer_norm2d": ln_case("layer_norm2d", (4, 4)),
    "group_norm": group_norm_case(),
    "maxpool": window_pool_case("maxpool"),
    "avgpool": window_pool_case("avgpool"),
    "adaptive_avgpool": adaptive_case("adaptive_avgpool"),
    "adaptive_maxpool": adaptive_case("adaptive_maxpool"),
    "global_avgpool": global_case("global_avgpool"),
    "global_maxpool": global_case("global_maxpool"),
    "mean": mean_case(),
    "dropout": prob_case("dropout"),
    "drop_path": prob_case("drop_path"),
    "layer_scale": layer_scale_case(),
    "channel_shuffle": channel_shuffle_case(),
    "patchify": patchify_case(),
    "cat": cat_case(),
    "split": split_case(),
    "chunk": chunk_case(),
    "getitem": getitem_case(),
    "reshape": reshape_case(),
    "flatten": flatten_case(),
    "permute": permute_case(),
    "transpose": transpose_case(),
    **{n: binary_case(n) for n in ("add", "sub", "mul", "div", "pow")},
}


# ---------------------------------------------------------------------------------------------
# INVALID cases: each must make `infer` raise ShapeError

def _not_rank(ranks: set[int], lo=1, hi=5):
    return st.integers(lo, hi).filter(lambda r: r not in ranks).flatmap(shape_of_rank)


@st.composite
def conv_invalid(draw):
    kind = draw(st.sampled_from(["groups_in", "groups_out", "too_big", "rank", "same_stride",
                                 "same_even", "nonpositive", "negative_pad"]))
    b, h, w = draw(batch), draw(small), draw(small)
    attrs: dict = {"out": draw(st.integers(1, 6)), "kernel": draw(st.integers(1, 3))}
    c = draw(st.integers(1, 6))
    if kind == "groups_in":  # groups divides out but not the input channels
        g = draw(st.integers(2, 4))
        c = g * draw(st.integers(0, 2)) + draw(st.integers(1, g - 1))
        attrs.update(groups=g, out=g * draw(st.integers(1, 2)))
    elif kind == "groups_out":
        g = draw(st.integers(2, 4))
        attrs.update(groups=g, out=g * draw(st.integers(0, 2)) + draw(st.integers(1, g - 1)))
        c = g * draw(st.integers(1, 2))
    elif kind == "too_big":  # the (dilated) kernel exceeds the padded input
        d = draw(st.integers(1, 2))
        p = draw(st.integers(0, 1))
        k = draw(st.integers(1, 4))
        h = draw(st.integers(1, 6))
        assume(h + 2 * p < d * (k - 1) + 1)
        attrs.update(kernel=(k, 1), dilation=d, pad=p)
    elif kind == "rank":
        return Case("conv", attrs, [draw(_not_rank({4}))])
    elif kind == "same_stride":
        attrs.update(pad="same", stride=draw(st.integers(2, 3)))
    elif kind == "same_even":
        attrs.update(pad="same", kernel=draw(st.sampled_from([2, 4])))
    elif kind == "negative_pad":
        neg = draw(st.integers(-2, -1))
        attrs["pad"] = draw(st.sampled_from([neg, (neg, 0), (0, neg)]))
        h, w = h + 4, w + 4  # large enough that the output size alone would be fine
    else:
        field_ = draw(st.sampled_from(["out", "kernel", "stride", "dilation", "groups"]))
        attrs[field_] = draw(st.integers(-2, 0))
    return Case("conv", attrs, [(b, c, h, w)])


@st.composite
def window_pool_invalid(draw, name="maxpool"):
    kind = draw(st.sampled_from(["too_big", "pad", "negative_pad", "rank", "nonpositive"]
                                + (["dilation"] if name == "avgpool" else [])))
    x = draw(shape_of_rank(4))
    k = draw(st.integers(1, 4))
    attrs: dict = {"kernel": k}
    if kind == "too_big":
        h = draw(st.integers(1, 4))
        assume(h < k)
        attrs["kernel"] = (k, 1)
        x = (x[0], x[1], h, x[3])
    elif kind == "pad":
        attrs["pad"] = k // 2 + draw(st.integers(1, 2))
    elif kind == "negative_pad":
        neg = draw(st.integers(-2, -1))
        attrs["pad"] = draw(st.sampled_from([neg, (neg, 0), (0, neg)]))
        x = (x[0], x[1], x[2] + 4, x[3] + 4)
    elif kind == "rank":
        x = draw(_not_rank({4}))
    elif kind == "dilation":
        attrs["dilation"] = draw(st.integers(2, 3))
    else:
        keys = ["kernel", "stride"] + (["dilation"] if name == "maxpool" else [])
        attrs[draw(st.sampled_from(keys))] = draw(st.integers(-2, 0))
    return Case(name, attrs, [x])


@st.composite
def binary_invalid(draw, name="add"):
    kind = draw(st.sampled_from(["broadcast", "two_and_scalar", "no_scalar"]))
    x = draw(any_shape(1, 4))
    if kind == "broadcast":
        d = draw(st.integers(0, len(x) - 1))
        y = list(x)
        y[d] = x[d] + draw(st.integers(1, 3)) if x[d] != 1 or draw(st.booleans()) else 2
        if x[d] == 1:
            x = tuple(v if i != d else 2 for i, v in enumerate(x))
            y[d] = 3
        return Case(name, {}, [x, tuple(y)])
    if kind == "two_and_scalar":
        return Case(name, {"scalar": 1.0}, [x, x])
    return Case(name, {}, [x])


@st.composite
def cat_invalid(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    kind = draw(st.sampled_from(["mismatch", "rank", "dim"]))
    if kind == "dim":
        return Case("cat", {"dim": draw(st.one_of(st.integers(r, r + 2), st.integers(-r - 2, -r - 1)))}, [x, x])
    d = draw(st.integers(0, r - 1))
    if kind == "rank":
        y = draw(any_shape(1, 4).filter(lambda s: len(s) != r))
        assume(d < len(y))
        return Case("cat", {"dim": d}, [x, y])
    assume(r >= 2)
    other = draw(st.integers(0, r - 1).filter(lambda i: i != d))
    y = list(x)
    y[other] += draw(st.integers(1, 2))
    return Case("cat", {"dim": d}, [x, tuple(y)])


@st.composite
def reshape_invalid(draw):
    x = draw(any_shape(1, 4))
    total = math.prod(x)
    kind = draw(st.sampled_from(["count", "two_minus_one", "zero", "negative", "indivisible"]))
    if kind == "count":
        target = [total + draw(st.integers(1, 5))]
    elif kind == "two_minus_one":
        target = [-1, -1]
    elif kind == "zero":
        target = [0, total]
    elif kind == "negative":
        target = [draw(st.integers(-5, -2)), 1]
    else:
        k = draw(st.integers(2, 7))
        assume(total % k)
        target = [k, -1]
    return Case("reshape", {"shape": target}, [x])


@st.composite
def split_invalid(draw):
    x = draw(any_shape(1, 4))
    kind = draw(st.sampled_from(["sum", "nonpositive", "int", "dim"]))
    if kind == "sum":
        return Case("split", {"sizes": [x[1 % len(x)] + 1] if len(x) > 1 else [x[0] + 1]}, [x])
    if kind == "nonpositive":
        return Case("split", {"sizes": [0, x[1 % len(x)]]}, [x])
    if kind == "int":
        return Case("split", {"sizes": draw(st.integers(-2, 0)), "dim": 0}, [x])
    return Case("split", {"sizes": 1, "dim": len(x) + draw(st.integers(0, 2))}, [x])


@st.composite
def chunk_invalid(draw):
    x = list(draw(any_shape(1, 4)))
    kind = draw(st.sampled_from(["indivisible", "nonpositive", "dim"]))
    if kind == "indivisible":
        n = draw(st.integers(2, 4))
        x[0] = n * draw(st.integers(0, 2)) + draw(st.integers(1, n - 1))
        return Case("chunk", {"chunks": n, "dim": 0}, [tuple(x)])
    if kind == "nonpositive":
        return Case("chunk", {"chunks": draw(st.integers(-2, 0)), "dim": 0}, [tuple(x)])
    return Case("chunk", {"chunks": 1, "dim": -len(x) - draw(st.integers(1, 2))}, [tuple(x)])


@st.composite
def getitem_invalid(draw):
    if draw(st.booleans()):  # out of range
        pre = draw(chunk_case())
        n = pre.attrs["chunks"]
        return Case("getitem", {"index": draw(st.one_of(st.integers(n, n + 2), st.integers(-n - 2, -n - 1)))},
                    pre.ins, pre=(pre.op, pre.attrs))
    return Case("getitem", {"index": 0}, [draw(any_shape(1, 4))])  # not a multi-output value


@st.composite
def dims_out_of_range(draw, name):
    x = draw(any_shape(1, 4))
    r = len(x)
    bad = draw(st.one_of(st.integers(r, r + 3), st.integers(-r - 3, -r - 1)))
    if name == "mean":
        kind = draw(st.sampled_from(["range", "repeat"]))
        if kind == "repeat":
            d = draw(st.integers(0, r - 1))
            return Case("mean", {"dims": [d, d - r]}, [x])
        return Case("mean", {"dims": [bad]}, [x])
    if name == "flatten":
        kind = draw(st.sampled_from(["range", "order"]))
        if kind == "order":
            assume(r >= 2)
            s = draw(st.integers(1, r - 1))
            return Case("flatten", {"start": s, "end": draw(st.integers(0, s - 1))}, [x])
        return Case("flatten", {"start": 0, "end": bad}, [x])
    if name == "permute":
        kind = draw(st.sampled_from(["range", "repeat", "short"]))
        if kind == "repeat":
            assume(r >= 2)
            return Case("permute", {"dims": [0] * r}, [x])
        if kind == "short":
            return Case("permute", {"dims": list(range(r + 1))}, [x])
        return Case("permute", {"dims": [bad, *range(1, r)]}, [x])
    return Case("transpose", {"dim0": 0, "dim1": bad}, [x])


@st.composite
def divides_invalid(draw, name):
    """groups / patch that do not divide; non-positive; wrong rank."""
    kinds = ["indivisible", "nonpositive", "rank"] + (["one_value"] if name == "group_norm" else [])
    kind = draw(st.sampled_from(kinds))
    key = {"group_norm": "groups", "channel_shuffle": "groups", "patchify": "patch"}[name]
    x = list(draw(shape_of_rank(4)))
    if kind == "one_value":  # one value per (sample, group): torch's F.group_norm refuses it
        g = draw(small)
        return Case(name, {key: g}, [(1, g, *[1] * draw(st.integers(0, 2)))])
    if kind == "rank":
        rank_ok = {2, 3, 4, 5} if name == "group_norm" else {4}
        return Case(name, {key: 1}, [draw(_not_rank(rank_ok, 1, 5))])
    if kind == "nonpositive":
        return Case(name, {key: draw(st.integers(-2, 0))}, [tuple(x)])
    g = draw(st.integers(2, 4))
    dim = 2 if name == "patchify" else 1
    x[dim] = g * draw(st.integers(0, 2)) + draw(st.integers(1, g - 1))
    return Case(name, {key: g}, [tuple(x)])


INVALID: dict[str, st.SearchStrategy[Case]] = {
    "conv": conv_invalid(),
    "linear": st.one_of(
        any_shape(1, 1).map(lambda x: Case("linear", {"out": 3}, [x])),
        st.tuples(st.integers(-3, 0), any_shape(2, 4)).map(lambda t: Case("linear", {"out": t[0]}, [t[1]]))),
    "wn_linear": st.one_of(
        any_shape(1, 1).map(lambda x: Case("wn_linear", {"out": 3}, [x])),
        st.tuples(st.integers(-3, 0), any_shape(2, 4)).map(lambda t: Case("wn_linear", {"out": t[0]}, [t[1]]))),
    "batch_norm": st.one_of(
        _not_rank({2, 3, 4}).map(lambda x: Case("batch_norm", {}, [x])),
        st.tuples(st.floats(-1.0, -1e-9), any_shape(2, 4)).map(
            lambda t: Case("batch_norm", {"eps": t[0]}, [t[1]]))),  # torch refuses eps < 0
    "layer_norm2d": _not_rank({4}).map(lambda x: Case("layer_norm2d", {}, [x])),
    "group_norm": st.one_of(
        divides_invalid("group_norm"),
        shape_of_rank(4).map(lambda x: Case("group_norm", {}, [x])),  # neither groups nor size
        shape_of_rank(4).map(lambda x: Case("group_norm", {"groups": 1, "group_size": x[1]}, [x])),
        st.tuples(st.integers(-2, 0), shape_of_rank(4)).map(
            lambda t: Case("group_norm", {"group_size": t[0]}, [t[1]]))),
    "maxpool": window_pool_invalid("maxpool"),
    "avgpool": window_pool_invalid("avgpool"),
    **{n: st.one_of(_not_rank({4}).map(lambda x, n=n: Case(n, {}, [x])),
                    st.tuples(int_or_pair(-2, 0), shape_of_rank(4)).map(
                        lambda t, n=n: Case(n, {"size": t[0]}, [t[1]])))
       for n in ("adaptive_avgpool", "adaptive_maxpool")},
    **{n: any_shape(1, 2).map(lambda x, n=n: Case(n, {}, [x]))
       for n in ("global_avgpool", "global_maxpool")},
    "mean": dims_out_of_range("mean"),
    **{n: st.tuples(st.one_of(st.floats(1.0, 10.0), st.floats(-10.0, -1e-6)), any_shape()).map(
        lambda t, n=n: Case(n, {"p": t[0]}, [t[1]])) for n in ("dropout", "drop_path")},
    "channel_shuffle": divides_invalid("channel_shuffle"),
    "patchify": divides_invalid("patchify"),
    "cat": cat_invalid(),
    "split": split_invalid(),
    "chunk": chunk_invalid(),
    "getitem": getitem_invalid(),
    "reshape": reshape_invalid(),
    "flatten": dims_out_of_range("flatten"),
    "permute": dims_out_of_range("permute"),
    "transpose": dims_out_of_range("transpose"),
    **{n: binary_invalid(n) for n in ("add", "sub", "mul", "div", "pow")},
}

# Ops that accept every input shape and every attribute value of their schema: nothing to reject.
NO_INVALID = {
    "relu", "relu6", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "gelu",
    "leaky_relu", "identity",   # pointwise: any shape
    "layer_norm",               # any rank >= 1 (every IR shape)
    "layer_scale",              # scales the last dim of any shape
}


def _merge_families() -> None:
    """Op families add their cases in tests/op_cases/<family>.py."""
    for mod in family_modules():
        for name, table in (("VALID", VALID), ("INVALID", INVALID), ("ZERO_OTHER_FLOPS", ZERO_OTHER_FLOPS)):
            extra = getattr(mod, name, {})
            clash = set(extra) & set(table)
            assert not clash, f"{mod.__name__}.{name} redefines {sorted(clash)}"
            table.update(extra)
        NO_INVALID.update(set(getattr(mod, "NO_INVALID", ())))
        MAC_OPS.update(set(getattr(mod, "MAC_OPS", ())))


_merge_families()


# ---------------------------------------------------------------------------------------------
# schema-driven fuzzing: arbitrary type-correct attributes and shapes

def _for_type(tp) -> st.SearchStrategy:
    origin, args = get_origin(tp), get_args(tp)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers(-2, 6)
    if tp is float:
        return st.one_of(st.sampled_from([0.0, 0.5, 1.0, -0.5, 1e-5]), st.floats(-2.0, 2.0))
    if tp is str:
        return st.sampled_from(["none", "tanh", "same", "auto", ""])
    if tp is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(args)
    if origin in (Union, types.UnionType):
        return st.one_of(*[_for_type(a) for a in args])
    if origin in (tuple,) and args and args[-1] is not Ellipsis:
        return st.tuples(*[_for_type(a) for a in args])
    if origin in (tuple,):
        return st.lists(_for_type(args[0]), max_size=4).map(tuple)
    if origin in (list,):
        return st.lists(_for_type(args[0]), max_size=5)
    raise TypeError(f"no fuzzing strategy for attribute type {tp!r}: extend _for_type")


def attrs_strategy(op) -> st.SearchStrategy[dict]:
    parts = {}
    for name, f in op.Attrs.model_fields.items():
        s = _for_type(f.annotation)
        parts[name] = s if f.is_required() else st.one_of(st.just(_OMIT), s)
    return st.fixed_dictionaries(parts).map(lambda d: {k: v for k, v in d.items() if v is not _OMIT})


_OMIT = object()


@st.composite
def wild_case(draw, name):
    """Half the time a VALID case with some attributes re-drawn from the schema and perhaps one
    input dim nudged (near the valid region, where wrong acceptance hides); else pure fuzz."""
    op = OPS[name]
    if name in VALID and draw(st.booleans()):  # (an op without VALID cases fails elsewhere)
        case = draw(VALID[name])
        attrs = dict(case.attrs)
        fields = op.Attrs.model_fields
        for key in draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=2, unique=True)) \
                if fields else []:
            attrs[key] = draw(_for_type(fields[key].annotation))
        ins = [list(s) for s in case.ins]
        if draw(st.booleans()):
            s = ins[draw(st.integers(0, len(ins) - 1))]
            if s:
                i = draw(st.integers(0, len(s) - 1))
                s[i] = max(1, s[i] + draw(st.sampled_from([-1, 1])))
        # integer inputs keep their dtype; index 0 is valid whatever table size was redrawn
        return Case(name, attrs, [tuple(s) for s in ins], case.pre, dtypes=case.dtypes,
                    int_high=1 if case.dtypes else case.int_high)
    attrs = draw(attrs_strategy(op))
    n = op.n_inputs if op.n_inputs is not None else draw(st.integers(1, 3))
    if draw(st.booleans()):  # shapes related to one another (more likely to be accepted)
        base = draw(any_shape(1, 5))
        ins = [tuple(d if draw(st.integers(0, 3)) else draw(small) for d in base) for _ in range(n)]
    else:
        ins = [draw(any_shape(1, 5)) for _ in range(n)]
    dtypes = draw(VALID[name]).dtypes if name in VALID else None  # int64-indexing ops: int64 inputs
    if dtypes is not None and len(dtypes) == len(ins):
        return Case(name, attrs, ins, dtypes=dtypes, int_high=1)
    pre = None
    if name == "getitem" and draw(st.booleans()):
        src = draw(st.one_of(split_case(), chunk_case()))
        pre, ins = (src.op, src.attrs), src.ins
    return Case(name, attrs, ins, pre=pre)


# ---------------------------------------------------------------------------------------------
# one-op graphs

def one_op_graph(case: Case) -> Graph:
    """input node(s) [→ producer] → the op, at a dotted path (so modules nest)."""
    g = Graph(name="one_op")
    ids = []
    dtypes = case.dtypes or ["float32"] * len(case.ins)
    g.int_high = case.int_high
    for k, s in enumerate(case.ins):
        nid = f"x{k}"
        g.add(Node(nid, None, {}, [], tuple(s), dtype=dtypes[k], kind="input"))
        g.inputs.append(nid)
        ids.append(nid)
    if case.pre is not None:
        pname, pattrs = case.pre
        pop = REGISTRY[pname]
        pa = pop.Attrs(**pattrs)
        g.add(Node("pre", pname, pa, ids, pop.infer(pa, [g.node(i).shape for i in ids])))
        ids = ["pre"]
    op = REGISTRY[case.op]
    a = op.Attrs(**case.attrs)
    out = op.infer(a, [g.node(i).shape for i in ids])
    g.add(Node("stage.op", op.name, a, ids, out))
    g.outputs = {"out": "stage.op"}
    return g


def runtime_shapes(y) -> Any:
    if isinstance(y, (tuple, list)):
        return tuple(tuple(t.shape) for t in y)
    return tuple(y.shape)


def _random_input(node: Node, gen: torch.Generator, int_high: int) -> torch.Tensor:
    dtype = getattr(torch, node.dtype)
    if dtype.is_floating_point:
        return torch.randn(tuple(node.shape), generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, node.shape, generator=gen).bool()
    return torch.randint(0, int_high, node.shape, generator=gen, dtype=dtype)


def run_graph(g: Graph):
    module = build(g, seed=0)
    module.eval()
    gen = torch.Generator().manual_seed(0)
    xs = [_random_input(g.node(i), gen, getattr(g, "int_high", 10)) for i in g.inputs]
    with torch.no_grad(), flop_counter() as counter:
        y = module(*xs)
    return module, y, counter.get_total_flops()


def check_against_torch(g: Graph) -> None:
    node = g.node("stage.op")
    op = REGISTRY[node.op]
    ins = g.input_shapes(node)
    module, y, counted = run_graph(g)

    # (a) shapes
    assert runtime_shapes(y) == node.shape, f"{node.op}: inferred {node.shape}, torch {runtime_shapes(y)}"

    # (b) parameters and buffers: names (at each node's path), order, shapes, totals
    report = cost(g)
    want_params = [(f"{n.id}.{k}", tuple(s)) for n in g.nodes() if n.op in REGISTRY
                   for k, s in REGISTRY[n.op].params(n.attrs, g.input_shapes(n)).items()]
    got_params = [(k, tuple(p.shape)) for k, p in module.named_parameters()]
    assert got_params == want_params
    assert report.totals.params == sum(p.numel() for p in module.parameters())
    param_names = {k for k, _ in module.named_parameters()}
    float_buffers = {k: tuple(v.shape) for k, v in module.state_dict().items()
                     if k not in param_names and v.is_floating_point()}
    want_buffers = {f"{n.id}.{k}": tuple(s) for n in g.nodes() if n.op in REGISTRY
                    for k, s in REGISTRY[n.op].buffers(n.attrs, g.input_shapes(n)).items()}
    assert float_buffers == want_buffers
    assert report.totals.buffers == sum(math.prod(s) for s in float_buffers.values())

    # (c) flops == FlopCounterMode (the producer of getitem, if any, is data movement)
    assert report.totals.flops == counted, f"{node.op}: static flops {report.totals.flops}, counted {counted}"
    assert op.flops(node.attrs, ins, node.shape) == report.nodes[-1].flops

    # (d) other_flops: > 0 exactly for the ops that compute beyond their multiply-adds
    other = op.other_flops(node.attrs, ins, node.shape)
    if node.op in ZERO_OTHER_FLOPS:
        assert other == 0 and counted == 0
    elif node.op in MAC_OPS:
        assert (other > 0) == bool(getattr(node.attrs, "bias", False)), \
            f"{node.op}: the bias add is the only other_flops"
        assert counted > 0
    else:
        assert other > 0, f"{node.op} computes but has other_flops 0"


def batch_doubled(case: Case) -> Case:
    return Case(case.op, case.attrs, [(2 * s[0], *s[1:]) if s else s for s in case.ins], case.pre,
                dtypes=case.dtypes, int_high=case.int_high)


def _costs(g: Graph) -> tuple[int, int, int, int]:
    t = cost(g).totals
    return t.params, t.buffers, t.flops, t.other_flops


# ---------------------------------------------------------------------------------------------
# tests

def test_every_op_has_a_strategy():
    """Adding an op to the registry without covering it here fails this test."""
    missing = sorted(set(OPS) - set(VALID))
    assert not missing, f"ops without a VALID strategy in tests/test_ops.py: {missing}"
    stale = sorted(set(VALID) - set(OPS))
    assert not stale, f"strategies for ops that no longer exist: {stale}"
    undecided = sorted(set(OPS) - set(INVALID) - NO_INVALID)
    assert not undecided, f"ops with neither an INVALID strategy nor a NO_INVALID entry: {undecided}"
    assert not (set(INVALID) & NO_INVALID)
    assert set(ZERO_OTHER_FLOPS) <= set(OPS) and MAC_OPS <= set(OPS)


def test_aliases_share_the_op():
    for key, op in REGISTRY.items():
        assert key == op.name or key in op.aliases
        assert OPS[op.name] is op


@pytest.mark.parametrize("name", sorted(VALID))
@examples(30)
@given(data=st.data())
def test_valid_cases_agree_with_torch(name, data):
    case = data.draw(VALID[name], label="case")
    g = one_op_graph(case)   # a VALID case must be accepted: ShapeError here is a failure
    check_against_torch(g)


@pytest.mark.parametrize("name", sorted(VALID))
@examples(15)
@given(data=st.data())
def test_costs_are_linear_in_the_batch(name, data):
    """params and buffers do not depend on the batch; flops and other_flops scale with it —
    whenever doubling the batch doubles dim 0 of the output (the op keeps the batch dim)."""
    case = data.draw(VALID[name], label="case")
    g1 = one_op_graph(case)
    try:
        g2 = one_op_graph(batch_doubled(case))
    except ShapeError:  # e.g. a reshape to an explicit batch size
        return
    out1, out2 = g1.node("stage.op").shape, g2.node("stage.op").shape
    outs1 = out1 if g1.node("stage.op").is_multi else (out1,)
    outs2 = out2 if g2.node("stage.op").is_multi else (out2,)
    keeps_batch = len(outs1) == len(outs2) and all(
        len(a) == len(b) > 0 and b[0] == 2 * a[0] and a[1:] == b[1:] for a, b in zip(outs1, outs2))
    if not keeps_batch:  # the op moves or reduces the batch dim: no scaling to expect
        return
    p1, b1, f1, o1 = _costs(g1)
    p2, b2, f2, o2 = _costs(g2)
    if case.op not in ("layer_norm", "rms_norm", "simple_norm", "layer_scale", "linear") \
            or len(case.ins[0]) > 1:
        assert (p2, b2) == (p1, b1)
    assert (f2, o2) == (2 * f1, 2 * o1)


@pytest.mark.parametrize("name", sorted(INVALID))
@examples(30)
@given(data=st.data())
def test_invalid_cases_raise_shape_error(name, data):
    case = data.draw(INVALID[name], label="case")
    with pytest.raises(ShapeError):
        one_op_graph(case)


@pytest.mark.parametrize("name", sorted(OPS))
@examples(40)
@given(data=st.data())
def test_fuzzed_attributes_are_rejected_or_agree_with_torch(name, data):
    """Any type-correct attributes and shapes: `infer` raises ShapeError (and nothing else), or
    the configuration it accepts runs in torch with the inferred shapes and costs."""
    case = data.draw(wild_case(name), label="case")
    try:
        g = one_op_graph(case)
    except ShapeError:
        return
    except Exception as err:  # pydantic validation of the fuzzed attrs is not under test
        from pydantic import ValidationError
        if isinstance(err, ValidationError):
            return
        raise
    check_against_torch(g)
