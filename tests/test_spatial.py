"""Spatial ops beyond the property harness: affine_grid + grid_sample against the reference cases
(shared/reference/ops.json, copied to tests/fixtures), the STN block's identity start, pixel
shuffle round trips, upsample and pad against torch's modules, and the documented costs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F

import archdsl

FIXTURES = Path(__file__).parent / "fixtures"
CASES = json.loads((FIXTURES / "ops_affine_grid_sample.json").read_text())["affine_grid_grid_sample"]


def _reference_input(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=g)


GRID_SAMPLE = """
network G(out_size: list[int], mode: str, padding: str, align_corners: bool) {
  in x: [B, C, H, W]
  in theta: [B, 2, 3]
  out affine_grid_sample(x, theta, out_size=out_size, mode=mode, padding=padding,
                         align_corners=align_corners)
}
"""


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_affine_grid_sample_matches_reference_cases(case):
    inp = case["inputs"]
    x = _reference_input(inp["input"]["shape"], seed=1)
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]) + 0.1 * _reference_input(inp["theta"]["shape"], seed=2)
    assert abs(x.double().sum().item() - inp["input"]["sum"]) < 1e-4      # the same inputs
    torch.testing.assert_close(theta, torch.tensor(inp["theta"]["values"]), atol=1e-7, rtol=0)
    args = case["args"]
    model = archdsl.load_spec(source=GRID_SAMPLE, input_shape=[list(x.shape), list(theta.shape)],
                              out_size=args["size"][2:], mode=args["mode"],
                              padding=args["padding_mode"], align_corners=args["align_corners"])
    y = model(x, theta)
    assert list(y.shape) == case["output_shape"]
    torch.testing.assert_close(y.flatten(), torch.tensor(case["output"]).flatten(), atol=1e-5, rtol=1e-5)


def test_affine_grid_sample_costs_follow_the_documented_formula():
    report = archdsl.check_spec(source=GRID_SAMPLE, input_shape=[(2, 4, 7, 7), (2, 2, 3)],
                                out_size=[5, 6], mode="bilinear", padding="zeros", align_corners=False)
    loc = 2 * 5 * 6
    assert report.totals.flops == 0                           # FlopCounterMode counts none of it
    assert report.totals.other_flops == loc * (12 + 16) + loc * 4 * 7
    nearest = archdsl.check_spec(source=GRID_SAMPLE, input_shape=[(2, 4, 7, 7), (2, 2, 3)],
                                 out_size=[5, 6], mode="nearest", padding="zeros", align_corners=False)
    assert nearest.totals.other_flops == loc * (12 + 6)


# ---------------------------------------------------------------------------------------------
# the spatial transformer block

STN_NET = """
block Loc(hidden: int = 32) {
  in x: [B, C, H, W]
  out x -> conv1: conv(8, 3) -> maxpool(2) -> relu -> flatten -> fc: linear(hidden) -> relu
}
network Net(out_size: list[int]? = none) {
  in x: [B, 1, H = 28, W = 28]
  out x -> stn: STN(Loc(), out_size=out_size) -> conv: conv(4, 3)
}
"""


def test_stn_starts_at_the_identity_transform():
    model = archdsl.load_spec(source=STN_NET, seed=0)
    keys = [k for k in model.state_dict() if k.startswith("stn.")]
    assert keys == ["stn.loc.conv1.weight", "stn.loc.conv1.bias", "stn.loc.fc.weight", "stn.loc.fc.bias",
                    "stn.fc_loc.weight", "stn.fc_loc.bias"]
    assert not model.stn.fc_loc.weight.any()
    assert model.stn.fc_loc.bias.tolist() == [1, 0, 0, 0, 1, 0]
    x = torch.randn(3, 1, 28, 28)
    # the block's output is the warped input: the input itself at initialisation
    conv_only = torch.nn.functional.conv2d(x, model.conv.weight, model.conv.bias, padding=1)
    torch.testing.assert_close(model(x), conv_only, atol=1e-5, rtol=1e-5)
    # the regressor learns: its weight gets a gradient at the identity start
    model(x).square().sum().backward()
    assert model.stn.fc_loc.weight.grad.abs().sum() > 0
    assert model.stn.fc_loc.bias.grad.abs().sum() > 0


def test_stn_out_size_and_compile():
    model = archdsl.load_spec(source=STN_NET, out_size=[14, 20], seed=0).eval()
    x = torch.randn(2, 1, 28, 28)
    assert model(x).shape == (2, 4, 14, 20)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


# ---------------------------------------------------------------------------------------------
# pixel shuffle, upsample, pad

def test_pixel_shuffle_and_unshuffle_are_inverse():
    src = """network P() { in x: [B, 8, H = 6, W = 4]
                         y = x -> pixel_shuffle(2)
                         out a = y
                         out b = y -> pixel_unshuffle(2) }"""
    model = archdsl.load_spec(source=src, input_shape=(2, 8, 6, 4))
    x = torch.randn(2, 8, 6, 4)
    out = model(x)
    assert out["a"].shape == (2, 2, 12, 8)
    assert torch.equal(out["a"], F.pixel_shuffle(x, 2)) and torch.equal(out["b"], x)


@pytest.mark.parametrize("args, module", [
    ("2", torch.nn.Upsample(scale_factor=2)),
    ('1.5, "bilinear"', torch.nn.Upsample(scale_factor=1.5, mode="bilinear")),
    ('size=[9, 5], mode="bicubic", align_corners=true',
     torch.nn.Upsample(size=(9, 5), mode="bicubic", align_corners=True)),
])
def test_upsample_matches_torch(args, module):
    src = f"network U() {{ in x: [B, 3, H = 7, W = 6]\n out x -> upsample({args}) }}"
    model = archdsl.load_spec(source=src)
    x = torch.randn(1, 3, 7, 6)
    torch.testing.assert_close(model(x), module(x))


def test_pad_modes_match_torch_modules():
    x = torch.randn(2, 3, 5, 6)
    for mode, module in [("reflect", torch.nn.ReflectionPad2d((3, 3, 2, 1))),
                         ("replicate", torch.nn.ReplicationPad2d((3, 3, 2, 1))),
                         ("circular", torch.nn.CircularPad2d((3, 3, 2, 1)))]:
        src = f'network P() {{ in x: [B, 3, H = 5, W = 6]\n out x -> pad([3, 3, 2, 1], "{mode}") }}'
        torch.testing.assert_close(archdsl.load_spec(source=src, input_shape=(2, 3, 5, 6))(x), module(x))
    src = 'network P() { in x: [B, 3, H = 5, W = 6]\n out x -> pad([0, 1, 0, 1], value=-1.0) }'
    y = archdsl.load_spec(source=src, input_shape=(2, 3, 5, 6))(x)
    torch.testing.assert_close(y, F.pad(x, (0, 1, 0, 1), value=-1.0))


def test_pad_errors_name_the_rule():
    with pytest.raises(archdsl.ArchError, match="smaller than dim"):
        archdsl.check_spec(source='network P() { in x: [1, 3, 4, 4]\n'
                                  '  out x -> pad([4, 0, 0, 0], "reflect") }')


def test_same_pad_pads_from_the_size_it_is_run_at():
    """TensorFlow's SAME padding (tf_efficientnet, tf_mobilenetv3, dm_nfnet): a model built for
    224x224 and run at 50x50 must equal the model built for 50x50 — the amounts at 50 differ
    (one-sided and even pads); a pad fixed at build time was silently wrong there."""
    from archdsl.nn.rules import same_pads
    assert [same_pads(n, 3, 2, 1) for n in (224, 50, 51)] == [(0, 1), (0, 1), (1, 1)]
    assert same_pads(7, 5, 1, 2) == (4, 4) and same_pads(8, 1, 2, 1) == (0, 0)
    spec, name = Path(__file__).parent.parent / "specs" / "timm" / "mobilenetv3.arch", "tf_mobilenetv3_small_minimal_100"
    built_224 = archdsl.load_spec(spec, name, seed=0).eval()
    built_50 = archdsl.load_spec(spec, name, input_shape=(1, 3, 50, 50)).eval()
    built_50.load_state_dict(built_224.state_dict())
    x = torch.randn(1, 3, 50, 50, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(built_224(x), built_50(x), rtol=0, atol=0)
        y = archdsl.load_spec(source="network N() {\n  in x: [B, 1, H = 5, W = 6]\n"
                                     "  out x -> same_pad([3, 2], 2)\n}\n")(torch.ones(1, 1, 7, 8))
    assert y.shape == (1, 1, 9, 8) and y[0, 0, 0].sum() == 0 and y[0, 0, -1].sum() == 0
