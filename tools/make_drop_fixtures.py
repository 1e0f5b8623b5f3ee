"""Write train-mode outputs of timm models with stochastic depth and dropout switched on.

Run where timm is installed (it is not a dependency of archdsl):
    python tools/make_drop_fixtures.py tests/fixtures/drop resnet18:64 vit_tiny_patch16_224:224 ...
    python tools/make_drop_fixtures.py --kwargs '{"depth": 3}' tests/fixtures/drop/reduced ...
(--kwargs JSON: a reduced configuration, `timm.create_model(name, **kwargs)`, kept in `kwargs`.)
For each model (name:input_size), built with drop_path_rate = drop_rate = RATE (a model without
stochastic depth, NO_DROP_PATH, with drop_rate alone; `kwargs` records what was given): the
deterministic fill (tests/fixtures/fill.py), train mode, torch.manual_seed(SEED), then one forward
of a 2x3xSxS input. The same random draws in the same order give a spec the same output, so a
drop in the wrong place, of the wrong rate or with the wrong rescaling changes it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
from fill import reference_fill_, reference_input  # noqa: E402

RATE = 0.5
SEED = 0
# models whose timm definition has no stochastic depth: drop_rate only
NO_DROP_PATH = {"mobilenetv1_100", "hrnet_w18_small", "legacy_xception"}


def _create(name: str, extra: dict):
    import timm
    kwargs = {"drop_rate": RATE} if name in NO_DROP_PATH else {"drop_rate": RATE, "drop_path_rate": RATE}
    kwargs = {**kwargs, **extra}
    return timm.create_model(name, pretrained=False, **kwargs), kwargs


def facts(name: str, size: int, extra: dict | None = None) -> dict:
    import timm
    model, kwargs = _create(name, extra or {})
    reference_fill_(model).train()
    shape = [2, 3, size, size]
    torch.manual_seed(SEED)
    with torch.no_grad():
        out = model(reference_input(shape))
    return {
        "id": f"timm/{name}",
        "library_version": timm.__version__,
        "kwargs": kwargs,
        "seed": SEED,
        "input_shape": shape,
        "output_shape": list(out.shape),
        "output": [round(v, 7) for v in out.flatten().tolist()],
    }


def main(out_dir: str, specs: list[str], extra: dict | None = None) -> None:
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for spec in specs:
        name, size = spec.split(":")
        path = root / f"timm__{name}.json"
        path.write_text(json.dumps(facts(name, int(size), extra)) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    args = sys.argv[1:]
    extra = json.loads(args[1]) if args[0] == "--kwargs" else None
    args = args[2:] if extra is not None else args
    main(args[0], args[1:], extra)
