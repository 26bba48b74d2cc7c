"""The template prediction of the fit, per pair region.

:class:`TemplateModel` predicts each region's coarse data bins from its fine MC template
with the exact kernel of :mod:`zcalib.fit.kernel`: the template's spectrum on a segment
long enough that no circular wrap-around reaches the fit window (cached and shared between
nearby parameter values) times the kernel's band-limited spectrum, summed into the coarse
data bins of the window by one real matrix product (and back, for gradients, by its
transpose). It also gives the MC-statistics variance of each coarse prediction and its
derivatives. The likelihoods built on the prediction are the modules of
:mod:`zcalib.fit.likelihood`, chosen by ``TemplateModel.likelihood``.
"""

from __future__ import annotations

import functools
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
    cache_slots,
    coarse_sum,
    kernel_spectra,
    kernel_support,
    kernel_terms,
    mixture_spectra,
)
from zcalib.fit.likelihood import LIKELIHOODS, Likelihood, RegionTerms, multinomial_terms

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


@functools.lru_cache(maxsize=16)
def _coarse_matrices(width: int, length: int, rebin: int, nb: int) -> tuple[FloatArray, FloatArray]:
    """The two real matrices of :meth:`TemplateModel._window_coarse` and
    :meth:`TemplateModel._adjoint` (cached: bootstrap replicas and toys share them).

    Coarse bin ``b`` of the window covers segment positions ``n_b … n_b + rebin − 1``,
    ``n_b = width − 1 + b·rebin``; ``G_kb = Σ_i exp(2πi k (n_b + i)/L)``. The phases are
    reduced modulo ``L`` in integers, so the matrices are exact to rounding.
    """
    nk = length // 2 + 1
    wts = np.full(nk, 2.0)
    wts[0] = 1.0
    if length % 2 == 0:
        wts[-1] = 1.0
    parseval = wts / length
    pos = width - 1 + np.arange(nb)[:, None] * rebin + np.arange(rebin)[None, :]
    idx = (np.arange(nk, dtype=np.int64)[:, None, None] * pos[None, :, :]) % length
    ang = (2.0 * np.pi / length) * idx.astype(np.float64)
    g_re, g_im = np.cos(ang).sum(axis=2), np.sin(ang).sum(axis=2)  # (K, nb)
    out_m = np.empty((2 * nk, nb))
    out_m[0::2] = parseval[:, None] * g_re
    out_m[1::2] = -parseval[:, None] * g_im
    in_m = np.empty((nb, 2 * nk))
    in_m[:, 0::2] = g_re.T
    in_m[:, 1::2] = -g_im.T
    out_m.flags.writeable = False
    in_m.flags.writeable = False
    return out_m, in_m


