"""Split tokens into the visible and the masked ones by a mask with a fixed count per row (CAE).

`mask_partition(x, mask, num_masked)`: x [B or 1, L, D], mask [B, L] (bool or 0/1, 1 = masked,
exactly `num_masked` ones in every row) → (visible [B, L − num_masked, D], masked
[B, num_masked, D]), each in the tokens' original order — CAE's `x[~mask].reshape(B, -1, D)` and
`x[mask].reshape(B, -1, D)`, written as a stable argsort of the mask and a gather so that it has
static shapes (torch.compile). An x with batch 1 (a position table) is shared by every row. A row
with another count of masked tokens is not detected: use a mask generator that masks exactly
num_masked (block_mask(..., exact=true)). other_flops: B·L·⌈log₂ L⌉ (the argsort, as compares);
the gathers are data movement.
"""
from __future__ import annotations

import math

from archdsl.ops.base import Attrs, Op, ShapeError, register


class PartitionAttrs(Attrs):
    num_masked: int


@register
class MaskPartition(Op):
    """x [B|1, L, D], mask [B, L] → (visible [B, L − M, D], masked [B, M, D]), M = num_masked,
    both in the original token order. other_flops: B·L·⌈log₂ L⌉."""
    name = "mask_partition"
    Attrs = PartitionAttrs
    positional = ("num_masked",)
    n_inputs = 2

    def infer(self, a, ins):
        x, m = ins
        if len(x) != 3 or len(m) != 2 or x[1] != m[1] or x[0] not in (1, m[0]):
            raise ShapeError(f"mask_partition expects tokens [B, L, D] (or [1, L, D]) and a mask [B, L], "
                             f"got {list(x)} and {list(m)}")
        if not 0 <= a.num_masked <= m[1]:
            raise ShapeError(f"mask_partition: num_masked={a.num_masked} must be in [0, {m[1]}]")
        b, length, d = m[0], m[1], x[2]
        return ((b, length - a.num_masked, d), (b, a.num_masked, d))

    def other_flops(self, a, ins, out):
        b, length = ins[1]
        return b * length * math.ceil(math.log2(max(length, 2)))

    def emit(self, a, ins, fx, args):
        from archdsl.nn.mask_partition import partition_by_mask
        return fx.call(partition_by_mask, args[0], args[1], a.num_masked)
