"""Training recipes as data (archdsl/topology/recipe.py, schedule.py): each stdlib topology's
optimizer, parameter groups and schedules, run side by side with a port of its method's official
training step on the same weights, inputs and random draws (tiny networks, float64), comparing
losses, gradients, parameters after each step, EMA twins, state and schedule values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from recipe_checks import close, close_all, recipe_step, updated_by

POOLED = """
network Pooled(num_classes: int = 0) {
  in x: [B, 3, H = 16, W = 16]
  out x -> conv1: conv(8, 3, stride=2) -> relu -> mean(dims=[2, 3])
}
"""


class RefPooled(nn.Module):
    """The tiny backbone of POOLED, written in torch."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 2, 1)

    def forward(self, x):
        return F.relu(self.conv1(x)).mean(dim=(2, 3))


# ---------------------------------------------------------------- DINO
# facebookresearch/dino: vision_transformer.py (DINOHead), main_dino.py (DINOLoss, MultiCropWrapper
# via utils, train_one_epoch), utils.py (cosine_scheduler, get_params_groups, clip_gradients,
# cancel_gradients_last_layer). Ported below, one process, float64.

def dino_cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0):
    """utils.py cosine_scheduler."""
    warmup_schedule = np.array([])
    warmup_iters = warmup_epochs * niter_per_ep
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
    return np.concatenate((warmup_schedule, schedule))


