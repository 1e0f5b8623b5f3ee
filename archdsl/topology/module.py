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
from typing import Callable, Iterator

import torch
from torch import nn

from archdsl.ir.topology import EmaSpec, TopologyIR
from archdsl.ir.updates import ACTIONS
from archdsl.lower.build import build, build_phase
from archdsl.topology import updates


class TopologyOutput(dict):
    """A phase's results: `.loss`, `.logs` (name → tensor) and `.phase`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class TopologyModule(nn.Module):
    def __init__(self, ir: TopologyIR, seed: int | None = None, reload: Callable | None = None):
        """`reload(ir.spec, input_shapes, **overrides)` elaborates the topology again (for grow())."""
        super().__init__()
        if seed is not None:
            torch.manual_seed(seed)
        object.__setattr__(self, "ir", ir)
        object.__setattr__(self, "_reload", reload)
        self.nets = nn.ModuleDict()
        for name, decl in ir.nets.items():
            if decl.twin is None:
                self.nets[name] = build(decl.first_graph)
        for name, decl in ir.nets.items():
            if decl.twin is not None:  # starts as an exact copy; never trained by gradients
                twin = copy.deepcopy(self.nets[decl.twin.source])
                twin.requires_grad_(False)
                self.nets[name] = twin
        for name, decl in ir.nets.items():
            if decl.frozen:  # a teacher: never trained, always in eval mode (see train())
                self.nets[name].requires_grad_(False).eval()
        self.state = nn.Module()
        for name, st in ir.states.items():
            if getattr(st, "trainable", False):  # a topology-level `param` (CLIP's logit_scale)
                self.state.register_parameter(name, nn.Parameter(updates.init_state(st.init, st.shape, st.dtype)))
            else:
                self.state.register_buffer(name, updates.init_state(st.init, st.shape, st.dtype))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self._build_phases()
        object.__setattr__(self, "_kept", {})
        with torch.no_grad():  # updates of a network's own parameters that also hold from the start
            for p in ir.phases.values():
                for a in p.actions:
                    if ACTIONS[a.kind].at_build:
                        updates.run_net(a.kind, self.nets[a.options["net"]], a.options)

    # ---- structure
    def _build_phases(self) -> None:
        object.__setattr__(self, "_phases", {n: build_phase(p.graph, self) for n, p in self.ir.phases.items()})
        object.__setattr__(self, "_carriers", {n: _carrying_nets(p) for n, p in self.ir.phases.items()})

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

    def train(self, mode: bool = True):
        """As nn.Module.train, but `frozen(...)` networks stay in eval mode."""
        super().train(mode)
        for name, decl in self.ir.nets.items():
            if decl.frozen:
                self.nets[name].eval()
        return self

    # ---- learning-rate schedule (`lr = cosine_lr(...)` in the spec; archdsl/ir/schedule.py)
    def lr_at(self, step: int | None = None) -> float | None:
        """The declared learning rate at `step` (default: the current step); None if undeclared."""
        if self.ir.lr is None:
            return None
        return self.ir.lr.at(int(self.steps) if step is None else step)

    def lr_scale(self, step: int | None = None) -> float:
        """lr_at(step) / the schedule's peak: the factor a loop with its own base rate applies."""
        if self.ir.lr is None:
            return 1.0
        return self.ir.lr.scale(int(self.steps) if step is None else step)

    # ---- running
    def forward(self, *inputs, phase: str | None = None) -> TopologyOutput:
        name = phase or self.phases[0]
        if name not in self.ir.phases:
            raise KeyError(f"no phase {name!r}; phases: {self.phases}")
        p = self.ir.phases[name]
        self._flush_stores(name)
        self._set_scheduled_states()
        for twin, spec in self.twins().items():
            if spec.with_phase == name:
                self._ema_update(twin, spec)
        carried = self._carried(name)
        others = [self.nets[n] for n, d in self.ir.nets.items()
                  if d.twin is None and n not in p.update and n not in self._carriers[name]]
        if p.freeze and self._step() < p.freeze_steps:  # `freeze=`: no gradient, no optimizer step
            others = others + [_Params(self.nets[n], prefix) for n, prefix in p.freeze]
        others = others + [_Params(self.state, n) for n, st in self.ir.states.items()
                           if getattr(st, "trainable", False) and n not in p.params]
        # a G-step leaves D's gradients untouched; a carried value stands in for its state
        with _no_grad_for(others), _reading(self._phases[name], carried):
            out = self._phases[name](*inputs)
        self._kept[name] = {k[5:]: v for k, v in out.items() if k.startswith("keep.")}
        logs = {k[4:]: v for k, v in out.items() if k.startswith("log.")}
        return TopologyOutput(loss=out["loss"], logs=logs, phase=name)

    @torch.no_grad()
    def _flush_stores(self, starting: str) -> None:
        """`after store(state, t)` of the phases run before `starting`: applied now (after their
        optimizer step), so a later phase of the same round reads them (Meta Pseudo Labels)."""
        for phase, kept in self._kept.items():
            if phase == starting:
                continue
            for action in self.ir.phases[phase].actions:
                if action.kind in ("store", "carry") and action.tensors[0] in kept:
                    updates.run("store", [getattr(self.state, action.states[0])],
                                [kept[action.tensors[0]]], action.options)  # after_step repeats it: same value

    def _carried(self, starting: str) -> dict[str, torch.Tensor]:
        """State name → the live tensor an earlier phase of this round carries to it (`after
        carry(state, t)`), for the phase `starting` to read in place of the state's stored value."""
        live, sources = {}, {}
        for phase, p in self.ir.phases.items():
            for action in p.actions:
                if action.kind == "carry" and phase != starting:
                    sources[action.states[0]] = phase
                    kept = self._kept.get(phase, {})
                    if action.tensors[0] in kept:
                        live[action.states[0]] = kept[action.tensors[0]]
        reads = {n.attrs["name"] for n in self.ir.phases[starting].graph.nodes() if n.kind == "state"}
        for state in sorted(reads & set(sources) - set(live)):
            raise RuntimeError(f"phase '{starting}' reads '{state}', which phase '{sources[state]}' carries "
                               f"to it: run '{sources[state]}' first in each round (schedule(): {self.schedule()})")
        return live

    def parameters(self, recurse: bool = True, phase: str | None = None) -> Iterator[nn.Parameter]:
        """All trained parameters, or only those the given phase trains (twins never; nor frozen
        tensors such as MAE's sin-cos tables or DINO's fixed weight_g)."""
        if phase is None:
            yield from (p for p in super().parameters(recurse) if p.requires_grad)
            return
        yield from (p for _, p in self.named_parameters_of(phase))

    def named_parameters_of(self, phase: str) -> list[tuple[str, nn.Parameter]]:
        """("net.path", parameter) of every tensor the phase trains; a topology-level parameter
        (listed in `update=[…]`) by its own name."""
        out = [(f"{n}.{k}", p) for n in self.ir.phases[phase].update
               for k, p in self.nets[n].named_parameters() if p.requires_grad]
        return out + [(n, getattr(self.state, n)) for n in self.ir.phases[phase].params]

    def configure_optimizers(self):
        """The recipe's optimizers, one per phase that declares `optimizer=…`, and the
        RecipeSchedule that sets their learning rates and weight decays for a step
        (archdsl/topology/recipe.py). Call `schedule.apply()` before each optimizer step."""
        from archdsl.topology.recipe import RecipeSchedule, build_optimizer
        specs = {n: p.optimizer for n, p in self.ir.phases.items() if p.optimizer is not None}
        if not specs:
            raise ValueError(f"topology '{self.ir.name}' declares no optimizer "
                             "(a phase option: `optimizer=sgd(lr=0.03, momentum=0.9)`)")
        optimizers = {n: build_optimizer(spec, self.named_parameters_of(n)) for n, spec in specs.items()}
        schedule = RecipeSchedule(self, optimizers, specs)
        schedule.apply()
        return optimizers, schedule

    @torch.no_grad()
    def _set_scheduled_states(self) -> None:
        """States declared with a schedule (`state teacher_temp: [] = warmup_schedule(…)`) take its
        value at the current step."""
        from archdsl.ir.schedule import LRSchedule
        for name, st in self.ir.states.items():
            if isinstance(st.init, LRSchedule):
                getattr(self.state, name).fill_(st.init.at(self._step()))

    def _step(self) -> int:
        """The optimizer steps taken (0 on the meta device, where a module is only shaped)."""
        return 0 if self.steps.is_meta else int(self.steps)

    def momentum(self, twin: str, step: int | None = None) -> float:
        """The EMA weight on the old value at `step` (default: the current step)."""
        spec = self.ir.nets[twin].twin
        step = int(self.steps) if step is None else int(step)
        if spec.schedule == "constant":  # m = 0 (a plain copy) before start_step (BigGAN's G-EMA)
            return 0.0 if step < spec.start_step else spec.momentum
        t = min(max(step - spec.start_step, 0), spec.total_steps) / spec.total_steps
        return spec.end - (spec.end - spec.momentum) * (math.cos(math.pi * t) + 1) / 2

    @torch.no_grad()
    def after_step(self) -> None:
        """Once per optimizer step: EMA twins ← m·twin + (1−m)·source (those without `with_phase`),
        then the phases' updates."""
        for name, spec in self.twins().items():
            if spec.with_phase is None:
                self._ema_update(name, spec)
        for phase, kept in self._kept.items():
            for action in self.ir.phases[phase].actions:
                states = [getattr(self.state, s) for s in action.states]
                tensors = [kept[t] for t in action.tensors]
                if ACTIONS[action.kind].n_nets:
                    updates.run_net(action.kind, self.nets[action.options["net"]], action.options)
                    continue
                updates.run(action.kind, states, tensors, action.options)
        self._kept.clear()
        self.steps += 1


    @torch.no_grad()
    def _ema_update(self, name: str, spec: EmaSpec) -> None:
        m = self.momentum(name, self._step())
        twin, source = self.nets[name], self.nets[spec.source]
        for tp, sp in zip(twin.parameters(), source.parameters()):
            tp.mul_(m).add_(sp.detach(), alpha=1.0 - m)
        if spec.buffers:  # an integer buffer takes the formula's value truncated, as copy_ does
            for tb, sb in zip(twin.buffers(), source.buffers()):
                tb.copy_(tb * m + sb * (1.0 - m))

    # ---- progressive growth (PGGAN)
    def grow(self, **overrides) -> list[str]:
        """Progressive growing (Karras et al. 2018): re-elaborate the topology with its `res`
        argument one larger (or with `overrides`), build the new networks, and copy into them
        every parameter, buffer and state whose name and shape are unchanged — the trained
        layers keep their weights; the next resolution's layers are new. The fade-in starts:
        the state `alpha` (when declared) is set to 0. Returns the names of the new entries.
        Optimizers hold the old parameters: build them again after growing."""
        if self._reload is None or self.ir.spec is None:
            raise RuntimeError("this topology was not elaborated from a spec; it cannot grow")
        if not overrides:
            if "res" not in self.ir.args:
                raise ValueError("grow() without arguments increases the topology's `res`; "
                                 f"'{self.ir.name}' has no such parameter")
            overrides = {"res": self.ir.args["res"] + 1}
        shapes = [tuple(self._input_shape(n)) for n in self._input_names()]
        ir = self._reload(self.ir.spec, None, **overrides)
        if shapes:   # keep the batch sizes this module was built with
            new = [tuple(s) for s in _input_shapes(ir)]
            if [s[0] for s in new] != [s[0] for s in shapes]:
                ir = self._reload(self.ir.spec, [(s[0], *n[1:]) for s, n in zip(shapes, new)], **overrides)
        ref = next(iter(self.state_dict().values()), torch.zeros(()))
        grown = TopologyModule(ir).to(ref.device)
        old = self.state_dict()
        mine = grown.state_dict()
        fresh = [k for k, v in mine.items() if k not in old or old[k].shape != v.shape]
        with torch.no_grad():
            for k, v in mine.items():
                if k not in fresh:
                    v.copy_(old[k])
        object.__setattr__(self, "ir", ir)
        for name, child in list(grown.named_children()):   # nets, state and any other holder
            setattr(self, name, child)
        for n, d in ir.nets.items():
            if d.twin is not None:
                self.nets[n].requires_grad_(False)
        if hasattr(self.state, "alpha"):
            self.state.alpha.fill_(0.0)
        self._build_phases()
        self._kept.clear()
        return fresh

    def progress(self, images: int) -> bool:
        """PGGAN's schedule (schedule.progressive_schedule over the topology's `max_res`,
        `training_kimg`, `transition_kimg`) after `images` training images: grow() as far as its
        resolution and set alpha. True when the networks grew: build the optimizers again (the
        release resets Adam's state at each new resolution too)."""
        from archdsl.ir.schedule import progressive_schedule
        args = self.ir.args
        missing = [a for a in ("res", "max_res", "training_kimg", "transition_kimg") if a not in args]
        if missing or not hasattr(self.state, "alpha"):
            raise ValueError(f"topology '{self.ir.name}' has no progressive schedule (needs the parameters "
                             f"res, max_res, training_kimg, transition_kimg and `state alpha`)")
        res, alpha = progressive_schedule(images, args["max_res"], 2, args["training_kimg"], args["transition_kimg"])
        grew = res > args["res"]
        if grew:
            self.grow(res=res)
        self.set_alpha(alpha)
        return grew

    def set_alpha(self, alpha: float) -> None:
        """The fade-in weight of the newest layers (state `alpha`): 0 = the previous resolution's
        path only, 1 = the new layers only. A state, never a trained parameter."""
        if not hasattr(self.state, "alpha"):
            raise ValueError(f"topology '{self.ir.name}' declares no `state alpha`")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.state.alpha.fill_(float(alpha))

    def _input_names(self) -> list[str]:
        return list(next(iter(self.ir.phases.values())).graph.inputs)

    def _input_shape(self, name: str):
        return next(iter(self.ir.phases.values())).graph.node(name).shape


