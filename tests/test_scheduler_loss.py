"""Losing the Dask scheduler mid-run: exit 1 with one line and the --resume hint (it was
exit 2, "internal error ... report it", with a long traceback); --resume then completes the
run with histograms identical to an uninterrupted one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.cluster.conftest import DaskProcesses, assert_same_histograms
from tests.conftest import CONFIGS
from zcalib.histograms import load_histograms


def _cli(*args: str, cwd) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "400"}
    return subprocess.Popen(
        [sys.executable, "-m", "zcalib.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.cluster
@pytest.mark.timeout(300)
def test_scheduler_loss_exit_1_with_resume_hint(demo_ecalelf, tmp_path):
    procs = DaskProcesses(tmp_path / "dask")
    (tmp_path / "dask").mkdir()
    try:
        procs.start(1)
        recipe = tmp_path / "scheduler.yaml"
        recipe.write_text(f"kind: scheduler\naddress: {procs.address}\ntimeout_s: 3\n")
        common = [
            "histograms",
            "--data",
            str(demo_ecalelf.data),
            "--mc",
            str(demo_ecalelf.mc),
            "--categories",
            str(CONFIGS / "cats_eta_r9.tsv"),
            "--chunksize",
            "1000",
            "--no-progress",
            "--checkpoint-dir",
            "ck",
        ]
        run = _cli(*common, "--out", "h.npz", "--recipe", str(recipe), cwd=tmp_path)
        deadline = time.monotonic() + 120
        while len(list((tmp_path / "ck").rglob("*.npz"))) < 2:
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no chunk finished within 120 s"
            time.sleep(0.02)
        procs.kill("scheduler")
        _, err = run.communicate(timeout=120)
    finally:
        procs.close()
    assert run.returncode == 1, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"zcalib: error: lost the Dask scheduler \({re.escape(str(recipe))}\) during the run "
        r"\((FutureCancelledError|CommClosedError)\); no output was written; the chunks "
        r"finished so far are kept in ck: restart the cluster and rerun the same command "
        r"with --resume",
        last,
    ), last
    assert not (tmp_path / "h.npz").exists()
    done = len(list((tmp_path / "ck").rglob("*.npz")))
    assert done >= 2

    resumed = _cli(*common, "--out", "h.npz", "--resume", "--executor", "iterative", cwd=tmp_path)
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert re.search(r"\((\d+) from checkpoints\)", out.replace("\n", " "))
    fresh = _cli(*common[:-2], "--out", "fresh.npz", "--executor", "iterative", cwd=tmp_path)
    _, err = fresh.communicate(timeout=240)
    assert fresh.returncode == 0, err
    assert_same_histograms(
        load_histograms(tmp_path / "h.npz"), load_histograms(tmp_path / "fresh.npz")
    )
