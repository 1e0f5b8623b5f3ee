"""gen-a: DCGAN, pix2pix (U-Net, PatchGAN), CycleGAN (ResNet generator) networks and their
training topologies (DCGAN, cGAN, pix2pix, CycleGAN).

The networks are checked against independent PyTorch modules written here after the reference
code (pytorch/examples dcgan/main.py; junyanz/pytorch-CycleGAN-and-pix2pix models/networks.py):
same state_dict keys and shapes in order, strict load, same outputs, same parameter count. The
topologies are checked for the GAN traps (D-step on fake.detach(), G-step leaves D untouched),
their losses against hand-written formulas, and a short training run.
"""
from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from topology_checks import loss_curve, reaches_without_stop, step
from archdsl.ir.cost import cost

SPECS = "stdlib/gan/"


# ---------------------------------------------------------------------------------------------
# independent reference modules (written after the reference code, not generated from ours)

class RefDCGANG(nn.Module):  # pytorch/examples dcgan Generator
    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class RefDCGAND(nn.Module):  # pytorch/examples dcgan Discriminator
    def __init__(self, ndf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def _norm(kind):
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)


class RefUnetSkip(nn.Module):  # networks.py UnetSkipConnectionBlock
    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False,
                 innermost=False, norm_layer=nn.BatchNorm2d, use_dropout=False):
        super().__init__()
        self.outermost = outermost
        use_bias = norm_layer.func == nn.InstanceNorm2d
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu, downnorm = nn.LeakyReLU(0.2, True), norm_layer(inner_nc)
        uprelu, upnorm = nn.ReLU(True), norm_layer(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            model = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            model = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                model = model + [nn.Dropout(0.5)]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):  # networks.py UnetGenerator
    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm="batch", use_dropout=False):
        super().__init__()
        nl = _norm(norm)
        b = RefUnetSkip(ngf * 8, ngf * 8, submodule=None, norm_layer=nl, innermost=True)
        for _ in range(num_downs - 5):
            b = RefUnetSkip(ngf * 8, ngf * 8, submodule=b, norm_layer=nl, use_dropout=use_dropout)
        b = RefUnetSkip(ngf * 4, ngf * 8, submodule=b, norm_layer=nl)
        b = RefUnetSkip(ngf * 2, ngf * 4, submodule=b, norm_layer=nl)
        b = RefUnetSkip(ngf, ngf * 2, submodule=b, norm_layer=nl)
        self.model = RefUnetSkip(output_nc, ngf, input_nc=input_nc, submodule=b, outermost=True, norm_layer=nl)

    def forward(self, x):
        return self.model(x)


