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


# ---- step for step against the official code (tiny networks, float64)

class RefAliasMethod:
    """lemniscate.pytorch lib/alias_multinomial.py AliasMethod (CMC's NCE/alias_multinomial.py is
    the same): the alias table of `probs`; draw(N) = kk ~ U{0..K-1} kept with probability prob[kk],
    else alias[kk]. Uniform unigrams give prob 1 everywhere, so a draw is kk itself."""

    def __init__(self, probs):
        probs = probs / probs.sum() if probs.sum() > 1 else probs
        k = len(probs)
        self.prob, self.alias = torch.zeros(k), torch.zeros(k, dtype=torch.long)
        smaller, larger = [], []
        for kk, prob in enumerate(probs):
            self.prob[kk] = k * prob
            (smaller if self.prob[kk] < 1.0 else larger).append(kk)
        while smaller and larger:
            small, large = smaller.pop(), larger.pop()
            self.alias[small] = large
            self.prob[large] = (self.prob[large] - 1.0) + self.prob[small]
            (smaller if self.prob[large] < 1.0 else larger).append(large)
        for last_one in smaller + larger:
            self.prob[last_one] = 1

    def draw(self, n):
        kk = torch.zeros(n, dtype=torch.long).random_(0, self.alias.size(0))
        prob, alias = self.prob.index_select(0, kk), self.alias.index_select(0, kk)
        b = torch.bernoulli(prob)
        return kk.mul(b.long()) + alias.mul((1 - b).long())


class RefNCEFunction(torch.autograd.Function):
    """lemniscate lib/NCEAverage.py NCEFunction: forward scores exp(w·x / T) / Z (Z set from the
    first batch), backward the gradient of x with Z and the bank constant, and the bank update of
    the batch's slots (normalise(m · old + (1 − m) · x)) done inside backward."""

    @staticmethod
    def forward(ctx, x, y, memory, idx, params):
        k, t, z, momentum = int(params[0]), params[1], params[2], params[3]
        b, d = x.shape
        idx.select(1, 0).copy_(y)
        weight = memory.index_select(0, idx.view(-1)).view(b, k + 1, d)
        out = torch.bmm(weight, x.view(b, d, 1)).div_(t).exp_()
        if z < 0:
            params[2] = out.mean() * memory.size(0)
            z = params[2]
        out = out.div_(z).view(b, k + 1)
        ctx.save_for_backward(x, y)
        ctx.data_for_backward = memory, weight, out, params
        return out

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        memory, weight, out, params = ctx.data_for_backward
        t, momentum = params[1], params[3]
        b = grad_output.size(0)
        grad = (grad_output * out / t).view(b, 1, -1)
        grad_input = torch.bmm(grad, weight).view_as(x)
        weight_pos = weight.select(1, 0).clone().mul_(momentum).add_(x * (1 - momentum))
        memory.index_copy_(0, y, weight_pos / weight_pos.pow(2).sum(1, keepdim=True).pow(0.5))
        return grad_input, None, None, None, None


class RefNCEAverage(torch.nn.Module):
    """lemniscate lib/NCEAverage.py NCEAverage (the bank given, to start from ours)."""

    def __init__(self, memory, k, t, momentum):
        super().__init__()
        self.multinomial, self.K = RefAliasMethod(torch.ones(memory.shape[0])), k
        self.register_buffer("params", torch.tensor([k, t, -1, momentum], dtype=memory.dtype))
        self.register_buffer("memory", memory.clone())

    def forward(self, x, y):
        idx = self.multinomial.draw(x.size(0) * (self.K + 1)).view(x.size(0), -1)
        return RefNCEFunction.apply(x, y, self.memory, idx, self.params)


def ref_nce_criterion(x, n_data):
    """lemniscate lib/NCECriterion.py (CMC's NCE/NCECriterion.py computes the same), eq. 5–6."""
    k, pn, eps = x.size(1) - 1, 1 / float(n_data), 1e-7
    ln_pmt = torch.div(x.select(1, 0), x.select(1, 0) + k * pn + eps).log()
    ln_pon = torch.div(x.narrow(1, 1, k).clone().fill_(k * pn), x.narrow(1, 1, k) + k * pn + eps).log()
    return -(ln_pmt.sum(0) + ln_pon.view(-1, 1).sum(0)) / x.size(0)


def ref_step_lr(optimizer, epoch, base, milestones):
    """lemniscate main.py adjust_learning_rate (120, 160) and CMC util.py adjust_learning_rate
    (1-based epochs: decayed once `epoch > 250`): base · 0.1^(milestones passed), 0-based epoch."""
    lr = base * 0.1 ** sum(epoch >= m for m in milestones)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def _ours_to_ref(name: str) -> str:
    return name.replace("backbone.", "").replace("head.layer0.", "fc.")


def _weights(module) -> dict:
    return {k: v for k, v in module.state_dict().items() if "num_batches" not in k}


