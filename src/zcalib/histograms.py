"""Pair-mass histograms: construction, the :class:`HistogramSet` container, safe save/load.

The processor fills :class:`PairCounts`: Σw and Σw² per

``dataset`` x ``variation`` x ``region`` (int, ``i*n_cells + j`` with ``i <= j``)
x ``mass`` (regular in log m, GeV),

holding only the filled bins of the variations filled for each dataset, so storage, fill
and merge costs follow the populated regions, not the number of categories. A dense
``hist.Hist`` with those axes (``HistogramSet.hist``) is built on request.

A :class:`HistogramSet` bundles the counts with what is needed to interpret them: the
category scheme (as its YAML dict), which datasets are data or MC, the cutflow per dataset,
and provenance. It is saved as a single ``.npz`` (numpy arrays plus one JSON header), loaded
with ``allow_pickle=False`` so loading never executes code.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import hist
import numpy as np
from numpy.typing import NDArray

from zcalib._atomic import atomic_open
from zcalib._jit import jitted
from zcalib.categories import CategoryScheme, scheme_from_dict
from zcalib.config import DEFAULT_FILL_RANGE, DEFAULT_N_BINS, DEFAULT_WINDOW
from zcalib.exceptions import InputError

__all__ = [
    "FORMAT_VERSION",
    "HistogramSet",
    "MassBinning",
    "PairCounts",
    "empty_hist",
    "load_histograms",
    "save_histograms",
]

FORMAT_VERSION = 2

#: The data-bin multiple an aligned binning keeps inside the fit window.
_MULTIPLE = 20


def aligned_grid(
    window: tuple[float, float], lo: float, hi: float, n_bins: int, multiple: int = _MULTIPLE
) -> tuple[int, float, float]:
    """``(n_bins, lo, hi)`` of a log-uniform axis whose edges include both window ends.

    The bin width is the one of ``n_bins`` bins over ``[lo, hi]``, adjusted so that the
    window holds a whole multiple of ``multiple`` fine bins (so a fit rebinning by 1, 2, 4,
    5, 10 or 20 fine bins per data bin ends exactly at the window's upper edge); the range
    is widened to whole bins (by less than one bin on each side).

    Example:
        >>> n, lo, hi = aligned_grid((80.0, 100.0), 60.0, 120.0, 1200)
        >>> n, round(lo, 3), round(hi, 3)
        (1181, 59.997, 120.036)
    """
    w_lo, w_hi = window
    if not 0 < lo <= w_lo < w_hi <= hi:
        return n_bins, lo, hi  # the window is not inside the range: nothing to align
    step0 = math.log(hi / lo) / n_bins
    inside = max(multiple, multiple * round(math.log(w_hi / w_lo) / step0 / multiple))
    step = math.log(w_hi / w_lo) / inside
    below = math.ceil(math.log(w_lo / lo) / step - 1e-9)
    above = math.ceil(math.log(hi / w_hi) / step - 1e-9)
    return below + inside + above, w_lo * math.exp(-below * step), w_hi * math.exp(above * step)


_N, _LO, _HI = aligned_grid(DEFAULT_WINDOW, *DEFAULT_FILL_RANGE, DEFAULT_N_BINS)


@dataclass(frozen=True)
class MassBinning:
    """Fine mass binning used when filling (log-uniform between ``lo`` and ``hi`` GeV).

    The default is about 1200 bins over 60–120 GeV laid so that 80 and 100 GeV (the default
    fit window) are bin edges: :meth:`aligned` builds such a binning for any window. The
    settings users write are :class:`zcalib.config.BinningSettings` (the defaults are
    defined there); this is the binning they give.
    """

    n_bins: int = _N
    lo: float = _LO
    hi: float = _HI

    @classmethod
    def aligned(
        cls,
        window: tuple[float, float] = DEFAULT_WINDOW,
        lo: float = DEFAULT_FILL_RANGE[0],
        hi: float = DEFAULT_FILL_RANGE[1],
        n_bins: int = DEFAULT_N_BINS,
    ) -> MassBinning:
        """About ``n_bins`` log-uniform bins over ``[lo, hi]`` with edges at both ends of
        ``window`` (the fit then covers exactly the window asked for); see
        :func:`aligned_grid`."""
        n, a, b = aligned_grid(window, lo, hi, n_bins)
        return cls(n_bins=n, lo=a, hi=b)

    def axis(self) -> hist.axis.Regular:
        """The ``mass`` axis (pairs outside [lo, hi) land in flow bins, which fits ignore)."""
        return hist.axis.Regular(
            self.n_bins,
            self.lo,
            self.hi,
            transform=hist.axis.transform.log,
            name="mass",
            label="$m_{ee}$ [GeV]",
        )


def empty_hist(binning: MassBinning | None = None) -> hist.Hist[Any]:
    """An empty pair-mass histogram with the zcalib axes."""
    b = binning or MassBinning()
    return hist.Hist(
        hist.axis.StrCategory([], name="dataset", label="Dataset", growth=True),
        hist.axis.StrCategory([], name="variation", label="Variation", growth=True),
        hist.axis.IntCategory([], name="region", label="Pair region", growth=True),
        b.axis(),
        storage=hist.storage.Weight(),
    )


# ---------------------------------------------------------------------------- sparse storage
def _merge_loop(
    ak: NDArray[np.int64],
    aw: NDArray[np.float64],
    aw2: NDArray[np.float64],
    bk: NDArray[np.int64],
    bw: NDArray[np.float64],
    bw2: NDArray[np.float64],
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:  # pragma: no cover
    """Merge two blocks with sorted unique keys, adding the sums of equal keys (a + b)."""
    n, m = len(ak), len(bk)
    keys = np.empty(n + m, np.int64)
    w = np.empty(n + m, np.float64)
    w2 = np.empty(n + m, np.float64)
    i = j = k = 0
    while i < n and j < m:
        if ak[i] < bk[j]:
            keys[k], w[k], w2[k] = ak[i], aw[i], aw2[i]
            i += 1
        elif bk[j] < ak[i]:
            keys[k], w[k], w2[k] = bk[j], bw[j], bw2[j]
            j += 1
        else:
            keys[k], w[k], w2[k] = ak[i], aw[i] + bw[j], aw2[i] + bw2[j]
            i += 1
            j += 1
        k += 1
    while i < n:
        keys[k], w[k], w2[k] = ak[i], aw[i], aw2[i]
        i += 1
        k += 1
    while j < m:
        keys[k], w[k], w2[k] = bk[j], bw[j], bw2[j]
        j += 1
        k += 1
    return keys[:k], w[:k], w2[:k]


def _bin_index(
    keys: NDArray[np.int64],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64] | slice]:
    """The sorted unique ``keys``, the bin of each key for ``np.bincount`` and which bins
    are filled (``np.bincount(inv)[filled]`` lines up with the unique keys).

    When the keys span a range not much larger than their number (few populated regions,
    the usual case per chunk), bins are the offsets from the smallest key and no sort is
    needed; otherwise they come from ``np.unique``. Either way each bin sums its entries in
    fill order, so the sums are the same bit for bit.
    """
    if len(keys):
        lo = int(keys.min())
        span = int(keys.max()) - lo + 1
        if span <= 4 * len(keys) + 65536:
            inv = keys - lo
            filled = np.flatnonzero(np.bincount(inv, minlength=span))
            return filled + lo, inv, filled
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv, slice(None)


@dataclass(frozen=True)
class _Block:
    """Filled bins of one (dataset, variation): sorted unique keys ``region * n_bins + bin``
    and their Σw, Σw² (arrays are never modified in place, so blocks may be shared)."""

    keys: NDArray[np.int64]
    sumw: NDArray[np.float64]
    sumw2: NDArray[np.float64]

    def merge(self, other: _Block) -> _Block:
        """The sum of two blocks (``self`` first in every floating-point sum)."""
        if len(other.keys) == 0:
            return self
        if len(self.keys) == 0:
            return other
        return _Block(*jitted(_merge_loop)(self.keys, self.sumw, self.sumw2, *other))

    def __iter__(self) -> Any:
        return iter((self.keys, self.sumw, self.sumw2))


class PairCounts:
    """Σw and Σw² per (dataset, variation, region, mass bin), holding only filled bins.

    The processor's accumulator and the storage of :class:`HistogramSet`. Each
    ``(dataset, variation)`` that was filled holds one block of sorted keys
    ``region * n_bins + mass_bin`` with their sums, so memory grows with the populated
    (region, mass bin) pairs, not with the number of possible regions, and a dataset only holds
    the variations filled for it (data: no MC-weight variations). Adding two (coffea's
    accumulation across chunks and workers) merges sorted keys; within a block the sums are
    taken in fill order, as a ``hist`` ``Weight`` storage would. Masses outside the binning
    (the flow bins of a ``hist`` axis) are not stored.

    Args:
        binning: the mass binning.
    """

    def __init__(self, binning: MassBinning | None = None) -> None:
        self.binning = binning or MassBinning()
        self.blocks: dict[tuple[str, str], _Block] = {}
        self._axis_cache: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"binning": self.binning, "blocks": self.blocks, "_axis_cache": None}

    def _axis(self) -> Any:
        if self._axis_cache is None:
            self._axis_cache = self.binning.axis()
        return self._axis_cache

    # ------------------------------------------------------------------ filling
    def fill(
        self,
        dataset: str,
        variation: str,
        region: NDArray[np.int64],
        mass: NDArray[np.float64],
        weight: NDArray[np.float64] | None = None,
    ) -> None:
        """Add entries (one per pair) to ``(dataset, variation)``."""
        self.fill_weights(dataset, region, mass, {variation: weight})

    def fill_weights(
        self,
        dataset: str,
        region: NDArray[np.int64],
        mass: NDArray[np.float64],
        weights: Mapping[str, NDArray[np.float64] | None],
    ) -> None:
        """Add the same entries to several variations, each with its own weights
        (``None``: unit weights). The entries are sorted into bins once for all of them."""
        nb = self.binning.n_bins
        idx = np.asarray(self._axis().index(np.asarray(mass, dtype=np.float64)), dtype=np.int64)
        ok = (idx >= 0) & (idx < nb)
        keys = (np.asarray(region, dtype=np.int64) * nb + idx)[ok]
        uniq, inv, filled = _bin_index(keys)
        for variation, weight in weights.items():
            if weight is None:
                sumw = np.asarray(np.bincount(inv), dtype=np.float64)[filled]
                sumw2 = sumw
            else:
                w = np.asarray(weight, dtype=np.float64)[ok]
                sumw = np.asarray(np.bincount(inv, weights=w), np.float64)[filled]
                sumw2 = np.asarray(np.bincount(inv, weights=w * w), np.float64)[filled]
            self._add((dataset, variation), _Block(uniq, sumw, sumw2))

    def _add(self, key: tuple[str, str], block: _Block) -> None:
        have = self.blocks.get(key)
        self.blocks[key] = block if have is None else have.merge(block)

    # ------------------------------------------------------------------ accumulation
    def _check(self, other: PairCounts) -> None:
        if other.binning != self.binning:
            msg = f"cannot add pair counts with mass binnings {self.binning} and {other.binning}"
            raise InputError(msg)

    def __add__(self, other: PairCounts) -> PairCounts:
        out = PairCounts(self.binning)
        out.blocks = dict(self.blocks)
        return out.__iadd__(other)

    def __iadd__(self, other: PairCounts) -> Self:
        self._check(other)
        for key, block in other.blocks.items():
            self._add(key, block)
        return self

    # ------------------------------------------------------------------ reading
    @property
    def datasets(self) -> list[str]:
        """Datasets filled, in first-fill order."""
        return list(dict.fromkeys(d for d, _ in self.blocks))

    @property
    def variations(self) -> list[str]:
        """Variations filled (any dataset), in first-fill order."""
        return list(dict.fromkeys(v for _, v in self.blocks))

    def regions(self) -> NDArray[np.int64]:
        """Sorted region codes with at least one filled bin (any dataset or variation)."""
        nb = self.binning.n_bins
        parts = [np.unique(b.keys // nb) for b in self.blocks.values()]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def dense(
        self, dataset: str, variation: str, regions: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Σw and Σw² of one block as ``(len(regions), n_bins)`` arrays (zeros where unfilled).

        Regions of the block missing from ``regions`` are left out.
        """
        nb = self.binning.n_bins
        sumw = np.zeros((len(regions), nb))
        sumw2 = np.zeros((len(regions), nb))
        block = self.blocks.get((dataset, variation))
        if block is None or len(regions) == 0:
            return sumw, sumw2
        reg, b = np.divmod(block.keys, nb)
        row = np.searchsorted(regions, reg)
        ok = row < len(regions)
        ok[ok] = regions[row[ok]] == reg[ok]
        sumw[row[ok], b[ok]] = block.sumw[ok]
        sumw2[row[ok], b[ok]] = block.sumw2[ok]
        return sumw, sumw2

    def nbytes(self) -> int:
        """Memory held by the stored bins [bytes]."""
        return sum(b.keys.nbytes + b.sumw.nbytes + b.sumw2.nbytes for b in self.blocks.values())

    # ------------------------------------------------------------------ hist conversion
    def to_hist(self) -> hist.Hist[Any]:
        """A dense ``hist.Hist(dataset, variation, region, mass)`` (Weight storage).

        Its size is datasets x variations x populated regions x mass bins: convenient for
        small schemes and plots, not for production-size ones.
        """
        regions = self.regions()
        h = hist.Hist(
            hist.axis.StrCategory(self.datasets, name="dataset", label="Dataset", growth=True),
            hist.axis.StrCategory(
                self.variations, name="variation", label="Variation", growth=True
            ),
            hist.axis.IntCategory(
                [int(r) for r in regions], name="region", label="Pair region", growth=True
            ),
            self.binning.axis(),
            storage=hist.storage.Weight(),
        )
        view: Any = h.view(flow=False)
        for d, v in self.blocks:
            sumw, sumw2 = self.dense(d, v, regions)
            di, vi = self.datasets.index(d), self.variations.index(v)
            view["value"][di, vi] = sumw
            view["variance"][di, vi] = sumw2
        return h

    @classmethod
    def from_hist(cls, h: hist.Hist[Any]) -> PairCounts:
        """Convert a ``hist.Hist(dataset, variation, region, mass)`` (nonzero bins are kept)."""
        ax = h.axes["mass"]
        binning = MassBinning(n_bins=ax.size, lo=float(ax.edges[0]), hi=float(ax.edges[-1]))
        out = cls(binning)
        view: Any = h.view(flow=False)
        regions = np.array([int(r) for r in h.axes["region"]], dtype=np.int64)
        for di, d in enumerate(h.axes["dataset"]):
            for vi, v in enumerate(h.axes["variation"]):
                val = view["value"][di, vi]
                var = view["variance"][di, vi]
                r, b = np.nonzero((val != 0) | (var != 0))
                if len(r) == 0:
                    continue
                keys = regions[r] * binning.n_bins + b
                order = np.argsort(keys, kind="stable")
                out.blocks[(str(d), str(v))] = _Block(
                    keys[order], np.asarray(val[r, b])[order], np.asarray(var[r, b])[order]
                )
        return out


class HistogramSet:
    """Pair-mass histograms plus what is needed to interpret them (immutable).

    Attributes:
        counts: the filled :class:`PairCounts` (dataset, variation, region, mass).
        categories: the category scheme as a YAML-style dict (see ``CategoryScheme``).
        kinds: ``{dataset: "data" | "mc"}``.
        cutflow: ``{dataset: {cut: n_events}}`` as reported by the processor.
        metadata: provenance (inputs and checksums, config, versions, timings).

    Built either from ``counts`` or from a dense ``hist`` (axes dataset, variation, region,
    mass; e.g. synthetic histograms).
    """

    counts: PairCounts
    categories: dict[str, Any]
    kinds: dict[str, str]
    cutflow: dict[str, dict[str, int]]
    metadata: dict[str, Any]

    def __init__(
        self,
        hist: hist.Hist[Any] | None = None,
        categories: dict[str, Any] | None = None,
        kinds: dict[str, str] | None = None,
        cutflow: dict[str, dict[str, int]] | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        counts: PairCounts | None = None,
    ) -> None:
        if (hist is None) == (counts is None):
            msg = "HistogramSet needs exactly one of hist= or counts="
            raise TypeError(msg)
        store = counts if counts is not None else PairCounts.from_hist(hist)  # type: ignore[arg-type]
        object.__setattr__(self, "counts", store)
        object.__setattr__(self, "categories", dict(categories or {}))
        object.__setattr__(self, "kinds", dict(kinds or {}))
        object.__setattr__(self, "cutflow", dict(cutflow or {}))
        object.__setattr__(self, "metadata", dict(metadata or {}))
        object.__setattr__(self, "_hist", hist)

    def __setattr__(self, name: str, value: Any) -> None:
        msg = f"HistogramSet is immutable (cannot set {name!r})"
        raise AttributeError(msg)

    @property
    def hist(self) -> hist.Hist[Any]:
        """The counts as a dense ``hist.Hist(dataset, variation, region, mass)`` (built once)."""
        h = self.__dict__.get("_hist")
        if h is None:
            h = self.counts.to_hist()
            object.__setattr__(self, "_hist", h)
        return h

    @property
    def binning(self) -> MassBinning:
        """The fine mass binning."""
        return self.counts.binning

    @property
    def mass_edges(self) -> NDArray[np.float64]:
        """Edges of the fine mass bins [GeV]."""
        return np.asarray(self.binning.axis().edges, dtype=np.float64)

    @property
    def smear_seed(self) -> int:
        """Seed of the MC smearing random numbers the histograms were filled with (recorded
        in ``metadata``; 0, the default seed, when none is recorded)."""
        return int(self.metadata.get("smear_seed") or 0)

    @property
    def regions(self) -> list[int]:
        """Region codes with at least one filled bin, sorted."""
        return [int(r) for r in self.counts.regions()]

    def scheme(self) -> CategoryScheme:
        """Rebuild the :class:`CategoryScheme` the histograms were filled with."""
        return scheme_from_dict(
            self.categories, source=self.metadata.get("categories_source", "histograms")
        )

    @property
    def datasets(self) -> list[str]:
        """Dataset names in the histogram."""
        return self.counts.datasets

    @property
    def variations(self) -> list[str]:
        """Variation names in the histogram."""
        return self.counts.variations

    def datasets_of(self, kind: str) -> list[str]:
        """Datasets of one kind (``"data"`` or ``"mc"``)."""
        return [d for d in self.datasets if self.kinds.get(d) == kind]

    def region_arrays(
        self, kind: str, variation: str = "nominal"
    ) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
        """Σw and Σw² per (region, mass bin), summed over all datasets of ``kind``.

        Returns:
            ``(regions, sumw, sumw2)``: region codes (sorted, shape ``(R,)``), and arrays of
            shape ``(R, n_mass_bins)`` aligned with them. Regions absent from the histogram
            are not listed.
        """
        regions = self.counts.regions()
        nmass = self.binning.n_bins
        sumw = np.zeros((len(regions), nmass))
        sumw2 = np.zeros((len(regions), nmass))
        for name in self.datasets_of(kind):
            w, w2 = self.counts.dense(name, variation, regions)
            sumw += w
            sumw2 += w2
        return regions, sumw, sumw2

    def __add__(self, other: HistogramSet) -> HistogramSet:
        if self.categories != other.categories:
            msg = "cannot add histogram sets filled with different category schemes"
            raise InputError(msg)
        cutflow = {k: dict(v) for k, v in self.cutflow.items()}
        for ds, cuts in other.cutflow.items():
            tgt = cutflow.setdefault(ds, {})
            for cut, n in cuts.items():
                tgt[cut] = tgt.get(cut, 0) + n
        return HistogramSet(
            counts=self.counts + other.counts,
            categories=self.categories,
            kinds={**self.kinds, **other.kinds},
            cutflow=cutflow,
            metadata={**self.metadata, **other.metadata},
        )


def save_histograms(hset: HistogramSet, path: str | Path) -> Path:
    """Write a :class:`HistogramSet` atomically to ``path`` (``.npz``, no pickled objects).

    Each filled ``(dataset, variation)`` is stored as its filled bins (keys
    ``region * n_bins + bin``, Σw, Σw²).

    Returns:
        The path written.
    """
    p = Path(path)
    counts = hset.counts
    mb = counts.binning
    from zcalib.outputs import RUN_ID_FIELD, current_run_id

    header = {
        RUN_ID_FIELD: current_run_id(),
        "format": "zcalib-histograms",
        "format_version": FORMAT_VERSION,
        "blocks": [[d, v] for d, v in counts.blocks],
        "mass": {"n_bins": mb.n_bins, "lo": mb.lo, "hi": mb.hi},
        "categories": hset.categories,
        "kinds": hset.kinds,
        "cutflow": hset.cutflow,
        "metadata": hset.metadata,
    }
    arrays: dict[str, Any] = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for i, block in enumerate(counts.blocks.values()):
        arrays[f"keys_{i}"] = block.keys
        arrays[f"sumw_{i}"] = block.sumw
        arrays[f"sumw2_{i}"] = block.sumw2
    with atomic_open(p, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return p


def load_histograms(path: str | Path) -> HistogramSet:
    """Load histograms written by :func:`save_histograms` (never unpickles).

    Files of format version 1 (dense arrays) are read too.

    Raises:
        InputError: missing, unreadable, or not a zcalib histogram file.
    """
    p = Path(path)
    if not p.is_file():
        msg = f"{p}: histogram file not found"
        raise InputError(msg)
    try:
        with np.load(p, allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes().decode())
            arrays = {k: npz[k] for k in npz.files if k != "header"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        msg = f"{p}: not a zcalib histogram file ({err.__class__.__name__}: {err})"
        raise InputError(msg) from None
    if not isinstance(header, dict) or header.get("format") != "zcalib-histograms":
        fmt = header.get("format") if isinstance(header, dict) else None
        msg = f"{p}: not a zcalib histogram file (format={fmt!r})"
        raise InputError(msg)
    m = header["mass"]
    binning = MassBinning(n_bins=m["n_bins"], lo=m["lo"], hi=m["hi"])
    if header.get("format_version") == 1:
        counts = _load_dense(p, header, arrays, binning)
    else:
        counts = PairCounts(binning)
        for i, (d, v) in enumerate(header["blocks"]):
            try:
                keys = np.asarray(arrays[f"keys_{i}"], dtype=np.int64)
                sumw = np.asarray(arrays[f"sumw_{i}"], dtype=np.float64)
                sumw2 = np.asarray(arrays[f"sumw2_{i}"], dtype=np.float64)
            except KeyError as err:
                msg = f"{p}: histogram block {i} ({d}, {v}) is missing ({err})"
                raise InputError(msg) from None
            if not (keys.shape == sumw.shape == sumw2.shape) or keys.ndim != 1:
                msg = f"{p}: histogram block {i} ({d}, {v}) has inconsistent array shapes"
                raise InputError(msg)
            if len(keys) and (np.any(np.diff(keys) <= 0) or keys[0] < 0):
                msg = f"{p}: histogram block {i} ({d}, {v}) has unsorted or negative keys"
                raise InputError(msg)
            counts.blocks[(str(d), str(v))] = _Block(keys, sumw, sumw2)
    return HistogramSet(
        counts=counts,
        categories=header["categories"],
        kinds=header["kinds"],
        cutflow=header["cutflow"],
        metadata=header["metadata"],
    )


def _load_dense(
    p: Path, header: dict[str, Any], arrays: dict[str, Any], binning: MassBinning
) -> PairCounts:
    """Format version 1: dense ``(dataset, variation, region, mass)`` arrays."""
    h = hist.Hist(
        hist.axis.StrCategory(header["datasets"], name="dataset", label="Dataset", growth=True),
        hist.axis.StrCategory(
            header["variations"], name="variation", label="Variation", growth=True
        ),
        hist.axis.IntCategory(header["regions"], name="region", label="Pair region", growth=True),
        binning.axis(),
        storage=hist.storage.Weight(),
    )
    sumw, sumw2 = arrays.get("sumw"), arrays.get("sumw2")
    expected = tuple(len(ax) for ax in h.axes)
    if sumw is None or sumw2 is None or sumw.shape != expected or sumw2.shape != expected:
        shape = None if sumw is None else sumw.shape
        msg = f"{p}: array shape {shape} does not match the axes {expected}"
        raise InputError(msg)
    view: Any = h.view(flow=False)
    view["value"] = sumw
    view["variance"] = sumw2
    return PairCounts.from_hist(h)
