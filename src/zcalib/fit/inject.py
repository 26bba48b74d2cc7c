"""Method-accuracy test by injection (pymin's ``--test-method-accuracy``).

For each toy, pseudo-data in every region are drawn as ``Poisson(N_r · p_r)`` where ``p_r``
is the model shape (normalised inside the window) for the injected scales and smearings,
computed from the MC template *independently fluctuated* by ``N(0, √Σw²)`` per fine bin
(clipped at 0). The fit then uses the nominal template, so the spread of the results
contains both the data and the MC-statistics components, and the pulls
``(fit − truth) / total_stat`` test whether the reported errors are honest. Every toy has
its own seed (``SeedSequence.spawn``), so toys are reproducible one by one.

Example:
    >>> # res = inject(hset, truth_scales=[1.01] * 8, truth_smears=[0.01] * 8, n_toys=20)
    >>> # res.pull_mean["scale"], res.pull_width["scale"]
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zcalib.categories import CategoryScheme
from zcalib.exceptions import FitError, InvalidConfig
from zcalib.fit.config import FitConfig
from zcalib.fit.fitter import (
    bootstrap_covariance,
    check_scheme,
    fit_problem,
    histogram_arrays,
    minimise_objective,
)
from zcalib.fit.model import TemplateModel
from zcalib.fit.problem import build_problem
from zcalib.fit.result import FitResult
from zcalib.fit.start import start_values
from zcalib.histograms import HistogramSet

__all__ = ["InjectionResult", "inject", "inject_arrays"]

log = logging.getLogger(__name__)

#: Replicas of the MC-statistics bootstrap shared by all toys of an injection.
_SHARED_BOOTSTRAP = 60

FloatArray = NDArray[np.float64]


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


@dataclass(frozen=True)
class InjectionResult:
    """Outcome of an injection test.

    Attributes:
        truth_scales: injected scale per scale category.
        truth_smears: injected smearing per smear category.
        fitted_scales: fitted scales, ``(n_toys, n_scale)`` (NaN for non-fitted categories).
        fitted_smears: fitted smearings, ``(n_toys, n_smear)``.
        err_scales: total statistical errors of the scales, ``(n_toys, n_scale)``.
        err_smears: total statistical errors of the smearings, ``(n_toys, n_smear)``.
        status: fit status per toy.
        seed: master seed; toy ``k`` used ``SeedSequence(seed, spawn_key=(k,))``.
        wall_time: seconds for all toys.
        fits: the individual :class:`FitResult` objects.
    """

    truth_scales: FloatArray
    truth_smears: FloatArray
    fitted_scales: FloatArray
    fitted_smears: FloatArray
    err_scales: FloatArray
    err_smears: FloatArray
    status: tuple[str, ...]
    seed: int
    wall_time: float
    fits: tuple[FitResult, ...] = field(default=(), repr=False)

    @property
    def n_toys(self) -> int:
        """Number of toys."""
        return len(self.status)

    @property
    def n_failed(self) -> int:
        """Toys whose fit did not converge (excluded from the summaries)."""
        return sum(s != "converged" for s in self.status)

    def _ok(self) -> NDArray[np.bool_]:
        return np.array([s == "converged" for s in self.status], dtype=bool)

    def bias(self) -> dict[str, FloatArray]:
        """Mean ``fit − truth`` over converged toys, per category."""
        ok = self._ok()
        return {
            "scale": np.nanmean(self.fitted_scales[ok] - self.truth_scales, axis=0),
            "smear": np.nanmean(self.fitted_smears[ok] - self.truth_smears, axis=0),
        }

    def pulls(self) -> dict[str, FloatArray]:
        """``(fit − truth) / total_stat`` per converged toy and category."""
        ok = self._ok()
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "scale": (self.fitted_scales[ok] - self.truth_scales) / self.err_scales[ok],
                "smear": (self.fitted_smears[ok] - self.truth_smears) / self.err_smears[ok],
            }

    def pull_summary(self) -> dict[str, dict[str, FloatArray]]:
        """Per kind: pull ``mean``, ``width`` (std) and their uncertainties, per category.

        The uncertainties are ``width/√n`` for the mean and ``width/√(2(n−1))`` for the
        width (Gaussian approximations).
        """
        out: dict[str, dict[str, FloatArray]] = {}
        for kind, p in self.pulls().items():
            n = np.sum(np.isfinite(p), axis=0)
            mean = np.nanmean(p, axis=0) if p.size else np.full(p.shape[1], np.nan)
            width = np.nanstd(p, axis=0, ddof=1) if p.shape[0] > 1 else np.full(p.shape[1], np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[kind] = {
                    "mean": mean,
                    "mean_err": width / np.sqrt(n),
                    "width": width,
                    "width_err": width / np.sqrt(2.0 * np.maximum(n - 1, 1)),
                }
        return out

    def pooled(self, kind: str) -> dict[str, float]:
        """Pull mean and width pooled over all categories of ``kind`` with their errors."""
        p = self.pulls()[kind]
        flat = p[np.isfinite(p)]
        n = flat.size
        if n < 2:
            return {
                "mean": math.nan,
                "mean_err": math.nan,
                "width": math.nan,
                "width_err": math.nan,
                "n": float(n),
            }
        w = float(np.std(flat, ddof=1))
        return {
            "mean": float(np.mean(flat)),
            "mean_err": w / math.sqrt(n),
            "width": w,
            "width_err": w / math.sqrt(2.0 * (n - 1)),
            "n": float(n),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (per-toy values included)."""

        def lst(a: FloatArray) -> Any:
            return [[_num(float(v)) for v in row] for row in np.atleast_2d(a)]

        summary = {
            kind: {k: [_num(float(v)) for v in vals] for k, vals in d.items()}
            for kind, d in self.pull_summary().items()
        }
        return {
            "n_toys": self.n_toys,
            "n_failed": self.n_failed,
            "truth_scales": [float(v) for v in self.truth_scales],
            "truth_smears": [float(v) for v in self.truth_smears],
            "bias": {k: [_num(float(x)) for x in v] for k, v in self.bias().items()},
            "pulls": summary,
            "pooled": {k: self.pooled(k) for k in ("scale", "smear")},
            "fitted_scales": lst(self.fitted_scales),
            "fitted_smears": lst(self.fitted_smears),
            "err_scales": lst(self.err_scales),
            "err_smears": lst(self.err_smears),
            "status": list(self.status),
            "seed": self.seed,
            "wall_time": self.wall_time,
        }


