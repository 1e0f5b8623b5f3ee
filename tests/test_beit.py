"""BEiT (Bao et al., ICLR 2022): the network's init rules (the reference test checks keys, shapes,
costs and outputs against timm), the masked-image-modelling network and topology of
stdlib/ssl/beit.arch: masked patches are replaced by the mask token, block-wise masking, and the
loss is the cross-entropy of the visual tokens at the masked positions only."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archdsl
from topology_checks import colour_images_and_tokens, loss_curve
from archdsl.nn.tokens import BlockMask
from archdsl.nn.mim import masked_token_ce

FIXTURE = Path(__file__).parent / "fixtures" / "reference" / "timm__beit_base_patch16_224.json"
MIM = "patch=4, dim=32, depth=2, num_heads=2, vocab_size=6, img_size=16"


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_mim(seed=0):
    return archdsl.load_spec(source=f"from nets.beit import BeitMIM\nvariant t = BeitMIM({MIM})\n", seed=seed)


def tiny_topo(seed=0, n_mask=6, min_patches=2):
    src = (f"from nets.beit import BeitMIM\nfrom ssl.beit import BEiTPretrain\nvariant t = BEiTPretrain(model=BeitMIM({MIM}), "
           f"patch=4, num_masking_patches={n_mask}, min_num_patches={min_patches}, img=16)\n")
    return archdsl.load_spec(source=src, seed=seed)


def test_mim_parameter_count_from_timms_beit():
    """timm's beit_base_patch16_224 less its classifier (head, fc_norm), plus the final norm, the
    mask token and the 768 → 8192 lm_head."""
    sd = {k: s for k, s, _ in json.loads(FIXTURE.read_text())["state_dict"]}
    numel = {k: torch.Size(s).numel() for k, s in sd.items()}
    backbone = sum(v for k, v in numel.items() if not k.startswith(("head.", "fc_norm.")))
    want = backbone + 2 * 768 + 768 + (768 * 8192 + 8192)
    assert archdsl.check_spec("beit_base_patch16_224_8k_vocab").totals.params == want == 92_062_400


def test_init_rescales_output_projections_by_depth():
    torch.manual_seed(0)
    net = archdsl.load_spec(source="from nets.beit import Beit\nvariant t = Beit(16, 64, 4, 2, img_size=32, "
                                   "num_classes=10)\n")
    sd = net.state_dict()
    for j in range(4):
        for key in ("attn.proj.weight", "mlp.fc2.weight"):
            w = sd[f"blocks.{j}.{key}"]
            assert w.std().item() == pytest.approx(0.02 / (2 * (j + 1)) ** 0.5, rel=0.15), (j, key)
    assert sd["blocks.0.attn.qkv.weight"].std().item() == pytest.approx(0.02, rel=0.1)
    assert sd["head.weight"].std().item() == pytest.approx(2e-5, rel=0.3)
    assert torch.all(sd["blocks.1.gamma_1"] == 0.1) and torch.all(sd["blocks.1.attn.q_bias"] == 0)


def test_masked_patches_are_replaced_by_the_mask_token():
    net = tiny_mim().eval()
    x = torch.randn(2, 3, 16, 16)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, [0, 5, 6]] = True
    out = net(x, mask)
    assert out.shape == (2, 16, 6)
    y = x.clone()
    y[:, :, 4:8, 4:8] = 100.0                     # patch 5 (row 1, col 1): masked → no effect
    torch.testing.assert_close(net(y, mask), out)
    y[:, :, 0:4, 4:8] = 100.0                     # patch 1: visible → changes the predictions
    assert not torch.allclose(net(y, mask), out)


def test_masked_token_ce_is_the_cross_entropy_at_masked_positions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 10, 7, generator=g)
    target = torch.randint(0, 7, (3, 10), generator=g)
    mask = torch.rand(3, 10, generator=g) < 0.4
    want = F.cross_entropy(logits[mask], target[mask])      # BEiT: lm_head(x[mask]) vs ids[mask]
    torch.testing.assert_close(masked_token_ce(logits, target, mask), want)
    changed = logits.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), 7)      # visible positions do not count
    torch.testing.assert_close(masked_token_ce(changed, target, mask), want)
    assert masked_token_ce(logits, target, torch.zeros_like(mask)).item() == 0.0


def test_block_masking_at_beit_base_settings():
    """75 of 14x14 (~40%), blocks of at least 16 patches: never more than 75, usually exactly 75,
    and masks differ per sample."""
    torch.manual_seed(0)
    gen = BlockMask(14, 14, 75, min_num_patches=16)
    masks = gen(torch.zeros(40, 196))
    counts = masks.flatten(1).sum(dim=1)
    assert masks.shape == (40, 14, 14) and masks.dtype == torch.bool
    assert counts.max() <= 75 and counts.float().mean() > 70
    assert (counts == 75).float().mean() > 0.5
    assert len({m.flatten().nonzero().flatten().tolist().__str__() for m in masks}) == 40


def test_topology_loss_equals_ce_under_the_same_mask():
    t = tiny_topo()
    imgs = torch.randn(2, 3, 16, 16)
    tokens = torch.randint(0, 6, (2, 16))
    torch.manual_seed(5)
    out = t(imgs, tokens)
    torch.manual_seed(5)
    mask = BlockMask(4, 4, 6, min_num_patches=2)(tokens).reshape(2, 16)
    logits = t.nets["beit"](imgs, mask)
    torch.testing.assert_close(out.loss, F.cross_entropy(logits[mask], tokens[mask]))


def test_short_training_run_lowers_the_loss():
    """Images of one colour each, every patch's token the colour's bucket: visible patches tell the
    masked ones' tokens."""
    t = tiny_topo(seed=0)
    imgs, tokens = colour_images_and_tokens()
    opt = torch.optim.Adam(t.parameters(phase="train"), lr=1e-2)
    torch.manual_seed(0)
    losses = loss_curve(t, opt, imgs, tokens, steps=12)
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses


def test_tiny_mim_network_compiles_without_graph_breaks():
    net = tiny_mim()
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :5] = True
    compiled(x, mask).sum().backward()
    assert x.grad is not None
