"""The terminal: its width, a rich console, the spinner and the training bar on stderr."""
from __future__ import annotations

import os
import shutil
import sys
import threading
from contextlib import contextmanager

SPINNER_DELAY_S = 1.0


def terminal_width() -> int | None:
    """The width to fit: the terminal's (or $COLUMNS); None for piped output."""
    if "COLUMNS" in os.environ:
        return shutil.get_terminal_size().columns
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def console(stderr: bool = False):
    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    out = Console(file=stream, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200   # piped output: do not fold tables to 80 columns
    return out


class Spinner:
    """A transient spinner (with a bar when `total` is known) on stderr.

    It appears only when the work takes longer than a second, and only on a terminal.
    """

    def __init__(self, description: str, total: int | None = None):
        self.description, self.total = description, total
        self._progress = None
        self._lock = threading.Lock()
        self._started = self._done = False

    def __enter__(self) -> "Spinner":
        err = console(stderr=True)
        if not err.is_terminal:
            return self
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn)
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if self.total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        self._progress = Progress(*columns, console=err, transient=True)
        self._task = self._progress.add_task(self.description, total=self.total)
        self._timer = threading.Timer(SPINNER_DELAY_S, self._start)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _start(self) -> None:
        with self._lock:
            if not self._done:
                self._progress.start()
                self._started = True

    def update(self, description: str | None = None, advance: int = 0) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=description or self.description,
                                  advance=advance)

    def __exit__(self, *exc) -> None:
        if self._progress is None:
            return
        self._timer.cancel()
        with self._lock:
            self._done = True
            if self._started:
                self._progress.stop()


@contextmanager
def training_bar(description: str, steps: int):
    """A bar of training steps on stderr showing the last step's losses; yields the callback
    that advances it by one step (a `train` history entry)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
                  console=console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=steps, losses="")

        def show(entry):
            text = "  ".join(f"{k} {v:.4f}" for k, v in entry.losses.items())
            bar.update(task, advance=1, losses=text)
        yield show
