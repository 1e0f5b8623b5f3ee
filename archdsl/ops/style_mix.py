"""StyleGAN's style mixing regularisation (Karras et al. 2019, §3.1)."""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, recipe, register


class StyleMixAttrs(Attrs):
    layers: int
    prob: float = 0.9


@register
class StyleMix(Op):
    """Style mixing (StyleGAN §3.1): broadcast the intermediate latent w [B, S] to the `layers`
    style inputs of the synthesis network, [B, layers, S]. Given a second latent w2 [B, S], in
    training, with probability `prob` a crossover point c is drawn uniformly from 1 … layers − 1
    (one per batch, as the official code's `mixing_cutoff`) and layers c … layers − 1 take w2
    instead; otherwise (and always in eval mode) every layer takes w.

    shape: [B, S] (, [B, S]) → [B, layers, S]. other_flops: 0 (a broadcast and a select).
    """
    name = "style_mix"
    Attrs = StyleMixAttrs
    positional = ("layers", "prob")
    n_inputs = None

    def infer(self, a, ins):
        if a.layers < 1:
            raise ShapeError(f"style_mix needs layers >= 1, got {a.layers}")
        if not 0.0 <= a.prob <= 1.0:
            raise ShapeError(f"style_mix prob must be in [0, 1], got {a.prob}")
        if len(ins) not in (1, 2):
            raise ShapeError(f"style_mix takes w and optionally a second latent w2, got {len(ins)} inputs")
        if len(ins[0]) != 2 or any(tuple(s) != tuple(ins[0]) for s in ins):
            raise ShapeError(f"style_mix takes latents of one shape [B, S], got {[list(s) for s in ins]}")
        b, s = ins[0]
        return (b, a.layers, s)

    def other_flops(self, a, ins, out):
        return 0

    def build(self, a, ins):
        from archdsl.nn.style_mix import StyleMixing
        return recipe(StyleMixing, a.layers, a.prob)

    def emit(self, a, ins, fx, args):
        return fx.module(*args)