class RefDINOHead(nn.Module):
    """vision_transformer.py DINOHead (use_bn=False, nlayers=3)."""

    def __init__(self, in_dim, out_dim, norm_last_layer=True, hidden_dim=2048, bottleneck_dim=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = nn.functional.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


class RefMultiCropWrapper(nn.Module):
    """utils.py MultiCropWrapper: one backbone pass per run of same-size crops, then the head."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        idx_crops = torch.cumsum(torch.unique_consecutive(
            torch.tensor([inp.shape[-1] for inp in x]), return_counts=True)[1], 0)
        start_idx, output = 0, torch.empty(0).to(x[0])
        for end_idx in idx_crops:
            output = torch.cat((output, self.backbone(torch.cat(x[start_idx:end_idx]))))
            start_idx = end_idx
        return self.head(output)


class RefDINOLoss(nn.Module):
    """main_dino.py DINOLoss (world size 1)."""

    def __init__(self, out_dim, ncrops, warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs,
                 nepochs, student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.student_temp, self.center_momentum, self.ncrops = student_temp, center_momentum, ncrops
        self.register_buffer("center", torch.zeros(1, out_dim, dtype=torch.float64))
        self.teacher_temp_schedule = np.concatenate((
            np.linspace(warmup_teacher_temp, teacher_temp, warmup_teacher_temp_epochs),
            np.ones(nepochs - warmup_teacher_temp_epochs) * teacher_temp))

    def forward(self, student_output, teacher_output, epoch):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        temp = self.teacher_temp_schedule[epoch]
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1).detach().chunk(2)
        total_loss, n_loss_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                total_loss += torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        self.update_center(teacher_output)
        return total_loss

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)


def dino_get_params_groups(model):
    """utils.py get_params_groups."""
    regularized, not_regularized = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or len(param.shape) == 1:
            not_regularized.append(param)
        else:
            regularized.append(param)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.}]


def dino_clip_gradients(model, clip):
    """utils.py clip_gradients: per parameter."""
    for _, p in model.named_parameters():
        if p.grad is not None:
            clip_coef = clip / (p.grad.data.norm(2) + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)


def dino_cancel_gradients_last_layer(epoch, model, freeze_last_layer):
    if epoch >= freeze_last_layer:
        return
    for n, p in model.named_parameters():
        if "last_layer" in n:
            p.grad = None


DINO_ARGS = dict(out_dim=16, hidden=32, bottleneck=8, n_local=2, global_size=16, local_size=8, epochs=3,
                 steps_per_epoch=2, batch_size=512, warmup_epochs=1, warmup_teacher_temp=0.04,
                 teacher_temp=0.07, warmup_teacher_temp_epochs=3, freeze_last_layer=1, clip_grad=0.05,
                 m=0.9)


def dino_topology(**overrides):
    args = {**DINO_ARGS, **overrides}
    text = ", ".join(f"{k}={v}" for k, v in args.items())
    return archdsl.load_spec(source=POOLED + f"from ssl.dino import DINO\nvariant t = DINO(backbone=Pooled, {text})\n",
                             seed=0)


def ours_to_dino_keys(name: str) -> str:
    """The spec's DinoNet keys → DINOHead / MultiCropWrapper keys (mlp.layer{i} → mlp.{2i})."""
    name = name.replace("last_layer", "head.last_layer")
    for i in range(3):
        name = name.replace(f"mlp.layer{i}.", f"head.mlp.{2 * i}.")
    return name


def test_dino_head_is_weight_normalised_with_g_fixed_at_1_and_trunc_normal_init():
    t = dino_topology(hidden=256)
    net = t.nets["student"]
    assert torch.equal(net.last_layer.weight_g, torch.ones(16, 1)) and not net.last_layer.weight_g.requires_grad
    for i in range(3):
        w, b = getattr(net.mlp, f"layer{i}").weight, getattr(net.mlp, f"layer{i}").bias
        assert torch.equal(b, torch.zeros_like(b))
        assert w.abs().max() <= 2.0 and abs(w.std().item() - 0.02) < 0.003  # trunc_normal_(std=.02)
    assert "student.last_layer.weight_g" not in dict(t.named_parameters_of("train"))
    assert dino_topology(norm_last_layer="false").nets["student"].last_layer.weight_g.requires_grad
    # on the same weights, the head's output is DINOHead's (the plain linear before differed by 0.41)
    ref = RefMultiCropWrapper(RefPooled(), RefDINOHead(8, 16, True, 256, 8))
    ref.load_state_dict({ours_to_dino_keys(k): v for k, v in net.state_dict().items()})
    x = torch.randn(4, 3, 16, 16)
    close(net(x), ref([x]), "DINO head output")


def test_dino_default_recipe_is_main_dino_py():
    t = archdsl.load_topology("dino")
    assert t.args["n_local"] == 8 and t.args["batch_size"] == 1024
    spec = t.phases["train"].optimizer
    assert spec.kind == "adamw" and spec.no_decay and spec.clip_grad == 3.0
    ref_lr = dino_cosine_scheduler(0.0005 * 1024 / 256, 1e-6, 100, 1251, warmup_epochs=10)
    ref_wd = dino_cosine_scheduler(0.04, 0.4, 100, 1251)
    for k in (0, 1, 5000, 12509, 12510, 60000, 125099):
        assert spec.lr.at(k) == pytest.approx(ref_lr[k], rel=1e-12, abs=1e-15)
        assert spec.weight_decay.at(k) == pytest.approx(ref_wd[k], rel=1e-12)
    assert t.phases["train"].freeze_steps == 1251


def test_dino_steps_equal_the_official_training_loop():
    """Five iterations over three epochs of two: lr warm-up, wd and momentum schedules, teacher
    temperature warm-up (0.04 → 0.07 over 3 epochs), the last layer frozen for epoch 0,
    per-parameter clipping, AdamW groups without decay on biases, EMA teacher, centre."""
    a = DINO_ARGS
    t = dino_topology().double()
    optimizers, schedule = t.configure_optimizers()
    student = RefMultiCropWrapper(RefPooled(), RefDINOHead(8, 16, True, a["hidden"], a["bottleneck"])).double()
    student.load_state_dict({ours_to_dino_keys(k): v for k, v in t.nets["student"].state_dict().items()})
    teacher = RefMultiCropWrapper(RefPooled(), RefDINOHead(8, 16, True, a["hidden"], a["bottleneck"])).double()
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    dino_loss = RefDINOLoss(16, 2 + a["n_local"], a["warmup_teacher_temp"], a["teacher_temp"],
                            a["warmup_teacher_temp_epochs"], a["epochs"], 0.1, 0.9)
    optimizer = torch.optim.AdamW(dino_get_params_groups(student))
    ipe, epochs = a["steps_per_epoch"], a["epochs"]
    lr_schedule = dino_cosine_scheduler(0.0005 * a["batch_size"] / 256, 1e-6, epochs, ipe, warmup_epochs=1)
    wd_schedule = dino_cosine_scheduler(0.04, 0.4, epochs, ipe)
    momentum_schedule = dino_cosine_scheduler(a["m"], 1, epochs, ipe)
    assert len(updated_by(optimizers["train"])) == sum(1 for p in student.parameters() if p.requires_grad)

    g = torch.Generator().manual_seed(0)
    for it in range(5):
        epoch = it // ipe
        images = [torch.randn(3, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2)] + \
                 [torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2)]
        values = schedule.values()
        assert values["train.lr"] == pytest.approx(lr_schedule[it], rel=1e-12, abs=1e-15)
        assert values["train.weight_decay"] == pytest.approx(wd_schedule[it], rel=1e-12)
        assert values["momentum.teacher"] == pytest.approx(momentum_schedule[it], rel=1e-12)
        assert values["state.temp"] == pytest.approx(dino_loss.teacher_temp_schedule[epoch], rel=1e-12)
        loss, ours_grads = recipe_step(t, optimizers, schedule, torch.stack(images[:2]), torch.stack(images[2:]))

        for i, param_group in enumerate(optimizer.param_groups):
            param_group["lr"] = lr_schedule[it]
            if i == 0:
                param_group["weight_decay"] = wd_schedule[it]
        teacher_output = teacher(images[:2])
        student_output = student(images)
        ref_loss = dino_loss(student_output, teacher_output, epoch)
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {ours_to_dino_keys(k[8:]): v for k, v in ours_grads.items()}
        raw = {k: p.grad.clone() for k, p in student.named_parameters() if p.grad is not None}
        dino_clip_gradients(student, a["clip_grad"])
        dino_cancel_gradients_last_layer(epoch, student, a["freeze_last_layer"])
        kept = {k for k, p in student.named_parameters() if p.grad is not None}
        optimizer.step()
        with torch.no_grad():
            m = momentum_schedule[it]
            for param_q, param_k in zip(student.parameters(), teacher.parameters()):
                param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)

        close(loss, ref_loss, f"step {it} loss")
        assert set(ref_grads) == kept, f"step {it}: trained tensors differ"
        close_all(ref_grads, {k: raw[k] for k in kept}, f"step {it} grad")
        close_all({ours_to_dino_keys(k): v for k, v in t.nets["student"].state_dict().items()},
                  student.state_dict(), f"step {it} student")
        close_all({ours_to_dino_keys(k): v for k, v in t.nets["teacher"].state_dict().items()},
                  teacher.state_dict(), f"step {it} teacher")
        close(t.state.center, dino_loss.center, f"step {it} center")


# ---------------------------------------------------------------- MoCo v2
# facebookresearch/moco: moco/builder.py (MoCo: momentum update at the start of the forward,
# shuffle BN, logits, dequeue-and-enqueue), main_moco.py (SGD, adjust_learning_rate). One process:
# concat_all_gather is the identity and _batch_shuffle_ddp's permutation covers the local batch.

