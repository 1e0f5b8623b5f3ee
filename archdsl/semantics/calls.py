"""Calls and nodes: ops, blocks, sequences and repeats applied to tensors, each op node's
arguments checked against its attribute schema, its shape inferred and its path claimed."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from archdsl.errors import ArchError, Span, did_you_mean, warn
from archdsl.ir.graph import Node
from archdsl.ir.names import ROOT_ATTRS, name_problem
from archdsl.ops.base import Op, ShapeError
from archdsl.semantics.evaluate import MAX_DIM
from archdsl.semantics.values import BlockRef, Env, Labeled, OpRef, Outputs, Partial, RepeatVal, Tensor, describe
from archdsl.syntax import ast as A

_TENSOR_OP = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}


@dataclass
class Scope:
    """Where new nodes go: the enclosing block instance's path and type."""
    prefix: str
    block_type: str
    auto: dict[str, int] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name


class Calls:
    """The Elaborator's calls and nodes (it holds `graph`, `ops`, `used`, `containers` and the
    frame stack)."""

    def getitem(self, v: Tensor, i, span):
        return self.make_node(OpRef("getitem", self.ops["getitem"]), [], {"index": i}, [v], None, span)

    def negate(self, v: Tensor, span: Span) -> Tensor:
        return self.make_node(OpRef("mul", self.ops["mul"]), [], {"scalar": -1.0}, [v], None, span)

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

    def call(self, fn, args: list, kwargs: dict, span: Span, arg_spans=(), kw_spans: dict | None = None):
        """An op or block called: applied to the tensors its arguments start with, else a Partial
        (the arguments bound so far)."""
        if not isinstance(fn, (OpRef, BlockRef, Partial)):
            return super().call(fn, args, kwargs, span, arg_spans, kw_spans)
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
            notes = [(f"input {k} '{t.node}' has shape {shape_text(t.shape)}",
                      self.graph.node(t.node).span) for k, t in enumerate(inputs)]
            named = any(err.message.startswith(n + sep) for n in (op.name, ref.name) for sep in " :")
            message = err.message if named else f"{ref.name}: {err.message}"
            raise ArchError(message, span, hint=err.hint, notes=notes) from None
        if any(n > MAX_DIM for n in _dims(out)):
            raise ArchError(f"'{ref.name}' gives shape {shape_text(out)}: a dim is larger than "
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
                            nth_span(arg_spans, len(op.positional)) or span, hint=_name_them(op))
        values = dict(zip(op.positional, args))
        at = {k: nth_span(arg_spans, i) for i, k in enumerate(op.positional[:len(args)])}
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


def nth_span(spans, i: int) -> Span | None:
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


def shape_text(shape) -> str:
    if shape and isinstance(shape[0], tuple):
        return "(" + ", ".join(shape_text(s) for s in shape) + ")"
    return str(list(shape))


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
