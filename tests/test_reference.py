"""Stdlib variants against their reference implementations' facts.

Fixtures: tests/fixtures/reference (copied from shared/reference/models: full-size outputs) and
tests/fixtures/timm (made by tools/make_timm_fixtures.py with timm 1.0.31: outputs at 64x64).
For each: state_dict keys, shapes and dtypes equal in order; a state_dict with exactly those
keys loads strictly; static params and FLOPs equal the reference's; under the deterministic
fill the outputs agree to 1e-4 of their largest magnitude.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

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


def _variant_for(ref_id: str) -> str:
    for entry in archdsl.catalog():
        for v in entry.variants:
            if ref_id in v.references:
                return v.name
    raise AssertionError(f"no stdlib variant declares reference {ref_id!r}")


def _declared_references() -> list[tuple[str, str]]:
    return [(v.name, ref) for e in archdsl.catalog() for v in e.variants for ref in v.references]


def test_every_declared_reference_has_a_fixture():
    missing = [f"{name} → {ref}" for name, ref in _declared_references() if ref not in ALL]
    assert not missing, f"variants whose reference has no fixture: {missing}"


@pytest.fixture(scope="module")
def built():
    cache: dict[str, torch.nn.Module] = {}

    def get(ref_id: str) -> torch.nn.Module:
        if ref_id not in cache:
            cache[ref_id] = archdsl.load_spec(_variant_for(ref_id)).eval()
        return cache[ref_id]
    return get


@pytest.mark.parametrize("ref_id", sorted(ALL))
def test_state_dict_matches_reference(ref_id, built):
    fixture = ALL[ref_id]
    model = built(ref_id)
    ours = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in model.state_dict().items()]
    assert ours == fixture["state_dict"]
    zeros = {k: torch.zeros(shape, dtype=getattr(torch, dtype)) for k, shape, dtype in fixture["state_dict"]}
    model.load_state_dict(zeros, strict=True)


@pytest.mark.parametrize("ref_id", sorted(ALL))
def test_static_costs_match_reference(ref_id):
    fixture = ALL[ref_id]
    shape = fixture.get("flops_input_shape") or [1, *fixture["input_shape"][1:]]
    report = archdsl.check_spec(_variant_for(ref_id), input_shape=shape)
    assert report.totals.params == fixture["params"]
    assert report.totals.flops == fixture["flops"]


@pytest.mark.parametrize("ref_id", sorted(ALL))
def test_outputs_match_reference_under_fill(ref_id, built):
    fixture = ALL[ref_id]
    if "outputs" in fixture:  # several named outputs (a detector's raw head outputs), each sampled
        _check_named_outputs(fixture)
        return
    model = built(ref_id)
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
