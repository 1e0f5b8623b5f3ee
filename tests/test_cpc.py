"""CPC (stdlib/nets/cpc.arch network, stdlib/ssl/cpc.arch topology): the network against a
hand-written PyTorch CDCK2-style model, the InfoNCE over future latents against its definition, and a short training run."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import archdsl
from archdsl.nn import ssl_losses as losses
from topology_checks import step

SMALL = dict(hidden=16, context=8, steps=3, window=1600)  # 1600 samples → T = 10 latents


class HandCPC(nn.Module):
    """CDCK2's layers (jefflai108/Contrastive-Predictive-Coding-PyTorch), written independently."""

    def __init__(self, hidden=512, context=256, steps=12):
        super().__init__()
        layers, c_in = [], 1
        for k, s, p in zip([10, 8, 4, 4, 4], [5, 4, 2, 2, 2], [3, 2, 1, 1, 1]):
            layers += [nn.Conv1d(c_in, hidden, k, s, p, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
            c_in = hidden
        self.encoder = nn.Sequential(*layers)
        self.gru = nn.GRU(hidden, context, batch_first=True)
        self.Wk = nn.ModuleList([nn.Linear(context, hidden) for _ in range(steps)])

    def forward(self, x):
        z = self.encoder(x).transpose(1, 2)
        c, _ = self.gru(z)
        return z, c, torch.cat([w(c) for w in self.Wk], dim=2)


def test_full_size_params_match_the_cdck2_layout():
    report = archdsl.check_spec("stdlib/nets/cpc.arch", variant="cpc_audio")
    assert report.totals.params == sum(p.numel() for p in HandCPC().parameters()) == 7_423_488
    graph = archdsl.load_graph("cpc_audio")
    out = {k: tuple(graph.node(v).shape) for k, v in graph.outputs.items()}
    assert out == {"z": (1, 128, 512), "c": (1, 128, 256), "pred": (1, 128, 12 * 512)}  # 20480 / 160 = 128


def test_network_equals_the_hand_written_model_with_the_same_weights():
    net = archdsl.load_spec("stdlib/nets/cpc.arch", variant="cpc_audio", input_shape=[(3, 1, 1600)],
                            seed=0, **SMALL)
    ref = HandCPC(16, 8, 3)
    sd = {k: (v.squeeze(2) if k.endswith(".weight") and v.dim() == 4 else v) for k, v in net.state_dict().items()}
    ref.load_state_dict(sd, strict=True)  # same keys; Conv1d weights are ours without the 1-high axis
    for m in (net, ref):
        m.train()
    x = torch.randn(3, 1, 1600)
    got, want = net(x), ref(x)
    for name, w in zip(("z", "c", "pred"), want):
        torch.testing.assert_close(got[name], w, rtol=1e-4, atol=1e-5)


def test_cpc_nce_matches_its_definition():
    torch.manual_seed(0)
    b, t, d, steps = 3, 6, 4, 2
    z, pred = torch.randn(b, t, d), torch.randn(b, t, steps * d)
    total, count = 0.0, 0
    for k in range(1, steps + 1):
        for s in range(t - k):
            for i in range(b):
                p = pred[i, s, (k - 1) * d:k * d]
                scores = torch.stack([p @ z[j, s + k] for j in range(b)])  # candidates: the batch at t + k
                total += -(scores[i] - torch.logsumexp(scores, 0))
                count += 1
    torch.testing.assert_close(losses.cpc_nce(z, pred, steps), total / count)
    # uninformative predictions: every candidate equally likely, loss ln B
    assert losses.cpc_nce(z, torch.zeros(b, t, steps * d), steps).item() == pytest.approx(math.log(b))


def _signals(n: int, seed: int) -> torch.Tensor:
    """Sinusoids of random frequency and phase plus noise: a future that the past predicts."""
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(n, 1, 1, generator=g) * 0.02 + 0.002
    phase = torch.rand(n, 1, 1, generator=g) * 6.28
    t = torch.arange(1600).float()
    return torch.sin(f * t + phase) + 0.1 * torch.randn(n, 1, 1600, generator=g)


def test_short_training_run_lowers_the_loss():
    spec = "from ssl.cpc import CPC\nfrom nets.cpc import CPCNet\nvariant t = CPC(network=CPCNet(hidden=16, context=8), steps=3, window=1600)\n"
    topo = archdsl.load_spec(source=spec, seed=0, input_shape=[(8, 1, 1600)])
    opt = torch.optim.Adam(topo.parameters(phase="train"), lr=3e-3)
    pool = _signals(64, 0)
    g = torch.Generator().manual_seed(1)
    curve = []
    for _ in range(30):
        out = step(topo, opt, pool[torch.randperm(64, generator=g)[:8]])
        curve.append(out.loss.item())
    assert sum(curve[-6:]) / 6 < sum(curve[:6]) / 6 - 0.1, curve


def test_cli_train_runs_three_synthetic_steps():
    from click.testing import CliRunner

    from archdsl.cli import main
    result = CliRunner().invoke(main, ["train", "cpc", "--synthetic", "--steps", "3", "--json",
                                       "--set", "window=1600", "--set", "steps=3", "--input", "4x1x1600"])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("{")]) == 3


