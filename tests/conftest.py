from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_ecalelf(tmp_path_factory):
    """Small generated demo sample (ECALELF format): 20k data, 40k MC pairs."""
    from zcalib.generate import generate

    out = tmp_path_factory.mktemp("demo_ecalelf")
    return generate(out, n_data=20_000, n_mc=40_000, seed=7, fmt="ecalelf")


@pytest.fixture(scope="session")
def demo_nanoaod(tmp_path_factory):
    """The same events as ``demo_ecalelf``, written in NanoAOD format."""
    from zcalib.generate import generate

    out = tmp_path_factory.mktemp("demo_nanoaod")
    return generate(out, n_data=20_000, n_mc=40_000, seed=7, fmt="nanoaod")


@pytest.fixture(scope="session")
def scheme():
    from zcalib.categories import load_categories

    return load_categories(CONFIGS / "cats_eta_r9.tsv")


def shared_file(name: str) -> Path:
    p = SHARED_DATA / name
    if not p.is_file():
        pytest.skip(f"real CMS open-data file {p} is not available (../shared/data absent)")
    return p
