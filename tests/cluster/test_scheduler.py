"""The processor on a real ``dask scheduler`` + ``dask worker`` processes, and after losing one."""

from __future__ import annotations

import threading
import time

import pytest

from tests.cluster.conftest import PILEUP, assert_same_histograms
from tests.conftest import CONFIGS
from zcalib.cli import main
from zcalib.config import dataset_config_from_files
from zcalib.histograms import load_histograms
from zcalib.runner import RunOptions, build_histograms, load_weight

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cfg(demo_ecalelf):
    return dataset_config_from_files(data=[str(demo_ecalelf.data)], mc=[str(demo_ecalelf.mc)])


@pytest.fixture(scope="module")
def weights():
    return (load_weight("pileup", PILEUP),)


@pytest.fixture(scope="module")
def reference(cfg, scheme, weights):
    return build_histograms(
        cfg, scheme, weights=weights, options=RunOptions(executor="iterative", progress=False)
    )


def test_external_scheduler_matches_iterative(
    dask_processes, cfg, scheme, weights, reference, tmp_path
):
    hs = build_histograms(
        cfg,
        scheme,
        weights=weights,
        options=RunOptions(
            scheduler=dask_processes.address,
            chunksize=7_000,
            progress=False,
            metrics_path=tmp_path / "m.json",
        ),
    )
    assert_same_histograms(reference, hs)
    run = hs.metadata["run"]
    assert run["executor"] == "dask"
    assert run["workers"] == 2
    assert run["dashboard"].startswith("http://127.0.0.1:")
    per_worker = run["metrics"]["per_worker"]
    assert set(per_worker) <= {"w0", "w1"}
    assert sum(w["events"] for w in per_worker.values()) == 60_000
    assert (tmp_path / "m.json").is_file()


def test_cli_scheduler_matches_iterative(dask_processes, demo_ecalelf, reference, tmp_path, capsys):
    out = tmp_path / "h.npz"
    rc = main(
        [
            "histograms",
            "--data",
            str(demo_ecalelf.data),
            "--mc",
            str(demo_ecalelf.mc),
            "--categories",
            str(CONFIGS / "cats_eta_r9.tsv"),
            "--mc-weight",
            f"pileup={PILEUP}",
            "--out",
            str(out),
            "--scheduler",
            dask_processes.address,
            "--chunksize",
            "11000",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert_same_histograms(reference, load_histograms(out))


def _results_held(client) -> dict[str, int]:
    """Finished chunk results held by each worker and not yet merged (from the scheduler)."""

    def count(dask_scheduler):
        held: dict[str, int] = {}
        for ts in dask_scheduler.tasks.values():
            if ts.state == "memory" and str(ts.key).startswith("TrackedProcessor-"):
                for ws in ts.who_has:
                    held[ws.name] = held.get(ws.name, 0) + 1
        return held

    return client.run_on_scheduler(count)


def test_lost_worker_chunks_are_recomputed(fresh_dask_processes, cfg, scheme, weights, reference):
    procs = fresh_dask_processes
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["hs"] = build_histograms(
                cfg,
                scheme,
                weights=weights,
                options=RunOptions(scheduler=procs.address, chunksize=1_000, progress=False),
            )
        except BaseException as err:  # noqa: BLE001  (re-raised in the test thread)
            result["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    killed = None
    deadline = time.monotonic() + 60
    with procs.client() as client:
        while killed is None and thread.is_alive() and time.monotonic() < deadline:
            held = _results_held(client)
            victim = max(held, key=held.get) if held else None
            if victim is not None and held[victim] >= 2:
                procs.kill(victim)  # SIGKILL while tasks are running: its results are lost
                killed = (victim, held[victim])
            else:
                time.sleep(0.005)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the run did not finish after losing a worker"
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    assert killed is not None, "the run finished before a worker could be killed"
    hs = result["hs"]
    assert_same_histograms(reference, hs)  # type: ignore[arg-type]
    with procs.client() as c:
        names = {w["name"] for w in c.scheduler_info()["workers"].values()}
    assert names == {"w0", "w1"} - {killed[0]}
    # the scheduler says so: the finished chunks held by the dead worker were recomputed
    log = (procs.folder / "scheduler.log").read_text()
    assert "caused the cluster to lose already computed task(s), which will be recomputed" in log
