"""Dataset descriptions and processing options: YAML loading and validation.

A dataset description lists the input files and how to read them::

    schema_version: 1
    format: ecalelf            # ecalelf | nanoaod | flat | parquet (zcalib skims)
    treename: selected         # optional, default per format
    datasets:
      - name: data
        kind: data
        files: [data.root]
      - name: mc
        kind: mc
        files: [mc.root]
        metadata: {generator: demo}

For ``format: flat`` a ``column_map`` names the per-lepton branches (see
:class:`zcalib.io.formats.ColumnMap`). Relative file paths are resolved against the folder of
the YAML file; URLs (``root://eosuser.cern.ch//eos/...``, ``https://...``, any fsspec scheme)
are kept verbatim and read by the workers (``pip install 'zcalib[remote]'`` for XRootD). The YAML is validated once into frozen pydantic models (unknown keys are
errors), then a semantic pass checks names, kinds and file existence.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from zcalib.exceptions import InvalidConfig
from zcalib.io.formats import DEFAULT_TREES, ColumnMap

if TYPE_CHECKING:
    from zcalib.histograms import MassBinning

__all__ = [
    "DEFAULT_FILL_RANGE",
    "DEFAULT_N_BINS",
    "DEFAULT_WINDOW",
    "BinningSettings",
    "DatasetConfig",
    "DatasetSpec",
    "SelectionConfig",
    "dataset_config_from_files",
    "format_validation_error",
    "is_url",
    "load_dataset_config",
    "load_yaml",
]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL (``root://``, ``https://``, ``s3://``...) rather than a local path.

    Example:
        >>> is_url("root://eosuser.cern.ch//eos/user/z/zee.root"), is_url("data/zee.root")
        (True, False)
    """
    return _URL.match(path) is not None


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The defaults of the fine mass binning, defined here only: the fit window its edges are
#: aligned to [GeV], the filled mass range [GeV] and the number of log-uniform bins.
DEFAULT_WINDOW: Final = (80.0, 100.0)
DEFAULT_FILL_RANGE: Final = (60.0, 120.0)
DEFAULT_N_BINS: Final = 1200
#: Fewest fine mass bins accepted.
MIN_N_BINS: Final = 10


class BinningSettings(_Frozen):
    """The fine mass binning of the filled histograms, as asked for: about ``n_bins``
    log-uniform bins over ``[lo, hi]`` GeV. :meth:`aligned` lays them so that the fit
    window's edges are bin edges (the :class:`~zcalib.histograms.MassBinning` filled).

    The one binning model: a pipeline YAML and a
    :class:`~zcalib.calibration.CalibrationConfig` both spell it ``binning: {n_bins, lo, hi}``.

    Example:
        >>> from zcalib.histograms import MassBinning
        >>> BinningSettings().aligned(DEFAULT_WINDOW) == MassBinning()
        True
    """

    n_bins: int = Field(
        DEFAULT_N_BINS, ge=MIN_N_BINS, description="Number of log-uniform mass bins."
    )
    lo: float = Field(DEFAULT_FILL_RANGE[0], gt=0, description="Lower mass edge [GeV].")
    hi: float = Field(DEFAULT_FILL_RANGE[1], gt=0, description="Upper mass edge [GeV].")

    @model_validator(mode="after")
    def _ordered(self) -> BinningSettings:
        if not self.lo < self.hi:
            msg = f"lo must be < hi, got lo={self.lo:g}, hi={self.hi:g}"
            raise ValueError(msg)
        return self

    def aligned(self, window: tuple[float, float] = DEFAULT_WINDOW) -> MassBinning:
        """The binning filled: about ``n_bins`` bins over ``[lo, hi]`` widened by less than a
        bin so that both edges of ``window`` are bin edges
        (:func:`zcalib.histograms.aligned_grid`)."""
        from zcalib.histograms import MassBinning

        return MassBinning.aligned(window, self.lo, self.hi, self.n_bins)


class SelectionConfig(_Frozen):
    """Dielectron pair selection applied by the processor."""

    min_et_lead: float = Field(25.0, ge=0, description="Leading lepton Et threshold [GeV].")
    min_et_sublead: float = Field(20.0, ge=0, description="Subleading lepton Et threshold [GeV].")
    max_abs_eta: float = Field(2.5, gt=0, description="Maximum supercluster |η|.")
    exclude_crack: bool = Field(True, description="Reject leptons in 1.4442 < |η_SC| < 1.566.")
    id_level: Literal["none", "loose", "medium", "tight"] = Field(
        "medium", description="Electron ID working point (ECALELF: medium=0x08, tight=0x10)."
    )
    opposite_charge: bool = Field(False, description="Require opposite charges.")

    def with_overrides(self, **kw: Any) -> SelectionConfig:
        """A modified copy (the original is unchanged)."""
        return self.model_validate({**self.model_dump(), **kw})


class DatasetSpec(_Frozen):
    """One dataset: a named list of files of one kind."""

    name: str = Field(min_length=1, description="Dataset name (histogram `dataset` axis).")
    kind: Literal["data", "mc"] = Field(description="`data` or `mc`.")
    files: tuple[str, ...] = Field(
        min_length=1, description="Input files (ROOT, or Parquet skims)."
    )
    treename: str | None = Field(None, description="Tree name (overrides the global one).")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form metadata.")


