"""Collectives that run when torch.distributed is initialised and are no-ops otherwise."""
from __future__ import annotations

import torch
import torch.distributed as torch_dist


def active() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def rank() -> int:
    return torch_dist.get_rank() if active() else 0


def world() -> int:
    return torch_dist.get_world_size() if active() else 1


@torch.no_grad()
def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenation of every rank's x along dim 0 (no gradient)."""
    if not active():
        return x
    parts = [torch.empty_like(x) for _ in range(world())]
    torch_dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for each slice and hands each rank
    the gradient of its own slice: with DDP averaging parameter gradients, a loss that is a mean
    over local anchors then trains exactly as one process on the concatenated batch."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(world())]
        torch_dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        torch_dist.all_reduce(grad)
        return grad.chunk(world(), dim=0)[rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenation of every rank's x along dim 0, differentiable (see _GatherWithGrad)."""
    if not active():
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    if active():
        torch_dist.all_reduce(x)
        x /= world()
    return x
