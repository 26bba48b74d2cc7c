"""The global check of each smearing along its σ² profile (``zcalib.fit.profile``).

One sparse region (a few hundred to a few thousand pairs, MC = 2 × data): the template's
fine-bin noise makes the objective depend on the kernel width rather than its square below
a data bin, so it can hold a narrow well at σ ≈ 0 next to the minimum at the truth.
"""

from __future__ import annotations

import pytest

from zcalib.categories import Category, CategoryScheme, build_scheme
from zcalib.fit import FitConfig, fit_histograms, synthetic_histograms
from zcalib.fit import fitter as fitter_module
from zcalib.histograms import HistogramSet

SPARSE = {"min_data": 50.0, "min_mc": 50.0}


@pytest.fixture(scope="module")
def one_cell() -> CategoryScheme:
    eta = (0.0, 1.4442)
    return build_scheme([Category("scale", 0, eta=eta)], [Category("smear", 0, eta=eta)])


def _sample(scheme: CategoryScheme, n_data: int, smear: float, seed: int) -> HistogramSet:
    return synthetic_histograms(
        scheme, n_data=n_data, n_mc=2 * n_data, scales=[1.0], smears=[smear], seed=seed
    )


@pytest.fixture(scope="module")
def two_minima(one_cell: CategoryScheme) -> HistogramSet:
    # started at σ = 0 the minimiser stays in the well (NLL 40.1 at σ = 0 against 23.7 at
    # σ = 0.0121 before the check existed, "converged")
    return _sample(one_cell, 10_000, 0.012, seed=11)


def test_restart_leaves_the_well_at_zero_for_the_minimum_at_the_truth(
    two_minima: HistogramSet,
) -> None:
    cfg = FitConfig(start="specify", start_smears=[0.0], **SPARSE)
    res = fit_histograms(two_minima, cfg)
    assert res.status == "converged", res.message
    sm = res.smears[0]
    assert sm.value > 0.008
    assert abs(sm.value**2 - 0.012**2) < 3.0 * sm.sq_error
    # the scan start lands in the same minimum
    scan = fit_histograms(two_minima, FitConfig(**SPARSE))
    assert scan.smears[0].value == pytest.approx(sm.value, abs=0.1 * sm.sq_error / sm.value)
    assert res.nll == pytest.approx(scan.nll, abs=1e-3)


def test_a_lower_minimum_not_reached_fails_the_fit(
    two_minima: HistogramSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fitter_module, "_MAX_RESTARTS", 0)
    cfg = FitConfig(start="specify", start_smears=[0.0], **SPARSE)
    res = fit_histograms(two_minima, cfg)
    assert res.status == "failed"
    assert "a lower minimum exists: the likelihood at smear[0] = " in res.message
    assert "below the minimum and the minimiser did not reach it in 0 restarts" in res.message


def test_minimum_in_the_well_gets_the_error_of_its_profile(one_cell: CategoryScheme) -> None:
    # 1000 generated pairs (≈ 500 in the region), truth σ = 0.01: the minimum is at
    # σ = 0.0015 in the well; its Hessian error of σ² was 1.9e-5 (pull −5.1, "converged")
    res = fit_histograms(_sample(one_cell, 1000, 0.01, seed=28), FitConfig(**SPARSE))
    assert res.status == "converged", res.message
    sm = res.smears[0]
    assert sm.value < 0.003
    assert sm.sq_error > 1e-4  # the profile stays within 2 of its minimum up to σ ≈ 0.014
    assert abs(sm.value**2 - 0.01**2) / sm.sq_error < 2.0
