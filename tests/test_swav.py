"""SwAV (stdlib/ssl/swav.arch): Sinkhorn codes, swapped prediction, multi-crop, prototypes
L2-normalised every step and frozen for the first iterations — on tiny networks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from topology_checks import step
from archdsl import ArchError
from archdsl.nn import ssl_losses as losses

NET = """
network Flat(num_classes: int = 0) {
  in x: [B, 3, H = 8, W = 8]
  out x -> conv1: conv(4, 3, stride=2) -> relu -> mean(dims=[2, 3]) -> fc: linear(8)
}
from ssl.swav import SwAV
"""
SPEC = NET + ("variant t = SwAV(backbone=Flat, dim=8, hidden=16, n_prototypes=10, n_local=2, "
              "global_size=8, local_size=8, freeze_iters=2)\n")


def topo(spec: str = SPEC, seed: int = 0, **kw):
    return archdsl.load_spec(source=spec, seed=seed, **kw)


def crops(b: int = 3, seed: int = 0, pool=None):
    """Two global and two local crops of b images: noisy copies of images from `pool`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, 8, 8, generator=g) if pool is None else pool[torch.randperm(len(pool), generator=g)[:b]]
    noisy = [x + 0.2 * torch.randn(x.shape, generator=g) for _ in range(4)]
    return torch.stack(noisy[:2]), torch.stack(noisy[2:])


def reference_sinkhorn(out: torch.Tensor, eps: float, iters: int) -> torch.Tensor:
    """facebookresearch/swav main_swav.py distributed_sinkhorn, one process, written out."""
    Q = torch.exp(out / eps).t()
    B, K = Q.shape[1], Q.shape[0]
    Q = Q / torch.sum(Q)
    for _ in range(iters):
        Q = Q / torch.sum(Q, dim=1, keepdim=True) / K
        Q = Q / torch.sum(Q, dim=0, keepdim=True) / B
    return (Q * B).t()


# ---- Sinkhorn

def test_sinkhorn_matches_the_reference_and_its_sums_follow_the_convention():
    torch.manual_seed(0)
    scores = F.normalize(torch.randn(6, 8), dim=1) @ F.normalize(torch.randn(4, 8), dim=1).t()  # B=6, K=4
    q = losses.sinkhorn(scores, 0.05, 3)
    torch.testing.assert_close(q, reference_sinkhorn(scores, 0.05, 3))
    # in the reference's K x B orientation the columns (samples) sum to exactly 1 ...
    torch.testing.assert_close(q.sum(dim=1), torch.ones(6))
    # ... and the rows (prototypes) to B/K = 1.5: approximately after 3 iterations, exactly at convergence
    assert (q.sum(dim=0) - 1.5).abs().max() < 0.5
    torch.testing.assert_close(losses.sinkhorn(scores, 0.05, 500).sum(dim=0), torch.full((4,), 1.5),
                               rtol=1e-4, atol=1e-4)
    assert not losses.sinkhorn(scores.requires_grad_(), 0.05, 3).requires_grad  # codes are targets


def test_sinkhorn_does_not_overflow_on_large_scores():
    scores = torch.randn(5, 7, generator=torch.Generator().manual_seed(0)) * 2  # unnormalised features
    assert not torch.isfinite(reference_sinkhorn(scores, 0.05, 3)).all()  # exp(> 88) overflows float32
    q = losses.sinkhorn(scores, 0.05, 3)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(5))


# ---- swapped prediction

def test_swav_loss_matches_the_reference_loop_and_its_gradient():
    torch.manual_seed(1)
    b, views, T = 4, 4, 0.1
    scores = F.normalize(torch.randn(views * b, 6), dim=1).requires_grad_()
    got = losses.swav_loss(scores, n_views=views, n_assign=2, temperature=T)
    ref_in = scores.detach().clone().requires_grad_()
    want = 0.0
    for crop_id in (0, 1):  # main_swav.py: crops_for_assign = [0, 1]
        q = reference_sinkhorn(ref_in[b * crop_id:b * (crop_id + 1)].detach(), 0.05, 3)
        sub = 0.0
        for v in [v for v in range(views) if v != crop_id]:
            x = ref_in[b * v:b * (v + 1)] / T
            sub = sub - torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        want = want + sub / (views - 1)
    want = want / 2
    torch.testing.assert_close(got, want)
    got.backward()
    want.backward()
    torch.testing.assert_close(scores.grad, ref_in.grad)


# ---- the topology

def test_multicrop_goes_through_one_trunk_and_one_head_call():
    ir = archdsl.load_topology(source=SPEC)
    g = ir.phases["train"].graph
    calls = {(n.attrs["name"], tuple(g.node(i).shape for i in n.inputs)) for n in g.nodes() if n.kind == "net"}
    # trunk: the 2 x B global crops, then the 2 x B local crops; head: all 4 x B embeddings together
    assert calls == {("encoder", ((4, 3, 8, 8),)), ("head", ((8, 8),))}
    loss = next(n for n in g.nodes() if n.op == "swav_loss")
    assert (loss.attrs.n_views, loss.attrs.n_assign) == (4, 2)