class RefNLayerD(nn.Module):  # networks.py NLayerDiscriminator
    def __init__(self, input_nc, ndf=64, n_layers=3, norm="instance"):
        super().__init__()
        nl = _norm(norm)
        use_bias = nl.func == nn.InstanceNorm2d
        seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=use_bias), nl(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=use_bias), nl(ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class RefResnetBlock(nn.Module):  # networks.py ResnetBlock, padding_type='reflect'
    def __init__(self, dim, norm_layer, use_dropout, use_bias):
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=use_bias), norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            block += [nn.Dropout(0.5)]
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, padding=0, bias=use_bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetG(nn.Module):  # networks.py ResnetGenerator
    def __init__(self, input_nc, output_nc, ngf=64, norm="instance", use_dropout=False, n_blocks=9):
        super().__init__()
        nl = _norm(norm)
        use_bias = nl.func == nn.InstanceNorm2d
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=use_bias), nl(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                      nl(ngf * mult * 2), nn.ReLU(True)]
        for _ in range(n_blocks):
            model += [RefResnetBlock(ngf * 4, nl, use_dropout, use_bias)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                         bias=use_bias), nl(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------------------------------------
# networks: keys, shapes, strict load and outputs vs the reference modules (tiny widths)

CASES = [
    # (spec file, variant, overrides, input shape, reference factory)
    ("dcgan.arch", "dcgan_g64", {"ngf": 4}, (2, 100, 1, 1), lambda: RefDCGANG(ngf=4)),
    ("dcgan.arch", "dcgan_d64", {"ndf": 4}, (2, 3, 64, 64), lambda: RefDCGAND(ndf=4)),
    ("pix2pix.arch", "unet_256", {"ngf": 2}, (2, 3, 256, 256), lambda: RefUnet(3, 3, 8, 2, "batch", True)),
    ("pix2pix.arch", "unet_128", {"ngf": 2, "norm": "instance"}, (2, 3, 128, 128),
     lambda: RefUnet(3, 3, 7, 2, "instance", True)),
    ("pix2pix.arch", "patchgan_70", {"ndf": 4, "img": 64}, (2, 3, 64, 64), lambda: RefNLayerD(3, 4)),
    ("pix2pix.arch", "patchgan_70_pix2pix", {"ndf": 4, "img": 64}, (2, 6, 64, 64),
     lambda: RefNLayerD(6, 4, norm="batch")),
    ("cyclegan.arch", "resnet_9blocks", {"ngf": 4, "img": 32}, (2, 3, 32, 32), lambda: RefResnetG(3, 3, 4)),
    ("cyclegan.arch", "resnet_6blocks", {"ngf": 4, "img": 32, "use_dropout": True, "norm": "batch"},
     (2, 3, 32, 32), lambda: RefResnetG(3, 3, 4, "batch", True, 6)),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}-{'-'.join(map(str, c[2].values()))}" for c in CASES])
def test_network_matches_the_reference_module(case):
    file, variant, overrides, shape, factory = case
    torch.manual_seed(0)
    ref = factory().eval()
    ours = archdsl.load_spec(SPECS + file, variant, input_shape=shape, **overrides).eval()
    want = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == want
    sd = {k: torch.randn_like(v) * 0.1 if v.is_floating_point() and "running_var" not in k else
          (v.abs() + 0.5 if "running_var" in k else v) for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(shape)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=1e-4)
    graph = archdsl.load_graph(SPECS + file, variant, input_shape=shape, **overrides)
    assert cost(graph).totals.params == _n_params(ref)


@pytest.mark.parametrize("variant, factory", [
    ("dcgan_g64", lambda: RefDCGANG()), ("dcgan_d64", lambda: RefDCGAND()),
    ("unet_256", lambda: RefUnet(3, 3, 8, 64, "batch", True)), ("unet_128", lambda: RefUnet(3, 3, 7, 64, "batch", True)),
    ("patchgan_70", lambda: RefNLayerD(3)), ("patchgan_70_pix2pix", lambda: RefNLayerD(6, norm="batch")),
    ("resnet_9blocks", lambda: RefResnetG(3, 3)), ("resnet_6blocks", lambda: RefResnetG(3, 3, n_blocks=6)),
])
def test_full_size_parameter_counts(variant, factory):
    """Full-width counts equal the reference modules' (built on the meta device: no memory)."""
    with torch.device("meta"):
        ref = factory()
    assert cost(archdsl.load_graph(variant)).totals.params == _n_params(ref)


def test_patchgan_sees_70x70_patches():
    graph = archdsl.load_graph("patchgan_70")
    nodes = cost(graph).nodes
    last = nodes[-1]
    assert graph.node(last.path).shape == (1, 1, 30, 30)
    assert last.receptive_field == 70


def test_dcgan_init_follows_the_paper():
    """Conv weights N(0, 0.02), BN gamma N(1, 0.02), BN beta 0 (pytorch/examples weights_init)."""
    g = archdsl.load_spec("dcgan_g64", seed=0)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.ConvTranspose2d)])
    gamma = torch.cat([m.weight for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    beta = torch.cat([m.bias for m in g.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3
    assert abs(gamma.mean().item() - 1) < 5e-3 and abs(gamma.std().item() - 0.02) < 5e-3
    assert torch.all(beta == 0)


@pytest.mark.parametrize("variant, overrides, shape", [
    ("unet_256", {"ngf": 2}, (2, 3, 256, 256)), ("resnet_9blocks", {"ngf": 4, "img": 32}, (2, 3, 32, 32)),
])
def test_forward_backward_and_fullgraph_compile(variant, overrides, shape):
    model = archdsl.load_spec(variant, input_shape=shape, **overrides).train()
    x = torch.randn(shape)
    model(x).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    compiled = torch.compile(model.eval(), fullgraph=True, backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x))


# ---------------------------------------------------------------------------------------------
# topologies (tiny widths): traps, losses vs hand-written formulas, short training runs

def _topo(file, variant=None, shapes=None, **overrides):
    return archdsl.load_spec(SPECS + file, variant, input_shape=shapes, seed=0, **overrides)


TOPOS = {
    "dcgan": lambda: _topo("dcgan_train.arch", shapes=[[4, 3, 16, 16]], ngf=4, ndf=4, img=16),
    "cgan_mnist": lambda: _topo("gan.arch", "cgan_mnist", shapes=[[4, 1, 28, 28], [4]]),
    "pix2pix": lambda: _topo("pix2pix_train.arch", shapes=[[2, 3, 32, 32]] * 2, ngf=2, ndf=2, num_downs=5,
                             img=32),
    "cyclegan": lambda: _topo("cyclegan_train.arch", shapes=[[2, 3, 32, 32]] * 2, ngf=2, ndf=2, n_blocks=1,
                              img=32, pool_size=2),
}


def _inputs(topo, seed=0):
    from archdsl.topology.train import input_specs
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 10, s, generator=g) if d == "int64" else torch.rand(s, generator=g) * 2 - 1
            for _, s, d in input_specs(topo)]




@pytest.mark.parametrize("name", list(TOPOS))
def test_gan_traps(name):
    """Each phase gives gradients to the nets it updates and to no other (the G-step leaves D's
    .grad untouched); in the D-step no path from G's output into D avoids stop_grad."""
    topo = TOPOS[name]()
    ir = topo.ir
    gens = [n for n in ir.nets if n.startswith("G")]
    discs = [n for n in ir.nets if n.startswith("D")]
    xs = _inputs(topo)
    for phase in topo.schedule():
        update = ir.phases[phase].update
        out = topo(*xs, phase=phase)
        out.loss.backward()
        for n in ir.nets:
            grads = [p.grad for p in topo.nets[n].parameters()]
            if n in update:
                assert all(g is not None for g in grads), (phase, n)
            else:
                assert all(g is None for g in grads), (phase, n)
        topo.zero_grad(set_to_none=True)
        if set(update) <= set(discs):  # a D-step
            graph = ir.phases[phase].graph
            assert not any(reaches_without_stop(graph, g, d) for g in gens for d in discs)
            calls_g = any(n.kind == "net" and n.attrs["name"] in gens for n in graph.nodes())
            # G in a D-step only behind stop_grad; CycleGAN's reads the G-step's stored fakes instead
            assert any(n.op == "stop_grad" for n in graph.nodes()) or (name == "cyclegan" and not calls_g)


def test_dcgan_losses_are_bce_on_d():
    """d_step = BCE(D(x), 1) + BCE(D(G(z)), 0) and g_step = BCE(D(G(z)), 1) on D's probability
    (pytorch/examples' criterion), with z ~ N(0, 1) of shape [N, nz, 1, 1], the G-step on the
    D-step's z (main.py reuses `fake`)."""
    topo = TOPOS["dcgan"]()
    G, D = topo.nets.G, topo.nets.D
    (x,) = _inputs(topo)
    torch.manual_seed(1)
    d_loss = topo(x, phase="d_step").loss
    g_loss = topo(x, phase="g_step").loss
    torch.manual_seed(1)
    with torch.no_grad():
        fake = G(torch.randn(4, 100, 1, 1))
        p_real, p_fake = torch.sigmoid(D(x)), torch.sigmoid(D(fake))
        want_d = F.binary_cross_entropy(p_real, torch.ones(4)) + F.binary_cross_entropy(p_fake, torch.zeros(4))
        want_g = F.binary_cross_entropy(torch.sigmoid(D(fake)), torch.ones(4))
    assert torch.allclose(d_loss, want_d, atol=1e-5) and torch.allclose(g_loss, want_g, atol=1e-5)


def test_cgan_conditions_g_and_d_on_the_label():
    topo = TOPOS["cgan_mnist"]()
    G, D = topo.nets.G.eval(), topo.nets.D.eval()
    z, x = torch.randn(4, 100), torch.rand(4, 1, 28, 28)
    y0, y1 = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    with torch.no_grad():
        assert not torch.allclose(G(z, y0), G(z, y1)) and not torch.allclose(D(x, y0), D(x, y1))
        # D's first layer sees [flattened image, embedding(y)], as PyTorch-GAN's cgan
        h = torch.cat([x.flatten(1), D.label_emb.weight[y1]], dim=1)
        assert torch.allclose(D.fc0(h), F.linear(h, D.fc0.weight, D.fc0.bias))
        want = D.fc_out(F.leaky_relu(D.fc1(F.leaky_relu(D.fc0(h), 0.2)), 0.2))
        assert torch.allclose(D(x, y1), want, atol=1e-6)


def test_pix2pix_losses():
    """D: 0.5 · (BCE(D(A, B), 1) + BCE(D(A, G(A)), 0)) on patch logits; G: BCE(D(A, G(A)), 1) +
    100 · L1(G(A), B)."""
    topo = TOPOS["pix2pix"]()
    G, D = topo.nets.G, topo.nets.D
    a, b = _inputs(topo)
    bce = F.binary_cross_entropy_with_logits
    torch.manual_seed(3)
    d_loss = topo(a, b, phase="d_step").loss
    out = topo(a, b, phase="g_step")
    torch.manual_seed(3)
    with torch.no_grad():
        fake = G(a)
        real_l, fake_l = D(torch.cat([a, b], 1)), D(torch.cat([a, fake], 1))
        want_d = 0.5 * (bce(real_l, torch.ones_like(real_l)) + bce(fake_l, torch.zeros_like(fake_l)))
        fake = G(a)
        fl = D(torch.cat([a, fake], 1))
        want_g = bce(fl, torch.ones_like(fl)) + 100 * (fake - b).abs().mean()
    assert torch.allclose(d_loss, want_d, atol=1e-5)
    assert torch.allclose(out.loss, want_g, atol=1e-4)
    assert torch.allclose(out.logs["l1"], (fake - b).abs().mean(), atol=1e-6)


def test_cyclegan_losses_and_history_pool_feeds_d_only():
    topo = TOPOS["cyclegan"]()
    n = topo.nets
    a, b = _inputs(topo)
    mse = lambda t, v: (t - v).square().mean()  # noqa: E731
    out = topo(a, b, phase="g_step")
    with torch.no_grad():
        fb, fa = n.G_A(a), n.G_B(b)
        adv = mse(n.D_A(fb), 1) + mse(n.D_B(fa), 1)
        cyc = 10 * (n.G_B(fb) - a).abs().mean() + 10 * (n.G_A(fa) - b).abs().mean()
        idt = 5 * (n.G_A(b) - b).abs().mean() + 5 * (n.G_B(a) - a).abs().mean()
    assert torch.allclose(out.loss, adv + cyc + idt, atol=1e-4)   # G's loss: the fresh fakes
    st = topo.state
    assert int(st.fake_B_count) == 0 and torch.all(st.fake_B_pool == 0)  # the G-step never fills the pool
    d = topo(a, b, phase="d_step").loss  # pool of 2, batch 2: filled, the fresh fakes returned
    with torch.no_grad():
        want = 0.5 * (mse(n.D_A(b), 1) + mse(n.D_A(fb), 0)) + 0.5 * (mse(n.D_B(a), 1) + mse(n.D_B(fa), 0))
    assert torch.allclose(d, want, atol=1e-5)
    assert int(st.fake_B_count) == 2 and torch.allclose(st.fake_B_pool, fb, atol=1e-6)
    assert torch.allclose(st.fake_A_pool, fa, atol=1e-6)


def test_history_pool_query():
    from archdsl.nn.history_pool import history_pool
    pool, count = torch.zeros(3, 2), torch.zeros((), dtype=torch.long)
    x = torch.arange(8.0).view(4, 2).requires_grad_()
    out = history_pool(x, pool, count, p=1.0)  # 3 stored and returned, the 4th swapped
    assert not out.requires_grad and int(count) == 3
    assert torch.equal(out[:3], x[:3].detach())
    assert any(torch.equal(out[3], x[i].detach()) for i in range(3))  # an old image comes back …
    assert sum(torch.equal(r, x[3].detach()) for r in pool) == 1       # … and the new one takes its slot
    kept = pool.clone()
    new = torch.full((5, 2), -1.0)
    assert torch.equal(history_pool(new, pool, count, p=0.0), new) and torch.equal(pool, kept)
    torch.manual_seed(0)
    big, n = torch.zeros(50, 2), torch.tensor(50)
    out = history_pool(torch.full((2000, 2), 7.0), big, n, p=0.5)
    frac = (out[:, 0] != 7.0).float().mean().item()  # stored zeros come back until replaced
    assert 0.0 < frac < 0.5 and int(n) == 50


def test_d_learns_real_from_fake():
    """A few D-steps on fixed G: D's loss falls and D scores real images above fakes."""
    topo = TOPOS["dcgan"]()
    (x,) = _inputs(topo)
    opt = torch.optim.Adam(topo.parameters(phase="d_step"), lr=2e-3, betas=(0.5, 0.999))
    losses = loss_curve(topo, opt, x, steps=15, phase="d_step", after_step=False)
    assert losses[-1] < 0.5 * losses[0]
    G, D = topo.nets.G.eval(), topo.nets.D.eval()
    with torch.no_grad():
        assert D(x).mean() > D(G(torch.randn(4, 100, 1, 1))).mean()


def test_pix2pix_training_lowers_the_l1_term():
    """Both phases alternate (archdsl.topology.train); the target is the negated input."""
    from archdsl.topology.train import train
    topo = TOPOS["pix2pix"]()
    a, _ = _inputs(topo)
    history = train(topo, 12, lr=1e-2, data=[a, -a])
    l1 = [h.logs["g_step.l1"] for h in history]
    assert l1[-1] < 0.93 * l1[0] and sum(b < a for a, b in zip(l1, l1[1:])) >= 9, l1
    assert all(math.isfinite(h.losses["d_step"]) for h in history)


def test_cyclegan_g_steps_lower_the_cycle_loss():
    topo = TOPOS["cyclegan"]()
    a, _ = _inputs(topo)
    opt = torch.optim.Adam(topo.parameters(phase="g_step"), lr=1e-2, betas=(0.5, 0.999))
    cycle = []
    for _ in range(10):
        out = step(topo, opt, a, -a, phase="g_step", after_step=False)
        cycle.append(out.logs["cycle"].item())
    assert cycle[-1] < 0.985 * cycle[0] and sum(b < a for a, b in zip(cycle, cycle[1:])) >= 6, cycle


# ---------------------------------------------------------------------------------------------
# VAE and VQ-VAE

class RefVanillaVAE(nn.Module):  # AntixK/PyTorch-VAE models/vanilla_vae.py, final map s x s
    def __init__(self, latent, hidden, s, nc=3):
        super().__init__()
        mods, cin = [], nc
        for h in hidden:
            mods.append(nn.Sequential(nn.Conv2d(cin, h, 3, 2, 1), nn.BatchNorm2d(h), nn.LeakyReLU()))
            cin = h
        self.encoder = nn.Sequential(*mods)
        self.fc_mu = nn.Linear(hidden[-1] * s * s, latent)
        self.fc_var = nn.Linear(hidden[-1] * s * s, latent)
        self.decoder_input = nn.Linear(latent, hidden[-1] * s * s)
        rev = hidden[::-1]
        self.decoder = nn.Sequential(*[nn.Sequential(
            nn.ConvTranspose2d(rev[i], rev[i + 1], 3, 2, 1, output_padding=1), nn.BatchNorm2d(rev[i + 1]),
            nn.LeakyReLU()) for i in range(len(rev) - 1)])
        self.final_layer = nn.Sequential(nn.ConvTranspose2d(rev[-1], rev[-1], 3, 2, 1, output_padding=1),
                                         nn.BatchNorm2d(rev[-1]), nn.LeakyReLU(), nn.Conv2d(rev[-1], nc, 3, padding=1),
                                         nn.Tanh())
        self.top, self.s = rev[0], s

    def forward(self, x):  # eval: z = mu
        h = self.encoder(x).flatten(1)
        mu, logvar = self.fc_mu(h), self.fc_var(h)
        y = self.decoder_input(mu).view(-1, self.top, self.s, self.s)
        kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)).mean()
        return self.final_layer(self.decoder(y)), kl


