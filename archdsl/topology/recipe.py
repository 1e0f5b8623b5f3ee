"""The training recipe as data: a phase's optimizer, its parameter groups and its schedules.

    phase train(update=[student], optimizer=adamw(lr=cosine_schedule(…), weight_decay=cosine_schedule(0.04, 0.4, …),
                                                  no_decay=true, clip_grad=3.0)) { … }

`TopologyModule.configure_optimizers()` builds one torch optimizer per phase that declares one,
and a `RecipeSchedule` that sets every group's learning rate and weight decay at step k
(`apply(k)`) and reads every scheduled value (`values(k)`: learning rates, weight decays, EMA
momenta, scheduled states such as DINO's teacher temperature).

Parameter groups: a parameter is named `net.path` (a topology-level parameter by its name);
the first `group(pattern, …)` whose pattern equals the name or a prefix of it (at a dot) gives
its learning-rate multiplier, fixed learning rate or weight decay. `no_decay=true` gives biases
(names ending in `.bias`) and parameters of at most one dimension (norm scales and shifts, CLIP's
logit_scale) no weight decay, and leaves them out of LARS's trust ratio: the rule of DINO's
`get_params_groups`, MAE's `add_weight_decay`, open_clip's `exclude` and SimCLR/BYOL's LARS
exclusions. Parameters with requires_grad=False (MAE's sin-cos tables, DINO's fixed weight_g)
are in no group.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from archdsl.topology.schedule import LRSchedule

if TYPE_CHECKING:  # torch is imported where the optimizers are built: checking a spec needs none
    import torch


@dataclass(frozen=True)
class Group:
    pattern: str
    lr_mult: float = 1.0
    weight_decay: float | None = None   # overrides the optimizer's (and no_decay) for the group
    fixed_lr: bool = False              # keeps the schedule's base (SimSiam's fix_pred_lr)


@dataclass(frozen=True)
class OptimizerSpec:
    kind: str                           # "sgd", "adam", "adamw", "lars", "larc"
    lr: float | LRSchedule
    weight_decay: float | LRSchedule = 0.0
    options: dict = field(default_factory=dict)
    no_decay: bool = False
    groups: tuple[Group, ...] = ()
    clip_grad: float = 0.0              # per-parameter gradient-norm clip (DINO's utils.clip_gradients)


def describe(spec: OptimizerSpec) -> str:
    """One line for `archdsl check`: the optimizer, its schedules and groups."""
    def show(v):
        return v.describe() if isinstance(v, LRSchedule) else f"{v:g}"
    parts = [f"lr {show(spec.lr)}", f"weight decay {show(spec.weight_decay)}"]
    parts += [f"{k} {v}" for k, v in spec.options.items()]
    if spec.no_decay:
        parts.append("no decay on biases and norm parameters")
    if spec.clip_grad:
        parts.append(f"per-parameter gradient clip {spec.clip_grad:g}")
    parts += [f"group {g.pattern}: lr × {g.lr_mult:g}" + (" (fixed)" if g.fixed_lr else "")
              + ("" if g.weight_decay is None else f", weight decay {g.weight_decay:g}") for g in spec.groups]
    return f"{spec.kind}: " + "; ".join(parts)


def _value(v, step: int) -> float:
    return v.at(step) if isinstance(v, LRSchedule) else float(v)


def _number(name: str, v, schedule_ok: bool = True):
    if isinstance(v, LRSchedule) and schedule_ok:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ValueError(f"{name} must be a number ≥ 0{' or a schedule' if schedule_ok else ''}, got {v!r}")
    return float(v)


def _spec(kind: str, lr, weight_decay, no_decay, groups, clip_grad, **options) -> OptimizerSpec:
    groups = tuple(groups or ())
    if not all(isinstance(g, Group) for g in groups):
        raise ValueError("groups lists group(\"net.path\", lr_mult=…) values")
    return OptimizerSpec(kind, _number("lr", lr), _number("weight_decay", weight_decay), options,
                         bool(no_decay), groups, _number("clip_grad", clip_grad, False))


def _betas(betas) -> tuple[float, float]:
    if not isinstance(betas, (list, tuple)) or len(betas) != 2 or not all(0 <= float(b) < 1 for b in betas):
        raise ValueError(f"betas is a pair of numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


def sgd(lr, momentum: float = 0.0, weight_decay=0.0, nesterov: bool = False, no_decay: bool = False,
        groups=(), clip_grad: float = 0.0) -> OptimizerSpec:
    """torch.optim.SGD (MoCo, SimSiam, SwAV's base): weight decay added to the gradient."""
    return _spec("sgd", lr, weight_decay, no_decay, groups, clip_grad,
                 momentum=_number("momentum", momentum, False), nesterov=bool(nesterov))


def adam(lr, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay=0.0, no_decay: bool = False,
         groups=(), clip_grad: float = 0.0, tf_eps: bool = False) -> OptimizerSpec:
    """torch.optim.Adam (GANs: betas (0.5, 0.999); StyleGAN (0, 0.99)). tf_eps: ε added to
    sqrt(v) before the step's bias correction, as tf.train.AdamOptimizer (the TensorFlow
    releases: StyleGAN, PGGAN) — torch's ε / sqrt(1 − β2^t) at step t."""
    if not isinstance(tf_eps, bool):
        raise ValueError("tf_eps is true or false")
    return _spec("adam", lr, weight_decay, no_decay, groups, clip_grad, betas=_betas(betas),
                 eps=_number("eps", eps, False), tf_eps=tf_eps)


def adamw(lr, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay=0.01, no_decay: bool = False,
          groups=(), clip_grad: float = 0.0) -> OptimizerSpec:
    """torch.optim.AdamW (DINO, MAE, BEiT, CLIP): decoupled weight decay."""
    return _spec("adamw", lr, weight_decay, no_decay, groups, clip_grad, betas=_betas(betas),
                 eps=_number("eps", eps, False))


def lars(lr, momentum: float = 0.9, weight_decay=0.0, eta: float = 0.001, no_decay: bool = True,
         lr_inside_momentum: bool = True, groups=(), clip_grad: float = 0.0) -> OptimizerSpec:
    """LARS (You et al. 2017) as SimCLR's lars_optimizer.py (lr_inside_momentum=true, its
    `classic_momentum`) or BYOL's optimizers.py (false: the learning rate scales the momentum
    buffer); see archdsl/topology/lars.py."""
    return _spec("lars", lr, weight_decay, no_decay, groups, clip_grad,
                 momentum=_number("momentum", momentum, False), eta=_number("eta", eta, False),
                 lr_inside_momentum=bool(lr_inside_momentum))


def larc(lr, momentum: float = 0.9, weight_decay=0.0, trust_coefficient: float = 0.001, groups=(),
         clip_grad: float = 0.0) -> OptimizerSpec:
    """SGD wrapped in apex's LARC (clip=False), as SwAV (see archdsl/topology/lars.py)."""
    return _spec("larc", lr, weight_decay, False, groups, clip_grad, momentum=_number("momentum", momentum, False),
                 trust_coefficient=_number("trust_coefficient", trust_coefficient, False))


def group(pattern: str, lr_mult: float = 1.0, weight_decay: float | None = None,
          fixed_lr: bool = False) -> Group:
    """`group("G.mapping", lr_mult=0.01)`: the parameters at or under a path (StyleGAN's mapping
    network), `group("predictor", fixed_lr=true)` (SimSiam), `group("net.x", weight_decay=0)`."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("a group's pattern is a \"net\" or \"net.path\" string")
    return Group(pattern, _number("lr_mult", lr_mult, False),
                 None if weight_decay is None else _number("weight_decay", weight_decay, False), bool(fixed_lr))


OPTIMIZERS = {"sgd": sgd, "adam": adam, "adamw": adamw, "lars": lars, "larc": larc, "group": group}


def _matches(pattern: str, name: str) -> bool:
    return name == pattern or name.startswith(pattern + ".")


def param_groups(spec: OptimizerSpec, named: list[tuple[str, torch.nn.Parameter]]) -> list[dict]:
    """The optimizer's groups: one per (declared group, decays) pair that holds parameters, in
    order of first appearance. Each carries its `names` and the recipe's fields."""
    out: dict[tuple[int, bool], dict] = {}
    for name, p in named:
        if not p.requires_grad:
            continue
        gi = next((i for i, g in enumerate(spec.groups) if _matches(g.pattern, name)), -1)
        decay = not (spec.no_decay and (p.ndim <= 1 or name.endswith(".bias")))
        g = spec.groups[gi] if gi >= 0 else Group("")
        entry = out.setdefault((gi, decay), {"params": [], "names": [], "lr_mult": g.lr_mult,
                                             "fixed_lr": g.fixed_lr, "decay": decay,
                                             "wd_override": g.weight_decay})
        entry["params"].append(p)
        entry["names"].append(name)
    return list(out.values())


def build_optimizer(spec: OptimizerSpec, named: list[tuple[str, torch.nn.Parameter]]) -> torch.optim.Optimizer:
    import torch
    groups = param_groups(spec, named)
    if not groups:
        raise ValueError("the phase trains no parameter")
    lr, wd, o = _value(spec.lr, 0), _value(spec.weight_decay, 0), spec.options
    if spec.kind == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=o["momentum"], weight_decay=wd, nesterov=o["nesterov"])
    elif spec.kind == "adam":
        opt = torch.optim.Adam(groups, lr=lr, betas=o["betas"], eps=o["eps"], weight_decay=wd)
    elif spec.kind == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, betas=o["betas"], eps=o["eps"], weight_decay=wd)
    elif spec.kind == "larc":
        from archdsl.topology.lars import LARC
        opt = LARC(groups, lr=lr, momentum=o["momentum"], weight_decay=wd, trust_coefficient=o["trust_coefficient"])
    else:
        from archdsl.topology.lars import LARS
        opt = LARS(groups, lr=lr, momentum=o["momentum"], weight_decay=wd, eta=o["eta"],
                   lr_inside_momentum=o["lr_inside_momentum"])
    if spec.clip_grad > 0:
        opt.register_step_pre_hook(lambda optimizer, args, kwargs: _clip_each(optimizer, spec.clip_grad))
    if o.get("tf_eps"):
        opt.register_step_pre_hook(lambda optimizer, args, kwargs: _tf_eps(optimizer, o["eps"]))
    return opt


