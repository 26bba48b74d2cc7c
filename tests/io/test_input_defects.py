"""Regression tests of the input defects found at production scale (issue 12), one per defect,
each named after it. Every test uses real ROOT files written with uproot and the real
coffea Runner."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import uproot
import yaml
from coffea import processor
from coffea.nanoevents import BaseSchema

from tests.cluster.conftest import assert_same_histograms
from tests.conftest import CONFIGS
from tests.processors.ntuples import write_ecalelf
from zcalib.cli import main
from zcalib.config import dataset_config_from_files, load_dataset_config
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.io.fingerprint import file_fingerprint
from zcalib.io.preflight import check_inputs
from zcalib.processors.zee import WeightSpec
from zcalib.runner import RunOptions, build_histograms, load_weight, run_processor

ITERATIVE = RunOptions(executor="iterative", progress=False, chunksize=400)


def _rewrite(path: Path, change) -> Path:
    """Rewrite an ECALELF tree after ``change(arrays)`` (a dict of numpy arrays)."""
    with uproot.open(path) as f:
        arrays = f["selected"].arrays(library="np")
    change(arrays)
    types = {
        k: (np.dtype((v.dtype, v.shape[1:])) if v.ndim == 2 else v.dtype) for k, v in arrays.items()
    }
    with uproot.recreate(path) as f:
        f.mktree("selected", types)
        f["selected"].extend(arrays)
    return path


def _histograms_cli(datasets: Path, out: Path) -> int:
    """``zcalib histograms`` of a dataset YAML on the iterative executor; the exit code."""
    cats = str(CONFIGS / "cats_eta_r9.tsv")
    args = ["--categories", cats, "--out", str(out), "--executor", "iterative", "--no-progress"]
    return main(["histograms", "--datasets", str(datasets), *args])


# ----------------------------------------------------------------- warning endless loop
@pytest.mark.timeout(120)
def test_warning_endless_loop_ecalelf_fill_values(tmp_path, scheme):
    """η = -999 (ECALELF fill value) in 1 % of events sent runner._sort_warnings into an
    endless loop (iterative executor, 23 GB). Now: the fill values are cut on η, silently,
    and the histograms equal those of the file without those events."""
    n = 4000
    bad = np.random.default_rng(5).uniform(size=n) < 0.01
    filled = _rewrite(
        write_ecalelf(tmp_path / "fill.root", n=n),
        lambda a: a["etaEle"].__setitem__((bad, 1), -999.0),
    )

    def drop_bad(a):
        for k in list(a):
            a[k] = a[k][~bad]

    clean = _rewrite(write_ecalelf(tmp_path / "clean.root", n=n), drop_bad)
    got = build_histograms(dataset_config_from_files(data=[str(filled)]), scheme, options=ITERATIVE)
    ref = build_histograms(dataset_config_from_files(data=[str(clean)]), scheme, options=ITERATIVE)
    flow = got.cutflow["data"]
    assert (flow["id"], flow["eta"]) == (n, n - int(bad.sum()))
    assert 30 <= bad.sum() <= 50
    assert got.cutflow["data"]["mass"] == ref.cutflow["data"]["mass"]
    for x, y in zip(got.region_arrays("data"), ref.region_arrays("data"), strict=True):
        np.testing.assert_array_equal(x, y)


class _Warns(processor.ProcessorABC):
    """A processor that warns once per chunk (what any numpy/awkward warning does)."""

    def process(self, events):
        warnings.warn(f"chunk of {len(events)} events", UserWarning, stacklevel=1)
        return {"n": len(events)}

    def postprocess(self, accumulator):
        return accumulator


@pytest.mark.timeout(60)
def test_warning_endless_loop_processor_warning_reemitted_once(tmp_path):
    """Any warning raised while processing is re-emitted exactly once per chunk, after the
    run, instead of being appended to the list being read (the endless loop)."""
    p = write_ecalelf(tmp_path / "w.root", n=1000)
    fileset = {"data": {"files": {str(p): "selected"}, "metadata": {"kind": "data"}}}
    with pytest.warns(UserWarning, match=r"chunk of \d+ events") as record:
        run = run_processor(fileset, _Warns(), fmt="ecalelf", schema=BaseSchema, options=ITERATIVE)
    assert run.out["n"] == 1000
    assert len(run.chunks) >= 2
    assert len([w for w in record if "chunk of" in str(w.message)]) == len(run.chunks)


@pytest.mark.timeout(120)
def test_warning_endless_loop_truncated_checkpoint_resume(tmp_path, scheme, caplog):
    """A truncated checkpoint chunk with --resume raised a ResourceWarning (np.load's leaked
    handle) that sent the run into the endless loop. Now: the chunk is recomputed, with a
    warning naming it, and the histograms equal an uninterrupted run."""
    p = write_ecalelf(tmp_path / "ck.root", n=2000)
    cfg = dataset_config_from_files(data=[str(p)])
    ck = tmp_path / "checkpoints"
    first = build_histograms(cfg, scheme, options=dataclasses.replace(ITERATIVE, checkpoint_dir=ck))
    chunks = sorted(ck.rglob("*.npz"))
    assert len(chunks) == 5
    chunks[2].write_bytes(chunks[2].read_bytes()[:100])
    resumed = build_histograms(
        cfg, scheme, options=dataclasses.replace(ITERATIVE, checkpoint_dir=ck, resume=True)
    )
    assert f"{chunks[2]}: unreadable checkpoint, recomputing the chunk" in caplog.text
    assert resumed.metadata["run"]["chunks_from_checkpoint"] == 4
    assert_same_histograms(resumed, first)


# ------------------------------------------------------------------------ remote URLs
def test_root_urls_joined_onto_yaml_folder(tmp_path):
    """root://host//path in a dataset YAML was joined onto the YAML's folder
    (root:/host/path ... not found); URLs of every scheme are kept verbatim."""
    local = write_ecalelf(tmp_path / "local.root", n=10)
    urls = [
        "root://eosuser.cern.ch//eos/user/z/zee/data_2024.root",
        "https://example.org/zee/data.root",
        "s3://bucket/zee/data.root",
    ]
    ds = tmp_path / "sub" / "datasets.yaml"
    ds.parent.mkdir()
    ds.write_text(
        yaml.safe_dump(
            {
                "datasets": [
                    {"name": "data", "kind": "data", "files": urls},
                    {"name": "mc", "kind": "mc", "files": ["../local.root"]},
                ]
            }
        )
    )
    cfg = load_dataset_config(ds)
    assert cfg.datasets[0].files == tuple(urls)
    assert Path(cfg.datasets[1].files[0]).resolve() == local
    cli = dataset_config_from_files(data=urls[:1], mc=[str(local)])
    assert cli.datasets[0].files == (urls[0],)


# --------------------------------------------------------------------- double counting
def test_double_counting_symlink(tmp_path):
    """The same file reached through a symlink was counted twice (errors shrink by √2)."""
    real = write_ecalelf(tmp_path / "data.root", n=50)
    link = tmp_path / "alias.root"
    link.symlink_to(real)
    with pytest.raises(InputError) as err:
        check_inputs(dataset_config_from_files(data=[str(real), str(link)]))
    assert str(err.value) == (
        f"{real} and {link} are the same file (listed twice, or through a symlink or hard "
        "link) in dataset 'data'; its events would be counted twice: list each input file once"
    )
    # one file as data and as MC is a closure of the simulation on itself, not double counting
    assert len(check_inputs(dataset_config_from_files(data=[str(real)], mc=[str(link)]))) == 2


def test_double_counting_same_file_in_two_datasets(tmp_path, capsys):
    """One file listed in two data datasets was counted twice: now exit 1, both paths named,
    no output written."""
    write_ecalelf(tmp_path / "run_a.root", n=50)
    ds = tmp_path / "datasets.yaml"
    ds.write_text(
        yaml.safe_dump(
            {
                "datasets": [
                    {"name": "data_a", "kind": "data", "files": ["run_a.root"]},
                    {"name": "data_b", "kind": "data", "files": ["./run_a.root"]},
                ]
            }
        )
    )
    out = tmp_path / "h.npz"
    rc = _histograms_cli(ds, out)
    err = capsys.readouterr().err
    assert rc == 1
    assert err == (
        f"zcalib: error: {tmp_path / 'run_a.root'} and {tmp_path / './run_a.root'} are the "
        "same file (listed twice, or through a symlink or hard link) in datasets 'data_a' "
        "and 'data_b'; its events would be counted twice: list each input file once\n"
    )
    assert not out.exists()


# ------------------------------------------------------------------------- wrong dtypes
@pytest.mark.parametrize(
    ("branch", "dtype", "allowed"),
    [
        ("energy_ECAL_ele", np.int32, "floating point (float32, float64)"),
        ("energy_ECAL_ele", np.bool_, "floating point (float32, float64)"),
        ("R9Ele", np.float64, None),
        ("gainSeedSC", np.float32, "integer (int8-int64, uint8-uint64)"),
        ("eleID", np.float64, "integer (int8-int64, uint8-uint64)"),
        ("runNumber", np.float32, "integer (int8-int64, uint8-uint64)"),
    ],
)
def test_wrong_dtypes(tmp_path, branch, dtype, allowed):
    """int32 energies were accepted (scales biased by up to 1.1 %, 30σ), bool energies passed
    with 0 events; ids/gains must be integers. Refused at pre-flight, naming the branch."""
    p = _rewrite(
        write_ecalelf(tmp_path / "typed.root", n=100),
        lambda a: a.__setitem__(branch, a[branch].astype(dtype)),
    )
    cfg = dataset_config_from_files(data=[str(p)])
    if allowed is None:  # float64 instead of float32: accepted
        assert check_inputs(cfg)[0].entries == 100
        return
    with pytest.raises(InputError) as err:
        check_inputs(cfg)
    assert str(err.value) == (
        f"{p}: tree 'selected': branch '{branch}' is {np.dtype(dtype).name}; the ecalelf format "
        f"needs {allowed} (wrong types bias or empty the histograms)"
    )


def test_wrong_dtypes_flat_column_map_integer_energy(tmp_path):
    p = tmp_path / "flat.root"
    n = 20
    with uproot.recreate(p) as f:
        f.mktree(
            "events",
            {
                "E1": np.int64,
                "E2": np.float32,
                "eta1": np.float32,
                "eta2": np.float32,
                "phi1": np.float32,
                "phi2": np.float32,
            },
        )
        f["events"].extend(
            {
                "E1": np.full(n, 45),
                "E2": np.full(n, 45.0, np.float32),
                **{k: np.zeros(n, np.float32) for k in ("eta1", "eta2", "phi1", "phi2")},
            }
        )
    cm = {"energy": ["E1", "E2"], "eta": ["eta1", "eta2"], "phi": ["phi1", "phi2"]}
    with pytest.raises(
        InputError,
        match=r"^.*flat\.root: tree 'events': branch 'E1' is int64; the flat format needs floating point",
    ):
        check_inputs(
            dataset_config_from_files(data=[str(p)], fmt="flat", treename="events", column_map=cm)
        )


# ------------------------------------------------------------------------- stale cache
def test_stale_cache_fingerprint_change_in_the_middle(tmp_path):
    """The input fingerprint hashed size + first and last MiB: a file changed in the middle
    was served from the pipeline cache. Now any content change, size and mtime kept, counts."""
    p = tmp_path / "big.root"
    data = bytearray(np.random.default_rng(1).integers(0, 256, 5 << 20, dtype=np.uint8).tobytes())
    p.write_bytes(bytes(data))
    before = file_fingerprint(str(p))
    st = p.stat()
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size
    assert p.stat().st_mtime_ns == st.st_mtime_ns
    assert file_fingerprint(str(p)) != before
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    assert file_fingerprint(str(p)) == before


# ---------------------------------------------------------------------- non-ASCII names
def test_non_ascii_paths_and_dataset_names(tmp_path, scheme, capsys):
    """Non-ASCII input paths or dataset names ended in exit 2 "internal error" (coffea's
    ASCII file key). Now they fill the same histograms as ASCII ones."""
    folder = tmp_path / "Zée données"
    folder.mkdir()
    data = write_ecalelf(folder / "données_2024.root", n=800, seed=1)
    mc = write_ecalelf(folder / "simulé.root", n=800, seed=2)
    ascii_data = write_ecalelf(tmp_path / "data.root", n=800, seed=1)
    ascii_mc = write_ecalelf(tmp_path / "mc.root", n=800, seed=2)
    ds = folder / "jeux.yaml"
    ds.write_text(
        yaml.safe_dump(
            {
                "datasets": [
                    {"name": "données", "kind": "data", "files": [data.name]},
                    {"name": "simulé", "kind": "mc", "files": [mc.name]},
                ]
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    got = build_histograms(load_dataset_config(ds), scheme, options=ITERATIVE)
    ref = build_histograms(
        dataset_config_from_files(data=[str(ascii_data)], mc=[str(ascii_mc)]),
        scheme,
        options=ITERATIVE,
    )
    assert got.kinds == {"données": "data", "simulé": "mc"}
    assert list(got.cutflow.values()) == list(ref.cutflow.values())
    for kind in ("data", "mc"):
        for x, y in zip(got.region_arrays(kind), ref.region_arrays(kind), strict=True):
            np.testing.assert_array_equal(x, y)
    out = folder / "hé.npz"
    rc = _histograms_cli(ds, out)
    assert rc == 0, capsys.readouterr().err
    assert out.is_file()


# ------------------------------------------------------------------- MC weight set-up
def _pileup_payload(tmp_path: Path, inputs: list[tuple[str, str]]) -> Path:
    """The shipped demo pile-up payload with its inputs declared as ``inputs``: the first
    real input takes the role of ``NumTrueInteractions``, the string one of ``weights``."""
    raw = json.loads((CONFIGS.parent / "corrections" / "pileup_demo.json").read_text())
    corr = raw["corrections"][0]
    npu = next(n for n, t in inputs if t != "string")
    key = next((n for n, t in inputs if t == "string"), "weights")
    data = json.dumps(corr["data"]).replace('"NumTrueInteractions"', json.dumps(npu))
    corr["data"] = json.loads(data.replace('"weights"', json.dumps(key)))
    corr["inputs"] = [{"name": n, "type": t} for n, t in inputs]
    p = tmp_path / "pu.json"
    p.write_text(json.dumps(raw))
    return p


def test_mc_weight_correction_wrong_arity(tmp_path):
    """An MC-weight correction with the wrong arity failed only after 3 retries with a raw
    WorkItem(...) message; now at set-up, naming the payload, signature and what is fed."""
    p = _pileup_payload(
        tmp_path, [("NumTrueInteractions", "real"), ("pt", "real"), ("weights", "string")]
    )
    with pytest.raises(InvalidConfig) as err:
        load_weight("pileup", p)
    assert str(err.value) == (
        f"{p}: MC weight 'pileup': correction 'pileup' (NumTrueInteractions: real, pt: real, "
        "weights: string) has the wrong inputs: an MC weight takes one string input (the "
        "variation: nominal, up, down) and 1 real input(s) (npu)"
    )


def test_mc_weight_input_names_matched_by_name(tmp_path):
    """A wrongly named input was fed by position silently; now it is refused at set-up, and
    a payload putting the key first is fed by name (same weights as key last)."""
    p = _pileup_payload(tmp_path, [("ptZ", "real"), ("weights", "string")])
    with pytest.raises(InvalidConfig) as err:
        load_weight("pileup", p)
    assert str(err.value) == (
        f"{p}: MC weight 'pileup': correction 'pileup' (ptZ: real, weights: string): input "
        "'ptZ' is not one of the quantities this weight is fed (npu: npu or nPU or "
        "NumTrueInteractions or nTrueInt or Pileup_nTrueInt); inputs are matched by name, "
        "not position"
    )
    key_first = load_weight(
        "pileup", _pileup_payload(tmp_path, [("weights", "string"), ("nPU", "real")])
    )
    assert (key_first.input_names, key_first.key_index) == (("npu",), 0)


def test_mc_weight_key_first_fills_like_key_last(tmp_path, scheme, demo_ecalelf):
    """The same pile-up weights declared (weights, npu) and (npu, weights) fill identical
    histograms, different from unweighted ones."""
    cfg = dataset_config_from_files(mc=[str(demo_ecalelf.mc)])
    opts = RunOptions(executor="iterative", progress=False, maxchunks=1, chunksize=5000)
    last = load_weight("pileup", CONFIGS.parent / "corrections" / "pileup_demo.json")
    (tmp_path / "first").mkdir()
    first = load_weight(
        "pileup",
        _pileup_payload(
            tmp_path / "first", [("weights", "string"), ("NumTrueInteractions", "real")]
        ),
    )
    a = build_histograms(cfg, scheme, options=opts, weights=(last,))
    b = build_histograms(cfg, scheme, options=opts, weights=(first,))
    c = build_histograms(cfg, scheme, options=opts)
    assert_same_histograms(a, b)
    weighted, unweighted = a.region_arrays("mc")[1], c.region_arrays("mc")[1]
    assert weighted.shape == unweighted.shape
    assert not np.allclose(weighted, unweighted, rtol=1e-3)


def test_mc_weight_int_input_refused(tmp_path):
    p = _pileup_payload(tmp_path, [("npu", "int"), ("weights", "string")])
    with pytest.raises(
        InvalidConfig, match=r"input 'npu' must be real \(zcalib feeds floating-point values\)$"
    ):
        load_weight("pileup", p)


def test_mc_weight_two_inputs_reordered_by_name():
    from zcalib.corrections.apply import bind_weight

    payload = {
        "schema_version": 2,
        "corrections": [
            {
                "name": "zw",
                "version": 1,
                "inputs": [
                    {"name": "absYZ", "type": "real"},
                    {"name": "weights", "type": "string"},
                    {"name": "ptZ", "type": "real"},
                ],
                "output": {"name": "w", "type": "real"},
                "data": 1.0,
            }
        ],
    }
    spec = WeightSpec(
        name="zpt", payload=json.dumps(payload), correction="zw", inputs=("ptZ", "absYZ")
    )
    bound = bind_weight(spec)
    assert (bound.inputs, bound.key_index) == (("absYZ", "ptZ"), 1)


# --------------------------------------------------------------------- branch shapes
def test_branch_shape_errors_name_the_branch(tmp_path):
    """A per-electron ECALELF branch stored as one value per event failed mid-run without
    naming the branch; now the pre-flight names it and the layout the format needs."""
    p = _rewrite(
        write_ecalelf(tmp_path / "shape.root", n=100),
        lambda a: a.__setitem__("etaEle", np.ascontiguousarray(a["etaEle"][:, 0])),
    )
    with pytest.raises(InputError) as err:
        check_inputs(dataset_config_from_files(data=[str(p)]))
    assert str(err.value) == (
        f"{p}: tree 'selected': branch 'etaEle' holds one value per event; the ecalelf format "
        "needs a fixed-size per-electron array such as [3]"
    )
