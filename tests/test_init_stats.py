"""Initialisation as the reference implementation does it: for one variant of each family that
declares a reference, the spec's `init` rules must give every state_dict tensor the statistics the
reference library gives it untrained (tests/fixtures/init, written by tools/make_init_fixtures.py).

Per tensor: a constant stays that constant (BN 1/0, zero-init last BN, zero biases, layer-scale
values); a random tensor has the reference's scale and centre, within sampling error:
|log(std / std_ref)| ≤ 0.1 + 4 / sqrt(2n) and |mean − mean_ref| ≤ (0.1 + 5 / sqrt(n)) · std_ref.
That tells kaiming fan-in from fan-out (a factor √(out/in)), grouped from ungrouped fan-out,
normal(0.01) from torch's default, and a missing zero-init, while n = 64 samples keep it stable.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import archdsl

FIXTURES = Path(__file__).parent / "fixtures" / "init"
pytestmark = pytest.mark.usefixtures("one_thread")


def _variant_of(reference: str) -> str:
    for entry in archdsl.catalog():
        for v in entry.variants:
            if reference in v.references:
                return v.name
    raise LookupError(reference)


def mismatches(ours: dict[str, torch.Tensor], ref: dict[str, list]) -> list[str]:
    bad = []
    for key, (n, mean_ref, std_ref) in ref.items():
        t = ours[key].detach().double().flatten()
        mean, std = t.mean().item(), (t.std().item() if t.numel() > 1 else 0.0)
        if std_ref == 0.0:
            if std != 0.0 or abs(mean - mean_ref) > 1e-6:
                bad.append(f"{key}: constant {mean_ref:g} in the reference, ours mean {mean:.4g} std {std:.3g}")
            continue
        if std == 0.0:
            bad.append(f"{key}: random in the reference (std {std_ref:.3g}), ours the constant {mean:g}")
            continue
        if n < 64:   # too few samples to pin the scale: only an order of magnitude
            if not 1 / 3 < std / std_ref < 3:
                bad.append(f"{key}: std {std:.3g}, reference {std_ref:.3g}")
            continue
        if abs(math.log(std / std_ref)) > 0.1 + 4 / math.sqrt(2 * n):
            bad.append(f"{key}: std {std:.3g}, reference {std_ref:.3g} (x{std / std_ref:.2f})")
        elif abs(mean - mean_ref) > (0.1 + 5 / math.sqrt(n)) * std_ref:
            bad.append(f"{key}: mean {mean:.3g}, reference {mean_ref:.3g} (std {std_ref:.3g})")
    return bad


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
def test_untrained_model_has_the_reference_init_statistics(path: Path):
    fixture = json.loads(path.read_text())
    model = archdsl.load_spec(_variant_of(fixture["reference"]), seed=0)
    state = model.state_dict()
    assert set(fixture["stats"]) <= set(state)
    bad = mismatches(state, fixture["stats"])
    assert not bad, f"{len(bad)} of {len(fixture['stats'])} tensors differ:\n" + "\n".join(bad[:12])


@torch.no_grad()
def test_the_check_tells_fan_in_from_fan_out_and_a_missing_zero_init():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 64, 3)
    ref_fan_out = {"w": [conv.weight.numel(), 0.0, math.sqrt(2 / (64 * 9))], "b": [64, 0.0, 0.0]}
    torch.nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    torch.nn.init.zeros_(conv.bias)
    assert mismatches({"w": conv.weight, "b": conv.bias}, ref_fan_out) == []
    torch.nn.init.kaiming_normal_(conv.weight, mode="fan_in")          # std x2: caught
    assert [m.split(":")[0] for m in mismatches({"w": conv.weight, "b": conv.bias}, ref_fan_out)] == ["w"]
    torch.nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    conv.bias.normal_()                                                  # not zero: caught
    assert [m.split(":")[0] for m in mismatches({"w": conv.weight, "b": conv.bias}, ref_fan_out)] == ["b"]
