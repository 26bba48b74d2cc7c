"""Project habits: what CI runs, and real-data tests that cannot skip silently in CI."""

from __future__ import annotations

import pytest

import tests.conftest as conftest
from tests.conftest import ROOT


def test_ci_runs_lint_and_typecheck_before_the_readme_test_command():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert lines.index("make lint typecheck") < lines.index("make test")
    makefile = (ROOT / "Makefile").read_text()
    assert "ruff check src tests benchmarks" in makefile
    assert "ruff format --check src tests benchmarks" in makefile
    assert "$(BIN)/mypy" in makefile
    assert "make test" in (ROOT / "README.md").read_text()


def test_missing_shared_data_fails_in_ci_and_skips_locally(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path)
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match=r"not available .*; CI must provide it"):
        conftest.shared_file("cms_opendata_2010_zmumu.root")
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="not available"):
        conftest.shared_file("cms_opendata_2010_zmumu.root")
    (tmp_path / "present.root").write_bytes(b"")
    assert conftest.shared_file("present.root") == tmp_path / "present.root"
