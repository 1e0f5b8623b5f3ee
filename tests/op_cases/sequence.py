"""Cases for archdsl/ops/sequence.py: embedding, gru."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, batch, maybe, small

ZERO_OTHER_FLOPS = {"embedding": "a table lookup (data movement)"}


@st.composite
def embedding_case(draw):
    n = draw(st.integers(1, 8))
    return Case("embedding", {"num": n, "dim": draw(st.integers(1, 5))}, [draw(any_shape(1, 3))],
                dtypes=["int64"], int_high=n)


embedding_invalid = st.tuples(st.integers(-2, 0), st.integers(1, 3), st.booleans(), any_shape(1, 3)).map(
    lambda t: Case("embedding", {"num": t[0], "dim": t[1]} if t[2] else {"num": t[1], "dim": t[0]},
                   [t[3]], dtypes=["int64"]))


@st.composite
def gru_case(draw):
    h, layers = draw(st.integers(1, 4)), draw(st.integers(1, 2))
    bi, bf = draw(st.booleans()), draw(st.booleans())
    attrs: dict = {"hidden": h}
    if layers != 1 or draw(st.booleans()):
        attrs["layers"] = layers
    if bi:
        attrs["bidirectional"] = True
    if not bf:
        attrs["batch_first"] = False
    maybe(draw, attrs, "bias", draw(st.booleans()))
    maybe(draw, attrs, "return_state", draw(st.booleans()))
    if layers > 1:
        maybe(draw, attrs, "dropout", draw(st.floats(0.0, 0.5)))
    b, t, i = draw(batch), draw(st.integers(1, 4)), draw(small)
    ins = [(b, t, i) if bf else (t, b, i)]
    if draw(st.booleans()):
        ins.append((layers * (2 if bi else 1), b, h))
    return Case("gru", attrs, ins)


@st.composite
def gru_invalid(draw):
    kind = draw(st.sampled_from(["rank", "h0", "nonpositive", "dropout", "three"]))
    b, t, i = draw(batch), draw(small), draw(small)
    if kind == "rank":
        return Case("gru", {"hidden": 3}, [draw(st.sampled_from([(b, i), (b, t, i, 1)]))])
    if kind == "h0":
        return Case("gru", {"hidden": 3}, [(b, t, i), draw(st.sampled_from([(2, b, 3), (1, b + 1, 3), (1, b, 4)]))])
    if kind == "nonpositive":
        attrs = {"hidden": 3, "layers": 1}
        attrs[draw(st.sampled_from(["hidden", "layers"]))] = draw(st.integers(-2, 0))
        return Case("gru", attrs, [(b, t, i)])
    if kind == "dropout":
        return Case("gru", {"hidden": 3, "layers": 2, "dropout": draw(st.sampled_from([1.0, 1.5, -0.1]))},
                    [(b, t, i)])
    return Case("gru", {"hidden": 3}, [(b, t, i), (1, b, 3), (1, b, 3)])


VALID = {
    "embedding": embedding_case(),
    "gru": gru_case(),
}

INVALID = {
    "embedding": embedding_invalid,
    "gru": gru_invalid(),
}
