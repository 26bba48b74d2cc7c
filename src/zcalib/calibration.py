"""The calibration configuration: one immutable object describing a derivation step.

:class:`CalibrationConfig` says *what* is calibrated: the input format and lepton collection,
the electron working point and pair selection, the category scheme, the mass binning and fit
window, the prior corrections and MC weights applied while filling, and which systematic
variation the fit uses. It is a frozen pydantic model:

* **immutable** — changing it means making a new one with :meth:`~CalibrationConfig.with_overrides`;
  overrides compose, and unknown keys are errors that name the allowed ones;
* **no global default** — there is no module-level instance anybody could modify, so notebook
  cells run out of order cannot change each other's results. Per-format defaults come from
  the factory :meth:`~CalibrationConfig.for_format`, which builds a fresh object each call;
* **one pass, all variations** — the processor fills every variation (``nominal``,
  ``uncorrected``, ``scale_up/down``, ``smear_up/down``, ``<weight>_up/down``) in the same pass
  over the events. ``systematic`` only selects which filled histograms the fit uses; it never
  re-runs anything (the func_adl calibration model needs one query per systematic; zcalib
  does not).

Fields left at ``None`` (tree name, collection) and a ``selection`` without ``id_level`` mean
"the default of the input format", so switching ``input_format`` keeps a consistent
configuration; the resolved values are the properties :attr:`~CalibrationConfig.tree`, :attr:`~CalibrationConfig.lepton_collection`
and :attr:`~CalibrationConfig.id_level`.

Example:
    >>> cfg = CalibrationConfig.for_format("nanoaod")
    >>> cfg.tree, cfg.lepton_collection, cfg.id_level
    ('Events', 'Electron', 'medium')
    >>> tight = cfg.with_overrides(selection={"id_level": "tight"}, window=(82, 98))
    >>> tight.id_level, tight.window, cfg.id_level
    ('tight', (82.0, 98.0), 'medium')
    >>> cfg.with_overrides(windw=(82, 98))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zcalib.exceptions.InvalidConfig: CalibrationConfig: unknown option 'windw'; allowed: ...
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zcalib.config import (
    DEFAULT_WINDOW,
    BinningSettings,
    DatasetConfig,
    SelectionConfig,
    format_validation_error,
)
from zcalib.exceptions import InvalidConfig
from zcalib.io.formats import DEFAULT_TREES, ColumnMap

if TYPE_CHECKING:
    from zcalib.categories import CategoryScheme
    from zcalib.corrections.egm import EgmNames
    from zcalib.fit.config import FitConfig
    from zcalib.histograms import HistogramSet, MassBinning
    from zcalib.processors.zee import CorrectionStep, WeightSpec

__all__ = [
    "BASE_SYSTEMATICS",
    "FORMAT_DEFAULTS",
    "CalibrationConfig",
    "McWeight",
    "PriorCorrection",
    "load_calibration_config",
]

InputFormat = Literal["ecalelf", "nanoaod", "flat", "parquet"]

#: Read-only defaults per input format: tree, lepton collection, working point, and the
#: collections and working points the format can express.
FORMAT_DEFAULTS: Final[Mapping[str, Mapping[str, Any]]] = MappingProxyType(
    {
        "ecalelf": MappingProxyType(
            {
                "treename": DEFAULT_TREES["ecalelf"],
                "collection": "Ele",
                "working_point": "medium",
                "collections": ("Ele",),
                "working_points": ("none", "medium", "tight"),
                "note": "ECALELF `selected` trees: per-electron [3] arrays (etaEle, R9Ele, ...), "
                "eleID bitmask (medium 0x08, tight 0x10)",
            }
        ),
        "nanoaod": MappingProxyType(
            {
                "treename": DEFAULT_TREES["nanoaod"],
                "collection": "Electron",
                "working_point": "medium",
                "collections": ("Electron",),
                "working_points": ("none", "loose", "medium", "tight"),
                "note": "NanoAOD `Events`: the jagged Electron collection, cutBased 0-4",
            }
        ),
        "flat": MappingProxyType(
            {
                "treename": DEFAULT_TREES["flat"],
                "collection": None,
                "working_point": "none",
                "collections": (),
                "working_points": ("none",),
                "note": "flat ntuples: branches named by a column_map (no ID information)",
            }
        ),
        "parquet": MappingProxyType(
            {
                "treename": DEFAULT_TREES["parquet"],
                "collection": None,
                "working_point": "medium",
                "collections": (),
                "working_points": ("none", "loose", "medium", "tight"),
                "note": "pair skims written by `zcalib skim` (a skim keeps the pairs of its own "
                "selection: a looser one is refused)",
            }
        ),
    }
)

#: Variations every configuration may select; MC weights add ``<name>_up``/``<name>_down``.
BASE_SYSTEMATICS: Final[tuple[str, ...]] = (
    "nominal",
    "uncorrected",
    "scale_up",
    "scale_down",
    "smear_up",
    "smear_down",
)
_RESERVED_WEIGHT_NAMES: Final[frozenset[str]] = frozenset(
    {"nominal", "uncorrected", "scale", "smear", "escale", "esmear"}
)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _path_str(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Former flat spellings, refused with their one name now (that of the pipeline's
#: ``selection:`` / ``binning:`` and of FitConfig): ``old -> new``.
RENAMED: Final[Mapping[str, str]] = MappingProxyType(
    {
        "working_point": "selection: {id_level: ...}",
        "min_et_lead": "selection: {min_et_lead: ...}",
        "min_et_sublead": "selection: {min_et_sublead: ...}",
        "max_abs_eta": "selection: {max_abs_eta: ...}",
        "exclude_crack": "selection: {exclude_crack: ...}",
        "opposite_charge": "selection: {opposite_charge: ...}",
        "mass_window": "window (FitConfig's name)",
        "fill_range": "binning: {lo: ..., hi: ...}",
        "n_mass_bins": "binning: {n_bins: ...}",
    }
)
#: Fields holding a nested model: a mapping given to :meth:`CalibrationConfig.with_overrides`
#: changes only the keys it names.
_NESTED: Final = ("selection", "binning")


class PriorCorrection(_Frozen):
    """A correctionlib file whose scale (data) / smear (MC) steps are applied while filling.

    Example:
        >>> PriorCorrection(file="step1/corrections.json", names=("step1_scale",)).names
        ('step1_scale',)
    """

    file: str = Field(description="correctionlib JSON (`.json` or `.json.gz`).")
    names: tuple[str, ...] | None = Field(
        None,
        description="Corrections to apply, in order; default: every correction whose output "
        "is `scale` or `smear`.",
    )

    @field_validator("file", mode="before")
    @classmethod
    def _fspath(cls, v: Any) -> Any:
        return _path_str(v)


class McWeight(_Frozen):
    """An MC event weight from a correctionlib payload, filled with its up/down variations.

    Example:
        >>> McWeight.parse("pileup=corrections/pileup_demo.json").variations
        ('pileup_up', 'pileup_down')
    """

    name: str = Field(
        description="Variation prefix (`pileup` fills `pileup_up` and `pileup_down`)."
    )
    file: str = Field(description="correctionlib JSON holding the weight.")
    correction: str | None = Field(
        None, description="Correction name in the file; default: `name`."
    )

    @field_validator("file", mode="before")
    @classmethod
    def _fspath(cls, v: Any) -> Any:
        return _path_str(v)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME.match(v) or v in _RESERVED_WEIGHT_NAMES:
            msg = (
                f"weight name {v!r} must be an identifier (letters, digits, _) and not one of "
                f"{', '.join(sorted(_RESERVED_WEIGHT_NAMES))}"
            )
            raise ValueError(msg)
        return v

    @property
    def variations(self) -> tuple[str, str]:
        """The two histogram variations this weight fills."""
        return (f"{self.name}_up", f"{self.name}_down")

    @classmethod
    def parse(cls, spec: str) -> McWeight:
        """A weight from the CLI form ``NAME=FILE[:CORRECTION]``."""
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            msg = f"MC weight {spec!r}: expected NAME=FILE[:CORRECTION]"
            raise InvalidConfig(msg)
        file, _, corr = rest.partition(":")
        return cls(name=name, file=file, correction=corr or None)


class CalibrationConfig(_Frozen):
    """What one derivation step calibrates (immutable; change it with :meth:`with_overrides`).

    Build it with :meth:`for_format` (defaults of an input format), :func:`load_calibration_config`
    (YAML) or the constructor. Fields left at ``None`` take the input format's default.

    Example:
        >>> cfg = CalibrationConfig.for_format("ecalelf", mc_weights=["pileup=pu.json"])
        >>> cfg.variations()
        ('nominal', 'uncorrected', 'scale_up', 'scale_down', 'smear_up', 'smear_down', \
'pileup_up', 'pileup_down')
        >>> cfg.with_overrides(systematic="pileup_up").systematic
        'pileup_up'
    """

    schema_version: Literal[1] = Field(1, description="Version of this format.")
    input_format: InputFormat = Field(
        "ecalelf",
        description="Input format: `ecalelf`, `nanoaod`, `flat` (needs `column_map`) or "
        "`parquet` (pair skims).",
    )
    treename: str | None = Field(
        None, description="Tree name; `None`: the format default (selected / Events / events)."
    )
    collection: str | None = Field(
        None,
        description="Lepton collection read; `None`: the format default (`Ele` for ECALELF, "
        "`Electron` for NanoAOD; flat ntuples use `column_map`).",
    )
    column_map: ColumnMap | None = Field(
        None, description="Branch names of a flat ntuple (format `flat` only)."
    )
    selection: SelectionConfig = Field(
        default_factory=SelectionConfig,
        validate_default=True,
        description="Pair selection (the pipeline's `selection:`): Et thresholds, |η|, crack, "
        "charges and `id_level`; `id_level` left out: the format default (medium; none for "
        "flat ntuples, which carry no ID).",
    )
    categories: str | None = Field(
        None,
        description="Category file (pymin TSV or YAML); `None`: the built-in 8-category "
        "|η| × R9 scheme (`configs/cats_eta_r9.tsv`).",
    )
    window: tuple[float, float] = Field(
        DEFAULT_WINDOW,
        description="Fit window [GeV] (the likelihood's mass range; FitConfig's `window`).",
    )
    binning: BinningSettings = Field(
        default_factory=BinningSettings,
        description="Fine mass binning of the filled histograms (the pipeline's `binning: "
        "{n_bins, lo, hi}`: about `n_bins` bins uniform in log m over [lo, hi] GeV, widened "
        "by less than a bin so that the edges of `window` are bin edges).",
    )
    corrections: tuple[PriorCorrection, ...] = Field(
        (),
        description="Prior corrections applied while filling: scale steps to data, smear "
        "steps to MC (their up/down and `uncorrected` variations are filled too).",
    )
    mc_weights: tuple[McWeight, ...] = Field(
        (), description="MC weights (correctionlib), filled with up/down variations."
    )
    systematic: str = Field(
        "nominal",
        description="Variation the fit uses: nominal, uncorrected (raw energies), "
        "scale_up/down, smear_up/down or <weight>_up/down. Selecting one re-runs nothing.",
    )
    smear_seed: int = Field(
        0, ge=0, description="Seed of the counter-based random numbers of MC smearing."
    )
    era: str = Field(
        "2022preEE",
        description="Era in the payload names (`EGMScale_Compound_Ele_<era>`...): one of "
        "2016preVFP, 2016postVFP, 2017, 2018, 2022preEE, 2022postEE, 2023preBPIX, "
        "2023postBPIX, 2024, 2025.",
    )

    # ------------------------------------------------------------------ validation
    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key in data:
                if key in RENAMED:
                    msg = f"field '{key}' was renamed; write {RENAMED[key]}"
                    raise ValueError(msg)
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                msg = _unknown_message(unknown, cls.model_fields)
                raise ValueError(msg)
        return data

    @field_validator("selection", mode="after")
    @classmethod
    def _format_working_point(cls, v: SelectionConfig, info: ValidationInfo) -> SelectionConfig:
        """``id_level`` left out means the input format's default (medium; none for flat)."""
        fmt = info.data.get("input_format")
        if fmt is None or "id_level" in v.model_fields_set:
            return v
        default = str(FORMAT_DEFAULTS[fmt]["working_point"])
        if v.id_level == default:
            return v
        out = v.model_copy(update={"id_level": default})
        out.__pydantic_fields_set__.discard("id_level")  # still the format's default
        return out

    @field_validator("era")
    @classmethod
    def _known_era(cls, v: str) -> str:
        from zcalib.corrections.egm import ERAS

        if v not in ERAS:
            msg = f"unknown era {v!r}; allowed: {', '.join(ERAS)}"
            raise ValueError(msg)
        return v

    def payload_names(self) -> EgmNames:
        """The correction names of this step's payload (era, ``Ele``/``Pho``)."""
        from zcalib.corrections.egm import EgmNames, particle_of

        return EgmNames(self.era, particle_of(self.collection))

    @field_validator("categories", mode="before")
    @classmethod
    def _categories_path(cls, v: Any) -> Any:
        return _path_str(v)

    @field_validator("corrections", mode="before")
    @classmethod
    def _coerce_corrections(cls, v: Any) -> Any:
        if isinstance(v, str | os.PathLike | Mapping | PriorCorrection):
            v = (v,)
        return tuple({"file": _path_str(x)} if isinstance(x, str | os.PathLike) else x for x in v)

    @field_validator("mc_weights", mode="before")
    @classmethod
    def _coerce_weights(cls, v: Any) -> Any:
        if isinstance(v, str | McWeight):
            v = (v,)
        if isinstance(v, Mapping) and "name" not in v:  # {name: file}
            return tuple({"name": k, "file": _path_str(f)} for k, f in v.items())
        return tuple(McWeight.parse(x) if isinstance(x, str) else x for x in v)

    @model_validator(mode="after")
    def _check(self) -> CalibrationConfig:
        fmt = FORMAT_DEFAULTS[self.input_format]
        if self.collection is not None and self.collection not in fmt["collections"]:
            allowed = ", ".join(fmt["collections"]) or "none (leave it unset; use column_map)"
            msg = (
                f"collection {self.collection!r} is not available for input_format "
                f"{self.input_format!r}; allowed: {allowed}"
            )
            raise ValueError(msg)
        if self.id_level not in fmt["working_points"]:
            msg = (
                f"selection.id_level {self.id_level!r} is not available for input_format "
                f"{self.input_format!r}; allowed: {', '.join(fmt['working_points'])}"
            )
            raise ValueError(msg)
        if self.input_format == "flat" and self.column_map is None:
            msg = "input_format 'flat' needs a column_map"
            raise ValueError(msg)
        if self.column_map is not None and self.input_format != "flat":
            msg = f"column_map is only used with input_format 'flat', not {self.input_format!r}"
            raise ValueError(msg)
        lo, hi = self.binning.lo, self.binning.hi
        wlo, whi = self.window
        if not lo <= wlo < whi <= hi:
            msg = (
                f"window {self.window} must lie inside binning lo-hi ({lo:g}, {hi:g}) with lo < hi"
            )
            raise ValueError(msg)
        names = [w.name for w in self.mc_weights]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"mc_weights names must be unique; repeated: {', '.join(dupes)}"
            raise ValueError(msg)
        filled = self.variations()
        if self.systematic not in filled:
            msg = f"systematic {self.systematic!r} is not filled; allowed: {', '.join(filled)}"
            raise ValueError(msg)
        return self

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_format(cls, input_format: str, **overrides: Any) -> CalibrationConfig:
        """A new configuration with the defaults of ``input_format`` (plus ``overrides``).

        Each call builds a fresh object: there is no shared default to modify.

        Raises:
            InvalidConfig: unknown format or option, or an invalid value (named).

        Example:
            >>> CalibrationConfig.for_format("ecalelf").tree
            'selected'
            >>> CalibrationConfig.for_format("root")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            zcalib.exceptions.InvalidConfig: unknown input format 'root'; allowed: ecalelf, ...
        """
        if input_format not in FORMAT_DEFAULTS:
            msg = f"unknown input format {input_format!r}; allowed: {', '.join(FORMAT_DEFAULTS)}"
            raise InvalidConfig(msg)
        return _validate({"input_format": input_format, **overrides}, "CalibrationConfig")

    def with_overrides(self, **overrides: Any) -> CalibrationConfig:
        """A modified copy; ``self`` is unchanged. Overrides compose.

        Raises:
            InvalidConfig: an unknown option (the message lists the allowed ones) or an
                invalid value.

        A mapping given for ``selection`` or ``binning`` changes only the keys it names (a
        :class:`~zcalib.config.SelectionConfig` / :class:`~zcalib.config.BinningSettings`
        replaces the whole model).

        Example:
            >>> base = CalibrationConfig()
            >>> a = base.with_overrides(selection={"min_et_lead": 30})
            >>> a = a.with_overrides(systematic="uncorrected")
            >>> (a.selection.min_et_lead, a.systematic), (base.selection.min_et_lead, base.systematic)
            ((30.0, 'uncorrected'), (25.0, 'nominal'))
        """
        for key in overrides:
            if key in RENAMED:
                msg = f"CalibrationConfig: field '{key}' was renamed; write {RENAMED[key]}"
                raise InvalidConfig(msg)
        unknown = sorted(k for k in overrides if k not in type(self).model_fields)
        if unknown:
            raise InvalidConfig(
                "CalibrationConfig: " + _unknown_message(unknown, type(self).model_fields)
            )
        data: dict[str, Any] = {name: getattr(self, name) for name in type(self).model_fields}
        for name, value in overrides.items():
            merge = name in _NESTED and isinstance(value, Mapping)
            current = getattr(self, name).model_dump(exclude_unset=True) if merge else {}
            data[name] = {**current, **value} if merge else value
        return _validate(data, "CalibrationConfig.with_overrides")

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-serialisable dict (a fresh copy: changing it changes nothing)."""
        return self.model_dump(mode="json", exclude_none=False)

    # ------------------------------------------------------------------ resolved values
    @property
    def tree(self) -> str:
        """The tree name used (``treename`` or the format default)."""
        return self.treename or str(FORMAT_DEFAULTS[self.input_format]["treename"])

    @property
    def lepton_collection(self) -> str | None:
        """The lepton collection read (``collection`` or the format default)."""
        default = FORMAT_DEFAULTS[self.input_format]["collection"]
        return self.collection or (str(default) if default is not None else None)

    @property
    def id_level(self) -> str:
        """The electron ID working point used (``selection.id_level``, whose default is the
        input format's)."""
        return self.selection.id_level

    def variations(self) -> tuple[str, ...]:
        """Variations a fill with this configuration can hold (all in one pass).

        ``uncorrected`` is the raw energies (equal to ``nominal`` when no prior correction
        is applied); ``scale_*`` need a prior scale step, ``smear_*`` a prior smear step.
        """
        out = list(BASE_SYSTEMATICS)
        for w in self.mc_weights:
            out.extend(w.variations)
        return tuple(out)

    # ------------------------------------------------------------------ derived objects
    def mass_binning(self) -> MassBinning:
        """The fine mass binning of the histograms (:attr:`binning` aligned to :attr:`window`)."""
        return self.binning.aligned(self.window)

    def scheme(self) -> CategoryScheme:
        """Load the category scheme (the built-in one when ``categories`` is ``None``).

        Raises:
            InvalidCategories: the file is missing or invalid.
        """
        if self.categories is None:
            from zcalib.generate import default_categories

            return default_categories()
        from zcalib.categories import load_categories

        return load_categories(self.categories)

    def fit_config(self, options: FitConfig | None = None) -> FitConfig:
        """The fit settings: ``options`` (default :class:`~zcalib.fit.FitConfig`) with the
        window set to :attr:`window`.

        Raises:
            InvalidConfig: ``options`` sets a different window (set the configuration's
                ``window`` instead).

        Example:
            >>> CalibrationConfig(window=(85, 97)).fit_config().window
            (85.0, 97.0)
        """
        from zcalib.fit.config import FitConfig

        base = options if options is not None else FitConfig()
        if base.window not in (FitConfig().window, self.window):
            msg = (
                f"the fit window is the configuration's window {self.window}, but "
                f"the fit options set window={base.window}; use "
                "config.with_overrides(window=...) instead"
            )
            raise InvalidConfig(msg)
        return base.with_overrides(window=self.window)

    def dataset_config(
        self, *, data: list[str] | tuple[str, ...] = (), mc: list[str] | tuple[str, ...] = ()
    ) -> DatasetConfig:
        """A dataset description (datasets ``data`` and ``mc``) in this input format.

        Raises:
            InvalidConfig: no files, or a file does not exist.
        """
        from zcalib.config import dataset_config_from_files

        return dataset_config_from_files(
            data=[os.fspath(f) for f in data],
            mc=[os.fspath(f) for f in mc],
            fmt=self.input_format,
            treename=self.treename,
            column_map=self.column_map.model_dump() if self.column_map is not None else None,
        )

    def check_datasets(self, datasets: DatasetConfig) -> None:
        """Raise if a dataset description does not match this configuration's input format.

        Raises:
            InvalidConfig: different formats (the message says how to fix it).
        """
        if datasets.format != self.input_format:
            msg = (
                f"the datasets are in format {datasets.format!r} but the calibration "
                f"configuration is for {self.input_format!r}; use "
                f"CalibrationConfig.for_format({datasets.format!r})"
            )
            raise InvalidConfig(msg)

    def load_weights(self) -> tuple[WeightSpec, ...]:
        """Read the MC weight payloads (checked at set-up).

        Raises:
            InvalidConfig: a payload is missing or lacks its correction.
        """
        from zcalib.runner import load_weight

        return tuple(load_weight(w.name, w.file, w.correction) for w in self.mc_weights)

    def load_corrections(self) -> tuple[CorrectionStep, ...]:
        """Read the prior correction steps (checked at set-up).

        Raises:
            InvalidConfig: unreadable file, unknown correction, unusable inputs.
        """
        from zcalib.corrections.steps import load_correction_steps

        steps: list[CorrectionStep] = []
        for c in self.corrections:
            steps.extend(load_correction_steps(c.file, list(c.names) if c.names else None))
        return tuple(steps)

    def fit_variations(self, hset: HistogramSet) -> tuple[str, str]:
        """``(data_variation, mc_variation)`` the fit uses for :attr:`systematic`.

        ``scale_*`` vary the data, ``smear_*`` and weight variations the MC; ``uncorrected``
        uses raw energies on both sides (a side without prior steps is already raw).

        Raises:
            InvalidConfig: the selected variation was not filled (e.g. ``scale_up`` without
                a prior scale correction); the message lists what the histograms hold.
        """
        syst = self.systematic

        def filled(kind: str, variation: str) -> bool:
            if variation not in hset.variations:
                return False
            _, sumw, _ = hset.region_arrays(kind, variation)
            return bool(sumw.sum() > 0)

        if syst == "nominal":
            return "nominal", "nominal"
        if syst == "uncorrected":
            return (
                "uncorrected" if filled("data", "uncorrected") else "nominal",
                "uncorrected" if filled("mc", "uncorrected") else "nominal",
            )
        kind = "data" if syst.startswith("scale_") else "mc"
        if not filled(kind, syst):
            held = ", ".join(v for v in hset.variations if filled(kind, v))
            need = {
                "data": "a prior scale correction (corrections=...)",
                "mc": "a prior smear correction or the MC weight named in it",
            }[kind]
            msg = (
                f"systematic {syst!r} is not in the {kind} histograms (it needs {need}); "
                f"{kind} variations filled: {held}"
            )
            raise InvalidConfig(msg)
        return (syst, "nominal") if kind == "data" else ("nominal", syst)

    # ------------------------------------------------------------------ display
    def summary_rows(self) -> list[tuple[str, str]]:
        """``(field, value)`` rows with format defaults resolved (for display)."""
        rows: list[tuple[str, str]] = []
        resolved = {
            "treename": self.tree,
            "collection": self.lepton_collection,
        }
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in resolved and value is None:
                shown = f"{resolved[name]} (format default)"
            elif name == "selection" and "id_level" not in value.model_fields_set:
                shown = _short(value).replace(
                    f"id_level={value.id_level}", f"id_level={value.id_level} (format default)"
                )
            elif name == "categories" and value is None:
                shown = "built-in |η| × R9 (8 categories)"
            elif isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
                shown = "; ".join(_short(v) for v in value)
            elif isinstance(value, BaseModel):
                shown = _short(value)
            else:
                shown = str(value)
            rows.append((name, shown))
        return rows

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td style='text-align:left'><code>{html.escape(k)}</code></td>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in self.summary_rows()
        )
        return (
            "<div><strong>CalibrationConfig</strong> (immutable; "
            "<code>with_overrides(...)</code> returns a copy)"
            f"<table><tbody>{body}</tbody></table></div>"
        )


