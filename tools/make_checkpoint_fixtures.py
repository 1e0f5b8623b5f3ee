"""Write torchvision state_dict facts for testing the specs' `checkpoint "torchvision"` mappings.

Run where torchvision is installed (it is not a dependency of archdsl):
    python tools/make_checkpoint_fixtures.py tests/fixtures/checkpoints convnext_tiny:64 vit_b_16:224 ...
    python tools/make_checkpoint_fixtures.py tests/fixtures/checkpoints timm/legacy_seresnet18:64 ...
For each model (name:input_size; a `timm/` name is timm's model, which needs timm): its state_dict keys/shapes/dtypes in order, the values of its
integer buffers (index tables a spec recomputes), and its output under the deterministic fill
(tests/fixtures/fill.py) at 1x3xSxS. A test fills a state_dict with torchvision's names, loads it
through `archdsl.load_weights` and compares the outputs number by number.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from fill import reference_fill_, reference_input  # noqa: E402


def _model(name: str) -> tuple[torch.nn.Module, str, str]:
    """The model, its id and its library's version."""
    if name.startswith("timm/"):
        import timm
        return timm.create_model(name[5:], pretrained=False), name, timm.__version__
    return torchvision.models.get_model(name, weights=None), f"torchvision/{name}", torchvision.__version__


def facts(name: str, size: int) -> dict:
    model, ref_id, version = _model(name)
    model = model.eval()
    sd = model.state_dict()
    reference_fill_(model)
    with torch.no_grad():
        out = model(reference_input([1, 3, size, size]))
    return {
        "id": ref_id,
        "library_version": version,
        "state_dict": [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()],
        "int_buffers": {k: v.flatten().tolist() for k, v in sd.items()
                        if not v.is_floating_point() and v.numel() > 1},
        "input_shape": [1, 3, size, size],
        "output": [round(v, 7) for v in out.flatten().tolist()],
    }


def main(out_dir: str, specs: list[str]) -> None:
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for spec in specs:
        name, size = spec.split(":")
        path = root / (f"timm__{name[5:]}.json" if name.startswith("timm/") else f"torchvision__{name}.json")
        path.write_text(json.dumps(facts(name, int(size))) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
