"""Documentation: the strict MkDocs build, the generated reference, and runnable docstrings."""

from __future__ import annotations

import doctest
import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "hooks"))
import zcalib_docs

#: Modules whose docstring examples run in the test suite (fast, no cluster, no network).
DOCTEST_MODULES = (
    "zcalib",
    "zcalib.api",
    "zcalib.calibration",
    "zcalib.categories",
    "zcalib.corrections",
    "zcalib.corrections.apply",
    "zcalib.corrections.egm",
    "zcalib.corrections.legacy",
    "zcalib.corrections.writer",
    "zcalib.fit",
    "zcalib.fit.config",
    "zcalib.fit.model",
    "zcalib.fit.problem",
    "zcalib.fit.synthetic",
    "zcalib.generate",
    "zcalib.physics",
    "zcalib.rng",
)


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    # log records are not part of the examples' output: drop handlers other tests installed
    # (the CLI's rich handler writes to stdout, where doctest would see it)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=False
    )
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
    assert result.attempted > 0, f"{name} has no docstring example"


def test_mkdocs_build_is_strict_and_clean(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr
    reference = (site / "reference" / "index.html").read_text()
    for field in ("window", "selection", "binning", "systematic", "column_map", "min_et_lead"):
        assert field in reference
    pymin = (site / "pymin" / "index.html").read_text()
    assert "test-method-accuracy" in pymin
    assert "zcalib inject" in pymin
    assert (site / "api-reference" / "index.html").is_file()
    assert not (site / "hooks").exists()


def test_every_page_is_in_the_nav():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    listed = set(pages(nav))
    present = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if "hooks" not in p.parts}
    assert present == listed
    for required in ("changelog.md", "benchmarks.md", "pipeline.md", "cluster.md"):
        assert required in listed


def test_model_reference_lists_every_field():
    from zcalib.calibration import CalibrationConfig

    text = zcalib_docs.model_markdown(CalibrationConfig)
    for name, field in CalibrationConfig.model_fields.items():
        assert f"| `{name}` |" in text
        assert field.description, f"CalibrationConfig.{name} has no description"
    # nested models are documented once
    assert text.count("### McWeight") == 1
    assert "### PriorCorrection" in text


def test_fit_config_reference_has_descriptions():
    from zcalib.fit.config import FitConfig

    # a pydantic model documented in its Attributes: docstring section
    text = zcalib_docs.model_markdown(FitConfig)
    assert "| `window` |" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert all(not line.rstrip().endswith("|  |") for line in rows), "a field lacks a description"


def test_missing_pipeline_module_gives_a_note():
    assert "not available in this build" in zcalib_docs.models_of_module("zcalib.no_such_module")
    assert "not available in this build" in zcalib_docs.optional_model("zcalib.no_such.Model")
    text = zcalib_docs.optional_model("zcalib.config.DatasetConfig")
    assert "### DatasetConfig" in text


def test_pymin_rows_name_real_options():
    """Every row names a real subcommand and only options that subcommand itself accepts
    (after its name, as the table shows them: `zcalib fit -v`)."""
    subs = zcalib_docs.subcommands()
    assert {"fit", "histograms", "inject", "combine", "pipeline"} <= set(subs)
    for old, command, opts, _ in zcalib_docs.PYMIN_ROWS:
        assert command in subs, f"{old}: no zcalib {command}"
        known = zcalib_docs._options(subs[command])
        missing = [o for o in opts.split() if o not in known]
        assert not missing, f"{old}: zcalib {command} has no {missing}"


def test_pymin_mappings(capsys):
    """The corrected rows: options that parse where the table puts them, and the commands
    that do what the pymin option did."""
    from zcalib.cli import build_parser

    rows = {old: (command, opts) for old, command, opts, _ in zcalib_docs.PYMIN_ROWS}
    assert rows["pyval --log LEVEL"] == ("fit", "-v -q")
    args = build_parser().parse_args(["fit", "--categories", "c.tsv", "--out", "o", "-vv"])
    assert args.verbose == 2
    assert rows["pymin --combine-files"] == ("combine", "--scales --only-step --out")
    assert rows["pymin -s step_scales.dat"][0] == "pipeline"
    assert rows["pymin --smearings FILE --closure"][0] == "pipeline"
    table = zcalib_docs.pymin_markdown()
    assert "| `pyval --log LEVEL` | `zcalib fit -v -q` |" in table
    assert "| `pymin --combine-files` | `zcalib combine --scales --only-step --out` |" in table
    assert "not in this version" not in table


def test_expand_rejects_unknown_markers():
    with pytest.raises(ValueError, match="unknown zcalib docs marker 'nope'"):
        zcalib_docs.expand("<!-- zcalib:nope -->\n")


def test_repository_links(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.tsv").write_text("x")
    md = (
        "[`configs/a.tsv`](../configs/a.tsv) [the file](../configs/a.tsv) "
        "[gone](../configs/missing.tsv) [page](other.md)"
    )
    out = zcalib_docs.repository_links(md, docs, docs)
    assert out.startswith("`configs/a.tsv` the file (`configs/a.tsv` in the repository)")
    assert "[gone](../configs/missing.tsv)" in out
    assert "[page](other.md)" in out


def test_docstring_markdown_sections():
    text = zcalib_docs.docstring_markdown(
        "Do it.\n\nArgs:\n    x: the :class:`~a.b.Thing`.\n\nExample:\n    >>> 1 + 1\n    2\n"
    )
    assert "- `x`: the `Thing`." in text
    assert "```pycon\n>>> 1 + 1\n2\n```" in text


def test_readme_links_the_docs():
    assert "make docs" in (ROOT / "README.md").read_text()


def test_docs_source_is_not_stale():
    """Pages only ask for markers the hook knows."""
    for page in DOCS.rglob("*.md"):
        zcalib_docs.expand(page.read_text())
    assert Path(zcalib_docs.__file__).parent == DOCS / "hooks"


def test_readme_python_snippet_runs_as_a_script(tmp_path, demo_nanoaod):
    """The README's Python API block, pasted into a script as it stands, runs on a local Dask
    cluster (spawned workers re-import the script) and writes the step's payload."""
    import json
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert 'if __name__ == "__main__":' in snippet
    (tmp_path / "derive.py").write_text(snippet)
    (tmp_path / "datasets.yaml").write_text(
        "format: nanoaod\ndatasets:\n"
        f"  - {{name: data, kind: data, files: [{demo_nanoaod.data}]}}\n"
        f"  - {{name: mc, kind: mc, files: [{demo_nanoaod.mc}]}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "derive.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nanny failed to start" not in proc.stderr
    record = json.loads((tmp_path / "output" / "step1" / "fit_result.json").read_text())
    assert record["step"] == "step1"
    assert (tmp_path / "output" / "step1" / "corrections.json").is_file()
