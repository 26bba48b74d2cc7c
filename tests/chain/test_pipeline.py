"""The whole chain on a drifted demo sample: outputs, truth recovery, the closure step,
caching, resume."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import uproot

from tests.chain.conftest import truth_of, write_pipeline
from zcalib.chain.config import load_pipeline
from zcalib.chain.pipeline import run_pipeline
from zcalib.outputs import file_run_id

#: Outputs that must be byte-identical between runs (provenance files hold wall times).
PHYSICS_FILES = (
    "final/corrections.json",
    "final/scales.dat",
    "final/smearings.dat",
    "run_divide/run_bins.yaml",
    "run_divide/run_bins.dat",
    "time_stability/corrections.json",
    "time_stability/time_stability_scales.dat",
    "step2/corrections.json",
    "step2/step2_scales.dat",
    "step2/step2_smearings.dat",
    "zweights/corrections.json",
    "step3/corrections.json",
    "step4/corrections.json",
    "step4/step4_only_step.tsv",
    "closure/closure.json",
)

#: The steps of the demo chain, in execution order (the last one is the closure check).
STEPS = ("run_divide", "time_stability", "step2", "zweights", "step3", "step4", "closure")


@pytest.fixture(scope="module")
def chain_a(tmp_path_factory, drift_sample):
    """The demo chain, run once (reference for the other tests)."""
    folder = tmp_path_factory.mktemp("chain_a")
    path = write_pipeline(folder, drift_sample)
    t0 = time.perf_counter()
    res = run_pipeline(load_pipeline(path))
    return path, res, time.perf_counter() - t0


def _bytes(res, names=PHYSICS_FILES):
    return {n: (res.output / n).read_bytes() for n in names}


def test_outputs_of_every_step_and_final(chain_a):
    _, res, wall = chain_a
    print(
        f"\npipeline wall time {wall:.1f} s; per step: "
        + ", ".join(f"{n} {o.wall_time_s:.1f} s" for n, o in res.steps.items())
    )
    assert res.ran == STEPS
    assert set(res.final) == {"corrections", "scales", "smearings", "summary"}
    from zcalib.corrections import validate_file

    model = validate_file(res.final["corrections"])
    names = [c.name for c in model.corrections]
    assert names == [
        "EGMScale_time_stability_2022preEE",
        "EGMScale_step2_2022preEE",
        "EGMScale_step3_2022preEE",
        "EGMScale_step4_2022preEE",
        "EGMScaleUnc_Ele_2022preEE",
        "EGMSmearAndSyst_ElePTsplit_2022preEE",
        "EGMRandomGenerator",
        "zweights",
    ]
    (compound,) = model.compound_corrections
    assert compound.name == "EGMScale_Compound_Ele_2022preEE"
    assert compound.stack == names[:5]
    assert (res.output / "time_stability" / "time_stability.png").stat().st_size > 10_000
    summary = json.loads(res.final["summary"].read_text())
    assert summary["order"] == list(res.ran)
    # the closure step is no correction: not in the final file, the compound or legacy files
    assert not any(n.startswith("closure") for n in names)
    assert "closure" not in res.final["scales"].read_text()
    assert res.steps["closure"].scales == ()
    assert res.steps["closure"].smear is None
    assert res.steps["closure"].weight is None
    assert summary["closure"]["closes"] is True
    assert summary["closure"]["steps"]["closure"]["closes"] is True
    # the combined legacy file: run bins x fine categories x Et bins, all scales positive
    from zcalib.corrections import read_legacy

    table = read_legacy(res.final["scales"])
    n_bins = res.steps["run_divide"].summary["bins"]
    assert len(table) == n_bins * 12 * 3
    assert np.all(np.abs(table.values - 1) < 0.03)


#: Chain outputs whose format has no room for a run id (``zcalib.outputs``): pymin's
#: run-divide table (no comment lines); ``run_bins.yaml`` beside it carries the id.
NO_RUN_ID = ("run_divide/run_bins.dat",)


def test_every_file_of_the_chain_carries_the_run_id(chain_a, drift_sample):
    """Outputs as a unit (issue #15): every file of every step folder (payloads, JSON records,
    legacy and TSV tables, YAML, histograms, plots) names the run that wrote it, each folder
    passes the report's one-run check, and the generated inputs name theirs too."""
    from zcalib.outputs import check_one_run, current_run_id

    _, res, _ = chain_a
    files = sorted(p for p in res.output.rglob("*") if p.is_file() and p.name[0] != ".")
    ids = {str(p.relative_to(res.output)): file_run_id(p) for p in files}
    assert sorted(n for n, rid in ids.items() if rid is None) == list(NO_RUN_ID)
    # one Python session ran the whole chain: one run id in every folder
    assert set(ids.values()) - {None} == {current_run_id()}
    assert {p.suffix for p in files} >= {".json", ".npz", ".dat", ".tsv", ".yaml", ".png"}
    for folder in sorted({p.parent for p in files}):
        assert check_one_run(folder) == current_run_id(), folder
    for path in (drift_sample.truth, drift_sample.data, drift_sample.mc):
        assert file_run_id(path) == current_run_id(), path


