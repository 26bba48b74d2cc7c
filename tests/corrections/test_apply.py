"""Tests of zcalib.corrections.apply: vectorised evaluation and input checks."""

from __future__ import annotations

from pathlib import Path

import correctionlib
import numpy as np
import pytest
from correctionlib import schemav2

from zcalib.categories import CategoryScheme
from zcalib.corrections import (
    build_compound,
    build_scale_correction,
    build_smear_correction,
    evaluate_scale,
    evaluate_smear,
    write_correction_set,
)
from zcalib.exceptions import InputError


@pytest.fixture
def payload(tmp_path: Path, scheme8: CategoryScheme, scheme_gain_et: CategoryScheme) -> Path:
    s1 = build_scale_correction(
        "step1", scheme8, np.linspace(0.99, 1.01, 8), np.full(8, 1e-3), description="eta x r9"
    )
    s2 = build_scale_correction(
        "step2",
        scheme_gain_et,
        [1.1, 0.9, 1.2, 1.3, 0.8],
        np.full(5, 2e-3),
        description="run x gain x et",
    )
    sm = build_smear_correction(
        "smear", scheme8, np.linspace(0.005, 0.02, 8), np.full(8, 1e-3), description="smear"
    )
    comp = build_compound("total", [s1, s2])
    return write_correction_set(tmp_path / "c.json", [s1, s2, sm], [comp], description="t")


def _leptons() -> dict[str, np.ndarray]:
    return {
        "run": np.array([1, 50, 200, 120]),
        "abs_sc_eta": np.array([0.2, 1.2, 2.2, 1.5]),
        "r9": np.array([0.99, 0.5, 0.97, 0.9]),
        "pt": np.array([30.0, 70.0, 45.0, 40.0]),
        "gain": np.array([12, 12, 1, 6]),
    }


def test_evaluate_matches_correctionlib(payload: Path) -> None:
    lep = _leptons()
    cset = correctionlib.CorrectionSet.from_file(str(payload))
    for syst in ("scale", "escale", "scale_up", "scale_down"):
        got = evaluate_scale(payload, "step2", syst=syst, **lep)
        eta = lep["abs_sc_eta"]
        f = {k: v.astype(np.float64) for k, v in lep.items()}
        want = cset["step2"].evaluate(syst, f["run"], eta, f["r9"], eta, f["pt"], f["gain"])
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.float64
    np.testing.assert_array_equal(
        evaluate_scale(payload, "step2", **lep),
        [1.1, 0.9, 0.8, 1.0],  # last one: crack
    )
    got = evaluate_smear(
        payload, "smear", abs_sc_eta=lep["abs_sc_eta"], r9=lep["r9"], syst="smear_up"
    )
    want = cset["smear"].evaluate("smear_up", lep["pt"], lep["r9"], lep["abs_sc_eta"])
    np.testing.assert_array_equal(got, want)


def test_compound_and_model_inputs(payload: Path) -> None:
    lep = _leptons()
    model = schemav2.CorrectionSet.model_validate_json(payload.read_text())
    total = evaluate_scale(model, "total", **lep)
    a = evaluate_scale(payload, "step1", **lep)
    b = evaluate_scale(payload, "step2", **{**lep, "pt": lep["pt"] * a})
    np.testing.assert_allclose(total, a * b, rtol=1e-15)


def test_sc_eta_and_float_runs(payload: Path) -> None:
    lep = _leptons()
    signed = lep["abs_sc_eta"] * np.array([1, -1, -1, 1])
    a = evaluate_scale(
        payload, "step2", sc_eta=signed, **{k: v for k, v in lep.items() if k != "abs_sc_eta"}
    )
    b = evaluate_scale(payload, "step2", **{**lep, "run": lep["run"].astype(np.float64)})
    np.testing.assert_array_equal(a, b)


def test_int_input_of_a_foreign_payload(tmp_path: Path) -> None:
    corr = schemav2.Correction(
        name="x",
        version=1,
        inputs=[schemav2.Variable(name="run", type="int")],
        output=schemav2.Variable(name="scale", type="real"),
        data=1.0,
    )
    p = write_correction_set(tmp_path / "x.json", [corr], description="foreign")
    np.testing.assert_array_equal(evaluate_scale(p, "x", run=np.array([3.0, 4.0])), [1.0, 1.0])
    with pytest.raises(InputError) as exc:
        evaluate_scale(p, "x", run=np.array([1.5]))
    assert str(exc.value) == (
        f"correction 'x' in {p}: input 'run' is an int input but got non-integral values"
    )


def test_unread_inputs_of_the_signature_are_optional(payload: Path) -> None:
    """The EGM signature declares every input; those a step does not read need no value."""
    got = evaluate_scale(payload, "step1", abs_sc_eta=[0.2, 2.2], r9=[0.99, 0.5])
    want = evaluate_scale(payload, "step1", **{**_leptons(), "abs_sc_eta": [0.2, 2.2, 0, 0]})
    np.testing.assert_array_equal(got, want[:2])


def test_missing_input(payload: Path) -> None:
    lep = _leptons()
    del lep["gain"]
    with pytest.raises(InputError) as exc:
        evaluate_scale(payload, "step2", **lep)
    assert str(exc.value) == f"correction 'step2' in {payload} needs input 'seedGain'; pass gain="


def test_unknown_correction_and_syst(payload: Path) -> None:
    with pytest.raises(InputError) as exc:
        evaluate_scale(payload, "step3", abs_sc_eta=[0.1], r9=[0.5])
    assert str(exc.value) == (
        f"{payload}: no correction named 'step3'; available: smear, step1, step2, total"
    )
    with pytest.raises(InputError, match="evaluation failed: Index not available"):
        evaluate_scale(payload, "step1", abs_sc_eta=[0.1], r9=[0.5], syst="up")


def test_unexpected_inputs(tmp_path: Path) -> None:
    corr = schemav2.Correction(
        name="x",
        version=1,
        inputs=[
            schemav2.Variable(name="eta", type="real"),
            schemav2.Variable(name="syst", type="string"),
        ],
        output=schemav2.Variable(name="scale", type="real"),
        data=1.0,
    )
    p = write_correction_set(tmp_path / "x.json", [corr], description="foreign")
    with pytest.raises(InputError) as exc:
        evaluate_scale(p, "x", abs_sc_eta=[0.1])
    assert str(exc.value) == (
        f"correction 'x' in {p} needs inputs [eta, syst]; "
        "zcalib provides run, lumi, AbsScEta, ScEta, r9, pt, seedGain, syst"
    )


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        evaluate_scale(tmp_path / "none.json", "x")
    assert str(exc.value) == f"{tmp_path / 'none.json'}: correction file not found"
