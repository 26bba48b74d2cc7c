"""The cabinetry/pyhf validation distinguishes corrected from uncorrected demo data."""

from __future__ import annotations

import json
import logging

import pytest

from zcalib.outputs import current_run_id, file_run_id
from zcalib.stats import StatsConfig, run_stats

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def both(derivation):
    out = derivation.out
    corrected = run_stats(
        derivation.corrected, out, corrections=derivation.corrections, plot_channels=["region_0_0"]
    )
    uncorrected = run_stats(
        derivation.corrected,
        out,
        corrections=derivation.corrections,
        config=StatsConfig(data_variation="uncorrected", mc_variation="uncorrected"),
        plots=False,
        name="stats_uncorrected",
    )
    for tag, r in (("corrected", corrected), ("uncorrected", uncorrected)):
        log.info(
            "%s: GOF p = %.3g (%d dof), max |pull| %.2f, max significance %.1f, compatible %s",
            tag,
            r.gof_pvalue,
            r.n_dof,
            r.max_abs_pull,
            r.max_significance,
            r.compatible,
        )
    return corrected, uncorrected


def test_corrected_data_are_compatible_uncorrected_are_not(both):
    corrected, uncorrected = both
    # after correction: acceptable goodness of fit, pulls compatible with 0
    assert corrected.gof_pvalue > 0.01
    assert corrected.max_abs_pull < 3.0
    assert not any(p.at_bound for p in corrected.pulls)
    assert corrected.compatible
    # before correction: the model (nuisances = calibration uncertainties) fails
    assert uncorrected.gof_pvalue < 1e-4
    assert not uncorrected.compatible
    scale_pulls = [p for p in uncorrected.pulls if p.kind == "scale"]
    assert max(abs(p.significance) for p in scale_pulls) > 3.0
    assert max(abs(p.pull) for p in scale_pulls) > 2 * corrected.max_abs_pull
    assert corrected.n_dof == uncorrected.n_dof > 100


def test_outputs_written(both, derivation):
    corrected, _ = both
    out = derivation.out
    rec = json.loads((out / "stats.json").read_text())
    assert rec["summary"]["compatible"] is True
    # the run that wrote it (zcalib.outputs); pyhf's workspace schema has no room for one
    assert rec["run_id"] == file_run_id(out / "plots" / "stats" / "pulls.png") == current_run_id()
    assert file_run_id(out / "workspace.json") is None
    assert rec["fit"]["gof_pvalue"] == pytest.approx(corrected.gof_pvalue)
    assert {p["name"] for p in rec["pulls"]} >= {"scale_0", "smear_0"}
    assert all(set(p) >= {"pull", "uncertainty", "step", "at_bound"} for p in rec["pulls"])
    assert rec["normalisations"]["norm_region_0_0"]["bestfit"] == pytest.approx(1.0, abs=0.1)
    assert rec["steps"]["source"] == str(derivation.corrections)
    rec_u = json.loads((out / "stats_uncorrected.json").read_text())
    assert rec_u["summary"]["compatible"] is False
    ws = json.loads((out / "workspace.json").read_text())
    assert {"channels", "observations", "measurements", "version"} <= set(ws)
    assert (out / "stats_uncorrected_workspace.json").is_file()
    for png in ("pulls.png", "region_0_0_prefit.png", "region_0_0_postfit.png"):
        p = out / "plots" / "stats" / png
        assert p.is_file()
        assert p.stat().st_size > 1000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "plots" / "stats_uncorrected").exists()


def test_bad_output_name_fails_before_fitting(derivation, tmp_path):
    from zcalib.exceptions import InvalidConfig

    with pytest.raises(InvalidConfig, match="output name"):
        run_stats(derivation.corrected, tmp_path, name="../x")


def test_cli_stats(derivation, tmp_path):
    from zcalib.cli import main
    from zcalib.histograms import save_histograms

    h = save_histograms(derivation.corrected, tmp_path / "corrected.npz")
    out = tmp_path / "out"
    rc = main(
        [
            "stats",
            "--histograms",
            str(h),
            "--corrections",
            str(derivation.corrections),
            "--out",
            str(out),
            "--regions",
            "0,9",
            "--no-plots",
        ]
    )
    assert rc == 0
    rec = json.loads((out / "stats.json").read_text())
    assert [r["code"] for r in rec["regions"]] == [0, 9]
    assert rec["config"]["regions"] == [0, 9]
    # usage errors exit with 1 before any fit
    assert main(["stats", "--histograms", str(h), "--out", str(out), "--regions", "x"]) == 1
    assert main(["stats", "--data", "nothing.root", "--out", str(out)]) == 1


def test_cli_stats_refuses_histograms_filled_without_the_corrections(derivation, tmp_path, capsys):
    """Histograms filled without (or with other) corrections are refused, not misread as
    corrected: one line naming both files, exit 1, nothing written."""
    from zcalib.cli import main
    from zcalib.histograms import save_histograms

    raw = save_histograms(derivation.uncorrected, tmp_path / "raw.npz")
    out = tmp_path / "out"
    argv = ["stats", "--corrections", str(derivation.corrections), "--out", str(out)]
    assert main([*argv[:1], "--histograms", str(raw), *argv[1:], "--no-plots"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{raw}: filled without corrections, not with the corrections of " in err
    assert str(derivation.corrections) in err
    assert "give the inputs (--data/--mc/--datasets with --categories)" in err
    assert not out.exists()
    # histograms corrected with another payload of the same names are refused too
    other = tmp_path / "other.json"
    other.write_bytes(derivation.corrections.read_bytes())
    corrected = save_histograms(derivation.corrected, tmp_path / "corrected.npz")
    argv = ["stats", "--histograms", str(corrected), "--corrections", str(other)]
    assert main([*argv, "--out", str(out), "--no-plots"]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{corrected}: filled with " in err
    assert f"from {derivation.corrections}, not with the corrections of {other}" in err
    assert not out.exists()
