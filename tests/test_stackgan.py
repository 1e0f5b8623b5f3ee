"""StackGAN (Zhang et al., ICCV 2017): the four networks of stdlib/gan/stackgan.arch against an
independent PyTorch port of the official code (hanzhanggit/StackGAN-Pytorch, code/model.py),
written here: same state_dict keys and shapes in order, strict load, same outputs (the
conditioning augmentation's ε drawn from the same seed), same parameter counts at the official
sizes; and the two training topologies of stdlib/gan/stackgan_train.arch: the GAN traps, the
losses against the code's formulas (miscc/utils.py), the frozen Stage-I G, a short D run.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from topology_checks import loss_curve, reaches_without_stop
from archdsl.ir.cost import cost

NETS = "stdlib/gan/stackgan.arch"
TRAIN = "stdlib/gan/stackgan_train.arch"
pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# independent port of code/model.py (the cfg values become arguments)

def conv3x3(i, o):
    return nn.Conv2d(i, o, 3, 1, 1, bias=False)


def up_block(i, o):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(i, o), nn.BatchNorm2d(o), nn.ReLU(True))


class RefResBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.block = nn.Sequential(conv3x3(ch, ch), nn.BatchNorm2d(ch), nn.ReLU(True),
                                   conv3x3(ch, ch), nn.BatchNorm2d(ch))
        self.relu = nn.ReLU(True)

    def forward(self, x):
        return self.relu(self.block(x) + x)


class RefCANet(nn.Module):
    def __init__(self, t_dim=1024, c_dim=128):
        super().__init__()
        self.c_dim = c_dim
        self.fc = nn.Linear(t_dim, c_dim * 2, bias=True)
        self.relu = nn.ReLU()

    def forward(self, t):
        x = self.relu(self.fc(t))
        mu, logvar = x[:, :self.c_dim], x[:, self.c_dim:]
        eps = torch.randn_like(mu)
        return eps * logvar.mul(0.5).exp() + mu, mu, logvar


class RefLogits(nn.Module):
    def __init__(self, ndf, nef, bcondition=True):
        super().__init__()
        self.ef_dim, self.bcondition = nef, bcondition
        if bcondition:
            self.outlogits = nn.Sequential(conv3x3(ndf * 8 + nef, ndf * 8), nn.BatchNorm2d(ndf * 8),
                                           nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * 8, 1, 4, 4), nn.Sigmoid())
        else:
            self.outlogits = nn.Sequential(nn.Conv2d(ndf * 8, 1, 4, 4), nn.Sigmoid())

    def forward(self, h, c=None):
        if self.bcondition and c is not None:
            h = torch.cat((h, c.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 4, 4)), 1)
        return self.outlogits(h).view(-1)


class RefStage1G(nn.Module):
    def __init__(self, gf_dim=128, c_dim=128, z_dim=100, t_dim=1024):
        super().__init__()
        ngf = self.gf_dim = gf_dim * 8
        self.ca_net = RefCANet(t_dim, c_dim)
        self.fc = nn.Sequential(nn.Linear(z_dim + c_dim, ngf * 16, bias=False), nn.BatchNorm1d(ngf * 16), nn.ReLU(True))
        self.upsample1 = up_block(ngf, ngf // 2)
        self.upsample2 = up_block(ngf // 2, ngf // 4)
        self.upsample3 = up_block(ngf // 4, ngf // 8)
        self.upsample4 = up_block(ngf // 8, ngf // 16)
        self.img = nn.Sequential(conv3x3(ngf // 16, 3), nn.Tanh())

    def forward(self, text, noise):
        c, mu, logvar = self.ca_net(text)
        h = self.fc(torch.cat((noise, c), 1)).view(-1, self.gf_dim, 4, 4)
        h = self.upsample4(self.upsample3(self.upsample2(self.upsample1(h))))
        return None, self.img(h), mu, logvar


class RefStage1D(nn.Module):
    def __init__(self, df_dim=64, c_dim=128):
        super().__init__()
        ndf = df_dim
        self.encode_img = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True))
        self.get_cond_logits = RefLogits(ndf, c_dim)
        self.get_uncond_logits = None

    def forward(self, image):
        return self.encode_img(image)


class RefStage2G(nn.Module):
    def __init__(self, stage1_g, gf_dim=128, c_dim=128, t_dim=1024, r_num=4):
        super().__init__()
        ngf = gf_dim
        self.ef_dim = c_dim
        self.STAGE1_G = stage1_g
        for p in self.STAGE1_G.parameters():
            p.requires_grad = False
        self.ca_net = RefCANet(t_dim, c_dim)
        self.encoder = nn.Sequential(
            conv3x3(3, ngf), nn.ReLU(True),
            nn.Conv2d(ngf, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.Conv2d(ngf * 2, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True))
        self.hr_joint = nn.Sequential(conv3x3(c_dim + ngf * 4, ngf * 4), nn.BatchNorm2d(ngf * 4), nn.ReLU(True))
        self.residual = nn.Sequential(*[RefResBlock(ngf * 4) for _ in range(r_num)])
        self.upsample1 = up_block(ngf * 4, ngf * 2)
        self.upsample2 = up_block(ngf * 2, ngf)
        self.upsample3 = up_block(ngf, ngf // 2)
        self.upsample4 = up_block(ngf // 2, ngf // 4)
        self.img = nn.Sequential(conv3x3(ngf // 4, 3), nn.Tanh())

    def forward(self, text, noise):
        _, stage1_img, _, _ = self.STAGE1_G(text, noise)
        stage1_img = stage1_img.detach()
        enc = self.encoder(stage1_img)
        c, mu, logvar = self.ca_net(text)
        c = c.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 16, 16)
        h = self.residual(self.hr_joint(torch.cat([enc, c], 1)))
        h = self.upsample4(self.upsample3(self.upsample2(self.upsample1(h))))
        return stage1_img, self.img(h), mu, logvar


class RefStage2D(nn.Module):
    def __init__(self, df_dim=64, c_dim=128):
        super().__init__()
        ndf = df_dim
        def L(i, o):
            return [nn.Conv2d(i, o, 4, 2, 1, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.2, True)]

        self.encode_img = nn.Sequential(
            nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
            *L(ndf, ndf * 2), *L(ndf * 2, ndf * 4), *L(ndf * 4, ndf * 8), *L(ndf * 8, ndf * 16), *L(ndf * 16, ndf * 32),
            conv3x3(ndf * 32, ndf * 16), nn.BatchNorm2d(ndf * 16), nn.LeakyReLU(0.2, True),
            conv3x3(ndf * 16, ndf * 8), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True))
        self.get_cond_logits = RefLogits(ndf, c_dim, True)
        self.get_uncond_logits = RefLogits(ndf, c_dim, False)

    def forward(self, image):
        return self.encode_img(image)


def kl_loss(mu, logvar):  # miscc/utils.py KL_loss
    return torch.mean(1 + logvar - mu.pow(2) - logvar.exp()) * -0.5


def _n_params(m):
    return sum(p.numel() for p in m.parameters())


def _random_state(ref):
    """Random weights and running statistics (running_var positive) for a strict load."""
    return {k: (v.abs() + 0.5 if "running_var" in k else torch.randn_like(v) * 0.1)
            if v.is_floating_point() else v for k, v in ref.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# networks (tiny widths): keys, strict load, outputs

TINY = dict(c_dim=8, t_dim=16)


def _build(name, shapes, **overrides):
    tiny = {"c_dim": 8} if name.endswith("D") else TINY  # D sees the condition, not the text
    return archdsl.load_spec(NETS, name, input_shape=shapes, seed=0, **{**tiny, **overrides})


def _same_keys(ours, want):
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in want.items()]


def test_stage1_g_matches_the_port():
    ref = RefStage1G(gf_dim=4, c_dim=8, z_dim=10, t_dim=16)
    ours = _build("StackGANStage1G", [[3, 16], [3, 10]], gf_dim=4, z_dim=10)
    sd = _random_state(ref)
    _same_keys(ours, sd)
    ref.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)
    text, z = torch.randn(3, 16), torch.randn(3, 10)
    for mode in (True, False):  # train (batch statistics) and eval (running statistics)
        ref.train(mode), ours.train(mode)
        with torch.no_grad():
            torch.manual_seed(7)
            _, img, mu, logvar = ref(text, z)
            torch.manual_seed(7)
            out = ours(text, z)
        assert out["img"].shape == (3, 3, 64, 64)
        assert torch.allclose(out["img"], img, atol=1e-5)
        assert torch.allclose(out["mu"], mu) and torch.allclose(out["logvar"], logvar)
        assert torch.allclose(out["kl"], kl_loss(mu, logvar), atol=1e-6)
    # c = mu + exp(logvar / 2) · eps is sampled in eval too (the code always samples)
    with torch.no_grad():
        a, b = ours(text, z)["img"], ours(text, z)["img"]
    assert not torch.equal(a, b)


def test_stage2_g_matches_the_port():
    s1 = RefStage1G(gf_dim=4, c_dim=8, z_dim=10, t_dim=16)
    ref = RefStage2G(s1, gf_dim=8, c_dim=8, t_dim=16, r_num=2)
    ours = _build("StackGANStage2G", [[2, 16], [2, 3, 64, 64]], gf_dim=8, r_num=2)
    sd = _random_state(ref)
    ref.load_state_dict(sd, strict=True)
    # ours holds no STAGE1_G: its keys are the code's without that prefix, in the same order
    mine = {k: v for k, v in sd.items() if not k.startswith("STAGE1_G.")}
    _same_keys(ours, mine)
    ours.load_state_dict(mine, strict=True)
    ref.eval(), ours.eval()
    text, z = torch.randn(2, 16), torch.randn(2, 10)
    with torch.no_grad():
        torch.manual_seed(3)
        lr_ref, img, mu, logvar = ref(text, z)
        torch.manual_seed(3)
        lr = ref.STAGE1_G(text, z)[1]  # the same draws, in the same order, as inside ref
        out = ours(text, lr)
    assert torch.equal(lr, lr_ref)
    assert out["img"].shape == (2, 3, 256, 256)
    assert torch.allclose(out["img"], img, atol=1e-5)
    assert torch.allclose(out["mu"], mu) and torch.allclose(out["kl"], kl_loss(mu, logvar), atol=1e-6)
    # the Stage-I image is detached, as the code does
    ours.train()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    ours(text, x)["img"].sum().backward()
    assert x.grad is None


@pytest.mark.parametrize("stage", [1, 2])
def test_discriminators_match_the_port(stage):
    if stage == 1:
        ref, shape = RefStage1D(df_dim=4, c_dim=8), (3, 3, 64, 64)
    else:
        ref, shape = RefStage2D(df_dim=2, c_dim=8), (3, 3, 256, 256)
    ours = _build(f"StackGANStage{stage}D", [list(shape), [3, 8]], df_dim=ref.encode_img[0].out_channels)
    sd = _random_state(ref)
    _same_keys(ours, sd)
    ref.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)
    ref.eval(), ours.eval()
    x, c = torch.randn(shape), torch.randn(3, 8)
    with torch.no_grad():
        h = ref(x)
        out = ours(x, c)
        cond = out if stage == 1 else out["cond"]
        # ours returns logits; the code's D_GET_LOGITS ends in a Sigmoid
        assert torch.allclose(torch.sigmoid(cond), ref.get_cond_logits(h, c), atol=1e-5)
        if stage == 2:
            assert torch.allclose(torch.sigmoid(out["uncond"]), ref.get_uncond_logits(h), atol=1e-5)
        # the condition matters: another text, another score
        other = ours(x, c.roll(1, 0))
        assert not torch.allclose(cond, other if stage == 1 else other["cond"])


@pytest.mark.parametrize("name, factory, overrides, shapes", [
    ("StackGANStage1G", lambda: RefStage1G(), {}, [[1, 1024], [1, 100]]),
    ("StackGANStage1D", lambda: RefStage1D(), {}, [[1, 3, 64, 64], [1, 128]]),
    ("StackGANStage2G", lambda: RefStage2G(RefStage1G()), {}, [[1, 1024], [1, 3, 64, 64]]),
    ("StackGANStage2D", lambda: RefStage2D(), {}, [[1, 3, 256, 256], [1, 128]]),
    # the COCO configs (cfg/coco_s1.yml, coco_s2.yml): GF_DIM 192, DF_DIM 96, R_NUM 2
    ("StackGANStage2G", lambda: RefStage2G(RefStage1G(192), 192, r_num=2), {"gf_dim": 192, "r_num": 2},
     [[1, 1024], [1, 3, 64, 64]]),
    ("StackGANStage2D", lambda: RefStage2D(96), {"df_dim": 96}, [[1, 3, 256, 256], [1, 128]]),
])
def test_official_size_parameter_counts(name, factory, overrides, shapes):
    """Counted without weights (meta device for the port); Stage-II G without its Stage-I G."""
    with torch.device("meta"):
        ref = factory()
    want = _n_params(ref) - (_n_params(ref.STAGE1_G) if hasattr(ref, "STAGE1_G") else 0)
    assert cost(archdsl.load_graph(NETS, name, input_shape=shapes, **overrides)).totals.params == want


def test_init_follows_weights_init():
    """miscc/utils.py weights_init: conv and linear weights N(0, 0.02), linear bias 0, BN gamma
    N(1, 0.02), beta 0."""
    g = archdsl.load_spec(NETS, "StackGANStage1G", input_shape=[[2, 1024], [2, 100]], seed=0, gf_dim=16)
    convs = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.Conv2d)])
    lins = [m for m in g.modules() if isinstance(m, nn.Linear)]
    bns = [m for m in g.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    lw = torch.cat([m.weight.flatten() for m in lins])
    gamma = torch.cat([m.weight for m in bns])
    for w, mean in ((convs, 0.0), (lw, 0.0), (gamma, 1.0)):
        assert abs(w.mean().item() - mean) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3
    assert all(torch.all(m.bias == 0) for m in lins if m.bias is not None)
    assert all(torch.all(m.bias == 0) for m in bns)


@pytest.mark.parametrize("name, overrides, shapes", [
    ("StackGANStage1G", {"gf_dim": 4}, [[2, 16], [2, 100]]),
    ("StackGANStage1D", {"df_dim": 4}, [[2, 3, 64, 64], [2, 8]]),
    ("StackGANStage2G", {"gf_dim": 8, "r_num": 1}, [[2, 16], [2, 3, 64, 64]]),
    ("StackGANStage2D", {"df_dim": 2}, [[2, 3, 256, 256], [2, 8]]),
])
def test_forward_backward_and_fullgraph_compile(name, overrides, shapes):
    model = _build(name, shapes, **overrides).train()
    xs = [torch.randn(s) for s in shapes]
    out = model(*xs)
    outs = list(out.values()) if isinstance(out, dict) else [out]
    sum(o.float().square().mean() for o in outs).backward()
    assert all(p.grad is not None for p in model.parameters())
    compiled = torch.compile(model.eval(), fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.manual_seed(0)
        a = compiled(*xs)
        torch.manual_seed(0)
        b = model(*xs)
    a, b = (list(a.values()), list(b.values())) if isinstance(a, dict) else ([a], [b])
    assert all(torch.allclose(u, v, atol=1e-5) for u, v in zip(a, b))


# ---------------------------------------------------------------------------------------------
# topologies (tiny widths)

def _stage1():
    return archdsl.load_spec(TRAIN, "stackgan_stage1", input_shape=[[4, 3, 64, 64], [4, 16]], seed=0,
                             gf_dim=4, df_dim=4, z_dim=10, **TINY)


def _stage2():
    return archdsl.load_spec(TRAIN, "stackgan_stage2", input_shape=[[2, 3, 256, 256], [2, 16]], seed=0,
                             gf_dim=4, df_dim=2, z_dim=10, r_num=1, **TINY)


def _inputs(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.randn(n, 16, generator=g)




@pytest.mark.parametrize("stage", [1, 2])
def test_gan_traps(stage):
    """Each phase gives gradients to the nets it updates and to no other (the G-step leaves D's
    .grad untouched; the frozen Stage-I G never gets one); in the D-step no value flows from G into
    D without a stop_grad."""
    topo = _stage1() if stage == 1 else _stage2()
    xs = _inputs(4, 64) if stage == 1 else _inputs(2, 256)
    ir = topo.ir
    assert topo.schedule() == ["d_step", "g_step"]
    for phase in topo.schedule():
        update = ir.phases[phase].update
        topo(*xs, phase=phase).loss.backward()
        for n in ir.nets:
            grads = [p.grad for p in topo.nets[n].parameters()]
            assert all((g is not None) == (n in update) for g in grads), (phase, n)
        topo.zero_grad(set_to_none=True)
    graph = ir.phases["d_step"].graph
    assert not reaches_without_stop(graph, "G", "D")


def test_stage1_losses_follow_the_code():
    """errD = BCE(D(x, µ), 1) + (BCE(D(x, µ rolled), 0) + BCE(D(G(z), µ), 0)) · 0.5 and
    errG = BCE(D(G(z), µ), 1) + 2 · KL_loss(µ, log σ²), on D's Sigmoid as the code's BCELoss."""
    topo = _stage1()
    G, D = topo.nets.G, topo.nets.D
    x, t = _inputs(4, 64)
    torch.manual_seed(5)
    d = topo(x, t, phase="d_step")
    g_out = topo(x, t, phase="g_step")
    bce = F.binary_cross_entropy
    one, zero = torch.ones(4), torch.zeros(4)
    torch.manual_seed(5)
    with torch.no_grad():
        g = G(t, torch.randn(4, 10))
        mu = g["mu"]
        wrong = torch.cat([mu[1:], mu[:1]])  # image i with the text of i + 1
        want_d = bce(torch.sigmoid(D(x, mu)), one) + 0.5 * (
            bce(torch.sigmoid(D(x, wrong)), zero) + bce(torch.sigmoid(D(g["img"], mu)), zero))
        g = G(t, torch.randn(4, 10))
        want_g = bce(torch.sigmoid(D(g["img"], g["mu"])), one) + 2.0 * kl_loss(g["mu"], g["logvar"])
    assert torch.allclose(d.loss, want_d, atol=1e-5)
    assert torch.allclose(g_out.loss, want_g, atol=1e-5)
    assert torch.allclose(g_out.logs["kl"], kl_loss(g["mu"], g["logvar"]), atol=1e-6)


def test_stage2_losses_follow_the_code():
    """errD = (real + uncond_real) / 2 + (fake + wrong + uncond_fake) / 3 and errG = BCE(cond, 1)
    + BCE(uncond, 1) + 2 · KL, the Stage-II G fed by the frozen Stage-I G (in eval mode)."""
    topo = _stage2()
    G1, G, D = topo.nets.G1, topo.nets.G, topo.nets.D
    assert not G1.training and G.training
    x, t = _inputs(2, 256)
    torch.manual_seed(9)
    d = topo(x, t, phase="d_step")
    g_out = topo(x, t, phase="g_step")
    bce = F.binary_cross_entropy
    one, zero = torch.ones(2), torch.zeros(2)
    p = lambda o, k: torch.sigmoid(o[k])  # noqa: E731
    torch.manual_seed(9)
    with torch.no_grad():
        g = G(t, G1(t, torch.randn(2, 10))["img"])
        mu = g["mu"]
        real, fake, wrong = D(x, mu), D(g["img"], mu), D(x, mu.roll(-1, 0))
        want_d = (bce(p(real, "cond"), one) + bce(p(real, "uncond"), one)) / 2 + (
            bce(p(fake, "cond"), zero) + bce(p(wrong, "cond"), zero) + bce(p(fake, "uncond"), zero)) / 3
        g = G(t, G1(t, torch.randn(2, 10))["img"])
        f = D(g["img"], g["mu"])
        want_g = bce(p(f, "cond"), one) + bce(p(f, "uncond"), one) + 2.0 * kl_loss(g["mu"], g["logvar"])
    assert torch.allclose(d.loss, want_d, atol=1e-5)
    assert torch.allclose(g_out.loss, want_g, atol=1e-5)


def test_stage2_keeps_stage1_frozen():
    """The Stage-I G is in no phase's parameters, stays in eval mode and keeps its weights (and BN
    statistics) through optimizer steps; a loaded Stage-I checkpoint is what runs."""
    topo = _stage2()
    stage1 = _build("StackGANStage1G", [[2, 16], [2, 10]], gf_dim=4, z_dim=10).eval()  # "trained"
    with torch.no_grad():
        for v in stage1.state_dict().values():
            if v.is_floating_point():
                v.add_(0.05)
    topo.nets.G1.load_state_dict(stage1.state_dict(), strict=True)
    t0, z0 = torch.randn(2, 16), torch.randn(2, 10)
    with torch.no_grad():
        torch.manual_seed(1)
        want = stage1(t0, z0)["img"]
        torch.manual_seed(1)
        assert torch.equal(topo.nets.G1(t0, z0)["img"], want)
    before = {k: v.clone() for k, v in topo.nets.G1.state_dict().items()}
    frozen = {id(p) for p in topo.nets.G1.parameters()}
    for phase in topo.schedule():
        assert not frozen & {id(p) for p in topo.parameters(phase=phase)}
    opts = {ph: torch.optim.Adam(topo.parameters(phase=ph), lr=1e-2) for ph in topo.schedule()}
    x, t = _inputs(2, 256)
    topo.train()
    for ph in topo.schedule():
        topo(x, t, phase=ph).loss.backward()
        opts[ph].step()
        topo.zero_grad(set_to_none=True)
    topo.after_step()
    assert not topo.nets.G1.training
    after = topo.nets.G1.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_d_learns_real_from_fake():
    """A few D-steps on a fixed G: D's loss falls, and D then tells real matching pairs (loss
    below ln 2) from fakes (far below). (Telling matching from mismatched text for the same image
    takes longer: its term is not asserted.)"""
    topo = _stage1()
    x, t = _inputs(4, 64)
    opt = torch.optim.Adam(topo.parameters(phase="d_step"), lr=5e-3, betas=(0.5, 0.999))
    torch.manual_seed(0)
    losses = loss_curve(topo, opt, x, t, steps=10, phase="d_step", after_step=False)
    assert losses[-1] < 0.75 * losses[0]
    logs = topo(x, t, phase="d_step").logs
    assert logs["d_real"] < 0.69 and logs["d_fake"] < 0.2
