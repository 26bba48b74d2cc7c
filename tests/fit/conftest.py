"""Fixtures: realistic event-level Z->ee histograms for the 8-cell |η| x R9 scheme."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zcalib.categories import CategoryScheme, load_categories
from zcalib.fit import synthetic_histograms
from zcalib.fit.synthetic import fit_inputs
from zcalib.histograms import HistogramSet

ROOT = Path(__file__).resolve().parents[2]

#: Injected data scales (correction to data) and extra MC smearings, per category.
TRUTH_SCALES = np.array([1.006, 0.995, 1.003, 0.990, 1.009, 0.998, 1.012, 0.993])
TRUTH_SMEARS = np.array([0.009, 0.016, 0.020, 0.013, 0.010, 0.012, 0.018, 0.015])


@pytest.fixture(scope="session")
def scheme() -> CategoryScheme:
    return load_categories(ROOT / "configs" / "cats_eta_r9.tsv")


@pytest.fixture(scope="session")
def hset(scheme: CategoryScheme) -> HistogramSet:
    """300k data pairs with injected per-electron miscalibration and smearing, MC 4x."""
    return synthetic_histograms(
        scheme,
        n_data=300_000,
        n_mc=1_200_000,
        scales=TRUTH_SCALES,
        smears=TRUTH_SMEARS,
        seed=2024,
    )


@pytest.fixture(scope="session")
def arrays(hset: HistogramSet, scheme: CategoryScheme) -> dict[str, np.ndarray]:
    """The histograms of ``hset`` as the arrays :func:`fit_arrays` takes."""
    return fit_inputs(hset, scheme)
