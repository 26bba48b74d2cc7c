from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from zcalib.categories import load_categories, region_code, region_pair
from zcalib.exceptions import InvalidCategories

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _tsv(tmp_path: Path, rows: list[str], name: str = "cats.tsv") -> Path:
    p = tmp_path / name
    p.write_text(
        "#type\tetaMin\tetaMax\tr9Min\tr9Max\tgain\tetMin\tetMax\n" + "\n".join(rows) + "\n"
    )
    return p


def test_seed_scheme_tsv_and_yaml_are_equivalent():
    tsv = load_categories(CONFIGS / "cats_eta_r9.tsv")
    yml = load_categories(CONFIGS / "cats_eta_r9.yaml")
    assert (len(tsv.scale), len(tsv.smear), tsv.n_cells, tsv.n_regions) == (8, 8, 8, 36)
    assert tsv.to_yaml_dict() == yml.to_yaml_dict()
    assert [c.scale for c in tsv.cells] == list(range(8))
    assert [c.smear for c in tsv.cells] == list(range(8))


def test_assign_cells_and_crack():
    s = load_categories(CONFIGS / "cats_eta_r9.tsv")
    cells = s.assign(
        abs_eta=np.array([0.5, 1.2, 1.5, 2.2, 2.6, 0.99999, 1.0]),
        r9=np.array([0.9, 0.97, 0.9, 0.99, 0.9, 0.96, 0.95999]),
        et=np.full(7, 40.0),
    )
    # crack (1.5) and |eta| > 2.5 are outside every category; edges are half-open [lo, hi)
    assert cells.tolist() == [0, 5, -1, 7, -1, 4, 1]


def test_region_code_roundtrip():
    ci = np.array([3, 1, -1, 7])
    cj = np.array([1, 1, 2, 7])
    codes = region_code(ci, cj, 8)
    assert codes.tolist() == [1 * 8 + 3, 9, -1, 63]
    assert region_pair(codes[0], 8) == (1, 3)


def test_gap_is_an_error_naming_the_range(tmp_path):
    p = _tsv(tmp_path, ["scale\t0.\t1.\t-1\t-1\t-1\t-1\t-1", "scale\t1.2\t2.5\t-1\t-1\t-1\t-1\t-1"])
    with pytest.raises(InvalidCategories) as err:
        load_categories(p)
    assert str(err.value) == f"{p}: gap in scale categories: no category covers |eta| [1, 1.2)"


def test_overlap_is_an_error_naming_categories_and_range(tmp_path):
    p = _tsv(tmp_path, ["scale\t0.\t1.\t-1\t-1\t-1\t-1\t-1", "scale\t0.8\t2.5\t-1\t-1\t-1\t-1\t-1"])
    with pytest.raises(InvalidCategories) as err:
        load_categories(p)
    assert str(err.value) == f"{p}: scale categories 0, 1 overlap in |eta| [0.8, 1)"


def test_crack_may_stay_uncovered(tmp_path):
    p = _tsv(
        tmp_path, ["scale\t0.\t1.4442\t-1\t-1\t-1\t-1\t-1", "scale\t1.566\t2.5\t-1\t-1\t-1\t-1\t-1"]
    )
    s = load_categories(p)
    assert s.n_cells == 2
    assert len(s.smear) == 1  # one inclusive smear category when none is given


def test_gain_categories_must_cover_every_gain(tmp_path):
    p = _tsv(tmp_path, ["scale\t0.\t2.5\t-1\t-1\t12\t-1\t-1", "scale\t0.\t2.5\t-1\t-1\t6\t-1\t-1"])
    with pytest.raises(InvalidCategories, match=r"no category covers \|eta\| \[0, 2.5\), gain 1$"):
        load_categories(p)


def test_bad_gain_value(tmp_path):
    p = _tsv(tmp_path, ["scale\t0.\t2.5\t-1\t-1\t3\t-1\t-1"])
    with pytest.raises(InvalidCategories) as err:
        load_categories(p)
    assert str(err.value) == f"{p}:2: column 'gain' is 3; allowed: 12, 6, 1 or -1 (no cut)"


