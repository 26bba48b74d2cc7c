"""The dielectron processor: select pairs, categorise leptons, weight MC, fill mass histograms.

:class:`ZeeProcessor` is a coffea :class:`~coffea.processor.ProcessorABC`; it runs unchanged
on the iterative, futures and Dask executors of :class:`coffea.processor.Runner`. Its output
per chunk is::

    {"counts": PairCounts(dataset, variation, region, mass),
     "cutflow": {dataset: {cut: n_events}},
     "sumw": {dataset: Σ generator weights before selection},
     "errors": {one-line error messages},
     "failed": {(dataset, filename, entrystart, entrystop, reason) of unreadable chunks}}

Bad *content* (NaN/inf energies, unreadable baskets) is reported through ``errors`` rather
than raised, so that the message survives every executor unchanged; the runner turns a
non-empty ``errors`` set into an :class:`~zcalib.exceptions.InputError`, or, with
``skip_bad_files``, reports the unreadable chunks of ``failed`` as skipped (their events are
not counted in the cutflow).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from coffea import processor
from coffea.analysis_tools import PackedSelection
from numpy.typing import NDArray

from zcalib._jit import jitted
from zcalib.categories import CRACK, CategoryScheme, scheme_from_dict
from zcalib.config import SelectionConfig
from zcalib.corrections.egm import smear_model_of
from zcalib.histograms import MassBinning, PairCounts
from zcalib.io._base import READ_BYTES_KEY, coffea_tree
from zcalib.io.formats import ColumnMap, EventBranch, Leptons, get_format
from zcalib.physics import Z_MASS, mixture_width_factor, pair_masses

__all__ = [
    "CUTS",
    "PAIR_INPUTS",
    "CorrectionStep",
    "WeightSpec",
    "ZeeProcessor",
    "correction_inputs",
    "missing_event_input",
    "pair_kinematics",
    "pair_selection",
]

log = logging.getLogger(__name__)

#: Selection steps, in cutflow order.
CUTS: tuple[str, ...] = ("two_leptons", "id", "eta", "et", "charge", "categorised", "mass")

#: The Et thresholds (``min_et_lead``, ``min_et_sublead``) compare ``Et · m / m_ee`` with
#: this ``m`` when it is positive (the categorisation Et of
#: :func:`zcalib.physics.category_et` for ``Z_MASS``), and the lepton's own Et when it is 0,
#: the default: measured over 9 samples, thresholds on the categorisation Et change no Et
#: bin's pulls beyond the noise (docs/fit.md, "Lowest Et bin"), so the selection keeps the
#: thresholds as the user (and the trigger) understands them. ``benchmarks/et_study.py``
#: sets it to compare the two.
_THRESHOLD_REFERENCE_MASS: float = 0.0

#: Pair-level quantities a :class:`WeightSpec` may use as inputs (see :func:`pair_kinematics`).
PAIR_INPUTS: tuple[str, ...] = ("ptZ", "yZ", "absYZ", "mZ")


@dataclass(frozen=True)
class WeightSpec:
    """An MC event weight evaluated with correctionlib, with its up/down variations.

    Attributes:
        name: variation prefix on the histogram axis (``pileup`` gives ``pileup_up``...).
        payload: the correctionlib JSON text (shipped to workers with the processor).
        correction: name of the correction in the payload.
        variable: lepton-record attribute fed as the first input (``npu``); used when
            ``inputs`` is empty.
        keys: ``(nominal, up, down)`` values of the string input.
        source: where the payload came from (for messages).
        inputs: the numeric inputs, in the correction's order: lepton-record
            attributes (``npu``) or pair-level quantities of :data:`PAIR_INPUTS`
            (``ptZ``, ``absYZ``..., from the corrected nominal energies). Empty means
            ``(variable,)``.
        key_index: position of the string (variation key) input among the correction's
            inputs; ``-1`` is last. Set by :func:`zcalib.corrections.apply.bind_weight`,
            which matches the inputs by name at set-up.
    """

    name: str
    payload: str
    correction: str
    variable: str = "npu"
    keys: tuple[str, str, str] = ("nominal", "up", "down")
    source: str = "<memory>"
    inputs: tuple[str, ...] = ()
    key_index: int = -1

    @property
    def input_names(self) -> tuple[str, ...]:
        """The numeric inputs, in order (``inputs``, else ``(variable,)``)."""
        return self.inputs or (self.variable,)

    @property
    def branch_inputs(self) -> tuple[str, ...]:
        """The inputs read from branches (not computed from the pair)."""
        return tuple(v for v in self.input_names if v not in PAIR_INPUTS)


@dataclass(frozen=True)
class CorrectionStep:
    """A prior correction applied to lepton energies in the processor (correctionlib).

    Scale steps multiply DATA energies (``E *= scale``), evaluated per lepton with ``pt``
    (Et) updated between steps like a compound correction with ``inputs_update: ["pt"]``.
    Smear steps add Gaussian smearing to MC energies, ``E *= 1 + smear * z``, with ``z``
    from :mod:`zcalib.rng` keyed on event identity (several smear steps add in quadrature).

    Attributes:
        name: correction name inside the payload.
        payload: the correctionlib JSON text.
        kind: ``scale`` (data) or ``smear`` (MC).
        source: where the payload came from (for messages).
    """

    name: str
    payload: str
    kind: str
    source: str = "<memory>"


def correction_inputs(step: CorrectionStep) -> tuple[str, ...]:
    """The input names of a correction step, read from its payload (``()`` if not found)."""
    return _inputs_of(step.payload, step.name)


@functools.lru_cache(maxsize=32)
def _inputs_of(payload: str, name: str) -> tuple[str, ...]:
    """The inputs the correction (or compound) ``name`` reads in its trees."""
    from zcalib.corrections.egm import payload_inputs

    return payload_inputs(payload, name)


#: Per-event correction inputs read from a branch an input may lack (0 is read then).
_EVENT_INPUTS: tuple[tuple[EventBranch, str], ...] = (
    ("run", "run number"),
    ("lumi", "luminosity block"),
)


def missing_event_input(
    corrections: Sequence[CorrectionStep],
    kind: str,
    fmt: str,
    available: Mapping[str, str],
    column_map: ColumnMap | None = None,
) -> str | None:
    """Why a correction applied to ``kind`` cannot be evaluated on this input, or ``None``.

    A step keyed on ``run`` or ``lumi`` (e.g. a time-stability step whose run bins split runs
    at a luminosity block) needs that branch: without it :func:`extract_leptons` reads 0,
    and the step would silently be evaluated at run or lumi 0 (for ``lumi``: the first lumi
    bin of every run).

    Args:
        corrections: the processor's correction steps.
        kind: ``data`` (scale steps apply) or ``mc`` (smear steps apply).
        fmt: the input format.
        available: optional branches present in the input, by role.
        column_map: branch names for the ``flat`` format.

    Returns:
        ``"correction 'x' (source) needs the luminosity block (input 'lumi'), but ..."``
        naming the missing branch, or ``None`` when every needed branch is there.
    """
    wanted = "scale" if kind == "data" else "smear"
    form = get_format(fmt)
    for step in corrections:
        if step.kind != wanted:
            continue
        needed = correction_inputs(step)
        for role, label in _EVENT_INPUTS:
            if role not in needed or form.event_branch(role, available, column_map):
                continue
            lacks = form.lacks(role, column_map)
            return (
                f"correction '{step.name}' ({step.source}) needs the {label} (input "
                f"'{role}'), but {lacks}; it cannot be applied to these events"
            )
    return None


@functools.lru_cache(maxsize=8)
def _cached_scheme(text: str) -> CategoryScheme:
    """The scheme of a YAML dict (as sorted JSON), validated and tabulated once per process."""
    scheme = scheme_from_dict(json.loads(text), source="processor")
    scheme._grid()  # the look-up table, also once
    return scheme


@dataclass
class ZeeProcessor(processor.ProcessorABC):  # type: ignore[misc]
    """Fill per-category-pair invariant-mass histograms from dielectron events.

    Args:
        fmt: input format (``ecalelf``, ``nanoaod``, ``flat``).
        categories: category scheme as its YAML dict (portable to workers).
        kinds: ``{dataset: "data" | "mc"}``.
        available: optional branches present per dataset, ``{dataset: {role: branch}}``.
        selection: the pair selection.
        binning: the fine mass binning.
        column_map: branch names for the ``flat`` format.
        weights: MC weights (correctionlib) with up/down variations.
    """

    fmt: str
    categories: dict[str, Any]
    kinds: dict[str, str]
    available: dict[str, dict[str, str]] = field(default_factory=dict)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    binning: MassBinning = field(default_factory=MassBinning)
    column_map: ColumnMap | None = None
    weights: tuple[WeightSpec, ...] = ()
    corrections: tuple[CorrectionStep, ...] = ()
    smear_seed: int = 0

    def __post_init__(self) -> None:
        self._scheme: CategoryScheme | None = None
        self._csets: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_scheme"] = None
        state["_csets"] = {}
        return state

    @property
    def scheme(self) -> CategoryScheme:
        """The category scheme, built and checked once per worker process (not per chunk:
        coffea unpickles the processor for every chunk)."""
        if self._scheme is None:
            self._scheme = _cached_scheme(json.dumps(self.categories, sort_keys=True))
        return self._scheme

    @property
    def category_columns(self) -> tuple[str, ...]:
        """The per-lepton input columns the category scheme cuts on (read with the chunk);
        none for processors that do not categorise (empty ``categories``)."""
        return self.scheme.columns if self.categories else ()

    def _evaluator(self, spec: WeightSpec) -> Any:
        return self._cset(spec.payload)[spec.correction]

    def _cset(self, payload: str) -> Any:
        key = str(hash(payload))
        if key not in self._csets:
            import correctionlib

            self._csets[key] = correctionlib.CorrectionSet.from_string(payload)
        return self._csets[key]

    def _energy_variations(
        self, lep: Leptons, kind: str, meta: Mapping[str, Any]
    ) -> dict[str, NDArray[np.float64]]:
        """Corrected energies per variation (``nominal`` first); raw energies if no steps."""
        raw = lep.energy
        steps = [c for c in self.corrections if c.kind == ("scale" if kind == "data" else "smear")]
        if not steps:
            return {"nominal": raw}
        if kind == "data":
            out = {}
            for variation, key in (
                ("nominal", "scale"),
                ("scale_up", "scale_up"),
                ("scale_down", "scale_down"),
            ):
                energy = raw
                for step in steps:
                    energy = energy * self._eval_step(step, lep, energy, key)
                out[variation] = energy
            out["uncorrected"] = raw
            return out
        z = self._normals(lep, meta)
        # a double-Gaussian smearing widens its step's width by k where u < f (the tail)
        models = [smear_model_of(self._cset(step.payload)[step.name].description) for step in steps]
        u = self._normals(lep, meta, "stdflat") if any(models) else np.zeros_like(raw)
        widths = [mixture_width_factor(u, m) for m in models]
        out = {}
        for variation, key in (
            ("nominal", "smear"),
            ("smear_up", "smear_up"),
            ("smear_down", "smear_down"),
        ):
            var = np.zeros_like(raw)
            for step, width in zip(steps, widths, strict=True):
                var = var + (width * self._eval_step(step, lep, raw, key)) ** 2
            out[variation] = raw * (1.0 + np.sqrt(var) * z)
        out["uncorrected"] = raw
        return out

    def _eval_step(
        self, step: CorrectionStep, lep: Leptons, energy: NDArray[np.float64], key: str
    ) -> NDArray[np.float64]:
        from zcalib.corrections.apply import evaluate_correction

        sc_eta = lep.sc_eta
        # run/lumi of inputs without those branches are 0: _read_chunk refuses steps keyed
        # on them there (missing_event_input), so these are always the events' own values
        arrays: dict[str, Any] = {
            "run": np.repeat(lep.run[:, None], 2, axis=1).ravel(),
            "lumi": np.repeat(lep.lumi[:, None], 2, axis=1).ravel(),
            "AbsScEta": np.abs(sc_eta).ravel(),
            "ScEta": sc_eta.ravel(),
            "r9": lep.r9.ravel(),
            "pt": (energy / np.cosh(sc_eta)).ravel(),
            "seedGain": np.where(lep.gain > 0, lep.gain, 12).ravel(),
            "syst": key,
        }
        values = evaluate_correction(self._cset(step.payload), step.name, arrays)
        values = values.reshape(energy.shape)
        return np.where(lep.valid, values, 1.0 if step.kind == "scale" else 0.0)

    def _normals(
        self, lep: Leptons, meta: Mapping[str, Any], distribution: str = "stdnormal"
    ) -> NDArray[np.float64]:
        """``z`` per lepton from the payloads' ``EGMRandomGenerator`` (:mod:`zcalib.rng`);
        ``distribution="stdflat"``: its independent uniform ``u``."""
        from zcalib.rng import entry_events, lepton_normals

        dataset = meta["dataset"]
        if get_format(self.fmt).has_event_ids(self.available.get(dataset, {}), self.column_map):
            event = lep.event.astype(np.float64)
        else:
            start = int(meta.get("entrystart") or 0)
            entries = np.arange(start, start + len(lep), dtype=np.int64)
            event = entry_events(str(meta.get("fileuuid") or meta.get("filename")), entries)
        raw_pt = lep.energy / np.cosh(lep.sc_eta)
        return lepton_normals(
            self.smear_seed, raw_pt, lep.r9, np.abs(lep.sc_eta), event[:, None], distribution
        )

    @staticmethod
    def _where(meta: Mapping[str, Any]) -> str:
        """``file (entries a-b)``: where a chunk comes from, for messages."""
        return (
            f"{meta.get('filename', '?')} "
            f"(entries {meta.get('entrystart')}-{meta.get('entrystop')})"
        )

    @staticmethod
    def _cutflow_key(meta: Mapping[str, Any]) -> str:
        """The key of a chunk's cutflow in the output: its dataset."""
        return str(meta["dataset"])

    def needed_optional(self, dataset: str) -> dict[str, str]:
        """The optional branches (by role) of ``dataset`` that :meth:`process` uses.

        Supercluster η always; the charge for an opposite-charge selection; for MC the
        generator weight and the branches the MC weights read; the event identity and the
        run/lumi branches the correction steps of the dataset's kind need. Other branches
        the files hold are not read.
        """
        kind = self.kinds[dataset]
        roles = {"sc_eta"}
        if self.selection.opposite_charge:
            roles.add("charge")
        if kind == "mc":
            roles.add("weight")
            roles.update(name for spec in self.weights for name in spec.branch_inputs)
        steps = [c for c in self.corrections if c.kind == ("scale" if kind == "data" else "smear")]
        for step in steps:
            roles.update(r for r in ("run", "lumi") if r in correction_inputs(step))
        if steps and kind == "mc":
            roles.add("event")  # keys the smearing random numbers
        return {r: b for r, b in self.available.get(dataset, {}).items() if r in roles}

    def branches(self, dataset: str) -> list[str]:
        """Every branch (column) :meth:`process` reads for ``dataset``."""
        form = get_format(self.fmt)
        needed = self.needed_optional(dataset).values()
        return list(dict.fromkeys([*form.required(self.column_map), *needed]))

    def _read_chunk(
        self, events: Any, out: dict[str, Any], *, only_needed: bool = False
    ) -> Leptons | None:
        """Read the leptons of a chunk and check their values.

        Unreadable chunks and non-finite values are recorded in ``out["errors"]`` (and
        unreadable ones in ``out["failed"]``, with the chunk's ``all`` count zeroed when a
        cutflow is kept); ``None`` is returned then, so every processor reports bad input the
        same way on every executor. ``only_needed``: read only the optional branches
        :meth:`needed_optional` names (the others stay zeros/absent in the record); else
        every optional branch the input has.
        """
        meta = events.metadata
        dataset = meta["dataset"]
        where = self._where(meta)
        start = int(meta.get("entrystart") or 0)
        form = get_format(self.fmt)
        available = (
            self.needed_optional(dataset) if only_needed else self.available.get(dataset, {})
        )
        try:
            if form.reads_columns:
                # read exactly the needed branches as numpy, like a raw uproot read
                extra = [
                    b
                    for c in self.category_columns
                    for b in form.column_branches(c, self.column_map)
                ]
                wanted = list(
                    dict.fromkeys([*form.required(self.column_map), *available.values(), *extra])
                )
                events = form.read_chunk(meta, wanted, coffea_tree(events))
                if events.nbytes:
                    out[READ_BYTES_KEY] = events.nbytes
            lep = form.extract(
                events,
                id_level=self.selection.id_level,
                available=available,
                column_map=self.column_map,
                columns=self.category_columns,
            )
        except Exception as err:  # noqa: BLE001  (unreadable baskets surface here)
            reason = f"cannot read events ({err.__class__.__name__}: {err})"
            out["errors"].add(f"{where}: {reason}")
            out["failed"].add(
                (
                    dataset,
                    str(meta.get("filename", "?")),
                    start,
                    int(meta.get("entrystop") or 0),
                    reason,
                )
            )
            key = self._cutflow_key(meta)
            if key in out.get("cutflow", {}):
                out["cutflow"][key]["all"] = 0  # not processed: reported as skipped
            return None
        bad = self._check_finite(lep, where, start)
        if bad:
            out["errors"].add(bad)
            return None
        missing = missing_event_input(
            self.corrections,
            self.kinds[dataset],
            self.fmt,
            self.available.get(dataset, {}),
            self.column_map,
        )
        if missing:
            out["errors"].add(f"{where}: {missing}")
            return None
        return lep

    def process(self, events: Any) -> dict[str, Any]:
        """Process one chunk of events (called by coffea)."""
        meta = events.metadata
        dataset = meta["dataset"]
        where = self._where(meta)
        kind = self.kinds[dataset]
        out: dict[str, Any] = {
            "counts": PairCounts(self.binning),
            "cutflow": {dataset: {"all": len(events)}},
            "sumw": {dataset: 0.0},
            "errors": set(),
            "failed": set(),
        }
        lep = self._read_chunk(events, out, only_needed=True)
        if lep is None:
            return out
        out["sumw"][dataset] = float(lep.weight.sum()) if kind == "mc" else float(len(lep))

        energies = self._energy_variations(lep, kind, meta)
        sel = self._select(lep, energies["nominal"])
        cut, region = sel.cut, sel.region
        out["cutflow"][dataset].update(sel.cutflow)
        out["cell_et"] = {dataset: sel.cell_et}
        masses = {"nominal": sel.mass[cut]}
        for variation, energy in energies.items():
            if variation != "nominal":
                masses[variation] = _mass(lep, energy)[cut]
        counts = out["counts"]
        if kind == "data":
            for variation, m in masses.items():
                counts.fill(dataset, variation, region, m)
            return out
        nominal, variations = self._mc_weights(lep, energies["nominal"], cut, where)
        # the nominal mass with the nominal and every weight variation: binned once
        counts.fill_weights(
            dataset,
            region,
            masses["nominal"],
            {"nominal": nominal, **{v: nominal * r for v, r in variations.items()}},
        )
        for variation, m in masses.items():
            if variation != "nominal":
                counts.fill(dataset, variation, region, m, nominal)
        order = [*masses, *variations]  # energy variations first, as listed before
        counts.blocks = {(dataset, v): counts.blocks[(dataset, v)] for v in order}
        return out

    def postprocess(self, accumulator: Any) -> Any:
        """Nothing to do: histograms are final once accumulated."""
        return accumulator

    # ------------------------------------------------------------------ helpers
    def _mc_weights(
        self, lep: Leptons, energy: NDArray[np.float64], cut: NDArray[np.bool_], where: str
    ) -> tuple[NDArray[np.float64], dict[str, NDArray[np.float64]]]:
        """Nominal MC weights of the selected events and the up/down ratios of each spec."""
        nominal = lep.weight[cut].copy()
        variations: dict[str, NDArray[np.float64]] = {}
        pair: dict[str, NDArray[np.float64]] | None = None
        for spec in self.weights:
            if pair is None and any(v in PAIR_INPUTS for v in spec.input_names):
                pair = pair_kinematics(lep, energy)
            xs = [
                self._weight_input(lep, spec, name, where, pair)[cut] for name in spec.input_names
            ]
            edges = _constant_edges(spec.payload, spec.correction, spec.key_index)
            wn, wu, wd = _evaluate_keys(self._evaluator(spec), xs, spec.keys, spec.key_index, edges)
            nominal = nominal * wn
            ratio_u = np.divide(wu, wn, out=np.zeros_like(wu), where=wn != 0)
            ratio_d = np.divide(wd, wn, out=np.zeros_like(wd), where=wn != 0)
            variations[f"{spec.name}_up"] = ratio_u
            variations[f"{spec.name}_down"] = ratio_d
        return nominal, variations

    def _weight_input(
        self,
        lep: Leptons,
        spec: WeightSpec,
        name: str,
        where: str,
        pair: Mapping[str, NDArray[np.float64]] | None = None,
    ) -> NDArray[np.float64]:
        if name in PAIR_INPUTS and pair is not None:
            return pair[name]
        x = getattr(lep, name, None)
        if x is None:
            msg = f"{where}: MC weight '{spec.name}' needs the '{name}' branch"
            raise ValueError(msg)
        return np.asarray(x, dtype=np.float64)

    def _check_finite(self, lep: Leptons, where: str, start: int) -> str | None:
        form = get_format(self.fmt)
        for role in ("energy", "eta", "phi", "r9"):
            values = getattr(lep, role)
            if np.isfinite(values).all():  # the usual case: one pass
                continue
            bad = ~np.isfinite(values) & lep.valid
            if bad.any():
                row = int(np.nonzero(bad.any(axis=1))[0][0])
                branch = form.source(role, self.column_map)
                return (
                    f"{where}: branch '{branch}' has {int(bad.sum())} non-finite value(s) "
                    f"(NaN/inf), first at entry {start + row}; {role} values must be finite"
                )
        return None

    def _select(self, lep: Leptons, energy: NDArray[np.float64]) -> PairSelection:
        """Select and categorise the pairs of a chunk (every step of :data:`CUTS`).

        Leptons are categorised on the migration-free Et ``Et · m_Z / m_ee``
        (:func:`zcalib.physics.category_et`, docs/fit.md). Three compiled passes: the pair
        cuts, which also give the categorisation Et (:func:`pair_cuts`); the category
        look-up, reading the lepton columns where they are (:meth:`CategoryScheme.assign`);
        the cutflow, region codes and per-cell Et sums of the selected pairs
        (:func:`_pair_outcome`).
        """
        n = len(lep)
        scheme = self.scheme
        cat_et = np.empty((n, 2)) if "et" in scheme.variables else None
        mass, et, bits = pair_cuts(lep, energy, self.selection, self.binning, cat_et)
        cells = scheme.assign(
            sceta=lep.sc_eta,  # |η| too
            r9=lep.r9,
            et=cat_et,
            gain=lep.gain.ravel(),
            run=np.repeat(lep.run, 2) if scheme.uses_run else None,
            columns=lep.columns,
        )
        cut, counts, region, cell_et = jitted(_pair_outcome)(
            bits, cells.reshape(n, 2), et, scheme.n_cells
        )
        return PairSelection(
            mass=mass,
            cut=cut,
            region=region,
            cutflow={name: int(c) for name, c in zip(CUTS, counts, strict=True)},
            cell_et=cell_et,
        )


