"""The SLURM fixture itself: a real node, idle, declared as slurmd detects it; it fails
(never skips) in CI when SLURM cannot start."""

from __future__ import annotations

import subprocess

import pytest

from tests.slurm.conftest import Slurm, _unavailable

pytestmark = pytest.mark.slurm


def test_node_is_idle_and_declared_as_detected(idle_slurm):
    detected = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True)
    first = detected.stdout.splitlines()[0].split()
    cpus = next(f for f in first if f.startswith("CPUs="))
    memory = next(f for f in first if f.startswith("RealMemory="))
    node = idle_slurm.run("scontrol", "show", "node", idle_slurm.node).stdout
    assert cpus.replace("CPUs=", "CPUTot=") in node
    assert memory in node
    assert "NodeAddr=127.0.0.1" in node
    assert idle_slurm.node_state() == "idle"
    assert idle_slurm.run("sinfo", "-h", "-o", "%P").stdout.split() == ["debug*"]


def test_a_slurm_that_cannot_start_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: the SLURM tests must run"):
        _unavailable("slurmctld exited")
    # a real failed start: munged refuses an empty key (its log is in the message)
    broken = Slurm(tmp_path)
    monkeypatch.setattr("tests.slurm.conftest.os.urandom", lambda n: b"")
    with pytest.raises(
        pytest.fail.Exception, match=r"munged exited with \d+ before its socket"
    ) as err:
        broken.start()
    broken.close()
    assert "key" in str(err.value).lower()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _unavailable("slurmctld exited")
