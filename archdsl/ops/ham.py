"""Matrix decomposition as a layer: the NMF "ham" of Hamburger (Geng et al., ICLR 2021), the
global-context module of SegNeXt's decoder. Module in archdsl/nn/ham.py."""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, recipe, register


class NMFAttrs(Attrs):
    S: int = 1
    R: int = 64
    train_steps: int = 6
    eval_steps: int = 7
    inv_t: float = 1.0


@register
class NMF2D(Op):
    """Non-negative matrix factorisation of a feature map (mmseg's NMF2D): x [B, C, H, W] viewed
    as S matrices [D = C/S, N = H·W] ≈ bases [D, R] · coefᵀ [R, N], from random bases (a fixed
    pseudo-random draw in eval, so inference is deterministic; see nn/ham.py NMF2D) by
    multiplicative updates (train_steps in training, eval_steps in eval), then one more
    coefficient update; gradients flow through all of them (as the release); returns
    bases · coefᵀ as [B, C, H, W]. Needs a
    non-negative input (the Hamburger puts a ReLU before it). No parameters.

    shape: unchanged. flops (bmm, as FlopCounterMode counts them in eval, T = eval_steps; B' =
    B·S): the initial coefficients 2·B'·N·D·R; per step the coefficient update
    2·B'·(N·D·R + R·D·R + N·R·R) and the bases update 2·B'·(D·N·R + R·N·R + D·R·R); the final
    coefficient update 2·B'·(N·D·R + R·D·R + N·R·R) and the product 2·B'·D·N·R. other_flops: per
    update 3 elementwise ops (multiply, divide, add ε) over coef (N·R) or bases (D·R); the softmax
    5·N·R and the initial normalisation 3·D·R, per matrix.
    """
    name = "nmf2d"
    Attrs = NMFAttrs

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, "nmf2d")
        if a.S <= 0 or a.R <= 0 or c % a.S:
            raise ShapeError(f"nmf2d needs S > 0 dividing the {c} channels and R > 0, got S={a.S}, R={a.R}")
        if a.train_steps < 0 or a.eval_steps < 0:
            raise ShapeError("nmf2d steps must be non-negative")
        return tuple(ins[0])

    def _sizes(self, a, ins):
        b, c, h, w = ins[0]
        return b * a.S, c // a.S, h * w, a.R

    def flops(self, a, ins, out):
        bs, d, n, r = self._sizes(a, ins)
        coef_update = n * d * r + r * d * r + n * r * r
        bases_update = d * n * r + r * n * r + d * r * r
        return 2 * bs * (n * d * r + a.eval_steps * (coef_update + bases_update) + coef_update + d * n * r)

    def other_flops(self, a, ins, out):
        bs, d, n, r = self._sizes(a, ins)
        return bs * (3 * d * r + 5 * n * r + a.eval_steps * 3 * (n * r + d * r) + 3 * n * r)

    def build(self, a, ins):
        from archdsl.nn.ham import NMF2D as Module
        return recipe(Module, a.S, a.R, a.train_steps, a.eval_steps, a.inv_t)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
