"""Token ops and blocks beyond the property harness: timm reference numbers for PatchEmbed and
PatchMerging, the ViT / Swin key layouts, MAE's sincos table, random masking and its inverse,
BEiT's block-wise masks."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo

import archdsl
from archdsl.nn.tokens import BlockMask, RandomMasking, sincos_2d

FIXTURES = Path(__file__).parent / "fixtures"
TIMM = json.loads((FIXTURES / "timm_patch_ops.json").read_text())


def _fill():
    import importlib.util
    spec = importlib.util.spec_from_file_location("fill", FIXTURES / "fill.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


FILL = _fill()


def _case(name: str) -> dict:
    return next(c for c in TIMM["cases"] if c["name"] == name)


def _keys(model) -> list:
    return [[k, list(v.shape)] for k, v in model.state_dict().items()]


# ---------------------------------------------------------------------------------------------
# PatchEmbed and PatchMerging against timm

PATCH_EMBED = """
network P(norm: block? = none, flatten: bool = true) {
  in x: [B, 3, H = 16, W = 16]
  out x -> PatchEmbed(8, 4, norm=norm, flatten=flatten)
}
"""


@pytest.mark.parametrize("name, kwargs", [("patch_embed_nlc", {}),
                                          ("patch_embed_nhwc_ln", {"flatten": False, "norm": "ln"})])
def test_patch_embed_matches_timm(name, kwargs):
    case = _case(name)
    src = PATCH_EMBED.replace("norm: block? = none", f"norm: block? = {kwargs.get('norm', 'none')}")
    model = archdsl.load_spec(source=src, flatten=kwargs.get("flatten", True)).eval()
    # the block sits at path `patch_embed`; timm's module is the block itself
    keys = [[k.split(".", 1)[1], s] for k, s in _keys(model)]
    assert keys == case["state_dict"]
    FILL.reference_fill_(_Unprefixed(model, "patch_embed"))
    x = FILL.reference_input(case["input"]["shape"], seed=1)
    with torch.no_grad():
        y = model(x)
    assert list(y.shape) == case["output_shape"]
    torch.testing.assert_close(y.flatten(), torch.tensor(case["output"]), atol=1e-5, rtol=1e-5)


PATCH_MERGING = """
network M() {
  in x: [B, H, W, 4]
  out x -> PatchMerging()
}
"""


@pytest.mark.parametrize("name", ["patch_merging_even", "patch_merging_odd"])
def test_patch_merging_matches_timm(name):
    case = _case(name)
    shape = case["input"]["shape"]
    model = archdsl.load_spec(source=PATCH_MERGING, input_shape=shape).eval()
    keys = [[k.split(".", 1)[1], s] for k, s in _keys(model)]
    assert keys == case["state_dict"]          # norm (LayerNorm 4C) before reduction (no bias)
    FILL.reference_fill_(_Unprefixed(model, "patch_merging"))
    with torch.no_grad():
        y = model(FILL.reference_input(shape, seed=1))
    assert list(y.shape) == case["output_shape"]   # odd sizes are zero-padded, as timm
    torch.testing.assert_close(y.flatten(), torch.tensor(case["output"]), atol=1e-5, rtol=1e-5)


class _Unprefixed(torch.nn.Module):
    """View a model's submodule so that reference_fill_ sees timm's keys (fill depends on keys)."""

    def __init__(self, model, prefix: str):
        super().__init__()
        self.inner = getattr(model, prefix)

    def state_dict(self, *args, **kwargs):
        return self.inner.state_dict(*args, **kwargs)


SWIN_SKELETON = """
block Stage(dim: int, first: bool) {
  in x: [B, H, W, C]
  y = x
  if not first {
    y = y -> downsample: PatchMerging(dim)
  }
  out y
}
network SwinSkeleton(dims: list[int] = [96, 192, 384, 768]) {
  in x: [B, 3, H = 224, W = 224]
  out x -> patch_embed: PatchEmbed(dims[0], 4, norm=ln, flatten=false)
        -> layers: [Stage(dims[i], i == 0) for i in range(4)]
}
"""


def test_swin_patch_embed_and_downsample_keys_match_timm_swin_tiny():
    """timm 1.0's Swin holds PatchMerging at the start of stages 1..3 (`layers.i.downsample`)."""
    model = archdsl.load_spec(source=SWIN_SKELETON)
    assert _keys(model) == TIMM["swin_tiny_subset"]["keys"]
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 7, 7, 768)


