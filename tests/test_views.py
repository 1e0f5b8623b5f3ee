"""The view-making augmentations (archdsl/nn/views.py, ops in archdsl/ops/views.py) against
torchvision.transforms.v2's functional ops on the same parameters (tests/fixtures/
views_torchvision.pt, written by tools/make_view_fixtures.py), and their random draws against
the rules of torchvision's transforms (RandomResizedCrop.get_params, RandomApply)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from archdsl.nn import views as V

FIX = torch.load(Path(__file__).parent / "fixtures" / "views_torchvision.pt")
X, CASES = FIX["x"], FIX["cases"]
ADJUST = {"brightness": V.adjust_brightness, "contrast": V.adjust_contrast,
          "saturation": V.adjust_saturation, "hue": V.adjust_hue}


def close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("size", [(8, 8), (16, 20)])
def test_resized_crop_is_torchvisions(size):
    case = CASES[f"resized_crop_{size[0]}x{size[1]}"]
    close(V.resized_crop(X, torch.tensor(case["boxes"]), size), case["out"])


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation", "hue", "hue_plus"])
def test_colour_adjustments_are_torchvisions(name):
    case = CASES[name]
    fn = ADJUST[name.split("_")[0]]
    f = torch.full((X.shape[0],), case["factor"])
    close(fn(X, f if fn is V.adjust_hue else f.view(-1, 1, 1, 1)), case["out"])


def test_colour_jitter_applies_its_order():
    """One image per order: color_jitter's per-sample order applies the adjustments as torchvision
    applies them one after another."""
    case = CASES["jitter_sequence"]
    y = X
    for name in case["order"]:
        f = torch.full((X.shape[0],), case["factors"][name])
        y = ADJUST[name](y, f if name == "hue" else f.view(-1, 1, 1, 1))
    close(y, case["out"])


def test_grayscale_solarize_flip_normalize_are_torchvisions():
    close(V.grayscale(X, p=1.0), CASES["grayscale"]["out"])
    close(V.solarize(X, p=1.0, threshold=0.5), CASES["solarize"]["out"], tol=0)
    close(V.hflip(X, p=1.0), CASES["hflip"]["out"], tol=0)
    n = CASES["normalize"]
    close(V.normalize(X, n["mean"], n["std"]), n["out"])
    assert torch.equal(V.grayscale(X, p=0.0), X) and torch.equal(V.solarize(X, p=0.0), X)


@pytest.mark.parametrize("k", [5, 7])
def test_gaussian_blur_is_torchvisions(k):
    case = CASES[f"blur_{k}"]
    s = case["sigma"]
    close(V.gaussian_blur(X, 1.0, (s, s), k), case["out"])


def test_crop_boxes_follow_random_resized_crop():
    """Every box lies in the image; a box drawn in the ten tries has its area fraction in
    `scale` and its aspect in `ratio` up to the rounding of its sides; an impossible range falls
    back to the whole image cropped to the ratio range, centred."""
    torch.manual_seed(0)
    h, w = 40, 60
    b = V.crop_boxes(4000, h, w, scale=(0.2, 0.7), ratio=(0.5, 2.0))
    top, left, bh, bw = b.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= h).all() and (left + bw <= w).all()
    area = (bh * bw).double() / (h * w)
    slack = (bh + bw + 1).double() / (h * w)   # rounding each side moves the area by < side
    assert (area >= 0.2 - slack).all() and (area <= 0.7 + slack).all()
    aspect = bw.double() / bh
    assert (aspect >= 0.5 * (1 - 1 / bh)).all() and (aspect <= 2.0 * (1 + 1 / bh)).all()
    # the position is uniform: every left offset of the widest boxes' range occurs
    assert len(set(left.tolist())) > 30
    wide = V.crop_boxes(5, 10, 40, scale=(1.0, 1.0), ratio=(1.0, 1.0))   # a square never fits 10 × 40 at full area
    assert wide.tolist() == [[0, 15, 10, 10]] * 5


def test_each_sample_draws_its_own_parameters_and_a_seed_repeats_them():
    x = torch.rand(64, 3, 16, 16)
    torch.manual_seed(1)
    flipped = V.hflip(x, p=0.5)
    same = [torch.equal(flipped[i], x[i]) for i in range(64)]
    assert 10 < sum(same) < 54
    torch.manual_seed(1)
    assert torch.equal(V.hflip(x, p=0.5), flipped)
    torch.manual_seed(2)
    crops = V.random_resized_crop(x, (8, 8), n=3)
    assert crops.shape == (3, 64, 3, 8, 8)
    assert not torch.equal(crops[0], crops[1])
    jittered = V.color_jitter(x, 0.4, 0.4, 0.2, 0.1, p=0.8)
    kept = sum(torch.equal(jittered[i], x[i]) for i in range(64))
    assert 3 <= kept <= 25   # RandomApply(p=0.8): about 13 of 64 untouched


def test_views_in_a_spec_cost_nothing_flop_counter_counts():
    """The view ops compile into a network, run, and do no work FlopCounterMode counts (their
    cost is other_flops)."""
    import archdsl
    from archdsl.ir.cost import cost
    from archdsl.testing.flops import flop_counter
    src = """
network V() {
  in x: [B = 4, 3, H = 32, W = 32]
  out x -> random_resized_crop(16, scale=[0.2, 1.0]) -> hflip -> color_jitter(0.4, 0.4, 0.2, 0.1, p=0.8)
        -> grayscale(0.2) -> gaussian_blur(1.0) -> solarize(0.2) -> normalize
}
"""
    model = archdsl.load_spec(source=src)
    x = torch.rand(4, 3, 32, 32)
    with flop_counter() as fc:
        y = model(x)
    assert y.shape == (4, 3, 16, 16) and fc.get_total_flops() == 0
    rep = cost(archdsl.load_graph(source=src))
    assert rep.totals.flops == 0 and rep.totals.params == 0 and rep.totals.other_flops > 0
