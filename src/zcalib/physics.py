"""Pure physics kernels over arrays (one formula each; the array module is numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Z_MASS", "category_et", "mixture_width_factor", "pair_mass", "pair_masses"]

#: The Z boson mass [GeV] (PDG), the reference of the migration-free Et of :func:`category_et`.
Z_MASS = 91.1876

Array = NDArray[np.floating[Any]]


def pair_mass(e1: Array, eta1: Array, phi1: Array, e2: Array, eta2: Array, phi2: Array) -> Array:
    """Invariant mass of two massless leptons from energies and directions.

    ``m² = 2 E1 E2 (1 − cos θ12)`` with
    ``cos θ12 = (cos(φ1 − φ2) + sinh η1 sinh η2) / (cosh η1 cosh η2)``, where sinh and cosh
    come from one ``v = expm1(η)``, ``u = 1 + v = e^η``: ``sinh η = v (v + 2) / 2u`` and
    ``cosh η = (u² + 1) / 2u`` (no cancellation at small η), so that
    ``cos θ12 = (4 u1 u2 cos(φ1 − φ2) + v1 (v1 + 2) v2 (v2 + 2)) / ((u1² + 1)(u2² + 1))``.

    Fill values (ECALELF η = -999, or |η| above ~350) and NaN inputs give a NaN mass, which
    no mass window keeps.

    Example:
        >>> import numpy as np
        >>> float(pair_mass(np.array([45.6]), np.array([0.0]), np.array([0.0]),
        ...                 np.array([45.6]), np.array([0.0]), np.array([np.pi]))[0])
        91.2
    """
    with np.errstate(over="ignore", invalid="ignore"):
        v1 = np.expm1(eta1)
        v2 = np.expm1(eta2)
        u1 = v1 + 1.0
        u2 = v2 + 1.0
        num = 4.0 * u1 * u2 * np.cos(phi1 - phi2) + v1 * (v1 + 2.0) * v2 * (v2 + 2.0)
        cos12 = num / ((u1 * u1 + 1.0) * (u2 * u2 + 1.0))
        m2 = 2.0 * e1 * e2 * (1.0 - cos12)
        mass = np.sqrt(np.maximum(m2, 0.0))
    return np.asarray(np.where((u1 == 0.0) | (u2 == 0.0), np.nan, mass), dtype=np.float64)


def pair_masses(
    energy: NDArray[np.float64], eta: NDArray[np.float64], phi: NDArray[np.float64]
) -> NDArray[np.float64]:  # pragma: no cover
    """:func:`pair_mass` of every pair, from ``(n, 2)`` arrays, as one loop for numba
    (:func:`zcalib._jit.jitted`): the same formula and numbers, no temporary arrays.

    Fill values (η = ±999) give NaN, as in :func:`pair_mass`.
    """
    n = energy.shape[0]
    out = np.empty(n)
    for i in range(n):
        v1 = np.expm1(eta[i, 0])
        v2 = np.expm1(eta[i, 1])
        u1 = v1 + 1.0
        u2 = v2 + 1.0
        num = 4.0 * u1 * u2 * np.cos(phi[i, 0] - phi[i, 1]) + v1 * (v1 + 2.0) * v2 * (v2 + 2.0)
        cos12 = num / ((u1 * u1 + 1.0) * (u2 * u2 + 1.0))
        m2 = 2.0 * energy[i, 0] * energy[i, 1] * (1.0 - cos12)
        bad = np.isnan(m2) or u1 == 0.0 or u2 == 0.0
        out[i] = np.nan if bad else np.sqrt(max(m2, 0.0))
    return out


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


def mixture_width_factor(uniform: Array, shape: tuple[float, float] | None) -> Array:
    """Per-lepton factor of the smearing width for a double Gaussian of shape ``(f, k)``:
    ``k`` (the tail) where ``uniform < f``, else 1 (the core); all 1 for the single Gaussian
    (``shape`` ``None``).

    With ``z ~ N(0, 1)`` and ``uniform ~ U[0, 1)`` independent, ``s · factor · z`` follows
    ``(1 − f) N(0, s²) + f N(0, k² s²)``, the fit's mixture (docs/fit.md, double Gaussian).

    Example:
        >>> import numpy as np
        >>> mixture_width_factor(np.array([0.1, 0.5]), (0.2, 2.0)).tolist()
        [2.0, 1.0]
    """
    u = np.asarray(uniform, dtype=np.float64)
    if shape is None:
        return np.ones_like(u)
    f, k = shape
    return np.where(u < f, float(k), 1.0)
