"""Expressions of the written source: small trees rendered to text by a printer, and how
torch calls and names look in source."""
from __future__ import annotations

import builtins
import keyword
import math
import operator
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from archdsl.errors import ArchError

if TYPE_CHECKING:
    from archdsl.export.scopes import _Class


WIDTH = 100            # the line length the printer aims for
_REQUIRED = object()   # a keyword argument that is always written


# ---------------------------------------------------------------------------------------------
# expressions: small trees rendered to source; `Lit`s are the constants that may vary between
# the instances of a class and then become its constructor arguments

class Expr:
    pass


@dataclass(eq=False)
class Raw(Expr):
    text: str


@dataclass(eq=False)
class Lit(Expr):
    value: Any
    hint: str = "value"   # the argument's name if it varies across a class's instances
    prefix: str = ""      # the attribute it belongs to, to tell apart equal hints ("conv3")
    prio: int = 0         # hints of higher priority name a merged argument


@dataclass(eq=False)
class Ref(Expr):
    val: "_Val"


@dataclass(eq=False)
class ClassRef(Expr):
    cls: "_Class"


@dataclass(eq=False)
class Call(Expr):
    func: Expr
    args: list
    kwargs: list  # (name, Expr, default or _REQUIRED): dropped when a constant equal to default


@dataclass(eq=False)
class Method(Expr):
    obj: Expr
    name: str


@dataclass(eq=False)
class Display(Expr):
    kind: str    # "(", "[" or "{"
    items: list  # Exprs, or (key, Expr) for "{"


@dataclass(eq=False)
class Star(Expr):
    inner: Expr


@dataclass(eq=False)
class Repeat(Expr):
    inner: Expr   # [inner for _ in range(n)]
    n: Lit


@dataclass(eq=False)
class BinOp(Expr):
    left: Expr
    op: str
    right: Expr


@dataclass(eq=False)
class Index(Expr):
    base: Expr
    key: Expr


@dataclass(eq=False)
class _Val:
    """A value in the forward of one class: an argument, `self.<param>` or a statement's result."""
    kind: str                 # "arg" | "attr" | "stmt"
    expr: str = ""            # for "attr": the access expression
    path: str = ""            # for "attr": the parameter's module path
    name: str = ""            # assigned by the naming pass


@dataclass(eq=False)
class Stmt:
    expr: Expr
    targets: list = field(default_factory=list)   # forward: _Vals; init: [] (see `target`)
    target: str | None = None                      # init: "self.conv1" (None: expression statement)
    base: str = "out"                              # preferred fresh name of the result
    simple: str | None = None                      # module path, for `v = <module>(u)` calls
    mods: set = field(default_factory=set)         # module / parameter paths it references
    arity: int = 0                                 # > 0: the result is a tuple of that length


