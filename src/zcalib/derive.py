"""One derivation step's outputs, and the end-to-end demo.

:func:`write_outputs` turns a :class:`~zcalib.fit.FitResult` into the files a derivation
delivers, each written atomically:

* ``corrections.json`` — correctionlib schema v2 (EGM keys ``scale, escale, scale_up,
  scale_down`` / ``smear, esmear, smear_up, smear_down``, ``flow: clamp``), validated;
* ``<step>_scales.dat`` / ``<step>_smearings.dat`` — the legacy pymin text formats;
* ``fit_result.json`` — the provenance record (per category: bins, type, value, stat error,
  n events; fit status, evaluations, wall times, versions, config, input checksums).

:func:`run_demo` is ``zcalib demo``: generate demo data if absent, fill histograms on a local
Dask cluster, fit the 8-category |η| × R9 scheme, write everything to ``output/demo/``.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zcalib._atomic import atomic_write_text, written_together
from zcalib.categories import Category, CategoryScheme
from zcalib.corrections.egm import EgmNames
from zcalib.exceptions import InvalidConfig
from zcalib.fit import FitConfig, FitResult
from zcalib.fit.smooth import SmoothResult
from zcalib.histograms import HistogramSet
from zcalib.outputs import check_step_name, output_run, run_tag, stamp

__all__ = [
    "DEMO_N_DATA",
    "DEMO_N_MC",
    "DemoResult",
    "StepSyst",
    "check_smooth",
    "check_step_name",
    "comparison_rows",
    "run_demo",
    "smooth_failure",
    "versions",
    "write_outputs",
    "write_step_payload",
]

log = logging.getLogger(__name__)

DEMO_N_DATA = 400_000
DEMO_N_MC = 1_200_000
_PACKAGES = (
    "zcalib",
    "coffea",
    "awkward",
    "uproot",
    "hist",
    "numpy",
    "scipy",
    "correctionlib",
    "dask",
    "distributed",
)


def versions() -> dict[str, str]:
    """Versions of Python and the packages a derivation depends on."""
    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _bins(cat: Category) -> dict[str, Any]:
    def num(v: float) -> float | None:
        return None if math.isinf(v) else v

    out: dict[str, Any] = {}
    for name, (lo, hi) in cat.cuts().items():
        if (lo, hi) != (-math.inf, math.inf):
            out["abs_eta" if name == "eta" else name] = [
                num(lo),
                num(hi - 1 if name == "run" else hi),
            ]
    if cat.gain is not None:
        out["gain"] = cat.gain
    return out


def check_smooth(
    scheme: CategoryScheme,
    scale: str | None,
    smear: str | None,
    *,
    where: str,
    categories: str,
    unset: str = "set smooth.{kind}: null",
) -> None:
    """Refuse smooth Et curves (:func:`zcalib.fit.smooth.fit_smooth`) on categories without
    a cell of at least two Et bins, before any work (a pipeline fit step, ``zcalib fit
    --smooth-scale/--smooth-smear``).

    Args:
        scheme: the categories to fit.
        scale: the scale curve form (``None``: binned scales).
        smear: the smearing curve form (``None``: binned smearings).
        where: the message's prefix (``{kind}`` is replaced by ``scale``/``smear``).
        categories: how the categories are named in the message (their file).
        unset: how to turn the curve off (``{kind}`` as in ``where``).

    Raises:
        InvalidConfig: a curve is asked for a kind with no Et-binned cell.
    """
    from zcalib.fit.smooth import et_groups

    for kind, form in (("scale", scale), ("smear", smear)):
        if form is not None and not et_groups(getattr(scheme, kind)):
            msg = (
                f"{where.format(kind=kind)}: smooth.{kind} = {form!r} needs {kind} categories "
                f"with at least two Et bins per cell; {categories} has none "
                f"({unset.format(kind=kind)})"
            )
            raise InvalidConfig(msg)


def smooth_failure(smooth: SmoothResult) -> str:
    """Why smooth curves failed (the failed step's message)."""
    return "smooth Et curve(s) failed: " + "; ".join(smooth.failures())


def legacy_inexpressible(scheme: CategoryScheme) -> str:
    """What the categories cut on beyond the legacy text columns (``""``: nothing): signed
    η (``sceta``) or other input columns, which ``<step>_scales.dat`` cannot express."""
    cats = (*scheme.scale, *scheme.smear)
    beyond = [*(["sceta"] if any(c.sceta != (-math.inf, math.inf) for c in cats) else [])]
    beyond += list(scheme.columns)
    return ", ".join(beyond)


def write_outputs(
    result: FitResult,
    scheme: CategoryScheme,
    out_dir: str | Path,
    *,
    step: str = "step",
    hset: HistogramSet | None = None,
    extra: dict[str, Any] | None = None,
    names: EgmNames | None = None,
    smear_seed: int = 0,
    syst: StepSyst | None = None,
    write_failed: bool = False,
    smooth: SmoothResult | None = None,
    record_only: bool = False,
) -> dict[str, Path]:
    """Write correctionlib JSON, legacy text files and ``fit_result.json`` for one step.

    The correctionlib file has the EGM layout (:mod:`zcalib.corrections.egm`): compound
    ``EGMScale_Compound_<P>_<era>`` over the step ``EGMScale_<step>_<era>``,
    ``EGMSmearAndSyst_<P>PTsplit_<era>`` and ``EGMRandomGenerator``. ``escale``/``esmear``
    are stat ⊕ MC stat ⊕ syst; ``fit_result.json`` keeps each component per category.

    A failed fit (``result.status == "failed"``) writes only ``fit_result.json`` (the record
    of why it failed), never a correction payload, unless ``write_failed``: then the payload
    and legacy files are written too, their descriptions marked ``FAILED FIT``.

    Args:
        result: the fit result.
        scheme: the category scheme fitted.
        out_dir: output folder (created).
        step: step name (the scale step is ``EGMScale_<step>_<era>``; legacy file names).
        hset: the histograms fitted (their provenance goes into ``fit_result.json``).
        extra: more provenance entries (config, command line...).
        names: era and collection of the payload names (default: 2022preEE, Ele).
        smear_seed: seed of the shipped random-number generator (the processor's).
        syst: systematic uncertainties per category (absolute; default none).
        write_failed: write the payload of a failed fit as well (marked failed).
        smooth: smooth Et curves of this fit (:func:`zcalib.fit.smooth.fit_smooth`): the
            payload holds them as formulas of pt in their cells
            (:mod:`zcalib.corrections.smooth`), ``fit_result.json`` their parameters under
            ``smooth``. A failed curve fails the step like a failed fit.
        record_only: write only ``fit_result.json``, whatever the fit's status (a closure
            fit's record: its corrections are not applied).

    Returns:
        ``{"corrections", "scales", "smearings", "only_step", "fit_result"}`` → path (only
        ``fit_result`` for a failed fit without ``write_failed``). ``<step>_only_step.tsv`` is
        the step's scales with their stat ⊕ MC-stat errors for ``zcalib combine`` (pymin
        ``--only-step``).
    """
    from zcalib.corrections import validate_file

    check_step_name(step)
    out = Path(out_dir)
    with output_run(out), written_together():
        paths = _write_outputs(
            result,
            scheme,
            out,
            step,
            hset,
            extra,
            names,
            smear_seed,
            syst,
            write_failed,
            smooth,
            record_only,
        )
    if "corrections" in paths:
        validate_file(paths["corrections"])
    return paths


def _write_outputs(
    result: FitResult,
    scheme: CategoryScheme,
    out: Path,
    step: str,
    hset: HistogramSet | None,
    extra: dict[str, Any] | None,
    names: EgmNames | None,
    smear_seed: int,
    syst: StepSyst | None,
    write_failed: bool,
    smooth: SmoothResult | None,
    record_only: bool,
) -> dict[str, Path]:
    from zcalib.corrections import write_legacy, write_only_step

    names = names or EgmNames()
    record = fit_record(result, scheme, step=step, hset=hset, extra=extra, syst=syst)
    failed = not result.converged
    if smooth is not None:
        record["smooth"] = smooth.to_dict()
        if not smooth.converged:
            failed = True
            record["status"] = "failed"
            record["message"] = smooth_failure(smooth)
    if record_only or (failed and not write_failed):
        # the folder must not keep a payload of an earlier run next to this record
        stale_files = (
            "corrections.json",
            f"{step}_scales.dat",
            f"{step}_smearings.dat",
            f"{step}_only_step.tsv",
        )
        for stale in stale_files:
            (out / stale).unlink(missing_ok=True)
        path = atomic_write_text(out / "fit_result.json", json.dumps(record, indent=2))
        return {"fit_result": path}
    scales = result.scale_values()
    smears = result.smear_values()
    syst = syst or StepSyst.none(len(scales), len(smears))
    scale_err = _quadrature([c.total_stat for c in result.scales], syst.scale)
    smear_err = _quadrature([c.total_stat for c in result.smears], syst.smear)
    desc = f"zcalib {versions()['zcalib']} step '{step}' ({result.status}, {run_tag()})"
    if failed:
        desc = f"FAILED FIT, do not use: {desc}"
    paths = {
        "corrections": write_step_payload(
            out / "corrections.json",
            scheme,
            (scales, scale_err),
            (smears, smear_err),
            step=step,
            names=names,
            seed=smear_seed,
            description=desc
            + (f", errors stat (+) MC stat (+) syst ({syst.label})" if syst.label else ""),
            smooth=smooth,
            smear_model=result.config.double_gaussian_shape(),
        )
    }
    beyond = legacy_inexpressible(scheme)
    if beyond:
        # CMSSW and pymin read the legacy text in |eta| and fixed columns only
        for stale in (f"{step}_scales.dat", f"{step}_smearings.dat", f"{step}_only_step.tsv"):
            (out / stale).unlink(missing_ok=True)
        record["legacy"] = f"not written: the categories cut on {beyond}"
        log.warning(
            "%s: legacy %s_scales.dat/_smearings.dat/_only_step.tsv not written: the categories cut on %s, "
            "which the legacy text format cannot express (see corrections.json)",
            step,
            step,
            beyond,
        )
    else:
        paths["scales"] = write_legacy(
            out / f"{step}_scales.dat", list(scheme.scale), scales, scale_err, kind="scale"
        )
        paths["smearings"] = write_legacy(
            out / f"{step}_smearings.dat", list(scheme.smear), smears, smear_err, kind="smear"
        )
        paths["only_step"] = write_only_step(
            out / f"{step}_only_step.tsv", scheme, scales, [c.total_stat for c in result.scales]
        )
    record["payload"] = {
        "era": names.era,
        "collection": names.particle,
        "compound": names.compound,
        "smear": names.smear,
        "random_generator": names.rng,
        "smear_seed": smear_seed,
    }
    paths["fit_result"] = atomic_write_text(
        out / "fit_result.json", json.dumps(record, indent=2, sort_keys=False)
    )
    return paths


@dataclass(frozen=True)
class StepSyst:
    """Systematic uncertainties of one step per category (absolute), by source.

    Attributes:
        scale: total systematic of each scale category.
        smear: total systematic of each smear category.
        scale_by_source: per source, per scale category.
        smear_by_source: per source, per smear category.
        label: how the sources were combined (for descriptions), ``""`` for none.
    """

    scale: tuple[float, ...]
    smear: tuple[float, ...]
    scale_by_source: dict[str, tuple[float, ...]] = field(default_factory=dict)
    smear_by_source: dict[str, tuple[float, ...]] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def none(cls, n_scale: int, n_smear: int) -> StepSyst:
        """No systematic uncertainty."""
        return cls(scale=(0.0,) * n_scale, smear=(0.0,) * n_smear)


def _quadrature(stat: Sequence[float], syst: Sequence[float]) -> NDArray[np.float64]:
    a = np.asarray(stat, dtype=np.float64)
    b = np.asarray(syst, dtype=np.float64)
    if a.shape != b.shape:
        msg = f"{len(b)} systematic errors for {len(a)} categories"
        raise ValueError(msg)
    out: NDArray[np.float64] = np.sqrt(a**2 + b**2)
    return out


def write_step_payload(
    path: str | Path,
    scheme: CategoryScheme,
    scale: tuple[ArrayLike, ArrayLike],
    smear: tuple[ArrayLike, ArrayLike] | None,
    *,
    step: str,
    names: EgmNames,
    seed: int = 0,
    description: str,
    smooth: SmoothResult | None = None,
    smear_model: tuple[float, float] | None = None,
) -> Path:
    """Write one step's EGM-layout payload (values and total absolute errors per category).

    Args:
        path: output ``.json`` / ``.json.gz``.
        scheme: the categories.
        scale: ``(values, errors)`` of the scale categories.
        smear: ``(values, errors)`` of the smear categories, or ``None`` (no smearing).
        step: step name.
        names: era and collection.
        seed: smearing seed of the random-number generator.
        description: payload description.
        smooth: smooth Et curves replacing the binned values of their cells (formulas).
        smear_model: ``(fraction, width_ratio)`` of a double-Gaussian smearing fit
            (``FitConfig.double_gaussian_shape()``): the smearing descriptions say how to draw
            it (:func:`zcalib.corrections.egm.smear_model_note`); ``None``: single Gaussian.

    Returns:
        The path written (validated).
    """
    from zcalib.corrections import (
        ScaleSource,
        build_scale_correction,
        build_smear_correction,
        egm_corrections,
        write_correction_set,
    )
    from zcalib.corrections.egm import smear_model_note
    from zcalib.corrections.smooth import with_smooth_curves
    from zcalib.fit.smooth import curve_map

    own = build_scale_correction(
        names.step(step),
        scheme,
        scale[0],
        scale[1],
        description=f"Data energy scale, {description}",
    )
    smear_corr = (
        None
        if smear is None
        else build_smear_correction(
            names.smear,
            scheme,
            smear[0],
            smear[1],
            description=" ".join(
                x for x in (f"MC extra smearing, {description}", smear_model_note(smear_model)) if x
            ),
        )
    )
    if smooth is not None:
        curves = curve_map(smooth)
        own = with_smooth_curves(own, scheme.scale, curves["scale"], "scale")
        if smear_corr is not None:
            smear_corr = with_smooth_curves(smear_corr, scheme.smear, curves["smear"], "smear")
    corrections, compounds = egm_corrections(
        names,
        [ScaleSource.from_correction(own, names.step(step))],
        smear_corr,
        seed=seed,
        description=description,
    )
    return write_correction_set(path, corrections, compounds, description=description)


def fit_record(
    result: FitResult,
    scheme: CategoryScheme,
    *,
    step: str,
    hset: HistogramSet | None = None,
    extra: dict[str, Any] | None = None,
    syst: StepSyst | None = None,
) -> dict[str, Any]:
    """The ``fit_result.json`` content (JSON-serialisable).

    Per category: ``value``, ``stat``, ``mc_stat``, ``total_stat`` (stat ⊕ MC stat),
    ``syst`` (and ``syst_by_source``) and ``total`` (stat ⊕ MC stat ⊕ syst, the payload's
    ``escale``/``esmear`` of the step).
    """
    fit = result.to_dict()
    syst = syst or StepSyst.none(len(result.scales), len(result.smears))

    def cats(kind: str, fits: list[dict[str, Any]], cats_: tuple[Category, ...]) -> list[Any]:
        total = syst.scale if kind == "scale" else syst.smear
        by_source = syst.scale_by_source if kind == "scale" else syst.smear_by_source
        rows = []
        for i, (c, f) in enumerate(zip(cats_, fits, strict=True)):
            stat = f.get("total_stat")
            row = {"type": kind, "bins": _bins(c), **f, "syst": total[i]}
            if by_source:
                row["syst_by_source"] = {k: v[i] for k, v in by_source.items()}
            row["total"] = (
                None if stat is None else math.sqrt(float(stat) ** 2 + float(total[i]) ** 2)
            )
            rows.append(row)
        return rows

    meta = dict(hset.metadata) if hset is not None else {}
    run = meta.get("run", {})
    return stamp(
        {
            "schema_version": 1,
            "step": step,
            "status": result.status,
            "message": result.message,
            "n_eval": result.n_eval,
            "categories": cats("scale", fit.pop("scales"), scheme.scale)
            + cats("smear", fit.pop("smears"), scheme.smear),
            "fit": fit,
            "wall_time": {"fill_s": run.get("wall_time_fill_s"), "fit_s": result.wall_time},
            "cutflow": hset.cutflow if hset is not None else None,
            "inputs": meta.get("inputs"),
            "skipped_files": meta.get("skipped_files", []),
            "histograms": {k: v for k, v in meta.items() if k not in ("inputs",)},
            "versions": versions(),
            **(extra or {}),
        }
    )


@dataclass(frozen=True)
class DemoResult:
    """What ``zcalib demo`` produced."""

    result: FitResult
    truth: dict[str, Any]
    outputs: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)


