"""PGGAN (stdlib/gan/pggan.arch) and the gradient penalties: the fade-in convention at alpha 0
and 1 (G and D, real images blended the same way), grow() keeping trained weights, alpha as
state, the penalties against hand formulas with second-order gradients reaching D's parameters,
compile without graph breaks, and a short WGAN-GP run in which D learns to tell real from fake."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl import ArchError
from archdsl.semantics.loader import stdlib_dir
from archdsl.nn import loss as losses
from topology_checks import step

SPEC = stdlib_dir() / "gan" / "pggan.arch"
TRAIN = stdlib_dir() / "gan" / "pggan_train.arch"
TINY = dict(latent=16, fmap_base=64, fmap_max=16)   # channels 16 at every resolution up to 16x16


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_topo(**kw):
    return archdsl.load_spec(TRAIN, "pggan", seed=0, batch=4, **{**TINY, **kw})


def net(variant, **kw):
    return archdsl.load_spec(SPEC, variant, seed=0, **kw).eval()


def copy_by_name(dst, src):
    """Load the entries of `src` that `dst` has; returns the keys of `dst` left as they were."""
    sd = src.state_dict()
    own = dst.state_dict()
    dst.load_state_dict({k: sd[k] if k in sd else v for k, v in own.items()})
    return [k for k in own if k not in sd]


# ---- fade-in: one alpha convention, in G and D

def test_generator_alpha_0_is_the_old_path_upsampled_and_alpha_1_the_new_path():
    g_old = net("pggan_g", res=2, **TINY)
    g_fade = net("pggan_g", res=3, fade=True, **TINY)
    g_new = net("pggan_g", res=3, **TINY)
    assert copy_by_name(g_fade, g_old) == [k for k in g_fade.state_dict() if "8" in k]
    assert copy_by_name(g_new, g_fade) == []
    z = torch.randn(4, 16)
    with torch.no_grad():
        old = F.interpolate(g_old(z), scale_factor=2, mode="nearest")
        assert torch.equal(g_fade(z, torch.zeros(1)), old)
        assert torch.equal(g_fade(z, torch.ones(1)), g_new(z))
        mid = g_fade(z, torch.full((1,), 0.25))
        torch.testing.assert_close(mid, 0.25 * g_new(z) + 0.75 * old)


def test_discriminator_alpha_0_sees_the_downsampled_image_through_the_old_from_rgb():
    d_old = net("pggan_d", res=2, **{k: v for k, v in TINY.items() if k != "latent"})
    d_fade = net("pggan_d", res=3, fade=True, fmap_base=64, fmap_max=16)
    d_new = net("pggan_d", res=3, fmap_base=64, fmap_max=16)
    copy_by_name(d_fade, d_old)
    assert copy_by_name(d_new, d_fade) == []
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(d_fade(x, torch.zeros(1)), d_old(F.avg_pool2d(x, 2)))
        assert torch.equal(d_fade(x, torch.ones(1)), d_new(x))


def test_real_images_fade_in_the_same_way_and_alpha_is_state():
    t = tiny_topo(res=3)
    assert "state.alpha" in dict(t.named_buffers())
    assert not any(p is t.state.alpha for p in t.parameters())
    d = t.nets["D"]
    real = torch.randn(4, 3, 8, 8)
    blurred = F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
    for a, seen in ((0.0, blurred), (1.0, real), (0.5, 0.5 * real + 0.5 * blurred)):
        t.set_alpha(a)
        out = t(real, phase="d_step")
        with torch.no_grad():
            want = d(seen, torch.full((1,), a)).mean()
        torch.testing.assert_close(out.logs["d_real"], want)
    with pytest.raises(ValueError):
        t.set_alpha(1.5)


# ---- progressive growth

def test_grow_keeps_trained_weights_adds_the_next_resolution_and_restarts_the_fade_in():
    t = tiny_topo()
    opt = torch.optim.Adam(t.parameters(phase="d_step"), lr=1e-2)
    for _ in range(2):
        step(t, opt, torch.randn(4, 3, 4, 4), phase="d_step")
    before = {k: v.clone() for k, v in t.state_dict().items()}
    fresh = t.grow()
    after = t.state_dict()
    assert sorted(fresh) == sorted(k for k in after if k not in before)
    assert {k.split(".")[2] for k in fresh} == {"stage8", "to_rgb8", "from_rgb8"}
    for k, v in before.items():
        if k != "state.alpha":
            assert torch.equal(after[k], v), k
    assert int(t.steps) == 2 and float(t.state.alpha) == 0.0
    assert t.ir.args["res"] == 3
    assert not any(p.requires_grad for p in t.nets["G_ema"].parameters())
    out = t(torch.randn(4, 3, 8, 8), phase="g_step")
    out.loss.backward()
    assert all(p.grad is None for p in t.nets["D"].parameters())   # the G-step leaves D alone
    assert t.nets["G"].get_submodule("stage8.0.conv").weight.grad is not None
    with pytest.raises(Exception):
        t(torch.randn(4, 3, 4, 4), phase="d_step")                 # the old resolution is gone


# ---- gradient penalties

def test_gradient_penalties_equal_hand_formulas():
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    d = (x ** 2).sum(dim=(1, 2, 3))                 # ∇ = 2x
    r1 = losses.gradient_penalty(d, x, "r1")
    torch.testing.assert_close(r1, (4 * x.detach() ** 2).sum(dim=(1, 2, 3)).mean())
    d = (x ** 2).sum(dim=(1, 2, 3))
    gp = losses.gradient_penalty(d, x, "wgan_gp")
    norm = 2 * x.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(gp, ((norm - 1) ** 2).mean())
    with pytest.raises(ValueError):
        losses.gradient_penalty(d, x, "r2")


PENALTY = """
network LinD() {
  in x: [B, 6]
  out x -> fc: linear(1)
}
network Src() {
  in x: [B, 6]
  out x -> fc: linear(6)
}
topology T(kind: str = "r1") {
  in real: [B = 3, 6]
  net G = Src()
  net D = LinD()
  phase d_step(update=[D]) {
    fake = real -> G -> stop_grad
    if kind == "r1" {
      loss = real -> grad_penalty(D, kind="r1")
    } else {
      loss = [real, fake] -> grad_penalty(D, kind="wgan_gp")
    }
  }
}
variant t = T()
"""


@pytest.mark.parametrize("kind", ["r1", "wgan_gp"])
def test_penalty_is_second_order_its_gradient_reaches_d(kind):
    """D(x) = w·x + b has ∇ₓD = w everywhere: r1 = ‖w‖², d/dw = 2w; wgan_gp = (‖w‖ − 1)²,
    d/dw = 2(‖w‖ − 1) w / ‖w‖. Without create_graph no gradient could reach w."""
    t = archdsl.load_spec(source=PENALTY, seed=0, kind=kind)
    w = t.nets["D"].fc.weight
    out = t(torch.randn(3, 6), phase="d_step")
    out.loss.backward()
    wd = w.detach()
    n = wd.norm()
    if kind == "r1":
        torch.testing.assert_close(out.loss, n ** 2)
        torch.testing.assert_close(w.grad, 2 * wd)
    else:
        torch.testing.assert_close(out.loss, (n - 1) ** 2)
        torch.testing.assert_close(w.grad, 2 * (n - 1) * wd / n)
    assert t.nets["D"].fc.bias.grad is None or torch.count_nonzero(t.nets["D"].fc.bias.grad) == 0
    assert all(p.grad is None for p in t.nets["G"].parameters())


def test_wgan_gp_interpolates_between_real_and_fake():
    """With D(x) = ½‖x‖² per sample, ∇ = x̂ itself: ‖x̂‖ must lie between the lines' ends."""
    from archdsl.nn.runtime import penalty_call

    class Half(torch.nn.Module):
        def forward(self, x):
            seen.append(x.detach().clone())
            return 0.5 * (x ** 2).sum(dim=1)
    seen = []
    real, fake = torch.zeros(64, 2), torch.ones(64, 2)
    gp = penalty_call(Half(), "wgan_gp", real, fake)
    xh = seen[0]
    u = xh[:, 0]
    assert torch.equal(xh[:, 0], xh[:, 1]) and (u >= 0).all() and (u <= 1).all() and u.std() > 0.1
    torch.testing.assert_close(gp, ((xh.norm(dim=1) - 1) ** 2).mean())


