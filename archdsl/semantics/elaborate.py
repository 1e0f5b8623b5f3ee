"""Elaboration: bind arguments, run the block bodies, unroll repeats → an IR graph.

Shapes are inferred as each node is created, so shape variables (`C` in `in x: [B, C, H, W]`)
and conditions on them (`if Cin != planes * 4`) are known while the spec runs.
"""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from archdsl.errors import ArchError, Span, did_you_mean, warn
from archdsl.ir.graph import BlockInstance, Graph, Node
from archdsl.ops.base import Op, ShapeError
from archdsl.semantics.budget import Budget
from archdsl.semantics.catalog import stdlib_value
from archdsl.semantics.builtins import MAX_INT_BITS, MAX_ITEMS, BuiltinError
from archdsl.ir.inits import INITIALISERS, InitRule, InitSpec, f32
from archdsl.ir.names import ROOT_ATTRS, check_name, name_problem, path_problem, shown
from archdsl.semantics.memo import InstanceMemo
from archdsl.semantics.values import (BlockRef, Builtin, Env, Labeled, Namespace, OpRef, Outputs,
                                      Partial, RepeatVal, Tensor, describe, spec_text)
from archdsl.syntax import ast as A
from archdsl.syntax.fmt import fmt_expr

INPUT_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
MAX_DIM = 2 ** 31 - 1   # one tensor dim: larger ones are typos (10 ** 30) that torch cannot build

_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
_TENSOR_OP = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}
_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge,
            "in": lambda a, b: a in b, "not in": lambda a, b: a not in b}


@dataclass
class Scope:
    """Where new nodes go: the enclosing block instance's path and type."""
    prefix: str
    block_type: str
    auto: dict[str, int] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name


@dataclass
class Frame:
    """One block instance being elaborated."""
    decl: A.BlockDef
    scope: Scope
    inputs: list[Tensor] | None          # None for the top-level network
    next_input: int = 0
    outputs: list[tuple[str | None, Tensor, Span]] = field(default_factory=list)
    call: Span | None = None             # where this instance was created
    given: dict[str, Span | None] = field(default_factory=dict)  # arguments the caller gave, where