class RefRes(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(c, hidden, 3, 1, 1), nn.ReLU(), nn.Conv2d(hidden, c, 1))

    def forward(self, x):
        return x + self.block(x)


class RefVQVAE(nn.Module):  # van den Oord et al. 2017 §4.1, with a hand-written quantizer
    def __init__(self, k, d, hidden, n_res=2, beta=0.25, nc=3):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(nc, hidden, 4, 2, 1), nn.ReLU(), nn.Conv2d(hidden, hidden, 4, 2, 1),
                                     *[RefRes(hidden, hidden) for _ in range(n_res)], nn.ReLU(), nn.Conv2d(hidden, d, 1))
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(k, d)
        self.decoder = nn.Sequential(nn.Conv2d(d, hidden, 3, 1, 1), *[RefRes(hidden, hidden) for _ in range(n_res)],
                                     nn.ReLU(), nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.ReLU(),
                                     nn.ConvTranspose2d(hidden, nc, 4, 2, 1))
        self.beta = beta

    def forward(self, x):
        ze = self.encoder(x)
        flat = ze.permute(0, 2, 3, 1).reshape(-1, ze.shape[1])
        codes = torch.cdist(flat, self.quantize.embedding.weight).argmin(dim=1)
        e = self.quantize.embedding.weight[codes].view(ze.shape[0], ze.shape[2], ze.shape[3], -1).permute(0, 3, 1, 2)
        zq = ze + (e - ze).detach()
        return (self.decoder(zq), codes.view(ze.shape[0], ze.shape[2], ze.shape[3]),
                F.mse_loss(e, ze.detach()), self.beta * F.mse_loss(ze, e.detach()))


