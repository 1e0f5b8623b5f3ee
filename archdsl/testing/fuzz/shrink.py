"""Shrinking a case that fails to a small reproducer with the same signature."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

from archdsl.testing.fuzz.cases import TOKEN, Case
from archdsl.testing.fuzz.worker import Worker


def shrink(case: Case, sig: str, worker: Worker, timeout: float, budget_s: float = 30.0) -> Case:
    """The smallest text found (whole lines, then single tokens removed) with the same signature."""
    deadline = time.perf_counter() + budget_s

    def same(text: str) -> bool:
        if time.perf_counter() > deadline:
            return False
        out = worker.run(replace(case, text=text), timeout)
        return out.kind == "internal" and out.signature == sig

    lines = ddmin(case.text.splitlines(), lambda ls: same("\n".join(ls) + "\n"), deadline)
    tokens = ddmin(_units("\n".join(lines) + "\n"), lambda ts: same("".join(ts)), deadline)
    return replace(case, text="".join(tokens))


def _units(text: str) -> list[str]:
    """Tokens, each with the whitespace after it (so removing one never glues two together)."""
    units: list[str] = []
    for tok in TOKEN.findall(text):
        if tok.isspace() and units:
            units[-1] += tok
        else:
            units.append(tok)
    return units


def ddmin(items: list[str], keeps: Callable[[list[str]], bool], deadline: float) -> list[str]:
    """Delta debugging: drop ever smaller chunks while `keeps(rest)` holds."""
    chunk = max(1, len(items) // 2)
    while chunk >= 1 and time.perf_counter() < deadline:
        i, changed = 0, False
        while i < len(items) and time.perf_counter() < deadline:
            rest = items[:i] + items[i + chunk:]
            if rest and keeps(rest):
                items, changed = rest, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return items


# ---- the run --------------------------------------------------------------------------------
