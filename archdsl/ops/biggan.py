"""BigGAN pieces (Brock, Donahue, Simonyan, ICLR 2019): the spectral-normalised class embedding
of the projection discriminator, the truncation trick's latent sampler, and uniform class
labels for the generator's samples.

Outputs of integer dtype (`rand_class`) are int64 at run time; the IR records shapes only.
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, numel, recipe, register
from archdsl.ops.norm_gan import _SN_KEYS, _sn_check


class SNEmbeddingAttrs(Attrs):
    num: int
    dim: int
    n_power_iterations: int = 1
    eps: float = 1e-12


@register
class SNEmbedding(Op):
    """Spectral-normalised lookup table (Miyato & Koyama 2018, the projection discriminator's
    class embedding; BigGAN-PyTorch's SNEmbedding): rows of W / σ(W), σ estimated by power
    iteration on W [num, dim] (`n_power_iterations` steps per training forward, none in eval).
    Built as `torch.nn.utils.parametrizations.spectral_norm(nn.Embedding(num, dim))`.

    keys: parametrizations.weight.original [num, dim]; buffers parametrizations.weight.0._u
    [num], parametrizations.weight.0._v [dim].
    shape: int64 indices [...] → [..., dim]. flops: 0. other_flops: 0 (a gather; σ and W / σ,
    ≈ 3 · num · dim per forward whatever the batch, are not included, as for sn_linear).
    """
    name = "sn_embedding"
    Attrs = SNEmbeddingAttrs
    positional = ("num", "dim")

    def infer(self, a, ins):
        if a.num <= 0 or a.dim <= 0:
            raise ShapeError(f"sn_embedding needs num > 0 and dim > 0, got num={a.num}, dim={a.dim}")
        _sn_check("sn_embedding", a)
        return (*ins[0], a.dim)

    def params(self, a, ins):
        return {_SN_KEYS[0]: (a.num, a.dim)}

    def buffers(self, a, ins):
        return {_SN_KEYS[1]: (a.num,), _SN_KEYS[2]: (a.dim,)}

    def other_flops(self, a, ins, out):
        return 0

    def build(self, a, ins):
        from torch import nn
        from torch.nn.utils.parametrizations import spectral_norm
        return recipe(spectral_norm, recipe(nn.Embedding, a.num, a.dim),
                      n_power_iterations=a.n_power_iterations, eps=a.eps)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class TruncAttrs(Attrs):
    shape: list[int]
    threshold: float = 0.5


@register
class TruncatedRandn(Op):
    """Truncated N(0, 1) noise (BigGAN's truncation trick, §3.1: "resampling the values with
    magnitude above a chosen threshold"): shape [B, *shape] on the device and dtype of its input,
    whose batch size it takes: `z = labels -> truncated_randn([120], 0.5)`. Sampling only; the
    paper trains with threshold ∞ (plain `randn`). Drawn by inverse CDF, the same distribution as
    BigGAN's redraw loop (see archdsl/nn/biggan.py). threshold > 0.

    other_flops: 5 · numel (draw, scale, erfinv, scale, clamp).
    """
    name = "truncated_randn"
    Attrs = TruncAttrs
    positional = ("shape", "threshold")

    def infer(self, a, ins):
        if not ins[0]:
            raise ShapeError("truncated_randn takes its batch size from a tensor with a batch dim")
        if any(d <= 0 for d in a.shape):
            raise ShapeError(f"truncated_randn sizes must be positive, got {a.shape}")
        if not 0.0 < a.threshold < float("inf"):
            raise ShapeError(f"truncated_randn threshold must be positive and finite, got {a.threshold}",
                             hint="BigGAN samples with thresholds between 0.04 and 2; use randn for none")
        return (ins[0][0], *a.shape)

    def other_flops(self, a, ins, out):
        return 5 * numel(out)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.biggan import truncated_noise_like
        return fx.call(truncated_noise_like, args[0], tuple(a.shape), float(a.threshold))


class RandClassAttrs(Attrs):
    num_classes: int


@register
class RandClass(Op):
    """Uniform class labels for a conditional generator's samples (BigGAN-PyTorch's
    `y_.sample_()`: a categorical over `num_classes`): int64 [B] on the device of its input,
    whose batch size it takes: `y_fake = real -> rand_class(1000)`.

    other_flops: B (one draw per label).
    """
    name = "rand_class"
    Attrs = RandClassAttrs
    positional = ("num_classes",)

    def infer(self, a, ins):
        if not ins[0]:
            raise ShapeError("rand_class takes its batch size from a tensor with a batch dim")
        if a.num_classes <= 0:
            raise ShapeError(f"rand_class needs num_classes > 0, got {a.num_classes}")
        return (ins[0][0],)

    def other_flops(self, a, ins, out):
        return numel(out)

    def emit(self, a, ins, fx, args):
        from archdsl.nn.biggan import rand_class_like
        return fx.call(rand_class_like, args[0], a.num_classes)