class Elaborator:
    REUSE_INSTANCES = True   # copy repeated block instances (semantics/memo.py) instead of re-running them

    def __init__(self, name: str, input_shapes: list[tuple[int, ...]] | None = None):
        from archdsl.ops import REGISTRY
        self.ops = REGISTRY
        self.graph = Graph(name=name)
        self.input_shapes = input_shapes
        self.counters: dict[str, int] = {}
        self.stack: list[Frame] = []
        self.used: set[str] = set()
        self.containers: set[str] = set()   # proper prefixes of node paths: modules that hold others
        self.budget = Budget()
        self.variants: dict[str, Any] = {}   # stdlib variants named in the spec, each loaded once
        self.memo: InstanceMemo | None = None   # networks reuse repeated block instances

    # ---- entry ---------------------------------------------------------------------------

    def network(self, callee, overrides: dict[str, Any], span: Span | None) -> Graph:
        block, args, kwargs, arg_spans, kw_spans = top_call(callee, overrides, span)
        span = span or getattr(callee, "span", None)  # the variant's call, for a missing argument
        self.memo = InstanceMemo() if self.REUSE_INSTANCES else None
        result = self.instantiate(block, args, kwargs, None, Scope("", block.name), span,
                                  arg_spans, kw_spans)
        if isinstance(result, Outputs):
            self.graph.outputs = {n: t.node for n, t in zip(result.names, result.values)}
            self.graph.single_output = False
        else:
            self.graph.outputs = {"out": result.node}
        return self.graph

    # ---- block instances ---------------------------------------------------------------------

    def instantiate(self, block: BlockRef, args: list, kwargs: dict, inputs: list[Tensor] | None,
                    scope: Scope, span: Span | None, arg_spans=(), kw_spans: dict | None = None):
        key = self.memo.key(self, block, args, kwargs, inputs) if self.memo else None
        if key is None:
            return self.run_instance(block, args, kwargs, inputs, scope, span, arg_spans, kw_spans)
        result = self.memo.replay(key, self, scope.prefix, inputs, span)
        if result is None:
            mark = self.memo.mark(self)
            result = self.run_instance(block, args, kwargs, inputs, scope, span, arg_spans, kw_spans)
            self.memo.record(key, mark, self, scope.prefix, inputs, result)
        return result

    def run_instance(self, block: BlockRef, args: list, kwargs: dict, inputs: list[Tensor] | None,
                     scope: Scope, span: Span | None, arg_spans=(), kw_spans: dict | None = None):
        decl = block.decl
        if len(self.stack) >= self.budget.limits.depth:
            chain = " → ".join(f.decl.name for f in self.stack[-4:])
            raise ArchError(f"block '{decl.name}' is nested more than {self.budget.limits.depth} deep "
                            f"(… {chain} → {decl.name})", span,
                            hint="a block that instantiates itself needs a condition that stops it")
        env = Env(block.module, None, block.module.prelude)
        given = self.bind_params(decl, args, kwargs, env, span, arg_spans, kw_spans or {})
        frame = Frame(decl, scope, inputs, call=span, given=given)
        if scope.prefix:
            self.graph.blocks[scope.prefix] = BlockInstance(scope.prefix, decl.name, span)
        self.stack.append(frame)
        try:
            self.exec_body(decl.body, env)
        finally:
            self.stack.pop()
        if inputs is not None and frame.next_input < len(inputs):
            raise ArchError(f"'{decl.name}' takes {frame.next_input} input(s) but was given "
                            f"{len(inputs)}", span, hint=f"'{decl.name}' declares its inputs with `in`")
        if not frame.outputs:
            raise ArchError(f"{decl.kind} '{decl.name}' has no `out` statement", decl.span,
                            hint="end the body with `out <value>`")
        if len(frame.outputs) == 1 and frame.outputs[0][0] is None:
            return frame.outputs[0][1]
        names = [n for n, _, _ in frame.outputs]
        if None in names:
            raise ArchError(f"'{decl.name}' mixes an unnamed `out` with named ones",
                            frame.outputs[names.index(None)][2], hint="name every output: `out y = …`")
        return Outputs(tuple(names), tuple(t for _, t, _ in frame.outputs))

    def bind_params(self, decl: A.BlockDef, args: list, kwargs: dict, env: Env, span,
                    arg_spans=(), kw_spans: dict | None = None) -> dict[str, Span | None]:
        """Bind a call's arguments; errors point at the argument (`arg_spans`: one per positional
        argument, `kw_spans`: by name; either may lack an entry, e.g. for command-line overrides).
        Returns where each given argument was written."""
        params = {p.name: p for p in decl.params}
        kw_spans = kw_spans or {}
        declared = [(f"'{decl.name}' is declared here", decl.span)]
        if len(args) > len(decl.params):
            raise ArchError(f"'{decl.name}' takes {len(decl.params)} argument(s), got {len(args)} "
                            f"positional", _nth(arg_spans, len(decl.params)) or span,
                            notes=declared if span is None else (),
                            hint=f"its parameters: {', '.join(params) or '(none)'}")
        given = dict(zip((p.name for p in decl.params), args))
        at = {p.name: _nth(arg_spans, i) for i, p in enumerate(decl.params[:len(args)])}
        unknown = [k for k in kwargs if k not in params]
        if unknown:  # name every missing one at once: a block passed as `block=` needs them all
            where = kw_spans.get(unknown[0]) or span
            missing = ", ".join(f"'{k}'" for k in unknown)
            hint = did_you_mean(unknown[0], params) if len(unknown) == 1 else None
            raise ArchError(f"'{decl.name}' has no parameter{'s' if len(unknown) > 1 else ''} {missing}",
                            where, notes=declared,
                            hint=hint or f"it is called with: {', '.join(kwargs)}; its parameters: "
                                         f"{', '.join(params) or '(none)'}")
        for k, v in kwargs.items():
            where = kw_spans.get(k) or span
            if k in given:
                raise ArchError(f"argument '{k}' given twice to '{decl.name}'", where,
                                hint="it is also given by position")
            given[k] = v
            at[k] = kw_spans.get(k)
        for p in decl.params:
            if p.type is not None:
                check_type(p.type)
            if p.name in given:
                value = given[p.name]
            elif p.default is not None:
                value = self.eval(p.default, env)
            else:
                raise ArchError(f"missing argument '{p.name}' for {decl.kind} '{decl.name}'", span,
                                notes=[("declared here", p.span)],
                                hint=f"pass it: `{decl.name}({p.name}=…)`")
            if p.type is not None and p.type.args:  # list[int]: every element is checked
                self.budget.charge_values(at.get(p.name) or span, f"checking '{p.name}'", value)
            if p.type is not None and not type_matches(value, p.type):
                where = at[p.name] if p.name in at else span  # an override has no place: its declaration
                raise ArchError(f"argument '{p.name}' of '{decl.name}' must be {type_text(p.type)}",
                                where or p.span, expected=type_text(p.type), found=_found(value, p.type),
                                notes=[("declared here", p.span)] if where is not None else (),
                                hint=did_you_mean(value, p.type.choices)
                                if p.type.choices and isinstance(value, str) else None)
            env.vars[p.name] = value
        return {k: at.get(k) for k in given}

    @property
    def frame(self) -> Frame:
        if not self.stack:
            raise ArchError("tensors exist only inside a block or network body")
        return self.stack[-1]

    # ---- statements ------------------------------------------------------------------------

    def exec_assert(self, s: A.AssertStmt, env: Env):
        if self.truth(self.eval(s.cond, env), s.cond.span):
            return
        message = self.eval(s.message, env) if s.message is not None else None
        if message is not None and not isinstance(message, str):
            raise ArchError("an assert's message must be a string", s.message.span, found=describe(message))
        names = _names_in(s.cond)
        values = ", ".join(f"{n} = {spec_text(v)}" for n, v in ((n, _value_of(env, n)) for n in names)
                           if v is not None)
        hint = f"the spec requires `{fmt_expr(s.cond)}`" + (f" ({values})" if values else "")
        span, notes = self.assert_site(s, names, message)
        raise ArchError(message or "assertion failed", span, hint=hint, notes=notes)

    def assert_site(self, s: A.AssertStmt, names: list[str], message: str | None):
        """Where a failed assert points: at the caller's argument when every argument it reads was
        written by the caller (the one the message names first: "num_heads must divide dim"), else
        at the condition, with the call sites that led there."""
        frame = self.frame
        culprits = sorted((n for n in names if n in frame.given), key=lambda n: _mentioned_at(n, message))
        at = [frame.given[n] for n in culprits]
        if at and all(at):
            notes = [(f"required by '{frame.decl.name}' here", s.cond.span)]
            return at[0], notes + [(f"'{n}' given here", a) for n, a in zip(culprits[1:], at[1:])]
        return s.cond.span, [(f"in {f.decl.name}, created here", f.call)
                             for f in reversed(self.stack) if f.call][:3]

    def exec_body(self, stmts: list[A.Stmt], env: Env):
        for s in stmts:
            self.exec(s, env)

    def exec(self, s: A.Stmt, env: Env):
        if isinstance(s, A.Assign):
            env.vars[s.name] = self.eval(s.value, env)
        elif isinstance(s, A.Unpack):
            self.exec_unpack(s, env)
        elif isinstance(s, A.InStmt):
            self.exec_in(s, env)
        elif isinstance(s, A.OutStmt):
            value = self.eval(s.value, env)
            if not isinstance(value, Tensor) or value.shape and isinstance(value.shape[0], tuple):
                raise ArchError("`out` needs a tensor", s.value.span, found=describe(value),
                                hint="index a multi-output value: `out parts[0]`")
            if any(n == s.name for n, _, _ in self.frame.outputs):
                first = next(sp for n, _, sp in self.frame.outputs if n == s.name)
                what = "a second unnamed `out`" if s.name is None else f"output '{s.name}' declared twice"
                raise ArchError(what, s.span, notes=[("the first is here", first)],
                                hint="a block has one unnamed output, or names each: `out y = …`")
            self.frame.outputs.append((s.name, value, s.span))
        elif isinstance(s, A.If):
            for cond, body in s.branches:
                if self.truth(self.eval(cond, env), cond.span):
                    self.exec_body(body, env)
                    return
            self.exec_body(s.orelse, env)
        elif isinstance(s, A.For):
            items = self.eval(s.iter, env)
            if not isinstance(items, (list, tuple)):
                raise ArchError("`for` needs a list", s.iter.span, found=describe(items),
                                hint="iterate over `range(n)` or a list")
            forecast = self.budget.loop(len(items), f"this loop over {len(items):,} items", s.iter.span)
            for item in items:
                self.tick(s.span)
                nodes, steps = len(self.graph), self.budget.steps
                env.vars[s.var] = item
                self.exec_body(s.body, env)
                forecast.iteration(nodes, len(self.graph), steps)
        elif isinstance(s, A.TensorDecl):
            self.exec_tensor_decl(s, env)
        elif isinstance(s, A.InitStmt):
            self.exec_init(s, env)
        elif isinstance(s, A.AssertStmt):
            self.exec_assert(s, env)
        else:  # pragma: no cover - the grammar has no other statements
            raise ArchError(f"unsupported statement {type(s).__name__}", s.span)

    def exec_unpack(self, s: A.Unpack, env: Env):
        value = self.eval(s.value, env)
        if isinstance(value, Outputs):
            parts = list(value.values)
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        elif isinstance(value, Tensor) and value.shape and isinstance(value.shape[0], tuple):
            parts = [self.getitem(value, i, s.value.span) for i in range(len(value.shape))]
        else:
            raise ArchError(f"cannot unpack {describe(value)} into {len(s.names)} names", s.value.span,
                            hint="unpack a multi-output value (`a, b = x -> chunk(2)`), a block's "
                                 "outputs or a list")
        if len(parts) != len(s.names):
            raise ArchError(f"{len(s.names)} names for {len(parts)} parts", s.span,
                            found=describe(value), hint=f"write {len(parts)} names, one per part")
        seen = set()
        for name, part in zip(s.names, parts):
            if name in seen:
                raise ArchError(f"'{name}' appears twice on the left of '='", s.span)
            seen.add(name)
            env.vars[name] = part

    def exec_in(self, s: A.InStmt, env: Env):
        frame = self.frame
        if frame.inputs is None:
            tensor = self.top_input(s, env)
        else:
            if frame.next_input >= len(frame.inputs):
                raise ArchError(f"'{frame.decl.name}' needs input '{s.name}' but was given only "
                                f"{len(frame.inputs)} tensor(s)", s.span, notes=self.call_site())
            tensor = frame.inputs[frame.next_input]
            self.match_shape(s, tensor, env)
        frame.next_input += 1
        env.vars[s.name] = tensor

    def top_input(self, s: A.InStmt, env: Env) -> Tensor:
        k = len(self.graph.inputs)
        if self.input_shapes is not None and k < len(self.input_shapes):
            shape = tuple(self.size_value(n, s.span, f"input '{s.name}' size", least=0)
                          for n in self.input_shapes[k])
            if len(shape) != len(s.dims):
                raise ArchError(f"input '{s.name}' has {len(s.dims)} dims but the given shape "
                                f"{list(shape)} has {len(shape)}", s.span)
        else:
            if any(d.rest for d in s.dims):
                raise ArchError(f"input '{s.name}' of the top-level network cannot use `...`", s.span,
                                hint="name every dim, or pass the input shape")
            shape = tuple(self.default_dim(d, i, s, env) for i, d in enumerate(s.dims))
        if s.dtype not in INPUT_DTYPES:
            raise ArchError(f"unknown input dtype '{s.dtype}'", s.dtype_span or s.span,
                            hint=did_you_mean(s.dtype, INPUT_DTYPES) or f"one of {', '.join(INPUT_DTYPES)}")
        check_name(s.name, "input", s.span)
        node = Node(s.name, None, {}, [], shape, s.span, "", self.frame.decl.name, dtype=s.dtype, kind="input")
        self.add_node(node, s.span)
        self.graph.inputs.append(node.id)
        tensor = Tensor(node.id, shape)
        self.match_shape(s, tensor, env)
        return tensor

    def default_dim(self, d: A.Dim, i: int, s: A.InStmt, env: Env) -> int:
        if d.name is not None:
            if d.value is not None:
                return self.size_value(self.eval(d.value, env), d.span, "an input size", least=0)
            try:
                return self.size_value(env.lookup(d.name), d.span, "an input size", least=0)
            except KeyError:
                if i == 0:
                    return 1  # the batch
                raise ArchError(f"input '{s.name}' has no size for dim '{d.name}'", d.span,
                                hint=f"give a default (`{d.name} = 224`) or pass the input shape "
                                     f"(`--input 1x3x224x224`)") from None
        return self.size_value(self.eval(d.value, env), d.span, "an input size", least=0)

    def match_shape(self, s: A.InStmt, t: Tensor, env: Env):
        shape = t.shape
        dims = list(s.dims)
        rest = [k for k, d in enumerate(dims) if d.rest]
        if len(rest) > 1:
            raise ArchError(f"input '{s.name}' may use `...` once", dims[rest[1]].span)
        fixed = len(dims) - len(rest)
        if shape and isinstance(shape[0], tuple) or (len(shape) != fixed if not rest else len(shape) < fixed):
            want = f"{fixed} dims" if not rest else f"at least {fixed} dims"
            raise ArchError(f"input '{s.name}' expects {want}, got shape {_shape_text(shape)}", s.span,
                            notes=self.call_site())
        if rest:  # `...` absorbs the dims that the others do not name
            k = rest[0]
            shape = shape[:k] + shape[len(shape) - (len(dims) - k - 1):]
            dims = dims[:k] + dims[k + 1:]
        for d, actual in zip(dims, shape):
            if d.name is not None:
                bound = env.vars.get(d.name)
                if isinstance(bound, int) and not isinstance(bound, bool) and bound != actual:
                    raise ArchError(f"input '{s.name}' dim '{d.name}' must be {bound}, got {actual}",
                                    d.span, expected=str(bound), found=str(actual), notes=self.call_site())
                env.vars[d.name] = actual
            else:
                want = self.int_value(self.eval(d.value, env), d.span, "a dim")
                if want != actual:
                    raise ArchError(f"input '{s.name}' expects shape {_pattern(s)}, got "
                                    f"{list(shape)}", d.span, expected=str(want), found=str(actual),
                                    notes=self.call_site())

    def call_site(self) -> list:
        """A note at the place the current block instance was created (when there is one)."""
        frame = self.frame
        if frame.inputs is None or frame.call is None:
            return []
        return [(f"'{frame.decl.name}' is given this input here", frame.call)]

    def exec_init(self, s: A.InitStmt, env: Env):
        value = self.eval(s.value, env)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = InitSpec("constant", (("value", fill_value(value, s.value.span)),))
        if not isinstance(value, InitSpec):
            raise ArchError("an init rule needs an initialiser", s.value.span, found=describe(value),
                            hint=f"one of {', '.join(INITIALISERS)}, or a number")
        if ":" in s.pattern and s.pattern.split(":", 1)[0] not in self.ops:
            op_name = s.pattern.split(":", 1)[0]
            raise ArchError(f"init rule names no op '{op_name}'", s.span,
                            hint=did_you_mean(op_name, self.ops) or '`"conv:weight"` selects by op')
        self.graph.inits.append(InitRule(self.frame.scope.prefix, s.pattern, value, s.span))

    def exec_tensor_decl(self, s: A.TensorDecl, env: Env):
        shape = tuple(self.size_value(self.eval(d, env), d.span, f"a {s.kind}'s size") for d in s.shape)
        init = 0.0 if s.init is None else self.eval(s.init, env)
        if isinstance(init, bool) or not isinstance(init, (int, float, InitSpec)):
            raise ArchError(f"{s.kind} '{s.name}' initial value must be a number or an initialiser",
                            s.init.span, found=describe(init), hint="e.g. `= 1e-6` or `= trunc_normal(0.02)`")
        check_name(s.name, s.kind, s.span, root=not self.frame.scope.prefix)
        path = self.frame.scope.path(s.name)
        init = init if isinstance(init, InitSpec) else fill_value(init, (s.init or s).span)
        node = Node(path, None, {"init": init}, [], shape, s.span,
                    self.frame.scope.prefix, self.frame.scope.block_type, kind=s.kind)
        self.add_node(node, s.span)
        env.vars[s.name] = Tensor(path, shape)

    # ---- expressions ----------------------------------------------------------------------------

    def eval(self, e: A.Expr, env: Env):
        self.tick(e.span)
        method = getattr(self, "eval_" + type(e).__name__)
        try:
            return method(e, env)
        except RecursionError:
            raise ArchError("expression nested too deeply", e.span,
                            hint="split it into named intermediate values") from None

    def tick(self, span: Span | None, work: int = 1):
        """Count evaluation work, so that no spec (nested loops, say) can run for ever."""
        self.budget.charge(span, work)

    def eval_Name(self, e: A.Name, env: Env):
        try:
            return env.lookup(e.id)
        except KeyError:
            pass
        if e.id not in self.variants:  # every stdlib variant name is visible everywhere
            self.variants[e.id] = stdlib_value(e.id)
        if self.variants[e.id] is not None:
            return self.variants[e.id]
        raise ArchError(f"unknown name '{e.id}'", e.span,
                        hint=did_you_mean(e.id, env.visible_names())) from None

    def eval_Const(self, e: A.Const, env: Env):
        return e.value

    def eval_TupleLit(self, e: A.TupleLit, env: Env):
        return tuple(self.eval(x, env) for x in e.items)

    def eval_ListLit(self, e: A.ListLit, env: Env):
        out = []
        for st in e.items:
            v = self.eval(st.value, env)
            out.append(Labeled(self.label_text(st.label, env), v) if st.label else v)
        return out

    def eval_ListComp(self, e: A.ListComp, env: Env):
        items = self.eval(e.iter, env)
        if not isinstance(items, (list, tuple)):
            raise ArchError("a list comprehension needs a list", e.iter.span, found=describe(items))
        inner = env.child()
        out = []
        forecast = self.budget.loop(len(items), f"this list comprehension over {len(items):,} items",
                                    e.iter.span)
        for item in items:
            self.tick(e.span)
            nodes, steps = len(self.graph), self.budget.steps
            inner.vars[e.var] = item
            if e.cond is None or self.truth(self.eval(e.cond, inner), e.cond.span):
                out.append(self.eval(e.item, inner))
            forecast.iteration(nodes, len(self.graph), steps)
        return out

    def eval_Attr(self, e: A.Attr, env: Env):
        v = self.eval(e.value, env)
        if isinstance(v, Namespace):
            if e.name not in v.members:
                raise ArchError(f"module '{v.name}' has no '{e.name}'", e.span,
                                hint=did_you_mean(e.name, v.members))
            return v.members[e.name]
        if isinstance(v, Outputs):
            if e.name not in v.names:
                raise ArchError(f"no output named '{e.name}'", e.span, hint=did_you_mean(e.name, v.names))
            return v.values[v.names.index(e.name)]
        if isinstance(v, Tensor) and e.name in ("shape", "ndim"):
            return list(v.shape) if e.name == "shape" else len(v.shape)
        raise ArchError(f"{describe(v)} has no attribute '{e.name}'", e.span,
                        hint="only modules, block outputs and tensors (.shape, .ndim) have attributes")

    def getitem(self, v: Tensor, i, span):
        return self.make_node(OpRef("getitem", self.ops["getitem"]), [], {"index": i}, [v], None, span)

    def eval_Index(self, e: A.Index, env: Env):
        v, i = self.eval(e.value, env), self.eval(e.index, env)
        if isinstance(v, Outputs):
            if isinstance(i, str):
                return self.eval_Attr(A.Attr(span=e.span, value=e.value, name=i), env)
            v = list(v.values)
        if isinstance(v, Tensor):
            return self.getitem(v, i, e.span)
        if not isinstance(v, (list, tuple, str)):
            raise ArchError(f"{describe(v)} cannot be indexed", e.span)
        if isinstance(i, bool) or not isinstance(i, int):
            raise ArchError("an index must be an integer", e.index.span, found=describe(i))
        if not -len(v) <= i < len(v):
            raise ArchError(f"index {i} out of range for a {describe(v)} of length {len(v)}", e.span)
        return v[i]

    def eval_Unary(self, e: A.Unary, env: Env):
        v = self.eval(e.operand, env)
        if e.op == "not":
            return not self.truth(v, e.operand.span)
        if isinstance(v, Tensor):
            if e.op == "+":
                return v
            return self.make_node(OpRef("mul", self.ops["mul"]), [], {"scalar": -1.0}, [v], None, e.span)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ArchError(f"unary '{e.op}' needs a number", e.span, found=describe(v))
        return -v if e.op == "-" else v

    def eval_BinOp(self, e: A.BinOp, env: Env):
        left, right = self.eval(e.left, env), self.eval(e.right, env)
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            return self.tensor_binop(e, left, right)
        return self.scalar_binop(e, left, right)

    def tensor_binop(self, e: A.BinOp, left, right):
        if e.op not in _TENSOR_OP:
            raise ArchError(f"'{e.op}' is not defined on tensors", e.span,
                            hint="tensors support + - * / **")
        op = OpRef(_TENSOR_OP[e.op], self.ops[_TENSOR_OP[e.op]])
        if isinstance(left, Tensor) and isinstance(right, Tensor):
            return self.make_node(op, [], {}, [left, right], None, e.span)
        tensor, scalar = (left, right) if isinstance(left, Tensor) else (right, left)
        if isinstance(scalar, bool) or not isinstance(scalar, (int, float)):
            raise ArchError(f"cannot apply '{e.op}' to a tensor and {describe(scalar)}", e.span)
        if isinstance(scalar, int) and not -2 ** 1023 < scalar < 2 ** 1023:
            raise ArchError(f"'{e.op}' with an integer of {scalar.bit_length()} bits: a tensor's "
                            f"scalar must fit a float", e.span, hint="floats reach about 1.8e308")
        return self.make_node(op, [], {"scalar": float(scalar), "reverse": tensor is right},
                              [tensor], None, e.span)

    def scalar_binop(self, e: A.BinOp, left, right):
        for v in (left, right):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(v, int) \
                    and v.bit_length() > MAX_INT_BITS:
                raise ArchError("integer too large", e.span,
                                hint=f"integers in a spec have at most {MAX_INT_BITS} bits")
        if e.op == "**" and isinstance(right, (int, float)) and isinstance(left, (int, float)):
            if abs(right) > MAX_INT_BITS or (abs(left) > 1 and right * math.log2(abs(left)) > MAX_INT_BITS):
                raise ArchError("power too large", e.span,
                                hint=f"integers in a spec have at most {MAX_INT_BITS} bits")
        if e.op == "*" and isinstance(right, int) and isinstance(left, (list, str, tuple)) or \
                e.op == "*" and isinstance(left, int) and isinstance(right, (list, str, tuple)):
            n, seq = (right, left) if isinstance(right, int) else (left, right)
            if n * len(seq) > MAX_ITEMS:
                raise ArchError("sequence too large", e.span, hint=f"lists hold at most {MAX_ITEMS} items")
        if e.op == "+" and isinstance(left, (list, str, tuple)) and isinstance(right, (list, str, tuple)):
            if len(left) + len(right) > MAX_ITEMS:
                raise ArchError("sequence too large", e.span, hint=f"lists hold at most {MAX_ITEMS} items")
        work = _result_size(e.op, left, right)
        self.budget.charge(e.span, work, f"'{e.op}' builds {work:,} items" if work > 1000 else None)
        try:
            result = _ARITH[e.op](left, right)
        except ZeroDivisionError:
            raise ArchError("division by zero", e.span) from None
        except (TypeError, OverflowError, ValueError):
            raise ArchError(f"cannot apply '{e.op}' to {describe(left)} and {describe(right)}",
                            e.span) from None
        if not isinstance(result, (bool, int, float, str, list, tuple)) or isinstance(result, complex):
            raise ArchError(f"'{e.op}' gave an unsupported value", e.span)
        return result

    def eval_Compare(self, e: A.Compare, env: Env):
        left = self.eval(e.first, env)
        for op, expr in e.rest:
            right = self.eval(expr, env)
            if isinstance(left, Tensor) or isinstance(right, Tensor):
                raise ArchError("tensors cannot be compared while elaborating", e.span,
                                hint="compare shapes instead: `x.shape[1] == 64`")
            if op in ("in", "not in") and not isinstance(right, (list, tuple, str)):
                raise ArchError(f"'{op}' needs a list, tuple or string on its right", expr.span,
                                found=describe(right))
            self.budget.charge_values(e.span, f"'{op}'", left, right)
            try:
                ok = _COMPARE[op](left, right)
            except TypeError:
                raise ArchError(f"cannot compare {describe(left)} and {describe(right)} with '{op}'",
                                e.span) from None
            if not ok:
                return False
            left = right
        return True

    def eval_BoolOp(self, e: A.BoolOp, env: Env):
        v = None
        for x in e.values:
            v = self.eval(x, env)
            t = self.truth(v, x.span)
            if (e.op == "and" and not t) or (e.op == "or" and t):
                return v
        return v

    def eval_Ternary(self, e: A.Ternary, env: Env):
        return self.eval(e.then if self.truth(self.eval(e.cond, env), e.cond.span) else e.orelse, env)

    def eval_Call(self, e: A.Call, env: Env):
        fn = self.eval(e.func, env)
        args, kwargs, arg_spans, kw_spans = [], {}, [], {}
        for a in e.args:
            v = self.eval(a.value, env)
            if a.name is None:
                if kwargs:
                    raise ArchError("positional argument after a keyword argument", a.span)
                args.append(v)
                arg_spans.append(a.span)
            elif a.name in kwargs:
                raise ArchError(f"argument '{a.name}' given twice", a.span)
            else:
                kwargs[a.name] = v
                kw_spans[a.name] = a.span
        return self.call(fn, args, kwargs, e.span, arg_spans, kw_spans)

    def call(self, fn, args: list, kwargs: dict, span: Span, arg_spans=(), kw_spans: dict | None = None):
        if isinstance(fn, Builtin):
            if any(isinstance(v, (Tensor, Outputs)) for v in (*args, *kwargs.values())):
                raise ArchError(f"builtin '{fn.name}' works on numbers and lists, not tensors", span)
            self.budget.charge_values(span, f"'{fn.name}'", *args, *kwargs.values())
            try:
                result = fn.fn(*args, **kwargs)
            except BuiltinError as err:
                raise ArchError(f"{fn.name}: {err.message}", span, hint=err.hint) from None
            except (TypeError, ValueError, OverflowError, ZeroDivisionError, IndexError) as err:
                raise ArchError(f"bad arguments to '{fn.name}': {err}", span) from None
            self.tick(span, _size(result))
            return result
        if not isinstance(fn, (OpRef, BlockRef, Partial)):
            raise ArchError(f"{describe(fn)} is not callable", span,
                            hint="only ops, blocks and builtins can be called")
        arg_spans = tuple(arg_spans) + (None,) * (len(args) - len(arg_spans))
        tensors = _leading_tensors(args)
        skip = (1 if isinstance(args[0], (list, tuple)) else len(tensors)) if tensors else 0
        args, arg_spans = tuple(args[skip:]), arg_spans[skip:]
        kw_spans = dict(kw_spans or {})
        if isinstance(fn, Partial):  # `f(…)` where f = conv(64): add to the arguments bound so far
            args, arg_spans = fn.args + args, fn.positional_spans() + arg_spans
            kwargs, kw_spans = {**dict(fn.kwargs), **kwargs}, {**dict(fn.kw_spans), **kw_spans}
            fn = fn.callee
        partial = Partial(fn, args, tuple(kwargs.items()), span, arg_spans, tuple(kw_spans.items()))
        return self.apply(partial, tensors, None, span) if tensors else partial

    def eval_Chain(self, e: A.Chain, env: Env):
        value = self.eval(e.head, env)
        left = e.head.span
        for st in e.stages:
            inputs = self.as_inputs(value, left)
            left = st.span
            fn = self.eval(st.value, env)
            label = self.label_text(st.label, env) if st.label else None
            value = self.apply(fn, inputs, label, st.span)
        return value

    def eval_Repeat(self, e: A.Repeat, env: Env):
        n = self.int_value(self.eval(e.count, env), e.count.span, "a repeat count")
        if not 0 <= n <= self.budget.limits.repeat:
            raise ArchError(f"repeat count {n} must be between 0 and {self.budget.limits.repeat}",
                            e.count.span)
        if n == 0:
            warn("repeat(0) applies its body no times: its input passes through unchanged",
                 e.count.span, hint="that is deliberate for an empty stage; otherwise check the count")
        return RepeatVal(e, n, env.snapshot())

    # ---- application: a callable applied to tensors --------------------------------------------

    def as_inputs(self, value, span) -> list[Tensor]:
        if isinstance(value, Tensor):
            return [value]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
            return list(value)
        if isinstance(value, Outputs):   # a block's outputs feed the next stage's inputs, in order
            return list(value.values)
        raise ArchError(f"'->' needs a tensor on its left, got {describe(value)}", span,
                        found=describe(value),
                        hint="the left of '->' is a tensor (an input or the result of a stage), a list "
                             "of tensors `[a, b]` or a block's outputs")

    def apply(self, fn, inputs: list[Tensor], label: str | None, span: Span):
        scope = self.frame.scope
        if isinstance(fn, Labeled):
            fn, label = fn.value, label or fn.label
        if isinstance(fn, OpRef):
            return self.make_node(fn, [], {}, inputs, label, span)
        if isinstance(fn, BlockRef):
            fn = Partial(fn, (), (), span)
        if isinstance(fn, Partial):
            bound = list(zip(fn.args, fn.positional_spans()))
            extra = [a for a, _ in bound if isinstance(a, Tensor)]
            args = [a for a, _ in bound if not isinstance(a, Tensor)]
            arg_spans = [s for a, s in bound if not isinstance(a, Tensor)]
            kw_spans = dict(fn.kw_spans)
            if isinstance(fn.callee, OpRef):
                return self.make_node(fn.callee, args, dict(fn.kwargs), inputs + extra, label, span,
                                      arg_spans, kw_spans)
            path = self.claim(scope, label, _snake(fn.callee.name), span)
            return self.instantiate(fn.callee, args, dict(fn.kwargs), inputs + extra,
                                    Scope(path, fn.callee.name), span, arg_spans, kw_spans)
        if isinstance(fn, (list, tuple)):
            return self.apply_sequence(list(fn), inputs, label, span)
        if isinstance(fn, RepeatVal):
            return self.apply_repeat(fn, inputs, label, span)
        raise ArchError(f"cannot apply {describe(fn)} to a tensor", span,
                        hint="a stage after '->' is an op, a block, a [sequence] or a repeat")

    def apply_sequence(self, members: list, inputs, label, span):
        """Members are numbered 0, 1, … under the label, or in the enclosing scope when unlabeled."""
        outer = self.frame.scope
        if label is not None:
            self.frame.scope = Scope(self.claim(outer, label, "", span), outer.block_type)
        try:
            value = inputs
            for k, m in enumerate(members):
                value = self.apply(m, self.as_inputs(value, span), None if isinstance(m, Labeled) else str(k),
                                   span)
        finally:
            self.frame.scope = outer
        return value

    def apply_repeat(self, rep: RepeatVal, inputs, label, span):
        path = self.claim(self.frame.scope, label, "repeat", span)
        outer = self.frame.scope
        e = rep.expr
        stages = [A.Stage(span=e.body.head.span, value=e.body.head)] + list(e.body.stages)
        value: Any = inputs
        forecast = self.budget.loop(rep.count, f"repeat({rep.count})", rep.expr.count.span)
        for j in range(rep.count):
            nodes, steps = len(self.graph), self.budget.steps
            env = rep.env.child()
            if e.index:
                env.vars[e.index] = j
            if e.counter:
                env.vars[e.counter] = self.counters.get(e.counter, 0)
                self.counters[e.counter] = env.vars[e.counter] + 1
            try:
                if len(stages) == 1 and stages[0].label is None:
                    self.frame.scope = Scope(path, outer.block_type)
                    fn = self.eval(stages[0].value, env)
                    value = self.apply(fn, self.as_inputs(value, span), str(j), stages[0].span)
                else:
                    self.frame.scope = Scope(self.claim(Scope(path, outer.block_type), str(j), "", span),
                                             outer.block_type)
                    for k, st in enumerate(stages):
                        fn = self.eval(st.value, env)
                        name = self.label_text(st.label, env) if st.label else str(k)
                        value = self.apply(fn, self.as_inputs(value, st.span), name, st.span)
            finally:
                self.frame.scope = outer
            forecast.iteration(nodes, len(self.graph), steps)
        return value[0] if isinstance(value, list) and len(value) == 1 else value

    # ---- nodes ------------------------------------------------------------------------------------

    def make_node(self, ref: OpRef, args: list, kwargs: dict, inputs: list[Tensor], label: str | None,
                  span: Span, arg_spans=(), kw_spans: dict | None = None):
        op: Op = ref.op
        attrs = self.op_attrs(ref, args, kwargs, span, arg_spans, kw_spans or {})
        if op.n_inputs is not None and len(inputs) != op.n_inputs:
            raise ArchError(f"'{ref.name}' takes {op.n_inputs} tensor input(s), got {len(inputs)}", span)
        shapes = [t.shape for t in inputs]
        if op.name != "getitem" and any(s and isinstance(s[0], tuple) for s in shapes):
            raise ArchError(f"'{ref.name}' got a multi-output value", span,
                            hint="pick one output by index: `parts[0]`")
        try:
            out = op.infer(attrs, shapes)
        except ShapeError as err:
            notes = [(f"input {k} '{t.node}' has shape {_shape_text(t.shape)}",
                      self.graph.node(t.node).span) for k, t in enumerate(inputs)]
            named = any(err.message.startswith(n + sep) for n in (op.name, ref.name) for sep in " :")
            message = err.message if named else f"{ref.name}: {err.message}"
            raise ArchError(message, span, hint=err.hint, notes=notes) from None
        if any(n > MAX_DIM for n in _dims(out)):
            raise ArchError(f"'{ref.name}' gives shape {_shape_text(out)}: a dim is larger than "
                            f"{MAX_DIM:,}", span, hint="check the sizes given to this op")
        scope = self.frame.scope
        path = self.claim(scope, label, op.name, span)
        node = Node(path, op.name, attrs, [t.node for t in inputs], out, span, scope.prefix,
                    scope.block_type)
        self.add_node(node, span)
        return Tensor(path, out)

    def op_attrs(self, ref: OpRef, args: list, kwargs: dict, span: Span, arg_spans=(),
                 kw_spans: dict | None = None):
        """Validate an op's arguments; errors point at the argument where it was written."""
        op = ref.op
        kw_spans = kw_spans or {}
        if len(args) > len(op.positional):
            most = f"at most {len(op.positional)} positional argument(s) ({', '.join(op.positional)})" \
                if op.positional else "no positional arguments"
            raise ArchError(f"'{ref.name}' takes {most}, got {len(args)}",
                            _nth(arg_spans, len(op.positional)) or span, hint=_name_them(op))
        values = dict(zip(op.positional, args))
        at = {k: _nth(arg_spans, i) for i, k in enumerate(op.positional[:len(args)])}
        for k, v in kwargs.items():
            if k in values:
                raise ArchError(f"'{ref.name}' argument '{k}' given twice", kw_spans.get(k) or span,
                                hint="it is also given by position")
            values[k] = v
            at[k] = kw_spans.get(k)
        fields = op.Attrs.model_fields
        self.budget.charge_values(span, f"the arguments of '{ref.name}'", *values.values())
        for k in values:
            if k not in fields:
                raise ArchError(f"'{ref.name}' has no argument '{k}'", at.get(k) or span,
                                hint=did_you_mean(k, fields) or f"its arguments: {', '.join(fields) or '(none)'}")
        for k, v in values.items():
            if isinstance(v, (Tensor, OpRef, BlockRef, Partial, Outputs, RepeatVal)):
                raise ArchError(f"'{ref.name}' argument '{k}' must be a plain value", at.get(k) or span,
                                found=describe(v))
            if any(isinstance(n, int) and not -2 ** 63 <= n < 2 ** 63 for n in _flat_items(v)):
                raise ArchError(f"'{ref.name}' argument '{k}' does not fit a 64-bit integer",
                                at.get(k) or span, hint="torch takes sizes, strides and dims as int64")
            wrong = _coerced_kind(v, fields[k].annotation)
            if wrong:  # pydantic's lax mode would quietly turn "64" or true into 64 or 1
                raise ArchError(f"'{ref.name}' argument '{k}' cannot be {wrong}", at.get(k) or span,
                                found=repr(v))
        try:
            return op.Attrs(**values)
        except ValidationError as err:
            first = err.errors()[0]
            field_name = str(first["loc"][0]) if first["loc"] else "?"
            required = [k for k, f in fields.items() if f.is_required()]
            hint = f"'{ref.name}' needs: {', '.join(required)}" if first["type"] == "missing" else None
            raise ArchError(f"'{ref.name}' argument '{field_name}': {first['msg'].lower()}",
                            at.get(field_name) or span,
                            found=repr(first.get("input")) if first["type"] != "missing" else None,
                            hint=hint) from None

    def claim(self, scope: Scope, label: str | None, auto: str, span: Span) -> str:
        """Reserve a unique path: an explicit label must be new; an auto name gets a suffix."""
        if label is not None:
            path = scope.path(label)
            if not scope.prefix and label.split(".")[0] in ROOT_ATTRS:
                raise ArchError(f"label '{label}' names an attribute of the built network",
                                span, hint="choose another name (a network's top level cannot use "
                                           "`graph`, `code`, `meta`, … as labels)")
            if path in self.used:
                first = self.graph.node(path).span if path in self.graph else \
                    getattr(self.graph.blocks.get(path), "span", None)
                raise ArchError(f"duplicate node name '{label}' in '{scope.block_type}'", span,
                                notes=[("first used here", first)] if first else (),
                                hint="each named node in a block needs its own name; in a loop, "
                                     "make it a template such as `conv{i}:`")
            self.used.add(path)
            return path
        base = auto or "node"
        while True:
            k = scope.auto.get(base, 0)
            scope.auto[base] = k + 1
            name = base if k == 0 else f"{base}_{k}"
            if name_problem(name, root=not scope.prefix):  # a block named `Class` or `Float`
                name += "_"
            path = scope.path(name)
            if path not in self.used:
                self.used.add(path)
                return path

    def add_node(self, node: Node, span):
        if node.id in self.graph and node.kind in ("input", "param", "buffer"):
            raise ArchError(f"duplicate name '{node.id}'", span)
        self.budget.check_nodes(len(self.graph), span)
        self.check_nesting(node, span)
        self.used.add(node.id)
        self.graph.add(node)

    def check_nesting(self, node: Node, span):
        """A node's path may not pass through another node's (`fc.weight` under a linear `fc`
        is that linear's own weight) nor be a path other nodes are under."""
        hint = "labels are module paths: give this node a name of its own"
        if node.id in self.containers:
            inner = next(p for p in self.graph.nodes() if p.id.startswith(node.id + "."))
            raise ArchError(f"'{node.id}' is already the path of a group of modules", span,
                            notes=[(f"'{inner.id}' is inside it", inner.span)], hint=hint)
        parts = node.id.split(".")
        prefixes = [".".join(parts[:k]) for k in range(1, len(parts))]
        for prefix in prefixes:
            if prefix in self.graph:
                outer = self.graph.node(prefix)
                raise ArchError(f"'{node.id}' would be inside the {outer.title} node '{prefix}'", span,
                                notes=[(f"'{prefix}' is created here", outer.span)], hint=hint)
        self.containers.update(prefixes)

    # ---- helpers -------------------------------------------------------------------------------------

    def label_text(self, label: A.Label, env: Env) -> str:
        out = []
        for p in label.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                v = self.eval(p, env)
                if isinstance(v, bool) or not isinstance(v, (int, str)):
                    raise ArchError("a label template must give an integer or a string", p.span,
                                    found=describe(v))
                out.append(str(v))
        text = "".join(out)
        problem = path_problem(text, root=False)  # `claim` checks the top level
        if problem:
            raise ArchError(f"label '{shown(text)}': {problem}", label.span,
                            hint="a label is part of a module path and of state_dict keys: "
                                 "identifiers or indices joined by '.', such as `conv1`, "
                                 "`layer{i + 1}` or `fuse{\".\" + str(i)}`")
        return text

    def truth(self, v, span) -> bool:
        if isinstance(v, (Tensor, Outputs)):
            raise ArchError("a tensor has no truth value while elaborating", span, found=describe(v),
                            hint="conditions are decided from shapes: `if x.shape[1] == 64`")
        return bool(v)

    def size_value(self, v, span, what: str, least: int = 1) -> int:
        """A tensor dim written in the spec, small enough for torch to build; an input's may be 0
        (an empty batch of crops: DINO with n_local=0)."""
        n = self.int_value(v, span, what)
        if not least <= n <= MAX_DIM:
            raise ArchError(f"{what} must be between {least} and {MAX_DIM:,}, got {_brief_int(n)}", span)
        return n

    def int_value(self, v, span, what: str) -> int:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ArchError(f"{what} must be an integer", span, found=describe(v))
        return v


