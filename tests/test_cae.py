"""CAE (Chen et al. 2022): stdlib/ssl/cae.arch against a hand-written transcription of the
authors' models/modeling_cae_helper.py (encoder, RegressorBlock with its CrossAttention,
LatentRegresser, Decoder) under the same weights; the mask_partition op; the topology: exactly 50%
masked, the encoder never sees the masked pixels, the alignment target comes from a gradient-free
twin holding the encoder's weights, loss = CE(masked tokens) + 2 · MSE(alignment)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from topology_checks import colour_images_and_tokens, step
from archdsl.nn.tokens import BlockMask

FIXTURE = Path(__file__).parent / "fixtures" / "reference" / "timm__beit_base_patch16_224.json"
TINY = "patch=4, dim=32, depth=2, num_heads=2, regressor_depth=2, decoder_depth=1, vocab_size=6, " \
       "min_num_patches=2, img=16"


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_topo(seed=0):
    return archdsl.load_spec(source=f"from ssl.cae import CAEPretrain\nvariant t = CAEPretrain({TINY})\n", seed=seed)


# ---- a transcription of Atten4Vis/CAE models/modeling_cae_helper.py --------------------------

class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (c // self.heads) ** -0.5, qkv[1], qkv[2]
        return self.proj(((q @ k.transpose(-2, -1)).softmax(-1) @ v).transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    def __init__(self, dim, heads, init_values=0.1):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn, self.mlp = Attention(dim, heads), Mlp(dim, 4 * dim)
        self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
        self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class CrossAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, k, v):
        b, n, c = x.shape
        q = F.linear(x, self.q.weight, self.q_bias).reshape(b, n, self.heads, -1).transpose(1, 2)
        k = F.linear(k, self.k.weight).reshape(b, k.shape[1], self.heads, -1).transpose(1, 2)
        v = F.linear(v, self.v.weight, self.v_bias).reshape(b, v.shape[1], self.heads, -1).transpose(1, 2)
        attn = ((q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class RegressorBlock(nn.Module):
    def __init__(self, dim, heads, init_values=0.1):
        super().__init__()
        self.norm1_q, self.norm1_k, self.norm1_v, self.norm2_cross = (nn.LayerNorm(dim, eps=1e-6) for _ in range(4))
        self.cross_attn, self.mlp_cross = CrossAttention(dim, heads), Mlp(dim, 4 * dim)
        self.gamma_1_cross = nn.Parameter(init_values * torch.ones(dim))
        self.gamma_2_cross = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x_q, x_kv, pos_q, pos_k):
        x = x_q + self.gamma_1_cross * self.cross_attn(self.norm1_q(x_q + pos_q), k=self.norm1_k(x_kv + pos_k),
                                                       v=self.norm1_v(x_kv))
        x = self.norm2_cross(x)
        return x + self.gamma_2_cross * self.mlp_cross(x)


class Encoder(nn.Module):
    def __init__(self, n, patch, dim, depth, heads):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim), requires_grad=False)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x, bool_masked_pos):  # forward_features
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        b, _, dim = x.shape
        x_unmasked = torch.cat((self.cls_token.expand(b, -1, -1), x[~bool_masked_pos].reshape(b, -1, dim)), dim=1)
        pos = self.pos_embed.expand(b, -1, dim)
        x_unmasked = x_unmasked + torch.cat((pos[:, :1], pos[:, 1:][~bool_masked_pos].reshape(b, -1, dim)), dim=1)
        for blk in self.blocks:
            x_unmasked = blk(x_unmasked)
        return self.norm(x_unmasked)


class RegressorDecoder(nn.Module):
    """ContextAutoencoderViT without its encoders: rd_pos_embed, mask_token, regresser, decoder."""

    def __init__(self, n, dim, heads, regressor_depth, decoder_depth, vocab):
        super().__init__()
        self.n = n
        self.rd_pos_embed = nn.Parameter(torch.zeros(1, n + 1, dim), requires_grad=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.regresser = nn.Module()
        self.regresser.regressor_blocks = nn.ModuleList([RegressorBlock(dim, heads) for _ in range(regressor_depth)])
        self.regresser.norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder = nn.Module()
        self.decoder.decoder_blocks = nn.ModuleList([Block(dim, heads) for _ in range(decoder_depth)])
        self.decoder.norm = nn.LayerNorm(dim, eps=1e-6)
        self.decoder.head = nn.Linear(dim, vocab)

    def forward(self, x_unmasked, bool_masked_pos):
        b, v1, dim = x_unmasked.shape
        x_unmasked = x_unmasked[:, 1:, :]
        pos = self.rd_pos_embed.expand(b, self.n + 1, dim)
        pos_masked = pos[:, 1:][bool_masked_pos].reshape(b, -1, dim)
        pos_unmasked = pos[:, 1:][~bool_masked_pos].reshape(b, -1, dim)
        x_masked = self.mask_token.expand(b, self.n - (v1 - 1), -1)
        for blk in self.regresser.regressor_blocks:
            x_masked = blk(x_masked, torch.cat([x_unmasked, x_masked], dim=1), pos_masked,
                           torch.cat([pos_unmasked, pos_masked], dim=1))
        latent_pred = self.regresser.norm(x_masked)
        x = latent_pred + pos_masked
        for blk in self.decoder.decoder_blocks:
            x = blk(x)
        return latent_pred, self.decoder.head(self.decoder.norm(x))


def _ours_to_ref(sd):
    return {k.replace("pos_embed.weight", "pos_embed"): v for k, v in sd.items()}


def _exact_mask(b, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=g) < n // 2 for _ in range(b)])


# ---- the networks ----------------------------------------------------------------------------

def test_full_size_parameter_counts_equal_the_transcriptions():
    ir = archdsl.load_topology("cae_base")
    from archdsl.ir.cost import cost
    ours = {n: cost(d.first_graph).totals.params for n, d in ir.nets.items() if d.twin is None}
    with torch.device("meta"):
        enc, rest = Encoder(196, 16, 768, 12, 12), RegressorDecoder(196, 768, 12, 4, 4, 8192)
    assert ours["encoder"] == sum(p.numel() for p in enc.parameters()) == 85_807_872
    assert ours["regressor_decoder"] == sum(p.numel() for p in rest.parameters()) == 63_176_192
    # the encoder is timm's BEiT-base without its relative position tables and classifier, plus
    # a sincos table and a final norm
    sd = {k: torch.Size(s).numel() for k, s, _ in json.loads(FIXTURE.read_text())["state_dict"]}
    beit = sum(v for k, v in sd.items() if "relative_position" not in k and not k.startswith(("head.", "fc_norm.")))
    assert ours["encoder"] == beit + 197 * 768 + 2 * 768


def test_encoder_equals_the_transcription_and_ignores_masked_pixels():
    t = tiny_topo()
    enc = t.nets["encoder"].eval()
    ref = Encoder(16, 4, 32, 2, 2).eval()
    ref.load_state_dict(_ours_to_ref(enc.state_dict()))
    x, mask = torch.randn(3, 3, 16, 16), _exact_mask(3, 16)
    out = enc(x, mask.float())
    torch.testing.assert_close(out, ref(x, mask), atol=1e-5, rtol=1e-4)
    y = x.clone()
    for i in range(3):  # scribble over every masked patch: the encoder never sees them
        for p in mask[i].nonzero().flatten().tolist():
            r, c = divmod(p, 4)
            y[i, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4] = 50.0
    torch.testing.assert_close(enc(y, mask.float()), out)


def test_regressor_and_decoder_equal_the_transcription():
    t = tiny_topo()
    rd = t.nets["regressor_decoder"].eval()
    ref = RegressorDecoder(16, 32, 2, 2, 1, 6).eval()
    ref.load_state_dict(_ours_to_ref(rd.state_dict()))
    with torch.no_grad():  # non-trivial layer scales and biases, so every term matters
        for name, p in ref.named_parameters():
            if "gamma" in name or "bias" in name:
                p.add_(0.3 * torch.randn_like(p))
    rd.load_state_dict({k: ref.state_dict()[k.replace("pos_embed.weight", "pos_embed")] for k in rd.state_dict()})
    latent, mask = torch.randn(3, 9, 32), _exact_mask(3, 16, seed=1)
    out = rd(latent, mask.float())
    pred, logits = ref(latent, mask)
    torch.testing.assert_close(out["latent_pred"], pred, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["logits"], logits, atol=1e-5, rtol=1e-4)


def test_regressor_and_decoder_keys_are_caes():
    rd = tiny_topo().nets["regressor_decoder"]
    ref = RegressorDecoder(16, 32, 2, 2, 1, 6)
    ours = {k: tuple(v.shape) for k, v in _ours_to_ref(rd.state_dict()).items()}
    assert ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def test_mask_partition_keeps_token_order():
    src = "network T() {\n in x: [B, L = 6, D = 2]\n in m: [B, L]\n p = mask_partition(x, m, 2)\n" \
          " out a = p[0]\n out b = p[1]\n}\nvariant t = T()\n"
    net = archdsl.load_spec(source=src)
    x = torch.arange(24.0).reshape(2, 6, 2)
    m = torch.tensor([[0, 1, 0, 0, 1, 0], [1, 1, 0, 0, 0, 0]]).float()
    out = net(x, m)
    torch.testing.assert_close(out["a"], torch.stack([x[0, [0, 2, 3, 5]], x[1, [2, 3, 4, 5]]]))
    torch.testing.assert_close(out["b"], torch.stack([x[0, [1, 4]], x[1, [0, 1]]]))


# ---- the topology ----------------------------------------------------------------------------

def test_exact_block_masking_masks_half():
    torch.manual_seed(0)
    masks = BlockMask(14, 14, 98, min_num_patches=16, exact=True)(torch.zeros(20, 196))
    assert torch.all(masks.flatten(1).sum(dim=1) == 98)
    torch.manual_seed(0)
    small = BlockMask(4, 4, 8, min_num_patches=2, exact=True)(torch.zeros(20, 16))
    assert torch.all(small.flatten(1).sum(dim=1) == 8)


def test_loss_is_token_ce_plus_twice_the_alignment_mse():
    t = tiny_topo()
    imgs, tokens = torch.randn(2, 3, 16, 16), torch.randint(0, 6, (2, 16))
    torch.manual_seed(4)
    out = t(imgs, tokens)
    torch.manual_seed(4)
    mask = BlockMask(4, 4, 8, min_num_patches=2, exact=True)(tokens).reshape(2, 16)
    z = t.nets["encoder"](imgs, mask.float())
    o = t.nets["regressor_decoder"](z, mask.float())
    target = t.nets["alignment"](imgs, (~mask).float())[:, 1:]
    ce = F.cross_entropy(o["logits"].reshape(-1, 6), tokens[mask])   # CAE: labels = ids[bool_masked_pos]
    mse = F.mse_loss(o["latent_pred"], target)
    torch.testing.assert_close(out.loss, ce + 2 * mse)
    torch.testing.assert_close(out.logs["loss_align"], mse)


def test_alignment_twin_holds_the_encoders_weights_and_gets_no_gradient():
    t = tiny_topo()
    enc, align = t.nets["encoder"], t.nets["alignment"]
    assert not any(p.requires_grad for p in align.parameters())
    assert not {id(p) for p in align.parameters()} & {id(p) for p in t.parameters(phase="train")}
    opt = torch.optim.SGD(t.parameters(phase="train"), lr=0.1)
    out = t(torch.randn(2, 3, 16, 16), torch.randint(0, 6, (2, 16)))
    out.loss.backward()
    assert all(p.grad is None for p in align.parameters())
    opt.step()
    t.after_step()
    for (k, a), b in zip(align.state_dict().items(), enc.state_dict().values()):
        assert torch.equal(a, b), k   # momentum 0: the twin is the encoder after every step


def test_short_training_run_lowers_the_loss():
    """Images of one colour each, every patch's token the colour's bucket: the visible patches
    tell the masked ones' tokens."""
    t = tiny_topo(seed=0)
    imgs, tokens = colour_images_and_tokens()
    opt = torch.optim.Adam(t.parameters(phase="train"), lr=1e-2)
    torch.manual_seed(0)
    total, main = [], []
    for _ in range(12):
        out = step(t, opt, imgs, tokens)
        total.append(out.loss.item())
        main.append(out.logs["loss_main"].item())
    assert sum(total[-3:]) / 3 < 0.6 * sum(total[:3]) / 3, total
    assert sum(main[-3:]) / 3 < 0.85 * sum(main[:3]) / 3, main   # the token prediction itself improves


