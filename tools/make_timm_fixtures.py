"""Write reference facts for stdlib variants that have no fixture in shared/reference.

Run where timm is installed (it is not a dependency of archdsl):
    python tools/make_timm_fixtures.py tests/fixtures/timm  resnet34 resnet101 ...
    python tools/make_timm_fixtures.py --size 224 tests/fixtures/timm vit_small_patch16_224 ...
(--size N: the small input is 1x3xNxN instead, for models with a fixed input size, such as
ViT's learned position embedding.)
For each timm model: state_dict keys/shapes/dtypes, params, FlopCounterMode FLOPs at batch 1
and 224x224, and the output at a small input (1x3x64x64) under the deterministic fill
(tests/fixtures/fill.py), as in shared/reference/README.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
from fill import reference_fill_, reference_input  # noqa: E402

SMALL = [1, 3, 64, 64]


def facts(name: str, small: list[int] = SMALL) -> dict:
    import timm
    return facts_of(timm.create_model(name, pretrained=False), f"timm/{name}", timm.__version__,
                    small)


def facts_of(model: torch.nn.Module, ref_id: str, version: str, small: list[int] = SMALL) -> dict:
    """The reference facts of a model (shared with tools/make_torchvision_fixtures.py)."""
    model = model.eval()
    sd = model.state_dict()
    # FLOPs at 224x224, or at the small input when that is fixed (--size)
    flops_shape = [1, 3, 224, 224] if small == SMALL else small
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(flops_shape))
    reference_fill_(model)
    with torch.no_grad():
        out = model(reference_input(small))
    return {
        "id": ref_id,
        "library_version": version,
        "params": sum(p.numel() for p in model.parameters()),
        "flops": counter.get_total_flops(),
        "flops_input_shape": flops_shape,
        "state_dict": [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()],
        "input_shape": small,
        "output_shape": list(out.shape),
        "output_abs_max": out.abs().max().item(),
        "output": [round(v, 7) for v in out.flatten().tolist()],
    }


def main(out_dir: str, names: list[str], size: int | None = None) -> None:
    small = [1, 3, size, size] if size else SMALL
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for name in names:
        path = root / f"timm__{name}.json"
        path.write_text(json.dumps(facts(name, small)) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    args = sys.argv[1:]
    size = None
    if args and args[0] == "--size":
        size, args = int(args[1]), args[2:]
    main(args[0], args[1:], size)