def test_every_run_bin_has_min_events(chain_a):
    _, res, _ = chain_a
    pairs = res.steps["run_divide"].summary["pairs"]
    assert min(pairs) >= 5_000
    assert len(pairs) >= 15


def test_time_stability_removes_drift_in_the_chain(chain_a):
    """Before: the 1 % drift gives chi2/ndf >> 1; after (same events): flat."""
    _, res, _ = chain_a
    chi_b, ndf_b = res.steps["time_stability"].summary["chi2_before"]
    chi_a, ndf_a = res.steps["time_stability"].summary["chi2_after"]
    print(
        f"\ntime stability (same events): chi2/ndf before {chi_b:.1f}/{ndf_b}, "
        f"after {chi_a:.1f}/{ndf_a}"
    )
    assert chi_b / ndf_b > 5
    assert chi_a / ndf_a < 1.5


def _electrons(data_path):
    t = uproot.open(data_path)["selected"].arrays(
        ["runNumber", "etaSCEle", "R9Ele", "energy_ECAL_ele"], library="np"
    )
    sl = slice(0, 2)
    run = np.repeat(t["runNumber"].astype(np.int64), 2)
    eta = np.abs(t["etaSCEle"][:, sl].astype(np.float64)).ravel()
    r9 = t["R9Ele"][:, sl].astype(np.float64).ravel()
    pt = (
        t["energy_ECAL_ele"][:, sl].astype(np.float64)
        / np.cosh(t["etaSCEle"][:, sl].astype(np.float64))
    ).ravel()
    keep = (pt > 20) & (eta < 2.5) & ~((eta > 1.4442) & (eta < 1.566))
    return run[keep], eta[keep], r9[keep], pt[keep]


def truth_pulls(res, truth, data_path):
    """(derived - injected) / sigma per injected category.

    derived: the compound correction x the injected drift factor, averaged over the data
    electrons of the category; sigma: the fit steps' errors of the electrons' categories in
    quadrature plus the time-stability error averaged over the run bins."""
    import correctionlib

    from zcalib.categories import scheme_from_dict

    cs = correctionlib.CorrectionSet.from_file(str(res.final["corrections"]))
    run, eta, r9, pt = _electrons(data_path)
    run = run.astype(np.float64)
    twelve = np.full_like(pt, 12.0)
    scale = cs.compound["EGMScale_Compound_Ele_2022preEE"].evaluate(
        "scale", run, eta, r9, eta, pt, twelve
    )
    mid, width = truth["run_mid"], truth["runs"][1] - truth["runs"][0]
    drift = 1 + truth["drift"] * (run - mid) / width
    cats = scheme_from_dict(truth["categories"]).assign(abs_eta=eta, r9=r9, et=pt)
    n_bins = res.steps["run_divide"].summary["bins"]

    def escale(step):
        """The step's own error, from its own payload (pinned at nominal in the final file).

        Evaluated at the raw pt: the per-step errors do not depend on pt here but step4's."""
        own = correctionlib.CorrectionSet.from_file(str(res.output / step / "corrections.json"))
        c = (
            own.compound["EGMScale_Compound_Ele_2022preEE"]
            if step != "time_stability"
            else own["time_stability_scale"]
        )
        return c.evaluate("escale", run, eta, r9, eta, pt, twelve)

    fits = ("step2", "step3", "step4")
    errs = {n: escale(n) for n in ("time_stability", *fits)}
    pulls = []
    for k, inj in enumerate(truth["scale"]):
        sel = cats == k
        derived = float(np.mean(scale[sel] * drift[sel]))
        sigma = math.sqrt(
            np.mean(errs["time_stability"][sel]) ** 2 / n_bins
            + sum(np.mean(errs[n][sel]) ** 2 for n in fits)
        )
        pulls.append((derived - inj) / sigma)
        print(
            f"category {k}: injected {inj:.5f} derived {derived:.5f} +- {sigma:.5f} "
            f"pull {pulls[-1]:+.2f}"
        )
    return np.array(pulls)


