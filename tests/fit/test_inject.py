"""Injection toys (method accuracy) and the statistical honesty of the reported errors."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from zcalib.exceptions import FitError
from zcalib.fit import fit_histograms, inject, synthetic_histograms
from zcalib.histograms import HistogramSet

from .conftest import ROOT, TRUTH_SCALES, TRUTH_SMEARS


def test_injection_machinery(hset: Any) -> None:
    res = inject(hset, TRUTH_SCALES, TRUTH_SMEARS, n_toys=5, seed=1)
    assert res.n_toys == 5
    assert res.n_failed == 0
    assert res.fitted_scales.shape == (5, 8)
    assert res.err_smears.shape == (5, 8)
    pulls = res.pulls()["scale"]
    assert np.all(np.isfinite(pulls))
    assert np.all(np.abs(pulls) < 5)
    summary = res.pull_summary()["scale"]
    assert summary["mean"].shape == (8,)
    assert np.all(summary["width_err"] > 0)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["n_toys"] == 5
    assert d["seed"] == 1
    # toys are reproducible one by one: same seed, same results
    again = inject(hset, TRUTH_SCALES, TRUTH_SMEARS, n_toys=2, seed=1)
    np.testing.assert_array_equal(again.fitted_scales, res.fitted_scales[:2])


def test_injection_with_pseudo_data_size_and_no_data(hset: Any) -> None:
    mc_only = HistogramSet(hist=hset.hist, categories=hset.categories, kinds={"mc": "mc"})
    with pytest.raises(FitError, match="pass n_pseudo_data"):
        inject(mc_only, TRUTH_SCALES, TRUTH_SMEARS)
    res = inject(mc_only, TRUTH_SCALES, TRUTH_SMEARS, n_pseudo_data=200_000, n_toys=1, seed=4)
    assert res.n_failed == 0
    assert sum(r.n_data for r in res.fits[0].regions_used) == pytest.approx(200_000, rel=0.01)


def test_injection_rejects_wrong_lengths(hset: Any) -> None:
    with pytest.raises(FitError, match="injected 3 scales and 8 smearings"):
        inject(hset, [1.0, 1.0, 1.0], TRUTH_SMEARS)


@pytest.mark.slow
def test_injection_pulls(hset: Any) -> None:
    """150 toys: per category, pull mean within ±0.3 and width within 0.7-1.3 (errors include
    the MC statistics: pseudo-data come from independently fluctuated templates)."""
    res = inject(hset, TRUTH_SCALES, TRUTH_SMEARS, n_toys=150, seed=7)
    assert res.n_failed == 0
    s = res.pull_summary()
    assert np.all(np.abs(s["scale"]["mean"]) < 0.3)
    assert np.all((s["scale"]["width"] > 0.7) & (s["scale"]["width"] < 1.3))
    assert np.all(np.abs(s["smear"]["mean"]) < 0.3)
    assert np.all((s["smear"]["width"] > 0.7) & (s["smear"]["width"] < 1.3))
    pooled = res.pooled("scale")
    assert abs(pooled["mean"]) < 0.3
    assert 0.85 < pooled["width"] < 1.15
    pooled_m = res.pooled("smear")
    assert abs(pooled_m["mean"]) < 0.3
    assert 0.8 < pooled_m["width"] < 1.2


@pytest.mark.slow
def test_statistical_honesty_on_independent_event_samples(scheme: Any) -> None:
    """Independent event-level data + MC samples (not drawn from the fit model): pulls of the
    fitted values against the per-electron injected truth have mean ≈ 0 and width ≈ 1."""
    pulls_s, pulls_m = [], []
    for k in range(30):
        hs = synthetic_histograms(
            scheme,
            n_data=150_000,
            n_mc=600_000,
            scales=TRUTH_SCALES,
            smears=TRUTH_SMEARS,
            seed=5000 + k,
        )
        res = fit_histograms(hs).raise_if_failed()
        pulls_s.append(
            [(c.value - t) / c.total_stat for c, t in zip(res.scales, TRUTH_SCALES, strict=True)]
        )
        pulls_m.append(
            [(c.value - t) / c.total_stat for c, t in zip(res.smears, TRUTH_SMEARS, strict=True)]
        )
    ps, pm = np.array(pulls_s), np.array(pulls_m)
    assert abs(ps.mean()) < 0.2
    assert 0.85 < ps.std(ddof=1) < 1.15
    assert abs(pm.mean()) < 0.25
    assert 0.8 < pm.std(ddof=1) < 1.2
    assert np.all(np.abs(ps.mean(axis=0)) < 0.6)


def test_thirty_toys_give_honest_scale_errors(hset: Any) -> None:
    """Issue #3 acceptance: over 30 toys, pooled scale pulls of mean 0 and width 0.85-1.15;
    per category the mean and the width are within 3 of their own standard errors of 0 and
    1. 30 toys measure a mean to ±0.18 and a width to ±0.13, so fixed bands of ±0.3 and
    0.7-1.3 fail by chance for some seeds: with the fine bins aligned to the window, seed 30
    gives a mean of 0.37 in one category (seed 32: -0.43) with pooled means of 0.12 ± 0.07
    (-0.11 ± 0.06)."""
    res = inject(hset, TRUTH_SCALES, TRUTH_SMEARS, n_toys=30, seed=30)
    assert res.n_toys == 30
    assert res.n_failed == 0
    s = res.pull_summary()["scale"]
    assert np.all(np.abs(s["mean"]) < 3.0 / np.sqrt(30)), s["mean"]
    tol = 3.0 / np.sqrt(2 * (30 - 1))  # 3 standard errors of a unit width from 30 toys
    assert np.all(np.abs(s["width"] - 1.0) < tol), s["width"]
    pooled = res.pooled("scale")
    assert abs(pooled["mean"]) < 3 * pooled["mean_err"] + 0.05
    assert 0.85 < pooled["width"] < 1.15


def test_cli_inject_default_truth_recovered_and_output_stamped(
    hset: Any, scheme: Any, tmp_path: Any, capsys: Any
) -> None:
    """``zcalib inject`` without ``--truth`` injects the library's default pattern
    (``injection_truth``: ±0.5 %, ±0.3 % scales, 1 % smearings), recovers it within the
    errors, and writes injection.json stamped with the command's run id (categories from
    ``--config``); a bad truth file names the file and what is expected."""
    from zcalib.cli import main
    from zcalib.fit.inject import injection_truth
    from zcalib.histograms import save_histograms
    from zcalib.outputs import RUN_ID_FIELD, check_one_run

    scales, smears = injection_truth(scheme)
    assert scales == [1.005, 0.995, 1.003, 0.997] * 2
    assert smears == [0.01] * 8
    h = tmp_path / "h.npz"
    save_histograms(hset, h)
    out = tmp_path / "inject"
    calib = tmp_path / "calib.yaml"  # the categories from a CalibrationConfig
    calib.write_text(f"categories: {ROOT / 'configs' / 'cats_eta_r9.tsv'}\n")
    argv = ["inject", "--histograms", str(h), "--config", str(calib)]
    argv += ["--mc-stat", "none", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads((out / "injection.json").read_text())
    assert next(iter(record)) == RUN_ID_FIELD
    assert check_one_run(out) == record[RUN_ID_FIELD]
    assert record["n_toys"] == 1
    assert record["n_failed"] == 0
    assert record["truth_scales"] == scales
    assert record["truth_smears"] == smears
    fitted = np.array(record["fitted_scales"][0] + record["fitted_smears"][0])
    errors = np.array(record["err_scales"][0] + record["err_smears"][0])
    assert np.all(np.abs(fitted - np.array(scales + smears)) < 4 * errors)
    capsys.readouterr()

    bad = tmp_path / "truth.json"
    bad.write_text('{"scale": [1.0]}')
    assert main([*argv[:-1], str(tmp_path / "bad"), "--truth", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"zcalib: error: {bad}: expected JSON with lists 'scale' and 'smear' ('smear')\n"
    )
    assert not (tmp_path / "bad").exists()
