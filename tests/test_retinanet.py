"""RetinaNet (stdlib/nets/retinanet.arch, stdlib/train/retinanet.arch): the packed-level conv,
anchors, matching and the loss against torchvision's (tests/fixtures/retinanet_loss.json, made by
tools/make_detection_fixtures.py), the focal loss against its formula and torchvision's outputs,
the initialisation, error messages, and a short training run that lowers the loss.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl.nn import detection
from topology_checks import step

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from fill import reference_fill_, reference_input  # noqa: E402

LOSS = json.loads((FIXTURES / "retinanet_loss.json").read_text())
FOCAL = json.loads((FIXTURES / "ops_sigmoid_focal_loss.json").read_text())["sigmoid_focal_loss"]
STRIDES = [8, 16, 32, 64, 128]
# torchvision's retinanet_resnet50_fpn anchor sizes: (x, int(x·2^(1/3)), int(x·2^(2/3)))
SIZES = [[x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))] for x in [32, 64, 128, 256, 512]]
TINY = "RetinaNet(layers=[1, 1, 1, 1], width=8, fpn_chs=16, head_convs=1, num_classes=3)"


def _padded_targets(targets, g: int):
    boxes = torch.zeros(len(targets), g, 4)
    labels = torch.full((len(targets), g), -1, dtype=torch.int64)
    for i, t in enumerate(targets):
        n = len(t["labels"])
        if n:
            boxes[i, :n] = torch.tensor(t["boxes"])
            labels[i, :n] = torch.tensor(t["labels"])
    return boxes, labels


# ---- level_conv: one weight over every level ---------------------------------------------------

def test_level_conv_is_one_conv_per_level():
    src = """network N() {
      in a: [B, 4, 6, 5]
      in b: [B, 4, 3, 2]
      packed = cat([(a -> flatten(2)), (b -> flatten(2))], dim=2)
      out packed -> c: level_conv(7, 3, levels=[[6, 5], [3, 2]])
    }"""
    model = archdsl.load_spec(source=src, seed=0)
    a, b = torch.randn(2, 4, 6, 5), torch.randn(2, 4, 3, 2)
    y = model(a, b)
    w, bias = model.c.weight, model.c.bias
    ya, yb = F.conv2d(a, w, bias, padding=1), F.conv2d(b, w, bias, padding=1)
    assert y.shape == (2, 7, 36)
    torch.testing.assert_close(y, torch.cat([ya.flatten(2), yb.flatten(2)], dim=2))


def test_level_conv_refuses_wrong_levels():
    src = """network N() {
      in x: [B, 4, 30]
      out x -> level_conv(7, 3, levels=[[6, 5], [3, 2]])
    }"""
    with pytest.raises(archdsl.ArchError, match="hold 36 positions, the input has 30"):
        archdsl.check_spec(source=src)


# ---- anchors, IoU, matching: torchvision's ------------------------------------------------------

def test_anchor_grid_matches_torchvision():
    images = torch.zeros(LOSS["input_shape"])
    ours = detection.anchor_grid(images, STRIDES, SIZES, [0.5, 1.0, 2.0])
    ref = torch.tensor(LOSS["anchors"]).reshape(-1, 4)
    assert ours.shape == ref.shape == (9 * (12 * 12 + 6 * 6 + 3 * 3 + 2 * 2 + 1), 4)
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=0)
    # by hand: the first anchor is ratio 1:2 (h/w = 0.5), size 32: w = 32·√2, h = 32/√2, rounded
    w, h = 32 * math.sqrt(2), 32 / math.sqrt(2)
    assert ours[0].tolist() == [round(-w / 2), round(-h / 2), round(w / 2), round(h / 2)]


def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 5.0]])
    assert detection.box_iou(a, b)[0].tolist() == pytest.approx([25 / 175, 0.0, 0.5])


def test_matching_matches_torchvision():
    anchors = torch.tensor(LOSS["anchors"]).reshape(-1, 4)
    for target, expected in zip(LOSS["targets"], LOSS["matched"]):
        gt = torch.tensor(target["boxes"]).reshape(-1, 4)
        ours = detection.match_anchors(detection.box_iou(gt, anchors), 0.5, 0.4)
        assert ours.tolist() == expected
    assert any(m == -2 for m in LOSS["matched"][0]), "the fixture exercises the ignored band"


def test_low_quality_matches_keep_every_box():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0]])
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])           # IoU 0.25 with each anchor: below 0.4
    iou = detection.box_iou(gt, anchors)
    assert detection.match_anchors(iou, low_quality=False).tolist() == [-1, -1]
    assert detection.match_anchors(iou).tolist() == [0, 0]  # both tie for the box's best


def test_encode_boxes_by_hand():
    anchor = torch.tensor([[0.0, 0.0, 10.0, 20.0]])      # centre (5, 10), 10 x 20
    gt = torch.tensor([[2.0, 4.0, 22.0, 14.0]])          # centre (12, 9), 20 x 10
    d = detection.encode_boxes(gt, anchor)[0].tolist()
    assert d == pytest.approx([0.7, -0.05, math.log(2.0), math.log(0.5)])


def test_prior_bias():
    p = torch.sigmoid(torch.tensor(detection.prior_bias(0.01)))
    assert p.item() == pytest.approx(0.01)


# ---- the focal loss ------------------------------------------------------------------------------

def test_focal_loss_against_formula_and_torchvision():
    for case in FOCAL:
        shape = case["inputs"]["inputs"]["shape"]
        x = reference_input(shape, seed=1)
        t = (reference_input(shape, seed=2) > 0).float()
        if "soft" in case["name"]:
            continue  # those targets are made otherwise; the hard ones suffice here
        alpha, gamma = case["args"]["alpha"], case["args"]["gamma"]
        ours = detection.sigmoid_focal_loss(x, t, alpha, gamma)
        # the paper's eq. 5 written out: FL = −α_t (1 − p_t)^γ log(p_t)
        p = torch.sigmoid(x.double())
        p_t = torch.where(t > 0, p, 1 - p)
        a_t = torch.where(t > 0, torch.full_like(p, alpha), torch.full_like(p, 1 - alpha)) if alpha >= 0 else 1.0
        by_hand = -a_t * (1 - p_t) ** gamma * torch.log(p_t)
        torch.testing.assert_close(ours.double(), by_hand, rtol=1e-5, atol=1e-6)
        ref = torch.tensor(case["output"])
        if case["args"]["reduction"] == "sum":
            ours = ours.sum()
        elif case["args"]["reduction"] == "mean":
            ours = ours.mean()
        torch.testing.assert_close(ours, ref.reshape(ours.shape), rtol=1e-5, atol=1e-6)


# ---- the whole loss against torchvision's compute_loss -------------------------------------------

@pytest.fixture(scope="module")
def filled_outputs():
    model = archdsl.load_spec("retinanet_resnet50_fpn", input_shape=LOSS["input_shape"]).eval()
    reference_fill_(model)
    x = reference_input(LOSS["input_shape"])
    with torch.no_grad():
        return x, model(x)


def test_retina_loss_matches_torchvision(filled_outputs):
    x, y = filled_outputs
    anchors = detection.anchor_grid(x, STRIDES, SIZES, [0.5, 1.0, 2.0])
    boxes, labels = _padded_targets(LOSS["targets"], 4)
    args = (y["cls_logits"], y["bbox_regression"], anchors, boxes, labels)
    cls = detection.retina_loss(*args, box_loss="l1", part="cls")
    assert cls.item() == pytest.approx(LOSS["classification"], rel=1e-4)
    box = detection.retina_loss(*args, box_loss="l1", part="box")
    assert box.item() == pytest.approx(LOSS["bbox_regression_l1"], rel=1e-4)
    sl1 = detection.retina_loss(*args, box_loss="smooth_l1", beta=LOSS["smooth_l1_beta"], part="box")
    assert sl1.item() == pytest.approx(LOSS["bbox_regression_smooth_l1"], rel=1e-4)
    total = detection.retina_loss(*args, box_loss="l1")
    assert total.item() == pytest.approx(LOSS["classification"] + LOSS["bbox_regression_l1"], rel=1e-4)


def test_retina_loss_by_hand_one_image():
    """Two anchors, one box: anchor 0 matches (IoU 1), anchor 1 is background; K = 2."""
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]]])   # the second: padding
    labels = torch.tensor([[1, -1]])
    cls = torch.tensor([[[0.3, -0.2], [1.5, 0.4]]])
    reg = torch.tensor([[[0.1, -0.2, 0.05, 0.0], [9.0, 9.0, 9.0, 9.0]]])
    target = torch.tensor([[0.0, 1.0], [0.0, 0.0]])

    def fl(x, t):  # −α_t (1 − p_t)^2 log p_t
        p = 1 / (1 + math.exp(-x))
        p_t = p if t else 1 - p
        return -(0.25 if t else 0.75) * (1 - p_t) ** 2 * math.log(p_t)

    expected_cls = sum(fl(cls[0, i, j].item(), target[i, j].item()) for i in range(2) for j in range(2)) / 1
    expected_box = 0.1 + 0.2 + 0.05 + 0.0      # L1 to the zero targets of a perfect match, one fg anchor
    got = detection.retina_loss(cls, reg, anchors, boxes, labels, box_loss="l1", part="cls")
    assert got.item() == pytest.approx(expected_cls, rel=1e-5)
    got = detection.retina_loss(cls, reg, anchors, boxes, labels, box_loss="l1", part="box")
    assert got.item() == pytest.approx(expected_box, rel=1e-5)


def test_retina_loss_refuses_a_label_beyond_the_classes():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    with pytest.raises(ValueError, match="label is 5, but there are 2 classes"):
        detection.retina_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, 4), anchors,
                           torch.tensor([[[0.0, 0.0, 10.0, 10.0]]]), torch.tensor([[5]]))


# ---- network init and topology -----------------------------------------------------------------

def test_head_and_fpn_initialisation():
    model = archdsl.load_spec("retinanet_resnet50_fpn", input_shape=[1, 3, 64, 64], seed=0)
    head = model.head.classification_head
    assert torch.allclose(head.cls_logits.bias, torch.full_like(head.cls_logits.bias, -math.log(99)))
    assert head.cls_logits.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert head.get_submodule("conv.0.0").weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert model.head.regression_head.bbox_reg.bias.abs().max().item() == 0
    inner = model.get_submodule("backbone.fpn.inner_blocks.2.0")
    bound = math.sqrt(3 / inner.weight.shape[1])          # kaiming_uniform(a=1): sqrt(6 / (2 · fan_in))
    assert inner.weight.abs().max().item() <= bound
    assert inner.weight.abs().max().item() > 0.99 * bound
    assert inner.bias.abs().max().item() == 0
    conv = model.get_submodule("backbone.body.layer1.0.conv2")            # He normal, fan-out (torchvision ResNet)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.05)
    assert model.get_submodule("backbone.body.layer1.0.bn3").weight.min().item() == 1  # no zero-init of the last BN


def test_topology_refuses_anchors_that_do_not_match_the_levels():
    with pytest.raises(archdsl.ArchError, match="anchors predicted"):
        archdsl.load_topology("retinanet_r50_fpn_train", img=64, strides=archdsl.SpecText("[8, 16, 32, 64]"),
                           anchor_sizes=archdsl.SpecText("[32, 64, 128, 256]"),
                           detector=archdsl.SpecText(TINY))
    with pytest.raises(archdsl.ArchError, match="bg_iou <= fg_iou"):
        archdsl.load_topology("retinanet_r50_fpn_train", img=64, bg_iou=0.6, detector=archdsl.SpecText(TINY))


def _scene(n: int, size: int = 64, seed: int = 0):
    """Images with one or two bright rectangles each; class = rectangle colour channel."""
    g = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.randn(n, 3, size, size, generator=g)
    boxes = torch.zeros(n, 2, 4)
    labels = torch.full((n, 2), -1, dtype=torch.int64)
    for i in range(n):
        for j in range(1 + i % 2):
            w, h = [int(v) for v in torch.randint(16, 40, (2,), generator=g)]
            x0, y0 = [int(v) for v in torch.randint(0, size - 40, (2,), generator=g)]
            c = int(torch.randint(0, 3, (1,), generator=g))
            images[i, c, y0:y0 + h, x0:x0 + w] += 2.0
            boxes[i, j] = torch.tensor([x0, y0, x0 + w, y0 + h], dtype=torch.float32)
            labels[i, j] = c
    return images, boxes, labels


def test_short_training_run_lowers_the_loss(one_thread):
    torch.manual_seed(0)
    topo = archdsl.load_spec("retinanet_r50_fpn_train", img=64, max_boxes=2, num_classes=3,
                             detector=archdsl.SpecText(TINY), input_shape=None)
    images, boxes, labels = _scene(4)
    opt = torch.optim.Adam(topo.parameters(phase="train"), lr=3e-3)
    topo.train()
    history = []
    for _ in range(25):
        out = step(topo, opt, images, boxes, labels)
        history.append(out.loss.item())
    assert all(math.isfinite(v) for v in history)
    assert sum(history[-3:]) / 3 < 0.6 * sum(history[:3]) / 3, history
    assert set(out.logs) >= {"cls_loss", "box_loss"}
