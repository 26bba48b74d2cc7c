"""The EGM Run-3 payload layout: the public EGM example's calls on a `zcalib fit` payload,
the stacked uncertainty against per-step errors combined by hand, systematics folded in,
the shared random numbers, and `zcalib apply`."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import correctionlib
import numpy as np
import pytest

from tests.conftest import CONFIGS
from tests.corrections.conftest import _run_correction_validate
from zcalib.categories import load_categories
from zcalib.cli import main
from zcalib.corrections import (
    MC_SYST_KEYS,
    EgmNames,
    ScaleSource,
    build_scale_correction,
    build_smear_correction,
    egm_corrections,
    write_correction_set,
)

ERA = "2023preBPIX"
NAMES = EgmNames(ERA, "Ele")


def _validate(path: Path) -> None:
    out = _run_correction_validate(path)  # the `correction validate` CLI
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, demo_ecalelf):
    """`zcalib fit` on the generated demo sample, era 2023preBPIX."""
    out = tmp_path_factory.mktemp("fit")
    argv = [
        "fit",
        "--data",
        str(demo_ecalelf.data),
        "--mc",
        str(demo_ecalelf.mc),
        "--categories",
        str(CONFIGS / "cats_eta_r9.tsv"),
        "--out",
        str(out),
        "--step",
        "step2",
        "--era",
        ERA,
        "--executor",
        "iterative",
        "--no-progress",
    ]
    assert main(argv) == 0
    return out, json.loads((out / "fit_result.json").read_text())


def _category(record, kind, eta, r9):
    for c in record["categories"]:
        b = c["bins"]
        lo, hi = b["abs_eta"]
        rlo, rhi = b.get("r9", [None, None])
        if (
            c["type"] == kind
            and lo <= eta < hi
            and (rlo is None or rlo <= r9)
            and (rhi is None or r9 < rhi)
        ):
            return c
    raise AssertionError((kind, eta, r9))


def test_public_egm_example_calls_on_the_fit_payload(fitted) -> None:
    """egmScaleAndSmearingExample.py's calls, unchanged (numpy int run and seedGain arrays,
    awkward records), return the fit's values."""
    out, record = fitted
    path = out / "corrections.json"
    _validate(path)
    assert record["payload"]["compound"] == f"EGMScale_Compound_Ele_{ERA}"
    n = 1000
    rng = np.random.default_rng(seed=125)
    data_electrons = ak.Array(
        {
            "seedGain": np.full(n, 12),
            "pt": rng.normal(loc=50.0, scale=1.0, size=n),
            "ScEta": np.full(n, 0.0),
            "r9": np.full(n, 0.99),
        }
    )
    data_run = np.full(n, 324219)
    mc_electrons = ak.zip(
        {
            "seedGain": np.full(n, 12),
            "pt": rng.normal(loc=50.0, scale=1.0, size=n),
            "ScEta": np.full(n, 0.0),
            "r9": np.full(n, 0.99),
        }
    )
    cset = correctionlib.CorrectionSet.from_file(str(path))
    scale_evaluator = cset.compound[f"EGMScale_Compound_Ele_{ERA}"]
    smear_and_syst_evaluator = cset[f"EGMSmearAndSyst_ElePTsplit_{ERA}"]
    scale = scale_evaluator.evaluate(
        "scale",
        data_run,
        data_electrons.ScEta,
        data_electrons.r9,
        np.abs(data_electrons.ScEta),
        data_electrons.pt,
        data_electrons.seedGain,
    )
    smear = smear_and_syst_evaluator.evaluate(
        "smear", mc_electrons.pt, mc_electrons.r9, np.abs(mc_electrons.ScEta)
    )
    unc_smear = smear_and_syst_evaluator.evaluate(
        "esmear", mc_electrons.pt, mc_electrons.r9, np.abs(mc_electrons.ScEta)
    )
    unc_scale = smear_and_syst_evaluator.evaluate(
        "escale", mc_electrons.pt, mc_electrons.r9, np.abs(mc_electrons.ScEta)
    )
    sc = _category(record, "scale", 0.0, 0.99)
    sm = _category(record, "smear", 0.0, 0.99)
    np.testing.assert_allclose(np.asarray(scale), sc["value"], rtol=1e-14)
    np.testing.assert_allclose(np.asarray(smear), sm["value"], rtol=1e-14)
    np.testing.assert_allclose(np.asarray(unc_smear), sm["total"], rtol=1e-14)
    # the MC scale uncertainty is relative: the data scale's total error / scale
    np.testing.assert_allclose(np.asarray(unc_scale), sc["total"] / sc["value"], rtol=1e-13)
    assert sc["total"] == pytest.approx(np.hypot(sc["stat"], sc["mc_stat"]), rel=1e-12)
    assert sc["syst"] == 0.0
    # the C++ call: every numeric input a double (EGMCorrectionManager casts to double)
    args = (324219.0, 0.0, 0.99, 0.0, 50.0, 12.0)
    assert scale_evaluator.evaluate("escale", *args) == pytest.approx(sc["total"], rel=1e-13)
    up = scale_evaluator.evaluate("scale_up", *args)
    down = scale_evaluator.evaluate("scale_down", *args)
    assert up == pytest.approx(sc["value"] + sc["total"], rel=1e-13)
    assert down == pytest.approx(sc["value"] - sc["total"], rel=1e-13)
    keys = [smear_and_syst_evaluator.evaluate(k, 50.0, 0.99, 0.0) for k in MC_SYST_KEYS]
    assert keys[2] == pytest.approx(keys[0] + keys[1])  # smear_up
    assert keys[5] == pytest.approx(1 + keys[4])
    assert keys[6] == pytest.approx(1 - keys[4])
    # the inputs: syst first, every numeric input real, the same whatever the categories
    assert [(v.name, v.type) for v in scale_evaluator.inputs] == [("syst", "string")] + [
        (n, "real") for n in ("run", "ScEta", "r9", "AbsScEta", "pt", "seedGain")
    ]
    assert [v.name for v in smear_and_syst_evaluator.inputs] == ["syst", "pt", "r9", "AbsScEta"]
    assert sorted(cset) == sorted(
        [
            f"EGMScale_step2_{ERA}",
            f"EGMScaleUnc_Ele_{ERA}",
            f"EGMSmearAndSyst_ElePTsplit_{ERA}",
            "EGMRandomGenerator",
        ]
    )


