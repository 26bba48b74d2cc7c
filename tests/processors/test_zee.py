"""The dielectron processor on real coffea executors: agreement, formats, weights, cutflow."""

from __future__ import annotations

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
