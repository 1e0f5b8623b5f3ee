"""GAN steps. pix2pix and CycleGAN against ports of the release's optimize_parameters, step for
step (below). A GAN's D-step calls D once per batch: BatchNorm's running statistics move once for the real
batch and once for the fake one, as in pytorch/examples' dcgan (`output = netD(real_cpu)`, then
`output = netD(fake.detach())`, dcgan/main.py), not once more for a logged value."""
from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

import archdsl
from recipe_checks import close, close_all, recipe_step, updated_by


def test_dcgan_d_step_updates_batch_norm_once_per_batch():
    topo = archdsl.load_spec("dcgan", ngf=8, ndf=8, img=32, input_shape=(4, 3, 32, 32), seed=0)
    D = topo.nets.D
    before = copy.deepcopy(D).train()
    seen: list[torch.Tensor] = []
    hook = D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    real = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = topo(real, phase="d_step")
    hook.remove()
    assert len(seen) == 2 and torch.equal(seen[0], real)   # the real batch, then the fake one
    with torch.no_grad():
        for x in seen:       # the same two forward passes on the copy taken before the step
            probability = torch.sigmoid(before(x)).mean(dim=0)
            if x is seen[0]:  # the logged D(x) is the loss's own call on the real batch
                torch.testing.assert_close(out.logs["d_real"], probability)
    stats = {k: v for k, v in D.state_dict().items() if "running" in k or "num_batches" in k}
    assert stats and all(torch.equal(v, before.state_dict()[k]) for k, v in stats.items())
    assert all(v.item() == 2 for k, v in stats.items() if "num_batches" in k)


DEAD = """
network Lin() {
  in x: [B, 4]
  out x -> fc: linear(4) -> bn: bn
}
topology T() {
  in x: [B = 4, 4]
  net f = Lin()
  phase train(update=[f]) {
    unused = x -> f -> relu   # computed, never used: neither built nor counted
    loss = mean(x -> f, dims=[0, 1])
  }
}
"""


def test_a_phase_value_nothing_uses_is_not_built():
    ir = archdsl.load_topology(source=DEAD)
    graph = ir.phases["train"].graph
    assert [n.title for n in graph.nodes() if n.title in ("net", "relu")] == ["net"]
    topo = archdsl.load_spec(source=DEAD, seed=0)
    topo(torch.randn(4, 4), phase="train")
    assert topo.nets.f.bn.num_batches_tracked.item() == 1   # one call of f, not two


# ---------------------------------------------------------------- pix2pix and CycleGAN, step for step
# junyanz/pytorch-CycleGAN-and-pix2pix: models/pix2pix_model.py and models/cycle_gan_model.py
# (optimize_parameters, backward_D*, backward_G), models/networks.py GANLoss (vanilla: BCE with
# logits against a target of 1 or 0; lsgan: MSE), util/image_pool.py ImagePool. The networks are
# the ports of networks.py in tests/test_gen_a.py. Ported below, float64; ImagePool's
# `random.uniform` / `random.randint` draw from torch's stream here, so both sides share them.

def gan_criterion(mode: str):
    """networks.py GANLoss(gan_mode)(prediction, target_is_real)."""
    loss = nn.BCEWithLogitsLoss() if mode == "vanilla" else nn.MSELoss()
    return lambda pred, real: loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


class RefImagePool:
    """util/image_pool.py ImagePool.query."""

    def __init__(self, pool_size):
        self.pool_size, self.num_imgs, self.images = pool_size, 0, []

    def query(self, images):
        return_images = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if self.num_imgs < self.pool_size:
                self.num_imgs += 1
                self.images.append(image)
                return_images.append(image)
            elif float(torch.rand(())) > 0.5:                    # random.uniform(0, 1) > 0.5
                random_id = int(torch.randint(self.pool_size, ()))  # random.randint(0, pool_size - 1)
                tmp = self.images[random_id].clone()
                self.images[random_id] = image
                return_images.append(tmp)
            else:
                return_images.append(image)
        return torch.cat(return_images, 0)


def get_scheduler(optimizer, n_epochs, n_epochs_decay, epoch_count=1):
    """networks.py get_scheduler, lr_policy 'linear'."""
    def lambda_rule(epoch):
        return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda_rule)


SCHEDULE = dict(n_epochs=2, n_epochs_decay=2, steps_per_epoch=1)   # one iteration per epoch