class RefCDCK2(HandCPC):
    """CDCK2.forward (jefflai108/Contrastive-Predictive-Coding-PyTorch src/model/model.py): one
    t_samples drawn per batch, the GRU run over z[:, :t + 1] from a zero hidden state, W_k c_t for
    each k, and for each k the log-softmax over dim 1 (the predictions) of z_{t+k} · predᵀ, its
    diagonal summed; nce = −Σ / (B · timestep)."""

    def __init__(self, hidden, context, steps, window):
        super().__init__(hidden, context, steps)
        self.timestep, self.seq_len, self.hidden = steps, window, hidden

    def nce(self, x):
        batch = x.size(0)
        t_samples = torch.randint(self.seq_len // 160 - self.timestep, size=(1,)).long()
        z = self.encoder(x).transpose(1, 2)
        encode_samples = torch.empty((self.timestep, batch, self.hidden), dtype=x.dtype)
        for i in range(1, self.timestep + 1):
            encode_samples[i - 1] = z[:, t_samples + i, :].view(batch, self.hidden)
        hidden0 = torch.zeros(1, batch, self.gru.hidden_size, dtype=x.dtype)
        output, _ = self.gru(z[:, :t_samples + 1, :], hidden0)
        c_t = output[:, t_samples, :].view(batch, -1)
        pred = torch.empty((self.timestep, batch, self.hidden), dtype=x.dtype)
        for i in range(self.timestep):
            pred[i] = self.Wk[i](c_t)
        nce = 0
        for i in range(self.timestep):
            total = torch.mm(encode_samples[i], torch.transpose(pred[i], 0, 1))
            nce += torch.sum(torch.diag(torch.log_softmax(total, dim=1)))
        return nce / (-1. * batch * self.timestep)


class RefScheduledOptim:
    """CDCK2 main.py ScheduledOptim (delta 1: no stalled validation): the rate set after each step."""

    def __init__(self, optimizer, n_warmup_steps, d_model=128):
        self.optimizer, self.d_model, self.n_warmup_steps, self.n_current_steps = optimizer, d_model, n_warmup_steps, 0

    def update_learning_rate(self):
        import numpy as np
        self.n_current_steps += 1
        new_lr = np.power(self.d_model, -0.5) * np.min([np.power(self.n_current_steps, -0.5),
                                                        np.power(self.n_warmup_steps, -1.5) * self.n_current_steps])
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = new_lr
        return new_lr


def test_cdck2_form_steps_equal_the_public_code():
    """cdck2=true with the recipe: loss, the gradient of every parameter, the learning rate and the
    weights after each of five steps equal CDCK2's training_v1.py train() (zero_grad, forward,
    backward, Adam(betas 0.9, 0.98, eps 1e-9, weight decay 1e-4, amsgrad) step, then
    ScheduledOptim.update_learning_rate; warm-up 3 steps here) on the same weights, audio and draw of
    t (float64); the default (paper) form gives another loss."""
    from recipe_checks import close, close_all, recipe_step, updated_by
    spec = ("from ssl.cpc import CPC\nfrom nets.cpc import CPCNet\nvariant t = CPC(network=CPCNet(hidden=16, "
            "context=8), steps=3, window=1600, cdck2=true, warmup=3)\n")
    topo = archdsl.load_spec(source=spec, seed=0, input_shape=[(4, 1, 1600)]).double()
    optimizers, schedule = topo.configure_optimizers()
    ref = RefCDCK2(16, 8, 3, 1600).double()
    ref.load_state_dict({k: (v.squeeze(2) if v.dim() == 4 else v) for k, v in topo.nets["model"].state_dict().items()})
    optimizer = RefScheduledOptim(torch.optim.Adam(filter(lambda p: p.requires_grad, ref.parameters()),
                                                   betas=(0.9, 0.98), eps=1e-09, weight_decay=1e-4, amsgrad=True), 3)
    assert len(updated_by(optimizers["train"])) == len(list(ref.parameters()))
    pool = _signals(20, 0).double()
    for it in range(5):
        x = pool[4 * it:4 * it + 4]
        assert schedule.values(it)["train.lr"] == pytest.approx(optimizer.optimizer.param_groups[0]["lr"], rel=1e-12)
        torch.manual_seed(it)
        loss, grads = recipe_step(topo, optimizers, schedule, x)
        torch.manual_seed(it)
        optimizer.optimizer.zero_grad()
        ref_loss = ref.nce(x)
        ref_loss.backward()
        optimizer.optimizer.step()
        optimizer.update_learning_rate()
        close(loss, ref_loss, f"step {it} loss")
        close_all({k.split(".", 1)[1]: v.squeeze(2) if v.dim() == 4 else v for k, v in grads.items()},
                  {k: p.grad for k, p in ref.named_parameters()}, f"step {it} grad")
        close_all({k: v.squeeze(2) if v.dim() == 4 else v for k, v in topo.nets["model"].state_dict().items()
                   if "num_batches" not in k}, {k: v for k, v in ref.state_dict().items() if "num_batches" not in k},
                  f"step {it} weights")
    torch.manual_seed(0)
    paper = archdsl.load_spec(source=spec.replace("cdck2=true", "cdck2=false"), seed=0, input_shape=[(4, 1, 1600)])
    assert abs(paper.double()(pool[:4]).loss.item() - ref.nce(pool[:4]).item()) > 1e-3


@pytest.mark.parametrize("shape", [(1, 2, 1), (3, 5, 2)])
def test_cdck2_loss_flops_are_counted_at_every_size(shape):
    """The cdck2 logits are a bmm FlopCounterMode counts as the static rule does, even for size-1
    dims (an einsum there became an uncounted mul: test_ops' fuzzing found [1, 2, 1])."""
    from torch.utils.flop_counter import FlopCounterMode
    from archdsl.ops import REGISTRY
    op = REGISTRY["cpc_nce"]
    attrs = op.Attrs(steps=1, cdck2=True)
    z, pred = torch.randn(shape), torch.randn(shape)
    with FlopCounterMode(display=False) as counter:
        losses.cpc_nce(z, pred, 1, True)
    assert counter.get_total_flops() == op.flops(attrs, [shape, shape], ()) == 2 * shape[0] ** 2 * shape[2]
