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


#: Et bins [GeV] of the Et-dependence samples (migration-free Et categories, docs/fit.md).
ET_EDGES = (30.0, 36.0, 40.0, 44.0, 50.0)
ET_ETAS = ((0.0, 1.0), (1.0, 1.4442), (1.566, 2.0), (2.0, 2.5))


def et_scheme(etas=ET_ETAS, edges=ET_EDGES, r9=None):
    """Scale and smear categories |η| (× R9) × Et, Et innermost."""
    from math import inf

    from zcalib.categories import Category, build_scheme

    bins = list(zip((-inf, *edges), (*edges, inf), strict=True))
    r9s = r9 or [(-inf, inf)]

    def cats(kind):
        cells = [(e, r, t) for r in r9s for e in etas for t in bins]
        return [Category(kind, i, eta=e, r9=r, et=t) for i, (e, r, t) in enumerate(cells)]

    return build_scheme(cats("scale"), cats("smear"))


@pytest.fixture(scope="session")
def et_dependent_fit(tmp_path_factory):
    """Data with a smooth Et dependence on the true Et (per-|η| values times
    ``EtDependence``), fitted in |η| × 6 Et bins: ``(truth, scheme, hset, result, sample)``
    with ``truth(kind, cell, et)`` the injected value at a true Et."""
    import numpy as np

    from zcalib.categories import Category, build_scheme
    from zcalib.config import dataset_config_from_files
    from zcalib.fit import fit_histograms
    from zcalib.generate import EtDependence, generate
    from zcalib.runner import RunOptions, build_histograms

    scales, smears = [1.002, 0.997, 1.004, 0.999], [0.006, 0.009, 0.012, 0.014]
    dep = EtDependence(scale_amplitude=0.006, scale_power=1.5, smear_b=0.005)
    injected = build_scheme(
        [Category("scale", i, eta=e) for i, e in enumerate(ET_ETAS)],
        [Category("smear", i, eta=e) for i, e in enumerate(ET_ETAS)],
    )
    sample = generate(
        tmp_path_factory.mktemp("et_dependent"),
        n_data=150_000,
        n_mc=300_000,
        seed=3,
        categories=injected,
        truth_scales=scales,
        truth_smears=smears,
        et_dependence=dep,
    )
    scheme = et_scheme()
    cfg = dataset_config_from_files(data=[str(sample.data)], mc=[str(sample.mc)], fmt="ecalelf")
    opts = RunOptions(executor="iterative", chunksize=200_000, progress=False)
    hset = build_histograms(cfg, scheme, options=opts)
    result = fit_histograms(hset, scheme=scheme)

    def truth(kind, cell, et):
        s, m = dep.apply(np.array([scales[cell]]), np.array([smears[cell]]), np.asarray([et]))
        return float(s[0] if kind == "scale" else m[0])

    return truth, scheme, hset, result, sample
