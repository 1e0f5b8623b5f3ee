"""nn.Modules for the token ops (archdsl/ops/tokens.py).

- `SincosPosEmbed`: MAE's fixed 2-d sine-cosine position table, held as a frozen parameter.
- `RandomMasking`: MAE's per-sample random masking (returns x_kept, mask, ids_restore).
- `BlockMask`: BEiT's block-wise mask generator (a [B, H, W] bool mask per forward).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from archdsl.nn.rules import keep_count


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """MAE's `get_1d_sincos_pos_embed_from_grid`: [M] positions → [M, dim] (sin half, cos half).

    omega_k = 1 / 10000^(k / (dim/2)), k = 0 … dim/2 − 1; computed in float64 like MAE's numpy."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(grid_h: int, grid_w: int, dim: int, cls_token: bool = False) -> torch.Tensor:
    """MAE's `get_2d_sincos_pos_embed` (util/pos_embed.py) for a grid_h × grid_w grid of tokens in
    row-major order → [grid_h·grid_w (+1), dim] float32.

    As in MAE, the first dim/2 channels encode the column (w) coordinate and the last dim/2 the
    row (h) coordinate (MAE's `np.meshgrid(grid_w, grid_h)` puts w first); with `cls_token` a
    row of zeros is prepended."""
    if dim % 4:
        raise ValueError(f"sincos position embedding needs dim divisible by 4, got {dim}")
    hh, ww = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                            torch.arange(grid_w, dtype=torch.float64), indexing="ij")
    emb = torch.cat([sincos_1d(dim // 2, ww), sincos_1d(dim // 2, hh)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb], dim=0)
    return emb.to(torch.float32)


class SincosPosEmbed(nn.Module):
    """The fixed sincos table as MAE holds it: `nn.Parameter(..., requires_grad=False)` (so it is in
    the state_dict and counted in the parameters, but never trained). forward returns [1, L, D]."""

    def __init__(self, grid_h: int, grid_w: int, dim: int, cls_token: bool):
        super().__init__()
        table = sincos_2d(grid_h, grid_w, dim, cls_token).unsqueeze(0)
        self.weight = nn.Parameter(table, requires_grad=False)
        self.grid, self.cls_token = (grid_h, grid_w), cls_token

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x only anchors the op in the graph
        return self.weight

    def extra_repr(self) -> str:
        return f"grid={self.grid}, dim={self.weight.shape[-1]}, cls_token={self.cls_token}"


class RandomMasking(nn.Module):
    """MAE's `random_masking` (models_mae.py): per-sample uniform noise → argsort → keep the first
    `int(L · (1 − ratio))` tokens. Returns (x_kept [B, K, D], mask [B, L] in x's dtype with
    1 = removed, ids_restore [B, L] int64). Masks in train and eval mode alike, as MAE does."""

    def __init__(self, ratio: float):
        super().__init__()
        self.ratio = ratio

    def forward(self, x: torch.Tensor):
        n, length, d = x.shape
        keep = keep_count(length, self.ratio)
        noise = torch.rand(n, length, device=x.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
        # MAE builds [0]*keep + [1]*(L-keep) and un-shuffles it: token i is removed iff its rank
        # in the shuffle, ids_restore[i], is not among the first `keep`.
        mask = (ids_restore >= keep).to(x.dtype)
        return x_kept, mask, ids_restore

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}"


class BlockMask(nn.Module):
    """BEiT's block-wise `MaskingGenerator` (unilm/beit/masking_generator.py), drawn per sample with
    torch's global RNG instead of Python's `random`: rectangles of area U(min, max) and log-uniform
    aspect ratio are added until `num_masking_patches` are masked or an attempt adds nothing.
    Like BEiT (v1) the count never exceeds the target and may fall short of it. forward(x) →
    [B, H, W] bool (True = masked), on x's device. Python loops: run it outside torch.compile."""

    def __init__(self, grid_h: int, grid_w: int, num_masking_patches: int, min_num_patches: int = 16,
                 max_num_patches: int | None = None, min_aspect: float = 0.3,
                 max_aspect: float | None = None, exact: bool = False):
        super().__init__()
        self.exact = exact  # CAE's generator: draw until exactly num_masking_patches are masked
        self.height, self.width = grid_h, grid_w
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))

    @staticmethod
    def _uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand(()).item()

    def _mask(self, mask: torch.Tensor, max_mask_patches: int) -> int:
        delta = 0
        for _ in range(10):
            target_area = self._uniform(self.min_num_patches, max_mask_patches)
            aspect_ratio = math.exp(self._uniform(*self.log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < self.width and h < self.height:
                top = int(torch.randint(0, self.height - h + 1, ()).item())
                left = int(torch.randint(0, self.width - w + 1, ()).item())
                region = mask[top: top + h, left: left + w]
                new = h * w - int(region.sum().item())
                if 0 < new <= max_mask_patches:
                    region.fill_(True)
                    delta += new
                if delta > 0:
                    break
        return delta

    def sample(self) -> torch.Tensor:
        mask = torch.zeros(self.height, self.width, dtype=torch.bool)
        count = stuck = 0
        while count < self.num_masking_patches:
            max_mask_patches = min(self.num_masking_patches - count, self.max_num_patches)
            delta = self._mask(mask, max_mask_patches)
            if delta == 0 and not self.exact:
                break
            stuck = 0 if delta else stuck + 1
            if stuck == 100:  # exact, and no rectangle fits any more: top up with single patches
                free = (~mask).flatten().nonzero().flatten()
                pick = free[torch.randperm(len(free))[:self.num_masking_patches - count]]
                mask.view(-1)[pick] = True
                delta = len(pick)
            count += delta
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.sample() for _ in range(x.shape[0])]).to(x.device)

    def extra_repr(self) -> str:
        return (f"grid=({self.height}, {self.width}), num_masking_patches={self.num_masking_patches}, "
                f"min_num_patches={self.min_num_patches}, max_num_patches={self.max_num_patches}")
