"""Special convolutions beyond the per-op property harness (tests/op_cases/conv_special.py):
deformable conv against torchvision's reference outputs and by gradcheck, the FFC Fourier unit
and blocks against an independent implementation of the reference code's semantics, dynamic
conv against its per-sample definition, HetConv and IGC parameter counts against the papers'
formulas, and static FLOPs against FlopCounterMode for every block."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from archdsl.nn.conv_special import DeformConv2d, DynamicConv2d, FourierUnit
from archdsl.ops import REGISTRY
from archdsl.ops.conv_special import fft2_real_flops
from archdsl.testing.flops import count_flops

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from fill import reference_input  # noqa: E402

DCN = json.loads((FIXTURES / "ops_deform_conv2d.json").read_text())


def spec(body: str, inputs: str = "in x: [B, 8, H = 8, W = 8]") -> str:
    return f"network N() {{\n  {inputs}\n  {body}\n}}\n"


def static_and_counted(text: str, *xs):
    """Static totals of a spec, its module (eval), and FlopCounterMode's count for inputs xs."""
    report = archdsl.check_spec(source=text, input_shape=[tuple(x.shape) for x in xs])
    model = archdsl.load_spec(source=text, input_shape=[tuple(x.shape) for x in xs], seed=0).eval()
    return report.totals, model, count_flops(model, *xs)


# ---------------------------------------------------------------------------------------------
# deformable convolution

@pytest.mark.parametrize("case", DCN["deform_conv2d"], ids=lambda c: c["name"])
def test_deform_conv_matches_torchvision_reference_cases(case):
    ins = case["inputs"]
    x = reference_input(ins["input"]["shape"], seed=1)
    offset = reference_input(ins["offset"]["shape"], seed=2)
    weight = reference_input(ins["weight"]["shape"], seed=3)
    tensors = {"input": x, "offset": offset, "weight": weight}
    if ins["bias"]:
        tensors["bias"] = reference_input(ins["bias"]["shape"], seed=4)
    if ins["mask"]:
        tensors["mask"] = torch.sigmoid(reference_input(ins["mask"]["shape"], seed=5))
    for k, t in tensors.items():  # regenerated the same tensors
        assert t.double().sum().item() == pytest.approx(ins[k]["sum"], abs=1e-4)
    args, implied = case["args"], case["implied"]
    kh, kw = ins["weight"]["shape"][2:]
    names = ["x", "offset"] + (["mask"] if ins["mask"] else [])
    decl = "\n  ".join(f"in {n}: {list(tensors['input' if n == 'x' else n].shape)}" for n in names)
    text = spec(f"out ({', '.join(names)}) -> dcn: deform_conv({ins['weight']['shape'][0]}, "
                f"({kh}, {kw}), stride={tuple(args['stride'])}, pad={tuple(args['padding'])}, "
                f"dilation={tuple(args['dilation'])}, groups={implied['groups']}, "
                f"offset_groups={implied['offset_groups']}, bias={'true' if ins['bias'] else 'false'})",
                decl)
    feeds = [x, offset] + ([tensors["mask"]] if ins["mask"] else [])
    totals, model, counted = static_and_counted(text, *feeds)
    state = {"dcn.weight": weight}
    if ins["bias"]:
        state["dcn.bias"] = tensors["bias"]
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        y = model(*feeds)
    want = torch.tensor(case["output"])
    assert list(y.shape) == case["output_shape"]
    assert (y - want).abs().max().item() <= 1e-5
    assert totals.flops == counted


def _deform_fn(module):
    def f(x, offset, mask, weight, bias):
        return torch.func.functional_call(module, {"weight": weight, "bias": bias}, (x, offset, mask))
    return f


