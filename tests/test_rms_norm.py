"""The RMS norms of archdsl/ops/norm.py against formulas written independently of them:
rms_norm against torch's F.rms_norm, simple_norm against timm's simple_norm
(timm/layers/fast_norm.py: x · rsqrt(var(x) + eps) · weight, var unbiased), and the 2-d forms
against those applied to channels-last data. (ConvNeXt's *_rms models compare the 2-d forms
with timm's in tests/test_families.py.)"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import archdsl

SPEC = """
network Norm2d(kind: "rms" | "simple" = "rms") {
  in x: [B = 2, C = 6, H = 3, W = 5]
  out x -> n: (kind == "rms" ? rms_norm2d : simple_norm2d)(1e-3)
}
network Norm(kind: "rms" | "simple" = "rms") {
  in x: [B = 2, L = 3, C = 6]
  out x -> n: (kind == "rms" ? rms_norm : simple_norm)(1e-3)
}
"""


def _run(net: str, kind: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = archdsl.load_spec(source=SPEC, variant=net, kind=kind).eval()
    w = torch.linspace(0.5, 1.5, 6)
    with torch.no_grad():
        m.get_submodule("n").weight.copy_(w)
        return m(x), w


def _simple(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(torch.var(x, dim=-1, keepdim=True) + eps) * w


@pytest.mark.parametrize("kind", ["rms", "simple"])
def test_last_dim_norms_equal_their_formulas(kind):
    x = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0)) + 0.5
    y, w = _run("Norm", kind, x)
    want = F.rms_norm(x, (6,), w, 1e-3) if kind == "rms" else _simple(x, w, 1e-3)
    torch.testing.assert_close(y, want)


@pytest.mark.parametrize("kind", ["rms", "simple"])
def test_2d_norms_normalise_the_channels(kind):
    x = torch.randn(2, 6, 3, 5, generator=torch.Generator().manual_seed(1)) + 0.5
    y, w = _run("Norm2d", kind, x)
    cl = x.permute(0, 2, 3, 1)
    want = F.rms_norm(cl, (6,), w, 1e-3) if kind == "rms" else _simple(cl, w, 1e-3)
    torch.testing.assert_close(y, want.permute(0, 3, 1, 2))


def test_simple_norm_refuses_one_value_along_its_dim():
    with pytest.raises(archdsl.ArchError, match="at least 2 values"):
        archdsl.check_spec(source=SPEC.replace("C = 6", "C = 1"), variant="Norm", kind="simple")
