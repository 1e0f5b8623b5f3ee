"""Declared initialisation: the stdlib nets start where their papers' code starts."""
from __future__ import annotations

import math

import pytest
import torch

import archdsl
from archdsl import ArchError


def _std_ok(t: torch.Tensor, want: float, rel: float = 0.1) -> bool:
    return abs(t.float().std().item() - want) <= rel * want


def test_resnet50_he_fan_out_convs_zero_last_bn_default_fc():
    m = archdsl.load_spec("resnet50", seed=0)
    sd = m.state_dict()
    for key in ["conv1.weight", "layer3.1.conv2.weight", "layer4.0.downsample.0.weight"]:
        w = sd[key]
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        assert _std_ok(w, math.sqrt(2.0 / fan_out)), key
    assert all(sd[f"layer{i}.{j}.bn3.weight"].abs().sum() == 0 for i, n in zip(range(1, 5), [3, 4, 6, 3])
               for j in range(n))
    assert torch.equal(sd["bn1.weight"], torch.ones(64))
    assert torch.equal(sd["layer1.0.downsample.1.weight"], torch.ones(256))  # not the last BN
    bound = 1 / math.sqrt(2048)  # torch's default Linear init, as timm leaves it
    assert sd["fc.weight"].abs().max() <= bound and sd["fc.weight"].abs().max() > 0.9 * bound


def test_zero_init_last_can_be_switched_off_and_reaches_basic_blocks():
    sd = archdsl.load_spec("resnet18", seed=0).state_dict()
    assert sd["layer2.1.bn2.weight"].abs().sum() == 0
    sd = archdsl.load_spec("resnet18", seed=0,
                           block=archdsl.SpecText("BasicBlock(zero_init_last=false)")).state_dict()
    assert torch.equal(sd["layer2.1.bn2.weight"], torch.ones(128))


def test_convnext_truncated_normal_weights_zero_biases_layer_scale():
    sd = archdsl.load_spec("convnext_tiny", seed=0).state_dict()
    for key in ["stem.0.weight", "stages.2.blocks.3.mlp.fc1.weight", "head.fc.weight"]:
        assert _std_ok(sd[key], 0.02), key
        assert sd[key].abs().max() <= 2.0  # truncated at ±2 (absolute), as timm
    assert sd["stages.1.blocks.0.conv_dw.bias"].abs().sum() == 0
    assert sd["head.fc.bias"].abs().sum() == 0
    assert torch.allclose(sd["stages.0.blocks.0.gamma"], torch.full((96,), 1e-6))
    assert torch.equal(sd["head.norm.weight"], torch.ones(768))


def test_params_take_initialisers_and_rules_apply_in_order():
    src = """network N() {
  in x: [B, 3, H = 8, W = 8]
  init "*.bias" = 0.5
  init "b.bias" = zeros()
  param g: [1000] = normal(std=3.0)
  y = x -> a: conv(4, 1) -> b: conv(4, 1)
  out (y -> mean(dims=[2, 3]) -> fc: linear(1000)) + g
}"""
    sd = archdsl.load_spec(source=src, seed=0).state_dict()
    assert torch.equal(sd["a.bias"], torch.full((4,), 0.5))
    assert torch.equal(sd["b.bias"], torch.zeros(4))  # the later rule wins
    assert _std_ok(sd["g"], 3.0)


def test_bad_init_rules_are_arch_errors():
    base = "network N() {{\n  in x: [B, 3, H = 8, W = 8]\n  {rule}\n  out x -> a: conv(4, 1) -> bn\n}}"
    with pytest.raises(ArchError, match="no fan-in"):
        archdsl.load_spec(source=base.format(rule='init "*.weight" = kaiming_normal()'))
    with pytest.raises(ArchError, match="names no op 'cnov'") as err:
        archdsl.load_graph(source=base.format(rule='init "cnov:weight" = zeros()'))
    assert err.value.hint == "did you mean 'conv'?"
    with pytest.raises(ArchError, match="needs an initialiser"):
        archdsl.load_graph(source=base.format(rule='init "*" = "zeros"'))


def test_grouped_kaiming_counts_a_grouped_convs_fan_out_per_group():
    src = """network N() {
  in x: [B, 64, H = 8, W = 8]
  init "conv:weight" = kaiming_normal(mode="fan_out", grouped=true)
  y = x -> dw: conv(64, 3, groups=64) -> g4: conv(128, 3, groups=4) -> pw: conv(256, 1)
  out y
}"""
    sd = archdsl.load_spec(source=src, seed=0).state_dict()
    assert _std_ok(sd["dw.weight"], math.sqrt(2 / 9))              # torch's fan-out: 64 · 9
    assert _std_ok(sd["g4.weight"], math.sqrt(2 / (128 // 4 * 9)))
    assert _std_ok(sd["pw.weight"], math.sqrt(2 / 256))            # groups 1: as torch
    with pytest.raises(ArchError, match="grouped=true changes only the fan-out"):
        archdsl.load_graph(source=src.replace('mode="fan_out", ', ""))


# ---- building: each tensor initialised once, on the device asked for -------------------------------

_LAYERS = """network N() {
  in x: [B, 3, H = 8, W = 8]
  %s
  y = x -> a: conv(4, 3) -> bn: bn -> relu -> mean(dims=[2, 3]) -> ln: ln -> fc: linear(5)
  out y
}"""


def test_layers_without_rules_start_exactly_as_torch_initialises_them():
    sd = archdsl.load_spec(source=_LAYERS % "", seed=0).state_dict()
    torch.manual_seed(0)
    conv, bn, ln, fc = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), \
        torch.nn.LayerNorm(4), torch.nn.Linear(4, 5)
    for prefix, ref in (("a", conv), ("bn", bn), ("ln", ln), ("fc", fc)):
        for k, v in ref.state_dict().items():
            assert torch.equal(sd[f"{prefix}.{k}"], v), f"{prefix}.{k}"


def test_a_tensor_with_a_rule_is_not_drawn_by_torchs_default_first():
    # the conv's weight and bias come from rules, so the seeded stream reaches fc untouched:
    # fc starts as an nn.Linear built first after the seed
    sd = archdsl.load_spec(source=_LAYERS % 'init "a.*" = zeros()', seed=0).state_dict()
    assert sd["a.weight"].abs().sum() == 0 and sd["a.bias"].abs().sum() == 0
    torch.manual_seed(0)
    fc = torch.nn.Linear(4, 5)
    assert torch.equal(sd["fc.weight"], fc.weight.detach()) and torch.equal(sd["fc.bias"], fc.bias.detach())


def test_meta_device_builds_the_structure_without_allocating():
    meta = archdsl.load_spec("resnet18", device="meta")
    assert {t.device.type for t in meta.state_dict().values()} == {"meta"}
    cpu = archdsl.load_spec("resnet18")
    assert {k: v.shape for k, v in meta.state_dict().items()} == {k: v.shape for k, v in cpu.state_dict().items()}
    assert meta(torch.empty(2, 3, 224, 224, device="meta")).shape == (2, 1000)
    with torch.device("meta"):  # torch's default device is the default
        assert all(p.is_meta for p in archdsl.load_spec("resnet18").parameters())


def test_unknown_or_absent_devices_are_arch_errors():
    with pytest.raises(ArchError, match="unknown device 'gpu0'"):
        archdsl.load_spec("resnet18", device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ArchError, match="not available"):
            archdsl.load_spec("resnet18", device="cuda")