def test_wrong_column_count(tmp_path):
    p = _tsv(tmp_path, ["scale\t0.\t2.5\t-1\t-1\t-1"])
    with pytest.raises(InvalidCategories, match=r":2: expected 8 columns .* got 6$"):
        load_categories(p)


def test_inverted_range(tmp_path):
    p = _tsv(tmp_path, ["scale\t2.5\t0.\t-1\t-1\t-1\t-1\t-1"])
    with pytest.raises(InvalidCategories) as err:
        load_categories(p)
    assert str(err.value) == (
        f"{p}: scale category 0 has an empty or inverted eta range [2.5, 0); min must be < max"
    )


def test_malformed_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("scale:\n  - {eta: [0, 1.4442], r9: [0, 0.96}\n")
    with pytest.raises(InvalidCategories) as err:
        load_categories(p)
    assert (
        str(err.value)
        == f"{p}: malformed YAML at line 2, column 36: expected ',' or ']', but got '}}'"
    )


def test_unknown_yaml_field(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("scale:\n  - {eta: [0, 2.5], foo: 3}\n")
    with pytest.raises(InvalidCategories) as err:
        load_categories(p)
    assert str(err.value) == f"{p}: field 'scale.0.foo': Extra inputs are not permitted (got 3)"


def test_scale_and_smear_must_cover_the_same_domain(tmp_path):
    p = _tsv(tmp_path, ["scale\t0.\t2.5\t-1\t-1\t-1\t-1\t-1", "smear\t0.\t2.\t-1\t-1\t-1\t-1\t-1"])
    with pytest.raises(InvalidCategories, match="both must cover the same range"):
        load_categories(p)


def test_finer_scale_than_smear_forms_cells(tmp_path):
    rows = [
        f"scale\t{a}\t{b}\t-1\t-1\t-1\t-1\t-1"
        for a, b in [(0, 0.5), (0.5, 1), (1, 1.4442), (1.566, 2), (2, 2.5)]
    ]
    rows += ["smear\t0\t1.4442\t-1\t-1\t-1\t-1\t-1", "smear\t1.566\t2.5\t-1\t-1\t-1\t-1\t-1"]
    s = load_categories(_tsv(tmp_path, rows))
    assert [(c.scale, c.smear) for c in s.cells] == [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1)]