def test_unknown_era_is_rejected(tmp_path, capsys) -> None:
    rc = main(
        [
            "fit",
            "--histograms",
            str(tmp_path / "h.npz"),
            "--categories",
            str(CONFIGS / "cats_eta_r9.tsv"),
            "--out",
            str(tmp_path / "o"),
            "--era",
            "2022",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "zcalib: error: --era: unknown era '2022'; allowed: 2016preVFP, 2016postVFP, 2017, "
        "2018, 2022preEE, 2022postEE, 2023preBPIX, 2023postBPIX, 2024, 2025"
    )
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------- stacked uncertainty


@pytest.fixture
def two_steps(tmp_path):
    """Step A: 8 |eta| x R9 categories; step B: |eta| x Et (40 GeV edge)."""
    et = tmp_path / "et.yaml"
    et.write_text(
        "scale:\n"
        "  - {eta: [0, 1.4442], et: [0, 40]}\n"
        "  - {eta: [0, 1.4442], et: [40, 14000]}\n"
        "  - {eta: [1.566, 2.5], et: [0, 40]}\n"
        "  - {eta: [1.566, 2.5], et: [40, 14000]}\n"
        "smear:\n"
        "  - {eta: [0, 1.4442], et: [0, 14000]}\n"
        "  - {eta: [1.566, 2.5], et: [0, 14000]}\n"
    )
    s8 = load_categories(CONFIGS / "cats_eta_r9.tsv")
    s_et = load_categories(et)
    a_val = np.array([1.02, 1.01, 0.99, 0.98, 1.03, 1.0, 0.97, 1.05])
    a_err = np.array([1e-3, 2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3, 8e-3])
    b_val = np.array([1.003, 0.997, 1.004, 0.996])
    b_err = np.array([2e-3, 3e-3, 4e-3, 5e-3])
    a = build_scale_correction("a", s8, a_val, a_err, description="a")
    b = build_scale_correction("b", s_et, b_val, b_err, description="b")
    smear = build_smear_correction(
        NAMES.smear, s8, np.linspace(0.005, 0.02, 8), np.full(8, 1e-3), description="m"
    )
    corrs, comps = egm_corrections(
        NAMES,
        [ScaleSource.from_correction(a, NAMES.step("a")), ScaleSource.from_correction(b, "X")],
        smear,
        description="t",
    )
    path = write_correction_set(tmp_path / "two.json", corrs, comps, description="t")
    return path, a, b


def test_compound_escale_is_the_quadrature_of_the_steps(two_steps) -> None:
    path, a, b = two_steps
    _validate(path)
    cset = correctionlib.CorrectionSet.from_file(str(path))
    comp = cset.compound[NAMES.compound]
    ev_a, ev_b = a.to_evaluator(), b.to_evaluator()
    eta = np.array([0.3, 1.2, 2.2, 0.3, 0.3, 1.5])
    r9 = np.array([0.99, 0.5, 0.97, 0.5, 0.5, 0.9])
    # lepton 4: step a (x1.02) moves it across step b's 40 GeV edge (39.4 -> 40.19), lepton
    # 3 stays below (38.0 -> 38.76): the stack maps the edge, r is step b's upper/lower bin
    pt = np.array([30.0, 70.0, 45.0, 38.0, 39.4, 40.0])
    run, gain = np.ones_like(pt), np.full_like(pt, 12.0)

    def at(ev, key, p):
        return ev.evaluate(key, run, eta, r9, eta, p, gain)

    s_a, e_a = at(ev_a, "scale", pt), at(ev_a, "escale", pt)
    pt_b = pt * s_a  # the stack evaluates step b at the pt corrected by step a
    s_b, e_b = at(ev_b, "scale", pt_b), at(ev_b, "escale", pt_b)
    total = s_a * s_b
    r = np.hypot(e_a / s_a, e_b / s_b)
    np.testing.assert_allclose(at(comp, "scale", pt), total, rtol=1e-14)
    np.testing.assert_allclose(at(comp, "escale", pt), total * r, rtol=1e-12)
    np.testing.assert_allclose(at(comp, "scale_up", pt), total * (1 + r), rtol=1e-12)
    np.testing.assert_allclose(at(comp, "scale_down", pt), total * (1 - r), rtol=1e-12)
    assert (e_b[3], e_b[4]) == (2e-3, 3e-3)  # lower / upper Et bin of step b
    # ~1e-3, not the product of the steps' errors (the old 1e-6 .. 1e-15)
    assert np.all(at(comp, "escale", pt)[eta != 1.5] > 1e-3)
    assert at(comp, "escale", pt)[-1] == 0.0  # crack: neutral, no uncertainty
    # the steps are pinned at nominal: every key returns the step's scale
    for key in ("escale", "scale_up", "scale_down"):
        np.testing.assert_array_equal(at(cset[NAMES.step("a")], key, pt), s_a)
    # the MC payload: relative escale = r where it depends only on (pt, r9, |eta|)
    mc = cset[NAMES.smear]
    mc_pt = pt * total  # MC pt stands for corrected data pt
    np.testing.assert_allclose(mc.evaluate("escale", mc_pt, r9, eta), r, rtol=1e-12)
    np.testing.assert_allclose(mc.evaluate("scale_up", mc_pt, r9, eta), 1 + r, rtol=1e-12)


def test_systematics_fold_into_the_payload_and_fit_result(fitted, tmp_path) -> None:
    """escale/esmear = stat (+) MC stat (+) syst; each component in fit_result.json."""
    from zcalib.derive import StepSyst, write_outputs
    from zcalib.fit import FitConfig, fit_histograms
    from zcalib.histograms import load_histograms

    scheme = load_categories(CONFIGS / "cats_eta_r9.tsv")
    hset = load_histograms(fitted[0] / "histograms.npz")
    res = fit_histograms(hset, FitConfig(), scheme=scheme)
    syst = StepSyst(
        scale=tuple(np.linspace(1e-3, 2e-3, 8)),
        smear=tuple(np.linspace(2e-3, 3e-3, 8)),
        scale_by_source={"window": tuple(np.linspace(1e-3, 2e-3, 8))},
        smear_by_source={"window": tuple(np.linspace(2e-3, 3e-3, 8))},
        label="quadrature of 1 sources",
    )
    paths = write_outputs(res, scheme, tmp_path, step="s", names=NAMES, syst=syst)
    rec = json.loads(paths["fit_result"].read_text())
    cset = correctionlib.CorrectionSet.from_file(str(paths["corrections"]))
    comp = cset.compound[NAMES.compound]
    mc = cset[NAMES.smear]
    for c in rec["categories"]:
        lo, hi = c["bins"]["abs_eta"]
        rlo, rhi = c["bins"]["r9"]
        eta = 0.5 * (lo + hi)
        r9 = 0.5 * ((rlo if rlo is not None else 0.5) + (rhi if rhi is not None else 1.2))
        total = float(np.sqrt(c["stat"] ** 2 + c["mc_stat"] ** 2 + c["syst"] ** 2))
        assert c["total"] == pytest.approx(total, rel=1e-12)
        assert c["syst_by_source"]["window"] == c["syst"] > 0
        if c["type"] == "scale":
            got = comp.evaluate("escale", 1.0, eta, r9, eta, 40.0, 12.0)
        else:
            got = mc.evaluate("esmear", 40.0, r9, eta)
        assert got == pytest.approx(total, rel=1e-12)


# ----------------------------------------------------------------- shared random numbers


def test_processor_and_payload_draw_the_same_random_numbers(two_steps) -> None:
    """Same lepton, same smeared energy: zcalib's processor vs the payload's calls."""
    from zcalib.io.formats import Leptons
    from zcalib.processors.zee import CorrectionStep, ZeeProcessor
    from zcalib.rng import RNG_NAME

    path, _, _ = two_steps
    seed = 3
    model = json.loads(path.read_text())
    # the payload's generator carries the derivation's seed; rewrite this one with seed 3
    from zcalib.rng import random_generator

    model["corrections"] = [c for c in model["corrections"] if c["name"] != RNG_NAME]
    model["corrections"].append(
        json.loads(random_generator(seed).model_dump_json(exclude_unset=True))
    )
    text = json.dumps(model)
    rng = np.random.default_rng(1)
    n = 20_000
    sc_eta = rng.uniform(-2.5, 2.5, (n, 2))
    energy = rng.uniform(30, 80, (n, 2)) * np.cosh(sc_eta)
    lep = Leptons(
        energy=energy,
        eta=sc_eta,
        sc_eta=sc_eta,
        phi=np.zeros((n, 2)),
        r9=rng.uniform(0.5, 1.0, (n, 2)),
        gain=np.full((n, 2), 12),
        id_pass=np.ones((n, 2), bool),
        charge=np.zeros((n, 2), np.int64),
        valid=np.ones((n, 2), bool),
        run=np.ones(n, np.int64),
        lumi=np.ones(n, np.int64),
        event=rng.integers(0, 2**40, n),
        weight=np.ones(n),
    )
    proc = ZeeProcessor(
        fmt="nanoaod",
        categories={},
        kinds={"mc": "mc"},
        corrections=(CorrectionStep(name=NAMES.smear, payload=text, kind="smear"),),
        smear_seed=seed,
    )
    got = proc._energy_variations(lep, "mc", {"dataset": "mc"})
    cset = correctionlib.CorrectionSet.from_string(text)
    pt = (energy / np.cosh(sc_eta)).ravel()
    r9, abs_eta = lep.r9.ravel(), np.abs(sc_eta).ravel()
    event = np.repeat(lep.event, 2).astype(float)
    z = cset[RNG_NAME].evaluate("stdnormal", pt, r9, abs_eta, event)
    for variation, key in (("nominal", "smear"), ("smear_up", "smear_up")):
        smear = cset[NAMES.smear].evaluate(key, pt, r9, abs_eta)
        want = energy.ravel() * (1 + smear * z)
        np.testing.assert_array_equal(got[variation].ravel(), want)
    assert abs(z.mean()) < 0.02
    assert abs(z.std() - 1) < 0.02
    # another seed, other numbers; the same seed, the same numbers
    proc2 = ZeeProcessor(fmt="nanoaod", categories={}, kinds={"mc": "mc"}, smear_seed=seed + 1)
    z2 = proc2._normals(lep, {"dataset": "mc"}).ravel()
    assert np.corrcoef(z, z2)[0, 1] < 0.05
    np.testing.assert_array_equal(
        ZeeProcessor(fmt="nanoaod", categories={}, kinds={}, smear_seed=seed)
        ._normals(lep, {"dataset": "mc"})
        .ravel(),
        z,
    )
