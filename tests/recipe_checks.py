"""Helpers for the differential tests of tests/test_recipes.py: run a compiled topology's recipe
step by step and compare its tensors with a port of the official training step."""
from __future__ import annotations

import torch

REL = 1e-5


def close(a: torch.Tensor, b: torch.Tensor, what: str, rel: float = REL, floor: float = 1e-12) -> None:
    """a ≈ b relative to the size of b: |a − b| ≤ rel · |b| + rel · max(max|b|, floor) elementwise."""
    a, b = a.detach().to(torch.float64), b.detach().to(torch.float64)
    assert a.shape == b.shape, f"{what}: shapes {tuple(a.shape)} and {tuple(b.shape)}"
    torch.testing.assert_close(a, b, rtol=rel, atol=rel * max(float(b.abs().max()), floor), msg=lambda m: f"{what}: {m}")


def close_all(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], what: str, rel: float = REL) -> None:
    """close() for every tensor; one whose true value is ~0 (a bias before a BN: its gradient is
    rounding noise) is compared against 1e-3 of the largest tensor of the set."""
    assert set(ours) == set(ref), f"{what}: {sorted(set(ours) ^ set(ref))} on one side only"
    floor = 1e-3 * max(float(v.detach().abs().max()) for v in ref.values() if v.numel())
    for k in ref:
        close(ours[k], ref[k], f"{what} {k}", rel, floor)


def grads(named: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """The gradients present, by name (a tensor without one is left out)."""
    return {k: p.grad.clone() for k, p in named.items() if p.grad is not None}


def recipe_step(topo, optimizers: dict, schedule, *inputs, phase: str = "train", after_step: bool = True):
    """One step of the compiled recipe: set the step's lr / wd, forward, backward, read the raw
    gradients, optimizer step (with its clipping), after-step updates (once per round: pass
    after_step=False for all but a round's last phase). Returns (loss, grads)."""
    schedule.apply()
    out = topo(*inputs, phase=phase)
    out.loss.backward()
    g = grads(dict(topo.named_parameters_of(phase)))
    optimizers[phase].step()
    optimizers[phase].zero_grad(set_to_none=True)
    if after_step:
        topo.after_step()
    return out.loss.detach(), g


def updated_by(optimizer: torch.optim.Optimizer) -> set[int]:
    return {id(p) for g in optimizer.param_groups for p in g["params"]}
