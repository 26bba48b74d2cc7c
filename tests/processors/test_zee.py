"""The dielectron processor on real coffea executors: agreement, formats, weights, cutflow."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from tests.conftest import ROOT, dimuon_histograms, shared_file
from zcalib.config import DatasetConfig, SelectionConfig, dataset_config_from_files
from zcalib.exceptions import InputError
from zcalib.histograms import HistogramSet
from zcalib.runner import RunOptions, build_histograms, load_weight

PILEUP = ROOT / "corrections" / "pileup_demo.json"


def _cfg(res, fmt="ecalelf") -> DatasetConfig:
    return dataset_config_from_files(data=[str(res.data)], mc=[str(res.mc)], fmt=fmt)


def _arrays(hs: HistogramSet, kind: str, variation: str = "nominal"):
    regions, w, w2 = hs.region_arrays(kind, variation)
    return {int(r): (w[i], w2[i]) for i, r in enumerate(regions)}


def _assert_same(a: HistogramSet, b: HistogramSet, *, weighted_rtol: float = 1e-12) -> None:
    assert a.cutflow == b.cutflow
    assert sorted(a.variations) == sorted(b.variations)
    da, db = _arrays(a, "data"), _arrays(b, "data")
    assert da.keys() == db.keys()
    for r in da:
        np.testing.assert_array_equal(da[r][0], db[r][0])  # unweighted: exact
    for var in a.variations:
        ma, mb = _arrays(a, "mc", var), _arrays(b, "mc", var)
        assert ma.keys() == mb.keys()
        for r in ma:
            np.testing.assert_allclose(ma[r][0], mb[r][0], rtol=weighted_rtol, atol=0)
            np.testing.assert_allclose(ma[r][1], mb[r][1], rtol=weighted_rtol, atol=0)


@pytest.fixture(scope="module")
def weights():
    return (load_weight("pileup", PILEUP),)


@pytest.fixture(scope="module")
def reference(demo_ecalelf, scheme, weights):
    return build_histograms(
        _cfg(demo_ecalelf),
        scheme,
        weights=weights,
        options=RunOptions(executor="iterative", chunksize=100_000, progress=False),
    )


def test_cutflow_and_contents(reference, demo_ecalelf):
    cf = reference.cutflow
    assert cf["data"]["all"] == demo_ecalelf.n_data
    assert cf["mc"]["all"] == demo_ecalelf.n_mc
    for ds in ("data", "mc"):
        counts = list(cf[ds].values())
        assert counts == sorted(counts, reverse=True)  # cumulative cuts never add events
        assert cf[ds]["mass"] > 0.8 * cf[ds]["all"]
    # unweighted data entries in the histogram (mass range 60-120 via flow-free view) == cutflow
    _, w, _ = reference.region_arrays("data")
    assert w.sum() == cf["data"]["mass"]
    assert sorted(reference.variations) == ["nominal", "pileup_down", "pileup_up"]
    # the pile-up weight is a normalised reweighting: Σw changes by < 5 %, variations differ
    _, wn, _ = reference.region_arrays("mc", "nominal")
    _, wu, _ = reference.region_arrays("mc", "pileup_up")
    _, wd, _ = reference.region_arrays("mc", "pileup_down")
    assert wu.sum() != pytest.approx(wd.sum(), rel=1e-6)
    assert wn.sum() == pytest.approx(
        reference.metadata["sumw"]["mc"] * cf["mc"]["mass"] / cf["mc"]["all"], rel=0.05
    )


@pytest.mark.cluster
def test_executors_and_chunksizes_agree(reference, demo_ecalelf, scheme, weights):
    cfg = _cfg(demo_ecalelf)
    for executor, chunksize in (
        ("iterative", 1_000),
        ("futures", 7_000),
        ("dask", 1_000),
        ("dask", 100_000),
    ):
        hs = build_histograms(
            cfg,
            scheme,
            weights=weights,
            options=RunOptions(executor=executor, chunksize=chunksize, workers=2, progress=False),
        )
        _assert_same(reference, hs)


def test_ecalelf_and_nanoaod_give_the_same_histograms(reference, demo_nanoaod, scheme, weights):
    nano = build_histograms(
        _cfg(demo_nanoaod, "nanoaod"),
        scheme,
        weights=weights,
        options=RunOptions(executor="iterative", progress=False),
    )
    # NanoAOD forms the pair from ID-passing electrons (the ECALELF pair is fixed), so an event
    # whose pair electron fails the ID can still pair a soft extra electron there: counts agree
    # from the Et cut on, where such pairs are gone.
    for ds in ("data", "mc"):
        a, b = reference.cutflow[ds], nano.cutflow[ds]
        assert [a[c] for c in ("all", "et", "charge", "categorised", "mass")] == [
            b[c] for c in ("all", "et", "charge", "categorised", "mass")
        ]
        assert b["id"] >= a["id"]
    for kind in ("data", "mc"):
        a, b = _arrays(reference, kind), _arrays(nano, kind)
        assert a.keys() == b.keys()
        for r in a:
            # identical pair counts and mass bins: the generator writes NanoAOD pt and ECALELF
            # energy so that both give the same float64 mass up to rounding; an entry within
            # rounding of a bin edge may land in the neighbouring bin (one MC entry does with
            # the window-aligned default binning): the running sums then differ in one bin only
            if kind == "data":
                np.testing.assert_array_equal(a[r][0], b[r][0])
            else:
                moved = np.abs(np.cumsum(a[r][0] - b[r][0])) > 1e-9
                assert moved.sum() <= 1, np.flatnonzero(moved)
                np.testing.assert_allclose(a[r][0].sum(), b[r][0].sum(), rtol=1e-12)
                assert moved.sum() == 0 or np.abs(a[r][0] - b[r][0]).max() < 2.0


def test_nan_energy_is_an_error_naming_file_and_branch(tmp_path, scheme):
    import uproot

    from tests.processors.ntuples import write_ecalelf

    p = write_ecalelf(tmp_path / "nan.root", n=500, nan_at=123)
    cfg = dataset_config_from_files(data=[str(p)])
    with pytest.raises(InputError) as err:
        build_histograms(cfg, scheme, options=RunOptions(executor="iterative", progress=False))
    assert str(err.value) == (
        f"{p} (entries 0-500): branch 'energy_ECAL_ele' has 1 non-finite value(s) (NaN/inf), "
        "first at entry 123; energy values must be finite"
    )
    assert uproot.open(p)["selected"].num_entries == 500


def test_selection_id_level(demo_ecalelf, scheme):
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)])
    opts = RunOptions(executor="iterative", progress=False)
    loose = build_histograms(cfg, scheme, options=opts, selection=SelectionConfig(id_level="none"))
    tight = build_histograms(cfg, scheme, options=opts, selection=SelectionConfig(id_level="tight"))
    assert tight.cutflow["data"]["id"] < loose.cutflow["data"]["id"] == demo_ecalelf.n_data


def test_real_nanoaod_file_is_read_and_reported(scheme):
    p = shared_file("cms_opendata_2015_ttbar_nanoaod.root")
    cfg = dataset_config_from_files(mc=[str(p)], fmt="nanoaod")
    hs = build_histograms(
        cfg,
        scheme,
        options=RunOptions(executor="iterative", progress=False),
        selection=SelectionConfig(id_level="none", min_et_lead=10, min_et_sublead=10),
    )
    cf = hs.cutflow["mc"]
    assert cf["all"] == 200
    # tt̄ events: few have two electrons; the cutflow must say how many and never go up
    assert 0 < cf["two_leptons"] < 200
    assert list(cf.values()) == sorted(cf.values(), reverse=True)
    assert hs.metadata["inputs"][0]["entries"] == 200


def test_real_dimuon_flat_ntuple_through_column_map(tmp_path):
    cats = tmp_path / "mu.yaml"
    cats.write_text("scale:\n  - {eta: [0, 1.2]}\n  - {eta: [1.2, 2.4]}\n")
    hs = dimuon_histograms(cats)
    cf = hs.cutflow["data"]
    assert cf["all"] == 2304
    assert cf["charge"] < cf["et"]  # same-sign pairs removed
    regions, w, _ = hs.region_arrays("data")
    assert set(regions.tolist()) <= {0, 1, 3}
    # the recomputed mass agrees with the ntuple's own M branch: the peak is at the Z
    centers = hs.hist.axes["mass"].centers
    peak = centers[np.argmax(w.sum(axis=0))]
    assert 88.0 < peak < 94.0


def test_tiling_check_not_rebuilt_per_chunk(demo_ecalelf, scheme, monkeypatch):
    """Regression (issue 12): coffea unpickles the processor for every chunk, and the
    category scheme (tiling checks, look-up table) was rebuilt each time; it is built once
    per process now, whatever the number of chunks."""
    import zcalib.categories as categories
    from zcalib.processors import zee

    builds = []
    real = categories.build_scheme

    def counting(*a, **k):
        builds.append(1)
        return real(*a, **k)

    monkeypatch.setattr(categories, "build_scheme", counting)
    zee._cached_scheme.cache_clear()
    hs = build_histograms(
        _cfg(demo_ecalelf),
        scheme,
        options=RunOptions(executor="iterative", chunksize=2_000, progress=False),
    )
    assert hs.metadata["run"]["chunks"] >= 10
    assert len(builds) == 1


def test_data_hold_only_data_variations(reference):
    """Regression (issue 12): the dense storage carried the MC-weight variations for data
    too; only the variations filled for a dataset are stored."""
    blocks = set(reference.counts.blocks)
    assert blocks == {
        ("data", "nominal"),
        ("mc", "nominal"),
        ("mc", "pileup_up"),
        ("mc", "pileup_down"),
    }
    _, w, _ = reference.region_arrays("data", "pileup_up")  # still readable: zeros
    assert w.shape[0] == len(reference.regions)
    assert not w.any()


def test_piecewise_constant_weight_evaluated_once_per_interval_gives_the_same_numbers():
    """A pile-up weight is a binning of numbers: it is evaluated once per interval between
    its edges (values on an edge on their own) and spread back; the numbers are those of a
    correctionlib call per event, in range, on the edges and clamped outside."""
    import correctionlib

    from zcalib.processors.zee import _constant_edges, _evaluate_keys

    payload = PILEUP.read_text()
    edges = _constant_edges(payload, "pileup", -1)
    assert edges is not None
    np.testing.assert_array_equal(edges, np.arange(101.0))
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-5.0, 110.0, 20_000), edges, np.nextafter(edges, -1)])
    ev = correctionlib.CorrectionSet.from_string(payload)["pileup"]
    keys = ("nominal", "up", "down")
    got = _evaluate_keys(ev, [x], keys, -1, edges)
    for key, values in zip(keys, got, strict=True):
        np.testing.assert_array_equal(values, ev.evaluate(x, key))
    # not piecewise constant: a formula in the number
    formula = {
        "schema_version": 2,
        "corrections": [
            {
                "name": "w",
                "version": 1,
                "inputs": [{"name": "npu", "type": "real"}, {"name": "k", "type": "string"}],
                "output": {"name": "w", "type": "real"},
                "data": {
                    "nodetype": "category",
                    "input": "k",
                    "content": [
                        {
                            "key": "nominal",
                            "value": {
                                "nodetype": "formula",
                                "expression": "1+0.01*x",
                                "parser": "TFormula",
                                "variables": ["npu"],
                            },
                        }
                    ],
                },
            }
        ],
    }
    assert _constant_edges(json.dumps(formula), "w", -1) is None


def test_processor_reads_only_the_branches_it_uses(scheme):
    """Optional branches the files hold but the fill does not use (event number, lumi
    block, charge without an opposite-charge cut, MC weights for data) are not read."""
    from zcalib.io.ecalelf import ECALELF
    from zcalib.processors.zee import ZeeProcessor

    available = ECALELF.optional()  # every optional branch present
    assert set(available) == {"sc_eta", "charge", "event", "lumi", "weight", "npu"}
    required = ["runNumber", "R9Ele", "etaEle", "phiEle", "energy_ECAL_ele", "gainSeedSC"]
    proc = ZeeProcessor(
        fmt="ecalelf",
        categories=scheme.to_yaml_dict(),
        kinds={"d": "data", "m": "mc"},
        available={"d": available, "m": available},
        weights=(load_weight("pileup", PILEUP),),
    )
    assert proc.branches("d") == [*required, "eleID", "etaSCEle"]
    assert proc.branches("m") == [*required, "eleID", "etaSCEle", "mcGenWeight", "nPU"]
    charged = ZeeProcessor(
        fmt="ecalelf",
        categories=scheme.to_yaml_dict(),
        kinds={"d": "data"},
        available={"d": available},
        selection=SelectionConfig(opposite_charge=True),
    )
    assert "chargeEle" in charged.branches("d")


def _edge_case_leptons(n: int, seed: int):
    """Pairs on category edges, in the crack (no category), with fill values (η = -999),
    NaN R9, unknown gains, failed IDs, and Et on an Et edge (``E = Et · cosh η``)."""
    from zcalib.io._base import Leptons

    rng = np.random.default_rng(seed)
    sc_eta = rng.uniform(-2.7, 2.7, (n, 2))
    sc_eta[::7, 0] = rng.choice([0.0, 1.0, 1.4442, 1.5, 1.566, -2.5, 2.5], len(sc_eta[::7]))
    et = rng.uniform(15, 80, (n, 2))
    et[::9, 0] = rng.choice([20.0, 25.0, 35.0, 45.0], len(et[::9]))
    energy = et * np.cosh(sc_eta)
    eta = sc_eta + rng.normal(0, 0.01, (n, 2))
    sc_eta[::53, 1] = -999.0
    eta[::61, 0] = -999.0
    r9 = rng.uniform(0.5, 1.05, (n, 2))
    r9[::5, 1] = rng.choice([0.94, 0.96, 1.0], len(r9[::5]))
    r9[::97, 0] = np.nan
    return Leptons(
        energy=energy,
        eta=eta,
        sc_eta=sc_eta,
        phi=rng.uniform(-np.pi, np.pi, (n, 2)),
        r9=r9,
        gain=rng.choice([12, 6, 1, -1], (n, 2), p=[0.85, 0.07, 0.05, 0.03]),
        id_pass=rng.random((n, 2)) < 0.95,
        charge=rng.choice([-1, 1], (n, 2)),
        valid=np.ones((n, 2), bool),
        run=rng.integers(354990, 356010, n),
        lumi=np.zeros(n, np.int64),
        event=np.arange(n),
        weight=rng.normal(1.0, 1.0, n),  # negative weights too
    )


def test_fused_selection_matches_the_reference_path():
    """The processor's compiled selection (pair cuts writing the categorisation Et, the grid
    look-up, cutflow/regions/per-cell Et in one pass) gives bit for bit what the separate
    reference steps give: ``pair_cuts`` bits, ``category_et``, the category-by-category
    assignment, ``region_code`` and ``np.bincount`` sums; on a scheme with a gap (the
    crack), gains, a run cut and 40 Et bins (its look-up bisects, the others count)."""
    from zcalib.categories import region_code, scheme_from_dict
    from zcalib.histograms import MassBinning
    from zcalib.physics import category_et
    from zcalib.processors.zee import CUTS, ZeeProcessor, _packed, pair_cuts

    et_edges = [0.0, *np.linspace(20, 98, 40).tolist(), 14000.0]
    scale = [
        {"run": [355000, 355999], "eta": list(e), "r9": [0.0, 10.0], "gain": g, "et": [a, b]}
        for e in ((0.0, 1.4442), (1.566, 2.5))
        for g in (12, 6, 1)
        for a, b in itertools.pairwise(et_edges)
    ]
    smear = [
        {"run": [355000, 355999], "eta": list(e), "r9": list(r), "et": [0.0, 14000.0]}
        for e in ((0.0, 1.4442), (1.566, 2.5))
        for r in ((0.0, 0.94), (0.94, 10.0))
    ]
    scheme = scheme_from_dict({"scale": scale, "smear": smear})
    proc = ZeeProcessor(fmt="ecalelf", categories=scheme.to_yaml_dict(), kinds={"mc": "mc"})
    lep = _edge_case_leptons(20_000, seed=12)
    sel = proc._select(lep, lep.energy)

    selection, binning = SelectionConfig(), MassBinning()
    mass, et, bits = pair_cuts(lep, lep.energy, selection, binning)
    cells = scheme._assign_slow(
        abs_eta=np.abs(lep.sc_eta).ravel(),
        r9=lep.r9.ravel(),
        et=category_et(et, mass).ravel(),
        gain=lep.gain.ravel(),
        run=np.repeat(lep.run, 2),
        sceta=lep.sc_eta.ravel(),
    ).reshape(-1, 2)
    packed = _packed(bits)
    packed.add("categorised", (cells >= 0).all(axis=1))
    cut = np.ones(len(lep), bool)
    cutflow = {}
    for name in CUTS:
        cut &= packed.all(name)
        cutflow[name] = int(cut.sum())
    c, x = cells[cut].ravel(), et[cut].ravel()
    cell_et = np.stack(
        [
            np.bincount(c, minlength=scheme.n_cells).astype(np.float64),
            np.bincount(c, weights=x, minlength=scheme.n_cells),
            np.bincount(c, weights=x * x, minlength=scheme.n_cells),
        ]
    )
    assert np.array_equal(sel.mass, mass, equal_nan=True)
    assert np.array_equal(sel.cut, cut)
    assert sel.cutflow == cutflow
    assert np.array_equal(sel.region, region_code(cells[cut, 0], cells[cut, 1], scheme.n_cells))
    assert np.array_equal(sel.cell_et, cell_et)
    # the edge cases are there: some pairs fail for lack of a category, most are kept
    assert cutflow["charge"] - cutflow["categorised"] > 500
    assert cutflow["mass"] > 2000
