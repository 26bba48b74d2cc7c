"""Run divide: contiguous run bins, each holding at least ``min_events`` selected pairs.

The selected pairs per ``(run, lumi)`` come from :class:`~zcalib.processors.runs.
RunCountProcessor` (the fit's own selection and prior corrections). Bins are built greedily
in ``(run, lumi)`` order: a bin closes as soon as it holds ``min_events`` pairs, and a last
bin with fewer pairs is merged into the previous one (pymin ``divide_by_run``, which however
drops that remainder into a short bin of its own).

Granularity:

* ``run`` — bins end at run boundaries (the correction needs only the ``run`` input);
* ``lumi`` — bins may end inside a run, at a luminosity-block boundary (finer bins when
  single runs hold many pairs). Bins then record ``(run, lumi)`` first/last pairs.

The bins are contiguous: bin *k* ends just before bin *k+1* starts, the first bin starts at
the first data run and the last ends with the last data run, so every run that holds data
(selected or not) is covered.

Files: YAML (complete, the format zcalib reads back)::

    schema_version: 1
    granularity: run
    min_events: 10000
    bins:
      - {runs: [355000, 355033], pairs: 10020}
      - {runs: [355034, 355070], lumis: [1, 611], pairs: 10001}   # lumi granularity

(``lumis``: the first lumi of the first run and the last lumi of the last run, inclusive) and
pymin's run_divide ``.dat``: tab-separated ``run_min run_max`` per bin, no header (pymin reads
the first two columns), followed by ``lumi_min lumi_max pairs`` (``-1`` = whole run).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zcalib._atomic import atomic_write_text
from zcalib.chain._events import eta_scheme, run_loop
from zcalib.config import format_validation_error, load_yaml
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.outputs import run_tag
from zcalib.processors.runs import LUMI_ALL, RunCountProcessor, RunLumiCounts
from zcalib.runner import EventLoop

__all__ = [
    "Granularity",
    "RunBin",
    "RunBins",
    "count_pairs",
    "divide",
    "load_run_bins",
    "run_divide",
]

log = logging.getLogger(__name__)

Granularity = Literal["run", "lumi"]
_ALL_ETA = ((0.0, 1.4442), (1.566, 1000.0))


@dataclass(frozen=True)
class RunBin:
    """One run bin, inclusive from ``(run_min, lumi_min)`` to ``(run_max, lumi_max)``.

    ``lumi_min = 0`` and ``lumi_max = LUMI_ALL`` mean whole runs.
    """

    run_min: int
    run_max: int
    lumi_min: int = 0
    lumi_max: int = LUMI_ALL
    pairs: int | None = None

    @property
    def start_key(self) -> int:
        """Packed first ``(run, lumi)``."""
        return (self.run_min << 32) | self.lumi_min

    @property
    def stop_key(self) -> int:
        """Packed last ``(run, lumi)`` (inclusive)."""
        return (self.run_max << 32) | self.lumi_max

    @property
    def whole_runs(self) -> bool:
        """True when the bin starts and ends at run boundaries."""
        return self.lumi_min == 0 and self.lumi_max == LUMI_ALL

    def label(self) -> str:
        """``355000-355033`` or ``355000:1-355033:611``."""
        if self.whole_runs:
            return f"{self.run_min}-{self.run_max}"
        return f"{self.run_min}:{self.lumi_min}-{self.run_max}:{self.lumi_max}"


@dataclass(frozen=True)
class RunBins:
    """Validated, sorted, non-overlapping run bins.

    Attributes:
        bins: the bins, in run order.
        granularity: ``run`` or ``lumi``.
        min_events: the minimum number of selected pairs requested per bin.
        source: where the bins come from (for messages).
    """

    bins: tuple[RunBin, ...]
    granularity: Granularity = "run"
    min_events: int | None = None
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if not self.bins:
            msg = f"{self.source}: no run bins"
            raise InvalidConfig(msg)
        for k, b in enumerate(self.bins):
            if b.start_key > b.stop_key:
                msg = f"{self.source}: run bin {k} ({b.label()}) is empty or inverted"
                raise InvalidConfig(msg)
            if k and b.start_key <= self.bins[k - 1].stop_key:
                msg = (
                    f"{self.source}: run bins {k - 1} ({self.bins[k - 1].label()}) and {k} "
                    f"({b.label()}) overlap or are out of order"
                )
                raise InvalidConfig(msg)

    def __len__(self) -> int:
        return len(self.bins)

    @property
    def splits_runs(self) -> bool:
        """True when some bin boundary lies inside a run."""
        return not all(b.whole_runs for b in self.bins)

    def keys(self) -> tuple[tuple[int, int], ...]:
        """``(start_key, stop_key)`` per bin (for :class:`RunMassProcessor`)."""
        return tuple((b.start_key, b.stop_key) for b in self.bins)

    def check_coverage(self, data_keys: dict[str, NDArray[np.int64]]) -> None:
        """Raise if a data ``(run, lumi)`` lies outside every bin.

        Args:
            data_keys: packed keys per data file (:func:`~zcalib.chain._events.data_run_keys`).

        Raises:
            InputError: naming the file, the first uncovered run and the bins' range.
        """
        starts = np.array([b.start_key for b in self.bins], dtype=np.int64)
        stops = np.array([b.stop_key for b in self.bins], dtype=np.int64)
        for path, keys in data_keys.items():
            idx = np.searchsorted(starts, keys, side="right") - 1
            safe = np.clip(idx, 0, len(starts) - 1)
            bad = (idx < 0) | (keys > stops[safe])
            if bad.any():
                key = int(keys[np.argmax(bad)])
                run, lumi = key >> 32, key & LUMI_ALL
                where = f"run {run}" + (f" lumi {lumi}" if self.splits_runs else "")
                msg = (
                    f"{self.source}: data {where} in {path} is outside every run bin "
                    f"(bins cover {self.bins[0].label().split('-')[0]}-"
                    f"{self.bins[-1].label().split('-')[-1]}, {len(self.bins)} bins); "
                    "rerun run-divide on these data"
                )
                raise InputError(msg)

    def to_dict(self) -> dict[str, Any]:
        """The YAML content."""
        rows: list[dict[str, Any]] = []
        for b in self.bins:
            row: dict[str, Any] = {"runs": [b.run_min, b.run_max]}
            if not b.whole_runs:
                row["lumis"] = [b.lumi_min, b.lumi_max]
            if b.pairs is not None:
                row["pairs"] = b.pairs
            rows.append(row)
        out: dict[str, Any] = {"schema_version": 1, "granularity": self.granularity}
        if self.min_events is not None:
            out["min_events"] = self.min_events
        out["bins"] = rows
        return out

    def dat_text(self) -> str:
        """pymin's run_divide ``.dat`` (``run_min run_max lumi_min lumi_max pairs``)."""
        lines = []
        for b in self.bins:
            lo, hi = (-1, -1) if b.whole_runs else (b.lumi_min, b.lumi_max)
            pairs = -1 if b.pairs is None else b.pairs
            lines.append(f"{b.run_min}\t{b.run_max}\t{lo}\t{hi}\t{pairs}")
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>`` (YAML) and the ``.dat`` with the same stem, atomically."""
        p = Path(path)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
        y = atomic_write_text(p, f"{text}# {run_tag()}\n")
        d = atomic_write_text(p.with_suffix(".dat"), self.dat_text())
        return y, d


class _BinModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    runs: tuple[int, int] = Field(description="First and last run of the bin (inclusive).")
    lumis: tuple[int, int] | None = Field(
        None,
        description="First lumi of the first run, last lumi of the last run (inclusive); "
        "absent = whole runs.",
    )
    pairs: int | None = Field(None, description="Selected pairs in the bin (informative).")


class _BinsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(1, description="Version of the run-bins format.")
    granularity: Literal["run", "lumi"] = Field("run", description="run or lumi.")
    min_events: int | None = Field(None, description="Requested minimum pairs per bin.")
    bins: tuple[_BinModel, ...] = Field(min_length=1, description="The bins, in run order.")


def load_run_bins(path: str | Path) -> RunBins:
    """Read run bins from the YAML or pymin ``.dat``/``.tsv`` file.

    Raises:
        InvalidConfig: missing or malformed file, overlapping or unordered bins.
    """
    p = Path(path)
    if p.suffix.lower() in {".yaml", ".yml"}:
        raw = load_yaml(p)
        try:
            m = _BinsModel.model_validate(raw)
        except ValidationError as err:
            raise InvalidConfig(format_validation_error(str(p), err)) from None
        bins = tuple(
            RunBin(
                run_min=b.runs[0],
                run_max=b.runs[1],
                lumi_min=b.lumis[0] if b.lumis else 0,
                lumi_max=b.lumis[1] if b.lumis else LUMI_ALL,
                pairs=b.pairs,
            )
            for b in m.bins
        )
        return RunBins(bins, granularity=m.granularity, min_events=m.min_events, source=str(p))
    if not p.is_file():
        msg = f"{p}: run bins file not found"
        raise InvalidConfig(msg)
    bins_l: list[RunBin] = []
    for lineno, line in enumerate(p.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            nums = [int(float(x)) for x in fields]
        except ValueError:
            msg = f"{p}:{lineno}: non-numeric value in {fields}; expected run_min run_max"
            raise InvalidConfig(msg) from None
        if len(nums) not in (2, 5):
            msg = (
                f"{p}:{lineno}: expected 2 columns (run_min run_max) or 5 (run_min run_max "
                f"lumi_min lumi_max pairs), got {len(nums)}"
            )
            raise InvalidConfig(msg)
        lo, hi = (nums[2], nums[3]) if len(nums) == 5 else (-1, -1)
        bins_l.append(
            RunBin(
                run_min=nums[0],
                run_max=nums[1],
                lumi_min=max(lo, 0),
                lumi_max=LUMI_ALL if hi < 0 else hi,
                pairs=nums[4] if len(nums) == 5 and nums[4] >= 0 else None,
            )
        )
    split = any(not b.whole_runs for b in bins_l)
    return RunBins(tuple(bins_l), granularity="lumi" if split else "run", source=str(p))


def divide(
    counts: RunLumiCounts,
    min_events: int,
    granularity: Granularity = "run",
    *,
    source: str = "run-divide",
) -> RunBins:
    """Contiguous bins of at least ``min_events`` selected pairs.

    Args:
        counts: events and selected pairs per ``(run, lumi)`` (every key with data counts
            for coverage, even without selected pairs).
        min_events: minimum selected pairs per bin (``>= 1``).
        granularity: ``run`` or ``lumi`` (see the module docstring).
        source: label for messages.

    Returns:
        The bins. If all data hold fewer than ``min_events`` pairs, one bin with a warning.

    Example:
        >>> c = RunLumiCounts.from_events(np.array([1, 1, 2, 3, 3, 3]), np.zeros(6, int),
        ...                               np.ones(6, bool))
        >>> [b.label() for b in divide(c, 2).bins]
        ['1-1', '2-3']
    """
    if min_events < 1:
        msg = f"min_events must be >= 1, got {min_events}"
        raise InvalidConfig(msg)
    if granularity not in ("run", "lumi"):
        msg = f"granularity {granularity!r}; allowed: run, lumi"
        raise InvalidConfig(msg)
    if len(counts.keys) == 0:
        msg = f"{source}: no data events: cannot build run bins"
        raise InputError(msg)
    runs = counts.runs
    if granularity == "run":
        unit_runs, inverse = np.unique(runs, return_inverse=True)
        sel = np.bincount(inverse, weights=counts.selected, minlength=len(unit_runs))
        starts = [(int(r) << 32) for r in unit_runs]
    else:
        sel = counts.selected.astype(np.float64)
        starts = [int(k) for k in counts.keys]
    first_lumi_of_run: dict[int, int] = {}
    for k in counts.keys:
        first_lumi_of_run.setdefault(int(k) >> 32, int(k) & LUMI_ALL)
    # greedy: cut after the unit where the running sum reaches min_events
    bounds: list[int] = [0]
    acc = 0.0
    for i, n in enumerate(sel):
        acc += float(n)
        if acc >= min_events and i + 1 < len(sel):
            bounds.append(i + 1)
            acc = 0.0
    tail = float(sel[bounds[-1] :].sum())
    if len(bounds) > 1 and tail < min_events:
        bounds.pop()  # merge the short remainder into the previous bin
    total = float(sel.sum())
    if total < min_events:
        log.warning(
            "%s: only %d selected pairs in all data (< min_events %d): one run bin",
            source,
            int(total),
            min_events,
        )
    bins: list[RunBin] = []
    for j, lo in enumerate(bounds):
        hi = bounds[j + 1] if j + 1 < len(bounds) else len(sel)
        start = starts[lo]
        if j == 0 or (start & LUMI_ALL) == first_lumi_of_run.get(start >> 32, -1):
            start = (start >> 32) << 32  # a bin starting at a run's first lumi: whole run
        if j + 1 < len(bounds):
            nxt = starts[bounds[j + 1]]
            if (nxt & LUMI_ALL) == first_lumi_of_run.get(nxt >> 32, -1):
                nxt = (nxt >> 32) << 32
            stop = nxt - 1
        else:
            stop = (int(runs[-1]) << 32) | LUMI_ALL
        bins.append(
            RunBin(
                run_min=start >> 32,
                run_max=stop >> 32,
                lumi_min=start & LUMI_ALL,
                lumi_max=stop & LUMI_ALL,
                pairs=round(float(sel[lo:hi].sum())),
            )
        )
    return RunBins(tuple(bins), granularity=granularity, min_events=min_events, source=source)


def count_pairs(loop: EventLoop) -> RunLumiCounts:
    """Selected pairs (and events) per ``(run, lumi)`` of the data datasets.

    Raises:
        InputError: bad input files; InvalidConfig: no data dataset.
    """
    cfg = loop.only("data")
    scheme = eta_scheme(_ALL_ETA, "run-divide: all |eta| outside the crack")
    out = run_loop(loop, cfg, RunCountProcessor, scheme)
    total = RunLumiCounts()
    for counts in out["counts"].values():
        total = total + counts
    return total


def run_divide(
    loop: EventLoop,
    *,
    min_events: int = 10_000,
    granularity: Granularity = "run",
    out: str | Path | None = None,
) -> RunBins:
    """Count selected data pairs per ``(run, lumi)`` and divide them into run bins.

    Args:
        loop: inputs, selection, prior corrections, executor.
        min_events: minimum selected pairs per bin.
        granularity: ``run`` or ``lumi``.
        out: write the YAML here (and the ``.dat`` next to it).

    Returns:
        The bins.

    Raises:
        InvalidConfig: bad options or no data dataset; InputError: bad inputs, no data.
    """
    if min_events < 1:
        msg = f"min_events must be >= 1, got {min_events}"
        raise InvalidConfig(msg)
    if granularity == "lumi" and not _has_lumi(loop):
        msg = (
            "granularity 'lumi' needs luminosity blocks, but the data have no "
            "luminosityBlock/lumiBlock branch; use granularity 'run'"
        )
        raise InvalidConfig(msg)
    counts = count_pairs(loop)
    bins = divide(counts, min_events, granularity, source=str(out) if out else "run-divide")
    n_runs = len(np.unique(counts.runs))
    log.info(
        "run-divide: %d selected pairs in %d runs -> %d bins (min %d pairs)",
        int(counts.selected.sum()),
        n_runs,
        len(bins),
        min_events,
    )
    if out is not None:
        bins.write(out)
    return bins


def _has_lumi(loop: EventLoop) -> bool:
    cfg = loop.cfg
    if cfg.format == "nanoaod":
        return True
    if cfg.format == "flat":
        return bool(cfg.column_map is not None and cfg.column_map.lumi)
    from zcalib.io.preflight import preflight

    pre = preflight(loop.only("data"))
    return all(dict(i.optional).get("lumi") for i in pre.files) and bool(pre.files)
