"""Fit set-up: parameter mapping, exact gradient/Hessian, region selection and errors."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from zcalib.exceptions import FitError, InvalidConfig
from zcalib.fit import FitConfig, build_problem, fit_arrays, fit_histograms
from zcalib.fit.problem import window_bins

from .conftest import TRUTH_SCALES, TRUTH_SMEARS


def _problem(arrays: dict[str, Any], **cfg: Any) -> Any:
    return build_problem(**arrays, config=FitConfig(**cfg))


def test_gradient_matches_finite_differences(arrays: dict[str, Any]) -> None:
    prob = _problem(arrays)
    theta = prob.theta_from_values(TRUTH_SCALES * 1.0007, TRUTH_SMEARS * 0.93)
    _, grad = prob.nll_grad(theta)
    steps = np.where(np.arange(prob.n_params) < 8, 1e-6, 1e-8)
    fd = np.empty_like(grad)
    for i, eps in enumerate(steps):
        e = np.zeros_like(theta)
        e[i] = eps
        fd[i] = (prob.nll(theta + e) - prob.nll(theta - e)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


def test_hessian_matches_finite_differences_of_the_gradient(arrays: dict[str, Any]) -> None:
    prob = _problem(arrays)
    theta = prob.theta_from_values(TRUTH_SCALES, TRUTH_SMEARS)
    _, _, hess = prob.hessian(theta)
    steps = np.where(np.arange(prob.n_params) < 8, 1e-6, 1e-8)
    fd = np.empty_like(hess)
    for i, eps in enumerate(steps):
        e = np.zeros_like(theta)
        e[i] = eps
        fd[:, i] = (prob.nll_grad(theta + e)[1] - prob.nll_grad(theta - e)[1]) / (2 * eps)
    np.testing.assert_allclose(hess, fd, rtol=1e-5, atol=1e-6 * np.abs(hess).max())


def test_parameter_mapping_round_trip(arrays: dict[str, Any]) -> None:
    prob = _problem(arrays)
    theta = prob.theta_from_values(TRUTH_SCALES, TRUTH_SMEARS)
    sc, sm = prob.values_from_theta(theta)
    np.testing.assert_allclose(sc, TRUTH_SCALES, rtol=1e-15)
    np.testing.assert_allclose(sm, TRUTH_SMEARS, rtol=1e-15)
    mu, s2 = prob.region_params(theta)
    # a diagonal region (cells 0, 0): mu = log r_0 - s2, s2 = smear_0^2 / 2
    r = int(np.flatnonzero(prob.codes == 0)[0])
    assert s2[r] == pytest.approx(TRUTH_SMEARS[0] ** 2 / 2)
    assert mu[r] == pytest.approx(-np.log(TRUTH_SCALES[0]) - s2[r])


def test_window_snaps_to_fine_edges() -> None:
    edges = np.geomspace(60.0, 120.0, 1201)
    j_lo, n_coarse, rebin, h = window_bins(edges, (80.0, 100.0), 0.25, None)
    assert rebin == 5
    assert edges[j_lo] == pytest.approx(80.0, abs=0.03)
    assert edges[j_lo + n_coarse * rebin] <= 100.0 + 0.03
    assert window_bins(edges, (80.0, 100.0), 0.25, 1)[1:3] == (386, 1)
    assert h == pytest.approx(np.log(2) / 1200)


def test_non_log_uniform_axis_is_rejected() -> None:
    with pytest.raises(FitError, match="not uniform in log"):
        window_bins(np.linspace(60.0, 120.0, 1201), (80.0, 100.0), 0.25, None)


def test_thresholds_drop_regions_and_list_them(
    arrays: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    n_data = arrays["data"][:, 498:884].sum(axis=1)
    cut = float(np.sort(n_data)[3]) + 0.5  # drops the 4 smallest regions
    prob = _problem(arrays, min_data=cut)
    dropped = [r for r in prob.regions if not r.used]
    assert len(dropped) == 4
    assert all("min_data" in r.reason for r in dropped)
    assert "4 of 36 pair regions excluded" in caplog.text


def test_empty_region_set(arrays: dict[str, Any]) -> None:
    msg = (
        "no pair region is usable: all 36 regions were excluded (window [80, 100] GeV, "
        "min_data=1e+09, min_mc=200, ignored scale [], smear [])"
    )
    with pytest.raises(FitError, match=re.escape(msg)):
        _problem(arrays, min_data=1e9)


def test_category_without_regions_is_named(arrays: dict[str, Any]) -> None:
    keep = arrays["regions"] // 8 != 3  # remove every region whose first cell is 3
    keep &= arrays["regions"] % 8 != 3
    sub = {**arrays, **{k: arrays[k][keep] for k in ("data", "mc_w", "mc_w2", "regions")}}
    msg = (
        "scale categories [3] have no usable pair region (all their regions were dropped or "
        "absent); lower min_data/min_mc, widen the window, or hold them fixed: --ignore "
        'scale[3] (CLI), ignore_scales: ["scale[3]"] (FitConfig; a pipeline step\'s fit options)'
    )
    with pytest.raises(FitError, match=re.escape(msg)):
        build_problem(**sub, config=FitConfig())
    # holding it (and its smear category) ignored makes the set-up valid
    prob = build_problem(**sub, config=FitConfig(ignore_scales=(3,), ignore_smears=(3,)))
    assert 3 not in prob.free_scale


def test_non_finite_input(arrays: dict[str, Any]) -> None:
    data = arrays["data"].copy()
    data[2, 600] = np.nan
    msg = "'data' holds 1 non-finite value(s); first in region 2 mass bin 600: nan"
    with pytest.raises(FitError, match=re.escape(msg)):
        build_problem(**{**arrays, "data": data}, config=FitConfig())
    mc = arrays["mc_w"].copy()
    mc[0, 10] = np.inf
    msg = "'mc_w' holds 1 non-finite value(s); first in region 0 mass bin 10: inf"
    with pytest.raises(FitError, match=re.escape(msg)):
        build_problem(**{**arrays, "mc_w": mc}, config=FitConfig())


def test_negative_data_and_bad_shapes(arrays: dict[str, Any]) -> None:
    data = arrays["data"].copy()
    data[1, 5] = -1.0
    with pytest.raises(FitError, match=re.escape("first in region 1 mass bin 5: -1.0")):
        build_problem(**{**arrays, "data": data}, config=FitConfig())
    n = arrays["mc_w"].shape[1]
    with pytest.raises(FitError, match=re.escape(f"'mc_w' has shape (36, {n - 1})")):
        build_problem(**{**arrays, "mc_w": arrays["mc_w"][:, 1:]}, config=FitConfig())


def test_region_codes_from_another_scheme(arrays: dict[str, Any]) -> None:
    with pytest.raises(FitError, match=r"region codes \[.*\] are not valid \(i <= j\) cell pairs"):
        build_problem(
            **{**arrays, "cell_scale": np.arange(4), "cell_smear": np.arange(4)},
            config=FitConfig(),
        )


def test_mismatched_categories_file(hset: Any) -> None:
    from zcalib.categories import Category, build_scheme, load_categories

    from .conftest import ROOT

    # the equivalent YAML file is accepted
    same = load_categories(ROOT / "configs" / "cats_eta_r9.yaml")
    assert fit_histograms(hset, scheme=same).status == "converged"

    other = build_scheme(
        [Category("scale", 0, eta=(0.0, 1.4442)), Category("scale", 1, eta=(1.566, 2.5))],
        [],
        source="other.yaml",
    )
    msg = (
        "categories 'other.yaml' define 2 scale x 1 smear categories = 2 cells, but the "
        "histograms were filled with"
    )
    with pytest.raises(FitError, match=re.escape(msg)):
        fit_histograms(hset, scheme=other)


def test_config_lengths_are_checked(arrays: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfig, match="'fixed_scales' has 3 values but the category"):
        _problem(arrays, fix_scales=True, fixed_scales=(1.0, 1.0, 1.0))
    with pytest.raises(InvalidConfig, match=r"'ignore_smears' lists \[9\]"):
        _problem(arrays, ignore_smears=(9,))


def test_non_finite_nll_names_the_parameters(arrays: dict[str, Any]) -> None:
    prob = _problem(arrays)
    theta = prob.theta_from_values(TRUTH_SCALES, TRUTH_SMEARS)
    theta[0] = np.nan
    with pytest.raises(FitError, match=r"non-finite NLL \(nan\) at scales \[\s*nan"):
        prob.nll(theta)


def test_missing_variation_or_data(hset: Any) -> None:
    from zcalib.histograms import HistogramSet

    with pytest.raises(FitError, match=r"variation 'up' not in the histograms; available"):
        fit_histograms(hset, mc_variation="up")
    mc_only = HistogramSet(hist=hset.hist, categories=hset.categories, kinds={"mc": "mc"})
    with pytest.raises(FitError, match="histograms contain no dataset of kind 'data'"):
        fit_histograms(mc_only)


def _one_region_arrays() -> dict[str, Any]:
    """A single-cell problem whose data are the MC template shifted by 3 fine bins."""
    edges = np.geomspace(60.0, 120.0, 1201)
    u = np.log(edges[:-1]) + 0.5 * np.log(2) / 1200
    m = np.exp(u)
    t = 1e5 / (1.0 + ((m - 91.19) / 1.25) ** 2) + 10.0
    data = np.zeros_like(t)
    data[3:] = t[:-3]
    return {
        "data": data[None, :],
        "mc_w": t[None, :],
        "mc_w2": t[None, :],
        "regions": np.array([0]),
        "mass_edges": edges,
        "cell_scale": np.array([0]),
        "cell_smear": np.array([0]),
    }


def test_exact_shift_is_recovered_without_smearing() -> None:
    """s = 0 (bare histogram, no template smoothing): data equal to the template shifted by
    3 bins give scale = exp(-3h) exactly."""
    res = fit_arrays(
        **_one_region_arrays(),
        config=FitConfig(
            fix_smears=True,
            mc_stat="none",
            mc_stat_likelihood="none",
            rebin=1,
            template_smoothing=0,
        ),
    )
    assert res.status == "converged"
    assert res.scales[0].value == pytest.approx(np.exp(-3 * np.log(2) / 1200), rel=1e-9)
    assert res.smears[0].state == "fixed"
    assert res.nll == pytest.approx(0.0, abs=1e-6)
