"""Parquet pair skims: provenance, and histograms from a skim equal those from the ROOT input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.cluster.conftest import PILEUP, assert_same_histograms, corrupt_basket
from tests.processors.ntuples import write_ecalelf
from zcalib.config import SelectionConfig, dataset_config_from_files, load_dataset_config
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.histograms import MassBinning
from zcalib.io.preflight import SKIM_METADATA_KEY
from zcalib.runner import RunOptions, build_histograms, load_weight
from zcalib.skim import skim, skim_selection

ITER = RunOptions(executor="iterative", chunksize=9_000, progress=False)


@pytest.fixture(scope="module")
def weights():
    return (load_weight("pileup", PILEUP),)


@pytest.fixture(scope="module")
def ecalelf_skim(demo_ecalelf, tmp_path_factory):
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    return cfg, skim(cfg, tmp_path_factory.mktemp("skim"), options=ITER)


def test_skim_histograms_equal_root_histograms(ecalelf_skim, scheme, weights):
    cfg, res = ecalelf_skim
    root = build_histograms(cfg, scheme, weights=weights, options=ITER)
    pq_cfg = load_dataset_config(res.datasets_yaml)
    assert pq_cfg.format == "parquet"
    from_skim = build_histograms(
        pq_cfg,
        scheme,
        weights=weights,
        options=RunOptions(executor="iterative", chunksize=4_000, progress=False),
    )
    # the skim keeps only selected pairs: the cutflow starts there, the histograms are equal
    for ds in ("data", "mc"):
        assert from_skim.cutflow[ds]["all"] == root.cutflow[ds]["mass"]
    from_skim = type(from_skim)(
        hist=from_skim.hist,
        categories=from_skim.categories,
        kinds=from_skim.kinds,
        cutflow=root.cutflow,
        metadata=from_skim.metadata,
    )
    assert_same_histograms(root, from_skim)
    # Σw before selection comes from the skim's provenance
    assert from_skim.metadata["sumw"] == pytest.approx(root.metadata["sumw"], rel=1e-12)
    assert [s["source"]["path"] for s in from_skim.metadata["skims"]] == [
        str(cfg.datasets[0].files[0]),
        str(cfg.datasets[1].files[0]),
    ]


def test_skim_files_and_provenance(ecalelf_skim, demo_ecalelf):
    _, res = ecalelf_skim
    data, mc = res.files
    assert (data.dataset, data.entries, mc.dataset, mc.entries) == ("data", 20_000, "mc", 40_000)
    pf = pq.ParquetFile(mc.path)
    prov = json.loads(pf.schema_arrow.metadata[SKIM_METADATA_KEY.encode()])
    assert prov["source"]["path"] == str(demo_ecalelf.mc)
    assert prov["source"]["entries"] == 40_000
    assert len(prov["source"]["fingerprint"]) == 32
    assert prov["cutflow"]["all"] == 40_000
    assert prov["rows"] == pf.metadata.num_rows == mc.rows == prov["cutflow"]["mass"]
    assert prov["selection"]["min_et_lead"] == pytest.approx(25 * 0.95)
    mb = MassBinning()  # the default fill range, widened by the 5 % margin
    assert prov["mass_window"] == pytest.approx([0.95 * mb.lo, 1.05 * mb.hi])
    assert prov["has_event_ids"] is True
    assert prov["zcalib_version"]
    names = pf.schema_arrow.names
    assert names[:4] == ["energy_1", "energy_2", "eta_1", "eta_2"]
    assert {"run", "lumi", "event", "weight", "npu", "mass", "id_1", "gain_2"} <= set(names)
    assert "npu" not in pq.ParquetFile(data.path).schema_arrow.names  # data has no nPU
    types = {f.name: str(f.type) for f in pf.schema_arrow}
    assert types["energy_1"] == "float"
    assert types["run"] == "int64"
    sidecar = json.loads(mc.path.with_name(mc.path.name + ".json").read_text())
    import hashlib

    assert sidecar["sha256"] == hashlib.sha256(mc.path.read_bytes()).hexdigest()
    assert sidecar["source"] == prov["source"]
    record = json.loads(res.record.read_text())
    assert [f["path"] for f in record["files"]] == ["data/data.parquet", "mc/mc.parquet"]
    gains = pq.read_table(mc.path, columns=["gain_1"]).column(0).to_numpy()
    assert set(np.unique(gains)) <= {1, 6, 12}
    assert not list(res.datasets_yaml.parent.glob(".parts-*"))  # part files cleaned up
    metrics = json.loads((res.datasets_yaml.parent / "skim.metrics.json").read_text())
    assert metrics["events"] == 60_000
    assert metrics["rows_written"] == data.rows + mc.rows


def test_nanoaod_skim_with_corrections_equals_root(demo_nanoaod, scheme, tmp_path):
    """NanoAOD (pairs formed from ID-passing electrons), prior scale + smear steps (event ids)."""
    from zcalib.corrections import (
        build_scale_correction,
        build_smear_correction,
        write_correction_set,
    )
    from zcalib.corrections.steps import load_correction_steps

    truth = json.loads(demo_nanoaod.truth.read_text())
    n = len(scheme.scale)
    steps_path = tmp_path / "steps.json"
    write_correction_set(
        steps_path,
        [
            build_scale_correction("s", scheme, truth["scale"], [1e-3] * n, description="t"),
            build_smear_correction("m", scheme, truth["smear"], [2e-3] * n, description="t"),
        ],
        description="t",
    )
    steps = tuple(load_correction_steps(steps_path))
    cfg = dataset_config_from_files(
        data=[str(demo_nanoaod.data)], mc=[str(demo_nanoaod.mc)], fmt="nanoaod"
    )
    sel = SelectionConfig(id_level="tight")
    res = skim(cfg, tmp_path / "skim", selection=sel, options=ITER)
    kw = {"selection": sel, "corrections": steps, "smear_seed": 3, "options": ITER}
    root = build_histograms(cfg, scheme, **kw)
    from_skim = build_histograms(load_dataset_config(res.datasets_yaml), scheme, **kw)
    assert sorted(root.variations) == sorted(from_skim.variations)
    for kind in ("data", "mc"):
        for var in root.variations:
            ra, wa, w2a = root.region_arrays(kind, var)
            rb, wb, w2b = from_skim.region_arrays(kind, var)
            assert ra.tolist() == rb.tolist()
            np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=0)
            np.testing.assert_allclose(w2a, w2b, rtol=1e-12, atol=0)


def test_chunks_across_row_groups(demo_ecalelf, scheme, tmp_path, monkeypatch, weights):
    """Skims read by row groups (not coffea's whole-column reads): chunk edges anywhere."""
    monkeypatch.setattr("zcalib.skim.ROW_GROUP_SIZE", 1_000)
    cfg = dataset_config_from_files(mc=[str(demo_ecalelf.mc)])
    res = skim(cfg, tmp_path / "skim", options=ITER)
    assert pq.ParquetFile(res.files[0].path).metadata.num_row_groups > 30
    pq_cfg = load_dataset_config(res.datasets_yaml)
    a = build_histograms(
        pq_cfg,
        scheme,
        weights=weights,
        options=RunOptions(executor="iterative", chunksize=2_500, progress=False),
    )
    b = build_histograms(
        pq_cfg,
        scheme,
        weights=weights,
        options=RunOptions(executor="iterative", chunksize=100_000, progress=False),
    )
    assert a.metadata["run"]["chunks"] > 10
    assert_same_histograms(a, b)
    assert a.metadata["run"]["metrics"]["bytes_read"] > 0


def test_looser_selection_than_the_skim_is_refused(ecalelf_skim, scheme):
    _, res = ecalelf_skim
    cfg = load_dataset_config(res.datasets_yaml)
    path = res.files[0].path
    with pytest.raises(InvalidConfig) as err:
        build_histograms(cfg, scheme, selection=SelectionConfig(min_et_lead=20), options=ITER)
    assert str(err.value) == (
        f"{path}: skim made with min_et_lead=23.75; a selection over a skim can only be "
        "tighter (got min_et_lead=20.0)"
    )
    with pytest.raises(InvalidConfig, match="skim made with id_level='medium'"):
        build_histograms(cfg, scheme, selection=SelectionConfig(id_level="none"), options=ITER)
    with pytest.raises(InvalidConfig, match=r"skim made with mass window=.*got mass window="):
        build_histograms(cfg, scheme, binning=MassBinning(lo=50.0), options=ITER)
    # tighter is fine
    hs = build_histograms(cfg, scheme, selection=SelectionConfig(id_level="tight"), options=ITER)
    assert hs.cutflow["data"]["id"] < hs.cutflow["data"]["all"]


def test_skim_margin():
    sel, mb = skim_selection(SelectionConfig(min_et_sublead=30), MassBinning(lo=80, hi=100), 0.1)
    assert (sel.min_et_lead, sel.min_et_sublead) == pytest.approx((22.5, 27.0))
    assert (mb.lo, mb.hi) == pytest.approx((72.0, 110.0))
    with pytest.raises(InvalidConfig, match=r"margin must be in \[0, 1\)"):
        skim_selection(SelectionConfig(), MassBinning(), 1.5)


def test_skim_of_a_bad_file(tmp_path, scheme):
    good = write_ecalelf(tmp_path / "good.root", n=2000)
    bad = corrupt_basket(write_ecalelf(tmp_path / "bad.root", n=1500, seed=5), "R9Ele")
    cfg = dataset_config_from_files(data=[str(good), str(bad)])
    with pytest.raises(InputError, match=rf"^{bad} \(entries 0-1500\): cannot read events"):
        skim(cfg, tmp_path / "s1", options=ITER)
    res = skim(
        cfg,
        tmp_path / "s2",
        options=RunOptions(executor="iterative", progress=False, skip_bad_files=True),
    )
    assert [(r["path"], r["entries_lost"]) for r in res.skipped_files] == [(str(bad), 1500)]
    assert json.loads(res.record.read_text())["skipped_files"] == res.skipped_files
    assert [f.source for f in res.files if f.rows] == [str(good)]
    hs = build_histograms(load_dataset_config(res.datasets_yaml), scheme, options=ITER)
    assert hs.cutflow["data"]["all"] == res.files[0].rows


def test_not_a_parquet_file(tmp_path, scheme):
    p = tmp_path / "x.parquet"
    p.write_text("hello")
    cfg = dataset_config_from_files(data=[str(p)], fmt="parquet")
    with pytest.raises(
        InputError,
        match=r"x\.parquet: not a readable Parquet file \(.*\); "
        r"expected a zcalib pair skim$",
    ):
        build_histograms(cfg, scheme, options=ITER)


def test_skim_with_prior_corrections_fills_what_the_corrected_fill_gives(tmp_path, capsys):
    """``zcalib skim --corrections`` (the chain's prior steps, applied in order): data scaled
    and MC smeared before the preselection, the skims hold the corrected energies; filling
    from them gives exactly the histograms filled from the ntuples with the same
    ``--corrections``. Filling from such a skim with one of its steps again is refused."""
    from tests.conftest import CONFIGS
    from zcalib.categories import load_categories
    from zcalib.cli import main
    from zcalib.corrections import (
        build_scale_correction,
        build_smear_correction,
        write_correction_set,
    )
    from zcalib.histograms import load_histograms

    cats = CONFIGS / "cats_eta_r9.tsv"
    scheme = load_categories(cats)
    n = len(scheme.scale)
    steps = tmp_path / "prior.json"
    scale = build_scale_correction(
        "prior_scale", scheme, [1.02, 0.98] * (n // 2), [1e-3] * n, description="test"
    )
    smear = build_smear_correction(
        "prior_smear", scheme, [0.02] * len(scheme.smear), [2e-3] * n, description="test"
    )
    write_correction_set(steps, [scale, smear], description="prior steps")
    data = write_ecalelf(tmp_path / "d.root", n=2000, seed=5)
    mc = write_ecalelf(tmp_path / "m.root", n=2000, seed=6)
    loop = ["--executor", "iterative", "--no-progress", "-q"]
    prior = ["--corrections", str(steps), "--mc-smearing", "latest", "--smear-seed", "3"]
    inputs = ["--data", str(data), "--mc", str(mc)]
    assert main(["skim", *inputs, *prior, *loop, "--out", str(tmp_path / "s")]) == 0
    record = json.loads((tmp_path / "s" / "skim.json").read_text())
    assert [(c["name"], c["kind"]) for c in record["corrections"]] == [
        ("prior_scale", "scale"),
        ("prior_smear", "smear"),
    ]
    assert record["smear_seed"] == 3
    fill = ["histograms", "--categories", str(cats), *loop]
    skims = ["--datasets", str(tmp_path / "s" / "datasets.yaml")]
    assert main([*fill, *skims, "--out", str(tmp_path / "a.npz")]) == 0
    assert main([*fill, *inputs, *prior, "--out", str(tmp_path / "b.npz")]) == 0
    a, b = load_histograms(tmp_path / "a.npz"), load_histograms(tmp_path / "b.npz")
    for kind in ("data", "mc"):
        ra, wa, _ = a.region_arrays(kind, "nominal")
        rb, wb, _ = b.region_arrays(kind, "nominal")
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(wa, wb)
    # the corrections moved the masses: the raw fill differs
    assert main([*fill, *inputs, "--out", str(tmp_path / "raw.npz")]) == 0
    raw = load_histograms(tmp_path / "raw.npz")
    assert not np.array_equal(raw.region_arrays("data", "nominal")[1], wb)
    capsys.readouterr()

    again = [*fill, *skims, "--corrections", str(steps), "--out", str(tmp_path / "c.npz")]
    assert main(again) == 1
    skim_file = tmp_path / "s" / "data" / "d.parquet"
    assert capsys.readouterr().err == (
        f"zcalib: error: {skim_file}: skim made with correction 'prior_scale' (scale) already "
        "applied; filling would apply it a second time: leave it out of the corrections\n"
    )
    assert not (tmp_path / "c.npz").exists()
