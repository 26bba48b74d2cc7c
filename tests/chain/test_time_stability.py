"""Time stability: medians, the drift removal on an independent sample, the written step."""

from __future__ import annotations

import numpy as np
import pytest

from zcalib.chain._events import ChainLoop
from zcalib.chain.run_divide import run_divide
from zcalib.chain.time_stability import (
    fill_peaks,
    flatness_chi2,
    histogram_median,
    step_of,
    time_stability,
)
from zcalib.config import dataset_config_from_files
from zcalib.runner import RunOptions

OPTS = RunOptions(executor="iterative", progress=False, chunksize=200_000)


def test_histogram_median_and_error_match_toys():
    rng = np.random.default_rng(1)
    edges = np.linspace(60, 120, 1201)
    meds, errs = [], []
    for _ in range(200):
        x = rng.normal(91.0, 2.5, 2000)
        h, _ = np.histogram(x, edges)
        m, e, n = histogram_median(h.astype(float), h.astype(float), edges, (80, 100))
        meds.append(m)
        errs.append(e)
    assert np.mean(meds) == pytest.approx(91.0, abs=0.02)
    # the quoted error matches the spread of the toys within 15 %
    assert np.std(meds) == pytest.approx(np.mean(errs), rel=0.15)
    assert n == pytest.approx(np.sum((x > 80) & (x < 100)), abs=30)


def test_flatness_chi2():
    peaks = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 2.0]])
    errs = np.ones_like(peaks)
    chi = flatness_chi2(peaks, errs)
    assert chi["chi2"] == [0.0, pytest.approx(8 / 3)]
    assert chi["ndf"] == [2, 2]


@pytest.fixture(scope="module")
def derived(drift_sample, tmp_path_factory):
    cfg = dataset_config_from_files(data=[str(drift_sample.data)], mc=[str(drift_sample.mc)])
    loop = ChainLoop(cfg, options=OPTS)
    out = tmp_path_factory.mktemp("ts")
    bins = run_divide(loop, min_events=5_000, out=out / "run_bins.yaml")
    res, paths = time_stability(loop, bins, out, name="ts_scale")
    return bins, res, paths


def test_time_stability_removes_the_drift_on_independent_data(derived, drift_sample_b):
    """Scales derived on sample A applied to sample B (same drift, other events): the
    per-run-bin medians of B become flat: chi2/ndf consistent with 1 when the error is B's
    median error plus the derivation's data median error; before the correction chi2/ndf >> 1."""
    bins, res, paths = derived
    cfg_b = dataset_config_from_files(data=[str(drift_sample_b.data)])
    loop_b = ChainLoop(cfg_b, options=OPTS)
    eta_bins = res.eta_bins
    before = fill_peaks(loop_b, bins, eta_bins, res.window, with_mc=False)
    after = fill_peaks(
        loop_b.with_corrections((step_of(res, paths["corrections"]),)),
        bins,
        eta_bins,
        res.window,
        with_mc=False,
    )
    # derivation error of each bin: its data median error (the MC median error is common
    # to all run bins and does not affect the flatness)
    deriv_err = after.data * res.before.data_err / res.before.data
    chi_before = flatness_chi2(before.data, before.data_err)
    chi_after = flatness_chi2(after.data, np.hypot(after.data_err, deriv_err))
    ratio_b = chi_before["total_chi2"] / chi_before["total_ndf"]
    ratio_a = chi_after["total_chi2"] / chi_after["total_ndf"]
    print(
        f"\nindependent sample: chi2/ndf before {chi_before['total_chi2']:.1f}/"
        f"{chi_before['total_ndf']} = {ratio_b:.2f}, after {chi_after['total_chi2']:.1f}/"
        f"{chi_after['total_ndf']} = {ratio_a:.2f} (p = {chi_after['p_value']:.3f})"
    )
    assert ratio_b > 4
    assert chi_after["p_value"] > 0.001
    assert 0.5 < ratio_a < 1.5


def test_time_stability_files(derived):
    import json

    from zcalib.corrections import read_legacy, validate_file

    bins, res, paths = derived
    model = validate_file(paths["corrections"])
    (corr,) = model.corrections
    assert [v.name for v in corr.inputs] == ["run", "AbsScEta", "syst"]
    ev = corr.to_evaluator()
    # every bin x |eta| cell gives back its scale (run bins inclusive at both ends)
    for r, b in enumerate(bins.bins):
        for e, (lo, hi) in enumerate(res.eta_bins):
            for run in (b.run_min, b.run_max):
                assert ev.evaluate(run, 0.5 * (lo + hi), "scale") == pytest.approx(
                    res.scales[r, e], rel=1e-12
                )
    assert ev.evaluate(bins.bins[0].run_min, 1.5, "scale") == 1.0  # the crack is neutral
    table = read_legacy(paths["scales"])
    assert len(table) == len(bins) * len(res.eta_bins)
    summary = json.loads(paths["summary"].read_text())
    assert summary["chi2"]["before"]["total_chi2"] > summary["chi2"]["after"]["total_chi2"]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
