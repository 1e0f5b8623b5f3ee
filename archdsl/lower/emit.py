"""IR graph → standalone PyTorch source: `emit_python(graph)`.

The written file imports only torch. It rebuilds the module tree of `archdsl.lower.build`
exactly (the same parameter and buffer names, shapes and order), so the compiled model's
`state_dict()` loads into it strictly, and its `forward` runs the same straight-line code: it is
generated from the ops' own `emit` rules (through an Emitter that writes source instead of fx
nodes), so it computes what the fx graph computes, op for op.

How it reads:
- Each block instance that owns modules becomes an instance of a class named after its block
  type (`class Bottleneck(nn.Module)`). Instances whose code differs only in constants share one
  class; the constants that vary become constructor arguments (`Bottleneck(in_channels=256,
  mid_channels=64, out_channels=256, stride=1)`; a channel count equal to the block's input /
  output channels in every instance is `in_channels` / `out_channels`, or `channels` when both;
  another is `mid_channels`; other arguments are named after their first use). A constant of the
  forward that varies is kept as an attribute (`self.sizes`). Instances that differ in structure
  (one has a `downsample`, another not) get classes of their own (`BasicBlock`, `BasicBlock_2`).
- Numbered sequences are `nn.Sequential` when applied as a chain (`x = self.layer1(x)`), else
  `nn.ModuleList` (`self.stem[0](x)`); runs of identical blocks are written
  `*[Block(...) for _ in range(n)]`. A block class whose children are 0..n-1 applied as a chain
  subclasses nn.Sequential and needs no forward. Other holders are `nn.ModuleDict`s, or, when
  they also hold parameters, a small `_holder(...)` helper written into the file.
- torch.nn modules are written with their constructor arguments (defaults left out); any other
  module is written as the call of its op's constructor recipe (`Op.build`), and archdsl's own
  module classes and helper functions are copied into the file with what they use (other
  archdsl helpers, math, constants). `spectral_norm` / `weight_norm` parametrizations are
  written as such.
- Variables reuse the name of the value a statement consumes last (`x = self.conv1(x)`), else
  take `out` or the node's name; tuples only indexed by constants are unpacked
  (`split_0, split_1 = torch.split(...)`).

- The spec's `init` rules become the root class's `init_weights()` (its __init__ ends with it),
  one loop per run of rules: over the modules of one type, the keys with one suffix, or the keys
  listed, whichever selects exactly the tensors the rules select in the compiled model; so a
  fresh instance starts with `load_spec`'s statistics.
- `python file.py` runs a self-test: inputs of the declared shapes and dtypes, output shapes
  checked.

`emit_python` checks its output once: it runs the file and instantiates the class on the meta
device, comparing the state_dict keys, shapes and order with the compiled model's.
"""
from __future__ import annotations

import builtins
import inspect
import keyword
import math
import operator
import re
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from archdsl.errors import ArchError
from archdsl.ir.graph import Graph, Node
from archdsl.ops.base import REGISTRY, Emitter

WIDTH = 100            # the line length the printer aims for
_REQUIRED = object()   # a keyword argument that is always written

__all__ = ["emit_python"]


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


# ---------------------------------------------------------------------------------------------
# constructors of the modules ops build

def _ctor(m: nn.Module, node: Node | None, prefix: str, helpers: "_Helpers") -> Expr:
    from torch.nn.utils import parametrize
    if parametrize.is_parametrized(m):
        return _parametrized(m, node, prefix, helpers)
    return _plain_ctor(m, type(m), node, prefix, helpers)


def _parametrized(m: nn.Module, node: Node | None, prefix: str, helpers: "_Helpers") -> Expr:
    """`spectral_norm(nn.Conv2d(...), ...)` / `weight_norm(...)` around the original module."""
    expr = _plain_ctor(m, type(m).__bases__[0], node, prefix, helpers)
    for tensor, plist in m.parametrizations.items():
        for p in plist:
            kind = type(p).__name__
            if kind == "_SpectralNorm":
                expr = Call(Raw("torch.nn.utils.parametrizations.spectral_norm"), [expr],
                            [("name", Lit(tensor, "name", prefix, 2), "weight"),
                             ("n_power_iterations", Lit(p.n_power_iterations, "n_power_iterations",
                                                        prefix, 2), 1),
                             ("eps", Lit(p.eps, "eps", prefix, 2), 1e-12),
                             ("dim", Lit(p.dim, "dim", prefix, 2), _REQUIRED)])
            elif kind == "_WeightNorm":
                expr = Call(Raw("torch.nn.utils.parametrizations.weight_norm"), [expr],
                            [("name", Lit(tensor, "name", prefix, 2), "weight"),
                             ("dim", Lit(p.dim, "dim", prefix, 2), 0)])
            else:
                raise ArchError(f"cannot write the parametrization {kind} of "
                                f"'{node.id if node else prefix}' as source",
                                hint="the source writer knows spectral_norm and weight_norm")
    return expr


def _plain_ctor(m: nn.Module, T: type, node: Node | None, prefix: str,
                helpers: "_Helpers") -> Expr:

    def lit(v, hint):
        return Lit(v, hint, prefix, 2)

    def call(name, args, kwargs):
        return Call(Raw(name), args, kwargs)

    if T in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        pad = m.padding if isinstance(m.padding, str) else _squash(tuple(m.padding))
        return call(f"nn.{T.__name__}", [lit(m.in_channels, "in_channels"),
                                         lit(m.out_channels, "out_channels")],
                    [("kernel_size", lit(_squash(tuple(m.kernel_size)), "kernel_size"), _REQUIRED),
                     ("stride", lit(_squash(tuple(m.stride)), "stride"), 1),
                     ("padding", lit(pad, "padding"), 0),
                     ("dilation", lit(_squash(tuple(m.dilation)), "dilation"), 1),
                     ("groups", lit(m.groups, "groups"), 1),
                     ("bias", lit(m.bias is not None, "bias"), True),
                     ("padding_mode", lit(m.padding_mode, "padding_mode"), "zeros")])
    if T in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        return call(f"nn.{T.__name__}", [lit(m.num_features, "num_features")],
                    [("eps", lit(m.eps, "eps"), 1e-5),
                     ("momentum", lit(m.momentum, "momentum"), 0.1),
                     ("affine", lit(m.affine, "affine"), True),
                     ("track_running_stats",
                      lit(m.track_running_stats, "track_running_stats"), True)])
    if T is nn.LayerNorm:
        shape = tuple(m.normalized_shape)
        bias = m.bias is not None if m.elementwise_affine else True
        return call("nn.LayerNorm",
                    [lit(shape[0] if len(shape) == 1 else shape, "normalized_shape")],
                    [("eps", lit(m.eps, "eps"), 1e-5),
                     ("elementwise_affine", lit(m.elementwise_affine, "elementwise_affine"), True),
                     ("bias", lit(bias, "bias"), True)])
    if T is nn.GroupNorm:
        return call("nn.GroupNorm",
                    [lit(m.num_groups, "num_groups"), lit(m.num_channels, "num_channels")],
                    [("eps", lit(m.eps, "eps"), 1e-5), ("affine", lit(m.affine, "affine"), True)])
    if T is nn.Linear:
        return call("nn.Linear",
                    [lit(m.in_features, "in_features"), lit(m.out_features, "out_features")],
                    [("bias", lit(m.bias is not None, "bias"), True)])
    if T in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout):
        return call(f"nn.{T.__name__}", [lit(m.p, "drop_rate")],
                    [("inplace", lit(m.inplace, "inplace"), False)])
    return _recorded_ctor(T, node, prefix, helpers)


