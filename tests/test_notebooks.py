"""The notebooks: stored without outputs, and executed end to end on small samples.

``coffea_casa.ipynb`` runs against a real facility-like set-up: a TLS ``dask scheduler`` and
one ``dask worker`` as separate processes on 127.0.0.1, their certificates made at test time
and handed over, as coffea-casa does, through the ``DASK_DISTRIBUTED__COMM__TLS__*``
environment; the notebook finds the scheduler through ``DASK_SCHEDULER_ADDRESS``. The worker
cannot import an installed zcalib (a preload removes every ``sys.path`` entry holding it), so
the fill runs only because the notebook ships the package (``worker_env.upload_package``).
Not exercised: XRootD/XCache inputs (the demo sample is local files, sent as absolute paths;
``root://`` reading is tested in ``tests/io/test_xrootd.py``) and workers on another machine.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: data pairs per notebook run in the tests (the notebooks' own default is larger)
TEST_EVENTS = "20000"

#: Dask worker preload: this worker cannot import an installed zcalib, only an uploaded one
HIDE_ZCALIB = """\
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "zcalib/__init__.py").is_file()]
assert "zcalib" not in sys.modules
"""


@pytest.fixture
def tls_dask(tmp_path_factory):
    """A TLS scheduler and one single-threaded worker without zcalib, as processes."""
    from tests.cluster.conftest import DaskProcesses, tls_credentials

    folder = tmp_path_factory.mktemp("tls_dask")
    env, security = tls_credentials(folder)
    preload = folder / "hide_zcalib.py"
    preload.write_text(HIDE_ZCALIB)
    procs = DaskProcesses(folder, env=env, security=security)
    try:
        yield procs.start(1, protocol="tls", worker_args=("--preload", str(preload)))
    finally:
        procs.close()
    assert all(proc.poll() is not None for proc in procs.procs.values())


def test_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "coffea_casa.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path: Path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {cell.id} has outputs"
            assert cell.execution_count is None, f"{path.name}: cell {cell.id} was executed"
        assert "execution" not in cell.metadata, f"{path.name}: cell {cell.id} has timings"
    raw = json.loads(path.read_text())
    assert "widgets" not in raw["metadata"], f"{path.name}: widget state stored"


@pytest.mark.cluster
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, tmp_path, monkeypatch, request):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("ZCALIB_NB_EVENTS", TEST_EVENTS)
    # relative, as a user would type it: the notebooks hand the workers absolute paths
    monkeypatch.setenv("ZCALIB_NB_WORKDIR", "work")
    casa = path.name == "coffea_casa.ipynb"
    if casa:
        # the scheduler address and TLS credentials as the facility's environment gives them
        dask = request.getfixturevalue("tls_dask")
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask.address)
        for name, value in dask.env.items():
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    t0 = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - t0
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images, "the notebook drew no figure"
    tables = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "<table>" in o.get("data", {}).get("text/html", "")
    ]
    assert tables, "no result displayed as a table"
    if casa:
        shown = nb.cells[1].outputs[0]["data"]["text/plain"]
        assert dask.address.startswith("tls://127.0.0.1:")
        assert f"'{dask.address}'" in shown  # from DASK_SCHEDULER_ADDRESS
        connected = next(c for c in nb.cells if "where = " in c.source).outputs[0]["data"]
        assert connected["text/plain"].startswith(f"('scheduler {dask.address}', 1, ")

        def worker_state(dask_worker) -> dict:  # nested: pickled by value for the worker
            """Where the worker's zcalib came from, and how many tasks it executed."""
            zcalib = sys.modules.get("zcalib")
            return {
                "zcalib": getattr(zcalib, "__file__", None),
                "installed": [
                    p for p in sys.path if (Path(p or ".") / "zcalib/__init__.py").is_file()
                ],
                "executed": dask_worker.state.executed_count,
            }

        with dask.client() as client:
            (state,) = client.run(worker_state).values()
        # the fill ran on that worker, with the zcalib the notebook uploaded
        assert state["installed"] == []
        assert state["zcalib"].endswith("zcalib.zip/zcalib/__init__.py"), state
        assert state["executed"] > 0, state
        # ... and its result is the physics: the injected scales within the stated errors
        truth = json.loads((tmp_path / "work" / "nanoaod" / "truth.json").read_text())
        result = json.loads((tmp_path / "work" / "casa_step" / "fit_result.json").read_text())
        assert result["status"] == "converged"
        scales = [c for c in result["categories"] if c["kind"] == "scale"]
        pulls = [
            (c["value"] - t) / c["total_stat"] for c, t in zip(scales, truth["scale"], strict=True)
        ]
        assert len(pulls) == 8
        assert max(map(abs, pulls)) < 5, pulls
        assert f"PosixPath('{tmp_path / 'work'}')" in shown.replace("\n ", "")
        files = next(c for c in nb.cells if "files = [" in c.source).outputs[0]["data"]
        assert str(tmp_path / "work" / "nanoaod" / "data.root") in files["text/plain"]
    corrections = list((tmp_path / "work").rglob("corrections.json"))
    assert corrections, "the notebook wrote no correctionlib file"
    assert elapsed < 120, f"{path.name} took {elapsed:.0f} s"
