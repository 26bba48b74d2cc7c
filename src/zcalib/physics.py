"""Pure physics kernels over arrays (one formula each; the array module is numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Z_MASS", "category_et", "pair_mass"]

#: The Z boson mass [GeV] (PDG), the reference of the migration-free Et of :func:`category_et`.
Z_MASS = 91.1876

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


def category_et(et: Array, mass: Array) -> Array:
    """The migration-free Et a lepton is categorised with: ``Et · m_Z / m_ee``.

    ``Et/m_ee`` does not change when both leptons' energies are scaled by a common factor,
    and, to first order, it is uncorrelated with the pair mass under resolution fluctuations
    of equal size for both leptons (``Et_i/m ∝ √((1+δ_i)/(1+δ_j))`` while
    ``m ∝ √((1+δ_i)(1+δ_j))``). Categories cut on it therefore select the same events in
    data and MC whatever the data scale, so no event migrates between Et bins (IJazZ2.0's
    pT/m_ee categories). Multiplying by ``m_Z`` keeps the user's Et edges in GeV: at the Z
    peak it is the lepton Et. See ``docs/fit.md`` (Et categories).

    ``et`` is ``(n, 2)`` (or ``(n,)``) and ``mass`` ``(n,)``; a zero or NaN mass gives NaN,
    which no category contains.

    Example:
        >>> import numpy as np
        >>> category_et(np.array([[40.0, 50.0]]), np.array([91.1876]) * 1.01).round(3).tolist()
        [[39.604, 49.505]]
    """
    m = np.asarray(mass, dtype=np.float64)
    if np.ndim(et) == 2:
        m = m[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.asarray(et, dtype=np.float64) * (Z_MASS / m)
    return np.where(m > 0, out, np.nan)