class RefPix2Pix:
    """pix2pix_model.py Pix2PixModel: gan_mode vanilla, lambda_L1 100, Adam(2e-4, (0.5, 0.999))."""

    def __init__(self, netG, netD, lambda_L1=100.0):
        self.netG, self.netD, self.lambda_L1 = netG, netD, lambda_L1
        self.criterionGAN, self.criterionL1 = gan_criterion("vanilla"), nn.L1Loss()
        self.optimizer_G = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optimizer_D = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.schedulers = [get_scheduler(o, 2, 2) for o in (self.optimizer_G, self.optimizer_D)]

    def update_learning_rate(self):   # train.py, after each epoch
        for scheduler in self.schedulers:
            scheduler.step()

    def set_input(self, real_A, real_B):
        self.real_A, self.real_B = real_A, real_B

    def forward(self):
        self.fake_B = self.netG(self.real_A)

    def backward_D(self):
        fake_AB = torch.cat((self.real_A, self.fake_B), 1)
        pred_fake = self.netD(fake_AB.detach())
        self.loss_D_fake = self.criterionGAN(pred_fake, False)
        real_AB = torch.cat((self.real_A, self.real_B), 1)
        pred_real = self.netD(real_AB)
        self.loss_D_real = self.criterionGAN(pred_real, True)
        self.loss_D = (self.loss_D_fake + self.loss_D_real) * 0.5
        self.loss_D.backward()

    def backward_G(self):
        fake_AB = torch.cat((self.real_A, self.fake_B), 1)
        pred_fake = self.netD(fake_AB)
        self.loss_G_GAN = self.criterionGAN(pred_fake, True)
        self.loss_G_L1 = self.criterionL1(self.fake_B, self.real_B) * self.lambda_L1
        self.loss_G = self.loss_G_GAN + self.loss_G_L1
        self.loss_G.backward()

    def optimize_parameters(self):
        self.forward()
        self.netD.requires_grad_(True)
        self.optimizer_D.zero_grad()
        self.backward_D()
        self.grads_D = {k: p.grad.clone() for k, p in self.netD.named_parameters()}
        self.optimizer_D.step()
        self.netD.requires_grad_(False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.grads_G = {k: p.grad.clone() for k, p in self.netG.named_parameters()}
        self.optimizer_G.step()


def prefixed(sd: dict, prefix: str) -> dict:
    return {f"{prefix}.{k}": v for k, v in sd.items()}


def test_pix2pix_steps_equal_the_official_optimize_parameters():
    """Four iterations, one per epoch, lr 2e-4 for two epochs then decaying (the `linear` policy),
    batch 1 as the release: G runs once per iteration (its dropout masks and BN
    statistics are the release's), D sees the fake pair first, then the real one (so its BN
    running statistics match too), the G-step scores the same fake against the updated D."""
    from test_gen_a import RefNLayerD, RefUnet
    t = archdsl.load_spec("pix2pix", input_shape=[[1, 3, 64, 64]] * 2, ngf=2, ndf=2, num_downs=6, img=64,
                          seed=0, **SCHEDULE).double()
    optimizers, schedule = t.configure_optimizers()
    model = RefPix2Pix(RefUnet(3, 3, 6, 2, "batch", use_dropout=True).double(), RefNLayerD(6, 2, norm="batch").double())
    assert any(isinstance(m, nn.Dropout) for m in model.netG.modules())
    model.netG.load_state_dict(t.nets["G"].state_dict())
    model.netD.load_state_dict(t.nets["D"].state_dict())
    assert updated_by(optimizers["d_step"]) == {id(p) for p in t.nets["D"].parameters()}
    assert updated_by(optimizers["g_step"]) == {id(p) for p in t.nets["G"].parameters()}
    g = torch.Generator().manual_seed(0)
    for it in range(4):
        real_A, real_B = (torch.rand(1, 3, 64, 64, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(2))
        torch.manual_seed(10 + it)
        loss_d, grads_d = recipe_step(t, optimizers, schedule, real_A, real_B, phase="d_step", after_step=False)
        loss_g, grads_g = recipe_step(t, optimizers, schedule, real_A, real_B, phase="g_step")
        torch.manual_seed(10 + it)
        model.set_input(real_A, real_B)
        model.optimize_parameters()
        for phase, o in (("d_step", model.optimizer_D), ("g_step", model.optimizer_G)):
            assert schedule.values(it)[f"{phase}.lr"] == pytest.approx(o.param_groups[0]["lr"], rel=1e-12)
        model.update_learning_rate()
        close(loss_d, model.loss_D, f"step {it} D loss")
        close(loss_g, model.loss_G, f"step {it} G loss")
        close_all(grads_d, prefixed(model.grads_D, "D"), f"step {it} D grad")
        close_all(grads_g, prefixed(model.grads_G, "G"), f"step {it} G grad")
        close_all(t.nets["D"].state_dict(), model.netD.state_dict(), f"step {it} D")   # BN statistics too
        close_all(t.nets["G"].state_dict(), model.netG.state_dict(), f"step {it} G")


def test_a_carried_value_needs_its_phase_first():
    t = archdsl.load_spec("pix2pix", input_shape=[[1, 3, 32, 32]] * 2, ngf=2, ndf=2, num_downs=5, img=32, seed=0)
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="run 'd_step' first"):
        t(x, x, phase="g_step")


class RefCycleGAN:
    """cycle_gan_model.py CycleGANModel: gan_mode lsgan, lambda_A = lambda_B = 10, lambda_identity
    0.5, Adam(2e-4, (0.5, 0.999)) over both generators and over both discriminators."""

    def __init__(self, G_A, G_B, D_A, D_B, pool_size, lambda_A=10.0, lambda_B=10.0, lambda_identity=0.5):
        self.netG_A, self.netG_B, self.netD_A, self.netD_B = G_A, G_B, D_A, D_B
        self.lambda_A, self.lambda_B, self.lambda_identity = lambda_A, lambda_B, lambda_identity
        self.fake_A_pool, self.fake_B_pool = RefImagePool(pool_size), RefImagePool(pool_size)
        self.criterionGAN, self.criterionCycle, self.criterionIdt = gan_criterion("lsgan"), nn.L1Loss(), nn.L1Loss()
        self.optimizer_G = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=2e-4,
                                            betas=(0.5, 0.999))
        self.optimizer_D = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=2e-4,
                                            betas=(0.5, 0.999))
        self.schedulers = [get_scheduler(o, 2, 2) for o in (self.optimizer_G, self.optimizer_D)]

    def update_learning_rate(self):   # train.py, after each epoch
        for scheduler in self.schedulers:
            scheduler.step()

    def set_input(self, real_A, real_B):
        self.real_A, self.real_B = real_A, real_B

    def forward(self):
        self.fake_B = self.netG_A(self.real_A)
        self.rec_A = self.netG_B(self.fake_B)
        self.fake_A = self.netG_B(self.real_B)
        self.rec_B = self.netG_A(self.fake_A)

    def backward_D_basic(self, netD, real, fake):
        pred_real = netD(real)
        loss_D_real = self.criterionGAN(pred_real, True)
        pred_fake = netD(fake.detach())
        loss_D_fake = self.criterionGAN(pred_fake, False)
        loss_D = (loss_D_real + loss_D_fake) * 0.5
        loss_D.backward()
        return loss_D

    def backward_D_A(self):
        fake_B = self.fake_B_pool.query(self.fake_B)
        self.loss_D_A = self.backward_D_basic(self.netD_A, self.real_B, fake_B)

    def backward_D_B(self):
        fake_A = self.fake_A_pool.query(self.fake_A)
        self.loss_D_B = self.backward_D_basic(self.netD_B, self.real_A, fake_A)

    def backward_G(self):
        lambda_idt, lambda_A, lambda_B = self.lambda_identity, self.lambda_A, self.lambda_B
        self.idt_A = self.netG_A(self.real_B)
        self.loss_idt_A = self.criterionIdt(self.idt_A, self.real_B) * lambda_B * lambda_idt
        self.idt_B = self.netG_B(self.real_A)
        self.loss_idt_B = self.criterionIdt(self.idt_B, self.real_A) * lambda_A * lambda_idt
        self.loss_G_A = self.criterionGAN(self.netD_A(self.fake_B), True)
        self.loss_G_B = self.criterionGAN(self.netD_B(self.fake_A), True)
        self.loss_cycle_A = self.criterionCycle(self.rec_A, self.real_A) * lambda_A
        self.loss_cycle_B = self.criterionCycle(self.rec_B, self.real_B) * lambda_B
        self.loss_G = (self.loss_G_A + self.loss_G_B + self.loss_cycle_A + self.loss_cycle_B
                       + self.loss_idt_A + self.loss_idt_B)
        self.loss_G.backward()

    def optimize_parameters(self):
        nets = {"G_A": self.netG_A, "G_B": self.netG_B, "D_A": self.netD_A, "D_B": self.netD_B}
        self.forward()
        for d in (self.netD_A, self.netD_B):
            d.requires_grad_(False)
        self.optimizer_G.zero_grad()
        self.backward_G()
        self.grads_G = {f"{n}.{k}": p.grad.clone() for n in ("G_A", "G_B") for k, p in nets[n].named_parameters()}
        self.optimizer_G.step()
        for d in (self.netD_A, self.netD_B):
            d.requires_grad_(True)
        self.optimizer_D.zero_grad()
        self.backward_D_A()
        self.backward_D_B()
        self.grads_D = {f"{n}.{k}": p.grad.clone() for n in ("D_A", "D_B") for k, p in nets[n].named_parameters()}
        self.optimizer_D.step()


