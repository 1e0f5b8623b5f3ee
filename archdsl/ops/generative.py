"""Generative-model pieces: vector quantisation (VQ-VAE), the VAE reparameterisation with its
KL term, and the sigmoid focal loss (RetinaNet).

Outputs of integer dtype (VQ codes) are int64 at run time; the IR records shapes only.
"""
from __future__ import annotations

from typing import Literal, Optional

from archdsl.ops.base import Attrs, Op, ShapeError, norm_dim, numel, recipe, register


class VQAttrs(Attrs):
    num_codes: int
    dim: Optional[int] = None   # the code size; when given it must equal x.shape[axis]
    beta: float = 0.25
    axis: int = 1               # the axis of x holding the D-vector (1: [B, D, H, W])


def quantize_flops(x, num_codes: int) -> int:
    """The nearest-entry search of a vector quantiser: the z·eᵀ mm of the distances."""
    return 2 * numel(x) * num_codes


def quantize_other_flops(x, axis: int, num_codes: int, per_element: int) -> int:
    """Per D-vector: `per_element` ops per element (‖z‖², sums, losses, straight-through) and 3 per
    codebook entry (distance sums, argmin, lookup)."""
    d = x[norm_dim(axis, len(x))]
    return numel(x) // d * (per_element * d + 3 * num_codes)


@register
class VectorQuantize(Op):
    """Vector quantisation (van den Oord et al., VQ-VAE 2017): each D-vector of x along `axis`
    is replaced by its nearest of `num_codes` codebook entries (squared L2, ties to the lowest
    index). Four outputs: (quantized, codes, codebook_loss, commitment_loss):
    quantized has x's shape and the straight-through gradient (z + sg[e − z]: d quantized / d x
    is the identity); codes (int64) has x's shape without `axis`; codebook_loss =
    mean((sg[z] − e)²) and commitment_loss = beta · mean((z − sg[e])²) are scalars [] whose sum
    is the VQ-VAE objective's VQ and commitment terms (Eq. 3).

    keys: embedding.weight [num_codes, D] (as taming-transformers' VectorQuantizer).
    flops: 2 · N · D · num_codes (the z·eᵀ mm of the distances), N = numel(x) / D.
    other_flops: N · (10 · D + 3 · num_codes) (‖z‖², the distance sums, argmin, lookup, both
    losses, straight-through); ‖e‖² (2 · num_codes · D per forward, whatever the batch) is not
    included.
    """
    name = "vq"
    aliases = ("vector_quantize",)
    Attrs = VQAttrs
    positional = ("num_codes", "dim", "beta")

    def infer(self, a, ins):
        x = ins[0]
        if len(x) < 2:
            raise ShapeError(f"vq expects at least a rank-2 input, got shape {list(x)}")
        ax = norm_dim(a.axis, len(x))
        if a.num_codes <= 0:
            raise ShapeError(f"vq needs num_codes > 0, got {a.num_codes}")
        if a.dim is not None and a.dim != x[ax]:
            raise ShapeError(f"vq dim={a.dim} but the input has {x[ax]} along axis {a.axis}",
                             hint="the code size is read from the input; drop dim or fix axis")
        return (tuple(x), tuple(d for i, d in enumerate(x) if i != ax), (), ())

    def params(self, a, ins):
        x = ins[0]
        return {"embedding.weight": (a.num_codes, x[norm_dim(a.axis, len(x))])}

    def flops(self, a, ins, out):
        return quantize_flops(ins[0], a.num_codes)

    def other_flops(self, a, ins, out):
        return quantize_other_flops(ins[0], a.axis, a.num_codes, per_element=10)

    def build(self, a, ins):
        from archdsl.nn.generative import VectorQuantizer
        x = ins[0]
        ax = norm_dim(a.axis, len(x))
        return recipe(VectorQuantizer, a.num_codes, x[ax], a.beta, ax)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class ReparamAttrs(Attrs):
    reduction: Literal["mean", "sum", "none"] = "mean"
    eval_sample: bool = False


