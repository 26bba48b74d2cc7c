"""Pure physics kernels over arrays (one formula each; the array module is numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["pair_mass", "pair_masses"]

Array = NDArray[np.floating[Any]]


def pair_mass(e1: Array, eta1: Array, phi1: Array, e2: Array, eta2: Array, phi2: Array) -> Array:
    """Invariant mass of two massless leptons from energies and directions.

    ``m² = 2 E1 E2 (1 − cos θ12)`` with
    ``cos θ12 = (cos(φ1 − φ2) + sinh η1 sinh η2) / (cosh η1 cosh η2)``.

    Example:
        >>> import numpy as np
        >>> float(pair_mass(np.array([45.6]), np.array([0.0]), np.array([0.0]),
        ...                 np.array([45.6]), np.array([0.0]), np.array([np.pi]))[0])
        91.2
    """
    # fill values (ECALELF η = -999) overflow to a NaN mass, which no mass window keeps
    with np.errstate(over="ignore", invalid="ignore"):
        cos12 = (np.cos(phi1 - phi2) + np.sinh(eta1) * np.sinh(eta2)) / (
            np.cosh(eta1) * np.cosh(eta2)
        )
        m2 = 2.0 * e1 * e2 * (1.0 - cos12)
    return np.asarray(np.sqrt(np.maximum(m2, 0.0)), dtype=np.float64)


def pair_masses(
    energy: NDArray[np.float64], eta: NDArray[np.float64], phi: NDArray[np.float64]
) -> NDArray[np.float64]:  # pragma: no cover
    """:func:`pair_mass` of every pair, from ``(n, 2)`` arrays, as one loop for numba
    (:func:`zcalib._jit.jitted`): the same formula, no temporary arrays.

    Fill values (η = ±999) give NaN, as in :func:`pair_mass`.
    """
    n = energy.shape[0]
    out = np.empty(n)
    for i in range(n):
        ch = np.cosh(eta[i, 0]) * np.cosh(eta[i, 1])
        cos12 = (np.cos(phi[i, 0] - phi[i, 1]) + np.sinh(eta[i, 0]) * np.sinh(eta[i, 1])) / ch
        m2 = 2.0 * energy[i, 0] * energy[i, 1] * (1.0 - cos12)
        out[i] = np.nan if np.isnan(m2) else np.sqrt(max(m2, 0.0))
    return out
