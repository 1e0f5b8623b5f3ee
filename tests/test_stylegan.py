"""StyleGAN (stdlib/gan/stylegan.arch): the generator against an independent hand-written
forward (mapping, constant input, AdaIN with (1 + ys) · x̂ + yb, equalized LR), style mixing's
crossover, R1 in the topology against autograd on D, compile, and a short run where D learns."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl.semantics.loader import stdlib_dir
from topology_checks import step

SPEC = stdlib_dir() / "gan" / "stylegan.arch"
TRAIN = stdlib_dir() / "gan" / "stylegan_train.arch"
TINY = dict(res=3, latent=8, mapping_layers=2, fmap_base=16, fmap_max=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def _eq_linear(x, lin, gain=1.0, lr_mul=1.0):
    return F.linear(x, lin.weight * gain / math.sqrt(lin.weight.shape[1]) * lr_mul, lin.bias * lr_mul)


def _eq_conv(x, conv, gain=math.sqrt(2), pad=1):
    fan_in = conv.weight[0].numel()
    return F.conv2d(x, conv.weight * gain / math.sqrt(fan_in),
                    None if conv.bias is None else conv.bias, padding=pad)


def _epilogue(x, w, epi):
    y = F.leaky_relu(x + epi.bias.view(1, -1, 1, 1), 0.2)          # noise weights are 0
    ys, yb = _eq_linear(w, epi.style).chunk(2, dim=1)
    mu, var = y.mean((2, 3), keepdim=True), y.var((2, 3), unbiased=False, keepdim=True)
    return (1 + ys[:, :, None, None]) * (y - mu) / torch.sqrt(var + 1e-5) + yb[:, :, None, None]


def test_generator_equals_a_hand_written_stylegan_forward():
    g = archdsl.load_spec(SPEC, "stylegan_g", seed=0, **TINY).eval().double()
    assert all(torch.count_nonzero(p) == 0 for k, p in g.named_parameters() if k.endswith("noise.weight"))
    assert torch.equal(g.const, torch.ones(1, 4, 4, 4, dtype=torch.float64))
    # mapping weights start at N(0, 1) / lr_mul (equalized LR with lr_mul 0.01)
    assert 50 < g.get_submodule("mapping.fc.0.0").weight.std() < 200
    with torch.no_grad():  # make every bias matter
        for k, p in g.named_parameters():
            if k.endswith("bias"):
                p.normal_(0, 0.3)
    z = torch.randn(3, 8, dtype=torch.float64)
    w = z / torch.sqrt((z ** 2).mean(1, keepdim=True) + 1e-8)
    for i in range(2):
        w = F.leaky_relu(_eq_linear(w, g.get_submodule(f"mapping.fc.{i}.0"), math.sqrt(2), 0.01), 0.2)
    x = g.const.expand(3, -1, -1, -1)
    x = _epilogue(x, w, g.epi4_0)
    x = _epilogue(_eq_conv(x, g.conv4_1), w, g.epi4_1)
    x = F.interpolate(x, scale_factor=2, mode="nearest")
    x = _epilogue(_eq_conv(x, g.conv8_0), w, g.epi8_0)
    x = _epilogue(_eq_conv(x, g.conv8_1), w, g.epi8_1)
    want = _eq_conv(x, g.to_rgb, gain=1.0, pad=0)
    with torch.no_grad():
        torch.testing.assert_close(g(z), want, rtol=1e-9, atol=1e-9)
    cg = torch.compile(g, fullgraph=True, backend="eager")
    torch.testing.assert_close(cg(z), g(z))


def test_style_mixing_crossover():
    m = archdsl.load_spec(source="network T(p: float = 1.0) {\n in a: [4, 3]\n in b: [4, 3]\n"
                                 " out [a, b] -> style_mix(5, p)\n}\nvariant t = T()\n")
    a, b = torch.zeros(4, 3), torch.ones(4, 3)
    assert torch.equal(m.eval()(a, b), torch.zeros(4, 5, 3))      # no mixing in eval
    m.train()
    cuts = set()
    for _ in range(200):
        ws = m(a, b)
        rows = ws[0, :, 0]
        c = int((rows == 0).sum())
        assert torch.equal(rows, (torch.arange(5) >= c).float())   # w for layers < c, w2 after
        assert torch.equal(ws, ws[:1].expand(4, -1, -1))            # one crossover per batch
        cuts.add(c)
    assert cuts == {1, 2, 3, 4}                                    # prob 1: always mixed, c in 1..L-1
    never = archdsl.load_spec(source="network T() {\n in a: [4, 3]\n in b: [4, 3]\n"
                                     " out [a, b] -> style_mix(5, 0.0)\n}\nvariant t = T()\n").train()
    assert torch.equal(never(a, b), torch.zeros(4, 5, 3))


def test_r1_in_the_topology_equals_autograd_on_d_and_training_separates():
    torch.manual_seed(0)
    t = archdsl.load_spec(TRAIN, "stylegan", seed=0, batch=4, **TINY)
    real = torch.rand(4, 3, 8, 8) * 0.2 + 0.8
    out = t(real, phase="d_step")
    x = real.clone().requires_grad_()
    (g,) = torch.autograd.grad(t.nets["D"](x).sum(), x)
    torch.testing.assert_close(out.logs["r1_penalty"], g.pow(2).sum((1, 2, 3)).mean())
    out.loss.backward()
    assert all(p.grad is None for p in t.nets["G"].parameters())
    opt = torch.optim.Adam(t.parameters(phase="d_step"), lr=1e-3, betas=(0.0, 0.99))
    opt.step()
    opt.zero_grad()
    # the fakes are fresh draws every step, so the loss is noisy: compare means of five steps
    losses = [step(t, opt, real, phase="d_step", after_step=False).loss.item() for _ in range(40)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.05, losses
    g_out = t(real, phase="g_step")
    g_out.loss.backward()
    assert all(p.grad is None for p in t.nets["D"].parameters())
    assert t.nets["G"].get_submodule("mapping.fc.0.0").weight.grad is not None


# ---------------------------------------------------------------- the training step, as the release
# NVlabs/stylegan: training/loss.py D_logistic_simplegp (r1_gamma 10) and G_logistic_nonsaturating,
# each reduced by a mean over the minibatch (training_loop.py: register_gradients(tf.reduce_mean(…))),
# training_loop.py's iteration (D_train_op together with Gs_update_op, then G_train_op;
# Gs.setup_as_moving_average_of(G, beta=0.5 ** (minibatch / (G_smoothing_kimg · 1000)))), the
# optimizers tflib.Optimizer → tf.train.AdamOptimizer(beta1 0, beta2 0.99, epsilon 1e-8), ported
# below in torch (TF's Adam adds epsilon to sqrt(v) before the bias correction of the step).
# networks_stylegan.py G_style draws latents2 for style mixing; the release's networks here are
# copies of the spec's G and D, whose forwards the tests above check: the step is under test.

class TFAdam:
    """tf.train.AdamOptimizer: lr_t = lr · sqrt(1 − β2^t) / (1 − β1^t); var −= lr_t · m / (sqrt(v) + ε)."""

    def __init__(self, params, learning_rate, beta1, beta2, epsilon):
        self.params, self.lr, self.b1, self.b2, self.eps, self.t = list(params), learning_rate, beta1, beta2, epsilon, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, grads):
        self.t += 1
        lr_t = self.lr * math.sqrt(1 - self.b2 ** self.t) / (1 - self.b1 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.mul_(self.b1).add_((1 - self.b1) * g)
            v.mul_(self.b2).add_((1 - self.b2) * g * g)
            p.sub_(lr_t * m / (v.sqrt() + self.eps))


def G_style(G, latents_in):
    """networks_stylegan.py G_style in training: a second latent for style mixing, then the
    mapping, the crossover and the synthesis (inside the copy of the spec's G)."""
    latents2 = torch.randn(latents_in.shape, dtype=latents_in.dtype)
    return G(latents_in, latents2)


def G_logistic_nonsaturating(G, D, minibatch_size, latent):
    latents = torch.randn([minibatch_size, latent], dtype=torch.float64)
    fake_images_out = G_style(G, latents)
    fake_scores_out = D(fake_images_out)
    return F.softplus(-fake_scores_out)


def D_logistic_simplegp(G, D, minibatch_size, reals, latent, r1_gamma=10.0):
    latents = torch.randn([minibatch_size, latent], dtype=torch.float64)
    fake_images_out = G_style(G, latents).detach()    # D_opt holds D's variables only
    reals = reals.detach().requires_grad_(True)
    real_scores_out = D(reals)
    fake_scores_out = D(fake_images_out)
    loss = F.softplus(fake_scores_out)
    loss = loss + F.softplus(-real_scores_out)
    real_grads, = torch.autograd.grad(real_scores_out.sum(), [reals], create_graph=True)
    r1_penalty = real_grads.square().sum(dim=[1, 2, 3])
    return loss + r1_penalty.view(-1, 1) * (r1_gamma * 0.5)


def test_stylegan_steps_equal_the_release_training_loop():
    """Four iterations (D-step with the Gs update, then G-step): losses, gradients, G and D after
    TF's Adam, and Gs."""
    import copy
    from recipe_checks import close, close_all, recipe_step, updated_by
    t = archdsl.load_spec(TRAIN, "stylegan", seed=0, batch=4, **TINY).double()
    optimizers, schedule = t.configure_optimizers()
    assert updated_by(optimizers["d_step"]) == {id(p) for p in t.nets["D"].parameters()}
    assert updated_by(optimizers["g_step"]) == {id(p) for p in t.nets["G"].parameters()}
    G, D, Gs = (copy.deepcopy(t.nets[n]) for n in ("G", "D", "G_ema"))
    G_opt = TFAdam(G.parameters(), 0.001, 0.0, 0.99, 1e-8)
    D_opt = TFAdam(D.parameters(), 0.001, 0.0, 0.99, 1e-8)
    beta = 0.5 ** (4 / (10.0 * 1000.0))
    assert t.momentum("G_ema") == pytest.approx(beta, rel=1e-12)
    g = torch.Generator().manual_seed(0)
    for it in range(4):
        reals = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
        torch.manual_seed(50 + it)
        loss_d, grads_d = recipe_step(t, optimizers, schedule, reals, phase="d_step", after_step=False)
        loss_g, grads_g = recipe_step(t, optimizers, schedule, reals, phase="g_step")

        torch.manual_seed(50 + it)
        D_loss = D_logistic_simplegp(G, D, 4, reals, 8).mean()
        ref_d = dict(zip([f"D.{k}" for k, _ in D.named_parameters()],
                         torch.autograd.grad(D_loss, list(D.parameters()))))
        D_opt.step(ref_d.values())
        with torch.no_grad():        # Gs_update_op, in the same run as D_train_op
            for ps, pg in zip(Gs.parameters(), G.parameters()):
                ps.copy_(pg + (ps - pg) * beta)
        G_loss = G_logistic_nonsaturating(G, D, 4, 8).mean()
        ref_g = dict(zip([f"G.{k}" for k, _ in G.named_parameters()],
                         torch.autograd.grad(G_loss, list(G.parameters()))))
        G_opt.step(ref_g.values())

        close(loss_d, D_loss, f"iteration {it} D loss")
        close(loss_g, G_loss, f"iteration {it} G loss")
        close_all(grads_d, ref_d, f"iteration {it} D grad")
        close_all(grads_g, ref_g, f"iteration {it} G grad")
        close_all(t.nets["D"].state_dict(), D.state_dict(), f"iteration {it} D")
        close_all(t.nets["G"].state_dict(), G.state_dict(), f"iteration {it} G")
        close_all(t.nets["G_ema"].state_dict(), Gs.state_dict(), f"iteration {it} Gs")
