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
    monkeypatch.setenv("ZCALIB_NB_WORKDIR", str(tmp_path / "work"))
    # no coffea-casa scheduler here: a closed port makes the notebook use a local cluster
    monkeypatch.setenv("ZCALIB_SCHEDULER", "tls://127.0.0.1:1")
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
    corrections = list((tmp_path / "work").rglob("corrections.json"))
    assert corrections, "the notebook wrote no correctionlib file"
    assert elapsed < 120, f"{path.name} took {elapsed:.0f} s"
