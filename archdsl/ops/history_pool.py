"""The image history pool of CycleGAN (Zhu et al. 2017, §4 "Training details", after
Shrivastava et al. 2017): the discriminators see a mix of the newest fakes and older ones, so
they do not forget earlier generator modes. The pool itself is topology state; the query and
the pool update run in archdsl/nn/history_pool.py `history_pool`.
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, register


class HistoryPoolAttrs(Attrs):
    p: float = 0.5


@register
class HistoryPool(Op):
    """CycleGAN's ImagePool.query (util/image_pool.py). Inputs: the new fakes x [B, ...], the pool
    [N, ...] and its fill count [] (two topology `state`s: `state pool: [N, C, H, W] = 0`,
    `state pool_n: [] = 0 as int64`) → a batch of x's shape with no gradient. Image by image, in
    order: while the pool holds fewer than N images, the new image is stored and returned; once
    it is full, with probability p a uniformly drawn stored image is returned and the new one
    takes its slot, otherwise the new image is returned. The pool and its count are updated in
    place (no autograd); use it in the D-step only, so G's loss sees the fresh fakes. Random
    draws use torch's generator; each rank keeps its own pool (as the release, which trains on
    one GPU).
    shape: x's (rank ≥ 1; the pool must be [N, *x.shape[1:]], the count a scalar).
    other_flops: 0 (data movement: copies and random draws)."""
    name = "history_pool"
    Attrs = HistoryPoolAttrs
    positional = ("p",)
    n_inputs = 3

    def infer(self, a, ins):
        x, pool, count = ins
        if len(x) < 1 or len(pool) != len(x) or tuple(pool[1:]) != tuple(x[1:]) or pool[0] < 1:
            raise ShapeError(f"history_pool needs images x [B, ...] and a pool [N, ...] of the same image "
                             f"shape, got {list(x)} and {list(pool)}",
                             hint="declare `state pool: [N, C, H, W] = 0` with the fakes' C, H, W")
        if tuple(count) != ():
            raise ShapeError(f"history_pool's count must be a scalar state, got {list(count)}",
                             hint="declare `state pool_n: [] = 0 as int64`")
        if not 0.0 <= a.p <= 1.0:
            raise ShapeError(f"history_pool p must be in [0, 1], got {a.p}")
        return x

    def other_flops(self, a, ins, out):
        return 0

    def emit(self, a, ins, fx, args):
        from archdsl.nn.history_pool import history_pool
        return fx.call(history_pool, args[0], args[1], args[2], a.p)