def pair_selection(
    lep: Leptons, energy: NDArray[np.float64], cfg: SelectionConfig, binning: MassBinning
) -> tuple[NDArray[np.float64], PackedSelection]:
    """The pair mass and every selection step of :data:`CUTS` except ``categorised``.

    Shared by the processor and the skimmer (``zcalib skim``), so a skim keeps exactly the
    pairs the same selection keeps.
    """
    mass, _, bits = pair_cuts(lep, energy, cfg, binning)
    return mass, _packed(bits)


def pair_cuts(
    lep: Leptons,
    energy: NDArray[np.float64],
    cfg: SelectionConfig,
    binning: MassBinning,
    cat_et: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.uint8]]:
    """The pair mass, each lepton's Et (``E / cosh η_SC``) and the cut bits of each pair.

    One compiled pass (:func:`_pair_cuts`): bit ``k`` is set when the pair passes cut
    ``_KERNEL_CUTS[k]``. The Et thresholds cut on the lepton's own Et (see
    :data:`_THRESHOLD_REFERENCE_MASS`). ``cat_et``, an ``(n, 2)`` float64 array, receives
    the categorisation Et :func:`zcalib.physics.category_et` of each lepton (the same
    numbers) in the same pass.
    """
    n = len(lep)
    mass = _mass(lep, energy)
    has_pair = lep.has_pair if lep.has_pair is not None else np.ones(n, dtype=bool)
    et, bits = jitted(_pair_cuts)(
        np.ascontiguousarray(energy, dtype=np.float64),
        np.ascontiguousarray(lep.sc_eta, dtype=np.float64),
        mass,
        np.ascontiguousarray(lep.id_pass, dtype=np.bool_),
        np.ascontiguousarray(lep.valid, dtype=np.bool_),
        np.asarray(has_pair, dtype=np.bool_),
        np.ascontiguousarray(lep.charge, dtype=np.int64),
        float(cfg.max_abs_eta),
        bool(cfg.exclude_crack),
        float(CRACK[0]),
        float(CRACK[1]),
        float(cfg.min_et_lead),
        float(cfg.min_et_sublead),
        float(_THRESHOLD_REFERENCE_MASS),
        bool(cfg.opposite_charge),
        float(binning.lo),
        float(binning.hi),
        float(Z_MASS),
        np.empty((0, 2)) if cat_et is None else cat_et,
    )
    return mass, et, bits