VIT_EMBED = """
network ViTEmbed(dim: int = 192, patch: int = 16) {
  in x: [B, 3, H = 224, W = 224]
  param cls_token: [1, 1, dim]
  t = x -> patch_embed: PatchEmbed(dim, patch)
  param pos_embed: [1, t.shape[1] + 1, dim] = 0.02
  out prepend_token(t, cls_token) + pos_embed
}
"""


def test_vit_class_token_and_learned_position_embedding():
    model = archdsl.load_spec(source=VIT_EMBED, seed=0)
    assert _keys(model) == TIMM["vit_tiny_subset"]["keys"]   # cls_token, pos_embed, patch_embed.proj
    FILL.reference_fill_(model)
    x = torch.randn(2, 3, 224, 224)
    sd = model.state_dict()
    t = torch.nn.functional.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"],
                                   stride=16).flatten(2).transpose(1, 2)
    want = torch.cat([sd["cls_token"].expand(2, -1, -1), t], dim=1) + sd["pos_embed"]
    torch.testing.assert_close(model(x), want)


def test_deit_style_two_prepended_tokens():
    src = """network D() { in x: [B, 5, 8]
                       param tokens: [1, 2, 8] = 1.0
                       out prepend_token(x, tokens) }"""
    model = archdsl.load_spec(source=src, input_shape=(3, 5, 8))
    x = torch.randn(3, 5, 8)
    y = model(x)
    assert y.shape == (3, 7, 8) and torch.equal(y[:, 2:], x) and bool((y[:, :2] == 1).all())


# ---------------------------------------------------------------------------------------------
# sincos position embedding (MAE util/pos_embed.py, transcribed with numpy)

