"""Time stability: one data scale per run bin × |η| bin from the median of the pair mass.

For every run bin and |η| bin, pairs with *both* electrons in that |η| bin are histogrammed
(fine mass binning, prior corrections applied, MC weighted and smeared as in the fit). The
peak position is the **median** of the mass inside a window (default 80-100 GeV), computed
from the fine histogram with linear interpolation inside the crossing bin; its statistical
error is ``1 / (2 f √N_eff)`` with the density at the median ``f`` estimated from the 40 %
and 60 % quantiles and ``N_eff = (Σw)² / Σw²``. The scale of run bin *r* and |η| bin *e* is

    scale[r, e] = median_MC[e] / median_data[r, e]

(pymin divides the PDG Z mass by the data median instead; the MC median removes the
resolution- and selection-dependent offset of the median and leaves the per-category
residuals to the following fit steps). Its error combines the data and MC median errors.

The scales are written as a correctionlib scale step (``corrections.json``):

* run bins of whole runs: the EGM scale signature ``(syst, run, ScEta, r9, AbsScEta, pt,
  seedGain)`` reading ``run`` and ``AbsScEta``
  (:func:`~zcalib.corrections.writer.build_scale_correction` over a run × |η| scheme,
  ``flow: clamp``), and the legacy text file ``<name>s.dat``;
* run bins that split a run at a luminosity block (``run-divide`` with granularity
  ``lumi``): the same signature plus a trailing real ``lumi`` input, as ``Category(syst) -> Binning(run) -> [Binning(lumi) ->] Binning(AbsScEta)``,
  all with ``flow: clamp``. The run edges are every bin boundary; a run shared by several
  bins is an interval ``[R, R+1)`` of its own, binned in ``lumi`` at the first lumi of each
  bin starting inside it (edges from 0 to 2³², so every lumi is covered); every leaf holds
  the |η|-bin scales of one run bin exactly as the whole-run payload does (same ``syst``
  keys ``scale``/``escale``/``scale_up``/``scale_down``, the crack neutral; runs or lumis
  between bins neutral, before the first and after the last clamped). The legacy text
  format cannot express lumis, so instead of ``<name>s.dat`` a TSV ``<name>s.tsv`` is
  written: a ``#`` header, then one row per run bin × |η| bin with the columns
  ``run_min lumi_min run_max lumi_max eta_min eta_max scale err`` (inclusive
  ``(run, lumi)`` ranges; ``lumi_min`` 0 / ``lumi_max`` 4294967295 = from the start / to
  the end of the run). Applying this step needs the luminosity block of every event: inputs
  without a ``lumiBlock``/``luminosityBlock`` branch are refused before any event is read.

Peaks are filled per run bin by packed ``(run << 32 | lumi)`` keys
(:class:`~zcalib.processors.runs.RunMassProcessor`), so split runs are shared between bins
by luminosity block in the derivation as in the correction. With ``validate`` the data are
read again with the new step applied, giving the peak positions after the correction, a χ²
of their spread around a constant per |η| bin, and the before/after plot (PNG; against the
run for whole-run bins, against the run-bin index for bins splitting runs).

Note: derived and validated on the same events, the "after" peaks agree with the MC median
by construction (up to selection migration at the window edges); an independent sample is
needed to test that the drift is removed (``tests/chain/test_time_stability.py`` does that).
"""

from __future__ import annotations

import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from zcalib._atomic import atomic_write_bytes, atomic_write_text
from zcalib.categories import Category, build_scheme
from zcalib.chain._events import data_run_keys, eta_scheme, run_loop, signed_eta
from zcalib.chain.run_divide import RunBins
from zcalib.config import DEFAULT_WINDOW, DatasetConfig
from zcalib.exceptions import InputError, InvalidConfig, OutputError
from zcalib.outputs import current_run_id, run_tag, stamp
from zcalib.processors.runs import LUMI_ALL, RunMassProcessor, assign_run_bins, pack_run_lumi
from zcalib.processors.zee import CorrectionStep
from zcalib.runner import EventLoop

