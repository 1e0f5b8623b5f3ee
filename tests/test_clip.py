"""CLIP (Radford et al., ICML 2021): stdlib/nets/clip.arch and stdlib/ssl/clip.arch against a hand-written transcription of
OpenAI's clip/model.py (same keys, checkpoints load strictly, same outputs), the eot_pool op,
topology-level parameters (`param logit_scale` trained by the phase that lists it), and the
traps of shared/topology-traps.md: logit_scale clamped at log(100), loss symmetric."""
from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from archdsl import ArchError
from topology_checks import loss_curve

TINY = dict(embed_dim=16, image_resolution=16, vision_layers=2, vision_width=64, vision_patch_size=8,
            context_length=7, vocab_size=50, transformer_width=32, transformer_heads=4,
            transformer_layers=2)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net(seed=0):
    src = "from nets.clip import CLIP\nvariant t = CLIP(" + ", ".join(f"{k}={v}" for k, v in TINY.items()) + ")\n"
    return archdsl.load_spec(source=src, seed=seed)


def tiny_topo(seed=0, temperature=0.07):
    args = ", ".join(f"{k}={v}" for k, v in TINY.items())
    src = (f"from nets.clip import CLIP\nfrom ssl.clip import CLIPTrain\nvariant t = CLIPTrain(model=CLIP({args}), "
           f"temperature={temperature}, img=16, context=7)\n")
    return archdsl.load_spec(source=src, seed=seed)


# ---- a transcription of openai/CLIP clip/model.py (ViT image tower) --------------------------

class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d_model, n_head, attn_mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d_model, d_model * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(d_model * 4, d_model))]))
        self.ln_2 = nn.LayerNorm(d_model)
        self.attn_mask = attn_mask

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=self.attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, attn_mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisionTransformer(nn.Module):
    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x).permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class RefCLIP(nn.Module):
    def __init__(self, embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
                 context_length, vocab_size, transformer_width, transformer_heads, transformer_layers):
        super().__init__()
        self.context_length = context_length
        self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                        vision_width // 64, embed_dim)
        mask = torch.empty(context_length, context_length).fill_(float("-inf")).triu_(1)
        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads, mask)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = nn.LayerNorm(transformer_width)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image, text):
        return self.visual(image), self.encode_text(text)


def _texts(b, length=7, vocab=50, seed=0):
    """Token ids with one end-of-text token (the largest id) per row, then zero padding."""
    g = torch.Generator().manual_seed(seed)
    text = torch.zeros(b, length, dtype=torch.long)
    for i in range(b):
        n = int(torch.randint(1, length - 1, (), generator=g))
        text[i, 0] = vocab - 2                                  # start of text
        text[i, 1:n] = torch.randint(1, vocab - 2, (n - 1,), generator=g)
        text[i, n] = vocab - 1                                  # end of text
    return text


# ---- the network -----------------------------------------------------------------------------

def test_openai_vit_b16_holds_149_6M_parameters():
    with torch.device("meta"):
        ref = RefCLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
    total = sum(p.numel() for p in ref.parameters())
    assert total == 149_620_737                      # open_clip / OpenAI ViT-B-16, logit_scale included
    assert archdsl.check_spec("clip_vit_b16").totals.params == total - 1  # logit_scale: the topology's
    ir = archdsl.load_topology("clip_train")
    assert ir.states["logit_scale"].shape == () and ir.states["logit_scale"].trainable


def test_keys_are_openai_clips_and_outputs_agree():
    net = tiny_net().eval()
    ref = RefCLIP(**TINY).eval()
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items() if k != "logit_scale"}
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == want
    ref.load_state_dict({**net.state_dict(), "logit_scale": ref.logit_scale.detach()}, strict=True)
    image, text = torch.randn(3, 3, 16, 16), _texts(3)
    out = net(image, text)
    img_ref, txt_ref = ref(image, text)
    torch.testing.assert_close(out["image_features"], img_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["text_features"], txt_ref, atol=1e-5, rtol=1e-4)