class DatasetConfig(_Frozen):
    """The dataset description: input format and datasets."""

    schema_version: Literal[1] = Field(1, description="Version of this format.")
    format: Literal["ecalelf", "nanoaod", "flat", "parquet"] = Field(
        "ecalelf",
        description="Input format: ecalelf, nanoaod, flat (needs column_map) or parquet "
        "(pair skims written by `zcalib skim`).",
    )
    treename: str | None = Field(None, description="Tree name; default depends on format.")
    column_map: ColumnMap | None = Field(None, description="Branch names for format 'flat'.")
    datasets: tuple[DatasetSpec, ...] = Field(min_length=1, description="The datasets.")

    @model_validator(mode="after")
    def _check(self) -> DatasetConfig:
        if self.format == "flat" and self.column_map is None:
            msg = "format 'flat' needs a 'column_map'"
            raise ValueError(msg)
        if self.column_map is not None and self.format != "flat":
            msg = f"'column_map' is only used with format 'flat', not {self.format!r}"
            raise ValueError(msg)
        if self.column_map is not None and not (self.column_map.energy or self.column_map.pt):
            msg = "column_map needs 'energy' or 'pt'"
            raise ValueError(msg)
        names = [d.name for d in self.datasets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            msg = f"dataset names must be unique; repeated: {', '.join(dupes)}"
            raise ValueError(msg)
        return self

    def tree_of(self, ds: DatasetSpec) -> str:
        """The tree name used for a dataset."""
        return ds.treename or self.treename or DEFAULT_TREES[self.format]

    def kinds(self) -> dict[str, str]:
        """``{dataset name: kind}``."""
        return {d.name: d.kind for d in self.datasets}

    def with_overrides(self, **kw: Any) -> DatasetConfig:
        """A modified copy (the original is unchanged)."""
        return self.model_validate({**self.model_dump(), **kw})


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file, turning every failure into a one-line :class:`InvalidConfig`."""
    p = Path(path)
    if not p.is_file():
        msg = f"{p}: file not found"
        raise InvalidConfig(msg)
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        msg = f"{p}: malformed YAML{where}: {problem}"
        raise InvalidConfig(msg) from None
    except (OSError, UnicodeDecodeError) as err:
        msg = f"{p}: cannot read ({err.__class__.__name__}: {err})"
        raise InvalidConfig(msg) from None


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line naming the first invalid field of a pydantic error, and what was given."""
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "<top level>"
    given = first.get("input")
    shown = f" (got {given!r})" if not isinstance(given, dict | list) else ""
    return f"{source}: field '{loc}': {first['msg']}{shown}"


def load_dataset_config(path: str | Path) -> DatasetConfig:
    """Load and validate a dataset description YAML.

    Relative file paths are resolved against the YAML file's folder and every local file must
    exist; URLs are kept verbatim (the pre-flight opens them).

    Raises:
        InvalidConfig: malformed YAML, unknown or invalid fields, missing files.
    """
    p = Path(path)
    raw = load_yaml(p)
    if not isinstance(raw, dict):
        msg = f"{p}: expected a mapping with a 'datasets' list, got {type(raw).__name__}"
        raise InvalidConfig(msg)
    try:
        cfg = DatasetConfig.model_validate(raw)
    except ValidationError as err:
        raise InvalidConfig(format_validation_error(str(p), err)) from None
    base = p.parent
    datasets = []
    for ds in cfg.datasets:
        files = tuple(f if is_url(f) or Path(f).is_absolute() else str(base / f) for f in ds.files)
        datasets.append(ds.model_copy(update={"files": files}))
    cfg = cfg.model_copy(update={"datasets": tuple(datasets)})
    _check_files_exist(cfg, str(p))
    return cfg


def dataset_config_from_files(
    *,
    data: list[str] | tuple[str, ...] = (),
    mc: list[str] | tuple[str, ...] = (),
    fmt: str = "ecalelf",
    treename: str | None = None,
    column_map: dict[str, Any] | None = None,
) -> DatasetConfig:
    """Build a dataset description from ``--data``/``--mc`` file lists (CLI shortcut)."""
    datasets = []
    if data:
        datasets.append({"name": "data", "kind": "data", "files": list(data)})
    if mc:
        datasets.append({"name": "mc", "kind": "mc", "files": list(mc)})
    if not datasets:
        msg = "no input files: give --data and/or --mc files, or --datasets YAML"
        raise InvalidConfig(msg)
    raw: dict[str, Any] = {"format": fmt, "treename": treename, "datasets": datasets}
    if column_map is not None:
        raw["column_map"] = column_map
    try:
        cfg = DatasetConfig.model_validate(raw)
    except ValidationError as err:
        raise InvalidConfig(format_validation_error("command line", err)) from None
    _check_files_exist(cfg, "command line")
    return cfg


def _check_files_exist(cfg: DatasetConfig, source: str) -> None:
    for ds in cfg.datasets:
        for f in ds.files:
            if is_url(f):
                continue  # remote (root://, https://): checked by the pre-flight
            if not Path(f).is_file():
                msg = f"{source}: dataset '{ds.name}': input file {f} not found"
                raise InvalidConfig(msg)
