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
    n = step + 1; the peak `base` = (d_model · warmup)^−0.5 is reached at n = warmup.
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

    def at(self, step: int) -> float:
        step = max(int(step), 0)
        if self.kind == "noam":
            n = step + 1
            return self.base * min((n / self.warmup) ** -0.5, n / self.warmup)
        if step < self.warmup:
            return self.base * (step + 1) / self.warmup
        if self.kind == "constant":
            return self.base
        t = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.final + (self.base - self.final) * (1 + math.cos(math.pi * t)) / 2

    def scale(self, step: int) -> float:
        return self.at(step) / self.base


def _check(base, warmup, total, final) -> None:
    if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= 0:
        raise ValueError(f"the peak learning rate must be a positive number, got {base!r}")
    for name, v in (("warmup", warmup), ("total", total)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} is a number of steps (an int ≥ 0), got {v!r}")
    if total < 1 or warmup > total:
        raise ValueError(f"need 0 ≤ warmup ≤ total and total ≥ 1, got warmup={warmup}, total={total}")
    if isinstance(final, bool) or not isinstance(final, (int, float)) or not 0 <= final <= base:
        raise ValueError(f"final must be in [0, base], got {final!r}")


def cosine_lr(base: float, warmup: int = 0, total: int = 1, final: float = 0.0) -> LRSchedule:
    """`lr = cosine_lr(0.1, warmup=5 * 5005, total=120 * 5005)`: linear warm-up over `warmup`
    steps to `base`, then half a cosine down to `final` at step `total`."""
    _check(base, warmup, total, final)
    return LRSchedule(float(base), "cosine", warmup, total, float(final))


def constant_lr(base: float, warmup: int = 0) -> LRSchedule:
    """`lr = constant_lr(1e-3, warmup=4000)`: optional linear warm-up, then `base`."""
    _check(base, warmup, max(warmup, 1), 0.0)
    return LRSchedule(float(base), "constant", warmup, max(warmup, 1), 0.0)


def noam_lr(d_model: int, warmup: int = 4000) -> LRSchedule:
    """`lr = noam_lr(512, warmup=4000)`: the Transformer's schedule (linear rise for `warmup`
    steps, then decay with the inverse square root of the step)."""
    if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1:
        raise ValueError(f"d_model must be a positive int, got {d_model!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup must be a positive int, got {warmup!r}")
    return LRSchedule((d_model * warmup) ** -0.5, "noam", warmup, warmup, 0.0)


SCHEDULES = {"cosine_lr": cosine_lr, "constant_lr": constant_lr, "noam_lr": noam_lr}
