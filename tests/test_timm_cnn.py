"""SKNet, ResNeSt and HRNet (stdlib/nets/sknet.arch, resnest.arch, hrnet.arch).

Keys, params, FLOPs and outputs against timm are checked by tests/test_reference.py (fixtures in
tests/fixtures). Here: the papers' own figures for the referenced variants (test_paper_figures
takes only unreferenced ones), initialisation as timm's, the split attention at an input size
other than the one it was built for (against a hand-written torch version), HRNet's fusion and
head against a hand-written torch HRNet on a tiny configuration, and the compile / backward path.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl.errors import ArchError

NETS = Path(__file__).resolve().parent.parent / "stdlib" / "nets"


def _spec(variant: str) -> tuple[str, str]:
    """(the spec file, the variant): by path, so a broken file elsewhere in the stdlib cannot
    hide these results."""
    family = next(f for f in ("skres", "resnest", "hrnet") if variant.startswith(f))
    return str(NETS / {"skres": "sknet.arch"}.get(family, family + ".arch")), variant

# (variant, params in millions as printed, MACs in units of `unit` as printed, tolerance, unit)
PAPER = [
    # SKNet Table 2: SKNet-50 27.5M, 4.47 GFLOPs (we count 4.463 G multiply-adds).
    ("skresnext50_32x4d", 27.5, 4.47, 0.01, 1e9),
    # ResNeSt, ImageNet comparison table (FLOPs at 224x224): ResNeSt-50 27.5M, 5.4 G; -101 48.3M, 10.2 G.
    ("resnest50d", 27.5, 5.4, 0.05, 1e9),
    ("resnest101e", 48.3, 10.2, 0.05, 1e9),
    # HRNet-Image-Classification README / the paper's ImageNet table, GFLOPs counted by the
    # authors' modelsummary.py: multiply-adds of convs and linears divided by 1024^3.
    ("hrnet_w18_small", 13.2, 1.49, 0.005, 2 ** 30),
    ("hrnet_w18_small_v2", 15.6, 2.42, 0.005, 2 ** 30),
    ("hrnet_w18", 21.3, 3.99, 0.005, 2 ** 30),
    ("hrnet_w32", 41.2, 8.31, 0.005, 2 ** 30),
    ("hrnet_w48", 77.5, 16.1, 0.05, 2 ** 30),
]


@pytest.mark.parametrize("name,params_m,macs,tol,unit", PAPER, ids=[p[0] for p in PAPER])
def test_params_and_macs_match_the_papers(name, params_m, macs, tol, unit):
    totals = archdsl.check_spec(*_spec(name), input_shape=(1, 3, 224, 224)).totals
    assert abs(totals.params / 1e6 - params_m) <= 0.05
    assert abs(totals.macs / unit - macs) <= tol


# ---- initialisation ------------------------------------------------------------------------------

def _kaiming_fan_out_ok(w: torch.Tensor) -> bool:
    """He normal init, fan-out mode: std = sqrt(2 / (out · kh · kw)) (torch's fan_out)."""
    std = math.sqrt(2.0 / (w.shape[0] * w[0, 0].numel()))
    return abs(w.std().item() / std - 1) < 0.1 and abs(w.mean().item()) < 0.1 * std


def test_init_as_timm():
    torch.manual_seed(0)
    sk = dict(archdsl.load_spec(*_spec("skresnet18")).state_dict())
    # timm builds SK-ResNets with zero_init_last=False: the last BN of a block starts at 1
    assert torch.equal(sk["layer1.0.conv2.bn.weight"], torch.ones(64))
    assert _kaiming_fan_out_ok(sk["layer3.0.conv1.paths.0.conv.weight"])
    assert _kaiming_fan_out_ok(sk["layer3.0.conv1.attn.fc_select.weight"])

    ns = dict(archdsl.load_spec(*_spec("resnest14d")).state_dict())
    assert torch.equal(ns["layer2.0.bn3.weight"], torch.zeros(512))      # zero_init_last
    assert torch.equal(ns["layer2.0.conv2.bn0.weight"], torch.ones(256))
    assert _kaiming_fan_out_ok(ns["layer3.0.conv2.conv.weight"])
    assert _kaiming_fan_out_ok(ns["layer4.0.conv2.fc2.weight"])
    bias = ns["layer4.0.conv2.fc1.bias"]                                 # torch's conv default
    assert bias.abs().max() <= 1 / math.sqrt(512) and bias.std() > 0

    hr = dict(archdsl.load_spec(*_spec("hrnet_w18_small")).state_dict())
    assert torch.equal(hr["layer1.0.bn3.weight"], torch.ones(128))       # BN weights all 1
    assert torch.equal(hr["incre_modules.3.0.bn3.weight"], torch.ones(1024))
    assert _kaiming_fan_out_ok(hr["stage4.0.fuse_layers.3.0.2.0.weight"])
    assert _kaiming_fan_out_ok(hr["final_layer.0.weight"])
    fc = hr["classifier.weight"]                                         # nn.Linear default
    assert fc.abs().max() <= 1 / math.sqrt(2048) and fc.abs().max() > 0.9 / math.sqrt(2048)


# ---- split attention at another input size -------------------------------------------------------

def _splat_reference(sd: dict, x: torch.Tensor, radix: int, groups: int) -> torch.Tensor:
    """ResNeSt's split attention written out (eval-mode BN), from the paper's Fig. 2 / rSoftMax."""
    def bn(t, p):
        return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], False, 0.0, 1e-5)
    y = F.relu(bn(F.conv2d(x, sd["conv.weight"], None, 1, 1, 1, groups * radix), "bn0"))
    b, rc, h, w = y.shape
    splits = y.view(b, radix, rc // radix, h, w)
    g = splits.sum(1).mean((2, 3), keepdim=True)
    g = F.relu(bn(F.conv2d(g, sd["fc1.weight"], sd["fc1.bias"], groups=groups), "bn1"))
    a = F.conv2d(g, sd["fc2.weight"], sd["fc2.bias"], groups=groups)
    a = a.view(b, groups, radix, -1).transpose(1, 2).softmax(1).reshape(b, radix, rc // radix, 1, 1)
    return (splits * a).sum(1)


@pytest.mark.parametrize("radix,groups", [(2, 1), (4, 2)])
def test_split_attention_runs_at_any_input_size(radix, groups):
    src = """
network Net(radix: int, groups: int) {
  in x: [B, 32, 8, 8]
  out x -> splat: SplitAttn(32, radix=radix, groups=groups)
}
"""
    torch.manual_seed(0)
    model = archdsl.load_spec(source=src, variant="Net", radix=radix, groups=groups).eval()
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    sd = {k.removeprefix("splat."): v for k, v in model.state_dict().items()}
    x = torch.randn(3, 32, 5, 7)                     # built for 8x8, batch 1
    with torch.no_grad():
        assert torch.allclose(model(x), _splat_reference(sd, x, radix, groups), atol=1e-5)


# ---- HRNet against a hand-written torch HRNet ----------------------------------------------------

TINY = [(1, [1], [4]), (1, [1, 1], [4, 8]), (2, [1, 1, 1], [4, 8, 16]), (1, [1, 1, 1, 1], [4, 8, 16, 32])]


def _bn(sd, p, t):
    return F.batch_norm(t, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                        sd[p + ".bias"], False, 0.0, 1e-5)


def _basic(sd, p, x):
    y = F.relu(_bn(sd, p + ".bn1", F.conv2d(x, sd[p + ".conv1.weight"], padding=1)))
    y = _bn(sd, p + ".bn2", F.conv2d(y, sd[p + ".conv2.weight"], padding=1))
    return F.relu(y + x)


def _bottleneck(sd, p, x):
    y = F.relu(_bn(sd, p + ".bn1", F.conv2d(x, sd[p + ".conv1.weight"])))
    y = F.relu(_bn(sd, p + ".bn2", F.conv2d(y, sd[p + ".conv2.weight"], padding=1)))
    y = _bn(sd, p + ".bn3", F.conv2d(y, sd[p + ".conv3.weight"]))
    sc = _bn(sd, p + ".downsample.1", F.conv2d(x, sd[p + ".downsample.0.weight"]))
    return F.relu(y + sc)


def _cbr(sd, p, x, stride, relu=True):
    y = _bn(sd, p + ".1", F.conv2d(x, sd[p + ".0.weight"], stride=stride, padding=1))
    return F.relu(y) if relu else y


def _hrnet_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """The HRNet paper's network (Fig. 2, Sec. 3; the classification head of the authors' release)
    for TINY, written out by hand from the same weights."""
    x = F.relu(_bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=1)))
    x = F.relu(_bn(sd, "bn2", F.conv2d(x, sd["conv2.weight"], stride=2, padding=1)))
    ys = [_bottleneck(sd, "layer1.0", x)]
    for s in (1, 2, 3):
        chs = TINY[s][2]
        xs = [ys[i] if chs[i] == ys[i].shape[1] else _cbr(sd, f"transition{s}.{i}", ys[i], 1)
              for i in range(len(ys))]
        xs.append(_cbr(sd, f"transition{s}.{len(ys)}.0", ys[-1], 2))   # the new branch
        for m in range(TINY[s][0]):
            p = f"stage{s + 1}.{m}"
            xs = [_basic(sd, f"{p}.branches.{i}.0", t) for i, t in enumerate(xs)]
            fused = []
            for i in range(len(xs)):
                acc = 0
                for j, t in enumerate(xs):
                    q = f"{p}.fuse_layers.{i}.{j}"
                    if j > i:
                        t = _bn(sd, q + ".1", F.conv2d(t, sd[q + ".0.weight"]))
                        t = t.repeat_interleave(2 ** (j - i), 2).repeat_interleave(2 ** (j - i), 3)
                    for k in range(i - j):
                        t = _cbr(sd, f"{q}.{k}", t, 2, relu=k < i - j - 1)
                    acc = acc + t
                fused.append(F.relu(acc))
            xs = fused
        ys = xs
    y = None
    for i, t in enumerate(ys):
        t = _bottleneck(sd, f"incre_modules.{i}.0", t)
        if y is not None:
            q = f"downsamp_modules.{i - 1}"
            y = F.relu(_bn(sd, q + ".1", F.conv2d(y, sd[q + ".0.weight"], sd[q + ".0.bias"], 2, 1)))
            t = t + y
        y = t
    y = F.relu(_bn(sd, "final_layer.1", F.conv2d(y, sd["final_layer.0.weight"], sd["final_layer.0.bias"])))
    return F.linear(y.mean((2, 3)), sd["classifier.weight"], sd["classifier.bias"])


