"""The nn.Module of the style_mix op (archdsl/ops/style_mix.py): StyleGAN's style mixing."""
from __future__ import annotations

import torch
from torch import nn


class StyleMixing(nn.Module):
    def __init__(self, layers: int, prob: float):
        super().__init__()
        self.layers, self.prob = layers, prob

    def forward(self, w: torch.Tensor, w2: torch.Tensor | None = None) -> torch.Tensor:
        ws = w.unsqueeze(1).expand(-1, self.layers, -1)
        if w2 is None or not self.training or self.layers < 2:
            return ws
        mix = torch.rand((), device=w.device) < self.prob
        cut = torch.randint(1, self.layers, (), device=w.device)
        cut = torch.where(mix, cut, torch.full_like(cut, self.layers))
        take2 = (torch.arange(self.layers, device=w.device) >= cut).view(1, -1, 1)
        return torch.where(take2, w2.unsqueeze(1).expand(-1, self.layers, -1), ws)

    def extra_repr(self) -> str:
        return f"layers={self.layers}, prob={self.prob}"
