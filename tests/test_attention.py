"""Attention and gate blocks (stdlib/blocks: attention, window_attention, sk, split_attn, eca,
lambda_layer, msca) against hand-written PyTorch, timm's state_dict keys, and FlopCounterMode.

For each block: the hand-written module below has timm's module names, so loading the compiled
block's state_dict into it with strict=True checks the keys; with the same (random) weights and
input both give the same output; the block's static FLOPs equal FlopCounterMode's count for the
compiled block and for the hand-written one (which computes attention with explicit matmuls and
a softmax, where the block calls scaled_dot_product_attention).

FlopCounterMode on CPU has no formula for `aten._scaled_dot_product_flash_attention_for_cpu`;
like the reference fixtures, `flop_counter()` below counts it with torch's own SDPA formula.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

import archdsl

# ---------------------------------------------------------------------------------------------
# helpers


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> FlopCounterMode:
    """FlopCounterMode that also counts the CPU SDPA kernel (4·B·H·Lq·Lk·D)."""
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
    return FlopCounterMode(display=False, custom_mapping=mapping)


def count_flops(module: nn.Module, x) -> int:
    with torch.no_grad(), flop_counter() as counter:
        module(x)
    return counter.get_total_flops()


BLOCKS = {
    "Attention": "attention", "BeitAttention": "attention", "SwinBlock": "window_attention",
    "WindowAttention": "window_attention", "SelectiveKernel": "sk", "SplitAttn": "split_attn",
    "ECA": "eca", "LambdaLayer": "lambda_layer", "MSCA": "msca",
}


def _source(name: str) -> str:
    return f"from blocks.{BLOCKS[name]} import {name}\n"


def build(name: str, shape, **kw) -> nn.Module:
    spec = archdsl.load_spec(source=_source(name), variant=name, input_shape=tuple(shape), **kw)
    return spec.eval()


def static_flops(name: str, shape, **kw) -> int:
    return archdsl.check_spec(source=_source(name), variant=name, input_shape=tuple(shape),
                              **kw).totals.flops


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in module.state_dict().items():
            if not v.is_floating_point():
                continue
            if k.endswith("running_var"):
                v.copy_(torch.rand(v.shape, generator=gen) + 0.5)
            else:
                v.copy_(torch.randn(v.shape, generator=gen) * 0.5)
    return module


def keys(module: nn.Module) -> list[tuple[str, tuple]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()
            if not k.endswith("num_batches_tracked")]


def check_against(name: str, shape, ref: nn.Module, seed: int = 0, **kw) -> None:
    """Same weights (strict load), same input: same output; static FLOPs = counted FLOPs."""
    ours = randomize_(build(name, shape, **kw), seed)
    ref.load_state_dict(ours.state_dict(), strict=True)
    ref.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        want, got = ref(x), ours(x)
    assert got.shape == want.shape
    scale = max(1.0, want.abs().max().item())
    assert (got - want).abs().max().item() <= 1e-4 * scale
    flops = static_flops(name, shape, **kw)
    assert flops == count_flops(ours, x) == count_flops(ref, x)


# ---------------------------------------------------------------------------------------------
# hand-written references (module names as timm's)

class RefMlp(nn.Module):
    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, hidden), nn.Linear(hidden, c)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def attend(q, k, v, bias=None):
    """softmax(q kᵀ / √d + bias) v, with explicit matmuls."""
    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if bias is not None:
        attn = attn + bias
    return attn.softmax(-1) @ v


class RefAttention(nn.Module):
    """ViT multi-head self-attention (timm Attention: qkv, q_norm/k_norm, proj)."""

    def __init__(self, c: int, heads: int, qk_norm: bool = False):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        if qk_norm:
            self.q_norm = nn.LayerNorm(c // heads, eps=1e-6)
            self.k_norm = nn.LayerNorm(c // heads, eps=1e-6)
        self.qk_norm = qk_norm

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        return self.proj(attend(q, k, v).transpose(1, 2).reshape(b, n, c))


def swin_index(wh: int, ww: int) -> torch.Tensor:
    """Relative position index: (Δh + wh - 1)(2 ww - 1) + (Δw + ww - 1) for tokens i, j."""
    idx = torch.empty(wh * ww, wh * ww, dtype=torch.long)
    for i in range(wh * ww):
        for j in range(wh * ww):
            dh, dw = i // ww - j // ww, i % ww - j % ww
            idx[i, j] = (dh + wh - 1) * (2 * ww - 1) + (dw + ww - 1)
    return idx


class RefBeitAttention(nn.Module):
    """BEiT attention (timm beit Attention): q/v biases, a cls-aware relative position bias."""

    def __init__(self, c: int, heads: int, window):
        super().__init__()
        wh, ww = window
        self.heads = heads
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(c)), nn.Parameter(torch.zeros(c))
        n = (2 * wh - 1) * (2 * ww - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n + 3, heads))
        self.qkv, self.proj = nn.Linear(c, 3 * c, bias=False), nn.Linear(c, c)
        idx = torch.empty(wh * ww + 1, wh * ww + 1, dtype=torch.long)
        idx[1:, 1:] = swin_index(wh, ww)
        idx[0, :], idx[:, 0], idx[0, 0] = n, n + 1, n + 2   # cls→token, token→cls, cls→cls
        self.index = idx

    def forward(self, x):
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        rel = self.relative_position_bias_table[self.index].permute(2, 0, 1)
        return self.proj(attend(q, k, v, rel).transpose(1, 2).reshape(b, n, c))


class RefWindowAttention(nn.Module):
    def __init__(self, c: int, heads: int, wh: int, ww: int):
        super().__init__()
        self.heads, self.wh, self.ww = heads, wh, ww
        rows = (2 * wh - 1) * (2 * ww - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(rows, heads))
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.index = swin_index(wh, ww)

    def forward(self, x, mask=None):   # x [B*nW, N, C]; mask [nW, N, N]
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.index].permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias.unsqueeze(1) + mask[None, :, None]).expand(bw // nw, -1, -1, -1, -1)
            bias = bias.reshape(bw, self.heads, n, n)
        return self.proj(attend(q, k, v, bias).transpose(1, 2).reshape(bw, n, c))


def shifted_mask(hp: int, wp: int, wh: int, ww: int, sh: int, sw: int) -> torch.Tensor:
    """Swin's mask from region labels: rows (cols) split at hp - wh and hp - sh (when shifted)."""
    def region(i, size, w, s):
        return 2 if s == 0 else (0 if i < size - w else 1 if i < size - s else 2)
    label = torch.tensor([[3 * region(i, hp, wh, sh) + region(j, wp, ww, sw) for j in range(wp)]
                          for i in range(hp)], dtype=torch.float)
    win = label.view(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)
    return torch.where(win[:, :, None] == win[:, None, :], 0.0, -100.0)


