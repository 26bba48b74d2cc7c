"""The template prediction and the likelihoods of the fit, per pair region.

:class:`TemplateModel` predicts each region's coarse data bins from its fine MC template
with the exact kernel of :mod:`zcalib.fit.kernel` (batched real FFTs over all regions on a
segment just long enough that no circular wrap-around reaches the fit window), and
evaluates the binned multinomial NLL (``mc_stat_likelihood="none"``), its template-noise
correction (``"noise-corrected"``) or the Barlow-Beeston-lite NLL (``"bb-lite"``) with
exact gradients. The gradient uses the adjoint (one extra FFT and a Parseval sum per
derivative), the Hessian two more inverse FFTs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft as sfft
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import gaussian_filter1d

from zcalib.fit.kernel import (
    _QUANTUM,
    N_SIGMA,
    KernelSpectra,
    KernelTerms,
    _workers,
    coarse_sum,
    kernel_spectra,
    kernel_support,
    kernel_terms,
)

__all__ = [
    "KernelSpectra",
    "KernelTerms",
    "RegionTerms",
    "TemplateModel",
    "coarse_sum",
    "kernel_spectra",
    "kernel_support",
    "kernel_terms",
]

FloatArray = NDArray[np.float64]

#: Scale of the positivity of the coarse prediction, relative to the mean template content
#: per data bin, and in effective MC events (see :meth:`TemplateModel._positive`).
_POSITIVE_SCALE = 1e-3
_POSITIVE_EVENTS = 0.5


#: Memory allowed to each per-segment cache (template, Σw² and noise-weight spectra).
_CACHE_BYTES = 384 * 2**20


def _cache_slots(entry_bytes: int) -> int:
    """Entries a per-segment cache keeps: up to 6, fewer for large problems, at least 2."""
    return int(min(6, max(2, _CACHE_BYTES // max(entry_bytes, 1))))


@dataclass(frozen=True)
class RegionTerms:
    """Per-region NLL and its derivatives with respect to the region's ``(μ, s²)``.

    All arrays have shape ``(R,)``; derivatives are ``None`` when not requested.
    """

    nll: FloatArray
    g_mu: FloatArray | None = None
    g_s: FloatArray | None = None
    h_mumu: FloatArray | None = None
    h_mus: FloatArray | None = None
    h_ss: FloatArray | None = None


@dataclass(frozen=True)
class _Segment:
    dmin: int
    width: int
    length: int
    spectrum: Any  # complex (R, L//2 + 1)
    offset: int  # template fine bin of segment position 0
    parseval: FloatArray  # weights of the one-sided spectrum in Σ a·b = Σ w Re(Â conj B̂) / L
    #: ``(2K, nb)``: one-sided spectrum (re, im interleaved) -> coarse window bins, and
    #: ``(nb, 2K)``: coarse window bins -> spectrum of their spread over the fine bins
    coarse_out: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    coarse_in: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))


@dataclass
class TemplateModel:
    """Binned multinomial NLL of data against shifted + smeared MC templates, per region.

    Attributes:
        template: MC Σw per region and fine bin, shape ``(R, N)`` (non-negative).
        variance: MC Σw² per region and fine bin, shape ``(R, N)``.
        data: data counts per region and *coarse* bin inside the window, ``(R, nb)``.
        h: fine bin width in ``log m``.
        j_lo: index of the first fine bin of the window.
        rebin: fine bins per coarse (data) bin.
        n_sigma: Gaussian truncation of the kernel support.
        floor: constant added to each coarse prediction (keeps empty template bins finite
            without changing derivatives), shape ``(R,)``.
        bb_lite: use the Barlow-Beeston-lite likelihood (MC-template statistics profiled
            per data bin, see :meth:`evaluate`) instead of the plain multinomial NLL.
        noise_correction: subtract the expected template-noise term from the multinomial
            NLL (see :meth:`noise_terms`); the reference weights are set by
            :meth:`set_noise_reference` (at ``μ = s² = 0`` until then).
        s2_floor: soft floor ``s₀²`` of the kernel variance (see :meth:`effective_s2`):
            the template is read as a density smoothed by ``s₀``, so that the NLL stays
            smooth in the shift when the fitted smearing goes to 0 (a bare histogram,
            ``s = 0``, is piecewise linear in the shift with kinks at every fine bin, which
            locks fitted scales to the fine-bin grid). ``0`` switches it off.
    """

    template: FloatArray
    variance: FloatArray
    data: FloatArray
    h: float
    j_lo: int
    rebin: int
    n_sigma: float = N_SIGMA
    floor: FloatArray = field(default_factory=lambda: np.zeros(0))
    bb_lite: bool = False
    noise_correction: bool = False
    s2_floor: float = 0.0
    _cache: dict[tuple[int, int], _Segment] = field(default_factory=dict, repr=False)
    _var_cache: dict[tuple[int, int, int], tuple[Any, Any]] = field(
        default_factory=dict, repr=False
    )
    _noise_cache: dict[tuple[int, int], FloatArray] = field(default_factory=dict, repr=False)
    _sat: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    _ntot: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    _q: FloatArray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    _mu_ref: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    _eps: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    _var_smooth: FloatArray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)

    def __post_init__(self) -> None:
        n = self.data
        nb = max(n.shape[1], 1)
        if self.floor.shape != (n.shape[0],):
            self.floor = np.zeros(n.shape[0])
        sl = slice(self.j_lo, self.j_lo + nb * self.rebin)
        sw, sw2 = self.template[:, sl].sum(axis=1), self.variance[:, sl].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_event = np.where(sw > 0, sw2 / sw, 0.0)  # Σw per effective MC event
        self._eps = np.maximum(
            np.maximum(_POSITIVE_EVENTS * per_event, _POSITIVE_SCALE * np.abs(sw) / nb), 1e-300
        )
        self._ntot = n.sum(axis=1)
        pos = n > 0
        nlogn = np.where(pos, n * np.log(np.where(pos, n, 1.0)), 0.0).sum(axis=1)
        tot = np.where(self._ntot > 0, self._ntot, 1.0)
        self._sat = nlogn - self._ntot * np.log(tot)

    @property
    def n_regions(self) -> int:
        """Number of regions ``R``."""
        return int(self.data.shape[0])

    @property
    def n_out(self) -> int:
        """Number of fine bins inside the fit window."""
        return int(self.data.shape[1] * self.rebin)

    # ------------------------------------------------------------------ plumbing
    def _segment(self, dmin: int, width: int) -> _Segment:
        """A template segment whose kernel support covers offsets ``dmin … dmin + width − 1``.

        Any segment with a wider support serves (the kernel is placed inside it, and no
        circular wrap-around reaches the window either way), so a cached one is reused when
        it is not much wider than needed. New segments get a margin on both sides and use
        the slack of the fast FFT length, so that nearby parameter values (start scans,
        minimiser steps, bootstrap replicas) share the template's spectrum.
        """
        dmax = dmin + width - 1
        best: _Segment | None = None
        for seg in self._cache.values():
            fits = seg.dmin <= dmin and seg.dmin + seg.width - 1 >= dmax
            if fits and seg.width <= 1.5 * width + 4 * _QUANTUM:
                if best is None or seg.length < best.length:
                    best = seg
        if best is not None:
            return best
        pad = max(_QUANTUM, width // 8)
        lo = ((dmin - pad) // _QUANTUM) * _QUANTUM
        hi = -((-(dmax + pad)) // _QUANTUM) * _QUANTUM
        width = hi - lo + 1
        n_in = width - 1 + self.n_out
        length = int(sfft.next_fast_len(n_in, real=True))
        extra = length - n_in
        dmin, width = lo - extra // 2, width + extra
        i0 = self.j_lo - dmin - (width - 1)
        r, n_fine = self.template.shape
        x = np.zeros((r, length))
        a, b = max(i0, 0), min(i0 + length, n_fine)
        if b > a:
            x[:, a - i0 : b - i0] = self.template[:, a:b]
        spec = sfft.rfft(x, axis=-1, workers=_workers(x.size))
        nk = length // 2 + 1
        wts = np.full(nk, 2.0)
        wts[0] = 1.0
        if length % 2 == 0:
            wts[-1] = 1.0
        out_m, in_m = self._coarse_matrices(width, length, wts / length)
        seg = _Segment(
            dmin=dmin,
            width=width,
            length=length,
            spectrum=spec,
            offset=i0,
            parseval=wts / length,
            coarse_out=out_m,
            coarse_in=in_m,
        )
        while self._cache and len(self._cache) >= _cache_slots(spec.nbytes):
            self._cache.pop(next(iter(self._cache)))
        self._cache[(dmin, width)] = seg
        return seg

    def _spectra(
        self, mu: FloatArray, s2: FloatArray, order: int
    ) -> tuple[_Segment, KernelSpectra, Any, FloatArray]:
        """Segment, kernel spectra, template spectrum and Parseval weights (cut alike)."""
        dmin, width = kernel_support(mu, s2, self.h, self.n_sigma)
        seg = self._segment(dmin, width)
        spec = kernel_spectra(
            mu, s2, self.h, seg.dmin, seg.width, seg.length, order, n_sigma=self.n_sigma
        )
        nk = spec.omega.size
        return seg, spec, seg.spectrum[:, :nk], seg.parseval[:nk]

    def _rfft(self, arr: FloatArray, length: int) -> Any:
        return sfft.rfft(arr, n=length, axis=-1, workers=_workers(arr.shape[0] * length))

    def _irfft(self, spec: Any, length: int) -> FloatArray:
        out: FloatArray = sfft.irfft(
            spec, n=length, axis=-1, workers=_workers(spec.shape[0] * length)
        )
        return out

    def _coarse_matrices(
        self, width: int, length: int, parseval: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """The two real matrices of :meth:`_window_coarse` and :meth:`_adjoint`.

        Coarse bin ``b`` of the window covers segment positions ``n_b … n_b + rebin − 1``,
        ``n_b = width − 1 + b·rebin``; ``G_kb = Σ_i exp(2πi k (n_b + i)/L)``. The phases are
        reduced modulo ``L`` in integers, so the matrices are exact to rounding.
        """
        nk = length // 2 + 1
        nb = self.data.shape[1]
        pos = (width - 1 + np.arange(nb)[:, None] * self.rebin + np.arange(self.rebin)[None, :])
        idx = (np.arange(nk, dtype=np.int64)[:, None, None] * pos[None, :, :]) % length
        ang = (2.0 * np.pi / length) * idx.astype(np.float64)
        g_re, g_im = np.cos(ang).sum(axis=2), np.sin(ang).sum(axis=2)  # (K, nb)
        out_m = np.empty((2 * nk, nb))
        out_m[0::2] = parseval[:, None] * g_re
        out_m[1::2] = -parseval[:, None] * g_im
        in_m = np.empty((nb, 2 * nk))
        in_m[:, 0::2] = g_re.T
        in_m[:, 1::2] = -g_im.T
        return out_m, in_m

    def _window_coarse(self, seg: _Segment, spec: Any) -> FloatArray:
        """Coarse bins inside the window of ``irfft(spec)`` (``spec`` may hold only the first
        ``K`` frequencies; the rest are zero).

        Only the ``nb`` coarse sums of the window are needed, so the inverse DFT is one real
        matrix product with :attr:`_Segment.coarse_out` instead of a full-length inverse FFT
        followed by a sum: ``P_b = Σ_k w_k Re(Ŝ_k G_kb)``.
        """
        z = np.ascontiguousarray(spec, dtype=np.complex128)
        nk = z.shape[1]
        out: FloatArray = z.view(np.float64) @ seg.coarse_out[: 2 * nk]
        return out

    def _adjoint(self, seg: _Segment, coarse: FloatArray, nk: int | None = None) -> Any:
        """Spectrum (first ``nk`` frequencies) of a coarse-bin vector spread over its fine
        bins at the window position: ``Σ_b c_b conj(G_kb)``, one real matrix product."""
        k2 = seg.coarse_in.shape[1] if nk is None else 2 * nk
        mat = seg.coarse_in[:, :k2]
        out = np.ascontiguousarray(coarse, dtype=np.float64) @ mat
        return out.view(np.complex128)

    def _positive(self, raw: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Positivity on the coarse prediction: ``(p̃, dp̃/dP, d²p̃/dP²)`` of ``P + floor``.

        Negative MC weights make fine template bins (and, where the MC is sparse, a coarse
        prediction) negative. Clipping fine bins at 0 biases the template upward exactly
        where it is sparse; instead the fine template is used as it is and only the coarse
        prediction is kept positive: ``p̃ = P`` for ``P >= ε``, ``ε·exp(P/ε − 1)`` below (value
        and slope continuous). ``ε`` is half an effective MC event (``½ Σw²/Σw`` of the
        region), at least ``10⁻³ ×`` the mean template content per data bin: a prediction
        below half an MC event is below what the template resolves, and letting it go to 0
        makes a data pair in an empty template bin dominate the fit (and its MC-statistics
        error) of a sparse region.
        """
        x = raw + self.floor[:, None]
        e = self._eps[:, None]
        low = x < e
        if not low.any():
            return x, np.ones_like(x), np.zeros_like(x)
        ex = np.exp(np.minimum(x / e - 1.0, 0.0))
        p = np.where(low, np.maximum(e * ex, 1e-300), x)
        d1 = np.where(low, ex, 1.0)
        d2 = np.where(low, ex / e, 0.0)
        return p, d1, d2

    # ------------------------------------------------------------------ soft floor
    def effective_s2(self, s2: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Kernel variance used for ``s²``, with its first and second derivatives.

        ``s²_eff = s² + s₀² exp(−s²/s₀²)``: equal to ``s₀²`` at ``s² = 0`` and to ``s²``
        (within ``s₀² e⁻ˣ``) once ``s² >> s₀²``, monotonic, so fitted smearings above a
        few ``s₀`` are unchanged.
        """
        x = np.asarray(s2, dtype=np.float64)
        f = self.s2_floor
        if f <= 0.0:
            return x, np.ones_like(x), np.zeros_like(x)
        e = np.exp(-np.maximum(x, 0.0) / f)
        return x + f * e, 1.0 - e, e / f

    def _floored(self, s2: ArrayLike) -> FloatArray:
        return self.effective_s2(s2)[0]

    # ------------------------------------------------------------------ public kernels
    def predict_fine(self, mu: FloatArray, s2: FloatArray) -> FloatArray:
        """Expected (unnormalised) content of each fine bin inside the window, ``(R, n_out)``.

        Example:
            >>> import numpy as np
            >>> t = np.zeros((1, 8)); t[0, 3] = 10.0
            >>> m = TemplateModel(t, t.copy(), np.ones((1, 4)), h=0.01, j_lo=2, rebin=1)
            >>> (m.predict_fine(np.array([0.01]), np.array([0.0])).round(9) + 0.0).tolist()
            [[0.0, 0.0, 10.0, 0.0]]
        """
        seg, spec, xs, _ = self._spectra(mu, self._floored(s2), 0)
        full = self._irfft(xs * spec.base, seg.length)
        out: FloatArray = full[:, seg.width - 1 : seg.width - 1 + self.n_out]
        return out

    def evaluate(
        self,
        mu: FloatArray,
        s2: FloatArray,
        order: int = 1,
        bb_lite: bool | None = None,
        *,
        data_only: bool = False,
    ) -> RegionTerms:
        """Per-region NLL (minus its saturated value) and derivatives in ``(μ, s²)``.

        ``NLL_r = −Σ_b n_b log(p_b / (n_b/N))`` with ``p_b = P_b / Σ P`` inside the window;
        with ``bb_lite`` (default: the model's setting) the Barlow-Beeston-lite NLL of
        :meth:`evaluate_bb_lite` instead.

        Args:
            mu: shift per region, ``(R,)``.
            s2: Gaussian variance per region, ``(R,)``.
            order: 0 value only, 1 with gradient, 2 with gradient and Hessian.
            bb_lite: override the model's likelihood choice.
            data_only: the plain multinomial NLL of the data (no BB-lite, no noise
                correction), with the data's Fisher information (the outer-product part
                ``Σ n ∇log p ∇log pᵀ``, always positive semi-definite) as its "Hessian".
        """
        s2e, d1, d2 = self.effective_s2(s2)
        if not data_only and (self.bb_lite if bb_lite is None else bb_lite):
            t = self.evaluate_bb_lite(mu, s2e, order)
        else:
            t = self._evaluate_plain(
                mu, s2e, order, self.noise_correction and not data_only, fisher=data_only
            )
        if data_only:
            d2 = np.zeros_like(d2)
        if self.s2_floor <= 0.0 or t.g_s is None:
            return t
        g_s = t.g_s * d1
        if t.h_ss is None or t.h_mus is None:
            return RegionTerms(nll=t.nll, g_mu=t.g_mu, g_s=g_s)
        return RegionTerms(
            nll=t.nll,
            g_mu=t.g_mu,
            g_s=g_s,
            h_mumu=t.h_mumu,
            h_mus=t.h_mus * d1,
            h_ss=t.h_ss * d1 * d1 + t.g_s * d2,
        )

    def _evaluate_plain(
        self, mu: FloatArray, s2: FloatArray, order: int, correction: bool, fisher: bool = False
    ) -> RegionTerms:
        """Multinomial NLL (plus the noise correction with ``correction``) at the kernel
        variance ``s2``; ``fisher``: the Hessian is the outer-product (Fisher) part only."""
        seg, spec, xs, parseval = self._spectra(mu, s2, order)
        p, d1, d2 = self._positive(self._window_coarse(seg, xs * spec.base))
        s_tot = p.sum(axis=1)
        n = self.data
        ntot = self._ntot
        with np.errstate(divide="ignore", invalid="ignore"):
            logp = np.log(p)
        nll = self._sat - np.where(n > 0, n * logp, 0.0).sum(axis=1) + ntot * np.log(s_tot)
        corr: tuple[FloatArray, FloatArray, FloatArray] | None = None
        if correction:
            corr = self.noise_terms(s2, order)
            nll = nll + corr[0]
        if order < 1:
            return RegionTerms(nll=nll)
        gp = -n / p + (ntot / s_tot)[:, None]  # ∂NLL/∂p̃
        chat = self._adjoint(seg, gp * d1, xs.shape[1]) * np.conj(xs)
        if order < 2:
            g_mu, g_s = spec.dots((1, 2), chat, parseval)
            if corr is not None:
                g_s = g_s + corr[1]
            return RegionTerms(nll=nll, g_mu=g_mu, g_s=g_s)
        g_mu, g_s, k_mumu, k_mus, k_ss = spec.dots((1, 2, 3, 4, 5), chat, parseval)
        c_ss = np.zeros_like(g_mu)
        if corr is not None:
            g_s = g_s + corr[1]
            c_ss = corr[2]
        dmu = self._window_coarse(seg, xs * spec.term(1))
        ds = self._window_coarse(seg, xs * spec.term(2))
        w = n / (p * p) * d1 * d1
        if not fisher:
            w = w + gp * d2
        c2 = ntot / (s_tot * s_tot)
        smu, ss = (dmu * d1).sum(axis=1), (ds * d1).sum(axis=1)

        def quad(a: FloatArray, b: FloatArray, sa: FloatArray, sb: FloatArray) -> FloatArray:
            out: FloatArray = (a * b * w).sum(axis=1) - c2 * sa * sb
            return out

        if fisher:
            k_mumu = k_mus = k_ss = np.zeros_like(g_mu)
        h_mumu = quad(dmu, dmu, smu, smu) + k_mumu
        h_mus = quad(dmu, ds, smu, ss) + k_mus
        h_ss = quad(ds, ds, ss, ss) + k_ss + c_ss
        return RegionTerms(nll=nll, g_mu=g_mu, g_s=g_s, h_mumu=h_mumu, h_mus=h_mus, h_ss=h_ss)

    def mc_stat_matrix(self, mu: FloatArray, s2: FloatArray) -> FloatArray:
        """Template-statistics covariance of the region gradients, shape ``(R, 2, 2)``.

        ``M_r = Σ_k Var(t_k) (∂g_r/∂t_k)(∂g_r/∂t_k)ᵀ`` with ``g_r = (∂NLL_r/∂μ, ∂NLL_r/∂s²)``
        and ``Var(t_k)`` the template's Σw²; the fit-parameter covariance from MC statistics is
        then the sandwich ``H⁻¹ (Jᵀ M J) H⁻¹``.
        """
        s2, d1, _ = self.effective_s2(s2)
        seg, spec, xs, _ = self._spectra(mu, s2, 1)
        nk = xs.shape[1]
        p = self._positive(self._window_coarse(seg, xs * spec.base))[0]
        s_tot = p.sum(axis=1)
        n = self.data
        ntot = self._ntot
        ghat = self._adjoint(seg, -n / p + (ntot / s_tot)[:, None], nk)
        w = n / (p * p)
        c2 = ntot / (s_tot * s_tot)
        n_in = seg.width - 1 + self.n_out
        jac = []
        for kh_a in (spec.term(1), spec.term(2)):
            da = self._window_coarse(seg, xs * kh_a)
            uhat = self._adjoint(seg, da * w - (c2 * da.sum(axis=1))[:, None], nk)
            dphi = self._irfft(ghat * np.conj(kh_a) + uhat * np.conj(spec.base), seg.length)
            jac.append(dphi[:, :n_in])
        var = np.zeros((self.n_regions, n_in))
        i0, n_fine = seg.offset, self.variance.shape[1]
        a, b = max(i0, 0), min(i0 + n_in, n_fine)
        if b > a:
            var[:, a - i0 : b - i0] = self.variance[:, a:b]
        jac[1] = jac[1] * d1[:, None]
        out = np.empty((self.n_regions, 2, 2))
        out[:, 0, 0] = (var * jac[0] * jac[0]).sum(axis=1)
        out[:, 0, 1] = out[:, 1, 0] = (var * jac[0] * jac[1]).sum(axis=1)
        out[:, 1, 1] = (var * jac[1] * jac[1]).sum(axis=1)
        return out

    # ------------------------------------------------------------------ Barlow-Beeston lite
    def smoothed_variance(self) -> FloatArray:
        """Template Σw² smoothed with a Gaussian of one coarse bin (``rebin`` fine bins).

        An estimate of ``Var(t_k)`` that is not correlated with the template's own noise in
        bin ``k`` (the raw Σw² of an unweighted bin *is* its fluctuating count), used by the
        noise correction.
        """
        if self._var_smooth.shape != self.variance.shape:
            self._var_smooth = np.maximum(
                gaussian_filter1d(self.variance, float(self.rebin), axis=1, mode="constant"),
                0.0,
            )
        return self._var_smooth

    def _var_segment(self, seg: _Segment, smooth: bool = False) -> tuple[Any, Any]:
        """Spectra of the template Σw² (raw or :meth:`smoothed_variance`) on the segment and
        of the coarse-bin box (cached)."""
        key = (seg.dmin, seg.width, int(smooth))
        hit = self._var_cache.get(key)
        if hit is not None:
            return hit
        n_in = seg.width - 1 + self.n_out
        variance = self.smoothed_variance() if smooth else self.variance
        r, n_fine = variance.shape
        x = np.zeros((r, seg.length))
        i0 = seg.offset
        a, b = max(i0, 0), min(i0 + n_in, n_fine)
        if b > a:
            x[:, a - i0 : b - i0] = variance[:, a:b]
        box = np.zeros(seg.length)
        box[: self.rebin] = 1.0
        out = (self._rfft(x, seg.length), sfft.rfft(box))
        while self._var_cache and len(self._var_cache) >= _cache_slots(out[0].nbytes):
            self._var_cache.pop(next(iter(self._var_cache)))
        self._var_cache[key] = out
        return out

    def prediction_variance(self, mu: FloatArray, s2: FloatArray) -> FloatArray:
        """MC-statistics variance of each coarse prediction, ``V_b = Σ_k C_bk² Var(t_k)``.

        ``C_bk`` is the kernel summed over the fine bins of coarse bin ``b`` (so
        ``P_b = Σ_k C_bk t_k``) and ``Var(t_k)`` the template Σw²; shape ``(R, nb)``.
        """
        seg, spec, _, _ = self._spectra(mu, self._floored(s2), 0)
        v: FloatArray = self._bb_parts(seg, spec)[0]
        return v

    def _bb_parts(
        self, seg: _Segment, spec: KernelSpectra, smooth: bool = False
    ) -> tuple[Any, ...]:
        """``V_b`` and what the ``V`` part of the gradient needs.

        With ``C'`` the kernel convolved with the coarse-bin box (support
        ``[0, width + rebin − 1)`` of the segment), ``V = (Σw² ⊛ C'²)`` sampled at the last
        fine position of every coarse bin.
        """
        varhat, boxhat = self._var_segment(seg, smooth)
        nk = spec.omega.size
        wk = seg.width + self.rebin - 1
        kc = self._irfft(spec.base * boxhat[None, :nk], seg.length)[:, :wk]
        sq = np.zeros((self.n_regions, seg.length))
        sq[:, :wk] = kc * kc
        vfull = self._irfft(self._rfft(sq, seg.length) * varhat, seg.length)
        first = seg.width + self.rebin - 2
        nb = self.data.shape[1]
        v = np.maximum(vfull[:, first : first + nb * self.rebin : self.rebin], 0.0)
        return v, kc, boxhat, varhat, first, wk

    def _bb_solve(
        self, p_abs: FloatArray, v: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """Profile the per-bin factors ``β_b`` and the region normalisation ``λ``.

        Returns ``(p, tau2, lam, beta, rr)`` with ``p = P/ΣP``, ``τ² = V/P²``,
        ``rr = (n − λpβ)/β = (β − 1)/τ²``.
        """
        n = self.data
        ntot = self._ntot
        s_tot = p_abs.sum(axis=1)
        p = p_abs / s_tot[:, None]
        tau2 = v / (p_abs * p_abs)
        lam = ntot.copy()
        lam = np.where(lam > 0, lam, 1.0)
        for _ in range(50):
            beta, dbeta = _bb_beta(lam[:, None] * p, tau2, n)
            # F'(λ) = Σ p β − N/λ, F''(λ) = Σ p dβ/dλ + N/λ² ; Newton in log λ
            g1 = (p * beta).sum(axis=1) * lam - ntot
            g2 = (p * p * dbeta).sum(axis=1) * lam * lam + ntot
            g2 = np.maximum(g2 + g1, 1e-300)
            step = -g1 / np.where(g2 > 0, g2, 1.0)
            step = np.clip(step, -1.0, 1.0)
            lam = lam * np.exp(step)
            if np.all(np.abs(step) < 1e-13):
                break
        beta, _ = _bb_beta(lam[:, None] * p, tau2, n)
        zero = beta <= 0.0  # n = 0 and ντ² >= 1: the factor sits at its bound β = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            rr = np.where(
                zero, -1.0 / np.where(zero, tau2, 1.0), (n - lam[:, None] * p * beta) / beta
            )
        return p, tau2, lam, beta, rr

    def evaluate_bb_lite(self, mu: FloatArray, s2: FloatArray, order: int = 1) -> RegionTerms:
        """Barlow-Beeston-lite NLL per region (minus its saturated value) and derivatives.

        The template's statistical noise enters through one multiplicative nuisance
        ``β_b`` per data bin with a Gaussian constraint of relative width
        ``τ_b = √V_b / P_b``, ``V_b = Σ_k C_bk² Var(t_k)`` the MC-statistics variance of the
        coarse prediction ``P_b = Σ_k C_bk t_k`` (computed with the same FFT machinery from the
        squared, box-summed kernel). In the extended form with a free region
        normalisation ``λ`` (equivalent to the multinomial when ``V = 0``)::

            NLL_r = min_{λ, β} Σ_b [λ p_b β_b − n_b log(λ p_b β_b) + (β_b − 1)²/(2τ_b²)]
                    − Σ_b (n_b − n_b log n_b),      p_b = P_b / Σ P.

        ``β_b`` solves a quadratic in closed form; ``λ`` is profiled by a few vectorised
        Newton steps. The gradient follows from the envelope theorem (no derivatives of
        ``β`` or ``λ``): ``∂/∂P_b = (λβ_b − n_b/p_b)/ΣP + ρ_b² τ_b²/P_b``,
        ``∂/∂V_b = −ρ_b²/(2P_b²)`` with ``ρ_b = (β_b − 1)/τ_b²``. The ``(μ, s²)`` Hessian per
        region (``order=2``) is the central finite difference of that exact gradient.
        """
        if order >= 2:
            return self._bb_hessian(mu, s2)
        seg, spec, xs, parseval = self._spectra(mu, s2, order)
        p_abs = self._positive(self._window_coarse(seg, xs * spec.base))[0]
        v, kc, boxhat, varhat, first, wk = self._bb_parts(seg, spec)
        p, tau2, lam, beta, rr = self._bb_solve(p_abs, v)
        n = self.data
        nu = lam[:, None] * p * beta
        with np.errstate(divide="ignore", invalid="ignore"):
            lognu = np.log(nu)
            logn = np.log(np.where(n > 0, n, 1.0))
        terms = nu - np.where(n > 0, n * (lognu - logn), 0.0) - n + 0.5 * tau2 * rr * rr
        nll = terms.sum(axis=1)
        if order < 1:
            return RegionTerms(nll=nll)
        s_tot = p_abs.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            g_p = (lam[:, None] * beta - np.where(n > 0, n / p, 0.0)) / s_tot[:, None]
        g_p = g_p + rr * rr * tau2 / p_abs
        g_v = -0.5 * rr * rr / (p_abs * p_abs)
        chat = self._adjoint(seg, g_p, xs.shape[1]) * np.conj(xs)
        g_mu, g_s = spec.dots((1, 2), chat, parseval)
        e_mu, e_s = self._v_gradient(seg, spec, (kc, boxhat, varhat, first, wk), g_v)
        return RegionTerms(nll=nll, g_mu=g_mu + e_mu, g_s=g_s + e_s)

    def _v_gradient(
        self,
        seg: _Segment,
        spec: KernelSpectra,
        parts: tuple[Any, ...],
        g_v: FloatArray,
        terms: tuple[int, ...] = (1, 2),
    ) -> tuple[FloatArray, ...]:
        """``Σ_b g_V,b ∂V_b/∂(μ, s²)`` per region for ``V`` from :meth:`_bb_parts`.

        ``Σ_b g_V,b ∂V_b = Σ_d 2 C'(d) ∂C'(d) c(d)`` with ``c(d) = Σ_b g_V,b Σw²(n_b − d)``.
        """
        kc, boxhat, varhat, first, wk = parts
        nb = self.data.shape[1]
        spread = np.zeros((self.n_regions, seg.length))
        spread[:, first : first + nb * self.rebin : self.rebin] = g_v
        corr = self._irfft(self._rfft(spread, seg.length) * np.conj(varhat), seg.length)[:, :wk]
        weight = 2.0 * kc * corr
        nk = spec.omega.size
        extra = []
        for i in terms:
            dkc = self._irfft(spec.term(i) * boxhat[None, :nk], seg.length)[:, :wk]
            extra.append((weight * dkc).sum(axis=1))
        return tuple(extra)

    # ------------------------------------------------------------------ noise correction
    def set_noise_reference(self, mu: FloatArray, s2: FloatArray) -> None:
        """Fix the reference shift ``μ_ref`` and the weights ``q_b`` of the noise correction.

        ``q_b = N / (ΣP̃ · P̃_b) / (1 + τ̃_b²)``: ``N/(ΣP̃ P̃_b)`` is a smooth stand-in for the
        expected ``n_b/P_b²`` (``P̃`` is the prediction from the template smoothed by one
        more coarse bin, ``s² + (rebin·h)²``, so it carries neither the data's nor the
        template's bin-to-bin noise); ``τ̃_b² = Ṽ_b/P̃_b²`` is the relative template noise of
        the bin. The second-order expansion behind the correction holds for ``τ² << 1``; the
        factor ``1/(1 + τ̃²)`` (the slope of ``½ log(1 + τ²)``, the exact term for log-normal
        noise) phases it out where the template is too sparse for it.
        """
        mu = np.asarray(mu, dtype=np.float64)
        s2 = self._floored(s2) + (self.rebin * self.h) ** 2
        seg, spec, xs, _ = self._spectra(mu, s2, 0)
        p = np.maximum(self._window_coarse(seg, xs * spec.base), 0.0) + self.floor[:, None]
        v = self._bb_parts(seg, spec, smooth=True)[0]
        tot = p.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(p > 0, self._ntot[:, None] / (tot * p) / (1.0 + v / (p * p)), 0.0)
        self._q = np.where(np.isfinite(q), q, 0.0)
        self._mu_ref = mu.copy()
        self._noise_cache.clear()

    def copy_noise_reference(self, other: TemplateModel) -> None:
        """Use the noise-correction reference of ``other`` (same regions and bins)."""
        self._q = other._q.copy()
        self._mu_ref = other._mu_ref.copy()
        self._noise_cache.clear()

    def noise_terms(self, s2: FloatArray, order: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Template-noise correction ``C_r(s²)`` of the multinomial NLL, with its first and
        (``order >= 2``) second derivative in the kernel variance ``s²``, per region.

        A template with noise ``ε_b`` (variance ``V_b``) in its coarse prediction raises the
        expected NLL by ``E[−n_b log(P_b + ε_b)] + n_b log P_b ≈ n_b V_b / (2P_b²)``. ``V_b``
        falls as the kernel widens (smearing averages the noise), so the plain NLL rewards
        smearing for the noise alone and fitted smearings come out high when the MC is
        sparse. The correction ``C = −½ Σ_b q_b V_b(μ_ref, s²)`` removes that term to second
        order, with ``V_b = Σ_k C_bk² Var(t_k)`` from :meth:`smoothed_variance` and the fixed
        weights and reference shift of :meth:`set_noise_reference`.

        It depends on ``s²`` only: its purpose is the smearing, and a shift-dependent
        correction with fixed weights runs away (moving the template peak's variance under
        tail bins of large ``q`` lowers it without bound). As a function of ``s²`` it is
        bounded, ``−½ Σ q V(0) <= C <= 0``, so it cannot drive a fit to a range bound. Value
        and derivatives are exact: ``C = −½ Σ_d C'(d)² c(d)`` with the box-summed kernel
        ``C'`` and the fixed weights ``c`` of :meth:`_noise_weights`.
        """
        if self._q.shape != self.data.shape:
            zero = np.zeros(self.n_regions)
            self.set_noise_reference(zero, zero)
        s2 = np.asarray(s2, dtype=np.float64)
        seg, spec, _, _ = self._spectra(self._mu_ref, s2, 2 if order >= 2 else min(order, 1))
        weights = self._noise_weights(seg)
        wk = weights.shape[1]
        nk = spec.omega.size
        boxhat = self._var_segment(seg, smooth=True)[1][None, :nk]

        def box_kernel(i: int) -> FloatArray:
            out: FloatArray = self._irfft(spec.term(i) * boxhat, seg.length)[:, :wk]
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
        key = (seg.dmin, seg.width)
        hit = self._noise_cache.get(key)
        if hit is not None:
            return hit
        varhat = self._var_segment(seg, smooth=True)[0]
        nb = self.data.shape[1]
        first = seg.width + self.rebin - 2
        wk = seg.width + self.rebin - 1
        spread = np.zeros((self.n_regions, seg.length))
        spread[:, first : first + nb * self.rebin : self.rebin] = self._q
        out = self._irfft(self._rfft(spread, seg.length) * np.conj(varhat), seg.length)[:, :wk]
        while self._noise_cache and len(self._noise_cache) >= _cache_slots(out.nbytes):
            self._noise_cache.pop(next(iter(self._noise_cache)))
        self._noise_cache[key] = out
        return out

    def _bb_hessian(self, mu: FloatArray, s2: FloatArray) -> RegionTerms:
        """Value, gradient and finite-difference ``(μ, s²)`` Hessian of the BB-lite NLL."""
        base = self.evaluate_bb_lite(mu, s2, 1)
        mu = np.asarray(mu, dtype=np.float64)
        s2 = np.asarray(s2, dtype=np.float64)
        d_mu = 1e-3 * self.h
        d_s = np.full_like(s2, 1e-3 * self.h * self.h)
        s_lo = np.maximum(s2 - d_s, 0.0)
        s_hi = s_lo + 2.0 * d_s
        up_m = self.evaluate_bb_lite(mu + d_mu, s2, 1)
        dn_m = self.evaluate_bb_lite(mu - d_mu, s2, 1)
        up_s = self.evaluate_bb_lite(mu, s_hi, 1)
        dn_s = self.evaluate_bb_lite(mu, s_lo, 1)
        assert up_m.g_mu is not None
        assert dn_m.g_mu is not None
        assert up_m.g_s is not None
        assert dn_m.g_s is not None
        assert up_s.g_mu is not None
        assert dn_s.g_mu is not None
        assert up_s.g_s is not None
        assert dn_s.g_s is not None
        h_mumu = (up_m.g_mu - dn_m.g_mu) / (2.0 * d_mu)
        h_mus_a = (up_m.g_s - dn_m.g_s) / (2.0 * d_mu)
        h_mus_b = (up_s.g_mu - dn_s.g_mu) / (2.0 * d_s)
        h_ss = (up_s.g_s - dn_s.g_s) / (2.0 * d_s)
        return RegionTerms(
            nll=base.nll,
            g_mu=base.g_mu,
            g_s=base.g_s,
            h_mumu=h_mumu,
            h_mus=0.5 * (h_mus_a + h_mus_b),
            h_ss=h_ss,
        )


def _bb_beta(nu: FloatArray, tau2: FloatArray, n: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Minimiser ``β`` of ``νβ − n log β + (β − 1)²/(2τ²)`` and ``dβ/dν``.

    ``β² + (ντ² − 1)β − nτ² = 0``, solved without cancellation; ``β = 1`` when ``τ = 0``.
    """
    b = 1.0 - nu * tau2
    disc = np.sqrt(b * b + 4.0 * n * tau2)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(b >= 0.0, 0.5 * (b + disc), 2.0 * n * tau2 / (disc - b))
    beta = np.where(np.isfinite(beta), np.maximum(beta, 0.0), 0.0)
    # implicit derivative of the quadratic in ν: (2β + ντ² − 1) dβ = −β τ² dν
    den = 2.0 * beta - b
    with np.errstate(divide="ignore", invalid="ignore"):
        dbeta = np.where(den > 0, -beta * tau2 / den, 0.0)
    return beta, dbeta
