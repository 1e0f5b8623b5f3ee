"""A topology as data: networks, momentum twins, state, phases (graphs) and after-step updates."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from archdsl.errors import Span
from archdsl.ir.graph import Graph


PENALTIES = ("r1", "wgan_gp")  # grad_penalty kinds (topology/runtime.py computes them)


@dataclass(frozen=True)
class EmaSpec:
    """A momentum twin of `source`: after each optimizer step,
    twin ← m · twin + (1 − m) · source, where m is the weight on the OLD value.
    schedule "constant" keeps m; "cosine" raises it from `momentum` to `end` over `total_steps`
    (BYOL/DINO: m_t = end − (end − momentum) · (cos(π t / T) + 1) / 2), t counted from
    start_step; "constant" uses m = 0 (a plain copy) while steps < start_step (BigGAN)."""
    source: str
    momentum: float
    schedule: str = "constant"
    end: float = 1.0
    total_steps: int = 1
    start_step: int = 0
    buffers: bool = False      # also average the buffers (BN statistics, SN vectors): BigGAN's ema
    with_phase: str | None = None  # update as this phase starts, not in after_step (StyleGAN's and
                                   # PGGAN's Gs_update_op, run with each D-step)


@dataclass
class NetDecl:
    name: str
    network: str                      # the network (or block) it builds (the source's, for twins)
    span: Span | None = None
    twin: EmaSpec | None = None
    frozen: bool = False              # `frozen(net)`: never trained, always in eval mode
    graphs: dict[tuple, Graph] = field(default_factory=dict)   # by input shapes

    @property
    def first_graph(self) -> Graph:
        return next(iter(self.graphs.values()))


@dataclass
class StateDecl:
    name: str
    shape: tuple[int, ...]
    init: Any            # a number, the name of an initialiser ("normal_l2", "uniform", …), or a
                         # schedule (LRSchedule): the state takes its value at every step
    dtype: str = "float32"
    span: Span | None = None
    trainable: bool = False    # `param logit_scale: [] = …` in a topology: an nn.Parameter, trained
                               # by the phases that list it in `update=[…]` (CLIP's temperature)


@dataclass
class Action:
    """An after-step update: `after enqueue(queue, ptr, k)`."""
    kind: str
    states: list[str]
    tensors: list[str]          # phase-graph node ids whose values are kept for the update
    options: dict[str, Any]
    span: Span | None = None


@dataclass
class Phase:
    name: str
    graph: Graph
    update: list[str]
    loss: str
    logs: dict[str, str]
    actions: list[Action]
    repeat: int = 1             # `times=k`: runs per round, e.g. k D-steps per G-step
    span: Span | None = None
    freeze: tuple = ()          # ((net, parameter path or prefix), …) kept out of the first steps
    freeze_steps: int = 0       # (SwAV freezes its prototypes for 313 iterations)
    params: tuple = ()          # topology-level parameters this phase trains (`update=[net, logit_scale]`)
    optimizer: Any = None       # `optimizer=adamw(...)`: an archdsl.ir.recipe.OptimizerSpec


@dataclass
class SpecRef:
    """What a topology was loaded from: a spec path or stdlib variant name (or `source` text),
    the variant, and the arguments given."""
    spec: str | None
    variant: str | None = None
    source: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TopologyIR:
    name: str
    variant: str | None
    nets: dict[str, NetDecl]
    states: dict[str, StateDecl]
    phases: dict[str, Phase]
    references: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)   # the topology's bound arguments
    spec: SpecRef | None = None  # where it was loaded from: grow() elaborates it again
    lr: Any = None               # `lr = cosine_lr(...)`: an archdsl.ir.schedule.LRSchedule
