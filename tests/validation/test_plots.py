"""Data/MC validation plots: plot categories, histogram and event paths, figures, CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pytest

from zcalib.exceptions import InvalidConfig
from zcalib.validation import PlotInput, load_plot_categories, plot_data_mc, run_validation
from zcalib.validation.plotcats import LeptonCuts, PlotCategory, plot_categories_from_dict
from zcalib.validation.plots import (
    data_mc_summary,
    expressible_regions,
    resolve_variable,
    save_figure,
)

from .conftest import CONFIGS, Derivation

mpl.use("Agg")

EB = LeptonCuts(eta=(0.0, 1.4442))
EE = LeptonCuts(eta=(1.566, 2.5))
MASS_LABEL = "$m_{ee}$ [GeV]"


def _check_figure(fig, xlabel: str, png: Path) -> None:
    top, ratio = fig.axes[0], fig.axes[1]
    assert ratio.get_xlabel() == xlabel
    assert top.get_ylabel().startswith("Events /")
    assert ratio.get_ylabel() == "Data / MC"
    assert top.get_legend() is not None
    assert png.is_file()
    assert png.stat().st_size > 20_000


# ----------------------------------------------------------------------- plot categories
def test_standard_plot_categories_tsv_and_yaml_agree():
    tsv = load_plot_categories(CONFIGS / "plot_cats_standard.tsv")
    yml = load_plot_categories(CONFIGS / "plot_cats_standard.yaml")
    assert [c.to_dict() for c in tsv] == [c.to_dict() for c in yml]
    eb = next(c for c in tsv if c.name == "EbEb_highR9")
    assert eb.lead.eta == (0.0, 1.4442)
    assert eb.lead.r9 == (0.96, float("inf"))
    assert eb.sublead.et == (-float("inf"), float("inf"))
    assert load_plot_categories(CONFIGS / "plot_cats_kinematics.tsv")[1].lead.et == (40, 50)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "paper a mass (0,1) (-1,-1) (-1,-1) (0,1) (-1,-1)",
            "expected 9 columns (style name variable eta0 r90 et0 eta1 r91 et1), got 8",
        ),
        (
            "fancy a mass (0,1) (-1,-1) (-1,-1) (0,1) (-1,-1) (-1,-1)",
            "column 'style' is 'fancy'; allowed: paper, crosscheck",
        ),
        (
            "paper a mass [0,1] (-1,-1) (-1,-1) (0,1) (-1,-1) (-1,-1)",
            "column 'eta0' is '[0,1]'; expected a (min,max) tuple",
        ),
        (
            "paper a mass (1,0) (-1,-1) (-1,-1) (0,1) (-1,-1) (-1,-1)",
            "eta0 range (1,0) is empty or inverted",
        ),
        (
            "paper a/b mass (0,1) (-1,-1) (-1,-1) (0,1) (-1,-1) (-1,-1)",
            "plot name 'a/b' is not usable as a file name",
        ),
    ],
)
def test_plot_category_tsv_errors_name_the_problem(tmp_path, line, message):
    p = tmp_path / "cats.tsv"
    p.write_text("style name variable eta0 r90 et0 eta1 r91 et1\n" + line + "\n")
    with pytest.raises(InvalidConfig, match=r"cats\.tsv") as err:
        load_plot_categories(p)
    assert message in str(err.value)


def test_plot_category_yaml_rejects_unknown_keys_and_duplicates():
    with pytest.raises(InvalidConfig, match=r"field 'plots.0.colour'"):
        plot_categories_from_dict({"plots": [{"name": "a", "colour": "red"}]}, source="x.yaml")
    with pytest.raises(InvalidConfig, match="plot name 'a' is used twice"):
        plot_categories_from_dict({"plots": [{"name": "a"}, {"name": "a"}]}, source="x.yaml")


def test_unknown_variable_message_lists_available_variables():
    with pytest.raises(InvalidConfig) as err:
        resolve_variable("nope", ["R9Ele", "etaEle"], category="c", source="p.tsv:3")
    assert str(err.value) == (
        "p.tsv:3: plot category 'c': unknown variable 'nope'; available: invMass_ECAL_ele, "
        "invMass, m_ee, mass, pt_ee, y_ee, et_lead, et_sublead, eta_lead, eta_sublead, "
        "r9_lead, r9_sublead, phi_lead, phi_sublead, energy_lead, energy_sublead, R9Ele, "
        "etaEle (input branches also as name[i] for slot i)"
    )
    assert resolve_variable("R9Ele[1]", ["R9Ele"]).index == 1
    with pytest.raises(InvalidConfig, match="cannot be made from histograms"):
        resolve_variable("et_lead", None, category="c")


# ----------------------------------------------------------------------- cells
def test_expressible_regions(derivation: Derivation):
    scheme = derivation.scheme
    codes = list(range(scheme.n_cells**2))
    regions = [c for c in codes if c // scheme.n_cells <= c % scheme.n_cells]
    ebeb = expressible_regions(PlotCategory("paper", "x", "mass", EB, EB), scheme, regions)
    assert ebeb is not None
    assert len(ebeb) == 10  # 4 barrel cells (2 |eta| x 2 R9)
    inclusive = expressible_regions(PlotCategory("paper", "x", "mass"), scheme, regions)
    assert inclusive == regions
    # leading in EB and subleading in EE: a region cannot tell which lepton leads
    assert expressible_regions(PlotCategory("paper", "x", "mass", EB, EE), scheme, regions) is None
    # an Et cut splits every cell of an |eta| x R9 scheme
    et = LeptonCuts(et=(40.0, 50.0))
    assert expressible_regions(PlotCategory("paper", "x", "mass", et, et), scheme, regions) is None
    # a cut inside the crack still contains whole cells
    wide = LeptonCuts(eta=(0.0, 1.5))
    assert (
        expressible_regions(PlotCategory("paper", "x", "mass", wide, wide), scheme, regions) == ebeb
    )


# ----------------------------------------------------------------------- figures
def _synthetic_input(style: str = "paper") -> PlotInput:
    edges = np.linspace(80, 100, 41)
    centres = 0.5 * (edges[1:] + edges[:-1])
    shape = 1000 / ((centres - 91.2) ** 2 + 2.5**2) + 3
    rng = np.random.default_rng(1)
    d = rng.poisson(shape).astype(float)
    m = 4 * shape
    up, dn = 4 * shape * 1.01, 4 * shape * 0.99
    cat = PlotCategory(style, "synthetic", "invMass_ECAL_ele", EB, EB)  # type: ignore[arg-type]
    var = resolve_variable("invMass_ECAL_ele", None)
    return PlotInput(
        cat,
        var,
        edges,
        data={"nominal": (d, d), "uncorrected": (d * 1.01, d * 1.01)},
        mc={
            "nominal": (m, 4 * m),
            "smear_up": (up, 4 * up),
            "smear_down": (dn, 4 * dn),
            "uncorrected": (m, 4 * m),
        },
        source="histograms",
    )


@pytest.mark.parametrize("style", ["paper", "crosscheck"])
def test_plot_data_mc_figure(tmp_path, style):
    inp = _synthetic_input(style)
    fig = plot_data_mc(inp)
    png = save_figure(fig, tmp_path / f"{style}.png")
    _check_figure(fig, MASS_LABEL, png)
    texts = fig.axes[0].get_legend().get_texts()
    labels = [t.get_text() for t in texts]
    assert labels[0] == "Data (corrected)"
    assert "Simulation (smeared)" in labels
    assert ("Simulation (unsmeared)" in labels) == (style == "crosscheck")
    summary = data_mc_summary(inp)
    assert summary["ndf"] == 39
    assert 0 < summary["chi2"] < 120


# ----------------------------------------------------------------------- histogram path
def test_validation_from_histograms(derivation: Derivation, tmp_path):
    cats = load_plot_categories(CONFIGS / "plot_cats_standard.tsv")
    res = run_validation(
        cats, tmp_path, histograms=derivation.hset, corrections=derivation.steps, keep_figures=True
    )
    assert [r["name"] for r in res.plots] == [c.name for c in cats]
    assert not res.skipped
    for rec in res.plots:
        assert rec["source"] == "histograms"
        assert rec["corrected"]
        _check_figure(res.figures[rec["name"]], MASS_LABEL, tmp_path / rec["file"])
        # corrections derived from this very sample: data and MC agree
        assert rec["chi2"] / rec["ndf"] < 2.5, rec
    summary = json.loads(res.summary_path.read_text())
    assert summary["kind"] == "zcalib-validation"
    assert len(summary["plots"]) == len(cats)


def test_corrections_improve_agreement(derivation: Derivation, tmp_path):
    cat = PlotCategory("crosscheck", "inclusive", "invMass_ECAL_ele")
    res = run_validation(
        [cat], tmp_path, histograms=derivation.hset, corrections=derivation.steps, keep_figures=True
    )
    corrected = res.plots[0]["chi2"]
    raw = run_validation([cat], tmp_path / "raw", histograms=derivation.hset).plots[0]
    assert not raw["corrected"]
    assert corrected < 0.5 * raw["chi2"]


def test_categories_matching_no_events_are_skipped(derivation: Derivation, tmp_path, caplog):
    outside = LeptonCuts(eta=(2.6, 3.0))
    cats = [
        PlotCategory("paper", "nothing", "mass", outside, outside),
        PlotCategory("paper", "EBEB", "mass", EB, EB),
    ]
    with caplog.at_level(logging.WARNING, logger="zcalib.validation.plots"):
        res = run_validation(
            cats, tmp_path, histograms=derivation.hset, corrections=derivation.steps
        )
    assert [r["name"] for r in res.plots] == ["EBEB"]
    assert res.skipped[0]["name"] == "nothing"
    assert "no events selected" in res.skipped[0]["reason"]
    assert "plot category 'nothing'" in caplog.text
    assert not (tmp_path / "nothing.png").exists()


def test_cross_cell_category_needs_ntuples(derivation: Derivation, tmp_path):
    cats = [PlotCategory("paper", "EbEe", "mass", EB, EE, source="p.tsv:4")]
    with pytest.raises(InvalidConfig, match=r"plot categories 'EbEe' \(p.tsv:4\) cut across"):
        run_validation(cats, tmp_path, histograms=derivation.hset)


def test_correction_binned_finer_than_cells_is_rejected(derivation: Derivation, tmp_path):
    from zcalib.categories import load_categories
    from zcalib.corrections import build_scale_correction, write_correction_set
    from zcalib.corrections.steps import load_correction_steps

    fine = tmp_path / "fine.yaml"
    fine.write_text(
        "scale:\n  - {eta: [0, 0.5]}\n  - {eta: [0.5, 1.4442]}\n  - {eta: [1.566, 2.5]}\n"
    )
    scheme = load_categories(fine)
    corr = build_scale_correction(
        "fine_scale", scheme, [1.01, 0.99, 1.0], [1e-3] * 3, description="finer than the cells"
    )
    path = write_correction_set(tmp_path / "fine.json", [corr], description="test")
    steps = load_correction_steps(path)
    cat = PlotCategory("paper", "EBEB", "mass", EB, EB)
    with pytest.raises(InvalidConfig, match="varies inside cell 0"):
        run_validation([cat], tmp_path / "out", histograms=derivation.hset, corrections=steps)


# ----------------------------------------------------------------------- event path
def test_validation_from_ntuples(derivation: Derivation, tmp_path):
    cats = load_plot_categories(CONFIGS / "plot_cats_kinematics.tsv")
    cats.append(PlotCategory("paper", "eta1", "etaEle[1]"))
    cats.append(PlotCategory("paper", "nothing", "mass", LeptonCuts(et=(500.0, float("inf")))))
    res = run_validation(
        cats,
        tmp_path,
        datasets=derivation.datasets,
        corrections=derivation.steps,
        keep_figures=True,
    )
    labels = {
        "EbEe": MASS_LABEL,
        "EbEb_leadEt40to50": MASS_LABEL,
        "et_lead": "Leading electron $E_{T}$ [GeV]",
        "et_sublead": "Subleading electron $E_{T}$ [GeV]",
        "eta_lead": r"Leading electron $\eta_{SC}$",
        "pt_ee": "$p_{T}^{ee}$ [GeV]",
        "R9Ele_EB": "R9Ele",
        "eta1": "etaEle[1]",
    }
    assert [r["name"] for r in res.plots] == list(labels)
    assert [s["name"] for s in res.skipped] == ["nothing"]
    for rec in res.plots:
        assert rec["source"] == "events"
        _check_figure(res.figures[rec["name"]], labels[rec["name"]], tmp_path / rec["file"])
        assert rec["chi2"] / rec["ndf"] < 2.5, rec
    r9 = next(r for r in res.plots if r["name"] == "R9Ele_EB")
    assert 0.3 < r9["range"][0] < 0.9
    assert 1.0 < r9["range"][1] < 1.2
    # both electrons of every selected pair enter a per-lepton branch plot
    ebeb_pairs = next(r for r in res.plots if r["name"] == "R9Ele_EB")["n_data"]
    assert ebeb_pairs % 2 == 0


def test_histogram_and_event_paths_agree(derivation: Derivation, tmp_path):
    hist_cat = PlotCategory("paper", "EBEB", "invMass_ECAL_ele", EB, EB)
    # a tiny Et cut (below the selection) forces the same plot through the event path
    ev_cut = LeptonCuts(eta=(0.0, 1.4442), et=(1.0, float("inf")))
    ev_cat = PlotCategory("paper", "EBEB_events", "invMass_ECAL_ele", ev_cut, ev_cut)
    res = run_validation(
        [hist_cat, ev_cat],
        tmp_path,
        histograms=derivation.hset,
        datasets=derivation.datasets,
        corrections=derivation.steps,
    )
    h, e = res.plots
    assert (h["source"], e["source"]) == ("histograms", "events")
    assert h["range"] == e["range"]
    # corrected data: analytic shift of the histograms vs per-event scaling
    assert abs(h["n_data"] - e["n_data"]) < 0.001 * e["n_data"]
    assert h["mean_data"] == pytest.approx(e["mean_data"], abs=0.003)
    # smeared MC: expectation (kernel) vs one random smearing per event
    assert h["mean_mc"] == pytest.approx(e["mean_mc"], abs=0.005)
    # without corrections both paths bin the very same pairs
    raw = run_validation(
        [hist_cat, ev_cat],
        tmp_path / "raw",
        histograms=derivation.hset,
        datasets=derivation.datasets,
    ).plots
    for key in ("n_data", "n_mc", "mean_data", "mean_mc", "chi2"):
        assert raw[0][key] == pytest.approx(raw[1][key], rel=1e-9), key


def test_unknown_variable_with_ntuples(derivation: Derivation, tmp_path):
    cats = [PlotCategory("paper", "x", "not_a_branch", source="p.tsv:2")]
    with pytest.raises(
        InvalidConfig,
        match=r"^p.tsv:2: plot category 'x': unknown variable "
        r"'not_a_branch'; available: invMass_ECAL_ele, invMass, m_ee, mass, "
        r"pt_ee, .*R9Ele, .*etaEle",
    ):
        run_validation(cats, tmp_path, datasets=derivation.datasets)


# ----------------------------------------------------------------------- CLI
def test_cli_validate_from_histograms(derivation: Derivation, tmp_path, capsys):
    from zcalib.cli import main

    out = tmp_path / "val"
    cats = tmp_path / "cats.yaml"
    cats.write_text(
        "plots:\n  - {name: all, variable: invMass_ECAL_ele}\n"
        "  - {name: EE, style: crosscheck, lead: {eta: [1.566, 2.5]}, "
        "sublead: {eta: [1.566, 2.5]}}\n"
    )
    rc = main([
        "validate", "--histograms", str(derivation.dir / "histograms.npz"),
        "--corrections", str(derivation.dir / "corrections.json"),
        "--plot-cats", str(cats), "--out", str(out),
        "--lumi-label", "30k pairs (13.6 TeV)", "--data-title", "Pseudo-data",
        "--mc-title", "Demo MC", "--binning", "20",
    ])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "validation.json").read_text())
    assert summary["labels"] == {"lumi_label": "30k pairs (13.6 TeV)",
                                 "data_title": "Pseudo-data", "mc_title": "Demo MC"}  # fmt: skip
    assert all(p["bins"] == 20 for p in summary["plots"])
    assert sorted(p.name for p in out.glob("*.png")) == ["EE.png", "all.png"]
    assert "EE: chi2/ndf = " in capsys.readouterr().out


def test_cli_validate_unknown_variable_exits_1(derivation: Derivation, tmp_path, capsys):
    from zcalib.cli import main

    cats = tmp_path / "cats.tsv"
    cats.write_text("paper bad nope (-1,-1) (-1,-1) (-1,-1) (-1,-1) (-1,-1) (-1,-1)\n")
    rc = main([
        "validate", "--data", str(derivation.datasets.datasets[0].files[0]),
        "--mc", str(derivation.datasets.datasets[1].files[0]), "--executor", "iterative",
        "--plot-cats", str(cats), "--out", str(tmp_path / "out"),
    ])  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"zcalib: error: {cats}:1: plot category 'bad': unknown variable 'nope'; available: "
        "invMass_ECAL_ele, invMass, m_ee, mass, pt_ee, y_ee, et_lead,"
    )
    assert "R9Ele, " in err


def test_event_path_applies_mc_weights(derivation: Derivation, tmp_path):
    from dataclasses import replace

    from zcalib.exceptions import InputError
    from zcalib.runner import load_weight

    pileup = load_weight("pileup", CONFIGS.parent / "corrections" / "pileup_demo.json")
    cat = PlotCategory("paper", "mass", "mass")
    plain = run_validation([cat], tmp_path / "a", datasets=derivation.datasets).plots[0]
    weighted = run_validation(
        [cat], tmp_path / "b", datasets=derivation.datasets, weights=[pileup]
    ).plots[0]
    assert weighted["n_data"] == plain["n_data"]
    assert weighted["n_mc"] != pytest.approx(plain["n_mc"], rel=1e-6)
    assert weighted["n_mc"] == pytest.approx(plain["n_mc"], rel=0.2)
    with pytest.raises(InputError, match=r"MC weight 'pileup' .* needs the 'nope' branch"):
        run_validation([cat], tmp_path / "c", datasets=derivation.datasets,
                       weights=[replace(pileup, variable="nope")])  # fmt: skip
