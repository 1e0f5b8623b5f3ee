"""Generative, GAN-normalisation and sequence ops and blocks against independent computations:
sigmoid focal loss vs torchvision's outputs (tests/fixtures/ops_sigmoid_focal_loss.json), VQ
(nearest code, straight-through gradient, losses), the reparameterisation and its KL, StyleGAN's
modulated conv / noise / minibatch std / AdaIN / pixel norm / equalized LR, conditional BN,
spectral norm, the projection head, the GRU, and the transformer decoder layer vs
torch.nn.TransformerDecoderLayer.
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
from archdsl.testing.flops import count_flops

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from fill import reference_input  # noqa: E402


def net(body: str, inputs: str, **overrides):
    """A one-network spec around `body`; returns the built module in eval mode."""
    src = f"network T() {{\n{inputs}\n{body}\n}}\nvariant t = T()\n"
    return archdsl.load_spec(source=src, **overrides).eval()


def static(body: str, inputs: str):
    src = f"network T() {{\n{inputs}\n{body}\n}}\nvariant t = T()\n"
    return archdsl.check_spec(source=src).totals


# ---------------------------------------------------------------------------------------------
# sigmoid focal loss: torchvision's outputs

FOCAL = json.loads((FIXTURES / "ops_sigmoid_focal_loss.json").read_text())["sigmoid_focal_loss"]


def _regen(spec: dict) -> torch.Tensor:
    gen = spec["gen"]
    seed = int(gen.split("seed=")[1].split(")")[0])
    x = reference_input(spec["shape"], seed=seed)
    if gen.startswith("(reference_input") and gen.endswith("> 0).float()"):
        x = (x > 0).float()
    elif gen.startswith("torch.sigmoid("):
        x = torch.sigmoid(x)
    else:
        assert gen.startswith("reference_input("), gen
    assert abs(x.double().sum().item() - spec["sum"]) < 1e-4
    return x


@pytest.mark.parametrize("case", FOCAL, ids=[c["name"] for c in FOCAL])
def test_sigmoid_focal_loss_matches_torchvision(case):
    x, t = _regen(case["inputs"]["inputs"]), _regen(case["inputs"]["targets"])
    a = case["args"]
    shape = ", ".join(str(d) for d in x.shape)
    m = net(f'out sigmoid_focal_loss(x, t, alpha={a["alpha"]}, gamma={a["gamma"]}, '
            f'reduction="{a["reduction"]}")', f"in x: [{shape}]\nin t: [{shape}]")
    with torch.no_grad():
        y = m(x, t)
    want = torch.tensor(case["output"], dtype=torch.float32).reshape(case["output_shape"])
    assert list(y.shape) == case["output_shape"]
    assert torch.allclose(y, want, rtol=1e-5, atol=1e-6), (y - want).abs().max()


# ---------------------------------------------------------------------------------------------
# vector quantisation

def _vq_model():
    return net("q = x -> quantize: vq(6, 4, 0.25)\nout a = q[0]\nout b = q[1]\nout c = q[2]\nout d = q[3]",
               "in x: [2, 4, 3, 3]")


def test_vq_picks_the_nearest_code_and_its_losses():
    m = _vq_model()
    torch.manual_seed(0)
    with torch.no_grad():
        m.quantize.embedding.weight.normal_()
    x = torch.randn(2, 4, 3, 3)
    with torch.no_grad():
        r = m(x)
    e = m.quantize.embedding.weight
    z = x.permute(0, 2, 3, 1).reshape(-1, 4)
    codes = torch.cdist(z.double(), e.double()).argmin(1)
    assert r["b"].dtype == torch.int64 and r["b"].shape == (2, 3, 3)
    assert torch.equal(r["b"].reshape(-1), codes)
    zq = e[codes].view(2, 3, 3, 4).permute(0, 3, 1, 2)
    assert torch.allclose(r["a"], zq, atol=1e-6)
    mse = ((zq - x) ** 2).mean()
    assert torch.allclose(r["c"], mse) and torch.allclose(r["d"], 0.25 * mse)


def test_vq_straight_through_gradient_is_the_identity():
    """d quantized / d x = I (the estimator), checked on the full Jacobian in float64; the
    commitment loss (w.r.t. x) and the codebook loss (w.r.t. the codebook) have true gradients,
    checked with gradcheck away from code boundaries."""
    m = _vq_model().double()
    torch.manual_seed(1)
    with torch.no_grad():
        m.quantize.embedding.weight.normal_()
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: m(v)["a"], x)
    assert torch.equal(jac.reshape(x.numel(), x.numel()), torch.eye(x.numel(), dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda v: m(v)["d"], (x.clone().requires_grad_(),))
    w = m.quantize.embedding.weight

    def codebook_loss(weight):
        with torch.no_grad():
            w.copy_(weight.detach())
        out = m.quantize(x)
        # the same loss as a function of `weight`, through the codes the module picked
        zq = F.embedding(out[1].reshape(-1), weight).view(2, 3, 3, 4).permute(0, 3, 1, 2)
        assert torch.allclose(F.mse_loss(zq, x), out[2])
        return F.mse_loss(zq, x)
    assert torch.autograd.gradcheck(codebook_loss, (w.detach().clone().requires_grad_(),))
    # and the module's own codebook loss sends its gradient to the codebook, not to x
    xr = x.clone().requires_grad_()
    m(xr)["c"].backward()
    assert xr.grad is None or torch.count_nonzero(xr.grad) == 0
    assert w.grad is not None and torch.count_nonzero(w.grad) > 0


# ---------------------------------------------------------------------------------------------
# reparameterisation

def test_reparam_kl_and_sampling():
    m = net('r = reparam(mu, lv, reduction="none")\nout z = r[0]\nout kl = r[1]',
            "in mu: [3, 5]\nin lv: [3, 5]")
    mu, lv = torch.randn(3, 5), torch.randn(3, 5)
    r = m(mu, lv)
    assert torch.equal(r["z"], mu)  # eval: the mean
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * lv).exp()),
                                           torch.distributions.Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(r["kl"], kl, atol=1e-5)
    m.train()
    torch.manual_seed(0)
    mu_big, lv_big = torch.full((4000, 5), 2.0), torch.full((4000, 5), math.log(0.25))
    z = m(mu_big, lv_big)["z"]
    assert abs(z.mean().item() - 2.0) < 0.02 and abs(z.std().item() - 0.5) < 0.02
    # gradients flow through mu and logvar (z = mu + eps · exp(lv / 2), eps fixed by the seed)
    mu_g, lv_g = mu.double().requires_grad_(), lv.double().requires_grad_()
    m.double()

    def f(a, b):
        torch.manual_seed(3)
        return m(a, b)["z"]
    assert torch.autograd.gradcheck(f, (mu_g, lv_g))


def test_reparam_one_input_splits_mu_and_logvar():
    m = net("r = reparam(h)\nout z = r[0]\nout kl = r[1]", "in h: [2, 6]")
    h = torch.randn(2, 6)
    r = m(h)
    assert torch.equal(r["z"], h[:, :3]) and r["kl"].shape == ()


# ---------------------------------------------------------------------------------------------
# StyleGAN pieces

def test_mod_conv_equals_per_sample_convolutions():
    m = net("out [x, w] -> c: mod_conv(5, 3)", "in x: [3, 4, 6, 6]\nin w: [3, 7]")
    x, w = torch.randn(3, 4, 6, 6), torch.randn(3, 7)
    with torch.no_grad():
        y = m(x, w)
        mod = m.c.modulation
        s = F.linear(w, mod.weight / math.sqrt(7), mod.bias)
        for b in range(3):
            wb = m.c.weight[0] / math.sqrt(4 * 9) * s[b].view(1, 4, 1, 1)
            wb = wb / torch.sqrt((wb ** 2).sum([1, 2, 3], keepdim=True) + 1e-8)
            assert torch.allclose(y[b], F.conv2d(x[b:b + 1], wb, padding=1)[0], atol=1e-5)
    assert static("out [x, w] -> c: mod_conv(5, 3)", "in x: [3, 4, 6, 6]\nin w: [3, 7]").flops == \
        count_flops(m, x, w)


def test_noise_minibatch_std_pixel_norm_adain():
    x = torch.randn(4, 6, 5, 5)
    m = net("out [x, n] -> nz: noise", "in x: [4, 6, 5, 5]\nin n: [4, 1, 5, 5]")
    n = torch.randn(4, 1, 5, 5)
    with torch.no_grad():
        m.nz.weight.copy_(torch.arange(6.0).view(1, 6, 1, 1))
    assert torch.allclose(m(x, n), x + torch.arange(6.0).view(1, 6, 1, 1) * n)
    m = net("out x -> nz: noise", "in x: [4, 6, 5, 5]")
    with torch.no_grad():
        m.nz.weight.fill_(1.0)
    assert not torch.equal(m(x), m(x))  # fresh noise every call

    y = net("out x -> minibatch_std(2, 3)", "in x: [4, 6, 5, 5]")(x)
    g = x.view(2, 2, 3, 2, 5, 5)
    sd = torch.sqrt(g.var(0, unbiased=False) + 1e-8).mean([2, 3, 4])  # [2 (groups), 3 (features)]
    assert y.shape == (4, 9, 5, 5) and torch.equal(y[:, :6], x)
    for i in range(4):
        assert torch.allclose(y[i, 6:, 0, 0], sd[i % 2], atol=1e-6)

    y = net("out x -> pixel_norm", "in x: [4, 6, 5, 5]")(x)
    assert torch.allclose(y, x / torch.sqrt((x ** 2).mean(1, keepdim=True) + 1e-8), atol=1e-6)

    s = torch.randn(4, 12)
    y = net("out adain(x, s)", "in x: [4, 6, 5, 5]\nin s: [4, 12]")(x, s)
    xn = (x - x.mean([2, 3], keepdim=True)) / torch.sqrt(x.var([2, 3], unbiased=False, keepdim=True) + 1e-5)
    assert torch.allclose(y, s[:, :6, None, None] * xn + s[:, 6:, None, None], atol=1e-5)


def test_equalized_lr_scales_at_run_time():
    m = net("out x -> l: eq_linear(3, gain=2.0, lr_mul=0.1, bias_init=0.5)", "in x: [2, 8]")
    x = torch.randn(2, 8)
    w, b = m.l.weight, m.l.bias
    assert torch.allclose(b, torch.full((3,), 0.5))
    assert torch.allclose(m(x), F.linear(x, w * 2.0 / math.sqrt(8) * 0.1, b * 0.1))
    m = net('out x -> l: eq_linear(3, act="fused_lrelu")', "in x: [2, 8]")
    assert torch.allclose(m(x), F.leaky_relu(F.linear(x, m.l.weight / math.sqrt(8), m.l.bias), 0.2) * math.sqrt(2))
    m = net("out x -> c: eq_conv(4, 3, groups=2, lr_mul=0.5)", "in x: [2, 6, 5, 5]")
    x = torch.randn(2, 6, 5, 5)
    assert torch.allclose(m(x), F.conv2d(x, m.c.weight * 0.5 / math.sqrt(27), m.c.bias * 0.5, padding=1,
                                         groups=2), atol=1e-6)


def test_stylegan_blocks_have_rosinalitys_keys():
    src_inputs = "in z: [2, 16]\nin x: [2, 4, 8, 8]"
    body = ("w = z -> mapping: MappingNetwork(2)\nh = [x, w] -> conv1: StyledConv(8)\n"
            "out [h, w] -> to_rgb: ToRGB")
    m = net(body, src_inputs)
    assert [k for k in m.state_dict()] == [
        "mapping.style.1.weight", "mapping.style.1.bias", "mapping.style.2.weight", "mapping.style.2.bias",
        "conv1.conv.weight", "conv1.conv.modulation.weight", "conv1.conv.modulation.bias",
        "conv1.noise.weight", "conv1.activate.bias",
        "to_rgb.bias", "to_rgb.conv.weight", "to_rgb.conv.modulation.weight", "to_rgb.conv.modulation.bias"]
    assert m(torch.randn(2, 16), torch.randn(2, 4, 8, 8)).shape == (2, 3, 8, 8)


# ---------------------------------------------------------------------------------------------
# conditional BN, spectral norm, projection head

def test_cond_bn_applies_the_class_scale_and_shift():
    m = net("out cond_bn(x, y, 4)", "in x: [3, 2, 4, 4]\nin y: [3] as int64")
    cbn = next(mod for mod in m.modules() if hasattr(mod, "weights"))
    with torch.no_grad():
        cbn.weights.weight.copy_(torch.arange(8.0).view(4, 2))
        cbn.biases.weight.copy_(-torch.arange(8.0).view(4, 2))
        cbn.running_mean.fill_(0.5)
        cbn.running_var.fill_(4.0)
    x, y = torch.randn(3, 2, 4, 4), torch.tensor([0, 3, 1])
    xn = (x - 0.5) / math.sqrt(4.0 + 1e-5)
    g = torch.arange(8.0).view(4, 2)[y].view(3, 2, 1, 1)
    assert torch.allclose(m(x, y), g * xn - g, atol=1e-5)


def test_spectral_norm_keys_and_unit_spectral_norm():
    m = net("out x -> d: sn_conv(6, 3)", "in x: [2, 4, 5, 5]")
    assert list(m.state_dict()) == ["d.bias", "d.parametrizations.weight.original",
                                    "d.parametrizations.weight.0._u", "d.parametrizations.weight.0._v"]
    m.train()
    for _ in range(30):  # power iterations run in training forwards
        m(torch.randn(2, 4, 5, 5))
    m.eval()
    assert abs(torch.linalg.matrix_norm(m.d.weight.flatten(1), ord=2).item() - 1.0) < 1e-3


def test_projection_head():
    m = net("out [h, y] -> head: ProjectionHead(5, sn=false)", "in h: [3, 4]\nin y: [3] as int64")
    h, y = torch.randn(3, 4), torch.tensor([4, 0, 2])
    want = F.linear(h, m.head.fc.weight, m.head.fc.bias) + (m.head.embed.weight[y] * h).sum(1, keepdim=True)
    assert torch.allclose(m(h, y), want, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# GRU and the transformer decoder layer

def test_gru_with_state_and_flops():
    body = "r = [x, h0] -> rnn: gru(6, 2, bidirectional=true, return_state=true)\nout y = r[0]\nout h = r[1]"
    inputs = "in x: [3, 5, 4]\nin h0: [4, 3, 6]"
    m = net(body, inputs)
    ref = torch.nn.GRU(4, 6, 2, batch_first=True, bidirectional=True).eval()
    ref.load_state_dict({k.removeprefix("rnn."): v for k, v in m.state_dict().items()})
    x, h0 = torch.randn(3, 5, 4), torch.randn(4, 3, 6)
    r, (y, h) = m(x, h0), ref(x, h0)
    assert torch.allclose(r["y"], y) and torch.allclose(r["h"], h)
    assert static(body, inputs).flops == count_flops(m, x, h0)


DEC = '''
network Dec(norm_first: bool = false) {
  in x: [B, 5, 16]
  in mem: [B, 7, 16]
  out [x, mem] -> layer: DecoderLayer(16, 4, 32, norm_first=norm_first)
}
variant dec = Dec()
'''


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_equals_torch(norm_first):
    m = archdsl.load_spec(source=DEC, norm_first=norm_first).eval()
    ref = torch.nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True,
                                           norm_first=norm_first).eval()
    ours = {k.removeprefix("layer."): v for k, v in m.state_dict().items()}
    sd = {k.replace("self_attn.in_proj.", "self_attn.in_proj_"): v for k, v in ours.items()
          if not k.startswith(("multihead_attn.q_proj", "multihead_attn.kv_proj"))}
    for p in ("weight", "bias"):
        sd[f"multihead_attn.in_proj_{p}"] = torch.cat([ours[f"multihead_attn.q_proj.{p}"],
                                                       ours[f"multihead_attn.kv_proj.{p}"]])
    ref.load_state_dict(sd, strict=True)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5)
    with torch.no_grad():
        assert torch.allclose(m(x, mem), ref(x, mem, tgt_mask=mask, tgt_is_causal=True), atol=1e-5)
    report = archdsl.check_spec(source=DEC, norm_first=norm_first, input_shape=[[2, 5, 16], [2, 7, 16]])
    assert report.totals.flops == count_flops(m, x, mem)
