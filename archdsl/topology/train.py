"""A small real training loop over a TopologyModule, for trying a topology in one command.

Synthetic data: a fixed pool of random inputs shaped like the topology's inputs (integer
inputs drawn from range(classes)); each run of a round's first phase draws a batch from the
pool, which the round's later phases reuse, so a topology that learns shows a falling loss.
Optimizers: the topology's recipe (`configure_optimizers()`: each phase's declared optimizer,
groups and schedules, set every step) when every phase declares one
and neither `optimizer` nor `lr` is given; else one Adam (betas (0.5, 0.999)) or SGD (momentum
0.9) per phase over `parameters(phase=…)`, at `lr` (1e-3 by default) — times
`topo.lr_scale(step)` when the topology declares `lr = cosine_lr(...)`. Each round runs the
phases in `schedule()` order (k D-steps per G-step), then `after_step()` once.

Real data: an image folder (archdsl/topology/data.py) as the batch source; periodic checkpoints
that resume exactly, a CSV of metrics and DDP (archdsl/topology/checkpoint.py, the CLI's
`archdsl train --data`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from archdsl.errors import ArchError
from archdsl.ops import REGISTRY
from archdsl.ir.topology import TopologyIR
from archdsl.topology.module import TopologyModule


@dataclass
class StepLog:
    step: int
    losses: dict[str, float]
    logs: dict[str, float] = field(default_factory=dict)


def input_specs(topo: TopologyModule) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of each input, as elaborated."""
    graph = next(iter(topo.ir.phases.values())).graph
    return [(i, tuple(graph.node(i).shape), graph.node(i).dtype) for i in graph.inputs]


def synthetic_pool(topo: TopologyModule, pool: int = 64, classes: int = 10,
                   seed: int = 0) -> list[torch.Tensor]:
    """`pool` random samples of every input (dim 0 of each input is its batch)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _, shape, dtype in input_specs(topo):
        size = (pool, *shape[1:])
        dt = getattr(torch, dtype)
        out.append(torch.randint(0, classes, size, generator=g, dtype=dt) if not dt.is_floating_point
                   else torch.randn(size, generator=g, dtype=dt))
    return out


def check_batch(ir: TopologyIR) -> None:
    """Refuse a batch too small to train on: a loss whose only negatives are the rest of the batch
    is exactly 0 on one sample, and batch norm cannot normalise one value per channel."""
    graphs = [("", p.graph) for p in ir.phases.values()]
    graphs += [(f"{n.name}.", g) for n in ir.nets.values() if not n.frozen for g in n.graphs.values()]
    for prefix, graph in graphs:
        for node in graph.nodes():
            op = REGISTRY.get(node.op)
            problem = op and node.inputs and op.train_problem(
                node.attrs, [graph.node(i).shape for i in node.inputs])
            if problem:
                raise ArchError(f"{problem} (at '{prefix}{node.id}')", node.span,
                                hint="give a larger batch as the first dim of every input "
                                     "(`--input 8x3x64x64`, once per input)")


def has_recipe(topo: TopologyModule) -> bool:
    return all(p.optimizer is not None for p in topo.ir.phases.values())


def optimizers(topo: TopologyModule, lr: float | None = None, optimizer: str | None = None):
    """{phase: optimizer} and a callable setting the learning rates of a step (see the module doc)."""
    if optimizer is None and lr is None and has_recipe(topo):
        optims, schedule = topo.configure_optimizers()
        return optims, lambda step: schedule.apply(step)
    lr = 1e-3 if lr is None else lr
    make = {"adam": lambda ps: torch.optim.Adam(ps, lr=lr, betas=(0.5, 0.999)),
            "sgd": lambda ps: torch.optim.SGD(ps, lr=lr, momentum=0.9)}[optimizer or "adam"]
    optims = {p: make(list(topo.parameters(phase=p))) for p in topo.phases}

    def set_lr(step: int) -> None:  # a declared schedule (`lr = cosine_lr(...)`) scales `lr`
        for opt in optims.values():
            for group in opt.param_groups:
                group["lr"] = lr * topo.lr_scale(step)
    return optims, set_lr


class Pool:
    """Batches drawn at random from tensors held in memory (the synthetic pool, or `data=`)."""

    def __init__(self, data: list[torch.Tensor], batch: int, seed: int = 0):
        self.data, self.batch = data, batch
        self.g = torch.Generator().manual_seed(seed + 1)

    def next(self) -> list[torch.Tensor]:
        idx = torch.randperm(len(self.data[0]), generator=self.g)[:self.batch]
        return [d[idx] for d in self.data]

    def state_dict(self) -> dict:
        return {"generator": self.g.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.g.set_state(state["generator"])


def train(topo: TopologyModule, steps: int, *, lr: float | None = None, optimizer: str | None = None,
          data: list[torch.Tensor] | None = None, seed: int = 0,
          on_step: Callable[[StepLog], None] | None = None, source=None, model: torch.nn.Module | None = None,
          checkpoint: str | Path | None = None, checkpoint_every: int = 0, resume: str | Path | None = None,
          log: str | Path | None = None) -> list[StepLog]:
    """Run the topology's phases until `steps` rounds are done, on batches of `source` (an object
    with next(), state_dict() and load_state_dict(): archdsl/topology/data.py's image folder) or
    of `data` (default: a synthetic pool). `model` is what runs the forward (a DDP wrapper of
    `topo`). Every `checkpoint_every` rounds the whole training state is saved to `checkpoint`
    (archdsl/topology/checkpoint.py); `resume` continues from such a file exactly. `log` appends
    one CSV row per round: losses, logged values and the recipe's learning rates."""
    from archdsl.topology import checkpoint as ckpt
    from archdsl.nn import dist
    check_batch(topo.ir)
    torch.manual_seed(seed + dist.rank())   # under DDP each process draws its own views and noise
    if source is None:
        source = Pool(data if data is not None else synthetic_pool(topo, seed=seed), input_specs(topo)[0][1][0], seed)
    optims, set_lr = optimizers(topo, lr, optimizer)
    start = ckpt.load(resume, topo, optims, source) if resume else 0
    topo.train()
    runner = model if model is not None else topo
    writer = ckpt.MetricsLog(log) if log else None
    history = []
    schedule = topo.schedule()
    for step in range(start, steps):
        losses, logs = {}, {}
        set_lr(int(topo.steps))
        rates = {f"lr.{p}": o.param_groups[0]["lr"] for p, o in optims.items()}
        for phase in schedule:
            # a new batch for each run of the round's first phase (each of k D-steps); the later
            # phases take the last one, as the official GAN loops do (a value carried from the
            # D-step to the G-step belongs to that batch)
            if phase == schedule[0]:
                batch = source.next()
            out = runner(*batch, phase=phase)
            out.loss.backward()
            optims[phase].step()
            optims[phase].zero_grad(set_to_none=True)
            losses[phase] = out.loss.item()
            logs.update({f"{phase}.{k}": v.float().mean().item() for k, v in out.logs.items()})
        topo.after_step()
        entry = StepLog(step, losses, logs)
        history.append(entry)
        if writer is not None:
            writer.write(entry, rates)
        if checkpoint and checkpoint_every and (step + 1) % checkpoint_every == 0:
            ckpt.save(checkpoint, step + 1, topo, optims, source)
        if on_step is not None:
            on_step(entry)
    return history
