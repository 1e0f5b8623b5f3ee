"""The evaluation budget of the spec interpreter: no spec can run for long or fill memory.

Each elaboration may spend `Limits.steps` units of work. A unit is one expression evaluated,
one loop iteration, or one element a step touches — comparing, sorting or testing membership
of nested values counts every element of both sides (rows shared by list repetition count
each time they are read), so `==` on a 10^6 × 10^6 list is refused before it starts. Graphs
hold at most `Limits.nodes` nodes, and a loop or repeat whose first iterations show it would
pass either limit is refused then, not when it reaches the limit.

The stdlib's largest variant spends about 14,000 steps and 1,300 nodes. A real spec that needs
more raises the limits with `$ARCHDSL_MAX_STEPS` / `$ARCHDSL_MAX_NODES` or, from Python,
`with archdsl.limits(steps=..., nodes=...):`.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

from archdsl.errors import ArchError, Span

HINT = ("check loop bounds, repeat counts and list sizes; a large real spec can raise the limit "
        "with ${env} or `archdsl.limits({field}=…)`")


@dataclass(frozen=True)
class Limits:
    steps: int = 2_000_000   # units of evaluation work per elaboration
    nodes: int = 50_000      # IR nodes in one graph
    repeat: int = 100_000    # the count of one `repeat`
    depth: int = 64          # nested block instances (catches unbounded recursion)


_ENV = {"steps": "ARCHDSL_MAX_STEPS", "nodes": "ARCHDSL_MAX_NODES"}
_override: Limits | None = None


def current() -> Limits:
    """The limits in force: `limits(...)` if inside one, else the defaults and the environment."""
    if _override is not None:
        return _override
    given = {}
    for field, var in _ENV.items():
        text = os.environ.get(var, "").replace("_", "")
        if text:
            if not text.isdigit() or int(text) < 1:
                raise ArchError(f"${var} must be a positive integer, got {os.environ[var]!r}")
            given[field] = int(text)
    return Limits(**given)


@contextmanager
def limits(**changes: int) -> Iterator[Limits]:
    """`with archdsl.limits(steps=10**8, nodes=10**6): archdsl.check_spec(...)`."""
    global _override
    saved = _override
    _override = replace(current(), **changes)
    try:
        yield _override
    finally:
        _override = saved


def deep_size(value, cap: int) -> int:
    """How many values a traversal of `value` touches (a list counts itself and each element,
    through nested lists), counted up to a little past `cap`. A list shared by repetition is
    measured once and counted each time it is reached, so `[[0] * 10**6] * 10**6` is known to
    be 10^12 after a million steps of C and a few of Python, not after 10^12."""
    if type(value) not in (list, tuple):
        return 1
    sizes: dict[int, int] = {}
    stack = [[value, iter(value), 1]]
    while stack:
        frame = stack[-1]
        for child in frame[1]:
            if type(child) not in (list, tuple):
                frame[2] += 1
                continue
            known = sizes.get(id(child))
            if known is None and _flat(child):
                known = sizes[id(child)] = 1 + len(child)
            if known is None:
                stack.append([child, iter(child), 1])
                break
            frame[2] += known
            if frame[2] > cap:
                return frame[2]
        else:
            stack.pop()
            sizes[id(frame[0])] = frame[2]
            if not stack:
                return frame[2]
            stack[-1][2] += frame[2]
    return 0  # pragma: no cover - the loop returns when the outermost list is done


def _flat(seq) -> bool:
    """True when no element is a list or tuple (checked in C: one pass of map(type, ·))."""
    kinds = set(map(type, seq))
    return list not in kinds and tuple not in kinds


class Budget:
    """The work spent by one elaboration, against its limits."""

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or current()
        self.steps = 0

    def charge(self, span: Span | None, work: int = 1, what: str | None = None) -> None:
        self.steps += work
        if self.steps > self.limits.steps:
            raise ArchError(f"the spec takes more than {self.limits.steps} steps to elaborate"
                            + (f": {what}" if what else ""), span,
                            hint=HINT.format(env=_ENV["steps"], field="steps"))

    def charge_values(self, span: Span | None, what: str, *values) -> None:
        """Charge for a step that walks every element of `values` (==, in, sorted, …)."""
        left = self.limits.steps - self.steps
        work = 0
        for v in values:
            work += deep_size(v, left - work)
        if work > 1000:  # name the construct only where it is the one spending
            self.charge(span, work, f"{what} touches {work:,}{'+' if work > left else ''} elements")
        else:
            self.charge(span, work)

    def check_nodes(self, count: int, span: Span | None) -> None:
        if count >= self.limits.nodes:
            raise ArchError(f"the graph has more than {self.limits.nodes} nodes", span,
                            hint=HINT.format(env=_ENV["nodes"], field="nodes"))

    def loop(self, count: int, what: str, span: Span | None) -> "LoopForecast":
        return LoopForecast(self, count, what, span)


class LoopForecast:
    """Refuses a loop early: once two iterations have run, the cheaper of them times the
    iterations left must fit in what remains of the budget."""

    def __init__(self, budget: Budget, count: int, what: str, span: Span | None):
        self.budget, self.count, self.what, self.span = budget, count, what, span
        self.costs: list[tuple[int, int]] = []

    def iteration(self, nodes_before: int, nodes_after: int, steps_before: int) -> None:
        if len(self.costs) >= 2:
            return
        self.costs.append((nodes_after - nodes_before, self.budget.steps - steps_before))
        if len(self.costs) < 2:
            return
        left = self.count - 2
        nodes = min(c[0] for c in self.costs) * left + nodes_after
        steps = min(c[1] for c in self.costs) * left + self.budget.steps
        limits = self.budget.limits
        if nodes > limits.nodes:
            raise ArchError(f"{self.what} would make about {nodes:,} nodes, more than the limit of "
                            f"{limits.nodes:,}", self.span,
                            hint=HINT.format(env=_ENV["nodes"], field="nodes"))
        if steps > limits.steps:
            raise ArchError(f"{self.what} would take about {steps:,} steps to elaborate, more than "
                            f"the limit of {limits.steps:,}", self.span,
                            hint=HINT.format(env=_ENV["steps"], field="steps"))