def comparison_rows(result: FitResult, truth: dict[str, Any]) -> list[dict[str, Any]]:
    """Derived vs injected per category, with pulls ``(derived − injected) / σ_stat``."""
    rows = []
    for kind, fits, inj in (
        ("scale", result.scales, truth["scale"]),
        ("smear", result.smears, truth["smear"]),
    ):
        for c, t in zip(fits, inj, strict=True):
            err = c.total_stat
            rows.append(
                {
                    "kind": kind,
                    "index": c.index,
                    "label": c.label,
                    "injected": float(t),
                    "derived": c.value,
                    "error": err,
                    "diff": c.value - float(t),
                    "pull": (c.value - float(t)) / err if err > 0 else math.nan,
                }
            )
    return rows


def run_demo(
    out_dir: str | Path = "output/demo",
    *,
    n_data: int = DEMO_N_DATA,
    n_mc: int = DEMO_N_MC,
    seed: int = 1,
    workers: int = 2,
    executor: str = "dask",
    scheduler: str | None = None,
    progress: bool = True,
    config: FitConfig | None = None,
) -> DemoResult:
    """Generate (if absent), fill on a local Dask cluster, fit and write the demo outputs.

    Returns:
        The fit result, the injected truth, the output paths and timings.
    """
    with output_run(out_dir):
        return _run_demo(
            Path(out_dir), n_data, n_mc, seed, workers, executor, scheduler, progress, config
        )