__all__ = [
    "DEFAULT_ETA_BINS",
    "PeakTable",
    "TimeStabilityResult",
    "derive_time_stability",
    "eta_category",
    "fill_peaks",
    "flatness_chi2",
    "histogram_median",
    "plot_time_stability",
    "time_stability",
    "write_run_lumi_scales",
    "write_time_stability",
]

log = logging.getLogger(__name__)

#: pymin's |η| bins of the time-stability step.
DEFAULT_ETA_BINS: tuple[tuple[float, float], ...] = (
    (0.0, 1.0),
    (1.0, 1.4442),
    (1.566, 2.0),
    (2.0, 2.5),
)
_MIN_PAIRS = 20


def histogram_median(
    sumw: NDArray[np.float64],
    sumw2: NDArray[np.float64],
    edges: NDArray[np.float64],
    window: tuple[float, float],
) -> tuple[float, float, float]:
    """Median of a binned distribution inside ``window``, its error and ``N_eff``.

    Bins are used when their centre lies inside the window. The median is interpolated
    linearly inside the bin where the cumulative sum crosses one half; the error is
    ``(q60 - q40) / 0.2 / (2 √N_eff)`` (``1/(2 f √N)`` with the density from the quantiles).

    Returns:
        ``(median, error, n_eff)``; NaNs when the window holds no entries.

    Example:
        >>> edges = np.linspace(80, 100, 201)
        >>> x = np.exp(-0.5 * ((0.5 * (edges[1:] + edges[:-1]) - 91) / 2.5) ** 2) * 1000
        >>> m, e, n = histogram_median(x, x, edges, (80, 100))
        >>> round(m, 2)
        91.0
    """
    centres = 0.5 * (edges[1:] + edges[:-1])
    sel = (centres >= window[0]) & (centres < window[1])
    w = np.clip(sumw[sel], 0.0, None)
    lo = edges[:-1][sel]
    hi = edges[1:][sel]
    total = float(w.sum())
    if not total > 0:
        return math.nan, math.nan, 0.0
    w2 = float(np.clip(sumw2[sel], 0.0, None).sum())
    n_eff = total * total / w2 if w2 > 0 else 0.0
    cum = np.cumsum(w) / total

    def quantile(q: float) -> float:
        k = int(np.searchsorted(cum, q, side="left"))
        k = min(k, len(cum) - 1)
        prev = cum[k - 1] if k else 0.0
        frac = (q - prev) / (cum[k] - prev) if cum[k] > prev else 0.5
        return float(lo[k] + frac * (hi[k] - lo[k]))

    median = quantile(0.5)
    inv_density = (quantile(0.6) - quantile(0.4)) / 0.2
    err = inv_density / (2.0 * math.sqrt(n_eff)) if n_eff > 0 else math.inf
    return median, err, n_eff


@dataclass(frozen=True)
class PeakTable:
    """Median pair mass per run bin × |η| bin (data) and per |η| bin (MC).

    Attributes:
        data: ``(n_run_bins, n_eta)`` medians [GeV].
        data_err: their statistical errors.
        data_n: effective pairs in the window.
        mc: ``(n_eta,)`` MC medians (``nan`` when the loop had no MC).
        mc_err: their statistical errors.
        mc_n: MC effective entries.
    """

    data: NDArray[np.float64]
    data_err: NDArray[np.float64]
    data_n: NDArray[np.float64]
    mc: NDArray[np.float64]
    mc_err: NDArray[np.float64]
    mc_n: NDArray[np.float64]


