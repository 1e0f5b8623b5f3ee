"""The ViT's other block kinds (stdlib/blocks/vit_blocks.arch, stdlib/blocks/diff_attention.arch).

Their keys, shapes, parameter counts and outputs are compared with timm's in test_families.py
(outputs of vit_pwee/dwee/dpwee, and of reduced 18x2/rpn/xp configurations; train mode with drops
for every block kind at depth 2). Here: the costs computed from shapes alone equal what
FlopCounterMode counts on the built module, for every block kind at a reduced width, and timm's
count at full size for the sampled ones; the mistakes a user can make with them are ArchErrors.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import archdsl
from archdsl import ArchError
from archdsl.testing.flops import count_flops

VIT = Path(__file__).resolve().parent.parent / "specs" / "timm" / "vit.arch"
# one name per block kind: ParallelThingsBlock, ResPostBlock, ParallelScalingBlock with RMS norms
# and qk norm, with layer scale, with differential attention; ViTBlock with differential attention
KINDS = ["vit_small_patch16_18x2_224", "vit_base_patch16_rpn_224", "vit_base_patch16_xp_224",
         "vit_pwee_patch16_reg1_gap_256", "vit_dpwee_patch16_reg1_gap_256",
         "vit_dwee_patch16_reg1_gap_256"]
SMALL = {"depth": 2, "dim": 64, "num_heads": 4}


@pytest.mark.parametrize("name", KINDS)
def test_static_costs_equal_flop_counter_on_the_built_module(name):
    report = archdsl.check_spec(VIT, name, **SMALL)
    net = archdsl.load_spec(VIT, name, seed=0, **SMALL).eval()
    size = 256 if name.endswith("_256") else 224
    x = torch.randn(1, 3, size, size)
    assert report.totals.params == sum(p.numel() for p in net.parameters())
    assert report.totals.flops == count_flops(net, x)
    del net


@pytest.mark.parametrize("name", [n for n in KINDS if n.endswith("_256")])
def test_static_costs_equal_timms_at_full_size(name):
    facts = Path(__file__).parent / "fixtures" / "families" / "outputs" / f"timm__{name}.json"
    fixture = json.loads(facts.read_text())  # tools/make_timm_fixtures.py --size 256
    report = archdsl.check_spec(VIT, name, input_shape=fixture["flops_input_shape"])
    assert (report.totals.params, report.totals.flops) == (fixture["params"], fixture["flops"])


def _error(source: str) -> ArchError:
    with pytest.raises(ArchError) as info:
        archdsl.check_spec(source=source)
    return info.value


HEAD = "from nets.vit import ViT, ViTBlock\nfrom blocks.vit_blocks import ParallelScalingBlock\n"
PSB = "variant v = ViT(16, {dim}, 2, 4, block=ParallelScalingBlock(attn_layer=\"{kind}\"))\n"


def test_differential_attention_needs_two_halves_per_head():
    err = _error(HEAD + 'variant v = ViT(16, 100, 2, 4, block=ViTBlock(attn_layer="diff"))\n')
    assert "2 · num_heads" in err.message and "C = 100, num_heads = 4" in (err.hint or "")
    err = _error(HEAD + PSB.format(dim=100, kind="diff"))
    assert "2 · num_heads with diff" in err.message


def test_an_unknown_attention_kind_suggests_the_known_one():
    err = _error(HEAD + PSB.format(dim=96, kind="dif"))
    assert err.span.line == 3 and "did you mean 'diff'" in (err.hint or "")
