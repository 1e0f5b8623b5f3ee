"""Shared pieces for op cases: the `Case` record and small strategies."""
from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st

Shape = tuple[int, ...]


@dataclass
class Case:
    op: str
    attrs: dict
    ins: list[Shape]
    # A producer applied to the inputs first (getitem needs a multi-output value).
    pre: tuple[str, dict] | None = None
    notes: dict = field(default_factory=dict)
    # Per-input dtype ("float32" default; "int64" inputs are drawn from range(int_high)).
    dtypes: list[str] | None = None
    int_high: int = 10


batch = st.integers(1, 3)
small = st.integers(1, 5)


def shape_of_rank(rank: int, lo: int = 1, hi: int = 5) -> st.SearchStrategy[Shape]:
    return st.tuples(batch, *[st.integers(lo, hi)] * (rank - 1)) if rank > 0 else st.just(())


def any_shape(min_rank: int = 1, max_rank: int = 4) -> st.SearchStrategy[Shape]:
    return st.integers(min_rank, max_rank).flatmap(shape_of_rank)


def int_or_pair(lo: int, hi: int) -> st.SearchStrategy:
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def maybe(draw, attrs: dict, key: str, value) -> None:
    """Set an attribute, or leave it to its default half of the time (exercises defaults)."""
    if draw(st.booleans()):
        attrs[key] = value
