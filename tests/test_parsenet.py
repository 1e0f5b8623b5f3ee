"""ParseNet (stdlib/nets/parsenet.arch) against an independent torch forward written from the
paper (VGG-16 DeepLab-LargeFOV trunk, L2-normalised and scaled fc7 and pooled context, unpooled,
concatenated, scored, upsampled), plus initialisation and training."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import archdsl

SHAPE = [2, 3, 40, 48]


def _normalize(x, scale):
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) * scale.view(1, -1, 1, 1)


def _by_hand(model, x):
    p = dict(model.named_parameters())
    y = x
    for i, n in enumerate([2, 2, 3, 3, 3]):
        d = 2 if i == 4 else 1
        for j in range(n):
            name = f"conv{i + 1}_{j + 1}"
            y = F.relu(F.conv2d(y, p[f"{name}.weight"], p[f"{name}.bias"], padding=d, dilation=d))
        y = F.max_pool2d(y, 3, 1 if i >= 3 else 2, 1)
    y = F.relu(F.conv2d(y, p["fc6.weight"], p["fc6.bias"], padding=12, dilation=12))
    y = F.relu(F.conv2d(y, p["fc7.weight"], p["fc7.bias"]))
    g = _normalize(y.mean(dim=(2, 3), keepdim=True), p["pool6_norm.scale"])
    y = torch.cat([_normalize(y, p["fc7_norm.scale"]), g.expand_as(y)], dim=1)
    y = F.conv2d(y, p["score.weight"], p["score.bias"])
    return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


def test_parsenet_matches_the_papers_computation():
    torch.manual_seed(0)
    model = archdsl.load_spec("parsenet_largefov_voc", input_shape=SHAPE, seed=0).eval()
    with torch.no_grad():  # non-zero scores and distinct scales, so every term shows
        model.score.weight.normal_(0, 0.01)
        model.score.bias.normal_(0, 0.1)
        model.fc7_norm.scale.uniform_(5, 15)
        model.pool6_norm.scale.uniform_(5, 15)
        x = torch.randn(SHAPE)
        torch.testing.assert_close(model(x), _by_hand(model, x), rtol=1e-4, atol=1e-5)


def test_initialisation():
    model = archdsl.load_spec("parsenet_largefov_voc", input_shape=SHAPE, seed=0)
    assert model.fc7_norm.scale.unique().tolist() == [10.0]
    assert model.pool6_norm.scale.unique().tolist() == [10.0]
    assert model.score.weight.abs().max().item() == 0 and model.score.bias.abs().max().item() == 0
    w = model.get_parameter("conv3_2.weight")       # He normal, fan-out 256 · 9
    assert abs(w.std().item() / (2 / (256 * 9)) ** 0.5 - 1) < 0.05


def test_trains():
    """(tests/test_catalog.py compiles this variant with fullgraph=True at its default size.)"""
    model = archdsl.load_spec("parsenet_largefov_voc", input_shape=SHAPE, seed=0)
    x = torch.randn(SHAPE)
    target = torch.randint(0, 21, (SHAPE[0], *SHAPE[2:]))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(x), target).backward()
    assert model.get_parameter("score.weight").grad.abs().sum() > 0
    assert model.fc7_norm.scale.grad.abs().sum() == 0      # zero scores pass nothing back yet
    opt.step()
    opt.zero_grad()
    F.cross_entropy(model(x), target).backward()
    assert model.fc7_norm.scale.grad.abs().sum() > 0       # the learned scales train
    assert model.pool6_norm.scale.grad.abs().sum() > 0


def test_context_adds_scales_and_score_weights():
    base = archdsl.check_spec("deeplab_largefov_vgg16").totals.params
    ours = archdsl.check_spec("parsenet_largefov_voc").totals.params
    c, k = 1024, 21
    assert ours - base == 2 * c + (2 * c * k + k) - (c * k + k)
