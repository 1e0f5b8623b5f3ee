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


def quantiser_input(draw) -> tuple[tuple, int, dict]:
    """An input, the axis its code vectors lie along, and attrs with num_codes (and that axis,
    perhaps counted from the end): what vq and vq_ema cases share."""
    x = draw(any_shape(2, 4))
    r = len(x)
    axis = draw(st.integers(1, r - 1)) if draw(st.booleans()) else 1
    attrs: dict = {"num_codes": draw(st.integers(1, 8))}
    if axis != 1 or draw(st.booleans()):
        attrs["axis"] = axis - r if draw(st.booleans()) else axis
    return x, axis, attrs
