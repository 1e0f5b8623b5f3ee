"""Stdlib variants against their reference implementations' facts.

Fixtures: tests/fixtures/reference (copied from shared/reference/models: full-size outputs) and
tests/fixtures/timm (made by tools/make_timm_fixtures.py with timm 1.0.31: outputs at 64x64).
For each: state_dict keys, shapes and dtypes equal in order; a state_dict with exactly those
keys loads strictly; static params and FLOPs equal the reference's; under the deterministic
fill the outputs agree to 1e-4 of their largest magnitude.
"""
from __future__ import annotations

import functools
import gc
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import archdsl

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from fill import reference_fill_, reference_input  # noqa: E402


def _load(kind: str) -> dict[str, dict]:
    out = {}
    for path in sorted((FIXTURES / kind).glob("*.json")):
        data = json.loads(path.read_text())
        out[data["id"]] = data
    return out


SHARED = _load("reference")
GENERATED = _load("timm")
ALL = {**GENERATED, **SHARED}


@functools.lru_cache(maxsize=1)
def _variants_by_reference() -> dict[str, str]:
    return {ref: v.name for e in reversed(archdsl.catalog()) for v in reversed(e.variants) for ref in v.references}


def _variant_for(ref_id: str) -> str:
    variant = _variants_by_reference().get(ref_id)
    assert variant is not None, f"no stdlib variant declares reference {ref_id!r}"
    return variant


def _declared_references() -> list[tuple[str, str]]:
    return [(v.name, ref) for e in archdsl.catalog() for v in e.variants for ref in v.references]


def test_every_declared_reference_has_a_fixture():
    missing = [f"{name} → {ref}" for name, ref in _declared_references() if ref not in ALL]
    assert not missing, f"variants whose reference has no fixture: {missing}"


# the largest references (190 M–630 M parameters: about a minute of the suite) run with -m slow;
# their smaller siblings of the same families run in every suite
LARGE = {ref for ref, facts in ALL.items() if facts.get("params", 0) > 150_000_000}


@pytest.fixture(scope="module", params=[pytest.param(r, marks=pytest.mark.slow) if r in LARGE else r
                                        for r in sorted(ALL)])
def built(request):
    """One reference's model, shared by its tests. A parametrized module-scoped fixture makes
    pytest run every test of one reference, then this teardown drops the model before the next
    is built: one model alive at a time (a cache of all of them grew to 11 GB)."""
    holder = SimpleNamespace(ref_id=request.param,
                             model=archdsl.load_spec(_variant_for(request.param)).eval())
    yield holder
    holder.model = None
    gc.collect()


def test_state_dict_matches_reference(built):
    fixture = ALL[built.ref_id]
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in built.model.state_dict().items()]
    assert ours == fixture["state_dict"]
    # a state_dict of exactly the reference's keys loads strictly (the values: the model's own
    # tensors, so a 600M-parameter model needs no second copy)
    own = built.model.state_dict()
    built.model.load_state_dict({k: own[k] for k, _, _ in fixture["state_dict"]}, strict=True)


@pytest.mark.parametrize("ref_id", sorted(ALL))
def test_static_costs_match_reference(ref_id):
    fixture = ALL[ref_id]
    shape = fixture.get("flops_input_shape") or [1, *fixture["input_shape"][1:]]
    report = archdsl.check_spec(_variant_for(ref_id), input_shape=shape)
    assert report.totals.params == fixture["params"]
    assert report.totals.flops == fixture["flops"]


def test_outputs_match_reference_under_fill(built):
    fixture = ALL[built.ref_id]
    if "outputs" in fixture:  # several named outputs (a detector's raw head outputs), each sampled
        _check_named_outputs(fixture)
        return
    model = built.model
    reference_fill_(model)
    x = reference_input(fixture["input_shape"])
    with torch.no_grad():
        y = model(x)
    expected = torch.tensor(fixture["output"], dtype=torch.float32).reshape(fixture["output_shape"])
    assert list(y.shape) == fixture["output_shape"]
    err = (y - expected).abs().max().item()
    assert err <= 1e-4 * fixture["output_abs_max"], f"max abs diff {err}"


def _check_named_outputs(fixture):
    """Fixtures with "outputs" (tools/make_detection_fixtures.py): name → shape, abs_max, sum and
    the values at every `stride`-th flat index. The model is built at the fixture's input size (a
    packed-level detector fixes its level sizes when built)."""
    model = archdsl.load_spec(_variant_for(fixture["id"]), input_shape=fixture["input_shape"]).eval()
    reference_fill_(model)
    with torch.no_grad():
        y = model(reference_input(fixture["input_shape"]))
    assert sorted(y) == sorted(fixture["outputs"])
    for name, ref in fixture["outputs"].items():
        assert list(y[name].shape) == ref["shape"], name
        flat = y[name].flatten()
        expected = torch.tensor(ref["values"], dtype=torch.float32)
        err = (flat[::ref["stride"]] - expected).abs().max().item()
        assert err <= 1e-4 * ref["abs_max"], f"{name}: max abs diff {err}"
        assert abs(flat.double().sum().item() - ref["sum"]) <= 1e-4 * ref["abs_max"] * flat.numel() ** 0.5, name
