"""RandAugment (archdsl/nn/augment.py): each op at magnitude 0, a few ops' effects by hand,
and N ops per image applied in order."""
from __future__ import annotations

import pytest
import torch

import archdsl
from archdsl import ArchError
from archdsl.nn.augment import OPS, apply_op, draw, randaugment

X = torch.rand(4, 3, 9, 7, generator=torch.Generator().manual_seed(0))
NO_MAGNITUDE = {"identity", "autocontrast", "equalize"}


@pytest.mark.parametrize("op", sorted(set(OPS) - NO_MAGNITUDE))
def test_magnitude_zero_is_the_identity(op):
    sign = torch.tensor([1, -1, 1, -1])
    torch.testing.assert_close(apply_op(X, op, 0, sign), X, atol=1e-6, rtol=0)
    assert not torch.allclose(apply_op(X, op, 20, sign), X, atol=1e-3)  # and it does something at M > 0


def test_ops_without_a_magnitude():
    torch.testing.assert_close(apply_op(X, "identity", 30), X)
    ac = apply_op(X * 0.5 + 0.2, "autocontrast", 0)
    torch.testing.assert_close(ac.amin(dim=(2, 3)), torch.zeros(4, 3))
    torch.testing.assert_close(ac.amax(dim=(2, 3)), torch.ones(4, 3))
    torch.testing.assert_close(ac, apply_op(X, "autocontrast", 0))   # an affine rescale per channel
    dark = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 0.3
    q = torch.round(apply_op(dark, "equalize", 0) * 255)
    assert q.max() > 240 and q.min() == 0                             # levels spread over [0, 255]
    hist = torch.histc(q[0, 0], bins=4, min=0, max=255)
    assert (hist / hist.sum() - 0.25).abs().max() < 0.05              # a flat histogram
    # fewer pixels than levels: torchvision's rule leaves the image unchanged
    torch.testing.assert_close(apply_op(X, "equalize", 0), torch.round(X * 255) / 255)


def test_effects_by_hand():
    s = torch.ones(4)
    torch.testing.assert_close(apply_op(X, "solarize", 15, s), torch.where(X > 0.5, 1 - X, X))
    torch.testing.assert_close(apply_op(X, "brightness", 10, s), (X * 1.3).clamp(0, 1))
    torch.testing.assert_close(apply_op(X, "brightness", 10, -s), X * 0.7)
    q = torch.round(X * 255).long()
    torch.testing.assert_close(apply_op(X, "posterize", 30, s), ((q >> 4) << 4).float() / 255)
    # translate by whole pixels: (150/331) · W · M/30 is one column at W = 331, M = 30/150
    img = torch.rand(1, 1, 4, 331)
    moved = apply_op(img, "translate_x", 30 * 1 / 150, torch.ones(1))  # 1 pixel to the right
    torch.testing.assert_close(moved[..., 1:], img[..., :-1], atol=1e-4, rtol=0)
    torch.testing.assert_close(moved[..., :1], torch.full((1, 1, 4, 1), 0.5))  # filled with grey


def test_n_ops_are_applied_in_order_per_image():
    g = torch.Generator().manual_seed(7)
    out = randaugment(X, n=3, m=12, generator=g)
    choice, sign = draw(4, 3, len(OPS), torch.Generator().manual_seed(7))
    for b in range(4):
        y = X[b:b + 1]
        for i in range(3):
            y = apply_op(y, OPS[int(choice[i, b])], 12, sign[i, b:b + 1])
        torch.testing.assert_close(out[b:b + 1], y)
    # a single op N times: brightness at +9% / −9%, composed N times
    out = randaugment(X * 0.5, n=2, m=3, ops=("brightness",), generator=torch.Generator().manual_seed(1))
    _, sign = draw(4, 2, 1, torch.Generator().manual_seed(1))
    factor = (1 + 0.09 * sign.float()).prod(dim=0).view(4, 1, 1, 1)
    torch.testing.assert_close(out, X * 0.5 * factor)


def test_randaugment_as_a_phase_input_stage_and_its_errors():
    spec = """
network Tiny(num_classes: int = 4) {
  in x: [B, 3, H = 8, W = 8]
  out x -> conv1: conv(4, 3) -> relu -> mean(dims=[2, 3]) -> fc: linear(num_classes)
}
topology T(n: int = 2, m: float = 9) {
  in x: [B, 3, H = 8, W = 8]
  in y: [B] as int64
  net model = Tiny()
  phase train { loss = cross_entropy((x -> randaugment(n=n, m=m) -> model), y) }
}
"""
    t = archdsl.load_spec(source=spec + "variant t = T()\n", input_shape=[(2, 3, 8, 8), (2,)])
    t(torch.rand(2, 3, 8, 8), torch.tensor([0, 3])).loss.backward()
    for bad in ("T(m=31)", "T(n=0)"):
        with pytest.raises(ArchError, match="randaugment"):
            archdsl.load_topology(source=spec + f"variant t = {bad}\n")
