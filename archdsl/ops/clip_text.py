"""Text-transformer pooling: the feature of each sequence's end-of-text token (CLIP).

`eot_pool(x, ids)`: x [B, L, D] token features and ids [B, L] int64 token ids → [B, D], the row
of x at each sequence's largest id: `x[arange(B), ids.argmax(-1)]` (OpenAI CLIP's encode_text —
its end-of-text token has the largest id of the vocabulary, 49407, so argmax finds it; on ties
the first position wins, as torch.argmax). flops: 0; other_flops: B·L (the argmax compares; the
gather is data movement).
"""
from __future__ import annotations

from archdsl.ops.base import NoAttrs, Op, ShapeError, register


@register
class EotPool(Op):
    """x [B, L, D], ids [B, L] (int64) → [B, D] = x[b, argmax_l ids[b, l]] (CLIP's text pooling at
    the end-of-text token). other_flops: B·L."""
    name = "eot_pool"
    Attrs = NoAttrs
    n_inputs = 2

    def infer(self, a, ins):
        x, ids = ins
        if len(x) != 3 or len(ids) != 2 or tuple(ids) != tuple(x[:2]):
            raise ShapeError(f"eot_pool expects features [B, L, D] and token ids [B, L], got {list(x)} "
                             f"and {list(ids)}")
        return (x[0], x[2])

    def other_flops(self, a, ins, out):
        b, length = ins[1]
        return b * length

    def emit(self, a, ins, fx, args):
        from archdsl.nn.clip_text import eot_features
        return fx.call(eot_features, *args)
