"""Fixtures: a small demo derivation (fit → corrections → refill with the corrections)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import pytest

mpl.use("Agg")


@dataclass(frozen=True)
class Derivation:
    out: Path
    corrections: Path
    uncorrected: object  # HistogramSet filled without corrections
    corrected: object  # HistogramSet refilled with the derived corrections
    result: object  # FitResult


@pytest.fixture(scope="session")
def derivation(tmp_path_factory) -> Derivation:
    """50k data / 150k MC demo pairs: derive, write, refill with the corrections applied."""
    from zcalib.config import dataset_config_from_files
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.derive import write_outputs
    from zcalib.fit import FitConfig, fit_histograms
    from zcalib.generate import default_categories, generate
    from zcalib.runner import RunOptions, build_histograms

    base = tmp_path_factory.mktemp("stats_demo")
    gen = generate(base / "data", n_data=50_000, n_mc=150_000, seed=11)
    scheme = default_categories()
    cfg = dataset_config_from_files(data=[str(gen.data)], mc=[str(gen.mc)])
    opts = RunOptions(executor="iterative", progress=False)
    hset = build_histograms(cfg, scheme, options=opts)
    result = fit_histograms(hset, FitConfig(), scheme=scheme).raise_if_failed()
    out = base / "derivation"
    paths = write_outputs(result, scheme, out, step="demo", hset=hset)
    steps = load_correction_steps(paths["corrections"])
    corrected = build_histograms(cfg, scheme, options=opts, corrections=tuple(steps))
    return Derivation(
        out=out,
        corrections=paths["corrections"],
        uncorrected=hset,
        corrected=corrected,
        result=result,
    )
