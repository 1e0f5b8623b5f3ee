"""Scaled layers: weight-standardised conv (NF-ResNet/NFNet), gamma-scaled activations,
equalized-learning-rate conv and linear (ProGAN/StyleGAN), StyleGAN2's modulated conv.

Costs: `flops` is what FlopCounterMode counts for the implementation (the convolution or
matmul). Weight preparation that runs once per forward whatever the batch (standardising,
rescaling a weight) is not in `other_flops`, which counts per-activation work; each op states
the size of that preparation.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, numel, pair, recipe, register
from archdsl.ops.conv import Conv, ConvAttrs, conv_padding
from archdsl.ops.linear import linear_flops, linear_params, linear_shape

# Activation gammas of the NF papers: 1 / std of act(x) for x ~ N(0, 1), from DeepMind's
# nfnets code (timm's `_nonlin_gamma`).
NONLIN_GAMMA = {
    "identity": 1.0,
    "celu": 1.270926833152771,
    "elu": 1.2716004848480225,
    "gelu": 1.7015043497085571,
    "leaky_relu": 1.70590341091156,
    "log_sigmoid": 1.9193484783172607,
    "relu": 1.7139588594436646,
    "relu6": 1.7131484746932983,
    "selu": 1.0008515119552612,
    "sigmoid": 4.803835391998291,
    "silu": 1.7881293296813965,
    "softsign": 2.338853120803833,
    "softplus": 1.9203323125839233,
    "tanh": 1.5939117670059204,
}


def _gamma(value: Union[float, str], what: str) -> float:
    if isinstance(value, str):
        if value not in NONLIN_GAMMA:
            raise ShapeError(f"{what}: no NF gamma for activation {value!r}",
                             hint=f"one of {', '.join(sorted(NONLIN_GAMMA))}, or a number")
        return NONLIN_GAMMA[value]
    return float(value)


class WSConvAttrs(ConvAttrs):
    gamma: Union[float, str] = 1.0   # a number, or an activation name: its NF gamma
    eps: float = 1e-6
    scaled: bool = True              # false: plain weight standardisation (timm StdConv2d)
    gain_init: float = 1.0


@register
class WSConv(Conv):
    """Weight-standardised 2-d convolution. scaled=true is timm's `ScaledStdConv2d` (Brock et al.
    2021, NF-ResNet / NFNet): Ŵ = gain · gamma · (W − mean) / sqrt(fan_in · (var + eps)), mean and
    (biased) var per output filter over fan_in = Cin/groups · kh · kw; `gamma` is a number or an
    activation name whose NF gamma it takes (relu 1.7139588594436646, gelu 1.7015043497085571,
    silu 1.7881293296813965, …). scaled=false is timm's `StdConv2d` (BiT): Ŵ = (W − mean) /
    sqrt(var + eps), no gain.

    keys: weight [out, Cin/groups, kh, kw], bias [out] (bias=true), gain [out, 1, 1, 1] (scaled).
    shape: as `conv`. flops: as `conv`, 2 · B · out · Ho · Wo · (Cin / groups) · kh · kw.
    other_flops: the bias add, B · out · Ho · Wo when bias=true. Standardising the weight
    (≈ 6 · numel(W) per forward, whatever the batch) is not included.
    """
    name = "ws_conv"
    aliases = ("scaled_std_conv",)
    Attrs = WSConvAttrs
    positional = ("out", "kernel", "stride", "pad")

    def infer(self, a, ins):
        gamma = _gamma(a.gamma, "ws_conv")
        if a.eps <= 0:
            raise ShapeError(f"ws_conv eps must be positive, got {a.eps}")
        if not a.scaled and (gamma != 1.0 or a.gain_init != 1.0):
            raise ShapeError("ws_conv with scaled=false has no gain and no gamma",
                             hint="drop gamma/gain_init, or use scaled=true")
        out = super().infer(a, ins)
        kh, kw = pair(a.kernel)
        if ins[0][1] // a.groups * kh * kw == 1:  # one weight per filter: its variance is 0
            raise ShapeError("ws_conv needs more than one weight per output filter "
                             "(Cin / groups · kh · kw > 1) to standardise it")
        return out

    def params(self, a, ins):
        p = super().params(a, ins)
        if a.scaled:
            p["gain"] = (a.out, 1, 1, 1)
        return p

    def build(self, a, ins):
        from archdsl.nn.scaled import ScaledStdConv2d
        return recipe(ScaledStdConv2d, ins[0][1], a.out, pair(a.kernel), pair(a.stride),
                      conv_padding(a), pair(a.dilation), a.groups, a.bias,
                      gamma=_gamma(a.gamma, "ws_conv"), eps=a.eps, gain_init=a.gain_init,
                      scaled=a.scaled)


Activation = Literal["identity", "celu", "elu", "gelu", "leaky_relu", "log_sigmoid", "relu",
                     "relu6", "selu", "sigmoid", "silu", "softsign", "softplus", "tanh"]


class ScaledActAttrs(Attrs):
    act: Activation = "relu"
    gamma: Optional[float] = None   # default: the activation's NF gamma


def _act_fn(name: str):
    import torch
    import torch.nn.functional as F
    return {"celu": F.celu, "elu": F.elu, "gelu": F.gelu, "leaky_relu": F.leaky_relu,
            "log_sigmoid": F.logsigmoid, "relu": F.relu, "relu6": F.relu6, "selu": F.selu,
            "sigmoid": torch.sigmoid, "silu": F.silu, "softsign": F.softsign,
            "softplus": F.softplus, "tanh": torch.tanh}.get(name)


@register
class ScaledAct(Op):
    """gamma · act(x): an activation rescaled to keep unit variance (NF-ResNet / NFNet "gamma in
    the activation", timm's GammaAct). gamma defaults to the activation's NF gamma (relu
    1.7139588594436646, gelu 1.7015043497085571, silu 1.7881293296813965, …).

    shape: unchanged. other_flops: 2 · numel (the activation and the scale).
    """
    name = "scaled_act"
    aliases = ("gamma_act",)
    Attrs = ScaledActAttrs
    positional = ("act", "gamma")

    def infer(self, a, ins):
        return ins[0]

    def other_flops(self, a, ins, out):
        return 2 * numel(out)

    def emit(self, a, ins, fx, args):
        import operator
        gamma = NONLIN_GAMMA[a.act] if a.gamma is None else a.gamma
        fn = _act_fn(a.act)
        y = fx.call(fn, args[0]) if fn is not None else args[0]
        return fx.call(operator.mul, y, gamma)


class EqConvAttrs(ConvAttrs):
    gain: float = 1.0
    lr_mul: float = 1.0
    bias_init: float = 0.0


@register
class EqConv(Conv):
    """Equalized-learning-rate 2-d convolution (Karras et al., ProGAN 2018 §4.1; StyleGAN):
    weight ~ N(0, 1) / lr_mul, used at run time as weight · gain / sqrt(fan_in) · lr_mul; the
    bias is used as bias · lr_mul. fan_in = Cin/groups · kh · kw. gain 1 (the default) is
    StyleGAN2's (official and rosinality's), which puts the √2 in the activation; gain √2 is
    ProGAN / StyleGAN's He constant sqrt(2 / fan_in).

    keys: weight [out, Cin/groups, kh, kw], bias [out] (bias=true), as rosinality's EqualConv2d.
    shape: as `conv`. flops: as `conv`, 2 · B · out · Ho · Wo · (Cin / groups) · kh · kw.
    other_flops: the bias add, B · out · Ho · Wo when bias=true. Rescaling the weight and bias
    (numel(W) + out per forward, whatever the batch) is not included.
    """
    name = "eq_conv"
    Attrs = EqConvAttrs
    positional = ("out", "kernel", "stride", "pad")

    def infer(self, a, ins):
        if a.lr_mul <= 0:
            raise ShapeError(f"eq_conv lr_mul must be positive, got {a.lr_mul}")
        return super().infer(a, ins)

    def build(self, a, ins):
        from archdsl.nn.scaled import EqualConv2d
        return recipe(EqualConv2d, ins[0][1], a.out, pair(a.kernel), pair(a.stride),
                      conv_padding(a), pair(a.dilation), a.groups, a.bias, a.gain, a.lr_mul,
                      a.bias_init)


class EqLinearAttrs(Attrs):
    out: int
    bias: bool = True
    gain: float = 1.0
    lr_mul: float = 1.0
    bias_init: float = 0.0
    act: Literal["none", "fused_lrelu"] = "none"


@register
class EqLinear(Op):
    """Equalized-learning-rate linear layer (ProGAN / StyleGAN; rosinality's EqualLinear):
    y = x (W · gain / sqrt(Cin) · lr_mul)ᵀ + bias · lr_mul, W ~ N(0, 1) / lr_mul (StyleGAN's
    mapping network uses lr_mul = 0.01). act="fused_lrelu" then applies StyleGAN2's fused bias
    activation, leaky_relu(y, 0.2) · √2 (rosinality's activation="fused_lrelu"). gain as eq_conv.

    keys: weight [out, Cin], bias [out]. shape: [..., Cin] → [..., out].
    flops: 2 · numel(out) · Cin. other_flops: the bias add, numel(out) when bias=true, and
    2 · numel(out) for the fused activation. Rescaling weight and bias (numel(W) + out per
    forward, whatever the batch) is not included.
    """
    name = "eq_linear"
    Attrs = EqLinearAttrs
    positional = ("out", "bias")

    def infer(self, a, ins):
        shape = linear_shape(self.name, a.out, ins[0])
        if a.lr_mul <= 0:
            raise ShapeError(f"eq_linear lr_mul must be positive, got {a.lr_mul}")
        if a.act != "none" and not a.bias:
            raise ShapeError("eq_linear act='fused_lrelu' adds the bias inside the activation: "
                             "it needs bias=true")
        return shape

    def params(self, a, ins):
        return linear_params(a.out, ins[0][-1], a.bias)

    def flops(self, a, ins, out):
        return linear_flops(ins[0][-1], out)

    def other_flops(self, a, ins, out):
        return (numel(out) if a.bias else 0) + (2 * numel(out) if a.act != "none" else 0)

    def build(self, a, ins):
        from archdsl.nn.scaled import EqualLinear
        return recipe(EqualLinear, ins[0][-1], a.out, a.bias, a.gain, a.lr_mul, a.bias_init,
                      a.act == "fused_lrelu")

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


class ModConvAttrs(Attrs):
    out: int
    kernel: int = 3
    demodulate: bool = True
    eps: float = 1e-8


@register
class ModConv(Op):
    """StyleGAN2 modulated / demodulated convolution (Karras et al. 2020, §2.2, Eq. 1–3), as
    rosinality's ModulatedConv2d (no up/down-sampling; stride 1, padding kernel // 2).
    Inputs: x [B, Cin, H, W] and the latent w [B, S]. s = modulation(w), an equalized linear
    S → Cin (gain 1, bias initialised to 1); W'_b = W · s_b / sqrt(Cin · k²); demodulate:
    W''_b = W'_b / sqrt(Σ_{Cin,k,k} W'_b² + eps); the B per-sample convolutions run as one
    grouped convolution of [1, B · Cin, H, W] with B · out filters (groups = B).

    keys: weight [1, out, Cin, k, k], modulation.weight [Cin, S], modulation.bias [Cin].
    shape: → [B, out, H + 2 (k // 2) − k + 1, W + 2 (k // 2) − k + 1].
    flops: 2 · B · S · Cin (the modulation addmm) + 2 · B · out · Ho · Wo · Cin · k² (the grouped
    convolution), as FlopCounterMode counts them.
    other_flops: B · Cin (modulation bias) + B · out · Cin · k² (modulate) and, when demodulating,
    + 3 · B · out · Cin · k² (square, sum, scale) + 2 · B · out (eps, rsqrt). Rescaling W and the
    modulation's weight (numel(W) + S · Cin per forward, whatever the batch) is not included.
    """
    name = "mod_conv"
    Attrs = ModConvAttrs
    positional = ("out", "kernel")
    n_inputs = 2

    def infer(self, a, ins):
        x = expect_rank(ins, {4}, "mod_conv")
        w = ins[1]
        if len(w) != 2 or w[0] != x[0]:
            raise ShapeError(f"mod_conv takes x [B, C, H, W] and a style [B, S], got {list(x)} and "
                             f"{list(w)}")
        if a.out <= 0 or a.kernel <= 0:
            raise ShapeError(f"mod_conv needs out > 0 and kernel > 0, got out={a.out}, "
                             f"kernel={a.kernel}")
        if a.eps < 0:
            raise ShapeError(f"mod_conv eps must be non-negative, got {a.eps}")
        p = a.kernel // 2
        ho, wo = x[2] + 2 * p - a.kernel + 1, x[3] + 2 * p - a.kernel + 1
        if ho <= 0 or wo <= 0:
            raise ShapeError(f"mod_conv kernel {a.kernel} is larger than the padded {x[2]}x{x[3]} input")
        return (x[0], a.out, ho, wo)

    def params(self, a, ins):
        c, s = ins[0][1], ins[1][1]
        return {"weight": (1, a.out, c, a.kernel, a.kernel), "modulation.weight": (c, s),
                "modulation.bias": (c,)}

    def flops(self, a, ins, out):
        b, c = ins[0][:2]
        return 2 * b * ins[1][1] * c + 2 * numel(out) * c * a.kernel ** 2

    def other_flops(self, a, ins, out):
        b, c = ins[0][:2]
        wb = b * a.out * c * a.kernel ** 2
        return b * c + wb + ((3 * wb + 2 * b * a.out) if a.demodulate else 0)

    def window(self, a):
        return (a.kernel, 1, 1)

    def build(self, a, ins):
        from archdsl.nn.scaled import ModulatedConv2d
        return recipe(ModulatedConv2d, ins[0][1], a.out, a.kernel, ins[1][1], a.demodulate, a.eps)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0], args[1])
