"""Validation plots with signed-η categories (EE− and EE+ apart): plot categories cut on
``sceta``, the histogram cells of a signed-η scheme are boxes in signed η."""

from __future__ import annotations

import numpy as np
import pytest

from zcalib.categories import scheme_from_dict
from zcalib.exceptions import InvalidConfig
from zcalib.generate import default_categories
from zcalib.validation.plotcats import LeptonCuts, PlotCategory, plot_categories_from_dict
from zcalib.validation.plots import expressible_regions

EE_MINUS, EB, EE_PLUS = (-2.5, -1.566), (-1.4442, 1.4442), (1.566, 2.5)


def _signed_scheme():
    cats = [{"sceta": list(b)} for b in (EE_MINUS, EB, EE_PLUS)]
    return scheme_from_dict({"scale": cats, "smear": cats})


def _both(cuts: LeptonCuts, name: str = "p") -> PlotCategory:
    return PlotCategory("paper", name, "mass", cuts, cuts)


def test_signed_plot_categories_on_a_signed_scheme():
    """EE−EE− selects the one region of the EE− cell; a cut ending in the crack contains the
    cell; a cut splitting EB is not expressible; |η| cuts select both sides."""
    scheme = _signed_scheme()
    n = scheme.n_cells
    assert n == 3
    regions = [i * n + j for i in range(n) for j in range(i, n)]
    ee_minus = _both(LeptonCuts(sceta=EE_MINUS))
    assert expressible_regions(ee_minus, scheme, regions) == [0]
    assert expressible_regions(_both(LeptonCuts(sceta=(-3.0, -1.5))), scheme, regions) == [0]
    assert expressible_regions(_both(LeptonCuts(sceta=(0.0, 3.0))), scheme, regions) is None
    ee = _both(LeptonCuts(eta=(1.566, 2.5)))
    assert expressible_regions(ee, scheme, regions) == [0, 2, 8]
    plus_minus = PlotCategory("paper", "pm", "mass", LeptonCuts(sceta=EE_PLUS),
                              LeptonCuts(sceta=EE_MINUS))  # fmt: skip
    assert expressible_regions(plus_minus, scheme, regions) is None  # Et order splits (0, 2)
    assert ee_minus.title() == "both electrons η -2.5–-1.566"


def test_signed_cut_splits_an_abs_eta_cell():
    """On an |η| scheme a cell holds both sides: a signed cut splits it (not expressible from
    the histograms), a cut covering both sides does not."""
    scheme = default_categories()
    n = scheme.n_cells
    regions = [i * n + j for i in range(n) for j in range(i, n)]
    assert expressible_regions(_both(LeptonCuts(sceta=EE_MINUS)), scheme, regions) is None
    every = expressible_regions(_both(LeptonCuts(sceta=(-2.5, 2.5))), scheme, regions)
    assert every == regions


def test_sceta_cut_masks_and_yaml():
    """YAML ``sceta`` (-1 is a value, not 'open'); the mask needs the signed η."""
    (cat,) = plot_categories_from_dict(
        {"plots": [{"name": "m", "lead": {"sceta": [-1, 1]}, "sublead": {"eta": [0, 1]}}]}
    )
    assert cat.lead.sceta == (-1.0, 1.0)
    assert cat.lead.describe() == "η -1–1"
    eta = np.array([-1.2, -0.5, 0.5, 1.2])
    mask = cat.lead.mask(np.abs(eta), np.ones(4), np.full(4, 40.0), eta)
    assert mask.tolist() == [False, True, True, False]
    with pytest.raises(ValueError, match="needs the signed eta_SC"):
        cat.lead.mask(np.abs(eta), np.ones(4), np.full(4, 40.0))
    with pytest.raises(InvalidConfig) as err:
        plot_categories_from_dict({"plots": [{"name": "m", "lead": {"sceta": [1, -1]}}]})
    assert "lead sceta range (1,-1) is empty or inverted" in str(err.value)