@dataclass
class TemplateModel:
    """Shifted + smeared MC templates against binned data, per region, and the likelihood
    chosen for them.

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
        likelihood: the ``mc_stat_likelihood`` value, a key of
            :data:`zcalib.fit.likelihood.LIKELIHOODS`; the bound likelihood is
            :attr:`objective`.
        s2_floor: soft floor ``s₀²`` of the kernel variance (see :meth:`effective_s2`):
            the template is read as a density smoothed by ``s₀``, so that the NLL stays
            smooth in the shift when the fitted smearing goes to 0 (a bare histogram,
            ``s = 0``, is piecewise linear in the shift with kinks at every fine bin, which
            locks fitted scales to the fine-bin grid). ``0`` switches it off.
        double_gaussian: ``None`` for the Gaussian smearing kernel, or ``(f, k)`` for the
            double Gaussian of fixed shape ``(1 − f) N(0, s²) + f N(0, k² s²)`` (see
            :func:`zcalib.fit.kernel.mixture_spectra`); ``s`` (the fitted width) is the core.
    """

    template: FloatArray
    variance: FloatArray
    data: FloatArray
    h: float
    j_lo: int
    rebin: int
    n_sigma: float = N_SIGMA
    floor: FloatArray = field(default_factory=lambda: np.zeros(0))
    likelihood: str = "none"
    s2_floor: float = 0.0
    double_gaussian: tuple[float, float] | None = None
    #: the last kernel spectra (one entry), keyed by the exact parameters and segment; a
    #: model for another template of the same regions may share it (bootstrap replicas
    #: all evaluate at the minimum)
    spectra_cache: dict[tuple[Any, ...], KernelSpectra] = field(default_factory=dict, repr=False)
    _cache: dict[tuple[int, int], _Segment] = field(default_factory=dict, repr=False)
    _var_cache: dict[tuple[int, int, int], tuple[Any, Any]] = field(
        default_factory=dict, repr=False
    )
    _sat: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
    _ntot: FloatArray = field(default_factory=lambda: np.zeros(0), repr=False)
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
        try:
            kind = LIKELIHOODS[self.likelihood]
        except KeyError:
            allowed = ", ".join(sorted(LIKELIHOODS))
            msg = f"unknown likelihood {self.likelihood!r}; allowed: {allowed}"
            raise ValueError(msg) from None
        #: the likelihood bound to this model (per-fit state such as a reference point)
        self.objective: Likelihood = kind(self)

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
            narrow = seg.width <= 1.5 * width + 4 * _QUANTUM
            if fits and narrow and (best is None or seg.length < best.length):
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
        out_m, in_m = _coarse_matrices(width, length, self.rebin, self.data.shape[1])
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
        while self._cache and len(self._cache) >= cache_slots(spec.nbytes):
            self._cache.pop(next(iter(self._cache)))
        self._cache[(dmin, width)] = seg
        return seg

    def _spectra(
        self, mu: FloatArray, s2: FloatArray, order: int
    ) -> tuple[_Segment, KernelSpectra, Any, FloatArray]:
        """Segment, kernel spectra, template spectrum and Parseval weights (cut alike)."""
        mu = np.asarray(mu, dtype=np.float64)
        s2 = np.asarray(s2, dtype=np.float64)
        seg = self._kernel_segment(mu, s2)
        dg = self.double_gaussian
        key = (mu.tobytes(), s2.tobytes(), seg.dmin, seg.width, seg.length, order, dg)
        spec = self.spectra_cache.get(key)
        if spec is None:
            spec = self._kernel_spectra(mu, s2, seg.dmin, seg.width, seg.length, order)
            self.spectra_cache.clear()
            self.spectra_cache[key] = spec
        nk = spec.omega.size
        return seg, spec, seg.spectrum[:, :nk], seg.parseval[:nk]

    def _kernel_support(self, mu: FloatArray, s2: FloatArray) -> tuple[int, int]:
        """:func:`kernel_support` of the regions' kernels (the wider component's for a
        double Gaussian)."""
        dg = self.double_gaussian
        wide = 1.0 if dg is None else max(1.0, dg[1] * dg[1])
        return kernel_support(mu, wide * s2, self.h, self.n_sigma)

    def _kernel_segment(self, mu: FloatArray, s2: FloatArray) -> _Segment:
        """The template segment whose kernel support covers every region's kernel."""
        return self._segment(*self._kernel_support(mu, s2))

    def _kernel_spectra(
        self, mu: FloatArray, s2: FloatArray, dmin: int, width: int, length: int, order: int
    ) -> KernelSpectra:
        """Spectra (transform length ``length``) of the kernel placed at offsets
        ``dmin … dmin + width − 1``: :func:`kernel_spectra` or, for the double Gaussian,
        :func:`mixture_spectra`."""
        args = (mu, s2, self.h, dmin, width, length, order, self.n_sigma)
        dg = self.double_gaussian
        if dg is None:
            return kernel_spectra(*args)
        return mixture_spectra(*args, fraction=dg[0], width_ratio=dg[1])

    def _rfft(self, arr: FloatArray, length: int) -> Any:
        return sfft.rfft(arr, n=length, axis=-1, workers=_workers(arr.shape[0] * length))

    def _irfft(self, spec: Any, length: int) -> FloatArray:
        out: FloatArray = sfft.irfft(
            spec, n=length, axis=-1, workers=_workers(spec.shape[0] * length)
        )
        return out

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
        self, mu: FloatArray, s2: FloatArray, order: int = 1, *, data_only: bool = False
    ) -> RegionTerms:
        """Per-region NLL (minus its saturated value) of :attr:`objective` and its
        derivatives in ``(μ, s²)``, with the soft floor of :meth:`effective_s2` applied.

        Args:
            mu: shift per region, ``(R,)``.
            s2: Gaussian variance per region, ``(R,)``.
            order: 0 value only, 1 with gradient, 2 with gradient and Hessian.
            data_only: the plain multinomial NLL of the data (whatever the likelihood), with
                the data's Fisher information (the outer-product part
                ``Σ n ∇log p ∇log pᵀ``, always positive semi-definite) as its "Hessian".
        """
        s2e, d1, d2 = self.effective_s2(s2)
        if data_only:
            t = multinomial_terms(self, mu, s2e, order, fisher=True)
            d2 = np.zeros_like(d2)
        else:
            t = self.objective.evaluate(mu, s2e, order)
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
            jac.append(dphi)
        # only the template bins that exist carry variance: sums over them, no padded copy
        i0, n_fine = seg.offset, self.variance.shape[1]
        a, b = max(i0, 0), min(i0 + n_in, n_fine)
        out = np.zeros((self.n_regions, 2, 2))
        if b <= a:
            return out
        var = self.variance[:, a:b]
        j0, j1 = jac[0][:, a - i0 : b - i0], jac[1][:, a - i0 : b - i0]
        vj0 = var * j0
        out[:, 0, 0] = np.einsum("ij,ij->i", vj0, j0)
        out[:, 0, 1] = out[:, 1, 0] = np.einsum("ij,ij->i", vj0, j1) * d1
        out[:, 1, 1] = np.einsum("ij,ij,ij->i", var, j1, j1) * (d1 * d1)
        return out

    # ------------------------------------------------------------------ prediction variance
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

    def share_variance(self, other: TemplateModel) -> None:
        """Give ``other`` (a model with the same Σw², e.g. a bootstrap replica) this model's
        smoothed Σw² and Σw² spectra instead of recomputing them."""
        other._var_smooth = self._var_smooth
        other._var_cache.update(self._var_cache)

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
        while self._var_cache and len(self._var_cache) >= cache_slots(out[0].nbytes):
            self._var_cache.pop(next(iter(self._var_cache)))
        self._var_cache[key] = out
        return out

    def prediction_variance(self, mu: FloatArray, s2: FloatArray) -> FloatArray:
        """MC-statistics variance of each coarse prediction, ``V_b = Σ_k C_bk² Var(t_k)``.

        ``C_bk`` is the kernel summed over the fine bins of coarse bin ``b`` (so
        ``P_b = Σ_k C_bk t_k``) and ``Var(t_k)`` the template Σw²; shape ``(R, nb)``.
        """
        seg, spec, _, _ = self._spectra(mu, self._floored(s2), 0)
        v: FloatArray = self._variance_parts(seg, spec)[0]
        return v

    def _variance_parts(
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

    def _variance_gradient(
        self,
        seg: _Segment,
        spec: KernelSpectra,
        parts: tuple[Any, ...],
        g_v: FloatArray,
        terms: tuple[int, ...] = (1, 2),
    ) -> tuple[FloatArray, ...]:
        """``Σ_b g_V,b ∂V_b/∂(μ, s²)`` per region for ``V`` from :meth:`_variance_parts`.

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
