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
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from zcalib._atomic import atomic_write_text
from zcalib.categories import Category, CategoryScheme
from zcalib.exceptions import InvalidConfig
from zcalib.fit import FitConfig, FitResult, fit_histograms
from zcalib.histograms import HistogramSet

__all__ = [
    "DEMO_N_DATA",
    "DEMO_N_MC",
    "DemoResult",
    "comparison_rows",
    "run_demo",
    "versions",
    "write_outputs",
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
    for name, (lo, hi) in cat.ranges().items():
        if (lo, hi) != (-math.inf, math.inf):
            out["abs_eta" if name == "eta" else name] = [
                num(lo),
                num(hi - 1 if name == "run" else hi),
            ]
    if cat.gain is not None:
        out["gain"] = cat.gain
    return out


def write_outputs(
    result: FitResult,
    scheme: CategoryScheme,
    out_dir: str | Path,
    *,
    step: str = "step",
    hset: HistogramSet | None = None,
    extra: dict[str, Any] | None = None,
    write_failed: bool = False,
) -> dict[str, Path]:
    """Write correctionlib JSON, legacy text files and ``fit_result.json`` for one step.

    A failed fit (``result.status == "failed"``) writes only ``fit_result.json`` (the record
    of why it failed), never a correction payload, unless ``write_failed``: then the payload
    and legacy files are written too, their descriptions marked ``FAILED FIT``.

    Args:
        result: the fit result.
        scheme: the category scheme fitted.
        out_dir: output folder (created).
        step: step name (correction names ``<step>_scale`` / ``<step>_smear``).
        hset: the histograms fitted (their provenance goes into ``fit_result.json``).
        extra: more provenance entries (config, command line...).
        write_failed: write the payload of a failed fit as well (marked failed).

    Returns:
        ``{"corrections": path, "scales": path, "smearings": path, "fit_result": path}``
        (only ``fit_result`` for a failed fit without ``write_failed``).
    """
    from zcalib.corrections import (
        build_scale_correction,
        build_smear_correction,
        validate_file,
        write_correction_set,
        write_legacy,
    )

    out = Path(out_dir)
    record = fit_record(result, scheme, step=step, hset=hset, extra=extra)
    if not result.converged and not write_failed:
        path = atomic_write_text(out / "fit_result.json", json.dumps(record, indent=2))
        return {"fit_result": path}
    scales = result.scale_values()
    smears = result.smear_values()
    scale_err = [c.total_stat for c in result.scales]
    smear_err = [c.total_stat for c in result.smears]
    desc = f"zcalib {versions()['zcalib']} step '{step}' ({result.status})"
    if not result.converged:
        desc = f"FAILED FIT, do not use: {desc}"
    corr_scale = build_scale_correction(
        f"{step}_scale", scheme, scales, scale_err, description=f"Data energy scale, {desc}"
    )
    corr_smear = build_smear_correction(
        f"{step}_smear", scheme, smears, smear_err, description=f"MC extra smearing, {desc}"
    )
    paths = {
        "corrections": write_correction_set(
            out / "corrections.json", [corr_scale, corr_smear], description=desc
        ),
    }
    validate_file(paths["corrections"])
    paths["scales"] = write_legacy(
        out / f"{step}_scales.dat", list(scheme.scale), scales, scale_err, kind="scale"
    )
    paths["smearings"] = write_legacy(
        out / f"{step}_smearings.dat", list(scheme.smear), smears, smear_err, kind="smear"
    )
    paths["fit_result"] = atomic_write_text(
        out / "fit_result.json", json.dumps(record, indent=2, sort_keys=False)
    )
    return paths


def fit_record(
    result: FitResult,
    scheme: CategoryScheme,
    *,
    step: str,
    hset: HistogramSet | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``fit_result.json`` content (JSON-serialisable)."""
    fit = result.to_dict()

    def cats(kind: str, fits: list[dict[str, Any]], cats_: tuple[Category, ...]) -> list[Any]:
        return [{"type": kind, "bins": _bins(c), **f} for c, f in zip(cats_, fits, strict=True)]

    meta = dict(hset.metadata) if hset is not None else {}
    run = meta.get("run", {})
    return {
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
    from zcalib.config import dataset_config_from_files
    from zcalib.generate import default_categories, generate
    from zcalib.histograms import save_histograms
    from zcalib.runner import RunOptions, build_histograms, load_weight

    out = Path(out_dir)
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
    cfg = dataset_config_from_files(
        data=[str(data_dir / "data.root")], mc=[str(data_dir / "mc.root")]
    )
    weights = (load_weight("pileup", _shipped("pileup_demo.json")),)
    t1 = time.perf_counter()
    hset = build_histograms(
        cfg,
        scheme,
        weights=weights,
        options=RunOptions(
            executor=executor,  # type: ignore[arg-type]
            workers=workers,
            scheduler=scheduler,
            progress=progress,
        ),
    )
    timings["histograms_s"] = time.perf_counter() - t1
    save_histograms(hset, out / "histograms.npz")
    t2 = time.perf_counter()
    result = fit_histograms(hset, config or FitConfig(), scheme=scheme)
    timings["fit_s"] = time.perf_counter() - t2
    rows = comparison_rows(result, truth)
    outputs = write_outputs(
        result,
        scheme,
        out,
        step="demo",
        hset=hset,
        extra={"demo": {"truth": str(truth_path), "comparison": rows, "timings": timings}},
    )
    if not result.converged:
        result.raise_if_failed()  # fit_result.json is written; no payload, no validation
    t3 = time.perf_counter()
    outputs.update(_demo_validation(hset, scheme, out, outputs["corrections"], config))
    timings["validation_s"] = time.perf_counter() - t3
    return DemoResult(result=result, truth=truth, outputs=outputs, timings=timings)


def _demo_validation(
    hset: HistogramSet,
    scheme: CategoryScheme,
    out: Path,
    corrections: Path,
    config: FitConfig | None,
) -> dict[str, Path]:
    """Data/MC plots (standard plot categories), NLL scans and the HTML report of the demo."""
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.validation import load_plot_categories, run_scans, run_validation, write_report

    plots = load_plot_categories(_shipped("plot_cats_standard.yaml", folder="configs"))
    run_validation(
        plots, out / "validation", histograms=hset, corrections=load_correction_steps(corrections)
    )
    run_scans(hset, out / "scans", config=config, scheme=scheme)
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
