"""Set-up of a fit from arrays: validation, window, region selection, parameter mapping.

:func:`build_problem` turns per-region fine histograms into a :class:`FitProblem`: the
objective (NLL, exact gradient and Hessian) as a function of the internal parameter vector

``θ = (x_a for free scale categories, v_b for free smear categories)``,
``x = log r = −log(scale)``, ``v = smear²``.

Per region with cells ``(i, j)``: ``s² = (v_b(i) + v_b(j)) / 4`` and
``μ = (x_a(i) + x_a(j)) / 2 − s²`` (the ``−s²`` is the second-order mean of
``½[log(1 + σ₁z₁) + log(1 + σ₂z₂)]``), so ``(μ, s²)`` is linear in ``θ``.

Region policy: regions with a leg in an ignored scale or smear category are excluded;
regions with data Σw below ``min_data`` or MC effective entries below ``min_mc`` inside the
window are dropped (both listed in the result, with a warning). A category to be fitted that
keeps no region is an error.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from zcalib.categories import region_pair
from zcalib.exceptions import FitError
from zcalib.fit.config import FitConfig
from zcalib.fit.model import TemplateModel, coarse_sum
from zcalib.fit.result import RegionInfo

__all__ = ["FitProblem", "build_problem", "window_bins"]

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Start smearing used for categories without a start value (and during the scale scans).
DEFAULT_START_SMEAR = 0.01
#: Floor added to each coarse prediction, relative to the mean template content per bin.
_FLOOR = 1e-10


def window_bins(
    edges: FloatArray, window: tuple[float, float], bin_width: float, rebin: int | None
) -> tuple[int, int, int, float]:
    """Snap the fit window to fine-bin edges of a log-uniform mass axis.

    Returns:
        ``(j_lo, n_coarse, rebin, h)``: first fine bin, number of data bins, fine bins per
        data bin, and the fine bin width in ``log m``.

    Raises:
        FitError: the axis is not log-uniform, or the window holds less than one data bin.

    Example:
        >>> import numpy as np
        >>> edges = np.geomspace(60.0, 120.0, 1201)
        >>> window_bins(edges, (80.0, 100.0), 0.25, None)[:3]
        (498, 77, 5)
    """
    u = np.log(edges)
    steps = np.diff(u)
    h = float((u[-1] - u[0]) / len(steps))
    if len(steps) < 1 or not np.allclose(steps, h, rtol=1e-6, atol=0.0):
        msg = (
            f"mass axis is not uniform in log(m) (bin widths in log m range "
            f"{steps.min():.6g}-{steps.max():.6g}); the fit needs a log-uniform fine axis"
        )
        raise FitError(msg)
    lo, hi = window
    j_lo = round((math.log(lo) - u[0]) / h)
    j_hi = round((math.log(hi) - u[0]) / h)
    j_lo = min(max(j_lo, 0), len(steps))
    j_hi = min(max(j_hi, 0), len(steps))
    if rebin is None:
        centre = math.sqrt(lo * hi)
        rebin = max(1, round(bin_width / (centre * h)))
    n_coarse = (j_hi - j_lo) // rebin
    if n_coarse < 1:
        msg = (
            f"fit window [{lo:g}, {hi:g}] GeV holds {j_hi - j_lo} fine bins of the mass axis "
            f"[{edges[0]:g}, {edges[-1]:g}] GeV, fewer than one data bin ({rebin} fine bins)"
        )
        raise FitError(msg)
    return j_lo, n_coarse, int(rebin), h


@dataclass(frozen=True)
class FitProblem:
    """The objective of one fit and the bookkeeping around it.

    Attributes:
        model: the per-region template model (used regions only).
        codes: region codes of the used regions, ``(R,)``.
        leg_scale: scale category of each leg, ``(R, 2)``.
        leg_smear: smear category of each leg, ``(R, 2)``.
        n_scale: number of scale categories.
        n_smear: number of smear categories.
        free_scale: indices of the fitted scale categories.
        free_smear: indices of the fitted smear categories.
        x_fixed: ``log r`` of every scale category (used for the non-fitted ones).
        v_fixed: ``smear²`` of every smear category (used for the non-fitted ones).
        lower: lower bounds of ``θ``.
        upper: upper bounds of ``θ``.
        regions: every input region with its counts and selection outcome.
        window: effective window in GeV.
        n_data: data Σw per used region inside the window.
    """

    model: TemplateModel
    codes: IntArray
    leg_scale: IntArray
    leg_smear: IntArray
    n_scale: int
    n_smear: int
    free_scale: tuple[int, ...]
    free_smear: tuple[int, ...]
    x_fixed: FloatArray
    v_fixed: FloatArray
    lower: FloatArray
    upper: FloatArray
    regions: tuple[RegionInfo, ...]
    window: tuple[float, float]
    n_data: FloatArray

    # ------------------------------------------------------------------ mapping
    @property
    def n_params(self) -> int:
        """Number of fitted parameters."""
        return len(self.free_scale) + len(self.free_smear)

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names in ``θ`` order."""
        return tuple(f"scale[{a}]" for a in self.free_scale) + tuple(
            f"smear[{b}]" for b in self.free_smear
        )

    def incidence(self) -> tuple[FloatArray, FloatArray]:
        """``A`` (R, n_scale) with ½ per leg and ``B`` (R, n_smear) with ¼ per leg."""
        r = len(self.codes)
        a = np.zeros((r, self.n_scale))
        b = np.zeros((r, self.n_smear))
        rows = np.arange(r)
        for leg in (0, 1):
            np.add.at(a, (rows, self.leg_scale[:, leg]), 0.5)
            np.add.at(b, (rows, self.leg_smear[:, leg]), 0.25)
        return a, b

    @functools.cached_property
    def _jacobian(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        r = len(self.codes)
        ns = len(self.free_scale)
        col_scale = np.full(self.n_scale, -1, dtype=np.int64)
        col_scale[list(self.free_scale)] = np.arange(ns)
        col_smear = np.full(self.n_smear, -1, dtype=np.int64)
        col_smear[list(self.free_smear)] = ns + np.arange(len(self.free_smear))
        rows = np.repeat(np.arange(r), 2)
        cs = col_scale[self.leg_scale.ravel()]
        cm = col_smear[self.leg_smear.ravel()]
        # per leg: μ gets ½ x_a and −¼ v_b, s² gets ¼ v_b (duplicates are summed)
        keep_s, keep_m = cs >= 0, cm >= 0
        shape = (r, self.n_params)
        jmu = sparse.csr_matrix(
            (
                np.concatenate([np.full(keep_s.sum(), 0.5), np.full(keep_m.sum(), -0.25)]),
                (
                    np.concatenate([rows[keep_s], rows[keep_m]]),
                    np.concatenate([cs[keep_s], cm[keep_m]]),
                ),
            ),
            shape=shape,
        )
        js = sparse.csr_matrix(
            (np.full(keep_m.sum(), 0.25), (rows[keep_m], cm[keep_m])), shape=shape
        )
        jmu.sum_duplicates()
        js.sum_duplicates()
        return jmu, js

    def jacobian(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        """``∂μ/∂θ`` and ``∂s²/∂θ``, each ``(R, n_params)`` (constant: the map is linear),
        as sparse matrices (a region touches at most two scale and two smear categories)."""
        return self._jacobian

    def _chain(self, g_mu: FloatArray, g_s: FloatArray) -> FloatArray:
        """``Jμᵀ g_μ + Jsᵀ g_s``: per-region derivatives to the gradient in ``θ``."""
        jmu, js = self.jacobian()
        out: FloatArray = jmu.T @ g_mu + js.T @ g_s
        return out

    def _chain2(self, h_mumu: FloatArray, h_mus: FloatArray, h_ss: FloatArray) -> FloatArray:
        """``Σ_r J_rᵀ [[h_μμ, h_μs], [h_μs, h_ss]]_r J_r``: per-region 2 x 2 blocks to the
        ``(P, P)`` matrix in ``θ`` (sparse products: each region adds at most a 4 x 4 block)."""
        jmu, js = self.jacobian()
        cross = jmu.T @ sparse.diags(h_mus) @ js
        out = jmu.T @ sparse.diags(h_mumu) @ jmu + cross + cross.T + js.T @ sparse.diags(h_ss) @ js
        dense: FloatArray = np.asarray(out.toarray())
        return dense

    def full(self, theta: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """``(x, v)`` for every scale and smear category given ``θ``."""
        th = np.asarray(theta, dtype=np.float64)
        x = self.x_fixed.copy()
        v = self.v_fixed.copy()
        ns = len(self.free_scale)
        x[list(self.free_scale)] = th[:ns]
        v[list(self.free_smear)] = th[ns:]
        return x, v

    def region_params(self, theta: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """``(μ, s²)`` per used region given ``θ``."""
        x, v = self.full(theta)
        return self.region_params_full(x, v)

    def region_params_full(self, x: FloatArray, v: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(μ, s²)`` per used region from ``log r`` and ``smear²`` of all categories."""
        s2 = 0.25 * (v[self.leg_smear[:, 0]] + v[self.leg_smear[:, 1]])
        mu = 0.5 * (x[self.leg_scale[:, 0]] + x[self.leg_scale[:, 1]]) - s2
        return mu, s2

    def theta_from_values(
        self, scales: Sequence[float] | FloatArray, smears: Sequence[float] | FloatArray
    ) -> FloatArray:
        """Internal ``θ`` from scale and smearing values of *all* categories."""
        sc = np.asarray(scales, dtype=np.float64)
        sm = np.asarray(smears, dtype=np.float64)
        x = -np.log(sc[list(self.free_scale)])
        v = sm[list(self.free_smear)] ** 2
        return np.concatenate([x, v])

    def values_from_theta(self, theta: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Scales and smearings of *all* categories given ``θ``."""
        x, v = self.full(theta)
        return np.exp(-x), np.sqrt(np.maximum(v, 0.0))

    # ------------------------------------------------------------------ objective
    def _check(self, value: float, theta: ArrayLike) -> None:
        if not math.isfinite(value):
            sc, sm = self.values_from_theta(theta)
            msg = (
                f"non-finite NLL ({value}) at scales {np.array2string(sc, precision=6)} "
                f"and smearings {np.array2string(sm, precision=6)}"
            )
            raise FitError(msg)

    def _params_checked(self, theta: ArrayLike) -> tuple[FloatArray, FloatArray]:
        mu, s2 = self.region_params(theta)
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(s2))):
            self._check(math.nan, theta)
        return mu, s2

    def nll(self, theta: ArrayLike) -> float:
        """Total NLL (minus its saturated value).

        Raises:
            FitError: the NLL is not finite (message names the parameter values).
        """
        mu, s2 = self._params_checked(theta)
        value = float(self.model.evaluate(mu, s2, order=0).nll.sum())
        self._check(value, theta)
        return value

    def nll_grad(self, theta: ArrayLike) -> tuple[float, FloatArray]:
        """NLL and its exact gradient in ``θ``."""
        mu, s2 = self._params_checked(theta)
        t = self.model.evaluate(mu, s2, order=1)
        value = float(t.nll.sum())
        self._check(value, theta)
        assert t.g_mu is not None
        assert t.g_s is not None
        return value, self._chain(t.g_mu, t.g_s)

    def hessian(
        self, theta: ArrayLike, *, data_only: bool = False
    ) -> tuple[float, FloatArray, FloatArray]:
        """NLL, gradient and Hessian in ``θ`` (exact for the multinomial NLL; the BB-lite
        and noise-correction parts of the per-region ``(μ, s²)`` Hessian are central
        differences of their exact gradients).

        ``data_only``: the plain multinomial NLL (no BB-lite, no noise correction) with the
        data's Fisher information (outer-product form, positive semi-definite) as Hessian.
        """
        mu, s2 = self._params_checked(theta)
        t = self.model.evaluate(mu, s2, order=2, data_only=data_only)
        value = float(t.nll.sum())
        self._check(value, theta)
        assert t.g_mu is not None
        assert t.g_s is not None
        assert t.h_mumu is not None
        assert t.h_mus is not None
        assert t.h_ss is not None
        hess = self._chain2(t.h_mumu, t.h_mus, t.h_ss)
        return value, self._chain(t.g_mu, t.g_s), 0.5 * (hess + hess.T)

    def mc_stat_information(self, theta: ArrayLike) -> FloatArray:
        """``V = Σ_k Var(t_k) (∂g/∂t_k)(∂g/∂t_k)ᵀ`` over MC template bins, ``(P, P)``."""
        mu, s2 = self.region_params(theta)
        m = self.model.mc_stat_matrix(mu, s2)
        return self._chain2(m[:, 0, 0], m[:, 0, 1], m[:, 1, 1])

    def region_nll(self, mu: FloatArray, s2: FloatArray) -> FloatArray:
        """Plain multinomial NLL per used region at given ``(μ, s²)`` (for the start scans:
        the template-noise correction, which needs a reference point, is left out)."""
        return self.model.evaluate(mu, s2, order=0, data_only=True).nll

    def with_template(
        self,
        template: FloatArray,
        variance: FloatArray | None = None,
        *,
        likelihood: str | None = None,
    ) -> FitProblem:
        """The same problem with another MC template for the used regions (bootstrap, toys)
        and the same likelihood (with its reference point) or ``likelihood``."""
        m = self.model
        model = TemplateModel(
            template=template,
            variance=m.variance if variance is None else variance,
            data=m.data,
            h=m.h,
            j_lo=m.j_lo,
            rebin=m.rebin,
            n_sigma=m.n_sigma,
            floor=m.floor,
            likelihood=m.likelihood if likelihood is None else likelihood,
            s2_floor=m.s2_floor,
            double_gaussian=m.double_gaussian,
            spectra_cache=m.spectra_cache,
        )
        if variance is None:
            m.share_variance(model)
        if template is m.template:
            model._cache = m._cache  # the same template: the same segment spectra
        model.objective.copy_reference(m.objective)
        out = dataclasses.replace(self, model=model)
        out.__dict__["_jacobian"] = self._jacobian  # same regions and parameters
        return out

    def set_reference(self, theta: ArrayLike) -> None:
        """Set the likelihood's reference point (the noise correction's weights) at ``θ``."""
        mu, s2 = self.region_params(theta)
        self.model.objective.set_reference(mu, s2)


def _as_float2d(name: str, arr: ArrayLike, shape: tuple[int, ...] | None) -> FloatArray:
    out = np.asarray(arr, dtype=np.float64)
    if out.ndim != 2 or (shape is not None and out.shape != shape):
        msg = f"'{name}' has shape {out.shape}; expected {shape or '(regions, mass bins)'}"
        raise FitError(msg)
    return out


def _check_finite(name: str, arr: FloatArray, codes: IntArray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        r, b = np.argwhere(bad)[0]
        msg = (
            f"'{name}' holds {int(bad.sum())} non-finite value(s); first in region "
            f"{int(codes[r])} mass bin {int(b)}: {arr[r, b]}"
        )
        raise FitError(msg)


def build_problem(
    data: ArrayLike,
    mc_w: ArrayLike,
    mc_w2: ArrayLike,
    regions: ArrayLike,
    mass_edges: ArrayLike,
    cell_scale: ArrayLike,
    cell_smear: ArrayLike,
    config: FitConfig,
    *,
    n_scale: int | None = None,
    n_smear: int | None = None,
    warn: bool = True,
) -> FitProblem:
    """Validate fine per-region histograms and build the :class:`FitProblem`.

    Args:
        data: data Σw per (region, fine mass bin), ``(R, n)``.
        mc_w: MC Σw, ``(R, n)``.
        mc_w2: MC Σw², ``(R, n)``.
        regions: region codes ``min(ci, cj) * n_cells + max(ci, cj)``, ``(R,)``; negative
            codes (leptons outside every category) are skipped.
        mass_edges: fine mass-bin edges in GeV, ``(n + 1,)``, uniform in ``log m``.
        cell_scale: scale-category index of each cell, ``(n_cells,)``.
        cell_smear: smear-category index of each cell, ``(n_cells,)``.
        config: the fit configuration.
        n_scale: number of scale categories (default ``max(cell_scale) + 1``).
        n_smear: number of smear categories (default ``max(cell_smear) + 1``).
        warn: log excluded regions as a warning (else at debug level, e.g. for toys).

    Raises:
        FitError: inconsistent shapes, non-finite or negative inputs, bad region codes, no
            usable region, or a category to be fitted without any usable region.
    """
    cs = np.asarray(cell_scale, dtype=np.int64).ravel()
    cm = np.asarray(cell_smear, dtype=np.int64).ravel()
    if cs.shape != cm.shape or cs.size == 0:
        msg = f"cell maps differ in length or are empty (scale {cs.shape}, smear {cm.shape})"
        raise FitError(msg)
    n_cells = int(cs.size)
    n_scale = int(cs.max()) + 1 if n_scale is None else int(n_scale)
    n_smear = int(cm.max()) + 1 if n_smear is None else int(n_smear)
    if cs.min() < 0 or cs.max() >= n_scale or cm.min() < 0 or cm.max() >= n_smear:
        msg = (
            f"cell maps point outside the categories (scale indices {cs.min()}..{cs.max()} "
            f"for {n_scale} categories, smear {cm.min()}..{cm.max()} for {n_smear})"
        )
        raise FitError(msg)
    config.check_lengths(n_scale, n_smear)

    codes_all = np.asarray(regions, dtype=np.int64).ravel()
    edges = np.asarray(mass_edges, dtype=np.float64).ravel()
    n_mass = edges.size - 1
    shape = (codes_all.size, n_mass)
    d_all = _as_float2d("data", data, shape)
    w_all = _as_float2d("mc_w", mc_w, shape)
    w2_all = _as_float2d("mc_w2", mc_w2, shape)
    if not (np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0) and edges[0] > 0):
        msg = "mass edges must be finite, positive and strictly increasing"
        raise FitError(msg)
    for name, arr in (("data", d_all), ("mc_w", w_all), ("mc_w2", w2_all)):
        _check_finite(name, arr, codes_all)
    if (d_all < 0).any():
        r, b = np.argwhere(d_all < 0)[0]
        msg = (
            f"'data' holds negative counts; first in region {int(codes_all[r])} mass bin "
            f"{int(b)}: {d_all[r, b]}"
        )
        raise FitError(msg)
    if (w2_all < 0).any():
        r, b = np.argwhere(w2_all < 0)[0]
        msg = (
            f"'mc_w2' (Σw²) holds negative values; first in region {int(codes_all[r])} mass "
            f"bin {int(b)}: {w2_all[r, b]}"
        )
        raise FitError(msg)
    if len(set(codes_all.tolist())) != codes_all.size:
        msg = f"duplicate region codes in {codes_all.tolist()}"
        raise FitError(msg)
    bad_codes = [
        int(c)
        for c in codes_all
        if c >= 0 and (c >= n_cells * n_cells or c // n_cells > c % n_cells)
    ]
    if bad_codes:
        msg = (
            f"region codes {bad_codes} are not valid (i <= j) cell pairs for {n_cells} cells "
            f"(codes must be min*{n_cells} + max < {n_cells * n_cells}); were the histograms "
            f"filled with another category scheme?"
        )
        raise FitError(msg)

    j_lo, n_coarse, rebin, h = window_bins(edges, config.window, config.bin_width, config.rebin)
    j_hi = j_lo + n_coarse * rebin
    window = (float(edges[j_lo]), float(edges[j_hi]))
    if abs(window[0] - config.window[0]) > 0.5 * (edges[j_lo + 1] - edges[j_lo]) or abs(
        window[1] - config.window[1]
    ) > rebin * (edges[j_hi] - edges[j_hi - 1]):
        log.info(
            "fit window [%g, %g] GeV snapped to [%.4f, %.4f] GeV (%d bins of %d fine bins)",
            *config.window,
            *window,
            n_coarse,
            rebin,
        )

    ignored_scale = set(config.ignore_scales)
    ignored_smear = set(config.ignore_smears)
    infos: list[RegionInfo] = []
    keep: list[int] = []
    nd_all = d_all[:, j_lo:j_hi].sum(axis=1).tolist()
    sw_all = w_all[:, j_lo:j_hi].sum(axis=1).tolist()
    sw2_all = w2_all[:, j_lo:j_hi].sum(axis=1).tolist()
    for r, code in enumerate(codes_all.tolist()):
        if code < 0:
            log.debug("skipping region code %d (leptons outside every category)", code)
            continue
        ci, cj = region_pair(code, n_cells)
        nd, sw, sw2 = nd_all[r], sw_all[r], sw2_all[r]
        neff = sw * sw / sw2 if sw2 > 0 and sw > 0 else 0.0
        reason = ""
        ign_s = sorted({int(cs[ci]), int(cs[cj])} & ignored_scale)
        ign_m = sorted({int(cm[ci]), int(cm[cj])} & ignored_smear)
        if ign_s:
            reason = f"ignored scale category {ign_s}"
        elif ign_m:
            reason = f"ignored smear category {ign_m}"
        elif nd < config.min_data:
            reason = f"data {nd:.6g} < min_data {config.min_data:g}"
        elif neff < config.min_mc:
            reason = f"MC effective entries {neff:.6g} < min_mc {config.min_mc:g}"
        infos.append(
            RegionInfo(
                code=code, cells=(ci, cj), n_data=nd, n_mc_eff=neff, used=not reason, reason=reason
            )
        )
        if not reason:
            keep.append(r)
    dropped = [i for i in infos if not i.used]
    if dropped:
        shown = "; ".join(f"region {i.code} cells {i.cells}: {i.reason}" for i in dropped[:10])
        more = f" (+{len(dropped) - 10} more)" if len(dropped) > 10 else ""
        log.log(
            logging.WARNING if warn else logging.DEBUG,
            "%d of %d pair regions excluded from the fit: %s%s",
            len(dropped),
            len(infos),
            shown,
            more,
        )
    if not keep:
        msg = (
            f"no pair region is usable: all {len(infos)} regions were excluded (window "
            f"[{window[0]:.4g}, {window[1]:.4g}] GeV, min_data={config.min_data:g}, "
            f"min_mc={config.min_mc:g}, ignored scale {sorted(ignored_scale)}, smear "
            f"{sorted(ignored_smear)})"
        )
        raise FitError(msg)

    idx = np.array(keep, dtype=np.int64)
    codes = codes_all[idx]
    ci_arr, cj_arr = codes // n_cells, codes % n_cells
    leg_scale = np.stack([cs[ci_arr], cs[cj_arr]], axis=1)
    leg_smear = np.stack([cm[ci_arr], cm[cj_arr]], axis=1)

    free_scale = tuple(
        a for a in range(n_scale) if not config.fix_scales and a not in ignored_scale
    )
    free_smear = tuple(
        b for b in range(n_smear) if not config.fix_smears and b not in ignored_smear
    )
    _check_coverage("scale", free_scale, leg_scale, "ignore_scales")
    _check_coverage("smear", free_smear, leg_smear, "ignore_smears")

    x_fixed = np.zeros(n_scale)
    if config.fix_scales and config.fixed_scales is not None:
        x_fixed = -np.log(np.asarray(config.fixed_scales))
    x_fixed[sorted(ignored_scale)] = 0.0
    v_fixed = np.zeros(n_smear)
    if config.fix_smears and config.fixed_smears is not None:
        v_fixed = np.asarray(config.fixed_smears) ** 2
    v_fixed[sorted(ignored_smear)] = 0.0

    lo_s, hi_s = config.scale_bounds
    lo_m, hi_m = config.smear_bounds
    lower = np.concatenate(
        [np.full(len(free_scale), -math.log(hi_s)), np.full(len(free_smear), lo_m**2)]
    )
    upper = np.concatenate(
        [np.full(len(free_scale), -math.log(lo_s)), np.full(len(free_smear), hi_m**2)]
    )

    template = w_all[idx]
    negative = template[:, j_lo:j_hi] < 0
    if negative.any():
        # kept as they are: positivity is imposed on the coarse prediction (model._positive)
        log.info(
            "%d MC template bins inside the window have negative Σw (negative weights)",
            int(negative.sum()),
        )
    data_coarse = coarse_sum(d_all[idx, j_lo:j_hi], rebin)
    floor = _FLOOR * template[:, j_lo:j_hi].sum(axis=1) / n_coarse
    floor = np.where(floor > 0, floor, _FLOOR)
    model = TemplateModel(
        template=template,
        variance=w2_all[idx],
        data=data_coarse,
        h=h,
        j_lo=j_lo,
        rebin=rebin,
        floor=floor,
        likelihood=config.mc_stat_likelihood,
        s2_floor=(config.template_smoothing * h) ** 2,
        double_gaussian=config.double_gaussian_shape(),
    )
    return FitProblem(
        model=model,
        codes=codes,
        leg_scale=leg_scale,
        leg_smear=leg_smear,
        n_scale=n_scale,
        n_smear=n_smear,
        free_scale=free_scale,
        free_smear=free_smear,
        x_fixed=x_fixed,
        v_fixed=v_fixed,
        lower=lower,
        upper=upper,
        regions=tuple(infos),
        window=window,
        n_data=data_coarse.sum(axis=1),
    )


def _check_coverage(kind: str, free: tuple[int, ...], legs: IntArray, option: str) -> None:
    present = set(legs.ravel().tolist())
    missing = [c for c in free if c not in present]
    if missing:
        names = [f"{kind}[{i}]" for i in missing]
        quoted = ", ".join(f'"{n}"' for n in names)
        msg = (
            f"{kind} categories {missing} have no usable pair region (all their regions were "
            f"dropped or absent); lower min_data/min_mc, widen the window, or hold them fixed: "
            f"--ignore {' '.join(names)} (CLI), {option}: [{quoted}] (FitConfig; a pipeline "
            "step's fit options)"
        )
        raise FitError(msg)
