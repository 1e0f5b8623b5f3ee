"""Training topologies: the traps of shared/topology-traps.md, each a test, on tiny networks."""
from __future__ import annotations

import math

import pytest
import torch

import archdsl
from topology_checks import step
from archdsl import ArchError
from archdsl.nn import loss as losses
from archdsl.nn.runtime import shuffled_call

TINY = """
network Tiny(num_classes: int = 0, width: int = 8) {
  in x: [B, 3, H = 16, W = 16]
  y = x -> conv1: conv(width, 3, stride=4) -> bn1: bn -> relu -> flatten
  if num_classes > 0 {
    y = y -> fc: linear(num_classes)
  }
  out y
}
"""


def topo(text: str, seed: int = 0, **kw):
    return archdsl.load_spec(source=TINY + text, seed=seed, **kw)


MOCO = "from ssl.moco import MoCo\nvariant t = MoCo(version=1, backbone=Tiny, dim=16, hidden=32, K=32, m=0.9, img=16)\n"


def views(b=8, seed=0, pool=None):
    """Two noisy views of b images (drawn from `pool` when given, else random)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, 16, 16, generator=g) if pool is None else pool[torch.randperm(len(pool), generator=g)[:b]]
    return x + 0.1 * torch.randn(x.shape, generator=g), x + 0.1 * torch.randn(x.shape, generator=g)


# ---- EMA twins

def test_twin_starts_as_an_exact_copy_and_is_never_trained():
    t = topo(MOCO)
    q, k = t.nets["query"], t.nets["key"]
    assert all(torch.equal(a, b) for a, b in zip(q.state_dict().values(), k.state_dict().values()))
    assert not any(p.requires_grad for p in k.parameters())
    trained = {id(p) for p in t.parameters(phase="train")}
    assert trained == {id(p) for p in q.parameters()}
    assert not trained & {id(p) for p in k.parameters()}
    t(*views()).loss.backward()
    assert all(p.grad is None for p in k.parameters())
    assert any(p.grad is not None for p in q.parameters())


def test_ema_update_is_m_old_plus_one_minus_m_new_once_per_step():
    t = topo(MOCO)
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.5)
    old = [p.clone() for p in t.nets["key"].parameters()]
    step(t, opt, *views())
    new_src = list(t.nets["query"].parameters())
    for o, n, twin in zip(old, new_src, t.nets["key"].parameters()):
        torch.testing.assert_close(twin, 0.9 * o + 0.1 * n)  # m = 0.9 is the weight on the OLD value
    assert int(t.steps) == 1


def test_cosine_momentum_schedule_hits_its_endpoints():
    t = topo("from ssl.byol import BYOL\nvariant t = BYOL(backbone=Tiny, dim=8, hidden=16, tau=0.9, "
             "epochs=10, dataset_size=4, batch_size=4, img=16)\n")
    assert t.momentum("target") == pytest.approx(0.9)
    t.steps.fill_(5)
    assert t.momentum("target") == pytest.approx(0.95)
    t.steps.fill_(10)
    assert t.momentum("target") == pytest.approx(1.0)
    t.steps.fill_(50)
    assert t.momentum("target") == pytest.approx(1.0)


# ---- queue

def test_queue_is_read_before_enqueue_and_the_pointer_wraps():
    t = topo(MOCO)
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.1)
    queue0 = t.state.queue.clone()
    out = t(*views(seed=1))
    assert torch.equal(t.state.queue, queue0)  # the forward pass only reads the queue
    kept = next(iter(t._kept["train"].values()))
    out.loss.backward()
    opt.step()
    t.after_step()
    assert torch.equal(t.state.queue[:, :8], kept.t())  # enqueued after the loss was computed
    assert torch.equal(t.state.queue[:, 8:], queue0[:, 8:])
    for s in range(2, 6):
        step(t, opt, *views(seed=s))
    assert int(t.state.queue_ptr) == 8  # 5 batches of 8 in a queue of 32: wrapped once
    assert not t.state.queue.requires_grad


def test_queue_length_that_the_batch_does_not_divide_is_refused():
    with pytest.raises(ArchError, match="not a multiple of the batch"):
        archdsl.load_topology(source=TINY + MOCO, input_shape=[(6, 3, 16, 16), (6, 3, 16, 16)])


def test_queue_starts_with_unit_columns():
    t = topo(MOCO)
    torch.testing.assert_close(t.state.queue.norm(dim=0), torch.ones(32))


# ---- shuffle BN

def test_shuffle_bn_returns_outputs_in_input_order():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval()
    x = torch.randn(10, 4)
    torch.manual_seed(3)
    torch.testing.assert_close(shuffled_call(net, x), net(x))
    net.train()  # in training, each sample's statistics come from a shuffled batch: same set
    torch.testing.assert_close(shuffled_call(net, x).sort(dim=0).values, net(x).sort(dim=0).values)


# ---- NT-Xent

def test_nt_xent_excludes_self_pairs_and_matches_the_definition():
    z1, z2 = torch.randn(4, 5), torch.randn(4, 5)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / 0.5
    total = 0.0
    for i in range(8):
        j = (i + 4) % 8
        others = [sim[i, k] for k in range(8) if k != i]  # never the self-pair
        total += -(sim[i, j] - torch.logsumexp(torch.stack(others), 0))
    torch.testing.assert_close(losses.nt_xent(z1, z2, 0.5), total / 8)


# ---- DINO

POOLED = """
network Pooled(num_classes: int = 0) {
  in x: [B, 3, H = 16, W = 16]
  out x -> conv1: conv(8, 3, stride=2) -> relu -> mean(dims=[2, 3])
}
"""
DINO = (POOLED + "from ssl.dino import DINO\nvariant t = DINO(backbone=Pooled, out_dim=32, n_local=2, "
        "global_size=16, local_size=8, m=0.9)\n")


def test_a_network_applied_at_two_sizes_must_not_depend_on_the_size():
    with pytest.raises(ArchError, match="different weights for inputs"):
        archdsl.load_topology(source=TINY + DINO.replace("backbone=Pooled", "backbone=Tiny"))


def test_dino_teacher_sees_only_global_crops_and_center_follows_raw_teacher_outputs():
    ir = archdsl.load_topology(source=TINY + DINO)
    g = ir.phases["train"].graph
    teacher = [n for n in g.nodes() if n.kind == "net" and n.attrs["name"] == "teacher"]
    assert len(teacher) == 1 and teacher[0].shape == (2 * 2, 32)  # 2 global crops × batch 2
    t = topo(DINO)
    gl, lo = torch.randn(2, 2, 3, 16, 16), torch.randn(2, 2, 3, 8, 8)
    with torch.no_grad():
        raw = t.nets["teacher"](gl.flatten(0, 1))
    out = t(gl, lo)
    assert torch.equal(t.state.center, torch.zeros(1, 32))  # not during the forward pass
    out.loss.backward()
    assert all(p.grad is None for p in t.nets["teacher"].parameters())
    t.after_step()
    torch.testing.assert_close(t.state.center, 0.1 * raw.mean(dim=0, keepdim=True))


def test_dino_uniform_outputs_give_ln_k_and_a_single_view_is_an_error():
    k = 32
    s, te = torch.zeros(4 * 3, k), torch.zeros(2 * 3, k)
    assert losses.dino_loss(s, te, torch.zeros(1, k), 2, 0.1, 0.04).item() == pytest.approx(math.log(k))
    with pytest.raises(ValueError, match="two views"):
        losses.dino_loss(torch.zeros(3, k), torch.zeros(3, k), torch.zeros(1, k), 1, 0.1, 0.04)
    with pytest.raises(ArchError, match="two views"):
        archdsl.load_topology(source=TINY + DINO.replace("n_local=2", "n_local=0, n_global=1")
                              .replace("L = n_local", "L = 1"))


# ---- GANs

GAN = "from gan.gan import GAN\nvariant t = GAN(nz=8, img=[1, 8, 8])\n"


def test_d_step_sees_detached_fakes_and_g_step_leaves_d_untouched():
    t = topo(GAN)
    real = torch.randn(4, 1, 8, 8)
    t(real, phase="d_step").loss.backward()
    assert all(p.grad is None for p in t.nets["G"].parameters())
    assert all(p.grad is not None for p in t.nets["D"].parameters())
    t.zero_grad(set_to_none=True)
    t(real, phase="g_step").loss.backward()
    assert all(p.grad is None for p in t.nets["D"].parameters())
    assert all(p.grad is not None for p in t.nets["G"].parameters())
    assert all(p.requires_grad for p in t.nets["D"].parameters())  # restored after the phase
    assert t.schedule() == ["d_step", "g_step"]
    assert topo(GAN.replace("img=[1, 8, 8]", "img=[1, 8, 8], k=3")).schedule() == ["d_step"] * 3 + ["g_step"]


# ---- CLIP loss

def test_clip_loss_is_symmetric_and_clamps_the_scale_only_when_asked():
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    torch.testing.assert_close(losses.clip_loss(a, b, torch.tensor(2.0)), losses.clip_loss(b, a, torch.tensor(2.0)))
    ln100 = math.log(100.0)
    torch.testing.assert_close(losses.clip_loss(a, b, torch.tensor(9.0), max_scale=ln100),
                               losses.clip_loss(a, b, torch.tensor(ln100)))
    assert not torch.allclose(losses.clip_loss(a, b, torch.tensor(9.0)), losses.clip_loss(a, b, torch.tensor(ln100)))


# ---- short runs lower the loss

@pytest.mark.parametrize("spec,lr,warmup", [
    # MoCo's queue starts as random unit vectors and holds real keys after K / B = 4 steps
    (MOCO.replace("m=0.9", "m=0.9, T=0.2"), 0.01, 4),
    ("from ssl.simclr import SimCLR\nvariant t = SimCLR(backbone=Tiny, dim=16, hidden=32, img=16)\n", 0.05, 0),
    ("from ssl.simsiam import SimSiam\nvariant t = SimSiam(backbone=Tiny, dim=16, hidden=32, pred_hidden=8, "
     "img=16)\n", 0.05, 0),
    ("from ssl.byol import BYOL\nvariant t = BYOL(backbone=Tiny, dim=16, hidden=32, img=16)\n", 0.05, 0),
], ids=["moco", "simclr", "simsiam", "byol"])
def test_short_training_run_lowers_the_loss(spec, lr, warmup):
    """Fresh batches of two noisy views from a pool of images: the mean loss of the last six
    steps falls below the mean of the first six (after any warm-up)."""
    t = topo(spec)
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=lr, momentum=0.9)
    pool = torch.randn(512, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    curve = [step(t, opt, *views(8, seed=s, pool=pool)).loss.item() for s in range(30)]
    assert sum(curve[-6:]) / 6 < sum(curve[warmup:warmup + 6]) / 6, curve


def test_gan_discriminator_loss_responds_to_real_versus_fake():
    t = topo(GAN, seed=1)
    d_opt = torch.optim.Adam(t.parameters(phase="d_step"), lr=2e-3, betas=(0.5, 0.999))
    real = torch.rand(16, 1, 8, 8) * 0.2 + 0.7  # an easy "real" distribution
    first = t(real, phase="d_step").loss.item()
    for _ in range(30):
        out = step(t, d_opt, real, phase="d_step")
    assert out.loss.item() < first
    assert out.logs["d_real"].item() > 0  # D calls real samples real


def test_state_dict_covers_networks_twins_and_state():
    keys = topo(MOCO).state_dict().keys()
    assert {"state.queue", "state.queue_ptr", "steps"} <= set(keys)
    assert any(k.startswith("nets.query.") for k in keys) and any(k.startswith("nets.key.") for k in keys)


def test_train_loop_runs_the_schedule_and_steps_the_twins():
    from archdsl.topology.train import synthetic_pool, train
    gan = topo(GAN.replace("img=[1, 8, 8]", "img=[1, 8, 8], k=2"), input_shape=[(4, 1, 8, 8)])
    seen = []
    history = train(gan, 3, lr=1e-3, on_step=seen.append)
    assert seen == history and [h.step for h in history] == [0, 1, 2]
    assert set(history[0].losses) == {"d_step", "g_step"} and "d_step.d_real" in history[0].logs
    assert int(gan.steps) == 3
    moco = topo(MOCO, input_shape=[(8, 3, 16, 16)] * 2)
    pool = synthetic_pool(moco, pool=16)
    assert [tuple(p.shape) for p in pool] == [(16, 3, 16, 16)] * 2
    before = [p.clone() for p in moco.nets["key"].parameters()]
    train(moco, 2, lr=0.01, optimizer="sgd", data=pool)
    assert int(moco.state.queue_ptr) == 16
    assert any(not torch.equal(a, b) for a, b in zip(before, moco.nets["key"].parameters()))


def test_a_topology_ir_is_data_naming_its_spec_and_each_nets_network():
    """No callee or closure back into the elaborator: the IR names where it came from (grow()
    elaborates that again through the loader load_spec passes) and each net's network."""
    from archdsl.ir.topology import SpecRef
    ir = archdsl.load_topology("moco_v2", dim=64)
    assert ir.spec == SpecRef("moco_v2", None, None, {"dim": 64})
    assert {n: (d.network, d.twin is not None) for n, d in ir.nets.items()} == {
        "query": ("Encoder", False), "key": ("Encoder", True)}
    assert ir.nets["key"].first_graph.node("head.layer1").shape == (1, 64)
