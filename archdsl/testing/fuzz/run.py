"""A fuzzing run: cases handed to the workers, their outcomes counted, internal errors shrunk, and
the summary printed."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import wait

from archdsl.testing.fuzz.cases import Case, Corpus, make_case
from archdsl.testing.fuzz.shrink import shrink
from archdsl.testing.fuzz.worker import Outcome, Worker, hard_limit


@dataclass
class Report:
    seed: int
    cases: int = 0
    seconds: float = 0.0      # wall clock
    cpu: float = 0.0          # the workers' CPU time in cases
    kinds: Counter = field(default_factory=Counter)
    built: int = 0
    slow: list[tuple[float, int, str, str]] = field(default_factory=list)    # (s, index, origin, kind)
    internal: dict[str, list[tuple[int, Case, Outcome]]] = field(default_factory=dict)
    timeouts: list[tuple[int, Case]] = field(default_factory=list)
    shrunk: dict[str, Case] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return bool(self.internal or self.timeouts)


def fuzz(cases: int, seconds: float = float("inf"), seed: int = 0, *, build_fraction: float = 0.25,
         snippets: float = 0.45,
         timeout: float = 10.0, slow: float = 1.0, jobs: int = 1, memory_limit: int = 4 << 30,
         shrink_budget: float = 30.0, progress=None) -> Report:
    """Run cases 0..cases-1 of `seed` (or as many as `seconds` allows) and classify each."""
    corpus = Corpus()
    report = Report(seed)
    workers = [Worker(memory_limit, build_fraction > 0) for _ in range(max(1, jobs))]
    start = time.perf_counter()
    index = 0
    try:
        while True:
            out_of_time = time.perf_counter() - start > seconds
            for w in workers:
                if w.case is None and index < cases and not out_of_time:
                    w.submit(make_case(seed, index, corpus, build_fraction, snippets), timeout)
                    w.index = index
                    index += 1
            busy = [w for w in workers if w.case is not None]
            if not busy:
                break
            ready = wait([w.conn for w in busy], timeout=1.0)
            for w in busy:
                if w.conn in ready:
                    case, outcome = w.case, w.collect()
                elif time.perf_counter() - w.started > hard_limit(timeout):
                    case, outcome = w.case, w.kill(timeout)
                else:
                    continue
                _record(report, w.index, case, outcome, slow)
                first = outcome.kind == "internal" and len(report.internal[outcome.signature]) == 1
                if progress and (first or report.cases % 500 == 0):
                    progress(report, time.perf_counter() - start,
                             f"new: {outcome.signature} in case {w.index} ({case.origin})" if first else "")
        report.seconds = time.perf_counter() - start
        for sig, hits in report.internal.items():
            _, case, _ = min(hits, key=lambda h: len(h[1].text))
            report.shrunk[sig] = shrink(case, sig, workers[0], timeout, shrink_budget)
    finally:
        for w in workers:
            w.stop()
    return report


def _record(report: Report, index: int, case: Case, outcome: Outcome, slow: float) -> None:
    report.cases += 1
    report.cpu += outcome.cpu
    report.kinds[outcome.kind] += 1
    report.built += outcome.built
    if outcome.cpu > slow:
        report.slow.append((round(outcome.cpu, 2), index, case.origin, outcome.kind))
    if outcome.kind == "internal":
        report.internal.setdefault(outcome.signature, []).append((index, case, outcome))
    elif outcome.kind == "timeout":
        report.timeouts.append((index, case))


def render(report: Report, slow: float) -> str:
    k = report.kinds
    lines = [f"fuzz: seed {report.seed}, {report.cases} cases in {report.seconds:.1f} s "
             f"({report.cpu:.1f} s of CPU in the cases): "
             f"{k['ok']} ok ({report.built} built and run), {k['error']} ArchError, "
             f"{k['internal']} internal error, {k['timeout']} timeout, {len(report.slow)} slow (> {slow:g} s of CPU)"]
    for sig, hits in sorted(report.internal.items(), key=lambda kv: -len(kv[1])):
        index, case, outcome = hits[0]
        small = report.shrunk.get(sig, case)
        lines += ["", f"internal error: {sig}  ({len(hits)} cases, first: case {index}, {case.origin})",
                  "  " + outcome.detail.splitlines()[0],
                  f"  reproducer ({len(small.text)} chars; imports resolve in {small.folder}):",
                  *("    | " + line for line in small.text.rstrip("\n").splitlines())]
    for index, case in report.timeouts[:20]:
        lines.append(f"timeout: case {index} ({case.origin})")
    for seconds, index, origin, kind in sorted(report.slow, reverse=True)[:20]:
        lines.append(f"slow: {seconds:.2f} s of CPU  case {index} ({origin}) → {kind}")
    return "\n".join(lines)