def test_pretraining_steps_equal_caes_engine_for_pretraining():
    """Atten4Vis/CAE tools/run_pretraining.py + furnace/engine_for_pretraining.py train_one_epoch
    (and furnace/optim_factory.py, furnace/utils.py cosine_scheduler: BEiT's, ported in
    tests/test_beit.py): per-iteration lr / weight decay on the groups of get_parameter_groups
    (ContextAutoencoderViT has no no_weight_decay list; the frozen sincos tables and the alignment
    encoder are left out), AdamW, loss = CE(decoder logits, masked tokens) + 2 · MSE(latent_predict,
    alignment encoder on the complement), clip_grad_norm_ over every parameter; the alignment encoder
    takes the encoder's weights after each forward (alignment_parameter_update shares their data).
    Five steps over three epochs of two; the masks drawn by furnace/masking_generator.py (ported in
    tests/test_beit.py, the same draws)."""
    from recipe_checks import close, close_all, recipe_step, updated_by
    from test_beit import RefMaskingGenerator, unilm_cosine_scheduler, unilm_parameter_groups
    ipe, epochs, base_lr, wd, clip = 2, 3, 1e-3, 0.05, 0.1
    src = (f"from ssl.cae import CAEPretrain\nvariant t = CAEPretrain({TINY}, epochs={epochs}, steps_per_epoch={ipe}, "
           f"base_lr={base_lr}, min_lr=1e-5, warmup_epochs=1, weight_decay={wd}, clip_grad={clip})\n")
    t = archdsl.load_spec(source=src, seed=0).double()
    optimizers, schedule = t.configure_optimizers()
    model = nn.ModuleDict({"encoder": Encoder(16, 4, 32, 2, 2), "alignment": Encoder(16, 4, 32, 2, 2),
                           "regressor_decoder": RegressorDecoder(16, 32, 2, 2, 1, 6)}).double()
    for net in ("encoder", "regressor_decoder"):
        model[net].load_state_dict(_ours_to_ref(t.nets[net].state_dict()))
    for p_enc, p_align in zip(model["encoder"].parameters(), model["alignment"].parameters()):  # _init_alignment_encoder
        p_align.data.copy_(p_enc.data)
        p_align.requires_grad = False
    optimizer = torch.optim.AdamW(unilm_parameter_groups(model, wd, {}), lr=base_lr, weight_decay=0., eps=1e-8)
    assert len(updated_by(optimizers["train"])) == sum(p.requires_grad for p in model.parameters())
    lr_schedule = unilm_cosine_scheduler(base_lr, 1e-5, epochs, ipe, warmup_epochs=1)
    g = torch.Generator().manual_seed(0)
    for it in range(5):
        imgs = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
        tokens = torch.randint(0, 6, (2, 16), generator=g)
        torch.manual_seed(100 + it)
        loss, grads = recipe_step(t, optimizers, schedule, imgs, tokens)
        values = {n: grp for grp in optimizers["train"].param_groups for n in grp["names"]}
        assert values["regressor_decoder.mask_token"]["lr"] == pytest.approx(lr_schedule[it], rel=1e-12, abs=1e-15)
        assert values["encoder.cls_token"]["weight_decay"] == wd and values["encoder.norm.bias"]["weight_decay"] == 0

        for group in optimizer.param_groups:
            group["lr"] = lr_schedule[it] * group["lr_scale"]
        torch.manual_seed(100 + it)
        bool_masked_pos = RefMaskingGenerator((4, 4), 8, min_num_patches=2, exact=True).batch(2)
        x_unmasked = model["encoder"](imgs, bool_masked_pos)
        with torch.no_grad():
            latent_target = model["alignment"](imgs, ~bool_masked_pos)[:, 1:, :]
            for p_enc, p_align in zip(model["encoder"].parameters(), model["alignment"].parameters()):
                p_align.data = p_enc.data   # alignment_parameter_update: a complete copy
        latent_predict, logits = model["regressor_decoder"](x_unmasked, bool_masked_pos)
        loss_main = nn.CrossEntropyLoss()(input=logits.reshape(-1, 6), target=tokens[bool_masked_pos])
        ref_loss = loss_main + 2 * F.mse_loss(latent_predict, latent_target.detach(), reduction="mean")
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        assert torch.nn.utils.clip_grad_norm_(model.parameters(), clip) > clip   # the clip is active
        optimizer.step()
        close(loss, ref_loss, f"step {it} loss")
        close_all(_ours_to_ref(grads), ref_grads, f"step {it} grad")
        for net in ("encoder", "regressor_decoder", "alignment"):
            close_all(_ours_to_ref(t.nets[net].state_dict()), model[net].state_dict(), f"step {it} {net}")