def test_text_tower_is_causal():
    """A token after the end-of-text token cannot change the text features."""
    net = tiny_net().eval()
    text = _texts(2)
    eot = text.argmax(dim=-1)
    later = text.clone()
    for i in range(2):
        if eot[i] + 1 < text.shape[1]:
            later[i, eot[i] + 1:] = 5
    image = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(net(image, later)["text_features"], net(image, text)["text_features"])


def test_eot_pool_takes_the_largest_ids_position():
    src = "network T() {\n in x: [B, L = 5, D = 3]\n in ids: [B, L] as int64\n out eot_pool(x, ids)\n}\nvariant t = T()\n"
    net = archdsl.load_spec(source=src)
    x = torch.randn(4, 5, 3)
    ids = torch.tensor([[1, 9, 2, 0, 0], [7, 3, 4, 8, 0], [0, 0, 0, 0, 6], [5, 2, 5, 1, 1]])
    want = torch.stack([x[0, 1], x[1, 3], x[2, 4], x[3, 0]])  # ties: the first position, as argmax
    torch.testing.assert_close(net(x, ids), want)


def test_text_initialisation_follows_initialize_parameters():
    torch.manual_seed(0)
    sd = tiny_net().state_dict()
    w, layers = 32, 2
    attn_std, proj_std, fc_std = w ** -0.5, w ** -0.5 * (2 * layers) ** -0.5, (2 * w) ** -0.5
    assert sd["token_embedding.weight"].std().item() == pytest.approx(0.02, rel=0.1)
    assert sd["positional_embedding"].std().item() == pytest.approx(0.01, rel=0.15)
    for key, std in [("in_proj_weight", attn_std), ("out_proj.weight", proj_std)]:
        assert sd[f"transformer.resblocks.0.attn.{key}"].std().item() == pytest.approx(std, rel=0.1), key
    assert sd["transformer.resblocks.1.mlp.c_fc.weight"].std().item() == pytest.approx(fc_std, rel=0.1)
    assert sd["transformer.resblocks.1.mlp.c_proj.weight"].std().item() == pytest.approx(proj_std, rel=0.1)
    assert torch.all(sd["transformer.resblocks.0.attn.in_proj_bias"] == 0)
    assert torch.all(sd["visual.transformer.resblocks.0.attn.out_proj.bias"] == 0)
    assert sd["visual.class_embedding"].std().item() == pytest.approx(64 ** -0.5, rel=0.3)


def test_tiny_clip_compiles_without_graph_breaks():
    net = tiny_net()
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    image = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = compiled(image, _texts(2))
    (out["image_features"].sum() + out["text_features"].sum()).backward()
    assert image.grad is not None


# ---- topology-level parameters and the CLIP topology -----------------------------------------

def test_logit_scale_is_a_topology_parameter_trained_by_its_phase():
    t = tiny_topo()
    scale = t.state.logit_scale
    assert isinstance(scale, nn.Parameter) and scale.requires_grad
    assert scale.item() == pytest.approx(math.log(1 / 0.07))
    trained = list(t.parameters(phase="train"))
    assert any(p is scale for p in trained)
    assert len(trained) == len(list(t.nets["clip"].parameters())) + 1
    assert "state.logit_scale" in dict(t.named_parameters())
    out = t(torch.randn(4, 3, 16, 16), _texts(4))
    out.loss.backward()
    assert scale.grad is not None and scale.grad.abs() > 0
    torch.testing.assert_close(out.logs["logit_scale"], scale.detach())


def test_topology_loss_is_the_symmetric_cross_entropy():
    t = tiny_topo()
    image, text = torch.randn(4, 3, 16, 16), _texts(4)
    loss = t(image, text).loss
    f = t.nets["clip"](image, text)
    i, tx = F.normalize(f["image_features"], dim=-1), F.normalize(f["text_features"], dim=-1)
    logits = math.exp(math.log(1 / 0.07)) * i @ tx.t()
    labels = torch.arange(4)
    want = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    torch.testing.assert_close(loss, want)
    # symmetric: swapping the towers' roles gives the same loss
    from archdsl.nn.loss import clip_loss
    torch.testing.assert_close(clip_loss(f["text_features"], f["image_features"], t.state.logit_scale), loss)


