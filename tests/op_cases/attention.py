"""Cases for archdsl/ops/attention.py: sdpa, split_heads, merge_heads, window_partition,
window_reverse, shift_window_mask, rel_pos_bias, beit_rel_pos_bias."""
from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe, small

ZERO_OTHER_FLOPS = {
    "split_heads": "data movement",
    "merge_heads": "data movement",
    "window_partition": "data movement and zero padding",
    "window_reverse": "data movement",
    "shift_window_mask": "a constant buffer, tiled over the batch",
    "rel_pos_bias": "a gather",
    "beit_rel_pos_bias": "a gather",
}


def _win(draw, hi=3):
    w = draw(st.one_of(st.integers(1, hi), st.tuples(st.integers(1, hi), st.integers(1, hi))))
    return w, (w, w) if isinstance(w, int) else w


def _ceil(a, b):
    return -(-a // b)


# ---------------------------------------------------------------------------------------------
# sdpa

@st.composite
def sdpa_case(draw):
    b, h = draw(batch), draw(st.integers(1, 3))
    lq, lk = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    e = draw(st.integers(1, 6))
    ev = e if draw(st.booleans()) else draw(st.integers(1, 6))
    ins = [(b, h, lq, e), (b, h, lk, e), (b, h, lk, ev)]
    attrs: dict = {}
    dtypes = None
    mode = draw(st.sampled_from(["none", "mask", "bool_mask", "causal"]))
    if mode in ("mask", "bool_mask"):
        full = (b, h, lq, lk)
        rank = draw(st.integers(2, 4))
        ins.append(tuple(1 if draw(st.booleans()) else d for d in full[4 - rank:]))
        if mode == "bool_mask":
            dtypes = ["float32"] * 3 + ["bool"]
    elif mode == "causal":
        attrs["causal"] = True
    maybe(draw, attrs, "scale", draw(st.one_of(st.none(), st.floats(0.05, 2.0))))
    maybe(draw, attrs, "dropout", draw(st.sampled_from([0.0, 0.1, 0.5])))
    return Case("sdpa", attrs, ins, dtypes=dtypes)


@st.composite
def sdpa_invalid(draw):
    b, h = draw(batch), draw(st.integers(1, 3))
    l, e = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    q = (b, h, l, e)
    kind = draw(st.sampled_from(["count", "rank", "heads", "qk_dim", "kv_len", "mask", "mask_rank",
                                 "causal_and_mask", "dropout"]))
    if kind == "count":
        return Case("sdpa", {}, draw(st.sampled_from([[q], [q, q], [q, q, q, q[2:], q]])))
    if kind == "rank":
        bad = draw(st.sampled_from([(b, l, e), (b, h, l, e, 1)]))
        ins = [q, q, q]
        ins[draw(st.integers(0, 2))] = bad
        return Case("sdpa", {}, ins)
    if kind == "heads":
        return Case("sdpa", {}, [q, (b, h + 1, l, e), (b, h + 1, l, e)])
    if kind == "qk_dim":
        return Case("sdpa", {}, [q, (b, h, l, e + 1), (b, h, l, e)])
    if kind == "kv_len":
        return Case("sdpa", {}, [q, q, (b, h, l + 1, e)])
    if kind == "mask":
        return Case("sdpa", {}, [q, q, q, (b, h, l + draw(st.integers(1, 2)), l)])
    if kind == "mask_rank":
        return Case("sdpa", {}, [q, q, q, draw(st.sampled_from([(1, 1, 1, l, l), (l,)]))])
    if kind == "causal_and_mask":
        return Case("sdpa", {"causal": True}, [q, q, q, (l, l)])
    p = draw(st.one_of(st.floats(1.0, 5.0), st.floats(-5.0, -1e-6)))
    return Case("sdpa", {"dropout": p}, [q, q, q])


# ---------------------------------------------------------------------------------------------
# heads

@st.composite
def split_heads_case(draw):
    heads, parts, d = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    attrs: dict = {"heads": heads}
    if parts != 1 or draw(st.booleans()):
        attrs["parts"] = parts
    return Case("split_heads", attrs, [(draw(batch), draw(small), parts * heads * d)])


@st.composite
def split_heads_invalid(draw):
    kind = draw(st.sampled_from(["divide", "rank", "nonpositive"]))
    if kind == "divide":
        heads = draw(st.integers(2, 4))
        return Case("split_heads", {"heads": heads}, [(1, 3, heads * draw(st.integers(1, 2)) + 1)])
    if kind == "rank":
        return Case("split_heads", {"heads": 1}, [draw(st.sampled_from([(2, 4), (1, 2, 3, 4)]))])
    key = draw(st.sampled_from(["heads", "parts"]))
    attrs = {"heads": 1, key: draw(st.integers(-2, 0))}
    return Case("split_heads", attrs, [(1, 2, 4)])


@st.composite
def merge_heads_case(draw):
    x = (draw(batch), draw(st.integers(1, 3)), draw(small), draw(small))
    return Case("merge_heads", {}, [x])


@st.composite
def merge_heads_invalid(draw):
    return Case("merge_heads", {}, [draw(st.sampled_from([(2, 3, 4), (1, 2, 3, 4, 5), (3,)]))])


# ---------------------------------------------------------------------------------------------
# windows

@st.composite
def window_partition_case(draw):
    w, (wh, ww) = _win(draw, 4)
    x = (draw(batch), draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 3)))
    return Case("window_partition", {"window": w}, [x])


