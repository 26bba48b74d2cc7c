"""A status that never lies: failure reasons in words, exit code 3, no payload, pipeline stops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CONFIGS
from zcalib.cli import EXIT_FIT_FAILED, main
from zcalib.exceptions import FitFailed
from zcalib.fit import FitConfig, fit_histograms, synthetic_histograms
from zcalib.histograms import save_histograms

from .conftest import TRUTH_SCALES, TRUTH_SMEARS

CATS = str(CONFIGS / "cats_eta_r9.tsv")


@pytest.fixture(scope="module")
def beyond_bound(scheme: Any) -> Any:
    """Category 3's true scale (1.13) lies outside the default fit range 0.9-1.1."""
    scales = TRUTH_SCALES.copy()
    scales[3] = 1.13
    return synthetic_histograms(
        scheme, n_data=60_000, n_mc=180_000, scales=scales, smears=TRUTH_SMEARS, seed=5
    )


def test_parameter_at_a_range_bound_fails_with_the_reason_in_words(beyond_bound: Any) -> None:
    res = fit_histograms(beyond_bound, FitConfig(mc_stat="sandwich"))
    assert res.status == "failed"
    assert res.scales[3].at_bound
    assert res.scales[3].value == pytest.approx(1.1, abs=1e-6)
    assert res.message.startswith("failed: 1 of 16 parameters ended at a bound of the fit range")
    assert "scale[3] |eta| 2-2.5 r9 0-0.96 = 1.1" in res.message
    assert "ABNORMAL" not in res.message
    with pytest.raises(FitFailed, match=r"^fit failed: 1 of 16 parameters ended at a bound"):
        res.raise_if_failed()


def test_converged_fit_says_converged_in_words(hset: Any) -> None:
    res = fit_histograms(hset, FitConfig(mc_stat="sandwich"))
    assert res.status == "converged"
    assert res.message.startswith("converged: EDM ")
    assert "ABNORMAL" not in res.message
    assert "CONVERGENCE" not in res.message


def test_smearing_at_zero_is_the_physical_limit_not_a_failure(scheme: Any) -> None:
    smears = TRUTH_SMEARS.copy()
    smears[1] = 0.0
    hs = synthetic_histograms(
        scheme, n_data=100_000, n_mc=400_000, scales=TRUTH_SCALES, smears=smears, seed=11
    )
    res = fit_histograms(hs, FitConfig(mc_stat="sandwich"))
    assert res.status == "converged", res.message
    # a user-set lower bound above 0 is a range bound: ending there fails the fit
    bounded = fit_histograms(hs, FitConfig(mc_stat="sandwich", smear_bounds=(0.005, 0.1)))
    assert bounded.smears[1].at_bound
    assert bounded.status == "failed"
    assert "smear[1]" in bounded.message
    assert "= 0.005" in bounded.message


def test_edm_failure_is_reported_in_words(hset: Any) -> None:
    res = fit_histograms(hset, FitConfig(max_iter=1, edm_tolerance=1e-300, mc_stat="none"))
    assert res.status == "failed"
    assert "the estimated distance to the minimum (EDM " in res.message
    assert "is above the tolerance 1e-300" in res.message


def _fit_cli(tmp_path: Path, hists: Path, *extra: str) -> int:
    return main(
        [
            "fit",
            "--histograms",
            str(hists),
            "--categories",
            CATS,
            "--out",
            str(tmp_path),
            "--mc-stat",
            "sandwich",
            *extra,
        ]
    )


def test_cli_failed_fit_exit_3_without_payload(
    beyond_bound: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hists = save_histograms(beyond_bound, tmp_path / "h.npz")
    out = tmp_path / "out"
    rc = _fit_cli(out, hists)
    err = capsys.readouterr().err
    assert rc == EXIT_FIT_FAILED == 3
    assert "zcalib: fit failed: 1 of 16 parameters ended at a bound" in err
    assert "(no correction payload)" in err
    assert sorted(p.name for p in out.iterdir()) == ["fit_result.json"]
    record = json.loads((out / "fit_result.json").read_text())
    assert record["status"] == "failed"
    assert "ended at a bound" in record["message"]
    # asked explicitly: the payload is written, marked failed
    out2 = tmp_path / "out2"
    rc = _fit_cli(out2, hists, "--write-failed")
    assert rc == 3
    payload = json.loads((out2 / "corrections.json").read_text())
    assert payload["description"].startswith("FAILED FIT, do not use")
    # every fitted correction is marked; the random-number definition is no fit result
    fitted = [c for c in payload["corrections"] if c["name"] != "EGMRandomGenerator"]
    assert len(fitted) == 3
    assert all("FAILED FIT" in c["description"] for c in fitted)
    # a failed refit into that folder removes the earlier run's payload: never a mixed folder
    rc = _fit_cli(out2, hists)
    assert rc == 3
    assert sorted(p.name for p in out2.iterdir()) == ["fit_result.json"]