def _packed(bits: NDArray[np.uint8]) -> PackedSelection:
    """The cut bits of :func:`pair_cuts` as a coffea ``PackedSelection``."""
    sel = PackedSelection()
    for k, name in enumerate(_KERNEL_CUTS):
        sel.add(name, (bits & (1 << k)) != 0)
    return sel


#: The cuts :func:`_pair_cuts` evaluates, in bit order.
_KERNEL_CUTS: tuple[str, ...] = ("two_leptons", "id", "eta", "et", "charge", "mass")


def _pair_cuts(
    energy: NDArray[np.float64],
    sc_eta: NDArray[np.float64],
    mass: NDArray[np.float64],
    id_pass: NDArray[np.bool_],
    valid: NDArray[np.bool_],
    has_pair: NDArray[np.bool_],
    charge: NDArray[np.int64],
    max_abs_eta: float,
    exclude_crack: bool,
    crack_lo: float,
    crack_hi: float,
    min_lead: float,
    min_sub: float,
    ref_mass: float,
    opposite: bool,
    m_lo: float,
    m_hi: float,
    z_mass: float,
    cat_et: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.uint8]]:  # pragma: no cover
    """Et of each lepton and bit ``k`` of each pair: whether it passes cut
    ``_KERNEL_CUTS[k]`` (NaN fails; fill values such as η = -999 give Et 0 or NaN). The Et
    thresholds compare ``Et · ref_mass / m_ee`` (``ref_mass`` 0: the Et itself). Unless it
    is empty, ``cat_et`` receives ``Et · z_mass / m_ee`` (NaN for a zero or NaN mass), as
    :func:`zcalib.physics.category_et` computes it."""
    n = len(mass)
    categorise = len(cat_et) == n
    bits = np.zeros(n, np.uint8)
    et = np.empty((n, 2))
    for i in range(n):
        b = 0
        if has_pair[i]:
            b |= 1
        if id_pass[i, 0] and id_pass[i, 1] and valid[i, 0] and valid[i, 1]:
            b |= 2
        ok = True
        for j in range(2):
            a = abs(sc_eta[i, j])
            inside = a < max_abs_eta
            if exclude_crack and a > crack_lo and a < crack_hi:
                inside = False
            ok = ok and inside
        if ok:
            b |= 4
        et0 = energy[i, 0] / np.cosh(sc_eta[i, 0])
        et1 = energy[i, 1] / np.cosh(sc_eta[i, 1])
        et[i, 0] = et0
        et[i, 1] = et1
        if categorise:
            to_z = z_mass / mass[i] if mass[i] > 0 else np.nan
            cat_et[i, 0] = et0 * to_z
            cat_et[i, 1] = et1 * to_z
        both = not (np.isnan(et0) or np.isnan(et1))
        f = 1.0
        if ref_mass > 0:  # a zero or NaN mass fails (as category_et gives NaN)
            f = ref_mass / mass[i] if mass[i] > 0 else np.nan
        lead = max(et0, et1) * f if both else np.nan
        sub = min(et0, et1) * f if both else np.nan
        if lead >= min_lead and sub >= min_sub:
            b |= 8
        if not opposite or charge[i, 0] * charge[i, 1] < 0:
            b |= 16
        if mass[i] >= m_lo and mass[i] < m_hi:
            b |= 32
        bits[i] = b
    return et, bits