def _mae_1d(embed_dim, pos):
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _mae_2d(embed_dim, grid_size, cls_token=False):
    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([_mae_1d(embed_dim // 2, grid[0]), _mae_1d(embed_dim // 2, grid[1])], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)
    return emb


@pytest.mark.parametrize("grid, dim, cls", [(14, 768, True), (14, 512, True), (4, 8, False), (1, 4, True)])
def test_sincos_table_is_maes(grid, dim, cls):
    want = torch.from_numpy(_mae_2d(dim, grid, cls)).float()   # MAE: .float() of the numpy table
    assert torch.equal(sincos_2d(grid, grid, dim, cls), want)


def test_sincos_pos_embed_is_a_frozen_parameter():
    src = """network S() { in x: [B, 3, H = 32, W = 32]
                       t = x -> patch_embed: PatchEmbed(16, 8)
                       out t + (t -> pos_embed: sincos_pos_embed()) }"""
    model = archdsl.load_spec(source=src)
    p = dict(model.named_parameters())["pos_embed.weight"]
    assert not p.requires_grad and p.shape == (1, 16, 16)          # as MAE: in params, not trained
    assert "pos_embed.weight" in model.state_dict()
    assert torch.equal(p[0], sincos_2d(4, 4, 16))
    report = archdsl.check_spec(source=src)
    assert report.totals.params == sum(q.numel() for q in model.parameters())
    rect = archdsl.load_spec(source=src.replace("sincos_pos_embed()", "sincos_pos_embed([2, 8])"),
                             input_shape=(1, 3, 16, 64))
    assert torch.equal(rect.pos_embed.weight[0], sincos_2d(2, 8, 16))


# ---------------------------------------------------------------------------------------------
# MAE random masking and restore

@pytest.mark.parametrize("length, ratio", [(196, 0.75), (16, 0.5), (7, 0.3), (5, 0.0)])
def test_random_masking_counts_and_restores(length, ratio):
    torch.manual_seed(0)
    b, d = 4, 6
    x = torch.randn(b, length, d)
    kept, mask, ids_restore = RandomMasking(ratio)(x)
    keep = int(length * (1 - ratio))
    assert kept.shape == (b, keep, d) and mask.shape == (b, length) and ids_restore.dtype == torch.int64
    assert bool((mask.sum(1) == length - keep).all())                 # exactly L − K removed
    assert torch.equal(ids_restore.sort(1).values, torch.arange(length).expand(b, -1))  # a permutation
    # the kept tokens are exactly the unmasked ones (in shuffled order)
    for i in range(b):
        assert sorted(map(tuple, kept[i].tolist())) == sorted(map(tuple, x[i][mask[i] == 0].tolist()))
    # un-shuffling with a mask token puts every kept token back: x where kept, the token elsewhere
    token = torch.full((1, 1, d), 7.0)
    src = """network R(prefix: int = 0) { in x: [B, K, D]
                                        in ids: [B, L] as int64
                                        param mask_token: [1, 1, D] = 7.0
                                        out restore_tokens(x, mask_token, ids, prefix=prefix) }"""
    restore = archdsl.load_spec(source=src, input_shape=[(b, keep, d), (b, length)])
    want = torch.where(mask.bool().unsqueeze(-1), token, x)
    torch.testing.assert_close(restore(kept, ids_restore), want, rtol=0, atol=0)
    # with a class token in front (MAE's decoder: prefix=1) the prefix stays in place
    cls = torch.randn(b, 1, d)
    restore1 = archdsl.load_spec(source=src, input_shape=[(b, keep + 1, d), (b, length)], prefix=1)
    got = restore1(torch.cat([cls, kept], 1), ids_restore)
    torch.testing.assert_close(got, torch.cat([cls, want], 1), rtol=0, atol=0)


def test_random_masking_is_seeded_and_per_sample():
    x = torch.randn(8, 49, 4)
    torch.manual_seed(1)
    a = RandomMasking(0.75)(x)
    torch.manual_seed(1)
    b = RandomMasking(0.75)(x)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert len({tuple(m.tolist()) for m in a[1]}) > 1                 # different masks per sample


MAE_LIKE = """
network TinyMAE(dim: int = 32, ddim: int = 16, ratio: float = 0.75) {
  in x: [B, 3, H = 32, W = 32]
  param cls_token: [1, 1, dim]
  param mask_token: [1, 1, ddim]
  t = x -> patch_embed: PatchEmbed(dim, 8)
  N = t.shape[1]
  pe = (t -> pos_embed: sincos_pos_embed(cls_token=true)) -> split([1, N], dim=1)
  m = t + pe[1] -> random_masking(ratio)
  y = prepend_token(m[0], cls_token + pe[0]) -> norm: ln -> decoder_embed: linear(ddim)
  y = restore_tokens(y, mask_token, m[2], prefix=1)
  dpe = (y -> split([1, N], dim=1))[1] -> decoder_pos_embed: sincos_pos_embed(cls_token=true)
  out pred = y + dpe
  out mask = m[1]
}
"""


def test_mae_like_encoder_decoder_runs_and_compiles_without_graph_breaks():
    model = archdsl.load_spec(source=MAE_LIKE, seed=0)
    out = model(torch.randn(2, 3, 32, 32))
    assert out["pred"].shape == (2, 17, 16) and out["mask"].shape == (2, 16)
    assert bool((out["mask"].sum(1) == 12).all())
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == ["decoder_pos_embed.weight", "pos_embed.weight"]
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 32, 32))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


# ---------------------------------------------------------------------------------------------
# BEiT block-wise masking

def _beit_reference(height, width, num_masking_patches, min_num_patches=16, min_aspect=0.3, rng=None):
    """unilm/beit/masking_generator.py MaskingGenerator.__call__ (v1), transcribed with lists."""
    max_num_patches = num_masking_patches
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    mask = [[0] * width for _ in range(height)]

    def _mask(max_mask_patches):
        delta = 0
        for _ in range(10):
            target_area = rng.uniform(min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < width and h < height:
                top, left = rng.randint(0, height - h), rng.randint(0, width - w)
                num_masked = sum(mask[i][j] for i in range(top, top + h) for j in range(left, left + w))
                if 0 < h * w - num_masked <= max_mask_patches:
                    for i in range(top, top + h):
                        for j in range(left, left + w):
                            if mask[i][j] == 0:
                                mask[i][j] = 1
                                delta += 1
                if delta > 0:
                    break
        return delta

    count = 0
    while count < num_masking_patches:
        delta = _mask(min(num_masking_patches - count, max_num_patches))
        if delta == 0:
            break
        count += delta
    return torch.tensor(mask, dtype=torch.bool)


def _components(m: torch.Tensor) -> int:
    """4-connected components of a 2-d bool mask."""
    grid, seen, n = m.tolist(), set(), 0
    h, w = len(grid), len(grid[0])
    for i in range(h):
        for j in range(w):
            if grid[i][j] and (i, j) not in seen:
                n += 1
                stack = [(i, j)]
                seen.add((i, j))
                while stack:
                    a, b = stack.pop()
                    for c, d in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
                        if 0 <= c < h and 0 <= d < w and grid[c][d] and (c, d) not in seen:
                            seen.add((c, d))
                            stack.append((c, d))
    return n


def test_block_mask_statistics_match_beit():
    """BEiT-base: 75 of 14×14 patches (~40%), blocks of at least 16 patches."""
    src = """network M() { in x: [B, 196, 8]
                       out x -> block_mask(75, min_num_patches=16) }"""
    model = archdsl.load_spec(source=src, input_shape=(300, 196, 8))
    torch.manual_seed(0)
    masks = model(torch.zeros(300, 196, 8))
    assert masks.shape == (300, 14, 14) and masks.dtype == torch.bool
    counts = masks.flatten(1).sum(1).float()
    assert int(counts.max()) <= 75                       # never more than the target (BEiT v1)
    assert counts.mean() > 72 and (counts == 75).float().mean() > 0.5
    comps = torch.tensor([_components(m) for m in masks], dtype=torch.float)
    assert comps.mean() < 3                              # a few large blocks, not scattered patches
    iid = torch.rand(300, 14, 14, generator=torch.Generator().manual_seed(0)) < 75 / 196
    assert torch.tensor([_components(m) for m in iid[:50]], dtype=torch.float).mean() > 10
    # the same statistics as BEiT's own generator (Python's random instead of torch's RNG)
    rng = random.Random(0)
    ref = torch.stack([_beit_reference(14, 14, 75, 16, rng=rng) for _ in range(300)])
    ref_counts = ref.flatten(1).sum(1).float()
    ref_comps = torch.tensor([_components(m) for m in ref], dtype=torch.float)
    assert abs(counts.mean() - ref_counts.mean()) < 1.0
    assert abs(comps.mean() - ref_comps.mean()) < 0.4
    # contiguous: (almost) every masked patch has a masked 4-neighbour. Only a leftover budget
    # smaller than min_num_patches can add an isolated patch.
    p = torch.nn.functional.pad(masks.float()[:, None], (1, 1, 1, 1))[:, 0]
    neighbours = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:]
    assert int(((neighbours == 0) & masks).sum()) < 0.01 * int(masks.sum())


def test_block_mask_module_is_seeded():
    g = BlockMask(14, 14, 75, 16)
    torch.manual_seed(3)
    a = g(torch.zeros(4, 1))
    torch.manual_seed(3)
    assert torch.equal(a, g(torch.zeros(4, 1)))


def test_fill_masked_is_beits_mask_token_substitution():
    src = """network F() { in x: [B, N, D]
                       in m: [B, N] as bool
                       param mask_token: [1, 1, D] = 3.0
                       out fill_masked(x, m, mask_token) }"""
    model = archdsl.load_spec(source=src, input_shape=[(2, 9, 4), (2, 9)])
    x, m = torch.randn(2, 9, 4), torch.rand(2, 9) < 0.4
    torch.testing.assert_close(model(x, m), torch.where(m.unsqueeze(-1), torch.full_like(x, 3.0), x))