def test_instdisc_steps_equal_lemniscate_main_py():
    """lemniscate.pytorch main.py train(): features → NCEAverage (alias draw, Z from the first
    batch) → NCECriterion, SGD(momentum 0.9, weight decay) on the model, the bank updated in
    NCEFunction.backward; lr × 0.1 at each milestone epoch. Five steps over three epochs of two."""
    from recipe_checks import close, close_all, recipe_step, updated_by
    from test_recipes import BN_POOLED, RefBNPooled
    n, k, dim, ipe, milestones, base, wd = 32, 8, 6, 2, [1, 2], 0.03, 0.05
    t = archdsl.load_spec(source=BN_POOLED + "from ssl.instdisc import InstDisc\nvariant t = InstDisc(backbone=BNPooled, "
                          f"dim={dim}, n_images={n}, negatives={k}, img=16, base_lr={base}, weight_decay={wd}, "
                          f"steps_per_epoch={ipe}, milestones={milestones})\n", seed=0,
                          input_shape=[(4, 3, 16, 16), (4,)]).double()
    optimizers, schedule = t.configure_optimizers()
    model = RefBNPooled(dim).double()   # models/resnet.py: the ResNet's fc gives low_dim, then Normalize(2)
    model.load_state_dict({_ours_to_ref(k): v for k, v in t.nets["encoder"].state_dict().items()})
    lemniscate = RefNCEAverage(t.state.bank, k, 0.07, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), base, momentum=0.9, weight_decay=wd)
    assert len(updated_by(optimizers["train"])) == len(list(model.parameters()))
    g = torch.Generator().manual_seed(0)
    for it in range(5):
        x = torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64)
        idx = torch.randperm(n, generator=g)[:4]
        torch.manual_seed(100 + it)  # the same draw of noise slots on both sides
        loss, grads = recipe_step(t, optimizers, schedule, x, idx)
        lr = ref_step_lr(optimizer, it // ipe, base, milestones)
        assert schedule.values(it)["train.lr"] == pytest.approx(lr, rel=1e-12)
        torch.manual_seed(100 + it)
        feature = F.normalize(model(x), dim=1)
        ref_loss = ref_nce_criterion(lemniscate(feature, idx), n)
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {k: p.grad for k, p in model.named_parameters()}
        optimizer.step()
        close(loss, ref_loss.squeeze(), f"step {it} loss")
        close_all({_ours_to_ref(k.split(".", 1)[1]): v for k, v in grads.items()}, ref_grads, f"step {it} grad")
        close_all({_ours_to_ref(k): v for k, v in _weights(t.nets["encoder"]).items()}, _weights(model),
                  f"step {it} weights")
        close(t.state.bank, lemniscate.memory, f"step {it} bank")
        close(t.state.Z, lemniscate.params[2], f"step {it} Z")


class RefCMCHalf(torch.nn.Module):
    """A tiny stand-in for CMC models/alexnet.py alexnet_half: conv, BN, ReLU, pool, fc, Normalize(2)."""

    def __init__(self, in_chans, dim):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(in_chans, 8, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, dim)

    def forward(self, x):
        x = self.fc(F.relu(self.bn1(self.conv1(x))).mean(dim=(2, 3)))
        return x / x.pow(2).sum(1, keepdim=True).pow(0.5)


class RefCMCNCEAverage(torch.nn.Module):
    """CMC NCE/NCEAverage.py NCEAverage: one alias draw for both views; out_l scores the L
    features against memory_ab, out_ab the ab features against memory_l, Z_l / Z_ab set from the
    first batch; both banks updated inside forward from their slots' old rows."""

    def __init__(self, memory_l, memory_ab, k, t, momentum):
        super().__init__()
        self.multinomial, self.K = RefAliasMethod(torch.ones(memory_l.shape[0])), k
        self.register_buffer("params", torch.tensor([k, t, -1, -1, momentum], dtype=memory_l.dtype))
        self.register_buffer("memory_l", memory_l.clone())
        self.register_buffer("memory_ab", memory_ab.clone())

    def forward(self, l, ab, y):
        k, t, z_l, z_ab, momentum = (self.params[i].item() for i in range(5))
        k, (b, d), n = int(k), l.shape, self.memory_l.size(0)
        idx = self.multinomial.draw(b * (self.K + 1)).view(b, -1)
        idx.select(1, 0).copy_(y.data)
        weight_l = torch.index_select(self.memory_l, 0, idx.view(-1)).detach().view(b, k + 1, d)
        out_ab = torch.exp(torch.div(torch.bmm(weight_l, ab.view(b, d, 1)), t))
        weight_ab = torch.index_select(self.memory_ab, 0, idx.view(-1)).detach().view(b, k + 1, d)
        out_l = torch.exp(torch.div(torch.bmm(weight_ab, l.view(b, d, 1)), t))
        if z_l < 0:
            self.params[2] = out_l.mean() * n
            z_l = self.params[2].clone().detach().item()
        if z_ab < 0:
            self.params[3] = out_ab.mean() * n
            z_ab = self.params[3].clone().detach().item()
        out_l, out_ab = torch.div(out_l, z_l).contiguous(), torch.div(out_ab, z_ab).contiguous()
        with torch.no_grad():
            for memory, feat in ((self.memory_l, l), (self.memory_ab, ab)):
                pos = torch.index_select(memory, 0, y.view(-1)).mul_(momentum).add_(torch.mul(feat, 1 - momentum))
                memory.index_copy_(0, y, pos.div(pos.pow(2).sum(1, keepdim=True).pow(0.5)))
        return out_l, out_ab


def test_cmc_steps_equal_train_cmc_py():
    """HobbitLong/CMC train_CMC.py train(): feat_l, feat_ab = model(split L / ab) → NCEAverage
    (one draw for both) → NCECriterion each, loss = l_loss + ab_loss, SGD on the model; lr decayed
    × 0.1 per milestone passed (util.py adjust_learning_rate). Five steps over three epochs of two."""
    from recipe_checks import close, close_all, recipe_step, updated_by
    n, k, dim, ipe, milestones, base, wd = 32, 8, 6, 2, [1, 2], 0.03, 0.05
    src = CMC.replace("img: int = 8", "img: int = 16").replace(
        "-> conv1: conv(8, 3, stride=2)", "-> conv1: conv(8, 3, stride=2, bias=false) -> bn1: bn").replace(
        "variant t = CMC(encoder=Half, dim=8, n_images=64, negatives=16, img=8)",
        f"variant t = CMC(encoder=Half, dim={dim}, n_images={n}, negatives={k}, img=16, base_lr={base}, "
        f"weight_decay={wd}, steps_per_epoch={ipe}, milestones={milestones})")
    t = archdsl.load_spec(source=src, seed=0, input_shape=[(4, 3, 16, 16), (4,)]).double()
    optimizers, schedule = t.configure_optimizers()
    model = torch.nn.ModuleDict({"l_to_ab": RefCMCHalf(1, dim), "ab_to_l": RefCMCHalf(2, dim)}).double()
    model.load_state_dict({f"{net}.{k}": v for net in ("l_to_ab", "ab_to_l") for k, v in t.nets[net].state_dict().items()})
    contrast = RefCMCNCEAverage(t.state.memory_l, t.state.memory_ab, k, 0.07, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=base, momentum=0.9, weight_decay=wd)
    assert len(updated_by(optimizers["train"])) == len(list(model.parameters()))
    g = torch.Generator().manual_seed(0)
    for it in range(5):
        x = torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64)
        idx = torch.randperm(n, generator=g)[:4]
        torch.manual_seed(100 + it)
        loss, grads = recipe_step(t, optimizers, schedule, x, idx)
        lr = ref_step_lr(optimizer, it // ipe, base, milestones)
        assert schedule.values(it)["train.lr"] == pytest.approx(lr, rel=1e-12)
        torch.manual_seed(100 + it)
        l, ab = torch.split(x, [1, 2], dim=1)
        out_l, out_ab = contrast(model["l_to_ab"](l), model["ab_to_l"](ab), idx)
        ref_loss = ref_nce_criterion(out_l, n) + ref_nce_criterion(out_ab, n)
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {k: p.grad for k, p in model.named_parameters()}
        optimizer.step()
        close(loss, ref_loss.squeeze(), f"step {it} loss")
        close_all(grads, ref_grads, f"step {it} grad")
        close_all({f"{net}.{k}": v for net in ("l_to_ab", "ab_to_l") for k, v in _weights(t.nets[net]).items()},
                  _weights(model), f"step {it} weights")
        close(t.state.memory_l, contrast.memory_l, f"step {it} memory_l")
        close(t.state.memory_ab, contrast.memory_ab, f"step {it} memory_ab")
        close(torch.stack([t.state.Z_l, t.state.Z_ab]), contrast.params[2:4], f"step {it} Z")


def test_nce_bank_slots_of_the_wrong_shape_are_an_error_at_the_call():
    topo = archdsl.load_topology(source=CMC, input_shape=[(4, 3, 8, 8), (4,)])
    assert any(n.op == "nce_draw" for n in topo.phases["train"].graph.nodes())
    spec = NET + ("topology T(n: int = 64) {\n  in x: [B = 2, 3, H = 8, W = 8]\n  in index: [B] as int64\n"
                  "  net f = Flat()\n  state bank: [n, 8] = \"uniform_bank\"\n  state Z: [] = -1.0\n"
                  "  phase train {\n    s = nce_draw(index, n, 4)\n    loss = nce_bank(x -> f, index, bank, Z, s, 8, 0.07)\n  }\n}\n"
                  "variant t = T()\n")
    with pytest.raises(archdsl.ArchError, match=r"drawn slots must be \[B, negatives \+ 1\] = \[2, 9\], got \[2, 5\]"):
        archdsl.load_topology(source=spec)
