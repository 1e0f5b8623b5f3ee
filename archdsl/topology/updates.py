"""After-step updates of a topology's state (no autograd), and state initialisers.

Each update runs in `TopologyModule.after_step()`, after the optimizer step, on values kept
from the last forward pass. Tensors are gathered across ranks first when torch.distributed is
initialised, so every replica applies the same update. What each update takes is declared in
archdsl/ir/updates.py.
"""
from __future__ import annotations


def init_state(init, shape, dtype):
    """A state tensor from its initialiser: a number, or one of STATE_INITS."""
    import torch
    from archdsl.ir.schedule import LRSchedule
    dt = getattr(torch, dtype)
    if isinstance(init, LRSchedule):
        return torch.full(shape, init.at(0), dtype=dt)
    if not isinstance(init, str):
        return torch.full(shape, init, dtype=dt)
    if init == "zeros":
        return torch.zeros(shape, dtype=dt)
    if init == "ones":
        return torch.ones(shape, dtype=dt)
    if init == "uniform":
        return torch.rand(shape, dtype=dt)
    if init == "uniform_bank":  # lemniscate's memory bank [N, D]: U(−s, s), s = 1 / sqrt(D / 3)
        s = 1.0 / (shape[-1] / 3) ** 0.5
        return torch.rand(shape, dtype=dt) * (2 * s) - s
    x = torch.randn(shape, dtype=dt)
    if init == "normal_l2":  # MoCo's queue: each column a unit vector
        x = torch.nn.functional.normalize(x, dim=0)
    return x


def run(kind: str, states, tensors, options) -> None:
    import torch
    from archdsl.nn import dist
    with torch.no_grad():
        if kind in ("store", "carry"):
            states[0].copy_(tensors[0].detach())
            return
        if kind == "enqueue":
            queue, ptr = states
            keys = dist.all_gather(tensors[0].detach())
            n, k = keys.shape[0], queue.shape[1]
            if k % n:
                raise RuntimeError(f"enqueue: K = {k} is not a multiple of the global batch {n}")
            start = int(ptr)
            queue[:, start:start + n] = keys.t().to(queue.dtype)
            ptr.fill_((start + n) % k)
        elif kind == "center_update":
            (center,), (out,) = states, tensors
            m = float(options.get("momentum", 0.9))
            batch_center = dist.all_reduce_mean(out.detach().mean(dim=0, keepdim=True))
            center.mul_(m).add_(batch_center, alpha=1 - m)
        elif kind == "clamp":
            states[0].clamp_(min=options.get("min"), max=options.get("max"))
        elif kind == "bank_update":
            (bank,), (idx, feats) = states, tensors
            idx, feats = dist.all_gather(idx), dist.all_gather(feats.detach())
            m = float(options.get("momentum", 0.5))
            mixed = bank[idx] * m + feats * (1 - m)
            bank[idx] = torch.nn.functional.normalize(mixed, dim=1)
        else:  # pragma: no cover - the elaborator only records known updates
            raise ValueError(kind)


def run_net(kind: str, net, options) -> None:
    """An update of a network's own parameter (no autograd): l2_normalize_param."""
    import torch
    with torch.no_grad():
        if kind == "l2_normalize_param":
            w = net.get_parameter(options["weight"])
            w.copy_(torch.nn.functional.normalize(w, dim=int(options.get("dim", 1))))
        else:  # pragma: no cover - the elaborator only records known updates
            raise ValueError(kind)