def _brief_int(n: int) -> str:
    return str(n) if abs(n) < 10 ** 15 else f"an integer of {len(str(abs(n)))} digits"


def fill_value(v, span: Span) -> float:
    """A number a float32 parameter or buffer is filled with."""
    try:
        return f32("initial value", v)
    except ValueError as err:
        raise ArchError(str(err), span,
                        hint="parameters and buffers are float32 tensors") from None


def top_call(callee, overrides: dict[str, Any], span: Span | None):
    """A variant's call with the caller's overrides: (block, args, kwargs, arg_spans, kw_spans).
    An override replaces the variant's argument, whether the variant gave it by name or position."""
    if isinstance(callee, Partial):
        block, args, kwargs = callee.callee, list(callee.args), dict(callee.kwargs)
        arg_spans, kw_spans = list(callee.positional_spans()), dict(callee.kw_spans)
    else:
        block, args, kwargs, arg_spans, kw_spans = callee, [], {}, [], {}
    if not isinstance(block, BlockRef):
        raise ArchError(f"{describe(block)} is not a network", span,
                        hint="a variant must call a `network`, `topology` or `block`")
    order = [p.name for p in block.decl.params]
    for k, v in overrides.items():  # given from outside the spec: they have no place in it
        kw_spans.pop(k, None)
        if k in order and order.index(k) < len(args):
            args[order.index(k)], arg_spans[order.index(k)] = v, None
        else:
            kwargs[k] = v
    return block, args, kwargs, arg_spans, kw_spans


