"""Pair-mass histograms: construction, the :class:`HistogramSet` container, safe save/load.

The processor fills one :class:`hist.Hist` with axes

``dataset`` (str) x ``variation`` (str) x ``region`` (int, ``i*n_cells + j`` with ``i <= j``)
x ``mass`` (regular in log m, GeV) with ``Weight`` storage (Σw, Σw²).

A :class:`HistogramSet` bundles that histogram with what is needed to interpret it: the
category scheme (as its YAML dict), which datasets are data or MC, the cutflow per dataset,
and provenance. It is saved as a single ``.npz`` (numpy arrays plus one JSON header), loaded
with ``allow_pickle=False`` so loading never executes code.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hist
import numpy as np
from numpy.typing import NDArray

from zcalib._atomic import atomic_open
from zcalib.categories import CategoryScheme, scheme_from_dict
from zcalib.exceptions import InputError

__all__ = [
    "FORMAT_VERSION",
    "HistogramSet",
    "MassBinning",
    "empty_hist",
    "load_histograms",
    "save_histograms",
]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class MassBinning:
    """Fine mass binning used when filling (log-uniform between ``lo`` and ``hi`` GeV)."""

    n_bins: int = 1200
    lo: float = 60.0
    hi: float = 120.0

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


@dataclass(frozen=True)
class HistogramSet:
    """Pair-mass histograms plus what is needed to interpret them.

    Attributes:
        hist: the filled histogram (axes dataset, variation, region, mass).
        categories: the category scheme as a YAML-style dict (see ``CategoryScheme``).
        kinds: ``{dataset: "data" | "mc"}``.
        cutflow: ``{dataset: {cut: n_events}}`` as reported by the processor.
        metadata: provenance (inputs and checksums, config, versions, timings).
    """

    hist: hist.Hist[Any]
    categories: dict[str, Any]
    kinds: dict[str, str]
    cutflow: dict[str, dict[str, int]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def scheme(self) -> CategoryScheme:
        """Rebuild the :class:`CategoryScheme` the histograms were filled with."""
        return scheme_from_dict(
            self.categories, source=self.metadata.get("categories_source", "histograms")
        )

    @property
    def datasets(self) -> list[str]:
        """Dataset names in the histogram."""
        return list(self.hist.axes["dataset"])

    @property
    def variations(self) -> list[str]:
        """Variation names in the histogram."""
        return list(self.hist.axes["variation"])

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
        h = self.hist
        names = self.datasets_of(kind)
        regions = np.array(sorted(int(r) for r in h.axes["region"]), dtype=np.int64)
        nmass = h.axes["mass"].size
        sumw = np.zeros((len(regions), nmass))
        sumw2 = np.zeros((len(regions), nmass))
        if variation not in self.variations:
            return regions, sumw, sumw2
        view: Any = h.view(flow=False)
        vi = h.axes["variation"].index(variation)
        ridx = np.array([h.axes["region"].index(int(r)) for r in regions], dtype=np.int64)
        for name in names:
            di = h.axes["dataset"].index(name)
            block = view[di, vi]
            sumw += block["value"][ridx]
            sumw2 += block["variance"][ridx]
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
            hist=self.hist + other.hist,
            categories=self.categories,
            kinds={**self.kinds, **other.kinds},
            cutflow=cutflow,
            metadata={**self.metadata, **other.metadata},
        )


def save_histograms(hset: HistogramSet, path: str | Path) -> Path:
    """Write a :class:`HistogramSet` atomically to ``path`` (``.npz``, no pickled objects).

    Returns:
        The path written.
    """
    p = Path(path)
    h = hset.hist
    header = {
        "format": "zcalib-histograms",
        "format_version": FORMAT_VERSION,
        "datasets": [str(x) for x in h.axes["dataset"]],
        "variations": [str(x) for x in h.axes["variation"]],
        "regions": [int(x) for x in h.axes["region"]],
        "mass": {
            "n_bins": h.axes["mass"].size,
            "lo": float(h.axes["mass"].edges[0]),
            "hi": float(h.axes["mass"].edges[-1]),
        },
        "categories": hset.categories,
        "kinds": hset.kinds,
        "cutflow": hset.cutflow,
        "metadata": hset.metadata,
    }
    view: Any = h.view(flow=False)
    arrays = {
        "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        "sumw": np.ascontiguousarray(view["value"]),
        "sumw2": np.ascontiguousarray(view["variance"]),
    }
    with atomic_open(p, "wb") as fh:
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return p


def load_histograms(path: str | Path) -> HistogramSet:
    """Load histograms written by :func:`save_histograms` (never unpickles).

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
            sumw = npz["sumw"]
            sumw2 = npz["sumw2"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        msg = f"{p}: not a zcalib histogram file ({err.__class__.__name__}: {err})"
        raise InputError(msg) from None
    if header.get("format") != "zcalib-histograms":
        msg = f"{p}: not a zcalib histogram file (format={header.get('format')!r})"
        raise InputError(msg)
    m = header["mass"]
    h = hist.Hist(
        hist.axis.StrCategory(header["datasets"], name="dataset", label="Dataset", growth=True),
        hist.axis.StrCategory(
            header["variations"], name="variation", label="Variation", growth=True
        ),
        hist.axis.IntCategory(header["regions"], name="region", label="Pair region", growth=True),
        MassBinning(n_bins=m["n_bins"], lo=m["lo"], hi=m["hi"]).axis(),
        storage=hist.storage.Weight(),
    )
    expected = tuple(len(ax) for ax in h.axes)
    if sumw.shape != expected or sumw2.shape != expected:
        msg = f"{p}: array shape {sumw.shape} does not match the axes {expected}"
        raise InputError(msg)
    view: Any = h.view(flow=False)
    view["value"] = sumw
    view["variance"] = sumw2
    return HistogramSet(
        hist=h,
        categories=header["categories"],
        kinds=header["kinds"],
        cutflow=header["cutflow"],
        metadata=header["metadata"],
    )
