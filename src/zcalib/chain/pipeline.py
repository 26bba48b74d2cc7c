"""Run a derivation chain from a pipeline YAML, with cached, resumable steps.

``run_pipeline(load_pipeline("configs/pipeline_demo.yaml"))`` runs every step in
dependency order. Each step:

1. gets the corrections of the steps it depends on (transitively, in execution order): their
   data **scale** steps, the MC **smearing** of the latest step deriving smearings (when the
   step smears MC: closure fits, time stability, Z weights; non-closure fits derive the full
   smearing from unsmeared MC, as pymin does), and their Z pT × |y| **weights**, next to the
   static MC weights (pile-up);
2. computes its **input hash**: zcalib version, input file fingerprints
   (:func:`zcalib.io.fingerprint.file_fingerprint`, the whole content), selection, binning, smearing seed, static
   weights, the step's own configuration and the files it names (categories, start values,
   run bins, corrections), and the output hashes of every step it depends on;
3. is **skipped** when ``<output>/<step>/step.json`` records the same input hash and its
   outputs still hash to the recorded output hash; otherwise it runs (one event loop, or
   ``iterations`` of them) and writes its outputs atomically, the manifest last.

An interrupted run therefore resumes at the first step without a valid manifest. ``force``
reruns the named steps and everything depending on them; ``stop_after`` stops after a step.

A ``closure`` step (:class:`~zcalib.chain.config.ClosureStep`) is filled like a fit step at its
position (MC smeared with the latest smearing), fits scales *and* smearings free and writes
``closure.json`` (residual scale − 1, error and pull per scale category; smearing, σ², its
error and ``zero_significance`` per smear category; the verdict ``closes``),
``fit_result.json`` and ``histograms.npz``. It logs one summary line, warns (without failing)
when the chain does not close, and provides no corrections: steps needing it see the same
prior corrections, and hash the same inputs, as without it.

When every step is done, ``<output>/final/`` receives ``corrections.json`` (every scale
step, the final smearing, the Z weights and a ``compound_corrections`` entry stacking the
scale steps), the combined legacy ``scales.dat`` (pymin ``--combine-files`` folded over the
scale steps; not written, with a warning, when a time-stability step has run bins splitting
runs at luminosity blocks, which the legacy format cannot express), ``smearings.dat`` and
``pipeline.json`` (steps, hashes, timings, results, the verdict of the closure steps).

All set-up checks (configuration, categories, correction files and their run coverage,
run bins against the data runs, nesting of the scale categories) run before any event is
processed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from zcalib._atomic import atomic_write_text
from zcalib.categories import CategoryScheme, load_categories
from zcalib.chain._events import data_run_keys
from zcalib.chain.config import (
    ClosureStep,
    CorrectionsStep,
    FitStep,
    LoadedPipeline,
    RunDivideStep,
    TimeStabilityStep,
    ZWeightsStep,
)
from zcalib.chain.run_divide import RunBins, load_run_bins, run_divide
from zcalib.chain.time_stability import time_stability
from zcalib.chain.zweights import derive_zweights, load_zweight_spec, write_zweights
from zcalib.config import DatasetConfig, dataset_config_from_files, load_dataset_config
from zcalib.corrections.egm import EgmNames
from zcalib.exceptions import FitFailed, InputError, InvalidConfig
from zcalib.fit import FitConfig, FitResult
from zcalib.io.fingerprint import file_fingerprint
from zcalib.outputs import output_run, restamp, stamp, without_run_ids
from zcalib.processors.zee import CorrectionStep, WeightSpec
from zcalib.runner import EventLoop

__all__ = [
    "PipelineResult",
    "StepOutputs",
    "closure_verdict",
    "prior_corrections",
    "run_pipeline",
    "write_final_corrections",
]

log = logging.getLogger(__name__)

_MANIFEST = "step.json"
_FORMAT = 2  # 2: EGM payload layout


@dataclass(frozen=True)
class StepOutputs:
    """What a finished step hands to the steps after it.

    Attributes:
        name: step name.
        type: step type.
        scales: data scale steps it provides (applied in order).
        smear: MC smearing step it provides (``None``: none).
        weight: MC weight it provides (Z pT × |y|).
        run_bins: run bins it provides (run_divide).
        scale_legacy: legacy scales files of its scale steps (for the combined file).
        smear_legacy: legacy smearings file (with ``smear``).
        output_hash: hash of its physics outputs.
        summary: numbers worth reporting (fit status, χ², bins...).
        ran: whether it ran in this call (``False``: taken from the cache).
        wall_time_s: seconds it took when it ran.
    """

    name: str
    type: str
    scales: tuple[CorrectionStep, ...] = ()
    smear: CorrectionStep | None = None
    weight: WeightSpec | None = None
    run_bins: RunBins | None = None
    scale_legacy: tuple[Path, ...] = ()
    smear_legacy: Path | None = None
    output_hash: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    ran: bool = True
    wall_time_s: float = 0.0


@dataclass(frozen=True)
class PipelineResult:
    """What :func:`run_pipeline` did.

    Attributes:
        output: the output folder.
        steps: outputs of every finished step, by name, in execution order.
        ran: steps run in this call.
        skipped: steps taken from the cache.
        final: paths of the final outputs (empty when stopped early).
        wall_time_s: total seconds.
    """

    output: Path
    steps: dict[str, StepOutputs]
    ran: tuple[str, ...]
    skipped: tuple[str, ...]
    final: dict[str, Path]
    wall_time_s: float

    @property
    def closes(self) -> bool | None:
        """Whether the chain closes: every closure step's verdict (:func:`closure_verdict`:
        each residual scale within ``max_significance`` σ of 1 and each smearing's σ²
        within it of 0, the refit converged) closes. ``None`` when no closure step ran
        (none configured, or stopped before it)."""
        verdicts = [o.summary.get("closes") for o in self.steps.values() if o.type == "closure"]
        return None if not verdicts else all(bool(v) for v in verdicts)


def _hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _file_hash(path: Path) -> str:
    """Hash of a file's content without its run id (a rerun giving the same physics keeps
    the hash, so the steps depending on it stay cached)."""
    return hashlib.blake2b(without_run_ids(path.read_bytes()), digest_size=16).hexdigest()


class _Setup:
    """Everything prepared (and checked) before the first event is read."""

    def __init__(self, lp: LoadedPipeline, run_override: dict[str, Any] | None) -> None:
        self.lp = lp
        cfg = lp.config
        self.names = EgmNames(cfg.era, cfg.collection)
        self.dataset_cfg = self._datasets()
        settings = cfg.run.model_copy(update=run_override or {})
        self.options = settings.options(lp.base)
        self.options.check()
        self.binning = cfg.binning.aligned(FitConfig().window)
        from zcalib.runner import load_weight

        self.static_weights = tuple(
            load_weight(w.name, lp.resolve(w.file), w.correction) for w in cfg.mc_weights
        )
        self.data_keys = data_run_keys(self.dataset_cfg)
        all_keys = np.unique(np.concatenate(list(self.data_keys.values())))
        if not len(all_keys):
            msg = f"{lp.path}: the data files hold no events"
            raise InputError(msg)
        self.data_runs = (int(all_keys[0] >> 32), int(all_keys[-1] >> 32))
        self.schemes: dict[str, CategoryScheme] = {}
        self.fit_configs: dict[str, FitConfig] = {}
        self.external: dict[str, list[CorrectionStep]] = {}
        self.systematics: dict[str, Any] = {}
        self.file_hashes: dict[str, dict[str, str]] = {}
        for name in lp.order:
            self._check_step(lp.step(name))
        windows = {c.window for c in self.fit_configs.values()}
        if len(windows) == 1:  # the fine edges fall on the one fit window of the steps
            self.binning = cfg.binning.aligned(windows.pop())
        self._check_smearing()
        self._check_nesting()
        self.base_hash = {
            "zcalib": _version(),
            "format": _FORMAT,
            "inputs": [
                {
                    "dataset": ds.name,
                    "kind": ds.kind,
                    "file": Path(f).name,
                    "fingerprint": file_fingerprint(f),
                }
                for ds in self.dataset_cfg.datasets
                for f in ds.files
            ],
            "format_name": self.dataset_cfg.format,
            "selection": cfg.selection.model_dump(mode="json"),
            "binning": cfg.binning.model_dump(mode="json"),
            "smear_seed": cfg.smear_seed,
            "payload_names": [cfg.era, cfg.collection],
            "weights": [
                {
                    "name": w.name,
                    "correction": w.correction,
                    "payload": hashlib.blake2b(w.payload.encode(), digest_size=16).hexdigest(),
                }
                for w in self.static_weights
            ],
        }

    # ----------------------------------------------------------------- inputs
    def _datasets(self) -> DatasetConfig:
        lp = self.lp
        cfg = lp.config
        if cfg.datasets is not None:
            return load_dataset_config(lp.resolve(cfg.datasets))
        gen = cfg.generate
        assert gen is not None
        out = Path(gen.out) if gen.out else lp.output / "data"
        truth = out / "truth.json"
        want = {
            "n_data": gen.n_data,
            "n_mc": gen.n_mc,
            "seed": gen.seed,
            "drift": gen.drift,
            "gain_thresholds": list(gen.gain_thresholds),
        }
        have: dict[str, Any] = {}
        if truth.is_file():
            try:
                have = json.loads(truth.read_text())
            except (OSError, json.JSONDecodeError):
                have = {}
        if any(have.get(k) != v for k, v in want.items()) or not all(
            (out / f).is_file() for f in ("data.root", "mc.root")
        ):
            from zcalib.generate import generate

            log.info("generating demo inputs in %s (%s)", out, want)
            generate(
                out,
                n_data=gen.n_data,
                n_mc=gen.n_mc,
                seed=gen.seed,
                drift=gen.drift,
                gain_thresholds=gen.gain_thresholds,
            )
        return dataset_config_from_files(data=[str(out / "data.root")], mc=[str(out / "mc.root")])

    # ----------------------------------------------------------------- checks
    def _where(self, name: str) -> str:
        return f"{self.lp.path}: step '{name}'"

    def _check_step(self, step: Any) -> None:
        lp = self.lp
        hashes: dict[str, str] = {}
        if isinstance(step, FitStep | ClosureStep):
            path = lp.resolve(step.categories)
            scheme = load_categories(path)
            if isinstance(step, FitStep):
                from zcalib.corrections.writer import payload_problem

                problem = payload_problem(scheme)
                if problem:  # found now, not after the event loop and the fit
                    msg = f"{self._where(step.name)}: {path}: {problem}"
                    raise InvalidConfig(msg)
            self.schemes[step.name] = scheme
            hashes["categories"] = _file_hash(path)
            self.fit_configs[step.name] = self._fit_config(step, scheme)
            if isinstance(step, FitStep) and step.smooth is not None:
                _check_smooth(step, scheme, self._where(step.name))
            if step.start_file is not None:
                hashes["start_file"] = _file_hash(lp.resolve(step.start_file))
            if isinstance(step, FitStep) and step.systematics is not None:
                from zcalib.validation.systematics import load_systematics_config

                path = lp.resolve(step.systematics)
                self.systematics[step.name] = load_systematics_config(path)
                hashes["systematics"] = _file_hash(path)
        elif isinstance(step, TimeStabilityStep) and step.run_bins is not None:
            path = lp.resolve(step.run_bins)
            bins = load_run_bins(path)
            bins.check_coverage(self.data_keys)
            hashes["run_bins"] = _file_hash(path)
        elif isinstance(step, CorrectionsStep):
            from zcalib.corrections.steps import load_correction_steps

            path = lp.resolve(step.file)
            steps = load_correction_steps(
                path, list(step.corrections) if step.corrections else None
            )
            self._check_era(path, steps)
            self.external[step.name] = steps
            hashes["file"] = _file_hash(path)
        self.file_hashes[step.name] = hashes

    def _fit_config(self, step: FitStep | ClosureStep, scheme: CategoryScheme) -> FitConfig:
        """The step's FitConfig, with the start values of ``start_file`` and the smearings
        held fixed in a closure fit step."""
        from zcalib.corrections import read_legacy_for_scheme

        changes: dict[str, Any] = {}
        if isinstance(step, FitStep) and step.closure:
            changes["fix_smears"] = True
        if step.start_file is not None:
            values, _ = read_legacy_for_scheme(
                self.lp.resolve(step.start_file), scheme, kind="scale"
            )
            changes.update(start="specify", start_scales=tuple(float(v) for v in values))
        try:
            cfg = step.fit.with_overrides(**changes) if changes else step.fit
            cfg.check_lengths(len(scheme.scale), len(scheme.smear))
        except InvalidConfig as err:
            msg = f"{self._where(step.name)}: {err}"
            raise InvalidConfig(msg) from None
        return cfg

    def _check_era(self, path: Path, steps: list[CorrectionStep]) -> None:
        """Run-binned corrections must cover the data runs (a payload for another era?)."""
        from correctionlib import schemav2

        model = schemav2.CorrectionSet.model_validate_json(steps[0].payload) if steps else None
        if model is None:
            return
        by_name = {c.name: c for c in model.corrections}
        stacks = {c.name: c.stack for c in model.compound_corrections or ()}
        lo_d, hi_d = self.data_runs
        for s in steps:
            parts = [by_name[n].data for n in stacks.get(s.name, [s.name])]
            span = _run_span([d.model_dump() if hasattr(d, "model_dump") else d for d in parts])
            if span is None:
                continue
            lo, hi = span
            if lo_d < lo or hi_d >= hi:
                msg = (
                    f"{path}: correction '{s.name}' is binned in runs {lo}-{hi - 1} but the "
                    f"data hold runs {lo_d}-{hi_d} (a payload for another era?)"
                )
                raise InvalidConfig(msg)

    def _check_smearing(self) -> None:
        for name in self.lp.order:
            step = self.lp.step(name)
            if not (isinstance(step, FitStep) and _smears_mc(step)):
                continue
            deps = self.lp.closure[name]
            if not any(self._provides_smear(d) for d in deps):
                msg = (
                    f"{self._where(name)}: {'closure ' if step.closure else ''}MC smearing "
                    "'latest' needs a step providing smearings among its dependencies (needs)"
                )
                raise InvalidConfig(msg)

    def _provides_smear(self, name: str) -> bool:
        step = self.lp.step(name)
        if isinstance(step, FitStep):
            return not step.closure
        return isinstance(step, CorrectionsStep) and any(
            s.kind == "smear" for s in self.external[name]
        )

    def _check_nesting(self) -> None:
        """Dry run of the combined legacy scales file on the scale categories of the steps."""
        from zcalib.categories import Category
        from zcalib.chain.time_stability import eta_category
        from zcalib.corrections import combine, write_legacy

        layers: list[tuple[str, list[Category]]] = []
        for name in self.lp.order:
            step = self.lp.step(name)
            if isinstance(step, FitStep):
                layers.append((name, list(self.schemes[name].scale)))
            elif isinstance(step, TimeStabilityStep):
                layers.append(
                    (name, [eta_category(i, b, step.eta_bins) for i, b in enumerate(step.eta_bins)])
                )
        if len(layers) < 2:
            return
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "base.dat"
            cats = layers[0][1]
            write_legacy(base, cats, np.ones(len(cats)), np.zeros(len(cats)))
            for k, (name, cats) in enumerate(layers[1:], start=1):
                nxt = Path(tmp) / f"{name}.dat"
                write_legacy(nxt, cats, np.ones(len(cats)), np.zeros(len(cats)))
                try:
                    combine(base, nxt, Path(tmp) / f"c{k}.dat")
                except InputError as err:
                    found = re.search(r"row \((.*?)\) partially overlaps .*? \((.*?)\);", str(err))
                    what = (
                        f"({found.group(1)}) partially overlaps ({found.group(2)}) of an "
                        "earlier step"
                        if found
                        else str(err)
                    )
                    msg = (
                        f"{self.lp.path}: the scale categories of step '{name}' cannot be "
                        f"combined with the previous steps: {what}; categories of later "
                        "steps must be nested in or contain the earlier ones"
                    )
                    raise InvalidConfig(msg) from None
                base = Path(tmp) / f"c{k}.dat"


def _smears_mc(step: FitStep) -> bool:
    mode = (
        step.mc_smearing if step.mc_smearing != "auto" else ("latest" if step.closure else "none")
    )
    return mode == "latest"


def _run_span(node: Any) -> tuple[int, int] | None:
    """Smallest and largest run edge of a correction's data tree (``None``: no run input)."""
    spans: list[float] = []

    def walk(n: Any) -> None:
        if isinstance(n, dict):
            kind = n.get("nodetype")
            if kind == "binning" and n.get("input") == "run" and isinstance(n.get("edges"), list):
                spans.extend(float(x) for x in n["edges"])
            if kind == "multibinning" and "run" in n.get("inputs", []):
                e = n["edges"][n["inputs"].index("run")]
                if isinstance(e, list):
                    spans.extend(float(x) for x in e)
            for v in n.values():
                walk(v)
        elif isinstance(n, list):
            for v in n:
                walk(v)

    walk(node)
    return (int(min(spans)), int(max(spans))) if spans else None