def test_final_scales_recover_injected_values(chain_a, drift_sample):
    """The injected per-category scales (and the drift) are recovered within 3 sigma."""
    _, res, _ = chain_a
    pulls = truth_pulls(res, truth_of(drift_sample), drift_sample.data)
    assert np.all(np.abs(pulls) < 3), pulls


def _closure_json(res):
    return json.loads((res.output / "closure" / "closure.json").read_text())


def test_closure_step_closes(chain_a):
    """The closure step (type: closure, 8 η × R9 categories after step4): scales consistent
    with 1 and smearings with 0, each within 3 standard deviations (stat ⊕ MC stat). A
    smearing is judged in σ², the fit's parameter, whose estimate is Gaussian at 0:
    ``σ²/err(σ²) < 3``."""
    _, res, _ = chain_a
    folder = res.output / "closure"
    assert {p.name for p in folder.iterdir()} == {
        "closure.json",
        "fit_result.json",
        "histograms.npz",
        "step.json",
    }
    c = _closure_json(res)
    assert c["status"] == "converged"
    assert len(c["scales"]) == 8
    assert len(c["smears"]) == 8
    assert c["prior_corrections"] == [
        "time_stability/time_stability_scale",
        "step2/EGMScale_Compound_Ele_2022preEE",
        "step3/EGMScale_Compound_Ele_2022preEE",
        "step4/EGMScale_Compound_Ele_2022preEE",
    ]
    assert c["mc_smearing"] == "step3/EGMSmearAndSyst_ElePTsplit_2022preEE"
    assert c["mc_weights"] == ["pileup", "zweights"]
    for e in c["scales"]:
        print(f"closure {e['label']}: scale-1 = {e['residual']:+.5f} +- {e['error']:.5f}")
        assert abs(e["pull"]) < 3
        assert e["pull"] == pytest.approx(e["residual"] / e["error"], rel=1e-12)
    for e in c["smears"]:
        print(
            f"closure {e['label']}: smear = {e['value']:.5f}, smear^2 = {e['sigma2']:.2e} "
            f"+- {e['sq_error']:.2e} ({e['zero_significance']:.2f} sigma from 0)"
        )
        assert e["zero_significance"] < 3
    assert c["closes"] is True
    assert c["max_scale_pull"] == max(abs(e["pull"]) for e in c["scales"])
    assert c["max_smear_significance"] == max(e["zero_significance"] for e in c["smears"])
    assert c["verdict"] == res.steps["closure"].summary["verdict"]
    assert c["verdict"].startswith("closure step 'closure': scales within ")
    assert c["verdict"].endswith("(threshold 3σ) — closes")
    # the residual smearings are small in absolute terms too
    assert max(e["value"] for e in c["smears"]) < 0.015
    # the final summary records the verdict
    summary = json.loads(res.final["summary"].read_text())
    assert summary["closure"]["steps"]["closure"]["verdict"] == c["verdict"]


