"""Small nn.Modules, and `masked_sdpa`, for the attention ops (archdsl/ops/attention.py).

Each class is self-contained (it uses only torch, `nn` and `F`), so the standalone source writer
can copy it as it is; every constructor argument is kept as an attribute of the same name.
Index tables and masks are non-persistent buffers: computed from the shapes, never loaded, and
not in the state_dict (as in timm ≥ 1.0).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ScaledDotProductAttention(nn.Module):
    """F.scaled_dot_product_attention with attention dropout that is active only in training."""

    def __init__(self, dropout: float = 0.0, is_causal: bool = False, scale: float | None = None):
        super().__init__()
        self.dropout = dropout
        self.is_causal = is_causal
        self.scale = scale

    def forward(self, q, k, v, attn_mask=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                              dropout_p=self.dropout if self.training else 0.0,
                                              is_causal=self.is_causal, scale=self.scale)

    def extra_repr(self) -> str:
        return f"dropout={self.dropout}, is_causal={self.is_causal}, scale={self.scale}"


class RelPosBias(nn.Module):
    """Gathers a relative position bias table [T, heads] into [1, heads, N, N] by the pair-wise
    relative position index of a win_h x win_w window (timm swin `get_relative_position_index`);
    with cls_token (timm beit `gen_relative_position_index`) one more row and column in front,
    indexing the table's three last entries: cls→token, token→cls, cls→cls."""

    def __init__(self, win_h: int, win_w: int, cls_token: bool = False):
        super().__init__()
        self.win_h, self.win_w, self.cls_token = win_h, win_w, cls_token
        index = self.make_index(win_h, win_w, cls_token)
        self.register_buffer("relative_position_index", index, persistent=False)

    @staticmethod
    def make_index(win_h: int, win_w: int, cls_token: bool = False) -> torch.Tensor:
        grid = torch.meshgrid(torch.arange(win_h), torch.arange(win_w), indexing="ij")
        coords = torch.stack(grid)
        coords = coords.flatten(1)                                            # 2, Wh*Ww
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
        rel[:, :, 0] += win_h - 1
        rel[:, :, 1] += win_w - 1
        rel[:, :, 0] *= 2 * win_w - 1
        index = rel.sum(-1)                                                   # Wh*Ww, Wh*Ww
        if not cls_token:
            return index
        n = (2 * win_h - 1) * (2 * win_w - 1)
        out = torch.zeros((index.shape[0] + 1,) * 2, dtype=index.dtype)
        out[1:, 1:] = index
        out[0, 0:] = n
        out[0:, 0] = n + 1
        out[0, 0] = n + 2
        return out

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        n = self.relative_position_index.shape[0]
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def extra_repr(self) -> str:
        return f"win_h={self.win_h}, win_w={self.win_w}, cls_token={self.cls_token}"


class ShiftWindowMask(nn.Module):
    """The shifted-window attention mask of Swin (timm `SwinTransformerBlock.get_attn_mask`) for
    windowed tokens [B*nW, N, C], as [B*nW, 1, N, N]: 0 between tokens of one region of the
    cyclically shifted height x width map (padded up to whole windows), -100 across regions."""

    def __init__(self, height: int, width: int, win_h: int, win_w: int, shift_h: int, shift_w: int):
        super().__init__()
        self.height, self.width = height, width
        self.win_h, self.win_w, self.shift_h, self.shift_w = win_h, win_w, shift_h, shift_w
        mask = self.make_mask(height, width, win_h, win_w, shift_h, shift_w)
        self.register_buffer("attn_mask", mask.unsqueeze(1), persistent=False)

    @staticmethod
    def make_mask(height: int, width: int, win_h: int, win_w: int, shift_h: int,
                  shift_w: int) -> torch.Tensor:
        hp, wp = -(-height // win_h) * win_h, -(-width // win_w) * win_w
        img = torch.zeros((1, hp, wp, 1))
        cnt = 0
        for h in ((0, -win_h), (-win_h, -shift_h), (-shift_h, None)):
            for w in ((0, -win_w), (-win_w, -shift_w), (-shift_w, None)):
                img[:, h[0]:h[1], w[0]:w[1], :] = cnt
                cnt += 1
        win = img.view(1, hp // win_h, win_h, wp // win_w, win_w, 1).permute(0, 1, 3, 2, 4, 5)
        win = win.reshape(-1, win_h * win_w)                                  # nW, N
        mask = win.unsqueeze(1) - win.unsqueeze(2)
        return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        mask = self.attn_mask.to(windows.dtype)
        return mask.repeat(windows.shape[0] // mask.shape[0], 1, 1, 1)

    def extra_repr(self) -> str:
        return (f"height={self.height}, width={self.width}, win_h={self.win_h}, "
                f"win_w={self.win_w}, shift_h={self.shift_h}, shift_w={self.shift_w}")


def masked_sdpa(q, k, v, mask, scale=None):
    """F.scaled_dot_product_attention with a mask. A float mask that takes gradients (a learned
    relative-position bias, as in Swin and BEiT) on the CPU is applied explicitly, as timm does:
    SDPA has no fused CPU kernel for it and its fallback is ~15 % slower a training step."""
    if mask.requires_grad and torch.is_grad_enabled() and q.device.type == "cpu" and mask.is_floating_point():
        s = q.shape[-1] ** -0.5 if scale is None else scale
        return ((q * s) @ k.transpose(-2, -1) + mask).softmax(-1) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