def _names_in(e) -> list[str]:
    """The names an expression reads, in order, each once."""
    out: list[str] = []
    def visit(x):
        if isinstance(x, A.Name):
            if x.id not in out:
                out.append(x.id)
        elif isinstance(x, A.Node):
            for f in type(x).model_fields:
                visit(getattr(x, f))
        elif isinstance(x, (list, tuple)):
            for y in x:
                visit(y)
    visit(e)
    return out


def _mentioned_at(name: str, message: str | None) -> int:
    found = re.search(rf"\b{re.escape(name)}\b", message or "")
    return found.start() if found else len(message or "")


def _value_of(env: Env, name: str):
    """A name's value when it is data (a number, string, list, block): None for ops and builtins."""
    try:
        v = env.lookup(name)
    except KeyError:
        return None
    return None if isinstance(v, (OpRef, Builtin, Namespace, Tensor)) else v


def _size(v) -> int:
    """Work to process a value, for the step budget: its length if it is a sequence."""
    return len(v) if isinstance(v, (list, tuple, str)) else 1


def _result_size(op: str, left, right) -> int:
    """Work of a binary operation on plain values: the length of what it builds."""
    if op == "*" and isinstance(left, int) and isinstance(right, (list, tuple, str)):
        left, right = right, left
    if op == "*" and isinstance(left, (list, tuple, str)) and isinstance(right, int):
        return max(1, len(left) * right)
    return _size(left) + _size(right)


