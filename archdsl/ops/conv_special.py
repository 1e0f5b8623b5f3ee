"""Special convolutions: transposed, with the weight as an input, deformable (v1/v2), the FFC
Fourier unit, and dynamic convolution (attention over K kernels).

The blocks built from them live in stdlib/blocks/ (deform_conv.arch, ffc.arch,
dynamic_conv.arch, hetconv.arch, igc.arch).
"""
from __future__ import annotations

import math
from typing import Literal, Union

from archdsl.ops.base import Attrs, Op, ShapeError, expect_rank, numel, pair, recipe, register
from archdsl.ops.conv import ConvAttrs, conv_flops, conv_out, conv_padding, conv_params

IntOrPair = Union[int, tuple[int, int]]


def _rank4(s, what: str, name: str):
    if len(s) != 4:
        raise ShapeError(f"{name} expects {what} of rank 4, got shape {list(s)}")
    return s


def _window_out(a, h: int, w: int, name: str, k=None) -> tuple[int, int]:
    """The output size of a conv-like window over h x w (conv's rules, `pad='auto'` included)."""
    kh, kw = pair(a.kernel) if k is None else k
    (sh, sw), (dh, dw) = pair(a.stride), pair(a.dilation)
    if min(kh, kw, sh, sw, dh, dw) <= 0:
        raise ShapeError(f"{name} kernel, stride and dilation must be positive")
    ph, pw = conv_padding(ConvAttrs(out=1, kernel=(kh, kw), stride=a.stride, pad=a.pad,
                                    dilation=a.dilation))
    if min(ph, pw) < 0:
        raise ShapeError(f"{name} padding must be non-negative, got {[ph, pw]}")
    ho, wo = conv_out(h, kh, sh, ph, dh), conv_out(w, kw, sw, pw, dw)
    if ho <= 0 or wo <= 0:
        raise ShapeError(f"{name} kernel {kh}x{kw} (dilation {dh}x{dw}) with padding {ph}x{pw} is "
                         f"larger than the {h}x{w} input", hint="use a smaller kernel or a larger input")
    return ho, wo


def _groups(c: int, out: int, groups: int, name: str) -> None:
    if out <= 0 or groups <= 0:
        raise ShapeError(f"{name} needs out > 0 and groups > 0, got out={out}, groups={groups}")
    if c % groups or out % groups:
        raise ShapeError(f"{name} groups={groups} must divide input channels ({c}) and output "
                         f"channels ({out})")


# ---------------------------------------------------------------------------------------------
# transposed convolution

class ConvTransposeAttrs(Attrs):
    out: int
    kernel: IntOrPair = 1
    stride: IntOrPair = 1
    pad: IntOrPair = 0
    output_padding: IntOrPair = 0
    dilation: IntOrPair = 1
    groups: int = 1
    bias: bool = True


