"""Whole timm families by arguments (issue 14 §2).

For each family of tools/make_family_fixtures.py, the fixture tests/fixtures/families/<family>.json.gz
holds what timm 1.0.31 registers: per model its parameter count and the key → shape of every
floating tensor of its state_dict (made by that tool on the meta device). Every name a variant
reproduces (specs/timm/<family>.arch, else the stdlib) must have exactly those keys and shapes,
from shapes alone (no module is built), and that parameter count; every other name must be
listed as missing with a reason; and the README's table must be the one the tool prints.
(The outputs of a sample of these models are compared with timm's in test_reference.py.)
"""
from __future__ import annotations

import fnmatch
import json
import math
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import archdsl
from archdsl.ops import REGISTRY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import make_family_fixtures as families  # noqa: E402


@lru_cache(maxsize=None)
def _fixture(name: str) -> dict:
    return families.load_fixture(name)


@lru_cache(maxsize=None)
def _mapped(name: str) -> dict[str, tuple[str | None, str]]:
    return families.mapped(families.family(name), _fixture(name)["models"])


def _cases() -> list[tuple[str, str]]:
    return [(fam.name, model) for fam in families.FAMILIES for model in _mapped(fam.name)]


def _state(graph) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """The key → shape of every parameter, and of every floating buffer, from the IR's static
    rules."""
    params, buffers = {}, {}
    for n in graph.nodes():
        if n.kind == "param":
            params[n.id] = list(n.shape)
        elif n.kind == "buffer":
            buffers[n.id] = list(n.shape)
        elif n.kind == "op":
            op, ins = REGISTRY[n.op], graph.input_shapes(n)
            params.update({f"{n.id}.{k}": list(s) for k, s in op.params(n.attrs, ins).items()})
            buffers.update({f"{n.id}.{k}": list(s) for k, s in op.buffers(n.attrs, ins).items()})
    return params, buffers


@pytest.mark.parametrize("family,model", _cases(), ids=[m for _, m in _cases()])
def test_variant_has_the_timm_models_keys_shapes_and_params(family, model):
    spec, variant = _mapped(family)[model]
    graph = archdsl.load_graph(spec or variant, variant if spec else None)
    want = _fixture(family)["models"][model]
    params, buffers = _state(graph)
    ours, theirs = {**params, **buffers}, dict(want["state"])
    assert sorted(set(ours) - set(theirs)) == [] and sorted(set(theirs) - set(ours)) == []
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}
    assert sum(math.prod(s) for s in params.values()) == want["params"]


def test_every_name_is_reproduced_or_missing_with_a_reason():
    for fam in families.FAMILIES:
        row = families.summary(fam)
        assert row["reproduced"] + len(row["missing"]) == row["names"]
        unexplained = sorted(n for n, why in row["missing"].items() if why == "no variant yet")
        assert unexplained == [], f"{fam.name}: timm names with neither a variant nor a reason"
        # a reason that no longer applies (its names are all reproduced) is stale
        for pattern in fam.missing:
            assert any(fnmatch.fnmatchcase(n, pattern) for n in row["missing"]), \
                f"{fam.name}: nothing is missing for {pattern!r} any more"


def test_the_table_files_name_only_timm_models():
    for fam in families.FAMILIES:
        path = families.table_file(fam)
        if path.exists():
            from archdsl.syntax import ast, parse
            names = {i.name for i in parse(path.read_text()).items if isinstance(i, ast.Variant)}
            assert names <= set(_fixture(fam.name)["models"]), \
                f"{path.name} declares names timm does not register for {fam.name}"


def test_the_readme_table_is_current():
    text = families.README.read_text(encoding="utf-8")
    start, end = families.readme_section(text)
    assert text[start:end].strip() == families.readme_table().strip(), \
        "README's family table is stale: python tools/make_family_fixtures.py --write-readme"


# ---- outputs, for a sample: one name per new argument ---------------------------------------------
# tests/fixtures/families/outputs: tools/make_timm_fixtures.py (timm 1.0.31) with the state_dict
# list dropped (the family fixture has it). Under the deterministic fill the outputs agree to 1e-4
# of their largest magnitude, as tests/test_reference.py's.

OUTPUTS = Path(__file__).parent / "fixtures" / "families" / "outputs"
SLOW = {"vit_base_patch32_clip_quickgelu_224", "vit_base_patch16_siglip_gap_224", "hrnet_w18_ssld",
        "convnext_large_mlp", "swin_s3_tiny_224", "efficientnet_h_b5",
        "cs3edgenet_x", "darknetaa53", "dm_nfnet_f0", "regnetv_064", "repvgg_d2se", "vit_base_patch16_siglip_224"}
SAMPLE = sorted(p.name[len("timm__"):-len(".json")] for p in OUTPUTS.glob("timm__*.json"))


def _family_of(model: str) -> str:
    return next(f.name for f in families.FAMILIES if model in _mapped(f.name))


