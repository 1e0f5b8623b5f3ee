"""Block instances and statements: a call's arguments bound and type-checked, a body run
statement by statement (`in`, `out`, assignments, `if`, `for`, `param`/`buffer`, `init`,
`assert`), the instance's inputs matched against its declared shapes."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from archdsl.errors import ArchError, Span, did_you_mean
from archdsl.ir.graph import BlockInstance, Graph, Node
from archdsl.ir.inits import INITIALISERS, InitRule, InitSpec, f32
from archdsl.ir.names import check_name
from archdsl.semantics.calls import Scope, nth_span, shape_text
from archdsl.semantics.memo import InstanceMemo
from archdsl.semantics.values import (BlockRef, Builtin, Env, Namespace, OpRef, Outputs, Partial, RepeatVal,
                                      Tensor, describe, spec_text)
from archdsl.syntax import ast as A
from archdsl.syntax.fmt import fmt_expr

INPUT_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")


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


class Statements:
    """The Elaborator's block instances and statements (it holds the frame stack, the graph and
    the instance memo)."""

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
                            f"positional", nth_span(arg_spans, len(decl.params)) or span,
                            notes=declared if span is None else (),
                            hint=f"its parameters: {', '.join(params) or '(none)'}")
        given = dict(zip((p.name for p in decl.params), args))
        at = {p.name: nth_span(arg_spans, i) for i, p in enumerate(decl.params[:len(args)])}
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
            self._check_unpack_count(s, value, len(value.shape))   # before making a node per part
            parts = [self.getitem(value, i, s.value.span) for i in range(len(value.shape))]
        else:
            raise ArchError(f"cannot unpack {describe(value)} into {len(s.names)} names", s.value.span,
                            hint="unpack a multi-output value (`a, b = x -> chunk(2)`), a block's "
                                 "outputs or a list")
        self._check_unpack_count(s, value, len(parts))
        seen = set()
        for name, part in zip(s.names, parts):
            if name in seen:
                raise ArchError(f"'{name}' appears twice on the left of '='", s.span)
            seen.add(name)
            env.vars[name] = part

    @staticmethod
    def _check_unpack_count(s: A.Unpack, value, count: int) -> None:
        if count != len(s.names):
            raise ArchError(f"{len(s.names)} names for {count} parts", s.span,
                            found=describe(value), hint=f"write {count} names, one per part")

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
            raise ArchError(f"input '{s.name}' expects {want}, got shape {shape_text(shape)}", s.span,
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
