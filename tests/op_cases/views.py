"""Cases for archdsl/ops/views.py: the view-making augmentations."""
from __future__ import annotations

from hypothesis import strategies as st

from op_cases.common import Case, batch, maybe

prob = st.sampled_from([0.0, 0.5, 1.0])


@st.composite
def images(draw, channels=None, lo=1):
    """[B, C, H, W] or [n, B, C, H, W]."""
    c = channels or draw(st.sampled_from([1, 3]))
    x = (draw(batch), c, draw(st.integers(lo, 9)), draw(st.integers(lo, 9)))
    return (draw(st.integers(1, 3)), *x) if draw(st.booleans()) else x


@st.composite
def crop_case(draw):
    attrs: dict = {"size": draw(st.one_of(st.integers(1, 6), st.tuples(st.integers(1, 6), st.integers(1, 6))
                                          .map(list)))}
    maybe(draw, attrs, "scale", draw(st.sampled_from([[0.08, 1.0], [0.4, 1.0], [0.05, 0.4], [1.0, 1.0]])))
    maybe(draw, attrs, "ratio", draw(st.sampled_from([[0.75, 4 / 3], [1.0, 1.0], [0.1, 10.0]])))
    maybe(draw, attrs, "n", draw(st.integers(0, 3)))
    return Case("random_resized_crop", attrs, [draw(images())])


@st.composite
def jitter_case(draw):
    attrs: dict = {}
    for k, v in (("brightness", 0.4), ("contrast", 0.4), ("saturation", 0.2), ("hue", 0.1)):
        maybe(draw, attrs, k, draw(st.sampled_from([0.0, v])))
    maybe(draw, attrs, "p", draw(prob))
    return Case("color_jitter", attrs, [draw(images(channels=3))])


@st.composite
def blur_case(draw):
    x = draw(images(lo=2))
    attrs: dict = {}
    maybe(draw, attrs, "p", draw(prob))
    maybe(draw, attrs, "sigma", draw(st.sampled_from([[0.1, 2.0], [1.0, 1.0]])))
    side = min(x[-2:])
    maybe(draw, attrs, "kernel", draw(st.sampled_from([k for k in (1, 3, 5) if k // 2 < side])))
    return Case("gaussian_blur", attrs, [x])


def simple_case(name, channels=None, **extra):
    @st.composite
    def s(draw):
        attrs: dict = {}
        maybe(draw, attrs, "p", draw(prob))
        for k, v in extra.items():
            maybe(draw, attrs, k, draw(v))
        return Case(name, attrs, [draw(images(channels=channels))])
    return s()


@st.composite
def normalize_case(draw):
    x = draw(images())
    attrs = {} if x[-3] == 3 and draw(st.booleans()) else {"mean": [0.5] * x[-3], "std": [0.25] * x[-3]}
    return Case("normalize", attrs, [x])


@st.composite
def invalid(draw):
    kind = draw(st.sampled_from(["rank", "p", "scale", "gray", "kernel", "hue", "norm"]))
    x = (draw(batch), 3, 8, 8)
    if kind == "rank":
        op = draw(st.sampled_from(["hflip", "solarize", "random_resized_crop", "gaussian_blur"]))
        return Case(op, {"size": 4} if op == "random_resized_crop" else {}, [(draw(batch), 3, 8)])
    if kind == "p":
        return Case(draw(st.sampled_from(["hflip", "grayscale", "solarize", "color_jitter"])),
                    {"p": draw(st.sampled_from([-0.1, 1.5]))}, [x])
    if kind == "scale":
        return Case("random_resized_crop", {"size": 4, "scale": draw(st.sampled_from([[0.5, 0.2], [0.0, 1.0],
                                                                                     [0.5, 2.0]]))}, [x])
    if kind == "gray":
        return Case(draw(st.sampled_from(["grayscale", "color_jitter"])), {}, [(1, 1, 8, 8)])
    if kind == "kernel":
        return Case("gaussian_blur", {"kernel": draw(st.sampled_from([2, 17]))}, [x])
    if kind == "hue":
        return Case("color_jitter", {"hue": 0.7}, [x])
    return Case("normalize", {"mean": [0.5], "std": [0.5]}, [x])


VALID = {"random_resized_crop": crop_case(), "hflip": simple_case("hflip"),
         "color_jitter": jitter_case(), "grayscale": simple_case("grayscale", channels=3),
         "gaussian_blur": blur_case(),
         "solarize": simple_case("solarize", threshold=st.sampled_from([0.5, 0.8])),
         "normalize": normalize_case()}
INVALID = {name: invalid() for name in VALID}