def _lit_src(v) -> str:
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, int):
        return repr(int(v))
    if isinstance(v, float):
        if math.isnan(v):
            return 'float("nan")'
        if math.isinf(v):
            return 'float("inf")' if v > 0 else '-float("inf")'
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, torch.Size):
        v = tuple(v)
    if isinstance(v, tuple):
        inner = ", ".join(_lit_src(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(_lit_src(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_lit_src(k)}: {_lit_src(x)}" for k, x in v.items()) + "}"
    if isinstance(v, slice):
        return f"slice({_lit_src(v.start)}, {_lit_src(v.stop)}, {_lit_src(v.step)})"
    if v is Ellipsis:
        return "..."
    if isinstance(v, torch.dtype):
        return str(v)
    raise ArchError(f"cannot write the constant {v!r} ({type(v).__name__}) as Python source",
                    hint="this op passes a value the source writer does not know")


def _str(text: str) -> str:
    """A string literal in double quotes, as the rest of the file."""
    if '"' not in text and "\\" not in text and text.isprintable():
        return f'"{text}"'
    return repr(text)


def _squash(v):
    """(3, 3) → 3: what torch's conv and pool arguments accept for a repeated size."""
    if isinstance(v, (tuple, list)) and v and all(type(x) is int and x == v[0] for x in v):
        return v[0]
    return v


def _visit(e, lits: list, refs: list | None = None):
    """A hashable key of the expression's structure (constants left out); collects its `Lit`s
    (and `Ref`s) in a fixed order."""
    if isinstance(e, Raw):
        return ("R", e.text)
    if isinstance(e, Lit):
        lits.append(e)
        return ("L",)
    if isinstance(e, Ref):
        if refs is not None:
            refs.append(e.val)
        return ("V", e.val.expr if e.val.kind == "attr" else e.val.name)
    if isinstance(e, ClassRef):
        return ("K", id(e.cls))
    if isinstance(e, Call):
        return ("C", _visit(e.func, lits, refs), tuple(_visit(a, lits, refs) for a in e.args),
                tuple((k, _visit(v, lits, refs), d is _REQUIRED) for k, v, d in e.kwargs))
    if isinstance(e, Method):
        return ("M", _visit(e.obj, lits, refs), e.name)
    if isinstance(e, Display):
        if e.kind == "{":
            return ("D{", tuple((k, _visit(v, lits, refs)) for k, v in e.items))
        return ("D" + e.kind, tuple(_visit(v, lits, refs) for v in e.items))
    if isinstance(e, Star):
        return ("*", _visit(e.inner, lits, refs))
    if isinstance(e, Repeat):
        return ("for", _visit(e.inner, lits, refs), _visit(e.n, lits, refs))
    if isinstance(e, BinOp):
        return ("B", e.op, _visit(e.left, lits, refs), _visit(e.right, lits, refs))
    if isinstance(e, Index):
        return ("I", _visit(e.base, lits, refs), _visit(e.key, lits, refs))
    raise TypeError(e)


def _refs(e) -> list:
    out: list = []
    _visit(e, [], out)
    return out


class _Printer:
    """Renders expressions with a class's binding of constants (value or argument name)."""

    def __init__(self, binding: dict[int, tuple[str, Any]], in_forward: bool):
        self.binding, self.in_forward = binding, in_forward

    def lit(self, e: Lit) -> str:
        kind, v = self.binding.get(id(e), ("c", e.value))
        if kind == "p":
            return f"self.{v}" if self.in_forward else v
        return _lit_src(v)

    def const_equal(self, e, default) -> bool:
        if not isinstance(e, Lit):
            return False
        kind, v = self.binding.get(id(e), ("c", e.value))
        return kind == "c" and _lit_src(v) == _lit_src(default)

    def parts(self, e: Call) -> list[str]:
        out = [self.inline(a) for a in e.args]
        for k, v, d in e.kwargs:
            if d is not _REQUIRED and self.const_equal(v, d):
                continue
            out.append(f"{k}={self.inline(v)}")
        return out

    def inline(self, e) -> str:
        if isinstance(e, Raw):
            return e.text
        if isinstance(e, Lit):
            return self.lit(e)
        if isinstance(e, Ref):
            return e.val.expr if e.val.kind == "attr" else e.val.name
        if isinstance(e, ClassRef):
            return e.cls.name
        if isinstance(e, Call):
            return f"{self.inline(e.func)}({', '.join(self.parts(e))})"
        if isinstance(e, Method):
            return f"{self.inline(e.obj)}.{e.name}"
        if isinstance(e, Display):
            if e.kind == "{":
                return "{" + ", ".join(f"{_str(k)}: {self.inline(v)}" for k, v in e.items) + "}"
            inner = ", ".join(self.inline(v) for v in e.items)
            if e.kind == "(":
                return f"({inner},)" if len(e.items) == 1 else f"({inner})"
            return f"[{inner}]"
        if isinstance(e, Star):
            return "*" + self.inline(e.inner)
        if isinstance(e, Repeat):
            return f"[{self.inline(e.inner)} for _ in range({self.inline(e.n)})]"
        if isinstance(e, BinOp):
            return f"{self.operand(e.left)} {e.op} {self.operand(e.right)}"
        if isinstance(e, Index):
            return f"{self.operand(e.base)}[{self.subscript(e.key)}]"
        raise TypeError(e)

    def subscript(self, key) -> str:
        """`x[:, 0]` rather than `x[(slice(None, None, None), 0)]`."""
        if isinstance(key, Lit) and self.binding.get(id(key), ("c",))[0] == "c":
            v = key.value

            def part(x):
                if isinstance(x, slice):
                    ends = (x.start, x.stop, x.step)
                    text = ":".join("" if y is None else _lit_src(y) for y in ends)
                    return text[:-1] if x.step is None else text
                return _lit_src(x)
            if isinstance(v, slice):
                return part(v)
            if isinstance(v, tuple) and v and all(isinstance(x, (slice, int, type(None)))
                                                  or x is Ellipsis for x in v):
                return ", ".join(part(x) for x in v)
        return self.inline(key)

    def operand(self, e) -> str:
        text = self.inline(e)
        return f"({text})" if text.startswith("-") else text

    def block(self, e, indent: int, lead: int) -> str:
        """`e` at `indent`, with `lead` characters already on the line: broken over lines
        (one argument per line) when it does not fit."""
        text = self.inline(e)
        if indent + lead + len(text) <= WIDTH:
            return text
        pad, inner = " " * indent, " " * (indent + 4)
        if isinstance(e, Call) and (e.args or e.kwargs):
            items = []
            for a in e.args:
                items.append(self.block(a, indent + 4, 0))
            for k, v, d in e.kwargs:
                if d is not _REQUIRED and self.const_equal(v, d):
                    continue
                items.append(f"{k}={self.block(v, indent + 4, len(k) + 1)}")
            body = "".join(f"{inner}{it},\n" for it in items)
            return f"{self.inline(e.func)}(\n{body}{pad})"
        if isinstance(e, Display) and e.items:
            if e.kind == "{":
                items = [f"{_str(k)}: {self.block(v, indent + 4, len(_str(k)) + 2)}"
                         for k, v in e.items]
            else:
                items = [self.block(v, indent + 4, 0) for v in e.items]
            close = {"(": ")", "[": "]", "{": "}"}[e.kind]
            return e.kind + "\n" + "".join(f"{inner}{it},\n" for it in items) + pad + close
        if isinstance(e, Star):
            return "*" + self.block(e.inner, indent, lead + 1)
        if isinstance(e, Repeat):
            return ("[\n" + inner + self.block(e.inner, indent + 4, 0) + "\n"
                    + f"{inner}for _ in range({self.inline(e.n)})\n{pad}]")
        return text


# ---------------------------------------------------------------------------------------------
# what torch calls look like in source

_INFIX = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
          operator.floordiv: "//", operator.mod: "%", operator.pow: "**", operator.matmul: "@"}

# Signatures of the functions ops call: (name, default or _REQUIRED, squash pairs)
_FN_SIGS: dict[str, list[tuple]] = {
    "F.max_pool2d": [("input", _REQUIRED, False), ("kernel_size", _REQUIRED, True),
                     ("stride", None, True), ("padding", 0, True), ("dilation", 1, True),
                     ("ceil_mode", False, False), ("return_indices", False, False)],
    "F.avg_pool2d": [("input", _REQUIRED, False), ("kernel_size", _REQUIRED, True),
                     ("stride", None, True), ("padding", 0, True), ("ceil_mode", False, False),
                     ("count_include_pad", True, False), ("divisor_override", None, False)],
    "F.adaptive_avg_pool2d": [("input", _REQUIRED, False), ("output_size", _REQUIRED, True)],
    "F.adaptive_max_pool2d": [("input", _REQUIRED, False), ("output_size", _REQUIRED, True),
                              ("return_indices", False, False)],
    "F.gelu": [("input", _REQUIRED, False), ("approximate", "none", False)],
    "F.leaky_relu": [("input", _REQUIRED, False), ("negative_slope", 0.01, False),
                     ("inplace", False, False)],
    "torch.cat": [("tensors", _REQUIRED, False), ("dim", 0, False)],
    "torch.split": [("tensor", _REQUIRED, False), ("split_size_or_sections", _REQUIRED, False),
                    ("dim", 0, False)],
    "torch.chunk": [("input", _REQUIRED, False), ("chunks", _REQUIRED, False), ("dim", 0, False)],
}
_METHOD_DEFAULTS = {"mean": {"keepdim": False}, "amax": {"keepdim": False},
                    "sum": {"keepdim": False}}

_FN_NAMES: dict[int, str] | None = None


def _fn_name(fn) -> str:
    global _FN_NAMES
    if _FN_NAMES is None:
        names: dict[int, str] = {}
        for prefix, ns in (("F", F), ("torch", torch)):
            for n in sorted(dir(ns)):
                if n.startswith("_"):
                    continue
                obj = getattr(ns, n, None)
                if callable(obj) and not isinstance(obj, type):
                    names.setdefault(id(obj), f"{prefix}.{n}")
        _FN_NAMES = names
    name = _FN_NAMES.get(id(fn))
    if name is None:
        raise ArchError(f"cannot write a call of {getattr(fn, '__qualname__', fn)!r} as source",
                        hint="the source writer knows functions of torch and torch.nn.functional")
    return name


_ATTRS: dict[type, set] = {}


def _attrs(cls: type) -> set:
    """Attribute names an instance of `cls` has before any submodule is added."""
    if cls not in _ATTRS:
        _ATTRS[cls] = set(dir(cls())) | set(dir(cls))
    return _ATTRS[cls]


_CHANNELISH = re.compile(r"(^|_)(channels|features|num_features|normalized_shape|dim|dims)$")


def _ident(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


_RESERVED = set(dir(builtins)) | set(keyword.kwlist) | {"self", "torch", "nn", "F", "math"}


def _clean(name: str, fallback: str = "out") -> str:
    name = re.sub(r"\W", "_", name).strip("_")
    if not name or not _ident(name):
        return fallback if not name else (f"{fallback}_{name}" if _ident(f"{fallback}_{name}")
                                          else fallback)
    return name