def test_step_needing_the_closure_step(chain_a, tmp_path):
    """A step needing the closure step gets the prior corrections it would get without it,
    and its input hash does not depend on the closure step's output."""
    import shutil
    from dataclasses import replace

    import yaml

    import zcalib.chain.pipeline as pl
    from tests.conftest import CONFIGS
    from zcalib.categories import load_categories
    from zcalib.corrections import build_scale_correction, write_correction_set
    from zcalib.corrections.steps import load_correction_steps

    path, ref, _ = chain_a
    scheme = load_categories(CONFIGS / "cats_eta_r9.yaml")
    neutral = write_correction_set(
        tmp_path / "neutral.json",
        [build_scale_correction("neutral_scale", scheme, [1.0] * 8, [0.0] * 8, description="1")],
        description="neutral",
    )
    out = tmp_path / "out"
    shutil.copytree(ref.output, out)
    raw = yaml.safe_load(path.read_text())
    raw["output"] = str(out)
    raw["steps"] += [
        {"name": "after", "type": "corrections", "file": str(neutral), "needs": ["closure"]},
    ]
    new = tmp_path / "pipeline.yaml"
    new.write_text(yaml.safe_dump(raw, sort_keys=False))
    lp = load_pipeline(new)
    res = run_pipeline(lp)
    assert res.ran == ("after",)
    assert pl._prior("after", lp, res.steps) == pl._prior("closure", lp, res.steps)
    assert [s.name for s in load_correction_steps(res.final["corrections"])] == [
        "EGMScale_Compound_Ele_2022preEE",
        "EGMSmearAndSyst_ElePTsplit_2022preEE",
    ]
    final = json.loads(res.final["corrections"].read_text())
    assert final["compound_corrections"][0]["stack"][-2:] == [
        "EGMScale_after_2022preEE",
        "EGMScaleUnc_Ele_2022preEE",
    ]
    setup = pl._Setup(lp, None)
    changed = {**res.steps, "closure": replace(res.steps["closure"], output_hash="other")}
    assert pl._input_hash("after", setup, changed) == pl._input_hash("after", setup, res.steps)
    changed = {**res.steps, "step4": replace(res.steps["step4"], output_hash="other")}
    assert pl._input_hash("after", setup, changed) != pl._input_hash("after", setup, res.steps)


def test_closure_of_the_final_output(chain_a, drift_sample):
    """Data corrected and MC smeared with the chain's own final file, then re-derived by hand
    in the 8-category scheme (scales and smearings free): the same inputs and fit as the
    closure step, so the same residuals (to 1e-9)."""
    from tests.conftest import ROOT
    from zcalib.chain.zweights import load_zweight_spec
    from zcalib.config import dataset_config_from_files
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.fit import FitConfig, fit_histograms
    from zcalib.generate import default_categories
    from zcalib.runner import RunOptions, build_histograms, load_weight

    _, res, _ = chain_a
    final = res.final["corrections"]
    steps = tuple(load_correction_steps(final))
    assert [s.kind for s in steps] == ["scale", "smear"]  # the compound, the smearing
    weights = (
        load_weight("pileup", ROOT / "corrections" / "pileup_demo.json"),
        load_zweight_spec(final, "zweights", weight_name="zweights"),
    )
    opts = RunOptions(executor="iterative", progress=False, chunksize=200_000)
    cfg = dataset_config_from_files(data=[str(drift_sample.data)], mc=[str(drift_sample.mc)])
    scheme = default_categories()
    hset = build_histograms(
        cfg, scheme, weights=weights, corrections=steps, smear_seed=1, options=opts
    )
    assert {"zweights_up", "zweights_down", "pileup_up", "pileup_down"} <= set(hset.variations)
    fit = fit_histograms(hset, FitConfig(), scheme=scheme).raise_if_failed()
    assert fit.config.mc_stat == "bootstrap"
    step = _closure_json(res)
    for c, e in zip(fit.scales, step["scales"], strict=True):
        assert e["label"] == c.label
        assert e["residual"] == pytest.approx(c.value - 1, rel=0, abs=1e-9)
        assert e["error"] == pytest.approx(c.total_stat, rel=0, abs=1e-9)
        assert abs(c.value - 1) < 3 * c.total_stat
    for c, e in zip(fit.smears, step["smears"], strict=True):
        assert e["label"] == c.label
        assert e["value"] == pytest.approx(c.value, rel=0, abs=1e-9)
        assert e["sq_error"] == pytest.approx(c.sq_error, rel=0, abs=1e-9)
        assert e["zero_significance"] == pytest.approx(c.zero_significance, rel=1e-9, abs=1e-9)
        assert c.zero_significance < 3