BN_POOLED = """
network BNPooled(num_classes: int = 0) {
  in x: [B, 3, H = 16, W = 16]
  out x -> conv1: conv(8, 3, stride=2, bias=false) -> bn1: bn -> relu -> mean(dims=[2, 3])
}
"""


class RefBNPooled(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(F.relu(self.bn1(self.conv1(x))).mean(dim=(2, 3)))


class RefMoCo(nn.Module):
    """moco/builder.py MoCo with mlp=True, world size 1."""

    def __init__(self, base_encoder, dim=128, K=65536, m=0.999, T=0.07):
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q, self.encoder_k = base_encoder(num_classes=dim), base_encoder(num_classes=dim)
        dim_mlp = self.encoder_q.fc.weight.shape[1]
        self.encoder_q.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), self.encoder_q.fc)
        self.encoder_k.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), self.encoder_k.fc)
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.copy_(param_q.data)
            param_k.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data = param_k.data * self.m + param_q.data * (1. - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        batch_size = keys.shape[0]
        ptr = int(self.queue_ptr)
        assert self.K % batch_size == 0
        self.queue[:, ptr:ptr + batch_size] = keys.T
        self.queue_ptr[0] = (ptr + batch_size) % self.K

    def forward(self, im_q, im_k, before_keys=None):
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            if before_keys is not None:
                before_keys()
            idx_shuffle = torch.randperm(im_k.shape[0])      # _batch_shuffle_ddp
            idx_unshuffle = torch.argsort(idx_shuffle)
            k = F.normalize(self.encoder_k(im_k[idx_shuffle]), dim=1)
            k = k[idx_unshuffle]                              # _batch_unshuffle_ddp
        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", [q, self.queue.clone().detach()])
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long)
        self._dequeue_and_enqueue(k)
        return logits, labels


def moco_adjust_learning_rate(optimizer, epoch, lr, epochs, cos, schedule=(120, 160)):
    """main_moco.py adjust_learning_rate."""
    if cos:
        lr *= 0.5 * (1. + math.cos(math.pi * epoch / epochs))
    else:
        for milestone in schedule:
            lr *= 0.1 if epoch >= milestone else 1.
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr
    return lr


def moco_keys(name: str) -> str:
    """The spec's Encoder keys → the reference encoder's (backbone.* → *, head.layer{i} → fc.{2i})."""
    name = name.replace("backbone.", "")
    return name.replace("head.layer0.", "fc.0.").replace("head.layer1.", "fc.2.")


