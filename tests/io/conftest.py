"""A real XRootD server on 127.0.0.1 for the remote-input tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

#: In CI (CI=true) a server that cannot start fails the test instead of skipping it.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class XRootDServer:
    """A running server: files put in ``root`` are read at ``url(name)``."""

    root: Path
    port: int
    pid: int

    def url(self, name: str) -> str:
        return f"root://127.0.0.1:{self.port}//{name}"

    def put(self, src: Path, name: str | None = None) -> str:
        """Copy a file into the served folder (readable by the server) and return its URL."""
        dest = self.root / (name or src.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        dest.chmod(0o644)
        return self.url(dest.relative_to(self.root).as_posix())


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"XRootD server unavailable in CI: {reason} (make xrootd-server installs it)")
    pytest.skip(f"XRootD server unavailable: {reason} (make xrootd-server installs it)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """The server accepts TCP connections, then answers an XRootD ping."""
    from XRootD import client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
            continue
        status, _ = client.FileSystem(f"root://127.0.0.1:{port}").ping(timeout=5)
        return bool(status.ok)
    return False


@pytest.fixture(scope="session")
def xrootd_server():
    """Start ``xrootd`` serving a fresh folder to local connections only; stop it by PID.

    As root the server drops to ``nobody`` (``-R nobody``), so the served folder and its
    files are made world-readable; it lives outside pytest's private (0700) temp folder.
    """
    binary = shutil.which("xrootd")
    if binary is None:
        _unavailable("the 'xrootd' executable (Debian package xrootd-server) is not installed")
    try:
        import fsspec_xrootd  # noqa: F401
    except ImportError:
        _unavailable("the XRootD client is not installed: pip install 'zcalib[remote]'")
    work = Path(tempfile.mkdtemp(prefix="zcalib-xrootd-"))
    root = work / "export"
    root.mkdir()
    admin = work / "admin"  # the server's own files (pid, sockets): written as nobody
    admin.mkdir()
    for d in (work, root):
        d.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(admin, user="nobody")
    log = admin / "xrootd.log"
    proc = None
    try:
        for _attempt in range(3):
            port = _free_port()
            cfg = work / "xrootd.cfg"
            cfg.write_text(
                f"xrd.port {port}\n"
                # local connections only
                "xrd.allow host localhost\n"
                "xrd.allow host 127.0.0.1\n"
                f"all.adminpath {admin}\n"
                f"all.pidpath {admin}\n"
                "all.export / r/o\n"
                f"oss.localroot {root}\n"
            )
            cmd = [str(binary), "-c", str(cfg), "-l", str(log)]
            if os.geteuid() == 0:
                cmd += ["-R", "nobody"]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            if _ready(port, proc, timeout=20):
                break
            proc.terminate()
            proc.wait(timeout=10)
            proc = None
        if proc is None:
            tail = (
                "".join(log.read_text(errors="replace").splitlines(True)[-5:])
                if log.exists()
                else ""
            )
            _unavailable(f"xrootd did not start on 127.0.0.1: {tail.strip()[-400:]}")
        yield XRootDServer(root=root, port=port, pid=proc.pid)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