def _toys(seqs: Sequence[Any], progress: bool) -> Any:
    """``enumerate(seqs)``, with a progress bar over the toys when ``progress``."""
    if not progress:
        return enumerate(seqs)
    from rich.progress import track

    return enumerate(track(seqs, description="injection toys", transient=True))


def inject_arrays(
    data: ArrayLike,
    mc_w: ArrayLike,
    mc_w2: ArrayLike,
    regions: ArrayLike,
    mass_edges: ArrayLike,
    cell_scale: ArrayLike,
    cell_smear: ArrayLike,
    truth_scales: Sequence[float],
    truth_smears: Sequence[float],
    *,
    n_toys: int = 1,
    seed: int = 0,
    config: FitConfig | None = None,
    n_pseudo_data: float | None = None,
    scale_labels: Sequence[str] | None = None,
    smear_labels: Sequence[str] | None = None,
    progress: bool = False,
) -> InjectionResult:
    """Injection test on arrays (see :func:`inject`; array arguments as :func:`fit_arrays`)."""
    cfg = FitConfig() if config is None else config
    if n_toys < 1:
        msg = f"n_toys is {n_toys}; expected at least 1"
        raise FitError(msg)
    data_a = np.asarray(data, dtype=np.float64)
    mc_a = np.asarray(mc_w, dtype=np.float64)
    mc2_a = np.asarray(mc_w2, dtype=np.float64)
    cs = np.asarray(cell_scale, dtype=np.int64)
    cm = np.asarray(cell_smear, dtype=np.int64)
    ts = np.asarray(truth_scales, dtype=np.float64)
    tm = np.asarray(truth_smears, dtype=np.float64)
    n_scale, n_smear = len(ts), len(tm)
    if not (
        np.all(np.isfinite(ts)) and np.all(ts > 0) and np.all(np.isfinite(tm)) and np.all(tm >= 0)
    ):
        msg = f"injected scales must be > 0 and smearings >= 0; got {ts.tolist()}, {tm.tolist()}"
        raise FitError(msg)
    # the region selection of the real data fixes which regions get pseudo-data and how many
    base = build_problem(
        data_a,
        mc_a,
        mc2_a,
        regions,
        mass_edges,
        cs,
        cm,
        cfg.with_overrides(min_data=0.0) if n_pseudo_data is not None else cfg,
        n_scale=n_scale,
        n_smear=n_smear,
    )
    m = base.model
    x_true = -np.log(ts)
    v_true = tm**2
    mu, s2 = base.region_params_full(x_true, v_true)
    if n_pseudo_data is None:
        counts = m.data.sum(axis=1)
    else:
        tot = m.template[:, m.j_lo : m.j_lo + m.n_out].sum(axis=1)
        counts = float(n_pseudo_data) * tot / tot.sum()
    used = np.array(codes_all_index(regions, base.codes), dtype=np.int64)
    n_fine = m.template.shape[1]
    seqs = np.random.SeedSequence(seed).spawn(n_toys)
    fits: list[FitResult] = []
    t0 = time.perf_counter()
    # every toy is fitted with the same template, so its MC-statistics covariance (the
    # expensive bootstrap) is estimated once, on the first toy, and shared
    mc_cov: FloatArray | None = None
    for k, ss in _toys(seqs, progress):
        rng = np.random.default_rng(ss)
        fluct = np.maximum(
            m.template + rng.standard_normal(m.template.shape) * np.sqrt(m.variance), 0.0
        )
        shape_model = TemplateModel(
            template=fluct,
            variance=m.variance,
            data=m.data,
            h=m.h,
            j_lo=m.j_lo,
            rebin=m.rebin,
            n_sigma=m.n_sigma,
            double_gaussian=m.double_gaussian,
        )
        pred = np.maximum(shape_model.predict_fine(mu, s2), 0.0)
        norm = pred.sum(axis=1, keepdims=True)
        prob = np.where(norm > 0, pred / np.where(norm > 0, norm, 1.0), 0.0)
        pseudo_win = rng.poisson(counts[:, None] * prob).astype(np.float64)
        pseudo = np.zeros((len(np.asarray(regions).ravel()), n_fine))
        pseudo[used, m.j_lo : m.j_lo + m.n_out] = pseudo_win
        prob_k = build_problem(
            pseudo,
            mc_a,
            mc2_a,
            regions,
            mass_edges,
            cs,
            cm,
            cfg,
            n_scale=n_scale,
            n_smear=n_smear,
            warn=False,
        )
        if cfg.mc_stat == "bootstrap" and mc_cov is None:
            th_k, _ = minimise_objective(prob_k, start_values(prob_k, cfg)[0], cfg)
            # computed once, so with more replicas than a single fit uses (the error of a
            # 20-replica estimate, ±16 %, would be shared by every toy's pulls)
            boot = cfg.with_overrides(n_bootstrap=max(cfg.n_bootstrap, _SHARED_BOOTSTRAP))
            mc_cov = bootstrap_covariance(prob_k, th_k, boot)[0]
        res = fit_problem(
            prob_k,
            cfg,
            scale_labels=scale_labels,
            smear_labels=smear_labels,
            mc_covariance=mc_cov,
        )
        if res.status != "converged":
            log.warning("injection toy %d: fit failed (%s)", k, res.message)
        fits.append(res)
    wall = time.perf_counter() - t0

    def table(kind: str, what: str) -> FloatArray:
        rows = []
        for r in fits:
            cats = r.scales if kind == "scale" else r.smears
            rows.append(
                [
                    (c.value if what == "value" else c.total_stat)
                    if c.state == "fitted"
                    else np.nan
                    for c in cats
                ]
            )
        return np.array(rows, dtype=np.float64)

    out = InjectionResult(
        truth_scales=ts,
        truth_smears=tm,
        fitted_scales=table("scale", "value"),
        fitted_smears=table("smear", "value"),
        err_scales=table("scale", "err"),
        err_smears=table("smear", "err"),
        status=tuple(r.status for r in fits),
        seed=seed,
        wall_time=wall,
        fits=tuple(fits),
    )
    log.info(
        "injection: %d toys (%d failed) in %.1f s; scale pulls %s; smear pulls %s",
        out.n_toys,
        out.n_failed,
        wall,
        _fmt_pooled(out.pooled("scale")),
        _fmt_pooled(out.pooled("smear")),
    )
    return out


