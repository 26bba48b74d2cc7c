"""Bad input files: all listed by default, skipped and reported with ``skip_bad_files``;
interrupted runs resume from per-chunk checkpoints."""

from __future__ import annotations

import json

import pytest

from tests.cluster.conftest import PILEUP, assert_same_histograms, corrupt_basket
from tests.processors.ntuples import write_ecalelf
from zcalib.config import dataset_config_from_files
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.io.preflight import FileInfo, PreflightResult
from zcalib.runner import RunOptions, build_histograms, load_weight

ITER = RunOptions(executor="iterative", progress=False)


@pytest.fixture
def files(tmp_path):
    good = [write_ecalelf(tmp_path / f"good{i}.root", n=3000, seed=i) for i in (1, 2)]
    return tmp_path, good


def test_corrupt_file_fails_the_run_naming_it(files, scheme):
    tmp, good = files
    bad = corrupt_basket(write_ecalelf(tmp / "bad.root", n=4000, seed=9), "runNumber")
    cfg = dataset_config_from_files(data=[str(good[0]), str(bad), str(good[1])])
    with pytest.raises(InputError) as err:
        build_histograms(cfg, scheme, options=ITER)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: file is truncated or corrupt: cannot read branch 'runNumber'")
    assert "\n" not in msg


def test_skip_bad_files_reports_the_file_and_its_events(files, scheme):
    tmp, good = files
    bad = corrupt_basket(write_ecalelf(tmp / "bad.root", n=4000, seed=9), "runNumber")
    cfg = dataset_config_from_files(data=[str(good[0]), str(bad), str(good[1])])
    hs = build_histograms(
        cfg, scheme, options=RunOptions(executor="iterative", progress=False, skip_bad_files=True)
    )
    (rec,) = hs.metadata["skipped_files"]
    assert rec["path"] == str(bad)
    assert rec["entries_lost"] == 4000
    assert rec["dataset"] == "data"
    assert "cannot read branch 'runNumber'" in rec["reason"]
    assert hs.cutflow["data"]["all"] == 6000
    assert [i["path"] for i in hs.metadata["inputs"]] == [str(good[0]), str(good[1])]
    assert hs.metadata["run"]["metrics"]["skipped_files"] == [rec]
    only_good = build_histograms(
        dataset_config_from_files(data=[str(g) for g in good]), scheme, options=ITER
    )
    assert_same_histograms(only_good, hs)


def test_every_bad_file_is_listed(files, scheme):
    tmp, good = files
    truncated = tmp / "truncated.root"
    truncated.write_bytes(good[0].read_bytes()[:2000])
    empty = tmp / "empty.root"
    empty.touch()
    cfg = dataset_config_from_files(data=[str(truncated), str(good[1]), str(empty)])
    with pytest.raises(InputError) as err:
        build_histograms(cfg, scheme, options=ITER)
    lines = str(err.value).splitlines()
    assert lines[0].startswith("2 input files failed the checks")
    assert lines[1].startswith(f"  {truncated}: ")
    assert (
        lines[2] == f"  {empty}: file is empty (0 bytes); expected a ROOT file with tree 'selected'"
    )
    hs = build_histograms(
        cfg, scheme, options=RunOptions(executor="iterative", progress=False, skip_bad_files=True)
    )
    assert [(r["path"], r["entries_lost"]) for r in hs.metadata["skipped_files"]] == [
        (str(truncated), None),
        (str(empty), None),
    ]


@pytest.mark.cluster
def test_unreadable_chunks_on_dask_workers(files, scheme):
    """A file that passes the set-up checks but whose baskets are corrupt (R9Ele)."""
    tmp, good = files
    bad = corrupt_basket(write_ecalelf(tmp / "bad.root", n=4000, seed=9), "R9Ele")
    cfg = dataset_config_from_files(data=[str(good[0]), str(bad)], mc=[str(good[1])])
    opts = RunOptions(executor="dask", workers=2, chunksize=100_000, progress=False)
    with pytest.raises(InputError) as err:
        build_histograms(cfg, scheme, options=opts)
    assert str(err.value).startswith(f"{bad} (entries 0-4000): cannot read events (")
    hs = build_histograms(
        cfg,
        scheme,
        options=RunOptions(
            executor="dask", workers=2, chunksize=100_000, progress=False, skip_bad_files=True
        ),
    )
    (rec,) = hs.metadata["skipped_files"]
    assert (rec["path"], rec["dataset"], rec["entries_lost"]) == (str(bad), "data", 4000)
    assert rec["reason"].startswith("entries 0-4000: cannot read events (")
    assert hs.cutflow["data"]["all"] == 3000
    assert hs.metadata["run"]["events"] == 6000


