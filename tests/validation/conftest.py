"""Fixtures: one small generated derivation (ntuples, histograms, fit, corrections)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from zcalib.categories import CategoryScheme
from zcalib.config import DatasetConfig
from zcalib.fit import FitResult
from zcalib.histograms import HistogramSet
from zcalib.processors.zee import CorrectionStep

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@dataclass(frozen=True)
class Derivation:
    """A derivation folder made from a small generated sample."""

    dir: Path
    datasets: DatasetConfig
    hset: HistogramSet
    scheme: CategoryScheme
    result: FitResult
    steps: list[CorrectionStep]


@pytest.fixture(scope="session")
def derivation(tmp_path_factory: pytest.TempPathFactory) -> Derivation:
    """30k data / 60k MC pairs → histograms (iterative executor) → fit → outputs."""
    from zcalib.config import dataset_config_from_files
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.derive import write_outputs
    from zcalib.fit import fit_histograms
    from zcalib.generate import default_categories, generate
    from zcalib.histograms import save_histograms
    from zcalib.runner import RunOptions, build_histograms

    base = tmp_path_factory.mktemp("validation")
    gen = generate(base / "ntuples", n_data=30_000, n_mc=60_000, seed=11)
    cfg = dataset_config_from_files(data=[str(gen.data)], mc=[str(gen.mc)])
    scheme = default_categories()
    hset = build_histograms(cfg, scheme, options=RunOptions(executor="iterative", progress=False))
    result = fit_histograms(hset, scheme=scheme).raise_if_failed()
    out = base / "derivation"
    paths = write_outputs(result, scheme, out, step="test", hset=hset)
    save_histograms(hset, out / "histograms.npz")
    steps = load_correction_steps(paths["corrections"])
    return Derivation(dir=out, datasets=cfg, hset=hset, scheme=scheme, result=result, steps=steps)


@pytest.fixture(scope="session")
def validated(derivation: Derivation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the derivation folder plus ``validation/`` (three plots, ``validate --scan``:
    all 16 NLL scans in ``validation/scans``)."""
    import shutil

    from zcalib.validation import load_plot_categories, run_validation

    d = tmp_path_factory.mktemp("validated")
    for f in derivation.dir.iterdir():
        if f.is_file():
            shutil.copy(f, d / f.name)
    cats = load_plot_categories(CONFIGS / "plot_cats_standard.tsv")[:3]
    run_validation(
        cats, d / "validation", histograms=derivation.hset, corrections=derivation.steps, scan=True
    )
    return d
