"""The notebooks: stored without outputs, and executed end to end on small samples."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: data pairs per notebook run in the tests (the notebooks' own default is larger)
TEST_EVENTS = "20000"


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
def test_notebook_executes(path: Path, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("ZCALIB_NB_EVENTS", TEST_EVENTS)
    # relative, as a user would type it: the notebooks hand the workers absolute paths
    monkeypatch.setenv("ZCALIB_NB_WORKDIR", "work")
    if path.name == "coffea_casa.ipynb":
        # the scheduler address as the facility's environment gives it (Dask configuration);
        # no scheduler listens on this closed port, so the notebook uses a local cluster
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tls://127.0.0.1:1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
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
    if path.name == "coffea_casa.ipynb":
        shown = nb.cells[1].outputs[0]["data"]["text/plain"]
        assert "'tls://127.0.0.1:1'" in shown  # from DASK_SCHEDULER_ADDRESS
        assert f"PosixPath('{tmp_path / 'work'}')" in shown.replace("\n ", "")
        files = next(c for c in nb.cells if "files = [" in c.source).outputs[0]["data"]
        assert str(tmp_path / "work" / "nanoaod" / "data.root") in files["text/plain"]
    corrections = list((tmp_path / "work").rglob("corrections.json"))
    assert corrections, "the notebook wrote no correctionlib file"
    assert elapsed < 120, f"{path.name} took {elapsed:.0f} s"