def _flat_items(v) -> list:
    """A value, or the items of a (nested) list or tuple of values."""
    if not isinstance(v, (list, tuple)):
        return [v]
    return [x for item in v for x in _flat_items(item)]


def _name_them(op: Op) -> str:
    named = [k for k in op.Attrs.model_fields if k not in op.positional]
    if not named:
        return f"'{op.name}' takes no arguments"
    return f"name the others: {', '.join(f'`{k}=…`' for k in named[:4])}"


def _dims(shape) -> list[int]:
    """Every dim of a shape, or of each part of a multi-output shape."""
    if shape and isinstance(shape[0], tuple):
        return [n for part in shape for n in part]
    return list(shape)


def _nth(spans, i: int) -> Span | None:
    return spans[i] if i < len(spans) else None


def _leading_tensors(args: list) -> list[Tensor]:
    if args and isinstance(args[0], (list, tuple)) and args[0] and all(isinstance(t, Tensor) for t in args[0]):
        return list(args[0])
    out = []
    for a in args:
        if not isinstance(a, Tensor):
            break
        out.append(a)
    return out


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _shape_text(shape) -> str:
    if shape and isinstance(shape[0], tuple):
        return "(" + ", ".join(_shape_text(s) for s in shape) + ")"
    return str(list(shape))