def test_run_ranges_are_inclusive(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("scale:\n  - {run: [1, 10], eta: [0, 2.5]}\n  - {run: [11, 20], eta: [0, 2.5]}\n")
    s = load_categories(p)
    cells = s.assign(
        abs_eta=np.full(3, 0.5), r9=np.ones(3), et=np.full(3, 40.0), run=np.array([10, 11, 20])
    )
    assert cells.tolist() == [0, 1, 1]


def test_grid_lookup_matches_testing_every_category(tmp_path):
    """Regression guard for the table look-up: same cells as testing each category's box."""
    p = tmp_path / "c.yaml"
    rows = []
    for run in ([1, 100], [101, 200]):
        for eta in ([0, 1], [1, 1.4442], [1.566, 2.5]):
            for gain in (12, 6, 1):
                for et in ([0, 45], [45, 14000]):
                    rows.append(
                        f"  - {{run: {run}, eta: {eta}, gain: {gain}, et: {et}, r9: [0, 10]}}"
                    )
    smear = "\n".join(
        f"  - {{run: [1, 200], eta: {e}, r9: {r}, et: [0, 14000]}}"
        for e in ([0, 1.4442], [1.566, 2.5])
        for r in ([0, 0.94], [0.94, 10])
    )
    p.write_text("scale:\n" + "\n".join(rows) + "\nsmear:\n" + smear + "\n")
    s = load_categories(p)
    rng = np.random.default_rng(4)
    n = 50_000
    kw = {
        "abs_eta": np.concatenate(
            [rng.uniform(-0.1, 2.7, n - 6), [0, 1, 1.4442, 1.5, 2.5, np.nan]]
        ),
        "r9": rng.choice([0.5, 0.94, 0.97, 10.0, 11.0, np.inf], n),
        "et": rng.choice([-1.0, 0.0, 20.0, 45.0, 100.0, 14000.0], n),
        "gain": rng.choice([12, 6, 1, 0, 3], n),
        "run": rng.integers(-5, 210, n),
    }
    fast = s.assign(**kw)
    slow = s._assign_slow(**kw)
    np.testing.assert_array_equal(fast, slow)
    assert (fast >= 0).mean() > 0.1  # the comparison covers many assigned leptons


def test_compiled_assignment_matches_the_reference():
    """The compiled grid look-up gives the cell of the category-by-category test, also for
    NaN and out-of-range values of the variables cut on, and every gain."""
    from zcalib.categories import scheme_from_dict

    scheme = scheme_from_dict(
        {
            "scale": [
                {"eta": [a, b], "r9": [r, s], "gain": g}
                for a, b in ((0, 1.0), (1.0, 1.4442), (1.566, 2.5))
                for r, s in ((0, 0.94), (0.94, 10))
                for g in (12, 6, 1)
            ],
            "smear": [{"eta": [0, 1.4442], "r9": [0, 10]}, {"eta": [1.566, 2.5], "r9": [0, 10]}],
        }
    )
    rng = np.random.default_rng(5)
    n = 20_000
    kw = {
        "abs_eta": rng.uniform(-0.2, 2.7, n),
        "r9": rng.uniform(0.5, 1.1, n),
        "et": rng.uniform(-5, 100, n),
        "gain": rng.choice([12, 6, 1, 0], n),
        "run": np.zeros(n, np.int64),
    }
    kw["abs_eta"][::50] = np.nan  # (Et is cut on by no category: its value is not read)
    fast = scheme.assign(**kw)
    np.testing.assert_array_equal(fast, scheme._assign_slow(**kw))
    assert (fast >= 0).sum() > n // 2


# ------------------------------------------------------------ signed eta and input columns
SIGNED_YAML = """\
scale:
  - {sceta: [-2.5, -1.566]}
  - {sceta: [-1.4442, 0]}
  - {sceta: [0, 1.4442]}
  - {sceta: [1.566, 2.5]}
smear:
  - {eta: [0, 1.4442]}
  - {eta: [1.566, 2.5]}
"""


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cats.yaml"
    p.write_text(text)
    return p


def test_signed_eta_categories_separate_ee_minus_and_plus(tmp_path):
    s = load_categories(_yaml(tmp_path, SIGNED_YAML))
    # each signed scale category meets the |eta| smear category of its side only
    assert [(c.scale, c.smear) for c in s.cells] == [(0, 1), (1, 0), (2, 0), (3, 1)]
    sc = np.array([-2.0, -1.5, -0.3, 0.3, 1.5, 2.0, 2.6, -2.6])
    cells = s.assign(abs_eta=np.abs(sc), r9=np.ones(8), et=np.full(8, 40.0), sceta=sc)
    assert cells.tolist() == [0, -1, 1, 2, -1, 3, -1, -1]  # crack and |eta| > 2.5: none
    assert s.variables == ("eta", "sceta")
    assert load_categories(_yaml(tmp_path, yaml_dump(s.to_yaml_dict()))) == s.__class__(
        scale=s.scale, smear=s.smear, cells=s.cells, source=str(tmp_path / "cats.yaml")
    )


def yaml_dump(raw: dict) -> str:
    import yaml

    return yaml.safe_dump(raw)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (  # the gap is named in signed eta (the crack is allowed on both sides)
            "scale:\n  - {sceta: [-2.5, -1.566]}\n  - {sceta: [-1.4, 2.5]}\n",
            "gap in scale categories: no category covers eta [-1.566, -1.4)",
        ),
        (
            "scale:\n  - {sceta: [-2.5, -1.566]}\n  - {eta: [0, 2.5]}\n",
            (
                "scale categories cut on both |eta| ('eta') and signed eta ('sceta'); use one of "
                "them in the scale list"
            ),
        ),
        (
            "scale:\n  - {columns: {pfRelIso: [0, 0.2]}}\n  - {columns: {pfRelIso: [0.1, 10]}}\n",
            "scale categories 0, 1 overlap in pfRelIso [0.1, 0.2)",
        ),
    ],
)
def test_signed_eta_and_column_errors_name_the_ranges(tmp_path, text, problem):
    with pytest.raises(InvalidCategories) as err:
        load_categories(_yaml(tmp_path, text))
    assert str(err.value) == f"{tmp_path / 'cats.yaml'}: {problem}"


