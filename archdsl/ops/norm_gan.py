"""Normalisation for generative models: pixel norm, AdaIN, class-conditional batch norm,
minibatch standard deviation, noise injection, spectral-normalised conv and linear.

Costs: none of these has multiply-adds FlopCounterMode counts except the spectral-normalised
conv/linear (their convolution / matmul); the rest is in `other_flops`, formula on each op.
"""
from __future__ import annotations

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, numel, pair, recipe, register
from archdsl.ops.conv import Conv, ConvAttrs, conv_padding
from archdsl.ops.linear import linear_flops, linear_shape


class EpsAttrs(Attrs):
    eps: float = 1e-8


@register
class PixelNorm(Op):
    """Pixelwise feature normalisation (Karras et al., ProGAN 2018 §4.2):
    x / sqrt(mean_c(x²) + eps) over dim 1 of [B, C, ...] (the last dim of a rank-2 input).

    shape: unchanged (rank >= 2). other_flops: 3 · numel (square, mean, scale) + 2 · numel / C
    (eps add, rsqrt per position).
    """
    name = "pixel_norm"
    Attrs = EpsAttrs
    positional = ("eps",)

    def infer(self, a, ins):
        x = ins[0]
        if len(x) < 2:
            raise ShapeError(f"pixel_norm expects [B, C, ...], got shape {list(x)}")
        if a.eps < 0:
            raise ShapeError(f"pixel_norm eps must be non-negative, got {a.eps}")
        return x

    def other_flops(self, a, ins, out):
        return 3 * numel(out) + 2 * (numel(out) // out[1])

    def emit(self, a, ins, fx, args):
        import operator

        import torch
        x = args[0]
        ms = fx.method("mean", fx.method("pow", x, 2), dim=1, keepdim=True)
        return fx.call(operator.mul, x, fx.call(torch.rsqrt, fx.call(operator.add, ms, a.eps)))


class AdaINAttrs(Attrs):
    eps: float = 1e-5


@register
class AdaIN(Op):
    """Adaptive instance normalisation (Huang & Belongie 2017; StyleGAN's AdaIN): inputs x
    [B, C, *S] and a style [B, 2C] (the output of a learned affine, e.g. `eq_linear(2 * C)`);
    y = gamma · instance_norm(x) + beta with (gamma, beta) = style.chunk(2, dim=1), as
    rosinality's AdaptiveInstanceNorm (whose affine initialises the gamma half of its bias to 1).

    shape: x's (rank >= 3, more than one spatial position). other_flops: 5 · numel(x) (instance
    norm without affine 3 · numel, then scale and shift).
    """
    name = "adain"
    Attrs = AdaINAttrs
    positional = ("eps",)
    n_inputs = 2

    def infer(self, a, ins):
        x, s = ins
        if len(x) < 3:
            raise ShapeError(f"adain expects x [B, C, ...spatial], got shape {list(x)}")
        if numel(x[2:]) <= 1:
            raise ShapeError(f"adain needs more than one spatial position, got shape {list(x)}")
        if tuple(s) != (x[0], 2 * x[1]):
            raise ShapeError(f"adain style must be [B, 2C] = {[x[0], 2 * x[1]]} for x {list(x)}, "
                             f"got {list(s)}", hint="project the latent with `eq_linear(2 * C)`")
        if a.eps < 0:
            raise ShapeError(f"adain eps must be non-negative, got {a.eps}")
        return x

    def other_flops(self, a, ins, out):
        return 5 * numel(out)

    def emit(self, a, ins, fx, args):
        import operator

        import torch
        import torch.nn.functional as F
        x, style = args
        c = ins[0][1]
        s = fx.method("view", style, -1, 2 * c, *[1] * (len(ins[0]) - 2))
        parts = fx.call(torch.chunk, s, 2, 1)
        gamma, beta = fx.call(operator.getitem, parts, 0), fx.call(operator.getitem, parts, 1)
        y = fx.call(F.instance_norm, x, eps=a.eps)
        return fx.call(operator.add, fx.call(operator.mul, gamma, y), beta)


class CondBNAttrs(Attrs):
    num_classes: int
    eps: float = 1e-5
    momentum: float = 0.1


@register
class CondBatchNorm(Op):
    """Class-conditional batch norm (de Vries et al. 2017; SNGAN / projection-discriminator
    generators, Miyato & Koyama 2018): inputs x [B, C, ...] and labels y [B] (int64);
    batch norm without affine, then weights[y] · x̂ + biases[y] from two per-class embeddings.

    keys (crcrpar/pytorch.sngan_projection's CategoricalConditionalBatchNorm): weights.weight
    [num_classes, C] (init 1), biases.weight [num_classes, C] (init 0); buffers running_mean,
    running_var [C] (and num_batches_tracked).
    shape: x's (rank 2 to 5). other_flops: 4 · numel(x) (normalise 2, class scale and shift 2).
    """
    name = "cond_bn"
    aliases = ("cond_batch_norm",)
    Attrs = CondBNAttrs
    positional = ("num_classes", "eps", "momentum")
    n_inputs = 2

    def infer(self, a, ins):
        x, y = ins
        if len(x) not in (2, 3, 4, 5):
            raise ShapeError(f"cond_bn expects x of rank 2 to 5, got shape {list(x)}")
        if tuple(y) != (x[0],):
            raise ShapeError(f"cond_bn labels must be [B] = [{x[0]}] (int64), got {list(y)}")
        if a.num_classes <= 0:
            raise ShapeError(f"cond_bn needs num_classes > 0, got {a.num_classes}")
        if a.eps < 0:
            raise ShapeError(f"cond_bn eps must be non-negative, got {a.eps}")
        return x

    def params(self, a, ins):
        c = ins[0][1]
        return {"weights.weight": (a.num_classes, c), "biases.weight": (a.num_classes, c)}

    def buffers(self, a, ins):
        c = ins[0][1]
        return {"running_mean": (c,), "running_var": (c,)}

    def other_flops(self, a, ins, out):
        return 4 * numel(out)

    def build(self, a, ins):
        from archdsl.nn.norm_gan import ConditionalBatchNorm
        return recipe(ConditionalBatchNorm, ins[0][1], a.num_classes, a.eps, a.momentum)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0], args[1])


