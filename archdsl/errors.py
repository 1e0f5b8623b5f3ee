"""User-facing errors: every mistake in a spec becomes an `ArchError` that points at source."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

_SOURCES: dict[str, str] = {}


def register_source(filename: str, text: str) -> None:
    """Remember a file's text so errors can quote the offending line."""
    _SOURCES[filename] = text


def source_text(filename: str) -> str | None:
    """The text of a file that was parsed (None if it never was)."""
    return _SOURCES.get(filename)


@dataclass(frozen=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class ArchError(Exception):
    """A mistake in a spec or in how archdsl was called, with where and how to fix it."""

    def __init__(self, message: str, span: Span | None = None, *, hint: str | None = None,
                 expected: str | None = None, found: str | None = None,
                 notes: Iterable[tuple[str, Span | None]] = ()):
        self.message = message
        self.span = span
        self.hint = hint
        self.expected = expected
        self.found = found
        self.notes = list(notes)
        super().__init__(self.render())

    def with_span(self, span: Span | None) -> "ArchError":
        """Attach a location if the error does not have one yet."""
        if self.span is None and span is not None:
            return ArchError(self.message, span, hint=self.hint, expected=self.expected,
                             found=self.found, notes=self.notes)
        return self

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        if self.span is not None:
            lines += _quote(self.span)
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.found is not None:
            lines.append(f"  found:    {self.found}")
        for text, span in self.notes:
            lines.append(f"  note: {text}" + (f" ({span})" if span else ""))
            if span is not None:
                lines += _quote(span)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class ArchWarning(UserWarning):
    """Something a spec says that is allowed but likely unintended (`repeat(0)`)."""


def warn(message: str, span: Span | None, hint: str | None = None) -> None:
    import warnings
    text = ArchError(message, span, hint=hint).render().replace("error: ", "", 1)
    warnings.warn(ArchWarning(text), stacklevel=2)


def _quote(span: Span) -> list[str]:
    out = [f"  --> {span}"]
    text = _SOURCES.get(span.file)
    if text is None:
        return out
    src_lines = text.splitlines()
    if not 1 <= span.line <= len(src_lines):
        return out
    line = src_lines[span.line - 1].replace("\t", " ")
    width = (span.end_col - span.col) if span.end_line == span.line else len(line) - span.col + 1
    gutter = str(span.line)
    out.append(f"{' ' * len(gutter)} |")
    out.append(f"{gutter} | {line}")
    out.append(f"{' ' * len(gutter)} | {' ' * (span.col - 1)}{'^' * max(1, width)}")
    return out


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate that is the same name in another spelling (`ReLU` → `relu`, `SEModule` →
    `SE`, `BatchNorm2d` → `batch_norm`), else the closest one by difflib."""
    if len(name) > 128:  # no name is that long; difflib's cost grows with the product of lengths
        return None
    pool = sorted(set(candidates))
    key = _spelling(name)
    same = [c for c in pool if _spelling(c) == key] if key else []
    close = same or difflib.get_close_matches(name, pool, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


_SUFFIXES = ("module", "block", "layer", "1d", "2d", "3d")


def _spelling(name: str) -> str:
    """A name without case, underscores and the class-name suffixes of PyTorch and timm."""
    key = name.lower().replace("_", "")
    for suffix in _SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[:-len(suffix)]
    return key