@register
class ConvTranspose(Op):
    """2-d transposed convolution (nn.ConvTranspose2d); weight [Cin, out/groups, kh, kw].

    shape: [B, Cin, H, W] → [B, out, (H − 1)·s − 2p + d(k − 1) + output_padding + 1, …];
    output_padding must be smaller than the stride or the dilation (per dim), as torch requires.
    flops: FlopCounterMode's transposed-conv rule, which counts over the *input* positions:
    2 · B · H · W · Cin · (out / groups) · kh · kw (bias adds not counted); other_flops: the bias
    add, B · out · Ho · Wo when bias=true. The receptive field passes through unchanged (an
    upsampling stride is not an integer jump).
    """
    name = "conv_transpose"
    Attrs = ConvTransposeAttrs
    positional = ("out", "kernel", "stride", "pad")

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, "conv_transpose")
        _groups(c, a.out, a.groups, "conv_transpose")
        k, s, d = pair(a.kernel), pair(a.stride), pair(a.dilation)
        p, op = pair(a.pad), pair(a.output_padding)
        if min(*k, *s, *d) <= 0:
            raise ShapeError("conv_transpose kernel, stride and dilation must be positive")
        if min(*p, *op) < 0:
            raise ShapeError(f"conv_transpose pad and output_padding must be non-negative, got "
                             f"pad={list(p)}, output_padding={list(op)}")
        for i in range(2):
            if op[i] >= s[i] and op[i] >= d[i]:
                raise ShapeError(f"conv_transpose output_padding {list(op)} must be smaller than the "
                                 f"stride {list(s)} or the dilation {list(d)}")
        size = [((h, w)[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i in range(2)]
        if min(size) <= 0:
            raise ShapeError(f"conv_transpose with padding {list(p)} leaves no output for the "
                             f"{h}x{w} input (output size {size})", hint="use a smaller padding")
        return (b, a.out, size[0], size[1])

    def params(self, a, ins):
        kh, kw = pair(a.kernel)
        p = {"weight": (ins[0][1], a.out // a.groups, kh, kw)}
        if a.bias:
            p["bias"] = (a.out,)
        return p

    def flops(self, a, ins, out):
        b, c, h, w = ins[0]
        kh, kw = pair(a.kernel)
        return 2 * b * h * w * c * (a.out // a.groups) * kh * kw

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def build(self, a, ins):
        from torch import nn
        return recipe(nn.ConvTranspose2d, ins[0][1], a.out, pair(a.kernel), pair(a.stride),
                      pair(a.pad), pair(a.output_padding), a.groups, a.bias, pair(a.dilation))

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


# ---------------------------------------------------------------------------------------------
# convolution with the weight (and bias) as tensor inputs

class ConvWithAttrs(Attrs):
    stride: IntOrPair = 1
    pad: Union[IntOrPair, Literal["same", "auto"]] = "auto"
    dilation: IntOrPair = 1
    groups: int = 1
    bias: bool = False


@register
class ConvWith(Op):
    """2-d convolution whose weight [out, Cin/groups, kh, kw] (and, with bias=true, bias [out])
    are tensor inputs — `param` nodes of a block (e.g. DeformConv's zero-initialised
    `conv_offset`) or computed tensors. Inputs: x, weight (, bias).

    shape: [B, Cin, H, W] → [B, out, Ho, Wo] by conv's rules (pad 'auto' / 'same' / explicit);
    flops: 2 · B · out · Ho · Wo · (Cin / groups) · kh · kw; other_flops: the bias add,
    B · out · Ho · Wo when bias=true. The receptive field passes through unchanged (the kernel
    size is a property of the weight input, not of the attributes).
    """
    name = "conv_with"
    Attrs = ConvWithAttrs
    positional = ("stride", "pad")
    n_inputs = None

    def infer(self, a, ins):
        want = 3 if a.bias else 2
        if len(ins) != want:
            raise ShapeError(f"conv_with takes x and weight{' and bias' if a.bias else ''} "
                             f"({want} tensors) with bias={'true' if a.bias else 'false'}, got {len(ins)}",
                             hint="pass the bias tensor with bias=true, or leave both out")
        b, c, h, w = _rank4(ins[0], "an input", "conv_with")
        o, ci, kh, kw = _rank4(ins[1], "a weight [out, Cin/groups, kh, kw]", "conv_with")
        _groups(c, o, a.groups, "conv_with")
        if ci * a.groups != c:
            raise ShapeError(f"conv_with weight {list(ins[1])} expects {ci * a.groups} input channels "
                             f"with groups={a.groups}, the input has {c}")
        if a.bias and tuple(ins[2]) != (o,):
            raise ShapeError(f"conv_with bias must have shape [{o}], got {list(ins[2])}")
        ho, wo = _window_out(a, h, w, "conv_with", (kh, kw))
        return (b, o, ho, wo)

    def flops(self, a, ins, out):
        return 2 * numel(out) * ins[1][1] * ins[1][2] * ins[1][3]

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def emit(self, a, ins, fx, args):
        import torch.nn.functional as F
        kernel = tuple(ins[1][2:])
        pad = conv_padding(ConvAttrs(out=1, kernel=kernel, stride=a.stride, pad=a.pad,
                                     dilation=a.dilation))
        return fx.call(F.conv2d, args[0], args[1], args[2] if a.bias else None, stride=pair(a.stride),
                       padding=pad, dilation=pair(a.dilation), groups=a.groups)


# ---------------------------------------------------------------------------------------------
# deformable convolution v1 / v2

class DeformConvAttrs(ConvAttrs):
    offset_groups: int = 1


@register
class DeformConv(Op):
    """Deformable convolution: v1 (Dai et al. 2017) with inputs (x, offset), v2 (Zhu et al. 2019,
    modulated) with (x, offset, mask). Semantics of `torchvision.ops.deform_conv2d` (written in
    plain torch): offset [B, 2·og·kh·kw, Ho, Wo] holds (row, column) offset pairs per offset
    group g and tap k = i·kw + j at channels 2(g·kh·kw + k), +1; mask [B, og·kh·kw, Ho, Wo]
    multiplies the sampled value; sampling is bilinear, points at y <= −1, y >= H, x <= −1 or
    x >= W give 0 and corners outside the image count as 0. Weight [out, Cin/groups, kh, kw],
    bias [out]; `offset_groups` (og) must divide Cin.

    shape: [B, Cin, H, W] → [B, out, Ho, Wo], Ho, Wo by conv's rules (pad 'auto' by default).
    flops: the final (batched) matmul of the weight with the sampled columns,
    2 · B · out · Ho · Wo · (Cin / groups) · kh · kw.
    other_flops: bilinear sampling. Per sampling location (B · og · kh·kw · Ho · Wo of them):
    2 adds (base + offset, y and x), 2 subtractions (fractional parts), 2 (one minus the
    fractions), 4 corner-weight products = 10. Per sampled value (B · Cin · kh·kw · Ho · Wo):
    4 corners × (weight multiply + accumulate) = 8, + 1 for the mask multiply (v2). Plus the bias
    add B · out · Ho · Wo when bias=true.
    """
    name = "deform_conv"
    Attrs = DeformConvAttrs
    positional = ("out", "kernel", "stride", "pad")
    n_inputs = None

    def infer(self, a, ins):
        if len(ins) not in (2, 3):
            raise ShapeError(f"deform_conv takes (x, offset) or (x, offset, mask), got {len(ins)} "
                             f"tensor(s)", hint="the offsets come from a conv: see the DeformConv block")
        b, c, h, w = _rank4(ins[0], "an input", "deform_conv")
        _groups(c, a.out, a.groups, "deform_conv")
        og = a.offset_groups
        if og <= 0 or c % og:
            raise ShapeError(f"deform_conv offset_groups={og} must be positive and divide the {c} "
                             f"input channels")
        kh, kw = pair(a.kernel)
        ho, wo = _window_out(a, h, w, "deform_conv")
        want = {1: ("offset", (b, 2 * og * kh * kw, ho, wo)), 2: ("mask", (b, og * kh * kw, ho, wo))}
        for i in range(1, len(ins)):
            what, shape = want[i]
            if tuple(ins[i]) != shape:
                raise ShapeError(f"deform_conv {what} must have shape {list(shape)} (offset_groups={og}, "
                                 f"kernel {kh}x{kw}, output {ho}x{wo}), got {list(ins[i])}")
        return (b, a.out, ho, wo)

    def params(self, a, ins):
        return conv_params(a, ins[0][1])

    def flops(self, a, ins, out):
        return conv_flops(a, ins[0][1], out)

    def other_flops(self, a, ins, out):
        b, c = ins[0][:2]
        kh, kw = pair(a.kernel)
        sites = b * kh * kw * out[2] * out[3]
        per_value = 8 + (1 if len(ins) == 3 else 0)
        return sites * (10 * a.offset_groups + per_value * c) + (numel(out) if a.bias else 0)

    def window(self, a):
        return (pair(a.kernel)[0], pair(a.stride)[0], pair(a.dilation)[0])

    def build(self, a, ins):
        from archdsl.nn.conv_special import DeformConv2d
        return recipe(DeformConv2d, ins[0][1], a.out, pair(a.kernel), pair(a.stride),
                      conv_padding(a), pair(a.dilation), a.groups, a.offset_groups, a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(*args)


# ---------------------------------------------------------------------------------------------
# Fast Fourier Convolution: the Fourier unit

def fft2_real_flops(h: int, w: int) -> int:
    """One real 2-d FFT (rfft2) or its inverse (irfft2) of an h x w plane, as torch computes it:
    h real transforms of length w along the rows (each half a complex one: 2.5 · w · log2 w)
    and w//2 + 1 complex transforms of length h along the columns (5 · h · log2 h each)."""
    return round(2.5 * h * w * math.log2(w) + 5 * (w // 2 + 1) * h * math.log2(h))


class FourierUnitAttrs(Attrs):
    out: int
    groups: int = 1


@register
class FourierUnit(Op):
    """The Fourier unit of Fast Fourier Convolution (Chi, Jiang, Mu; NeurIPS 2020): rfft2 over
    (H, W) with norm='ortho' → real/imag parts stacked into 2·Cin channels → 1x1 conv
    `conv_layer` (no bias, `groups`) → BN `bn` → ReLU → 2·out channels back to complex → irfft2
    to H x W. Keys as the reference code: conv_layer.weight [2·out, 2·Cin/groups, 1, 1], bn.*.

    shape: [B, Cin, H, W] → [B, out, H, W]; W' = W // 2 + 1 frequency columns.
    flops: the 1x1 conv, 2 · B · 2out · H · W' · (2Cin / groups).
    other_flops: FFTs at 5·N·log2 N per complex N-point transform, a real one counted as half:
    rfft2 and irfft2 each cost F(H, W) = round(2.5·H·W·log2 W + 5·W'·H·log2 H) per plane
    (H row transforms of length W, then W' complex column transforms of length H), for B·Cin
    planes forward and B·out planes back; plus BN (2) and ReLU (1) per element of the
    [B, 2out, H, W'] spectrum: B·(Cin + out)·F(H, W) + 3·B·2out·H·W'. The receptive field is
    the whole input (every output position depends on the whole plane).
    """
    name = "fourier_unit"
    Attrs = FourierUnitAttrs
    positional = ("out",)

    def receptive(self, a, ins, f):
        return f.mixed()

    def infer(self, a, ins):
        b, c, h, w = expect_rank(ins, {4}, "fourier_unit")
        if a.out <= 0 or a.groups <= 0:
            raise ShapeError(f"fourier_unit needs out > 0 and groups > 0, got out={a.out}, "
                             f"groups={a.groups}")
        if (2 * c) % a.groups or (2 * a.out) % a.groups:
            raise ShapeError(f"fourier_unit groups={a.groups} must divide the 2·{c} real/imag input "
                             f"channels and the 2·{a.out} output channels of its 1x1 conv")
        return (b, a.out, h, w)

    def params(self, a, ins):
        c = ins[0][1]
        return {"conv_layer.weight": (2 * a.out, 2 * c // a.groups, 1, 1),
                "bn.weight": (2 * a.out,), "bn.bias": (2 * a.out,)}

    def buffers(self, a, ins):
        return {"bn.running_mean": (2 * a.out,), "bn.running_var": (2 * a.out,)}

    def flops(self, a, ins, out):
        b, c, h, w = ins[0]
        return 2 * b * 2 * a.out * h * (w // 2 + 1) * (2 * c // a.groups)

    def other_flops(self, a, ins, out):
        b, c, h, w = ins[0]
        return b * (c + a.out) * fft2_real_flops(h, w) + 3 * b * 2 * a.out * h * (w // 2 + 1)

    def build(self, a, ins):
        from archdsl.nn.conv_special import FourierUnit as Module
        return recipe(Module, ins[0][1], a.out, a.groups)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0])


# ---------------------------------------------------------------------------------------------
# dynamic convolution

@register
class DynamicConv(Op):
    """Dynamic convolution (Chen et al., "Dynamic Convolution: Attention over Convolution
    Kernels", CVPR 2020): K kernels, weight [K, out, Cin/groups, kh, kw] and bias [K, out],
    aggregated per sample by attention weights. Inputs: x [B, Cin, H, W] and attn [B, K] (the
    softmax weights, computed in the spec — see the DynamicConv block); K comes from attn.
    Implementation as the reference code: the aggregated kernels are one mm, and the B
    per-sample convolutions one grouped conv with the batch folded into the groups.

    shape: [B, Cin, H, W], [B, K] → [B, out, Ho, Wo] by conv's rules.
    flops: the aggregation mm 2 · B · K · out · (Cin / groups) · kh · kw, the bias mm
    2 · B · K · out when bias=true, and the grouped conv 2 · B · out · Ho · Wo · (Cin / groups)
    · kh · kw. other_flops: the bias add, B · out · Ho · Wo when bias=true.
    """
    name = "dynamic_conv"
    Attrs = ConvAttrs
    positional = ("out", "kernel", "stride", "pad")
    n_inputs = 2

    def infer(self, a, ins):
        b, c, h, w = _rank4(ins[0], "an input", "dynamic_conv")
        if len(ins[1]) != 2 or ins[1][0] != b or ins[1][1] <= 0:
            raise ShapeError(f"dynamic_conv attention weights must have shape [{b}, K], got "
                             f"{list(ins[1])}", hint="one weight per kernel for each sample")
        _groups(c, a.out, a.groups, "dynamic_conv")
        ho, wo = _window_out(a, h, w, "dynamic_conv")
        return (b, a.out, ho, wo)

    def params(self, a, ins):
        kh, kw = pair(a.kernel)
        k = ins[1][1]
        p = {"weight": (k, a.out, ins[0][1] // a.groups, kh, kw)}
        if a.bias:
            p["bias"] = (k, a.out)
        return p

    def flops(self, a, ins, out):
        b, c = ins[0][:2]
        k = ins[1][1]
        kh, kw = pair(a.kernel)
        per_kernel = a.out * (c // a.groups) * kh * kw
        mixing = 2 * b * k * (per_kernel + (a.out if a.bias else 0))
        return mixing + 2 * numel(out) * (c // a.groups) * kh * kw

    def other_flops(self, a, ins, out):
        return numel(out) if a.bias else 0

    def window(self, a):
        return (pair(a.kernel)[0], pair(a.stride)[0], pair(a.dilation)[0])

    def build(self, a, ins):
        from archdsl.nn.conv_special import DynamicConv2d
        return recipe(DynamicConv2d, ins[0][1], a.out, pair(a.kernel), ins[1][1], pair(a.stride),
                      conv_padding(a), pair(a.dilation), a.groups, a.bias)

    def emit(self, a, ins, fx, args):
        return fx.module(args[0], args[1])
