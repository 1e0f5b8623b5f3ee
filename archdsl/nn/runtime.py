"""Functions a lowered phase graph calls around a network: shuffle BN and the gradient penalty."""
from __future__ import annotations

import torch

from archdsl.nn import dist
from archdsl.nn.loss import gradient_penalty


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


def penalty_call(module: torch.nn.Module, kind: str, *inputs: torch.Tensor) -> torch.Tensor:
    """A gradient penalty of the network `module` (a discriminator), a scalar.
    r1: inputs (real, *extra) — the penalty at the real samples.
    wgan_gp: inputs (real, fake, *extra) — at x̂ = real + u · (fake − real), u ~ U[0, 1) per
    sample (Gulrajani et al. 2017). `extra` inputs (labels, a fade-in alpha) are passed to the
    network unchanged. The samples are detached first: the penalty trains D only."""
    if kind == "wgan_gp":
        real, fake, extra = inputs[0].detach(), inputs[1].detach(), inputs[2:]
        u = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        x = real + u * (fake - real)
    else:
        x, extra = inputs[0].detach(), inputs[1:]
    x.requires_grad_(True)
    with torch.enable_grad():
        out = module(x, *extra)
        return gradient_penalty(out, x, kind)
