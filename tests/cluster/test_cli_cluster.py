"""CLI: skims, --skip-bad-files, --metrics, --checkpoint-dir/--resume, the run summary."""

from __future__ import annotations

import json

import pytest

from tests.cluster.conftest import corrupt_basket
from tests.conftest import CONFIGS
from tests.processors.ntuples import write_ecalelf
from zcalib.cli import main
from zcalib.histograms import load_histograms

CATS = str(CONFIGS / "cats_eta_r9.tsv")
ITER = ["--executor", "iterative", "--no-progress"]


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # rich would wrap long lines (and paths) at 80


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_skip_bad_files_and_metrics(tmp_path, capsys):
    good = write_ecalelf(tmp_path / "good.root", n=2000)
    bad = corrupt_basket(write_ecalelf(tmp_path / "bad.root", n=1000, seed=4), "runNumber")
    out = tmp_path / "h.npz"
    argv = [
        "histograms",
        "--data",
        str(good),
        str(bad),
        "--categories",
        CATS,
        "--out",
        str(out),
        *ITER,
    ]
    rc, _, err = _run(argv, capsys)
    assert rc == 1
    assert err.startswith(f"zcalib: error: {bad}: file is truncated or corrupt")
    assert not out.exists()

    rc, stdout, _ = _run([*argv, "--skip-bad-files"], capsys)
    assert rc == 0
    hs = load_histograms(out)
    assert [(r["path"], r["entries_lost"]) for r in hs.metadata["skipped_files"]] == [
        (str(bad), 1000)
    ]
    metrics = json.loads((tmp_path / "h.metrics.json").read_text())  # default: next to --out
    assert metrics["events"] == 2000
    assert metrics["skipped_files"] == hs.metadata["skipped_files"]
    assert "2,000 events in" in stdout
    assert "1 bad file(s) skipped" in stdout

    custom = tmp_path / "m" / "run.json"
    rc, _, _ = _run([*argv, "--skip-bad-files", "--metrics", str(custom)], capsys)
    assert rc == 0
    assert json.loads(custom.read_text())["events"] == 2000


def test_checkpoint_dir_and_resume(tmp_path, capsys):
    data = write_ecalelf(tmp_path / "d.root", n=6000)
    out = tmp_path / "h.npz"
    base = [
        "histograms",
        "--data",
        str(data),
        "--categories",
        CATS,
        "--out",
        str(out),
        "--chunksize",
        "2000",
        *ITER,
    ]
    rc, _, _ = _run([*base, "--resume"], capsys)  # default checkpoint dir: <out>.checkpoints
    assert rc == 0
    assert len(list((tmp_path / "h.checkpoints").rglob("*.npz"))) == 3
    first = load_histograms(out)
    rc, stdout, _ = _run([*base, "--resume"], capsys)
    assert rc == 0
    assert "(3 from checkpoints)" in stdout
    again = load_histograms(out)
    assert again.metadata["run"]["chunks_from_checkpoint"] == 3
    assert (again.hist.values() == first.hist.values()).all()
    ck = tmp_path / "ck"
    rc, _, _ = _run([*base, "--checkpoint-dir", str(ck)], capsys)
    assert rc == 0
    assert len(list(ck.rglob("*.npz"))) == 3


def test_skim_command_then_histograms(tmp_path, capsys):
    data = write_ecalelf(tmp_path / "d.root", n=3000)
    mc = write_ecalelf(tmp_path / "m.root", n=3000, seed=8)
    rc, stdout, err = _run(
        ["skim", "--data", str(data), "--mc", str(mc), "--out", str(tmp_path / "skims"), *ITER],
        capsys,
    )
    assert rc == 0, err
    assert "datasets.yaml" in stdout
    yaml_path = tmp_path / "skims" / "datasets.yaml"
    out = tmp_path / "h.npz"
    rc, _, err = _run(
        [
            "histograms",
            "--datasets",
            str(yaml_path),
            "--categories",
            CATS,
            "--out",
            str(out),
            *ITER,
        ],
        capsys,
    )
    assert rc == 0, err
    direct = tmp_path / "direct.npz"
    rc, _, _ = _run(
        [
            "histograms",
            "--data",
            str(data),
            "--mc",
            str(mc),
            "--categories",
            CATS,
            "--out",
            str(direct),
            *ITER,
        ],
        capsys,
    )
    assert rc == 0
    a, b = load_histograms(direct), load_histograms(out)
    for kind in ("data", "mc"):
        ra, wa, _ = a.region_arrays(kind)
        rb, wb, _ = b.region_arrays(kind)
        assert ra.tolist() == rb.tolist()
        assert (wa == wb).all()
    # a Parquet skim given directly on the command line
    rc, _, err = _run(
        [
            "histograms",
            "--data",
            str(tmp_path / "skims" / "data" / "d.parquet"),
            "--input-format",
            "parquet",
            "--categories",
            CATS,
            "--out",
            str(tmp_path / "p.npz"),
            *ITER,
        ],
        capsys,
    )
    assert rc == 0, err


def test_bad_recipe_is_exit_1(tmp_path, capsys):
    data = write_ecalelf(tmp_path / "d.root", n=500)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("kind: slurm\ncores: 1\n")
    rc, _, err = _run(
        [
            "histograms",
            "--data",
            str(data),
            "--categories",
            CATS,
            "--out",
            str(tmp_path / "h.npz"),
            "--recipe",
            str(recipe),
            "--no-progress",
        ],
        capsys,
    )
    assert rc == 1
    assert err == f"zcalib: error: {recipe}: field 'memory': required for kind 'slurm'\n"