_HINTS = {"DropPath.p": "drop_path_rate"}


def _recorded_ctor(T: type, node: Node | None, prefix: str, helpers: "_Helpers") -> Expr:
    """`Class(args)` with the arguments of the op's constructor recipe for this module."""
    where = node.id if node else prefix
    if node is None or node.op not in REGISTRY:
        raise ArchError(f"internal: no op node for the module at '{where}'")
    recipe = REGISTRY[node.op].build(node.attrs, [tuple(s) for s in helpers.shapes(node)])
    call = next((r for r in (recipe.calls() if recipe else ()) if r.factory is T), None)
    if call is None:
        raise ArchError(f"cannot write the module {T.__qualname__} at '{where}' as source: its op's "
                        f"recipe does not make it")
    args, kwargs, init = call.args, dict(call.kwargs), T.__init__
    try:
        sig = inspect.signature(init)
        bound = sig.bind(None, *args, **kwargs)
        names = list(bound.arguments)[1:]
        params = sig.parameters
    except (TypeError, ValueError):
        names, params = [f"arg{i}" for i in range(len(args))], {}
    pos_names = names[:len(args)]

    def lit(v, hint):
        return Lit(v, _HINTS.get(f"{T.__name__}.{hint}", hint), prefix, 2)

    def default(k):
        p = params.get(k)
        return _REQUIRED if p is None or p.default is inspect.Parameter.empty else p.default

    # arguments with a default are written by name (and left out when they equal it)
    pos, kws = [], []
    for v, n in zip(args, pos_names):
        p = params.get(n)
        if kws or (p is not None and p.default is not inspect.Parameter.empty
                   and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD):
            kws.append((n, lit(v, n), default(n)))
        else:
            pos.append(lit(v, n))
    if len(pos) + len(kws) > len(args):  # more than one value for a *args parameter
        pos, kws = [lit(v, n) for v, n in zip(args, pos_names)], []
    kws += [(k, lit(v, k), default(k)) for k, v in kwargs.items()]
    return Call(Raw(helpers.class_name(T, where)), pos, kws)


class _Helpers:
    """Functions and classes of archdsl that the written file needs, copied with what they use
    (other archdsl functions and classes, `math`, constants) in dependency order."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.names: dict[int, str] = {}          # id(object) → its name in the file
        self.objects: dict[str, Any] = {}        # name in the file → object (or a source line)
        self.blocks: list[str] = []              # source snippets, in order
        self.imports: set[str] = set()
        self._active: set[int] = set()

    def shapes(self, node: Node):
        return self.graph.input_shapes(node)

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def class_name(self, T: type, where: str) -> str:
        if getattr(nn, T.__name__, None) is T:
            return f"nn.{T.__name__}"
        if T.__module__.startswith("archdsl."):
            return self.add(T)
        if T.__module__.startswith("torch."):
            obj = torch
            for part in T.__module__.split(".")[1:] + T.__qualname__.split("."):
                obj = getattr(obj, part, None)
            if obj is T:
                return f"{T.__module__}.{T.__qualname__}"
        raise ArchError(f"cannot write the module {T.__module__}.{T.__qualname__} at '{where}' as "
                        f"source", hint="the written file imports only torch")

    def function(self, fn) -> str | None:
        if getattr(fn, "__module__", "").startswith("archdsl.") and \
                (inspect.isfunction(fn) or inspect.isclass(fn)):
            return self.add(fn)
        return None

    def _claim(self, name: str, obj) -> None:
        have = self.objects.get(name)
        if have is not None and have is not obj:
            raise ArchError(f"cannot write the source: two helpers are both called '{name}'",
                            hint="rename one of them in archdsl")
        self.objects[name] = obj

    def add(self, obj) -> str:
        key = id(obj)
        if key in self.names:
            return self.names[key]
        if key in self._active:  # a cycle (mutual recursion): the name is enough
            return obj.__name__
        self._active.add(key)
        try:
            source = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError) as err:
            raise ArchError(f"cannot copy {obj.__qualname__} into the source: {err}") from None
        module = sys.modules[obj.__module__]
        for name in _free_names(source):
            if name == obj.__name__ or name not in module.__dict__:
                continue
            self._dep(name, module.__dict__[name], obj)
        name = obj.__name__
        self._claim(name, obj)
        self.blocks.append(source.rstrip() + "\n")
        self.names[key] = name
        self._active.discard(key)
        return name

    def _dep(self, name: str, value, user) -> None:
        if value is torch or value is nn or value is F:
            if {"torch": torch, "nn": nn, "F": F}.get(name) is not value:
                self.imports.add(f"import {value.__name__} as {name}")
            return
        if inspect.ismodule(value):
            if value.__name__ in ("math", "operator", "functools", "itertools") or \
                    value.__name__.startswith("torch"):
                line = f"import {value.__name__}" if value.__name__ == name else \
                    f"import {value.__name__} as {name}"
                self.imports.add(line)
                return
        elif getattr(value, "__module__", "") and str(value.__module__).startswith("archdsl.") \
                and (inspect.isfunction(value) or inspect.isclass(value)):
            real = self.add(value)
            if real != name:
                self._claim(name, f"{name} = {real}")
                self.blocks.append(f"{name} = {real}\n")
            return
        elif isinstance(value, (bool, int, float, str, tuple, type(None))):
            try:
                text = f"{name} = {_lit_src(value)}\n"
            except ArchError:
                text = None
            if text:
                self._claim(name, text)
                if text not in self.blocks:
                    self.blocks.append(text)
                return
        elif str(getattr(value, "__module__", "") or "").startswith("torch") and \
                hasattr(value, "__qualname__"):
            self.imports.add(f"from {value.__module__} import {value.__qualname__}" +
                             (f" as {name}" if name != value.__qualname__ else ""))
            return
        raise ArchError(f"cannot copy {user.__qualname__} into the written source: it uses "
                        f"'{name}' ({type(value).__name__})",
                        hint="helpers copied into the source may use torch, math, constants and "
                             "other archdsl helpers")


def _free_names(source: str) -> list[str]:
    """Names the code loads (annotations left out: the file has `from __future__ import
    annotations`)."""
    import ast

    seen: dict[str, None] = {}

    class Visitor(ast.NodeVisitor):
        def visit_Name(self, node):
            if isinstance(node.ctx, ast.Load):
                seen.setdefault(node.id)

        def visit_arg(self, node):
            pass  # its annotation

        def visit_AnnAssign(self, node):
            if node.value is not None:
                self.visit(node.value)

        def _function(self, node):
            for d in node.decorator_list:
                self.visit(d)
            for d in (*node.args.defaults, *node.args.kw_defaults):
                if d is not None:
                    self.visit(d)
            for stmt in node.body:
                self.visit(stmt)

        visit_FunctionDef = visit_AsyncFunctionDef = _function

    Visitor().visit(ast.parse(source))
    return list(seen)


def _full(shape, init, prefix: str) -> Expr:
    """The initial value of a param/buffer node: a constant, or an initialiser from the spec
    (`= trunc_normal(0.02)`) written as the matching `nn.init` call on an empty tensor."""
    dims = [Lit(int(d), f"{prefix}_dim{i}" if len(shape) > 1 else f"{prefix}_dim", prefix, 1)
            for i, d in enumerate(shape)]
    if isinstance(init, (int, float)):
        fill = Lit(float(init), f"{prefix}_init", prefix, 1)
        return Call(Raw("torch.full"), [Display("(", dims), fill], [])
    if init.kind == "constant":
        return Call(Raw("torch.full"), [Display("(", dims), Lit(float(init.get("value")))], [])
    return _init_call(init, Call(Raw("torch.empty"), [Display("(", dims)], []))


# the defaults of torch.nn.init's functions, left out of the written calls
_INIT_DEFAULTS = {"mean": 0.0, "std": 1.0, "a": 0.0, "b": 1.0, "gain": 1.0, "mode": "fan_in",
                  "nonlinearity": "leaky_relu"}


def _init_call(spec, tensor: Expr) -> Expr:
    """`nn.init.<kind>_(tensor, ...)` for an initialiser of the spec (archdsl/lower/init.py's
    `fill`, as source). kaiming_normal(grouped=true) is torch's fan-out one for an ungrouped
    tensor; a grouped conv's is written by `_rule_call`."""
    args = dict(spec.args)
    args.pop("grouped", None)
    if spec.kind == "constant":
        value = args["value"]
        if value in (0.0, 1.0):
            return Call(Raw("nn.init.zeros_" if value == 0.0 else "nn.init.ones_"), [tensor], [])
        return Call(Raw("nn.init.constant_"), [tensor, Lit(value)], [])
    defaults = dict(_INIT_DEFAULTS, **({"a": -2.0, "b": 2.0} if spec.kind == "trunc_normal"
                                       else {}))
    kwargs = [(k, Lit(v), defaults.get(k, _REQUIRED)) for k, v in sorted(args.items())]
    return Call(Raw(f"nn.init.{spec.kind}_"), [tensor], kwargs)


