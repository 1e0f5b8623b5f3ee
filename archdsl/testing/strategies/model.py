"""What the spec generator knows: expressions with their values, its own shape formulas, and
stages and statements that carry their text together with how they change shapes."""
from __future__ import annotations

import operator
import string
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional


Shape = tuple[int, int, int]    # (C, H, W) of a [B, C, H, W] tensor; the batch is the spec's B
Env = Mapping[str, Any]
State = dict                    # tensor variable → Shape, or a tuple of Shapes (chunk / split)

MAX_CHANNELS = 32
MAX_SPATIAL = 24
ACTIVATIONS = ["relu", "relu6", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "gelu",
               "identity"]
COMMENT_CHARS = string.ascii_letters + string.digits + " -_.,:()[]{}=+*/'\"#"


@dataclass(frozen=True)
class GeneratedSpec:
    """A generated spec and what the generator expects of it."""
    text: str
    input_shape: tuple[int, int, int, int]      # (B, C, H, W) that check_spec will use
    outputs: dict[str, tuple[int, ...]]         # output name → shape ("out" when unnamed)


# ---------------------------------------------------------------------------------------------
# expressions: spec text plus its value in an environment

_BINOPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
           "%": operator.mod}


@dataclass(frozen=True)
class Expr:
    text: str
    fn: Callable[[Env], Any]
    atomic: bool = True

    def __call__(self, env: Env):
        return self.fn(env)

    def wrapped(self) -> str:
        return self.text if self.atomic else f"({self.text})"


def lit(v) -> Expr:
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif v is None:
        text = "none"
    elif isinstance(v, str):
        text = '"' + v + '"'
    elif isinstance(v, tuple):
        text = "(" + ", ".join(lit(x).text for x in v) + ")"
    elif isinstance(v, list):
        text = "[" + ", ".join(lit(x).text for x in v) + "]"
    else:
        text = repr(v)
    return Expr(text, lambda env: v, atomic=not text.startswith("-"))


def var(name: str) -> Expr:
    return Expr(name, lambda env: env[name])


def binop(a: Expr, op: str, b: Expr) -> Expr:
    fn = _BINOPS[op]
    return Expr(f"{a.wrapped()} {op} {b.wrapped()}", lambda env: fn(a(env), b(env)), atomic=False)


# ---------------------------------------------------------------------------------------------
# shape formulas (the generator's own, as torch documents them)

def conv_size(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def pool_size(n: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def fits(shape) -> bool:
    c, h, w = shape
    return 0 < c <= MAX_CHANNELS and 0 < h <= MAX_SPATIAL and 0 < w <= MAX_SPATIAL


# ---------------------------------------------------------------------------------------------
# stages (what follows `->`) and statements

@dataclass(frozen=True)
class Stage:
    text: str
    apply: Callable[[Shape, Env], Optional[Shape]]
    call: Optional[tuple[str, str]] = None   # (callee, argument text): allows `op(x, args)`
    # An unlabelled sequence puts its members `0, 1, …` in the enclosing scope, so two of them
    # in one scope (or one in a loop) collide: a sequence in a chain always gets a label.
    needs_label: bool = False

    def labelled(self, label: Optional[str]) -> "Stage":
        return self if label is None else Stage(f"{label}: {self.text}", self.apply)


def run_stages(stages: list[Stage], shape: Shape, env: Env) -> Optional[Shape]:
    for s in stages:
        shape = s.apply(shape, env)
        if shape is None or not fits(shape):
            return None
    return shape


@dataclass
class Stmt:
    lines: list[str]
    apply: Callable[[State, Env], Optional[State]]


@dataclass
class Ctx:
    ints: dict[str, int]                 # integer names in scope → value now
    loops: tuple[str, ...] = ()          # indices of the enclosing `for`s (labels use them all)
    in_block: bool = False               # inside a block definition
    act: Optional[str] = None            # the block's callable parameter, if any
    depth: int = 0                       # nesting of sequences / repeats / compound statements

    def child(self, **kw) -> "Ctx":
        return Ctx(**{**self.__dict__, "ints": dict(self.ints), **kw})


@dataclass
class Block:
    name: str
    params: list[str]
    text: str
    simulate: Callable[[Shape, Env], Optional[Shape]]
    has_act: bool


def shortcut(shape: Shape, planes: int, stride: int) -> Optional[Shape]:
    c, h, w = shape
    if stride == 1 and c == planes:
        return shape
    p = (stride - 1) // 2
    return (planes, conv_size(h, 1, stride, p, 1), conv_size(w, 1, stride, p, 1))


def conv1x1_apply(shape: Shape, env: Env) -> Optional[Shape]:
    return shortcut(shape, env["planes"], env["stride"]) if env["planes"] > 0 else None


def assign_stmt(text: str, dst: str, src: str, stages: list[Stage]) -> Stmt:
    def apply(st_, env):
        x = st_.get(src)
        if x is None or not isinstance(x[0], int):
            return None
        out = run_stages(stages, x, env)
        return None if out is None else {**st_, dst: out}
    return Stmt([text], apply)