def _where(model: str) -> tuple[str, str | None]:
    """load_spec's first two arguments for a timm name: (spec file, variant) or (stdlib variant, None)."""
    spec, variant = _mapped(_family_of(model))[model]
    return (spec, variant) if spec else (variant, None)


def _load(model: str, **kwargs):
    return archdsl.load_spec(*_where(model), **kwargs)


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m
                                   for m in SAMPLE])
def test_sampled_outputs_equal_timms(model):
    import torch
    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from fill import reference_fill_, reference_input
    fixture = json.loads((OUTPUTS / f"timm__{model}.json").read_text())
    net = _load(model).eval()
    reference_fill_(net)
    with torch.no_grad():
        y = net(reference_input(fixture["input_shape"]))
    expected = torch.tensor(fixture["output"]).reshape(fixture["output_shape"])
    assert list(y.shape) == fixture["output_shape"]
    assert (y - expected).abs().max().item() <= 1e-4 * fixture["output_abs_max"]
    del net


# ---- train mode with drops, where a block drops differently: as tests/test_drop.py (fixtures by
# tools/make_drop_fixtures.py, drop_path_rate = drop_rate = 0.5) for names outside the stdlib.
# RegNetZ: no drop path in a block without a shortcut; RegNetV: pre-activation blocks, "avg"
# shortcuts; the ViT block kinds at depth 2 (--kwargs '{"depth": 2}'): ParallelThingsBlock
# (18x2), ResPostBlock (rpn), ParallelScalingBlock (xp, pwee, dpwee), differential attention (dwee).
DROPS = Path(__file__).parent / "fixtures" / "families" / "drop"


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m
                                   for m in sorted(p.name[len("timm__"):-len(".json")]
                                                   for p in DROPS.glob("timm__*.json"))])
def test_train_mode_with_drops_equals_timms(model):
    import torch
    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from fill import reference_fill_, reference_input
    fx = json.loads((DROPS / f"timm__{model}.json").read_text())
    net = _load(model, input_shape=fx["input_shape"], **fx["kwargs"])
    reference_fill_(net).train()
    torch.manual_seed(fx["seed"])
    with torch.no_grad():
        y = net(reference_input(fx["input_shape"]))
    expected = torch.tensor(fx["output"]).reshape(fx["output_shape"])
    assert (y - expected).abs().max() <= 1e-4 * expected.abs().max()
    del net


# ---- outputs of reduced configurations, for blocks that only huge models use ---------------------
# tests/fixtures/families/reduced: tools/make_timm_fixtures.py --kwargs (timm 1.0.31), i.e.
# timm.create_model(name, **kwargs) with fewer and narrower blocks; the facts keep the kwargs and
# the state_dict. Our variant gets the same arguments under its own names (--set), and must have
# that state_dict, timm's FlopCounterMode FLOPs and, under the deterministic fill, its outputs.
# vit_so150m_patch16_reg4_map_256 (depth 2, dim 112): the attention pool after register tokens, a
# head; vit_base_patch32_siglip_256 (depth 2, dim 192): the pool's MLP with gelu("tanh");
# vit_giant_patch14_dinov2 (depth 2, dim 96, 4 heads): the SwiGLU MLP (timm's SwiGLUPacked).
# vit_small_patch16_18x2_224 (depth 2): ParallelThingsBlock; vit_base_patch16_rpn_224 and
# vit_base_patch16_xp_224 (depth 2, dim 192, 4 heads): ResPostBlock, ParallelScalingBlock with
# RMS norms, qk norm and mlp_bias.

REDUCED = Path(__file__).parent / "fixtures" / "families" / "reduced"
TIMM_KWARGS = {"vit": {"depth": "depth", "embed_dim": "dim", "num_heads": "num_heads"}}


@pytest.mark.parametrize("model", sorted(p.name[len("timm__"):-len(".json")]
                                         for p in REDUCED.glob("timm__*.json")))
def test_reduced_configurations_equal_timms(model):
    import torch
    sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
    from fill import reference_fill_, reference_input
    fixture = json.loads((REDUCED / f"timm__{model}.json").read_text())
    family = _family_of(model)
    overrides = {TIMM_KWARGS[family][k]: v for k, v in fixture["kwargs"].items()}
    report = archdsl.check_spec(*_where(model), input_shape=fixture["flops_input_shape"], **overrides)
    assert (report.totals.params, report.totals.flops) == (fixture["params"], fixture["flops"])
    net = _load(model, **overrides).eval()
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == \
        [[k, s] for k, s, _ in fixture["state_dict"]]
    reference_fill_(net)
    with torch.no_grad():  # at batch 2 (the input twice): the module is not tied to its batch
        y = net(reference_input(fixture["input_shape"]).repeat(2, 1, 1, 1))
    expected = torch.tensor(fixture["output"]).reshape(fixture["output_shape"])
    assert list(y.shape) == [2, *fixture["output_shape"][1:]]
    assert (y - expected).abs().max().item() <= 1e-4 * fixture["output_abs_max"]
    del net
