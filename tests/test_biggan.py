"""BigGAN (stdlib/gan/biggan.arch, biggan_train.arch): exact parameter counts against the
published ones, G and D against independent hand-written forwards (spectral norm as W / σ₁(W)
from an SVD, conditional BN with batch statistics, SAGAN attention, projection D), orthogonal
init, the truncation sampler's distribution, the topology's hinge losses against the formula,
detached fakes, two D steps per G step, the G-EMA's copy-then-average, and a short D run."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import archdsl
from topology_checks import step
from archdsl.ir.cost import cost
from archdsl.semantics.loader import stdlib_dir

SPEC = stdlib_dir() / "gan" / "biggan.arch"
TRAIN = stdlib_dir() / "gan" / "biggan_train.arch"
TINY_G = dict(ch=8, z_dim=12, shared_dim=6, num_classes=5, mults=[2, 2, 1], attn=[8])
TINY_D = dict(ch=8, num_classes=5, res=16, mults=[1, 2, 2], attn=[8])
TINY_T = dict(ch=8, z_dim=12, shared_dim=6, num_classes=5, res=16, g_mults=[2, 2, 1],
              d_mults=[1, 2, 2], attn=[8], batch=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_parameter_counts_equal_the_published_ones():
    # compare_gan's resnet_biggan_test asserts these for BigGAN 128x128 (ch 96, hier z 120,
    # shared 128); the paper and BigGAN-PyTorch's G_ch=96 / D_ch=96 round them to 70.4M / 88.0M.
    assert cost(archdsl.load_graph("biggan128_g")).totals.params == 70_433_988
    assert cost(archdsl.load_graph("biggan128_d")).totals.params == 87_982_370


def _exact_sn(model: torch.nn.Module) -> None:
    """Random weights (so σ ≠ 1), then every SN u, v set to W's top singular vectors: torch's
    power iteration then computes σ₁ exactly (and keeps it: they are its fixed point)."""
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.normal_(0, 0.4)
        for m in model.modules():
            if hasattr(m, "parametrizations") and "weight" in m.parametrizations:
                par = m.parametrizations.weight
                u, _, vh = torch.linalg.svd(par.original.flatten(1))
                par[0]._u.copy_(u[:, 0])
                par[0]._v.copy_(vh[0])


def _sn(m: torch.nn.Module) -> torch.Tensor:
    w = m.parametrizations.weight.original
    return w / torch.linalg.matrix_norm(w.flatten(1), ord=2)


def _conv(x, m, pad=0):
    return F.conv2d(x, _sn(m), m.bias, padding=pad)


def _attention(x, a):
    b, c, h, w = x.shape
    th = _conv(x, a.theta).view(b, c // 8, h * w)
    ph = F.max_pool2d(_conv(x, a.phi), 2).view(b, c // 8, h * w // 4)
    g = F.max_pool2d(_conv(x, a.g), 2).view(b, c // 2, h * w // 4)
    beta = F.softmax(torch.bmm(th.transpose(1, 2), ph), -1)
    return a.gamma * _conv(torch.bmm(g, beta.transpose(1, 2)).view(b, c // 2, h, w), a.o) + x


def _ccbn(x, y, bn):
    mu, var = x.mean((0, 2, 3), keepdim=True), x.var((0, 2, 3), unbiased=False, keepdim=True)
    gain = 1 + F.linear(y, _sn(bn.gain))
    bias = F.linear(y, _sn(bn.bias))
    return (x - mu) / torch.sqrt(var + 1e-5) * gain[:, :, None, None] + bias[:, :, None, None]


def test_generator_equals_a_hand_written_biggan_forward():
    g = archdsl.load_spec(SPEC, "biggan128_g", seed=0, **TINY_G).double().train()
    _exact_sn(g)
    z = torch.randn(3, 12, dtype=torch.float64)
    y = torch.tensor([0, 3, 4])
    zs = z.split(4, dim=1)                      # hierarchical z: 3 chunks of 4
    e = g.shared.weight[y]                       # shared embedding, no SN (as the official G)
    h = F.linear(zs[0], _sn(g.linear), g.linear.bias).view(3, 16, 4, 4)
    for i in range(2):
        blk, c = g.get_submodule(f"blocks{i}"), torch.cat([e, zs[i + 1]], 1)
        t = F.interpolate(F.relu(_ccbn(h, c, blk.bn1)), scale_factor=2)
        t = _conv(F.relu(_ccbn(_conv(t, blk.conv1, 1), c, blk.bn2)), blk.conv2, 1)
        h = t + _conv(F.interpolate(h, scale_factor=2), blk.conv_sc)
        if i == 0:                               # attention at 8x8
            h = _attention(h, g.attn0)
    bn, conv = g.get_submodule("output_layer.0"), g.get_submodule("output_layer.2")
    mu, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
    h = (h - mu) / torch.sqrt(var + 1e-5) * bn.weight[None, :, None, None] + bn.bias[None, :, None, None]
    want = torch.tanh(_conv(F.relu(h), conv, 1))
    with torch.no_grad():
        torch.testing.assert_close(g(z, y), want, rtol=1e-9, atol=1e-9)


def test_discriminator_equals_a_hand_written_projection_discriminator():
    d = archdsl.load_spec(SPEC, "biggan128_d", seed=0, **TINY_D).double().eval()
    _exact_sn(d)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([1, 4, 2])
    h = x
    for i, down in enumerate([True, True, False]):
        b = d.get_submodule(f"blocks{i}")
        t = _conv(F.relu(_conv(F.relu(h) if i else h, b.conv1, 1)), b.conv2, 1)
        if i == 0:                               # no pre-activation: pool, then the 1x1 conv
            sc = _conv(F.avg_pool2d(h, 2), b.conv_sc)
        elif hasattr(b, "conv_sc"):              # pre-activation: 1x1 conv (on x, not relu(x)), pool
            sc = _conv(h, b.conv_sc)
            sc = F.avg_pool2d(sc, 2) if down else sc
        else:
            sc = h
        h = (F.avg_pool2d(t, 2) if down else t) + sc
        if i == 0:
            h = _attention(h, d.attn0)
    assert not hasattr(d.blocks2, "conv_sc")     # the last block keeps width and resolution
    f = F.relu(h).sum((2, 3))
    want = F.linear(f, _sn(d.linear), d.linear.bias) + (_sn(d.embed)[y] * f).sum(1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(d(x, y), want, rtol=1e-9, atol=1e-9)
    cd = torch.compile(d, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(cd(x, y), d(x, y))


def test_orthogonal_init_and_zero_attention_gain():
    g = archdsl.load_spec(SPEC, "biggan128_g", seed=0, **TINY_G)
    d = archdsl.load_spec(SPEC, "biggan128_d", seed=0, **TINY_D)
    for w in [g.shared.weight, g.blocks1.conv1.parametrizations.weight.original,
              g.blocks0.bn1.gain.parametrizations.weight.original,
              d.embed.parametrizations.weight.original, d.blocks2.conv1.parametrizations.weight.original]:
        m = w.flatten(1)
        m = m if m.shape[0] <= m.shape[1] else m.t()   # rows orthonormal on the short side
        torch.testing.assert_close(m @ m.t(), torch.eye(m.shape[0]), atol=1e-5, rtol=0)
    assert g.attn0.gamma.shape == () and g.attn0.gamma.item() == 0.0 == d.attn0.gamma.item()
    # the SN power-iteration vectors are re-estimated after the init rule rewrote the weights:
    # in eval mode (no iteration) every normalised weight has spectral norm 1, not W / stale σ
    g.eval()
    for m in [g.linear, g.blocks0.conv1, g.blocks1.bn2.bias, g.attn0.o, d.embed, d.linear]:
        sigma = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2)
        assert abs(sigma.item() - 1.0) < 1e-4


def test_truncated_randn_is_the_truncated_normal():
    m = archdsl.load_spec(source="network T(t: float = 0.5) {\n in y: [B]\n"
                                 " out y -> truncated_randn([4000], t)\n}\nvariant t = T()\n")
    z = m(torch.zeros(50)).double()
    t = 0.5
    assert z.shape == (50, 4000) and z.abs().max() <= t
    # rejection sampling, independently: redraw |z| > t (BigGAN's truncation trick)
    gen = torch.Generator().manual_seed(1)
    ref = torch.randn(400_000, generator=gen, dtype=torch.float64)
    ref = ref[ref.abs() <= t][:200_000]
    # moments of N(0, 1) truncated to [−t, t]: mean 0, var 1 − 2tφ(t) / (2Φ(t) − 1)
    phi, mass = math.exp(-t * t / 2) / math.sqrt(2 * math.pi), math.erf(t / math.sqrt(2))
    var = 1 - 2 * t * phi / mass
    assert abs(z.mean().item()) < 0.005 and abs(z.var().item() - var) < 0.002
    assert abs(ref.var().item() - var) < 0.002
    # same distribution: every decile of ours matches the rejection sampler's
    q = torch.linspace(0.1, 0.9, 9, dtype=torch.float64)
    torch.testing.assert_close(torch.quantile(z.flatten()[:200_000], q), torch.quantile(ref, q), atol=0.01, rtol=0)
    cm = torch.compile(m, fullgraph=True, backend="eager")
    assert cm(torch.zeros(3)).abs().max() <= t


def test_rand_class_is_uniform_over_the_classes():
    m = archdsl.load_spec(source="network T() {\n in x: [B, 2]\n out x -> rand_class(7)\n}\nvariant t = T()\n")
    y = m(torch.zeros(7000, 2))
    assert y.dtype == torch.int64 and y.shape == (7000,)
    counts = torch.bincount(y, minlength=7)
    assert len(counts) == 7 and counts.min() > 850 and counts.max() < 1150


def _topo(**kw):
    return archdsl.load_spec(TRAIN, "biggan128", seed=0, **{**TINY_T, **kw})


def _batch():
    g = torch.Generator().manual_seed(3)
    return torch.rand(4, 3, 16, 16, generator=g) * 0.2 + 0.8, torch.tensor([0, 1, 2, 3])


def test_hinge_losses_equal_the_formula_and_fakes_are_detached():
    t = _topo()
    real, label = _batch()
    assert t.schedule() == ["d_step", "d_step", "g_step"]          # num_D_steps = 2
    out = t(real, label, phase="d_step")
    r, f = out.logs["d_real"], out.logs["d_fake"]
    assert r.shape == f.shape == (4, 1)
    torch.testing.assert_close(out.loss, F.relu(1 - r).mean() + F.relu(1 + f).mean())
    with torch.no_grad():  # d_real is D on the real batch with its labels
        torch.testing.assert_close(r, t.nets["D"](real, label), rtol=1e-4, atol=1e-5)
    out.loss.backward()
    assert all(p.grad is None for p in t.nets["G"].parameters())     # D-step: fakes detached
    assert t.nets["D"].embed.parametrizations.weight.original.grad is not None
    t.zero_grad(set_to_none=True)
    g_out = t(real, label, phase="g_step")
    torch.testing.assert_close(g_out.loss, -g_out.logs["d_gen"].mean())
    g_out.loss.backward()
    assert all(p.grad is None for p in t.nets["D"].parameters())     # G-step leaves D alone
    assert t.nets["G"].shared.weight.grad is not None


def test_g_ema_is_a_copy_before_start_step_then_an_average():
    """utils.ema.update(itr) with the release's counter (itr = 1 at the first step): a copy
    while itr < ema_start, then the average."""
    t = _topo(ema_start=3, ema_decay=0.75)
    G, E = t.nets["G"], t.nets["G_ema"]
    assert all(not p.requires_grad for p in E.parameters())
    assert not set(map(id, E.parameters())) & {id(p) for ph in t.phases for p in t.parameters(phase=ph)}
    w = lambda net: net.blocks0.conv1.parametrizations.weight.original  # noqa: E731
    for i in range(4):
        before = w(E).clone()
        with torch.no_grad():
            for p in G.parameters():
                p.add_(torch.randn_like(p))
        itr = i + 1
        assert t.momentum("G_ema") == (0.0 if itr < 3 else 0.75)
        t.after_step()
        want = w(G) if itr < 3 else 0.75 * before + 0.25 * w(G)
        torch.testing.assert_close(w(E), want)
    # the cosine schedule still counts from start_step (unchanged meaning)
    cos = archdsl.load_spec(source=(
        "network N() {\n in x: [B, 2]\n out x -> fc: linear(2)\n}\n"
        "topology T() {\n in x: [B, 2]\n net a = N()\n"
        " net b = ema(a, 0.5, schedule=\"cosine\", end=1.0, total_steps=2, start_step=3)\n"
        " phase p(update=[a]) {\n  loss = mean((x -> a), dims=[0, 1])\n }\n}\nvariant t = T()\n"))
    assert cos.momentum("b") == 0.5


def test_ema_start_step_must_be_non_negative():
    with pytest.raises(archdsl.ArchError, match="non-negative"):
        archdsl.load_spec(source=(
            "network N() {\n in x: [B, 2]\n out x -> fc: linear(2)\n}\n"
            "topology T() {\n in x: [B, 2]\n net a = N()\n net b = ema(a, 0.5, start_step=-1)\n"
            " phase p(update=[a]) {\n  loss = mean((x -> a), dims=[0, 1])\n }\n}\nvariant t = T()\n"))


def test_short_run_d_separates_real_from_fake():
    torch.manual_seed(0)
    t = _topo()
    real, label = _batch()
    opt = torch.optim.Adam(t.parameters(phase="d_step"), lr=2e-3, betas=(0.0, 0.999))
    first = t(real, label, phase="d_step")
    for _ in range(12):
        step(t, opt, real, label, phase="d_step", after_step=False)
    last = t(real, label, phase="d_step")
    assert last.loss.item() < first.loss.item() - 0.5
    assert (last.logs["d_real"].mean() - last.logs["d_fake"].mean()).item() > \
        (first.logs["d_real"].mean() - first.logs["d_fake"].mean()).item() + 0.5


# ---------------------------------------------------------------- the training step, as the release
# ajbrock/BigGAN-PyTorch: train_fns.py GAN_training_function (toggle_grads, one accumulation, no
# split_D, no ortho reg; D's zero_grad inside the D-step loop, the fix of issue #25), BigGAN.py
# G_D.forward (fakes then reals through D in one batch; G under set_grad_enabled(train_G)),
# losses.py loss_hinge_dis / loss_hinge_gen, utils.py ema (over the whole state_dict, decay 0 while
# itr < start_itr) and the main loop's counter (state_dict['itr'] += 1 before train(x, y)); z_ and
# y_ (utils.prepare_z_y) are resampled z first, then y. The networks on the release's side are
# copies of the spec's G and D, whose forwards the tests above check against hand-written BigGAN
# layers; here the step is under test.

class RefG_D(torch.nn.Module):
    def __init__(self, G, D):
        super().__init__()
        self.G, self.D = G, D

    def forward(self, z, gy, x=None, dy=None, train_G=False):
        with torch.set_grad_enabled(train_G):
            G_z = self.G(z, gy)        # the release: self.G(z, self.G.shared(gy)); ours embeds gy itself
        D_input = torch.cat([G_z, x], 0) if x is not None else G_z
        D_class = torch.cat([gy, dy], 0) if dy is not None else gy
        D_out = self.D(D_input, D_class)
        if x is not None:
            return torch.split(D_out, [G_z.shape[0], x.shape[0]])
        return D_out


def loss_hinge_dis(dis_fake, dis_real):
    return torch.mean(F.relu(1. - dis_real)), torch.mean(F.relu(1. + dis_fake))


def loss_hinge_gen(dis_fake):
    return -torch.mean(dis_fake)


class RefEma:
    def __init__(self, source, target, decay=0.9999, start_itr=0):
        self.decay, self.start_itr = decay, start_itr
        self.source_dict, self.target_dict = source.state_dict(), target.state_dict()
        with torch.no_grad():
            for key in self.source_dict:
                self.target_dict[key].data.copy_(self.source_dict[key].data)

    def update(self, itr=None):
        decay = 0.0 if itr and itr < self.start_itr else self.decay
        with torch.no_grad():
            for key in self.source_dict:
                self.target_dict[key].data.copy_(self.target_dict[key].data * decay
                                                 + self.source_dict[key].data * (1 - decay))


def toggle_grad(model, on_or_off):
    for param in model.parameters():
        param.requires_grad = on_or_off


def biggan_training_function(G, D, GD, sample_z_y, ema, state_dict, config, record):
    def train(x, y):
        G.optim.zero_grad()
        D.optim.zero_grad()
        x = torch.split(x, config["batch_size"])
        y = torch.split(y, config["batch_size"])
        counter = 0
        toggle_grad(D, True)
        toggle_grad(G, False)
        for _ in range(config["num_D_steps"]):
            D.optim.zero_grad()
            z_, y_ = sample_z_y()
            D_fake, D_real = GD(z_, y_, x[counter], y[counter], train_G=False)
            D_loss_real, D_loss_fake = loss_hinge_dis(D_fake, D_real)
            D_loss = D_loss_real + D_loss_fake
            D_loss.backward()
            counter += 1
            record("d_step", D_loss, D)
            D.optim.step()
        toggle_grad(D, False)
        toggle_grad(G, True)
        G.optim.zero_grad()
        z_, y_ = sample_z_y()
        D_fake = GD(z_, y_, train_G=True)
        G_loss = loss_hinge_gen(D_fake)
        G_loss.backward()
        record("g_step", G_loss, G)
        G.optim.step()
        ema.update(state_dict["itr"])
    return train


def test_biggan_steps_equal_the_release_training_function():
    """Four iterations of two D-steps and a G-step, G-EMA from itr 3 (a copy at itr 1 and 2):
    losses, gradients, every tensor of G, D (SN vectors, BN statistics) and G_ema, each
    optimizer's tensors."""
    import copy
    from recipe_checks import close, close_all, recipe_step, updated_by
    t = _topo(ema_start=3, ema_decay=0.5).double()
    optimizers, schedule = t.configure_optimizers()
    assert updated_by(optimizers["d_step"]) == {id(p) for p in t.nets["D"].parameters()}
    assert updated_by(optimizers["g_step"]) == {id(p) for p in t.nets["G"].parameters()}
    G, D, G_ema = (copy.deepcopy(t.nets[n]) for n in ("G", "D", "G_ema"))
    G.optim = torch.optim.Adam(G.parameters(), lr=5e-5, betas=(0.0, 0.999), weight_decay=0, eps=1e-8)
    D.optim = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.999), weight_decay=0, eps=1e-8)
    config = {"batch_size": 4, "num_D_steps": 2}
    state_dict = {"itr": 0}
    seen: dict[str, list] = {"d_step": [], "g_step": []}

    def record(phase, loss, net):
        name = "D" if phase == "d_step" else "G"
        seen[phase].append((loss.detach(), {f"{name}.{k}": p.grad.clone() for k, p in net.named_parameters()}))

    def sample_z_y():
        return torch.randn(4, 12, dtype=torch.float64), torch.randint(low=0, high=5, size=(4,), dtype=torch.int64)

    train = biggan_training_function(G, D, RefG_D(G, D), sample_z_y, RefEma(G, G_ema, 0.5, start_itr=3),
                                     state_dict, config, record)
    g = torch.Generator().manual_seed(0)
    for it in range(4):
        x = torch.rand(8, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
        y = torch.randint(0, 5, (8,), generator=g)
        torch.manual_seed(40 + it)
        ours = [recipe_step(t, optimizers, schedule, x[4 * k:4 * k + 4], y[4 * k:4 * k + 4], phase="d_step",
                            after_step=False) for k in range(2)]
        ours.append(recipe_step(t, optimizers, schedule, x[4:], y[4:], phase="g_step"))
        torch.manual_seed(40 + it)
        state_dict["itr"] += 1
        seen["d_step"].clear()
        seen["g_step"].clear()
        train(x, y)
        for k, (loss, grads) in enumerate(seen["d_step"] + seen["g_step"]):
            close(ours[k][0], loss, f"iteration {it} phase {k} loss")
            close_all(ours[k][1], grads, f"iteration {it} phase {k} grad")
        for name, ref in (("G", G), ("D", D), ("G_ema", G_ema)):
            close_all(t.nets[name].state_dict(), ref.state_dict(), f"iteration {it} {name}")


EMA_BUFFERS = """
network N() {
  in x: [B, 2, 4, 4]
  out x -> conv: conv(2, 1) -> bn: bn
}
topology T(b: bool = true) {
  in x: [B = 4, 2, 4, 4]
  net a = N()
  net e = ema(a, 0.25, buffers=b)
  phase p(update=[a]) {
    loss = mean((x -> a), dims=[0, 1, 2, 3])
  }
}
variant t = T()
"""


@pytest.mark.parametrize("buffers", [True, False])
def test_ema_buffers_option(buffers):
    """buffers=true: the twin's BN statistics follow the source's like its weights (utils.ema over
    the state_dict; an integer buffer takes the formula truncated, as copy_ does); false: they stay
    the twin's own."""
    t = archdsl.load_spec(source=EMA_BUFFERS, seed=0, b=buffers)
    t(torch.randn(4, 2, 4, 4) + 3.0, phase="p")
    source = t.nets["a"].bn.running_mean.clone()
    assert source.abs().min() > 0.01
    t.after_step()
    e = t.nets["e"].bn
    torch.testing.assert_close(e.running_mean, 0.75 * source if buffers else torch.zeros(2))
    assert int(e.num_batches_tracked) == 0    # int(0.25 · 0 + 0.75 · 1) with buffers; untouched without


def test_ema_with_phase_follows_as_that_phase_starts():
    """with_phase="p": the twin moves when phase p starts (StyleGAN's and PGGAN's Gs_update_op runs
    with the D-step), not in after_step; a phase the topology lacks is an ArchError."""
    t = archdsl.load_spec(source=EMA_BUFFERS.replace("ema(a, 0.25, buffers=b)", 'ema(a, 0.25, with_phase="p")'), seed=0)
    a, e = t.nets["a"].conv.weight, t.nets["e"].conv.weight
    with torch.no_grad():
        a.add_(1.0)
    old, new = e.clone(), a.detach().clone()
    t(torch.randn(4, 2, 4, 4), phase="p")
    torch.testing.assert_close(e, 0.25 * old + 0.75 * new)
    moved = e.clone()
    t.after_step()
    assert torch.equal(e, moved)
    with pytest.raises(archdsl.ArchError, match="does not declare") as err:
        archdsl.load_spec(source=EMA_BUFFERS.replace("ema(a, 0.25, buffers=b)", 'ema(a, 0.25, with_phase="q")'))
    assert err.value.span is not None and err.value.span.line == 9
