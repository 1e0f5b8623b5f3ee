"""Torch code of the norm ops (archdsl/ops/norm.py)."""
from __future__ import annotations

from torch import nn


def without_bias(module: nn.Module) -> nn.Module:
    """The norm layer with its shift removed: F.batch_norm takes a scale without a shift."""
    module.register_parameter("bias", None)
    return module
