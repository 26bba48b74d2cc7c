"""The self-contained HTML report: contents, no external resources, headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from zcalib.exceptions import InputError
from zcalib.validation import write_report
from zcalib.validation.report import render_json

from .conftest import Derivation

#: Attributes and CSS constructs that load a resource; only data: URIs and #anchors allowed.
_RESOURCE = re.compile(
    r"""\b(?:src|href|poster|action|srcset)\s*=\s*(?:"(?!data:|#)|'(?!data:|#)|(?!["'#]|data:))"""
    r"""|url\(\s*(?:"(?!data:)|'(?!data:)|(?!["']|data:))|@import""",
    re.IGNORECASE,
)


@pytest.fixture(scope="module")
def report_dir(validated: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The validated derivation folder plus other helpers' JSON (systematics, stats)."""
    d = tmp_path_factory.mktemp("report") / "derivation"
    shutil.copytree(validated, d)
    (d / "systematics.json").write_text(json.dumps({
        "kind": "systematics",
        "components": [{"name": "window", "scale[0]": 1.0e-4},
                       {"name": "r9 cut", "scale[0]": 2.0e-4}],
        "total": {"scale[0]": 2.2e-4},
    }))  # fmt: skip
    (d / "stats").mkdir()
    (d / "stats" / "gof.json").write_text(json.dumps({"p_value": 0.42, "chi2": 35.1, "ndf": 37}))
    return d


def test_report_contents(report_dir: Path, derivation: Derivation):
    path = write_report(report_dir)
    assert path == report_dir / "report.html"
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "zcalib derivation report — step test" in page
    assert '<span class="badge ok">converged</span>' in page
    for c in derivation.result.scales:
        assert c.label in page
        assert f"{c.value:.6f}" in page
    for section in (
        "Validation: data vs MC (validation/validation.json)",
        "NLL scans (validation/scans/scans.json)",
        "Corrections",
        "Other results",
        "systematics.json",
        "stats/gof.json",
        "Provenance",
        "Cutflow",
        "test_scales.dat",
    ):
        assert section in page, section
    n_png = len(list(report_dir.rglob("*.png")))
    assert n_png == 3 + 16 + 1
    # every PNG of the folder, plus the scales/smearings-per-category summary of the fit
    assert page.count('src="data:image/png;base64,') == n_png + 1
    assert '<img alt="scales and smearings per category"' in page
    assert "EbEb_highR9.png" in page


def test_report_references_no_external_resource(report_dir: Path):
    page = write_report(report_dir, report_dir / "offline.html").read_text()
    assert not _RESOURCE.findall(page)
    assert "<script" not in page
    assert "<link" not in page
    assert "<object" not in page
    assert "<iframe" not in page
    assert "http://" not in page.replace("http://127.0.0.1", "")


def test_report_of_a_missing_folder(tmp_path):
    with pytest.raises(InputError, match="derivation folder not found"):
        write_report(tmp_path / "nope")


def test_report_of_an_empty_folder(tmp_path):
    page = write_report(tmp_path).read_text()
    assert "Nothing to report" in page


def test_render_json_tables():
    out = render_json({"a": 1.5, "rows": [{"x": 1, "y": "b"}, {"x": 2, "y": "<c>"}]})
    assert "<table" in out
    assert "&lt;c&gt;" in out
    assert "<c>" not in out


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_screenshot_in_headless_chromium(report_dir: Path, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium not found on PATH (make browser installs it from Debian packages)")
    from matplotlib.image import imread

    page = write_report(report_dir)
    shot = tmp_path / "report.png"
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        page.resolve().as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERR_FILE_NOT_FOUND" not in proc.stderr
    assert shot.is_file()
    assert shot.stat().st_size > 20_000
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    grey = pixels[..., :3].mean(axis=-1)
    assert float(np.std(grey)) > 0.05  # not blank: header, tables and plots
    assert (grey < 0.3).mean() > 0.01  # dark header and text present


def test_cli_report(report_dir: Path, tmp_path, capsys):
    from zcalib.cli import main

    out = tmp_path / "page.html"
    assert main(["report", str(report_dir), "--out", str(out), "--title", "Step 2 UL18"]) == 0
    assert "<title>Step 2 UL18</title>" in out.read_text()
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "derivation folder not found" in capsys.readouterr().err
