"""The deploy pass (archdsl/lower/deploy.py) and the re-parameterisation blocks.

A deployed module must compute what the trained module computes in eval mode — after the
deterministic fill (tests/fixtures/fill.py), whose BN statistics are far from the identity
(running_var 0.5 + U[0, 1), running_mean 0.1·N(0, 1), γ 1 + 0.1·N, β 0.1·N) — within 1e-4 of
the output's largest magnitude; its params must drop as the papers say; and the torch-free
`deploy_graph` must cost exactly the module that `deploy` builds.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import archdsl
from archdsl.ir.cost import cost
from archdsl.lower.deploy import deploy, deploy_graph
from archdsl.testing.flops import count_flops

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from fill import reference_fill_, reference_input  # noqa: E402

ACNET = """
network ACNetSmall(num_classes: int = 10) {
  in x: [B, 3, H = 32, W = 32]
  y = x -> stem: ACBlock(16) -> relu
        -> s1: ACBlock(32, stride=2) -> relu
        -> s2: ACBlock(32, kernel=5, groups=4) -> relu
        -> s3: ACBlock(48, stride=2) -> relu
  out y -> mean(dims=[2, 3]) -> fc: linear(num_classes)
}
"""

DIRACNET = """
network DiracNetSmall(num_classes: int = 10) {
  in x: [B, 3, H = 32, W = 32]
  y = x -> conv: conv(16, 3, bias=false) -> bn: bn -> relu
        -> group0: repeat(2) { DiracBlock(16) } -> maxpool(2)
        -> group1: repeat(2) { DiracBlock(32) }
  out y -> relu -> mean(dims=[2, 3]) -> fc: linear(num_classes)
}
"""

# grouped RepVGG blocks with identity branches, a 1x1 conv + a plain identity (no BN), a sum whose
# branches read different inputs (kept) and a sum with a fusable sub-sum (the sub-sum fuses)
MIXED = """
block PlainRes(chs: int) {
  in x: [B, C, H, W]
  out (x -> c: conv(chs, 1)) + x
}
network Mixed() {
  in x: [B, 3, H = 16, W = 16]
  y = x -> stem: RepVGGBlock(16, stride=2)
        -> b1: RepVGGBlock(16, groups=4) -> b2: RepVGGBlock(16, groups=2, dpr=0.1)
        -> p: PlainRes(16)
  z = y -> zc: conv(16, 3, bias=false) -> zbn: bn
  w = y -> wa: conv(16, 3, bias=false) -> wabn: bn
  v = y -> vb: conv(16, (1, 3), pad=(0, 1)) -> vbn: bn
  out (w + v) + (z -> relu)
}
"""


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item() / b.abs().max().item()


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _ops(m) -> list[str]:
    return [n.op for n in m.arch_graph.nodes()]


def _check_equivalent(model, shape):
    model.eval()
    reference_fill_(model)
    deployed = deploy(model)
    x = reference_input(shape)
    with torch.no_grad():
        y, yd = model(x), deployed(x)
    assert yd.shape == y.shape
    assert _rel_err(yd, y) <= 1e-4
    assert "batch_norm" not in _ops(deployed)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in deployed.modules())
    # the torch-free plan costs exactly the module deploy built
    graph = model.arch_graph
    report = cost(deploy_graph(graph))
    assert report.totals.params == _params(deployed)
    assert report.totals.flops == count_flops(deployed, torch.zeros(graph.node(graph.inputs[0]).shape))
    return deployed


@pytest.fixture(scope="module")
def repvgg_a0():
    return archdsl.load_spec("repvgg_a0").eval()


def test_repvgg_a0_deploys_to_the_inference_form(repvgg_a0):
    trained = _params(repvgg_a0)
    assert trained == 9_108_968   # timm repvgg_a0; the paper's Table 4: 9.11M
    deployed = _check_equivalent(repvgg_a0, [2, 3, 64, 64])
    # timm repvgg_a0 after reparameterize(): 8,309,384; the paper's Table 4: 8.30M
    assert _params(deployed) == 8_309_384
    assert abs(_params(deployed) - 8.30e6) / 8.30e6 < 2e-3
    # one 3x3 conv with bias per RepVGG block, at timm's deploy-form keys, in timm's order
    fixture = json.loads((FIXTURES / "timm" / "timm__repvgg_a0.json").read_text())
    blocks = list(dict.fromkeys(k.split(".conv_kxk.")[0] for k, *_ in fixture["state_dict"]
                                if ".conv_kxk." in k))
    want = [f"{b}.reparam_conv.{leaf}" for b in blocks for leaf in ("weight", "bias")]
    assert list(deployed.state_dict()) == want + ["head.fc.weight", "head.fc.bias"]
    convs = [n for n in deployed.arch_graph.nodes() if n.op == "conv"]
    assert len(convs) == len(blocks) == 22
    assert all(n.attrs.kernel == 3 and n.attrs.bias for n in convs)
    assert _ops(deployed).count("add") == 0


def test_repvgg_a0_deploy_costs_without_torch():
    graph = archdsl.load_graph("repvgg_a0")
    trained, deployed = cost(graph).totals, cost(deploy_graph(graph)).totals
    assert deployed.params == 8_309_384
    assert deployed.flops < trained.flops      # the 1x1 branches are folded into the 3x3s
    assert graph.node("stem.conv_kxk.bn").op == "batch_norm"   # the input graph is untouched


# inference-time params: timm's model after reparameterize() (timm 1.0.31), and RepVGG Table 4
# (which prints them truncated to 0.01M); repvgg_b1g2 is not in timm
DEPLOYED_PARAMS = {
    "repvgg_a0": (8_309_384, 8.30), "repvgg_a1": (12_789_864, 12.78),
    "repvgg_a2": (25_499_944, 25.49), "repvgg_b0": (14_339_048, 14.33),
    "repvgg_b1": (51_829_480, 51.82), "repvgg_b1g2": (None, 41.36),
    "repvgg_b1g4": (36_125_416, 36.12), "repvgg_b2": (80_315_112, 80.31),
    "repvgg_b2g4": (55_777_512, 55.77), "repvgg_b3": (110_960_872, 110.96),
    "repvgg_b3g4": (75_626_728, 75.62),
}


@pytest.mark.parametrize("variant", sorted(DEPLOYED_PARAMS))
def test_repvgg_deployed_params_match_timm_and_the_paper(variant):
    exact, paper_m = DEPLOYED_PARAMS[variant]
    params = cost(deploy_graph(archdsl.load_graph(variant))).totals.params
    if exact is not None:
        assert params == exact
    assert int(params / 1e4) / 100 == paper_m


def test_deploy_leaves_the_trained_module_alone(repvgg_a0):
    reference_fill_(repvgg_a0)
    before = {k: v.clone() for k, v in repvgg_a0.state_dict().items()}
    n_nodes = len(repvgg_a0.arch_graph)
    repvgg_a0.train()
    deployed = deploy(repvgg_a0)   # an eval-mode transform whatever the module's mode
    assert not deployed.training and repvgg_a0.training
    after = repvgg_a0.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(repvgg_a0.arch_graph) == n_nodes
    repvgg_a0.eval()
    x = reference_input([1, 3, 32, 32])
    with torch.no_grad():
        assert _rel_err(deployed(x), repvgg_a0(x)) <= 1e-4
    again = deploy(deployed)   # nothing left to fuse
    assert list(again.state_dict()) == list(deployed.state_dict())


def test_acnet_blocks_fuse_into_one_conv_each():
    model = archdsl.load_spec(source=ACNET)
    assert [k for k in model.state_dict() if k.startswith("stem.") and "num_batches" not in k][:8] == [
        "stem.square_conv.weight", "stem.square_bn.weight", "stem.square_bn.bias",
        "stem.square_bn.running_mean", "stem.square_bn.running_var",
        "stem.ver_conv.weight", "stem.hor_conv.weight", "stem.ver_bn.weight"]   # ACNet's acb.py
    deployed = _check_equivalent(model, [2, 3, 32, 32])
    convs = {n.id: n.attrs for n in deployed.arch_graph.nodes() if n.op == "conv"}
    assert list(convs) == ["stem.reparam_conv", "s1.reparam_conv", "s2.reparam_conv", "s3.reparam_conv"]
    assert convs["s2.reparam_conv"].kernel == 5 and convs["s2.reparam_conv"].groups == 4
    # each block: a kxk conv with bias; the 1xk / kx1 kernels and the 6 BNs are gone
    want = (16 * 3 * 9 + 16) + (32 * 16 * 9 + 32) + (32 * 8 * 25 + 32) + (48 * 32 * 9 + 48) + (48 * 10 + 10)
    assert _params(deployed) == want


def test_diracnet_convs_become_plain_convs():
    model = archdsl.load_spec(source=DIRACNET)
    assert [k for k in model.state_dict() if k.startswith("group0.0.conv")] == [
        "group0.0.conv.weight", "group0.0.conv.alpha", "group0.0.conv.beta"]
    deployed = _check_equivalent(model, [2, 3, 32, 32])
    assert "dirac_conv" not in _ops(deployed)
    # gone: a, b (2·C each) and the BN's γ, β (2·C); added: the conv bias (C)
    chs = [16, 16, 16, 32, 32]
    assert _params(model) - _params(deployed) == sum(chs[1:]) * 3 + chs[0]


def test_resnet18_folds_batch_norms_only():
    model = archdsl.load_spec("resnet18")
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn_channels == 4800
    deployed = _check_equivalent(model, [1, 3, 64, 64])
    # every BN's γ and β go and its conv gains a bias: the params drop by one per BN channel
    assert _params(model) - _params(deployed) == bn_channels
    assert sum(n.op == "conv" for n in deployed.arch_graph.nodes()) == 20   # no branch was fused
    assert _ops(deployed).count("add") == 8
    assert "layer2.0.downsample.0.bias" in deployed.state_dict()


def test_mixed_sums():
    model = archdsl.load_spec(source=MIXED)
    deployed = _check_equivalent(model, [2, 3, 16, 16])
    convs = {n.id: n for n in deployed.arch_graph.nodes() if n.op == "conv"}
    assert {"stem.reparam_conv", "b1.reparam_conv", "b2.reparam_conv", "p.reparam_conv",
            "zc", "reparam_conv"} == set(convs)
    assert convs["b1.reparam_conv"].attrs.groups == 4
    assert convs["p.reparam_conv"].attrs.kernel == 1            # 1x1 + identity → 1x1
    assert convs["reparam_conv"].inputs == ["p.reparam_conv"]   # w + v fused; + relu(z) kept
    assert _ops(deployed).count("add") == 1


def test_dirac_conv_is_the_identity_without_its_weight():
    g = archdsl.load_spec(source="""
network D() {
  in x: [B, 6, H = 5, W = 7]
  out x -> d: dirac_conv(6, 3, alpha=2.0, beta=0.0, bias=false)
}
""")
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        assert torch.allclose(g(x), 2.0 * x, atol=1e-6)
    half = archdsl.load_spec(source="""
network D() {
  in x: [B, 8, H = 5, W = 5]
  out x -> d: dirac_conv(4, 3, alpha=1.0, beta=0.0, bias=false)
}
""")
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():   # δ = [I I]: the two halves add, as after DiracNet's NCReLU
        assert torch.allclose(half(x), x[:, :4] + x[:, 4:], atol=1e-6)


def test_deploy_needs_an_archdsl_module():
    traced = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.BatchNorm2d(3)))
    with pytest.raises(TypeError, match="arch_graph"):
        deploy(traced)