def _input_shapes(ir: TopologyIR) -> list[tuple[int, ...]]:
    graph = next(iter(ir.phases.values())).graph
    return [tuple(graph.node(i).shape) for i in graph.inputs]


class _Params:
    """The parameters of `net` at `prefix` or under it, for _no_grad_for."""

    def __init__(self, net: nn.Module, prefix: str):
        self.net, self.prefix = net, prefix

    def parameters(self):
        return (p for k, p in self.net.named_parameters()
                if k == self.prefix or k.startswith(self.prefix + "."))


def _carrying_nets(phase) -> set[str]:
    """The networks whose outputs the phase carries to a later one (`after carry`): they keep
    their gradient path in this phase although it does not update them."""
    import networkx as nx
    out = set()
    for action in phase.actions:
        if action.kind == "carry":
            for node in nx.ancestors(phase.graph.g, action.tensors[0]) | {action.tensors[0]}:
                if phase.graph.node(node).kind == "net":
                    out.add(phase.graph.node(node).attrs["name"])
    return out


@contextlib.contextmanager
def _reading(phase: nn.Module, carried: dict[str, torch.Tensor]):
    """The phase's forward reads each carried tensor where it reads that state."""
    if not carried:
        yield
        return
    held = {name: phase.state._buffers[name] for name in carried}
    phase.state._buffers.update(carried)
    try:
        yield
    finally:
        phase.state._buffers.update(held)


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
