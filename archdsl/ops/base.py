"""The op interface. An op = attribute schema + shape rule + cost rules + torch builder.

Shapes are tuples of ints (batch included). Costs follow one convention (README "Costs"):
`flops` counts exactly what `torch.utils.flop_counter.FlopCounterMode` counts (2 per
multiply-add of conv, matmul, linear, bmm, attention); every other arithmetic goes to
`other_flops`, with its formula stated on the op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

Shape = tuple[int, ...]


class ShapeError(Exception):
    """Raised by shape rules; the elaborator turns it into an ArchError at the call site."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Field:
    """The receptive field along a spatial dim: `size` input pixels at a cumulative stride of
    `jump`. `extent` is the network input's largest spatial size; `span` is the side, in
    positions, of the windows tokens were cut into (`window_partition`), None when a token
    set covers the whole map."""
    size: int = 1
    jump: int = 1
    extent: int = 1
    span: int | None = None

    def mixed(self) -> "Field":
        """After an op that mixes every position it sees (global attention, global pooling):
        the whole input, or one window more."""
        if self.span is None:
            return replace(self, size=max(self.size, self.extent))
        return replace(self, size=self.size + (self.span - 1) * self.jump)


def position_dims(rank: int) -> set[int]:
    """The dims that index positions: H, W … of [B, C, *S], the tokens N of [B, N, D]."""
    return {1} if rank == 3 else set(range(2, rank))


class Attrs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class NoAttrs(Attrs):
    pass


class Op:
    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    Attrs: ClassVar[type[Attrs]] = NoAttrs
    positional: ClassVar[tuple[str, ...]] = ()   # attribute names that may be given positionally
    n_inputs: ClassVar[int | None] = 1           # None: one or more
    frozen: ClassVar[frozenset[str]] = frozenset()   # parameters never trained (requires_grad=False)
    # a loss whose negatives are the rest of the batch is exactly 0 below this many rows (dim 0
    # of its first input); training refuses such a batch (see train_problem)
    min_batch: ClassVar[int] = 1
    # why `.pt2`/`.onnx` exports keep the spatial sizes fixed when this op is in the graph
    # (the module itself takes any size); None: no such reason
    fixes_exported_size: ClassVar[str | None] = None
    doc: ClassVar[str] = ""

    # --- static rules (no torch)
    def infer(self, a: Any, ins: Sequence[Shape]) -> Shape | tuple[Shape, ...]:
        raise NotImplementedError

    def params(self, a: Any, ins: Sequence[Shape]) -> dict[str, Shape]:
        """Parameter name → shape, in registration order."""
        return {}

    def buffers(self, a: Any, ins: Sequence[Shape]) -> dict[str, Shape]:
        """Persistent floating buffer name → shape."""
        return {}

    def flops(self, a: Any, ins: Sequence[Shape], out) -> int:
        return 0

    def other_flops(self, a: Any, ins: Sequence[Shape], out) -> int:
        """Default: one operation per output element."""
        return numel_out(out)

    def train_problem(self, a: Any, ins: Sequence[Shape]) -> str | None:
        """Why a training step could not learn with inputs of these shapes (None: it can)."""
        rows = ins[0][0] if ins and ins[0] and not isinstance(ins[0][0], tuple) else None
        if rows is not None and rows < self.min_batch:
            return (f"'{self.name}' gets {rows} row(s) per step and needs at least {self.min_batch}: "
                    f"its negatives are the other samples of the batch, so its loss would be 0")
        return None

    def window(self, a: Any) -> tuple[int, int, int] | None:
        """(kernel, stride, dilation) along spatial dims, for receptive-field tracking."""
        return None

    def receptive(self, a: Any, ins: Sequence[Shape], f: Field) -> Field:
        """The receptive field after this op, from the (largest) field of its inputs."""
        window = self.window(a)
        if window is None:
            return f
        k, s, d = window
        return replace(f, size=f.size + (k - 1) * d * f.jump, jump=f.jump * s)

    # --- torch (imported lazily so costing never needs torch)
    def build(self, a: Any, ins: Sequence[Shape]) -> Recipe | None:
        """How to make the nn.Module placed at the node's path, or None for a stateless op."""
        return None

    def emit(self, a: Any, ins: Sequence[Shape], fx: "Emitter", args: list):
        raise NotImplementedError


@dataclass(frozen=True)
class Recipe:
    """A module as the constructor call that makes it, `factory(*args, **kwargs)`: `lower` makes
    it, the source exporter writes the call. An argument may be a Recipe itself (a module given
    to `spectral_norm`); building one allocates nothing."""
    factory: Callable
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def make(self):
        made = [v.make() if isinstance(v, Recipe) else v for v in self.args]
        return self.factory(*made, **{k: v.make() if isinstance(v, Recipe) else v
                                      for k, v in self.kwargs.items()})

    def calls(self):
        """Every recipe in the order `make` calls them: arguments first."""
        for v in (*self.args, *self.kwargs.values()):
            if isinstance(v, Recipe):
                yield from v.calls()
        yield self


def recipe(factory: Callable, *args, **kwargs) -> Recipe:
    return Recipe(factory, args, kwargs)


class Emitter:
    """What an op may add to the torch.fx graph for its node (implemented in lower/)."""

    def module(self, *args, **kwargs):  # call the node's own module
        raise NotImplementedError

    def call(self, fn, *args, **kwargs):
        raise NotImplementedError

    def method(self, name: str, *args, **kwargs):
        raise NotImplementedError


REGISTRY: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    op = cls()
    for key in (cls.name, *cls.aliases):
        if key in REGISTRY:
            raise RuntimeError(f"op name {key!r} registered twice")
        REGISTRY[key] = op
    return cls


def numel(shape: Shape) -> int:
    return math.prod(shape)


def numel_out(out) -> int:
    if out and isinstance(out[0], tuple):
        return sum(numel(s) for s in out)
    return numel(out)


def expect_rank(ins: Sequence[Shape], ranks: set[int], what: str) -> Shape:
    x = ins[0]
    if len(x) not in ranks:
        want = " or ".join(str(r) for r in sorted(ranks))
        raise ShapeError(f"{what} expects a rank-{want} input, got shape {list(x)}")
    return x


def ntuple(v, n: int, what: str = "") -> tuple[int, ...]:
    """One int per dim: `v` itself when it is a sequence of n, else v repeated n times."""
    if isinstance(v, (tuple, list)):
        if len(v) != n:
            raise ShapeError(f"{what + ': ' if what else ''}expected one value or {n}, got {list(v)}")
        return tuple(int(x) for x in v)
    return (int(v),) * n


def pair(v) -> tuple[int, int]:
    return ntuple(v, 2)


def norm_dim(dim: int, rank: int) -> int:
    if not -rank <= dim < rank:
        raise ShapeError(f"dim {dim} is out of range for a rank-{rank} tensor")
    return dim % rank
