"""Write the initialisation statistics of reference models, for tests/test_init_stats.py.

Run where timm and torchvision are installed (they are not dependencies of archdsl):
    python tools/make_init_fixtures.py tests/fixtures/init timm/resnet18 torchvision/shufflenet_v2_x0_5 ...
For each reference id: the model as its library builds it untrained (timm `pretrained=False`,
torchvision `weights=None`), and for every floating-point entry of its state_dict the element
count, mean and standard deviation — what "initialised as the reference implementation does"
can be checked against without the library.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


def build(ref_id: str) -> torch.nn.Module:
    lib, name = ref_id.split("/", 1)
    if lib == "timm":
        import timm
        return timm.create_model(name, pretrained=False)
    import torchvision
    if name.startswith("retinanet"):
        return getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None)
    return getattr(torchvision.models, name)(weights=None)


def init_stats(model: torch.nn.Module) -> dict[str, list]:
    out = {}
    for key, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        v = t.detach().double().flatten()
        std = v.std().item() if v.numel() > 1 else 0.0
        out[key] = [v.numel(), float(f"{v.mean().item():.6g}"), float(f"{std:.6g}")]
    return out


def main(folder: str, ids: list[str]) -> None:
    Path(folder).mkdir(parents=True, exist_ok=True)
    for ref_id in ids:
        torch.manual_seed(0)
        stats = init_stats(build(ref_id))
        path = Path(folder) / (ref_id.replace("/", "__") + ".json")
        path.write_text(json.dumps({"reference": ref_id, "stats": stats}, indent=0) + "\n")
        print(f"{path}: {len(stats)} tensors")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
