"""The training recipe as data: a phase's optimizer, its parameter groups and its schedules.

    phase train(update=[student], optimizer=adamw(lr=cosine_schedule(…), weight_decay=cosine_schedule(0.04, 0.4, …),
                                                  no_decay=true, clip_grad=3.0)) { … }

archdsl/topology/recipe.py builds the torch optimizers and steps the schedules.

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

from archdsl.ir.schedule import LRSchedule


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
    clip_norm: float = 0.0              # one norm over every parameter (torch's clip_grad_norm_: BEiT)


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
    if spec.clip_norm:
        parts.append(f"gradient norm clip {spec.clip_norm:g}")
    parts += [f"group {g.pattern}: lr × {g.lr_mult:g}" + (" (fixed)" if g.fixed_lr else "")
              + ("" if g.weight_decay is None else f", weight decay {g.weight_decay:g}") for g in spec.groups]
    return f"{spec.kind}: " + "; ".join(parts)


def _number(name: str, v, schedule_ok: bool = True):
    if isinstance(v, LRSchedule) and schedule_ok:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ValueError(f"{name} must be a number ≥ 0{' or a schedule' if schedule_ok else ''}, got {v!r}")
    return float(v)


def _spec(kind: str, lr, weight_decay, no_decay, groups, clip_grad, clip_norm=0.0, **options) -> OptimizerSpec:
    groups = tuple(groups or ())
    if not all(isinstance(g, Group) for g in groups):
        raise ValueError("groups lists group(\"net.path\", lr_mult=…) values")
    return OptimizerSpec(kind, _number("lr", lr), _number("weight_decay", weight_decay), options,
                         bool(no_decay), groups, _number("clip_grad", clip_grad, False),
                         _number("clip_norm", clip_norm, False))


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
         groups=(), clip_grad: float = 0.0, clip_norm: float = 0.0, amsgrad: bool = False,
         tf_eps: bool = False) -> OptimizerSpec:
    """torch.optim.Adam (GANs: betas (0.5, 0.999); StyleGAN (0, 0.99); CDCK2: amsgrad). tf_eps: ε
    added to sqrt(v) before the step's bias correction, as tf.train.AdamOptimizer (the TensorFlow
    releases: StyleGAN, PGGAN) — torch's ε / sqrt(1 − β2^t) at step t."""
    if not isinstance(tf_eps, bool):
        raise ValueError("tf_eps is true or false")
    return _spec("adam", lr, weight_decay, no_decay, groups, clip_grad, clip_norm, betas=_betas(betas),
                 eps=_number("eps", eps, False), tf_eps=tf_eps, **({"amsgrad": True} if amsgrad else {}))


def adamw(lr, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay=0.01, no_decay: bool = False,
          groups=(), clip_grad: float = 0.0, clip_norm: float = 0.0) -> OptimizerSpec:
    """torch.optim.AdamW (DINO, MAE, BEiT, CLIP): decoupled weight decay. `clip_grad` clips each
    parameter's gradient on its own (DINO), `clip_norm` all of them by their joint norm (BEiT)."""
    return _spec("adamw", lr, weight_decay, no_decay, groups, clip_grad, clip_norm, betas=_betas(betas),
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