class MbStdAttrs(Attrs):
    group_size: int = 4
    features: int = 1
    eps: float = 1e-8


@register
class MinibatchStd(Op):
    """Minibatch standard deviation (Karras et al., ProGAN 2018 §3; StyleGAN2's form with
    `features` channel groups): over groups of G = min(group_size, B) samples, the std of every
    feature, averaged per channel group and position, appended as `features` feature maps.

    shape: [B, C, H, W] → [B, C + features, H, W]; B must divide by G and C by `features`.
    other_flops: 5 · numel(x) (group mean, centre, square, mean, sqrt and the averaging).
    """
    name = "minibatch_std"
    aliases = ("mbstd",)
    Attrs = MbStdAttrs
    positional = ("group_size", "features")

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, "minibatch_std")
        if a.group_size <= 0 or a.features <= 0:
            raise ShapeError(f"minibatch_std needs group_size > 0 and features > 0, got "
                             f"{a.group_size} and {a.features}")
        if b == 0:
            raise ShapeError("minibatch_std needs at least one sample: the batch is 0",
                             hint="the statistic is taken over the batch; give the input a batch size")
        g = min(a.group_size, b)
        if b % g:
            raise ShapeError(f"minibatch_std: the batch ({b}) must divide into groups of {g}",
                             hint="use a batch that is a multiple of group_size")
        if c % a.features:
            raise ShapeError(f"minibatch_std: features={a.features} must divide the {c} channels")
        if a.eps < 0:
            raise ShapeError(f"minibatch_std eps must be non-negative, got {a.eps}")
        return (b, c + a.features, h, w)

    def other_flops(self, a, ins, out):
        return 5 * numel(ins[0])

    def build(self, a, ins):
        from archdsl.nn.norm_gan import MinibatchStd as Module
        return recipe(Module, a.group_size, a.features, a.eps)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class NoiseAttrs(Attrs):
    per_channel: bool = True


@register
class NoiseInjection(Op):
    """StyleGAN noise inputs (Karras et al. 2019 §2): x + weight · noise with noise [B, 1, H, W]
    ~ N(0, 1) drawn on every call, or given as a second input ([B or 1, 1, H, W], fixed noise).

    keys: weight [1, C, 1, 1] (per_channel, StyleGAN) or [1] (StyleGAN2), initialised to 0.
    shape: x's ([B, C, H, W]). other_flops: 2 · numel(x) (scale, add) + B · H · W when the
    noise is drawn.
    """
    name = "noise"
    aliases = ("noise_injection",)
    Attrs = NoiseAttrs
    n_inputs = None

    def infer(self, a, ins):
        if len(ins) > 2:
            raise ShapeError(f"noise takes x and optionally a noise tensor, got {len(ins)} inputs")
        x = expect_rank(ins, {4}, "noise")
        if len(ins) == 2:
            n = ins[1]
            if len(n) != 4 or n[0] not in (1, x[0]) or n[1] != 1 or tuple(n[2:]) != tuple(x[2:]):
                raise ShapeError(f"noise input must be [B or 1, 1, H, W] for x {list(x)}, got {list(n)}")
        return x

    def params(self, a, ins):
        return {"weight": (1, ins[0][1], 1, 1) if a.per_channel else (1,)}

    def other_flops(self, a, ins, out):
        b, _, h, w = ins[0]
        return 2 * numel(out) + (b * h * w if len(ins) == 1 else 0)

    def build(self, a, ins):
        from archdsl.nn.norm_gan import NoiseInjection as Module
        return recipe(Module, ins[0][1], a.per_channel)

    def emit(self, a, ins, fx, args):
        return fx.module(*args)