def test_grad_penalty_misuse_is_an_arch_error():
    bad_kind = PENALTY.replace('kind="r1")', 'kind="r3")')
    with pytest.raises(ArchError, match="grad_penalty kind"):
        archdsl.load_topology(source=bad_kind)
    missing = PENALTY.replace("[real, fake] -> grad_penalty", "real -> grad_penalty")
    with pytest.raises(ArchError, match="needs 2 input"):
        archdsl.load_topology(source=missing, kind="wgan_gp")


# ---- compile and a short run

def test_fade_networks_compile_without_graph_breaks():
    g = net("pggan_g", res=3, fade=True, **TINY)
    d = net("pggan_d", res=3, fade=True, fmap_base=64, fmap_max=16)
    z, a = torch.randn(4, 16), torch.full((1,), 0.3)
    img = g(z, a)
    cg = torch.compile(g, fullgraph=True, backend="eager")
    cd = torch.compile(d, fullgraph=True, backend="eager")
    torch.testing.assert_close(cg(z, a), img)
    torch.testing.assert_close(cd(img, a), d(img, a))
    d.train()(g.train()(z, a), a).sum().backward()


def test_wgan_gp_training_separates_real_from_fake():
    """A few D-steps on a fixed pool: the critic's margin E[D(real)] − E[D(fake)] grows."""
    torch.manual_seed(0)
    t = tiny_topo(res=3)
    t.set_alpha(1.0)
    opt = torch.optim.Adam(t.parameters(phase="d_step"), lr=1e-3, betas=(0.0, 0.99))
    real = torch.rand(4, 3, 8, 8) * 0.2 + 0.8    # bright images; G starts near zero
    first = t(real, phase="d_step")
    for _ in range(15):
        step(t, opt, real, phase="d_step", after_step=False)
    last = t(real, phase="d_step")
    assert last.loss.item() < first.loss.item() - 0.5
    assert last.logs["d_real"].item() > first.logs["d_real"].item()


