"""Cases for archdsl/ops/loss.py: losses (scalar outputs) and the ops topologies use around them."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, any_shape, batch, maybe, small

temperature = st.floats(0.05, 1.0)


def matrix():
    return st.tuples(batch, small)


@st.composite
def stop_grad_case(draw):
    return Case("stop_grad", {}, [draw(any_shape(1, 4))])


@st.composite
def l2_normalize_case(draw):
    x = draw(any_shape(1, 4))
    attrs: dict = {}
    maybe(draw, attrs, "dim", draw(st.integers(-len(x), len(x) - 1)))
    return Case("l2_normalize", attrs, [x])


@st.composite
def info_nce_case(draw):
    n, d = draw(matrix())
    return Case("info_nce", {"temperature": draw(temperature)}, [(n, d), (n, d), (d, draw(small))])


@st.composite
def info_nce_invalid(draw):
    n, d = draw(matrix())
    return Case("info_nce", {}, [(n, d), (n, d), (d + draw(st.integers(1, 3)), 4)])


@st.composite
def nt_xent_case(draw):
    z = draw(matrix())
    return Case("nt_xent", {"temperature": draw(temperature)}, [z, z])


@st.composite
def pair_invalid(draw, name):
    n, d = draw(matrix())
    return Case(name, {}, [(n, d), (n, d + draw(st.integers(1, 3)))])


@st.composite
def same_pair_case(draw, name, min_rank=1):
    x = draw(any_shape(min_rank, 4))
    return Case(name, {}, [x, x])


@st.composite
def cross_entropy_case(draw):
    n, c = draw(matrix())
    attrs: dict = {}
    maybe(draw, attrs, "label_smoothing", draw(st.floats(0.0, 0.5)))
    if draw(st.booleans()):
        return Case("cross_entropy", attrs, [(n, c), (n,)], dtypes=["float32", "int64"], int_high=c)
    return Case("cross_entropy", {}, [(n, c), (n, c)])


@st.composite
def cross_entropy_invalid(draw):
    n, c = draw(matrix())
    return Case("cross_entropy", {}, [(n, c), (n + draw(st.integers(1, 3)),)])


@st.composite
def distill_case(draw):
    x = draw(matrix())
    return Case("distill_kl", {"temperature": draw(st.floats(0.5, 4.0))}, [x, x])


@st.composite
def dino_case(draw):
    b, k = draw(batch), draw(small)
    g = draw(st.integers(1, 2))
    views = draw(st.integers(max(2, g), 4))
    attrs = {"n_global": g, "student_temp": draw(temperature), "teacher_temp": draw(temperature)}
    return Case("dino_loss", attrs, [(views * b, k), (g * b, k), (1, k)])


@st.composite
def dino_invalid(draw):
    b, k = draw(batch), draw(small)
    kind = draw(st.sampled_from(["one view", "center"]))
    if kind == "one view":
        return Case("dino_loss", {"n_global": 1}, [(b, k), (b, k), (1, k)])
    return Case("dino_loss", {"n_global": 1}, [(2 * b, k), (b, k), (1, k + 1)])


@st.composite
def mae_case(draw):
    b, l, p = draw(batch), draw(small), draw(small)
    attrs: dict = {}
    maybe(draw, attrs, "norm_pix", draw(st.booleans()))
    return Case("mae_loss", attrs, [(b, l, p), (b, l, p), (b, l)])


@st.composite
def mae_invalid(draw):
    b, l, p = draw(batch), draw(small), draw(small)
    return Case("mae_loss", {}, [(b, l, p), (b, l, p), (b, l + 1)])


@st.composite
def clip_case(draw):
    x = draw(matrix())
    return Case("clip_loss", {}, [x, x, ()])


@st.composite
def clip_invalid(draw):
    n, d = draw(matrix())
    return Case("clip_loss", {}, [(n, d), (n, d), (2,)])


@st.composite
def gan_case(draw):
    kind = draw(st.sampled_from(["d_nonsat", "g_nonsat", "d_hinge", "g_hinge", "d_wgan", "g_wgan",
                                 "d_lsgan", "g_lsgan"]))
    x = draw(any_shape(1, 3))
    return Case("gan_loss", {"kind": kind}, [x, x] if kind.startswith("d_") else [x])


@st.composite
def gan_invalid(draw):
    x = draw(any_shape(1, 3))
    return Case("gan_loss", {"kind": "d_hinge"}, [x])


@st.composite
def randn_case(draw):
    x = draw(any_shape(1, 3))
    return Case("randn", {"shape": draw(st.lists(small, min_size=1, max_size=3))}, [x])


@st.composite
def randn_invalid(draw):
    return Case("randn", {"shape": [draw(small), draw(st.integers(-2, 0))]}, [draw(any_shape(1, 3))])


VALID = {
    "stop_grad": stop_grad_case(),
    "l2_normalize": l2_normalize_case(),
    "info_nce": info_nce_case(),
    "nt_xent": nt_xent_case(),
    "neg_cosine": same_pair_case("neg_cosine"),
    "cross_entropy": cross_entropy_case(),
    "distill_kl": distill_case(),
    "dino_loss": dino_case(),
    "mae_loss": mae_case(),
    "clip_loss": clip_case(),
    "gan_loss": gan_case(),
    "l1_loss": same_pair_case("l1_loss"),
    "mse_loss": same_pair_case("mse_loss"),
    "kl_gauss": same_pair_case("kl_gauss", min_rank=2),
    "randn": randn_case(),
}
INVALID = {
    "info_nce": info_nce_invalid(),
    "nt_xent": pair_invalid("nt_xent"),
    "neg_cosine": pair_invalid("neg_cosine"),
    "cross_entropy": cross_entropy_invalid(),
    "distill_kl": pair_invalid("distill_kl"),
    "dino_loss": dino_invalid(),
    "mae_loss": mae_invalid(),
    "clip_loss": clip_invalid(),
    "gan_loss": gan_invalid(),
    "l1_loss": pair_invalid("l1_loss"),
    "mse_loss": pair_invalid("mse_loss"),
    "kl_gauss": pair_invalid("kl_gauss"),
    "randn": randn_invalid(),
}
NO_INVALID = {"stop_grad": "any tensor", "l2_normalize": "any rank; dim errors come from the fuzzer"}
ZERO_OTHER_FLOPS = {"stop_grad": "detach moves no data"}
