"""Lowering: the GraphModule is straight-line torch code that compiles without graph breaks."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo

import archdsl

SMALL = """
block Res(planes: int) {
  in x: [B, C, H, W]
  y = x -> conv1: conv(planes, 3, bias=false) -> bn1: bn -> relu -> se: SE()
  out relu(y + x)
}
network Small(width: int = 16) {
  in x: [B, 3, H = 32, W = 32]
  y = x -> stem: [conv(width, 3, stride=2), bn, relu]
        -> blocks: repeat(2) j { Res(width) }
  parts = y -> chunk(2)
  y = cat([parts[1], parts[0]], dim=1) -> channel_shuffle(4) -> drop_path(0.1)
  out y -> mean(dims=[2, 3]) -> head: linear(10)
}
"""


@pytest.mark.parametrize("variant", ["resnet50", "convnext_tiny", "mobilenetv2_100", "resnet50d",
                                     "seresnext50_32x4d", "mobilenetv1_100"])
def test_stdlib_models_have_no_graph_breaks(variant):
    model = archdsl.load_spec(variant, input_shape=(1, 3, 64, 64)).eval()
    explanation = torch._dynamo.explain(model)(torch.randn(1, 3, 64, 64))
    assert explanation.graph_break_count == 0
    assert explanation.graph_count == 1


def test_torch_compile_fullgraph_matches_eager():
    model = archdsl.load_spec(source=SMALL, seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_same_spec_and_seed_give_identical_weights():
    a = archdsl.load_spec("resnet18", seed=7).state_dict()
    b = archdsl.load_spec("resnet18", seed=7).state_dict()
    c = archdsl.load_spec("resnet18", seed=8).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_forward_and_backward_reach_every_parameter():
    model = archdsl.load_spec(source=SMALL, seed=0).train()
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_generated_code_reads_like_pytorch():
    model = archdsl.load_spec("resnet18")
    code = model.code
    assert "self.layer1" in code and "self.fc(" in code
    assert "interpret" not in code.lower()
    assert "for " not in code  # straight-line: no loops over nodes at run time
    assert type(model).__name__ == "Resnet18"


def test_param_nodes_are_module_parameters_at_the_block_path():
    model = archdsl.load_spec("convnext_tiny", input_shape=(1, 3, 64, 64))
    gamma = dict(model.named_parameters())["stages.2.blocks.4.gamma"]
    assert gamma.shape == (384,)
    assert torch.allclose(gamma, torch.full((384,), 1e-6))


def test_drop_path_is_active_only_in_training():
    model = archdsl.load_spec("convnext_tiny", input_shape=(2, 3, 32, 32), drop_path_rate=0.5,
                              seed=0)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    rates = [m.p for n, m in model.named_modules() if n.endswith("drop_path")]
    # timm's schedule: linspace(0, rate, 18 blocks); the first block's rate is 0, so it has no node
    assert rates == pytest.approx([0.5 * k / 17 for k in range(1, 18)])
    model.train()
    assert not torch.equal(model(x), model(x))


def test_graph_weights_are_the_built_modules_parameters_and_buffers():
    """Graph.weights() lists, from shapes alone, what building allocates: `param`/`buffer` nodes
    and each op's own tensors, by state_dict key, parameters apart from buffers (BatchNorm's integer
    step counter, num_batches_tracked, is not a weight: costs do not count it)."""
    text = """network N() {
  in x: [B, 3, H = 8, W = 8]
  param gamma: [1, 4, 1, 1] = 1.0
  buffer shift: [1, 4, 1, 1] = 0.5
  out (x -> stem: [conv(4, 3, pad=1), bn] -> relu) * gamma + shift -> mean(dims=[2, 3]) -> fc: linear(2)
}"""
    graph = archdsl.load_graph(source=text)
    model = archdsl.load_spec(source=text, device="meta")
    weights = {w.name: (w.shape, w.is_param) for w in graph.weights()}
    params = {k for k, _ in model.named_parameters()}
    assert weights == {k: (tuple(v.shape), k in params) for k, v in model.state_dict().items()
                       if v.is_floating_point()}
    assert weights["stem.1.running_mean"] == ((4,), False) and weights["gamma"] == ((1, 4, 1, 1), True)
