"""IGCV1 networks (stdlib/nets/igc.arch) against an independent transcription of the authors'
MXNet release (hellozting/InterleavedGroupConvolutions: network/resnet_igc_imgnet_d18.py,
network/resnet_igc.py and the models/*-symbol.json files)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import archdsl
from archdsl.ir.cost import cost

SPEC = Path(__file__).resolve().parents[1] / "stdlib" / "nets" / "igc.arch"


# ---- an independent transcription of the release ------------------------------------------

def reorder(x, branch_factor):
    """MXNet `Reorder(branch_factor=g)`: channel l*(C/g)+m moves to m*g+l."""
    b, c, h, w = x.shape
    return x.view(b, branch_factor, c // branch_factor, h, w).transpose(1, 2).reshape(b, c, h, w)


class RefIGC(nn.Module):  # get_igc: conv1 (primary) - reorder - conv2 (secondary) - reorder - bn
    def __init__(self, cin, kout, stride, primary, secondary):
        super().__init__()
        self.p, self.s = primary, secondary
        self.conv1 = nn.Conv2d(cin, kout, 3, stride, 1, groups=primary, bias=False)
        self.conv2 = nn.Conv2d(kout, kout, 1, groups=secondary, bias=False)
        self.bn = nn.BatchNorm2d(kout)

    def forward(self, x):
        return self.bn(reorder(self.conv2(reorder(self.conv1(x), self.p)), self.s))


class RefFusion(nn.Module):  # get_fusion: grouped 1x1 projection shortcut + two IGCs
    def __init__(self, kin, kout, stride, primary, sec1, sec2):
        super().__init__()
        self.igc1 = RefIGC(kin, kout, stride, primary, sec1)
        self.igc2 = RefIGC(kout, kout, 1, primary, sec2)
        self.proj = None
        if kin != kout:
            self.proj = nn.Sequential(nn.Conv2d(kin, kout, 1, stride, groups=primary, bias=False),
                                      nn.BatchNorm2d(kout))

    def forward(self, x):
        sc = x if self.proj is None else self.proj(x)
        return F.relu(sc + self.igc2(F.relu(self.igc1(x))))


class RefImageNet(nn.Module):
    """resnet_igc_imgnet_d18 / the L4M32 and L16M16 symbols: stem of `stem` channels."""
    def __init__(self, Ls, Ms, stem, num_classes=1000):
        super().__init__()
        self.conv = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(stem)
        blocks, kin = [], stem
        for i, (L, M) in enumerate(zip(Ls, Ms)):
            for j in range(2):
                blocks.append(RefFusion(kin, L * M, 2 if i > 0 and j == 0 else 1, L, M, M))
                kin = L * M
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(kin, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 3, 2, 1)
        return self.fc(self.blocks(x).mean((2, 3)))


class RefCifar(nn.Module):
    """network/resnet_igc.py: the first IGC of a block has kin / L secondary partitions."""
    def __init__(self, L, M, depth, num_classes=10):
        super().__init__()
        n, c = (depth - 2) // 6, L * M
        self.conv = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        blocks, kin = [], c
        for kout in (c, 2 * c, 4 * c):
            for _ in range(n):
                blocks.append(RefFusion(kin, kout, 1 if kin == kout else 2, L, kin // L, kout // L))
                kin = kout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(kin, num_classes)

    def forward(self, x):
        return self.fc(self.blocks(F.relu(self.bn(self.conv(x)))).mean((2, 3)))


def _copy_in_order(ours: nn.Module, ref: nn.Module):
    """Load ours' tensors into the transcription, matched by order of appearance and shape."""
    ref_sd, ours_sd = ref.state_dict(), ours.state_dict()
    # both hold a block's two IGCs (primary, secondary, bn) before its shortcut projection
    ok = [k for k in ours_sd if not k.endswith("num_batches_tracked")]
    rk = [k for k in ref_sd if not k.endswith("num_batches_tracked")]
    assert len(ok) == len(rk)
    for a, b in zip(ok, rk):
        assert ours_sd[a].shape == ref_sd[b].shape, (a, b)
        ref_sd[b] = ours_sd[a].clone()
    ref.load_state_dict(ref_sd)


