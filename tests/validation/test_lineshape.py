"""Lineshape cross-check: BW ⊗ CB fits agree with the template fit; real dimuon Z peak."""

from __future__ import annotations

import json
import math

import matplotlib as mpl
import numpy as np
import pytest

from tests.conftest import dimuon_histograms, shared_file
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.outputs import current_run_id, file_run_id
from zcalib.validation.lineshape import (
    Z_MASS,
    Z_WIDTH,
    LineshapeConfig,
    bw_cb_pdf,
    fit_lineshape,
    run_lineshape,
)

mpl.use("Agg")


@pytest.fixture(scope="module")
def demo_hists(tmp_path_factory):
    """60k data / 150k MC demo pairs (enough for every same-category region)."""
    from zcalib.config import dataset_config_from_files
    from zcalib.generate import default_categories, generate
    from zcalib.runner import RunOptions, build_histograms

    gen = generate(tmp_path_factory.mktemp("lineshape_demo"), n_data=60_000, n_mc=150_000, seed=3)
    cfg = dataset_config_from_files(data=[str(gen.data)], mc=[str(gen.mc)])
    return build_histograms(
        cfg, default_categories(), options=RunOptions(executor="iterative", progress=False)
    )


def _toy(n: int, shift: float, sigma: float, seed: int) -> np.ndarray:
    """Relativistic BW masses (inverse CDF in s) plus a Gaussian resolution with a shift."""
    rng = np.random.default_rng(seed)
    s = Z_MASS**2 + Z_MASS * Z_WIDTH * np.tan(np.pi * (rng.uniform(size=4 * n) - 0.5))
    m = np.sqrt(s[s > 0])[:n]
    return np.asarray(m + shift + sigma * rng.normal(size=len(m)))


def test_pdf_is_normalised_and_peaks_at_the_z_mass():
    x = np.linspace(75, 105, 3001)
    f = bw_cb_pdf(x, 0.0, 1.2, 1.5, 2.0)
    assert np.trapezoid(f, x) == pytest.approx(1.0, rel=1e-9)
    assert x[np.argmax(f)] == pytest.approx(Z_MASS, abs=0.05)
    g = bw_cb_pdf(x, 0.5, 1.2, 1.5, 2.0)
    assert x[np.argmax(g)] - x[np.argmax(f)] == pytest.approx(0.5, abs=0.03)


def test_fit_recovers_an_injected_shift_and_width():
    m = _toy(40_000, shift=-0.6, sigma=1.3, seed=5)
    edges = np.linspace(60, 120, 1201)
    counts, _ = np.histogram(m, edges)
    # a pure Gaussian resolution is the CB limit α → ∞
    fit = fit_lineshape(edges, counts.astype(float), config=LineshapeConfig())
    assert fit.valid
    assert fit.dm == pytest.approx(-0.6, abs=4 * fit.dm_err)
    assert fit.sigma == pytest.approx(1.3, abs=4 * fit.sigma_err + 0.05)
    assert fit.peak == pytest.approx(Z_MASS - 0.6, abs=4 * fit.peak_err + 0.02)
    assert 0.7 < fit.chi2_ndf < 1.4


def test_lineshape_agrees_with_the_template_fit(demo_hists, tmp_path):
    res = run_lineshape(demo_hists, tmp_path, max_plots=1)
    rows = res.rows
    assert len(rows) >= 6  # same-category regions with enough events
    for r in rows:
        assert r.data.valid
        assert r.mc is not None
        assert r.mc.valid
        assert math.isfinite(r.template_scale)
        # agreement within the combined uncertainties
        assert abs(r.scale_pull) < 3.0, (r.name, r.scale, r.template_scale, r.scale_pull)
        assert abs(r.smear_pull) < 3.0, (r.name, r.smear, r.template_smear, r.smear_pull)
        # the implied scale is a real measurement, not noise around 1
        assert r.scale_err < 0.005
    # the injected ±0.4-0.9 % miscalibrations are seen by both methods
    ls = np.array([r.scale for r in rows])
    tpl = np.array([r.template_scale for r in rows])
    assert np.corrcoef(ls, tpl)[0, 1] > 0.8
    rec = json.loads((tmp_path / "lineshape.json").read_text())
    assert rec["summary"]["n_rows"] == len(rows)
    assert rec["run_id"] == current_run_id()  # the run that wrote it (zcalib.outputs)
    (png,) = (tmp_path / "plots" / "lineshape").glob("*.png")
    assert file_run_id(png) == current_run_id()
    assert rec["rows"][0]["template_scale"] == pytest.approx(rows[0].template_scale)
    assert rec["template_fit"]["status"] == "converged"
    pngs = list((tmp_path / "plots" / "lineshape").glob("*.png"))
    assert len(pngs) == 1
    assert pngs[0].stat().st_size > 1000


