"""Pure physics kernels over arrays (one formula each; the array module is numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["pair_mass", "pair_mass_formula"]

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
        return np.asarray(pair_mass_formula(e1, eta1, phi1, e2, eta2, phi2), dtype=np.float64)


def pair_mass_formula(e1: Any, eta1: Any, phi1: Any, e2: Any, eta2: Any, phi2: Any) -> Any:
    """The formula of :func:`pair_mass` on numbers or arrays, without floating-point error
    handling: numba compiles it for one pair (:func:`zcalib._jit.vectorized`)."""
    cos12 = (np.cos(phi1 - phi2) + np.sinh(eta1) * np.sinh(eta2)) / (np.cosh(eta1) * np.cosh(eta2))
    m2 = 2.0 * e1 * e2 * (1.0 - cos12)
    return np.sqrt(np.maximum(m2, 0.0))
