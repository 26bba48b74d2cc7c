"""Systematics study: refits with varied choices → per-category syst errors in the payload."""

from __future__ import annotations

import json
import math

import correctionlib
import numpy as np
import pytest

from tests.conftest import ROOT
from zcalib.exceptions import InvalidConfig
from zcalib.fit import FitConfig
from zcalib.generate import default_categories
from zcalib.outputs import current_run_id, file_run_id
from zcalib.validation.systematics import (
    SystematicsConfig,
    Variation,
    load_systematics_config,
    move_boundary,
    run_systematics,
)


@pytest.fixture(scope="module")
def nominal(demo_ecalelf):
    from zcalib.config import dataset_config_from_files
    from zcalib.runner import RunOptions, build_histograms

    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    hset = build_histograms(
        cfg, default_categories(), options=RunOptions(executor="iterative", progress=False)
    )
    return cfg, hset


@pytest.fixture(scope="module")
def study(nominal, tmp_path_factory):
    """The default study through ``run_step`` (the one writer of a step's payload), the
    refills from the inputs of the nominal histograms."""
    from zcalib.api import run_step
    from zcalib.runner import EventLoop, RunOptions

    cfg, hset = nominal
    out = tmp_path_factory.mktemp("systematics")
    loop = EventLoop(cfg, options=RunOptions(executor="iterative", progress=False))
    done = run_step(
        hset,
        default_categories(),
        FitConfig(mc_stat="sandwich"),
        out,
        step="demo",
        systematics=SystematicsConfig(),
        refills=loop,
    )
    assert done.syst is not None
    return out, done.syst


def _point(cat):
    eta = 0.5 * (cat.eta[0] + cat.eta[1])
    r9 = 0.5 * (cat.r9[0] + min(cat.r9[1], 1.2))
    return eta, r9


def test_syst_errors_are_nonzero_and_stored_apart_from_stat(study):
    out, res = study
    names = [v.variation.name for v in res.variations]
    assert names == ["window_narrow", "window_wide", "r9_boundary_095", "et_30_25", "id_tight"]
    assert set(res.scale_by_source) == {"window", "r9", "et", "id"}
    assert all(s > 0 for s in res.scale_syst)
    assert all(s > 0 for s in res.smear_syst)
    # quadrature of the per-source max |shift|
    for k in range(len(res.scale_syst)):
        expect = math.sqrt(sum(v[k] ** 2 for v in res.scale_by_source.values()))
        assert res.scale_syst[k] == pytest.approx(expect)
        window = max(abs(v.scale_shift[k]) for v in res.variations[:2])
        assert res.scale_by_source["window"][k] == pytest.approx(window)
    rec = json.loads((out / "systematics.json").read_text())
    assert rec["run_id"] == file_run_id(out / "corrections.json") == current_run_id()
    cats = {(c["kind"], c["index"]): c for c in rec["categories"]}
    for k, c in enumerate(res.nominal.scales):
        row = cats[("scale", k)]
        assert row["stat"] == pytest.approx(c.total_stat)
        assert row["syst"] == pytest.approx(res.scale_syst[k])
        assert row["total"] == pytest.approx(math.hypot(c.total_stat, res.scale_syst[k]))
        assert set(row["syst_by_source"]) == {"window", "r9", "et", "id"}
    assert len(rec["variations"]) == 5
    assert rec["variations"][2]["variation"]["kind"] == "boundary"


def test_syst_errors_reach_the_correctionlib_keys(study):
    out, res = study
    cset = correctionlib.CorrectionSet.from_file(str(out / "corrections.json"))
    # the EGM layout: the compound (one step) and the MC smearing, default era
    scale = cset.compound["EGMScale_Compound_Ele_2022preEE"]
    smear = cset["EGMSmearAndSyst_ElePTsplit_2022preEE"]
    scheme = default_categories()
    for k, cat in enumerate(scheme.scale):
        eta, r9 = _point(cat)
        value = res.nominal.scales[k].value
        err = math.hypot(res.scale_stat[k], res.scale_syst[k])

        def at(key: str, eta: float = eta, r9: float = r9) -> float:
            return scale.evaluate(key, 1.0, eta, r9, eta, 40.0, 12.0)

        assert at("scale") == pytest.approx(value)
        assert at("escale") == pytest.approx(err)
        assert at("scale_up") == pytest.approx(value + err)
        assert at("scale_down") == pytest.approx(value - err)
        assert err > res.scale_stat[k]  # the syst part is really in there
    for k, cat in enumerate(scheme.smear):
        eta, r9 = _point(cat)
        value = res.nominal.smears[k].value
        err = math.hypot(res.smear_stat[k], res.smear_syst[k])
        assert smear.evaluate("esmear", 40.0, r9, eta) == pytest.approx(err)
        assert smear.evaluate("smear_up", 40.0, r9, eta) == pytest.approx(value + err)
        assert smear.evaluate("smear_down", 40.0, r9, eta) == pytest.approx(max(value - err, 0.0))


