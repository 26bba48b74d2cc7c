"""The exact kernel: per-region shift + Gaussian smearing of a binned template, exact in the binning.

Everything here is a pure function over arrays (numpy, ``scipy.fft``, ``scipy.special``);
:mod:`zcalib.fit.model` builds the template prediction and the likelihoods on it.

Model (``DESIGN.md`` conventions). The fine mass axis is uniform in ``u = log m`` with bin
width ``h``. For a pair region with data shift ``μ`` and extra Gaussian width ``s`` (both in
``log m``), a data pair's log mass is the MC pair's log mass plus ``μ + ε``,
``ε ~ N(0, s²)``. The MC template is treated as a *piecewise-constant density* in ``u``, so
the expected content of fine target bin ``j`` is the exact integral

``P_j = Σ_k t_k K(j − k)``,  ``K(d) = Δ²F₂(d h) / h``,

where ``Δ²F(x) = F(x + h) − 2 F(x) + F(x − h)`` and ``F₂`` is the second antiderivative of the
``N(μ, s²)`` density: ``F₂(x) = (x − μ) Φ(z) + s φ(z)``, ``z = (x − μ)/s``. We evaluate it as
``K(d) = Λ(d − μ/h) + Δ²G(d h)/h`` with the triangle ``Λ(t) = max(0, 1 − |t|)`` (the exact
``s = 0`` limit: a shifted histogram, linear in the fractional shift) plus the smooth
Gaussian correction ``G = s ψ(z)``, ``ψ(z) = φ(z) − |z| Φ(−|z|)``, which vanishes as
``s → 0``. The kernel is exact for any real shift and any ``s ≥ 0`` and is truncated where
the Gaussian is below ``φ(n_sigma)``.

Derivatives follow from the heat equation (``∂/∂μ = −∂/∂x``, ``∂/∂s² = ½ ∂²/∂x²``):
``K_μ = −Δ²Φ/h``, ``K_s = ½ Δ²f/h``, ``K_μμ = Δ²f/h``, ``K_μs = −½ Δ²f'/h``,
``K_ss = ¼ Δ²f''/h`` with ``f`` the Gaussian density. At ``s = 0`` the ``s²`` derivatives are
set to their right limit for a generic shift, zero.

The convolution is done with batched real FFTs over all regions at once on a segment of the
template just long enough that no circular wrap-around reaches the fit window. The kernel
spectrum is built in one of two exact ways per region:

* ``s ≥ 3h``: analytically, ``sinc²(ωh/2)·exp(−iωμ − ω²s²/2)`` at the DFT frequencies. This
  is the transform of the continuous kernel; the DFT of the *binned* kernel adds aliases
  ``ω → ω + 2πm/h``, which are suppressed by ``exp(−π²s²/2h²) < 10⁻¹⁹`` here, so the
  formula is exact to rounding. Derivatives are multipliers (``−iω``, ``−ω²/2``, ...).
* ``s < 3h`` (including ``s = 0``): the real-space kernel above, transformed by FFT (the
  closed-form spectrum would miss the aliases and blur even a zero shift).

The gradient uses the adjoint (one extra FFT and a Parseval sum per derivative), the
Hessian two more inverse FFTs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
from scipy.special import erfc

__all__ = [
    "N_SIGMA",
    "KernelSpectra",
    "KernelTerms",
    "cache_slots",
    "coarse_sum",
    "kernel_spectra",
    "kernel_support",
    "kernel_terms",
    "mixture_spectra",
]

FloatArray = NDArray[np.float64]

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
#: Kernels are evaluated on a support quantised to this many fine bins (template spectra are
#: cached per support, so small parameter changes reuse them).
_QUANTUM = 16
#: Regions with ``s >= _FOURIER_MIN_S * h`` get the closed-form kernel spectrum.
_FOURIER_MIN_S = 3.0
#: Spectra of kernels with ``s >= 3h`` are cut at ``ω s = _SPECTRAL_CUT`` (Gaussian < 1e-18).
_SPECTRAL_CUT = math.sqrt(2.0 * math.log(1e18))
#: Kernel truncation / support in Gaussian widths (tail beyond: < 1e-15).
N_SIGMA = 8.0
#: Below this many array elements FFTs run single-threaded (threads cost more than they gain).
_THREAD_MIN_SIZE = 1 << 17


#: Memory allowed to each per-segment cache of the template model (template, Σw² and
#: noise-weight spectra).
_CACHE_BYTES = 256 * 2**20


def cache_slots(entry_bytes: int) -> int:
    """Entries a per-segment cache keeps: up to 6, fewer for large problems, at least 2.

    Example:
        >>> cache_slots(1000), cache_slots(300 * 2**20)
        (6, 2)
    """
    return int(min(6, max(2, _CACHE_BYTES // max(entry_bytes, 1))))


def _workers(size: int) -> int:
    return 1 if size < _THREAD_MIN_SIZE else max(1, os.cpu_count() or 1)


def _phi_upper(z: FloatArray) -> FloatArray:
    """``Φ(−|z|)``, accurate in the far tail."""
    out: FloatArray = 0.5 * erfc(np.abs(z) * _INV_SQRT2)
    return out


def _second_diff(f: FloatArray) -> FloatArray:
    out: FloatArray = f[:, :-2] - 2.0 * f[:, 1:-1] + f[:, 2:]
    return out


def coarse_sum(fine: FloatArray, rebin: int) -> FloatArray:
    """Sum groups of ``rebin`` adjacent fine bins along the last axis.

    Example:
        >>> import numpy as np
        >>> coarse_sum(np.arange(6.0)[None, :], 3).tolist()
        [[3.0, 12.0]]
    """
    n = fine.shape[1] - fine.shape[1] % rebin
    out: FloatArray = fine[:, 0:n:rebin].copy()
    for i in range(1, rebin):
        out += fine[:, i:n:rebin]
    return out


def kernel_support(
    mu: FloatArray, s2: FloatArray, h: float, n_sigma: float, quantum: int = _QUANTUM
) -> tuple[int, int]:
    """Common kernel support ``[dmin, dmin + width)`` (in fine bins) for all regions.

    The support covers ``μ ± n_sigma·s`` plus one bin each side and is quantised outwards
    to multiples of ``quantum`` so that nearby parameter values share a support.

    Example:
        >>> import numpy as np
        >>> kernel_support(np.array([0.0]), np.array([0.0]), 0.01, 10.0, quantum=1)
        (-1, 3)
    """
    s = np.sqrt(np.maximum(s2, 0.0))
    lo = float(np.min(mu - n_sigma * s)) / h
    hi = float(np.max(mu + n_sigma * s)) / h
    dmin = math.floor(lo) - 1
    dmax = math.ceil(hi) + 1
    dmin = (dmin // quantum) * quantum
    dmax = -((-dmax) // quantum) * quantum
    return dmin, dmax - dmin + 1


@dataclass(frozen=True)
class KernelTerms:
    """Kernel values and derivatives on offsets ``dmin … dmin + width − 1`` (shape ``(R, W)``).

    Attributes:
        k: the kernel ``K``.
        k_mu, k_s: ``∂K/∂μ``, ``∂K/∂s²`` (``None`` unless ``order >= 1``).
        k_mumu, k_mus, k_ss: second derivatives (``None`` unless ``order >= 2``).
    """

    k: FloatArray
    k_mu: FloatArray | None = None
    k_s: FloatArray | None = None
    k_mumu: FloatArray | None = None
    k_mus: FloatArray | None = None
    k_ss: FloatArray | None = None


def kernel_terms(
    mu: FloatArray, s2: FloatArray, h: float, dmin: int, width: int, order: int = 0
) -> KernelTerms:
    """Exact bin-integrated shift + Gaussian kernel and its derivatives.

    Args:
        mu: shift per region (log-mass units), shape ``(R,)``.
        s2: Gaussian variance per region (log-mass units²), ``>= 0``, shape ``(R,)``.
        h: fine bin width in ``log m``.
        dmin: first offset (fine bins) of the support.
        width: number of offsets.
        order: 0 for the kernel, 1 to add first derivatives, 2 to add second derivatives.

    Returns:
        The :class:`KernelTerms`.

    Example:
        >>> import numpy as np
        >>> t = kernel_terms(np.array([0.25]), np.array([0.0]), 1.0, -1, 4)
        >>> t.k.round(12).tolist()  # s = 0: linear split of a quarter-bin shift
        [[0.0, 0.75, 0.25, 0.0]]
    """
    mu = np.asarray(mu, dtype=np.float64)
    s2 = np.maximum(np.asarray(s2, dtype=np.float64), 0.0)
    s = np.sqrt(s2)
    d = np.arange(dmin, dmin + width, dtype=np.float64)
    # offsets d-1 .. d+W for the second differences
    dx = np.arange(dmin - 1, dmin + width + 1, dtype=np.float64)[None, :] * h
    smooth = s > 0.0
    s_safe = np.where(smooth, s, 1.0)[:, None]
    xm = dx - mu[:, None]  # x - μ, shape (R, W + 2)
    z = xm / s_safe
    zeroed = ~smooth[:, None]
    # K = triangle (exact s = 0 shift) + Δ²G/h
    tri = np.maximum(0.0, 1.0 - np.abs(d[None, :] - mu[:, None] / h))
    tail = _phi_upper(z)
    pdf_std = _INV_SQRT2PI * np.exp(-0.5 * z * z)
    g = s_safe * (pdf_std - np.abs(z) * tail)
    g = np.where(zeroed, 0.0, g)
    k = tri + _second_diff(g) / h
    if order < 1:
        return KernelTerms(k=k)
    # Φ(z) with the s = 0 limit H(x − μ), H(0) = ½
    cdf = np.where(z > 0.0, 1.0 - tail, tail)
    step = np.where(xm > 0.0, 1.0, np.where(xm < 0.0, 0.0, 0.5))
    cdf = np.where(zeroed, step, cdf)
    k_mu = -_second_diff(cdf) / h
    dens = np.where(zeroed, 0.0, pdf_std / s_safe)
    k_s = 0.5 * _second_diff(dens) / h
    if order < 2:
        return KernelTerms(k=k, k_mu=k_mu, k_s=k_s)
    d1 = -z / s_safe * dens
    d2 = (z * z - 1.0) / (s_safe * s_safe) * dens
    k_mumu = _second_diff(dens) / h
    k_mus = -0.5 * _second_diff(d1) / h
    k_ss = 0.25 * _second_diff(d2) / h
    return KernelTerms(k=k, k_mu=k_mu, k_s=k_s, k_mumu=k_mumu, k_mus=k_mus, k_ss=k_ss)


def _phase(step: FloatArray, n: int) -> Any:
    """``exp(−i k step_r)`` for ``k = 0 … n−1``, shape ``(R, n)``, exact to rounding.

    Built from two small tables (``k = k₁ + B k₂``) instead of ``R·n`` complex exponentials.
    """
    b = max(1, math.isqrt(n))
    nb = -(-n // b)
    k1 = np.arange(b, dtype=np.float64)
    k2 = np.arange(nb, dtype=np.float64) * b
    lo = np.exp(-1j * step[:, None] * k1[None, :])
    hi = np.exp(-1j * step[:, None] * k2[None, :])
    full = (hi[:, :, None] * lo[:, None, :]).reshape(step.shape[0], nb * b)
    return full[:, :n]


def _multipliers(omega: FloatArray) -> list[Any]:
    """Fourier multipliers of ``∂/∂μ, ∂/∂s², ∂²/∂μ², ∂²/∂μ∂s², ∂²/∂(s²)²`` of the kernel."""
    w2 = omega * omega
    return [-1j * omega, -0.5 * w2 + 0j, -w2 + 0j, 0.5j * w2 * omega, 0.25 * w2 * w2 + 0j]


@dataclass(frozen=True)
class KernelSpectra:
    """DFT of the kernel and (lazily) of its derivatives, per region.

    Attributes:
        base: ``K̂``, complex ``(R, K)`` with ``K <= length//2 + 1`` (higher frequencies
            are zero to double precision).
        omega: angular frequencies (per unit ``log m``), ``(K,)``.
        fourier: regions whose derivatives are ``multiplier(ω)·K̂`` (``s >= 3h``).
        real_terms: for the other regions, the explicit derivative spectra
            ``[K̂_μ, K̂_s, K̂_μμ, K̂_μs, K̂_ss]`` (as many as the order asked for).
    """

    base: Any
    omega: FloatArray
    fourier: NDArray[np.bool_]
    real_terms: list[Any]

    def term(self, i: int) -> Any:
        """Full spectrum of term ``i`` (0: kernel, 1: ``∂μ``, 2: ``∂s²``, 3-5: second)."""
        if i == 0:
            return self.base
        out = self.base * _multipliers(self.omega)[i - 1][None, :]
        if not self.fourier.all():
            out[~self.fourier] = self.real_terms[i - 1]
        return out

    def dots(self, terms: Sequence[int], chat: Any, parseval: FloatArray) -> list[FloatArray]:
        """``Σ_n K_i(n) c(n)`` per region for each ``i`` in ``terms`` (``ĉ = chat``)."""
        q = (self.base * np.conj(chat)).view(np.float64)  # (R, 2K): re, im interleaved
        mults = _multipliers(self.omega)
        out = []
        rows = ~self.fourier
        for i in terms:
            m = np.ones_like(self.omega) + 0j if i == 0 else mults[i - 1]
            vec = np.empty(2 * self.omega.size)
            vec[0::2] = parseval * m.real
            vec[1::2] = -parseval * m.imag
            res: FloatArray = q @ vec
            if rows.any():
                kr = self.base[rows] if i == 0 else self.real_terms[i - 1]
                qr = (kr * np.conj(chat[rows])).real
                res[rows] = qr @ parseval
            out.append(res)
        return out


def kernel_spectra(
    mu: FloatArray,
    s2: FloatArray,
    h: float,
    dmin: int,
    width: int,
    length: int,
    order: int = 0,
    n_sigma: float = N_SIGMA,
) -> KernelSpectra:
    """DFT (length ``length``) of the kernel placed at offsets ``dmin …`` and its derivatives.

    Regions with ``s >= 3h`` use the closed form ``sinc²(ωh/2)·exp(−iωμ' − ω²s²/2)``
    (``μ' = μ − dmin·h``); the others the FFT of the exact real-space kernel. When every
    region is in the first group, frequencies where all Gaussian factors are below 1e-18 are
    left out (the arrays then have fewer than ``length//2 + 1`` columns; inverse FFTs pad).

    Example:
        >>> import numpy as np
        >>> k = kernel_spectra(np.array([0.0]), np.array([0.0]), 0.01, 0, 1, 4).base
        >>> bool(np.allclose(k, 1.0))  # zero shift, no smearing: identity
        True
    """
    mu = np.asarray(mu, dtype=np.float64)
    s2 = np.maximum(np.asarray(s2, dtype=np.float64), 0.0)
    r = mu.shape[0]
    nk = length // 2 + 1
    dw = 2.0 * np.pi / (length * h)
    four = s2 >= (_FOURIER_MIN_S * h) ** 2
    real = ~four
    if four.all():
        # beyond ω = _SPECTRAL_CUT / s every Gaussian factor is < 1e-18: drop those columns
        nk = min(nk, math.ceil(_SPECTRAL_CUT / (math.sqrt(float(s2.min())) * dw)) + 2)
    omega: FloatArray = dw * np.arange(nk, dtype=np.float64)
    n_terms = (1, 3, 6)[order]
    if four.all():
        base = np.empty((r, nk), dtype=np.complex128)
    else:
        base = np.zeros((r, nk), dtype=np.complex128)
    real_terms: list[Any] = []
    if four.any():
        half = 0.5 * omega * h
        sinc2 = np.ones(nk)
        sinc2[1:] = (np.sin(half[1:]) / half[1:]) ** 2
        step = (mu[four] - dmin * h) * (omega[1] if nk > 1 else 0.0)
        gauss = sinc2[None, :] * np.exp(-0.5 * s2[four, None] * (omega * omega)[None, :])
        if four.all():
            np.multiply(gauss, _phase(step, nk), out=base)
        else:
            base[four] = gauss * _phase(step, nk)
    if real.any():
        mu_r, s2_r = mu[real], s2[real]
        d0, w = kernel_support(mu_r, s2_r, h, n_sigma)
        d0 = max(d0, dmin)
        w = min(w, dmin + width - d0)
        terms = kernel_terms(mu_r, s2_r, h, d0, w, order=order)
        arrays = [terms.k, terms.k_mu, terms.k_s, terms.k_mumu, terms.k_mus, terms.k_ss]
        buf = np.zeros((int(real.sum()), length))
        for i in range(n_terms):
            arr = arrays[i]
            assert arr is not None
            buf[:, d0 - dmin : d0 - dmin + w] = arr
            spec = sfft.rfft(buf, axis=-1, workers=_workers(buf.size))
            if i == 0:
                base[real] = spec
            else:
                real_terms.append(spec)
    return KernelSpectra(base=base, omega=omega, fourier=four, real_terms=real_terms)


#: Per-term power of the width ratio ``k`` in the derivatives of the second component of
#: a double Gaussian (``K(μ, k² s²)``): ``∂/∂s²`` brings ``k²``, ``∂²/∂(s²)²`` ``k⁴``.
_RATIO_POWER = (0, 0, 2, 0, 2, 4)


def _padded(arr: Any, nk: int) -> Any:
    if arr.shape[1] == nk:
        return arr
    out = np.zeros((arr.shape[0], nk), dtype=np.complex128)
    out[:, : arr.shape[1]] = arr
    return out


def mixture_spectra(
    mu: FloatArray,
    s2: FloatArray,
    h: float,
    dmin: int,
    width: int,
    length: int,
    order: int = 0,
    n_sigma: float = N_SIGMA,
    *,
    fraction: float,
    width_ratio: float,
) -> KernelSpectra:
    """:func:`kernel_spectra` of the double-Gaussian smearing with a fixed shape.

    The kernel is ``(1 − f) K(μ, s²) + f K(μ, k² s²)`` (``f = fraction``, ``k = width_ratio``;
    in Fourier space ``(1 − f) exp(−ω²s²/2) + f exp(−ω²k²s²/2)`` times the shift and bin
    factors), with ``s`` the core width the fit varies. Each component is the exact kernel
    of :func:`kernel_spectra`; the derivatives in ``s²`` of the second component carry
    ``k²`` (first) and ``k⁴`` (second), so value, gradient and Hessian stay exact. Every
    region's derivative spectra are explicit (``fourier`` is all ``False``).

    The support ``dmin, width`` must cover the wider component (``max(1, k)·s``).

    Example:
        >>> import numpy as np
        >>> a = mixture_spectra(np.array([0.0]), np.array([0.0]), 0.01, 0, 1, 4,
        ...                     fraction=0.2, width_ratio=2.0)
        >>> bool(np.allclose(a.base, 1.0))  # s = 0: both components are the identity
        True
    """
    s2 = np.maximum(np.asarray(s2, dtype=np.float64), 0.0)
    a = kernel_spectra(mu, s2, h, dmin, width, length, order, n_sigma)
    b = kernel_spectra(mu, width_ratio * width_ratio * s2, h, dmin, width, length, order, n_sigma)
    nk = max(a.omega.size, b.omega.size)
    omega: FloatArray = (2.0 * np.pi / (length * h)) * np.arange(nk, dtype=np.float64)
    n_terms = (1, 3, 6)[order]
    combined = [
        (1.0 - fraction) * _padded(a.term(i), nk)
        + (fraction * width_ratio ** _RATIO_POWER[i]) * _padded(b.term(i), nk)
        for i in range(n_terms)
    ]
    fourier = np.zeros(np.asarray(mu).shape[0], dtype=np.bool_)
    return KernelSpectra(base=combined[0], omega=omega, fourier=fourier, real_terms=combined[1:])
