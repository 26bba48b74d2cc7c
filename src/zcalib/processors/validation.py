"""The validation processor: per plot category, ``dataset × variation × x`` histograms.

Used by :func:`zcalib.validation.plots.fill_validation_histograms` for data/MC plots whose
categories cannot be read off the pair-mass histograms (see there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import awkward as ak
import hist
import numpy as np
from numpy.typing import NDArray

from zcalib.processors.zee import ZeeProcessor, pair_kinematics, pair_selection

if TYPE_CHECKING:
    from zcalib.validation.plots import PlotSpec

__all__ = ["ValidationProcessor"]

FloatArray = NDArray[np.float64]
_PAIR_KEYS = {"pt_ee": "ptZ", "y_ee": "yZ"}


def _plot_hist(spec: PlotSpec) -> hist.Hist[Any]:
    return hist.Hist(
        hist.axis.StrCategory([], name="dataset", label="Dataset", growth=True),
        hist.axis.StrCategory([], name="variation", label="Variation", growth=True),
        hist.axis.Variable(list(spec.edges), name="x", label=spec.variable.label),
        storage=hist.storage.Weight(),
    )


@dataclass
class ValidationProcessor(ZeeProcessor):
    """Fill one histogram per plot category: ``dataset × variation × x`` (Weight storage).

    A :class:`~zcalib.processors.zee.ZeeProcessor` whose ``process`` fills the requested
    variables instead of the per-region mass: lepton extraction, the correction steps
    (variations ``nominal``, ``scale_up/down`` for data, ``smear_up/down`` for MC,
    ``uncorrected``), the MC weights and the pair selection are the parent's. The category
    scheme (``categories``) is not used. For every variation the pair selection, the
    leading/subleading order (by corrected Et) and the cuts are evaluated with that
    variation's energies.

    Args:
        plots: the plots to fill (see :class:`PlotSpec`).
    """

    plots: tuple[PlotSpec, ...] = ()

    def process(self, events: Any) -> dict[str, Any]:
        """Process one chunk of events (called by coffea)."""
        meta = events.metadata
        dataset = meta["dataset"]
        where = self._where(meta)
        kind = self.kinds[dataset]
        out: dict[str, Any] = {
            "hists": {p.name: _plot_hist(p) for p in self.plots},
            "selected": {dataset: 0},
            "errors": set(),
            "failed": set(),
        }
        lep = self._read_chunk(events, out)
        if lep is None:
            return out
        energies = self._energy_variations(lep, kind, meta)
        weight = (
            self._mc_weights(lep, energies["nominal"], np.ones(len(lep), dtype=bool), where)[0]
            if kind == "mc"
            else np.ones(len(lep))
        )
        raw_cache: dict[str, FloatArray] = {}
        rows = np.arange(len(lep))
        for variation, energy in energies.items():
            mass, sel = pair_selection(lep, energy, self.selection, self.binning)
            pair: dict[str, FloatArray] = {}
            base = sel.all(*sel.names)
            if variation == "nominal":
                out["selected"][dataset] = int(base.sum())
            et = energy / np.cosh(lep.sc_eta)
            lead = np.argmax(et, axis=1)
            sub = 1 - lead
            abs_eta = np.abs(lep.sc_eta)

            def pick(a: NDArray[Any], idx: NDArray[np.int64]) -> NDArray[Any]:
                return np.asarray(a[rows, idx])

            masks = {}
            for spec in self.plots:
                key = (spec.lead, spec.sublead)
                if key not in masks:
                    masks[key] = (
                        base
                        & spec.lead.mask(
                            pick(abs_eta, lead),
                            pick(lep.r9, lead),
                            pick(et, lead),
                            pick(lep.sc_eta, lead),
                        )
                        & spec.sublead.mask(
                            pick(abs_eta, sub),
                            pick(lep.r9, sub),
                            pick(et, sub),
                            pick(lep.sc_eta, sub),
                        )
                    )
                mask = masks[key]
                var = spec.variable
                if var.kind == "derived":
                    x = _derived(var.key, lep, energy, et, mass, lead, sub, pair)
                else:
                    if var.name not in raw_cache:
                        raw_cache[var.name] = _branch_values(events, var.key, var.index)
                    x = raw_cache[var.name]
                w = np.broadcast_to(weight[:, None] if x.ndim == 2 else weight, x.shape)
                m = np.broadcast_to(mask[:, None] if x.ndim == 2 else mask, x.shape)
                xs, ws = x[m].ravel(), w[m].ravel()
                ok = np.isfinite(xs)
                out["hists"][spec.name].fill(
                    dataset=dataset, variation=variation, x=xs[ok], weight=ws[ok]
                )
        return out


def _derived(
    key: str,
    lep: Any,
    energy: FloatArray,
    et: FloatArray,
    mass: FloatArray,
    lead: NDArray[np.int64],
    sub: NDArray[np.int64],
    pair: dict[str, FloatArray],
) -> FloatArray:
    """A derived variable per pair from (corrected) energies (``pair`` caches the pair
    kinematics of this variation)."""
    rows = np.arange(len(lep))
    if key == "mass":
        return mass
    if key in _PAIR_KEYS:
        if not pair:
            pair.update(pair_kinematics(lep, energy))
        return np.asarray(pair[_PAIR_KEYS[key]], dtype=np.float64)
    name, _, which = key.rpartition("_")
    idx = lead if which == "lead" else sub
    source = {"et": et, "eta": lep.sc_eta, "r9": lep.r9, "phi": lep.phi, "energy": energy}[name]
    return np.asarray(source[rows, idx], dtype=np.float64)


def _events_field(events: Any, name: str) -> Any:
    if name in events.fields:
        return events[name]
    prefix, _, rest = name.partition("_")
    return events[prefix][rest]


def _branch_values(events: Any, branch: str, index: int | None) -> FloatArray:
    """Values of an input branch: ``(n,)`` for scalars or a slot, ``(n, 2)`` for both pair
    leptons of a per-lepton branch (missing slots are NaN)."""
    arr = _events_field(events, branch)
    if arr.ndim == 1:
        return np.asarray(ak.to_numpy(arr), dtype=np.float64)
    width = 2 if index is None else index + 1
    padded = ak.fill_none(ak.pad_none(arr, width, axis=1, clip=True), np.nan)
    cols = np.asarray(ak.to_numpy(padded), dtype=np.float64)
    return cols[:, :2] if index is None else cols[:, index]