def test_prototypes_are_unit_rows_from_the_start_and_after_every_step():
    t = topo()
    w = t.nets["head"].prototypes.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(10))
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.5)
    t.steps.fill_(5)  # past the freeze: the prototypes are trained
    out = t(*crops())
    out.loss.backward()
    opt.step()
    raw = w.detach().clone()
    assert (raw.norm(dim=1) - 1).abs().max() > 1e-4  # the step moved them off the sphere
    t.after_step()
    torch.testing.assert_close(w.detach(), F.normalize(raw, dim=1))


def test_prototypes_are_frozen_for_the_first_iterations():
    t = topo()
    w = t.nets["head"].prototypes.weight
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.5, momentum=0.9, weight_decay=0.1)
    w0 = w.detach().clone()
    trunk0 = t.nets["encoder"].conv1.weight.detach().clone()
    for i in range(2):  # freeze_iters = 2
        out = t(*crops(seed=i))
        out.loss.backward()
        assert w.grad is None  # as the reference's `p.grad = None`: no gradient, no optimizer update
        assert t.nets["head"].get_parameter("projection_head.0.weight").grad is not None
        opt.step()
        opt.zero_grad()
        t.after_step()
    torch.testing.assert_close(w.detach(), w0, rtol=0, atol=1e-6)  # renormalised, never moved
    assert not torch.equal(t.nets["encoder"].conv1.weight, trunk0)
    assert w.requires_grad  # restored after each frozen forward
    t(*crops(seed=3)).loss.backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_short_training_run_lowers_the_loss():
    t = topo(SPEC.replace("freeze_iters=2", "freeze_iters=5"))
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.1, momentum=0.9)
    pool = torch.randn(256, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    curve = []
    for s in range(40):
        curve.append(step(t, opt, *crops(8, seed=s, pool=pool)).loss.item())
    assert sum(curve[-8:]) / 8 < sum(curve[:8]) / 8, curve


def test_spec_mistakes_are_arch_errors():
    with pytest.raises(ArchError, match="no parameter under 'protos'"):
        archdsl.load_topology(source=SPEC.replace("variant t", "variant u").replace(
            "from ssl.swav import SwAV", SWAV_TEXT.replace('"head.prototypes"', '"head.protos"')))
    with pytest.raises(ArchError, match="has no parameter 'prototypes.bias'"):
        archdsl.load_topology(source=SPEC.replace("from ssl.swav import SwAV", SWAV_TEXT.replace(
            'weight="prototypes.weight"', 'weight="prototypes.bias"')))
    with pytest.raises(ArchError, match="not a network this phase updates"):
        archdsl.load_topology(source=SPEC.replace("from ssl.swav import SwAV", SWAV_TEXT.replace(
            '"head.prototypes"', '"trunk.prototypes"')))


SWAV_TEXT = (archdsl.__path__[0] + "/../stdlib/ssl/swav.arch")
SWAV_TEXT = open(SWAV_TEXT, encoding="utf-8").read().replace("variant swav = SwAV()", "")


def test_cli_train_runs_three_synthetic_steps():
    from click.testing import CliRunner

    from archdsl.cli import main
    result = CliRunner().invoke(main, [
        "train", "swav", "--synthetic", "--steps", "3", "--json", "--set", "backbone=resnet18",
        "--set", "n_prototypes=30", "--set", "global_size=32", "--set", "local_size=16"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("{")]
    assert len(lines) == 3


# ---- the recipe, step for step against main_swav.py ----------------------------------------------
# facebookresearch/swav: main_swav.py (lr_schedule: np.linspace warm-up from start_warmup, then
# cosine to final_lr; SGD wrapped in apex LARC(trust_coefficient=0.001, clip=False); train():
# prototypes L2-normalised before the forward, swapped-prediction loss, prototype gradients
# dropped for the first freeze_prototypes_niters iterations), src/resnet50.py (multi-crop forward,
# projection head, prototypes). apex/parallel/LARC.py transcribed. One process, no queue.

class RefSwAV(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.fc = nn.Conv2d(3, 4, 3, 2, 1), nn.Linear(4, 8)
        self.projection_head = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(inplace=True), nn.Linear(16, 8))
        self.prototypes = nn.Linear(8, 10, bias=False)

    def forward_backbone(self, x):
        return self.fc(F.relu(self.conv1(x)).mean(dim=(2, 3)))

    def forward(self, inputs):
        idx_crops = torch.cumsum(torch.unique_consecutive(
            torch.tensor([inp.shape[-1] for inp in inputs]), return_counts=True)[1], 0)
        start_idx, output = 0, None
        for end_idx in idx_crops:
            _out = self.forward_backbone(torch.cat(inputs[start_idx:end_idx]))
            output = _out if start_idx == 0 else torch.cat((output, _out))
            start_idx = end_idx
        x = F.normalize(self.projection_head(output), dim=1, p=2)
        return x, self.prototypes(x)


class RefLARC:
    """apex/parallel/LARC.py (clip=False, eps 1e-8) around an optimizer."""

    def __init__(self, optimizer, trust_coefficient=0.02, clip=True, eps=1e-8):
        self.optim, self.trust_coefficient, self.eps, self.clip = optimizer, trust_coefficient, eps, clip
        self.param_groups = optimizer.param_groups

    def zero_grad(self):
        self.optim.zero_grad()

    def step(self):
        with torch.no_grad():
            weight_decays = []
            for group in self.optim.param_groups:
                weight_decay = group["weight_decay"] if "weight_decay" in group else 0
                weight_decays.append(weight_decay)
                group["weight_decay"] = 0
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    param_norm, grad_norm = torch.norm(p.data), torch.norm(p.grad.data)
                    if param_norm != 0 and grad_norm != 0:
                        adaptive_lr = self.trust_coefficient * param_norm / (grad_norm + param_norm * weight_decay + self.eps)
                        p.grad.data += weight_decay * p.data
                        p.grad.data *= adaptive_lr
        self.optim.step()
        for i, group in enumerate(self.optim.param_groups):
            group["weight_decay"] = weight_decays[i]


def test_recipe_steps_equal_main_swav():
    """Five steps over epochs of two: the prototypes frozen for the first 3 iterations, LARC, the
    warm-up from start_warmup (linspace over 2 steps) then cosine to final_lr."""
    import math

    import numpy as np
    from recipe_checks import close, close_all, recipe_step
    recipe = ("base_lr=0.5, final_lr=0.01, start_warmup=0.1, warmup_epochs=1, weight_decay=0.01, epochs=3, "
              "steps_per_epoch=2")
    t = topo(NET + f"variant t = SwAV(backbone=Flat, dim=8, hidden=16, n_prototypes=10, n_local=2, global_size=8, "
                   f"local_size=4, freeze_iters=3, {recipe})\n").double()
    optimizers, schedule = t.configure_optimizers()
    model = RefSwAV().double()
    model.load_state_dict({**t.nets["encoder"].state_dict(), **t.nets["head"].state_dict()})
    optimizer = RefLARC(torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.01),
                        trust_coefficient=0.001, clip=False)
    warmup_lr_schedule = np.linspace(0.1, 0.5, 2 * 1)
    iters = np.arange(2 * (3 - 1))
    cosine_lr_schedule = np.array([0.01 + 0.5 * (0.5 - 0.01) * (1 + math.cos(math.pi * t / (2 * (3 - 1)))) for t in iters])
    lr_schedule = np.concatenate((warmup_lr_schedule, cosine_lr_schedule))
    g = torch.Generator().manual_seed(0)
    bs = 3
    for iteration in range(5):
        inputs = [torch.randn(bs, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2)] + \
                 [torch.randn(bs, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(2)]
        assert schedule.values()["train.lr"] == pytest.approx(lr_schedule[iteration], rel=1e-12)
        loss, grads = recipe_step(t, optimizers, schedule, torch.stack(inputs[:2]), torch.stack(inputs[2:]))

        for param_group in optimizer.param_groups:
            param_group["lr"] = lr_schedule[iteration]
        with torch.no_grad():
            model.prototypes.weight.copy_(F.normalize(model.prototypes.weight.data.clone(), dim=1, p=2))
        embedding, output = model(inputs)
        ref_loss = 0
        for crop_id in (0, 1):
            with torch.no_grad():
                q = reference_sinkhorn(output[bs * crop_id:bs * (crop_id + 1)].detach(), 0.05, 3)
            subloss = 0
            for v in np.delete(np.arange(4), crop_id):
                x = output[bs * v:bs * (v + 1)] / 0.1
                subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
            ref_loss += subloss / 3
        ref_loss /= 2
        optimizer.zero_grad()
        ref_loss.backward()
        if iteration < 3:
            for name, p in model.named_parameters():
                if "prototypes" in name:
                    p.grad = None
        ref_grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        optimizer.step()

        close(loss, ref_loss, f"step {iteration} loss")
        close_all({k.partition(".")[2]: v for k, v in grads.items()}, ref_grads, f"step {iteration} grad")
        ref_state = dict(model.state_dict())   # ours renormalises after the step, the reference before the next
        ref_state["prototypes.weight"] = F.normalize(ref_state["prototypes.weight"], dim=1)
        close_all({**t.nets["encoder"].state_dict(), **t.nets["head"].state_dict()}, ref_state, f"step {iteration} weights")
