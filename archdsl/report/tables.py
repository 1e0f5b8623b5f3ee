"""Numbers, shapes and plain-text tables that fit a width without cutting a number; Markdown
tables."""
from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Callable, Iterable


def size(n: int) -> str:
    """Bytes with three significant digits: 784 KiB, 3.06 MiB."""
    for factor, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.3g} {name}"
    return f"{n} B"


def shape(s) -> str:
    """[1, 64, 56, 56]; several outputs: ([1, 1, 768], [1, 196, 768]), or 3× [1, 12, 197, 64]
    when they are alike."""
    if s and isinstance(s[0], (list, tuple)):
        if len(s) > 1 and all(list(x) == list(s[0]) for x in s):
            return f"{len(s)}× {shape(s[0])}"
        return "(" + ", ".join(shape(x) for x in s) + ")"
    return "[" + ", ".join(str(d) for d in s) + "]"


def rf(field: int, stride: int) -> str:
    """Receptive field and cumulative stride, '35 /8'; '-' where neither grew past 1."""
    return "-" if field <= 1 and stride <= 1 else f"{field} /{stride}"


# ---- plain-text tables that fit ---------------------------------------------------------------

FOLD = 28    # a too wide table first wraps its first column (paths) down to this width


@dataclass
class Column:
    header: str
    cell: Callable[[dict], str]
    right: bool = False
    keep: int = 9          # columns with the lowest `keep` are left out first when too wide


def text_table(columns: list[Column], rows: list[dict], width: int | None = None,
               hint: str = "widen the terminal, or use --format md or csv") -> str:
    """Columns two spaces apart under a rule; fitted to `width` by wrapping the first column
    at dots (down to FOLD columns), then by leaving columns out (noted below the table)."""
    cells = [[c.cell(r) for c in columns] for r in rows]
    widths = [max([len(c.header)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]
    shown = list(range(len(columns)))
    if width and _total(widths, shown) > width:
        widths[0] = min(widths[0], max(FOLD, width - _total(widths, shown[1:]) - 2))
    while width and _total(widths, shown) > width and any(columns[k].keep < 9 for k in shown):
        shown.remove(min((k for k in shown if columns[k].keep < 9), key=lambda k: columns[k].keep))
    lines = [_line([columns[k].header for k in shown], [widths[k] for k in shown],
                   [columns[k].right for k in shown]),
             "  ".join("─" * widths[k] for k in shown)]
    for row in cells:
        parts = _fold(row[0], widths[0])
        for i, part in enumerate(parts):
            values = [part] + [row[k] if i == 0 else "" for k in shown[1:]]
            lines.append(_line(values, [widths[k] for k in shown], [columns[k].right for k in shown]))
    left_out = [columns[k].header for k in range(len(columns)) if k not in shown]
    if left_out:
        lines.append(textwrap.fill(f"({', '.join(left_out)} left out at {width} columns: {hint})",
                                   width))
    return "\n".join(lines)


def _total(widths: list[int], shown: list[int]) -> int:
    return sum(widths[k] for k in shown) + 2 * (len(shown) - 1)


def _line(values: list[str], widths: list[int], right: list[bool]) -> str:
    return "  ".join(v.rjust(w) if r else v.ljust(w)
                     for v, w, r in zip(values, widths, right)).rstrip()


def _fold(text: str, width: int) -> list[str]:
    """Split a path into lines of at most `width` characters, after dots where possible."""
    out: list[str] = []
    while len(text) > width:
        cut = text.rfind(".", 0, width) + 1 or width
        out.append(text[:cut])
        text = "  " + text[cut:]
    return out + [text]


def markdown_table(headers: list[str], rows: list[list[str]], right: Iterable[bool]) -> str:
    align = ["---:" if r else "---" for r in right]
    esc = [[v.replace("|", "\\|") for v in row] for row in rows]
    return "\n".join("| " + " | ".join(r) + " |" for r in [headers, align, *esc])
