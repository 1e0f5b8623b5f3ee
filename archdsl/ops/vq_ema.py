"""Vector quantisation with an exponential-moving-average codebook (VQ-VAE-2's quantiser).
The module is archdsl/nn/vq_ema.py `EMAQuantizer`.
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, norm_dim, recipe, register
from archdsl.ops.generative import quantize_flops, quantize_other_flops


class VQEMAAttrs(Attrs):
    num_codes: int
    decay: float = 0.99
    eps: float = 1e-5
    beta: float = 0.25
    axis: int = 1               # the axis of x holding the D-vector (1: [B, D, H, W])


@register
class VectorQuantizeEMA(Op):
    """Vector quantisation whose codebook follows exponential moving averages of the vectors
    assigned to each entry (van den Oord et al. 2017, Appendix A.1; Razavi et al. 2019, §3.1;
    rosinality/vq-vae-2-pytorch's Quantize). Each D-vector of x along `axis` is replaced by its
    nearest of `num_codes` entries (squared L2, ties to the lowest index). Three outputs
    (quantized, codes, commit_loss): quantized has x's shape and the straight-through gradient;
    codes (int64) has x's shape without `axis`; commit_loss = beta · mean((z − sg[e])²) is a
    scalar []. In training the forward updates the codebook (decay, Laplace smoothing eps, the
    statistics summed over ranks when torch.distributed is initialised); no loss moves it.

    keys: buffers embed [D, num_codes], cluster_size [num_codes], embed_avg [D, num_codes]
    (rosinality's names and layout); no parameters.
    flops: 2 · N · D · num_codes (the z·e mm of the distances), N = numel(x) / D; the training
    update's zᵀA mm (another 2 · N · D · num_codes) runs only in training and is not counted.
    other_flops: N · (8 · D + 3 · num_codes) (‖z‖², the distance sums, argmin, lookup, the
    commitment term, straight-through); ‖e‖² (2 · num_codes · D per forward) is not included.
    """
    name = "vq_ema"
    Attrs = VQEMAAttrs
    positional = ("num_codes", "decay")

    def infer(self, a, ins):
        x = ins[0]
        if len(x) < 2:
            raise ShapeError(f"vq_ema expects at least a rank-2 input, got shape {list(x)}")
        ax = norm_dim(a.axis, len(x))
        if a.num_codes <= 0:
            raise ShapeError(f"vq_ema needs num_codes > 0, got {a.num_codes}")
        if not 0.0 <= a.decay < 1.0:
            raise ShapeError(f"vq_ema decay must be in [0, 1), got {a.decay}")
        if a.eps <= 0:
            raise ShapeError(f"vq_ema eps must be positive, got {a.eps}")
        if a.beta < 0:
            raise ShapeError(f"vq_ema beta must be non-negative, got {a.beta}")
        return (tuple(x), tuple(d for i, d in enumerate(x) if i != ax), ())

    def buffers(self, a, ins):
        x = ins[0]
        d = x[norm_dim(a.axis, len(x))]
        return {"embed": (d, a.num_codes), "cluster_size": (a.num_codes,),
                "embed_avg": (d, a.num_codes)}

    def flops(self, a, ins, out):
        return quantize_flops(ins[0], a.num_codes)

    def other_flops(self, a, ins, out):
        return quantize_other_flops(ins[0], a.axis, a.num_codes, per_element=8)

    def build(self, a, ins):
        from archdsl.nn.vq_ema import EMAQuantizer
        x = ins[0]
        ax = norm_dim(a.axis, len(x))
        return recipe(EMAQuantizer, a.num_codes, x[ax], a.decay, a.eps, a.beta, ax)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