def test_rerun_skips_every_step_and_keeps_outputs(chain_a, caplog):
    import logging

    path, res, _ = chain_a
    before = _bytes(res)
    with caplog.at_level(logging.INFO, logger="zcalib"):
        again = run_pipeline(load_pipeline(path))
    assert again.ran == ()
    assert again.skipped == res.ran
    assert _bytes(again) == before
    # the cached closure step reports its verdict again (and, as it closes, no warning)
    assert res.steps["closure"].summary["verdict"] in caplog.messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_interrupted_run_resumes_to_identical_outputs(chain_a, drift_sample, tmp_path, monkeypatch):
    """Stop after the time stability, then crash inside step3, then resume."""
    import zcalib.chain.pipeline as pl

    _, ref, _ = chain_a
    path = write_pipeline(tmp_path / "b", drift_sample)
    lp = load_pipeline(path)
    first = run_pipeline(lp, stop_after="time_stability")
    assert first.ran == ("run_divide", "time_stability")
    assert first.final == {}
    real = pl._run_fit

    def crash(step, *args, **kw):
        if step.name == "step3":
            raise KeyboardInterrupt
        return real(step, *args, **kw)

    monkeypatch.setattr(pl, "_run_fit", crash)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(lp)
    monkeypatch.setattr(pl, "_run_fit", real)
    resumed = run_pipeline(lp)
    assert resumed.skipped == ("run_divide", "time_stability", "step2", "zweights")
    assert resumed.ran == ("step3", "step4", "closure")
    assert _bytes(resumed) == _bytes(ref)
    # --force reruns the step and everything depending on it, with identical results
    forced = run_pipeline(lp, force=("step3",))
    assert forced.ran == ("step3", "step4", "closure")
    assert _bytes(forced) == _bytes(ref)


def test_changed_input_reruns_dependents_only(chain_a, drift_sample, tmp_path, caplog):
    """A changed step option invalidates that step and the steps depending on it.

    The closure step reruns anyway, so it also gets a threshold it cannot pass: a chain that
    does not close warns, naming the worst categories, and still writes the final outputs
    with the verdict."""
    import logging
    import shutil

    import yaml

    path, ref, _ = chain_a
    out = tmp_path / "c"
    shutil.copytree(ref.output, out)
    raw = yaml.safe_load(path.read_text())
    raw["output"] = str(out)
    for s in raw["steps"]:
        if s["name"] == "step4":
            s["fit"] = {"window": [81, 99]}
        if s["name"] == "closure":
            s["max_significance"] = 0.01
    new = tmp_path / "pipeline.yaml"
    new.write_text(yaml.safe_dump(raw, sort_keys=False))
    with caplog.at_level(logging.INFO, logger="zcalib"):
        res = run_pipeline(load_pipeline(new))
    assert res.ran == ("step4", "closure")
    c = _closure_json(res)
    assert c["closes"] is False
    assert c["max_significance"] == 0.01
    assert c["verdict"].endswith("(threshold 0.01σ) — does NOT close")
    assert c["verdict"] in caplog.messages
    (warning,) = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "zcalib.chain.pipeline"
    ]
    # (nearly) every category fails; the warning names the 5 worst, worst first
    ranked = sorted(
        [
            (abs(e["pull"]), f"{e['label']} (pull {e['pull']:+.1f})")
            for e in c["scales"]
            if not e["closes"]
        ]
        + [
            (e["zero_significance"], f"{e['label']} ({e['zero_significance']:.1f}σ from 0)")
            for e in c["smears"]
            if not e["closes"]
        ],
        key=lambda b: -b[0],
    )
    assert len(ranked) > 5
    assert warning == (
        "closure step 'closure' does not close (threshold 0.01σ): "
        + ", ".join(b[1] for b in ranked[:5])
        + f", and {len(ranked) - 5} more"
    )
    worst = max(c["scales"], key=lambda e: abs(e["pull"]))
    summary = json.loads(res.final["summary"].read_text())
    assert summary["closure"]["closes"] is False
    assert summary["closure"]["steps"]["closure"]["worst_scale"] == worst["label"]


@pytest.mark.slow
def test_shipped_demo_pipeline(tmp_path):
    """configs/pipeline_demo.yaml as shipped (300k data / 900k MC, 1 % drift)."""
    import yaml

    from tests.conftest import CONFIGS, ROOT

    raw = yaml.safe_load((CONFIGS / "pipeline_demo.yaml").read_text())
    raw["output"] = str(tmp_path / "out")
    raw["mc_weights"][0]["file"] = str(ROOT / "corrections" / "pileup_demo.json")
    for s in raw["steps"]:
        if "categories" in s:
            s["categories"] = str(CONFIGS / s["categories"])
    path = tmp_path / "pipeline_demo.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    t0 = time.perf_counter()
    res = run_pipeline(load_pipeline(path))
    print(f"\nshipped demo: {time.perf_counter() - t0:.1f} s (incl. generating the inputs)")
    chi_b, ndf_b = res.steps["time_stability"].summary["chi2_before"]
    assert chi_b / ndf_b > 5
    truth = json.loads((tmp_path / "out" / "data" / "truth.json").read_text())
    pulls = truth_pulls(res, truth, tmp_path / "out" / "data" / "data.root")
    assert np.all(np.abs(pulls) < 3), pulls


