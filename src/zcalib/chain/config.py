"""The pipeline configuration: YAML validated into frozen pydantic models, then a semantic pass.

Example (``configs/pipeline_demo.yaml``)::

    schema_version: 1
    description: demo chain on generated data with a run drift
    output: output/pipeline_demo
    generate: {n_data: 300000, n_mc: 900000, seed: 1, drift: 0.01}
    mc_weights:
      - {name: pileup, file: ../corrections/pileup_demo.json}
    steps:
      - {name: run_divide, type: run_divide, min_events: 10000}
      - {name: time_stability, type: time_stability, needs: [run_divide]}
      - {name: step2, type: fit, categories: cats_step2_coarse.yaml, needs: [time_stability]}
      - {name: step2_closure, type: fit, closure: true, categories: cats_step2_coarse.yaml,
         needs: [step2]}
      - {name: check, type: closure, categories: cats_step2_coarse.yaml,
         needs: [step2_closure]}

Relative paths are resolved against the folder of the YAML file, except ``output`` (relative
to the working directory, like every zcalib output). Steps form a graph through ``needs``;
a step's histograms are filled with the corrections of *every* step it depends on
(transitively) applied, in dependency order: their data scales, the MC smearing of the
latest smearing step, their Z pT × |y| weights (see ``docs/pipeline.md``). A ``closure``
step (:class:`ClosureStep`) re-derives residual scales and smearings with everything before it
applied and reports whether the chain closes; it provides no corrections.

:func:`load_pipeline` raises :class:`~zcalib.exceptions.InvalidConfig` with one line naming
the file and the field for: unknown keys, bad values, duplicate step names, a ``needs``
entry naming no step, dependency cycles, missing categories/correction files, a time
stability without run bins, a closure fit step without a smearing step before it, a
``closure`` step with a bad ``max_significance`` or without a correction step before it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from zcalib.calibration import McWeight
from zcalib.config import (
    DEFAULT_WINDOW,
    BinningSettings,
    SelectionConfig,
    format_validation_error,
    load_yaml,
)
from zcalib.exceptions import InvalidConfig
from zcalib.fit.config import FitConfig
from zcalib.outputs import check_step_name

__all__ = [
    "CORRECTION_STEP_TYPES",
    "RENAMED",
    "ClosureStep",
    "CorrectionsStep",
    "FitStep",
    "GenerateSettings",
    "LoadedPipeline",
    "PipelineConfig",
    "RunDivideStep",
    "RunSettings",
    "StepConfig",
    "TimeStabilityStep",
    "ZWeightsStep",
    "load_pipeline",
    "topological_order",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _run_default(name: str) -> Any:
    """The default of a :class:`~zcalib.runner.RunOptions` field (each default lives there:
    a pipeline without ``run:`` runs its loops as a single command would)."""
    import dataclasses

    from zcalib.runner import RunOptions

    return next(f.default for f in dataclasses.fields(RunOptions) if f.name == name)


class RunSettings(_Frozen):
    """How the event loops run (does not change the results, so not part of step hashes):
    the YAML form of :class:`~zcalib.runner.RunOptions`, with its field names and its
    defaults (a local Dask cluster); :meth:`options` gives the RunOptions the loops use."""

    executor: Literal["iterative", "futures", "dask"] = Field(
        _run_default("executor"), description="coffea executor: iterative, futures or dask."
    )
    workers: int = Field(
        _run_default("workers"), ge=1, description="Local worker processes (futures, dask)."
    )
    chunksize: int = Field(_run_default("chunksize"), ge=1, description="Events per chunk.")
    scheduler: str | None = Field(None, description="Address of an existing Dask scheduler.")
    recipe: str | None = Field(
        None,
        description="Dask cluster recipe YAML (dask_cluster/; e.g. kind: slurm): one cluster "
        "for every event loop of the pipeline. Relative to the pipeline YAML.",
    )
    progress: bool = Field(
        _run_default("progress"),
        description="Show progress bars (`zcalib pipeline --no-progress` hides them).",
    )

    def options(self, base: Path, **more: Any) -> Any:
        """The :class:`~zcalib.runner.RunOptions` of these settings (``recipe`` relative to
        ``base``; a scheduler or a recipe means Dask), with ``more`` RunOptions fields (the
        CLI's ``--maxchunks``, ``--retries``...). The pipeline's ``run:`` and the CLI's
        event-loop options both map onto RunOptions here."""
        from zcalib.runner import RunOptions

        recipe = None if self.recipe is None else base / self.recipe
        return RunOptions(
            executor="dask" if self.scheduler or recipe else self.executor,
            workers=self.workers,
            chunksize=self.chunksize,
            scheduler=self.scheduler,
            progress=self.progress,
            recipe=recipe,
            **more,
        )


class GenerateSettings(_Frozen):
    """Generate demo data (``zcalib generate``) when absent, instead of a datasets file."""

    out: str | None = Field(
        None, description="Folder of the generated files; default <output>/data."
    )
    n_data: int = Field(300_000, ge=1, description="Data pairs.")
    n_mc: int = Field(900_000, ge=1, description="MC pairs.")
    seed: int = Field(1, ge=0, description="Generator seed.")
    drift: float = Field(0.0, description="Total relative linear drift of data across runs.")
    gain_thresholds: tuple[float, float] = Field(
        (150.0, 1600.0),
        description="Barrel seed energies [GeV] of the switch to gain 6 and gain 1 (endcap "
        "2x, 1.875x); lower them, e.g. [35, 50], to populate gains 6 and 1 for a gain step.",
    )


class _StepBase(_Frozen):
    name: str = Field(
        description="Unique step name (letters, digits, _, starting with a letter): output "
        "folder and "
        "correction-name prefix."
    )
    needs: tuple[str, ...] = Field(
        (), description="Steps whose corrections this step builds on (applied before filling)."
    )
    description: str = Field("", description="Free text.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        try:
            return check_step_name(v, "step name")
        except InvalidConfig as err:
            raise ValueError(str(err)) from None


class RunDivideStep(_StepBase):
    """Divide the data into run bins of at least ``min_events`` selected pairs."""

    type: Literal["run_divide"] = Field(description="Step type.")
    min_events: int = Field(10_000, ge=1, description="Minimum selected pairs per run bin.")
    granularity: Literal["run", "lumi"] = Field(
        "run", description="run: bins end at run boundaries; lumi: may split runs."
    )


class TimeStabilityStep(_StepBase):
    """Scales per run bin × |η| bin from median(MC) / median(data)."""

    type: Literal["time_stability"] = Field(description="Step type.")
    run_bins: str | None = Field(
        None,
        description="Run bins file (YAML or .dat); default: the run_divide step among `needs`.",
    )
    eta_bins: tuple[tuple[float, float], ...] = Field(
        ((0.0, 1.0), (1.0, 1.4442), (1.566, 2.0), (2.0, 2.5)),
        description="|eta_SC| bins (both electrons in the same bin); signed eta_SC bins "
        "when an edge is negative, e.g. [[-2.5, -1.566], [-1.4442, 1.4442], [1.566, 2.5]] "
        "(EE-, EB, EE+; the step then reads ScEta).",
    )
    window: tuple[float, float] = Field(DEFAULT_WINDOW, description="Mass window [GeV].")
    validate_after: bool = Field(
        True,
        description="Re-read the data with the new step "
        "applied: peaks after the correction, chi2, plot.",
    )


class ZWeightsStep(_StepBase):
    """Z pT × |y| MC weights from data/MC (pymin -w), applied to MC in later steps."""

    type: Literal["zweights"] = Field(description="Step type.")
    pt_edges: tuple[float, ...] = Field(
        (0, 2, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 70, 100, 150, 250),
        description="Z pT bin edges [GeV].",
    )
    y_edges: tuple[float, ...] = Field(
        (0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.5), description="Z |y| bin edges."
    )
    max_weight: float = Field(5.0, ge=1, description="Cap on the weights.")


class SmoothOptions(_Frozen):
    """Smooth Et curves per cell of an Et-binned fit step (see ``docs/fit.md``)."""

    scale: Literal["power", "linear"] | None = Field(
        "power",
        description="Scale curve: power a*(pt/45)^b + c, linear a + b*(pt/45 - 1); null: "
        "binned scales.",
    )
    smear: Literal["sqrt_inverse"] | None = Field(
        "sqrt_inverse", description="Smearing curve: sqrt_inverse sqrt(a^2 + b/pt); null: binned."
    )


class _FittingStep(_StepBase):
    """A step that fits: its fit options are a :class:`~zcalib.fit.FitConfig` (the one fit
    model: the names and defaults of the CLI fit options and of ``zcalib.api``)."""

    start_file: str | None = Field(
        None,
        description="only-step or scales file whose scales start the fit (pymin --only-step "
        "refinement; sets fit.start 'specify' and fit.start_scales).",
    )
    fit: FitConfig = Field(
        default_factory=FitConfig,
        description="Fit options: the fields of zcalib.fit.FitConfig with its defaults "
        "(window, bin_width, min_data, min_mc, start, ignore_scales, ignore_smears, mc_stat, "
        "mc_stat_likelihood, seed, smearing, double_gaussian, ...).",
    )

    @field_validator("fit", mode="before")
    @classmethod
    def _fit_config(cls, v: Any, info: ValidationInfo) -> Any:
        """Build the FitConfig through its own validation (its one-line messages). With a
        ``start_file``, ``start: specify`` takes its start values from that file."""
        if not isinstance(v, Mapping):
            return v
        if info.data.get("start_file") is not None and v.get("start") == "specify":
            v = {k: x for k, x in v.items() if k != "start"}  # set with the file's values
        try:
            return FitConfig(**v)
        except InvalidConfig as err:
            raise ValueError(str(err).removeprefix("fit config: ")) from None


class FitStep(_FittingStep):
    """Fit scales (data) and smearings (MC) in a category scheme."""

    type: Literal["fit"] = Field(description="Step type.")
    categories: str = Field(description="Categories file (TSV or YAML).")
    closure: bool = Field(
        False,
        description="pymin --closure: MC smeared ahead with the "
        "latest smearings, only scales fitted.",
    )
    mc_smearing: Literal["auto", "latest", "none"] = Field(
        "auto",
        description="MC smearing while filling: latest smear step or none; auto: "
        "latest for closure steps, none otherwise (the fit derives the full smearing).",
    )
    iterations: int = Field(
        1,
        ge=1,
        le=5,
        description="Refill with this step's own scales applied and refit the residual "
        "(Et categories are migration-free without it, docs/fit.md).",
    )
    smooth: SmoothOptions | None = Field(
        None,
        description="Fit smooth Et curves per cell to the Et-binned values and write them "
        "into the payload as formulas of pt (needs categories with >= 2 Et bins per cell).",
    )
    systematics: str | None = Field(
        None,
        description="Systematics YAML (the `zcalib systematics` format): after the fit, refit "
        "with each variation and fold the systematic errors into the payload's "
        "escale/esmear (stat (+) MC stat (+) syst; components in fit_result.json).",
    )


class CorrectionsStep(_StepBase):
    """Existing corrections (a correctionlib file) used as a step of the chain."""

    type: Literal["corrections"] = Field(description="Step type.")
    file: str = Field(description="correctionlib JSON file.")
    corrections: tuple[str, ...] | None = Field(
        None, description="Correction names to use, in order; default: all scale/smear ones."
    )


class ClosureStep(_FittingStep):
    """Closure check: residual scales and smearings with every step before it applied.

    Filled like a fit step at its position (MC smeared with the latest smearing), scales and
    smearings fitted free; the chain closes when every residual scale is within
    ``max_significance`` standard deviations of 1 and every smearing's ``σ²/err(σ²)`` is
    below it. Provides no corrections: never in the final file, never applied downstream.
    """

    type: Literal["closure"] = Field(description="Step type.")
    categories: str = Field(description="Categories file (TSV or YAML) of the refit.")
    max_significance: float = Field(
        3.0,
        description="Closure threshold (> 0): |scale - 1| / error and σ²/err(σ²) must be "
        "below it in every category.",
    )


StepConfig = Annotated[
    RunDivideStep | TimeStabilityStep | ZWeightsStep | FitStep | CorrectionsStep | ClosureStep,
    Field(discriminator="type"),
]

#: Step types providing corrections (data scales, MC smearings or MC weights).
CORRECTION_STEP_TYPES = frozenset({"time_stability", "zweights", "fit", "corrections"})


class PipelineConfig(_Frozen):
    """The whole chain."""

    schema_version: Literal[1] = Field(1, description="Version of the pipeline format.")
    description: str = Field("", description="Free text.")
    output: str = Field(description="Output folder (one subfolder per step, `final/`).")
    datasets: str | None = Field(None, description="Dataset description YAML.")
    generate: GenerateSettings | None = Field(None, description="Generate demo inputs.")
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig, description="Pair selection."
    )
    binning: BinningSettings = Field(
        default_factory=BinningSettings, description="Fine mass binning."
    )
    run: RunSettings = Field(default_factory=RunSettings, description="Event-loop execution.")
    smear_seed: int = Field(0, ge=0, description="Seed of the MC smearing random numbers.")
    mc_weights: tuple[McWeight, ...] = Field(
        (),
        description="Static MC weights (correctionlib, e.g. pile-up), filled with their "
        "up/down variations: :class:`~zcalib.calibration.McWeight`, as CalibrationConfig's.",
    )
    era: str = Field(
        "2022preEE",
        description="Era in the payload names (`EGMScale_Compound_<collection>_<era>`...); "
        "one of zcalib.corrections.ERAS.",
    )
    collection: Literal["Ele", "Pho"] = Field(
        "Ele", description="Collection in the payload names: `Ele` (electrons) or `Pho`."
    )
    steps: tuple[StepConfig, ...] = Field(min_length=1, description="The steps.")


@dataclass(frozen=True)
class LoadedPipeline:
    """A validated pipeline: the model, its file, and the steps in execution order.

    Attributes:
        config: the validated model.
        path: the YAML file.
        base: folder relative paths are resolved against.
        order: step names in execution (dependency) order.
        closure: ``{step: every step it depends on, in execution order}``.
    """

    config: PipelineConfig
    path: Path
    base: Path
    order: tuple[str, ...]
    closure: dict[str, tuple[str, ...]]

    def step(self, name: str) -> Any:
        """The step model named ``name``."""
        return next(s for s in self.config.steps if s.name == name)

    def resolve(self, path: str) -> Path:
        """A path of the config, relative to the YAML folder unless absolute."""
        p = Path(path)
        return p if p.is_absolute() else self.base / p

    @property
    def output(self) -> Path:
        """The output folder."""
        return Path(self.config.output)

    def dependents(self, name: str) -> tuple[str, ...]:
        """``name`` and every step depending on it, in execution order."""
        return tuple(s for s in self.order if s == name or name in self.closure[s])


def topological_order(
    names: Sequence[str], needs: dict[str, tuple[str, ...]], source: str
) -> tuple[str, ...]:
    """Execution order: dependencies first, otherwise file order (stable Kahn sort).

    Raises:
        InvalidConfig: unknown dependency or a cycle (named).

    Example:
        >>> topological_order(["b", "a"], {"b": ("a",), "a": ()}, "p.yaml")
        ('a', 'b')
    """
    known = set(names)
    for n in names:
        for d in needs[n]:
            if d not in known:
                msg = (
                    f"{source}: step '{n}' needs unknown step '{d}'; known steps: "
                    f"{', '.join(names)}"
                )
                raise InvalidConfig(msg)
    done: list[str] = []
    left = list(names)
    while left:
        ready = [n for n in left if all(d in done for d in needs[n])]
        if not ready:
            raise InvalidConfig(_cycle_message(left, needs, source))
        done.append(ready[0])
        left.remove(ready[0])
    return tuple(done)


def _cycle_message(left: list[str], needs: dict[str, tuple[str, ...]], source: str) -> str:
    # walk dependencies among the remaining steps until a step repeats
    path = [left[0]]
    while True:
        nxt = next(d for d in needs[path[-1]] if d in left)
        if nxt in path:
            cyc = [*path[path.index(nxt) :], nxt]
            return f"{source}: steps form a dependency cycle: {' -> '.join(cyc)}"
        path.append(nxt)


#: Former spellings of pipeline fields, refused with their one name now (that of
#: CalibrationConfig / FitConfig): ``(section, old) -> new``; section ``""`` is the top level,
#: ``"fit"`` a step's fit options.
RENAMED: Mapping[tuple[str, str], str] = {
    ("", "weights"): "mc_weights (as in CalibrationConfig)",
    ("fit", "ignore"): (
        "fit.ignore_scales / fit.ignore_smears (FitConfig's names; category indices: "
        "scale[i] -> ignore_scales: [i], smear[i] -> ignore_smears: [i])"
    ),
    ("fit", "start_file"): "start_file, a field of the step beside fit",
}


def _check_renamed(raw: Mapping[str, Any], p: Path) -> None:
    """Refuse a former spelling in one line naming the file, the field and its new name."""
    for key in raw:
        new = RENAMED.get(("", str(key)))
        if new is not None:
            msg = f"{p}: field '{key}' was renamed; write {new}"
            raise InvalidConfig(msg)
    steps = raw.get("steps")
    for step in steps if isinstance(steps, list) else ():
        fit = step.get("fit") if isinstance(step, Mapping) else None
        for key in fit if isinstance(fit, Mapping) else ():
            new = RENAMED.get(("fit", str(key)))
            if new is not None:
                msg = f"{p}: step '{step.get('name')}': field 'fit.{key}' was renamed; write {new}"
                raise InvalidConfig(msg)


def _validation_message(p: Path, raw: Mapping[str, Any], err: ValidationError) -> str:
    """One line for the first pydantic error; a step's fit options say the step and the
    FitConfig field (``step 'a': field 'fit.mc_stat' is 'auto'; allowed: ...``)."""
    first = err.errors()[0]
    loc = first["loc"]
    if len(loc) == 4 and loc[0] == "steps" and loc[3] == "fit" and first["type"] == "value_error":
        name = raw["steps"][loc[1]].get("name")
        text = str(first["msg"]).removeprefix("Value error, ").replace("field '", "field 'fit.", 1)
        return f"{p}: step '{name}': {text}"
    return format_validation_error(str(p), err)


def load_pipeline(path: str | Path) -> LoadedPipeline:
    """Load and validate a pipeline YAML (schema, then semantics), before any event is read.

    Raises:
        InvalidConfig: one line naming the file, the field or step, the bad value.
    """
    p = Path(path)
    raw = load_yaml(p)
    if not isinstance(raw, dict):
        msg = f"{p}: expected a mapping with 'output' and 'steps', got {type(raw).__name__}"
        raise InvalidConfig(msg)
    _check_renamed(raw, p)
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise InvalidConfig(_validation_message(p, raw, err)) from None
    base = p.resolve().parent
    names = [s.name for s in cfg.steps]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        msg = f"{p}: step names must be unique; repeated: {', '.join(dupes)}"
        raise InvalidConfig(msg)
    needs = {s.name: s.needs for s in cfg.steps}
    order = topological_order(names, needs, str(p))
    closure: dict[str, tuple[str, ...]] = {}
    for n in order:
        deps: set[str] = set()
        for d in needs[n]:
            deps |= {d, *closure[d]}
        closure[n] = tuple(s for s in order if s in deps)
    loaded = LoadedPipeline(config=cfg, path=p, base=base, order=order, closure=closure)
    _check_semantics(loaded)
    return loaded


def _check_step_folders(lp: LoadedPipeline) -> None:
    """A step's folder (``<output>/<name>``, emptied each time the step runs) is neither the
    final payload's folder nor the folder the generated inputs are written to."""
    cfg = lp.config
    taken = {(lp.output / "final").resolve(): "the final payload's folder"}
    if cfg.generate is not None:
        gen = Path(cfg.generate.out) if cfg.generate.out else lp.output / "data"
        taken[gen.resolve()] = "the folder of the generated inputs (generate.out)"
    for s in cfg.steps:
        what = taken.get((lp.output / s.name).resolve())
        if what is not None:
            msg = (
                f"{lp.path}: step '{s.name}': its folder {lp.output / s.name} is {what}; "
                "rename the step"
            )
            raise InvalidConfig(msg)


def _check_semantics(lp: LoadedPipeline) -> None:
    from zcalib.corrections.egm import check_era

    cfg, p = lp.config, lp.path
    check_era(cfg.era, f"{p}: field 'era'")
    if (cfg.datasets is None) == (cfg.generate is None):
        msg = f"{p}: give exactly one of 'datasets' (a dataset description) or 'generate'"
        raise InvalidConfig(msg)
    if cfg.datasets is not None and not lp.resolve(cfg.datasets).is_file():
        msg = f"{p}: field 'datasets': file {lp.resolve(cfg.datasets)} not found"
        raise InvalidConfig(msg)
    for w in cfg.mc_weights:
        if not lp.resolve(w.file).is_file():
            msg = f"{p}: weight '{w.name}': file {lp.resolve(w.file)} not found"
            raise InvalidConfig(msg)
    _check_step_folders(lp)
    kinds = {s.name: s.type for s in cfg.steps}
    for s in cfg.steps:
        deps = lp.closure[s.name]
        where = f"{p}: step '{s.name}'"
        if isinstance(s, FitStep | ClosureStep):
            cats = lp.resolve(s.categories)
            if not cats.is_file():
                msg = f"{where}: categories file {cats} not found (unknown category scheme)"
                raise InvalidConfig(msg)
            if s.start_file is not None and not lp.resolve(s.start_file).is_file():
                msg = f"{where}: start_file {lp.resolve(s.start_file)} not found"
                raise InvalidConfig(msg)
        if isinstance(s, ClosureStep):
            _check_closure_step(s, deps, kinds, where)
        elif isinstance(s, FitStep):
            smearing = (
                s.mc_smearing if s.mc_smearing != "auto" else ("latest" if s.closure else "none")
            )
            if s.closure and smearing != "latest":
                msg = f"{where}: a closure step smears MC ahead: mc_smearing must be 'latest'"
                raise InvalidConfig(msg)
            if smearing == "latest" and not any(_provides_smear(lp, d) for d in deps):
                msg = (
                    f"{where}: {'closure ' if s.closure else ''}MC smearing 'latest' needs a "
                    "fit step deriving smearings among its dependencies (needs)"
                )
                raise InvalidConfig(msg)
        elif isinstance(s, TimeStabilityStep):
            if s.run_bins is not None:
                if not lp.resolve(s.run_bins).is_file():
                    msg = f"{where}: run_bins file {lp.resolve(s.run_bins)} not found"
                    raise InvalidConfig(msg)
            elif not any(kinds[d] == "run_divide" for d in s.needs):
                msg = (
                    f"{where}: time_stability needs run bins: a run_divide step in 'needs' "
                    "or a 'run_bins' file"
                )
                raise InvalidConfig(msg)
        elif isinstance(s, CorrectionsStep) and not lp.resolve(s.file).is_file():
            msg = f"{where}: corrections file {lp.resolve(s.file)} not found"
            raise InvalidConfig(msg)


def _check_closure_step(
    s: ClosureStep, deps: tuple[str, ...], kinds: Mapping[str, str], where: str
) -> None:
    if not (math.isfinite(s.max_significance) and s.max_significance > 0):
        msg = (
            f"{where}: field 'max_significance' must be a finite number > 0 (standard "
            f"deviations), got {s.max_significance}"
        )
        raise InvalidConfig(msg)
    fixed = [f"fit.{f}" for f in ("fix_scales", "fix_smears") if getattr(s.fit, f)]
    if fixed:
        msg = f"{where}: a closure step fits scales and smearings free: {fixed[0]} must be false"
        raise InvalidConfig(msg)
    if not any(kinds[d] in CORRECTION_STEP_TYPES for d in deps):
        given = f"needs: {', '.join(s.needs)}" if s.needs else "no 'needs'"
        msg = (
            f"{where}: a closure step checks the corrections of the steps before it, but none "
            f"of its dependencies ({given}) provides corrections; add a time_stability, fit, "
            "zweights or corrections step to 'needs'"
        )
        raise InvalidConfig(msg)


def _provides_smear(lp: LoadedPipeline, name: str) -> bool:
    s = lp.step(name)
    if isinstance(s, FitStep):
        return not s.closure
    return isinstance(s, CorrectionsStep)  # checked when loaded: it may hold smear steps
