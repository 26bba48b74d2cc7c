"""Processors of the derivation chain: pair counts per (run, lumi), mass per run bin, Z kinematics.

All three reuse :class:`~zcalib.processors.zee.ZeeProcessor`'s reading, prior corrections
(data scales, MC smearing), pair selection and MC weights, so every step of the chain sees
exactly the pairs (and the corrected energies) the fit steps see:

* :class:`RunCountProcessor` — selected pairs (and all events) per ``(run, lumi)`` of the
  data, as a :class:`RunLumiCounts` accumulator (input of ``zcalib run-divide``);
* :class:`RunMassProcessor` — ``hist.Hist(dataset, run_bin, eta_bin, mass)`` for pairs with
  both electrons in the same |η| bin; data are assigned to run bins by ``(run, lumi)``, MC to
  run bin ``-1`` (input of ``zcalib time-stability``);
* :class:`ZKinProcessor` — ``hist.Hist(dataset, ptZ, absYZ)`` of the selected pairs (input of
  the Z pT × |y| reweighting).

Outputs are plain dicts of accumulatables (coffea adds them across chunks and workers), with
``errors``/``failed`` sets as in ``ZeeProcessor``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hist
import numpy as np
from numpy.typing import NDArray

from zcalib.io.formats import Leptons
from zcalib.processors.zee import ZeeProcessor, pair_kinematics

__all__ = [
    "LUMI_ALL",
    "RunCountProcessor",
    "RunLumiCounts",
    "RunMassProcessor",
    "ZKinProcessor",
    "assign_run_bins",
    "pack_run_lumi",
]

log = logging.getLogger(__name__)

#: Largest luminosity-block number: ``(run, 0)``-``(run, LUMI_ALL)`` is the whole run.
LUMI_ALL = (1 << 32) - 1


def pack_run_lumi(
    run: NDArray[np.integer[Any]], lumi: NDArray[np.integer[Any]]
) -> NDArray[np.int64]:
    """One sortable int64 key per event: ``run << 32 | lumi``."""
    r = np.asarray(run, dtype=np.int64)
    lu = np.asarray(lumi, dtype=np.int64) & LUMI_ALL
    out: NDArray[np.int64] = (r << 32) | lu
    return out


def assign_run_bins(
    keys: NDArray[np.int64], starts: NDArray[np.int64], stops: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Index of the run bin holding each packed ``(run, lumi)`` key, ``-1`` if none.

    Args:
        keys: packed keys (:func:`pack_run_lumi`).
        starts: first packed key of each bin (sorted, bins do not overlap).
        stops: last packed key of each bin (inclusive).

    Example:
        >>> k = pack_run_lumi(np.array([5, 7, 9]), np.array([1, 1, 1]))
        >>> s = pack_run_lumi(np.array([5, 7]), np.array([0, 0]))
        >>> e = pack_run_lumi(np.array([6, 7]), np.array([LUMI_ALL, LUMI_ALL]))
        >>> assign_run_bins(k, s, e).tolist()
        [0, 1, -1]
    """
    idx = np.searchsorted(starts, keys, side="right") - 1
    safe = np.clip(idx, 0, max(len(starts) - 1, 0))
    inside = (idx >= 0) & (keys <= stops[safe]) if len(starts) else np.zeros(len(keys), bool)
    out: NDArray[np.int64] = np.where(inside, idx, -1).astype(np.int64)
    return out


