"""Helpers shared by the topology tests."""
from __future__ import annotations

import torch


def reaches_without_stop(graph, src: str, dst: str) -> bool:
    """Does a value flow from a `net` node of network src into one of network dst without a
    stop_grad on the way?"""
    starts = [n.id for n in graph.nodes() if n.kind == "net" and n.attrs["name"] == src]
    consumers: dict[str, list] = {}
    for n in graph.nodes():
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    todo, seen = list(starts), set()
    while todo:
        for n in consumers.get(todo.pop(), []):
            if n.id in seen or n.op == "stop_grad":
                continue
            seen.add(n.id)
            if n.kind == "net" and n.attrs["name"] == dst:
                return True
            todo.append(n.id)
    return False


def colour_images_and_tokens(seed: int = 0):
    """8 noisy 16x16 images of one colour each (6 colours) and, for each of their 16 patches, the
    colour's index as its visual token: the visible patches tell the masked ones' tokens."""
    g = torch.Generator().manual_seed(seed)
    level = torch.randint(0, 6, (8,), generator=g)
    imgs = (level.float()[:, None, None, None] / 3 - 1).expand(8, 3, 16, 16).contiguous()
    imgs = imgs + 0.05 * torch.randn(imgs.shape, generator=g)
    return imgs, level[:, None].expand(8, 16).contiguous()


def step(t, opt, *inputs, phase=None, after_step: bool = True):
    """One optimizer step of a topology's phase, then (unless after_step=False) its after-step
    updates (EMA twins, step counters, schedules)."""
    out = t(*inputs, phase=phase)
    out.loss.backward()
    opt.step()
    opt.zero_grad()
    if after_step:
        t.after_step()
    return out


def loss_curve(t, opt, *inputs, steps: int, phase=None, after_step: bool = True) -> list[float]:
    """The loss of each of `steps` optimizer steps on the same inputs (see `step`)."""
    return [step(t, opt, *inputs, phase=phase, after_step=after_step).loss.item() for _ in range(steps)]