def cyclegan_pair(**overrides):
    from test_gen_a import RefNLayerD, RefResnetG
    t = archdsl.load_spec("cyclegan", input_shape=[[1, 3, 32, 32]] * 2, ngf=2, ndf=2, n_blocks=1, img=32,
                          pool_size=2, seed=0, **SCHEDULE, **overrides).double()
    refs = {"G_A": RefResnetG(3, 3, 2, n_blocks=1), "G_B": RefResnetG(3, 3, 2, n_blocks=1),
            "D_A": RefNLayerD(3, 2), "D_B": RefNLayerD(3, 2)}
    for name, ref in refs.items():
        ref.double().load_state_dict(t.nets[name].state_dict())
    return t, RefCycleGAN(refs["G_A"], refs["G_B"], refs["D_A"], refs["D_B"], pool_size=2)


def test_cyclegan_steps_equal_the_official_optimize_parameters():
    """Five iterations, one per epoch (lr 2e-4 for two, then linearly decaying: 2/3, 1/3, 0),
    batch 1, pools of 2 (full from the third iteration on: then each query may
    hand back an older fake): G-step first, then the D-step on the G-step's pre-update fakes
    through the pools."""
    t, model = cyclegan_pair()
    optimizers, schedule = t.configure_optimizers()
    assert updated_by(optimizers["g_step"]) == {id(p) for n in ("G_A", "G_B") for p in t.nets[n].parameters()}
    assert updated_by(optimizers["d_step"]) == {id(p) for n in ("D_A", "D_B") for p in t.nets[n].parameters()}
    g = torch.Generator().manual_seed(0)
    for it in range(5):
        real_A, real_B = (torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(2))
        torch.manual_seed(30 + it)
        loss_g, grads_g = recipe_step(t, optimizers, schedule, real_A, real_B, phase="g_step", after_step=False)
        loss_d, grads_d = recipe_step(t, optimizers, schedule, real_A, real_B, phase="d_step")
        torch.manual_seed(30 + it)
        model.set_input(real_A, real_B)
        model.optimize_parameters()
        for phase, o in (("d_step", model.optimizer_D), ("g_step", model.optimizer_G)):
            assert schedule.values(it)[f"{phase}.lr"] == pytest.approx(o.param_groups[0]["lr"], rel=1e-12)
        model.update_learning_rate()
        close(loss_g, model.loss_G, f"step {it} G loss")
        close(loss_d, model.loss_D_A + model.loss_D_B, f"step {it} D loss")
        close_all(grads_g, model.grads_G, f"step {it} G grad")
        close_all(grads_d, model.grads_D, f"step {it} D grad")
        for name in ("G_A", "G_B", "D_A", "D_B"):
            close_all(t.nets[name].state_dict(), getattr(model, f"net{name}").state_dict(), f"step {it} {name}")
        for domain in "AB":
            pool = getattr(model, f"fake_{domain}_pool")
            assert int(getattr(t.state, f"fake_{domain}_count")) == pool.num_imgs
            close(getattr(t.state, f"fake_{domain}_pool")[:pool.num_imgs], torch.cat(pool.images),
                  f"step {it} pool {domain}")