@register
class Reparameterize(Op):
    """The VAE reparameterisation (Kingma & Welling 2014): inputs mu and logvar (same shape
    [B, ...]), or one tensor [B, 2Z, ...] split in half along dim 1. Two outputs (z, kl):
    z = mu + eps · exp(logvar / 2), eps ~ N(0, 1) (z = mu in eval unless eval_sample), and
    kl = −½ Σ (1 + logvar − mu² − exp(logvar)) summed over all dims but the batch, then
    averaged over the batch (reduction "mean": shape []), summed ("sum": []), or kept per
    sample ("none": [B]).

    shape: z as mu. other_flops: 11 · numel(mu) (sampling 5, KL 6).
    """
    name = "reparam"
    aliases = ("reparameterize",)
    Attrs = ReparamAttrs
    positional = ("reduction",)
    n_inputs = None

    def infer(self, a, ins):
        if len(ins) > 2:
            raise ShapeError(f"reparam takes (mu, logvar) or one tensor to split, got {len(ins)} inputs")
        x = ins[0]
        if len(x) < 2:
            raise ShapeError(f"reparam expects [B, Z, ...], got shape {list(x)}")
        if len(ins) == 2:
            if tuple(ins[1]) != tuple(x):
                raise ShapeError(f"reparam mu and logvar must have one shape, got {list(x)} and "
                                 f"{list(ins[1])}")
            mu = tuple(x)
        else:
            if x[1] % 2:
                raise ShapeError(f"reparam splits dim 1 into mu and logvar: it must be even, got "
                                 f"shape {list(x)}", hint="give mu and logvar as two inputs")
            mu = (x[0], x[1] // 2, *x[2:])
        return (mu, (mu[0],) if a.reduction == "none" else ())

    def other_flops(self, a, ins, out):
        return 11 * numel(out[0])

    def build(self, a, ins):
        from archdsl.nn.generative import Reparameterize as Module
        return recipe(Module, a.reduction, a.eval_sample)

    def emit(self, a, ins, fx, args):
        return fx.module(*args)


class FocalAttrs(Attrs):
    alpha: float = 0.25
    gamma: float = 2.0
    reduction: Literal["none", "mean", "sum"] = "none"


@register
class SigmoidFocalLoss(Op):
    """Sigmoid focal loss (Lin et al., RetinaNet 2017), as torchvision.ops.sigmoid_focal_loss:
    inputs logits x and targets t (same shape, t in [0, 1]); p = σ(x),
    ce = BCEWithLogits(x, t), p_t = p·t + (1 − p)(1 − t), loss = ce · (1 − p_t)^gamma, times
    alpha·t + (1 − alpha)(1 − t) when alpha >= 0 (alpha = −1: no weighting); reduced by
    `reduction`.

    shape: x's ("none") or [] ("mean", "sum").
    other_flops: numel · (12 + 6 when alpha >= 0 + 1 when reduced) (sigmoid, BCE, p_t, the
    modulating factor, the alpha weight, the reduction).
    """
    name = "sigmoid_focal_loss"
    aliases = ("focal_loss",)
    Attrs = FocalAttrs
    positional = ("alpha", "gamma", "reduction")
    n_inputs = 2

    def infer(self, a, ins):
        x, t = ins
        if tuple(x) != tuple(t):
            raise ShapeError(f"sigmoid_focal_loss logits and targets must have one shape, got "
                             f"{list(x)} and {list(t)}")
        return tuple(x) if a.reduction == "none" else ()

    def other_flops(self, a, ins, out):
        n = numel(ins[0])
        return n * (12 + (6 if a.alpha >= 0 else 0) + (1 if a.reduction != "none" else 0))

    def emit(self, a, ins, fx, args):
        import operator

        import torch
        import torch.nn.functional as F
        x, t = args
        mul, sub, add = (lambda p, q: fx.call(operator.mul, p, q), lambda p, q: fx.call(operator.sub, p, q),
                         lambda p, q: fx.call(operator.add, p, q))
        p = fx.call(torch.sigmoid, x)
        ce = fx.call(F.binary_cross_entropy_with_logits, x, t, reduction="none")
        p_t = add(mul(p, t), mul(sub(1, p), sub(1, t)))
        loss = mul(ce, fx.call(operator.pow, sub(1, p_t), a.gamma))
        if a.alpha >= 0:
            alpha_t = add(mul(a.alpha, t), mul(1 - a.alpha, sub(1, t)))
            loss = mul(alpha_t, loss)
        if a.reduction == "mean":
            loss = fx.method("mean", loss)
        elif a.reduction == "sum":
            loss = fx.method("sum", loss)
        return loss
