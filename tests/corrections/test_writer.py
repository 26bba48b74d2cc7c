"""Tests of zcalib.corrections.writer: scale/smear/compound payloads, validation, atomic writes."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import correctionlib
import numpy as np
import pytest
from correctionlib import schemav2

from zcalib.categories import CategoryScheme, load_categories
from zcalib.corrections import writer
from zcalib.corrections.writer import (
    SCALE_INPUTS,
    SCALE_SYST_KEYS,
    SMEAR_SYST_KEYS,
    build_compound,
    build_scale_correction,
    build_smear_correction,
    validate_file,
    write_correction_set,
)
from zcalib.exceptions import InputError, OutputError
from zcalib.outputs import current_run_id, file_run_id, run_tag


def _values(n: int, seed: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    val = 1.0 + rng.normal(0, 0.01, n) if kind == "scale" else rng.uniform(0.005, 0.03, n)
    stat = rng.uniform(1e-4, 1e-3, n)
    syst = rng.uniform(1e-4, 2e-3, n)
    return val, stat, syst


def _q(x: float) -> float:
    """Payload numbers are stored with 15 significant digits."""
    return float(f"{x:.15g}")


def _expected(kind: str, val: float, stat: float, syst: float) -> dict[str, float]:
    err = float(np.sqrt(stat**2 + syst**2))
    if kind == "scale":
        out = {"scale": val, "escale": err, "scale_up": val + err, "scale_down": val - err}
    else:
        out = {
            "smear": val,
            "esmear": err,
            "smear_up": val + err,
            "smear_down": max(val - err, 0.0),
        }
    return {k: _q(v) for k, v in out.items()}


_POINT_NAMES = {
    "run": "run",
    "AbsScEta": "abs_sc_eta",
    "ScEta": "abs_sc_eta",
    "r9": "r9",
    "pt": "pt",
    "seedGain": "gain",
}
_DEFAULT = {"run": 1.0, "abs_sc_eta": 0.5, "r9": 0.9, "pt": 40.0, "gain": 12.0}


def _kwargs(corr: schemav2.Correction, point: dict[str, object]) -> list[object]:
    """The numeric inputs after ``syst``, as doubles (analysts' call)."""
    return [
        np.asarray(point.get(_POINT_NAMES[v.name], _DEFAULT[_POINT_NAMES[v.name]]), dtype=float)
        if isinstance(point.get(_POINT_NAMES[v.name]), np.ndarray)
        else float(point.get(_POINT_NAMES[v.name], _DEFAULT[_POINT_NAMES[v.name]]))  # type: ignore[arg-type]
        for v in corr.inputs
        if v.name != "syst"
    ]


def _at(ev: object, key: str, **point: object) -> object:
    """Evaluate ``ev`` (signature ``syst`` first) at named values (others defaulted)."""
    return ev.evaluate(key, *_kwargs(ev, point))  # type: ignore[attr-defined, arg-type]


# --------------------------------------------------------------------------- structure


def test_inputs_eight_categories(scheme8: CategoryScheme) -> None:
    val, stat, syst = _values(8, 1, "scale")
    corr = build_scale_correction("s", scheme8, val, stat, syst, description="d")
    assert [(v.name, v.type) for v in corr.inputs] == [
        ("syst", "string"),
        ("run", "real"),
        ("ScEta", "real"),
        ("r9", "real"),
        ("AbsScEta", "real"),
        ("pt", "real"),
        ("seedGain", "real"),
    ]
    assert corr.output.name == "scale"
    sm = build_smear_correction("m", scheme8, np.full(8, 0.01), stat, syst, description="d")
    assert [(v.name, v.type) for v in sm.inputs] == [
        ("syst", "string"),
        ("pt", "real"),
        ("r9", "real"),
        ("AbsScEta", "real"),
    ]
    node = corr.data
    assert isinstance(node, schemav2.Category)
    assert [item.key for item in node.content] == list(SCALE_SYST_KEYS)
    mb = node.content[0].value
    assert isinstance(mb, schemav2.MultiBinning)
    assert mb.flow == "clamp"
    assert mb.edges == [[0.0, 1.0, 1.4442, 1.566, 2.0, 2.5], [0.0, 0.96, 10.0]]


def test_inputs_run_gain_et(scheme_gain_et: CategoryScheme) -> None:
    val, stat, _ = _values(5, 2, "scale")
    corr = build_scale_correction("s", scheme_gain_et, val, stat, description="d")
    # the same fixed signature whatever the categories cut on
    assert [v.name for v in corr.inputs] == list(SCALE_INPUTS)
    assert {v.type for v in corr.inputs if v.name != "syst"} == {"real"}
    gain_node = corr.data.content[0].value
    assert isinstance(gain_node, schemav2.Binning)
    assert (gain_node.input, gain_node.edges, gain_node.flow) == (
        "seedGain",
        [0.5, 3.5, 9.0, 12.5],
        "error",
    )
    mb = gain_node.content[2]
    # every category has the run range [1, 200]: no run dependence, run not binned
    assert mb.inputs == ["AbsScEta", "pt"]
    assert mb.edges[1] == [0.0, 50.0, 14000.0]


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("kind", ["scale", "smear"])
@pytest.mark.parametrize("which", ["scheme8", "scheme_gain_et"])
def test_midpoints_every_syst_key(
    kind: str,
    which: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    midpoint,
    correction_validate,
) -> None:
    scheme: CategoryScheme = request.getfixturevalue(which)
    cats = scheme.scale if kind == "scale" else scheme.smear
    val, stat, syst = _values(len(cats), 3, kind)
    build = build_scale_correction if kind == "scale" else build_smear_correction
    corr = build("c", scheme, val, stat, syst, description="test")
    path = write_correction_set(tmp_path / f"{kind}.json", [corr], description="test")
    result = correction_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    ev = correctionlib.CorrectionSet.from_file(str(path))["c"]
    keys = SCALE_SYST_KEYS if kind == "scale" else SMEAR_SYST_KEYS
    for i, cat in enumerate(cats):
        args = _kwargs(corr, midpoint(cat))
        expected = _expected(kind, val[i], stat[i], syst[i])
        for key in keys:
            assert ev.evaluate(key, *args) == expected[key], (cat.label(), key)


@pytest.mark.parametrize("which", ["scheme8", "scheme_gain_et"])
def test_agrees_with_scheme_assign(which: str, request: pytest.FixtureRequest) -> None:
    """Random leptons: the correction returns the value of the category assign() picks."""
    scheme: CategoryScheme = request.getfixturevalue(which)
    val, stat, _ = _values(len(scheme.scale), 4, "scale")
    corr = build_scale_correction("c", scheme, val, stat, description="t")
    ev = corr.to_evaluator()
    rng = np.random.default_rng(5)
    n = 5000
    pts = {
        "run": rng.integers(1, 201, n),
        "abs_sc_eta": rng.uniform(0, 2.5, n),
        "r9": rng.uniform(0.5, 1.0, n),
        "pt": rng.uniform(20, 100, n),
        "gain": rng.choice([12, 6, 1], n),
    }
    cell = scheme.assign(
        abs_eta=pts["abs_sc_eta"], r9=pts["r9"], et=pts["pt"], gain=pts["gain"], run=pts["run"]
    )
    expected = np.where(cell >= 0, [_q(v) for v in val[scheme.cell_scale_index()[cell]]], 1.0)
    got = ev.evaluate("scale", *_kwargs(corr, pts))
    np.testing.assert_array_equal(got, expected)


def test_clamp_and_crack(scheme8: CategoryScheme) -> None:
    val, stat, syst = _values(8, 6, "scale")
    val = np.round(val, 6)
    ev = build_scale_correction("c", scheme8, val, stat, syst, description="t").to_evaluator()
    # |eta| = 3 -> last eta bin (2-2.5); r9 = 20 -> last r9 bin; r9 = -1 -> first bin
    assert _at(ev, "scale", abs_sc_eta=3.0, r9=0.99) == val[7]
    assert _at(ev, "scale", abs_sc_eta=3.0, r9=20.0) == val[7]
    assert _at(ev, "scale", abs_sc_eta=0.5, r9=-1.0) == val[0]
    # the crack: neutral scale, zero uncertainty
    for key, neutral in zip(SCALE_SYST_KEYS, (1.0, 0.0, 1.0, 1.0), strict=True):
        assert _at(ev, key, abs_sc_eta=1.5, r9=0.9) == neutral
    sm = build_smear_correction(
        "m", scheme8, np.full(8, 0.02), stat, syst, description="t"
    ).to_evaluator()
    for key in SMEAR_SYST_KEYS:
        assert _at(sm, key, abs_sc_eta=1.5, r9=0.9) == 0.0


def test_clamp_run_gain_et(scheme_gain_et: CategoryScheme) -> None:
    val, stat, _ = _values(5, 7, "scale")
    val = np.round(val, 6)
    ev = build_scale_correction("c", scheme_gain_et, val, stat, description="t").to_evaluator()

    def at(run: float, eta: float, pt: float, gain: float) -> object:
        return _at(ev, "scale", run=run, abs_sc_eta=eta, pt=pt, gain=gain)

    assert at(1, 0.5, 30.0, 12) == val[0]
    assert at(200, 0.5, 60.0, 12) == val[1]
    assert at(10**6, 0.5, 1e5, 12) == val[1]  # run and pt clamp
    assert at(0, 0.5, 5.0, 6) == val[2]
    assert at(50, 0.5, 5.0, 1) == val[3]
    assert at(50, 2.2, 5.0, 6) == val[4]  # endcap: no gain cut
    with pytest.raises(RuntimeError, match="Index below bounds"):
        at(50, 0.5, 5.0, 0)  # ECALELF gain index, not 12/6/1: raises, never read as gain 1
    with pytest.raises(RuntimeError, match="Index above bounds"):
        at(50, 0.5, 5.0, 13)


def test_inclusive_run_bins(run_categories) -> None:
    ev = build_scale_correction(
        "r", run_categories, [1.01, 1.02, 1.03], [0.0] * 3, description="t"
    ).to_evaluator()
    assert _at(ev, "scale", run=1, abs_sc_eta=0.3) == 1.01
    assert _at(ev, "scale", run=100, abs_sc_eta=0.3) == 1.01
    assert _at(ev, "scale", run=101, abs_sc_eta=0.3) == 1.02
    assert _at(ev, "scale", run=200, abs_sc_eta=0.3) == 1.02
    assert _at(ev, "scale", run=0, abs_sc_eta=0.3) == 1.01  # clamp below
    assert _at(ev, "scale", run=999999, abs_sc_eta=0.3) == 1.02  # clamp above
    assert _at(ev, "scale", run=100, abs_sc_eta=2.0) == 1.03
    assert _at(ev, "scale", run=100, abs_sc_eta=1.5) == 1.0  # crack


def test_up_down_consistency(scheme8: CategoryScheme) -> None:
    val = np.full(8, 0.01)
    stat = np.full(8, 0.003)
    syst = np.array([0.004, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.05])
    sm = build_smear_correction("m", scheme8, val, stat, syst, description="t").to_evaluator()
    up, nom, down, err = (
        _at(sm, k, abs_sc_eta=0.5, r9=0.5) for k in ("smear_up", "smear", "smear_down", "esmear")
    )
    assert err == pytest.approx(0.005)
    assert up - nom == pytest.approx(err)
    assert nom - down == pytest.approx(err)
    assert _at(sm, "smear_down", abs_sc_eta=2.2, r9=0.99) == 0.0  # clipped: 0.01 - 0.0501 < 0
    sc = build_scale_correction("s", scheme8, val + 1, stat, syst, description="t").to_evaluator()
    assert _at(sc, "scale_down", abs_sc_eta=2.2, r9=0.99) == pytest.approx(
        1.01 - np.hypot(0.003, 0.05)
    )


def test_bad_values_raise(scheme8: CategoryScheme) -> None:
    val = np.ones(8)
    val[2] = np.nan
    with pytest.raises(OutputError) as exc:
        build_scale_correction("s", scheme8, val, np.zeros(8), description="t")
    assert str(exc.value) == (
        "cannot build correction 's': scale of scale[2] |eta| 1.566-2 r9 0-0.96 is nan; "
        "allowed: a finite number > 0"
    )
    with pytest.raises(ValueError, match=r"have shape \(7,\), expected \(8,\)"):
        build_scale_correction("s", scheme8, np.ones(7), np.zeros(8), description="t")
    with pytest.raises(OutputError, match="stat error of smear"):
        build_smear_correction("m", scheme8, np.zeros(8), -np.ones(8), description="t")


# --------------------------------------------------------------------------- compound


def test_compound_updates_pt(tmp_path: Path, scheme8: CategoryScheme, correction_validate) -> None:
    step2_yaml = tmp_path / "et.yaml"
    step2_yaml.write_text(
        "scale:\n"
        "  - {eta: [0, 1.4442], et: [0, 40]}\n"
        "  - {eta: [0, 1.4442], et: [40, 14000]}\n"
        "  - {eta: [1.566, 2.5], et: [0, 40]}\n"
        "  - {eta: [1.566, 2.5], et: [40, 14000]}\n"
    )
    et_scheme = load_categories(step2_yaml)
    s1_val = np.array([1.02, 1.01, 0.99, 0.98, 1.03, 1.0, 0.97, 1.05])
    s1 = build_scale_correction("step1", scheme8, s1_val, np.full(8, 1e-3), description="1")
    s2_val = np.array([1.1, 0.9, 1.2, 0.8])
    s2 = build_scale_correction("step2", et_scheme, s2_val, np.full(4, 2e-3), description="2")
    comp = build_compound("total", [s1, s2], description="step1 x step2")
    assert [v.name for v in comp.inputs] == list(SCALE_INPUTS)
    assert (comp.input_op, comp.output_op, comp.inputs_update) == ("*", "*", ["pt"])
    path = write_correction_set(tmp_path / "all.json.gz", [s1, s2], [comp], description="t")
    assert correction_validate(path).returncode == 0
    cset = correctionlib.CorrectionSet.from_file(str(path))
    eta = np.array([0.5, 0.5, 0.5, 2.2, 1.5])
    r9 = np.array([0.9, 0.99, 0.9, 0.9, 0.9])
    pt = np.array([39.5, 39.5, 45.0, 39.5, 39.5])
    one, twelve = np.ones_like(eta), np.full_like(eta, 12.0)
    for key in ("scale", "scale_up", "scale_down"):
        got = cset.compound["total"].evaluate(key, one, eta, r9, eta, pt, twelve)
        a = cset["step1"].evaluate(key, one, eta, r9, eta, pt, twelve)
        b = cset["step2"].evaluate(key, one, eta, r9, eta, pt * a, twelve)
        np.testing.assert_allclose(got, a * b, rtol=1e-15)
    got = cset.compound["total"].evaluate("scale", one, eta, r9, eta, pt, twelve)
    # lepton 0: 39.5 * 1.02 = 40.29 -> second step in the Et >= 40 bin
    assert got[0] == pytest.approx(1.02 * 0.9)
    # lepton 1: 39.5 * 1.03 = 40.685 -> Et >= 40 bin as well
    assert got[1] == pytest.approx(1.03 * 0.9)
    # lepton 3 (endcap, r9 < 0.96): 39.5 * 0.98 -> stays below 40
    assert got[3] == pytest.approx(0.98 * 1.2)
    assert got[4] == 1.0  # crack in both steps


def test_compound_type_clash(scheme8: CategoryScheme) -> None:
    s1 = build_scale_correction("a", scheme8, np.ones(8), np.zeros(8), description="t")
    bad = s1.model_copy(
        update={
            "name": "b",
            "inputs": [
                schemav2.Variable(name="r9", type="int") if v.name == "r9" else v for v in s1.inputs
            ],
        }
    )
    with pytest.raises(ValueError, match="input 'r9' is real in 'a' but int in 'b'"):
        build_compound("c", [s1, bad])


# --------------------------------------------------------------------------- writing


def test_gzip_and_validate_file(tmp_path: Path, scheme8: CategoryScheme) -> None:
    corr = build_scale_correction("s", scheme8, np.ones(8), np.zeros(8), description="t")
    p = write_correction_set(tmp_path / "s.json.gz", [corr], description="gz")
    with gzip.open(p, "rt") as fh:  # the run that wrote it is named (zcalib.outputs)
        assert json.load(fh)["description"] == f"gz ({run_tag()})"
    assert file_run_id(p) == current_run_id()
    model = validate_file(p)
    assert [c.name for c in model.corrections] == ["s"]


def test_validate_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 2, "corrections": [{"name": "x"}]}))
    with pytest.raises(InputError) as exc:
        validate_file(bad)
    assert str(exc.value).startswith(f"{bad}: invalid correction set: corrections.0.version:")
    with pytest.raises(InputError, match="cannot read correction set"):
        validate_file(tmp_path / "missing.json")