def fill_peaks(
    loop: EventLoop,
    bins: RunBins,
    eta_bins: Sequence[tuple[float, float]],
    window: tuple[float, float],
    *,
    with_mc: bool = True,
) -> PeakTable:
    """One event loop: medians per run bin × |η| bin (data) and per |η| bin (MC)."""
    cfg = loop.cfg if with_mc else loop.only("data")
    scheme = eta_scheme(tuple(eta_bins), f"time-stability {_eta_name(eta_bins)} bins")
    out = run_loop(
        loop,
        cfg,
        RunMassProcessor,
        scheme,
        run_bins=bins.keys(),
        eta_bins=tuple(tuple(b) for b in eta_bins),
        signed_eta=signed_eta(eta_bins),
    )
    h = out["hist"]
    kinds = cfg.kinds()
    n_r, n_e = len(bins), len(eta_bins)
    edges = h.axes["mass"].edges
    nm = h.axes["mass"].size
    data = np.zeros((n_r, n_e, 2, nm))
    mc = np.zeros((n_e, 2, nm))
    view: Any = h.view(flow=False)
    for di, ds in enumerate(h.axes["dataset"]):
        for ri, rb in enumerate(h.axes["run_bin"]):
            for ei, eb in enumerate(h.axes["eta_bin"]):
                block = view[di, ri, ei]
                vals = np.stack([block["value"], block["variance"]])
                if kinds.get(ds) == "data" and 0 <= rb < n_r:
                    data[rb, eb] += vals
                elif kinds.get(ds) == "mc":
                    mc[eb] += vals
    out_d = np.full((3, n_r, n_e), math.nan)
    for r in range(n_r):
        for e in range(n_e):
            out_d[:, r, e] = histogram_median(data[r, e, 0], data[r, e, 1], edges, window)
    out_m = np.full((3, n_e), math.nan)
    if with_mc:
        for e in range(n_e):
            out_m[:, e] = histogram_median(mc[e, 0], mc[e, 1], edges, window)
    return PeakTable(
        data=out_d[0],
        data_err=out_d[1],
        data_n=out_d[2],
        mc=out_m[0],
        mc_err=out_m[1],
        mc_n=out_m[2],
    )


def flatness_chi2(peaks: NDArray[np.float64], errors: NDArray[np.float64]) -> dict[str, Any]:
    """χ² of the per-run-bin peaks around their weighted mean, per |η| bin and in total.

    Args:
        peaks: ``(n_run_bins, n_eta)`` peak positions.
        errors: their errors.

    Returns:
        ``{"chi2": [...], "ndf": [...], "total_chi2", "total_ndf", "p_value"}``.
    """
    from scipy.stats import chi2 as chi2_dist

    chis, ndfs = [], []
    for e in range(peaks.shape[1]):
        p, s = peaks[:, e], errors[:, e]
        ok = np.isfinite(p) & np.isfinite(s) & (s > 0)
        if ok.sum() < 2:
            chis.append(0.0)
            ndfs.append(0)
            continue
        w = 1.0 / s[ok] ** 2
        mean = float((w * p[ok]).sum() / w.sum())
        chis.append(float((w * (p[ok] - mean) ** 2).sum()))
        ndfs.append(int(ok.sum() - 1))
    total, ndf = float(sum(chis)), int(sum(ndfs))
    return {
        "chi2": chis,
        "ndf": ndfs,
        "total_chi2": total,
        "total_ndf": ndf,
        "p_value": float(chi2_dist.sf(total, ndf)) if ndf > 0 else math.nan,
    }