def test_hrnet_matches_a_hand_written_hrnet():
    torch.manual_seed(0)
    model = archdsl.load_spec(*_spec("hrnet_w18_small"), input_shape=(2, 3, 64, 64), stages=TINY,
                              num_classes=10).eval()
    with torch.no_grad():
        for k, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if k.endswith("running_var") else torch.randn_like(t) * 0.3)
    sd = model.state_dict()
    assert "stage3.1.fuse_layers.2.0.1.0.weight" in sd          # 2 modules, 2-step downsample
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = _hrnet_reference(sd, x)
        assert torch.allclose(model(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_hrnet_module_takes_at_most_four_branches():
    with pytest.raises(ArchError, match="out of range"):
        archdsl.check_spec(*_spec("hrnet_w18_small"), input_shape=(1, 3, 64, 64), stages=[
            (1, [1], [4]), (1, [1, 1], [4, 8]), (1, [1, 1, 1], [4, 8, 16]),
            (1, [1, 1, 1, 1, 1], [4, 8, 16, 32, 64])])


# ---- compile and backward --------------------------------------------------------------------------

# tracing takes 15-45 s a network on a shared CPU: the smallest by default, the rest slow
@pytest.mark.parametrize("name,kw", [
    ("resnest14d", {}),
    pytest.param("hrnet_w18_small", dict(stages=TINY), marks=pytest.mark.slow),
    pytest.param("skresnet18", dict(layers=[1, 1, 1, 1]), marks=pytest.mark.slow),
    pytest.param("skresnext50_32x4d", dict(layers=[1, 1, 1, 1]), marks=pytest.mark.slow),
    pytest.param("resnest50d_4s2x40d", dict(layers=[1, 1, 1, 1]), marks=pytest.mark.slow),
])
def test_compiles_without_graph_breaks_and_trains(name, kw):
    torch.manual_seed(0)
    model = archdsl.load_spec(*_spec(name), input_shape=(2, 3, 32, 32), num_classes=5, **kw)
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    out = compiled(x)
    assert out.shape == (2, 5)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
