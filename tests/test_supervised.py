"""Supervised classification (Bag of Tricks): label smoothing, mixup / cutmix, the cosine schedule
with warm-up, and the topology that puts them together around any backbone."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import archdsl
from archdsl import ArchError
from archdsl.ir.schedule import cosine_lr, noam_lr
from archdsl.nn import loss as losses
from archdsl.nn.augment import cutmix_box, mix, mix_batch


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = """
network Tiny(num_classes: int = 10, width: int = 8) {
  in x: [B, 3, H = 16, W = 16]
  y = x -> conv1: conv(width, 3, stride=2) -> bn1: bn -> relu -> mean(dims=[2, 3])
  if num_classes > 0 {
    y = y -> fc: linear(num_classes)
  }
  out y
}
from train.supervised import Supervised
"""


def topo(args: str = "", seed: int = 0, batch: int = 8):
    src = TINY + f"variant t = Supervised(backbone=Tiny, num_classes=10, img=16{args})\n"
    return archdsl.load_spec(source=src, seed=seed, input_shape=[(batch, 3, 16, 16), (batch,)])


def smoothed(y, k, eps):
    """Label smoothing as the paper writes it: q_i = 1 − eps on the label, eps / (K − 1) elsewhere
    in He et al. (2019) eq. 4 — but as torch / timm implement it, 1 − eps + eps / K on the label and
    eps / K elsewhere (the mass eps spread uniformly over all K classes)."""
    t = torch.full((len(y), k), eps / k)
    t[torch.arange(len(y)), y] += 1 - eps
    return t


# ---- label smoothing

def test_label_smoothed_cross_entropy_matches_the_formula():
    torch.manual_seed(0)
    logits, y, eps = torch.randn(6, 5), torch.tensor([0, 4, 2, 2, 1, 3]), 0.1
    logp = logits.log_softmax(dim=1)
    expected = -((1 - eps) * logp[torch.arange(6), y] + eps / 5 * logp.sum(dim=1)).mean()
    torch.testing.assert_close(losses.cross_entropy(logits, y, eps), expected)
    # soft one-hot targets are smoothed the same way (mixup's targets go through this path)
    torch.testing.assert_close(losses.cross_entropy(logits, F.one_hot(y, 5).float(), eps), expected)
    torch.testing.assert_close(losses.cross_entropy(logits, smoothed(y, 5, eps)), expected)
    # [B] targets are class indices whatever their dtype (a float input feeding the loss)
    torch.testing.assert_close(losses.cross_entropy(logits, y.float(), eps), expected)


# ---- mixup / cutmix

def test_mixup_targets_mix_with_the_same_lambda_as_the_images():
    torch.manual_seed(3)
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 5])
    xm, t, drawn = mix_batch(x, y, num_classes=7, alpha=0.2, smoothing=0.1)
    lam = ((xm - x.flip(0)) / (x - x.flip(0)))[0, 0, 0, 0].item()  # recovered from one pixel
    assert 0.0 <= lam <= 1.0 and lam == pytest.approx(drawn.item(), abs=1e-5)
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x.flip(0))
    want = lam * smoothed(y, 7, 0.1) + (1 - lam) * smoothed(y.flip(0), 7, 0.1)
    torch.testing.assert_close(t, want)
    torch.testing.assert_close(t.sum(dim=1), torch.ones(6))


def test_cutmix_lambda_is_the_pasted_area_and_the_targets_follow_it():
    x, y = torch.rand(4, 3, 10, 12), torch.tensor([1, 0, 3, 2])
    for seed in range(12):  # boxes anywhere, many clipped at the border
        torch.manual_seed(seed)
        xm, t, drawn = mix_batch(x, y, num_classes=4, alpha=0.0, cutmix_alpha=1.0)
        pasted = (xm == x.flip(0)).all(dim=1)[0]            # [H, W] pixels taken from the partner
        assert torch.equal((xm == x).all(dim=1)[0], ~pasted)
        lam = 1 - pasted.float().mean().item()
        assert drawn.item() == pytest.approx(lam)
        want = lam * F.one_hot(y, 4).float() + (1 - lam) * F.one_hot(y.flip(0), 4).float()
        torch.testing.assert_close(t, want)
    assert cutmix_box(10, 12, 0.0) is not None
    _, _, lam = mix(x, y, 4, 0.3, box=(0, 10, 0, 6))
    assert lam == pytest.approx(0.5)  # the drawn 0.3 is replaced by the kept area


def test_mixup_off_or_skipped_only_smooths():
    x, y = torch.rand(3, 3, 4, 4), torch.tensor([2, 0, 1])
    xm, t, lam = mix_batch(x, y, num_classes=3, alpha=0.2, cutmix_alpha=1.0, prob=0.0, smoothing=0.1)
    assert torch.equal(xm, x) and lam.item() == 1.0
    torch.testing.assert_close(t, smoothed(y, 3, 0.1))
    xm, t, lam = mix_batch(x, y, num_classes=3, alpha=0.0, smoothing=0.1)
    assert torch.equal(xm, x)
    torch.testing.assert_close(t, smoothed(y, 3, 0.1))


# ---- learning-rate schedules

def test_cosine_schedule_with_warmup_hits_its_endpoints():
    s = cosine_lr(0.4, warmup=5, total=25)
    assert s.at(0) == pytest.approx(0.08)          # the first warm-up step: base / warmup
    assert s.at(4) == pytest.approx(0.4)           # the last warm-up step reaches the peak
    assert s.at(5) == pytest.approx(0.4)           # the cosine starts at the peak
    assert s.at(15) == pytest.approx(0.2)          # half way: (1 + cos(pi / 2)) / 2
    assert s.at(10) == pytest.approx(0.4 * (1 + math.cos(math.pi / 4)) / 2)
    assert s.at(25) == pytest.approx(0.0, abs=1e-12) and s.at(1000) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(0.1, total=10, final=0.01).at(10) == pytest.approx(0.01)
    assert cosine_lr(0.1, total=10).at(0) == pytest.approx(0.1)  # no warm-up: starts at the peak


def test_noam_schedule_peaks_at_warmup():
    s = noam_lr(512, warmup=4000)
    assert s.at(3999) == pytest.approx(512 ** -0.5 * 4000 ** -0.5)
    assert s.at(0) == pytest.approx(512 ** -0.5 * 4000 ** -1.5)
    assert s.at(15999) == pytest.approx(512 ** -0.5 * 16000 ** -0.5)
    assert max(s.at(k) for k in range(0, 8000, 7)) <= s.at(3999)


def test_topology_declares_its_schedule_and_the_train_loop_applies_it():
    t = topo(", batch=512, epochs=10, warmup_epochs=2, steps_per_epoch=3")
    assert t.lr_at(0) == pytest.approx(0.2 / 6) and t.lr_at(5) == pytest.approx(0.2)
    assert t.lr_at(30) == pytest.approx(0.0, abs=1e-12)
    assert t.lr_scale(2) == pytest.approx(0.5)
    from archdsl.topology import train as loop
    seen = []
    real_adam = torch.optim.Adam

    class Spy(real_adam):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)
    loop.torch.optim.Adam = Spy
    try:
        loop.train(t, 3, lr=1.0)
    finally:
        loop.torch.optim.Adam = real_adam
    assert seen == pytest.approx([1 / 6, 2 / 6, 3 / 6])


def test_bad_schedules_and_mixup_arguments_are_arch_errors():
    with pytest.raises(ArchError, match="warmup"):
        topo(", warmup_epochs=20, epochs=10")
    with pytest.raises(ArchError, match="smoothing"):
        topo(", smoothing=1.5")
    bad = TINY.replace("from train.supervised import Supervised", "") + """
