"""Single steps that chain: ``--corrections`` on the single-step commands and ``zcalib
assemble`` give the pipeline's final payload (issue #15)."""

from __future__ import annotations

import json

import correctionlib
import numpy as np
import pytest

from tests.chain.conftest import write_pipeline
from tests.conftest import CONFIGS, ROOT
from zcalib.cli import main

LOOP = ["--executor", "iterative", "--no-progress"]
FIT = ["--min-data", "20", "--min-mc", "40", "--mc-stat", "sandwich", "--smear-seed", "3"]
STEP2 = CONFIGS / "cats_eta_r9.yaml"
STEP3 = CONFIGS / "cats_step3_fine_eta_r9.yaml"


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, " ".join(cap.out.split()), cap.err


@pytest.fixture(scope="module")
def both_chains(demo_ecalelf, tmp_path_factory):
    """The same four steps run by ``zcalib pipeline`` and by hand (the commands and their
    output are kept: the docs show them)."""
    tmp = tmp_path_factory.mktemp("chains")
    fit_opts = {"min_data": 20, "min_mc": 40, "mc_stat": "sandwich"}
    steps = [
        {"name": "run_divide", "type": "run_divide", "min_events": 4000},
        {"name": "time_stability", "type": "time_stability", "needs": ["run_divide"]},
        {
            "name": "step2",
            "type": "fit",
            "categories": str(STEP2),
            "needs": ["time_stability"],
            "fit": fit_opts,
        },
        {
            "name": "step3",
            "type": "fit",
            "categories": str(STEP3),
            "needs": ["step2"],
            "fit": fit_opts,
        },
    ]
    pipe = write_pipeline(tmp / "pipe", demo_ecalelf, steps=steps, smear_seed=3)
    assert main(["pipeline", str(pipe), "-q"]) == 0
    data, mc = str(demo_ecalelf.data), str(demo_ecalelf.mc)
    pileup = f"pileup={ROOT / 'corrections' / 'pileup_demo.json'}"
    m = tmp / "manual"
    inputs = ["--data", data, "--mc", mc, "--mc-weight", pileup]
    ts, s2, s3 = f"{m}/time_stability", f"{m}/step2", f"{m}/step3"
    fit2 = ["--categories", str(STEP2), *FIT, "--corrections", ts, "--step", "step2"]
    fit3 = ["--categories", str(STEP3), *FIT, "--corrections", ts, "--corrections", s2]
    commands = [
        ["run-divide", "--data", data, "--min-events", "4000", "--out", f"{m}/run_bins.yaml"],
        ["time-stability", *inputs, "--run-bins", f"{m}/run_bins.yaml", "--out", ts],
        ["fit", *inputs, *fit2, "--out", s2],
        ["fit", *inputs, *fit3, "--step", "step3", "--out", s3],
        ["assemble", ts, s2, s3, "--out", f"{m}/final"],
    ]
    return tmp / "pipe" / "out" / "final", m / "final", commands


def _points(n: int = 400) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    eta = rng.uniform(-2.5, 2.5, n)
    return {
        "run": rng.integers(355_000, 362_000, n).astype(float),
        "ScEta": eta,
        "AbsScEta": np.abs(eta),
        "r9": rng.uniform(0.5, 1.0, n),
        "pt": rng.uniform(20.0, 120.0, n),
        "seedGain": rng.choice([1.0, 6.0, 12.0], n),
    }


def _evaluate(path, points):
    cset = correctionlib.CorrectionSet.from_file(str(path))
    out = {}
    (compound,) = list(cset.compound)
    scale = cset.compound[compound]
    for key in ("scale", "escale", "scale_up", "scale_down"):
        out[key] = scale.evaluate(key, *(points[v.name] for v in scale.inputs[1:]))
    (smear_name,) = [k for k in cset if k.startswith("EGMSmearAndSyst")]
    smear = cset[smear_name]
    for key in ("smear", "esmear", "smear_up", "smear_down", "escale"):
        out[f"mc_{key}"] = smear.evaluate(key, *(points[v.name] for v in smear.inputs[1:]))
    out["z"] = cset["EGMRandomGenerator"].evaluate(
        "stdnormal", points["pt"], points["r9"], points["AbsScEta"], np.arange(len(points["pt"]))
    )
    return out


def test_manual_chain_gives_the_pipeline_payload(both_chains, capsys):
    pipeline_final, manual_final, commands = both_chains
    transcript = []
    for argv in commands:
        rc, out, err = _run([*argv, *LOOP] if argv[0] != "assemble" else argv, capsys)
        assert rc == 0, (argv, err)
        transcript.append(f"$ zcalib {' '.join(argv)}\n{out}")
    with capsys.disabled():
        print("\n" + "\n".join(transcript))
    a = json.loads((pipeline_final / "corrections.json").read_text())
    b = json.loads((manual_final / "corrections.json").read_text())
    assert [c["name"] for c in b["corrections"]] == [c["name"] for c in a["corrections"]]
    assert [c["name"] for c in a["corrections"]][:3] == [
        "EGMScale_time_stability_2022preEE",
        "EGMScale_step2_2022preEE",
        "EGMScale_step3_2022preEE",
    ]
    assert b["compound_corrections"][0]["stack"] == a["compound_corrections"][0]["stack"]
    points = _points()
    pa, pb = (
        _evaluate(pipeline_final / "corrections.json", points),
        _evaluate(manual_final / "corrections.json", points),
    )
    for key, va in pa.items():
        np.testing.assert_allclose(pb[key], va, rtol=1e-9, atol=1e-12, err_msg=key)
    # the corrections are not trivial: time stability and two fitted steps
    assert np.ptp(pa["scale"]) > 1e-3
    assert np.max(pa["mc_smear"]) > 0.01
    # legacy files: same rows, same numbers
    for name in ("scales.dat", "smearings.dat"):
        ta = np.loadtxt(pipeline_final / name, comments="#", dtype=float, ndmin=2)
        tb = np.loadtxt(manual_final / name, comments="#", dtype=float, ndmin=2)
        np.testing.assert_allclose(tb, ta, rtol=1e-9, err_msg=name)
    record = json.loads((manual_final / "assemble.json").read_text())
    assert record["order"] == ["time_stability", "step2", "step3"]
    assert record["smear_seed"] == 3


def test_assemble_refuses_bad_step_folders(both_chains, tmp_path, capsys):
    """One line, exit 1, nothing written: a folder without a payload, a failed fit, two steps
    of the same name, no steps."""
    _, manual_final, _ = both_chains
    m = manual_final.parent
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "fit_result.json").write_text(
        '{"step": "failed", "status": "failed", "message": "failed: smear[3] at a bound"}'
    )
    out = tmp_path / "final"
    cases = [
        ([str(empty)], f"{empty}: no corrections.json (is this the folder of a finished step?)"),
        (
            [str(failed)],
            (
                f"{failed}: the fit of this step has no payload (status 'failed': failed: "
                "smear[3] at a bound)"
            ),
        ),
        (
            [str(m / "step2"), f"step2={m / 'step3'}"],
            (
                f"assemble: steps {m / 'step2'} and step2={m / 'step3'} are both named "
                "'step2'; name one of them with NAME=PATH"
            ),
        ),
        ([str(tmp_path / "nope")], f"{tmp_path / 'nope'}: no such step folder or correction file"),
    ]
    for steps, message in cases:
        rc, _, err = _run(["assemble", *steps, "--out", str(out)], capsys)
        assert rc == 1
        assert err == f"zcalib: error: {message}\n"
        assert not out.exists()
