"""TopologyModule: the run-time form of a topology spec.

    topo = load_spec("stdlib/ssl/moco.arch", encoder="resnet18")
    opt = torch.optim.SGD(topo.parameters(phase="train"), lr=0.03, momentum=0.9)
    out = topo(x_q, x_k)                  # one phase: .loss and logged values
    out.loss.backward(); opt.step(); opt.zero_grad()
    topo.after_step()                     # EMA twins, queues, centres — once per optimizer step
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Iterator

import torch
from torch import nn

from archdsl.lower.build import build, build_phase
from archdsl.topology import updates
from archdsl.topology.ir import EmaSpec, TopologyIR


class TopologyOutput(dict):
    """A phase's results: `.loss`, `.logs` (name → tensor) and `.phase`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TopologyModule(nn.Module):
    def __init__(self, ir: TopologyIR, seed: int | None = None):
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        object.__setattr__(self, "ir", ir)
        self.nets = nn.ModuleDict()
        for name, decl in ir.nets.items():
            if decl.twin is None:
                self.nets[name] = build(decl.first_graph)
        for name, decl in ir.nets.items():
            if decl.twin is not None:  # starts as an exact copy; never trained by gradients
                twin = copy.deepcopy(self.nets[decl.twin.source])
                twin.requires_grad_(False)
                self.nets[name] = twin
        self.state = nn.Module()
        for name, st in ir.states.items():
            self.state.register_buffer(name, updates.init_state(st.init, st.shape, st.dtype))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._build_phases()
        object.__setattr__(self, "_kept", {})

    # ---- structure
    def _build_phases(self) -> None:
        object.__setattr__(self, "_phases", {n: build_phase(p.graph, self) for n, p in self.ir.phases.items()})

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._build_phases()  # the phase graphs hold references to the moved state buffers
        return self

    @property
    def phases(self) -> list[str]:
        return list(self.ir.phases)

    def schedule(self) -> list[str]:
        """One round of phases: each phase `times` times (k D-steps per G-step)."""
        return [name for name, p in self.ir.phases.items() for _ in range(p.repeat)]

    def phase_code(self, phase: str) -> str:
        return self._phases[phase].code

    def twins(self) -> dict[str, EmaSpec]:
        return {n: d.twin for n, d in self.ir.nets.items() if d.twin is not None}

    # ---- running
    def forward(self, *inputs, phase: str | None = None) -> TopologyOutput:
        name = phase or self.phases[0]
        if name not in self.ir.phases:
            raise KeyError(f"no phase {name!r}; phases: {self.phases}")
        p = self.ir.phases[name]
        others = [self.nets[n] for n, d in self.ir.nets.items() if d.twin is None and n not in p.update]
        with _no_grad_for(others):  # a G-step leaves D's gradients untouched
            out = self._phases[name](*inputs)
        self._kept[name] = {k[5:]: v for k, v in out.items() if k.startswith("keep.")}
        logs = {k[4:]: v for k, v in out.items() if k.startswith("log.")}
        return TopologyOutput(loss=out["loss"], logs=logs, phase=name)

    def parameters(self, recurse: bool = True, phase: str | None = None) -> Iterator[nn.Parameter]:
        """All parameters, or only those the given phase trains (twins never)."""
        if phase is None:
            yield from (p for p in super().parameters(recurse) if p.requires_grad)
            return
        for n in self.ir.phases[phase].update:
            yield from self.nets[n].parameters()

    def momentum(self, twin: str) -> float:
        """The EMA weight on the old value at the current step."""
        spec = self.ir.nets[twin].twin
        if spec.schedule == "constant":
            return spec.momentum
        t = min(max(int(self.steps) - spec.start_step, 0), spec.total_steps) / spec.total_steps
        return spec.end - (spec.end - spec.momentum) * (math.cos(math.pi * t) + 1) / 2

    @torch.no_grad()
    def after_step(self) -> None:
        """Once per optimizer step: EMA twins ← m·twin + (1−m)·source, then the phases' updates."""
        for name, spec in self.twins().items():
            m = self.momentum(name)
            twin, source = self.nets[name], self.nets[spec.source]
            for tp, sp in zip(twin.parameters(), source.parameters()):
                tp.mul_(m).add_(sp.detach(), alpha=1.0 - m)
        for phase, kept in self._kept.items():
            for action in self.ir.phases[phase].actions:
                states = [getattr(self.state, s) for s in action.states]
                tensors = [kept[t] for t in action.tensors]
                updates.run(action.kind, states, tensors, action.options)
        self._kept.clear()
        self.steps += 1


@contextlib.contextmanager
def _no_grad_for(modules):
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
