"""Write reference facts for torchvision's RetinaNet (stdlib/nets/retinanet.arch).

Run where torchvision is installed (it is not a dependency of archdsl):
    python tools/make_detection_fixtures.py tests/fixtures
Writes two files:
- timm/torchvision__retinanet_resnet50_fpn.json: the facts of tools/make_timm_fixtures.py for the
  network part of the detector — backbone (ResNet-50 + FPN) and head, without the
  GeneralizedRCNNTransform (normalise, resize, pad) and the post-processing (decode, NMS): the
  state_dict, params, FlopCounterMode FLOPs of backbone + head at 1x3x800x800 (torchvision's
  min_size), and under the deterministic fill the raw head outputs `cls_logits` [B, N, 91] and
  `bbox_regression` [B, N, 4] at a small input, in "outputs" (name → shape, abs_max, sum and the
  values at every `stride`-th flat index).
- retinanet_loss.json: at that small input, torchvision's anchors, the matched ground-truth
  index of every anchor (Matcher 0.5 / 0.4, low-quality matches kept) and
  RetinaNetHead.compute_loss (classification, bbox_regression with l1 and smooth_l1) for fixed
  targets, on the filled model's head outputs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection.image_list import ImageList

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
from fill import reference_fill_, reference_input  # noqa: E402

SMALL = [3, 3, 96, 96]
TARGETS = [  # image 0: three boxes, image 1: one, image 2: none
    {"boxes": [[10.0, 12.0, 40.0, 50.0], [30.0, 30.0, 90.0, 70.0], [0.0, 0.0, 20.0, 16.0]], "labels": [3, 17, 90]},
    {"boxes": [[40.0, 8.0, 70.0, 80.0]], "labels": [5]},
    {"boxes": [], "labels": []},
]


def _net(model, x):
    feats = list(model.backbone(x).values())
    return feats, model.head(feats)


def _sampled(t: torch.Tensor, stride: int) -> dict:
    flat = t.flatten()
    return {"shape": list(t.shape), "abs_max": flat.abs().max().item(), "sum": flat.double().sum().item(),
            "stride": stride, "values": [round(v, 7) for v in flat[::stride].tolist()]}


def main(out_dir: str) -> None:
    torch.set_num_threads(2)
    root = Path(out_dir)
    model = torchvision.models.detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None).eval()
    sd = model.state_dict()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _net(model, torch.zeros(1, 3, 800, 800))
    reference_fill_(model)
    x = reference_input(SMALL)
    with torch.no_grad():
        feats, out = _net(model, x)
    facts = {
        "id": "torchvision/retinanet_resnet50_fpn",
        "library_version": torchvision.__version__,
        "params": sum(p.numel() for p in model.parameters()),
        "flops": counter.get_total_flops(),
        "flops_input_shape": [1, 3, 800, 800],
        "flops_note": "backbone + head only (no transform, no anchor decoding / NMS)",
        "state_dict": [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()],
        "input_shape": SMALL,
        "outputs": {"cls_logits": _sampled(out["cls_logits"], 61),
                    "bbox_regression": _sampled(out["bbox_regression"], 5)},
    }
    path = root / "timm" / "torchvision__retinanet_resnet50_fpn.json"
    path.write_text(json.dumps(facts) + "\n")
    print("wrote", path)

    images = ImageList(x, [tuple(SMALL[2:])] * SMALL[0])
    anchors = model.anchor_generator(images, feats)
    targets = [{"boxes": torch.tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(t["labels"], dtype=torch.int64)} for t in TARGETS]
    matched = []
    for a, t in zip(anchors, targets):
        if t["boxes"].numel() == 0:
            matched.append(torch.full((a.shape[0],), -1, dtype=torch.int64))
        else:
            matched.append(model.proposal_matcher(torchvision.ops.box_iou(t["boxes"], a)))
    with torch.no_grad():
        l1 = model.head.compute_loss(targets, out, anchors, matched)
        model.head.regression_head._loss_type = "smooth_l1"
        sl1 = model.head.compute_loss(targets, out, anchors, matched)
    loss = {
        "input_shape": SMALL,
        "targets": TARGETS,
        "anchors": [round(v, 4) for v in anchors[0].flatten().tolist()],
        "matched": [m.tolist() for m in matched],
        "classification": l1["classification"].item(),
        "bbox_regression_l1": l1["bbox_regression"].item(),
        "bbox_regression_smooth_l1": sl1["bbox_regression"].item(),
        "smooth_l1_beta": 1.0,
        "note": "torchvision RetinaNetHead.compute_loss on the filled model's head outputs",
    }
    path = root / "retinanet_loss.json"
    path.write_text(json.dumps(loss) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1])