@pytest.mark.parametrize("cos", [True, False], ids=["v2-cos", "v1-steps"])
def test_moco_steps_equal_the_official_builder_and_main_moco(cos):
    """Five SGD steps over three epochs of two: shuffle BN with the same permutation, key encoder,
    queue and pointer, lr per epoch (cosine, or ×0.1 at milestones 1 and 2 in the v1 test)."""
    recipe = f"cos={'true' if cos else 'false'}, epochs=3, steps_per_epoch=2, base_lr=0.5"
    t = archdsl.load_spec(source=BN_POOLED + "from ssl.moco import MoCo\nvariant t = MoCo(version=2, backbone=BNPooled, "
                          f"dim=4, hidden=0, K=12, m=0.9, T=0.2, img=16, {recipe})\n", seed=0).double()
    if not cos:   # milestones as the topology's (epochs 120 and 160) scaled to three epochs
        from archdsl.ir.schedule import step_schedule
        spec = t.ir.phases["train"].optimizer
        object.__setattr__(spec, "lr", step_schedule(0.5, milestones=[1, 2], every=2))
    optimizers, schedule = t.configure_optimizers()
    assert t.nets["query"].head.layer0.weight.shape == (8, 8)    # hidden = the backbone's width
    torch.manual_seed(1)
    model = RefMoCo(RefBNPooled, dim=4, K=12, m=0.9, T=0.2).double()
    model.encoder_q.load_state_dict({moco_keys(k): v for k, v in t.nets["query"].state_dict().items()})
    model.encoder_k.load_state_dict(model.encoder_q.state_dict())
    model.queue.copy_(t.state.queue)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), 0.5, momentum=0.9, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    for it in range(5):
        epoch = it // 2
        im_q, im_k = (torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
        ours_k = {moco_keys(k): v.clone() for k, v in t.nets["key"].state_dict().items()
                  if "running" not in k and "num_batches" not in k}
        torch.manual_seed(100 + it)
        loss, grads = recipe_step(t, optimizers, schedule, im_q, im_k)

        lr = moco_adjust_learning_rate(optimizer, epoch, 0.5, 3, cos, schedule=(1, 2))
        assert schedule.values(it)["train.lr"] == pytest.approx(lr, rel=1e-12)

        def key_encoder_equals_ours():  # ours was updated by the previous after_step; the reference's now
            close_all(ours_k, {k: v for k, v in model.encoder_k.state_dict().items()
                               if "running" not in k and "num_batches" not in k}, f"step {it} key encoder")

        torch.manual_seed(100 + it)
        output, target = model(im_q, im_k, before_keys=key_encoder_equals_ours)
        ref_loss = criterion(output, target)
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {f"query.{k}": p.grad for k, p in model.encoder_q.named_parameters()}
        optimizer.step()

        close(loss, ref_loss, f"step {it} loss")
        close_all({moco_keys(k): v for k, v in grads.items()}, ref_grads, f"step {it} grad")
        close_all({moco_keys(k): v for k, v in t.nets["query"].state_dict().items()},
                  model.encoder_q.state_dict(), f"step {it} query encoder")
        close(t.state.queue, model.queue, f"step {it} queue")
        assert int(t.state.queue_ptr) == int(model.queue_ptr)
        if it > 0:   # BN running statistics of the key encoder, updated by its shuffled forward
            close(t.nets["key"].backbone.bn1.running_mean, model.encoder_k.bn1.running_mean, "running mean")


# ---------------------------------------------------------------- SimSiam
# facebookresearch/simsiam: simsiam/builder.py (SimSiam), main_simsiam.py (loss, SGD groups with
# fix_lr, adjust_learning_rate).

class RefSimSiam(nn.Module):
    """simsiam/builder.py SimSiam."""

    def __init__(self, base_encoder, dim=2048, pred_dim=512):
        super().__init__()
        self.encoder = base_encoder(num_classes=dim)
        prev_dim = self.encoder.fc.weight.shape[1]
        self.encoder.fc = nn.Sequential(nn.Linear(prev_dim, prev_dim, bias=False), nn.BatchNorm1d(prev_dim),
                                        nn.ReLU(inplace=True), nn.Linear(prev_dim, prev_dim, bias=False),
                                        nn.BatchNorm1d(prev_dim), nn.ReLU(inplace=True), self.encoder.fc,
                                        nn.BatchNorm1d(dim, affine=False))
        self.encoder.fc[6].bias.requires_grad = False
        self.predictor = nn.Sequential(nn.Linear(dim, pred_dim, bias=False), nn.BatchNorm1d(pred_dim),
                                       nn.ReLU(inplace=True), nn.Linear(pred_dim, dim))

    def forward(self, x1, x2):
        z1, z2 = self.encoder(x1), self.encoder(x2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return p1, p2, z1.detach(), z2.detach()


def simsiam_adjust_learning_rate(optimizer, init_lr, epoch, epochs):
    cur_lr = init_lr * 0.5 * (1. + math.cos(math.pi * epoch / epochs))
    for param_group in optimizer.param_groups:
        param_group["lr"] = init_lr if param_group.get("fix_lr") else cur_lr


SIMSIAM_KEYS = {"head.layer0.": "fc.0.", "head.bn0.": "fc.1.", "head.layer1.": "fc.3.", "head.bn1.": "fc.4.",
                "head.layer2.": "fc.6.", "head.bn2.": "fc.7."}


def simsiam_keys(name: str) -> str:
    net, _, rest = name.partition(".")
    if net == "predictor":
        for ours, ref in (("head.layer0.", "0."), ("head.bn0.", "1."), ("head.layer1.", "3.")):
            rest = rest.replace(ours, ref)
        return f"predictor.{rest}"
    rest = rest.replace("backbone.", "")
    for ours, ref in SIMSIAM_KEYS.items():
        rest = rest.replace(ours, ref)
    return f"encoder.{rest}"


@pytest.mark.parametrize("proj_bias", [False, True], ids=["no_bias", "official_bias"])
def test_simsiam_steps_equal_the_official_builder_and_main_simsiam(proj_bias):
    """Five SGD steps over three epochs of two; the predictor's lr fixed at the initial value.
    proj_bias=true keeps the projector's last bias, never trained, as builder.py does."""
    t = archdsl.load_spec(source=BN_POOLED + "from ssl.simsiam import SimSiam\nvariant t = SimSiam(backbone=BNPooled, "
                          "dim=6, pred_hidden=3, img=16, batch_size=512, base_lr=0.05, epochs=3, steps_per_epoch=2, "
                          f"proj_bias={str(proj_bias).lower()})\n", seed=0).double()
    optimizers, schedule = t.configure_optimizers()
    assert t.nets["encoder"].head.layer0.weight.shape == (8, 8)    # hidden = the backbone's width
    model = RefSimSiam(RefBNPooled, dim=6, pred_dim=3).double()
    ours = {simsiam_keys(f"{n}.{k}"): v for n in ("encoder", "predictor") for k, v in t.nets[n].state_dict().items()}
    missing = model.load_state_dict(ours, strict=False)
    assert missing.missing_keys == ([] if proj_bias else ["encoder.fc.6.bias"]) and not missing.unexpected_keys
    if proj_bias:
        with torch.no_grad():  # a bias far from 0, which the BN after it must cancel on both sides
            model.encoder.fc[6].bias.fill_(0.5)
            t.nets["encoder"].head.layer2.bias.fill_(0.5)
    else:
        with torch.no_grad():  # the frozen bias the spec leaves out: the BN after it cancels it in the
            model.encoder.fc[6].bias.zero_()   # outputs; set to 0, the running mean agrees as well
    init_lr = 0.05 * 512 / 256
    optimizer = torch.optim.SGD([{"params": model.encoder.parameters(), "fix_lr": False},
                                 {"params": model.predictor.parameters(), "fix_lr": True}],
                                init_lr, momentum=0.9, weight_decay=1e-4)
    criterion = nn.CosineSimilarity(dim=1)
    g = torch.Generator().manual_seed(0)
    for it in range(5):
        x1, x2 = (torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
        loss, grads = recipe_step(t, optimizers, schedule, x1, x2)
        simsiam_adjust_learning_rate(optimizer, init_lr, it // 2, 3)
        ours_lrs = {n: g["lr"] for g in optimizers["train"].param_groups for n in g["names"]}
        assert ours_lrs["predictor.head.layer1.bias"] == init_lr
        assert ours_lrs["encoder.head.layer0.weight"] == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
        p1, p2, z1, z2 = model(x1, x2)
        ref_loss = -(criterion(p1, z2).mean() + criterion(p2, z1).mean()) * 0.5
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
        close(loss, ref_loss, f"step {it} loss")
        close_all({simsiam_keys(k): v for k, v in grads.items()}, ref_grads, f"step {it} grad")
        ours = {simsiam_keys(f"{n}.{k}"): v for n in ("encoder", "predictor") for k, v in t.nets[n].state_dict().items()}
        close_all(ours, {k: v for k, v in model.state_dict().items() if proj_bias or k != "encoder.fc.6.bias"},
                  f"step {it} weights")
    if proj_bias:
        assert torch.all(t.nets["encoder"].head.layer2.bias == 0.5)


# ---------------------------------------------------------------- BYOL
# deepmind/byol (JAX): byol/utils/networks.py (MLP), byol/byol_experiment.py (_forward, _loss_fn,
# _update_fn: optimizer step, then the target EMA from the new online parameters),
# byol/utils/helpers.py (regression_loss), byol/utils/schedules.py (learning_schedule, target_ema),
# byol/utils/optimizers.py (lars = add_weight_decay → scale_by_lars → scale(−lr), biases and
# batch-norm parameters filtered out of both). Transcribed to torch, one device.

class RefByolMLP(nn.Module):
    """networks.py MLP: hk.Linear → hk.BatchNorm(decay 0.9, eps 1e-5) → relu → hk.Linear(with_bias=False)."""

    def __init__(self, in_dim, hidden, out):
        super().__init__()
        self.layer0, self.bn0 = nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden, eps=1e-5, momentum=0.1)
        self.layer1 = nn.Linear(hidden, out, bias=False)

    def forward(self, x):
        return self.layer1(F.relu(self.bn0(self.layer0(x))))


class RefByolOnline(nn.Module):
    def __init__(self, hidden, dim):
        super().__init__()
        self.backbone = RefBNPooled(1)
        del self.backbone.fc
        self.head = RefByolMLP(8, hidden, dim)

    def forward(self, x):
        b = self.backbone
        return self.head(F.relu(b.bn1(b.conv1(x))).mean(dim=(2, 3)))


def byol_learning_schedule(global_step, batch_size, base_learning_rate, total_steps, warmup_steps):
    scaled_lr = base_learning_rate * batch_size / 256.
    learning_rate = global_step / int(warmup_steps) * scaled_lr if warmup_steps > 0 else scaled_lr
    return learning_rate if global_step < warmup_steps else \
        scaled_lr * 0.5 * (1 + math.cos(math.pi * min(global_step - warmup_steps, total_steps - warmup_steps)
                                        / (total_steps - warmup_steps)))


def byol_target_ema(global_step, base_ema, max_steps):
    return 1. - (1. - base_ema) * 0.5 * (1 + math.cos(math.pi * min(global_step, max_steps) / max_steps))


def byol_regression_loss(x, y):
    normed_x = x / torch.sqrt(torch.clamp((x ** 2).sum(-1, keepdim=True), min=1e-12))
    normed_y = y / torch.sqrt(torch.clamp((y ** 2).sum(-1, keepdim=True), min=1e-12))
    return torch.sum((normed_x - normed_y) ** 2, dim=-1)


@torch.no_grad()
def byol_lars_update(named, mu, lr, weight_decay, eta=1e-3, momentum=0.9):
    """optimizers.py lars: the filter keeps biases and batch-norm parameters out of both steps."""
    for name, p in named:
        adapt = not (name.endswith(".bias") or ".bn" in name)
        u = p.grad + weight_decay * p if adapt else p.grad.clone()
        if adapt:
            pn, un = torch.linalg.norm(p), torch.linalg.norm(u)
            u = u * torch.where(pn > 0., torch.where(un > 0, eta * pn / un, 1.0), 1.0)
        mu[name] = momentum * mu.get(name, torch.zeros_like(p)) + u
        p -= lr * mu[name]


def test_byol_steps_equal_the_official_experiment():
    """Five LARS steps: warm-up over 2 steps then cosine over 6, BYOL's LARS with the bias/BN
    filter, the cosine target EMA from the new online weights, the symmetric regression loss."""
    t = archdsl.load_spec(source=BN_POOLED + "from ssl.byol import BYOL\nvariant t = BYOL(backbone=BNPooled, dim=4, "
                          "hidden=6, tau=0.9, img=16, batch_size=256, base_lr=2.0, weight_decay=0.1, epochs=3, "
                          "warmup_epochs=1, dataset_size=512)\n", seed=0).double()
    optimizers, schedule = t.configure_optimizers()
    online, predictor = RefByolOnline(6, 4).double(), RefByolMLP(4, 6, 4).double()
    online.load_state_dict(t.nets["online"].state_dict())
    predictor.load_state_dict({k.removeprefix("head."): v for k, v in t.nets["predictor"].state_dict().items()})
    target = RefByolOnline(6, 4).double()
    target.load_state_dict(online.state_dict())
    mu = {}
    named = [(f"online.{k}", p) for k, p in online.named_parameters()] + \
            [(f"predictor.head.{k}", p) for k, p in predictor.named_parameters()]
    no_decay = {n for g in optimizers["train"].param_groups if not g["decay"] for n in g["names"]}
    assert no_decay == {n for n, _ in named if n.endswith(".bias") or ".bn" in n}
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        view1, view2 = (torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
        lr = byol_learning_schedule(step, 256, 2.0, 6, 2)
        tau = byol_target_ema(step, 0.9, 6)
        assert schedule.values()["train.lr"] == pytest.approx(lr, rel=1e-12)
        assert schedule.values()["momentum.target"] == pytest.approx(tau, rel=1e-12)
        loss, grads = recipe_step(t, optimizers, schedule, view1, view2)

        p1, p2 = predictor(online(view1)), predictor(online(view2))
        with torch.no_grad():
            z1, z2 = target(view1), target(view2)
        ref_loss = (byol_regression_loss(p1, z2) + byol_regression_loss(p2, z1)).mean()
        for _, p in named:
            p.grad = None
        ref_loss.backward()
        ref_grads = {n: p.grad.clone() for n, p in named}
        byol_lars_update(named, mu, lr, 0.1)
        with torch.no_grad():
            for x, y in zip(target.parameters(), online.parameters()):
                x.copy_(x + (1 - tau) * (y - x))

        close(loss, ref_loss, f"step {step} loss")
        close_all(grads, ref_grads, f"step {step} grad")
        close_all({f"online.{k}": v for k, v in t.nets["online"].named_parameters()} |
                  {f"predictor.{k}": v for k, v in t.nets["predictor"].named_parameters()},
                  dict(named), f"step {step} weights")
        close_all(dict(t.nets["target"].named_parameters()), dict(target.named_parameters()), f"step {step} target")


# ---------------------------------------------------------------- SimCLR
# google-research/simclr tf2: model.py (ProjectionHead, LinearLayer: Dense without bias, N(0, 0.01²),
# then BatchNormRelu(relu=False, center=use_bias); WarmUpAndCosineDecay, get_train_steps),
# objective.py (add_contrastive_loss), lars_optimizer.py (LARSOptimizer, classic momentum, exclusions
# 'batch_normalization' and 'bias'). Transcribed to torch, one replica.

class RefSimCLR(nn.Module):
    def __init__(self, layers, out_dim):
        super().__init__()
        self.backbone = RefBNPooled(1)
        del self.backbone.fc
        self.dense = nn.ModuleList([nn.Linear(8, 8 if j < layers - 1 else out_dim, bias=False) for j in range(layers)])
        self.bn = nn.ModuleList([nn.BatchNorm1d(8 if j < layers - 1 else out_dim, eps=1e-5, momentum=0.1)
                                 for j in range(layers)])
        self.bn[-1].register_parameter("bias", None)        # center=False on the last layer

    def forward(self, x):
        b = self.backbone
        h = F.relu(b.bn1(b.conv1(x))).mean(dim=(2, 3))
        for j, (dense, bn) in enumerate(zip(self.dense, self.bn)):
            h = bn(dense(h))
            if j != len(self.dense) - 1:
                h = F.relu(h)
        return h


def simclr_contrastive_loss(hidden, temperature):
    """objective.py add_contrastive_loss (hidden_norm=True, one replica)."""
    LARGE_NUM = 1e9
    hidden = F.normalize(hidden, dim=-1)
    hidden1, hidden2 = hidden.chunk(2, 0)
    batch_size = hidden1.shape[0]
    labels = F.one_hot(torch.arange(batch_size), batch_size * 2).to(hidden)
    masks = F.one_hot(torch.arange(batch_size), batch_size).to(hidden)
    logits_aa = hidden1 @ hidden1.T / temperature - masks * LARGE_NUM
    logits_bb = hidden2 @ hidden2.T / temperature - masks * LARGE_NUM
    logits_ab = hidden1 @ hidden2.T / temperature
    logits_ba = hidden2 @ hidden1.T / temperature
    loss_a = torch.sum(-labels * F.log_softmax(torch.cat([logits_ab, logits_aa], 1), -1), -1)
    loss_b = torch.sum(-labels * F.log_softmax(torch.cat([logits_ba, logits_bb], 1), -1), -1)
    return torch.mean(loss_a + loss_b)


def simclr_warmup_and_cosine(step, base_learning_rate, num_examples, batch_size, warmup_epochs, train_epochs, scaling):
    warmup_steps = int(round(warmup_epochs * num_examples // batch_size))
    scaled_lr = base_learning_rate * batch_size / 256. if scaling == "linear" else base_learning_rate * math.sqrt(batch_size)
    learning_rate = step / float(warmup_steps) * scaled_lr if warmup_steps else scaled_lr
    total_steps = num_examples * train_epochs // batch_size + 1
    decay_steps = total_steps - warmup_steps
    cosine = scaled_lr * 0.5 * (1 + math.cos(math.pi * min(step - warmup_steps, decay_steps) / decay_steps))
    return learning_rate if step < warmup_steps else cosine


@torch.no_grad()
def simclr_lars_update(named, v, learning_rate, weight_decay, momentum=0.9, eeta=0.001):
    """lars_optimizer.py _resource_apply_dense, classic_momentum=True."""
    for name, param in named:
        excluded = "bn" in name or "bias" in name
        grad = param.grad if excluded else param.grad + weight_decay * param
        trust_ratio = 1.0
        if not excluded:
            w_norm, g_norm = torch.linalg.norm(param), torch.linalg.norm(grad)
            trust_ratio = torch.where(w_norm > 0, torch.where(g_norm > 0, eeta * w_norm / g_norm, 1.0), 1.0)
        v[name] = momentum * v.get(name, torch.zeros_like(param)) + learning_rate * trust_ratio * grad
        param -= v[name]


@pytest.mark.parametrize("layers,tf_loss", [(2, True), (3, False)], ids=["v1-tf-loss", "v2-paper-loss"])
def test_simclr_steps_equal_the_official_tf2_code(layers, tf_loss):
    """Five LARS steps (warm-up over 2, then cosine), v1 and v2 heads; the loss is the TF code's
    sum of the two views' means, or with tf_loss=false half of it (the paper's mean)."""
    t = archdsl.load_spec(source=BN_POOLED + "from ssl.simclr import SimCLR\nvariant t = SimCLR(backbone=BNPooled, "
                          f"dim=4, layers={layers}, T=0.5, img=16, tf_loss={str(tf_loss).lower()}, batch_size=256, "
                          "base_lr=0.3, weight_decay=0.1, epochs=3, warmup_epochs=1, dataset_size=512)\n",
                          seed=0).double()
    head = t.nets["encoder"].head
    assert getattr(head, f"bn{layers - 1}").bias is None and getattr(head, f"layer{layers - 1}").bias is None
    assert abs(head.layer0.weight.std().item() - 0.01) < 0.004
    optimizers, schedule = t.configure_optimizers()
    model = RefSimCLR(layers, 4).double()
    model.load_state_dict({_simclr_ref_key(k): v for k, v in t.nets["encoder"].state_dict().items()})
    v = {}
    named = list(model.named_parameters())
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        x1, x2 = (torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
        lr = simclr_warmup_and_cosine(step, 0.3, 512, 256, 1, 3, "linear")
        assert schedule.values()["train.lr"] == pytest.approx(lr, rel=1e-12)
        loss, grads = recipe_step(t, optimizers, schedule, x1, x2)
        ref_loss = simclr_contrastive_loss(torch.cat([model(x1), model(x2)]), 0.5) * (1.0 if tf_loss else 0.5)
        for _, p in named:
            p.grad = None
        ref_loss.backward()
        ref_grads = {_simclr_our_key(n): p.grad.clone() for n, p in named}
        simclr_lars_update(named, v, lr, 0.1)
        close(loss, ref_loss, f"step {step} loss")
        close_all(grads, ref_grads, f"step {step} grad")
        close_all({f"encoder.{k}": p for k, p in t.nets["encoder"].named_parameters()},
                  {_simclr_our_key(n): p for n, p in named}, f"step {step} weights")


def _simclr_ref_key(ours: str) -> str:
    """The spec's head.layer{j} / head.bn{j} → the reference's dense.{j} / bn.{j}."""
    if ours.startswith("backbone."):
        return ours
    for j in range(3):
        ours = ours.replace(f"head.layer{j}.", f"dense.{j}.").replace(f"head.bn{j}.", f"bn.{j}.")
    return ours


def _simclr_our_key(ref: str) -> str:
    for j in range(3):
        ref = ref.replace(f"dense.{j}.", f"head.layer{j}.").replace(f"bn.{j}.", f"head.bn{j}.")
    return f"encoder.{ref}"


# ---------------------------------------------------------------- the recipe language

GROUPS = """
network Two() {
  in x: [B, 4]
  out x -> a: linear(4) -> n: ln -> b: linear(2)
}
topology T() {
  in x: [B = 3, 4]
  net f = Two()
  phase train(optimizer=sgd(lr=step_schedule(0.5, milestones=[2, 3], gamma=0.1), momentum=0.9, weight_decay=0.01,
                            no_decay=true, groups=[group("f.b", lr_mult=0.01), group("f.a.weight", weight_decay=0.5)])) {
    loss = mean(x -> f, dims=[0, 1])
  }
}
variant t = T()
"""


def test_groups_take_lr_multipliers_and_weight_decay_overrides_and_no_decay_spares_biases_and_norms():
    t = archdsl.load_spec(source=GROUPS, seed=0)
    optimizers, schedule = t.configure_optimizers()
    by_name = {n: g for g in optimizers["train"].param_groups for n in g["names"]}
    assert set(by_name) == {"f.a.weight", "f.a.bias", "f.n.weight", "f.n.bias", "f.b.weight", "f.b.bias"}
    for k, lr in [(0, 0.5), (1, 0.5), (2, 0.05), (3, 0.005), (10, 0.005)]:
        schedule.apply(k)
        assert by_name["f.a.bias"]["lr"] == pytest.approx(lr) and by_name["f.b.weight"]["lr"] == pytest.approx(lr * 0.01)
    assert by_name["f.a.weight"]["weight_decay"] == 0.5
    assert by_name["f.b.weight"]["weight_decay"] == 0.01
    assert all(by_name[n]["weight_decay"] == 0.0 for n in ("f.a.bias", "f.n.weight", "f.n.bias", "f.b.bias"))
    # the update each parameter sees is SGD's with its group's lr and decay
    x = torch.randn(3, 4)
    w = t.nets["f"].b.weight.detach().clone()
    schedule.apply(0)
    out = t(x)
    out.loss.backward()
    grad = t.nets["f"].b.weight.grad.clone()
    optimizers["train"].step()
    close(t.nets["f"].b.weight, w - 0.5 * 0.01 * (grad + 0.01 * w), "group lr x 0.01")


@pytest.mark.parametrize("phase_args,message", [
    ('optimizer=3', "`optimizer` takes sgd"),
    ('optimizer=sgd(lr=-1)', "lr must be a number"),
    ('optimizer=adamw(lr=cosine_schedule(1.0, warmup_style="cubic"))', "warmup_style is one of"),
    ('optimizer=adam(lr=1e-3, betas=[0.5])', "betas is a pair"),
    ('optimizer=sgd(lr=0.1, groups=[3])', "groups lists group"),
])
def test_recipe_mistakes_are_arch_errors_at_their_place(phase_args, message):
    src = GROUPS.split("topology")[0] + ("topology T() {\n  in x: [B = 3, 4]\n  net f = Two()\n"
                                         f"  phase train({phase_args}) {{\n    loss = mean(x -> f, dims=[0, 1])\n  }}\n}}\n"
                                         "variant t = T()\n")
    with pytest.raises(archdsl.ArchError, match=message) as err:
        archdsl.load_topology(source=src)
    assert err.value.span is not None and err.value.span.line == 9   # the phase line


def test_a_topology_without_a_recipe_says_so():
    t = archdsl.load_spec(source=GROUPS.replace("phase train(optimizer=sgd(lr=step_schedule(0.5, milestones=[2, 3], "
                                                "gamma=0.1), momentum=0.9, weight_decay=0.01,\n                            "
                                                "no_decay=true, groups=[group(\"f.b\", lr_mult=0.01), group(\"f.a.weight\", "
                                                "weight_decay=0.5)]))", "phase train"))
    with pytest.raises(ValueError, match="declares no optimizer"):
        t.configure_optimizers()


def test_every_stdlib_ssl_and_gan_topology_declares_its_recipe():
    for name in ["moco_v1", "moco_v2", "simclr_v1", "simclr_v2", "byol", "simsiam", "dino", "swav", "mae_pretrain",
                 "clip_train", "gan_mnist", "dcgan", "pix2pix", "cyclegan", "pggan", "stylegan", "biggan128",
                 "instdisc", "cmc", "cpc", "beit_pretrain", "cae_base"]:
        ir = archdsl.load_topology(name)
        assert all(p.optimizer is not None for p in ir.phases.values()), name
    gans = {name: archdsl.load_topology(name) for name in ("dcgan", "stylegan", "biggan128")}
    assert gans["dcgan"].phases["d_step"].optimizer.options["betas"] == (0.5, 0.999)
    assert gans["stylegan"].phases["g_step"].optimizer.options["betas"] == (0.0, 0.99)
    assert (gans["biggan128"].phases["g_step"].optimizer.lr, gans["biggan128"].phases["d_step"].optimizer.lr) == (5e-5, 2e-4)


# ---------------------------------------------------------------- DCGAN
# pytorch/examples dcgan/main.py: Generator / Discriminator (nn.Sequential `main`, the sigmoid in D
# with BCELoss), Adam(lr, betas=(beta1, 0.999)) for each, and the loop: D on real (label 1) and on
# fake.detach() (label 0), optimizerD.step(); then G through the updated D on the same `fake`
# (label 1), optimizerG.step(). Built here at 16x16 with two stride-2 layers.

class RefDCGANGenerator(nn.Module):
    def __init__(self, nz, ngf, nc):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, input):
        return self.main(input)


class RefDCGANDiscriminator(nn.Module):
    def __init__(self, ndf, nc):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, input):
        return self.main(input).view(-1, 1).squeeze(1)


def test_dcgan_steps_equal_pytorch_examples_main():
    """Four rounds: G runs once per round (the G-step scores the D-step's `fake`, as main.py),
    losses of both phases, gradients, weights after each Adam step, D's BN statistics."""
    t = archdsl.load_spec(source="from gan.dcgan_train import DCGAN\nvariant t = DCGAN(nz=8, ngf=4, ndf=4, img=16)\n",
                          seed=0, input_shape=[(5, 3, 16, 16)]).double()
    optimizers, schedule = t.configure_optimizers()
    netG, netD = RefDCGANGenerator(8, 4, 3).double(), RefDCGANDiscriminator(4, 3).double()
    netG.load_state_dict(t.nets["G"].state_dict())
    netD.load_state_dict(t.nets["D"].state_dict())
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    assert updated_by(optimizers["d_step"]) == {id(p) for p in t.nets["D"].parameters()}
    assert updated_by(optimizers["g_step"]) == {id(p) for p in t.nets["G"].parameters()}
    g = torch.Generator().manual_seed(0)
    for it in range(4):
        real_cpu = torch.rand(5, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
        torch.manual_seed(20 + it)
        loss_d, grads_d = recipe_step(t, optimizers, schedule, real_cpu, phase="d_step", after_step=False)
        loss_g, grads_g = recipe_step(t, optimizers, schedule, real_cpu, phase="g_step")

        torch.manual_seed(20 + it)
        netD.zero_grad()
        label = torch.full((5,), 1.0, dtype=real_cpu.dtype)
        errD_real = criterion(netD(real_cpu), label)
        errD_real.backward()
        noise = torch.randn(5, 8, 1, 1, dtype=torch.float64)
        fake = netG(noise)
        label.fill_(0.0)
        errD_fake = criterion(netD(fake.detach()), label)
        errD_fake.backward()
        ref_grads_d = {f"D.{k}": p.grad.clone() for k, p in netD.named_parameters()}
        optimizerD.step()
        netG.zero_grad()
        label.fill_(1.0)
        errG = criterion(netD(fake), label)
        errG.backward()
        ref_grads_g = {f"G.{k}": p.grad.clone() for k, p in netG.named_parameters()}
        optimizerG.step()

        close(loss_d, errD_real + errD_fake, f"round {it} D loss")
        close(loss_g, errG, f"round {it} G loss")
        close_all(grads_d, ref_grads_d, f"round {it} D grad")
        close_all(grads_g, ref_grads_g, f"round {it} G grad")
        close_all(t.nets["D"].state_dict(), netD.state_dict(), f"round {it} D")   # BN statistics too
        close_all(t.nets["G"].state_dict(), netG.state_dict(), f"round {it} G")   # G ran once: BN statistics too
