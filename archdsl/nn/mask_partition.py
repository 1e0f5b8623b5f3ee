"""The gather of the mask_partition op (archdsl/ops/mask_partition.py)."""
from __future__ import annotations


def partition_by_mask(x, mask, num_masked: int):
    """(x at the unmasked places, x at the masked places), each in order; see mask_partition."""
    import torch
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)   # unmasked first, then masked
    d = x.shape[-1]
    x = x.expand(mask.shape[0], -1, -1)
    index = order.unsqueeze(-1).expand(-1, -1, d)
    parts = torch.gather(x, 1, index)
    keep = mask.shape[1] - num_masked
    return parts[:, :keep], parts[:, keep:]
