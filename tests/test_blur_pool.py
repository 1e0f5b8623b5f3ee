"""blur_pool (archdsl/ops/pool.py) against an independent port of timm 1.0.31's BlurPool2d
(timm/layers/blur_pool.py): pad each side by ((stride - 1) + (kernel - 1)) // 2 in `pad_mode`,
then a depthwise conv with the outer product of the binomial row C(n, k) / 2^n, n = kernel - 1.
The 3-tap reflect form runs in the resnetblur output sample (tests/test_families.py); this
covers the other sizes and the zero padding of timm's "blurpc" (efficientnet_blur_b0)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import archdsl

SPEC = """
network Blur(kernel: int, stride: int, pad_mode: str) {
  in x: [B, C, H, W]
  out x -> blur_pool(kernel, stride, pad_mode=pad_mode)
}
"""


def _timm_blur(x: torch.Tensor, kernel: int, stride: int, pad_mode: str) -> torch.Tensor:
    row = np.poly1d([0.5, 0.5]) ** (kernel - 1)      # (0.5 + 0.5 z)^n: the binomial row / 2^n
    filt = torch.tensor(np.outer(row.coeffs, row.coeffs), dtype=x.dtype)
    pad = ((stride - 1) + (kernel - 1)) // 2
    c = x.shape[1]
    x = F.pad(x, [pad] * 4, mode=pad_mode)
    return F.conv2d(x, filt.expand(c, 1, kernel, kernel), stride=stride, groups=c)


@pytest.mark.parametrize("kernel,stride,pad_mode", [(3, 2, "reflect"), (5, 2, "reflect"),
                                                    (4, 2, "reflect"), (2, 1, "reflect"),
                                                    (3, 2, "constant"), (5, 3, "constant")])
def test_blur_pool_equals_timms_blurpool2d(kernel, stride, pad_mode):
    net = archdsl.load_spec(source=SPEC, input_shape=(2, 5, 11, 9), kernel=kernel, stride=stride,
                            pad_mode=pad_mode).eval()
    x = torch.randn(2, 5, 11, 9, generator=torch.Generator().manual_seed(0))
    want = _timm_blur(x, kernel, stride, pad_mode)
    got = net(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert net.state_dict() == {}                    # the filter is not a weight


def test_blur_pool_3x3_is_the_1_2_1_filter():
    # an impulse away from the border comes back as [1, 2, 1] ⊗ [1, 2, 1] / 16 (stride 1)
    net = archdsl.load_spec(source=SPEC, input_shape=(1, 1, 7, 7), kernel=3, stride=1,
                            pad_mode="constant").eval()
    x = torch.zeros(1, 1, 7, 7)
    x[0, 0, 3, 3] = 16.0
    want = torch.zeros(7, 7)
    want[2:5, 2:5] = torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]])
    torch.testing.assert_close(net(x)[0, 0], want)