@pytest.mark.parametrize("cfg", [
    dict(c=2, out=3, k=(3, 3), stride=(1, 1), pad=(1, 1), dil=(1, 1), groups=1, og=1, hw=(4, 3)),
    dict(c=4, out=2, k=(2, 3), stride=(2, 1), pad=(1, 0), dil=(1, 2), groups=2, og=2, hw=(5, 6)),
])
@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_gradcheck_float64(cfg, modulated, one_thread):
    g = torch.Generator().manual_seed(7)
    m = DeformConv2d(cfg["c"], cfg["out"], cfg["k"], cfg["stride"], cfg["pad"], cfg["dil"],
                     cfg["groups"], cfg["og"], True).double()
    h, w = cfg["hw"]
    kk = cfg["k"][0] * cfg["k"][1]
    ho = (h + 2 * cfg["pad"][0] - cfg["dil"][0] * (cfg["k"][0] - 1) - 1) // cfg["stride"][0] + 1
    wo = (w + 2 * cfg["pad"][1] - cfg["dil"][1] * (cfg["k"][1] - 1) - 1) // cfg["stride"][1] + 1
    dt = dict(dtype=torch.float64)
    x = torch.randn(2, cfg["c"], h, w, generator=g, **dt).requires_grad_()
    # offsets large enough that some taps fall outside the image (the zero-padding branch)
    offset = (1.5 * torch.randn(2, 2 * cfg["og"] * kk, ho, wo, generator=g, **dt)).requires_grad_()
    mask = torch.rand(2, cfg["og"] * kk, ho, wo, generator=g, **dt).requires_grad_() if modulated else None
    weight = torch.randn(m.weight.shape, generator=g, **dt).requires_grad_()
    bias = torch.randn(cfg["out"], generator=g, **dt).requires_grad_()
    inputs = (x, offset, mask, weight, bias)
    assert torch.autograd.gradcheck(_deform_fn(m), inputs, eps=1e-6, atol=1e-5)


