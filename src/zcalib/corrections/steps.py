"""Loading prior correction steps for the processor, checked before any event is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import correctionlib

from zcalib.corrections.apply import PROVIDED_INPUTS
from zcalib.exceptions import InvalidConfig
from zcalib.processors.zee import CorrectionStep

__all__ = ["load_correction_steps"]

_KEYS = {
    "scale": ("scale", "scale_up", "scale_down"),
    "smear": ("smear", "smear_up", "smear_down"),
}


def load_correction_steps(path: str | Path, names: list[str] | None = None) -> list[CorrectionStep]:
    """Read scale/smear corrections from a correctionlib file for use in the processor.

    Args:
        path: a correctionlib JSON (``.json`` or ``.json.gz``).
        names: corrections (or compound corrections) to take, in order; default: the
            compound corrections of the file if it has any (a zcalib payload: its
            ``EGMScale_Compound_*``), else every correction whose output is ``scale``; then
            every correction whose output is ``smear`` (``EGMSmearAndSyst_*``).

    Returns:
        The steps in file (or given) order; ``kind`` comes from the correction's output name.

    Raises:
        InvalidConfig: unreadable file, unknown correction, inputs zcalib cannot provide
            (e.g. a payload for another era or convention), or missing ``syst`` keys.
    """
    p = Path(path)
    if not p.is_file():
        msg = f"{p}: correction file not found"
        raise InvalidConfig(msg)
    try:
        text = _read(p)
        cset = correctionlib.CorrectionSet.from_string(text)
        model = correctionlib.schemav2.CorrectionSet.model_validate_json(text)
    except Exception as err:  # noqa: BLE001  (correctionlib raises several types)
        msg = f"{p}: not a valid correctionlib file ({err.__class__.__name__}: {err})"
        raise InvalidConfig(msg) from None
    by_name: dict[str, Any] = {c.name: c for c in model.corrections}
    by_name.update({c.name: c for c in model.compound_corrections or ()})
    if names is None:
        compounds = [c.name for c in model.compound_corrections or ()]
        scales = compounds or [c.name for c in model.corrections if c.output.name == "scale"]
        names = scales + [c.name for c in model.corrections if c.output.name == "smear"]
        if not names:
            msg = f"{p}: no correction with output 'scale' or 'smear' (found {sorted(by_name)})"
            raise InvalidConfig(msg)
    steps = []
    for name in names:
        if name not in by_name:
            msg = f"{p}: no correction named {name!r}; available: {', '.join(sorted(by_name))}"
            raise InvalidConfig(msg)
        corr = by_name[name]
        kind = corr.output.name
        if kind not in _KEYS:
            msg = (
                f"{p}: correction {name!r} has output {kind!r}; allowed: 'scale' (data) or "
                "'smear' (MC)"
            )
            raise InvalidConfig(msg)
        inputs = [v.name for v in corr.inputs]
        unknown = [i for i in inputs if i not in PROVIDED_INPUTS]
        if unknown:
            msg = (
                f"{p}: correction {name!r} needs inputs [{', '.join(inputs)}]; zcalib provides "
                f"{', '.join(PROVIDED_INPUTS)} (is this a payload for another era/convention?)"
            )
            raise InvalidConfig(msg)
        if "syst" not in inputs:
            msg = f"{p}: correction {name!r} has no 'syst' input (needs keys {_KEYS[kind]})"
            raise InvalidConfig(msg)
        is_compound = isinstance(corr, correctionlib.schemav2.CompoundCorrection)
        _probe(cset.compound[name] if is_compound else cset[name], corr, kind, p)
        steps.append(CorrectionStep(name=name, payload=text, kind=kind, source=str(p)))
    return steps


def _probe(evaluator: object, corr: Any, kind: str, p: Path) -> None:
    """Evaluate once per syst key at a typical point to catch missing keys at set-up."""
    point = {
        "run": 1,
        "lumi": 1,
        "AbsScEta": 0.5,
        "ScEta": 0.5,
        "r9": 0.95,
        "pt": 40.0,
        "seedGain": 12,
    }
    for key in _KEYS[kind]:
        args = [
            key
            if v.name == "syst"
            else (float(point[v.name]) if v.type == "real" else point[v.name])
            for v in corr.inputs
        ]
        try:
            evaluator.evaluate(*args)  # type: ignore[attr-defined]
        except Exception as err:  # noqa: BLE001
            msg = (
                f"{p}: correction {corr.name!r} cannot be evaluated with syst={key!r} "
                f"({err}); a {kind} step needs keys {', '.join(_KEYS[kind])}"
            )
            raise InvalidConfig(msg) from None


def _read(p: Path) -> str:
    if p.suffix == ".gz":
        import gzip

        return gzip.decompress(p.read_bytes()).decode()
    return p.read_text()
