"""Shared fixtures for the correction tests: category schemes and helpers."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from zcalib.categories import Category, CategoryScheme, load_categories

REPO = Path(__file__).resolve().parents[2]

GAIN_ET_YAML = """\
schema_version: 1
scale:
  - {run: [1, 200], eta: [0, 1.4442], et: [0, 50], gain: 12}
  - {run: [1, 200], eta: [0, 1.4442], et: [50, 14000], gain: 12}
  - {run: [1, 200], eta: [0, 1.4442], et: [0, 14000], gain: 6}
  - {run: [1, 200], eta: [0, 1.4442], et: [0, 14000], gain: 1}
  - {run: [1, 200], eta: [1.566, 2.5], et: [0, 14000]}
smear:
  - {run: [1, 200], eta: [0, 1.4442], et: [0, 14000]}
  - {run: [1, 200], eta: [1.566, 2.5], et: [0, 14000]}
"""


@pytest.fixture
def scheme8() -> CategoryScheme:
    """The 8-category |eta| x R9 scheme shipped in configs/."""
    return load_categories(REPO / "configs" / "cats_eta_r9.tsv")


@pytest.fixture
def scheme_gain_et(tmp_path: Path) -> CategoryScheme:
    """A run-range + gain + Et scheme loaded from YAML."""
    p = tmp_path / "cats_gain_et.yaml"
    p.write_text(GAIN_ET_YAML)
    return load_categories(p)


@pytest.fixture
def run_categories() -> tuple[Category, ...]:
    """Runs 1-100 and 101-200 in the barrel, runs 1-200 in the endcap (in memory).

    ``Category`` stores run ranges half-open: runs 1-100 (inclusive) are ``(1, 101)``.
    """
    return (
        Category("scale", 0, run=(1, 101), eta=(0, 1.4442)),
        Category("scale", 1, run=(101, 201), eta=(0, 1.4442)),
        Category("scale", 2, run=(1, 201), eta=(1.566, 2.5)),
    )


def _midpoint(cat: Category) -> dict[str, float | int]:
    """A point well inside ``cat`` (keywords of ``evaluate_scale``)."""

    def mid(lo: float, hi: float, default: float) -> float:
        if math.isinf(lo) and math.isinf(hi):
            return default
        if math.isinf(lo):
            return hi - 0.01
        if math.isinf(hi):
            return lo + 1.0
        return 0.5 * (lo + hi)

    return {
        "run": int(cat.run[0]) if math.isfinite(cat.run[0]) else 150,
        "abs_sc_eta": mid(*cat.eta, 0.5),
        "r9": mid(*cat.r9, 0.9),
        "pt": mid(*cat.et, 40.0),
        "gain": 12 if cat.gain is None else cat.gain,
    }


def _run_correction_validate(path: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``correction validate`` CLI on ``path``."""
    exe = Path(sys.executable).with_name("correction")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "correctionlib.cli"]
    return subprocess.run(
        [*cmd, "validate", str(path)], capture_output=True, text=True, check=False
    )


@pytest.fixture
def midpoint() -> Callable[[Category], dict[str, float | int]]:
    """Function returning a point well inside a category."""
    return _midpoint


@pytest.fixture
def correction_validate() -> Callable[[Path], subprocess.CompletedProcess[str]]:
    """Function running the ``correction validate`` CLI on a file."""
    return _run_correction_validate
