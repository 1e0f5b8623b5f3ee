"""Torch code of archdsl/ops/spatial.py: the spatial transformer's regressor and TensorFlow's
SAME padding."""
from __future__ import annotations

import torch
import torch.nn.functional as F
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


def same_pad(x: torch.Tensor, kernel: list[int], stride: list[int], dilation: list[int]) -> torch.Tensor:
    """Zero-pad H and W as TensorFlow's SAME: the amounts from x's own size, the odd pixel last.

    With n = q·s + r, SAME pads (ceil(n / s) - 1)·s + span - n = span - 1 - (n - 1) mod s, where
    span = (k - 1)·d + 1: written so (one mod, and a max only where span < s can make it
    negative) because under torch.export n is symbolic and ceil/max chains make its solver crawl."""
    pads = []
    for size, k, s, d in reversed(list(zip(x.shape[-2:], kernel, stride, dilation))):
        span = (k - 1) * d + 1
        total = span - 1 - (size - 1) % s
        if span < s:
            total = torch.sym_max(total, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)