def test_stored_logit_scale_is_clamped_after_the_step_not_in_the_forward():
    """open_clip training/train.py clamps the parameter to [0, ln 100] after optimizer.step(); the
    forward uses exp(logit_scale) as it is, so its gradient is never cut."""
    t = tiny_topo()
    image, text = torch.randn(4, 3, 16, 16), _texts(4)
    with torch.no_grad():
        t.state.logit_scale.fill_(7.0)
    out = t(image, text)
    out.loss.backward()
    assert t.state.logit_scale.grad.item() != 0.0          # no clamp in the forward
    t.after_step()
    assert t.state.logit_scale.item() == pytest.approx(math.log(100.0))
    with torch.no_grad():
        t.state.logit_scale.fill_(-1.0)
    t(image, text)
    t.after_step()
    assert t.state.logit_scale.item() == 0.0


def test_clamp_in_forward_is_an_option():
    args = ", ".join(f"{k}={v}" for k, v in TINY.items())
    t = archdsl.load_spec(source=f"from nets.clip import CLIP\nfrom ssl.clip import CLIPTrain\nvariant t = CLIPTrain("
                                 f"model=CLIP({args}), img=16, context=7, clamp_in_forward=true)\n", seed=0)
    image, text = torch.randn(4, 3, 16, 16), _texts(4)
    with torch.no_grad():
        t.state.logit_scale.fill_(math.log(100.0))
    at_max = t(image, text).loss.detach()
    with torch.no_grad():
        t.state.logit_scale.fill_(7.0)
    out = t(image, text)
    torch.testing.assert_close(out.loss.detach(), at_max)
    out.loss.backward()
    assert t.state.logit_scale.grad.item() == 0.0
    t.after_step()
    assert t.state.logit_scale.item() == 7.0                # nothing clamps the stored value


def test_a_phase_that_does_not_list_the_parameter_leaves_it_alone():
    src = """
network Tiny() {
  in x: [B, 4]
  out x -> fc: linear(4)
}
topology T() {
  in a: [B = 4, 4]
  in b: [B, 4]
  net f = Tiny()
  param s: [] = 1.5
  phase p1(update=[f]) {
    loss = clip_loss((a -> f), b, s)
  }
  phase p2(update=[f, s]) {
    loss = clip_loss((a -> f), b, s)
  }
}
variant t = T()
"""
    t = archdsl.load_spec(source=src)
    assert not any(p is t.state.s for p in t.parameters(phase="p1"))
    assert any(p is t.state.s for p in t.parameters(phase="p2"))
    t(torch.randn(4, 4), torch.randn(4, 4), phase="p1").loss.backward()
    assert t.state.s.grad is None and t.state.s.requires_grad


@pytest.mark.parametrize("decl, message", [
    ("param s: [] = \"x\"", "needs a number"),
    ("param s: [0] = 1.0", "must be between 1 and"),
    ("state s: [] = 0.0\n  param s: [] = 1.0", "declared twice"),
])
def test_bad_topology_parameters_are_arch_errors(decl, message):
    src = f"""
network Tiny() {{
  in x: [B, 4]
  out x -> fc: linear(4)
}}
topology T() {{
  in a: [B = 4, 4]
  net f = Tiny()
  {decl}
  phase p(update=[f]) {{
    loss = mean((a -> f), dims=[0, 1])
  }}
}}
variant t = T()
"""
    with pytest.raises(ArchError, match=message):
        archdsl.load_spec(source=src)


def test_short_training_run_lowers_the_loss():
    t = tiny_topo(seed=0)
    g = torch.Generator().manual_seed(0)
    images, texts = torch.randn(8, 3, 16, 16, generator=g), _texts(8, seed=1)
    opt = torch.optim.Adam(t.parameters(phase="train"), lr=1e-3)
    losses = loss_curve(t, opt, images, texts, steps=15)
    assert losses[-1] < 0.5 * losses[0], losses