def _rule_call(spec, tensor: str, groups: str) -> list[str]:
    """The source lines of one init rule on `tensor` (`groups`: the source of its conv's groups)."""
    if spec.kind == "kaiming_normal" and spec.get("grouped"):
        gain = f"nn.init.calculate_gain({_str(spec.get('nonlinearity'))})"
        return [f"fan_out = {tensor}.shape[0] // {groups} * {tensor}[0][0].numel()  # per group",
                f"nn.init.normal_({tensor}, std={gain} / fan_out ** 0.5)"]
    return [_Printer({}, False).inline(_init_call(spec, Raw(tensor)))]


# ---------------------------------------------------------------------------------------------
# scopes: the root and every block instance written as a class instance

class _Retry(Exception):
    def __init__(self, path: str):
        self.path = path


@dataclass(eq=False)
class _Scope:
    path: str
    type: str
    parent: "_Scope | None" = None
    children: list = field(default_factory=list)
    own: list = field(default_factory=list)      # IR nodes computed in this class's forward
    members: set = field(default_factory=set)    # ids of every node inside (children's too)
    inputs: list = field(default_factory=list)   # external node ids the forward takes
    outputs: list = field(default_factory=list)  # node ids it returns
    first: int = 0                               # index of its first node
    height: int = 0
    args: list = field(default_factory=list)     # _Vals of the forward's arguments
    fwd: list = field(default_factory=list)      # forward Stmts
    ret: Expr | None = None
    chains: set = field(default_factory=set)     # container paths applied as a chain
    inherits_forward: bool = False               # a chain over all of its own children
    base: str = "nn.Module"
    init: list = field(default_factory=list)     # __init__ Stmts (after super().__init__)
    super_args: list = field(default_factory=list)
    cls: "_Class | None" = None


@dataclass(eq=False)
class _Class:
    name: str
    type: str
    instances: list
    lits: list = field(default_factory=list)      # per instance: [Lit, ...] in canonical order
    params: list = field(default_factory=list)    # argument names, in order
    stored: list = field(default_factory=list)    # arguments the forward reads as self.<name>
    values: dict = field(default_factory=dict)    # instance path → {argument: value}
    binding: dict = field(default_factory=dict)   # id(Lit) of 1st instance → ("c", v) / ("p", arg)
    n_init: int = 0                               # how many of the Lits are in __init__


class _CodeEmitter(Emitter):
    def __init__(self, writer: "_Writer", scope: _Scope, node: Node):
        self.w, self.scope, self.node = writer, scope, node

    def _conv(self, v, hint: str):
        if isinstance(v, _Val):
            return Ref(v)
        if isinstance(v, (list, tuple)) and any(isinstance(x, _Val) for x in v):
            return Display("[" if isinstance(v, list) else "(", [self._conv(x, hint) for x in v])
        if isinstance(v, (fx.Node, fx.Proxy)):
            raise ArchError("internal: an op passed an fx value to the source writer")
        return Lit(v, hint)

    def _stmt(self, expr: Expr, simple: str | None = None, mods: set | None = None) -> _Val:
        out = _Val("stmt")
        used = set(mods or ()) | {r.path for r in _refs(expr) if r.kind == "attr"}
        local = self.node.id.rpartition(".")[2]
        self.scope.fwd.append(Stmt(expr, [out], base=local, simple=simple, mods=used))
        return out

    def module(self, *args, **kwargs):
        func = Raw(self.w.access(self.node.id, self.scope))
        one = len(args) == 1 and isinstance(args[0], _Val) and not kwargs
        simple = self.node.id if one else None
        return self._stmt(Call(func, [self._conv(a, "arg") for a in args],
                               [(k, self._conv(v, k), _REQUIRED) for k, v in kwargs.items()]),
                          simple, {self.node.id})

    def call(self, fn, *args, **kwargs):
        if fn in _INFIX and len(args) == 2 and not kwargs:
            return self._stmt(BinOp(self._conv(args[0], "scalar"), _INFIX[fn],
                                    self._conv(args[1], "scalar")))
        if fn is operator.getitem and len(args) == 2 and not kwargs:
            return self._stmt(Index(self._conv(args[0], "x"), self._conv(args[1], "index")))
        name = self.w.helpers.function(fn) or _fn_name(fn)
        sig = _FN_SIGS.get(name)
        if sig is None:
            short = name.rpartition(".")[2]
            return self._stmt(Call(Raw(name),
                                   [self._conv(a, f"{short}_arg{i}") for i, a in enumerate(args)],
                                   [(k, self._conv(v, k), _REQUIRED) for k, v in kwargs.items()]))
        pos, kws = [], []
        for i, a in enumerate(args):
            pname, default, squash = sig[i]
            v = self._conv(_squash(a) if squash and not isinstance(a, _Val) else a, pname)
            (pos.append(v) if default is _REQUIRED else kws.append((pname, v, default)))
        spec = {s[0]: s for s in sig}
        for k, a in kwargs.items():
            _, default, squash = spec.get(k, (k, _REQUIRED, False))
            kws.append((k, self._conv(_squash(a) if squash and not isinstance(a, _Val) else a, k),
                        default))
        return self._stmt(Call(Raw(name), pos, kws))

    def method(self, name, *args, **kwargs):
        defaults = _METHOD_DEFAULTS.get(name, {})
        try:
            names = [p for p in inspect.signature(getattr(torch.Tensor, name)).parameters][1:]
        except (AttributeError, TypeError, ValueError):
            names = []
        hints = [names[i] if i < len(names) and not names[i].startswith("*") else f"{name}_arg{i}"
                 for i in range(len(args) - 1)]
        return self._stmt(Call(Method(self._conv(args[0], "x"), name),
                               [self._conv(a, h) for a, h in zip(args[1:], hints)],
                               [(k, self._conv(v, k), defaults.get(k, _REQUIRED))
                                for k, v in kwargs.items()]))