#: Bit of each step of :data:`CUTS` in the cut bits :func:`_pair_outcome` reads
#: (:data:`_KERNEL_CUTS`' bits; ``categorised``, both leptons in a cell, is bit 6).
_CUT_BITS = np.array(
    [1 << (_KERNEL_CUTS.index(c) if c in _KERNEL_CUTS else 6) for c in CUTS], dtype=np.uint8
)


def _pair_outcome(
    bits: NDArray[np.uint8], cells: NDArray[np.int64], et: NDArray[np.float64], n_cells: int
) -> tuple[
    NDArray[np.bool_], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]
]:  # pragma: no cover
    """What the processor keeps of the pairs, from the cut bits of :func:`_pair_cuts`, the
    cell of each lepton (``-1``: none) and each lepton's Et (one pass):

    * whether each pair passes every step of :data:`CUTS`;
    * the cutflow, pairs passing each step and all before it;
    * the region code (:func:`zcalib.categories.region_code`) of each selected pair;
    * ``(3, n_cells)``: selected leptons, Σ Et and Σ Et² per cell, summed in pair order
      (pair ``i`` lepton 0, lepton 1, then pair ``i + 1``), as ``np.bincount`` of the
      flattened selection sums them (:func:`zcalib.fit.smooth.mean_category_et`).
    """
    n = len(bits)
    cut = np.zeros(n, np.bool_)
    counts = np.zeros(len(_CUT_BITS), np.int64)
    region = np.empty(n, np.int64)
    cell_et = np.zeros((3, n_cells))
    n_sel = 0
    for i in range(n):
        c0, c1 = cells[i, 0], cells[i, 1]
        b = bits[i] | (64 if c0 >= 0 and c1 >= 0 else 0)
        passed = True
        for k in range(len(_CUT_BITS)):
            passed = passed and (b & _CUT_BITS[k]) != 0
            if passed:
                counts[k] += 1
        if not passed:
            continue
        cut[i] = True
        region[n_sel] = min(c0, c1) * n_cells + max(c0, c1)
        n_sel += 1
        for j in range(2):
            c, x = cells[i, j], et[i, j]
            cell_et[0, c] += 1.0
            cell_et[1, c] += x
            cell_et[2, c] += x * x
    return cut, counts, region[:n_sel].copy(), cell_et