def _run_demo(
    out: Path,
    n_data: int,
    n_mc: int,
    seed: int,
    workers: int,
    executor: str,
    scheduler: str | None,
    progress: bool,
    config: FitConfig | None,
) -> DemoResult:
    from zcalib.api import run_step
    from zcalib.config import dataset_config_from_files
    from zcalib.generate import default_categories, generate
    from zcalib.runner import EventLoop, RunOptions, load_weight

    data_dir = out / "data"
    truth_path = data_dir / "truth.json"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    truth = _existing_truth(truth_path, n_data=n_data, n_mc=n_mc, seed=seed)
    if truth is None:
        log.info("generating demo data (%d data, %d MC pairs) in %s", n_data, n_mc, data_dir)
        generate(data_dir, n_data=n_data, n_mc=n_mc, seed=seed, fmt="ecalelf")
        truth = json.loads(truth_path.read_text())
    timings["generate_s"] = time.perf_counter() - t0

    scheme = default_categories()
    loop = EventLoop(
        dataset_config_from_files(
            data=[str(data_dir / "data.root")], mc=[str(data_dir / "mc.root")]
        ),
        options=RunOptions(
            executor=executor,  # type: ignore[arg-type]
            workers=workers,
            scheduler=scheduler,
            progress=progress,
        ),
        weights=(load_weight("pileup", _shipped("pileup_demo.json")),),
    )

    def demo_record(_hset: HistogramSet, result: FitResult) -> dict[str, Any]:
        timings["fit_s"] = float(result.wall_time)
        timings["histograms_s"] = time.perf_counter() - t1 - timings["fit_s"]
        rows = comparison_rows(result, truth)
        return {"demo": {"truth": str(truth_path), "comparison": rows, "timings": dict(timings)}}

    t1 = time.perf_counter()
    # the problem is kept: the NLL scans reuse this fit (one fit, one log)
    done = run_step(
        loop, scheme, config or FitConfig(), out, step="demo", extra=demo_record, keep_problem=True
    )
    result, outputs = done.result, dict(done.paths)
    if not result.converged:
        result.raise_if_failed()  # fit_result.json is written; no payload, no validation
    t3 = time.perf_counter()
    outputs.update(
        _demo_validation(
            done.hset, scheme, out, outputs["corrections"], config, (result, done.problem)
        )
    )
    timings["validation_s"] = time.perf_counter() - t3
    return DemoResult(result=result, truth=truth, outputs=outputs, timings=timings)