@dataclass
class RunLumiCounts:
    """Events and selected pairs per ``(run, lumi)``: an addable coffea accumulator.

    Attributes:
        keys: sorted unique packed keys ``run << 32 | lumi``.
        total: events read per key.
        selected: pairs passing the selection per key.
    """

    keys: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    total: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    selected: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    @classmethod
    def from_events(
        cls,
        run: NDArray[np.integer[Any]],
        lumi: NDArray[np.integer[Any]],
        selected: NDArray[np.bool_],
    ) -> RunLumiCounts:
        """Count the events and selected pairs of one chunk."""
        keys, inverse = np.unique(pack_run_lumi(run, lumi), return_inverse=True)
        total = np.bincount(inverse, minlength=len(keys)).astype(np.int64)
        sel = np.bincount(inverse, weights=selected.astype(np.float64), minlength=len(keys))
        return cls(keys=keys.astype(np.int64), total=total, selected=sel.astype(np.int64))

    def __add__(self, other: RunLumiCounts) -> RunLumiCounts:
        keys, inverse = np.unique(np.concatenate([self.keys, other.keys]), return_inverse=True)
        total = np.bincount(
            inverse, weights=np.concatenate([self.total, other.total]), minlength=len(keys)
        )
        sel = np.bincount(
            inverse, weights=np.concatenate([self.selected, other.selected]), minlength=len(keys)
        )
        return RunLumiCounts(
            keys=keys.astype(np.int64),
            total=np.rint(total).astype(np.int64),
            selected=np.rint(sel).astype(np.int64),
        )

    @property
    def runs(self) -> NDArray[np.int64]:
        """Run number of each key."""
        out: NDArray[np.int64] = self.keys >> 32
        return out

    @property
    def lumis(self) -> NDArray[np.int64]:
        """Luminosity block of each key."""
        out: NDArray[np.int64] = self.keys & LUMI_ALL
        return out


@dataclass
class _Prepared:
    lep: Leptons
    kind: str
    dataset: str
    energies: dict[str, NDArray[np.float64]]
    mass: NDArray[np.float64]
    cut: NDArray[np.bool_]
    where: str


class _ChainBase(ZeeProcessor):
    """Shared reading, correction and selection of the chain processors."""

    def _empty(self) -> dict[str, Any]:
        raise NotImplementedError

    def _prepare(self, events: Any, out: dict[str, Any]) -> _Prepared | None:
        """Read, correct and select one chunk; ``None`` (errors in ``out``) if unreadable."""
        meta = events.metadata
        dataset = meta["dataset"]
        where = self._where(meta)
        kind = self.kinds[dataset]
        out["cutflow"] = {dataset: {"all": len(events)}}
        lep = self._read_chunk(events, out)
        if lep is None:
            return None
        energies = self._energy_variations(lep, kind, meta)
        sel = self._select(lep, energies["nominal"])
        out["cutflow"][dataset].update(sel.cutflow)
        return _Prepared(
            lep=lep,
            kind=kind,
            dataset=dataset,
            energies=energies,
            mass=sel.mass,
            cut=sel.cut,
            where=where,
        )

    def _weights(self, prep: _Prepared) -> NDArray[np.float64]:
        """Nominal weights of the selected pairs (1 for data)."""
        if prep.kind == "data":
            return np.ones(int(prep.cut.sum()))
        nominal, _ = self._mc_weights(prep.lep, prep.energies["nominal"], prep.cut, prep.where)
        return nominal

    def process(self, events: Any) -> dict[str, Any]:
        """Process one chunk of events (called by coffea)."""
        out = self._empty()
        prep = self._prepare(events, out)
        if prep is not None:
            self._fill(prep, out)
        return out

    def _fill(self, prep: _Prepared, out: dict[str, Any]) -> None:
        raise NotImplementedError


@dataclass
class RunCountProcessor(_ChainBase):
    """Count data events and selected pairs per ``(run, lumi)``.

    Output: ``{"counts": {dataset: RunLumiCounts}, "cutflow", "errors", "failed"}``; MC
    datasets are counted too (their run numbers are whatever the files hold).
    """

    def _empty(self) -> dict[str, Any]:
        return {"counts": {}, "cutflow": {}, "errors": set(), "failed": set()}

    def _fill(self, prep: _Prepared, out: dict[str, Any]) -> None:
        out["counts"][prep.dataset] = RunLumiCounts.from_events(
            prep.lep.run, prep.lep.lumi, prep.cut
        )