@dataclass(frozen=True)
class TimeStabilityResult:
    """Scales per run bin × |η| bin, the peaks they come from, and the validation.

    Attributes:
        bins: the run bins.
        eta_bins: the |η| bins.
        window: mass window of the medians [GeV].
        before: peaks with the prior corrections only.
        scales: ``(n_run_bins, n_eta)`` scales ``median_MC / median_data``.
        errors: their statistical errors (data ⊕ MC median errors).
        after: data peaks with this step applied too (``None`` without validation).
        name: correction name of the step.
    """

    bins: RunBins
    eta_bins: tuple[tuple[float, float], ...]
    window: tuple[float, float]
    before: PeakTable
    scales: NDArray[np.float64]
    errors: NDArray[np.float64]
    after: PeakTable | None = None
    name: str = "time_stability_scale"
    extra: dict[str, Any] = field(default_factory=dict)

    def scheme_categories(self) -> list[Category]:
        """The run × |η| scale categories, index ``r * n_eta + e``.

        Raises:
            InvalidConfig: the run bins split runs (categories cut on whole runs only: bins
                sharing a run would overlap).
        """
        if self.bins.splits_runs:
            first = next(b for b in self.bins.bins if not b.whole_runs)
            msg = (
                f"{self.bins.source}: run bin {first.label()} splits a run at a luminosity "
                "block: run x |eta| categories cannot express it (use correction_of and "
                "the run/lumi TSV)"
            )
            raise InvalidConfig(msg)
        cats: list[Category] = []
        for b in self.bins.bins:
            for lo, hi in self.eta_bins:
                cats.append(
                    eta_category(len(cats), (lo, hi), self.eta_bins, run=(b.run_min, b.run_max + 1))
                )
        return cats

    def chi2(self) -> dict[str, Any]:
        """Flatness χ² before and (if validated) after the correction."""
        out = {"before": flatness_chi2(self.before.data, self.before.data_err)}
        if self.after is not None:
            out["after"] = flatness_chi2(self.after.data, self.after.data_err)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (peaks, scales, χ²)."""

        def arr(x: NDArray[np.float64] | None) -> Any:
            if x is None:
                return None
            return [[_num(v) for v in row] for row in np.atleast_2d(x)]

        return {
            "schema_version": 1,
            "correction": self.name,
            "window": list(self.window),
            "eta_bins": [list(b) for b in self.eta_bins],
            "run_bins": [b.label() for b in self.bins.bins],
            "scales": arr(self.scales),
            "errors": arr(self.errors),
            "before": {
                "data": arr(self.before.data),
                "data_err": arr(self.before.data_err),
                "data_n": arr(self.before.data_n),
                "mc": arr(self.before.mc)[0],
                "mc_err": arr(self.before.mc_err)[0],
            },
            "after": None
            if self.after is None
            else {"data": arr(self.after.data), "data_err": arr(self.after.data_err)},
            "chi2": self.chi2(),
        }


def eta_category(
    index: int,
    eta: tuple[float, float],
    eta_bins: Sequence[tuple[float, float]],
    *,
    run: tuple[int, int] | None = None,
) -> Category:
    """The scale category of one η bin (and run range): a |η| range, or a signed-η range
    when the bins are signed (:func:`~zcalib.chain._events.signed_eta`), so that the
    correction reads ``ScEta`` and EE− and EE+ keep their own scales."""
    runs = (-math.inf, math.inf) if run is None else (float(run[0]), float(run[1]))
    if signed_eta(eta_bins):
        return Category("scale", index, run=runs, sceta=eta)
    return Category("scale", index, run=runs, eta=eta)


def _eta_name(eta_bins: Sequence[tuple[float, float]]) -> str:
    return "eta" if signed_eta(eta_bins) else "|eta|"


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def derive_time_stability(
    loop: EventLoop,
    bins: RunBins,
    *,
    eta_bins: Sequence[tuple[float, float]] = DEFAULT_ETA_BINS,
    window: tuple[float, float] = DEFAULT_WINDOW,
    name: str = "time_stability_scale",
    min_pairs: int = _MIN_PAIRS,
) -> TimeStabilityResult:
    """Peaks per run bin × |η| bin and the scales ``median_MC / median_data``.

    Raises:
        InvalidConfig: bad |η| bins or window.
        InputError: a data run outside every run bin, bins splitting runs on data without
            luminosity blocks, or a run × |η| cell or an MC |η| bin with fewer than
            ``min_pairs`` pairs.
    """
    check_setup(loop, bins, eta_bins, window)
    peaks = fill_peaks(loop, bins, eta_bins, window)
    for e, (lo, hi) in enumerate(eta_bins):
        if not peaks.mc_n[e] >= min_pairs:
            msg = (
                f"time-stability: MC has {peaks.mc_n[e]:.0f} effective pairs with both "
                f"electrons in {_eta_name(eta_bins)} {lo:g}-{hi:g} inside {window[0]:g}-"
                f"{window[1]:g} GeV; "
                f"need >= {min_pairs}"
            )
            raise InputError(msg)
        for r, b in enumerate(bins.bins):
            if not peaks.data_n[r, e] >= min_pairs:
                msg = (
                    f"time-stability: run bin {b.label()} has {peaks.data_n[r, e]:.0f} pairs "
                    f"with both electrons in {_eta_name(eta_bins)} {lo:g}-{hi:g} inside "
                    f"{window[0]:g}-"
                    f"{window[1]:g} GeV; need >= {min_pairs}: use larger run bins "
                    "(run-divide min_events)"
                )
                raise InputError(msg)
    scales = peaks.mc[None, :] / peaks.data
    errors = scales * np.hypot(
        peaks.data_err / peaks.data, peaks.mc_err[None, :] / peaks.mc[None, :]
    )
    return TimeStabilityResult(
        bins=bins,
        eta_bins=tuple(tuple(b) for b in eta_bins),  # type: ignore[misc]
        window=window,
        before=peaks,
        scales=scales,
        errors=errors,
        name=name,
    )


def check_setup(
    loop: EventLoop,
    bins: RunBins,
    eta_bins: Sequence[tuple[float, float]],
    window: tuple[float, float],
) -> None:
    """Set-up checks before any event is processed (bins, |η| bins, window, run coverage).

    Run bins may split runs at a luminosity block (the correction is then keyed on ``run``
    and ``lumi``); the data must have luminosity blocks then.

    Raises:
        InvalidConfig: bad |η| bins or window.
        InputError: a data run (or lumi) outside every run bin; bins splitting runs on a
            data file without a luminosity-block branch (its lumis would all read 0).
    """
    if not eta_bins:
        msg = "time-stability: no |eta| bins"
        raise InvalidConfig(msg)
    for lo, hi in eta_bins:
        if not lo < hi:
            msg = f"time-stability: {_eta_name(eta_bins)} bin [{lo:g}, {hi:g}) must have lo < hi"
            raise InvalidConfig(msg)
    if not 0 < window[0] < window[1]:
        msg = f"time-stability: window {tuple(window)} must be (lo, hi) with 0 < lo < hi"
        raise InvalidConfig(msg)
    data = loop.only("data")
    if bins.splits_runs:
        _check_lumis(data, bins)
    bins.check_coverage(data_run_keys(data))


def _check_lumis(cfg: DatasetConfig, bins: RunBins) -> None:
    """Raise if a data file has no luminosity-block branch (bins split runs)."""
    from zcalib.io.formats import event_branch
    from zcalib.io.preflight import preflight

    first = next(b for b in bins.bins if not b.whole_runs)
    lacks = {
        "flat": "the column_map names no 'lumi' branch",
        "parquet": "it has no 'lumi' column",
    }.get(cfg.format, "it has no 'lumiBlock' branch")
    for info in preflight(cfg).files:
        if event_branch(cfg.format, "lumi", dict(info.optional), cfg.column_map) is None:
            msg = (
                f"{bins.source}: run bin {first.label()} splits a run at a luminosity block, "
                f"but data file {info.path} has no luminosity blocks ({lacks}); use run bins "
                "of whole runs (run-divide granularity 'run')"
            )
            raise InputError(msg)


def correction_of(result: TimeStabilityResult) -> Any:
    """The correctionlib scale step: run × AbsScEta, or run × lumi × AbsScEta when the run
    bins split runs (layout in the module docstring)."""
    from zcalib.corrections import build_scale_correction

    if result.bins.splits_runs:
        return _run_lumi_correction(result)
    scheme = build_scheme(result.scheme_categories(), [], source=f"{result.name} run x |eta|")
    return build_scale_correction(
        result.name,
        scheme,
        result.scales.ravel(),
        result.errors.ravel(),
        description=(
            f"Time stability: median(MC)/median(data) of m_ee in "
            f"{result.window[0]:g}-{result.window[1]:g} GeV per run bin x "
            f"{'eta_SC' if signed_eta(result.eta_bins) else '|eta_SC|'} bin "
            "(both electrons in the bin)"
        ),
    )


def _run_lumi_correction(result: TimeStabilityResult) -> Any:
    """The scale step keyed on ``run``, ``lumi`` and ``AbsScEta`` (bins splitting runs).

    Every leaf is the ``AbsScEta`` binning :func:`build_scale_correction` writes for the
    |η| bins of one run bin (same values, rounding, neutral crack and ``syst`` keys).
    """
    from correctionlib import schemav2

    from zcalib.corrections import SCALE_SYST_KEYS, build_scale_correction

    bins = result.bins.bins
    eta_cats = [eta_category(e, b, result.eta_bins) for e, b in enumerate(result.eta_bins)]
    neutral: dict[str, float] = {"scale": 1.0, "escale": 0.0, "scale_up": 1.0, "scale_down": 1.0}
    leaves: list[dict[str, Any]] = []
    ref: Any = None
    for r, b in enumerate(bins):
        try:
            ref = build_scale_correction(
                result.name, eta_cats, result.scales[r], result.errors[r], description=""
            )
        except OutputError as err:
            msg = f"run bin {b.label()}: {err}"
            raise OutputError(msg) from None
        leaves.append({item.key: _binning_of(item.value) for item in ref.data.content})
    # runs holding a bin boundary inside them get an interval [R, R+1) binned in lumi
    split = {b.run_min for b in bins if b.lumi_min != 0}
    split |= {b.run_max for b in bins if b.lumi_max != LUMI_ALL}
    edges = sorted(
        {b.run_min for b in bins}
        | {b.run_max + 1 for b in bins}
        | split
        | {run + 1 for run in split}
    )
    starts = np.array([b.start_key for b in bins], dtype=np.int64)
    stops = np.array([b.stop_key for b in bins], dtype=np.int64)
    lows = np.array(edges[:-1], dtype=np.int64)
    owner = assign_run_bins(pack_run_lumi(lows, np.zeros_like(lows)), starts, stops)
    sharing: dict[int, list[tuple[int, int, int]]] = {run: [] for run in split}
    for r, b in enumerate(bins):
        for run in {b.run_min, b.run_max} & split:
            lo = b.lumi_min if run == b.run_min else 0
            hi = (b.lumi_max if run == b.run_max else LUMI_ALL) + 1
            sharing[run].append((lo, hi, r))

    def lumi_node(run: int, key: str) -> Any:
        lumi_edges: list[float] = [0.0]
        content: list[Any] = []
        for lo, hi, r in sorted(sharing[run]):
            if lo > lumi_edges[-1]:  # lumis between two bins: neutral
                lumi_edges.append(float(lo))
                content.append(neutral[key])
            lumi_edges.append(float(hi))
            content.append(leaves[r][key])
        if lumi_edges[-1] < LUMI_ALL + 1:
            lumi_edges.append(float(LUMI_ALL + 1))
            content.append(neutral[key])
        return schemav2.Binning(
            nodetype="binning", input="lumi", edges=lumi_edges, content=content, flow="clamp"
        )

    def run_node(key: str) -> Any:
        content: list[Any] = []
        for lo, r in zip(lows.tolist(), owner.tolist(), strict=True):
            if lo in split:
                content.append(lumi_node(lo, key))
            else:
                content.append(leaves[r][key] if r >= 0 else neutral[key])
        return schemav2.Binning(
            nodetype="binning",
            input="run",
            edges=[float(x) for x in edges],
            content=content,
            flow="clamp",
        )

    lumi = schemav2.Variable(
        name="lumi",
        type="real",
        description="Luminosity block (a real; run bins split runs at a luminosity block)",
    )
    inputs = [*ref.inputs, lumi]  # the EGM signature (syst, run, ...), then lumi
    return schemav2.Correction(
        name=result.name,
        description=(
            f"Time stability: median(MC)/median(data) of m_ee in "
            f"{result.window[0]:g}-{result.window[1]:g} GeV per run bin x "
            f"{'eta_SC' if signed_eta(result.eta_bins) else '|eta_SC|'} bin "
            "(both electrons in the bin); run bins split runs at luminosity blocks"
        ),
        version=1,
        inputs=inputs,
        output=ref.output,
        data=schemav2.Category(
            nodetype="category",
            input="syst",
            content=[
                schemav2.CategoryItem(key=key, value=run_node(key)) for key in SCALE_SYST_KEYS
            ],
        ),
    )


def _binning_of(node: Any) -> Any:
    """A one-input ``MultiBinning`` as the equivalent ``Binning`` (other nodes unchanged)."""
    from correctionlib import schemav2

    if isinstance(node, schemav2.MultiBinning) and len(node.inputs) == 1:
        return schemav2.Binning(
            nodetype="binning",
            input=node.inputs[0],
            edges=node.edges[0],
            content=node.content,
            flow=node.flow,
        )
    return node


def write_run_lumi_scales(result: TimeStabilityResult, path: str | Path) -> Path:
    """The TSV of scales per run bin × |η| bin for bins splitting runs (module docstring)."""
    lines = ["#run_min\tlumi_min\trun_max\tlumi_max\teta_min\teta_max\tscale\terr"]
    for r, b in enumerate(result.bins.bins):
        for e, (lo, hi) in enumerate(result.eta_bins):
            fields = [b.run_min, b.lumi_min, b.run_max, b.lumi_max]
            nums = [lo, hi, float(result.scales[r, e]), float(result.errors[r, e])]
            lines.append("\t".join([*(str(int(x)) for x in fields), *(_fmt(x) for x in nums)]))
    return atomic_write_text(path, "\n".join([*lines, f"# {run_tag()}"]) + "\n")


def _fmt(v: float) -> str:
    """Shortest exact text of a number (integers without a decimal point)."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def write_time_stability(
    result: TimeStabilityResult, out_dir: str | Path, *, plot: bool = True
) -> dict[str, Path]:
    """Write ``corrections.json``, the scales table, ``time_stability.json``, the plot.

    The scales table is the legacy ``<name>s.dat`` for whole-run bins, ``<name>s.tsv``
    (:func:`write_run_lumi_scales`) for bins splitting runs.

    Returns:
        ``{"corrections", "scales" | "run_lumi_scales", "summary", "plot"}`` paths (``plot``
        if drawn; ``scales`` is the legacy file, absent when the bins split runs).
    """
    from zcalib.corrections import write_correction_set, write_legacy

    out = Path(out_dir)
    paths = {
        "corrections": write_correction_set(
            out / "corrections.json",
            [correction_of(result)],
            description=f"zcalib time stability ({result.name})",
        )
    }
    if result.bins.splits_runs:
        paths["run_lumi_scales"] = write_run_lumi_scales(result, out / f"{result.name}s.tsv")
    else:
        paths["scales"] = write_legacy(
            out / f"{result.name}s.dat",
            result.scheme_categories(),
            result.scales.ravel(),
            result.errors.ravel(),
            kind="scale",
        )
    paths["summary"] = atomic_write_text(
        out / "time_stability.json", json.dumps(stamp(result.to_dict()), indent=2) + "\n"
    )
    if plot:
        paths["plot"] = plot_time_stability(result, out / "time_stability.png")
    return paths


