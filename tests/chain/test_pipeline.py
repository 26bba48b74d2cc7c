"""The whole chain on a drifted demo sample: outputs, truth recovery, closure, caching, resume."""

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
)


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
    assert res.ran == ("run_divide", "time_stability", "step2", "zweights", "step3", "step4")
    assert set(res.final) == {"corrections", "scales", "smearings", "summary"}
    from zcalib.corrections import validate_file

    model = validate_file(res.final["corrections"])
    names = [c.name for c in model.corrections]
    assert names == [
        "time_stability_scale",
        "step2_scale",
        "step3_scale",
        "step4_scale",
        "step3_smear",
        "zweights",
    ]
    (compound,) = model.compound_corrections
    assert compound.name == "zcalib_scale_compound"
    assert compound.stack == names[:4]
    assert (res.output / "time_stability" / "time_stability.png").stat().st_size > 10_000
    summary = json.loads(res.final["summary"].read_text())
    assert summary["order"] == list(res.ran)
    # the combined legacy file: run bins x fine categories x Et bins, all scales positive
    from zcalib.corrections import read_legacy

    table = read_legacy(res.final["scales"])
    n_bins = res.steps["run_divide"].summary["bins"]
    assert len(table) == n_bins * 12 * 3
    assert np.all(np.abs(table.values - 1) < 0.03)


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
    args = {"run": run, "AbsScEta": eta, "r9": r9, "pt": pt}
    scale = cs.compound["zcalib_scale_compound"].evaluate(run, eta, r9, pt, "scale")
    mid, width = truth["run_mid"], truth["runs"][1] - truth["runs"][0]
    drift = 1 + truth["drift"] * (run - mid) / width
    cats = scheme_from_dict(truth["categories"]).assign(abs_eta=eta, r9=r9, et=pt)
    n_bins = res.steps["run_divide"].summary["bins"]

    def escale(name):
        c = cs[name]
        return c.evaluate(*[args[v.name] if v.name != "syst" else "escale" for v in c.inputs])

    fits = ("step2_scale", "step3_scale", "step4_scale")
    errs = {n: escale(n) for n in ("time_stability_scale", *fits)}
    pulls = []
    for k, inj in enumerate(truth["scale"]):
        sel = cats == k
        derived = float(np.mean(scale[sel] * drift[sel]))
        sigma = math.sqrt(
            np.mean(errs["time_stability_scale"][sel]) ** 2 / n_bins
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


def test_closure_of_the_final_output(chain_a, drift_sample):
    """Data corrected and MC smeared with the chain's own final file, then re-derived in the
    8-category scheme (scales and smearings free): scales consistent with 1 and smearings
    with 0, each within 3 standard deviations (stat ⊕ MC stat). A smearing is judged in
    σ², the fit's parameter, whose estimate is Gaussian at 0: ``σ²/err(σ²) < 3``."""
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
    assert [s.kind for s in steps] == ["scale"] * 4 + ["smear"]
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
    for c in fit.scales:
        print(f"closure {c.label}: scale-1 = {c.value - 1:+.5f} +- {c.total_stat:.5f}")
        assert abs(c.value - 1) < 3 * c.total_stat
    for c in fit.smears:
        print(
            f"closure {c.label}: smear = {c.value:.5f}, smear^2 = {c.value**2:.2e} "
            f"+- {c.sq_error:.2e} ({c.zero_significance:.2f} sigma from 0)"
        )
        assert c.zero_significance < 3
    # the residual smearings are small in absolute terms too
    assert max(c.value for c in fit.smears) < 0.015


def test_rerun_skips_every_step_and_keeps_outputs(chain_a):
    path, res, _ = chain_a
    before = _bytes(res)
    again = run_pipeline(load_pipeline(path))
    assert again.ran == ()
    assert again.skipped == res.ran
    assert _bytes(again) == before


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
    assert resumed.ran == ("step3", "step4")
    assert _bytes(resumed) == _bytes(ref)
    # --force reruns the step and everything depending on it, with identical results
    forced = run_pipeline(lp, force=("step3",))
    assert forced.ran == ("step3", "step4")
    assert _bytes(forced) == _bytes(ref)


def test_changed_input_reruns_dependents_only(chain_a, drift_sample, tmp_path):
    """A changed step option invalidates that step and the steps depending on it."""
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
    new = tmp_path / "pipeline.yaml"
    new.write_text(yaml.safe_dump(raw, sort_keys=False))
    res = run_pipeline(load_pipeline(new))
    assert res.ran == ("step4",)


@pytest.mark.slow
def test_shipped_demo_pipeline(tmp_path):
    """configs/pipeline_demo.yaml as shipped (300k data / 900k MC, 1 % drift)."""
    import yaml

    from tests.conftest import CONFIGS, ROOT

    raw = yaml.safe_load((CONFIGS / "pipeline_demo.yaml").read_text())
    raw["output"] = str(tmp_path / "out")
    raw["weights"][0]["file"] = str(ROOT / "corrections" / "pileup_demo.json")
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