topology T() {
  in x: [B, 3, H = 16, W = 16]
  in y: [B, 2] as int64
  net model = Tiny()
  phase train { loss = cross_entropy((x -> model), mixup(x, y, 10)[1]) }
}
"""
    with pytest.raises(ArchError, match="labels"):
        archdsl.load_topology(source=bad)


# ---- the topology

def test_loss_is_label_smoothed_cross_entropy_of_the_backbone():
    t = topo(", mixup_alpha=0.0")
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    logits = t.nets["model"](x)
    expected = -(smoothed(y, 10, 0.1) * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(t(x, y).loss, expected)
    out = t(x, y)
    out.loss.backward()
    assert all(p.grad is not None for p in t.nets["model"].parameters())


def test_mixed_loss_uses_mixed_images_and_mixed_targets():
    t = topo(", cutmix_alpha=1.0, switch_prob=0.0")  # mixup every step (switch_prob 0)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    torch.manual_seed(5)
    out = t(x, y)
    loss, lam = out.loss, out.logs["lam"].item()
    xm = lam * x + (1 - lam) * x.flip(0)
    target = lam * smoothed(y, 10, 0.1) + (1 - lam) * smoothed(y.flip(0), 10, 0.1)
    expected = -(target * t.nets["model"](xm).log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(loss, expected)


def test_short_training_run_lowers_the_loss():
    """Labels a function of the images; mixup and smoothing on; the loss falls."""
    g = torch.Generator().manual_seed(0)
    protos = 2 * torch.randn(10, 3, 1, 1, generator=g)  # a colour per class
    y = torch.arange(64) % 10
    x = protos[y] + 0.5 * torch.randn(64, 3, 16, 16, generator=g)
    t = topo(", warmup_epochs=1, epochs=30, steps_per_epoch=1", seed=1, batch=16)
    from archdsl.topology.train import train
    hist = train(t, 30, lr=0.05, data=[x, y])
    curve = [h.losses["train"] for h in hist]
    assert sum(curve[-6:]) / 6 < 0.8 * sum(curve[:6]) / 6, curve


def test_cli_trains_a_stdlib_supervised_variant():
    from archdsl.cli import main
    result = CliRunner().invoke(main, ["train", "bag_of_tricks_resnet50", "--synthetic", "--steps", "2",
                                       "--json", "--set", "backbone=resnet18", "--set", "img=32",
                                       "--input", "4x3x32x32", "--input", "4"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [e["step"] for e in lines] == [0, 1] and math.isfinite(lines[-1]["losses"]["train"])