def test_file_unreadable_after_the_checks_is_skipped(files, scheme, monkeypatch):
    """coffea cannot open a file that passed the checks (replaced meanwhile): skipped, listed."""
    tmp, good = files
    garbage = tmp / "garbage.root"
    garbage.write_bytes(b"not a root file at all" * 100)
    cfg = dataset_config_from_files(data=[str(good[0]), str(garbage)])
    infos = [
        FileInfo(str(good[0]), "data", "selected", 3000, ()),
        FileInfo(str(garbage), "data", "selected", 1234, ()),
    ]
    monkeypatch.setattr(
        "zcalib.runner.preflight", lambda cfg, columns=(): PreflightResult(files=infos, bad=[])
    )
    hs = build_histograms(
        cfg,
        scheme,
        options=RunOptions(executor="iterative", progress=False, skip_bad_files=True, retries=0),
    )
    (rec,) = hs.metadata["skipped_files"]
    assert (rec["path"], rec["entries_lost"]) == (str(garbage), 1234)
    assert rec["reason"].startswith("file could not be opened during the run")
    assert "not a ROOT file" in rec["reason"]
    assert hs.cutflow["data"]["all"] == 3000


# ------------------------------------------------------------------------- resumable runs
def test_interrupted_run_resumes_from_checkpoints(demo_ecalelf, scheme, tmp_path, monkeypatch):
    import zcalib.processors.zee as zee

    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    weights = (load_weight("pileup", PILEUP),)
    ckpt = tmp_path / "checkpoints"
    reference = build_histograms(
        cfg,
        scheme,
        weights=weights,
        options=RunOptions(executor="iterative", chunksize=6_000, progress=False),
    )

    real = zee.ZeeProcessor.process
    calls = {"n": 0}

    def crash_after_four(self, events):
        calls["n"] += 1
        if calls["n"] > 4:
            raise KeyboardInterrupt  # the user pressed Ctrl-C (or the job was killed)
        return real(self, events)

    monkeypatch.setattr(zee.ZeeProcessor, "process", crash_after_four)
    opts = RunOptions(
        executor="iterative", chunksize=6_000, progress=False, checkpoint_dir=ckpt, resume=True
    )
    with pytest.raises(KeyboardInterrupt):
        build_histograms(cfg, scheme, weights=weights, options=opts)
    monkeypatch.setattr(zee.ZeeProcessor, "process", real)
    assert len(list(ckpt.rglob("*.npz"))) == 4
    assert not list(ckpt.rglob("*.tmp"))  # atomic writes: no partial chunk files

    resumed = build_histograms(cfg, scheme, weights=weights, options=opts)
    assert_same_histograms(reference, resumed)
    assert resumed.metadata["run"]["chunks"] == 10
    assert resumed.metadata["run"]["chunks_from_checkpoint"] == 4
    assert resumed.metadata["run"]["events"] == 60_000

    # a different configuration never reuses the stored chunks
    other = build_histograms(cfg, scheme, weights=(), options=opts)
    assert other.metadata["run"]["chunks_from_checkpoint"] == 0
    # without resume the chunks are recomputed (and stored again)
    fresh = build_histograms(
        cfg,
        scheme,
        weights=weights,
        options=RunOptions(
            executor="iterative", chunksize=6_000, progress=False, checkpoint_dir=ckpt
        ),
    )
    assert fresh.metadata["run"]["chunks_from_checkpoint"] == 0


@pytest.mark.cluster
def test_resume_on_dask_after_a_complete_run(demo_ecalelf, scheme, tmp_path):
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])
    opts = RunOptions(
        executor="dask",
        workers=2,
        chunksize=15_000,
        progress=False,
        checkpoint_dir=tmp_path / "ck",
        resume=True,
    )
    first = build_histograms(cfg, scheme, options=opts)
    again = build_histograms(cfg, scheme, options=opts)
    assert first.metadata["run"]["chunks_from_checkpoint"] == 0
    assert again.metadata["run"]["chunks_from_checkpoint"] == again.metadata["run"]["chunks"] == 4
    assert again.metadata["run"]["metrics"]["per_worker"] == {}  # nothing was recomputed
    assert_same_histograms(first, again)


def test_resume_needs_a_checkpoint_dir(demo_ecalelf, scheme):
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)])
    with pytest.raises(InvalidConfig, match="resume needs a checkpoint_dir"):
        build_histograms(cfg, scheme, options=RunOptions(executor="iterative", resume=True))


def test_metrics_file_is_written(demo_ecalelf, scheme, tmp_path):
    cfg = dataset_config_from_files(data=[str(demo_ecalelf.data)])
    path = tmp_path / "run.metrics.json"
    hs = build_histograms(
        cfg,
        scheme,
        options=RunOptions(
            executor="iterative", chunksize=5_000, progress=False, metrics_path=path
        ),
    )
    m = json.loads(path.read_text())
    assert m.pop("run_id")  # the metrics file carries the run id of the command (outputs.py)
    assert m == json.loads(json.dumps(hs.metadata["run"]["metrics"]))
    assert (m["events"], m["chunks"], m["chunksize"], m["executor"]) == (
        20_000,
        4,
        5_000,
        "iterative",
    )
    assert m["bytes_read"] > 0
    assert m["events_per_s"] > 0
    (worker,) = m["per_worker"].values()
    assert worker["chunks"] == 4
    assert 0 < worker["peak_rss_bytes"] < 4 * 2**30