class _Writer:
    def __init__(self, graph: Graph, root: nn.Module, class_name: str | None):
        self.graph, self.root = graph, root
        self.mods = dict(root.named_modules(remove_duplicate=False))
        self.nodes = list(graph.nodes())
        self.index = {n.id: i for i, n in enumerate(self.nodes)}
        self.by_id = {n.id: n for n in self.nodes}
        self.class_name = class_name
        self.helpers = _Helpers(graph)
        self.need_holder = False

    # ---- module tree

    def is_leaf(self, path: str) -> bool:
        return type(self.mods[path]) is not nn.Module

    @staticmethod
    def list_like(m: nn.Module) -> bool:
        return bool(m._modules) and list(m._modules) == [str(i) for i in range(len(m._modules))]

    def kind(self, path: str) -> str:
        """How the module at `path` is written: "class" / "seqclass" (a block class, on
        nn.Module or nn.Sequential), "list" (Sequential / ModuleList), "dict" (ModuleDict),
        "holder" (the `_holder` helper) or "leaf"."""
        if path in self.scopes:
            return self.scopes[path].base == "nn.Sequential" and "seqclass" or "class"
        if self.is_leaf(path):
            return "leaf"
        m = self.mods[path]
        own = bool(m._parameters) or bool(m._buffers)
        if self.list_like(m) and not own:
            return "list"
        if not own and not any(k in _attrs(nn.ModuleDict) for k in m._modules):
            return "dict"
        return "holder"

    def access(self, path: str, scope: _Scope) -> str:
        """Source reaching the module / parameter at `path` from `self` of `scope`'s class."""
        rel = path[len(scope.path) + 1:] if scope.path else path
        expr, cur = "self", scope.path
        for part in rel.split("."):
            child = f"{cur}.{part}" if cur else part
            if cur != scope.path:
                kind = self.kind(cur)
            else:
                kind = "seqclass" if scope.base == "nn.Sequential" else "class"
            is_module = child in self.mods
            if kind in ("list", "seqclass") and is_module:
                expr = f"{expr}[{part}]"
            elif _ident(part):
                expr = f"{expr}.{part}"
            elif kind == "dict" and is_module:
                expr = f"{expr}[{_str(part)}]"
            else:
                expr = f"getattr({expr}, {_str(part)})"
            cur = child
        return expr

    # ---- scopes

    def find_scopes(self) -> None:
        cands = {p for p in self.graph.blocks
                 if p and p in self.mods and type(self.mods[p]) is nn.Module}
        while True:
            bad = self._check(cands)
            if not bad:
                try:
                    self._build_scopes(cands)
                    self._forwards()
                    return
                except _Retry as r:
                    bad = {r.path}
            cands -= bad

    @staticmethod
    def _innermost(path: str, cands: set) -> str:
        while path:
            if path in cands:
                return path
            path = path.rpartition(".")[0]
        return ""

    def _members(self, path: str) -> set:
        return {n.id for n in self.nodes if n.block == path or n.block.startswith(path + ".")}

    def _check(self, cands: set) -> set:
        bad = set()
        for n in self.nodes:
            s = self._innermost(n.block, cands)
            owns = n.id in self.mods or n.kind in ("param", "buffer")
            if s and owns and not n.id.startswith(s + "."):
                bad.add(s)
        g = self.graph.g
        for s in cands - bad:
            members = self._members(s)
            frontier = {v for u in members for v in g.successors(u) if v not in members}
            seen, stack = set(frontier), list(frontier)
            while stack:
                for v in g.successors(stack.pop()):
                    if v in members:
                        bad.add(s)
                        stack = []
                        break
                    if v not in seen:
                        seen.add(v)
                        stack.append(v)
        return bad

    def _build_scopes(self, cands: set) -> None:
        root_type = self._root_name()
        self.root_scope = _Scope("", root_type)
        self.scopes: dict[str, _Scope] = {}
        for p in sorted(cands, key=lambda p: (p.count("."), p)):
            parent = self._innermost(p.rpartition(".")[0], cands)
            s = _Scope(p, self.graph.blocks[p].type)
            s.parent = self.scopes[parent] if parent else self.root_scope
            s.parent.children.append(s)
            self.scopes[p] = s
        outs = set(self.graph.outputs.values())
        g = self.graph.g
        for n in self.nodes:
            sp = self._innermost(n.block, cands)
            (self.scopes[sp] if sp else self.root_scope).own.append(n)
        for s in self.scopes.values():
            s.members = self._members(s.path)
            s.first = min((self.index[i] for i in s.members), default=0)
            for n in self.nodes:
                if n.id not in s.members:
                    continue
                for i in n.inputs:
                    if i not in s.members and i not in s.inputs:
                        s.inputs.append(i)
                if n.id in outs or any(v not in s.members for v in g.successors(n.id)):
                    s.outputs.append(n.id)
        self.root_scope.members = set(self.index)
        for s in self._postorder(self.root_scope):
            s.height = 1 + max((c.height for c in s.children), default=-1)
            s.children.sort(key=lambda c: c.first)
            m = self.mods[s.path]
            if self.list_like(m) and not any(k in _attrs(nn.Sequential) for k in
                                             (*m._parameters, *m._buffers)):
                s.base = "nn.Sequential"

    def _postorder(self, s: _Scope):
        for c in s.children:
            yield from self._postorder(c)
        yield s

    def _root_name(self) -> str:
        if self.class_name:
            if not _ident(self.class_name):
                raise ArchError(f"class name '{self.class_name}' is not a Python identifier")
            return self.class_name
        from archdsl.lower.build import _class_name
        return _clean(_class_name(self.graph), "Model")

    # ---- forwards

    def _forwards(self) -> None:
        for s in self._postorder(self.root_scope):
            s.fwd, s.chains = [], set()
            self._forward(s)

    def _forward(self, s: _Scope) -> None:
        import networkx as nx
        vals: dict[str, _Val] = {}
        ins = s.inputs if s.path else list(self.graph.inputs)
        s.args = [_Val("arg") for _ in ins]
        vals.update(zip(ins, s.args))
        item_of: dict[str, Any] = {}
        for n in s.own:
            if n.kind in ("param", "buffer"):
                vals[n.id] = _Val("attr", self.access(n.id, s), n.id)
            elif n.kind != "input":
                item_of[n.id] = n
        for c in s.children:
            for i in c.members:
                item_of[i] = c
        dag = nx.DiGraph()
        items = {id(x): x for x in item_of.values()}
        dag.add_nodes_from(items)
        for key, x in items.items():
            deps = x.inputs if isinstance(x, Node) else x.inputs
            for i in deps:
                if i in item_of and item_of[i] is not x:
                    dag.add_edge(id(item_of[i]), key)
        order_key = {k: (self.index[x.id] if isinstance(x, Node) else x.first)
                     for k, x in items.items()}
        try:
            order = list(nx.lexicographical_topological_sort(dag, key=order_key.__getitem__))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(dag)
            for u, _ in cycle:
                if isinstance(items[u], _Scope):
                    raise _Retry(items[u].path)
            raise ArchError("internal: the graph has a cycle")
        for key in order:
            x = items[key]
            if isinstance(x, Node):
                op = REGISTRY.get(x.op)
                if op is None:
                    raise ArchError(f"cannot write node '{x.id}' ({x.title}) as standalone source",
                                    hint="only networks are written as source, not topologies")
                em = _CodeEmitter(self, s, x)
                out = op.emit(x.attrs, self.graph.input_shapes(x), em, [vals[i] for i in x.inputs])
                if not isinstance(out, _Val):
                    raise ArchError(f"internal: op '{x.op}' returned {type(out).__name__} "
                                    f"from emit")
                vals[x.id] = out
                if x.is_multi and out.kind == "stmt" and s.fwd and s.fwd[-1].targets == [out]:
                    s.fwd[-1].arity = len(x.shape)
            else:
                outs = [_Val("stmt") for _ in x.outputs]
                local = x.path.rpartition(".")[2]
                call = Call(Raw(self.access(x.path, s)), [Ref(vals[i]) for i in x.inputs], [])
                simple = x.path if len(x.inputs) == 1 and len(x.outputs) == 1 else None
                s.fwd.append(Stmt(call, outs, base=local, simple=simple, mods={x.path}))
                vals.update(zip(x.outputs, outs))
        if s.path:
            rets = [Ref(vals[i]) for i in s.outputs]
            s.ret = rets[0] if len(rets) == 1 else Display("(", rets) if rets else None
        elif self.graph.single_output:
            s.ret = Ref(vals[next(iter(self.graph.outputs.values()))])
        else:
            s.ret = Display("{", [(k, Ref(vals[i])) for k, i in self.graph.outputs.items()])
        self._collapse_chains(s)
        self._unpack(s)
        self._name(s, ins)

    def _subtree_paths(self, s: _Scope) -> list[str]:
        """Container paths in `s`'s module subtree, outside its child classes, deepest first."""
        out = []
        skip = [c.path for c in s.children]
        for p, m in self.mods.items():
            if p == s.path or (s.path and not p.startswith(s.path + ".")):
                continue
            if any(p == c or p.startswith(c + ".") for c in skip) or type(m) is not nn.Module:
                continue
            out.append(p)
        return sorted(out, key=lambda p: -p.count("."))

    def _uses(self, stmts: list, ret) -> dict:
        uses: dict[int, list] = {}
        for i, st in enumerate(stmts):
            for v in _refs(st.expr):
                uses.setdefault(id(v), []).append(i)
        if ret is not None:
            for v in _refs(ret):
                uses.setdefault(id(v), []).append(len(stmts))
        return uses

    def _chain(self, stmts: list, ret, path: str, first_arg=None):
        """The statements applying the children of container `path` as a chain, or None."""
        m = self.mods[path]
        if not self.list_like(m) or m._parameters or m._buffers:
            return None
        n = len(m._modules)
        kids = [f"{path}.{i}" if path else str(i) for i in range(n)]
        picked = []
        for k in kids:
            touching = [j for j, st in enumerate(stmts)
                        if any(u == k or u.startswith(k + ".") for u in st.mods)]
            if len(touching) != 1 or stmts[touching[0]].simple != k:
                return None
            picked.append(touching[0])
        uses = self._uses(stmts, ret)
        for a, b in zip(picked, picked[1:]):
            out = stmts[a].targets[0]
            arg = _refs(stmts[b].expr)
            if len(arg) != 1 or arg[0] is not out or uses.get(id(out)) != [b]:
                return None
        if first_arg is not None and _refs(stmts[picked[0]].expr) != [first_arg]:
            return None
        return picked

    def _collapse_chains(self, s: _Scope) -> None:
        for p in self._subtree_paths(s):
            picked = self._chain(s.fwd, s.ret, p)
            if picked is None:
                continue
            first, last = s.fwd[picked[0]], s.fwd[picked[-1]]
            merged = Stmt(Call(Raw(self.access(p, s)), [Ref(_refs(first.expr)[0])], []),
                          last.targets, base=p.rpartition(".")[2], simple=p, mods={p})
            drop = set(picked[:-1])
            s.fwd = [merged if j == picked[-1] else st
                     for j, st in enumerate(s.fwd) if j not in drop]
            s.chains.add(p)
        # a block class on nn.Sequential whose forward is the chain of all its children
        if s.path and s.base == "nn.Sequential" and len(s.args) == 1 and isinstance(s.ret, Ref):
            picked = self._chain(s.fwd, s.ret, s.path, s.args[0])
            if picked is not None and len(picked) == len(s.fwd) and \
                    s.fwd[picked[-1]].targets[0] is s.ret.val:
                s.inherits_forward = True

    def _unpack(self, s: _Scope) -> None:
        """`a, b = torch.split(...)` for a tuple only ever indexed by constants."""
        uses: dict[int, list] = {}
        for j, st in enumerate(s.fwd):
            for v in _refs(st.expr):
                uses.setdefault(id(v), []).append(j)
        for v in _refs(s.ret) if s.ret is not None else []:
            uses.setdefault(id(v), []).append(-1)
        drop = set()
        for st in s.fwd:
            if not st.arity:
                continue
            t = st.targets[0]
            idx = {}
            for j in uses.get(id(t), []):
                e = s.fwd[j].expr if j >= 0 else None
                if not (isinstance(e, Index) and isinstance(e.base, Ref) and e.base.val is t
                        and isinstance(e.key, Lit) and type(e.key.value) is int
                        and -st.arity <= e.key.value < st.arity):
                    break
                k = e.key.value % st.arity
                if k in idx:
                    break
                idx[k] = j
            else:
                if not idx:
                    continue
                targets = []
                for k in range(st.arity):
                    if k in idx:
                        targets.append(s.fwd[idx[k]].targets[0])
                    else:
                        targets.append(_Val("stmt", name="_"))
                st.targets = targets
                st.arity = 0
                drop |= set(idx.values())
        if drop:
            s.fwd = [st for j, st in enumerate(s.fwd) if j not in drop]

    def _name(self, s: _Scope, ins: list) -> None:
        """Variable names: a statement reuses the name of an operand it consumes last
        (`x = self.conv1(x)`), otherwise takes a fresh one ("out", then the node's name)."""
        if s.path:
            names = ["x", "y", "z"][:len(s.args)] if len(s.args) <= 3 else \
                [f"x{i}" for i in range(len(s.args))]
        else:
            names = []
            for i in ins:
                base = _clean(i, "x")
                clash = base in _RESERVED or base in names
                names.append(f"{base}_{len(names)}" if clash else base)
        uses = self._uses(s.fwd, s.ret)
        last = {k: max(v) for k, v in uses.items()}
        holder: dict[str, _Val] = {}

        def free(name: str, i: int) -> bool:
            v = holder.get(name)
            return v is None or last.get(id(v), -1) <= i

        def fresh(bases: list[str], i: int) -> str:
            for b in bases:
                b = _clean(b, "out")
                if b in _RESERVED:
                    b = f"{b}_"
                if free(b, i):
                    return b
            b = _clean(bases[-1], "out")
            k = 1
            while not free(f"{b}_{k}", i) or f"{b}_{k}" in _RESERVED:
                k += 1
            return f"{b}_{k}"

        for v, name in zip(s.args, names):
            v.name = name
            holder[name] = v
        for i, st in enumerate(s.fwd):
            ops = [v for v in _refs(st.expr) if v.kind != "attr"]
            dying = [v for v in ops if last.get(id(v)) == i]
            if len(st.targets) == 1 and dying:
                st.targets[0].name = dying[0].name
                holder[dying[0].name] = st.targets[0]
                continue
            for k, t in enumerate(st.targets):
                if t.name == "_":
                    continue
                t.name = fresh(["out", st.base] if len(st.targets) == 1 else [f"{st.base}_{k}"], i)
                holder[t.name] = t
            # a multi-target statement's names must differ from each other
            if len(st.targets) > 1:
                seen = set()
                for t in (t for t in st.targets if t.name != "_"):
                    while t.name in seen:
                        t.name += "_"
                    seen.add(t.name)
                    holder[t.name] = t

    # ---- __init__ and classes

    def module_expr(self, path: str, s: _Scope) -> Expr:
        """An expression constructing the module at `path` (inside scope `s`)."""
        prefix = _clean(path[len(s.path) + 1:] if s.path else path, "m")
        if path in self.scopes:
            c = self.scopes[path]
            vals = c.cls.values[path]
            return Call(ClassRef(c.cls), [], [(k, Lit(vals[k], k, prefix, 2), _REQUIRED)
                                              for k in c.cls.params])
        m = self.mods[path]
        if self.is_leaf(path):
            return _ctor(m, self.by_id.get(path), prefix, self.helpers)
        kind = self.kind(path)
        kids = [(k, self.module_expr(f"{path}.{k}", s)) for k in m._modules]
        if kind == "list":
            items = self._runs([e for _, e in kids], prefix)
            if path in s.chains:
                return Call(Raw("nn.Sequential"), items, [])
            if len(items) == 1 and isinstance(items[0], Star):
                return Call(Raw("nn.ModuleList"), [items[0].inner], [])
            return Call(Raw("nn.ModuleList"), [Display("[", items)], [])
        if kind == "dict":
            return Call(Raw("nn.ModuleDict"), [Display("{", kids)], [])
        self.need_holder = True
        params = [(k, self._param_expr(f"{path}.{k}", k)) for k in m._parameters]
        buffers = [(k, self._buffer_expr(f"{path}.{k}", k)) for k in m._buffers]
        kw = []
        if params:
            kw.append(("parameters", Display("{", params), _REQUIRED))
        if buffers:
            kw.append(("buffers", Display("{", buffers), _REQUIRED))
        return Call(Raw("_holder"), [Display("{", kids)], kw)

    @staticmethod
    def _runs(exprs: list, prefix: str) -> list:
        """The items of a numbered sequence, runs of identical modules written as
        `*[Block(...) for _ in range(n)]` (all of them from two on, a part from three on)."""
        keys = []
        for e in exprs:
            lits: list = []
            keys.append((_visit(e, lits), tuple(_lit_src(x.value) for x in lits)))
        out, i = [], 0
        while i < len(exprs):
            j = i
            while j + 1 < len(exprs) and keys[j + 1] == keys[i]:
                j += 1
            n = j - i + 1
            if n >= 3 or n == len(exprs) >= 2:
                out.append(Star(Repeat(exprs[i], Lit(n, "depth", prefix, 2))))
            else:
                out.extend(exprs[i:j + 1])
            i = j + 1
        return out

    def _param_expr(self, path: str, name: str) -> Expr:
        node = self.by_id.get(path)
        if node is None or node.kind != "param":
            raise ArchError(f"internal: no param node for the parameter '{path}'")
        value = _full(node.shape, node.attrs["init"], _clean(name, "p"))
        return Call(Raw("nn.Parameter"), [value], [])

    def _buffer_expr(self, path: str, name: str) -> Expr:
        node = self.by_id.get(path)
        if node is None or node.kind != "buffer":
            raise ArchError(f"internal: no buffer node for the buffer '{path}'")
        return _full(node.shape, node.attrs["init"], _clean(name, "b"))

    def _init(self, s: _Scope) -> None:
        m = self.mods[s.path]
        s.init, s.super_args = [], []
        for k in m._parameters:
            e = self._param_expr(f"{s.path}.{k}" if s.path else k, k)
            s.init.append(Stmt(e, target=f"self.{k}") if _ident(k) else
                          Stmt(Call(Raw("self.register_parameter"), [Raw(_str(k)), e], [])))
        for k in m._buffers:
            e = self._buffer_expr(f"{s.path}.{k}" if s.path else k, k)
            s.init.append(Stmt(Call(Raw("self.register_buffer"), [Raw(_str(k)), e], [])))
        kids = [(k, self.module_expr(f"{s.path}.{k}" if s.path else k, s)) for k in m._modules]
        if s.base == "nn.Sequential":
            s.super_args = self._runs([e for _, e in kids], "self")
            return
        for k, e in kids:
            s.init.append(Stmt(e, target=f"self.{k}") if _ident(k) else
                          Stmt(Call(Raw("self.add_module"), [Raw(_str(k)), e], [])))

    def _key(self, s: _Scope) -> tuple:
        lits: list = []
        key = (s.type, s.base, s.inherits_forward,
               tuple(_visit(a, lits) for a in s.super_args),
               tuple((st.target, _visit(st.expr, lits)) for st in s.init),
               tuple(v.name for v in s.args))
        n_init = len(lits)
        if not s.inherits_forward:
            key += (tuple((tuple(t.name for t in st.targets), _visit(st.expr, lits))
                          for st in s.fwd),
                    _visit(s.ret, lits) if s.ret is not None else None)
        return key, lits, n_init

    def classes(self) -> list[_Class]:
        by_height: dict[int, list[_Scope]] = {}
        for s in self._postorder(self.root_scope):
            by_height.setdefault(s.height, []).append(s)
        out: list[_Class] = []
        for h in sorted(by_height):
            groups: dict[tuple, _Class] = {}
            keyed = []
            for s in sorted(by_height[h], key=lambda s: s.first):
                self._init(s)
                key, lits, n_init = self._key(s)
                cls = groups.get(key)
                if cls is None:
                    cls = groups[key] = _Class("", s.type, [])
                    cls.n_init = n_init
                    out.append(cls)
                cls.instances.append(s)
                cls.lits.append(lits)
                s.cls = cls
                keyed.append(s)
            for cls in groups.values():
                self._generalise(cls)
        self._name_classes(out)
        return out

    def _io_dims(self, s: _Scope) -> tuple:
        """The candidate channel counts (dim 1 and the last dim) of a block's first input and
        first output."""
        def dim(ids):
            if not ids:
                return ()
            shape = self.graph.node(ids[0]).shape
            if not shape or isinstance(shape[0], tuple) or len(shape) < 2:
                return ()
            return (shape[1], shape[-1])
        return dim(s.inputs), dim(s.outputs)

    def _generalise(self, cls: _Class) -> None:
        """Constants equal in every instance stay literal; the others become arguments (one per
        distinct column of values). A channel count equal to the block's input (output) channels
        in every instance is `in_channels` (`out_channels`, or `channels` when both); another
        channel count is `mid_channels`; other arguments are named after their uses."""
        first = cls.lits[0]
        columns = [tuple(_lit_src(lits[j].value) for lits in cls.lits) for j in range(len(first))]
        groups: dict[tuple, list[int]] = {}
        for j, col in enumerate(columns):
            if len(set(col)) > 1:
                groups.setdefault(col, []).append(j)
        s0 = cls.instances[0]
        m = self.mods[s0.path]
        taken = set(_RESERVED) | set(m._modules) | set(m._parameters) | set(m._buffers) | {"_"}
        dims = [self._io_dims(s) for s in cls.instances]

        def cols(side: int) -> set:
            if not all(d[side] for d in dims):
                return set()
            return {tuple(_lit_src(d[side][k]) for d in dims) for k in (0, 1)}
        in_cols, out_cols = cols(0), cols(1)

        def options(col, js) -> list[str]:
            hints = [first[j].hint for j in js]
            channel = [h for h in hints if _CHANNELISH.search(h)]
            opts = []
            if channel:
                unit = "features" if any(h.endswith("features") for h in channel) and \
                    not any(h.endswith("channels") for h in channel) else "channels"
                if col in in_cols and col in out_cols:
                    opts.append(unit)
                elif col in in_cols:
                    opts.append(f"in_{unit}")
                elif col in out_cols:
                    opts.append(f"out_{unit}")
                else:
                    opts.append("hidden_features" if unit == "features" else "mid_channels")
            best = max(js, key=lambda j: (first[j].prio, -j))
            lit = first[best]
            return opts + [_clean(lit.hint, "arg"), _clean(f"{lit.prefix}_{lit.hint}", "arg")]

        ordered = sorted(groups.items(), key=lambda kv: kv[1][0])
        # the block's own channel counts claim their names first
        ordered.sort(key=lambda kv: kv[0] not in in_cols | out_cols)
        names: dict[tuple, str] = {}
        for col, js in ordered:
            stored = any(j >= cls.n_init for j in js)
            opts = options(col, js)
            name = next((o for o in opts if o not in taken and
                         not (stored and o in _attrs(nn.Sequential))), None)
            if name is None:
                base, k = opts[0], 2
                while f"{base}_{k}" in taken:
                    k += 1
                name = f"{base}_{k}"
            taken.add(name)
            names[col] = name
        for col, js in sorted(groups.items(), key=lambda kv: kv[1][0]):
            cls.params.append(names[col])
            if any(j >= cls.n_init for j in js):
                cls.stored.append(names[col])
        for j, col in enumerate(columns):
            cls.binding[id(first[j])] = ("p", names[col]) if col in names else ("c", first[j].value)
        for s, lits in zip(cls.instances, cls.lits):
            cls.values[s.path] = {}
            for col, name in names.items():
                j = groups[col][0]
                cls.values[s.path][name] = lits[j].value

    def _name_classes(self, classes: list[_Class]) -> None:
        used = set(self.helpers.objects) | {"_holder", self.root_scope.type} | _RESERVED
        count: dict[str, int] = {}
        for cls in sorted(classes, key=lambda c: c.instances[0].first):
            if cls.instances[0] is self.root_scope:
                cls.name = self.root_scope.type
                continue
            base = _clean(cls.type, "Block")
            if base[0].islower():
                base = base[0].upper() + base[1:]
            k = count.get(base, 0)
            while True:
                k += 1
                name = base if k == 1 else f"{base}_{k}"
                if name not in used:
                    break
            count[base] = k
            used.add(name)
            cls.name = name

    # ---- the spec's init rules

    def _init_method(self) -> list[str]:
        """The spec's init rules as the root class's `init_weights` method (its __init__ ends
        with it): per run of rules with the same initialiser, a loop over the modules of one type,
        the keys with one suffix, or the keys themselves, whichever selects exactly the keys
        those rules match in the compiled model."""
        from archdsl.lower.init import _SN_ORIGINAL, matching
        runs: list[tuple[Any, dict]] = []
        for rule in self.graph.inits:
            keys = dict.fromkeys(k for k, _ in matching(self.root, rule, self.graph))
            if runs and runs[-1][0] == rule.init:
                runs[-1][1].update(keys)
            elif keys:
                runs.append((rule.init, keys))
        if not runs:
            return []
        tensors = dict(self.root.named_parameters())
        tensors.update((k, b) for k, b in self.root.named_buffers() if b.is_floating_point())
        body = []
        for spec, keys in runs:
            body += self._by_type(spec, list(keys)) or self._by_suffix(spec, list(keys), tensors) \
                or self._by_key(spec, list(keys))
        if any(b.startswith("for name, t in tensors") or "tensors[" in b for b in body):
            floats = "(k, b) for k, b in self.named_buffers() if b.is_floating_point()"
            body = ["tensors = dict(self.named_parameters())", f"tensors.update({floats})", *body]
        spectral = [k[: -len(_SN_ORIGINAL)].rstrip(".") for _, keys in runs for k in keys
                    if k.endswith(_SN_ORIGINAL)]
        if spectral:
            body += [f"for name in {_lit_src(tuple(dict.fromkeys(spectral)))}:"
                     "  # spectral norm: u, v of the new weight",
                     "    weight = self.get_submodule(name).parametrizations.weight",
                     "    for p in weight:",
                     '        if hasattr(p, "_power_method"):',
                     "            matrix = p._reshape_weight_to_matrix(weight.original)",
                     "            p._power_method(matrix, 15)"]
        return ["    @torch.no_grad()", "    def init_weights(self):",
                '        """The spec\'s initialisation: its `init` rules in order (a later rule '
                'wins)."""', *(f"        {b}" for b in body)]

    def _by_type(self, spec, keys: list[str]) -> list[str]:
        owners = {k.rpartition(".")[0] for k in keys}
        leaves = {k.rpartition(".")[2] for k in keys}
        types = {type(self.mods[o]) for o in owners if o in self.mods}
        if len(leaves) != 1 or "" in owners or len(types) != 1 or not _ident(next(iter(leaves))):
            return []
        T, leaf = types.pop(), leaves.pop()
        try:
            name = self.helpers.class_name(T, "")
        except ArchError:
            return []
        held = [(p, m._parameters.get(leaf, m._buffers.get(leaf)))
                for p, m in self.root.named_modules() if isinstance(m, T)]
        if {f"{p}.{leaf}" for p, t in held if t is not None} != set(keys):
            return []
        test = f"isinstance(m, {name})"
        if any(t is None for _, t in held):  # e.g. convs without a bias
            test += f" and m.{leaf} is not None"
        return ["for m in self.modules():", f"    if {test}:",
                *(f"        {line}" for line in _rule_call(spec, f"m.{leaf}", "m.groups"))]

    def _by_suffix(self, spec, keys: list[str], tensors: dict) -> list[str]:
        parts = [k.split(".") for k in keys]
        n = 0
        while all(len(p) > n + 1 for p in parts) and len({p[-n - 1] for p in parts}) == 1:
            n += 1
        if n == 0 or len(keys) == 1:
            return []
        suffix = "." + ".".join(parts[0][-n:])
        if [k for k in tensors if k.endswith(suffix)] != keys:
            return []
        groups = 'getattr(self.get_submodule(name.rpartition(".")[0]), "groups", 1)'
        return ["for name, t in tensors.items():", f"    if name.endswith({_str(suffix)}):",
                *(f"        {line}" for line in _rule_call(spec, "t", groups))]

    def _by_key(self, spec, keys: list[str]) -> list[str]:
        groups = 'getattr(self.get_submodule(name.rpartition(".")[0]), "groups", 1)'
        if len(keys) == 1:
            groups = groups.replace("name", _str(keys[0]))
            return _rule_call(spec, f"tensors[{_str(keys[0])}]", groups)
        listed = _Printer({}, False).block(Display("(", [Raw(_str(k)) for k in keys]), 8, 12)
        return [f"for name in {listed}:",
                *(f"    {line}" for line in _rule_call(spec, "tensors[name]", groups))]

    # ---- the file

    def source(self) -> str:
        self.find_scopes()
        classes = self.classes()
        self.init_lines = self._init_method()
        root_cls = self.root_scope.cls
        out = [self._header(root_cls.name)]
        if self.helpers:
            out.append("from __future__ import annotations\n")
        out += sorted({"import torch", "import torch.nn.functional as F", "from torch import nn",
                       *self.helpers.imports}, key=lambda l: (l.startswith("from"), l))
        out.append("")
        if self.helpers:
            text, prev_simple = "", False
            for b in self.helpers.blocks:
                simple = not b.startswith(("class ", "def ", "@"))
                if text:
                    text += "\n" if simple and prev_simple else "\n\n"
                text += b
                prev_simple = simple
            out += ["", text]
        if self.need_holder:
            out += ["", _HOLDER]
        for cls in self._file_order(classes):
            out += ["", self._class_source(cls)]
        out += ["", self._main(root_cls.name)]
        text = "\n".join(out)
        return re.sub(r"\n{4,}", "\n\n\n", text).rstrip() + "\n"

    def _file_order(self, classes: list[_Class]) -> list[_Class]:
        """Classes in order of first use, each after the classes it instantiates."""
        done: list[_Class] = []

        def visit(cls: _Class):
            if cls in done:
                return
            children = {c.cls for c in cls.instances[0].children}
            for child in sorted(children, key=lambda c: c.instances[0].first):
                visit(child)
            done.append(cls)
        for cls in sorted(classes, key=lambda c: c.instances[0].first):
            visit(cls)
        return done

    def _title(self) -> str:
        g = self.graph
        net = next((n.block_type for n in self.nodes if not n.block and n.block_type), g.name)
        return f"{net}, variant {g.variant}" if g.variant and g.variant != net else net

    def _header(self, name: str) -> str:
        g = self.graph
        title = self._title()
        title = f"{name}: {title}" if title != name else name
        lines = [f'"""{title}, as standalone PyTorch source written by archdsl.', "",
                 "It imports only torch. Parameter and buffer names are those of the compiled",
                 "model, so its weights load strictly: `model.load_state_dict(state_dict)`.", ""]
        for i in g.inputs:
            lines.append(f"Input  {i}: {list(g.node(i).shape)}")
        for k, i in g.outputs.items():
            lines.append(f"Output {k}: {list(g.node(i).shape)}")
        return "\n".join(lines) + '\n"""'

    def _class_source(self, cls: _Class) -> str:
        s = cls.instances[0]
        init_p, fwd_p = _Printer(cls.binding, False), _Printer(cls.binding, True)
        lines = [f"class {cls.name}({s.base}):"]
        paths = [c.path for c in cls.instances]
        k = len(paths)
        while k > 1 and len(", ".join(paths[:k])) + len(s.type) + 30 > WIDTH:
            k -= 1
        where = ", ".join(paths[:k]) + (f", … ({len(paths)} in all)" if k < len(paths) else "")
        doc = f"{s.type} at {where}" if s.path else self._title()
        lines.append(f'    """{doc}."""')
        lines.append("")
        sig = ", ".join(["self", *cls.params])
        head = f"    def __init__({sig}):"
        if len(head) > WIDTH:
            args = "".join(f"        {p},\n" for p in ["self", *cls.params])
            head = f"    def __init__(\n{args}    ):"
        lines.append(head)
        if s.super_args:
            fake = Call(Raw("super().__init__"), s.super_args, [])
            lines.append("        " + init_p.block(fake, 8, 0))
        else:
            lines.append("        super().__init__()")
        for p in cls.stored:
            lines.append(f"        self.{p} = {p}")
        for st in s.init:
            if st.target:
                lead = len(st.target) + 3
                lines.append(f"        {st.target} = {init_p.block(st.expr, 8, lead)}")
            else:
                lines.append("        " + init_p.block(st.expr, 8, 0))
        root = s is self.root_scope and self.init_lines
        if root:
            lines.append("        self.init_weights()")
        if not s.inherits_forward:
            lines.append("")
            lines.append(f"    def forward({', '.join(['self', *(v.name for v in s.args)])}):")
            for st in s.fwd:
                targets = ", ".join(t.name for t in st.targets)
                text = fwd_p.block(st.expr, 8, len(targets) + 3 if targets else 0)
                lines.append(f"        {targets} = {text}" if targets else f"        {text}")
            if isinstance(s.ret, Display) and s.ret.kind == "(" and len(s.ret.items) > 1:
                lines.append(f"        return {', '.join(fwd_p.inline(r) for r in s.ret.items)}")
            elif s.ret is not None:
                lines.append(f"        return {fwd_p.block(s.ret, 8, 7)}")
        if root:
            lines += ["", *self.init_lines]
        return "\n".join(lines) + "\n"

    def _main(self, name: str) -> str:
        """A self-test: inputs of the declared shapes and dtypes (token ids and labels 0 or 1),
        checked against the declared output shapes."""
        args = []
        for i in self.graph.inputs:
            node = self.graph.node(i)
            shape = _lit_src(tuple(node.shape))[1:-1].rstrip(",")
            dtype = getattr(torch, node.dtype)
            if dtype.is_floating_point:
                extra = "" if dtype == torch.float32 else f", dtype={dtype}"
                args.append(f"torch.randn({shape}{extra})" if shape else f"torch.randn((){extra})")
            else:
                args.append(f"torch.randint(0, 2, ({shape}{',' if ',' not in shape else ''}), "
                            f"dtype={dtype})" if shape else f"torch.zeros((), dtype={dtype})")
        outs = {k: self.graph.node(i).shape for k, i in self.graph.outputs.items()}
        plain = all(not (s and isinstance(s[0], tuple)) for s in outs.values())
        if self.graph.single_output:
            show = "tuple(out.shape)"
            want = _lit_src(tuple(next(iter(outs.values()))))
        else:
            show = "{k: tuple(v.shape) for k, v in out.items()}"
            want = _lit_src({k: tuple(v) for k, v in outs.items()})
        check = f"    assert {show} == {want}, {show}\n" if plain else ""
        call = f"        out = model({', '.join(args)})\n"
        if len(call) > WIDTH:
            call = "        out = model(\n" + "".join(f"            {a},\n" for a in args) + \
                "        )\n"
        return (f'if __name__ == "__main__":  # a self-test on random inputs\n'
                f"    model = {name}().eval()\n"
                f"    with torch.no_grad():\n"
                f"{call}"
                f"{check}"
                f"    print({show})\n")