def _fmt_pooled(p: dict[str, float]) -> str:
    return (
        f"mean {p['mean']:+.2f} ± {p['mean_err']:.2f}, width {p['width']:.2f} ± "
        f"{p['width_err']:.2f}"
    )


def codes_all_index(regions: ArrayLike, used_codes: NDArray[np.int64]) -> list[int]:
    """Row index in ``regions`` of each used region code."""
    codes = np.asarray(regions, dtype=np.int64).ravel().tolist()
    pos = {c: i for i, c in enumerate(codes)}
    return [pos[int(c)] for c in used_codes]


def inject(
    hset: HistogramSet,
    truth_scales: Sequence[float],
    truth_smears: Sequence[float],
    *,
    n_toys: int = 1,
    seed: int = 0,
    config: FitConfig | None = None,
    n_pseudo_data: float | None = None,
    scheme: CategoryScheme | None = None,
    data_variation: str = "nominal",
    mc_variation: str = "nominal",
    progress: bool = False,
) -> InjectionResult:
    """Inject scales and smearings into pseudo-data built from the MC and fit them back.

    Args:
        hset: histograms; the MC templates build the pseudo-data, the data histograms give
            the number of pairs per region (unless ``n_pseudo_data``).
        truth_scales: injected scale per scale category (data correction convention).
        truth_smears: injected smearing per smear category.
        n_toys: number of pseudo-experiments.
        seed: master seed; toy ``k`` uses ``SeedSequence(seed).spawn(n_toys)[k]``.
        config: fit settings for every toy.
        n_pseudo_data: total pseudo-data pairs, shared between regions like the MC;
            default: the data counts per region inside the window.
        scheme: category scheme to check against the histograms.
        data_variation: data variation giving the counts per region.
        mc_variation: MC variation used as template.
        progress: show a progress bar over the toys.

    Returns:
        The :class:`InjectionResult` (pulls, biases, per-toy results).

    Raises:
        FitError: wrong number of injected values, or any fit set-up error.
    """
    sch = check_scheme(hset, scheme)
    if len(truth_scales) != len(sch.scale) or len(truth_smears) != len(sch.smear):
        msg = (
            f"injected {len(truth_scales)} scales and {len(truth_smears)} smearings, but the "
            f"scheme has {len(sch.scale)} scale and {len(sch.smear)} smear categories"
        )
        raise FitError(msg)
    if n_pseudo_data is None and not hset.datasets_of("data"):
        msg = "histograms contain no data: pass n_pseudo_data to set the pseudo-data size"
        raise FitError(msg)
    if hset.datasets_of("data"):
        regions, data, mc_w, mc_w2, edges = histogram_arrays(hset, data_variation, mc_variation)
    else:
        regions, mc_w, mc_w2 = hset.region_arrays("mc", mc_variation)
        data = np.zeros_like(mc_w)
        edges = hset.mass_edges
    return inject_arrays(
        data,
        mc_w,
        mc_w2,
        regions,
        edges,
        sch.cell_scale_index(),
        sch.cell_smear_index(),
        truth_scales,
        truth_smears,
        n_toys=n_toys,
        seed=seed,
        config=config,
        n_pseudo_data=n_pseudo_data,
        scale_labels=[c.label() for c in sch.scale],
        smear_labels=[c.label() for c in sch.smear],
        progress=progress,
    )