def _load_same(ref, ours):
    want = [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == want
    sd = {k: (v.abs() + 0.5 if "running_var" in k else torch.randn_like(v) * 0.2) if v.is_floating_point() else v
          for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)


def test_conv_vae_matches_the_reference_module():
    ref = RefVanillaVAE(6, [4, 8, 8], 2).eval()
    ours = archdsl.load_spec(SPECS + "vae.arch", "vae_celeba64", input_shape=(2, 3, 16, 16), latent=6,
                             hidden=[4, 8, 8], img=16).eval()
    _load_same(ref, ours)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        got, (want, kl) = ours(x), ref(x)
    assert torch.allclose(got["recon"], want, atol=1e-5) and torch.allclose(got["kl"], kl, rtol=1e-5)
    with torch.device("meta"):
        full = RefVanillaVAE(128, [32, 64, 128, 256, 512], 2)
    assert cost(archdsl.load_graph("vae_celeba64")).totals.params == _n_params(full)


def test_vqvae_matches_the_reference_and_routes_gradients():
    torch.manual_seed(0)
    ref = RefVQVAE(16, 4, 8).eval()
    ours = archdsl.load_spec(SPECS + "vae.arch", "vqvae_512x64", input_shape=(2, 3, 16, 16), num_codes=16, dim=4,
                             hidden=8, img=16).eval()
    _load_same(ref, ours)
    x = torch.randn(2, 3, 16, 16)
    got, want = ours(x), ref(x)
    assert torch.equal(got["codes"], want[1])
    for a, b in zip((got["recon"], got["codebook_loss"], got["commit_loss"]), (want[0], want[2], want[3])):
        assert torch.allclose(a, b, atol=1e-5)
    params = dict(ours.named_parameters())
    enc, book, dec = params["encoder.0.weight"], params["quantize.embedding.weight"], params["decoder.0.weight"]

    def grads(t):
        g = torch.autograd.grad(t, [enc, book, dec], retain_graph=True, allow_unused=True)
        return [None if v is None or not v.abs().sum() else v for v in g]
    g_rec = grads(got["recon"].square().mean())
    assert g_rec[0] is not None and g_rec[1] is None  # straight through to the encoder; not to the codebook
    g_book = grads(got["codebook_loss"])
    assert g_book[0] is None and g_book[1] is not None and g_book[2] is None  # moves only the codebook
    g_commit = grads(got["commit_loss"])
    assert g_commit[0] is not None and g_commit[1] is None  # moves only the encoder
    with torch.device("meta"):
        full = RefVQVAE(512, 64, 256)
    assert cost(archdsl.load_graph("vqvae_512x64")).totals.params == _n_params(full)


def test_vae_loss_is_the_negative_elbo():
    topo = _topo("vae_train.arch", "vae", shapes=[[4, 3, 16, 16]], latent=6, hidden=[4, 8], img=16)
    m = topo.nets.model
    x = torch.rand(4, 3, 16, 16)
    torch.manual_seed(5)
    out = topo(x)
    torch.manual_seed(5)
    with torch.no_grad():
        r = m(x)  # the same eps: one randn_like draw
        h = x
        for i in range(2):
            layer = getattr(m.encoder, str(i))
            h = F.leaky_relu(getattr(layer, "1")(getattr(layer, "0")(h)), 0.01)
        h = h.flatten(1)
        mu, logvar = m.fc_mu(h), m.fc_var(h)
    kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(dim=1)).mean()
    assert torch.allclose(out.logs["kl"], kl, rtol=1e-5)
    assert torch.allclose(out.loss, ((r["recon"] - x) ** 2).sum() / 4 + kl, rtol=1e-5)


