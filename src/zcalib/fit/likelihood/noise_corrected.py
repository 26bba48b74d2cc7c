"""``mc_stat_likelihood="noise-corrected"`` (the default): the multinomial NLL minus the
expected template-noise term, ``C = −½ Σ_b q_b V_b(μ_ref, s²)`` (see :meth:`NoiseCorrected.noise_terms`
and ``docs/fit.md``)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray

from zcalib.fit.kernel import KernelSpectra, _multipliers, _workers, cache_slots
from zcalib.fit.likelihood.base import Likelihood, RegionTerms
from zcalib.fit.likelihood.multinomial import multinomial_terms

if TYPE_CHECKING:
    from zcalib.fit.model import TemplateModel, _Segment

__all__ = ["NoiseCorrected"]

FloatArray = NDArray[np.float64]


#: Evaluations of the correction remembered (:meth:`NoiseCorrected._terms`).
_MEMO = 3
#: Box-summed kernel terms ``C'``, ``∂C'/∂s²``, ``∂²C'/∂(s²)²`` (:meth:`KernelSpectra.term` indices).
_TERMS = (0, 2, 5)
#: Regions × offsets per block of :meth:`NoiseCorrected.noise_terms` (temporaries of a few MB).
_BLOCK_ELEMENTS = 1 << 17


class NoiseCorrected(Likelihood):
    """Multinomial NLL plus the template-noise correction of :meth:`noise_terms`; the
    reference (weights ``q_b``, shift ``μ_ref``) is set by :meth:`set_reference` (at
    ``μ = s² = 0`` until then)."""

    name = "noise-corrected"
    #: the correction is a fixed function of θ (smoothed Σw², fixed weights): its gradient
    #: is the same in every bootstrap replica and drops out of the covariance
    replica = "none"
    refresh_at_minimum = True
    data_errors = "sandwich"

    def __init__(self, model: TemplateModel) -> None:
        super().__init__(model)
        self._q: FloatArray = np.zeros((0, 0))
        self._mu_ref: FloatArray = np.zeros(0)
        self._noise_cache: dict[tuple[int, int], FloatArray] = {}
        self._memo: dict[tuple[int, bytes], tuple[FloatArray, FloatArray, FloatArray]] = {}

    def evaluate(self, mu: FloatArray, s2: FloatArray, order: int) -> RegionTerms:
        return multinomial_terms(self.model, mu, s2, order, correction=self._terms(s2, order))

    def _terms(self, s2: FloatArray, order: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """:meth:`noise_terms`, remembered for the last few ``s²``: the correction does not
        depend on the template, so bootstrap replicas sharing the memo (:meth:`copy_reference`)
        evaluate it once at the minimum, not once each."""
        key = (order, np.asarray(s2, dtype=np.float64).tobytes())
        hit = self._memo.pop(key, None)
        if hit is None:
            hit = self.noise_terms(s2, order)
            while len(self._memo) >= _MEMO:
                self._memo.pop(next(iter(self._memo)))
        self._memo[key] = hit  # most recently used last
        return hit

    def set_reference(self, mu: FloatArray, s2: FloatArray) -> None:
        """Fix the reference shift ``μ_ref`` and the weights ``q_b`` of the noise correction.

        ``q_b = N / (ΣP̃ · P̃_b) / (1 + τ̃_b²)``: ``N/(ΣP̃ P̃_b)`` is a smooth stand-in for the
        expected ``n_b/P_b²`` (``P̃`` is the prediction from the template smoothed by one
        more coarse bin, ``s² + (rebin·h)²``, so it carries neither the data's nor the
        template's bin-to-bin noise); ``τ̃_b² = Ṽ_b/P̃_b²`` is the relative template noise of
        the bin. The second-order expansion behind the correction holds for ``τ² << 1``; the
        factor ``1/(1 + τ̃²)`` (the slope of ``½ log(1 + τ²)``, the exact term for log-normal
        noise) phases it out where the template is too sparse for it.
        """
        m = self.model
        mu = np.asarray(mu, dtype=np.float64)
        s2 = m._floored(s2) + (m.rebin * m.h) ** 2
        seg, spec, xs, _ = m._spectra(mu, s2, 0)
        p = np.maximum(m._window_coarse(seg, xs * spec.base), 0.0) + m.floor[:, None]
        v = m._variance_parts(seg, spec, smooth=True)[0]
        tot = p.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(p > 0, m._ntot[:, None] / (tot * p) / (1.0 + v / (p * p)), 0.0)
        self._q = np.where(np.isfinite(q), q, 0.0)
        self._mu_ref = mu.copy()
        self._noise_cache = {}  # new dicts: replicas may share the old ones
        self._memo = {}

    def copy_reference(self, other: Likelihood) -> None:
        """Use the noise-correction reference of ``other`` (same regions and bins)."""
        if not isinstance(other, NoiseCorrected):
            return
        self._q = other._q.copy()
        self._mu_ref = other._mu_ref.copy()
        if other.model.variance is self.model.variance:
            # same weights and Σw² (a template replica): the weights c(d) are the same too,
            # so the cache is shared (set_reference gives either a new one)
            self._noise_cache = other._noise_cache
            self._memo = other._memo
        else:
            self._noise_cache = {}
            self._memo = {}

    def noise_terms(self, s2: FloatArray, order: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Template-noise correction ``C_r(s²)`` of the multinomial NLL, with its first and
        (``order >= 2``) second derivative in the kernel variance ``s²``, per region.

        A template with noise ``ε_b`` (variance ``V_b``) in its coarse prediction raises the
        expected NLL by ``E[−n_b log(P_b + ε_b)] + n_b log P_b ≈ n_b V_b / (2P_b²)``. ``V_b``
        falls as the kernel widens (smearing averages the noise), so the plain NLL rewards
        smearing for the noise alone and fitted smearings come out high when the MC is
        sparse. The correction ``C = −½ Σ_b q_b V_b(μ_ref, s²)`` removes that term to second
        order, with ``V_b = Σ_k C_bk² Var(t_k)`` from :meth:`TemplateModel.smoothed_variance` and the fixed
        weights and reference shift of :meth:`set_reference`.

        It depends on ``s²`` only: its purpose is the smearing, and a shift-dependent
        correction with fixed weights runs away (moving the template peak's variance under
        tail bins of large ``q`` lowers it without bound). As a function of ``s²`` it is
        bounded, ``−½ Σ q V(0) <= C <= 0``, so it cannot drive a fit to a range bound. Value
        and derivatives are exact: ``C = −½ Σ_d C'(d)² c(d)`` with the box-summed kernel
        ``C'`` and the fixed weights ``c`` of :meth:`_noise_weights`.

        ``C'`` is nonzero only on the kernel's support plus one coarse bin, so it is computed
        by regions in blocks of similar width (sorted by ``s²``), each block on its own tight
        support with an inverse FFT just long enough to hold it (:func:`_box_kernels`),
        rather than on the whole template segment; blocks keep the temporaries in cache.
        """
        m = self.model
        if self._q.shape != m.data.shape:
            zero = np.zeros(m.n_regions)
            self.set_reference(zero, zero)
        s2 = np.asarray(s2, dtype=np.float64)
        seg = m._kernel_segment(self._mu_ref, s2)
        weights = self._noise_weights(seg)
        n_terms = min(max(order, 0), 2) + 1
        out = np.zeros((3, m.n_regions))
        # regions in blocks of similar width, each with its own tight support and a
        # transform just long enough for it (cache-sized temporaries)
        rows = np.argsort(s2, kind="stable")
        size = max(1, _BLOCK_ELEMENTS // (seg.width + m.rebin))
        for lo in range(0, rows.size, size):
            block = rows[lo : lo + size]
            mu_b, s2_b = self._mu_ref[block], s2[block]
            dmin, width = m._kernel_support(mu_b, s2_b)
            dmin = max(dmin, seg.dmin)
            width = min(dmin + width, seg.dmin + seg.width) - dmin
            wk = width + m.rebin - 1  # support of C': [0, wk) from dmin
            length = int(sfft.next_fast_len(wk, real=True))
            spec = m._kernel_spectra(mu_b, s2_b, dmin, width, length, n_terms - 1)
            kcs = _box_kernels(spec, _TERMS[:n_terms], m.rebin, length, wk)
            first = dmin - seg.dmin
            out[:, block] = _correction(kcs, weights[block, first : first + wk])
        return out[0], out[1], out[2]

    def _noise_weights(self, seg: _Segment) -> FloatArray:
        """``c(d) = Σ_b q_b Var(t)(n_b − d)`` on the offsets of the box-summed kernel ``C'``.

        With it the correction is ``C = −½ Σ_d C'(d)² c(d)``, so that its value and its
        exact ``s²`` derivatives need only ``C'`` and its derivatives (one batched short
        inverse FFT per block of regions, :func:`_box_kernels`). Position ``d`` of the segment is kernel offset ``o = seg.dmin + d`` and
        ``c`` is a function of ``o`` alone (``Σ_b q_b Var(t)`` at template bin
        ``j_lo + (b + 1)·rebin − 1 − o``), of the weights ``q`` and of the smoothed Σw²: it
        is computed once per reference for a segment's offsets (cached), and a segment whose
        offsets lie inside a cached one's takes them from it.
        """
        m = self.model
        wk = seg.width + m.rebin - 1
        for (dmin, _), cached in self._noise_cache.items():
            first = seg.dmin - dmin
            if first >= 0 and first + wk <= cached.shape[1]:
                hit: FloatArray = cached[:, first : first + wk]
                return hit
        varhat = m._var_segment(seg, smooth=True)[0]
        nb = m.data.shape[1]
        first = seg.width + m.rebin - 2
        spread = np.zeros((m.n_regions, seg.length))
        spread[:, first : first + nb * m.rebin : m.rebin] = self._q
        full = m._irfft(m._rfft(spread, seg.length) * np.conj(varhat), seg.length)
        del spread
        out = full[:, :wk].copy()  # the cache keeps the offsets needed, not the segment
        while self._noise_cache and len(self._noise_cache) >= cache_slots(out.nbytes):
            self._noise_cache.pop(next(iter(self._noise_cache)))
        self._noise_cache[(seg.dmin, seg.width)] = out
        return out


@functools.lru_cache(maxsize=16)
def _box_spectrum(rebin: int, length: int) -> Any:
    """Spectrum (length ``length``) of the coarse-bin box, ``rebin`` ones at positions 0…."""
    box = np.zeros(length)
    box[:rebin] = 1.0
    out = sfft.rfft(box)
    out.flags.writeable = False
    return out


def _correction(kcs: list[FloatArray], weights: FloatArray) -> FloatArray:
    """``(C, ∂C/∂s², ∂²C/∂(s²)²)`` per region (rows of zeros beyond ``len(kcs) − 1``) from
    the box-summed kernel terms and the weights ``c`` on the same offsets:
    ``C = −½ Σ C'² c``, ``∂C = −Σ C' ∂C' c``, ``∂²C = −Σ ((∂C')² + C' ∂²C') c``."""
    out = np.zeros((3, weights.shape[0]))
    kcw = kcs[0] * weights
    out[0] = -0.5 * np.einsum("ij,ij->i", kcs[0], kcw)
    if len(kcs) > 1:
        out[1] = -np.einsum("ij,ij->i", kcs[1], kcw)
    if len(kcs) > 2:
        out[2] = -np.einsum("ij,ij,ij->i", kcs[1], kcs[1], weights) - np.einsum(
            "ij,ij->i", kcs[2], kcw
        )
    return out


def _box_kernels(
    spec: KernelSpectra, terms: tuple[int, ...], rebin: int, length: int, wk: int
) -> list[FloatArray]:
    """Kernel terms ``terms`` (:meth:`KernelSpectra.term` indices) convolved with the
    coarse-bin box, on positions ``0 … wk − 1``, by one batched inverse FFT of length
    ``length >= wk``.

    The kernel lies in positions ``[0, width)`` of its spectra and the box in ``[0, rebin)``,
    so their convolution lies in ``[0, wk)``, ``wk = width + rebin − 1``: no circular
    wrap-around reaches it for any ``length >= wk``. (The closed-form spectra are those of
    the Gaussian periodised with the transform length: its tails beyond the support, below
    ``φ(N_SIGMA)`` ≈ 1e-15 of the peak, fold in at any length, the segment's included.)
    The spectra are written into a zeroed full-width buffer (the columns left out by the
    spectral cut stay zero), so the inverse FFT needs no padding copy.
    """
    nk = spec.omega.size
    boxhat = _box_spectrum(rebin, length)[None, :nk]
    boxed = spec.base * boxhat
    rows = ~spec.fourier  # regions with explicit derivative spectra
    buf = np.zeros((len(terms), boxed.shape[0], length // 2 + 1), dtype=np.complex128)
    mults = _multipliers(spec.omega)
    for j, i in enumerate(terms):
        if i == 0:
            buf[j, :, :nk] = boxed
            continue
        if not rows.all():
            mult = mults[i - 1]  # real for the s² derivatives
            np.multiply(boxed, mult.real if not mult.imag.any() else mult, out=buf[j, :, :nk])
        if rows.any():
            buf[j, rows, :nk] = spec.real_terms[i - 1] * boxhat
    out = sfft.irfft(buf, n=length, axis=-1, workers=_workers(buf.size))
    return [out[j, :, :wk] for j in range(len(terms))]