# ---- the training step, as the release
# tkarras/progressive_growing_of_gans: loss.py D_wgangp_acgan (wgan_lambda 10, wgan_epsilon 0.001,
# wgan_target 1; no labels) and G_wgan_acgan, each reduced by a mean over the minibatch; train.py's
# iteration (D_train_op with Gs_update_op, Gs = moving average of G with beta 0.999, then
# G_train_op) and process_reals' FadeLOD (lerp(x, 2x2-mean of x, lod − floor(lod)));
# tfutil.Optimizer → tf.train.AdamOptimizer(beta1 0, beta2 0.99, epsilon 1e-8), ported as TFAdam
# in tests/test_stylegan.py. The release's networks take lod, ours alpha = 1 − (lod − floor(lod)):
# here copies of the spec's G and D, whose fade-in the tests above check; the step is under test.

def process_reals(x, lod):
    s = x.shape
    y = x.reshape(-1, s[1], s[2] // 2, 2, s[3] // 2, 2).mean(dim=(3, 5), keepdim=True)
    y = y.repeat(1, 1, 1, 2, 1, 2).reshape(-1, s[1], s[2], s[3])
    return x + (y - x) * (lod - math.floor(lod))


def D_wgangp(G, D, minibatch_size, reals, alpha, latent, wgan_lambda=10.0, wgan_epsilon=0.001, wgan_target=1.0):
    latents = torch.randn([minibatch_size, latent], dtype=torch.float64)
    fake_images_out = G(latents, alpha).detach()      # D_opt holds D's variables only
    real_scores_out = D(reals, alpha)
    fake_scores_out = D(fake_images_out, alpha)
    loss = fake_scores_out - real_scores_out
    mixing_factors = torch.rand([minibatch_size, 1, 1, 1], dtype=torch.float64)
    mixed_images_out = (reals + (fake_images_out - reals) * mixing_factors).requires_grad_(True)
    mixed_scores_out = D(mixed_images_out, alpha)
    mixed_grads, = torch.autograd.grad(mixed_scores_out.sum(), [mixed_images_out], create_graph=True)
    mixed_norms = mixed_grads.square().sum(dim=[1, 2, 3]).sqrt()
    gradient_penalty = (mixed_norms - wgan_target).square()
    loss = loss + gradient_penalty.view(-1, 1) * (wgan_lambda / wgan_target ** 2)
    return loss + real_scores_out.square() * wgan_epsilon


def G_wgan(G, D, minibatch_size, alpha, latent):
    latents = torch.randn([minibatch_size, latent], dtype=torch.float64)
    return -D(G(latents, alpha), alpha)


def test_pggan_steps_equal_the_release_training_loop():
    """Four iterations at 8x8 during the fade-in (alpha 0.3, lod 1.7): losses, gradients, G and
    D after TF's Adam, Gs (updated with the D-step, as the release)."""
    import copy
    from recipe_checks import close, close_all, recipe_step, updated_by
    from test_stylegan import TFAdam
    t = tiny_topo(res=3).double()
    t.set_alpha(0.3)
    optimizers, schedule = t.configure_optimizers()
    assert updated_by(optimizers["d_step"]) == {id(p) for p in t.nets["D"].parameters()}
    assert updated_by(optimizers["g_step"]) == {id(p) for p in t.nets["G"].parameters()}
    G, D, Gs = (copy.deepcopy(t.nets[n]) for n in ("G", "D", "G_ema"))
    G_opt = TFAdam(G.parameters(), 0.001, 0.0, 0.99, 1e-8)
    D_opt = TFAdam(D.parameters(), 0.001, 0.0, 0.99, 1e-8)
    alpha, lod = torch.full((1,), 0.3, dtype=torch.float64), 3 - 2 + 1 - 0.3
    g = torch.Generator().manual_seed(0)
    for it in range(4):
        reals = torch.rand(4, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
        torch.manual_seed(60 + it)
        loss_d, grads_d = recipe_step(t, optimizers, schedule, reals, phase="d_step", after_step=False)
        loss_g, grads_g = recipe_step(t, optimizers, schedule, reals, phase="g_step")

        torch.manual_seed(60 + it)
        D_loss = D_wgangp(G, D, 4, process_reals(reals, lod), alpha, 16).mean()
        ref_d = dict(zip([f"D.{k}" for k, _ in D.named_parameters()],
                         torch.autograd.grad(D_loss, list(D.parameters()))))
        D_opt.step(ref_d.values())
        with torch.no_grad():
            for ps, pg in zip(Gs.parameters(), G.parameters()):
                ps.copy_(pg + (ps - pg) * 0.999)
        G_loss = G_wgan(G, D, 4, alpha, 16).mean()
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


def release_lod(cur_nimg, resolution_log2, lod_initial_resolution=4, lod_training_kimg=600, lod_transition_kimg=600):
    """train.py TrainingSchedule: lod and resolution."""
    kimg = cur_nimg / 1000.0
    phase_dur = lod_training_kimg + lod_transition_kimg
    phase_idx = int(np.floor(kimg / phase_dur)) if phase_dur > 0 else 0
    phase_kimg = kimg - phase_idx * phase_dur
    lod = resolution_log2
    lod -= np.floor(np.log2(lod_initial_resolution))
    lod -= phase_idx
    if lod_transition_kimg > 0:
        lod -= max(phase_kimg - lod_training_kimg, 0.0) / lod_transition_kimg
    lod = max(lod, 0.0)
    return lod, 2 ** (resolution_log2 - int(np.floor(lod)))


def test_progressive_schedule_is_the_release_training_schedule():
    """Resolution and fade-in alpha = 1 − frac(lod) at every 10k images up to 1024x1024 and beyond,
    for the release's defaults (600k + 600k) and the paper's preset (800k + 800k)."""
    from archdsl.ir.schedule import progressive_schedule
    for kimg in (600, 800):
        for nimg in list(range(0, 11_000_000, 10_000)) + [600_001, 1_799_999, 1_800_000]:
            lod, resolution = release_lod(nimg, 10, lod_training_kimg=kimg, lod_transition_kimg=kimg)
            res, alpha = progressive_schedule(nimg, 10, 2, kimg, kimg)
            assert 2 ** res == resolution, nimg
            assert alpha == pytest.approx(1.0 - (lod - np.floor(lod)), abs=1e-12), nimg


def test_progress_grows_and_fades_in_as_the_schedule():
    t = tiny_topo(max_res=4, training_kimg=0.008, transition_kimg=0.004)  # 8 images stable, 4 fading
    assert not t.progress(4) and int(t.ir.args["res"]) == 2 and float(t.state.alpha) == 1.0
    assert t.progress(9)                                  # 1 of 4 images into the 8x8 fade-in
    assert t.ir.args["res"] == 3 and float(t.state.alpha) == pytest.approx(0.25)
    assert not t.progress(11) and float(t.state.alpha) == pytest.approx(0.75)
    assert t.progress(30) and t.ir.args["res"] == 4 and float(t.state.alpha) == 1.0
    t(torch.randn(4, 3, 16, 16), phase="d_step")
    with pytest.raises(ValueError, match="progressive schedule"):
        archdsl.load_spec(source=PENALTY).progress(10)