def test_inclusive_mode_and_errors(demo_hists):
    res = run_lineshape(
        demo_hists, config=LineshapeConfig(mode="inclusive"), compare_template=False
    )
    (row,) = res.rows
    assert row.name == "inclusive"
    assert row.mc is not None
    assert abs(row.scale - 1.0) < 0.01
    with pytest.raises(InvalidConfig, match="field 'window'"):
        LineshapeConfig(window=(100.0, 80.0))
    with pytest.raises(InvalidConfig, match="field 'mode'"):
        LineshapeConfig(mode="pairs")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig, match="variation 'smear_up' not in the histograms"):
        run_lineshape(demo_hists, config=LineshapeConfig(mc_variation="smear_up"))


def test_no_data_is_an_input_error(demo_hists):
    from zcalib.histograms import HistogramSet

    mc_only = HistogramSet(
        hist=demo_hists.hist, categories=demo_hists.categories, kinds={"data": "mc", "mc": "mc"}
    )
    with pytest.raises(InputError, match="no data dataset"):
        run_lineshape(mc_only)


def test_real_cms_dimuon_peak_is_at_the_z_mass(tmp_path):
    """CMS 2010 open data, 2304 dimuon events: a data-only fit finds the Z peak."""
    cats = tmp_path / "muons.yaml"
    cats.write_text("scale:\n  - {eta: [0, 2.4]}\n")
    hset = dimuon_histograms(cats, id_level="none")
    res = run_lineshape(hset, tmp_path / "out", config=LineshapeConfig(mode="inclusive"))
    (row,) = res.rows
    assert row.mc is None
    assert row.data.valid
    assert row.data.n_events > 1000
    assert abs(row.data.peak - Z_MASS) < 1.0, row.data.peak
    assert row.data.peak_err < 0.3
    assert 0.5 < row.data.sigma < 4.0
    assert abs(row.scale - 1.0) < 0.015
    rec = json.loads((tmp_path / "out" / "lineshape.json").read_text())
    assert rec["rows"][0]["mc"] is None
    assert abs(rec["rows"][0]["peak_minus_pdg"]) < 1.0
    png = tmp_path / "out" / "plots" / "lineshape" / "inclusive.png"
    assert png.stat().st_size > 1000


def test_cli_lineshape_on_the_dimuon_ntuple(tmp_path):
    from zcalib.cli import main

    p = shared_file("cms_opendata_2010_zmumu.root")
    (tmp_path / "datasets.yaml").write_text(
        "format: flat\ntreename: events\n"
        "column_map: {energy: [E1, E2], eta: [eta1, eta2], phi: [phi1, phi2], "
        "charge: [Q1, Q2], run: Run, event: Event}\n"
        f"datasets:\n  - {{name: data, kind: data, files: [{p}]}}\n"
    )
    (tmp_path / "muons.yaml").write_text("scale:\n  - {eta: [0, 2.4]}\n")
    (tmp_path / "selection.yaml").write_text(
        "{min_et_lead: 20, min_et_sublead: 10, max_abs_eta: 2.4, exclude_crack: false, "
        "opposite_charge: true, id_level: none}\n"
    )
    out = tmp_path / "out"
    rc = main(
        [
            "lineshape",
            "--datasets",
            str(tmp_path / "datasets.yaml"),
            "--categories",
            str(tmp_path / "muons.yaml"),
            "--selection",
            str(tmp_path / "selection.yaml"),
            "--mode",
            "inclusive",
            "--executor",
            "iterative",
            "--no-progress",
            "--no-plots",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    rec = json.loads((out / "lineshape.json").read_text())
    assert abs(rec["rows"][0]["data"]["peak"] - Z_MASS) < 1.0
    (tmp_path / "selection.yaml").write_text("{min_et_lead: -5}\n")
    rc = main(
        [
            "lineshape",
            "--datasets",
            str(tmp_path / "datasets.yaml"),
            "--categories",
            str(tmp_path / "muons.yaml"),
            "--selection",
            str(tmp_path / "selection.yaml"),
            "--out",
            str(out),
        ]
    )
    assert rc == 1