def _randomise_bn(m: nn.Module, seed=0):
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.data = torch.rand(mod.num_features, generator=g) + 0.5
            mod.bias.data = torch.randn(mod.num_features, generator=g) * 0.1
            mod.running_mean = torch.randn(mod.num_features, generator=g) * 0.1
            mod.running_var = torch.rand(mod.num_features, generator=g) + 0.5


# ---- tests ----------------------------------------------------------------------------------

def _release_params(Ls, Ms, stem, num_classes=1000):
    """Parameter count of the release's symbols, written out from the JSON layout."""
    p = 3 * 49 * stem + 2 * stem
    kin = stem
    for i, (L, M) in enumerate(zip(Ls, Ms)):
        w = L * M
        for j in range(2):
            p += w * (kin // L) * 9 + w * (w // M) + 2 * w   # igc1: primary, secondary, bn
            p += w * (w // L) * 9 + w * (w // M) + 2 * w     # igc2
            if kin != w:
                p += w * (kin // L) + 2 * w                  # grouped projection + bn
            kin = w
    return p + kin * num_classes + num_classes


@pytest.mark.parametrize("variant, Ls, Ms, stem", [
    ("igcv1_l4m32_ident", [4] * 4, [32, 64, 128, 256], 128),
    ("igcv1_l16m16_ident", [16] * 4, [16, 32, 64, 128], 256),
    ("igcv1_l100m2_ident", [100, 200, 400, 800], [2] * 4, 100),
])
def test_variant_params_are_the_release_symbols(variant, Ls, Ms, stem):
    assert cost(archdsl.load_graph(variant)).totals.params == _release_params(Ls, Ms, stem)


def test_imagenet_net_matches_the_release_transcription():
    Ls, Ms, stem = [2, 2, 4, 4], [4, 8, 8, 16], 8   # doubles M, then L, then M: both schedules
    ours = archdsl.load_spec(SPEC, "IGCResNet", input_shape=[2, 3, 64, 64], seed=0,
                             L=Ls, M=Ms, stem_width=stem, num_classes=7).eval()
    ref = RefImageNet(Ls, Ms, stem, num_classes=7).eval()
    _randomise_bn(ours)
    _copy_in_order(ours, ref)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


def test_cifar_net_matches_the_release_transcription():
    ours = archdsl.load_spec(SPEC, "IGCCifar", input_shape=[2, 3, 16, 16], seed=0,
                             L=4, M=2, depth=14, num_classes=5).eval()
    ref = RefCifar(4, 2, 14, num_classes=5).eval()
    _randomise_bn(ours)
    _copy_in_order(ours, ref)
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)
    # the down-sampling block's first secondary conv has Cin / L = 2 partitions of 4 channels
    sd = ours.state_dict()
    assert sd["layer2.0.secondary1.weight"].shape == (16, 8, 1, 1)


def test_flops_match_flop_counter_and_training_step_compiles():
    m = archdsl.load_spec(SPEC, "IGCResNet", input_shape=[2, 3, 32, 32], seed=0,
                          L=[2, 2, 2, 2], M=[2, 4, 8, 16], stem_width=4, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as fc:
        y = m(x)
    assert fc.get_total_flops() == cost(m.arch_graph).totals.flops
    y.square().mean().backward()
    assert all(p.grad is not None for p in m.parameters())
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), m(x))


def test_init_is_the_release_msra_and_zero_fc_bias():
    m = archdsl.load_spec(SPEC, "IGCResNet", input_shape=[1, 3, 32, 32], seed=0,
                          L=[4, 4, 4, 4], M=[32, 32, 32, 32], stem_width=128, num_classes=10)
    w = m.state_dict()["layer1.0.igc1.primary.weight"]   # fan_in = 32 * 9
    assert abs(w.std().item() - (2 / (32 * 9)) ** 0.5) < 0.05 * (2 / (32 * 9)) ** 0.5
    assert torch.count_nonzero(m.state_dict()["fc.bias"]) == 0