@dataclass(frozen=True)
class PairSelection:
    """The selected pairs of a chunk (:meth:`ZeeProcessor._select`).

    Attributes:
        mass: the pair mass of every pair (from the nominal energies).
        cut: whether each pair passes every step of :data:`CUTS`.
        region: region code of each selected pair.
        cutflow: pairs passing each step of :data:`CUTS` and all before it.
        cell_et: ``(3, n_cells)``: selected leptons, Σ Et and Σ Et² per cell.
    """

    mass: NDArray[np.float64]
    cut: NDArray[np.bool_]
    region: NDArray[np.int64]
    cutflow: dict[str, int]
    cell_et: NDArray[np.float64]


def pair_kinematics(lep: Leptons, energy: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """Pair (Z candidate) transverse momentum, rapidity and mass from lepton energies.

    Leptons are massless with the track direction (η, φ) and the given (corrected)
    energies. Returns the arrays of :data:`PAIR_INPUTS`: ``ptZ`` [GeV], ``yZ``, ``absYZ``
    and ``mZ`` [GeV] (0 and rapidity 0 for degenerate pairs).
    """
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        pt = energy / np.cosh(lep.eta)
        px = (pt * np.cos(lep.phi)).sum(axis=1)
        py = (pt * np.sin(lep.phi)).sum(axis=1)
        pz = (pt * np.sinh(lep.eta)).sum(axis=1)
        e = energy.sum(axis=1)
        ok = np.isfinite(e) & (e > np.abs(pz))
        y = np.where(ok, 0.5 * np.log(np.where(ok, (e + pz) / (e - pz), 1.0)), 0.0)
        m2 = e * e - px * px - py * py - pz * pz
    return {
        "ptZ": np.nan_to_num(np.hypot(px, py)),
        "yZ": y,
        "absYZ": np.abs(y),
        "mZ": np.sqrt(np.clip(np.nan_to_num(m2), 0.0, None)),
    }


def _evaluate_keys(
    ev: Any,
    xs: list[NDArray[np.float64]],
    keys: Sequence[str],
    key_index: int = -1,
    edges: NDArray[np.float64] | None = None,
) -> list[NDArray[np.float64]]:
    """A correction evaluated at ``xs`` for each string key (input ``key_index``, -1: last).

    With one numeric input the correction is evaluated once per group of inputs that must
    give the same value, and spread back: the same numbers, a fraction of the correctionlib
    calls. The groups are the distinct values when there are few (an integer pile-up), or,
    when the correction is constant between ``edges`` (:func:`_constant_edges`: a binning
    of numbers, such as a pile-up profile ratio), the intervals between the edges, each
    edge value on its own.
    """
    at = len(xs) if key_index < 0 else key_index

    def call(values: list[NDArray[np.float64]], key: str) -> NDArray[np.float64]:
        return np.asarray(ev.evaluate(*values[:at], key, *values[at:]), dtype=np.float64)

    if len(xs) == 1 and len(xs[0]) > 4096:
        x = xs[0]
        if edges is not None and np.isfinite(x).all():
            group, n_groups = _interval_groups(x, edges)
            rep = np.zeros(n_groups)
            rep[group] = x  # any member: every member of a group gives the same value
            filled = np.zeros(n_groups, dtype=bool)
            filled[group] = True
            table = np.zeros(n_groups)
            out = []
            for k in keys:
                table[filled] = call([rep[filled]], k)
                out.append(table[group])
            return out
        if len(np.unique(x[:1024])) < 256:
            distinct, inverse = np.unique(x, return_inverse=True)
            if 4 * len(distinct) < len(x):
                return [call([distinct], k)[inverse] for k in keys]
    return [call(xs, k) for k in keys]


def _interval_groups(
    x: NDArray[np.float64], edges: NDArray[np.float64]
) -> tuple[NDArray[np.int64], int]:
    """Group of each (finite) value: ``2k`` for the open interval below ``edges[k]``
    (``k = len``: above the last edge), ``2k + 1`` for a value equal to ``edges[k]``; and the
    group count. ``k`` is ``np.searchsorted(edges, x)``, found from the bin width when the
    edges are equally spaced (pile-up profiles), by bisection otherwise (compiled)."""
    step = float(edges[1] - edges[0]) if len(edges) > 1 else 0.0
    uniform = step > 0 and bool(np.all(np.diff(edges) == step))
    groups = jitted(_groups_loop)(np.ascontiguousarray(x), edges, step if uniform else 0.0)
    return groups, 2 * len(edges) + 1


def _groups_loop(
    x: NDArray[np.float64], edges: NDArray[np.float64], step: float
) -> NDArray[np.int64]:  # pragma: no cover
    """The groups of :func:`_interval_groups`; ``step > 0``: the edges are equally spaced."""
    n = len(edges)
    out = np.empty(len(x), np.int64)
    for i in range(len(x)):
        v = x[i]
        if step > 0.0:
            guess = min(max(np.ceil((v - edges[0]) / step), 0.0), float(n))
            k = int(guess)
            while k > 0 and edges[k - 1] >= v:
                k -= 1
            while k < n and edges[k] < v:
                k += 1
        else:
            k = np.searchsorted(edges, v)
        out[i] = 2 * k + (1 if k < n and edges[k] == v else 0)
    return out


@functools.lru_cache(maxsize=32)
def _constant_edges(payload: str, name: str, key_input: int) -> NDArray[np.float64] | None:
    """The edges between which correction ``name`` of ``payload`` is constant in its one
    numeric input, or ``None`` when it is not piecewise constant (formulas, uniform or
    multi-dimensional binnings, categories over the number) or has more inputs.

    ``key_input`` is the position of the string (variation key) input among the two.
    """
    try:
        corr = next(c for c in json.loads(payload).get("corrections", []) if c["name"] == name)
    except (StopIteration, ValueError, KeyError, TypeError):
        return None
    inputs = [i.get("name") for i in corr.get("inputs", [])]
    if len(inputs) != 2:
        return None
    number = inputs[1 - (key_input if key_input >= 0 else 1)]
    found: list[float] = []

    def walk(node: Any) -> bool:
        if isinstance(node, (int, float)):
            return True
        if not isinstance(node, dict):
            return False
        kind = node.get("nodetype")
        if kind == "category" and node.get("input") != number:
            default = node.get("default")
            return all(walk(c["value"]) for c in node["content"]) and (
                default is None or walk(default)
            )
        if kind == "binning" and node.get("input") == number and isinstance(node["edges"], list):
            found.extend(float(e) for e in node["edges"])
            flow = node.get("flow")
            return all(walk(c) for c in node["content"]) and (
                flow in ("clamp", "error") or walk(flow)
            )
        return False

    if not walk(corr.get("data")):
        return None
    return np.unique(np.asarray(found, dtype=np.float64))


def _mass(lep: Leptons, energy: NDArray[np.float64]) -> NDArray[np.float64]:
    """The pair mass from ``energy`` and the lepton directions (one compiled loop)."""
    return jitted(pair_masses)(  # type: ignore[no-any-return]
        np.ascontiguousarray(energy, dtype=np.float64),
        np.ascontiguousarray(lep.eta, dtype=np.float64),
        np.ascontiguousarray(lep.phi, dtype=np.float64),
    )


def merge_cutflows(cutflows: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Order each dataset's cutflow as ``all`` then :data:`CUTS`."""
    order = ("all", *CUTS)
    return {ds: {k: int(cf[k]) for k in order if k in cf} for ds, cf in cutflows.items()}
