"""zcalib on a real single-node SLURM through ``kind: slurm`` recipes (dask-jobqueue
``SLURMCluster``): the same histograms and fit as the iterative executor, worker jobs lost
mid-run, jobs the batch system refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.cluster.conftest import assert_same_histograms
from tests.conftest import CONFIGS
from zcalib.histograms import load_histograms
from zcalib.metrics import default_metrics_path
from zcalib.outputs import without_run_ids

pytestmark = [pytest.mark.slurm, pytest.mark.cluster]

CATS = str(CONFIGS / "cats_eta_r9.tsv")
CLI_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A small generated sample: 12k data, 24k MC pairs (9 chunks of 4000 events)."""
    from zcalib.generate import generate

    return generate(tmp_path_factory.mktemp("sample"), n_data=12_000, n_mc=24_000, seed=11)


def zcalib(*argv: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """The ``zcalib`` command in a subprocess (its own Dask scheduler, SLURM_CONF inherited)."""
    env = {**os.environ, "COLUMNS": "1000", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "zcalib.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


def fit_argv(sample, out: Path, *run: str) -> list[str]:
    return [
        "fit",
        "--data",
        str(sample.data),
        "--mc",
        str(sample.mc),
        "--categories",
        CATS,
        "--out",
        str(out),
        "--chunksize",
        "4000",
        "--no-progress",
        *run,
    ]


@pytest.fixture(scope="module")
def iterative_fit(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("iterative")
    res = zcalib(*fit_argv(sample, out, "--executor", "iterative"))
    assert res.returncode == 0, res.stderr
    return out


def assert_same_fit(a: Path, b: Path) -> None:
    """Same histograms (data exactly, MC to 1e-12: chunks are summed in another order) and
    the same fit: every value within 1e-4 of its statistical error (the minimiser's
    tolerance turns the 1e-12 MC differences into ~1e-9 absolute), errors to 1e-4."""
    assert_same_histograms(
        load_histograms(a / "histograms.npz"), load_histograms(b / "histograms.npz")
    )
    ra = json.loads((a / "fit_result.json").read_text())
    rb = json.loads((b / "fit_result.json").read_text())
    assert ra["status"] == rb["status"] == "converged"
    assert [c["label"] for c in ra["categories"]] == [c["label"] for c in rb["categories"]]
    va, vb = (np.array([c["value"] for c in r["categories"]]) for r in (ra, rb))
    stat = np.array([c["stat"] for c in ra["categories"]])
    assert np.all(np.abs(va - vb) <= 1e-4 * stat), np.abs(va - vb) / stat
    for key in ("stat", "mc_stat"):
        ea, eb = ([c[key] for c in r["categories"]] for r in (ra, rb))
        np.testing.assert_allclose(ea, eb, rtol=1e-4, atol=0, err_msg=key)


def test_fit_on_two_slurm_jobs_equals_iterative(idle_slurm, sample, iterative_fit, tmp_path):
    logs = tmp_path / "job-logs"
    recipe = write_recipe(tmp_path / "slurm.yaml", idle_slurm.recipe(log_directory=str(logs)))
    out = tmp_path / "slurm"
    res = zcalib(*fit_argv(sample, out, "--recipe", str(recipe)))
    assert res.returncode == 0, res.stderr + idle_slurm.logs()
    metrics = json.loads(default_metrics_path(out).read_text())
    assert metrics["executor"] == "dask"
    assert metrics["workers"] == 2  # the two sbatch jobs of `adapt: 2-2`
    # the workers ran as SLURM batch jobs: their logs are in the recipe's log_directory
    assert len(list(logs.glob("dask-worker-*.err"))) == 2
    assert_same_fit(iterative_fit, out)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("queue", "nope", "sbatch: error: invalid partition specified: nope"),
        ("memory", "100GB", "Requested node configuration is not available"),
        ("cores", 64, "Requested node configuration is not available"),
    ],
)
def test_refused_job_is_exit_1_naming_the_field(idle_slurm, sample, tmp_path, field, value, reason):
    recipe = write_recipe(tmp_path / "bad.yaml", idle_slurm.recipe(**{field: value}))
    out = tmp_path / "h.npz"
    t0 = time.monotonic()
    res = zcalib(
        "histograms",
        "--data",
        str(sample.data),
        "--categories",
        CATS,
        "--out",
        str(out),
        "--recipe",
        str(recipe),
        "--no-progress",
        timeout=120,
    )
    assert time.monotonic() - t0 < 60
    assert res.returncode == 1
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(
        f"zcalib: error: {recipe}: field '{field}': SLURM refuses the worker job "
        f"({field}={value!r}): "
    )
    assert reason in line
    assert not out.exists()
    assert idle_slurm.jobs() == []  # nothing was submitted


def pipeline_yaml(folder: Path, sample) -> Path:
    """Run division, time stability and a fit: three steps, each with its own event loops."""
    from tests.chain.conftest import write_pipeline

    steps = [
        {"name": "run_divide", "type": "run_divide", "min_events": 2000},
        {"name": "time_stability", "type": "time_stability", "needs": ["run_divide"]},
        {
            "name": "step2",
            "type": "fit",
            "categories": str(CONFIGS / "cats_eta_r9.yaml"),
            "needs": ["time_stability"],
        },
    ]
    return write_pipeline(
        folder, sample, steps=steps, run={"executor": "iterative", "chunksize": 4000}
    )


@pytest.mark.slow
def test_pipeline_runs_every_event_loop_on_one_batch_cluster(idle_slurm, sample, tmp_path):
    ref = zcalib("pipeline", str(pipeline_yaml(tmp_path / "iterative", sample)))
    assert ref.returncode == 0, ref.stderr
    logs = tmp_path / "job-logs"
    recipe = write_recipe(tmp_path / "slurm.yaml", idle_slurm.recipe(log_directory=str(logs)))
    res = zcalib(
        "pipeline", str(pipeline_yaml(tmp_path / "slurm", sample)), "--recipe", str(recipe)
    )
    assert res.returncode == 0, res.stderr + idle_slurm.logs()
    assert "3 step(s) ran" in res.stdout
    # one cluster for the whole pipeline: the two jobs of `adapt: 2-2`, not two per loop
    assert len(list(logs.glob("*.err"))) == 2, sorted(p.name for p in logs.iterdir())
    a, b = tmp_path / "iterative" / "out", tmp_path / "slurm" / "out"
    for name in ("run_divide/run_bins.yaml", "run_divide/run_bins.dat"):  # but the run ids
        assert without_run_ids((a / name).read_bytes()) == without_run_ids((b / name).read_bytes())
    assert_same_fit(a / "step2", b / "step2")


@pytest.mark.slow
def test_worker_job_cancelled_mid_run_gives_the_same_histograms(
    idle_slurm, sample, iterative_fit, tmp_path
):
    """``scancel`` of one of the two worker jobs while chunks are being filled: the scheduler
    reschedules its chunks (those it held in memory included) on the other worker (or a
    replacement job of the adaptive cluster), and the histograms are those of the iterative
    run."""
    logs = tmp_path / "job-logs"
    recipe = write_recipe(tmp_path / "slurm.yaml", idle_slurm.recipe(log_directory=str(logs)))
    out, chunks = tmp_path / "h.npz", tmp_path / "chunks"
    n_chunks = (12_000 + 24_000) // 300
    argv = [
        *("histograms", "--data", str(sample.data), "--mc", str(sample.mc)),
        *("--categories", CATS, "--out", str(out), "--chunksize", "300"),
        *("--checkpoint-dir", str(chunks), "--recipe", str(recipe), "--no-progress"),
    ]
    env = {**os.environ, "COLUMNS": "1000", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zcalib.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while True:  # both jobs running and a few chunks stored
            running = idle_slurm.jobs("RUNNING")
            done = len(list(chunks.rglob("*.npz"))) if chunks.is_dir() else 0
            if len(running) == 2 and done >= 4:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker jobs never processed chunks"
            time.sleep(0.1)
        victim = running[0]
        idle_slurm.run("scancel", victim)
        stored_at_kill = len(list(chunks.rglob("*.npz")))
        stdout, stderr = proc.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"\njob {victim} cancelled with {stored_at_kill}/{n_chunks} chunks stored")
    assert stored_at_kill < n_chunks, "the run had finished before the job was cancelled"
    assert proc.returncode == 0, stderr + idle_slurm.logs()
    assert "36,000 events in" in stdout
    assert victim not in idle_slurm.jobs()
    # the worker of the cancelled job was stopped mid-run (its log, as a user would read it)
    victim_log = (logs / f"dask-worker-{victim}.err").read_text()
    assert f"JOB {victim} ON {idle_slurm.node} CANCELLED" in victim_log
    assert "killed by signal 15" in victim_log
    assert_same_histograms(load_histograms(iterative_fit / "histograms.npz"), load_histograms(out))
