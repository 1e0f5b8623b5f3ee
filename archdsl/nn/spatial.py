"""The nn.Module of the spatial transformer's regressor op (archdsl/ops/spatial.py)."""
from __future__ import annotations

import torch
from torch import nn


class IdentityAffineLinear(nn.Linear):
    """nn.Linear(in_features, 6) with zero weight and bias [1, 0, 0, 0, 1, 0]: the spatial
    transformer's regressor starts at the identity transform (Jaderberg et al. 2015; PyTorch's STN
    tutorial `fc_loc[2]`). Set in reset_parameters, so that the start is the module's own and not
    a change made after torch's (which the builder would not know about)."""

    def __init__(self, in_features: int):
        super().__init__(in_features, 6)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        self.weight.zero_()
        self.bias.copy_(torch.tensor([1, 0, 0, 0, 1, 0], dtype=self.bias.dtype))