def test_window_only_study_needs_no_inputs_and_max_combination(nominal):
    _, hset = nominal
    cfg = SystematicsConfig(
        combine="max",
        variations=(
            Variation(name="narrow", source="window", kind="window", window=(84, 96)),
            Variation(name="shifted", source="window_shift", kind="window", window=(81, 101)),
        ),
    )
    res = run_systematics(hset, config=cfg, fit_config=FitConfig())
    stack = np.vstack([res.scale_by_source["window"], res.scale_by_source["window_shift"]])
    assert np.allclose(res.scale_syst, stack.max(axis=0))


def test_smearing_model_variation_refits_with_the_double_gaussian(nominal):
    _, hset = nominal
    shape = {"fraction": 0.25, "width_ratio": 2.5}
    var = Variation(
        name="dg",
        source="smearing_model",
        kind="smearing",
        smearing="double-gaussian",
        double_gaussian=shape,
    )
    fast = FitConfig(mc_stat="sandwich")  # no bootstrap: two fits in this test
    res = run_systematics(hset, config=SystematicsConfig(variations=(var,)), fit_config=fast)
    (vr,) = res.variations
    assert vr.status == "converged"
    np.testing.assert_allclose(
        res.smear_by_source["smearing_model"], np.abs(np.array(vr.smear_shift)), rtol=1e-12
    )
    # a tail of 2.5x the core: the fitted core is narrower than the single Gaussian wherever
    # the smearing is significant
    significant = [k for k, c in enumerate(res.nominal.smears) if c.value > 3 * c.total_stat]
    assert significant
    for k in significant:
        assert vr.smear_shift[k] < -res.nominal.smears[k].total_stat, k
    assert res.smear_syst == pytest.approx(res.smear_by_source["smearing_model"])


def test_smearing_variation_config_errors():
    with pytest.raises(ValueError, match="kind 'smearing' needs smearing"):
        Variation(name="s", source="m", kind="smearing")
    with pytest.raises(ValueError, match="kind 'window' does not use double_gaussian"):
        Variation(
            name="w", source="w", kind="window", window=(82, 98), double_gaussian={"fraction": 0.1}
        )
    with pytest.raises(
        ValueError, match=r"variation 's': fit config: field 'double_gaussian\.fraction' is 2\.0"
    ):
        Variation(
            name="s",
            source="m",
            kind="smearing",
            smearing="double-gaussian",
            double_gaussian={"fraction": 2.0},
        )


def test_refill_variations_need_the_inputs(nominal):
    _, hset = nominal
    with pytest.raises(InvalidConfig, match="r9_boundary_095, et_30_25, id_tight refill"):
        run_systematics(hset)


def test_move_boundary():
    s = move_boundary(default_categories(), "r9", 0.96, 0.95)
    assert [c.r9 for c in s.scale[:5]] == [(0.0, 0.95)] * 4 + [(0.95, 10.0)]
    assert [c.r9 for c in s.smear[4:5]] == [(0.95, 10.0)]
    with pytest.raises(InvalidConfig, match=r"no category has a r9 edge at 0\.9; edges present"):
        move_boundary(default_categories(), "r9", 0.9, 0.95)
    with pytest.raises(InvalidConfig, match=r"boundary variation eta 1 -> 3"):
        move_boundary(default_categories(), "eta", 1.0, 3.0)


def test_load_systematics_config(tmp_path):
    p = tmp_path / "syst.yaml"
    p.write_text(
        "combine: max\n"
        "variations:\n"
        "  - {name: w, source: window, kind: window, window: [82, 98]}\n"
        "  - {name: et, source: et, kind: selection, selection: {min_et_lead: 32}}\n"
        "  - {name: dg, source: smearing_model, kind: smearing, smearing: double-gaussian,\n"
        "     double_gaussian: {fraction: 0.1, width_ratio: 3}}\n"
    )
    cfg = load_systematics_config(p)
    assert cfg.combine == "max"
    assert cfg.variations[1].selection == {"min_et_lead": 32}
    assert cfg.variations[2].smearing == "double-gaussian"
    assert cfg.variations[2].double_gaussian == {"fraction": 0.1, "width_ratio": 3.0}
    p.write_text("variations:\n  - {name: w, source: window, kind: window}\n")
    with pytest.raises(InvalidConfig, match="kind 'window' needs window"):
        load_systematics_config(p)
    p.write_text(
        "variations:\n  - {name: s, source: id, kind: selection, selection: {id_lvl: tight}}\n"
    )
    with pytest.raises(InvalidConfig, match="selection keys \\['id_lvl'\\]; allowed"):
        load_systematics_config(p)
    p.write_text("variation: []\n")
    with pytest.raises(InvalidConfig, match="field 'variation'"):
        load_systematics_config(p)
    p.write_text(
        "variations:\n  - {name: a, source: w, kind: window, window: [82, 98]}\n"
        "  - {name: a, source: w, kind: window, window: [80, 98]}\n"
    )
    with pytest.raises(InvalidConfig, match="repeated: a"):
        load_systematics_config(p)