def _version() -> str:
    from zcalib.metrics import zcalib_version

    return zcalib_version()


# ---------------------------------------------------------------------------- running
def run_pipeline(
    lp: LoadedPipeline,
    *,
    force: tuple[str, ...] = (),
    stop_after: str | None = None,
    run_override: dict[str, Any] | None = None,
    strict: bool = False,
) -> PipelineResult:
    """Run (or resume) a pipeline.

    Args:
        lp: the loaded pipeline (:func:`zcalib.chain.config.load_pipeline`).
        force: steps to rerun even if cached (with every step depending on them).
        stop_after: stop once this step is done (no final outputs).
        run_override: event-loop settings replacing the config's ``run`` entries
            (``executor``, ``workers``...; they do not change the results).
        strict: the caller fails when the chain does not close
            (:attr:`PipelineResult.closes`): the pipeline must then have a closure step
            (checked before any work).

    Returns:
        The :class:`PipelineResult`.

    Raises:
        InvalidConfig: bad configuration (before any event is read).
        InputError: bad inputs. FitFailed: a fit step that failed (the pipeline stops there).
    """
    t0 = time.perf_counter()
    for name in (*force, *((stop_after,) if stop_after else ())):
        if name not in lp.order:
            msg = f"{lp.path}: unknown step {name!r}; steps: {', '.join(lp.order)}"
            raise InvalidConfig(msg)
    if strict and not any(isinstance(lp.step(n), ClosureStep) for n in lp.order):
        msg = (
            f"{lp.path}: strict: the pipeline has no step of type 'closure' to tell whether "
            "the chain closes; add one (see configs/pipeline_demo.yaml) or drop --strict"
        )
        raise InvalidConfig(msg)
    with output_run(lp.output):  # writable, before any work
        setup = _Setup(lp, run_override)
        with contextlib.ExitStack() as cluster:
            return _run_steps(lp, setup, force, stop_after, cluster, t0)


