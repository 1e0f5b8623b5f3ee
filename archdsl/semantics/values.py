"""Run-time values of the spec interpreter (never Python objects a spec could reach into)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from archdsl.errors import Span
from archdsl.ops.base import Op
from archdsl.syntax import ast as A


@dataclass(frozen=True)
class Tensor:
    node: str
    shape: Any  # Shape, or a tuple of Shapes for multi-output nodes


@dataclass(frozen=True)
class OpRef:
    name: str
    op: Op


@dataclass(frozen=True)
class BlockRef:
    decl: A.BlockDef
    module: "ModuleEnv"

    @property
    def name(self) -> str:
        return self.decl.name


@dataclass(frozen=True)
class Partial:
    """A callee with some arguments bound: `conv(64, 3)`, `Bottleneck(attn=SE)`."""
    callee: Any  # OpRef | BlockRef
    args: tuple = ()
    kwargs: tuple = ()  # ((name, value), ...)
    span: Span | None = None
    # where each argument was written, for errors: one entry per positional argument (or None),
    # and ((name, span), ...) for keyword arguments
    arg_spans: tuple = field(default=(), compare=False)
    kw_spans: tuple = field(default=(), compare=False)

    def positional_spans(self) -> tuple:
        return tuple(self.arg_spans) + (None,) * (len(self.args) - len(self.arg_spans))

    @property
    def name(self) -> str:
        return self.callee.name


@dataclass(frozen=True)
class Builtin:
    name: str
    fn: Callable


@dataclass(frozen=True)
class Labeled:
    """A member of a bracketed sequence that carries its own name: `[proj: conv(…), bn]`."""
    label: str
    value: Any


@dataclass(frozen=True)
class RepeatVal:
    """`repeat(n) j { … }` — unrolled when applied, one instance per index."""
    expr: A.Repeat
    count: int
    env: "Env"


@dataclass(frozen=True)
class Outputs:
    """Several named outputs of a block instance; fields by name or index."""
    names: tuple[str, ...]
    values: tuple[Tensor, ...]


@dataclass
class Namespace:
    name: str
    members: dict[str, Any]


@dataclass
class ModuleEnv:
    """One loaded .arch file: its top-level names and declarations."""
    name: str           # dotted module name ("nets.resnet")
    path: str
    ast: A.Module
    globals: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, A.Variant] = field(default_factory=dict)
    checkpoints: dict[str, A.Checkpoint] = field(default_factory=dict)
    prelude: dict[str, Any] = field(default_factory=dict)


class Env:
    """A lexical scope: local names over a module's globals (and the prelude)."""

    def __init__(self, module: ModuleEnv, parent: "Env | None" = None, prelude: dict | None = None):
        self.module = module
        self.parent = parent
        self.vars: dict[str, Any] = {}
        self.prelude = prelude if prelude is not None else (parent.prelude if parent else {})

    def child(self) -> "Env":
        return Env(self.module, self, self.prelude)

    def snapshot(self) -> "Env":
        """A copy of the local bindings as they are now (values that are applied later, such as
        `repeat`, must not see later reassignments of loop variables)."""
        frozen = Env(self.module, None, self.prelude)
        chain = []
        env = self
        while env is not None:
            chain.append(env.vars)
            env = env.parent
        for vars_ in reversed(chain):
            frozen.vars.update(vars_)
        return frozen

    def lookup(self, name: str):
        env = self
        while env is not None:
            if name in env.vars:
                return env.vars[name]
            env = env.parent
        if name in self.module.globals:
            return self.module.globals[name]
        if name in self.prelude:
            return self.prelude[name]
        raise KeyError(name)

    def visible_names(self) -> set[str]:
        names: set[str] = set(self.module.globals) | set(self.prelude)
        env = self
        while env is not None:
            names |= set(env.vars)
            env = env.parent
        return names


def spec_text(v) -> str:
    """A plain value as the spec language writes it (`[2, 2]`, `"deep"`, `none`); else its kind."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        inner = ", ".join(spec_text(x) for x in v)
        return f"[{inner}]" if isinstance(v, list) else f"({inner}{',' if len(v) == 1 else ''})"
    if isinstance(v, (BlockRef, OpRef)):
        return v.name
    if isinstance(v, Partial):
        args = [spec_text(a) for a in v.args] + [f"{k}={spec_text(a)}" for k, a in v.kwargs]
        return f"{v.name}({', '.join(args)})"
    return describe(v)


def describe(v) -> str:
    """A value's kind, for error messages."""
    if isinstance(v, bool):
        return "bool"
    if v is None:
        return "none"
    if isinstance(v, (int, float, str)):
        return type(v).__name__
    if isinstance(v, list):
        return "list"
    if isinstance(v, tuple):
        return "tuple"
    if isinstance(v, Tensor):
        return f"tensor {list(v.shape)}"
    if isinstance(v, OpRef):
        return f"op '{v.name}'"
    if isinstance(v, BlockRef):
        return f"block '{v.name}'"
    if isinstance(v, Partial):
        return f"'{v.name}(…)'"
    if isinstance(v, RepeatVal):
        return "repeat"
    if isinstance(v, Outputs):
        return f"outputs ({', '.join(v.names)})"
    if isinstance(v, Namespace):
        return f"module '{v.name}'"
    if isinstance(v, Builtin):
        return f"builtin '{v.name}'"
    return type(v).__name__