def _pattern(s: A.InStmt) -> str:
    from archdsl.syntax.fmt import fmt_expr
    return "[" + ", ".join("..." if d.rest else d.name or fmt_expr(d.value) for d in s.dims) + "]"


_SIMPLE_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
                 "list": (list,), "tuple": (tuple, list)}


_TYPE_NAMES = {"any", "none", "block", "op", "callable", "tensor", *_SIMPLE_TYPES}


def check_type(t: A.TypeExpr) -> None:
    """A parameter's type annotation names only known types."""
    if t.name not in _TYPE_NAMES:
        raise ArchError(f"unknown type '{t.name}'", t.span,
                        hint=did_you_mean(t.name, _TYPE_NAMES) or f"types: {', '.join(sorted(_TYPE_NAMES))}")
    for a in t.args:
        check_type(a)


def type_matches(v, t: A.TypeExpr) -> bool:
    if v is None:
        return t.optional or t.name in ("any", "none")
    if t.name == "any":
        return True
    if t.name in ("block", "op", "callable"):
        return isinstance(v, (BlockRef, OpRef, Partial, list, RepeatVal))
    if t.name == "tensor":
        return isinstance(v, Tensor)
    kinds = _SIMPLE_TYPES.get(t.name)
    if kinds is None:
        return False
    if isinstance(v, bool) and t.name != "bool":
        return False
    if not isinstance(v, kinds):
        return False
    if t.choices:
        return v in t.choices
    if t.name in ("list", "tuple") and t.args:
        return all(type_matches(x, t.args[0]) for x in v)
    return True


def _found(value, t: A.TypeExpr) -> str:
    """What a wrong argument was: the string itself when the type lists choices."""
    return spec_text(value) if t.choices and isinstance(value, str) else describe(value)


def type_text(t: A.TypeExpr) -> str:
    if t.choices:
        return "one of " + ", ".join(f'"{c}"' for c in t.choices) + (" or none" if t.optional else "")
    args = f"[{', '.join(type_text(a) for a in t.args)}]" if t.args else ""
    return f"{t.name}{args}" + (" or none" if t.optional else "")


def _leaf_types(annotation) -> set:
    """The plain types an attribute annotation admits (through Union, Optional, list, tuple)."""
    import typing
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return {type(a) for a in typing.get_args(annotation)}
    if origin is None:
        return {annotation}
    out: set = set()
    for arg in typing.get_args(annotation):
        if arg is not Ellipsis:
            out |= _leaf_types(arg)
    return out


def _coerced_kind(value, annotation) -> str | None:
    """'a string' or 'a bool' when the value is one and the attribute cannot hold it."""
    leaves = _leaf_types(annotation)
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if isinstance(v, bool) and bool not in leaves:
            return "a bool"
        if isinstance(v, str) and str not in leaves:
            return "a string"
    return None

