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




def penalty_call(module: torch.nn.Module, kind: str, *inputs: torch.Tensor) -> torch.Tensor:
    """A gradient penalty of the network `module` (a discriminator), a scalar.
    r1: inputs (real, *extra) — the penalty at the real samples.
    wgan_gp: inputs (real, fake, *extra) — at x̂ = real + u · (fake − real), u ~ U[0, 1) per
    sample (Gulrajani et al. 2017). `extra` inputs (labels, a fade-in alpha) are passed to the
    network unchanged. The samples are detached first: the penalty trains D only."""
    from archdsl.topology.losses import gradient_penalty
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


@torch.no_grad()
def history_pool(fakes: torch.Tensor, pool: torch.Tensor, count: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """CycleGAN's ImagePool.query (util/image_pool.py), on a pool held as topology state: image by
    image, fill the pool first (returning the new image); once full, with probability p return a
    random stored image and store the new one in its slot, else return the new image. Updates
    `pool` and `count` in place; the result carries no gradient (it feeds D only)."""
    out = fakes.detach().clone()
    size = pool.shape[0]
    n = min(max(int(count), 0), size)
    for i in range(fakes.shape[0]):
        image = fakes[i].detach()
        if n < size:
            pool[n] = image.to(pool.dtype)
            n += 1
        elif float(torch.rand(())) > 1.0 - p:  # ImagePool's `random.uniform(0, 1) > 0.5`
            j = int(torch.randint(size, ()))
            out[i] = pool[j].to(out.dtype)
            pool[j] = image.to(pool.dtype)
    count.fill_(n)
    return out
