"""The fixed set of pure builtins a spec may call. Sizes are bounded so no spec can hang."""
from __future__ import annotations

import math

MAX_ITEMS = 1_000_000
MAX_INT_BITS = 4096


class BuiltinError(Exception):
    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def _range(*args):
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args) or not 1 <= len(args) <= 3:
        raise BuiltinError("range takes 1 to 3 integers")
    r = range(*args)
    if len(r) > MAX_ITEMS:
        raise BuiltinError(f"range of {len(r)} items is larger than the limit {MAX_ITEMS}")
    return list(r)


def make_divisible(v, divisor: int = 8, min_value=None, round_limit: float = 0.9) -> int:
    """Round v to a multiple of divisor, never below round_limit · v (timm's rule)."""
    if divisor <= 0:
        raise BuiltinError("make_divisible divisor must be positive")
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def _prod(xs, start=1):
    """math.prod of numbers, refusing integers that grow past MAX_INT_BITS (which would take
    forever); a string or list times a count would be repetition, unbudgeted here."""
    if not all(isinstance(x, (int, float)) for x in (*xs, start)):
        raise BuiltinError("prod takes a list of numbers")
    result = start
    for x in xs:
        result = result * x
        if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
            raise BuiltinError(f"the product has more than {MAX_INT_BITS} bits")
    return result


def _sum(xs, start=0):
    """sum of numbers (adding up lists would take time quadratic in their number)."""
    if not all(isinstance(x, (int, float)) for x in (*xs, start)):
        raise BuiltinError("sum takes a list of numbers")
    return sum(xs, start)


def _str(x):
    if not isinstance(x, (int, float, bool, str)) and x is not None:
        raise BuiltinError("str takes a number, a bool or a string")
    return str(x)


def _seq(fn):
    def wrapped(*args):
        out = list(fn(*args))
        if len(out) > MAX_ITEMS:
            raise BuiltinError("result is too large")
        return out
    return wrapped


def _per_stage(v, n: int):
    """A per-stage argument: a list is one value per stage as given; anything else is the value of
    every one of the n stages (`per_stage(block, 4)`)."""
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_ITEMS:
        raise BuiltinError("per_stage takes a value and a number of stages")
    return [v] * n


def _num(fn, name):
    def wrapped(x, *rest):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise BuiltinError(f"{name} takes a number")
        return fn(x, *rest)
    return wrapped


BUILTINS = {
    "range": _range,
    "len": len,
    "sum": _sum,
    "min": min,
    "max": max,
    "abs": abs,
    "zip": _seq(lambda *xs: (list(t) for t in zip(*xs))),
    "enumerate": _seq(lambda xs, start=0: ([i, x] for i, x in enumerate(xs, start))),
    "reversed": _seq(reversed),
    "sorted": _seq(sorted),
    "list": _seq(lambda xs=(): xs),
    "tuple": lambda xs=(): tuple(xs),
    "round": round,
    "int": int,
    "float": float,
    "str": _str,
    "bool": bool,
    "floor": _num(math.floor, "floor"),
    "ceil": _num(math.ceil, "ceil"),
    "sqrt": _num(math.sqrt, "sqrt"),
    "log2": _num(math.log2, "log2"),
    "log_e": _num(math.log, "log_e"),   # natural log (`log` is a keyword, `ln` the layer-norm op)
    "exp": _num(math.exp, "exp"),
    "prod": _prod,
    "make_divisible": make_divisible,
    "per_stage": _per_stage,
}


def _initialisers() -> dict:
    from archdsl.ir.inits import INITIALISERS
    return INITIALISERS


BUILTINS.update(_initialisers())