def test_bad_suffix(tmp_path: Path, scheme8: CategoryScheme) -> None:
    corr = build_scale_correction("s", scheme8, np.ones(8), np.zeros(8), description="t")
    with pytest.raises(OutputError, match=r"must be written to a \.json or \.json\.gz file"):
        write_correction_set(tmp_path / "s.txt", [corr], description="t")


def test_compound_with_unknown_step_rejected(tmp_path: Path, scheme8: CategoryScheme) -> None:
    corr = build_scale_correction("s", scheme8, np.ones(8), np.zeros(8), description="t")
    other = build_scale_correction("t", scheme8, np.ones(8), np.zeros(8), description="t")
    comp = build_compound("c", [corr, other])
    with pytest.raises(OutputError, match="constituent t not found"):
        write_correction_set(tmp_path / "s.json", [corr], [comp], description="t")
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("name", ["s.json", "s.json.gz"])
def test_failure_while_writing_leaves_no_file(
    tmp_path: Path, scheme8: CategoryScheme, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    corr = build_scale_correction("s", scheme8, np.ones(8), np.zeros(8), description="t")
    target = tmp_path / name

    def broken(text: str, size: int = 1) -> Iterator[str]:
        yield text[:100]
        msg = "disk on fire"
        raise RuntimeError(msg)

    monkeypatch.setattr(writer, "_chunks", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_correction_set(target, [corr], description="t")
    assert list(tmp_path.iterdir()) == []

    # an existing file survives a failed overwrite untouched
    monkeypatch.undo()
    write_correction_set(target, [corr], description="old")
    before = target.read_bytes()
    monkeypatch.setattr(writer, "_chunks", broken)
    with pytest.raises(RuntimeError):
        write_correction_set(target, [corr], description="new")
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]
