"""Tests of zcalib.corrections.legacy: pymin text formats, scheme matching, combining."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from zcalib.categories import Category, CategoryScheme
from zcalib.corrections.legacy import (
    combine,
    read_legacy,
    read_legacy_for_scheme,
    write_legacy,
    write_only_step,
)
from zcalib.exceptions import InputError

GOOD = "-1\t-1\t0\t1\t0\t0.96\t-1\t-1\t-1\t1.002\t0.0001\n"


def _boxes(cats: tuple[Category, ...]) -> list[tuple[object, ...]]:
    return [(c.run, c.eta, c.r9, c.et, c.gain) for c in cats]


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("kind", ["scale", "smear"])
@pytest.mark.parametrize("which", ["scheme8", "scheme_gain_et"])
def test_round_trip_exact(
    kind: str, which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    scheme: CategoryScheme = request.getfixturevalue(which)
    cats = scheme.scale if kind == "scale" else scheme.smear
    rng = np.random.default_rng(11)
    values = (
        (1.0 + rng.normal(0, 0.01, len(cats)))
        if kind == "scale"
        else rng.uniform(0, 0.03, len(cats))
    )
    errors = rng.uniform(0, 1e-3, len(cats)) / 3.0  # full-precision floats
    p = write_legacy(tmp_path / f"{kind}.dat", scheme, values, errors, kind=kind)
    lines = p.read_text().splitlines()
    assert lines[0].split("\t") == [
        "#run_min",
        "run_max",
        "eta_min",
        "eta_max",
        "r9_min",
        "r9_max",
        "et_min",
        "et_max",
        "gain",
        kind,
        "err",
    ]
    table = read_legacy(p, kind=kind)
    assert _boxes(table.boxes) == _boxes(cats)
    np.testing.assert_array_equal(table.values, values)
    np.testing.assert_array_equal(table.errors, errors)
    assert table.lines == tuple(range(2, len(cats) + 2))
    got_v, got_e = read_legacy_for_scheme(p, scheme, kind=kind)
    np.testing.assert_array_equal(got_v, values)
    np.testing.assert_array_equal(got_e, errors)


def test_legacy_columns(scheme_gain_et: CategoryScheme, tmp_path: Path) -> None:
    """Inclusive runs in the file, -1 for no cut, gain 12/6/1 or -1."""
    p = write_legacy(tmp_path / "s.dat", scheme_gain_et, np.ones(5), np.zeros(5), header=False)
    rows = [line.split("\t") for line in p.read_text().splitlines()]
    assert rows[0] == ["1", "200", "0", "1.4442", "-1", "-1", "0", "50", "12", "1", "0"]
    assert rows[4] == ["1", "200", "1.566", "2.5", "-1", "-1", "0", "14000", "-1", "1", "0"]


def test_only_step_matches_scheme(scheme8: CategoryScheme, tmp_path: Path) -> None:
    values = np.linspace(0.99, 1.01, 8)
    p = write_only_step(tmp_path / "step.tsv", scheme8, values, np.full(8, 1e-4))
    lines = p.read_text().splitlines()
    assert lines[0].split("\t") == [
        "#runmin",
        "runmax",
        "etamin",
        "etamax",
        "r9min",
        "r9max",
        "etmin",
        "etmax",
        "gain",
        "scaleOrSmear",
        "unc",
    ]
    assert lines[1].split("\t") == [
        "0",
        "999999",
        "0",
        "1",
        "0",
        "0.96",
        "0",
        "14000",
        "0",
        "0.99",
        "0.0001",
    ]
    got, _ = read_legacy_for_scheme(p, scheme8)
    np.testing.assert_array_equal(got, values)
    # a header line without '#' (as in the pymin README) is accepted too
    p.write_text("\n".join([lines[0].lstrip("#"), *lines[1:]]) + "\n")
    np.testing.assert_array_equal(read_legacy_for_scheme(p, scheme8)[0], values)


def test_rows_in_any_order(scheme8: CategoryScheme, tmp_path: Path) -> None:
    values = np.linspace(0.99, 1.01, 8)
    p = write_legacy(tmp_path / "s.dat", scheme8, values, np.zeros(8), header=False)
    lines = p.read_text().splitlines()
    p.write_text("\n".join(reversed(lines)) + "\n")
    np.testing.assert_array_equal(read_legacy_for_scheme(p, scheme8)[0], values)


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "-1\t-1\t0\t1\t0\t0.96\t-1\t-1\t-1\t1.002\n",
            (
                "expected 11 columns (run_min run_max eta_min eta_max r9_min r9_max et_min et_max "
                "gain scale err), got 10"
            ),
        ),
        (
            "-1\t-1\t0\tone\t0\t0.96\t-1\t-1\t-1\t1.002\t0.0001\n",
            "column 'eta_max' is 'one'; allowed: a number (-1 = no cut)",
        ),
        (
            "-1\t-1\t0\t1\t0\t0.96\t-1\t-1\t3\t1.002\t0.0001\n",
            "column 'gain' is 3; allowed: 12, 6, 1 or -1 (no cut)",
        ),
        (
            "-1\t-1\t1\t0\t0\t0.96\t-1\t-1\t-1\t1.002\t0.0001\n",
            "eta range [1, 0] is empty or inverted; min must be < max",
        ),
        (
            "200\t100\t0\t1\t0\t0.96\t-1\t-1\t-1\t1.002\t0.0001\n",
            "run range [200, 100] is empty or inverted; min must be <= max",
        ),
        (
            "1.5\t100\t0\t1\t0\t0.96\t-1\t-1\t-1\t1.002\t0.0001\n",
            "column 'run_min' is 1.5; allowed: a run number or -1",
        ),
        (
            "-1\t-1\t0\t1\t-0.5\t0.96\t-1\t-1\t-1\t1.002\t0.0001\n",
            "column 'r9_min' is -0.5; allowed: a number >= 0 or -1 (no cut)",
        ),
        (
            "-1\t-1\t0\t1\t0\t0.96\t-1\t-1\t-1\t0\t0.0001\n",
            "column 'scale' is 0; allowed: a number > 0",
        ),
        (
            "-1\t-1\t0\t1\t0\t0.96\t-1\t-1\t-1\t1.002\t-0.1\n",
            "column 'err' is -0.1; allowed: a number >= 0",
        ),
        (
            "-1\t-1\t0\t1\t0\t0.96\t-1\t-1\t-1\tnan\t0.0001\n",
            "column 'scale' is 'nan'; allowed: a finite number",
        ),
    ],
)
def test_malformed_line(tmp_path: Path, line: str, message: str) -> None:
    p = tmp_path / "scales.dat"
    p.write_text("# comment\n" + GOOD + "\n" + line)
    with pytest.raises(InputError) as exc:
        read_legacy(p)
    assert str(exc.value) == f"{p}:4: {message}"


def test_smear_file_messages(tmp_path: Path) -> None:
    p = tmp_path / "smear.dat"
    p.write_text("-1\t-1\t0\t1\t0\t0.96\t-1\t-1\t-1\t-0.01\t0.0001\n")
    with pytest.raises(InputError) as exc:
        read_legacy(p, kind="smear")
    assert str(exc.value) == f"{p}:1: column 'smear' is -0.01; allowed: a number >= 0"


def test_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        read_legacy(tmp_path / "nope.dat")
    assert str(exc.value) == f"{tmp_path / 'nope.dat'}: scales file not found"
    p = tmp_path / "empty.dat"
    p.write_text("# only a comment\n")
    with pytest.raises(InputError) as exc:
        read_legacy(p)
    assert str(exc.value) == (
        f"{p}: no rows (expected columns run_min run_max eta_min eta_max r9_min r9_max "
        "et_min et_max gain scale err)"
    )


# --------------------------------------------------------------------------- scheme matching


def test_mismatch_with_scheme(scheme8: CategoryScheme, tmp_path: Path) -> None:
    p = write_legacy(tmp_path / "s.dat", scheme8, np.ones(8), np.zeros(8))
    lines = p.read_text().splitlines()
    # row 3 (line 4): |eta| 1.566-2 -> 1.566-2.1
    lines[3] = lines[3].replace("\t2\t", "\t2.1\t", 1)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as exc:
        read_legacy_for_scheme(p, scheme8)
    assert str(exc.value) == (
        f"{p}:4: row (|eta| 1.566-2.1 r9 0-0.96) matches no scale category of {scheme8.source}"
    )


def test_wrong_row_count(scheme8: CategoryScheme, tmp_path: Path) -> None:
    p = write_legacy(tmp_path / "s.dat", scheme8.scale[:7], np.ones(7), np.zeros(7))
    with pytest.raises(InputError) as exc:
        read_legacy_for_scheme(p, scheme8)
    assert str(exc.value) == (
        f"{p}: 7 rows but the scheme {scheme8.source} has 8 scale categories; "
        "the file must have one row per category"
    )


def test_duplicate_row(scheme8: CategoryScheme, tmp_path: Path) -> None:
    cats = (*scheme8.scale[:7], scheme8.scale[0])
    p = write_legacy(tmp_path / "s.dat", cats, np.ones(8), np.zeros(8))
    with pytest.raises(InputError) as exc:
        read_legacy_for_scheme(p, scheme8)
    assert str(exc.value) == (
        f"{p}:9: row (|eta| 0-1 r9 0-0.96) repeats line 2 (scale[0] |eta| 0-1 r9 0-0.96)"
    )


# --------------------------------------------------------------------------- combine


def _base(tmp_path: Path) -> Path:
    """Run-dependent base scales: runs 1-100 and 101-200, |eta| 0-2.5."""
    cats = [
        Category("scale", 0, run=(1, 101), eta=(0, 2.5)),
        Category("scale", 1, run=(101, 201), eta=(0, 2.5)),
    ]
    return write_legacy(tmp_path / "base.dat", cats, [1.01, 0.98], [0.001, 0.002])


def test_combine(tmp_path: Path) -> None:
    step = write_only_step(
        tmp_path / "step.tsv",
        [Category("scale", 0, eta=(0, 1.4442)), Category("scale", 1, eta=(1.566, 2.5))],
        [1.1, 0.9],
        [0.01, 0.02],
    )
    out = tmp_path / "combined.dat"
    table = combine(_base(tmp_path), step, out)
    assert [(c.run, c.eta) for c in table.boxes] == [
        ((1, 101), (0, 1.4442)),
        ((1, 101), (1.566, 2.5)),
        ((101, 201), (0, 1.4442)),
        ((101, 201), (1.566, 2.5)),
    ]
    np.testing.assert_allclose(table.values, [1.01 * 1.1, 1.01 * 0.9, 0.98 * 1.1, 0.98 * 0.9])
    np.testing.assert_array_equal(table.errors, [0.01, 0.02, 0.01, 0.02])  # pymin: step error
    back = read_legacy(out)
    assert _boxes(back.boxes) == _boxes(table.boxes)
    np.testing.assert_array_equal(back.values, table.values)
    assert out.read_text().splitlines()[1].split("\t")[:4] == ["1", "100", "0", "1.4442"]

    quad = combine(_base(tmp_path), step, error="quadrature")
    assert quad.errors[0] == pytest.approx(np.hypot(1.1 * 0.001, 1.01 * 0.01))


def test_combine_step_finer_and_coarser(tmp_path: Path) -> None:
    """A step category containing the base one keeps the base (narrower) box."""
    base = write_legacy(
        tmp_path / "b.dat",
        [
            Category("scale", 0, eta=(0, 1), r9=(0, 0.96)),
            Category("scale", 1, eta=(0, 1), r9=(0.96, 10)),
        ],
        [1.0, 2.0],
        [0.0, 0.0],
    )
    step = write_only_step(tmp_path / "s.tsv", [Category("scale", 0, eta=(0, 1))], [3.0], [0.1])
    table = combine(base, step)
    assert [(c.eta, c.r9) for c in table.boxes] == [((0, 1), (0, 0.96)), ((0, 1), (0.96, 10))]
    np.testing.assert_array_equal(table.values, [3.0, 6.0])


def test_combine_partial_overlap_is_an_error(tmp_path: Path) -> None:
    step = write_legacy(tmp_path / "step.dat", [Category("scale", 0, run=(50, 151))], [1.1], [0])
    base = _base(tmp_path)
    with pytest.raises(InputError) as exc:
        combine(base, step)
    assert str(exc.value) == (
        f"{step}:2: row (run 50-150) partially overlaps {base}:2 (run 1-100 |eta| 0-2.5); "
        "step categories must be nested in or contain the base categories"
    )


def test_combine_keeps_uncovered_base_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    step = write_legacy(tmp_path / "step.dat", [Category("scale", 0, run=(1, 101))], [1.1], [0])
    with caplog.at_level(logging.WARNING, logger="zcalib.corrections.legacy"):
        table = combine(_base(tmp_path), step)
    np.testing.assert_allclose(table.values, [1.01 * 1.1, 0.98])
    assert "(run 101-200 |eta| 0-2.5) overlaps no row" in caplog.text
