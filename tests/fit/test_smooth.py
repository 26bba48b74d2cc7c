"""Smooth Et curves per cell (zcalib.fit.smooth) and their correctionlib formulas."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zcalib.exceptions import FitError
from zcalib.fit.smooth import fit_curve, fit_smooth, mean_category_et

N_ET = 6


def test_linear_and_sqrt_inverse_recover_exact_curves():
    x = np.array([27.0, 33.0, 38.0, 42.0, 46.0, 57.0])
    lin = fit_curve("linear", x, 0.99 + 0.004 * (x / 45 - 1), np.diag(np.full(6, 1e-8)))
    assert lin.status == "converged"
    np.testing.assert_allclose(lin.values, [0.99, 0.004], atol=1e-9)
    sq = 0.008**2 + 0.004 / x
    cov = np.diag((0.05 * sq) ** 2)
    curve = fit_curve("sqrt_inverse", x, sq, cov)
    assert curve.status == "converged", curve.message
    np.testing.assert_allclose(curve(x), np.sqrt(sq), rtol=1e-6)
    assert curve.chi2 == pytest.approx(0.0, abs=1e-6)
    # power: IJazZ2.0's A (x/45)^b + C, here as c + a ((x/45)^b - 1)/b with A = a/b
    y = 1.0 + 0.006 * ((x / 45) ** 1.5 - 1)
    power = fit_curve("power", x, y, np.diag(np.full(6, 1e-8)))
    assert power.status == "converged", power.message
    a, b, c = power.values
    assert (a / b, b, c - a / b) == pytest.approx((0.006, 1.5, 0.994), rel=1e-3)
    # clamped beyond the fitted range, errors positive inside it
    assert curve(200.0) == pytest.approx(float(curve(57.0)))
    assert (curve.error(x) > 0).all()


def test_too_few_bins_fail_with_a_reason():
    curve = fit_curve("power", np.array([30.0, 50.0]), np.array([1.0, 1.01]), np.eye(2) * 1e-6)
    assert curve.status == "failed"
    assert curve.message == "2 Et bins for 3 parameters of 'power'"


def test_failed_fit_covariance_gives_failed_curves_not_a_crash(et_dependent_fit):
    """A failed binned fit (written with --write-failed) has NaNs in its covariance: the
    curves fail with the reason in words (pinv raised "SVD did not converge" before)."""
    import dataclasses

    _, scheme, hset, result, _ = et_dependent_fit
    cov = result.covariance.copy()
    cov[0, 1:] = cov[1:, 0] = np.nan
    failed = dataclasses.replace(result, covariance=cov, status="failed")
    smooth = fit_smooth(failed, scheme, hset, scale_form="linear", smear_form=None)
    msg = "the covariance of the binned values is not finite (a failed binned fit?)"
    for idx, curve in smooth.scale:  # only the cell holding scale[0] is touched
        assert (curve.status == "failed" and curve.message == msg) == (0 in idx), curve


def test_form_not_allowed_and_missing_et_sums(et_dependent_fit):
    _, scheme, hset, result, _ = et_dependent_fit
    with pytest.raises(FitError, match=r"^scale smooth form 'sqrt_inverse' is not allowed; "
                       r"allowed: power, linear$"):  # fmt: skip
        fit_smooth(result, scheme, hset, scale_form="sqrt_inverse")
    from zcalib.histograms import HistogramSet

    bare = HistogramSet(counts=hset.counts, categories=hset.categories, kinds=hset.kinds)
    with pytest.raises(FitError, match=r"no per-cell Et sums of the data datasets"):
        mean_category_et(bare, scheme, "scale")


@pytest.mark.slow
def test_smooth_curves_recover_injected_smooth_truth(et_dependent_fit):
    """Truth scale·(1 + 0.006((Et/45)^1.5 − 1)) and √(σ² + 0.005/Et): the fitted power and
    sqrt_inverse curves agree with it at every bin's mean Et within 3 of their errors."""
    truth, scheme, hset, result, _ = et_dependent_fit
    smooth = fit_smooth(result, scheme, hset)
    assert smooth.converged, smooth.failures()
    pulls = []
    for kind in ("scale", "smear"):
        et = mean_category_et(hset, scheme, kind)
        curves = getattr(smooth, kind)
        assert len(curves) == 4  # one per |eta| cell
        for idx, curve in curves:
            assert curve.ndof == N_ET - len(curve.values)
            x = et[list(idx)]
            want = np.array([truth(kind, idx[0] // N_ET, v) for v in x])
            pulls += list((curve(x) - want) / curve.error(x))
    assert np.abs(pulls).max() < 3.0, np.round(pulls, 2)


@pytest.mark.slow
def test_formula_payload_reproduces_the_fitted_curves(et_dependent_fit, tmp_path):
    """The payload (``correction validate``) evaluates to the fitted curves through the
    analysts' calls: the EGM compound (scale) and EGMSmearAndSyst (smear, esmear)."""
    import correctionlib

    from zcalib.derive import write_outputs

    _, scheme, hset, result, _ = et_dependent_fit
    smooth = fit_smooth(result, scheme, hset, scale_form="power")
    paths = write_outputs(result, scheme, tmp_path, step="et", hset=hset, smooth=smooth)
    exe = shutil.which("correction") or str(Path(sys.executable).parent / "correction")
    done = subprocess.run(
        [exe, "validate", str(paths["corrections"])], check=False, capture_output=True
    )
    assert done.returncode == 0, done.stdout
    assert "formula" in paths["corrections"].read_text()
    cset = correctionlib.CorrectionSet.from_file(str(paths["corrections"]))
    compound = cset.compound["EGMScale_Compound_Ele_2022preEE"]
    smear = cset["EGMSmearAndSyst_ElePTsplit_2022preEE"]
    pt = np.array([22.0, 31.0, 39.5, 47.0, 65.0, 120.0])
    one = np.ones_like(pt)
    for idx, curve in smooth.scale:
        eta = 0.5 * sum(scheme.scale[idx[0]].eta) * one
        got = compound.evaluate("scale", one, eta, 0.95 * one, eta, pt, 12.0 * one)
        np.testing.assert_allclose(got, curve(pt), rtol=1e-12)
        # the compound's total uncertainty is binned in pt: the curve's error at each Et
        # bin's centre (the stack's corrected pt, here within a per mille of it)
        mids = np.array([33.0, 38.0, 42.0, 47.0])
        m1 = np.ones_like(mids)
        err = compound.evaluate("escale", m1, eta[:4], 0.95 * m1, eta[:4], mids, 12.0 * m1)
        np.testing.assert_allclose(err, curve.error(mids), rtol=2e-2)
    for idx, curve in smooth.smear:
        eta = 0.5 * sum(scheme.smear[idx[0]].eta) * one
        np.testing.assert_allclose(smear.evaluate("smear", pt, 0.95 * one, eta), curve(pt), 1e-12)
        np.testing.assert_allclose(
            smear.evaluate("esmear", pt, 0.95 * one, eta), curve.error(pt), rtol=1e-9
        )
    import json

    record = json.loads(paths["fit_result"].read_text())
    assert [c["form"] for c in record["smooth"]["scale"]] == ["power"] * 4
    assert record["smooth"]["smear"][0]["formula"] == "sqrt(a^2 + b/pt)"


@pytest.mark.slow
def test_failed_curve_writes_the_record_only(et_dependent_fit, tmp_path):
    """A failed smooth curve is never a correction: fit_result.json says why, no payload."""
    import json
    from dataclasses import replace

    from zcalib.derive import write_outputs

    _, scheme, hset, result, _ = et_dependent_fit
    smooth = fit_smooth(result, scheme, hset, scale_form="linear")
    idx, curve = smooth.scale[1]
    bad = replace(curve, status="failed", message="parameter(s) at a limit: b")
    smooth = replace(smooth, scale=(smooth.scale[0], (idx, bad), *smooth.scale[2:]))
    paths = write_outputs(result, scheme, tmp_path, step="et", hset=hset, smooth=smooth)
    assert set(paths) == {"fit_result"}
    assert not (tmp_path / "corrections.json").exists()
    record = json.loads(paths["fit_result"].read_text())
    assert record["status"] == "failed"
    assert record["message"] == (
        "smooth Et curve(s) failed: scale |eta| 1-1.4442: parameter(s) at a limit: b"
    )