# ---- the recipe, step for step against open_clip's training code -------------------------------
# mlfoundations/open_clip src/training/main.py (AdamW groups: `exclude = p.ndim < 2 or "bn" in n or
# "ln" in n or "bias" in n or "logit_scale" in n` get weight decay 0), src/training/scheduler.py
# (cosine_lr: base_lr · (step + 1) / warmup, then 0.5 · (1 + cos(π e / es)) · base_lr),
# src/training/train.py (train_one_epoch: scheduler(step), forward, backward, step, then
# logit_scale.clamp_(0, ln 100)), src/open_clip/loss.py (ClipLoss, one process).

def open_clip_cosine_lr(base_lr, warmup_length, steps, step):
    if step < warmup_length:
        return base_lr * (step + 1) / warmup_length
    e, es = step - warmup_length, steps - warmup_length
    return 0.5 * (1 + np.cos(np.pi * e / es)) * base_lr


def open_clip_loss(image_features, text_features, logit_scale):
    logits_per_image = logit_scale * image_features @ text_features.T
    logits_per_text = logit_scale * text_features @ image_features.T
    labels = torch.arange(logits_per_image.shape[0])
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def test_recipe_steps_equal_open_clip_training():
    """Five steps from a logit_scale of 4.7 (above ln 100): the first forward uses exp(4.7), then
    the stored value is clamped; warm-up, cosine, AdamW betas/eps and decay groups as open_clip."""
    from recipe_checks import close, close_all, recipe_step
    args = ", ".join(f"{k}={v}" for k, v in TINY.items())
    recipe = "base_lr=1e-3, warmup=2, epochs=2, steps_per_epoch=3"
    t = archdsl.load_spec(source=f"from nets.clip import CLIP\nfrom ssl.clip import CLIPTrain\nvariant t = CLIPTrain("
                                 f"model=CLIP({args}), img=16, context=7, temperature={math.exp(-4.7)}, {recipe})\n",
                          seed=0).double()
    optimizers, schedule = t.configure_optimizers()
    model = RefCLIP(**TINY).double()
    model.load_state_dict({**t.nets["clip"].state_dict(), "logit_scale": t.state.logit_scale.detach().clone()})
    assert model.logit_scale.item() == pytest.approx(4.7)
    named = list(model.named_parameters())
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    gain_or_bias = [p for n, p in named if exclude(n, p) and p.requires_grad]
    rest = [p for n, p in named if not exclude(n, p) and p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": gain_or_bias, "weight_decay": 0.}, {"params": rest, "weight_decay": 0.2}],
                                  lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    ours_no_decay = {n.removeprefix("clip.") for g in optimizers["train"].param_groups if not g["decay"] for n in g["names"]}
    assert ours_no_decay == {n for n, p in named if exclude(n, p)}

    def ours():
        return {**t.nets["clip"].state_dict(), "logit_scale": t.state.logit_scale}

    for step in range(5):
        image = torch.randn(4, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
        text = _texts(4, seed=step)
        lr = open_clip_cosine_lr(1e-3, 2, 6, step)
        assert schedule.values()["train.lr"] == pytest.approx(lr, rel=1e-12)
        loss, grads = recipe_step(t, optimizers, schedule, image, text)

        for group in optimizer.param_groups:
            group["lr"] = lr
        img_f, txt_f = model(image, text)
        ref_loss = open_clip_loss(F.normalize(img_f, dim=-1), F.normalize(txt_f, dim=-1), model.logit_scale.exp())
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {n: p.grad.clone() for n, p in named}
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

        close(loss, ref_loss, f"step {step} loss")
        close_all({n.removeprefix("clip."): g for n, g in grads.items()}, ref_grads, f"step {step} grad")
        close_all(ours(), model.state_dict(), f"step {step} weights")
        if step == 0:  # the first step started above ln 100 and AdamW moves it by about lr
            assert t.state.logit_scale.item() == pytest.approx(math.log(100), rel=1e-12)