@dataclass
class RunMassProcessor(_ChainBase):
    """Pair-mass histograms per run bin and η bin (both electrons in the same η bin).

    Args (beyond :class:`ZeeProcessor`'s):
        run_bins: ``(start_key, stop_key)`` per run bin, packed with :func:`pack_run_lumi`
            (inclusive, sorted, non-overlapping).
        eta_bins: ``(lo, hi)`` |η_SC| range of each bin (signed η_SC with ``signed_eta``).
        signed_eta: the bins are signed η_SC (EE− and EE+ apart).

    Data pairs outside every run bin are counted in ``outside`` (the chain checks the run
    coverage before the event loop, so this stays empty); MC pairs go to run bin ``-1``.
    """

    run_bins: tuple[tuple[int, int], ...] = ()
    eta_bins: tuple[tuple[float, float], ...] = ()
    signed_eta: bool = False

    def _empty(self) -> dict[str, Any]:
        return {
            "hist": hist.Hist(
                hist.axis.StrCategory([], name="dataset", growth=True),
                hist.axis.IntCategory([], name="run_bin", growth=True),
                hist.axis.IntCategory([], name="eta_bin", growth=True),
                self.binning.axis(),
                storage=hist.storage.Weight(),
            ),
            "outside": {},
            "cutflow": {},
            "errors": set(),
            "failed": set(),
        }

    def _fill(self, prep: _Prepared, out: dict[str, Any]) -> None:
        lep, cut = prep.lep, prep.cut
        eta = lep.sc_eta[cut] if self.signed_eta else np.abs(lep.sc_eta[cut])
        eta_bin = same_eta_bin(eta, self.eta_bins)
        w = self._weights(prep)
        if prep.kind == "data":
            starts = np.array([b[0] for b in self.run_bins], dtype=np.int64)
            stops = np.array([b[1] for b in self.run_bins], dtype=np.int64)
            run_bin = assign_run_bins(pack_run_lumi(lep.run[cut], lep.lumi[cut]), starts, stops)
            out["outside"][prep.dataset] = int((run_bin < 0).sum())
        else:
            run_bin = np.full(int(cut.sum()), -1, dtype=np.int64)
        keep = (eta_bin >= 0) & ((run_bin >= 0) | (prep.kind != "data"))
        out["hist"].fill(
            dataset=prep.dataset,
            run_bin=run_bin[keep],
            eta_bin=eta_bin[keep],
            mass=prep.mass[cut][keep],
            weight=w[keep],
        )


def same_eta_bin(
    abs_eta: NDArray[np.float64], eta_bins: Sequence[tuple[float, float]]
) -> NDArray[np.int64]:
    """Index of the |η| bin holding *both* leptons of each pair, ``-1`` otherwise.

    Args:
        abs_eta: ``(n, 2)`` |η_SC| of the two leptons.
        eta_bins: ``(lo, hi)`` ranges, half-open ``[lo, hi)``.

    Example:
        >>> same_eta_bin(np.array([[0.2, 0.5], [0.2, 1.2]]), [(0, 1), (1, 1.4442)]).tolist()
        [0, -1]
    """
    out = np.full(len(abs_eta), -1, dtype=np.int64)
    for k, (lo, hi) in enumerate(eta_bins):
        inside = ((abs_eta >= lo) & (abs_eta < hi)).all(axis=1)
        out[inside] = k
    return out


@dataclass
class ZKinProcessor(_ChainBase):
    """Selected pairs in bins of Z pT × |y| (data unweighted, MC with its weights).

    Args (beyond :class:`ZeeProcessor`'s):
        pt_edges: Z pT bin edges [GeV].
        y_edges: Z |y| bin edges.
    """

    pt_edges: tuple[float, ...] = ()
    y_edges: tuple[float, ...] = ()

    def _empty(self) -> dict[str, Any]:
        return {
            "hist": hist.Hist(
                hist.axis.StrCategory([], name="dataset", growth=True),
                hist.axis.Variable(self.pt_edges, name="ptZ"),
                hist.axis.Variable(self.y_edges, name="absYZ"),
                storage=hist.storage.Weight(),
            ),
            "cutflow": {},
            "errors": set(),
            "failed": set(),
        }

    def _fill(self, prep: _Prepared, out: dict[str, Any]) -> None:
        kin = pair_kinematics(prep.lep, prep.energies["nominal"])
        cut = prep.cut
        out["hist"].fill(
            dataset=prep.dataset,
            ptZ=kin["ptZ"][cut],
            absYZ=kin["absYZ"][cut],
            weight=self._weights(prep),
        )