#: The scales injected by default, repeated over the scale categories (±0.5 %, ±0.3 %).
DEFAULT_SCALE_PATTERN = (1.005, 0.995, 1.003, 0.997)
#: The smearing injected by default in every smear category.
DEFAULT_SMEAR = 0.01


def injection_truth(
    scheme: CategoryScheme, path: str | Path | None = None
) -> tuple[list[float], list[float]]:
    """The scales and smearings to inject: from a JSON file with lists ``scale`` and
    ``smear``, else the default pattern (:data:`DEFAULT_SCALE_PATTERN` repeated over the
    scale categories, :data:`DEFAULT_SMEAR` in every smear category).

    The lengths are checked against the scheme by :func:`inject`.

    Raises:
        InvalidConfig: the file cannot be read or lacks the lists.
    """
    if path is None:
        n = len(DEFAULT_SCALE_PATTERN)
        scales = [DEFAULT_SCALE_PATTERN[k % n] for k in range(len(scheme.scale))]
        return scales, [DEFAULT_SMEAR] * len(scheme.smear)
    try:
        truth = json.loads(Path(path).read_text())
        return list(truth["scale"]), list(truth["smear"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        msg = f"{path}: expected JSON with lists 'scale' and 'smear' ({err})"
        raise InvalidConfig(msg) from None


def write_injection(result: InjectionResult, path: str | Path) -> Path:
    """Write ``result.to_dict()`` as JSON to ``path`` (atomically), stamped with the run id
    (:func:`zcalib.outputs.stamp`)."""
    from zcalib._atomic import atomic_write_text
    from zcalib.outputs import stamp

    return atomic_write_text(path, json.dumps(stamp(result.to_dict()), indent=2) + "\n")