def _short(model: BaseModel) -> str:
    return ", ".join(f"{k}={v}" for k, v in model.model_dump(exclude_none=True).items())


def _unknown_message(unknown: list[str], fields: Mapping[str, Any]) -> str:
    plural = "s" if len(unknown) > 1 else ""
    names = ", ".join(repr(u) for u in unknown)
    return f"unknown option{plural} {names}; allowed: {', '.join(fields)}"


def _validate(data: Mapping[str, Any], source: str) -> CalibrationConfig:
    try:
        return CalibrationConfig.model_validate(dict(data))
    except ValidationError as err:
        first = err.errors()[0]
        if not first["loc"]:  # model-level checks: the message says everything
            text = str(first["msg"]).removeprefix("Value error, ")
            msg = f"{source}: {text}"
            raise InvalidConfig(msg) from None
        raise InvalidConfig(format_validation_error(source, err)) from None


def load_calibration_config(path: str | Path) -> CalibrationConfig:
    """Load a calibration configuration YAML (file paths relative to the YAML's folder).

    Raises:
        InvalidConfig: malformed YAML, unknown keys (the allowed ones are listed), bad values.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "calib.yaml"
        >>> _ = p.write_text("input_format: nanoaod\\nselection: {id_level: tight}\\n")
        >>> load_calibration_config(p).id_level
        'tight'
    """
    from zcalib.config import load_yaml

    p = Path(path)
    raw = load_yaml(p)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        msg = f"{p}: expected a mapping of calibration options, got {type(raw).__name__}"
        raise InvalidConfig(msg)
    cfg = _validate(raw, str(p))
    base = p.parent

    def rel(f: str) -> str:
        return f if Path(f).is_absolute() or "://" in f else str(base / f)

    return cfg.with_overrides(
        categories=rel(cfg.categories) if cfg.categories else None,
        corrections=tuple(c.model_copy(update={"file": rel(c.file)}) for c in cfg.corrections),
        mc_weights=tuple(w.model_copy(update={"file": rel(w.file)}) for w in cfg.mc_weights),
    )
