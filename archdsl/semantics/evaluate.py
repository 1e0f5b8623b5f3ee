"""The expression interpreter of the spec language: names, literals, arithmetic, comparisons,
comprehensions and builtins, over plain values, with every step counted against the budget.

Where an expression makes tensors (an op applied, `x + y` or `-x` on tensors, `x[0]` of a
multi-output value), it calls the elaborator's `tensor_binop`, `negate`, `getitem` and `call`
(semantics/calls.py); list comprehensions forecast their cost with its `nodes_made`.
"""
from __future__ import annotations

import math
import operator
from typing import Any

from archdsl.errors import ArchError, Span, did_you_mean
from archdsl.ir.names import path_problem, shown
from archdsl.semantics.budget import Budget
from archdsl.semantics.builtins import MAX_INT_BITS, MAX_ITEMS, BuiltinError
from archdsl.semantics.catalog import stdlib_value
from archdsl.semantics.values import Builtin, Env, Labeled, Namespace, Outputs, Tensor, describe
from archdsl.syntax import ast as A

MAX_DIM = 2 ** 31 - 1   # one tensor dim: larger ones are typos (10 ** 30) that torch cannot build

_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "//": operator.floordiv, "%": operator.mod, "**": operator.pow}
_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge,
            "in": lambda a, b: a in b, "not in": lambda a, b: a not in b}


class Evaluator:
    """Evaluates expressions in an environment (semantics/values.py Env)."""

    def __init__(self):
        self.budget = Budget()
        self.variants: dict[str, Any] = {}   # stdlib variants named in the spec, each loaded once

    def nodes_made(self) -> int:
        """Graph nodes made so far: what loops forecast their cost with (a plain value makes none)."""
        return 0

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
            nodes, steps = self.nodes_made(), self.budget.steps
            inner.vars[e.var] = item
            if e.cond is None or self.truth(self.eval(e.cond, inner), e.cond.span):
                out.append(self.eval(e.item, inner))
            forecast.iteration(nodes, self.nodes_made(), steps)
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
            return self.negate(v, e.span)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ArchError(f"unary '{e.op}' needs a number", e.span, found=describe(v))
        return -v if e.op == "-" else v

    def eval_BinOp(self, e: A.BinOp, env: Env):
        left, right = self.eval(e.left, env), self.eval(e.right, env)
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            return self.tensor_binop(e, left, right)
        return self.scalar_binop(e, left, right)

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
        """A builtin applied to plain values (the elaborator also calls ops and blocks)."""
        if not isinstance(fn, Builtin):
            raise ArchError(f"{describe(fn)} is not callable", span,
                            hint="only ops, blocks and builtins can be called")
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
