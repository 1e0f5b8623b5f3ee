"""Cases for archdsl/ops/reduce.py: softmax, reduce_sum, stack, expand, roll, matmul."""
from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from op_cases.common import Case, any_shape, batch, maybe, small

ZERO_OTHER_FLOPS = {
    "stack": "data movement",
    "expand": "a view",
    "roll": "data movement",
}
# matmul: all of its arithmetic is multiply-adds (in `flops`) and it has no bias, so other_flops
# is 0 while FlopCounterMode counts > 0. (The harness reads a missing `bias` attribute as false.)
MAC_OPS = {"matmul"}


def _dim(draw, rank: int, extra: int = 0) -> int:
    return draw(st.integers(-rank - extra, rank - 1 + extra))


def _bad_dim(draw, rank: int, extra: int = 0) -> int:
    return draw(st.one_of(st.integers(rank + extra, rank + extra + 2),
                          st.integers(-rank - extra - 3, -rank - extra - 1)))


# ---------------------------------------------------------------------------------------------
# softmax

@st.composite
def softmax_case(draw):
    x = draw(any_shape(1, 4))
    attrs: dict = {}
    maybe(draw, attrs, "dim", _dim(draw, len(x)))
    return Case("softmax", attrs, [x])


@st.composite
def softmax_invalid(draw):
    x = draw(any_shape(1, 4))
    return Case("softmax", {"dim": _bad_dim(draw, len(x))}, [x])


# ---------------------------------------------------------------------------------------------
# reduce_sum

@st.composite
def reduce_sum_case(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    dims = draw(st.lists(st.integers(0, r - 1), min_size=1, max_size=r, unique=True))
    dims = [d - r if draw(st.booleans()) else d for d in dims]
    attrs: dict = {"dims": dims[0] if len(dims) == 1 and draw(st.booleans()) else dims}
    maybe(draw, attrs, "keepdim", draw(st.booleans()))
    return Case("reduce_sum", attrs, [x])


@st.composite
def reduce_sum_invalid(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    kind = draw(st.sampled_from(["range", "repeat", "empty"]))
    if kind == "repeat":
        d = draw(st.integers(0, r - 1))
        return Case("reduce_sum", {"dims": [d, d - r]}, [x])
    if kind == "empty":
        return Case("reduce_sum", {"dims": []}, [x])
    return Case("reduce_sum", {"dims": [_bad_dim(draw, r)]}, [x])


# ---------------------------------------------------------------------------------------------
# stack

@st.composite
def stack_case(draw):
    x = draw(any_shape(1, 4))
    n = draw(st.integers(1, 3))
    attrs: dict = {}
    maybe(draw, attrs, "dim", _dim(draw, len(x), extra=1))
    return Case("stack", attrs, [x] * n)


@st.composite
def stack_invalid(draw):
    x = draw(any_shape(1, 4))
    if draw(st.booleans()):
        y = list(x)
        i = draw(st.integers(0, len(x) - 1))
        y[i] += draw(st.integers(1, 2))
        return Case("stack", {}, [x, tuple(y)])
    return Case("stack", {"dim": _bad_dim(draw, len(x), extra=1)}, [x, x])


# ---------------------------------------------------------------------------------------------
# expand

@st.composite
def expand_case(draw):
    x = list(draw(any_shape(1, 4)))
    x = [1 if draw(st.booleans()) else d for d in x]   # some size-1 dims to grow
    lead = [draw(small) for _ in range(draw(st.integers(0, 2)))]
    target = list(lead)
    for d in x:
        choice = draw(st.sampled_from(["keep", "same", "grow"]))
        if choice == "keep":
            target.append(-1)
        elif choice == "grow" and d == 1:
            target.append(draw(small))
        else:
            target.append(d)
    return Case("expand", {"shape": target}, [tuple(x)])


@st.composite
def expand_invalid(draw):
    x = draw(any_shape(1, 4))
    kind = draw(st.sampled_from(["short", "grow", "zero", "lead"]))
    if kind == "short":
        assume(len(x) > 1)
        return Case("expand", {"shape": [-1] * (len(x) - 1)}, [x])
    if kind == "grow":
        i = draw(st.integers(0, len(x) - 1))
        assume(x[i] != 1)
        target = [-1] * len(x)
        target[i] = x[i] + draw(st.integers(1, 3))
        return Case("expand", {"shape": target}, [x])
    if kind == "zero":
        target = [-1] * len(x)
        bad = draw(st.integers(-3, 0).filter(lambda v: v != -1))
        target[draw(st.integers(0, len(x) - 1))] = bad
        return Case("expand", {"shape": target}, [x])
    return Case("expand", {"shape": [-1] + [-1] * len(x)}, [x])   # a new dim needs a size


# ---------------------------------------------------------------------------------------------
# roll

@st.composite
def roll_case(draw):
    x = draw(any_shape(1, 4))
    r = len(x)
    n = draw(st.integers(1, r))
    dims = [_dim(draw, r) for _ in range(n)]
    shifts = [draw(st.integers(-6, 6)) for _ in range(n)]
    if n == 1 and draw(st.booleans()):
        return Case("roll", {"shifts": shifts[0], "dims": dims[0]}, [x])
    return Case("roll", {"shifts": shifts, "dims": dims}, [x])


@st.composite
def roll_invalid(draw):
    x = draw(any_shape(1, 4))
    kind = draw(st.sampled_from(["count", "range", "empty"]))
    if kind == "count":
        return Case("roll", {"shifts": [1, 2], "dims": [0]}, [x])
    if kind == "empty":
        return Case("roll", {"shifts": [], "dims": []}, [x])
    return Case("roll", {"shifts": 1, "dims": _bad_dim(draw, len(x))}, [x])


# ---------------------------------------------------------------------------------------------
# matmul

@st.composite
def matmul_case(draw):
    n, k, m = draw(small), draw(small), draw(small)
    out_batch = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 2)))]

    def operand_batch():
        keep = draw(st.integers(0, len(out_batch)))
        return [1 if draw(st.booleans()) else d for d in out_batch[len(out_batch) - keep:]]
    a, b = (*operand_batch(), n, k), (*operand_batch(), k, m)
    return Case("matmul", {}, [tuple(a), tuple(b)])


@st.composite
def matmul_invalid(draw):
    kind = draw(st.sampled_from(["inner", "rank", "batch"]))
    n, k, m = draw(small), draw(small), draw(small)
    if kind == "inner":
        k2 = k + draw(st.integers(1, 2))
        return Case("matmul", {}, [(draw(batch), n, k), (draw(batch), k2, m)])
    if kind == "rank":
        return Case("matmul", {}, draw(st.sampled_from([[(k,), (k, m)], [(n, k), (k,)]])))
    p = draw(st.integers(2, 3))
    return Case("matmul", {}, [(p, n, k), (p + 1, k, m)])


VALID = {
    "softmax": softmax_case(),
    "reduce_sum": reduce_sum_case(),
    "stack": stack_case(),
    "expand": expand_case(),
    "roll": roll_case(),
    "matmul": matmul_case(),
}

INVALID = {
    "softmax": softmax_invalid(),
    "reduce_sum": reduce_sum_invalid(),
    "stack": stack_invalid(),
    "expand": expand_invalid(),
    "roll": roll_invalid(),
    "matmul": matmul_invalid(),
}
