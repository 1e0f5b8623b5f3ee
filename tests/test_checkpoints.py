"""Checkpoint mappings: a state_dict in torchvision's naming loads strictly into the stdlib model
through the spec's `checkpoint` block, and the model then computes what torchvision computes.

Fixtures (tools/make_checkpoint_fixtures.py, torchvision 0.28): torchvision's keys/shapes/dtypes in
order and its output under the deterministic fill. Here the same fill is generated under
torchvision's key names, loaded with `archdsl.load_weights`, and the outputs compared number by
number — a wrong rename, a swapped pair of layers or a bad reshape changes them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import archdsl
from archdsl import ArchError

from fixtures.fill import _values, reference_input

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"

# torchvision model, stdlib variant (its BatchNorm constants and group-width rounding are the
# variant's arguments), marked slow where the model is large
CASES = [
    ("convnext_tiny", "convnext_tiny"),
    ("swin_t", "swin_tiny_patch4_window7_224"),
    ("vit_b_16", "vit_base_patch16_224"),
    ("mobilenet_v2", "mobilenetv2_100"),
    ("mobilenet_v3_large", "mobilenetv3_large_100_tv"),
    ("mobilenet_v3_small", "mobilenetv3_small_100_tv"),
    ("efficientnet_b0", "efficientnet_b0"),
    pytest.param("efficientnet_b5", "efficientnet_b5_tv", marks=pytest.mark.slow),
    pytest.param("efficientnet_b6", "efficientnet_b6_tv", marks=pytest.mark.slow),
    pytest.param("efficientnet_b7", "efficientnet_b7_tv", marks=pytest.mark.slow),
    ("regnet_y_1_6gf", "regnety_016"),
    ("regnet_x_400mf", "regnetx_004_tv"),
    ("regnet_y_800mf", "regnety_008_tv"),
    pytest.param("regnet_y_8gf", "regnety_080_tv", marks=pytest.mark.slow),
    ("resnet50", "resnet50"),  # the same names: the spec's empty checkpoint block
]


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"torchvision__{name}.json").read_text())


def _torchvision_state(fx: dict) -> dict[str, torch.Tensor]:
    """The deterministic fill under the fixture's (torchvision's) names (integer buffers as torchvision stores them)."""
    out = {}
    for key, shape, dtype in fx["state_dict"]:
        dt = getattr(torch, dtype)
        if dt.is_floating_point:
            out[key] = _values(key, torch.Size(shape)).to(dt)
        elif key in fx["int_buffers"]:
            out[key] = torch.tensor(fx["int_buffers"][key], dtype=dt).reshape(shape)
        else:
            out[key] = torch.zeros(shape, dtype=dt)
    return out


@pytest.mark.parametrize("tv,variant", CASES)
def test_torchvision_weights_load_strictly_and_give_torchvision_outputs(tv, variant):
    _check_outputs(_fixture(tv), variant)


# the SENet release's naming and layout (timm's legacy_se* models)
@pytest.mark.parametrize("name", ["legacy_seresnet18", pytest.param("legacy_seresnet50", marks=pytest.mark.slow),
                                  "legacy_seresnext26_32x4d"])
def test_the_senet_release_loads_into_the_se_specs_with_its_outputs(name):
    _check_outputs(json.loads((FIXTURES / f"timm__{name}.json").read_text()), name)


def _check_outputs(fx: dict, variant: str) -> None:
    """The fixture's fill under its own names loads strictly into the variant and gives its output."""
    model = archdsl.load_spec(variant, input_shape=fx["input_shape"]).eval()
    archdsl.load_weights(model, _torchvision_state(fx), source=fx["id"])
    with torch.no_grad():
        out = model(reference_input(fx["input_shape"])).flatten()
    ref = torch.tensor(fx["output"])
    assert out.shape == ref.shape
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def test_torchvision_batchnorm_constants_are_arguments():
    model = archdsl.load_spec("efficientnet_b5_tv", input_shape=[1, 3, 32, 32])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 and m.momentum == 0.01 for m in norms)


def test_a_same_named_checkpoint_loads_without_a_mapping():
    model = archdsl.load_spec("resnet18", input_shape=[1, 3, 32, 32])
    state = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    archdsl.load_weights(model, state, source="torchvision/resnet18")
    assert torch.equal(model.get_submodule("layer4.1.conv2").weight, state["layer4.1.conv2.weight"])
    state["fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(ArchError, match=r"shape of fc.weight: \[10, 512\], the model has \[1000, 512\]"):
        archdsl.load_weights(model, state, source="torchvision/resnet18")


@pytest.fixture(scope="module")
def convnext():
    fx = _fixture("convnext_tiny")
    return archdsl.load_spec("convnext_tiny", input_shape=fx["input_shape"]), _torchvision_state(fx)


def test_every_torchvision_key_is_used_once(convnext):
    model, state = convnext
    before = {k: v.clone() for k, v in model.state_dict().items()}
    archdsl.load_weights(model, state, source="torchvision/convnext_tiny")
    after = model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in after if after[k].is_floating_point())
    # the layer scale arrives reshaped from [C, 1, 1] to [C]
    assert torch.equal(after["stages.2.blocks.4.gamma"], state["features.5.4.layer_scale"].flatten())


