"""Learning-rate schedules a topology declares as data: `lr = cosine_lr(0.1, warmup=5, total=120)`.

The schedule is a pure function of the optimizer step (0-based). `TopologyModule.lr_at(step)` gives
the declared learning rate; `lr_scale(step)` the same divided by the peak `base`, which the
training loop (archdsl/topology/train.py) multiplies into its own learning rate each step.

cosine (Bag of Tricks, He et al. 2019, §3.1 and §5.1; SGDR, Loshchilov & Hutter 2017):
    warm-up   step < warmup:  lr = base · (step + 1) / warmup        (linear, reaches base at the
                                                                      last warm-up step)
    decay     step ≥ warmup:  t = (step − warmup) / (total − warmup),
                              lr = final + (base − final) · (1 + cos(π · min(t, 1))) / 2
so lr(warmup) = base and lr(total) = lr(after total) = final (0 by default).
constant: lr = base at every step (with the same optional linear warm-up).
noam (Vaswani et al. 2017, §5.3, eq. 3): lr = d_model^−0.5 · min(n^−0.5, n · warmup^−1.5) with
    n = step + 1; the peak `base` = (d_model · warmup)^−0.5 is reached at n = warmup. With
    warmup_style "linear", n = step and step 0 runs at `start` (CDCK2's ScheduledOptim sets the
    rate after each step, so its first step runs at the optimizer's own initial rate).

The recipes' schedules (`cosine_schedule`, `warmup_schedule`) follow the official codes' own
conventions, named by `warmup_style` (u = the step counted in units of `every` steps):
    "linspace"  start + (base − start) · u / (warmup − 1)   DINO/SwAV `cosine_scheduler`
                                                           (np.linspace: base at u = warmup − 1)
    "linear"    start + (base − start) · u / warmup         MAE `lr_sched`, SimCLR, BYOL
    "next"      base · (u + 1) / warmup                     Bag of Tricks, open_clip `cosine_lr`
then for u ≥ warmup the cosine of (u − warmup) / (total − warmup) down to `final`. `every`
holds the value for that many steps: `every = steps_per_epoch` is a per-epoch schedule (MoCo's
and SimSiam's `adjust_learning_rate`, DINO's teacher-temperature warm-up), with `warmup` and
`total` then counted in epochs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LRSchedule:
    base: float
    kind: str = "cosine"
    warmup: int = 0
    total: int = 1
    final: float = 0.0
    start: float = 0.0
    warmup_style: str = "next"
    every: int = 1
    milestones: tuple = ()      # kind "step": × gamma at each milestone reached
    gamma: float = 0.1
    decay: int = 0              # kind "linear_decay": base for `total` units, then down over `decay`
    offset: int = 1             # its epoch_count

    def at(self, step: int) -> float:
        step = max(int(step), 0) // self.every
        if self.kind == "noam":
            n = step + (self.warmup_style == "next")
            return self.base * min((n / self.warmup) ** -0.5, n / self.warmup) if n else self.start
        if step < self.warmup:
            done = {"next": (step + 1) / self.warmup, "linear": step / self.warmup,
                    "linspace": step / max(self.warmup - 1, 1)}[self.warmup_style]
            return self.start + (self.base - self.start) * done
        if self.kind == "constant":
            return self.base
        if self.kind == "step":
            return self.base * self.gamma ** sum(step >= m for m in self.milestones)
        if self.kind == "linear_decay":
            return self.base * (1.0 - max(0, step + self.offset - self.total) / (self.decay + 1))
        t = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.final + (self.base - self.final) * (1 + math.cos(math.pi * t)) / 2

    def scale(self, step: int) -> float:
        return self.at(step) / self.base

    def describe(self) -> str:
        unit = "steps" if self.every == 1 else f"× {self.every} steps"
        warm = (f", warm-up {self.warmup} {unit} from {self.start:g} ({self.warmup_style})"
                if self.warmup and self.kind != "noam" else "")
        if self.kind == "cosine":
            return f"cosine {self.base:g} → {self.final:g} over {self.total} {unit}{warm}"
        if self.kind == "step":
            return f"{self.base:g} × {self.gamma:g} at {list(self.milestones)} ({unit})"
        if self.kind == "noam":
            late = self.warmup_style == "linear"
            return f"noam, peak {self.base:g} at step {self.warmup + late}" + (
                f" (step 0 at {self.start:g})" if late else "")
        if self.kind == "linear_decay":
            return f"{self.base:g} for {self.total}, then linear to 0 over {self.decay} ({unit})"
        return f"constant {self.base:g}{warm}"


def _check(base, warmup, total, final, floor: float = 0.0) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= floor:
        raise ValueError(f"the peak value must be a number above {floor}, got {base!r}")
    for name, v in (("warmup", warmup), ("total", total)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} is a number of steps (an int ≥ 0), got {v!r}")
    if total < 1 or warmup > total:
        raise ValueError(f"need 0 ≤ warmup ≤ total and total ≥ 1, got warmup={warmup}, total={total}")
    if isinstance(final, bool) or not isinstance(final, (int, float)) or final < 0:
        raise ValueError(f"final must be a number ≥ 0, got {final!r}")


def cosine_lr(base: float, warmup: int = 0, total: int = 1, final: float = 0.0) -> LRSchedule:
    """`lr = cosine_lr(0.1, warmup=5 * 5005, total=120 * 5005)`: linear warm-up over `warmup`
    steps to `base`, then half a cosine down to `final` at step `total`."""
    _check(base, warmup, total, final)
    if final > base:
        raise ValueError(f"final must be in [0, base], got {final!r}")
    return LRSchedule(float(base), "cosine", warmup, total, float(final))


def constant_lr(base: float, warmup: int = 0) -> LRSchedule:
    """`lr = constant_lr(1e-3, warmup=4000)`: optional linear warm-up, then `base`."""
    _check(base, warmup, max(warmup, 1), 0.0)
    return LRSchedule(float(base), "constant", warmup, max(warmup, 1), 0.0)


def noam_lr(d_model: int, warmup: int = 4000, warmup_style: str = "next", start: float = 0.0) -> LRSchedule:
    """`lr = noam_lr(512, warmup=4000)`: the Transformer's schedule (linear rise for `warmup`
    steps, then decay with the inverse square root of the step). `warmup_style="linear",
    start=1e-3`: one step later, the first at `start` (CDCK2)."""
    if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
        raise ValueError(f"d_model must be a positive int, got {d_model!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup must be a positive int, got {warmup!r}")
    if warmup_style not in ("next", "linear"):
        raise ValueError(f"noam_lr's warmup_style is next or linear, got {warmup_style!r}")
    _recipe_check(warmup_style, 1, start)
    return LRSchedule((d_model * warmup) ** -0.5, "noam", warmup, warmup, 0.0, float(start), warmup_style)


WARMUP_STYLES = ("linspace", "linear", "next")


def _recipe_check(warmup_style: str, every: int, start) -> None:
    if warmup_style not in WARMUP_STYLES:
        raise ValueError(f"warmup_style is one of {', '.join(WARMUP_STYLES)}, got {warmup_style!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every is a number of steps (an int ≥ 1), got {every!r}")
    if isinstance(start, bool) or not isinstance(start, (int, float)):
        raise ValueError(f"start must be a number, got {start!r}")


def cosine_schedule(base: float, final: float = 0.0, total: int = 1, warmup: int = 0, start: float = 0.0,
                    warmup_style: str = "linspace", every: int = 1) -> LRSchedule:
    """`cosine_schedule(0.0005 * batch / 256, 1e-6, total=epochs * ipe, warmup=10 * ipe)`: a
    learning rate, weight decay (0.04 → 0.4: final may exceed base) or any value stepped per
    iteration — warm-up from `start`, then half a cosine from `base` to `final` at `total`."""
    _check(base, warmup, total, final, floor=-math.inf)
    _recipe_check(warmup_style, every, start)
    return LRSchedule(float(base), "cosine", warmup, total, float(final), float(start), warmup_style, every)


def warmup_schedule(base: float, warmup: int = 0, start: float = 0.0, warmup_style: str = "linspace",
                    every: int = 1) -> LRSchedule:
    """`warmup_schedule(0.07, warmup=30, start=0.04, every=ipe)`: from `start` to `base` over
    `warmup` units, then `base` (DINO's teacher temperature, warmed per epoch)."""
    _check(base, warmup, max(warmup, 1), 0.0, floor=-math.inf)
    _recipe_check(warmup_style, every, start)
    return LRSchedule(float(base), "constant", warmup, max(warmup, 1), 0.0, float(start), warmup_style, every)


def step_schedule(base: float, milestones=(), gamma: float = 0.1, every: int = 1) -> LRSchedule:
    """`step_schedule(0.03, milestones=[120, 160], gamma=0.1, every=ipe)`: `base` multiplied by
    `gamma` at each milestone reached (MoCo v1's `--schedule 120 160`)."""
    _check(base, 0, 1, 0.0)
    _recipe_check("linear", every, 0.0)
    if not isinstance(milestones, (list, tuple)) or any(isinstance(m, bool) or not isinstance(m, int) or m < 0
                                                        for m in milestones):
        raise ValueError(f"milestones is a list of steps (ints ≥ 0), got {milestones!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma <= 0:
        raise ValueError(f"gamma must be a positive number, got {gamma!r}")
    return LRSchedule(float(base), "step", 0, 1, 0.0, 0.0, "linear", every, tuple(milestones), float(gamma))


def linear_decay_schedule(base: float, n_epochs: int = 100, n_epochs_decay: int = 100, epoch_count: int = 1,
                          every: int = 1) -> LRSchedule:
    """`linear_decay_schedule(2e-4, 100, 100, every=ipe)`: pytorch-CycleGAN-and-pix2pix's `linear`
    policy (models/networks.py get_scheduler): in epoch u (0-based, u = step // every) the rate is
    base · (1 − max(0, u + epoch_count − n_epochs) / (n_epochs_decay + 1)) — its LambdaLR after u
    scheduler steps, as train.py steps it at the end of each epoch (a loop that steps it at the
    start of each epoch is epoch_count + 1)."""
    _check(base, 0, 1, 0.0)
    _recipe_check("linear", every, 0.0)
    for name, n in (("n_epochs", n_epochs), ("n_epochs_decay", n_epochs_decay), ("epoch_count", epoch_count)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} is a count (an int ≥ 0), got {n!r}")
    return LRSchedule(float(base), "linear_decay", 0, n_epochs, 0.0, 0.0, "linear", every,
                      decay=n_epochs_decay, offset=epoch_count)


def progressive_schedule(images: int, max_res: int, start_res: int = 2, training_kimg: float = 600.0,
                         transition_kimg: float = 600.0) -> tuple[int, float]:
    """PGGAN's level of detail after `images` training images (tkarras/progressive_growing_of_gans
    train.py TrainingSchedule): phases of `training_kimg` thousand images at a resolution, then
    `transition_kimg` fading in the next one. Returns (res, alpha): the resolution 2^res the
    networks run at and the fade-in weight of its newest layers (1 when stable) — lod =
    max_res − start_res − phase − max(kimg_in_phase − training_kimg, 0) / transition_kimg, floored
    at 0; res = max_res − floor(lod), alpha = 1 − (lod − floor(lod))."""
    kimg = images / 1000.0
    phase_dur = training_kimg + transition_kimg
    phase = int(math.floor(kimg / phase_dur)) if phase_dur > 0 else 0
    lod = float(max_res - start_res - phase)
    if transition_kimg > 0:
        lod -= max(kimg - phase * phase_dur - training_kimg, 0.0) / transition_kimg
    lod = max(lod, 0.0)
    return max_res - int(math.floor(lod)), 1.0 - (lod - math.floor(lod))


SCHEDULES = {"cosine_lr": cosine_lr, "constant_lr": constant_lr, "noam_lr": noam_lr,
             "cosine_schedule": cosine_schedule, "warmup_schedule": warmup_schedule, "step_schedule": step_schedule,
             "linear_decay_schedule": linear_decay_schedule}
