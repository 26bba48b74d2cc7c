"""``mc_stat_likelihood="noise-corrected"`` (the default): the multinomial NLL minus the
expected template-noise term, ``C = −½ Σ_b q_b V_b(μ_ref, s²)`` (see :meth:`NoiseCorrected.noise_terms`
and ``docs/fit.md``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from zcalib.fit.kernel import cache_slots
from zcalib.fit.likelihood.base import Likelihood, RegionTerms
from zcalib.fit.likelihood.multinomial import multinomial_terms

if TYPE_CHECKING:
    from zcalib.fit.model import TemplateModel, _Segment

__all__ = ["NoiseCorrected"]

FloatArray = NDArray[np.float64]


#: Evaluations of the correction remembered (:meth:`NoiseCorrected._terms`).
_MEMO = 3


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
        """
        m = self.model
        if self._q.shape != m.data.shape:
            zero = np.zeros(m.n_regions)
            self.set_reference(zero, zero)
        s2 = np.asarray(s2, dtype=np.float64)
        seg, spec, _, _ = m._spectra(self._mu_ref, s2, 2 if order >= 2 else min(order, 1))
        weights = self._noise_weights(seg)
        wk = weights.shape[1]
        nk = spec.omega.size
        boxhat = m._var_segment(seg, smooth=True)[1][None, :nk]

        def box_kernel(i: int) -> FloatArray:
            out: FloatArray = m._irfft(spec.term(i) * boxhat, seg.length)[:, :wk].copy()
            return out

        kc = box_kernel(0)
        kcw = kc * weights
        value: FloatArray = -0.5 * (kc * kcw).sum(axis=1)
        if order < 1:
            return value, np.zeros_like(value), np.zeros_like(value)
        kc_s = box_kernel(2)
        g_s: FloatArray = -(kc_s * kcw).sum(axis=1)
        if order < 2:
            return value, g_s, np.zeros_like(value)
        h_ss: FloatArray = -(kc_s * kc_s * weights).sum(axis=1) - (box_kernel(5) * kcw).sum(axis=1)
        return value, g_s, h_ss

    def _noise_weights(self, seg: _Segment) -> FloatArray:
        """``c(d) = Σ_b q_b Var(t)(n_b − d)`` on the offsets of the box-summed kernel ``C'``.

        With it the correction is ``C = −½ Σ_d C'(d)² c(d)``, so that its value and its
        exact ``s²`` derivatives need only ``C'`` and its derivatives (one inverse FFT
        each). ``c`` depends on the segment, the weights ``q`` and the smoothed Σw² only:
        it is computed once per segment and reference (cached).
        """
        m = self.model
        key = (seg.dmin, seg.width)
        hit = self._noise_cache.get(key)
        if hit is not None:
            return hit
        varhat = m._var_segment(seg, smooth=True)[0]
        nb = m.data.shape[1]
        first = seg.width + m.rebin - 2
        wk = seg.width + m.rebin - 1
        spread = np.zeros((m.n_regions, seg.length))
        spread[:, first : first + nb * m.rebin : m.rebin] = self._q
        full = m._irfft(m._rfft(spread, seg.length) * np.conj(varhat), seg.length)
        del spread
        out = full[:, :wk].copy()  # the cache keeps the offsets needed, not the segment
        while self._noise_cache and len(self._noise_cache) >= cache_slots(out.nbytes):
            self._noise_cache.pop(next(iter(self._noise_cache)))
        self._noise_cache[key] = out
        return out
