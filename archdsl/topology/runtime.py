"""Functions the lowered phase graphs call."""
from __future__ import annotations

import torch

from archdsl.topology import dist


def shuffled_call(module: torch.nn.Module, x: torch.Tensor):
    """Shuffle BN (MoCo): run `module` on the batch in a random order — across all ranks when
    distributed — and return the outputs in the input's order."""
    if not dist.active():
        perm = torch.randperm(x.shape[0], device=x.device)
        y = module(x[perm])
        return y[torch.argsort(perm)]
    import torch.distributed as torch_dist
    local = x.shape[0]
    everything = dist.all_gather(x)
    perm = torch.randperm(everything.shape[0], device=x.device)
    torch_dist.broadcast(perm, src=0)
    mine = perm.view(dist.world(), -1)[dist.rank()]
    y = module(everything[mine])
    y_all = dist.all_gather(y)
    restore = torch.argsort(perm)
    start = dist.rank() * local
    return y_all[restore[start:start + local]]


def noise_like(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise [B, *shape] on x's device, in x's dtype."""
    return torch.randn((x.shape[0], *shape), device=x.device, dtype=x.dtype)