def _one_cluster(setup: _Setup, cluster: contextlib.ExitStack) -> None:
    """Start the Dask cluster (local, scheduler or batch jobs) on the first step that runs
    an event loop; every later step and loop reuses its client (``cluster`` closes it)."""
    opts = setup.options
    if opts.uses_dask and opts.client is None:
        from zcalib.cluster import dask_client

        client = cluster.enter_context(
            dask_client(recipe=opts.recipe, scheduler=opts.scheduler, workers=opts.workers)
        )
        setup.options = replace(opts, client=client)


def _run_steps(
    lp: LoadedPipeline,
    setup: _Setup,
    force: tuple[str, ...],
    stop_after: str | None,
    cluster: contextlib.ExitStack,
    t0: float,
) -> PipelineResult:
    forced: set[str] = set()
    for name in force:
        forced |= set(lp.dependents(name))
    out_dir = lp.output
    outputs: dict[str, StepOutputs] = {}
    ran: list[str] = []
    skipped: list[str] = []
    stopped = False
    for name in lp.order:
        step = lp.step(name)
        input_hash = _input_hash(name, setup, outputs)
        step_dir = out_dir / name
        cached = None if name in forced else _cached(step_dir, input_hash, step, setup)
        if cached is not None:
            log.info("step %s: up to date (cached)", name)
            outputs[name] = cached
            skipped.append(name)
        else:
            log.info("step %s (%s): running", name, step.type)
            _empty_step_folder(step_dir)
            if not isinstance(step, CorrectionsStep):
                _one_cluster(setup, cluster)
            t_step = time.perf_counter()
            res = _run_step(step, setup, outputs, step_dir)
            res = replace(res, wall_time_s=time.perf_counter() - t_step)
            _write_manifest(step_dir, step, input_hash, res)
            outputs[name] = res
            ran.append(name)
            log.info("step %s done in %.1f s", name, res.wall_time_s)
        if isinstance(step, ClosureStep):
            _log_closure(name, outputs[name].summary)
        if name == stop_after and name != lp.order[-1]:
            stopped = True
            log.info("stopping after step %s (stop_after)", name)
            break
    final: dict[str, Path] = {}
    if not stopped:
        final = _write_final(
            lp, setup, outputs, out_dir / "final", wall_time=time.perf_counter() - t0
        )
    return PipelineResult(
        output=out_dir,
        steps=outputs,
        ran=tuple(ran),
        skipped=tuple(skipped),
        final=final,
        wall_time_s=time.perf_counter() - t0,
    )


