"""Tests of the pile-up weight payload (builder and the shipped demo file)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import correctionlib
import hist
import numpy as np
import pytest
from scipy.stats import poisson

from zcalib.corrections import build_pileup_correction, validate_file

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "corrections" / "pileup_demo.json"


def test_demo_payload_validates(correction_validate) -> None:
    result = correction_validate(DEMO)
    assert result.returncode == 0, result.stdout + result.stderr
    model = validate_file(DEMO)
    corr = model.corrections[0]
    assert corr.name == "pileup"
    assert [(v.name, v.type) for v in corr.inputs] == [
        ("NumTrueInteractions", "real"),
        ("weights", "string"),
    ]


@pytest.mark.parametrize(
    ("key", "mean", "tol"),
    [
        ("nominal", 27.0, 1e-5),
        ("up", 27.0 * 1.046, 2e-3),
        ("down", 27.0 * 0.954, 1e-5),
    ],
)
def test_demo_weights_integrate_to_one(key: str, mean: float, tol: float) -> None:
    ev = correctionlib.CorrectionSet.from_file(str(DEMO))["pileup"]
    n = np.arange(100)
    w = ev.evaluate(n + 0.5, key)
    p_mc = poisson.pmf(n, 25.0) / poisson.pmf(n, 25.0).sum()
    # sum P_mc w = 1 - (data probability above the cap), tiny except for 'up'
    assert np.sum(p_mc * w) == pytest.approx(1.0, abs=tol)
    assert w.max() <= 10.0
    # uncapped bins reproduce the data profile exactly
    p_data = poisson.pmf(n, mean) / poisson.pmf(n, mean).sum()
    ok = w < 10.0
    np.testing.assert_allclose(p_mc[ok] * w[ok], p_data[ok], rtol=1e-12)


def test_demo_clamp_and_real_input() -> None:
    ev = correctionlib.CorrectionSet.from_file(str(DEMO))["pileup"]
    assert ev.evaluate(250.0, "nominal") == ev.evaluate(99.5, "nominal")
    assert ev.evaluate(-3.0, "nominal") == ev.evaluate(0.2, "nominal")
    assert ev.evaluate(25.7, "up") == ev.evaluate(25.0, "up")


def test_demo_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ in corrections/
    spec = importlib.util.spec_from_file_location(
        "make_pileup_demo", REPO / "corrections" / "make_pileup_demo.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main([str(tmp_path / "pu.json")])
    # the same payload up to the last printed digit (numpy versions round the 15th digit of
    # a few weights differently); any real change of binning, keys or weights fails
    _assert_same_json(json.loads(out.read_text()), json.loads(DEMO.read_text()))


def _assert_same_json(got: object, want: object, where: str = "$") -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert sorted(got) == sorted(want), where
        for key in want:
            _assert_same_json(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list), where
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same_json(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=1e-13, abs=1e-300), where
    else:
        assert got == want, where


def test_hist_profiles_and_zero_mc_bins() -> None:
    axis = hist.axis.Regular(4, 0, 8, name="npu")
    mc = hist.Hist(axis)
    mc[...] = [1.0, 3.0, 0.0, 4.0]
    data = hist.Hist(axis)
    data[...] = [2.0, 2.0, 2.0, 2.0]
    corr = build_pileup_correction(mc, data, data, data)
    ev = corr.to_evaluator()
    np.testing.assert_allclose(
        ev.evaluate(np.array([1.0, 3.0, 5.0, 7.0, 100.0]), "nominal"),
        [2.0, 2.0 / 3.0, 0.0, 0.5, 0.5],
    )


def test_profile_errors() -> None:
    with pytest.raises(ValueError, match="different binning"):
        build_pileup_correction([1, 2], [1, 2, 3], [1, 2], [1, 2])
    with pytest.raises(ValueError, match="non-negative contents with sum > 0"):
        build_pileup_correction([1, 2], [0, 0], [1, 2], [1, 2])
