"""The training recipe at run time: a phase's torch optimizer, its parameter groups and the
per-step values of its schedules (the recipe itself, as data, is archdsl/ir/recipe.py).

`TopologyModule.configure_optimizers()` builds one torch optimizer per phase that declares one,
and a `RecipeSchedule` that sets every group's learning rate and weight decay at step k
(`apply(k)`) and reads every scheduled value (`values(k)`: learning rates, weight decays, EMA
momenta, scheduled states such as DINO's teacher temperature).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from archdsl.ir.recipe import Group, OptimizerSpec
from archdsl.ir.schedule import LRSchedule

if TYPE_CHECKING:  # torch is imported where the optimizers are built: checking a spec needs none
    import torch


def _value(v, step: int) -> float:
    return v.at(step) if isinstance(v, LRSchedule) else float(v)


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
        opt = torch.optim.Adam(groups, lr=lr, betas=o["betas"], eps=o["eps"], weight_decay=wd,
                               amsgrad=o.get("amsgrad", False))
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
    if spec.clip_norm > 0:
        opt.register_step_pre_hook(lambda optimizer, args, kwargs: _clip_norm(optimizer, spec.clip_norm))
    if o.get("tf_eps"):
        opt.register_step_pre_hook(lambda optimizer, args, kwargs: _tf_eps(optimizer, o["eps"]))
    return opt


def _clip_norm(optimizer: torch.optim.Optimizer, clip: float) -> None:
    """BEiT's NativeScalerWithGradNormCount: torch's clip_grad_norm_ over every parameter at once."""
    import torch
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip)


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