def _tf_eps(optimizer: torch.optim.Optimizer, eps: float) -> None:
    """TensorFlow's Adam step, lr·sqrt(1 − β2^t)/(1 − β1^t) · m / (sqrt(v) + ε), is torch's with
    ε / sqrt(1 − β2^t) in place of ε (t: the step about to be taken)."""
    for g in optimizer.param_groups:
        state = optimizer.state.get(g["params"][0], {})
        t = int(state["step"]) + 1 if "step" in state else 1
        g["eps"] = eps / (1.0 - g["betas"][1] ** t) ** 0.5


def _clip_each(optimizer: torch.optim.Optimizer, clip: float) -> None:
    """DINO's utils.clip_gradients: each parameter's gradient scaled to norm ≤ clip on its own."""
    import torch
    with torch.no_grad():
        _clip_groups(optimizer.param_groups, clip)


def _clip_groups(groups, clip: float) -> None:
    for g in groups:
        for p in g["params"]:
            if p.grad is not None:
                coef = clip / (p.grad.norm(2) + 1e-6)
                if coef < 1:
                    p.grad.mul_(coef)


class RecipeSchedule:
    """The per-iteration values of a topology's recipe. Call `apply()` before each optimizer step
    (it reads the topology's step counter, advanced by `after_step()`), or `apply(k)`."""

    def __init__(self, topo, optimizers: dict[str, torch.optim.Optimizer], specs: dict[str, OptimizerSpec]):
        self.topo, self.optimizers, self.specs = topo, optimizers, specs

    def _step(self, step: int | None) -> int:
        return int(self.topo.steps) if step is None else int(step)

    def group_values(self, phase: str, group: dict, step: int | None = None) -> tuple[float, float]:
        """(lr, weight_decay) of one parameter group at `step`."""
        k, spec = self._step(step), self.specs[phase]
        base = spec.lr.base if isinstance(spec.lr, LRSchedule) and group["fixed_lr"] else _value(spec.lr, k)
        if group["wd_override"] is not None:
            wd = group["wd_override"]
        else:
            wd = _value(spec.weight_decay, k) if group["decay"] else 0.0
        return base * group["lr_mult"], wd

    def apply(self, step: int | None = None) -> None:
        for phase, opt in self.optimizers.items():
            for g in opt.param_groups:
                g["lr"], g["weight_decay"] = self.group_values(phase, g, step)

    def values(self, step: int | None = None) -> dict[str, Any]:
        """`{phase}.lr`, `{phase}.weight_decay` (of the phase's decayed parameters), `momentum.{twin}`
        and `state.{name}` of every scheduled state, at `step`."""
        k = self._step(step)
        out: dict[str, Any] = {}
        for phase, spec in self.specs.items():
            out[f"{phase}.lr"] = _value(spec.lr, k)
            out[f"{phase}.weight_decay"] = _value(spec.weight_decay, k)
        for twin in self.topo.twins():
            out[f"momentum.{twin}"] = self.topo.momentum(twin, k)
        for name, st in self.topo.ir.states.items():
            if isinstance(st.init, LRSchedule):
                out[f"state.{name}"] = st.init.at(k)
        return out
