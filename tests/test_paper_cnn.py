"""Networks proved by their papers' tables (paper-cnn group): DY-CNNs, FFC-ResNet, ResNets with
deformable convs, HetConv-ResNet. Param counts are re-derived here from each paper's formula over
the ResNet / MobileNetV2 layer tables (written out independently of the specs); behaviour is
checked against plain torch computations: zero-initialised offsets give the plain ResNet, equal
dynamic kernels give the static conv, and every family builds, trains a step and traces with
torch.compile(fullgraph=True). Paper figures themselves are in test_paper_figures.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl.api import SpecText
from archdsl.ir.cost import cost

NETS = Path(archdsl.__file__).resolve().parent.parent / "stdlib" / "nets"


def params(file: str, variant: str, **overrides) -> int:
    return cost(archdsl.load_graph(NETS / file, variant, **overrides)).totals.params


def bottleneck_3x3_widths(layers):
    """(stage, width) of every bottleneck's 3x3 conv in a ResNet with these stage depths."""
    return [(i, 64 * 2 ** i) for i, n in enumerate(layers) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# Deformable ConvNets: ResNet + one offset conv per deformable 3x3 conv in stages c3-c5

@pytest.mark.parametrize("variant,base,layers,modulated", [
    ("resnet50_dcn", "resnet50", [3, 4, 6, 3], False),
    ("resnet101_dcn", "resnet101", [3, 4, 23, 3], False),
    ("resnet50_dcnv2", "resnet50", [3, 4, 6, 3], True),
    ("resnet101_dcnv2", "resnet101", [3, 4, 23, 3], True),
])
def test_dcn_params_are_resnet_plus_offset_convs(variant, base, layers, modulated):
    per_tap = 3 if modulated else 2          # (dy, dx) per tap, + a mask logit for v2
    extra = sum(w * per_tap * 9 * 9 + per_tap * 9 for stage, w in bottleneck_3x3_widths(layers)
                if stage >= 1)
    assert params("dcn.arch", variant) == params("resnet.arch", base) + extra


@pytest.mark.parametrize("modulated", [False, True])
def test_dcn_resnet_starts_as_the_plain_resnet(modulated):
    """Offsets (and mask logits) start at zero: v1 computes the plain ResNet with the same
    weights; v2 samples the regular grid with every mask at sigmoid(0) = 1/2, i.e. the plain
    ResNet with its deformable convs' weights halved."""
    variant = "resnet50_dcnv2" if modulated else "resnet50_dcn"
    small = dict(layers=[1, 2, 1, 1], num_classes=10)
    dcn = archdsl.load_spec(NETS / "dcn.arch", variant, input_shape=[2, 3, 64, 64], seed=0, **small)
    plain = archdsl.load_spec(NETS / "resnet.arch", "resnet50", input_shape=[2, 3, 64, 64], **small)
    sd = dcn.state_dict()
    offsets = [k for k in sd if "conv_offset" in k]
    assert len(offsets) == 2 * 4 and all(not sd[k].any() for k in offsets)   # 4 deformable convs
    mapped = {}
    for k in plain.state_dict():
        src = k.replace("conv2.weight", "conv2.conv.weight") if k.replace(
            "conv2.weight", "conv2.conv.weight") in sd else k
        v = sd[src].clone()
        if modulated and src != k:
            v = v * 0.5
        mapped[k] = v
    plain.load_state_dict(mapped)
    torch.manual_seed(0)
    dcn.eval(), plain.eval()
    for m in (dcn, plain):   # non-trivial BN statistics
        for name, buf in m.named_buffers():
            if name.endswith("running_var"):
                buf.fill_(1.5)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(dcn(x), plain(x), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# HetConv: a 3x3 conv over M channels keeps 1/P of its 3x3 kernels, the rest become 1x1

@pytest.mark.parametrize("part", [2, 4, 8, 64])
def test_hetconv_resnet50_params_and_macs_follow_the_formula(part):
    base = cost(archdsl.load_graph(NETS / "resnet.arch", "resnet50")).totals
    het = cost(archdsl.load_graph(NETS / "hetconv.arch", "hetconv_resnet50_p4",
                                  block=SpecText(f"HetBottleneck(part={part})"))).totals
    dense = [(w, 56 // 2 ** s) for s, w in bottleneck_3x3_widths([3, 4, 6, 3])]  # (M = N, Ho)
    saved_params = sum(w * w * 9 - (9 * w * w // part + w * (w - w // part)) for w, _ in dense)
    saved_macs = sum((w * w * 9 - (9 * w * w // part + w * (w - w // part))) * h * h
                     for w, h in dense)
    assert het.params == base.params - saved_params
    assert het.macs == base.macs - saved_macs


# ---------------------------------------------------------------------------------------------
# Dynamic convolution: K kernels per conv + attention C → C//4 → K (no biases)

def dy_conv_params(cin, cout, k, groups=1, K=4):
    hidden = K if cin == 3 else max(cin // 4, 1)
    return K * cout * (cin // groups) * k * k + cin * hidden + hidden * K


def test_dy_resnet18_params_from_the_layer_table():
    total = 3 * 64 * 49 + 2 * 64                         # static stem conv + bn1
    cin = 64
    for i, n in enumerate([2, 2, 2, 2]):
        planes = 64 * 2 ** i
        for j in range(n):
            stride = 2 if i > 0 and j == 0 else 1
            total += dy_conv_params(cin, planes, 3) + dy_conv_params(planes, planes, 3) + 4 * planes
            if stride != 1 or cin != planes:
                total += dy_conv_params(cin, planes, 1) + 2 * planes
            cin = planes
    total += 512 * 1000 + 1000
    assert params("dynamic_conv.arch", "dy_resnet18") == total


@pytest.mark.parametrize("width", [1.0, 0.35])
def test_dy_mobilenetv2_params_from_the_layer_table(width):
    def div8(v):   # MobileNetV2's rounding to a multiple of 8, never below 90% of v
        r = max(8, int(v + 4) // 8 * 8)
        return r + 8 if r < 0.9 * v else r
    stem = div8(32 * width)
    total = 3 * stem * 9 + 2 * stem
    cin = stem
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)]:
        cout = div8(c * width)
        for _ in range(n):
            mid = div8(cin * t)
            if t != 1:
                total += dy_conv_params(cin, mid, 1) + 2 * mid
            total += dy_conv_params(mid, mid, 3, groups=mid) + 2 * mid
            total += dy_conv_params(mid, cout, 1) + 2 * cout
            cin = cout
    head = max(1280, div8(1280 * width))
    total += cin * head + 2 * head + head * 1000 + 1000   # static head conv + bn, classifier
    name = {1.0: "dy_mobilenetv2_100", 0.35: "dy_mobilenetv2_035"}[width]
    assert params("dynamic_conv.arch", name) == total


def test_dy_basic_block_with_equal_kernels_is_the_static_block():
    """With its K kernels equal, a dynamic conv is that conv whatever the attention says: the
    block then computes conv → BN → ReLU → conv → BN (+ projection) → ReLU in plain torch."""
    m = archdsl.load_spec(source="from nets.dynamic_conv import DyBasicBlock\n"
                          "network T() {\n  in x: [2, 8, 9, 9]\n  out x -> b: DyBasicBlock(16, 2)\n}\n"
                          "variant t = T()\n", seed=0).eval()
    sd = m.state_dict()
    g = torch.Generator().manual_seed(1)
    w = {}
    for name in ("conv1", "conv2", "downsample.0"):
        key = f"b.{name}.conv.weight"
        w[name] = torch.randn(sd[key].shape[1:], generator=g) * 0.2
        sd[key].copy_(w[name].expand_as(sd[key]))
    for k in sd:   # random attention weights: they must not matter
        if "attention" in k:
            sd[k].copy_(torch.randn(sd[k].shape, generator=g))
    x = torch.randn(2, 8, 9, 9, generator=g)
    bn = lambda t, p: F.batch_norm(t, sd[f"b.{p}.running_mean"], sd[f"b.{p}.running_var"],
                                   sd[f"b.{p}.weight"], sd[f"b.{p}.bias"], False, 0.0, 1e-5)
    y = F.relu(bn(F.conv2d(x, w["conv1"], stride=2, padding=1), "bn1"))
    y = bn(F.conv2d(y, w["conv2"], padding=1), "bn2")
    sc = bn(F.conv2d(x, w["downsample.0"], stride=2), "downsample.1")
    assert torch.allclose(m(x), F.relu(y + sc), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# FFC-ResNet: with ratio 0 every FFC is a plain conv, so the network is ResNet-50

def test_ffc_resnet_with_no_global_channels_is_resnet50():
    assert params("ffc.arch", "ffc_resnet50", ratio=0.0) == params("resnet.arch", "resnet50")


def test_ffc_resnet50_keys_follow_the_reference_layout():
    m = archdsl.load_spec(NETS / "ffc.arch", "ffc_resnet50", input_shape=[1, 3, 64, 64],
                          layers=[1, 1, 1, 1], num_classes=10)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    # stage 1's first block: local in, half global out (ratio 0.5 of 64 and of 256 channels)
    assert shapes["layer1.0.conv1.ffc.convl2l.weight"] == (32, 64, 1, 1)
    assert shapes["layer1.0.conv1.ffc.convl2g.weight"] == (32, 64, 1, 1)
    assert "layer1.0.conv1.ffc.convg2l.weight" not in shapes
    assert shapes["layer1.0.downsample.ffc.convl2g.weight"] == (128, 64, 1, 1)
    # the global → global spectral transform of a 3x3 FFC: conv1 to out/2, Fourier unit on 2x
    assert shapes["layer2.0.conv2.ffc.convg2g.conv1.0.weight"] == (32, 64, 1, 1)
    assert shapes["layer2.0.conv2.ffc.convg2g.fu.conv_layer.weight"] == (64, 64, 1, 1)
    assert shapes["layer2.0.conv2.ffc.convg2g.conv2.weight"] == (64, 32, 1, 1)
    # stage 4's first block returns everything to the local stream
    assert "layer4.0.conv3.ffc.convl2g.weight" not in shapes
    assert shapes["layer4.0.conv3.bn_l.weight"] == (2048,)
    assert shapes["fc.weight"] == (10, 2048)


# ---------------------------------------------------------------------------------------------
# every family: forward, backward and a full-graph trace at a small size

SMALL = [
    ("dynamic_conv.arch", "dy_resnet18", dict(layers=[1, 1, 1, 1], num_classes=10), 32),
    ("dynamic_conv.arch", "dy_mobilenetv2_035", dict(num_classes=10), 32),
    ("ffc.arch", "ffc_resnet50", dict(layers=[1, 1, 1, 1], num_classes=10), 64),
    ("ffc.arch", "ffc_resnet50", dict(layers=[1, 1, 1, 1], num_classes=10, lfu=True), 64),
    ("dcn.arch", "resnet50_dcnv2", dict(layers=[1, 1, 1, 1], num_classes=10), 32),
    ("hetconv.arch", "hetconv_resnet50_p4", dict(layers=[1, 1, 1, 1], num_classes=10), 32),
]
FAST_TRACE = {"resnet50_dcnv2", "hetconv_resnet50_p4"}   # tracing the others takes 15-50 s


def small(file, variant, overrides, size):
    return archdsl.load_spec(NETS / file, variant, input_shape=[2, 3, size, size], seed=0,
                             **overrides), torch.randn(2, 3, size, size)


@pytest.mark.parametrize("file,variant,overrides,size", SMALL, ids=lambda v: str(v))
def test_small_networks_train(file, variant, overrides, size):
    m, x = small(file, variant, overrides, size)
    y = m(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("file,variant,overrides,size", [
    c if c[1] in FAST_TRACE else pytest.param(*c, marks=pytest.mark.slow) for c in SMALL],
    ids=lambda v: str(v))
def test_small_networks_compile_fullgraph(file, variant, overrides, size):
    m, x = small(file, variant, overrides, size)
    m.eval()
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x), m(x), atol=1e-5)
