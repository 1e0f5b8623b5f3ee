"""Training checkpoints that resume exactly, and the CSV log of `archdsl train`.

A checkpoint holds everything the next round reads: the topology's state_dict (networks, EMA
twins, queues, centres, every state, and `steps`, which the recipe's schedules are functions
of), each phase's optimizer state, the batch source's position and generator, and the torch
RNG state of every process (the views, dropout and noise draw from it). Resuming from the
checkpoint of round k and running to round n gives bit-equal tensors to an uninterrupted run to n.
Under torch.distributed, rank 0 writes the file (every rank's RNG state gathered into it).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

from archdsl.topology import dist

FORMAT = "archdsl-train-checkpoint-1"


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, step: int, topo, optimizers: dict, source) -> None:
    """Write the state after `step` rounds (atomically: a reader never sees half a file)."""
    rng = [_rng_state()]
    if dist.active():
        rng = [None] * dist.world()
        torch.distributed.all_gather_object(rng, _rng_state())
        if dist.rank() != 0:
            return
    state = {"format": FORMAT, "step": step, "topology": topo.state_dict(),
             "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "source": source.state_dict(), "rng": rng}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: str | Path, topo, optimizers: dict, source) -> int:
    """Restore a checkpoint written by `save`; returns the rounds already done."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"--resume {path}: not a checkpoint of `archdsl train`")
    missing = set(state["optimizers"]) ^ set(optimizers)
    if missing:
        raise ValueError(f"--resume {path}: the checkpoint's phases {sorted(state['optimizers'])} are not "
                         f"this topology's {sorted(optimizers)}")
    try:
        topo.load_state_dict(state["topology"])
    except RuntimeError as e:
        raise ValueError(f"--resume {path}: the checkpoint is of another topology or other arguments: "
                         f"{str(e).splitlines()[0]}") from None
    for k, o in optimizers.items():
        o.load_state_dict(state["optimizers"][k])
    source.load_state_dict(state["source"])
    rng = state["rng"]
    if len(rng) != dist.world():
        raise ValueError(f"--resume {path}: written by {len(rng)} process(es), resumed by {dist.world()}")
    _set_rng_state(rng[dist.rank()])
    return int(state["step"])


class MetricsLog:
    """One CSV row per round: step, each phase's loss, the logged values and learning rates.
    Appends to an existing file (a resumed run continues its log); rank 0 only."""

    def __init__(self, path: str | Path):
        self.path, self.fields = Path(path), None
        if self.path.exists() and self.path.stat().st_size:
            with self.path.open(newline="") as f:
                self.fields = next(csv.reader(f), None)

    def write(self, entry, rates: dict[str, float]) -> None:
        if dist.rank() != 0:
            return
        row = {"step": entry.step, **{f"loss.{k}": v for k, v in entry.losses.items()}, **entry.logs, **rates}
        new = self.fields is None
        if new:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
