"""MAE (He et al., CVPR 2022): stdlib/nets/mae.arch and stdlib/ssl/mae.arch against a hand-written transcription of the
authors' models_mae.py (MaskedAutoencoderViT, util/pos_embed.py), and the traps of
shared/topology-traps.md: exactly L − int(L·(1 − r)) patches masked; shuffle then restore is the
identity; predictions on visible patches do not change the loss; the position embedding is added
before masking (the reference forward does so, and the outputs agree under one random stream)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from topology_checks import loss_curve

TINY = dict(patch=4, dim=32, depth=2, num_heads=2, decoder_dim=16, decoder_depth=1, decoder_heads=2,
            img_size=16)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net(mask_ratio=0.75, seed=0, **kw):
    args = {**TINY, **kw}
    src = ("from nets.mae import MAE\nvariant t = MAE(" + ", ".join(f"{k}={v}" for k, v in args.items())
           + f", mask_ratio={mask_ratio})\n")
    return archdsl.load_spec(source=src, seed=seed)


def tiny_topo(norm_pix=False, seed=0):
    src = ("from nets.mae import MAE\nfrom ssl.mae import MAEPretrain\nvariant t = MAEPretrain(model=MAE(4, 32, 2, 2, 16, 1, 2, "
           f"img_size=16), patch=4, norm_pix_loss={'true' if norm_pix else 'false'}, img=16)\n")
    return archdsl.load_spec(source=src, seed=seed)


# ---- a transcription of facebookresearch/mae models_mae.py (timm Block, eps 1e-6) -------------

def np_sincos_2d(embed_dim, grid_size, cls_token=False):
    """util/pos_embed.py get_2d_sincos_pos_embed, in numpy as the authors wrote it."""
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.meshgrid(grid_w, grid_h)  # here w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_size, grid_size])

    def one_d(d, pos):
        omega = np.arange(d // 2, dtype=np.float64) / (d / 2.0)
        omega = 1.0 / 10000 ** omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb


class RefAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)


class RefMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = RefMlp(dim, dim * mlp_ratio)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefMAE(nn.Module):
    def __init__(self, img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4, in_chans=3):
        super().__init__()
        self.p = patch_size
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList([RefBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, decoder_embed_dim),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList([RefBlock(decoder_embed_dim, decoder_num_heads, mlp_ratio)
                                             for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * in_chans)
        if self.pos_embed.device.type != "meta":
            side = int(num_patches ** .5)
            self.pos_embed.data.copy_(torch.from_numpy(np_sincos_2d(embed_dim, side, True)).float()[None])
            self.decoder_pos_embed.data.copy_(
                torch.from_numpy(np_sincos_2d(decoder_embed_dim, side, True)).float()[None])

    def patchify(self, imgs):
        p = self.p
        h = w = imgs.shape[2] // p
        x = imgs.reshape(imgs.shape[0], 3, h, p, w, p)
        x = torch.einsum("nchpwq->nhwpqc", x)
        return x.reshape(imgs.shape[0], h * w, p ** 2 * 3)

    def random_masking(self, x, mask_ratio):
        n, length, d = x.shape
        len_keep = int(length * (1 - mask_ratio))
        noise = torch.rand(n, length, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, dim=1, index=ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones([n, length], device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, dim=1, index=ids_restore)
        return x_masked, mask, ids_restore

    def forward(self, imgs, mask_ratio=0.75):
        x = self.patch_embed.proj(imgs).flatten(2).transpose(1, 2)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, mask_ratio)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_embed(self.norm(x))
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, dim=1, index=ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:, :]
        return pred, mask

    def loss(self, imgs, pred, mask, norm_pix_loss=False):
        target = self.patchify(imgs)
        if norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.e-6) ** .5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()


def _ref_key(key: str) -> str:
    return {"pos_embed.weight": "pos_embed", "decoder_pos_embed.weight": "decoder_pos_embed"}.get(key, key)


# ---- the network -----------------------------------------------------------------------------

def test_full_size_parameter_count_equals_the_reference_repo():
    """mae_vit_base_patch16 (models_mae.py) holds 111,907,840 parameters, 252,160 of them the
    frozen sincos tables; large and huge likewise."""
    for variant, kw in [("mae_vit_base_patch16", {}),
                        ("mae_vit_large_patch16", dict(embed_dim=1024, depth=24, num_heads=16)),
                        ("mae_vit_huge_patch14", dict(patch_size=14, embed_dim=1280, depth=32, num_heads=16))]:
        with torch.device("meta"):
            ref = RefMAE(**kw)
        ours = archdsl.check_spec(variant).totals.params
        assert ours == sum(p.numel() for p in ref.parameters()), variant
    assert archdsl.check_spec("mae_vit_base_patch16").totals.params == 111_907_840


def test_keys_and_shapes_are_the_reference_repos():
    net = tiny_net()
    ref = RefMAE(16, 4, 32, 2, 2, 16, 1, 2)
    ours = {_ref_key(k): tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    # the sincos tables are frozen parameters, as MAE holds them
    frozen = {k for k, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"pos_embed.weight", "decoder_pos_embed.weight"}


def test_sincos_tables_equal_the_authors_numpy_code():
    net = tiny_net()
    torch.testing.assert_close(net.state_dict()["pos_embed.weight"][0],
                               torch.from_numpy(np_sincos_2d(32, 4, True)).float())
    torch.testing.assert_close(net.state_dict()["decoder_pos_embed.weight"][0],
                               torch.from_numpy(np_sincos_2d(16, 4, True)).float())


@pytest.mark.parametrize("ratio", [0.75, 0.5])
def test_forward_equals_the_reference_under_one_random_stream(ratio):
    """Same weights, same torch seed → same mask and predictions. The reference adds the position
    embedding before masking; a spec adding it after would give other values here."""
    net = tiny_net(ratio).eval()
    ref = RefMAE(16, 4, 32, 2, 2, 16, 1, 2).eval()
    ref.load_state_dict({_ref_key(k): v for k, v in net.state_dict().items()})
    x = torch.randn(3, 3, 16, 16)
    torch.manual_seed(7)
    out = net(x)
    torch.manual_seed(7)
    pred, mask = ref(x, ratio)
    torch.testing.assert_close(out["mask"], mask)
    torch.testing.assert_close(out["pred"], pred, atol=1e-5, rtol=1e-4)


def test_initialisation_follows_initialize_weights():
    torch.manual_seed(0)
    sd = archdsl.load_spec("mae_vit_base_patch16").state_dict()
    xavier = (6 / (768 + 3 * 768)) ** 0.5   # qkv: fan_in 768, fan_out 2304
    w = sd["blocks.0.attn.qkv.weight"]
    assert w.abs().max() <= xavier and w.abs().max() > 0.95 * xavier
    assert w.std().item() == pytest.approx(xavier / 3 ** 0.5, rel=0.02)
    assert torch.all(sd["blocks.0.attn.qkv.bias"] == 0)
    # the patch projection is xavier-uniform over its [768, 3·16·16] view, not over the conv's fans
    pw = sd["patch_embed.proj.weight"]
    bound = (6 / (768 + 768)) ** 0.5
    assert pw.abs().max() <= bound and pw.abs().max() > 0.95 * bound
    assert sd["cls_token"].std().item() == pytest.approx(0.02, rel=0.1)
    assert sd["mask_token"].std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(sd["blocks.0.norm1.weight"] == 1)


# ---- masking traps ---------------------------------------------------------------------------

@pytest.mark.parametrize("ratio, masked", [(0.75, 12), (0.7, 12), (0.6, 10), (0.9, 15)])
def test_exactly_L_minus_int_L_times_one_minus_r_masked(ratio, masked):
    """L = 16: int(16·0.3) = 4 kept at r = 0.7 (4.8 truncated, not rounded), int(16·0.4) = 6 at 0.6."""
    assert masked == 16 - int(16 * (1 - ratio))
    net = tiny_net(ratio)
    out = net(torch.randn(5, 3, 16, 16))
    assert torch.all(out["mask"].sum(dim=1) == masked)
    assert set(out["mask"].unique().tolist()) <= {0.0, 1.0}


RESTORE = """
network T(ratio: float = 0.5) {
  in x: [B, L = 8, D = 4]
  param mask_token: [1, 1, D] = 0
  k = x -> random_masking(ratio)
  out y = restore_tokens(k[0], mask_token, k[2])
  out mask = k[1]
}
variant t = T()
"""


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75])
def test_shuffle_then_restore_is_the_identity_on_kept_tokens(ratio):
    net = archdsl.load_spec(source=RESTORE, ratio=ratio)
    with torch.no_grad():
        net.mask_token.fill_(-123.0)
    x = torch.randn(6, 8, 4)
    out = net(x)
    keep = out["mask"] == 0
    assert torch.equal(out["y"][keep], x[keep])            # kept tokens back in their places
    assert torch.all(out["y"][~keep] == -123.0)            # removed ones are the mask token
    if ratio == 0.0:
        assert torch.equal(out["y"], x)


# ---- the topology ----------------------------------------------------------------------------

@pytest.mark.parametrize("norm_pix", [False, True])
def test_topology_loss_is_the_masked_mse_of_the_reference(norm_pix):
    t = tiny_topo(norm_pix)
    net = t.nets["mae"]
    ref = RefMAE(16, 4, 32, 2, 2, 16, 1, 2)
    imgs = torch.randn(2, 3, 16, 16)
    torch.manual_seed(3)
    loss = t(imgs).loss
    torch.manual_seed(3)
    out = net(imgs)
    torch.testing.assert_close(loss, ref.loss(imgs, out["pred"], out["mask"], norm_pix))


def test_predictions_on_visible_patches_do_not_change_the_loss():
    t = tiny_topo()
    imgs = torch.randn(2, 3, 16, 16)
    torch.manual_seed(1)
    out = t.nets["mae"](imgs)
    pred, mask = out["pred"].detach(), out["mask"]
    ref = RefMAE(16, 4, 32, 2, 2, 16, 1, 2)
    base = ref.loss(imgs, pred, mask)
    noise = torch.randn_like(pred)
    visible = (mask == 0).unsqueeze(-1)
    from archdsl.nn.loss import mae_loss
    target = ref.patchify(imgs)
    assert mae_loss(pred, target, mask).item() == pytest.approx(base.item(), rel=1e-6)
    assert mae_loss(pred + noise * visible, target, mask).item() == pytest.approx(base.item(), rel=1e-6)
    assert mae_loss(pred + noise * ~visible, target, mask).item() != pytest.approx(base.item(), rel=1e-3)
    # and through the whole topology: no gradient reaches the visible patches' predictions
    p = pred.clone().requires_grad_(True)
    mae_loss(p, target, mask).backward()
    assert torch.all(p.grad[visible.expand_as(p)] == 0) and p.grad[~visible.expand_as(p)].abs().sum() > 0


def test_short_training_run_lowers_the_loss():
    t = tiny_topo(seed=0)
    g = torch.Generator().manual_seed(0)
    # smooth images (a few low-frequency patterns), so the masked pixels are predictable
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    coef = torch.randn(8, 3, 3, generator=g)
    imgs = coef[..., 0, None, None] * xx + coef[..., 1, None, None] * yy + coef[..., 2, None, None]
    opt = torch.optim.AdamW(t.parameters(phase="train"), lr=1e-2)
    torch.manual_seed(0)
    losses = loss_curve(t, opt, imgs, steps=20)
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5, losses


def test_tiny_mae_compiles_without_graph_breaks():
    net = tiny_net()
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = compiled(x)
    (out["pred"] * out["mask"].unsqueeze(-1)).sum().backward()
    assert x.grad is not None and out["mask"].sum() == 2 * 12


# ---- the recipe, step for step against main_pretrain.py / engine_pretrain.py -------------------
# facebookresearch/mae: main_pretrain.py (lr = blr · eff_batch / 256, timm optim_factory.add_weight_decay
# groups, AdamW betas (0.9, 0.95)), engine_pretrain.py (train_one_epoch: lr_sched per iteration on
# the fractional epoch, forward, backward, step; accum_iter 1), util/lr_sched.py.

def mae_adjust_learning_rate(optimizer, epoch, lr, min_lr, warmup_epochs, epochs):
    """util/lr_sched.py adjust_learning_rate."""
    if epoch < warmup_epochs:
        lr = lr * epoch / warmup_epochs
    else:
        lr = min_lr + (lr - min_lr) * 0.5 * (1. + np.cos(np.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))
    for param_group in optimizer.param_groups:
        param_group["lr"] = lr * param_group.get("lr_scale", 1.0)
    return lr


def timm_add_weight_decay(model, weight_decay=1e-5, skip_list=()):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if len(param.shape) == 1 or name.endswith(".bias") or name in skip_list:
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": no_decay, "weight_decay": 0.}, {"params": decay, "weight_decay": weight_decay}]


def test_parameters_of_a_phase_leave_out_the_frozen_sincos_tables():
    t = tiny_topo()
    trained = {id(p) for p in t.parameters(phase="train")}
    net = t.nets["mae"]
    assert id(net.pos_embed.weight) not in trained and id(net.decoder_pos_embed.weight) not in trained
    assert trained == {id(p) for p in net.parameters() if p.requires_grad}
    optimizers, _ = t.configure_optimizers()
    assert {id(p) for g in optimizers["train"].param_groups for p in g["params"]} == trained


def test_recipe_steps_equal_the_official_engine_pretrain():
    """Five AdamW steps (warm-up over epoch 1 of 2 steps, then cosine), norm_pix_loss, the same
    random masks (one torch stream), decay groups as timm's add_weight_decay."""
    from recipe_checks import close, close_all, recipe_step
    src = ("from nets.mae import MAE\nfrom ssl.mae import MAEPretrain\nvariant t = MAEPretrain(model=MAE(4, 32, 2, 2, "
           "16, 1, 2, img_size=16), patch=4, img=16, batch_size=512, blr=1e-3, epochs=3, warmup_epochs=1, "
           "steps_per_epoch=2)\n")
    t = archdsl.load_spec(source=src, seed=0).double()
    optimizers, schedule = t.configure_optimizers()
    model = RefMAE(16, 4, 32, 2, 2, 16, 1, 2).double()
    model.load_state_dict({_ref_key(k): v for k, v in t.nets["mae"].state_dict().items()})
    lr = 1e-3 * 512 / 256
    optimizer = torch.optim.AdamW(timm_add_weight_decay(model, 0.05), lr=lr, betas=(0.9, 0.95))
    ours_no_decay = {n.removeprefix("mae.") for g in optimizers["train"].param_groups if not g["decay"] for n in g["names"]}
    assert {_ref_key(n) for n in ours_no_decay} == {n for n, p in model.named_parameters()
                                                    if p.requires_grad and (p.ndim == 1 or n.endswith(".bias"))}
    g = torch.Generator().manual_seed(0)
    for it in range(5):
        samples = torch.randn(3, 3, 16, 16, generator=g, dtype=torch.float64)
        torch.manual_seed(10 + it)
        loss, grads = recipe_step(t, optimizers, schedule, samples)
        want_lr = mae_adjust_learning_rate(optimizer, it / 2, lr, 0.0, 1, 3)
        assert schedule.values(it)["train.lr"] == pytest.approx(want_lr, rel=1e-12, abs=1e-15)
        torch.manual_seed(10 + it)
        pred, mask = model(samples, 0.75)
        ref_loss = model.loss(samples, pred, mask, True)
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
        close(loss, ref_loss, f"step {it} loss")
        close_all({_ref_key(n.removeprefix("mae.")): v for n, v in grads.items()}, ref_grads, f"step {it} grad")
        close_all({_ref_key(k): v for k, v in t.nets["mae"].state_dict().items()}, model.state_dict(), f"step {it} weights")