def step_of(result: TimeStabilityResult, corrections_path: Path) -> CorrectionStep:
    """The processor step of a written time-stability correction."""
    return CorrectionStep(
        name=result.name,
        payload=corrections_path.read_text(),
        kind="scale",
        source=str(corrections_path),
    )


def time_stability(
    loop: EventLoop,
    bins: RunBins,
    out_dir: str | Path,
    *,
    eta_bins: Sequence[tuple[float, float]] = DEFAULT_ETA_BINS,
    window: tuple[float, float] = DEFAULT_WINDOW,
    name: str = "time_stability_scale",
    validate: bool = True,
    plot: bool = True,
) -> tuple[TimeStabilityResult, dict[str, Path]]:
    """Derive, write and (optionally) validate the time-stability step.

    Validation reads the data again with the new step appended to the prior corrections
    and stores the corrected peaks (``after``) in the summary and the plot.

    Returns:
        The result and the paths written.
    """
    res = derive_time_stability(loop, bins, eta_bins=eta_bins, window=window, name=name)
    paths = write_time_stability(res, out_dir, plot=False)
    if validate:
        step = step_of(res, paths["corrections"])
        after = fill_peaks(
            loop.with_corrections((*loop.corrections, step)), bins, eta_bins, window, with_mc=False
        )
        res = TimeStabilityResult(
            bins=res.bins,
            eta_bins=res.eta_bins,
            window=res.window,
            before=res.before,
            scales=res.scales,
            errors=res.errors,
            after=after,
            name=res.name,
        )
        chi = res.chi2()
        log.debug(  # the CLI prints it (once)
            "time stability: peak flatness chi2/ndf before %.1f/%d, after %.1f/%d",
            chi["before"]["total_chi2"],
            chi["before"]["total_ndf"],
            chi["after"]["total_chi2"],
            chi["after"]["total_ndf"],
        )
    paths = write_time_stability(res, out_dir, plot=plot)
    return res, paths


