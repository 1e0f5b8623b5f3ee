"""Tensor plumbing: cat, split, chunk, getitem, reshape, flatten, permute, transpose.

other_flops: 0 (data movement only).
"""
from __future__ import annotations

import math
import operator
from typing import Union

from archdsl.ops.base import Attrs, Op, ShapeError, norm_dim, register


class _Movement(Op):
    def other_flops(self, a, ins, out):
        return 0


class CatAttrs(Attrs):
    dim: int = 1


@register
class Cat(_Movement):
    """Concatenate along `dim`; all other dims must agree."""
    name = "cat"
    Attrs = CatAttrs
    positional = ("dim",)
    n_inputs = None

    def infer(self, a, ins):
        first = ins[0]
        d = norm_dim(a.dim, len(first))
        for s in ins[1:]:
            if len(s) != len(first) or any(x != y for i, (x, y) in enumerate(zip(s, first)) if i != d):
                raise ShapeError(f"cat along dim {a.dim}: shapes {list(first)} and {list(s)} differ "
                                 f"outside that dim")
        return (*first[:d], sum(s[d] for s in ins), *first[d + 1:])

    def emit(self, a, ins, fx, args):
        import torch
        return fx.call(torch.cat, list(args), dim=a.dim)


class SplitAttrs(Attrs):
    sizes: Union[int, list[int]]
    dim: int = 1


@register
class Split(_Movement):
    """Split along `dim` into pieces of `sizes` (a list) or equal pieces of one size."""
    name = "split"
    Attrs = SplitAttrs
    positional = ("sizes", "dim")

    def _sizes(self, a, x):
        d = norm_dim(a.dim, len(x))
        if isinstance(a.sizes, int):
            if a.sizes <= 0:
                raise ShapeError("split size must be positive")
            n = -(-x[d] // a.sizes)
            return d, [min(a.sizes, x[d] - i * a.sizes) for i in range(n)]
        if sum(a.sizes) != x[d] or min(a.sizes, default=0) <= 0:
            raise ShapeError(f"split sizes {a.sizes} must be positive and sum to {x[d]} (dim {a.dim})")
        return d, list(a.sizes)

    def infer(self, a, ins):
        x = ins[0]
        d, sizes = self._sizes(a, x)
        return tuple((*x[:d], s, *x[d + 1:]) for s in sizes)

    def emit(self, a, ins, fx, args):
        import torch
        return fx.call(torch.split, args[0], a.sizes, dim=a.dim)


class ChunkAttrs(Attrs):
    chunks: int
    dim: int = 1


@register
class Chunk(_Movement):
    """Split along `dim` into `chunks` equal pieces (the size must divide evenly)."""
    name = "chunk"
    Attrs = ChunkAttrs
    positional = ("chunks", "dim")

    def infer(self, a, ins):
        x = ins[0]
        d = norm_dim(a.dim, len(x))
        if a.chunks <= 0 or x[d] % a.chunks:
            raise ShapeError(f"chunk({a.chunks}) needs dim {a.dim} (size {x[d]}) to divide evenly")
        part = (*x[:d], x[d] // a.chunks, *x[d + 1:])
        return tuple(part for _ in range(a.chunks))

    def emit(self, a, ins, fx, args):
        import torch
        return fx.call(torch.chunk, args[0], a.chunks, dim=a.dim)


class GetItemAttrs(Attrs):
    index: int


@register
class GetItem(_Movement):
    """One output of a multi-output op (split, chunk)."""
    name = "getitem"
    Attrs = GetItemAttrs

    def infer(self, a, ins):
        outs = ins[0]
        if not (outs and isinstance(outs[0], tuple)):
            raise ShapeError("only the result of split/chunk can be indexed")
        if not -len(outs) <= a.index < len(outs):
            raise ShapeError(f"index {a.index} out of range for {len(outs)} outputs")
        return outs[a.index]

    def emit(self, a, ins, fx, args):
        return fx.call(operator.getitem, args[0], a.index)


class ReshapeAttrs(Attrs):
    shape: list[int]


@register
class Reshape(_Movement):
    """Reshape to `shape` (one entry may be -1)."""
    name = "reshape"
    Attrs = ReshapeAttrs
    positional = ("shape",)

    def infer(self, a, ins):
        x, shape = ins[0], list(a.shape)
        total = math.prod(x)
        if shape.count(-1) > 1 or any(s < -1 or s == 0 for s in shape):
            raise ShapeError(f"reshape shape {shape} may hold one -1 and positive sizes only")
        known = math.prod(s for s in shape if s != -1)
        if -1 in shape:
            if total % known:
                raise ShapeError(f"cannot reshape {list(x)} ({total} elements) to {shape}")
            shape[shape.index(-1)] = total // known
        if math.prod(shape) != total:
            raise ShapeError(f"cannot reshape {list(x)} ({total} elements) to {a.shape}")
        return tuple(shape)

    def emit(self, a, ins, fx, args):
        return fx.method("reshape", args[0], *a.shape) if a.shape else fx.method("reshape", args[0], ())


class FlattenAttrs(Attrs):
    start: int = 1
    end: int = -1


@register
class Flatten(_Movement):
    """Merge dims start..end (default: all but the batch)."""
    name = "flatten"
    Attrs = FlattenAttrs
    positional = ("start", "end")

    def infer(self, a, ins):
        x = ins[0]
        s, e = norm_dim(a.start, len(x)), norm_dim(a.end, len(x))
        if s > e:
            raise ShapeError(f"flatten start {a.start} is after end {a.end}")
        return (*x[:s], math.prod(x[s:e + 1]), *x[e + 1:])

    def emit(self, a, ins, fx, args):
        return fx.method("flatten", args[0], a.start, a.end)


class PermuteAttrs(Attrs):
    dims: list[int]


@register
class Permute(_Movement):
    """Reorder dims."""
    name = "permute"
    Attrs = PermuteAttrs
    positional = ("dims",)

    def infer(self, a, ins):
        x = ins[0]
        dims = [norm_dim(d, len(x)) for d in a.dims]
        if sorted(dims) != list(range(len(x))):
            raise ShapeError(f"permute dims {a.dims} are not a permutation of a rank-{len(x)} tensor")
        return tuple(x[d] for d in dims)

    def emit(self, a, ins, fx, args):
        return fx.method("permute", args[0], *a.dims)


class TransposeAttrs(Attrs):
    dim0: int
    dim1: int


@register
class Transpose(_Movement):
    """Swap two dims."""
    name = "transpose"
    Attrs = TransposeAttrs
    positional = ("dim0", "dim1")

    def infer(self, a, ins):
        x = list(ins[0])
        i, j = norm_dim(a.dim0, len(x)), norm_dim(a.dim1, len(x))
        x[i], x[j] = x[j], x[i]
        return tuple(x)

    def emit(self, a, ins, fx, args):
        return fx.method("transpose", args[0], a.dim0, a.dim1)