@pytest.mark.parametrize("variant, overrides, lr", [
    ("vae", dict(latent=6, hidden=[4, 8], img=16), 1e-2),
    ("vqvae", dict(num_codes=16, dim=4, hidden=8, img=16), 5e-3),
])
def test_autoencoder_training_lowers_the_reconstruction_error(variant, overrides, lr):
    """30 steps on four images of one random colour each (a 3-d family): the reconstruction
    error of the whole set (in eval mode: z = mu) falls well below the start."""
    from archdsl.topology.train import train
    topo = _topo("vae_train.arch", variant, shapes=[[4, 3, 16, 16]], **overrides)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(4, 3, 1, 1, generator=g) * 2 - 1).expand(4, 3, 16, 16).contiguous()
    model = topo.nets.model

    def error():
        model.eval()
        with torch.no_grad():
            e = (model(x)["recon"] - x).square().mean().item()
        model.train()
        return e
    before = error()
    history = train(topo, 30, lr=lr, data=[x])
    assert error() < 0.6 * before
    assert all(math.isfinite(h.losses["train"]) for h in history)


@pytest.mark.parametrize("variant, overrides, shape", [
    ("vae_celeba64", dict(latent=6, hidden=[4, 8], img=16), (2, 3, 16, 16)),
    ("vqvae_512x64", dict(num_codes=16, dim=4, hidden=8, img=16), (2, 3, 16, 16)),
])
def test_autoencoders_compile_fullgraph(variant, overrides, shape):
    model = archdsl.load_spec(SPECS + "vae.arch", variant, input_shape=shape, **overrides).eval()
    x = torch.randn(shape)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x)["recon"], model(x)["recon"])