def test_deform_conv_with_zero_offsets_is_a_conv():
    g = torch.Generator().manual_seed(0)
    m = DeformConv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, offset_groups=2)
    x = torch.randn(2, 4, 9, 9, generator=g)
    offset = torch.zeros(2, 2 * 2 * 9, 5, 5)
    ref = F.conv2d(x, m.weight, m.bias, 2, 1, 1, 2)
    torch.testing.assert_close(m(x, offset), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m(x, offset, torch.ones(2, 18, 5, 5)), ref, atol=1e-5, rtol=1e-5)
    # a whole-pixel offset is a shifted conv: (dy, dx) = (1, 0) on every tap
    offset[:, 0::2] = 1.0
    shifted = F.conv2d(F.pad(x, (1, 1, 0, 2)), m.weight, m.bias, 2, 0, 1, 2)  # rows 2·ho + i
    torch.testing.assert_close(m(x, offset), shifted, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_block_starts_on_the_regular_grid(modulated):
    """conv_offset is zero-initialised: a fresh DeformConv is a conv (v2: with masks 0.5)."""
    text = spec(f"out x -> d: DeformConv(6, 3, stride=2, groups=2, offset_groups=2, "
                f"modulated={'true' if modulated else 'false'})")
    x = torch.randn(2, 8, 8, 8)
    totals, model, counted = static_and_counted(text, x)
    sd = model.state_dict()
    chs = (3 if modulated else 2) * 2 * 9
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [
        ("d.conv_offset.weight", (chs, 8, 3, 3)), ("d.conv_offset.bias", (chs,)),
        ("d.conv.weight", (6, 4, 3, 3)), ("d.conv.bias", (6,))]
    assert not sd["d.conv_offset.weight"].any() and not sd["d.conv_offset.bias"].any()
    with torch.no_grad():
        y = model(x)
        conv = F.conv2d(x, sd["d.conv.weight"], None, 2, 1, 1, 2)
    bias = sd["d.conv.bias"].view(1, -1, 1, 1)
    torch.testing.assert_close(y, (0.5 if modulated else 1.0) * conv + bias, atol=1e-5, rtol=1e-5)
    assert totals.flops == counted
    assert totals.params == sum(v.numel() for v in sd.values())


def test_deform_conv_other_flops_formula():
    op = REGISTRY["deform_conv"]
    a = op.Attrs(out=6, kernel=3, stride=2, groups=2, offset_groups=2)
    ins = [(2, 4, 9, 9), (2, 36, 5, 5), (2, 18, 5, 5)]
    out = op.infer(a, ins)
    sites = 2 * 9 * 5 * 5
    assert op.other_flops(a, ins, out) == sites * (10 * 2 + 9 * 4) + 2 * 6 * 5 * 5
    assert op.other_flops(a, ins[:2], out) == sites * (10 * 2 + 8 * 4) + 2 * 6 * 5 * 5


# ---------------------------------------------------------------------------------------------
# transposed convolution

@pytest.mark.parametrize("attrs, hw, want", [
    ("8, 4, 2, 1", (8, 8), (16, 16)),                       # the DCGAN upsampler doubles
    ("8, 3, 2, 1, output_padding=1", (8, 5), (16, 10)),      # output_padding picks the even size
    ("6, (3, 2), (2, 1), (0, 1), groups=2, dilation=2", (4, 5), (11, 5)),
])
def test_conv_transpose_sizes_weights_and_flops(attrs, hw, want):
    text = spec(f"out x -> up: conv_transpose({attrs})", f"in x: [B, 4, H = {hw[0]}, W = {hw[1]}]")
    x = torch.randn(2, 4, *hw)
    totals, model, counted = static_and_counted(text, x)
    m = model.up
    with torch.no_grad():
        y = model(x)
        ref = F.conv_transpose2d(x, m.weight, m.bias, m.stride, m.padding, m.output_padding, m.groups,
                                 m.dilation)
    assert y.shape[2:] == want
    torch.testing.assert_close(y, ref)
    kh, kw = m.kernel_size
    assert totals.flops == counted == 2 * 2 * hw[0] * hw[1] * 4 * (m.out_channels // m.groups) * kh * kw


# ---------------------------------------------------------------------------------------------
# Fast Fourier Convolution

class RefFourierUnit(nn.Module):
    """The reference FourierUnit's computation, written independently: the spectrum's real and
    imaginary parts interleaved per channel, a 1x1 conv, BN, ReLU, back."""

    def __init__(self, cin, cout, groups=1):
        super().__init__()
        self.conv_layer = nn.Conv2d(2 * cin, 2 * cout, 1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(2 * cout)

    def forward(self, x):
        b, c, h, w = x.shape
        spec_ = torch.view_as_real(torch.fft.rfftn(x, dim=(-2, -1), norm="ortho"))  # [b,c,h,w',2]
        z = spec_.permute(0, 1, 4, 2, 3).reshape(b, 2 * c, h, -1)
        z = F.relu(self.bn(self.conv_layer(z)))
        z = z.reshape(b, -1, 2, h, z.shape[-1]).permute(0, 1, 3, 4, 2).contiguous()
        return torch.fft.irfftn(torch.view_as_complex(z), s=(h, w), dim=(-2, -1), norm="ortho")


class RefSpectralTransform(nn.Module):
    def __init__(self, cin, cout, stride=1, groups=1, enable_lfu=True):
        super().__init__()
        self.stride, self.enable_lfu = stride, enable_lfu
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cout // 2, 1, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout // 2), nn.ReLU())
        self.fu = RefFourierUnit(cout // 2, cout // 2, groups)
        if enable_lfu:
            self.lfu = RefFourierUnit(cout // 2, cout // 2, groups)
        self.conv2 = nn.Conv2d(cout // 2, cout, 1, groups=groups, bias=False)

    def forward(self, x):
        if self.stride == 2:
            x = F.avg_pool2d(x, 2, 2)
        x = self.conv1(x)
        total = x + self.fu(x)
        if self.enable_lfu:
            c, h, w = x.shape[1:]
            q = x[:, :c // 4]
            q = torch.cat([q[:, :, :h // 2], q[:, :, h // 2:]], dim=1)
            q = torch.cat([q[:, :, :, :w // 2], q[:, :, :, w // 2:]], dim=1)
            total = total + self.lfu(q).repeat(1, 1, 2, 2)
        return self.conv2(total)


class RefFFC(nn.Module):
    """Two streams as a tuple, missing paths absent (the reference uses Identity on 0)."""

    def __init__(self, cin, cout, k, rin, rout, stride=1, padding=0, groups=1, enable_lfu=True):
        super().__init__()
        self.in_cg = int(cin * rin)
        self.in_cl = cin - self.in_cg
        self.out_cg = int(cout * rout)
        self.out_cl = cout - self.out_cg
        conv = lambda i, o: nn.Conv2d(i, o, k, stride, padding, 1, groups, False)  # noqa: E731
        if self.in_cl and self.out_cl:
            self.convl2l = conv(self.in_cl, self.out_cl)
        if self.in_cl and self.out_cg:
            self.convl2g = conv(self.in_cl, self.out_cg)
        if self.in_cg and self.out_cl:
            self.convg2l = conv(self.in_cg, self.out_cl)
        if self.in_cg and self.out_cg:
            self.convg2g = RefSpectralTransform(self.in_cg, self.out_cg, stride,
                                                1 if groups == 1 else groups // 2, enable_lfu)

    def forward(self, xl, xg):
        def path(name, v):
            return getattr(self, name)(v) if hasattr(self, name) else 0
        yl = path("convl2l", xl) + path("convg2l", xg)
        yg = path("convl2g", xl) + path("convg2g", xg)
        return yl, yg


def test_fourier_unit_matches_the_reference_layout():
    torch.manual_seed(0)
    ours, ref = FourierUnit(3, 5, groups=1).eval(), RefFourierUnit(3, 5).eval()
    ref.bn.running_mean.normal_()
    ref.bn.running_var.uniform_(0.5, 1.5)
    ours.load_state_dict(ref.state_dict(), strict=True)
    for h, w in [(6, 8), (5, 7), (1, 4)]:
        x = torch.randn(2, 3, h, w)
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)


def test_fourier_unit_gradcheck_float64(one_thread):
    torch.manual_seed(0)
    m = FourierUnit(2, 3, groups=2).double().eval()
    with torch.no_grad():
        m.bn.running_var.uniform_(0.5, 1.5)
        m.bn.bias.add_(1.0)  # keep most pre-activations positive, away from ReLU's kink at 0
    names = [k for k, _ in m.named_parameters()]
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def f(x, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps)), (x,))
    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


def test_fourier_unit_costs():
    op = REGISTRY["fourier_unit"]
    a = op.Attrs(out=3)
    ins = [(2, 4, 8, 6)]
    out = op.infer(a, ins)
    per_plane = 2.5 * 8 * 6 * math.log2(6) + 5 * 4 * 8 * math.log2(8)
    assert fft2_real_flops(8, 6) == round(per_plane)
    assert op.other_flops(a, ins, out) == 2 * (4 + 3) * round(per_plane) + 3 * 2 * 6 * 8 * 4
    assert op.flops(a, ins, out) == 2 * 2 * 6 * 8 * 4 * 8
    text = spec("out x -> fu: fourier_unit(3)", "in x: [B, 4, H = 8, W = 6]")
    totals, _, counted = static_and_counted(text, torch.randn(2, 4, 8, 6))
    assert totals.flops == counted  # FlopCounterMode counts the 1x1 conv, not the FFTs


FFC_CASES = [  # (C, out, ratio_gin, ratio_gout, stride, lfu, groups, H, W)
    (16, 32, 0.0, 0.5, 1, True, 1, 8, 8),
    (16, 32, 0.5, 0.5, 1, True, 1, 8, 8),
    (16, 32, 0.5, 0.5, 2, True, 1, 8, 8),
    (16, 16, 0.75, 0.25, 1, False, 1, 8, 8),
    (16, 32, 0.25, 0.75, 1, True, 1, 8, 8),
    (16, 16, 0.5, 0.0, 1, True, 1, 8, 8),
    (16, 32, 1.0, 1.0, 1, True, 1, 8, 8),
    (16, 32, 0.5, 0.5, 1, True, 2, 8, 8),
    (12, 20, 0.5, 0.4, 1, False, 1, 7, 9),   # odd plane: no LFU
    (16, 32, 0.5, 0.5, 2, True, 1, 8, 12),   # non-square: the LFU halves H and W separately
    (10, 30, 0.3, 0.7, 1, False, 1, 6, 10),  # int(30 · 0.7) = 20 global channels
]


@pytest.mark.parametrize("C, out, rin, rout, stride, lfu, groups, H, W", FFC_CASES)
def test_ffc_split_keys_and_outputs_match_the_reference(C, out, rin, rout, stride, lfu, groups, H, W):
    text = spec(f"out x -> ffc: FFC({out}, 3, {rin}, {rout}, stride={stride}, groups={groups}, "
                f"enable_lfu={'true' if lfu else 'false'})", f"in x: [B, {C}, H = {H}, W = {W}]")
    x = torch.randn(2, C, H, W)
    totals, model, counted = static_and_counted(text, x)
    ref = RefFFC(C, out, 3, rin, rout, stride, 1, groups, lfu).eval()
    # the streams' channel counts: int(C · ratio) global channels, the rest local
    in_cg, out_cg = int(C * rin), int(out * rout)
    in_cl, out_cl = C - in_cg, out - out_cg
    ho, wo = (H - 1) // stride + 1, (W - 1) // stride + 1
    g = model.arch_graph
    for name, cin, cout in [("convl2l", in_cl, out_cl), ("convl2g", in_cl, out_cg),
                            ("convg2l", in_cg, out_cl)]:
        present = f"ffc.{name}" in {n.id for n in g.nodes()}
        assert present == (cin > 0 and cout > 0)
        if present:
            assert g.node(f"ffc.{name}").shape == (2, cout, ho, wo)
            assert g.input_shapes(g.node(f"ffc.{name}"))[0][1] == cin
    if in_cg and out_cg:
        assert g.node("ffc.convg2g.conv2").shape == (2, out_cg, ho, wo)
        assert g.node("ffc.convg2g.fu").shape[1] == out_cg // 2
    # keys and shapes equal the reference's, so its state_dict loads strictly
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = {f"ffc.{k}": tuple(v.shape) for k, v in ref.state_dict().items()}
    assert got == want
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                v.copy_(torch.randn_like(v) * 0.3 + (1.0 if k.endswith("running_var") else 0.0))
        ref.load_state_dict({k[4:]: v for k, v in model.state_dict().items()}, strict=True)
        y = model(x)
        yl, yg = ref(x[:, :in_cl], x[:, in_cl:])
    want_y = torch.cat([t for t in (yl, yg) if isinstance(t, torch.Tensor)], dim=1)
    assert y.shape == (2, out, ho, wo)
    torch.testing.assert_close(y, want_y, atol=1e-4, rtol=1e-4)
    assert totals.flops == counted


def test_ffc_bn_act_keys_and_streams():
    text = spec("out x -> b: FFC_BN_ACT(32, 3, 0.5, 0.25, act=relu)", "in x: [B, 16, H = 8, W = 8]")
    model = archdsl.load_spec(source=text)
    sd = model.state_dict()
    assert sd["b.bn_l.weight"].shape == (24,) and sd["b.bn_g.weight"].shape == (8,)
    assert [k for k in sd if not k.startswith("b.ffc.")][:2] == ["b.bn_l.weight", "b.bn_l.bias"]
    assert model(torch.randn(1, 16, 8, 8)).shape == (1, 32, 8, 8)
    with pytest.raises(archdsl.ArchError):  # the LFU needs an even plane
        archdsl.load_graph(source=spec("out x -> f: FFC(16, 3, 0.5, 0.5)", "in x: [B, 16, H = 7, W = 8]"))
    with pytest.raises(archdsl.ArchError):  # and chs // 2 divisible by 4 (20 // 2 = 10 here)
        archdsl.load_graph(source=spec("out x -> f: FFC(40, 3, 0.5, 0.5)", "in x: [B, 16, H = 8, W = 8]"))
    archdsl.load_graph(source=spec("out x -> f: FFC(40, 3, 0.5, 0.5, enable_lfu=false)",
                                   "in x: [B, 16, H = 7, W = 8]"))


# ---------------------------------------------------------------------------------------------
# dynamic convolution

def test_dynamic_conv_is_the_per_sample_aggregated_conv():
    torch.manual_seed(0)
    m = DynamicConv2d(6, 4, 3, num_kernels=3, stride=2, padding=1, groups=2)
    x = torch.randn(3, 6, 7, 7)
    attn = torch.softmax(torch.randn(3, 3), dim=1)
    y = m(x, attn)
    for b in range(3):
        wb = torch.einsum("k,koihw->oihw", attn[b], m.weight)
        bb = attn[b] @ m.bias
        torch.testing.assert_close(y[b:b + 1], F.conv2d(x[b:b + 1], wb, bb, 2, 1, 1, 2),
                                   atol=1e-5, rtol=1e-5)


def test_dynamic_conv_block_attention_keys_and_flops():
    text = spec("out x -> d: DynamicConv(12, 3, K=4, reduction=4, temperature=30.0, stride=2)")
    x = torch.randn(2, 8, 8, 8)
    totals, model, counted = static_and_counted(text, x)
    sd = model.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "d.attention.fc1.weight": (2, 8, 1, 1), "d.attention.fc2.weight": (4, 2, 1, 1),
        "d.conv.weight": (4, 12, 8, 3, 3), "d.conv.bias": (4, 12)}
    assert totals.flops == counted
    # the attention weights: softmax over K with temperature 30
    g = model.arch_graph
    att = next(n for n in g.nodes() if n.op == "softmax")
    assert att.shape == (2, 4)
    with torch.no_grad():
        pooled = x.mean(dim=(2, 3), keepdim=True)
        logits = F.conv2d(F.relu(F.conv2d(pooled, sd["d.attention.fc1.weight"])),
                          sd["d.attention.fc2.weight"]).flatten(1)
        pi = torch.softmax(logits / 30.0, dim=1)
        ref = DynamicConv2d(8, 12, 3, 4, stride=2, padding=1)
        ref.load_state_dict({"weight": sd["d.conv.weight"], "bias": sd["d.conv.bias"]})
        torch.testing.assert_close(model(x), ref(x, pi))
    # the RGB special case of the reference: K hidden units for a 3-channel input
    g3 = archdsl.load_graph(source=spec("out x -> d: DynamicConv(8, 3)", "in x: [B, 3, H = 8, W = 8]"))
    assert g3.node("d.attention.fc1").shape[1] == 4


# ---------------------------------------------------------------------------------------------
# HetConv

@pytest.mark.parametrize("M, N, P, stride", [(8, 8, 1, 1), (8, 16, 2, 1), (16, 16, 4, 2),
                                             (32, 64, 8, 1), (12, 6, 3, 1)])
def test_hetconv_params_and_flops_are_the_papers(M, N, P, stride):
    text = spec(f"out x -> h: HetConv({N}, {P}, stride={stride})", f"in x: [B, {M}, H = 8, W = 8]")
    x = torch.randn(2, M, 8, 8)
    totals, model, counted = static_and_counted(text, x)
    params = 9 * N * M // P + N * (M - M // P)   # Singh et al. 2019, Sec. 3
    assert totals.params == params
    ho = (8 - 1) // stride + 1
    assert totals.flops == counted == 2 * 2 * params * ho * ho
    # the same function as a dense 3x3 conv in which filter n of group g has 3x3 kernels on input
    # block g and 1x1 kernels (the centre tap) on every other block, in the order g+1, …, g+P-1
    sd = model.state_dict()
    b, per = M // P, N // P
    dense = torch.zeros(N, M, 3, 3)
    for n in range(N):
        g = n // per
        dense[n, g * b:(g + 1) * b] = sd["h.gwc.weight"][n]
        if P > 1:
            for j, blk in enumerate([(g + s) % P for s in range(1, P)]):
                dense[n, blk * b:(blk + 1) * b, 1, 1] = sd["h.pwc.weight"][n, j * b:(j + 1) * b, 0, 0]
    # every filter: M/P kernels of 3x3 and M - M/P of 1x1
    nonzero = (dense != 0).flatten(2).sum(-1)
    assert ((nonzero == 9).sum(1) == b).all() and ((nonzero == 1).sum(1) == M - b).all()
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.conv2d(x, dense, None, stride, 1), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# IGC

def _connectivity(model, c, hw=6):
    """[out channel, in channel] → does the output depend on the input channel (centre pixel)."""
    x = torch.randn(1, c, hw, hw, requires_grad=True)
    y = model(x)
    rows = []
    for o in range(y.shape[1]):
        (gx,) = torch.autograd.grad(y[0, o, hw // 2, hw // 2], x, retain_graph=True)
        rows.append(gx[0].abs().flatten(1).sum(1) > 0)
    return torch.stack(rows)


@pytest.mark.parametrize("L, M", [(2, 4), (4, 2), (4, 4), (8, 3)])
def test_igcv1_params_and_complementary_dense_connectivity(L, M):
    G = L * M
    text = spec(f"out x -> igc: IGCV1({L}, {M})", f"in x: [B, {G}, H = 6, W = 6]")
    x = torch.randn(2, G, 6, 6)
    totals, model, counted = static_and_counted(text, x)
    # Zhang et al. 2017, Sec. 3.3: T = L·M·M·S + M·L·L with S = 9
    assert totals.params == L * M * M * 9 + M * L * L
    assert totals.flops == counted == 2 * 2 * totals.params * 36
    assert _connectivity(model, G).all()   # every output sees every input channel


@pytest.mark.parametrize("C, ks, dense", [(16, [4, 4], True), (8, [2, 2, 2], True), (12, [4, 3], True),
                                         (16, [4], False), (16, [2, 2], False)])
def test_igcv2_params_and_connectivity(C, ks, dense):
    text = spec(f"out x -> igc: IGCV2({ks})", f"in x: [B, {C}, H = 6, W = 6]")
    x = torch.randn(2, C, 6, 6)
    totals, model, counted = static_and_counted(text, x)
    # Xie et al. 2018, Sec. 3.2: a channel-wise 3x3 (9·C) and 1x1 group convs (C·K_l each)
    assert totals.params == 9 * C + C * sum(ks)
    assert totals.flops == counted
    conn = _connectivity(model, C)
    assert bool(conn.all()) == dense
    assert (conn.sum(1) == math.prod(ks)).all()   # each output sees ∏ K_l input channels
    if dense:  # the permutations compose to the identity: identity branches give the input back
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.zero_()
                if k.endswith("dw.weight"):
                    v[:, 0, 1, 1] = 1.0
                else:
                    kl = v.shape[1]
                    v[torch.arange(C), torch.arange(C) % kl, 0, 0] = 1.0
            torch.testing.assert_close(model(x), x)


# ---------------------------------------------------------------------------------------------
# every block compiles without graph breaks

def test_blocks_compile_fullgraph():
    text = spec("out x -> d: DeformConv(8, 3, modulated=true) -> f: FFC(16, 3, 0.0, 0.5)"
                " -> dy: DynamicConv(16, 3) -> h: HetConv(16, 4) -> i: IGCV1(4, 4)"
                " -> up: conv_transpose(8, 4, 2, 1)")
    model = archdsl.load_spec(source=text, seed=0).eval()
    x = torch.randn(2, 8, 8, 8)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # graph breaks fail
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-5)
