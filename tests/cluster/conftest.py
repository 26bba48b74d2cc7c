"""Real Dask processes for cluster tests: a ``dask scheduler`` and ``dask worker`` subprocesses
on 127.0.0.1, started with bounded waits and always cleaned up."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ROOT
from zcalib.histograms import HistogramSet

DASK = Path(sys.executable).parent / "dask"
PILEUP = ROOT / "corrections" / "pileup_demo.json"
STARTUP_S = 60.0


class DaskProcesses:
    """A scheduler and named workers running as subprocesses."""

    def __init__(self, folder: Path, *, env: dict[str, str] | None = None, security=None) -> None:
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""
        #: extra environment of the scheduler and workers (e.g. the TLS configuration)
        self.env = dict(env or {})
        #: ``distributed.Security`` of this process's clients (None: plain TCP)
        self.security = security

    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [str(DASK), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            env={
                **os.environ,
                "PYTHONWARNINGS": "ignore",
                "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s",
                **self.env,
            },
            start_new_session=True,
        )

    def start(
        self, n_workers: int = 2, *, protocol: str = "tcp", worker_args: tuple[str, ...] = ()
    ) -> DaskProcesses:
        self._spawn(
            "scheduler",
            [
                "scheduler",
                "--protocol",
                protocol,
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(self.scheduler_file),
                "--idle-timeout",
                "600",
            ],
        )
        deadline = time.monotonic() + STARTUP_S
        while not self.scheduler_file.is_file() or not self.scheduler_file.read_text().strip():
            self._check_alive("scheduler", deadline)
            time.sleep(0.1)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        for i in range(n_workers):
            self._spawn(
                f"w{i}",
                [
                    "worker",
                    self.address,
                    "--name",
                    f"w{i}",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--memory-limit",
                    "2GiB",
                    "--death-timeout",
                    "60",
                    *worker_args,
                ],
            )
        self.wait_for_workers(n_workers)
        return self

    def _check_alive(self, name: str, deadline: float) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            log = (self.folder / f"{name}.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"dask {name} exited with {proc.returncode}:\n{log}")
        if time.monotonic() > deadline:
            pytest.fail(f"dask {name} did not start within {STARTUP_S:.0f} s")

    def client(self):
        from distributed import Client

        return Client(self.address, timeout="30s", security=self.security)

    def wait_for_workers(self, n: int) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=STARTUP_S)

    def kill(self, name: str) -> None:
        """SIGKILL one process (no clean shutdown)."""
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the workers, then the scheduler (SIGTERM, SIGKILL after a bounded wait)."""
        workers = [p for n, p in self.procs.items() if n != "scheduler"]
        for group in (workers, [self.procs["scheduler"]] if "scheduler" in self.procs else []):
            for proc in group:
                if proc.poll() is None:
                    proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def tls_credentials(folder: Path) -> tuple[dict[str, str], Any]:
    """A self-signed certificate for 127.0.0.1 (``openssl``), used by every role as on
    coffea-casa: the ``DASK_DISTRIBUTED__COMM__TLS__*`` environment a facility sets, and the
    matching ``distributed.Security`` for clients in this process."""
    from distributed import Security

    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is missing (make openssl installs it)")
    cert, key = folder / "tls-cert.pem", folder / "tls-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    prefix = "DASK_DISTRIBUTED__COMM__"
    env = {f"{prefix}REQUIRE_ENCRYPTION": "True", f"{prefix}TLS__CA_FILE": str(cert)}
    for role in ("SCHEDULER", "WORKER", "CLIENT"):
        env[f"{prefix}TLS__{role}__CERT"] = str(cert)
        env[f"{prefix}TLS__{role}__KEY"] = str(key)
    security = Security(
        tls_ca_file=str(cert),
        tls_client_cert=str(cert),
        tls_client_key=str(key),
        require_encryption=True,
    )
    return env, security


@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory):
    """A scheduler and two single-threaded workers (module scope; do not kill workers)."""
    procs = DaskProcesses(tmp_path_factory.mktemp("dask"))
    try:
        yield procs.start(2)
    finally:
        procs.close()


@pytest.fixture
def fresh_dask_processes(tmp_path):
    """A scheduler and two workers for one test (workers may be killed)."""
    procs = DaskProcesses(tmp_path)
    try:
        yield procs.start(2)
    finally:
        procs.close()


def _arrays(hs: HistogramSet, kind: str, variation: str = "nominal"):
    regions, w, w2 = hs.region_arrays(kind, variation)
    return {int(r): (w[i], w2[i]) for i, r in enumerate(regions)}


def assert_same_histograms(a: HistogramSet, b: HistogramSet, *, rtol: float = 1e-12) -> None:
    """Identical cutflow; data exactly equal and MC Σw, Σw² to ``rtol``, region by region label."""
    assert a.cutflow == b.cutflow
    assert sorted(a.variations) == sorted(b.variations)
    da, db = _arrays(a, "data"), _arrays(b, "data")
    assert da.keys() == db.keys()
    for r in da:
        np.testing.assert_array_equal(da[r][0], db[r][0])
        np.testing.assert_array_equal(da[r][1], db[r][1])
    for var in a.variations:
        ma, mb = _arrays(a, "mc", var), _arrays(b, "mc", var)
        assert ma.keys() == mb.keys()
        for r in ma:
            np.testing.assert_allclose(ma[r][0], mb[r][0], rtol=rtol, atol=0)
            np.testing.assert_allclose(ma[r][1], mb[r][1], rtol=rtol, atol=0)


def corrupt_basket(path: Path, branch: str, *, which: int = 0) -> Path:
    """Overwrite the compressed payload of one basket of ``branch`` (header stays readable)."""
    import uproot

    with uproot.open(path) as f:
        br = f["selected"][branch]
        seek = int(br.member("fBasketSeek")[which])
        nbytes = int(br.member("fBasketBytes")[which])
    data = bytearray(path.read_bytes())
    lo, hi = seek + 100, seek + nbytes - 10
    data[lo:hi] = b"\x5a" * (hi - lo)
    path.write_bytes(bytes(data))
    return path