_HOLDER = '''def _holder(modules, parameters=None, buffers=None):
    """A plain nn.Module holding modules, parameters and buffers under the given names."""
    holder = nn.Module()
    for name, value in (parameters or {}).items():
        holder.register_parameter(name, value)
    for name, value in (buffers or {}).items():
        holder.register_buffer(name, value)
    for name, value in modules.items():
        holder.add_module(name, value)
    return holder
'''


# ---------------------------------------------------------------------------------------------

def _graph_and_tree(obj) -> tuple[Graph, nn.Module]:
    if isinstance(obj, Graph):
        from archdsl.lower.build import build
        with torch.device("meta"):
            return obj, build(obj)
    graph = getattr(obj, "arch_graph", None)
    if isinstance(obj, nn.Module) and isinstance(graph, Graph):
        return graph, obj
    raise ArchError(f"emit_python needs an IR graph or a model from `archdsl.load_spec`, got "
                    f"{type(obj).__name__}", hint="pass `load_graph(...)` or `load_spec(...)`")


def emit_python(graph, class_name: str | None = None, *, verify: bool = True) -> str:
    """Standalone PyTorch source (imports only torch) for `graph` (an IR `Graph`, or a model
    from `load_spec`): a class per block type and a top-level class named `class_name`
    (default: after the variant, as the compiled GraphModule). Its state_dict keys, shapes and
    order are the compiled model's. `verify` executes the source once on the meta device to
    check that."""
    graph, tree = _graph_and_tree(graph)
    text = _Writer(graph, tree, class_name).source()
    if verify:
        _verify(text, graph, tree, class_name)
    return text


def _root_class(text: str) -> str:
    return re.search(r"^    model = (\w+)\(\)\.eval\(\)$", text, re.M).group(1)


def _verify(text: str, graph: Graph, tree: nn.Module, class_name: str | None) -> None:
    ns: dict = {"__name__": "archdsl_emitted"}
    exec(compile(text, "<emitted>", "exec"), ns)
    with torch.device("meta"):
        model = ns[_root_class(text)]()
    want = [(k, tuple(v.shape)) for k, v in tree.state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    if want != got:
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        raise ArchError(f"internal: the written source does not rebuild '{graph.name}' "
                        f"(missing {missing}, unexpected {extra}, or a different order)")
