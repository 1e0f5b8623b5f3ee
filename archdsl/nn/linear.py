"""The nn.Module of the weight-normalised linear op (archdsl/ops/linear.py)."""
from __future__ import annotations

import torch
from torch import nn


class WeightNormLinear(nn.Module):
    """A linear layer whose weight is g · v / ‖v‖ row by row (Salimans & Kingma 2016), with the keys
    of `torch.nn.utils.weight_norm(nn.Linear(...))`: weight_g [out, 1], weight_v [out, in] (and
    bias). g starts at 1 (DINO's head); `fix_g` keeps it at 1 (requires_grad=False, DINO's
    norm_last_layer). A plain module rather than torch's hook, so deepcopy (EMA twins) works."""

    def __init__(self, in_features: int, out: int, bias: bool, fix_g: bool):
        super().__init__()
        v = nn.Linear(in_features, out, bias)   # v starts as nn.Linear's weight, as in DINO
        self.weight_g = nn.Parameter(torch.ones(out, 1), requires_grad=not fix_g)
        self.weight_v = nn.Parameter(v.weight.detach().clone())
        self.bias = nn.Parameter(v.bias.detach().clone()) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_v * (self.weight_g / self.weight_v.norm(dim=1, keepdim=True))
        return nn.functional.linear(x, w, self.bias)
