"""Generic tensor math used by attention and gating blocks: softmax, sum over dims, stack,
expand, roll, matmul.

other_flops: softmax 3 per element (exp, sum, divide); reduce_sum one per input element;
stack, expand and roll 0 (data movement); matmul 0 (all its arithmetic is multiply-adds,
counted in `flops`).
"""
from __future__ import annotations

import math
from typing import Union

from archdsl.ops.base import Attrs, Op, ShapeError, norm_dim, numel, register


class SoftmaxAttrs(Attrs):
    dim: int = -1


@register
class Softmax(Op):
    """Softmax along `dim`. shape: unchanged.

    other_flops: 3 · numel (an exp, a running sum and a divide per element).
    """
    name = "softmax"
    Attrs = SoftmaxAttrs
    positional = ("dim",)

    def infer(self, a, ins):
        x = ins[0]
        if not x:
            raise ShapeError("softmax needs at least one dim")
        norm_dim(a.dim, len(x))
        return x

    def other_flops(self, a, ins, out):
        return 3 * numel(out)

    def emit(self, a, ins, fx, args):
        import torch
        return fx.call(torch.softmax, args[0], a.dim)


class SumAttrs(Attrs):
    dims: Union[int, list[int]]
    keepdim: bool = False


def reduce_dims(name: str, dims, rank: int) -> list[int]:
    dims = [dims] if isinstance(dims, int) else list(dims)
    if not dims:  # torch reads an empty dim list as "every dim"
        raise ShapeError(f"{name} needs at least one dim",
                         hint=f"list the dims: `{name}(dims=[1])`")
    out = sorted({norm_dim(d, rank) for d in dims})
    if len(out) != len(dims):
        raise ShapeError(f"{name} dims {dims} repeat a dim")
    return out


@register
class ReduceSum(Op):
    """Sum over `dims` (an int or a list), dropping them unless keepdim. (Named `reduce_sum`
    because `sum` is the builtin that adds up a list of numbers.)

    shape: [..] → the input without `dims` (or with them set to 1 when keepdim).
    other_flops: numel(input) (one add per input element).
    """
    name = "reduce_sum"
    Attrs = SumAttrs
    positional = ("dims", "keepdim")

    def infer(self, a, ins):
        x = ins[0]
        dims = reduce_dims(self.name, a.dims, len(x))
        if a.keepdim:
            return tuple(1 if i in dims else s for i, s in enumerate(x))
        return tuple(s for i, s in enumerate(x) if i not in dims)

    def other_flops(self, a, ins, out):
        return numel(ins[0])

    def emit(self, a, ins, fx, args):
        dims = reduce_dims(self.name, a.dims, len(ins[0]))
        dim = dims[0] if len(dims) == 1 else tuple(dims)
        return fx.method("sum", args[0], dim, keepdim=a.keepdim)


class StackAttrs(Attrs):
    dim: int = 0


@register
class Stack(Op):
    """Stack several tensors of one shape along a new dim `dim` (-rank-1 ≤ dim ≤ rank).

    shape: n × [..] → [.., n (at dim), ..]. other_flops: 0 (data movement).
    """
    name = "stack"
    Attrs = StackAttrs
    positional = ("dim",)
    n_inputs = None

    def infer(self, a, ins):
        first = ins[0]
        for s in ins[1:]:
            if tuple(s) != tuple(first):
                raise ShapeError(f"stack needs inputs of one shape, got {list(first)} and "
                                 f"{list(s)}")
        d = norm_dim(a.dim, len(first) + 1)
        return (*first[:d], len(ins), *first[d:])

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        import torch
        return fx.call(torch.stack, list(args), dim=a.dim)


class ExpandAttrs(Attrs):
    shape: list[int]


@register
class Expand(Op):
    """Broadcast to `shape` without copying (torch `expand`): size-1 dims grow to the given size,
    -1 keeps a dim, extra leading dims may be added (with explicit sizes).

    shape: [..] → `shape` (with -1 filled in). other_flops: 0 (a view).
    """
    name = "expand"
    Attrs = ExpandAttrs
    positional = ("shape",)

    def infer(self, a, ins):
        x, shape = tuple(ins[0]), list(a.shape)
        if len(shape) < len(x):
            raise ShapeError(f"expand to {shape} has fewer dims than the input {list(x)}")
        lead = len(shape) - len(x)
        out = []
        for i, s in enumerate(shape):
            if i < lead:
                if s <= 0:
                    raise ShapeError(f"expand: a new leading dim needs a positive size, got {s}")
                out.append(s)
                continue
            have = x[i - lead]
            if s == -1:
                out.append(have)
            elif s <= 0:
                raise ShapeError(f"expand sizes must be positive or -1, got {shape}")
            elif have not in (1, s):
                raise ShapeError(f"expand: dim {i - lead} of size {have} cannot become {s} "
                                 f"(only size-1 dims expand)")
            else:
                out.append(s)
        return tuple(out)

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        return fx.method("expand", args[0], *a.shape)


class RollAttrs(Attrs):
    shifts: Union[int, list[int]]
    dims: Union[int, list[int]]


def _as_list(v) -> list[int]:
    return [v] if isinstance(v, int) else list(v)


@register
class Roll(Op):
    """Cyclic shift by `shifts` along `dims` (torch `roll`; one shift per dim).

    shape: unchanged. other_flops: 0 (data movement).
    """
    name = "roll"
    Attrs = RollAttrs
    positional = ("shifts", "dims")

    def infer(self, a, ins):
        x = ins[0]
        shifts, dims = _as_list(a.shifts), _as_list(a.dims)
        if not dims or len(shifts) != len(dims):
            raise ShapeError(f"roll needs one shift per dim, got shifts={shifts} and dims={dims}")
        for d in dims:
            norm_dim(d, len(x))
        return x

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        import torch
        shifts, dims = _as_list(a.shifts), _as_list(a.dims)
        return fx.call(torch.roll, args[0], tuple(shifts), tuple(dims))


@register
class Matmul(Op):
    """Matrix product of two tensors of rank ≥ 2 (torch `matmul`): [..., n, k] @ [..., k, m] →
    [..., n, m], the leading (batch) dims broadcast. Rank-1 operands are refused (write a
    reshape: torch would treat them as vectors).

    flops: 2 · prod(broadcast batch dims) · n · k · m (FlopCounterMode's mm/bmm).
    other_flops: 0 (every operation is a multiply-add).
    """
    name = "matmul"
    n_inputs = 2

    def infer(self, a, ins):
        x, y = ins
        if len(x) < 2 or len(y) < 2:
            raise ShapeError(f"matmul needs operands of rank 2 or more, got {list(x)} and "
                             f"{list(y)}",
                             hint="reshape a vector to [1, k] or [k, 1] first")
        if x[-1] != y[-2]:
            raise ShapeError(f"matmul: {list(x)} @ {list(y)}: the inner sizes {x[-1]} and "
                             f"{y[-2]} differ")
        bx, by = x[:-2], y[:-2]
        rank = max(len(bx), len(by))
        bx, by = (1,) * (rank - len(bx)) + tuple(bx), (1,) * (rank - len(by)) + tuple(by)
        batch = []
        for p, q in zip(bx, by):
            if p != q and 1 not in (p, q):
                raise ShapeError(f"matmul: batch dims of {list(x)} and {list(y)} do not broadcast")
            batch.append(max(p, q))
        return (*batch, x[-2], y[-1])

    def flops(self, a, ins, out):
        return 2 * math.prod(out) * ins[0][-1]

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        import torch
        return fx.call(torch.matmul, args[0], args[1])
