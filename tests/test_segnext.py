"""SegNeXt (stdlib/nets/segnext.arch): the NMF "ham" against an independent re-derivation of
mmseg's NMF2D, its factorisation behaviour, the MSCAN initialisation, and SegNeXt-T forward and
backward."""
from __future__ import annotations

import math

import pytest
import torch

import archdsl
from archdsl.nn.ham import NMF2D


def _nmf_by_hand(x: torch.Tensor, S: int, R: int, steps: int, inv_t: float, bases: torch.Tensor) -> torch.Tensor:
    """mmseg's _MatrixDecomposition2DBase.forward + NMF2D, written out with einsum, from the
    given initial bases [B·S, D, R]."""
    b, c, h, w = x.shape
    d, n = c // S, h * w
    X = x.reshape(b * S, d, n).double()
    bases = bases.double()
    bases = bases / bases.norm(dim=1, keepdim=True).clamp_min(1e-12)
    coef = torch.softmax(inv_t * torch.einsum("bdn,bdr->bnr", X, bases), dim=-1)

    def coef_step(bases, coef):
        return coef * torch.einsum("bdn,bdr->bnr", X, bases) / (
            torch.einsum("bnr,bds,bdr->bns", coef, bases, bases) + 1e-6)

    for _ in range(steps):
        coef = coef_step(bases, coef)
        bases = bases * torch.einsum("bdn,bnr->bdr", X, coef) / (
            torch.einsum("bdr,bns,bnr->bds", bases, coef, coef) + 1e-6)
    coef = coef_step(bases, coef)
    return torch.einsum("bdr,bnr->bdn", bases, coef).reshape(b, c, h, w).float()


@pytest.mark.parametrize("S, training", [(1, False), (2, True)])
def test_nmf_matches_mmseg_formulas(S, training):
    x = torch.rand(2, 8, 5, 6)
    module = NMF2D(S=S, R=3, train_steps=4, eval_steps=6).train(training)
    torch.manual_seed(7)
    ours = module(x)
    if training:  # fresh uniform bases, as mmseg's rand_init
        torch.manual_seed(7)
        bases = torch.rand(2 * S, 8 // S, 3)
    else:         # the fixed eval draw: deterministic
        bases = NMF2D.fixed_bases(8 // S, 3).expand(2 * S, 8 // S, 3)
        assert 0 <= bases.min() and bases.max() < 1 and bases.std() > 0.2
        torch.testing.assert_close(module(x), ours, rtol=0, atol=0)
    expected = _nmf_by_hand(x, S, 3, 4 if training else 6, 1.0, bases)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_nmf_recovers_a_low_rank_non_negative_map():
    g = torch.Generator().manual_seed(0)
    w, hmat = torch.rand(1, 16, 4, generator=g), torch.rand(1, 4, 64, generator=g)
    x = torch.bmm(w, hmat).reshape(1, 16, 8, 8)
    errors = []
    for steps in (0, 5, 50):
        torch.manual_seed(1)
        y = NMF2D(R=4, train_steps=steps).train()(x)
        errors.append(((y - x).norm() / x.norm()).item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05


def test_nmf_gradient_flows_through_every_update():
    """As SegNeXt's release (and mmseg): autograd through all multiplicative updates, so the
    gradient changes with the number of steps."""
    grads = []
    for steps in (0, 3):
        x = torch.rand(1, 4, 3, 3, requires_grad=True)
        torch.manual_seed(0)
        with torch.no_grad():
            x.copy_(torch.rand(1, 4, 3, 3))
        torch.manual_seed(1)
        NMF2D(R=2, train_steps=steps).train()(x).pow(2).sum().backward()
        grads.append(x.grad.clone())
    assert all(g.abs().sum() > 0 for g in grads)
    assert not torch.allclose(grads[0], grads[1])


@pytest.fixture(scope="module")
def tiny():
    return archdsl.load_spec("segnext_tiny", input_shape=[2, 3, 32, 32], seed=0)


def test_mscan_initialisation(tiny):
    model = tiny
    blk = "backbone.block3.0"
    assert model.get_parameter(f"{blk}.layer_scale_1").unique().tolist() == [pytest.approx(0.01)]
    sgu = model.get_submodule(f"{blk}.attn.spatial_gating_unit")
    # mmseg: normal(0, sqrt(2 / fan_out)) with fan_out = k_h · k_w · out / groups
    assert sgu.conv2_1.weight.std().item() == pytest.approx(math.sqrt(2 / 21), rel=0.05)
    assert sgu.conv0.weight.std().item() == pytest.approx(math.sqrt(2 / 25), rel=0.05)
    assert sgu.conv3.weight.std().item() == pytest.approx(math.sqrt(2 / 160), rel=0.05)
    assert sgu.conv3.bias.abs().max().item() == 0
    head = model.get_submodule("decode_head.conv_seg")
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.05)


def test_segnext_tiny_trains(tiny):
    """(tests/test_catalog.py compiles SegNeXt-T with fullgraph=True at its default size.)"""
    torch.manual_seed(0)
    model = tiny.train()
    y = model(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 150, 4, 4)
    y.sum().backward()
    assert model.get_parameter("backbone.block1.0.layer_scale_1").grad.abs().sum() > 0
    assert model.get_parameter("decode_head.hamburger.ham_in.conv.weight").grad.abs().sum() > 0
