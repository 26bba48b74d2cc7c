from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
    """A real CMS open-data file from ``../shared/data``: skips locally when it is absent, fails
    in CI (CI=true), where a silent skip would hide the real-data tests."""
    p = SHARED_DATA / name
    if not p.is_file():
        msg = f"real CMS open-data file {p} is not available (../shared/data absent)"
        if IN_CI:
            pytest.fail(msg + "; CI must provide it")
        pytest.skip(msg)
    return p


#: Branches of the CMS 2010 dimuon ntuple (``../shared/data/README.md``) for the flat reader.
DIMUON_COLUMNS = {
    "energy": ["E1", "E2"],
    "eta": ["eta1", "eta2"],
    "phi": ["phi1", "phi2"],
    "charge": ["Q1", "Q2"],
    "run": "Run",
    "event": "Event",
}


def dimuon_histograms(categories: Path, **selection):
    """Histograms of the real CMS 2010 dimuon ntuple (skips when ../shared/data is absent):
    opposite charge, Et > 20/10 GeV, |eta| < 2.4, no crack exclusion."""
    from zcalib.categories import load_categories
    from zcalib.config import SelectionConfig, dataset_config_from_files
    from zcalib.runner import RunOptions, build_histograms

    p = shared_file("cms_opendata_2010_zmumu.root")
    cfg = dataset_config_from_files(
        data=[str(p)], fmt="flat", treename="events", column_map=DIMUON_COLUMNS
    )
    sel = SelectionConfig(
        min_et_lead=20,
        min_et_sublead=10,
        max_abs_eta=2.4,
        exclude_crack=False,
        opposite_charge=True,
        **selection,
    )
    return build_histograms(
        cfg,
        load_categories(categories),
        options=RunOptions(executor="iterative", progress=False),
        selection=sel,
    )
