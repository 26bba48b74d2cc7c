"""Evaluate scale and smear corrections on flat numpy arrays (vectorised correctionlib).

The inputs a correction declares are fed by name from the arrays zcalib provides:

============  ===================  ======
input         keyword              type
============  ===================  ======
run           ``run``              int
lumi          ``lumi``             int
AbsScEta      ``abs_sc_eta``       real
ScEta         ``sc_eta``           real
r9            ``r9``               real
pt            ``pt``               real
seedGain      ``gain`` (12/6/1)    int
syst          ``syst``             string
============  ===================  ======

so zcalib payloads (see :mod:`zcalib.corrections.writer`) and EGM-style payloads with the
same input names both work, and compound corrections too. A correction needing any other
input is rejected with a message listing what it needs and what zcalib provides.

``lumi`` is the luminosity block: the time-stability step keys on ``run`` and ``lumi`` when
its run bins split runs (:mod:`zcalib.chain.time_stability`). An input that is not passed
(``None``) is never replaced by a default, so a correction needing ``lumi`` without it
raises; the processor refuses such a correction for inputs without a luminosity-block
branch before reading any event (:func:`zcalib.runner.checked_inputs`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import correctionlib
import numpy as np
from correctionlib import schemav2
from numpy.typing import ArrayLike, NDArray

from zcalib.exceptions import InputError, InvalidConfig

if TYPE_CHECKING:
    from zcalib.processors.zee import WeightSpec

__all__ = [
    "PROVIDED_INPUTS",
    "WEIGHT_INPUT_NAMES",
    "bind_weight",
    "evaluate_correction",
    "evaluate_scale",
    "evaluate_smear",
    "load_correction_set",
]

log = logging.getLogger(__name__)

#: correctionlib input name -> keyword of :func:`evaluate_scale` / :func:`evaluate_smear`
PROVIDED_INPUTS: dict[str, str] = {
    "run": "run",
    "lumi": "lumi",
    "AbsScEta": "abs_sc_eta",
    "ScEta": "sc_eta",
    "r9": "r9",
    "pt": "pt",
    "seedGain": "gain",
    "syst": "syst",
}

CorrectionSetLike = str | Path | correctionlib.CorrectionSet | schemav2.CorrectionSet


def load_correction_set(cset_or_path: CorrectionSetLike) -> tuple[Any, str]:
    """Return a correctionlib evaluator set and a label of its source.

    Files are cached by path, modification time and size, so repeated calls (one per chunk)
    load a file once.

    Raises:
        InputError: the file is missing or cannot be loaded.
    """
    if isinstance(cset_or_path, correctionlib.CorrectionSet):
        return cset_or_path, "<CorrectionSet>"
    if isinstance(cset_or_path, schemav2.CorrectionSet):
        return correctionlib.CorrectionSet(cset_or_path), "<CorrectionSet model>"
    p = Path(cset_or_path)
    try:
        st = p.stat()
    except OSError:
        msg = f"{p}: correction file not found"
        raise InputError(msg) from None
    return _load_file(str(p.resolve()), st.st_mtime_ns, st.st_size), str(p)


@functools.lru_cache(maxsize=16)
def _load_file(path: str, mtime_ns: int, size: int) -> Any:
    del mtime_ns, size  # cache keys only
    try:
        return correctionlib.CorrectionSet.from_file(path)
    except (OSError, RuntimeError, ValueError, EOFError) as err:
        msg = f"{path}: cannot load correction set ({err})"
        raise InputError(msg) from None


def _read_inputs(cset_or_path: CorrectionSetLike, name: str) -> frozenset[str] | None:
    """Inputs correction ``name`` reads (``None``: unknown for an evaluator object)."""
    from zcalib.corrections.egm import payload_inputs

    if isinstance(cset_or_path, correctionlib.CorrectionSet):
        return None
    if isinstance(cset_or_path, schemav2.CorrectionSet):
        return frozenset(payload_inputs(cset_or_path.model_dump(mode="json"), name))
    p = Path(cset_or_path)
    st = p.stat()
    return _file_inputs(str(p.resolve()), st.st_mtime_ns, st.st_size, name)


@functools.lru_cache(maxsize=64)
def _file_inputs(path: str, mtime_ns: int, size: int, name: str) -> frozenset[str]:
    from correctionlib.highlevel import open_auto

    from zcalib.corrections.egm import payload_inputs

    del mtime_ns, size  # cache keys only
    return frozenset(payload_inputs(open_auto(path), name))


def evaluate_correction(
    cset_or_path: CorrectionSetLike,
    name: str,
    arrays: Mapping[str, ArrayLike | str | None],
) -> NDArray[np.float64]:
    """Evaluate correction (or compound correction) ``name`` with inputs fed by name.

    Args:
        cset_or_path: A correctionlib file, evaluator set or schema-v2 model.
        name: Correction or compound-correction name.
        arrays: Values by correctionlib input name (see :data:`PROVIDED_INPUTS`); ``None``
            entries count as not provided.

    Returns:
        float64 array of the correction output (broadcast shape of the inputs).

    Raises:
        InputError: unknown correction, inputs zcalib does not provide, a needed input
            missing, non-integral values for an int input, or an evaluation error (e.g. an
            unknown ``syst`` key or gain value).
    """
    cset, source = load_correction_set(cset_or_path)
    # membership via the key lists: the evaluator's __getitem__ raises IndexError, not KeyError
    if name in list(cset):
        corr = cset[name]
    elif name in list(cset.compound):
        corr = cset.compound[name]
    else:
        available = sorted([*cset, *cset.compound])
        msg = f"{source}: no correction named {name!r}; available: {', '.join(available)}"
        raise InputError(msg)
    needed = [(v.name, v.type) for v in corr.inputs]
    unknown = [n for n, _ in needed if n not in PROVIDED_INPUTS]
    if unknown:
        msg = (
            f"correction {name!r} in {source} needs inputs [{', '.join(n for n, _ in needed)}]; "
            f"zcalib provides {', '.join(PROVIDED_INPUTS)}"
        )
        raise InputError(msg)
    read = _read_inputs(cset_or_path, name)
    args: list[Any] = []
    for inp, typ in needed:
        value = arrays.get(inp)
        if value is None and read is not None and inp not in read:
            value = 0.0 if typ == "real" else 0  # declared (EGM signature) but never read
        if value is None:
            msg = (
                f"correction {name!r} in {source} needs input {inp!r}; pass {PROVIDED_INPUTS[inp]}="
            )
            raise InputError(msg)
        args.append(_convert(value, typ, inp, name, source))
    try:
        out = corr.evaluate(*args)
    except (RuntimeError, IndexError, ValueError) as err:
        msg = f"correction {name!r} in {source}: evaluation failed: {err}"
        raise InputError(msg) from None
    return np.asarray(out, dtype=np.float64)


def _convert(value: ArrayLike | str, typ: str, inp: str, name: str, source: str) -> Any:
    if typ == "string":
        if not isinstance(value, str):
            msg = f"correction {name!r} in {source}: input {inp!r} must be a string"
            raise InputError(msg)
        return value
    if isinstance(value, str):
        msg = f"correction {name!r} in {source}: input {inp!r} must be numeric, got {value!r}"
        raise InputError(msg)
    arr = np.asarray(value)
    if typ == "int":
        integral = np.issubdtype(arr.dtype, np.integer) or (
            np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
        )
        if not integral:
            msg = (
                f"correction {name!r} in {source}: input {inp!r} is an int input but "
                "got non-integral values"
            )
            raise InputError(msg)
        return np.asarray(arr, dtype=np.int64)
    return np.asarray(arr, dtype=np.float64)


def evaluate_scale(
    cset_or_path: CorrectionSetLike,
    name: str,
    *,
    run: ArrayLike | None = None,
    lumi: ArrayLike | None = None,
    abs_sc_eta: ArrayLike | None = None,
    r9: ArrayLike | None = None,
    pt: ArrayLike | None = None,
    gain: ArrayLike | None = None,
    sc_eta: ArrayLike | None = None,
    syst: str = "scale",
) -> NDArray[np.float64]:
    """Evaluate a data scale correction per lepton.

    Only the inputs the correction declares are needed; ``abs_sc_eta`` is derived from
    ``sc_eta`` when omitted.

    Args:
        cset_or_path: A correctionlib file, evaluator set or schema-v2 model.
        name: Correction (or compound) name.
        run: Run number of each lepton (int).
        lumi: Luminosity block of each lepton (int; for corrections keyed on ``lumi``, e.g.
            a time-stability step whose run bins split runs at a luminosity block).
        abs_sc_eta: |η| of the supercluster.
        r9: R9.
        pt: Transverse energy [GeV].
        gain: Seed gain (12, 6 or 1).
        sc_eta: Signed supercluster η (for payloads binned in ``ScEta``).
        syst: ``scale``, ``escale``, ``scale_up`` or ``scale_down``.

    Returns:
        float64 array of the scales.

    Raises:
        InputError: see :func:`evaluate_correction`.

    Example:
        >>> import numpy as np
        >>> from zcalib.categories import Category
        >>> from zcalib.corrections.writer import build_scale_correction
        >>> from correctionlib import schemav2
        >>> corr = build_scale_correction("s", [Category("scale", 0, eta=(0, 2.5))], [1.02],
        ...                               [0.01], description="demo")
        >>> cset = schemav2.CorrectionSet(schema_version=2, corrections=[corr])
        >>> evaluate_scale(cset, "s", abs_sc_eta=np.array([0.3, 2.0]), syst="scale_up")
        array([1.03, 1.03])
    """
    return evaluate_correction(
        cset_or_path, name, _arrays(run, abs_sc_eta, sc_eta, r9, pt, gain, syst, lumi=lumi)
    )


def evaluate_smear(
    cset_or_path: CorrectionSetLike,
    name: str,
    *,
    run: ArrayLike | None = None,
    lumi: ArrayLike | None = None,
    abs_sc_eta: ArrayLike | None = None,
    r9: ArrayLike | None = None,
    pt: ArrayLike | None = None,
    gain: ArrayLike | None = None,
    sc_eta: ArrayLike | None = None,
    syst: str = "smear",
) -> NDArray[np.float64]:
    """Evaluate an MC smearing correction per lepton (same inputs as :func:`evaluate_scale`).

    Args:
        cset_or_path: A correctionlib file, evaluator set or schema-v2 model.
        name: Correction name.
        run: Run number of each lepton (int).
        lumi: Luminosity block of each lepton (int).
        abs_sc_eta: |η| of the supercluster.
        r9: R9.
        pt: Transverse energy [GeV].
        gain: Seed gain (12, 6 or 1).
        sc_eta: Signed supercluster η.
        syst: ``smear``, ``esmear``, ``smear_up`` or ``smear_down``.

    Returns:
        float64 array of the relative smearings.
    """
    return evaluate_correction(
        cset_or_path, name, _arrays(run, abs_sc_eta, sc_eta, r9, pt, gain, syst, lumi=lumi)
    )


def _arrays(
    run: ArrayLike | None,
    abs_sc_eta: ArrayLike | None,
    sc_eta: ArrayLike | None,
    r9: ArrayLike | None,
    pt: ArrayLike | None,
    gain: ArrayLike | None,
    syst: str,
    lumi: ArrayLike | None = None,
) -> dict[str, ArrayLike | str | None]:
    """Arrays by correctionlib input name (``abs_sc_eta`` from ``sc_eta`` if omitted).

    ``lumi`` feeds the ``lumi`` input (luminosity block); ``None`` = not provided, so a
    correction needing it raises instead of evaluating at some default lumi.
    """
    if abs_sc_eta is None and sc_eta is not None:
        abs_sc_eta = np.abs(np.asarray(sc_eta, dtype=np.float64))
    return {
        "run": run,
        "lumi": lumi,
        "AbsScEta": abs_sc_eta,
        "ScEta": sc_eta,
        "r9": r9,
        "pt": pt,
        "seedGain": gain,
        "syst": syst,
    }


#: Input names a correction may give each quantity an MC weight is fed (CMS pile-up payloads
#: call the true pile-up ``NumTrueInteractions``); any other quantity goes by its own name.
WEIGHT_INPUT_NAMES: dict[str, tuple[str, ...]] = {
    "npu": ("npu", "nPU", "NumTrueInteractions", "nTrueInt", "Pileup_nTrueInt"),
}


def bind_weight(spec: WeightSpec) -> WeightSpec:
    """Match an MC weight's quantities to its correction's inputs by name, at set-up.

    The correction must take exactly one ``string`` input (the variation key: ``nominal``,
    ``up``, ``down``) and one ``real`` input per quantity zcalib feeds, each named after it
    (:data:`WEIGHT_INPUT_NAMES` lists the accepted names; ``ptZ``, ``absYZ``... go by their
    own). The quantities are then fed in the correction's order, wherever it puts the key,
    so a payload declaring ``(absYZ, ptZ, weights)`` or ``(syst, npu)`` is evaluated right.

    Args:
        spec: the weight as read.

    Returns:
        ``spec`` with ``inputs`` (if given) in the correction's order and ``key_index`` set.

    Raises:
        InvalidConfig: a wrong number of inputs, no (or several) string inputs, an ``int``
            input, or an input name that is not one of the fed quantities; the message
            names the payload, the correction, its signature and what zcalib feeds.
    """
    corr = correctionlib.CorrectionSet.from_string(spec.payload)[spec.correction]
    inputs = [(v.name, v.type) for v in corr.inputs]
    signature = ", ".join(f"{n}: {t}" for n, t in inputs)
    feeds = spec.input_names
    where = f"{spec.source}: MC weight '{spec.name}': correction '{spec.correction}' ({signature})"
    keys = [i for i, (_, t) in enumerate(inputs) if t == "string"]
    numeric = [(n, t) for n, t in inputs if t != "string"]
    if len(keys) != 1 or len(numeric) != len(feeds):
        msg = (
            f"{where} has the wrong inputs: an MC weight takes one string input (the "
            f"variation: {', '.join(spec.keys)}) and {len(feeds)} real input(s) "
            f"({', '.join(feeds)})"
        )
        raise InvalidConfig(msg)
    ints = [n for n, t in numeric if t != "real"]
    if ints:
        msg = f"{where}: input '{ints[0]}' must be real (zcalib feeds floating-point values)"
        raise InvalidConfig(msg)
    order: list[str] = []
    for name, _ in numeric:
        match = [q for q in feeds if name in WEIGHT_INPUT_NAMES.get(q, (q,))]
        if not match or match[0] in order:
            allowed = "; ".join(
                f"{q}: {' or '.join(WEIGHT_INPUT_NAMES.get(q, (q,)))}" for q in feeds
            )
            msg = (
                f"{where}: input '{name}' is not one of the quantities this weight is fed "
                f"({allowed}); inputs are matched by name, not position"
            )
            raise InvalidConfig(msg)
        order.append(match[0])
    # a single-quantity weight keeps ``inputs`` empty: it is fed ``variable``
    bound = tuple(order) if spec.inputs else ()
    return dataclasses.replace(spec, inputs=bound, key_index=keys[0])
