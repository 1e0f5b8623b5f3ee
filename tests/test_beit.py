"""BEiT (Bao et al., ICLR 2022): the network's init rules (the reference test checks keys, shapes,
costs and outputs against timm), the masked-image-modelling network and topology of
stdlib/ssl/beit.arch: masked patches are replaced by the mask token, block-wise masking, and the
loss is the cross-entropy of the visual tokens at the masked positions only."""
from __future__ import annotations

import json
import math
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


# ---- step for step against unilm's pre-training loop (tiny network, float64)

class TorchRandom:
    """Python's `random.uniform` / `random.randint` drawing from torch's global generator (the spec's
    masking draws there, so that a seed reproduces a batch's masks)."""

    @staticmethod
    def uniform(a, b):
        return a + (b - a) * torch.rand(()).item()

    @staticmethod
    def randint(a, b):
        return int(torch.randint(a, b + 1, ()).item())


class RefMaskingGenerator:
    """unilm beit/masking_generator.py MaskingGenerator (exact=False) and Atten4Vis/CAE
    furnace/masking_generator.py's (exact=True: `while mask_count != num_masking_patches`, no break
    on a failed attempt), transcribed with `random` drawing from torch (TorchRandom)."""

    def __init__(self, input_size, num_masking_patches, min_num_patches=4, max_num_patches=None, min_aspect=0.3,
                 max_aspect=None, exact=False):
        self.height, self.width = input_size
        self.num_masking_patches, self.min_num_patches, self.exact = num_masking_patches, min_num_patches, exact
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))

    def _mask(self, mask, max_mask_patches):
        random, delta = TorchRandom, 0
        for _ in range(10):
            target_area = random.uniform(self.min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(random.uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < self.width and h < self.height:
                top = random.randint(0, self.height - h)
                left = random.randint(0, self.width - w)
                num_masked = mask[top: top + h, left: left + w].sum()
                if 0 < h * w - num_masked <= max_mask_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i, j] == 0:
                                mask[i, j] = 1
                                delta += 1
                if delta > 0:
                    break
        return delta

    def __call__(self):
        import numpy as np
        mask = np.zeros(shape=(self.height, self.width), dtype=np.int8)
        mask_count = 0
        while (mask_count != self.num_masking_patches) if self.exact else (mask_count < self.num_masking_patches):
            max_mask_patches = min(self.num_masking_patches - mask_count, self.max_num_patches)
            delta = self._mask(mask, max_mask_patches)
            if delta == 0 and not self.exact:
                break
            mask_count += delta
        return mask

    def batch(self, b):
        """The masks of a batch, drawn image by image as the dataset's __getitem__ does."""
        return torch.stack([torch.from_numpy(self()).flatten().bool() for _ in range(b)])


def test_spec_block_masking_draws_the_official_generators_masks():
    """Under one seed the topology's block masking (BEiT's and CAE's exact form) draws what the
    official generators draw, mask for mask, at the base settings (75 / 98 of 14 x 14)."""
    for n, exact in ((75, "false"), (98, "true")):
        net = archdsl.load_spec(source=f"from ssl.beit import BlockMasking\nvariant m = BlockMasking({n}, 16, [14, 14], "
                                       f"exact={exact})\n", input_shape=[(6, 196)])
        torch.manual_seed(3)
        ours = net(torch.zeros(6, 196, dtype=torch.long))
        torch.manual_seed(3)
        ref = RefMaskingGenerator((14, 14), n, min_num_patches=16, exact=exact == "true").batch(6)
        assert torch.equal(ours, ref)
        assert (ref.sum(1) == n).all() if exact == "true" else (ref.sum(1) <= n).all()


def unilm_cosine_scheduler(base_value, final_value, epochs, niter_per_ep, warmup_epochs=0, start_warmup_value=0,
                           warmup_steps=-1):
    """microsoft/unilm beit/utils.py cosine_scheduler."""
    import numpy as np
    warmup_schedule, warmup_iters = np.array([]), warmup_epochs * niter_per_ep
    if warmup_steps > 0:
        warmup_iters = warmup_steps
    if warmup_epochs > 0:
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
    iters = np.arange(epochs * niter_per_ep - warmup_iters)
    schedule = np.array([final_value + 0.5 * (base_value - final_value) * (1 + math.cos(math.pi * i / len(iters)))
                         for i in iters])
    return np.concatenate((warmup_schedule, schedule))


def unilm_parameter_groups(model, weight_decay, skip_list):
    """beit/optim_factory.py get_parameter_groups (no layer decay: lr_scale 1)."""
    names, groups = [], {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = len(param.shape) == 1 or name.endswith(".bias") or name in skip_list
        key = "no_decay" if no_decay else "decay"
        if key not in groups:
            groups[key] = {"weight_decay": 0. if no_decay else weight_decay, "params": [], "lr_scale": 1.}
            names.append(key)
        groups[key]["params"].append(param)
    return [groups[k] for k in names]


@pytest.mark.parametrize("shared", [True, False], ids=["shared_table", "table_per_block"])
def test_pretraining_steps_equal_unilm_engine_for_pretraining(shared):
    """run_beit_pretraining.py + engine_for_pretraining.py train_one_epoch: per-iteration lr (warm-up
    from 0, cosine) and weight decay set on the groups of optim_factory.get_parameter_groups
    (skip list: model.no_weight_decay() = pos_embed, cls_token), AdamW(betas 0.9, 0.98), the masked
    patches' logits → cross-entropy against their tokens, clip_grad_norm_ over every parameter.
    Five steps over three epochs of two; the masks drawn by masking_generator.py (the same draws). shared:
    run_beit_pretraining.py's default --rel_pos_bias (one relative position table for all blocks),
    else a table per block (the spec's default)."""
    from recipe_checks import close, close_all, recipe_step, updated_by
    from test_releases import RefBeitMIM
    ipe, epochs, base_lr, wd, clip = 2, 3, 1e-3, 0.05, 0.1
    mim = f"{MIM}, shared_rel_pos_bias={str(shared).lower()}"
    src = (f"from nets.beit import BeitMIM\nfrom ssl.beit import BEiTPretrain\nvariant t = BEiTPretrain(model=BeitMIM({mim}), "
           f"patch=4, num_masking_patches=6, min_num_patches=2, img=16, epochs={epochs}, steps_per_epoch={ipe}, "
           f"base_lr={base_lr}, min_lr=1e-5, warmup_epochs=1, weight_decay={wd}, clip_grad={clip})\n")
    t = archdsl.load_spec(source=src, seed=0).double()
    optimizers, schedule = t.configure_optimizers()
    model = RefBeitMIM(shared=shared).double()
    index = {k: v for k, v in model.state_dict().items() if k.endswith("relative_position_index")}
    model.load_state_dict({**t.nets["beit"].state_dict(), **index})
    optimizer = torch.optim.AdamW(unilm_parameter_groups(model, wd, {"pos_embed", "cls_token"}), lr=base_lr,
                                  weight_decay=0., eps=1e-8, betas=(0.9, 0.98))
    assert len(updated_by(optimizers["train"])) == len(list(model.parameters()))
    lr_schedule = unilm_cosine_scheduler(base_lr, 1e-5, epochs, ipe, warmup_epochs=1)
    wd_schedule = unilm_cosine_scheduler(wd, wd, epochs, ipe)
    g = torch.Generator().manual_seed(0)
    for it in range(5):
        imgs = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
        tokens = torch.randint(0, 6, (2, 16), generator=g)
        ours_lrs = {n: grp for grp in optimizers["train"].param_groups for n in grp["names"]}
        torch.manual_seed(100 + it)
        loss, grads = recipe_step(t, optimizers, schedule, imgs, tokens)
        assert ours_lrs["beit.mask_token"]["lr"] == pytest.approx(lr_schedule[it], rel=1e-12, abs=1e-15)
        assert ours_lrs["beit.mask_token"]["weight_decay"] == pytest.approx(wd_schedule[it], rel=1e-12)
        assert ours_lrs["beit.cls_token"]["weight_decay"] == 0 and ours_lrs["beit.norm.weight"]["weight_decay"] == 0

        for group in optimizer.param_groups:
            group["lr"] = lr_schedule[it] * group["lr_scale"]
            if group["weight_decay"] > 0:
                group["weight_decay"] = wd_schedule[it]
        torch.manual_seed(100 + it)
        bool_masked_pos = RefMaskingGenerator((4, 4), 6, min_num_patches=2).batch(2)
        outputs = model(imgs, bool_masked_pos)
        ref_loss = torch.nn.CrossEntropyLoss()(input=outputs, target=tokens[bool_masked_pos])
        optimizer.zero_grad()
        ref_loss.backward()
        ref_grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        assert norm > clip  # the clip is active
        optimizer.step()
        close(loss, ref_loss, f"step {it} loss")
        close_all({k.split(".", 1)[1]: v for k, v in grads.items()}, ref_grads, f"step {it} grad")
        close_all(t.nets["beit"].state_dict(), {k: v for k, v in model.state_dict().items() if k not in index},
                  f"step {it} weights")
