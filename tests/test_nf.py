"""Normalizer-free networks: the scaled weight-standardised conv and the NF gammas against
independent computations, the NF block (NFNet options: grouped, extra conv, SE, skipinit, gamma
in the activation) against a transcription of timm's NormFreeBlock forward, and NFNet-F0's
size against the paper; the DeepMind NFNet's "SAME" padding on a reduced dm_nfnet_f0 and the
static FLOPs of nf_regnet_b0 / dm_nfnet_f0 against timm's fixtures. (nf_resnet50 is checked
against timm's fixture by test_reference.py; the outputs of nf_regnet_b0 and dm_nfnet_f0 by
test_families.py.)
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl.ops.scaled import NONLIN_GAMMA
from archdsl.testing.flops import count_flops


def net(body: str, inputs: str):
    return archdsl.load_spec(source=f"network T() {{\n{inputs}\n{body}\n}}\nvariant t = T()\n").eval()


def standardized(w: torch.Tensor, gain, gamma: float, eps: float) -> torch.Tensor:
    """(W - mean) / sqrt(var + eps) per output filter (biased var), times gain · gamma / sqrt(fan_in)."""
    w = w.double()
    flat = w.flatten(1)
    mean, var = flat.mean(1, keepdim=True), flat.var(1, unbiased=False, keepdim=True)
    out = ((flat - mean) / torch.sqrt(var + eps)).view_as(w)
    if gain is None:
        return out
    return out * gain.double() * gamma / math.sqrt(flat.shape[1])


@pytest.mark.parametrize("attrs,gamma", [('gamma="relu", eps=1e-5', NONLIN_GAMMA["relu"]),
                                         ("gamma=1.5, groups=2, stride=2", 1.5),
                                         ("scaled=false, bias=false", None)])
def test_ws_conv_standardises_each_filter(attrs, gamma):
    m = net(f"out x -> c: ws_conv(6, 3, {attrs})", "in x: [2, 4, 9, 9]")
    c = m.c
    torch.manual_seed(0)
    with torch.no_grad():
        for p in c.parameters():
            p.normal_()
    x = torch.randn(2, 4, 9, 9)
    gain = c.gain if gamma is not None else None
    w = standardized(c.weight, gain, gamma or 1.0, c.eps).float()
    want = F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)
    assert torch.allclose(m(x), want, atol=1e-4)
    keys = list(m.state_dict())
    assert keys == (["c.weight", "c.bias", "c.gain"] if gamma is not None else ["c.weight"])


def test_nf_gammas_normalise_the_activations():
    """gamma = 1 / std(act(x)) for x ~ N(0, 1) (the DeepMind constants)."""
    x = torch.randn(4_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for name, fn in (("relu", F.relu), ("gelu", F.gelu), ("silu", F.silu), ("tanh", torch.tanh)):
        assert abs(NONLIN_GAMMA[name] * fn(x).std().item() - 1.0) < 2e-3, name
    assert NONLIN_GAMMA["relu"] == pytest.approx(1.7139588594436646)
    m = net('out x -> scaled_act("gelu")', "in x: [3, 4]")
    x = torch.randn(3, 4)
    assert torch.allclose(m(x), F.gelu(x) * 1.7015043497085571)


def _ref_block(sd: dict, x: torch.Tensor, *, alpha, beta, groups, stride, act, gamma_conv, eps,
               extra_conv, se, skipinit, attn_gain=2.0):
    """timm's NormFreeBlock.forward (reg=False) written out with F ops and the block's weights."""
    def conv(name, h, s=1, g=1):
        w, gain = sd[f"{name}.weight"], sd[f"{name}.gain"]
        w = standardized(w, gain, gamma_conv, eps).float()
        k = w.shape[-1]
        return F.conv2d(h, w, sd[f"{name}.bias"], s, ((s - 1) + (k - 1)) // 2, 1, g)

    out = act(x) * beta
    shortcut = x
    if "downsample.conv.weight" in sd:
        p = F.avg_pool2d(out, 2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else out
        shortcut = conv("downsample.conv", p)
    y = conv("conv1", out)
    y = conv("conv2", act(y), stride, groups)
    if extra_conv:
        y = conv("conv2b", act(y), 1, groups)
    y = conv("conv3", act(y))
    if se:
        s = y.mean((2, 3), keepdim=True)
        s = F.conv2d(F.relu(F.conv2d(s, sd["attn_last.fc1.weight"], sd["attn_last.fc1.bias"])),
                     sd["attn_last.fc2.weight"], sd["attn_last.fc2.bias"])
        y = attn_gain * (y * torch.sigmoid(s))
    if skipinit:
        y = y * sd["skipinit_gain"]
    return y * alpha + shortcut


@pytest.mark.parametrize("nfnet", [False, True])
def test_nf_block_matches_timms_forward(nfnet):
    if nfnet:  # dm_nfnet-style: GELU with gamma in the activation, groups, extra conv, SE, skipinit
        body = ('out x -> b: NfBlock(32, stride=2, beta=0.9, bottle_ratio=0.5, group_size=8, '
                'extra_conv=true, skipinit=true, attn=SE(rd_ratio=0.5), act=scaled_act("gelu"), '
                'conv_layer=ws_conv(eps=1e-5))')
        act = lambda t: F.gelu(t) * NONLIN_GAMMA["gelu"]  # noqa: E731
        kw = dict(groups=2, stride=2, gamma_conv=1.0, extra_conv=True, se=True, skipinit=True)
    else:  # NF-ResNet: ReLU, gamma in the conv
        body = 'out x -> b: NfBlock(32, stride=2, beta=0.9, conv_layer=ws_conv(gamma="relu", eps=1e-5))'
        act = F.relu
        kw = dict(groups=1, stride=2, gamma_conv=NONLIN_GAMMA["relu"], extra_conv=False, se=False,
                  skipinit=False)
    m = net(body, "in x: [2, 16, 8, 8]")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 0 else 0.0))
    sd = {k.removeprefix("b."): v for k, v in m.state_dict().items()}
    if nfnet:
        assert list(sd)[0] == "skipinit_gain" and sd["skipinit_gain"].shape == ()
        assert "attn_last.fc1.weight" in sd and sd["conv2.weight"].shape == (16, 8, 3, 3)
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        want = _ref_block(sd, x, alpha=0.2, beta=0.9, act=act, eps=1e-5, **kw)
        assert torch.allclose(m(x), want, atol=1e-4, rtol=1e-4)


def test_nfnet_f0_size_matches_the_paper():
    """Brock et al. 2021 (NFNet): F0 has 71.5M params and 12.38B FLOPs (multiply-adds) at its
    256x256 test resolution."""
    totals = archdsl.check_spec("nfnet_f0", input_shape=[1, 3, 256, 256]).totals
    assert totals.params == 71_489_272 and round(totals.params / 1e6, 1) == 71.5
    assert totals.macs == 12_384_198_656 and round(totals.macs / 1e9, 2) == 12.38


def test_nfnet_f0_static_flops_equal_flop_counter():
    model = archdsl.load_spec("nfnet_f0", input_shape=[1, 3, 64, 64]).eval()
    totals = archdsl.check_spec("nfnet_f0", input_shape=[1, 3, 64, 64]).totals
    x = torch.randn(1, 3, 64, 64)
    assert totals.flops == count_flops(model, x)
    assert sum(p.numel() for p in model.parameters()) == totals.params
    with torch.no_grad():
        assert model(x).shape == (1, 1000)


# ---- the DeepMind NFNet's TensorFlow "SAME" padding, on a reduced dm_nfnet_f0 --------------------
# tests/fixtures/families/outputs/reduced__dm_nfnet_f0.json: timm 1.0.31's
# timm.create_model("dm_nfnet_f0", depths=(1, 1, 1, 1), channels=(32, 64, 96, 128), stem_chs=16,
# group_size=8, num_features=256) (its `kwargs`) through tools/make_timm_fixtures.py's facts_of at
# 1x3x50x50, the state_dict list dropped. At 50x50 the strided convs see 50, 25, 13, 7 and 4
# pixels: the "SAME" padding is asymmetric (one pixel, bottom/right) at the even sizes and
# symmetric at the odd ones, so both cases are compared. (dm_nfnet_f0 itself, 71 M params, is
# in tests/test_families.py's slow sample.) The net is built for that input: the padding, as
# every shape, is fixed for the size a network is built for.

FIXTURES = Path(__file__).parent / "fixtures"
NFNET = Path(__file__).parent.parent / "specs" / "timm" / "nfnet.arch"


def _reduced_dm_nfnet(**changes):
    sys.path.insert(0, str(FIXTURES))
    from fill import reference_fill_, reference_input
    fx = json.loads((FIXTURES / "families" / "outputs" / "reduced__dm_nfnet_f0.json").read_text())
    args = {**fx["kwargs"], **changes}
    net = archdsl.load_spec(NFNET, "dm_nfnet_f0", input_shape=fx["input_shape"], **args).eval()
    reference_fill_(net)
    with torch.no_grad():
        y = net(reference_input(fx["input_shape"]))
    flops = archdsl.check_spec(NFNET, "dm_nfnet_f0", input_shape=fx["input_shape"], **args).totals.flops
    expected = torch.tensor(fx["output"]).reshape(fx["output_shape"])
    return fx, y, expected, flops


def test_reduced_dm_nfnet_equals_timms_with_same_padding():
    fx, y, expected, flops = _reduced_dm_nfnet()
    assert list(y.shape) == fx["output_shape"]
    assert (y - expected).abs().max().item() <= 1e-4 * fx["output_abs_max"]
    assert flops == fx["flops"]  # FlopCounterMode's count at 1x3x50x50, in timm


def test_symmetric_padding_is_not_what_the_deepmind_nfnet_computes():
    """The sample discriminates: the same weights with pad 'auto' give another output."""
    fx, y, expected, _ = _reduced_dm_nfnet(same_padding=False)
    assert list(y.shape) == fx["output_shape"]
    assert (y - expected).abs().max().item() > 0.01 * fx["output_abs_max"]


@pytest.mark.parametrize("model", ["nf_regnet_b0", "dm_nfnet_f0"])
def test_static_flops_equal_timms_flop_counter(model):
    """From shapes alone (no module built): FLOPs and params equal FlopCounterMode's count of timm's
    model at 224x224 (tests/fixtures/families/outputs/timm__<model>.json)."""
    fx = json.loads((FIXTURES / "families" / "outputs" / f"timm__{model}.json").read_text())
    totals = archdsl.check_spec(NFNET, model, input_shape=fx["flops_input_shape"]).totals
    assert (totals.flops, totals.params) == (fx["flops"], fx["params"])