@st.composite
def window_partition_invalid(draw):
    if draw(st.booleans()):
        x = draw(st.sampled_from([(2, 4, 4), (1, 2, 4, 4, 1)]))
        return Case("window_partition", {"window": 2}, [x])
    return Case("window_partition", {"window": draw(st.sampled_from([0, -1, (2, 0), (-1, 3)]))},
                [(1, 4, 4, 2)])


def _reverse_geom(draw):
    w, (wh, ww) = _win(draw, 4)
    h, wd = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    size = (h, wd) if h != wd or draw(st.booleans()) else h
    nw = _ceil(h, wh) * _ceil(wd, ww)
    return w, wh, ww, size, nw


@st.composite
def window_reverse_case(draw):
    w, wh, ww, size, nw = _reverse_geom(draw)
    return Case("window_reverse", {"window": w, "size": size},
                [(draw(batch) * nw, wh * ww, draw(st.integers(1, 3)))])


@st.composite
def window_reverse_invalid(draw):
    w, wh, ww, size, nw = _reverse_geom(draw)
    kind = draw(st.sampled_from(["tokens", "count", "rank", "size"]))
    if kind == "tokens":
        return Case("window_reverse", {"window": w, "size": size}, [(nw, wh * ww + 1, 2)])
    if kind == "count":
        assume(nw > 1)
        return Case("window_reverse", {"window": w, "size": size}, [(nw + 1, wh * ww, 2)])
    if kind == "rank":
        return Case("window_reverse", {"window": w, "size": size}, [(nw, wh, ww, 2)])
    bad = draw(st.sampled_from([0, (3, -1)]))
    return Case("window_reverse", {"window": w, "size": bad}, [(1, wh * ww, 2)])


@st.composite
def shift_window_mask_case(draw):
    w, wh, ww, size, nw = _reverse_geom(draw)
    sh, sw = draw(st.integers(0, wh - 1)), draw(st.integers(0, ww - 1))
    shift = (sh, sw) if sh != sw or draw(st.booleans()) else sh
    return Case("shift_window_mask", {"window": w, "shift": shift, "size": size},
                [(draw(batch) * nw, wh * ww, draw(st.integers(1, 3)))])


@st.composite
def shift_window_mask_invalid(draw):
    w, wh, ww, size, nw = _reverse_geom(draw)
    kind = draw(st.sampled_from(["shift_big", "shift_negative", "tokens", "count", "rank"]))
    attrs = {"window": w, "shift": 0, "size": size}
    x = (nw, wh * ww, 2)
    if kind == "shift_big":
        attrs["shift"] = (wh + draw(st.integers(0, 2)), 0)
    elif kind == "shift_negative":
        attrs["shift"] = (0, draw(st.integers(-3, -1)))
    elif kind == "tokens":
        x = (nw, wh * ww + 1, 2)
    elif kind == "count":
        assume(nw > 1)
        x = (nw + 1, wh * ww, 2)
    else:
        x = (nw, wh * ww)
    return Case("shift_window_mask", attrs, [x])


# ---------------------------------------------------------------------------------------------
# relative position bias

def rel_pos_case(name, extra):
    @st.composite
    def s(draw):
        w, (wh, ww) = _win(draw, 4)
        rows = (2 * wh - 1) * (2 * ww - 1) + extra
        return Case(name, {"window": w}, [(rows, draw(st.integers(1, 3)))])
    return s()


def rel_pos_invalid(name, extra):
    @st.composite
    def s(draw):
        w, (wh, ww) = _win(draw, 4)
        rows = (2 * wh - 1) * (2 * ww - 1) + extra
        kind = draw(st.sampled_from(["rows", "rank", "window"]))
        if kind == "rows":
            return Case(name, {"window": w}, [(rows + draw(st.sampled_from([-1, 1, 3])), 2)])
        if kind == "rank":
            return Case(name, {"window": w}, [draw(st.sampled_from([(rows,), (rows, 2, 1)]))])
        return Case(name, {"window": draw(st.sampled_from([0, (0, 2), -1]))}, [(1 + extra, 2)])
    return s()


VALID = {
    "sdpa": sdpa_case(),
    "split_heads": split_heads_case(),
    "merge_heads": merge_heads_case(),
    "window_partition": window_partition_case(),
    "window_reverse": window_reverse_case(),
    "shift_window_mask": shift_window_mask_case(),
    "rel_pos_bias": rel_pos_case("rel_pos_bias", 0),
    "beit_rel_pos_bias": rel_pos_case("beit_rel_pos_bias", 3),
}

INVALID = {
    "sdpa": sdpa_invalid(),
    "split_heads": split_heads_invalid(),
    "merge_heads": merge_heads_invalid(),
    "window_partition": window_partition_invalid(),
    "window_reverse": window_reverse_invalid(),
    "shift_window_mask": shift_window_mask_invalid(),
    "rel_pos_bias": rel_pos_invalid("rel_pos_bias", 0),
    "beit_rel_pos_bias": rel_pos_invalid("beit_rel_pos_bias", 3),
}
