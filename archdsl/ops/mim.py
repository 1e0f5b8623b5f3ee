"""Masked image modelling loss over discrete visual tokens (BEiT).

`masked_token_ce(logits, target, mask)`: logits [B, N, V], target token ids [B, N] (int64), mask
[B, N] (bool or 0/1, 1 = masked) → scalar, the mean cross-entropy over the masked positions
(archdsl/nn/mim.py masked_token_ce). flops: 0 (no matmul). other_flops: 4·B·N·V
(log-softmax: max, subtract, exp, sum) + 3·B·N (pick, mask, sum).
"""
from __future__ import annotations

from archdsl.ops.base import NoAttrs, Op, ShapeError, register


@register
class MaskedTokenCE(Op):
    """BEiT masked-token cross-entropy. inputs: logits [B, N, V], target [B, N] int64, mask [B, N]
    → scalar. other_flops: 4·B·N·V + 3·B·N."""
    name = "masked_token_ce"
    Attrs = NoAttrs
    n_inputs = 3

    def infer(self, a, ins):
        logits, target, mask = ins
        if len(logits) != 3 or tuple(target) != tuple(logits[:2]) or tuple(mask) != tuple(logits[:2]):
            raise ShapeError(f"masked_token_ce expects logits [B, N, V], target [B, N] and mask [B, N], "
                             f"got {list(logits)}, {list(target)} and {list(mask)}")
        return ()

    def other_flops(self, a, ins, out):
        b, n, v = ins[0]
        return 4 * b * n * v + 3 * b * n

    def emit(self, a, ins, fx, args):
        from archdsl.nn.mim import masked_token_ce
        return fx.call(masked_token_ce, *args)