def test_public_egm_example_calls_on_the_pipeline_payload(chain_a, drift_sample):
    """The EGM example's calls, unchanged, on final/corrections.json: the compound equals the
    steps (each from its own file) stacked by hand, and its escale their errors combined in
    quadrature by hand."""
    import awkward as ak
    import correctionlib

    from tests.corrections.conftest import _run_correction_validate

    _, res, _ = chain_a
    final = res.final["corrections"]
    out = _run_correction_validate(final)
    assert out.returncode == 0, out.stdout + out.stderr
    cset = correctionlib.CorrectionSet.from_file(str(final))
    scale_evaluator = cset.compound["EGMScale_Compound_Ele_2022preEE"]
    smear_and_syst_evaluator = cset["EGMSmearAndSyst_ElePTsplit_2022preEE"]
    run, eta, r9, pt = _electrons(drift_sample.data)
    run, eta, r9, pt = run[:5000], eta[:5000], r9[:5000], pt[:5000]
    data_electrons = ak.Array({"seedGain": np.full(len(pt), 12), "pt": pt, "ScEta": eta, "r9": r9})
    scale = scale_evaluator.evaluate(
        "scale",
        run,  # numpy int64, as in the example
        data_electrons.ScEta,
        data_electrons.r9,
        np.abs(data_electrons.ScEta),
        data_electrons.pt,
        data_electrons.seedGain,
    )
    escale = scale_evaluator.evaluate("escale", run, eta, r9, eta, pt, np.full(len(pt), 12))
    # by hand: each step's own payload, pt updated along the stack
    total, rel2, p = np.ones_like(pt), np.zeros_like(pt), pt.copy()
    twelve, frun = np.full_like(pt, 12.0), run.astype(np.float64)
    for step in ("time_stability", "step2", "step3", "step4"):
        own = correctionlib.CorrectionSet.from_file(str(res.output / step / "corrections.json"))
        c = (
            own["time_stability_scale"]
            if step == "time_stability"
            else own.compound["EGMScale_Compound_Ele_2022preEE"]
        )
        s = c.evaluate("scale", frun, eta, r9, eta, p, twelve)
        e = c.evaluate("escale", frun, eta, r9, eta, p, twelve)
        total, rel2, p = total * s, rel2 + (e / s) ** 2, p * s
    np.testing.assert_allclose(np.asarray(scale), total, rtol=1e-13)
    near_edge = np.zeros(len(pt), bool)  # step4's 1 % Et edges: the documented +-delta/2 band
    for edge in (35.0, 45.0):
        near_edge |= np.abs(p / edge - 1) < 0.01
    good = ~near_edge
    np.testing.assert_allclose(escale[good], (total * np.sqrt(rel2))[good], rtol=1e-9)
    assert good.mean() > 0.8
    assert np.all((escale[good] > 1e-4) & (escale[good] < 1e-2))
    # MC: smear with the shared generator, uncertainties relative
    smear = smear_and_syst_evaluator.evaluate("smear", pt, r9, eta)
    esmear = smear_and_syst_evaluator.evaluate("esmear", pt, r9, eta)
    unc_scale = smear_and_syst_evaluator.evaluate("escale", pt, r9, eta)
    assert np.all(smear >= 0)
    assert np.all(esmear > 0)
    assert np.all(unc_scale >= 0)
    assert np.all(unc_scale < 0.02)
    z = cset["EGMRandomGenerator"].evaluate("stdnormal", pt, r9, eta, np.arange(len(pt)) * 1.0)
    assert abs(np.mean(z)) < 0.05
    assert abs(np.std(z) - 1) < 0.05