def test_a_missing_extra_or_misshapen_key_is_an_error_naming_it(convnext):
    model, state = convnext
    state = dict(state)
    del state["features.3.1.block.3.bias"]
    state["features.8.0.weight"] = torch.zeros(3)
    state["classifier.2.weight"] = torch.zeros(10, 768)
    with pytest.raises(ArchError) as e:
        archdsl.load_weights(model, state, source="torchvision/convnext_tiny")
    msg = str(e.value)
    assert "missing stages.1.blocks.1.mlp.fc1.bias" in msg
    assert "unexpected stages.4.downsample.0.weight (from 'features.8.0.weight')" in msg
    assert "shape of head.fc.weight (from 'classifier.2.weight'): [10, 768]" in msg
    assert "convnext.arch" in msg  # points at the checkpoint block


def test_the_reference_naming_loads_as_is_and_unknown_sources_are_refused():
    model = archdsl.load_spec("mobilenetv2_100", input_shape=[1, 3, 32, 32])
    archdsl.load_weights(model, model.state_dict(), source="timm/mobilenetv2_100")
    archdsl.load_weights(model, model.state_dict())
    archdsl.load_weights(model, model.state_dict(), source="keras/mobilenet_v2")  # same names
    renamed = {"model." + k: v for k, v in model.state_dict().items()}
    with pytest.raises(ArchError, match="no `checkpoint \"keras\"` mapping"):
        archdsl.load_weights(model, renamed, source="keras/mobilenet_v2")
    with pytest.raises(ArchError, match="built by archdsl.load_spec"):
        archdsl.load_weights(torch.nn.Linear(2, 2), {}, source="torchvision/mobilenet_v2")


SPEC = """
network N() {
  in x: [B, 4]
  out x -> fc: linear(2)
}
"""


def test_rules_rename_reshape_drop_and_condition_in_order(tmp_path):
    text = SPEC + """
let names = ["fc", "other"]
checkpoint "lib" {
  "skip.{i}" -> none
  "m.{i}.{p}" -> "{names[i]}.{p}" if i == 0
  "m.{i}.{p}" -> "never.{p}"
  "w_{p}" -> "fc.{p}" as [2]
}
"""
    path = tmp_path / "n.arch"
    path.write_text(text)
    model = archdsl.load_spec(path)
    w = torch.arange(8.0).reshape(2, 4)
    archdsl.load_weights(model, {"m.0.weight": w, "w_bias": torch.tensor([[5.0, 6.0]]),
                                 "skip.3": torch.zeros(1)}, source="lib/n")
    assert torch.equal(model.fc.weight, w) and torch.equal(model.fc.bias, torch.tensor([5.0, 6.0]))
    with pytest.raises(ArchError, match="unexpected never.weight"):
        archdsl.load_weights(model, {"m.1.weight": w, "w_bias": torch.zeros(1, 2)}, source="lib/n")


@pytest.mark.parametrize("rules,message", [
    ('"a.{i}.{i}" -> "b"', "appears twice"),
    ('"a.{1x}" -> "b"', "must be a plain name"),
    ('"a.{i" -> "b"', "unbalanced"),
    ('"a.{r...}.{r}" -> "b"', "appears twice"),
])
def test_malformed_rules_are_errors_at_the_rule(tmp_path, rules, message):
    path = tmp_path / "n.arch"
    path.write_text(SPEC + 'checkpoint "lib" {\n  ' + rules + "\n}\n")
    with pytest.raises(ArchError, match=message) as e:
        archdsl.load_spec(path)
    assert e.value.span is not None and e.value.span.line == 7


def test_a_rule_whose_template_gives_a_float_is_an_error(tmp_path):
    path = tmp_path / "n.arch"
    path.write_text(SPEC + 'checkpoint "lib" {\n  "a.{i}" -> "fc.{i / 2}"\n}\n')
    model = archdsl.load_spec(path)
    with pytest.raises(ArchError, match="a key rule needs int or str"):
        archdsl.load_weights(model, {"a.1": torch.zeros(1)}, source="lib/x")


def test_a_rest_placeholder_spans_components_and_as_empty_makes_a_scalar(tmp_path):
    path = tmp_path / "n.arch"
    path.write_text("network N() {\n  in x: [B, 4]\n  param s: [] = 0\n  out x * s -> fc: linear(2)\n}\n"
                    'checkpoint "lib" {\n  "m.scale" -> "s" as []\n  "m.{rest...}" -> "{rest}"\n}\n')
    model = archdsl.load_spec(path)
    archdsl.load_weights(model, {"m.fc.weight": torch.ones(2, 4), "m.fc.bias": torch.zeros(2),
                                 "m.scale": torch.tensor([3.0])}, source="lib")
    assert model.s.shape == () and model.s.item() == 3.0 and torch.equal(model.fc.weight, torch.ones(2, 4))