def _empty_step_folder(step_dir: Path) -> None:
    """Remove what an earlier run of a step left in its folder before the step runs again
    (its manifest first: an interrupted clean-up leaves a folder that is not cached).

    A rerun writes its own set of files, which need not be the earlier one's (no ``iter<k>/``
    with fewer iterations, no ``systematics.json`` without systematics, ``.tsv`` instead of
    ``.dat`` run bins...): nothing of the earlier run may stay next to the new outputs, where
    the final payload, ``report`` or a user would take it for part of this run.
    """
    import shutil

    if step_dir.is_symlink() or step_dir.is_file():
        step_dir.unlink()
    elif step_dir.is_dir():
        (step_dir / _MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(step_dir)


def _input_hash(name: str, setup: _Setup, outputs: dict[str, StepOutputs]) -> str:
    """The input hash of step ``name`` (its dependencies are in ``outputs``)."""
    lp = setup.lp
    return _hash(
        {
            "base": setup.base_hash,
            "step": lp.step(name).model_dump(mode="json"),
            "files": setup.file_hashes.get(name, {}),
            # closure steps provide nothing: steps needing one hash as without it
            "deps": [
                (d, outputs[d].output_hash)
                for d in lp.closure[name]
                if not isinstance(lp.step(d), ClosureStep)
            ],
        }
    )


def _prior(
    name: str, lp: LoadedPipeline, outputs: dict[str, StepOutputs]
) -> tuple[tuple[CorrectionStep, ...], CorrectionStep | None, tuple[WeightSpec, ...]]:
    return prior_corrections(outputs[d] for d in lp.closure[name])


def prior_corrections(
    outputs: Iterable[StepOutputs],
) -> tuple[tuple[CorrectionStep, ...], CorrectionStep | None, tuple[WeightSpec, ...]]:
    """What the steps ``outputs`` (in execution order) hand to a step built on them: their
    data scale steps in order, the MC smearing of the latest step providing one, and their
    MC weights (a later weight of the same name replaces an earlier one).

    The pipeline folds the outputs of a step's dependencies; the single-step commands
    (``zcalib fit --corrections A --corrections B``) fold the step folders they are given
    (:func:`zcalib.chain.assemble.step_outputs`), so both apply the same corrections.
    """
    scales: list[CorrectionStep] = []
    smear: CorrectionStep | None = None
    weights: dict[str, WeightSpec] = {}
    for o in outputs:
        scales.extend(o.scales)
        if o.smear is not None:
            smear = o.smear
        if o.weight is not None:
            weights[o.weight.name] = o.weight
    return tuple(scales), smear, tuple(weights.values())


def _loop(
    setup: _Setup,
    scales: tuple[CorrectionStep, ...],
    smear: CorrectionStep | None,
    weights: tuple[WeightSpec, ...],
) -> EventLoop:
    cfg = setup.lp.config
    corr = (*scales, *((smear,) if smear is not None else ()))
    return EventLoop(
        setup.dataset_cfg,
        options=setup.options,
        selection=cfg.selection,
        binning=setup.binning,
        weights=(*setup.static_weights, *weights),
        corrections=corr,
        smear_seed=cfg.smear_seed,
    )


def _run_step(
    step: Any, setup: _Setup, outputs: dict[str, StepOutputs], step_dir: Path
) -> StepOutputs:
    lp = setup.lp
    scales, smear, weights = _prior(step.name, lp, outputs)
    if isinstance(step, RunDivideStep):
        bins = run_divide(
            _loop(setup, scales, smear, weights),
            min_events=step.min_events,
            granularity=step.granularity,
            out=step_dir / "run_bins.yaml",
        )
        bins.check_coverage(setup.data_keys)
        return StepOutputs(
            name=step.name,
            type=step.type,
            run_bins=bins,
            output_hash=_file_hash(step_dir / "run_bins.yaml"),
            summary={
                "bins": len(bins),
                "granularity": bins.granularity,
                "pairs": [b.pairs for b in bins.bins],
            },
        )
    if isinstance(step, TimeStabilityStep):
        if step.run_bins is not None:
            bins = load_run_bins(lp.resolve(step.run_bins))
        else:
            src = next(d for d in step.needs if lp.step(d).type == "run_divide")
            found = outputs[src].run_bins
            assert found is not None
            bins = found
        loop = _loop(setup, scales, smear, weights)
        res, paths = time_stability(
            loop,
            bins,
            step_dir,
            eta_bins=step.eta_bins,
            window=step.window,
            name=f"{step.name}_scale",
            validate=step.validate_after,
        )
        return _ts_outputs(step.name, res.to_dict(), paths["corrections"], paths.get("scales"))
    if isinstance(step, ZWeightsStep):
        zw = derive_zweights(
            _loop(setup, scales, smear, weights),
            name=step.name,
            pt_edges=step.pt_edges,
            y_edges=step.y_edges,
            max_weight=step.max_weight,
        )
        paths = write_zweights(zw, step_dir)
        return _zw_outputs(step, paths["corrections"], zw.weights)
    if isinstance(step, FitStep):
        return _run_fit(step, setup, scales, smear, weights, step_dir)
    if isinstance(step, ClosureStep):
        return _run_closure(step, setup, scales, smear, weights, step_dir)
    if isinstance(step, CorrectionsStep):
        step_dir.mkdir(parents=True, exist_ok=True)
        return _corrections_outputs(step, setup)
    msg = f"unknown step type {step.type!r}"
    raise InvalidConfig(msg)


def _corrections_outputs(step: CorrectionsStep, setup: _Setup) -> StepOutputs:
    ext = setup.external[step.name]
    return StepOutputs(
        name=step.name,
        type=step.type,
        scales=tuple(s for s in ext if s.kind == "scale"),
        smear=next((s for s in reversed(ext) if s.kind == "smear"), None),
        output_hash=_hash([setup.file_hashes[step.name], [s.name for s in ext]]),
        summary={"corrections": [s.name for s in ext]},
    )


def _ts_outputs(name: str, summary: dict[str, Any], corr: Path, legacy: Path | None) -> StepOutputs:
    """Outputs of time-stability step ``name``; ``legacy`` is ``None`` when its run bins split
    runs (the legacy format cannot express lumis: ``<correction>s.tsv`` is written instead).
    The correction is ``summary["correction"]`` (``time_stability.json``), else
    ``<name>_scale``."""
    correction = str(summary.get("correction") or f"{name}_scale")
    chi = summary.get("chi2", {})
    record: dict[str, Any] = {
        "run_bins": len(summary["run_bins"]),
        "chi2_before": [chi.get("before", {}).get(k) for k in ("total_chi2", "total_ndf")],
        "chi2_after": [chi.get("after", {}).get(k) for k in ("total_chi2", "total_ndf")],
    }
    if legacy is None:
        record["splits_runs"] = True
    return StepOutputs(
        name=name,
        type="time_stability",
        scales=(
            CorrectionStep(
                name=correction, payload=corr.read_text(), kind="scale", source=str(corr)
            ),
        ),
        scale_legacy=() if legacy is None else (legacy,),
        output_hash=_file_hash(corr),
        summary=record,
    )


def _zw_outputs(step: ZWeightsStep, corr: Path, weights: Any) -> StepOutputs:
    w = np.asarray(weights, dtype=np.float64)
    return StepOutputs(
        name=step.name,
        type=step.type,
        weight=load_zweight_spec(corr, step.name, weight_name=step.name),
        output_hash=_file_hash(corr),
        summary={"weight_min": float(w.min()), "weight_max": float(w.max())},
    )


def _fit_outputs(
    name: str, step_dir: Path, summary: dict[str, Any], names: EgmNames, *, closure: bool = False
) -> StepOutputs:
    """A fit step's outputs: its payload's compound (the step with its own uncertainty)
    and (unless a closure fit) smearing, applied by the steps after it."""
    corr = step_dir / "corrections.json"
    text = corr.read_text()
    scales_dat = step_dir / f"{name}_scales.dat"
    smears_dat = step_dir / f"{name}_smearings.dat"
    if not scales_dat.is_file():  # categories beyond the legacy columns (signed eta, ...)
        summary = {**summary, "no_legacy": True}
    smear = (
        None
        if closure
        else CorrectionStep(name=names.smear, payload=text, kind="smear", source=str(corr))
    )
    return StepOutputs(
        name=name,
        type="fit",
        scales=(CorrectionStep(name=names.compound, payload=text, kind="scale", source=str(corr)),),
        smear=smear,
        scale_legacy=(scales_dat,) if scales_dat.is_file() else (),
        smear_legacy=None if closure or not smears_dat.is_file() else smears_dat,
        output_hash=_file_hash(corr),
        summary=summary,
    )


def _check_smooth(step: FitStep, scheme: CategoryScheme, where: str) -> None:
    """A smooth step needs cells with at least two Et bins (in scale or smear categories)."""
    from zcalib.derive import check_smooth

    assert step.smooth is not None
    check_smooth(
        scheme, step.smooth.scale, step.smooth.smear, where=where, categories=step.categories
    )


def _run_fit(
    step: FitStep,
    setup: _Setup,
    scales: tuple[CorrectionStep, ...],
    smear: CorrectionStep | None,
    weights: tuple[WeightSpec, ...],
    step_dir: Path,
) -> StepOutputs:
    from zcalib.api import run_step

    use_smear = smear if _smears_mc(step) else None
    done = run_step(
        _loop(setup, scales, use_smear, weights),
        setup.schemes[step.name],
        setup.fit_configs[step.name],
        step_dir,
        step=step.name,
        names=setup.names,
        smear_seed=setup.lp.config.smear_seed,
        extra={
            "pipeline": {
                "step": step.model_dump(mode="json"),
                "prior_corrections": [_applied(c) for c in scales],
                "mc_smearing": _applied(use_smear) if use_smear else None,
                "mc_weights": [w.name for w in weights],
            }
        },
        iterations=step.iterations,
        smooth=(step.smooth.scale, step.smooth.smear) if step.smooth is not None else (None, None),
        systematics=setup.systematics.get(step.name),
    )
    if done.failure is not None:  # the record of why, no payload; the pipeline stops here
        where = f" (iteration {done.iteration})" if not done.result.converged else ""
        msg = f"{setup.lp.path}: step '{step.name}'{where}: {done.failure}"
        raise FitFailed(msg)
    result = done.result
    summary = {
        "status": result.status,
        "closure": step.closure,
        "scales": [_round(c.value) for c in result.scales],
        "scale_errors": [_round(c.total_stat) for c in result.scales],
        "smears": [_round(c.value) for c in result.smears],
        "smear_errors": [_round(c.total_stat) for c in result.smears],
        "regions_used": len(result.regions_used),
    }
    return _fit_outputs(step.name, step_dir, summary, setup.names, closure=step.closure)


def _applied(step: CorrectionStep) -> str:
    """``<folder of its file>/<correction>``: which correction a step applied, and whose."""
    return f"{Path(step.source).parent.name}/{step.name}"


def _round(v: float) -> float | None:
    return float(f"{v:.8g}") if math.isfinite(v) else None


# ---------------------------------------------------------------------------- closure
def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _badness(v: float | None) -> float:
    """Sort key of a pull / significance: its magnitude, ``inf`` when undefined."""
    return abs(v) if v is not None and math.isfinite(v) else math.inf


def closure_verdict(result: FitResult, max_significance: float = 3.0) -> dict[str, Any]:
    """Whether a residual fit closes: every fitted scale within ``max_significance``
    standard deviations (stat ⊕ MC stat) of 1 and every fitted smearing's
    ``zero_significance`` (``σ²/err(σ²)``) below it; a fit that did not converge, or an
    undefined pull, does not close. Categories held fixed or ignored are listed, not judged.

    Returns:
        The ``closure.json`` content without provenance: ``closes``, the worst scale pull
        and smearing significance (with their categories), and one entry per category.
    """
    scales: list[dict[str, Any]] = []
    for c in result.scales:
        fitted = c.state == "fitted"
        err = c.total_stat
        pull = (c.value - 1) / err if fitted and math.isfinite(err) and err > 0 else math.nan
        scales.append(
            {
                "index": c.index,
                "label": c.label,
                "state": c.state,
                "residual": _num(c.value - 1),
                "error": _num(err),
                "pull": _num(pull),
                "closes": (not fitted) or abs(pull) < max_significance,
            }
        )
    smears: list[dict[str, Any]] = []
    for c in result.smears:
        fitted = c.state == "fitted"
        z = c.zero_significance
        smears.append(
            {
                "index": c.index,
                "label": c.label,
                "state": c.state,
                "value": _num(c.value),
                "error": _num(c.total_stat),
                "sigma2": _num(c.value * c.value),
                "sq_error": _num(c.sq_error),
                "zero_significance": _num(z),
                "closes": (not fitted) or z < max_significance,
            }
        )
    judged_scales = [e for e in scales if e["state"] == "fitted"]
    judged_smears = [e for e in smears if e["state"] == "fitted"]
    worst_scale = max(judged_scales, key=lambda e: _badness(e["pull"]), default=None)
    worst_smear = max(judged_smears, key=lambda e: _badness(e["zero_significance"]), default=None)
    scales_close = all(e["closes"] for e in scales)
    smears_close = all(e["closes"] for e in smears)
    return {
        "max_significance": max_significance,
        "status": result.status,
        "closes": result.converged and scales_close and smears_close,
        "scales_close": scales_close,
        "smears_close": smears_close,
        "max_scale_pull": None if worst_scale is None else _num(_badness(worst_scale["pull"])),
        "worst_scale": None if worst_scale is None else worst_scale["label"],
        "max_smear_significance": None
        if worst_smear is None
        else _num(_badness(worst_smear["zero_significance"])),
        "worst_smear": None if worst_smear is None else worst_smear["label"],
        "scales": scales,
        "smears": smears,
    }


def _closure_line(name: str, verdict: dict[str, Any]) -> str:
    """``closure step 'x': scales within 1.6σ of 1, smearings within 2.7σ of 0 (threshold
    3σ) — closes``."""

    def part(kind: str, worst: float | None, ref: int) -> str:
        return f"{kind} within {worst:.1f}σ of {ref}" if worst is not None else f"{kind} undefined"

    if verdict["status"] != "converged":
        state = "the refit did not converge — does not close"
    else:
        state = "closes" if verdict["closes"] else "does NOT close"
    return (
        f"closure step '{name}': {part('scales', verdict['max_scale_pull'], 1)}, "
        f"{part('smearings', verdict['max_smear_significance'], 0)} (threshold "
        f"{verdict['max_significance']:g}σ) — {state}"
    )


def _closure_failures(verdict: dict[str, Any], limit: int = 5) -> str:
    """The categories failing the closure, worst first."""
    bad: list[tuple[float, str]] = []
    for e in verdict["scales"]:
        if not e["closes"]:
            pull = e["pull"]
            text = "undefined pull" if pull is None else f"pull {pull:+.1f}"
            bad.append((_badness(pull), f"{e['label']} ({text})"))
    for e in verdict["smears"]:
        if not e["closes"]:
            z = e["zero_significance"]
            text = "undefined significance" if z is None else f"{z:.1f}σ from 0"
            bad.append((_badness(z), f"{e['label']} ({text})"))
    bad.sort(key=lambda b: -b[0])
    shown = [b[1] for b in bad[:limit]]
    if len(bad) > limit:
        shown.append(f"and {len(bad) - limit} more")
    return ", ".join(shown)


def _closure_summary(name: str, verdict: dict[str, Any]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else _round(v)

    return {
        "status": verdict["status"],
        "closes": verdict["closes"],
        "max_significance": verdict["max_significance"],
        "max_scale_pull": r(verdict["max_scale_pull"]),
        "worst_scale": verdict["worst_scale"],
        "max_smear_significance": r(verdict["max_smear_significance"]),
        "worst_smear": verdict["worst_smear"],
        "failing": _closure_failures(verdict),  # the 5 worst (closure.json has them all)
        "scale_pulls": [r(e["pull"]) for e in verdict["scales"]],
        "smear_significances": [r(e["zero_significance"]) for e in verdict["smears"]],
        "verdict": _closure_line(name, verdict),
    }


def _log_closure(name: str, summary: dict[str, Any]) -> None:
    log.info("%s", summary.get("verdict", f"closure step '{name}': no verdict recorded"))
    if not summary.get("closes", False):
        log.warning(
            "closure step '%s' does not close (threshold %gσ): %s",
            name,
            summary.get("max_significance", math.nan),
            summary.get("failing") or f"the refit status is {summary.get('status')!r}",
        )


def _closure_outputs(step: ClosureStep, path: Path, summary: dict[str, Any]) -> StepOutputs:
    return StepOutputs(
        name=step.name, type=step.type, output_hash=_file_hash(path), summary=summary
    )


def _run_closure(
    step: ClosureStep,
    setup: _Setup,
    scales: tuple[CorrectionStep, ...],
    smear: CorrectionStep | None,
    weights: tuple[WeightSpec, ...],
    step_dir: Path,
) -> StepOutputs:
    """Refill as a fit step at this position would (latest smearing on MC), refit scales and
    smearings free, and judge the residuals; never fails on the verdict."""
    from zcalib.api import run_step

    provenance = {
        "prior_corrections": [_applied(c) for c in scales],
        "mc_smearing": _applied(smear) if smear is not None else None,
        "mc_weights": [w.name for w in (*setup.static_weights, *weights)],
    }
    result = run_step(
        _loop(setup, scales, smear, weights),
        setup.schemes[step.name],
        setup.fit_configs[step.name],
        step_dir,
        step=step.name,
        extra={"pipeline": {"step": step.model_dump(mode="json"), **provenance}},
        payload=False,
    ).result
    verdict = closure_verdict(result, step.max_significance)
    closure = {
        "schema_version": 1,
        "step": step.name,
        "categories": Path(step.categories).name,
        **provenance,
        "verdict": _closure_line(step.name, verdict),
        **verdict,
    }
    if not result.converged:
        closure["fit_message"] = result.message
    path = atomic_write_text(step_dir / "closure.json", json.dumps(stamp(closure), indent=2) + "\n")
    return _closure_outputs(step, path, _closure_summary(step.name, verdict))


# ---------------------------------------------------------------------------- cache
def _write_manifest(step_dir: Path, step: Any, input_hash: str, res: StepOutputs) -> None:
    outputs: dict[str, Any] = {
        "scale_legacy": [p.name for p in res.scale_legacy],
        "smear_legacy": res.smear_legacy.name if res.smear_legacy else None,
    }
    record = {
        "schema_version": 1,
        "step": step.name,
        "type": step.type,
        "input_hash": input_hash,
        "output_hash": res.output_hash,
        "outputs": outputs,
        "summary": res.summary,
        "wall_time_s": res.wall_time_s,
        "zcalib": _version(),
    }
    atomic_write_text(step_dir / _MANIFEST, json.dumps(stamp(record), indent=2) + "\n")


def _cached(step_dir: Path, input_hash: str, step: Any, setup: _Setup) -> StepOutputs | None:
    """The outputs of a finished step with the same inputs, or ``None`` (run it)."""
    path = step_dir / _MANIFEST
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("input_hash") != input_hash or record.get("schema_version") != 1:
        return None
    try:
        res = _reload(step, step_dir, setup, record)
    except (OSError, ValueError, KeyError, InputError, InvalidConfig) as err:
        log.warning("step %s: cached outputs unusable (%s); rerunning", step.name, err)
        return None
    if res.output_hash != record.get("output_hash"):
        log.warning("step %s: outputs changed since they were written; rerunning", step.name)
        return None
    return replace(res, ran=False, wall_time_s=float(record.get("wall_time_s", 0.0)))


def _reload(step: Any, step_dir: Path, setup: _Setup, record: dict[str, Any]) -> StepOutputs:
    summary = record.get("summary", {})
    if isinstance(step, RunDivideStep):
        path = step_dir / "run_bins.yaml"
        bins = load_run_bins(path)
        return StepOutputs(
            name=step.name,
            type=step.type,
            run_bins=bins,
            output_hash=_file_hash(path),
            summary=summary,
        )
    if isinstance(step, TimeStabilityStep):
        corr = step_dir / "corrections.json"
        split = bool(summary.get("splits_runs"))
        table = step_dir / f"{step.name}_scales.{'tsv' if split else 'dat'}"
        if not table.is_file():
            raise OSError(str(table))
        res = _ts_outputs(
            step.name,
            {"run_bins": [0] * int(summary.get("run_bins", 0))},
            corr,
            None if split else table,
        )
        return replace(res, summary=summary)
    if isinstance(step, ZWeightsStep):
        corr = step_dir / "corrections.json"
        return replace(_zw_outputs(step, corr, [1.0]), summary=summary)
    if isinstance(step, FitStep):
        for f in (f"{step.name}_scales.dat", "fit_result.json"):
            if not (step_dir / f).is_file():
                raise OSError(str(step_dir / f))
        return _fit_outputs(step.name, step_dir, summary, setup.names, closure=step.closure)
    if isinstance(step, ClosureStep):
        if not (step_dir / "fit_result.json").is_file():
            raise OSError(str(step_dir / "fit_result.json"))
        return _closure_outputs(step, step_dir / "closure.json", summary)
    if isinstance(step, CorrectionsStep):
        # not _run_step: it collects the prior corrections, which a reload does not have
        return _corrections_outputs(step, setup)
    msg = f"unknown step type {step.type!r}"
    raise ValueError(msg)


# ---------------------------------------------------------------------------- final
def _correction_of(payload: str, name: str) -> Any:
    """The ``schemav2.Correction`` ``name`` of a payload (JSON text)."""
    model = _model_of(payload)
    return next(c for c in model.corrections if c.name == name)


@functools.lru_cache(maxsize=16)
def _model_of(payload: str) -> Any:
    from correctionlib import schemav2

    return schemav2.CorrectionSet.model_validate_json(payload)


def _final_closure(lp: LoadedPipeline, outputs: dict[str, StepOutputs]) -> dict[str, Any] | None:
    """The verdict of the closure steps (``None``: the pipeline has none)."""
    names = [n for n in lp.order if isinstance(lp.step(n), ClosureStep)]
    if not names:
        return None
    keys = (
        "closes",
        "status",
        "max_significance",
        "max_scale_pull",
        "worst_scale",
        "max_smear_significance",
        "worst_smear",
        "verdict",
    )
    steps = {n: {k: outputs[n].summary.get(k) for k in keys} for n in names}
    return {"closes": all(bool(v["closes"]) for v in steps.values()), "steps": steps}


def _write_final(
    lp: LoadedPipeline,
    setup: _Setup,
    outputs: dict[str, StepOutputs],
    final_dir: Path,
    *,
    wall_time: float,
) -> dict[str, Path]:
    """The final correctionlib file, combined legacy files and ``pipeline.json``."""
    names = setup.names
    description = f"zcalib pipeline {lp.path.name}: {lp.config.description}".strip()
    paths, corrections = write_final_corrections(
        [outputs[n] for n in lp.order],
        final_dir,
        names=names,
        seed=lp.config.smear_seed,
        description=description,
    )
    has_scales = any(outputs[n].scales for n in lp.order)
    has_smear = any(outputs[n].smear is not None for n in lp.order)
    record = {
        "schema_version": 1,
        "pipeline": str(lp.path),
        "description": lp.config.description,
        "order": list(lp.order),
        "data_runs": list(setup.data_runs),
        "corrections": corrections,
        "compound": names.compound if has_scales else None,
        "smear": names.smear if has_smear else None,
        "closure": _final_closure(lp, outputs),
        "steps": {
            n: {
                "type": o.type,
                "output_hash": o.output_hash,
                "ran": o.ran,
                "wall_time_s": round(o.wall_time_s, 3),
                "summary": o.summary,
            }
            for n, o in outputs.items()
        },
        "wall_time_s": round(wall_time, 3),
    }
    paths["summary"] = atomic_write_text(
        final_dir / "pipeline.json", json.dumps(stamp(record), indent=2) + "\n"
    )
    return paths


def write_final_corrections(
    outputs: Sequence[StepOutputs],
    final_dir: Path,
    *,
    names: EgmNames,
    seed: int,
    description: str,
) -> tuple[dict[str, Path], list[str]]:
    """The final payload of a chain: ``corrections.json`` (every scale step of ``outputs``
    in order, renamed ``EGMScale_<step>_<era>``, stacked in the compound; the smearing of the
    latest step providing one; the MC weights), the combined legacy ``scales.dat`` and
    ``smearings.dat``. The pipeline writes its ``final/`` with it; ``zcalib assemble`` writes
    the same from step folders produced by the single-step commands.

    Args:
        outputs: the finished steps, in execution order.
        final_dir: output folder.
        names: era and collection of the payload names.
        seed: smearing seed of ``EGMRandomGenerator``.
        description: description of the payload.

    Returns:
        The paths written (``corrections``, ``scales``, ``smearings``; those with content)
        and the names of the corrections in ``corrections.json``.
    """
    from zcalib.corrections import (
        ScaleSource,
        combine,
        egm_corrections,
        validate_file,
        write_correction_set,
    )

    sources: list[ScaleSource] = []
    for o in outputs:
        for k, s in enumerate(o.scales):
            label = o.name if len(o.scales) == 1 else f"{o.name}{k + 1}"
            sources.append(ScaleSource.from_payload(s.payload, s.name, names.step(label)))
    smear_steps = [o.smear for o in outputs if o.smear is not None]
    weights = [o.weight for o in outputs if o.weight is not None]
    paths: dict[str, Path] = {}
    smear = None
    if smear_steps:
        last = smear_steps[-1]
        assert last is not None
        smear = _correction_of(last.payload, last.name)
    corrections, compounds = egm_corrections(
        names, sources, smear, seed=seed, description=description
    )
    for w in weights:
        assert w is not None
        corrections.append(_correction_of(w.payload, w.correction))
    if sources or smear is not None:
        paths["corrections"] = write_correction_set(
            final_dir / "corrections.json", corrections, compounds, description=description
        )
        validate_file(paths["corrections"])
    legacy = [p for o in outputs for p in o.scale_legacy]
    lumi_split = [o.name for o in outputs if o.summary.get("splits_runs")]
    if lumi_split:
        log.warning(
            "%s/scales.dat not written: the run bins of step(s) %s split runs at "
            "luminosity blocks, which the legacy format cannot express (see "
            "%s/corrections.json and <step>/<step>_scales.tsv)",
            final_dir.name,
            ", ".join(lumi_split),
            final_dir.name,
        )
    elif no_legacy := [o.name for o in outputs if o.summary.get("no_legacy")]:
        log.warning(
            "%s/scales.dat not written: the categories of step(s) %s cut on signed eta or "
            "input columns, which the legacy format cannot express (see %s/corrections.json)",
            final_dir.name,
            ", ".join(no_legacy),
            final_dir.name,
        )
    elif legacy:
        with tempfile.TemporaryDirectory() as tmp:
            base = legacy[0]
            for k, nxt in enumerate(legacy[1:]):
                out = Path(tmp) / f"combined_{k}.dat"
                combine(base, nxt, out, error="quadrature")
                base = out
            text = base.read_text()
        paths["scales"] = atomic_write_text(final_dir / "scales.dat", restamp(text))
    # the legacy smearings of the step whose smearing the payload carries (none: not written)
    smear_legacy = [o.smear_legacy for o in outputs if o.smear is not None]
    if smear_legacy and smear_legacy[-1] is not None:
        src = smear_legacy[-1]
        paths["smearings"] = final_dir / "smearings.dat"
        atomic_write_text(paths["smearings"], restamp(src.read_text()))
    return paths, [c.name for c in corrections]