def test_cyclegan_fresh_fakes_option_runs_the_updated_generators_for_d():
    t, _ = cyclegan_pair(fresh_fakes=True)
    optimizers, schedule = t.configure_optimizers()
    real_A, real_B = torch.rand(1, 3, 32, 32, dtype=torch.float64), torch.rand(1, 3, 32, 32, dtype=torch.float64)
    recipe_step(t, optimizers, schedule, real_A, real_B, phase="g_step", after_step=False)
    before = t.state.last_fake_B.clone()
    recipe_step(t, optimizers, schedule, real_A, real_B, phase="d_step")
    with torch.no_grad():
        updated = t.nets["G_A"](real_A)
    close(t.state.fake_B_pool[:1], updated, "pool holds the updated G_A's fake")
    assert (updated - before).abs().max() > 1e-6   # the generator did move


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no training here
@pytest.mark.parametrize("name, ipe", [("pix2pix", 400), ("cyclegan", 1334)])
def test_default_lr_policy_is_the_release_linear_policy(name, ipe):
    """2e-4 for 100 epochs, then linearly to 0 over 100 (networks.py `linear`, stepped after each
    epoch): every epoch's rate against LambdaLR's, within an epoch constant."""
    ir = archdsl.load_topology(name)
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=2e-4)
    scheduler = get_scheduler(opt, 100, 100)
    for phase in ("d_step", "g_step"):
        assert ir.phases[phase].optimizer.options["betas"] == (0.5, 0.999)
    lr = ir.phases["g_step"].optimizer.lr
    for epoch in range(200):
        want = opt.param_groups[0]["lr"]
        assert lr.at(epoch * ipe) == pytest.approx(want, rel=1e-12, abs=1e-18)
        assert lr.at(epoch * ipe + ipe - 1) == lr.at(epoch * ipe)
        scheduler.step()
    assert lr.at(99 * ipe) == 2e-4 and lr.at(100 * ipe) < 2e-4 and lr.at(199 * ipe) == pytest.approx(2e-4 / 101)
