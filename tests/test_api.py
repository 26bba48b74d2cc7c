"""The public API: lazy package root, one call per stage, immutable displayable results."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types

import numpy as np
import pytest

import zcalib
from zcalib import api
from zcalib.calibration import CalibrationConfig
from zcalib.exceptions import InvalidConfig, ZcalibError


def test_import_is_lazy():
    code = (
        "import sys, zcalib; "
        "heavy = [m for m in ('numpy', 'coffea', 'awkward', 'pydantic', 'matplotlib') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_names_resolve():
    for name in zcalib.__all__:
        assert getattr(zcalib, name) is not None
        assert name in dir(zcalib)
    assert zcalib.fill_histograms is api.histograms
    assert zcalib.run_fit is api.fit
    assert zcalib.CalibrationConfig is CalibrationConfig
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = zcalib.nope  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def synthetic():
    from zcalib.categories import Category, build_scheme
    from zcalib.fit import synthetic_histograms

    scheme = build_scheme(
        [Category("scale", 0, eta=(0.0, 1.4442)), Category("scale", 1, eta=(1.566, 2.5))], []
    )
    return synthetic_histograms(
        scheme, n_data=40_000, n_mc=80_000, seed=3, scales=[1.01, 0.99], smears=[0.01]
    )


def test_fit_on_a_histogram_set(synthetic):
    fitted = api.fit(synthetic)
    assert fitted.converged
    np.testing.assert_allclose(fitted.scales, [1.01, 0.99], atol=2e-3)
    assert fitted.config is None
    assert (fitted.data_variation, fitted.mc_variation) == ("nominal", "nominal")
    html = fitted._repr_html_()
    assert "<table>" in html
    assert "scale[0]" in html
    assert repr(fitted).startswith("Fit(status='converged'")
    rows = fitted.rows()
    assert [r["kind"] for r in rows] == ["scale", "scale", "smear"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fitted.config = CalibrationConfig()  # type: ignore[misc]


def test_run_step_writes_a_converged_step_and_only_the_record_of_a_failed_one(synthetic, tmp_path):
    """run_step (the one fill → fit → write): a converged fit writes the payload, legacy
    files and record, recovering the injected scales; a fit stopped after one iteration
    writes fit_result.json alone (status failed), says why, and removes the payload an
    earlier run left in the folder."""
    import correctionlib

    from zcalib.fit import FitConfig

    scheme = synthetic.scheme()
    done = api.run_step(synthetic, scheme, FitConfig(), tmp_path, step="s1", extra={"note": 1})
    assert done.failure is None
    assert sorted(done.paths) == ["corrections", "fit_result", "only_step", "scales", "smearings"]
    assert not (tmp_path / "histograms.npz").exists()  # given histograms are not saved again
    np.testing.assert_allclose([c.value for c in done.result.scales], [1.01, 0.99], atol=2e-3)
    record = json.loads(done.paths["fit_result"].read_text())
    assert (record["status"], record["note"]) == ("converged", 1)
    cset = correctionlib.CorrectionSet.from_file(str(done.paths["corrections"]))
    assert "EGMScale_Compound_Ele_2022preEE" in cset.compound
    starved = FitConfig(max_iter=1, edm_tolerance=1e-300, mc_stat="none")
    failed = api.run_step(synthetic, scheme, starved, tmp_path, step="s1")
    assert failed.failure == f"fit {failed.result.message}"
    assert failed.failure.startswith("fit failed: ")
    assert sorted(failed.paths) == ["fit_result"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit_result.json"]
    assert json.loads((tmp_path / "fit_result.json").read_text())["status"] == "failed"
    with pytest.raises(InvalidConfig, match="give an EventLoop, not histograms"):
        api.run_step(synthetic, scheme, FitConfig(), tmp_path, iterations=2)


def test_fit_plot_returns_a_figure(synthetic):
    from matplotlib.figure import Figure

    fig = api.fit(synthetic).plot(truth={"scale": [1.01, 0.99], "smear": [0.01]})
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2


def test_histograms_wrapper_plot_and_summary(synthetic):
    from matplotlib.figure import Figure

    hists = api.Histograms(hset=synthetic)
    s = hists.summary()
    assert [d["dataset"] for d in s["datasets"]] == hists.datasets
    assert isinstance(hists.plot(), Figure)
    assert isinstance(hists.plot(region=(0, 0), rebin=10), Figure)
    with pytest.raises(InvalidConfig, match="region 999 is not in the histograms"):
        hists.plot(region=999)
    assert "<table>" in hists._repr_html_()
    with pytest.raises(TypeError):
        hists.cutflow["data"] = {}  # type: ignore[index]


@pytest.fixture(scope="module")
def ecalelf_run(demo_ecalelf, tmp_path_factory):
    """Fill + fit + write once on the shared 20k/40k demo sample (iterative executor)."""
    cfg = CalibrationConfig.for_format(
        "ecalelf", mc_weights=[zcalib.McWeight(name="pileup", file=api.shipped_payload())]
    )
    ds = api.datasets_from_files(data=[demo_ecalelf.data], mc=[demo_ecalelf.mc], config=cfg)
    hists = api.histograms(ds, cfg, executor="iterative")
    fitted = api.fit(hists)
    out = tmp_path_factory.mktemp("api_step1")
    corrections = api.write_corrections(fitted, out, step="step1", hists=hists)
    return cfg, ds, hists, fitted, corrections


def test_histograms_fill_every_variation_in_one_pass(ecalelf_run):
    cfg, _, hists, _, _ = ecalelf_run
    assert hists.config is cfg
    assert hists.variations == ["nominal", "pileup_up", "pileup_down"]
    assert hists.cutflow["data"]["all"] == 20_000
    assert repr(hists).startswith("Histograms(datasets=[")
    html = hists._repr_html_()
    assert "pileup_up" in html
    assert "iterative" in html


def test_fit_recovers_truth_and_selects_systematics(ecalelf_run, demo_ecalelf):
    cfg, _, hists, fitted, _ = ecalelf_run
    truth = json.loads(demo_ecalelf.truth.read_text())
    assert fitted.converged
    errors = np.array([c.total_stat for c in fitted.result.scales])
    pulls = (np.array(fitted.scales) - np.array(truth["scale"])) / errors
    assert np.all(np.abs(pulls) < 5)
    up = api.fit(hists, cfg.with_overrides(systematic="pileup_up"))
    assert (up.data_variation, up.mc_variation) == ("nominal", "pileup_up")
    assert up.scales != fitted.scales
    # no prior correction: uncorrected is the nominal, on both sides
    raw = api.fit(hists, cfg.with_overrides(systematic="uncorrected"))
    assert (raw.data_variation, raw.mc_variation) == ("nominal", "nominal")
    assert raw.scales == fitted.scales
    with pytest.raises(
        InvalidConfig,
        match=r"'scale_up' is not in the data histograms.*"
        r"data variations filled: nominal",
    ):
        api.fit(hists, cfg.with_overrides(systematic="scale_up"))


def test_write_corrections_and_evaluate(ecalelf_run):
    from zcalib.corrections import SCALE_INPUTS

    _, _, _, fitted, corrections = ecalelf_run
    assert set(corrections.paths) == {
        "corrections",
        "scales",
        "smearings",
        "only_step",
        "fit_result",
    }
    assert all(p.is_file() for p in corrections.paths.values())
    cset = corrections.correction_set()
    scale = cset.compound[corrections.scale_name]
    assert corrections.scale_name == "EGMScale_Compound_Ele_2022preEE"
    assert tuple(v.name for v in scale.inputs) == SCALE_INPUTS
    assert scale.evaluate("scale", 1.0, 0.5, 0.5, 0.5, 40.0, 12.0) == pytest.approx(
        fitted.scales[0]
    )
    record = json.loads(corrections.paths["fit_result"].read_text())
    assert record["calibration_config"]["input_format"] == "ecalelf"
    assert record["variations"] == {"data": "nominal", "mc": "nominal"}
    assert "EGMSmearAndSyst_ElePTsplit_2022preEE" in corrections._repr_html_()
    with pytest.raises(TypeError):
        corrections.paths["x"] = corrections.json  # type: ignore[index]


def test_save_load_round_trip(ecalelf_run, tmp_path):
    cfg, _, hists, fitted, _ = ecalelf_run
    path = hists.save(tmp_path / "h.npz")
    again = api.load_histograms(path, cfg)
    assert again.variations == hists.variations
    assert api.fit(again).scales == fitted.scales


def test_calibrate_with_prior_corrections(ecalelf_run, tmp_path):
    cfg, ds, _, fitted, corrections = ecalelf_run
    closure_cfg = cfg.with_overrides(corrections=[corrections.json])
    cal = api.calibrate(
        ds, closure_cfg, out_dir=tmp_path / "closure", step="closure", executor="iterative"
    )
    assert set(cal.histograms.variations) >= {
        "uncorrected",
        "scale_up",
        "scale_down",
        "smear_up",
        "smear_down",
        "pileup_up",
    }
    # after applying the derived scales the residual scales are 1 within 3 sigma (stat incl.
    # MC statistics) and within 0.5 %
    res = cal.fit.result
    pulls = [(c.value - 1.0) / c.total_stat for c in res.scales]
    print("closure scale pulls", np.round(pulls, 2), [round(c.total_stat, 5) for c in res.scales])
    assert np.all(np.abs(pulls) < 3), pulls
    np.testing.assert_allclose(cal.fit.scales, 1.0, atol=5e-3)
    # raw energies stay available: fitting them gives back the first derivation
    raw = api.fit(cal.histograms, closure_cfg.with_overrides(systematic="uncorrected"))
    assert (raw.data_variation, raw.mc_variation) == ("uncorrected", "uncorrected")
    np.testing.assert_allclose(raw.scales, fitted.scales, atol=1e-3)
    up = api.fit(cal.histograms, closure_cfg.with_overrides(systematic="scale_up"))
    assert up.data_variation == "scale_up"
    assert cal.corrections is not None
    assert cal.corrections.json.is_file()
    assert "<strong>Calibration</strong>" in cal._repr_html_()
    assert cal.plot() is not None


def test_format_mismatch_is_an_error(ecalelf_run):
    _, ds, _, _, _ = ecalelf_run
    with pytest.raises(InvalidConfig, match=r"for_format\('ecalelf'\)"):
        api.histograms(ds, CalibrationConfig.for_format("nanoaod"), executor="iterative")


def test_load_datasets_yaml(tmp_path, demo_ecalelf):
    p = tmp_path / "datasets.yaml"
    p.write_text(
        f"format: ecalelf\ndatasets:\n  - {{name: data, kind: data, files: [{demo_ecalelf.data}]}}\n"
    )
    assert api.load_datasets(p).datasets[0].name == "data"


def test_validate_with_the_derived_corrections(ecalelf_run, tmp_path):
    from matplotlib.figure import Figure

    _, _, hists, _, corrections = ecalelf_run
    val = api.validate(hists, corrections, tmp_path / "validation")
    assert [p["name"] for p in val.plots] == ["inclusive"]
    assert val.plots[0]["corrected"] is True
    assert (tmp_path / "validation" / "validation.json").is_file()
    assert isinstance(val.plot(), Figure)
    assert "χ² / ndf" in val._repr_html_()
    with pytest.raises(InvalidConfig, match="no validation plot 'nope'; drawn: inclusive"):
        val.plot("nope")


def test_validate_without_the_validation_module(ecalelf_run, tmp_path, monkeypatch):
    _, _, hists, _, corrections = ecalelf_run
    monkeypatch.setitem(sys.modules, "zcalib.validation", None)
    with pytest.raises(ZcalibError, match=r"zcalib\.validation is not available"):
        api.validate(hists, corrections, tmp_path)
    monkeypatch.setitem(sys.modules, "zcalib.validation", types.ModuleType("zcalib.validation"))
    with pytest.raises(ZcalibError, match="provides no run_validation"):
        api.validate(hists, corrections, tmp_path)
