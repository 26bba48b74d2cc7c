"""Systematic variations are fitted on the nominal fit's pair regions (regression: pile-up
up and down were fitted on different region sets, the thresholds being applied to each
variation's own MC)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import CONFIGS, ROOT
from zcalib.categories import load_categories
from zcalib.exceptions import FitError
from zcalib.fit import FitConfig, fit_histograms
from zcalib.fit.fitter import histogram_arrays
from zcalib.fit.problem import window_bins


@pytest.fixture(scope="module")
def pileup_hists(demo_ecalelf):
    from zcalib.config import dataset_config_from_files
    from zcalib.runner import RunOptions, build_histograms, load_weight

    scheme = load_categories(CONFIGS / "cats_eta_r9.tsv")
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    weight = load_weight("pileup", ROOT / "corrections" / "pileup_demo.json")
    hset = build_histograms(
        cfg,
        scheme,
        weights=(weight,),
        options=RunOptions(executor="iterative", progress=False),
    )
    return hset, scheme


def _neff(hset, variation, config):
    """MC effective entries per region code inside the fit window."""
    codes, _, w, w2, edges = histogram_arrays(hset, "nominal", variation)
    j_lo, n, rebin, _ = window_bins(edges, config.window, config.bin_width, config.rebin)
    sw = w[:, j_lo : j_lo + n * rebin].sum(axis=1)
    sw2 = w2[:, j_lo : j_lo + n * rebin].sum(axis=1)
    return dict(zip(codes.tolist(), (sw * sw / sw2).tolist(), strict=True))


def test_pileup_up_and_down_are_fitted_on_the_nominal_regions(pileup_hists):
    hset, scheme = pileup_hists
    base = FitConfig(min_data=20)
    up, down = _neff(hset, "pileup_up", base), _neff(hset, "pileup_down", base)
    nom = _neff(hset, "nominal", base)
    # a min_mc threshold between a region's up and down effective entries (and not above its
    # nominal ones): applied to each variation's own MC it would give two region sets

    def gap(c):
        return min(max(up[c], down[c]), nom[c]) - min(up[c], down[c])

    # the lowest such threshold (most regions kept) with a clear gap
    code = min((c for c in up if gap(c) > 0.01 * nom[c]), key=lambda c: min(up[c], down[c]))
    lo = min(up[code], down[code])
    config = base.with_overrides(min_mc=lo + 0.5 * gap(code))
    own = {
        v: {c for c, n in e.items() if n >= config.min_mc}
        for v, e in (("pileup_up", up), ("pileup_down", down))
    }
    assert own["pileup_up"] != own["pileup_down"]  # the bug this guards against

    nominal = fit_histograms(hset, config, scheme=scheme).raise_if_failed()
    used = [r.code for r in nominal.regions_used]
    assert code in used
    fits = {
        v: fit_histograms(hset, config, scheme=scheme, mc_variation=v).raise_if_failed()
        for v in ("pileup_up", "pileup_down")
    }
    for v, res in fits.items():
        assert [r.code for r in res.regions_used] == used, v
    # the variations move the values by a small amount, both ways around nominal on average
    shift = {v: fits[v].scale_values() - nominal.scale_values() for v in fits}
    assert np.max(np.abs(shift["pileup_up"])) < 2e-3
    assert np.max(np.abs(shift["pileup_down"])) < 2e-3


def test_an_explicit_region_set_must_be_in_the_histograms(pileup_hists):
    hset, scheme = pileup_hists
    with pytest.raises(FitError, match=r"^pair regions \[999999\] of the nominal fit are not in"):
        fit_histograms(hset, FitConfig(), scheme=scheme, regions=[0, 999_999])