def plot_time_stability(result: TimeStabilityResult, path: str | Path) -> Path:
    """Peak position vs run (one panel per |η| bin), before and after the correction (PNG).

    Run bins splitting runs are drawn against their index (several bins may share a run),
    labelled with their first ``run:lumi``.
    """
    import mplhep as hep
    from matplotlib import style as mstyle
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    bins = result.bins.bins
    by_index = result.bins.splits_runs
    if by_index:
        x = np.arange(len(bins), dtype=np.float64)
        xerr = np.full(len(bins), 0.5)
    else:
        x = np.array([0.5 * (b.run_min + b.run_max) for b in bins])
        xerr = np.array([0.5 * (b.run_max - b.run_min) + 0.5 for b in bins])
    n_e = len(result.eta_bins)
    before = result.before
    after = result.after
    with mstyle.context(hep.style.CMS):
        fig = Figure(figsize=(12, 3.2 * n_e + 1.5))
        axes = fig.subplots(n_e, 1, sharex=True, squeeze=False)[:, 0]
        for e, ax in enumerate(axes):
            lo, hi = result.eta_bins[e]
            ax.errorbar(
                x,
                before.data[:, e],
                xerr=xerr,
                yerr=before.data_err[:, e],
                fmt="o",
                color="#e42536",
                markersize=4,
                label="data, before",
            )
            if after is not None:
                ax.errorbar(
                    x,
                    after.data[:, e],
                    xerr=xerr,
                    yerr=after.data_err[:, e],
                    fmt="s",
                    color="black",
                    markersize=4,
                    label="data, after",
                )
            if math.isfinite(before.mc[e]):
                ax.axhspan(
                    before.mc[e] - before.mc_err[e],
                    before.mc[e] + before.mc_err[e],
                    color="#5790fc",
                    alpha=0.4,
                )
                ax.axhline(before.mc[e], color="#1f4e9c", linewidth=1.5, label="MC")
            ymin, ymax = ax.get_ylim()
            ax.set_ylim(ymin, ymax + 0.35 * (ymax - ymin))  # room for the labels
            ax.set_ylabel("median $m_{ee}$ [GeV]", fontsize=16)
            ax.text(
                0.02,
                0.92,
                (
                    f"$\\eta_{{SC}}$ {lo:g} to {hi:g}"
                    if signed_eta(result.eta_bins)
                    else f"$|\\eta_{{SC}}|$ {lo:g}-{hi:g}"
                ),
                transform=ax.transAxes,
                va="top",
                fontsize=16,
            )
            ax.tick_params(labelsize=13)
            if e == 0:
                ax.legend(loc="upper right", fontsize=13, ncol=3, frameon=False)
        if by_index:

            def first_key(v: float, _pos: int) -> str:
                k = round(v)
                if not (0 <= k < len(bins) and abs(v - k) < 1e-9):
                    return ""
                return f"{bins[k].run_min}:{bins[k].lumi_min}"

            axes[-1].xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True))
            axes[-1].xaxis.set_major_formatter(FuncFormatter(first_key))
            axes[-1].tick_params(axis="x", labelrotation=30)
            axes[-1].set_xlabel("run bin (first run:lumi)", fontsize=16)
        else:
            axes[-1].set_xlabel("run", fontsize=16)
        hep.cms.label(text="Work in progress", data=True, ax=axes[0], loc=0, fontsize=16)
        buf = io.BytesIO()
        fig.savefig(
            buf,
            format="png",
            dpi=80,
            bbox_inches="tight",
            metadata={"zcalib run": current_run_id()},
        )
    return atomic_write_bytes(path, buf.getvalue())