class RefSwinBlock(nn.Module):
    """timm's SwinTransformerBlock on [B, H, W, C]: window and shift clipped to the map."""

    def __init__(self, c: int, heads: int, size, window: int, shift: int, always_partition=False):
        super().__init__()
        h, w = size
        part = [always_partition or s > window for s in (h, w)]
        self.ws = [window if p else s for p, s in zip(part, (h, w))]
        self.ss = [shift if p else 0 for p in part]
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.attn = RefWindowAttention(c, heads, *self.ws)
        self.mlp = RefMlp(c, 4 * c)
        (wh, ww), (sh, sw) = self.ws, self.ss
        self.hp, self.wp = math.ceil(h / wh) * wh, math.ceil(w / ww) * ww
        self.mask = shifted_mask(self.hp, self.wp, wh, ww, sh, sw) if sh or sw else None

    def forward(self, x):
        b, h, w, c = x.shape
        (wh, ww), (sh, sw) = self.ws, self.ss
        y = torch.roll(self.norm1(x), (-sh, -sw), (1, 2))
        y = F.pad(y, (0, 0, 0, self.wp - w, 0, self.hp - h))
        y = y.view(b, self.hp // wh, wh, self.wp // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
        y = y.reshape(-1, wh * ww, c)
        y = self.attn(y, self.mask)
        y = y.view(b, self.hp // wh, self.wp // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
        y = y.reshape(b, self.hp, self.wp, c)[:, :h, :w]
        x = x + torch.roll(y, (sh, sw), (1, 2))
        return x + self.mlp(self.norm2(x))


class RefConvBnAct(nn.Module):
    def __init__(self, cin, cout, k, stride, dilation, groups):
        super().__init__()
        pad = ((stride - 1) + dilation * (k - 1)) // 2
        self.conv = nn.Conv2d(cin, cout, k, stride, pad, dilation, groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class RefSKAttn(nn.Module):
    def __init__(self, c, paths, rd):
        super().__init__()
        self.paths = paths
        self.fc_reduce, self.bn = nn.Conv2d(c, rd, 1, bias=False), nn.BatchNorm2d(rd)
        self.fc_select = nn.Conv2d(rd, c * paths, 1, bias=False)


class RefSelectiveKernel(nn.Module):
    """Selective Kernel conv as timm's: paths of 3x3 convs with dilations (k - 1) / 2 on split
    input channels, softmax attention over the paths."""

    def __init__(self, cin, cout, kernels=(3, 5), stride=1, groups=1, rd=16, split=True):
        super().__init__()
        self.m, self.split, self.cin = len(kernels), split, cin
        pin = cin // self.m if split else cin
        g = min(cout, groups)
        self.paths = nn.ModuleList([RefConvBnAct(pin, cout, 3, stride, (k - 1) // 2, g)
                                    for k in kernels])
        self.attn = RefSKAttn(cout, self.m, rd)

    def forward(self, x):
        xs = torch.split(x, self.cin // self.m, 1) if self.split else [x] * self.m
        y = torch.stack([p(xi) for p, xi in zip(self.paths, xs)], 1)          # B, M, C, H, W
        a = y.sum(1).mean((2, 3), keepdim=True)
        a = self.attn.fc_select(F.relu(self.attn.bn(self.attn.fc_reduce(a))))
        a = a.view(a.shape[0], self.m, -1, 1, 1).softmax(1)
        return (y * a).sum(1)


class RefSplitAttn(nn.Module):
    """ResNeSt split attention as timm's SplitAttn with BatchNorm."""

    def __init__(self, cin, cout, radix=2, groups=1, stride=1, pad=1, dilation=1, attn=32):
        super().__init__()
        self.radix, self.groups, self.cout = radix, groups, cout
        self.conv = nn.Conv2d(cin, cout * radix, 3, stride, pad, dilation, groups=groups * radix,
                              bias=False)
        self.bn0 = nn.BatchNorm2d(cout * radix)
        self.fc1 = nn.Conv2d(cout, attn, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(attn)
        self.fc2 = nn.Conv2d(attn, cout * radix, 1, groups=groups)

    def forward(self, x):
        x = F.relu(self.bn0(self.conv(x)))
        b = x.shape[0]
        splits = x.view(b, self.radix, self.cout, *x.shape[2:])
        g = splits.sum(1).mean((2, 3), keepdim=True)
        a = self.fc2(F.relu(self.bn1(self.fc1(g))))
        if self.radix == 1:
            return x * a.sigmoid()
        a = a.view(b, self.groups, self.radix, -1).transpose(1, 2).softmax(1)
        return (splits * a.reshape(b, self.radix, self.cout, 1, 1)).sum(1)


class RefECA(nn.Module):
    def __init__(self, c):
        super().__init__()
        t = int(abs(math.log(c, 2) + 1) / 2)
        k = max(t if t % 2 else t + 1, 3)
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x):
        y = self.conv(x.mean((2, 3)).unsqueeze(1)).sigmoid()
        return x * y.view(x.shape[0], -1, 1, 1)


class RefLambda(nn.Module):
    """timm's LambdaLayer with local position lambdas (r = 9), 4 heads, K = 16."""

    def __init__(self, c, stride=1, heads=4, k=16, r=9):
        super().__init__()
        self.heads, self.k, self.v, self.stride = heads, k, c // heads, stride
        self.qkv = nn.Conv2d(c, heads * k + k + self.v, 1, bias=False)
        self.norm_q, self.norm_v = nn.BatchNorm2d(heads * k), nn.BatchNorm2d(self.v)
        self.conv_lambda = nn.Conv3d(1, k, (r, r, 1), padding=(r // 2, r // 2, 0))

    def forward(self, x):
        b, c, h, w = x.shape
        m = h * w
        q, k, v = torch.split(self.qkv(x), [self.heads * self.k, self.k, self.v], 1)
        q = self.norm_q(q).reshape(b, self.heads, self.k, m).transpose(-1, -2)   # B, h, M, K
        v = self.norm_v(v).reshape(b, self.v, m).transpose(-1, -2)                # B, M, V
        k = k.reshape(b, self.k, m).softmax(-1)                                   # B, K, M
        content = q @ (k @ v).unsqueeze(1)
        pos = self.conv_lambda(v.reshape(b, 1, h, w, self.v))                     # B, K, H, W, V
        pos = pos.reshape(b, 1, self.k, m, self.v).transpose(2, 3)                # B, 1, M, K, V
        position = (q.unsqueeze(-2) @ pos).squeeze(-2)
        out = (content + position).transpose(-1, -2).reshape(b, c, h, w)
        return F.avg_pool2d(out, 2) if self.stride == 2 else out


class RefMSCA(nn.Module):
    """SegNeXt's AttentionModule."""

    def __init__(self, c):
        super().__init__()
        self.conv0 = nn.Conv2d(c, c, 5, padding=2, groups=c)
        for i, (k, p) in enumerate([(7, 3), (11, 5), (21, 10)]):
            setattr(self, f"conv{i}_1", nn.Conv2d(c, c, (1, k), padding=(0, p), groups=c))
            setattr(self, f"conv{i}_2", nn.Conv2d(c, c, (k, 1), padding=(p, 0), groups=c))
        self.conv3 = nn.Conv2d(c, c, 1)

    def forward(self, x):
        a = self.conv0(x)
        branches = [getattr(self, f"conv{i}_2")(getattr(self, f"conv{i}_1")(a)) for i in range(3)]
        return self.conv3(a + sum(branches)) * x


# ---------------------------------------------------------------------------------------------
# outputs: the block vs the hand-written module, same weights and input

SWIN_CASES = [  # shape, window, shift, always_partition
    ((2, 14, 14, 48), 7, 0, False),   # W-MSA
    ((2, 14, 14, 48), 7, 3, False),   # SW-MSA
    ((2, 10, 13, 48), 4, 2, False),   # padded to whole windows, shifted
    ((2, 5, 9, 48), 7, 3, False),     # window clipped to the 5-row map (5x7), shifted along W
    ((2, 5, 9, 48), 4, 2, True),      # always_partition: padded, shifted both ways
]


@pytest.mark.parametrize("shape,window,shift,always", SWIN_CASES)
def test_swin_block(shape, window, shift, always):
    ref = RefSwinBlock(shape[-1], 3, shape[1:3], window, shift, always)
    check_against("SwinBlock", shape, ref, num_heads=3, window=window, shift=shift,
                  always_partition=always)


@pytest.mark.parametrize("cin,shape_hw,kw,ref_kw", [
    (64, (12, 12), dict(out_chs=64, rd_ratio=1 / 8, rd_divisor=16), dict(cout=64, rd=16)),
    (64, (12, 12), dict(out_chs=128, stride=2, rd_ratio=1 / 8, rd_divisor=16),
     dict(cout=128, stride=2, rd=16)),
    (32, (9, 9), dict(out_chs=48, kernel=[3, 5, 7], split_input=False, groups=4),
     dict(cout=48, kernels=(3, 5, 7), split=False, groups=4, rd=8)),
])
def test_selective_kernel(cin, shape_hw, kw, ref_kw):
    check_against("SelectiveKernel", (2, cin, *shape_hw), RefSelectiveKernel(cin, **ref_kw), **kw)


@pytest.mark.parametrize("kw,ref_kw", [
    (dict(out_chs=64, radix=2, pad=1), dict(radix=2)),
    (dict(out_chs=64, radix=4, groups=2, stride=2, pad=2, dilation=2),
     dict(radix=4, groups=2, stride=2, pad=2, dilation=2, attn=64)),
    (dict(out_chs=32, radix=1), dict(radix=1)),
])
def test_split_attention(kw, ref_kw):
    ref = RefSplitAttn(64, kw["out_chs"], **ref_kw)
    check_against("SplitAttn", (2, 64, 10, 10), ref, **kw)


@pytest.mark.parametrize("c", [24, 64, 256])
def test_eca(c):
    check_against("ECA", (2, c, 7, 7), RefECA(c))


@pytest.mark.parametrize("c,k", [(16, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5),
                                 (2048, 7)])
def test_eca_kernel_size_follows_the_channels(c, k):
    """k = the odd number nearest |log2(C) + 1| / 2, at least 3 (ECA-Net, eq. 12)."""
    g = archdsl.load_graph(source=_source("ECA"), variant="ECA", input_shape=(1, c, 2, 2))
    assert g.node("conv").attrs.kernel == k


@pytest.mark.parametrize("qk_norm", [False, True])
def test_vit_attention(qk_norm):
    check_against("Attention", (2, 17, 48), RefAttention(48, 3, qk_norm), num_heads=3,
                  qk_norm=qk_norm)


def test_beit_attention():
    check_against("BeitAttention", (2, 13, 48), RefBeitAttention(48, 3, (3, 4)), num_heads=3,
                  window=[3, 4])


@pytest.mark.parametrize("c,stride", [(64, 1), (128, 2)])
def test_lambda_layer(c, stride):
    check_against("LambdaLayer", (2, c, 10, 10), RefLambda(c, stride), stride=stride)


def test_msca():
    check_against("MSCA", (2, 16, 12, 10), RefMSCA(16))


# ---------------------------------------------------------------------------------------------
# keys and shapes against timm's (from the reference fixtures in shared/reference/models)

BN = ("weight", "bias", "running_mean", "running_var")


def _bn(prefix: str, c: int) -> list:
    return [(f"{prefix}.{k}", (c,)) for k in BN]


def _swin_block(c: int, heads: int) -> list:
    return [("norm1.weight", (c,)), ("norm1.bias", (c,)),
            ("attn.relative_position_bias_table", (169, heads)),
            ("attn.qkv.weight", (3 * c, c)), ("attn.qkv.bias", (3 * c,)),
            ("attn.proj.weight", (c, c)), ("attn.proj.bias", (c,)),
            ("norm2.weight", (c,)), ("norm2.bias", (c,)),
            ("mlp.fc1.weight", (4 * c, c)), ("mlp.fc1.bias", (4 * c,)),
            ("mlp.fc2.weight", (c, 4 * c)), ("mlp.fc2.bias", (c,))]


def _sk(cin: int, cout: int) -> list:
    out = []
    for i in range(2):
        out += [(f"paths.{i}.conv.weight", (cout, cin // 2, 3, 3)), *_bn(f"paths.{i}.bn", cout)]
    return out + [("attn.fc_reduce.weight", (16, cout, 1, 1)), *_bn("attn.bn", 16),
                  ("attn.fc_select.weight", (2 * cout, 16, 1, 1))]


def _splat(cin: int, width: int, attn: int) -> list:
    return [("conv.weight", (2 * width, cin // 2, 3, 3)), *_bn("bn0", 2 * width),
            ("fc1.weight", (attn, width, 1, 1)), ("fc1.bias", (attn,)), *_bn("bn1", attn),
            ("fc2.weight", (2 * width, attn, 1, 1)), ("fc2.bias", (2 * width,))]


def _lambda(c: int) -> list:
    v = c // 4
    return [("qkv.weight", (64 + 16 + v, c, 1, 1)), *_bn("norm_q", 64), *_bn("norm_v", v),
            ("conv_lambda.weight", (16, 1, 9, 9, 1)), ("conv_lambda.bias", (16,))]


TIMM_KEYS = [  # (timm model, module path, block, input shape, arguments, keys under the path)
    ("vit_tiny_patch16_224", "blocks.0.attn", "Attention", (1, 197, 192), dict(num_heads=3),
     [("qkv.weight", (576, 192)), ("qkv.bias", (576,)), ("proj.weight", (192, 192)),
      ("proj.bias", (192,))]),
    ("beit_base_patch16_224", "blocks.0.attn", "BeitAttention", (1, 197, 768),
     dict(num_heads=12, window=[14, 14]),
     [("q_bias", (768,)), ("v_bias", (768,)), ("relative_position_bias_table", (732, 12)),
      ("qkv.weight", (2304, 768)), ("proj.weight", (768, 768)), ("proj.bias", (768,))]),
    ("swin_tiny_patch4_window7_224", "layers.0.blocks.1", "SwinBlock", (1, 56, 56, 96),
     dict(num_heads=3, shift=3), _swin_block(96, 3)),
    ("swin_tiny_patch4_window7_224", "layers.3.blocks.1", "SwinBlock", (1, 7, 7, 768),
     dict(num_heads=24, shift=3), _swin_block(768, 24)),
    ("skresnet18", "layer1.0.conv1", "SelectiveKernel", (1, 64, 56, 56),
     dict(out_chs=64, rd_ratio=1 / 8, rd_divisor=16), _sk(64, 64)),
    ("skresnet18", "layer2.0.conv1", "SelectiveKernel", (1, 64, 56, 56),
     dict(out_chs=128, stride=2, rd_ratio=1 / 8, rd_divisor=16), _sk(64, 128)),
    ("resnest50d", "layer1.0.conv2", "SplitAttn", (1, 64, 56, 56), dict(pad=1), _splat(64, 64, 32)),
    ("resnest50d", "layer2.0.conv2", "SplitAttn", (1, 128, 56, 56), dict(stride=2, pad=1),
     _splat(128, 128, 64)),
    ("lambda_resnet26t", "stages.2.1.self_attn", "LambdaLayer", (1, 256, 16, 16), {}, _lambda(256)),
    ("lambda_resnet26t", "stages.3.0.self_attn", "LambdaLayer", (1, 512, 16, 16), dict(stride=2),
     _lambda(512)),
]


@pytest.mark.parametrize("model,path,name,shape,kw,want", TIMM_KEYS,
                         ids=[f"{t[0]}:{t[1]}" for t in TIMM_KEYS])
def test_keys_match_timm(model, path, name, shape, kw, want):
    assert keys(build(name, shape, **kw)) == want


def test_vit_block_keys_match_timm():
    """A ViT block written with Attention has timm's `blocks.0.*` keys (vit_tiny_patch16_224)."""
    src = _source("Attention") + """
block Block(num_heads: int) {
  in x: [B, N, C]
  y = x + (x -> norm1: ln(1e-6) -> attn: Attention(num_heads))
  out y + (y -> norm2: ln(1e-6) -> mlp: Mlp(4 * C))
}
network Net() {
  in x: [1, 197, 192]
  out x -> blocks: [Block(3)]
}
"""
    model = archdsl.load_spec(source=src, variant="Net")
    want = [("norm1.weight", (192,)), ("norm1.bias", (192,)), ("attn.qkv.weight", (576, 192)),
            ("attn.qkv.bias", (576,)), ("attn.proj.weight", (192, 192)), ("attn.proj.bias", (192,)),
            ("norm2.weight", (192,)), ("norm2.bias", (192,)), ("mlp.fc1.weight", (768, 192)),
            ("mlp.fc1.bias", (768,)), ("mlp.fc2.weight", (192, 768)), ("mlp.fc2.bias", (192,))]
    assert keys(model) == [(f"blocks.0.{k}", s) for k, s in want]


def test_index_and_mask_are_non_persistent_buffers():
    """As in timm ≥ 1.0: computed from the shapes, kept out of the state_dict."""
    model = build("SwinBlock", (1, 14, 14, 48), num_heads=3, shift=3)
    buffers = dict(model.named_buffers())
    index = next(v for k, v in buffers.items() if k.endswith("relative_position_index"))
    mask = next(v for k, v in buffers.items() if k.endswith("attn_mask"))
    assert index.dtype == torch.int64 and torch.equal(index, swin_index(7, 7))
    assert mask.shape == (4, 1, 49, 49)
    assert not [k for k in model.state_dict() if "index" in k or "mask" in k]
    assert archdsl.check_spec(source=_source("SwinBlock"), variant="SwinBlock",
                              input_shape=(1, 14, 14, 48), num_heads=3, shift=3).totals.buffers == 0


# ---------------------------------------------------------------------------------------------
# runtime behaviour

def test_swin_block_runs_at_another_batch_size():
    """The forward never bakes in the batch it was built for (reshapes use -1, the mask tiles)."""
    ours = randomize_(build("SwinBlock", (2, 10, 13, 48), num_heads=3, window=4, shift=2))
    ref = RefSwinBlock(48, 3, (10, 13), 4, 2)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(3, 10, 13, 48)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref.eval()(x), atol=1e-4)


def test_attention_dropout_only_in_training():
    model = randomize_(build("Attention", (2, 9, 16), num_heads=2, attn_drop=0.5))
    x = torch.randn(2, 9, 16)
    ref = RefAttention(16, 2)
    ref.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(model(x), ref.eval()(x), atol=1e-5)
        model.train()
        torch.manual_seed(0)
        assert not torch.allclose(model(x), ref(x), atol=1e-3)


def test_sdpa_causal_and_mask_match_explicit_softmax():
    src = """
block Causal() {
  in q: [B, H, L, D]
  in k: [B, H, S, D]
  in v: [B, H, S, E]
  out sdpa(q, k, v, causal=true, scale=0.3)
}
block Masked() {
  in q: [B, H, L, D]
  in k: [B, H, S, D]
  in v: [B, H, S, E]
  in m: [L, S]
  out sdpa(q, k, v, m)
}
"""
    gen = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 4, generator=gen), torch.randn(2, 3, 6, 4, generator=gen), \
        torch.randn(2, 3, 6, 7, generator=gen)
    m = torch.randn(5, 6, generator=gen)
    causal = archdsl.load_spec(source=src, variant="Causal",
                               input_shape=[q.shape, k.shape, v.shape])
    scores = q @ k.transpose(-2, -1) * 0.3
    scores = scores.masked_fill(torch.ones(5, 6, dtype=torch.bool).triu(1), float("-inf"))
    assert torch.allclose(causal(q, k, v), scores.softmax(-1) @ v, atol=1e-5)
    masked = archdsl.load_spec(source=src, variant="Masked",
                               input_shape=[q.shape, k.shape, v.shape, m.shape])
    assert torch.allclose(masked(q, k, v, m), attend(q, k, v, m), atol=1e-5)
    report = archdsl.check_spec(source=src, variant="Masked",
                                input_shape=[q.shape, k.shape, v.shape, m.shape])
    counted = count_flops(lambda x: masked(*x), (q, k, v, m))
    assert report.totals.flops == 2 * 2 * 3 * 5 * 6 * (4 + 7) == counted


def test_shifted_swin_block_compiles_without_graph_breaks():
    model = randomize_(build("SwinBlock", (1, 10, 13, 16), num_heads=2, window=4, shift=2))
    x = torch.randn(1, 10, 13, 16)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_shifted_swin_block_trains_like_the_explicit_form():
    """With gradients on the CPU the learned bias plus shift mask is applied explicitly
    (archdsl/nn/attention.py); the output and every gradient equal the hand-written block's."""
    ours = randomize_(build("SwinBlock", (2, 10, 13, 48), num_heads=3, window=4, shift=2))
    ref = RefSwinBlock(48, 3, (10, 13), 4, 2)
    ref.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 10, 13, 48, generator=torch.Generator().manual_seed(1))
    outs = [m(x) for m in (ours, ref)]
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for out in outs:
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
    grads = [dict((k, p.grad) for k, p in m.named_parameters()) for m in (ours, ref)]
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-4), k


def test_masked_sdpa_is_sdpa_without_gradients_and_the_explicit_form_with_them():
    from archdsl.nn.attention import masked_sdpa
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=gen) for _ in range(3))
    bias = torch.randn(3, 5, 5, generator=gen).requires_grad_()
    with torch.no_grad():
        assert torch.equal(masked_sdpa(q, k, v, bias, 0.7),
                           F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=0.7))
    got = masked_sdpa(q, k, v, bias, 0.7)
    assert got.grad_fn is not None and torch.allclose(got, attend(q * 0.7 / 0.5, k, v, bias), atol=1e-5)