def test_tsv_read_by_header_equals_yaml(tmp_path):
    tsv = tmp_path / "cats.tsv"
    tsv.write_text(
        "#type\tscEtaMin\tscEtaMax\tr9Min\tr9Max\tgain\tElectron_hoeMin\tElectron_hoeMax\n"
        "scale\t-2.5\t-1\t-1\t-1\t-1\t*\t0.05\n"
        "scale\t-2.5\t-1\t-1\t-1\t-1\t0.05\t*\n"
        "scale\t-1\t2.5\t-1\t-1\t-1\t*\t*\n"
    )
    yml = _yaml(
        tmp_path,
        "scale:\n"
        "  - {sceta: [-2.5, -1], columns: {Electron_hoe: [-.inf, 0.05]}}\n"
        "  - {sceta: [-2.5, -1], columns: {Electron_hoe: [0.05, .inf]}}\n"
        "  - {sceta: [-1, 2.5]}\n",
    )
    a, b = load_categories(tsv), load_categories(yml)
    assert a.to_yaml_dict() == b.to_yaml_dict()
    assert a.scale[0].sceta == (-2.5, -1.0)  # -1 is a value in signed eta
    assert a.columns == ("Electron_hoe",)
    hoe = np.array([0.01, 0.2, 0.2])
    sc = np.array([-2.0, -2.0, 0.5])
    cells = a.assign(
        abs_eta=np.abs(sc), r9=np.ones(3), et=np.ones(3), sceta=sc, columns={"Electron_hoe": hoe}
    )
    assert cells.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"the categories cut on Electron_hoe, but no values"):
        a.assign(abs_eta=np.abs(sc), r9=np.ones(3), et=np.ones(3), sceta=sc)


@pytest.mark.parametrize("name", ["eta", "gain", "1x", "a b"])
def test_bad_column_name(tmp_path, name):
    text = f"scale:\n  - {{columns: {{'{name}': [0, 1]}}}}\n"
    with pytest.raises(InvalidCategories, match=rf"column name '{name}' is not allowed"):
        load_categories(_yaml(tmp_path, text))


def test_tsv_header_with_unknown_column_layout(tmp_path):
    tsv = tmp_path / "cats.tsv"
    tsv.write_text("#type\tscEtaMin\tscEtaMax\thoe\nscale\t-2.5\t2.5\t1\n")
    with pytest.raises(InvalidCategories) as err:
        load_categories(tsv)
    assert str(err.value) == (
        f"{tsv}: header column 'hoe' is not allowed; use 'type', 'gain' and "
        "'<variable>Min <variable>Max' pairs (run, eta, scEta, r9, et or a column name)"
    )


def test_grid_lookup_bisects_many_edges_like_searchsorted():
    """Above 32 edges per variable the look-up bisects (below, it counts the edges): both
    give the cell of the category-by-category test, for values on every edge, between
    edges, outside the range, NaN and inf."""
    from zcalib.categories import _LINEAR_SEARCH, scheme_from_dict

    edges = np.round(np.linspace(10.0, 90.0, 41), 6)  # 41 Et edges: bisection
    assert len(edges) > _LINEAR_SEARCH
    scheme = scheme_from_dict(
        {
            "scale": [
                {"eta": e, "et": [float(a), float(b)]}
                for e in ([0.0, 1.4442], [1.566, 2.5])
                for a, b in itertools.pairwise(edges)
            ]
        }
    )
    et = np.concatenate([edges, edges + 1e-9, edges - 1e-9, [5.0, 95.0, np.nan, np.inf]])
    eta = np.array([0.0, 1.0, 1.4442, 1.5, 1.566, 2.5, np.nan])  # edges, the crack, NaN
    kw = {
        "abs_eta": np.repeat(eta, len(et)),
        "r9": np.ones(len(eta) * len(et)),
        "et": np.tile(et, len(eta)),
    }
    fast = scheme.assign(**kw)
    np.testing.assert_array_equal(
        fast,
        scheme._assign_slow(**kw, gain=np.full(len(fast), 12), run=np.zeros(len(fast), np.int64)),
    )
    assert 100 < (fast >= 0).sum() < len(fast)
