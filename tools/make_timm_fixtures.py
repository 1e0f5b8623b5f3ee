"""Write reference facts for stdlib variants that have no fixture in shared/reference.

Run where timm is installed (it is not a dependency of archdsl):
    python tools/make_timm_fixtures.py tests/fixtures/timm  resnet34 resnet101 ...
    python tools/make_timm_fixtures.py --size 224 tests/fixtures/timm vit_small_patch16_224 ...
(--size N: the small input is 1x3xNxN instead, for models with a fixed input size, such as
ViT's learned position embedding. --kwargs JSON: a reduced configuration of a huge model,
`timm.create_model(name, **kwargs)`; the kwargs are kept in the facts.)
For each timm model: state_dict keys/shapes/dtypes, params, FlopCounterMode FLOPs at batch 1
and 224x224, and the output at a small input (1x3x64x64) under the deterministic fill
(tests/fixtures/fill.py), as in shared/reference/README.md.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "fixtures"))
from fill import reference_fill_, reference_input  # noqa: E402

SMALL = [1, 3, 64, 64]


def _flop_counter():
    """archdsl's FlopCounterMode, which also counts the CPU attention kernel (stock FlopCounterMode
    counts it as 0). Loaded by path: this venv has torch and timm, not archdsl's dependencies."""
    path = Path(__file__).resolve().parent.parent / "archdsl" / "testing" / "flops.py"
    spec = importlib.util.spec_from_file_location("archdsl_testing_flops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.flop_counter()


def facts(name: str, small: list[int] = SMALL, kwargs: dict | None = None) -> dict:
    import timm
    model = timm.create_model(name, pretrained=False, **(kwargs or {}))
    return {**facts_of(model, f"timm/{name}", timm.__version__, small),
            **({"kwargs": kwargs} if kwargs else {})}


def facts_of(model: torch.nn.Module, ref_id: str, version: str, small: list[int] = SMALL) -> dict:
    """The reference facts of a model (shared with tools/make_torchvision_fixtures.py)."""
    # frozen: FlopCounterMode's module hooks fail on a view of a parameter made under no_grad
    # (an attention pool's expanded latent)
    model = model.eval().requires_grad_(False)
    sd = model.state_dict()
    # FLOPs at 224x224, or at the small input when that is fixed (--size)
    flops_shape = [1, 3, 224, 224] if small == SMALL else small
    with torch.no_grad(), _flop_counter() as counter:
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


def main(out_dir: str, names: list[str], size: int | None = None,
         kwargs: dict | None = None) -> None:
    small = [1, 3, size, size] if size else SMALL
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for name in names:
        path = root / f"timm__{name}.json"
        path.write_text(json.dumps(facts(name, small, kwargs)) + "\n")
        print("wrote", path)


if __name__ == "__main__":
    args = sys.argv[1:]
    size, kwargs = None, None
    while args and args[0] in ("--size", "--kwargs"):
        if args[0] == "--size":
            size = int(args[1])
        else:
            kwargs = json.loads(args[1])
        args = args[2:]
    main(args[0], args[1:], size, kwargs)