@pytest.mark.slow
def test_pipeline_folds_systematics_into_the_payload(tmp_path, demo_ecalelf):
    """A fit step with `systematics:` refits each variation; escale/esmear = stat (+) MC stat
    (+) syst, each component in fit_result.json."""
    import correctionlib
    import yaml

    from tests.conftest import CONFIGS

    syst_yaml = tmp_path / "syst.yaml"
    syst_yaml.write_text(
        yaml.safe_dump(
            {
                "schema_version": 1,
                "combine": "quadrature",
                "variations": [
                    {"name": "narrow", "source": "window", "kind": "window", "window": [82, 98]},
                    {"name": "wide", "source": "window", "kind": "window", "window": [78, 102]},
                ],
            }
        )
    )
    steps = [
        {
            "name": "step2",
            "type": "fit",
            "categories": str(CONFIGS / "cats_eta_r9.yaml"),
            "systematics": str(syst_yaml),
        }
    ]
    path = write_pipeline(tmp_path, demo_ecalelf, steps=steps, era="2024")
    res = run_pipeline(load_pipeline(path))
    rec = json.loads((res.output / "step2" / "fit_result.json").read_text())
    # written with the step, in the same run (zcalib.outputs)
    assert file_run_id(res.output / "step2" / "systematics.json") == rec["run_id"]
    cset = correctionlib.CorrectionSet.from_file(str(res.final["corrections"]))
    comp = cset.compound["EGMScale_Compound_Ele_2024"]
    mc = cset["EGMSmearAndSyst_ElePTsplit_2024"]
    n_syst = 0
    for c in rec["categories"]:
        lo, hi = c["bins"]["abs_eta"]
        rlo, rhi = c["bins"].get("r9", [None, None])
        eta = 0.5 * (lo + hi)
        r9 = 0.5 * ((rlo if rlo is not None else 0.5) + (rhi if rhi is not None else 1.2))
        total = math.sqrt(c["stat"] ** 2 + c["mc_stat"] ** 2 + c["syst"] ** 2)
        assert c["total"] == pytest.approx(total, rel=1e-12)
        assert set(c["syst_by_source"]) == {"window"}
        n_syst += c["syst"] > 0
        if c["type"] == "scale":
            got = comp.evaluate("escale", 1.0, eta, r9, eta, 40.0, 12.0)
            assert got == pytest.approx(total, rel=1e-9)  # S r = s (e / s)
        else:
            assert mc.evaluate("esmear", 40.0, r9, eta) == pytest.approx(total, rel=1e-12)
    assert n_syst == len(rec["categories"])


def test_a_rerun_step_leaves_nothing_of_its_previous_run(tmp_path, demo_ecalelf):
    """A step that runs again (changed options, --force) starts from an empty folder: the
    iter0/ scales of a 2-iteration run and a file dropped in by hand are gone, every file of
    the folder carries the new run id and `report` accepts it; the other step stays cached."""
    import yaml

    from tests.conftest import CONFIGS
    from zcalib.cli import main
    from zcalib.outputs import check_one_run, file_run_id

    cats = str(CONFIGS / "cats_eta_r9.yaml")
    steps = [
        {"name": "step2", "type": "fit", "categories": cats, "iterations": 2},
        {"name": "other", "type": "fit", "categories": cats},
    ]
    path = write_pipeline(tmp_path, demo_ecalelf, steps=steps)
    assert main(["pipeline", str(path), "-q"]) == 0  # each command is one run (its own id)
    folder = tmp_path / "out" / "step2"
    assert (folder / "iter0" / "corrections.json").is_file()
    old = check_one_run(folder)
    (folder / "notes.txt").write_text("left by hand\n")
    raw = yaml.safe_load(path.read_text())
    raw["steps"][0]["iterations"] = 1
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "other").iterdir()}
    assert main(["pipeline", str(path), "-q"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "other").iterdir()} == cached
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "corrections.json",
        "fit_result.json",
        "histograms.npz",
        "step.json",
        "step2_only_step.tsv",
        "step2_scales.dat",
        "step2_smearings.dat",
    ]
    new = check_one_run(folder)
    assert new is not None
    assert new != old
    assert {file_run_id(folder / n) for n in names} == {new}
    assert main(["report", str(folder), "-q"]) == 0


def test_a_step_cannot_use_the_final_or_generated_inputs_folder(tmp_path, demo_ecalelf):
    """Step folders are emptied when a step reruns: a step named like the final payload's
    folder (or the generated inputs') is refused at load time, naming both."""
    from tests.conftest import CONFIGS
    from zcalib.exceptions import InvalidConfig

    cats = str(CONFIGS / "cats_eta_r9.yaml")
    path = write_pipeline(
        tmp_path, demo_ecalelf, steps=[{"name": "final", "type": "fit", "categories": cats}]
    )
    with pytest.raises(InvalidConfig) as err:
        load_pipeline(path)
    assert str(err.value) == (
        f"{path}: step 'final': its folder {tmp_path / 'out' / 'final'} is the final payload's "
        "folder; rename the step"
    )