def _demo_validation(
    hset: HistogramSet,
    scheme: CategoryScheme,
    out: Path,
    corrections: Path,
    config: FitConfig | None,
    fitted: tuple[FitResult, Any],
) -> dict[str, Path]:
    """Data/MC plots (standard plot categories), NLL scans and the HTML report of the demo."""
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.validation import load_plot_categories, run_scans, run_validation, write_report

    plots = load_plot_categories(_shipped("plot_cats_standard.yaml", folder="configs"))
    run_validation(
        plots, out / "validation", histograms=hset, corrections=load_correction_steps(corrections)
    )
    run_scans(hset, out / "scans", config=config, scheme=scheme, fitted=fitted)
    return {"report": write_report(out, title="zcalib demo derivation")}


def _existing_truth(path: Path, *, n_data: int, n_mc: int, seed: int) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        truth: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = (truth.get("n_data"), truth.get("n_mc"), truth.get("seed")) == (n_data, n_mc, seed)
    files_ok = all((path.parent / f).is_file() for f in ("data.root", "mc.root"))
    return truth if same and files_ok else None


def _shipped(name: str, folder: str = "corrections") -> Path:
    """A file shipped in the repository's ``corrections/`` or ``configs/`` folder (in an
    installed wheel: ``zcalib/_corrections``, ``zcalib/_configs``)."""
    here = Path(__file__).resolve()
    for base in (here.parents[2] / folder, here.parent / f"_{folder}"):
        if (base / name).is_file():
            return base / name
    msg = f"shipped file {name!r} not found (looked in {folder}/)"
    raise InvalidConfig(msg)