def test_cli_systematics_bad_config(nominal, demo_ecalelf, tmp_path):
    """A bad systematics YAML: exit 1 before any work (the runs through the CLI are
    ``test_cli_systematics_histograms_alone`` and ``test_cli_systematics_one_cluster``; the
    study from histograms with refills from the inputs is ``study``)."""
    from zcalib.cli import main
    from zcalib.histograms import save_histograms

    h = save_histograms(nominal[1], tmp_path / "h.npz")
    cfg = tmp_path / "syst.yaml"
    cfg.write_text("variations:\n  - {name: w, source: window, kind: windows}\n")
    out = tmp_path / "out"
    argv = ["systematics", "--data", str(demo_ecalelf.data), "--histograms", str(h)]
    argv += ["--categories", str(ROOT / "configs" / "cats_eta_r9.tsv"), "--config", str(cfg)]
    assert main([*argv, "--out", str(out)]) == 1
    assert not out.exists()


def test_cli_systematics_histograms_alone(nominal, tmp_path, capsys):
    """``--histograms`` without inputs: window variations refit them; a variation that
    refills is refused before any work, in one line naming it and what to give."""
    from zcalib.cli import main
    from zcalib.histograms import save_histograms

    h = save_histograms(nominal[1], tmp_path / "h.npz")
    cats = str(ROOT / "configs" / "cats_eta_r9.tsv")
    cfg = tmp_path / "syst.yaml"
    cfg.write_text("variations:\n  - {name: w, source: window, kind: window, window: [82, 98]}\n")
    argv = ["systematics", "--histograms", str(h), "--categories", cats, "--mc-stat", "none"]
    assert main([*argv, "--config", str(cfg), "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "systematics.json").read_text())["variations"]
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "b")]) == 1
    assert capsys.readouterr().err == (
        "zcalib: error: variations r9_boundary_095, et_30_25, id_tight refill the histograms: "
        "give the inputs (--data/--mc or --datasets) with --histograms, or only "
        "window/smearing variations\n"
    )
    assert not (tmp_path / "b").exists()


def test_nominal_histograms_filled_by_the_study(nominal):
    """``run_systematics(None, ...)`` fills the nominal histograms itself (on the cluster of
    the refills: one call, one cluster, as ``zcalib systematics`` without --histograms): the
    same nominal fit as from histograms filled beforehand."""
    from zcalib.fit import fit_histograms
    from zcalib.runner import RunOptions

    cfg, hset = nominal
    window = SystematicsConfig(
        variations=(Variation(name="w", source="window", kind="window", window=(82.0, 98.0)),)
    )
    res = run_systematics(
        None,
        dataset_config=cfg,
        scheme=default_categories(),
        config=window,
        options=RunOptions(executor="iterative", progress=False),
    )
    before = fit_histograms(hset, FitConfig(), scheme=default_categories())
    np.testing.assert_array_equal(res.nominal.scale_values(), before.scale_values())
    np.testing.assert_array_equal(res.nominal.smear_values(), before.smear_values())
    with pytest.raises(InvalidConfig) as err:
        run_systematics(None, config=window)
    assert str(err.value) == (
        "filling the nominal histograms (no hset) needs the inputs (dataset_config / "
        "--data --mc / --datasets) and the scheme"
    )


@pytest.mark.cluster
def test_cli_systematics_one_cluster(demo_ecalelf, tmp_path, capsys):
    """``zcalib systematics`` on Dask: the nominal fill and the refill of a selection
    variation run on one LocalCluster (one per command), through ``run_step`` (its payload
    and fit_result.json, the systematic in escale)."""
    from zcalib.cli import main

    cfg = tmp_path / "syst.yaml"
    cfg.write_text(
        "variations:\n  - {name: et, source: et, kind: selection, "
        "selection: {min_et_lead: 30, min_et_sublead: 25}}\n"
    )
    out = tmp_path / "out"
    argv = ["systematics", "--data", str(demo_ecalelf.data), "--mc", str(demo_ecalelf.mc)]
    argv += ["--categories", str(ROOT / "configs" / "cats_eta_r9.tsv"), "--config", str(cfg)]
    argv += ["--out", str(out), "--executor", "dask", "--workers", "1", "--no-progress", "-v"]
    assert main([*argv, "--mc-stat", "none"]) == 0
    logged = " ".join(capsys.readouterr().out.split())  # the rich log handler prints
    assert logged.count("local Dask cluster with") == 1
    assert logged.count("systematics: refilling histograms for variation 'et'") == 1
    rec = json.loads((out / "systematics.json").read_text())
    fit = json.loads((out / "fit_result.json").read_text())
    assert rec["run_id"] == fit["run_id"] == file_run_id(out / "corrections.json")
    syst = [c["syst"] for c in rec["categories"] if c["kind"] == "scale"]
    assert all(s > 0 for s in syst)
    cset = correctionlib.CorrectionSet.from_file(str(out / "corrections.json"))
    scale = cset.compound["EGMScale_Compound_Ele_2022preEE"]
    scheme = default_categories()
    for k, cat in enumerate(scheme.scale):
        eta, r9 = _point(cat)
        row = next(c for c in rec["categories"] if c["kind"] == "scale" and c["index"] == k)
        escale = scale.evaluate("escale", 1.0, eta, r9, eta, 40.0, 12.0)
        assert escale == pytest.approx(row["total"])
