"""A real single-node SLURM for batch tests: munged, slurmctld and slurmd as subprocesses.

Everything (munge key and socket, slurm.conf, controller state, slurmd spool, logs) lives in a
temporary folder; the controller and the node listen on 127.0.0.1 on free ports, and the
daemons run in the foreground so they are stopped by the PIDs started here. The node is
declared with what ``slurmd -C`` detects (CPUs, sockets, cores, memory) and one ``debug``
partition. Client commands (``sbatch``, ``squeue``, ``scancel``) find the private cluster
through ``SLURM_CONF``, which the fixture sets for the session.

Without the Debian packages (``make slurm`` installs ``slurm-wlm`` and ``munge``) the tests are
skipped locally; in CI (``CI=true``) a SLURM that cannot start fails them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

STARTUP_S = 60.0
DAEMONS = ("munged", "slurmctld", "slurmd")
#: The project's venv (the one running the tests): the worker jobs activate it.
VENV = Path(sys.prefix)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"SLURM test cluster: {reason} (CI=true: the SLURM tests must run)")
    pytest.skip(f"SLURM test cluster: {reason}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    for d in (None, "/usr/sbin", "/usr/bin"):
        path = shutil.which(name, path=d)
        if path:
            return path
    _unavailable(f"'{name}' not found (run `make slurm` to install slurm-wlm and munge)")
    raise AssertionError  # unreachable


class Slurm:
    """A private single-node SLURM (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.node = socket.gethostname().split(".")[0]
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # ------------------------------------------------------------------ start
    def start(self) -> Slurm:
        bins = {name: _binary(name) for name in (*DAEMONS, "sinfo", "sbatch")}
        for sub in ("munge", "state", "spool", "logs", "jobs"):
            (self.folder / sub).mkdir(mode=0o700)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        socket_path = self.folder / "munge" / "munge.socket"
        self._spawn(
            "munged",
            [
                bins["munged"],
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={socket_path}",
                f"--pid-file={self.folder / 'munge' / 'munged.pid'}",
                f"--seed-file={self.folder / 'munge' / 'munged.seed'}",
                f"--log-file={self.folder / 'logs' / 'munged.log'}",
            ],
        )
        self._wait(socket_path.exists, "munged", "its socket")
        self.conf.write_text(self._config(socket_path))
        self._spawn("slurmctld", [bins["slurmctld"], "-D", "-c", "-f", str(self.conf)])
        self._wait(self._controller_up, "slurmctld", "answering sinfo")
        self._spawn("slurmd", [bins["slurmd"], "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(lambda: self.node_state() == "idle", "slurmd", "the node idle")
        return self

    def _config(self, munge_socket: Path) -> str:
        detected = subprocess.run(
            [_binary("slurmd"), "-C"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        node_line = next(ln for ln in detected.splitlines() if ln.startswith("NodeName="))
        # declare exactly what slurmd detects (name replaced by ours, address on loopback)
        node_line = re.sub(r"^NodeName=\S+", f"NodeName={self.node}", node_line)
        f = self.folder
        return "\n".join(
            [
                "ClusterName=zcalibtest",
                f"SlurmctldHost={self.node}(127.0.0.1)",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={munge_socket}",
                f"StateSaveLocation={f / 'state'}",
                f"SlurmdSpoolDir={f / 'spool'}",
                f"SlurmctldPidFile={f / 'state' / 'slurmctld.pid'}",
                f"SlurmdPidFile={f / 'spool' / 'slurmd.pid'}",
                f"SlurmctldLogFile={f / 'logs' / 'slurmctld.log'}",
                f"SlurmdLogFile={f / 'logs' / 'slurmd.log'}",
                "SlurmctldDebug=info",
                "SlurmdDebug=info",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "MpiDefault=none",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core_Memory",
                "AccountingStorageType=accounting_storage/none",
                "JobAcctGatherType=jobacct_gather/none",
                "JobCompType=jobcomp/none",
                "ReturnToService=2",
                "KillWait=5",
                "MinJobAge=5",
                "InactiveLimit=0",
                "SlurmdTimeout=300",
                f"{node_line.strip()} NodeAddr=127.0.0.1 State=UNKNOWN",
                f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.folder / "logs" / f"{name}.out").open("wb")
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def _wait(self, ready: Any, name: str, what: str) -> None:
        deadline = time.monotonic() + STARTUP_S
        while not ready():
            proc = self.procs[name]
            if proc.poll() is not None:
                _unavailable(f"{name} exited with {proc.returncode} before {what}:\n{self.logs()}")
            if time.monotonic() > deadline:
                _unavailable(f"{name}: no {what} within {STARTUP_S:.0f} s:\n{self.logs()}")
            time.sleep(0.2)

    def _controller_up(self) -> bool:
        return self.run("sinfo", "-h", check=False).returncode == 0

    # ------------------------------------------------------------------ queries
    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a SLURM client command against this cluster (bounded)."""
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=self.env, timeout=30, check=check
        )

    def node_state(self) -> str:
        res = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return res.stdout.strip().lower() if res.returncode == 0 else ""

    def jobs(self, state: str | None = None) -> list[str]:
        """Job ids in the queue (optionally only those in ``state``, e.g. RUNNING)."""
        argv = ["squeue", "-h", "-o", "%i"]
        if state:
            argv += ["-t", state]
        return self.run(*argv).stdout.split()

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Wait until no job is left and the node is idle again."""
        deadline = time.monotonic() + timeout_s
        while self.jobs() or self.node_state() != "idle":
            if time.monotonic() > deadline:
                pytest.fail(f"SLURM jobs still there after {timeout_s:.0f} s: {self.jobs()}")
            time.sleep(0.5)

    def logs(self) -> str:
        parts = []
        for p in sorted((self.folder / "logs").glob("*")):
            text = p.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- {p.name}\n{text[-1500:]}")
        return "\n".join(parts)

    def recipe(self, **fields: Any) -> dict[str, Any]:
        """A ``kind: slurm`` recipe for this cluster: ``debug`` queue, 1 core, 3 GB, 2-2 jobs,
        the scheduler and workers on 127.0.0.1, this venv activated in the job prologue."""
        r: dict[str, Any] = {
            "kind": "slurm",
            "queue": "debug",
            "cores": 1,
            "memory": "3GB",
            "walltime": "00:30:00",
            "log_directory": str(self.folder / "jobs"),
            "death_timeout": 30,
            "job_script_prologue": [f"source {VENV}/bin/activate"],
            "worker_extra_args": ["--host", "127.0.0.1", "--no-dashboard"],
            "scheduler_options": {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"},
            "adapt": {"minimum_jobs": 2, "maximum_jobs": 2},
        }
        r.update(fields)
        return r

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Cancel what is left, then stop slurmd, slurmctld and munged by their PIDs."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--user=root", check=False)
            deadline = time.monotonic() + 30
            while self.run("squeue", "-h", check=False).stdout.strip():
                if time.monotonic() > deadline:  # slurmd's stop ends what is left
                    break
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """The running single-node SLURM; ``SLURM_CONF`` points at it for the session."""
    cluster = Slurm(tmp_path_factory.mktemp("slurm"))
    old = os.environ.get("SLURM_CONF")
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)
        yield cluster
    finally:
        cluster.close()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


@pytest.fixture
def idle_slurm(slurm):
    """The cluster with no job left before and after the test."""
    slurm.wait_idle()
    yield slurm
    slurm.wait_idle()
