"""The pool update of the history_pool op (archdsl/ops/history_pool.py): CycleGAN's image pool."""
from __future__ import annotations

import torch


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
