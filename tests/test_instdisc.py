"""InstDisc and CMC (stdlib/ssl/instdisc.arch, cmc.arch): memory-bank NCE against its definition,
the bank read before it is updated, Z set once, a short run lowers the loss; InvaSpread's in-batch
loss (stdlib/ssl/invaspread.arch) against its definition."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import archdsl
from topology_checks import step
from archdsl.nn import ssl_losses as losses

NET = """
network Flat(num_classes: int = 0) {
  in x: [B, 3, H = 8, W = 8]
  out x -> conv1: conv(8, 3, stride=2) -> relu -> mean(dims=[2, 3]) -> fc: linear(8)
}
"""
INSTDISC = NET + ("from ssl.instdisc import InstDisc\n"
                  "variant t = InstDisc(backbone=Flat, dim=8, n_images=64, negatives=16, img=8)\n")


def hand_nce(f, idx, bank, z, sample, temperature, n):
    """lemniscate.pytorch's NCEAverage + NCECriterion, for drawn slots `sample` [B, K + 1]."""
    b, k = f.shape[0], sample.shape[1] - 1
    total = 0.0
    for i in range(b):
        slots = [int(idx[i])] + [int(s) for s in sample[i, 1:]]
        p = torch.stack([torch.exp(bank[s] @ f[i] / temperature) / z for s in slots])
        total += math.log(p[0] / (p[0] + k / n + 1e-7))
        total += sum(math.log((k / n) / (pj + k / n + 1e-7)) for pj in p[1:])
    return -total / b


def test_nce_bank_matches_the_reference_criterion_and_sets_z_once():
    torch.manual_seed(0)
    n, d, b, k = 20, 5, 4, 6
    f = F.normalize(torch.randn(b, d), dim=1)
    bank = F.normalize(torch.randn(n, d), dim=1)
    idx = torch.tensor([3, 0, 19, 7])
    z = torch.tensor(-1.0)
    torch.manual_seed(5)
    got = losses.nce_bank(f, idx, bank, z, negatives=k, temperature=0.07)
    torch.manual_seed(5)
    sample = torch.randint(0, n, (b, k + 1))  # the same draw of negatives
    sample[:, 0] = idx
    scores = torch.exp(torch.stack([bank[sample[i]] @ f[i] for i in range(b)]) / 0.07)
    z_first = scores.mean() * n  # Z = mean(exp(v·f / T)) · N on the first batch
    torch.testing.assert_close(z, z_first)
    assert got.item() == pytest.approx(hand_nce(f, idx, bank, z_first, sample, 0.07, n), rel=1e-4)
    losses.nce_bank(f * 0.5, idx, bank, z, negatives=k, temperature=0.07)
    torch.testing.assert_close(z, z_first)  # kept afterwards


def test_bank_is_read_before_the_update_and_only_the_batch_slots_move():
    t = archdsl.load_spec(source=INSTDISC, seed=0, input_shape=[(4, 3, 8, 8), (4,)])
    s = 1 / math.sqrt(8 / 3)
    assert t.state.bank.abs().max() <= s and t.state.bank.min() < 0  # U(-s, s), as lemniscate
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.1)
    bank0 = t.state.bank.clone()
    x, idx = torch.randn(4, 3, 8, 8), torch.tensor([2, 9, 33, 63])
    out = t(x, idx)
    assert torch.equal(t.state.bank, bank0)  # the forward pass only reads the bank
    assert float(t.state.Z) > 0
    f = next(v for k, v in t._kept["train"].items() if v.dtype.is_floating_point)
    out.loss.backward()
    assert not t.state.bank.requires_grad
    opt.step()
    t.after_step()
    torch.testing.assert_close(t.state.bank[idx], F.normalize(0.5 * bank0[idx] + 0.5 * f, dim=1))
    others = torch.ones(64, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(t.state.bank[others], bank0[others])


def test_instdisc_short_training_run_lowers_the_loss():
    """Epochs over 64 images; the first epoch fills the bank with real features, so the loss of
    the second epoch is the baseline the sixth must beat."""
    spec = INSTDISC.replace("-> mean(dims=[2, 3]) -> fc: linear(8)", "-> flatten -> fc: linear(16)")
    t = archdsl.load_spec(source=spec.replace("dim=8", "dim=16"), seed=0, input_shape=[(8, 3, 8, 8), (8,)])
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.1)
    pool = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    epochs = []
    for _ in range(6):
        total = 0.0
        for idx in torch.randperm(64, generator=g).view(8, 8):
            out = step(t, opt, pool[idx] + 0.1 * torch.randn(8, 3, 8, 8, generator=g), idx)
            total += out.loss.item() / 8
        epochs.append(total)
    assert epochs[-1] < 0.75 * epochs[1], epochs


# ---- CMC

CMC = ("from ssl.cmc import CMC, AlexNetHalf\n"
       "network Half(in_chans: int = 1, dim: int = 8, img: int = 8) {\n"
       "  in x: [B, C = in_chans, H = img, W = img]\n"
       "  out x -> conv1: conv(8, 3, stride=2) -> relu -> mean(dims=[2, 3]) -> fc: linear(dim) -> l2_normalize(dim=1)\n"
       "}\n"
       "variant t = CMC(encoder=Half, dim=8, n_images=64, negatives=16, img=8)\n")