class SNConvAttrs(ConvAttrs):
    n_power_iterations: int = 1
    eps: float = 1e-12


def _sn_check(name: str, a) -> None:
    if a.n_power_iterations <= 0:
        raise ShapeError(f"{name} needs n_power_iterations > 0, got {a.n_power_iterations}")
    if a.eps <= 0:
        raise ShapeError(f"{name} eps must be positive, got {a.eps}")


_SN_KEYS = ("parametrizations.weight.original", "parametrizations.weight.0._u",
            "parametrizations.weight.0._v")


@register
class SNConv(Conv):
    """Spectral-normalised 2-d convolution (Miyato et al. 2018): W / σ(W), σ estimated by power
    iteration on W reshaped to [out, Cin/groups · kh · kw] — `n_power_iterations` steps per
    training forward, none in eval. Built as `torch.nn.utils.parametrizations.spectral_norm`
    on an nn.Conv2d, so the keys are that API's: bias [out] (bias=true),
    parametrizations.weight.original [out, Cin/groups, kh, kw]; buffers
    parametrizations.weight.0._u [out] and parametrizations.weight.0._v [Cin/groups · kh · kw].
    (The older `torch.nn.utils.spectral_norm` hook names them weight_orig, weight_u, weight_v.)

    shape: as `conv`. flops: as `conv` (the σ estimate is matrix-vector work FlopCounterMode
    does not count). other_flops: the bias add, B · out · Ho · Wo when bias=true. σ and W / σ
    (≈ 3 · numel(W) per forward, whatever the batch) are not included.
    """
    name = "sn_conv"
    Attrs = SNConvAttrs
    positional = ("out", "kernel", "stride", "pad")

    def infer(self, a, ins):
        _sn_check("sn_conv", a)
        return super().infer(a, ins)

    def params(self, a, ins):
        p = super().params(a, ins)
        out = {"bias": p["bias"]} if a.bias else {}
        out[_SN_KEYS[0]] = p["weight"]
        return out

    def buffers(self, a, ins):
        kh, kw = pair(a.kernel)
        return {_SN_KEYS[1]: (a.out,), _SN_KEYS[2]: (ins[0][1] // a.groups * kh * kw,)}

    def build(self, a, ins):
        from torch import nn
        from torch.nn.utils.parametrizations import spectral_norm
        conv = recipe(nn.Conv2d, ins[0][1], a.out, pair(a.kernel), pair(a.stride), conv_padding(a),
                      pair(a.dilation), a.groups, a.bias)
        return recipe(spectral_norm, conv, n_power_iterations=a.n_power_iterations, eps=a.eps)


class SNLinearAttrs(Attrs):
    out: int
    bias: bool = True
    n_power_iterations: int = 1
    eps: float = 1e-12


@register
class SNLinear(Op):
    """Spectral-normalised linear layer (Miyato et al. 2018), as
    `torch.nn.utils.parametrizations.spectral_norm(nn.Linear(...))`.

    keys: bias [out] (bias=true), parametrizations.weight.original [out, Cin]; buffers
    parametrizations.weight.0._u [out], parametrizations.weight.0._v [Cin].
    shape: [..., Cin] → [..., out]. flops: 2 · numel(out) · Cin. other_flops: the bias add,
    numel(out) when bias=true; σ and W / σ (≈ 3 · out · Cin per forward, whatever the batch) are
    not included.
    """
    name = "sn_linear"
    Attrs = SNLinearAttrs
    positional = ("out", "bias")

    def infer(self, a, ins):
        _sn_check("sn_linear", a)
        return linear_shape(self.name, a.out, ins[0])

    def params(self, a, ins):
        out = {"bias": (a.out,)} if a.bias else {}
        out[_SN_KEYS[0]] = (a.out, ins[0][-1])
        return out

    def buffers(self, a, ins):
        return {_SN_KEYS[1]: (a.out,), _SN_KEYS[2]: (ins[0][-1],)}

    def flops(self, a, ins, out):
        return linear_flops(ins[0][-1], out)

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def build(self, a, ins):
        from torch import nn
        from torch.nn.utils.parametrizations import spectral_norm
        return recipe(spectral_norm, recipe(nn.Linear, ins[0][-1], a.out, a.bias),
                      n_power_iterations=a.n_power_iterations, eps=a.eps)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])
