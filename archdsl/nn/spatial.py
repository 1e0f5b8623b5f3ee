"""Torch code of archdsl/ops/spatial.py: the spatial transformer's regressor and TensorFlow's
SAME padding."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.nn.rules import same_pads  # the op's shape rule reads the same arithmetic


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


def same_pad(x: torch.Tensor, kernel: list[int], stride: list[int], dilation: list[int]) -> torch.Tensor:
    """Zero-pad H and W as TensorFlow's SAME: the amounts from x's own size, the odd pixel last."""
    pads = []
    for size, k, s, d in reversed(list(zip(x.shape[-2:], kernel, stride, dilation))):
        pads += same_pads(size, k, s, d, maximum=torch.sym_max)
    return F.pad(x, pads)