def test_cmc_has_one_encoder_per_view_each_against_the_other_views_bank():
    ir = archdsl.load_topology(source=CMC, input_shape=[(4, 3, 8, 8), (4,)])
    g = ir.phases["train"].graph
    nets = {n.attrs["name"]: g.node(n.inputs[0]).shape for n in g.nodes() if n.kind == "net"}
    assert nets == {"l_to_ab": (4, 1, 8, 8), "ab_to_l": (4, 2, 8, 8)}  # L and ab channels
    pairs = set()
    for n in g.nodes():
        if n.op == "nce_bank":
            feat = g.node(n.inputs[0]).attrs["name"]
            bank = g.node(n.inputs[2]).attrs["name"]
            pairs.add((feat, bank))
    assert pairs == {("l_to_ab", "memory_ab"), ("ab_to_l", "memory_l")}
    acts = {(a.states[0]) for a in ir.phases["train"].actions}
    assert acts == {"memory_l", "memory_ab"}


def test_cmc_short_training_run_lowers_the_loss():
    t = archdsl.load_spec(source=CMC, seed=0, input_shape=[(8, 3, 8, 8), (8,)])
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.1, momentum=0.9)
    base = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    pool = torch.cat([base, base.roll(1, 2) * 0.5, -base], dim=1)  # ab correlated with L
    g = torch.Generator().manual_seed(1)
    curve = []
    for _ in range(40):
        idx = torch.randperm(64, generator=g)[:8]
        curve.append(step(t, opt, pool[idx], idx).loss.item())
    assert sum(curve[-8:]) / 8 < sum(curve[:8]) / 8, curve


def test_full_size_cmc_encoders_are_the_alexnet_halves():
    report = archdsl.check_spec(source="from ssl.cmc import AlexNetHalf\nvariant h = AlexNetHalf(in_chans=2)\n")
    # conv 2→48 (11²), 48→128 (5²), 128→192, 192→192, 192→128 (3²), no bias, BN each;
    # fc6 4608→2048 + BN, fc7 2048→2048 + BN, fc8 2048→128
    convs = 2 * 48 * 121 + 48 * 128 * 25 + 128 * 192 * 9 + 192 * 192 * 9 + 192 * 128 * 9
    bns = 2 * (48 + 128 + 192 + 192 + 128) + 2 * (2048 + 2048)
    fcs = 4608 * 2048 + 2048 + 2048 * 2048 + 2048 + 2048 * 128 + 128
    assert report.totals.params == convs + bns + fcs


# ---- InvaSpread

def test_inva_spread_matches_the_reference_batch_criterion():
    torch.manual_seed(0)
    n, T = 3, 0.1
    x = F.normalize(torch.randn(2 * n, 5), dim=1)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        s = {j: math.exp(float(x[i] @ x[j]) / T) for j in range(2 * n) if j != i}
        denom = sum(s.values())
        total += math.log(s[pos] / denom)
        total += sum(math.log(1 - s[j] / denom) for j in s if j != pos)
    assert losses.inva_spread(x, T).item() == pytest.approx(-total / (2 * n), rel=1e-5)


def test_inva_spread_gradient_reaches_only_the_anchor_side():
    """The reference multiplies by `.data`: the positive and the columns are constants."""
    x = F.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    losses.inva_spread(x, 0.1).backward()
    g_ours = x.grad.clone()
    x2 = x.detach().clone().requires_grad_()
    n2 = 4
    other = torch.roll(x2, 2, dims=0).detach()
    pos = torch.exp((x2 * other).sum(1) / 0.1)
    allp = torch.exp(x2 @ x2.detach().t() / 0.1) * (1 - torch.eye(n2))
    div = allp.sum(1)
    lnpmt = torch.log(pos / div)
    lnpon = torch.log(1 - allp / div[:, None]).sum(1) - torch.log(1 - pos / div)
    (-(lnpmt.sum() + lnpon.sum()) / n2).backward()
    torch.testing.assert_close(g_ours, x2.grad)


def test_invaspread_short_training_run_lowers_the_loss():
    spec = NET + "from ssl.invaspread import InvaSpread\nvariant t = InvaSpread(backbone=Flat, dim=8, img=8)\n"
    t = archdsl.load_spec(source=spec, seed=0, input_shape=[(8, 3, 8, 8)] * 2)
    g = t.ir.phases["train"].graph
    enc = [n for n in g.nodes() if n.kind == "net"]
    assert len(enc) == 1 and g.node(enc[0].inputs[0]).shape == (16, 3, 8, 8)  # both views in one pass
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.1, momentum=0.9)
    pool = torch.randn(256, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    curve = []
    for _ in range(30):
        x = pool[torch.randperm(256, generator=gen)[:8]]
        out = step(t, opt, x, x + 0.2 * torch.randn(x.shape, generator=gen))
        curve.append(out.loss.item())
    assert sum(curve[-6:]) / 6 < sum(curve[:6]) / 6, curve


@pytest.mark.parametrize("args", [
    ["instdisc", "--set", "backbone=resnet18", "--set", "img=32", "--set", "n_images=64"],
    ["invaspread", "--set", "img=32"],
    ["cmc", "--set", "n_images=64", "--set", "negatives=64"],
], ids=["instdisc", "invaspread", "cmc"])
def test_cli_train_runs_three_synthetic_steps(args):
    from click.testing import CliRunner

    from archdsl.cli import main
    result = CliRunner().invoke(main, ["train", args[0], "--synthetic", "--steps", "3", "--json", *args[1:]])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("{")]) == 3
