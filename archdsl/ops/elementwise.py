"""Binary elementwise ops with broadcasting: add, sub, mul, div, pow (tensor ⊕ tensor or scalar).

other_flops: one per output element.
"""
from __future__ import annotations

import operator
from typing import Optional

from archdsl.ops.base import Attrs, Op, ShapeError, register


def broadcast(a: tuple, b: tuple) -> tuple:
    rank = max(len(a), len(b))
    a, b = (1,) * (rank - len(a)) + tuple(a), (1,) * (rank - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ShapeError(f"shapes {list(a)} and {list(b)} do not broadcast")
        out.append(y if x == 1 else x)  # a size-1 axis takes the other's size, 0 included
    return tuple(out)


class ScalarAttrs(Attrs):
    scalar: Optional[float] = None
    reverse: bool = False  # scalar ⊕ x rather than x ⊕ scalar


class _Binary(Op):
    Attrs = ScalarAttrs
    n_inputs = None
    fn = staticmethod(operator.add)

    def infer(self, a, ins):
        if len(ins) == 2:
            if a.scalar is not None:
                raise ShapeError(f"{self.name} takes two tensors or a tensor and a scalar")
            return broadcast(ins[0], ins[1])
        if len(ins) == 1 and a.scalar is not None:
            return ins[0]
        raise ShapeError(f"{self.name} takes two tensors or a tensor and a scalar, got {len(ins)} tensors")

    def emit(self, a, ins, fx, args):
        if len(args) == 2:
            return fx.call(self.fn, args[0], args[1])
        # a whole number stays an int (integer tensors stay integer), unless beyond int64,
        # which torch takes only as a float (`x - 1e308`)
        scalar = int(a.scalar) if float(a.scalar).is_integer() and abs(a.scalar) < 2 ** 63 else a.scalar
        return fx.call(self.fn, scalar, args[0]) if a.reverse else fx.call(self.fn, args[0], scalar)


@register
class Add(_Binary):
    """x + y."""
    name = "add"
    fn = staticmethod(operator.add)


@register
class Sub(_Binary):
    """x - y."""
    name = "sub"
    fn = staticmethod(operator.sub)


@register
class Mul(_Binary):
    """x · y."""
    name = "mul"
    fn = staticmethod(operator.mul)


@register
class Div(_Binary):
    """x / y."""
    name = "div"
    fn = staticmethod(operator.truediv)


@register
class Pow(_Binary):
    """x ** y (`d ** 2`, `x ** 0.5`, `2 ** x`); one other_flop per element, as the family."""
    name = "pow"
    fn = staticmethod(operator.pow)
