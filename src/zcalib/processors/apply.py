"""Apply a zcalib (EGM-layout) payload to every lepton of an input: ``zcalib apply``.

:class:`ApplyProcessor` is a coffea :class:`~coffea.processor.ProcessorABC` (iterative,
futures and Dask executors). It uses only the payload: per lepton of the chosen collection

* **data**: ``scale`` from ``EGMScale_Compound_<P>_<era>`` evaluated as
  ``(syst, run, ScEta, r9, AbsScEta, pt, seedGain)``; columns ``pt``/``energy`` (corrected)
  and ``pt_scale_up``/``pt_scale_down`` (the compound's ``scale_up``/``scale_down``), plus the
  factors ``scale``, ``escale``;
* **MC**: ``z`` from ``EGMRandomGenerator`` (``"stdnormal", pt, r9, AbsScEta, event``),
  ``smear``... from ``EGMSmearAndSyst_<P>PTsplit_<era>`` (``syst, pt, r9, AbsScEta``);
  ``pt = pt_raw (1 + smear z)``, ``pt_smear_up/down`` with ``smear_up``/``smear_down`` and
  the same ``z``, ``pt_scale_up/down = pt (1 ± escale)`` (EGM: the scale uncertainty on the
  smeared MC); energies likewise.

Inputs: NanoAOD (``Electron_*``; ``Photon_*`` for a ``Pho`` payload; ``ScEta = eta +
deltaEtaSC`` for electrons, ``Photon_superclusterEta`` or else ``Photon_eta`` for photons;
``pt`` is the NanoAOD ``pt``) or ECALELF (the first two electrons, ``etaSCEle`` as ``ScEta``,
``pt = energy_ECAL_ele / cosh(etaSCEle)``, ``gainSeedSC`` index 0/1/2 read as gain
12/6/1). Every chunk writes its rows (one per lepton, with ``run``, ``luminosityBlock``,
``event``, ``lepton`` = index in the event) to one Parquet file in a staging folder;
:func:`zcalib.api.apply` moves the folder into place only when every chunk succeeded.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from coffea import processor
from numpy.typing import NDArray

from zcalib.corrections.egm import smear_model_of
from zcalib.physics import mixture_width_factor

__all__ = ["APPLY_FORMATS", "ApplyProcessor", "lepton_columns"]

log = logging.getLogger(__name__)

#: Input formats ``zcalib apply`` reads.
APPLY_FORMATS = ("nanoaod", "ecalelf")
_ECALELF_GAIN = np.array([12, 6, 1], dtype=np.float64)


def _flat(x: Any) -> NDArray[np.float64]:
    return np.asarray(ak.to_numpy(ak.flatten(x, axis=None)), dtype=np.float64)


def lepton_columns(events: Any, fmt: str, collection: str) -> dict[str, NDArray[Any]]:
    """Per-lepton input columns of a chunk (flat arrays, one entry per lepton).

    Args:
        events: coffea events (BaseSchema).
        fmt: ``nanoaod`` or ``ecalelf``.
        collection: NanoAOD collection (``Electron`` or ``Photon``); ignored for ECALELF.

    Returns:
        ``run, luminosityBlock, event, lepton, pt_raw, energy_raw, eta, ScEta, r9,
        seedGain``.
    """
    fields = set(events.fields)
    if fmt == "nanoaod":
        c = collection
        pt = events[f"{c}_pt"]
        counts = np.asarray(ak.num(pt, axis=1), dtype=np.int64)
        eta = events[f"{c}_eta"]
        if c == "Electron":
            sc_eta = eta + events["Electron_deltaEtaSC"]
        elif "Photon_superclusterEta" in fields:
            sc_eta = events["Photon_superclusterEta"]
        else:
            sc_eta = eta
        gain = (
            _flat(events[f"{c}_seedGain"])
            if f"{c}_seedGain" in fields
            else np.full(int(counts.sum()), 12.0)
        )
        per_event = {
            "run": np.asarray(events["run"], dtype=np.int64),
            "luminosityBlock": np.asarray(events["luminosityBlock"], dtype=np.int64),
            "event": np.asarray(events["event"], dtype=np.int64),
        }
        cols = {
            "pt_raw": _flat(pt),
            "eta": _flat(eta),
            "ScEta": _flat(sc_eta),
            "r9": _flat(events[f"{c}_r9"]),
            "seedGain": gain,
        }
        cols["energy_raw"] = cols["pt_raw"] * np.cosh(cols["eta"])
    else:
        n = len(events)
        counts = np.full(n, 2, dtype=np.int64)

        def two(name: str) -> NDArray[np.float64]:
            return np.asarray(ak.to_numpy(events[name][:, :2]), dtype=np.float64).ravel()

        energy = two("energy_ECAL_ele")
        sc_eta = two("etaSCEle") if "etaSCEle" in fields else two("etaEle")
        idx = two("gainSeedSC").astype(np.int64)
        gain = np.where((idx >= 0) & (idx <= 2), _ECALELF_GAIN[np.clip(idx, 0, 2)], 0.0)
        zeros = np.zeros(n, dtype=np.int64)
        per_event = {
            "run": np.asarray(events["runNumber"], dtype=np.int64),
            "luminosityBlock": np.asarray(events["lumiBlock"], dtype=np.int64)
            if "lumiBlock" in fields
            else zeros,
            "event": np.asarray(events["eventNumber"], dtype=np.int64)
            if "eventNumber" in fields
            else zeros,
        }
        cols = {
            "pt_raw": energy / np.cosh(sc_eta),
            "energy_raw": energy,
            "eta": two("etaEle"),
            "ScEta": sc_eta,
            "r9": two("R9Ele"),
            "seedGain": gain,
        }
    out: dict[str, NDArray[Any]] = {k: np.repeat(v, counts) for k, v in per_event.items()}
    starts = np.cumsum(counts) - counts
    out["lepton"] = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)
    out.update(cols)
    return out


@dataclass
class ApplyProcessor(processor.ProcessorABC):  # type: ignore[misc]
    """Corrected (data) / smeared (MC) pt and energies with variations, from a payload.

    Args:
        fmt: ``nanoaod`` or ``ecalelf``.
        payload: the correctionlib JSON text.
        compound: name of the data-scale compound.
        smear: name of the MC smearing-and-systematics correction.
        rng: name of the random-number generator.
        kinds: ``{dataset: "data" | "mc"}``.
        collection: NanoAOD collection (``Electron``/``Photon``).
        staging: folder receiving one Parquet file per chunk.
        has_event: ``{dataset: whether its events have event numbers}`` (ECALELF without
            ``eventNumber`` keys the random numbers on file identity and entry instead).
    """

    fmt: str
    payload: str
    compound: str
    smear: str
    rng: str
    kinds: dict[str, str]
    collection: str = "Electron"
    staging: str = "."
    has_event: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cset: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cset"] = None
        return state

    def _evaluators(self) -> Any:
        if self._cset is None:
            import correctionlib

            self._cset = correctionlib.CorrectionSet.from_string(self.payload)
        return self._cset

    def columns(self, cols: dict[str, NDArray[Any]], kind: str, event: NDArray[Any]) -> None:
        """Add the corrected columns of ``kind`` to ``cols`` in place."""
        cset = self._evaluators()
        pt, r9, sc_eta = cols["pt_raw"], cols["r9"], cols["ScEta"]
        abs_eta = np.abs(sc_eta)
        energy = cols["energy_raw"]
        if kind == "data":
            comp = cset.compound[self.compound]
            args = (cols["run"].astype(np.float64), sc_eta, r9, abs_eta, pt, cols["seedGain"])
            for key in ("scale", "escale", "scale_up", "scale_down"):
                cols[key] = np.asarray(comp.evaluate(key, *args), dtype=np.float64)
            cols["pt"] = pt * cols["scale"]
            cols["energy"] = energy * cols["scale"]
            for v in ("scale_up", "scale_down"):
                cols[f"pt_{v}"] = pt * cols[v]
                cols[f"energy_{v}"] = energy * cols[v]
            return
        corr = cset[self.smear]
        z = np.asarray(
            cset[self.rng].evaluate("stdnormal", pt, r9, abs_eta, event), dtype=np.float64
        )
        model = smear_model_of(corr.description)
        if model is not None:  # double Gaussian: the tail's width where u < f
            u = cset[self.rng].evaluate("stdflat", pt, r9, abs_eta, event)
            z = z * mixture_width_factor(u, model)
        cols["z"] = z
        for key in ("smear", "esmear", "smear_up", "smear_down", "escale"):
            cols[key] = np.asarray(corr.evaluate(key, pt, r9, abs_eta), dtype=np.float64)
        factor = 1.0 + cols["smear"] * z
        cols["pt"] = pt * factor
        cols["energy"] = energy * factor
        for v in ("smear_up", "smear_down"):
            f = 1.0 + np.maximum(cols[v], 0.0) * z
            cols[f"pt_{v}"] = pt * f
            cols[f"energy_{v}"] = energy * f
        for v, sign in (("scale_up", 1.0), ("scale_down", -1.0)):
            f = factor * (1.0 + sign * cols["escale"])
            cols[f"pt_{v}"] = pt * f
            cols[f"energy_{v}"] = energy * f

    def process(self, events: Any) -> dict[str, Any]:
        """One chunk: compute and write its Parquet part; return its path and counts."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from zcalib.rng import entry_events

        meta = events.metadata
        dataset = meta["dataset"]
        kind = self.kinds[dataset]
        cols = lepton_columns(events, self.fmt, self.collection)
        start = int(meta.get("entrystart") or 0)
        if self.has_event.get(dataset, True):
            event = cols["event"].astype(np.float64)
        else:
            counts = np.full(len(events), 2, dtype=np.int64)
            per_event = entry_events(
                str(meta.get("fileuuid") or meta.get("filename")),
                np.arange(start, start + len(events), dtype=np.int64),
            )
            event = np.repeat(per_event, counts)
        self.columns(cols, kind, event)
        key = hashlib.blake2b(
            f"{meta.get('filename')}:{meta.get('entrystart')}".encode(), digest_size=8
        ).hexdigest()
        start = int(meta.get("entrystart") or 0)
        name = f"{Path(str(meta.get('filename'))).stem}-{start:012d}-{key}.parquet"
        folder = Path(self.staging) / dataset
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        tmp = folder / f".{name}.tmp"
        pq.write_table(pa.table(cols), tmp)
        tmp.replace(target)
        return {"parts": {dataset: [str(target)]}, "leptons": {dataset: len(cols["pt"])}}

    def postprocess(self, accumulator: Any) -> Any:
        """Nothing to do: the parts are written by :meth:`process`."""
        return accumulator
