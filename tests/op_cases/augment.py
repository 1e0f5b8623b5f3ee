"""Cases for archdsl/ops/augment.py: mixup (and cutmix), randaugment, pseudo_label."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe, small


@st.composite
def mixup_case(draw):
    b, k = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    attrs: dict = {"num_classes": k}
    cut = draw(st.booleans())
    x = (b, draw(small), draw(st.integers(1, 6)), draw(st.integers(1, 6))) if cut else (b, draw(small))
    maybe(draw, attrs, "alpha", draw(st.sampled_from([0.0, 0.2, 1.0])))
    if cut:
        attrs["cutmix_alpha"] = draw(st.sampled_from([0.5, 1.0]))
        maybe(draw, attrs, "switch_prob", draw(st.sampled_from([0.0, 0.5, 1.0])))
    maybe(draw, attrs, "prob", draw(st.sampled_from([0.0, 0.5, 1.0])))
    maybe(draw, attrs, "smoothing", draw(st.sampled_from([0.0, 0.1])))
    return Case("mixup", attrs, [x, (b,)], dtypes=["float32", "int64"], int_high=k)


@st.composite
def mixup_invalid(draw):
    b = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["labels", "cutmix_rank", "smoothing", "alpha"]))
    x, y, attrs = (b, 3, 4, 4), (b,), {"num_classes": 3}
    if kind == "labels":
        y = (b + draw(st.integers(1, 2)),)
    elif kind == "cutmix_rank":
        x, attrs["cutmix_alpha"] = (b, 5), 1.0
    elif kind == "smoothing":
        attrs["smoothing"] = draw(st.sampled_from([-0.1, 1.5]))
    else:
        attrs["alpha"] = -0.2
    return Case("mixup", attrs, [x, y], dtypes=["float32", "int64"], int_high=1)


@st.composite
def randaugment_case(draw):
    x = (draw(batch), draw(st.sampled_from([1, 3])), draw(st.integers(2, 6)), draw(st.integers(2, 6)))
    attrs: dict = {}
    maybe(draw, attrs, "n", draw(st.integers(1, 3)))
    maybe(draw, attrs, "m", draw(st.sampled_from([0, 9, 27.5, 30])))
    from archdsl.nn.augment import OPS
    maybe(draw, attrs, "ops", draw(st.lists(st.sampled_from(OPS), min_size=1, max_size=4)))
    return Case("randaugment", attrs, [x])


@st.composite
def randaugment_invalid(draw):
    kind = draw(st.sampled_from(["rank", "m", "ops"]))
    if kind == "rank":
        return Case("randaugment", {}, [(draw(batch), draw(small))])
    if kind == "m":
        return Case("randaugment", {"m": draw(st.sampled_from([-1.0, 31.0]))}, [(1, 3, 4, 4)])
    return Case("randaugment", {"ops": draw(st.sampled_from([[], ["rotate", "blur"]]))}, [(1, 3, 4, 4)])


@st.composite
def pseudo_label_case(draw):
    attrs: dict = {}
    maybe(draw, attrs, "kind", draw(st.sampled_from(["hard", "soft"])))
    maybe(draw, attrs, "temperature", draw(st.sampled_from([0.5, 1.0, 2.0])))
    return Case("pseudo_label", attrs, [(draw(batch), draw(small))])


@st.composite
def pseudo_label_invalid(draw):
    if draw(st.booleans()):
        return Case("pseudo_label", {}, [(draw(batch), draw(small), draw(small))])
    return Case("pseudo_label", {"temperature": 0.0}, [(draw(batch), draw(small))])


VALID = {"mixup": mixup_case(), "randaugment": randaugment_case(), "pseudo_label": pseudo_label_case()}
INVALID = {"mixup": mixup_invalid(), "randaugment": randaugment_invalid(), "pseudo_label": pseudo_label_invalid()}
