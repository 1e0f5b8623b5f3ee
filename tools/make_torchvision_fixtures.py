"""Write reference facts for stdlib variants whose reference is a torchvision model.

The torchvision twin of tools/make_timm_fixtures.py (same fields, same conventions). Run where
torchvision is installed (it is not a dependency of archdsl):
    python tools/make_torchvision_fixtures.py tests/fixtures/timm  shufflenet_v2_x0_5 ...
For each model: state_dict keys/shapes/dtypes, params, FlopCounterMode FLOPs at batch 1 and
224x224, and the output at a small input (1x3x64x64) under the deterministic fill
(tests/fixtures/fill.py), as in shared/reference/README.md. Files are named
`torchvision__<name>.json` with id `torchvision/<name>`; tests/test_reference.py reads every
JSON file in the folder whatever its library.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_timm_fixtures import facts_of  # noqa: E402


def facts(name: str) -> dict:
    model = torchvision.models.get_model(name, weights=None)
    return facts_of(model, f"torchvision/{name}", torchvision.__version__)


def main(out_dir: str, names: list[str]) -> None:
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for name in names:
        path = root / f"torchvision__{name}.json"
        path.write_text(json.dumps(facts(name)) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
