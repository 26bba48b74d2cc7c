"""Single steps that chain: prior corrections from step folders, and the final payload.

The pipeline hands each step the outputs of the steps it depends on
(:func:`~zcalib.chain.pipeline.prior_corrections`) and folds every step into ``final/``
(:func:`~zcalib.chain.pipeline.write_final_corrections`). The single-step commands do the same
from the folders of finished steps, given in execution order::

    zcalib run-divide --data d.root --out rd/run_bins.yaml
    zcalib time-stability --data d.root --mc m.root --run-bins rd/run_bins.yaml \\
        --out time_stability
    zcalib fit ... --corrections time_stability --step step2 --out step2
    zcalib fit ... --corrections time_stability --corrections step2 --step step3 --out step3
    zcalib assemble time_stability step2 step3 --out final

A step is read back (:func:`step_outputs`) from its folder (or the ``corrections.json`` in
it): a ``zcalib fit`` folder (``fit_result.json``: its compound, smearing and legacy files), a
``zcalib time-stability`` folder (``time_stability.json``), or any other correctionlib file
(its scale and smear corrections, like a pipeline ``corrections`` step). The step's name is its
folder's name (``NAME=PATH`` names it explicitly): the final payload calls its scale step
``EGMScale_<name>_<era>``, so folders named like the pipeline's steps give the pipeline's payload.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zcalib.corrections.egm import EgmNames
from zcalib.exceptions import InvalidConfig
from zcalib.outputs import stamp

if TYPE_CHECKING:
    from zcalib.chain.pipeline import StepOutputs
    from zcalib.processors.zee import CorrectionStep, WeightSpec

__all__ = ["assemble", "prior_from_steps", "step_outputs"]


def _split(spec: str | Path) -> tuple[str | None, Path]:
    """``NAME=PATH`` or ``PATH``."""
    text = str(spec)
    name, sep, rest = text.partition("=")
    if sep and name and rest and "/" not in name:
        return name, Path(rest)
    return None, Path(text)


def _record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        msg = f"{path}: cannot read the step record ({err})"
        raise InvalidConfig(msg) from None
    if not isinstance(data, dict):
        msg = f"{path}: expected a JSON object"
        raise InvalidConfig(msg)
    return data


def step_outputs(spec: str | Path) -> StepOutputs:
    """What a finished step (its folder, its ``corrections.json``, or ``NAME=PATH``) hands to
    the steps after it, as the pipeline would.

    Raises:
        InvalidConfig: no such file or folder, a folder without ``corrections.json``, a failed
            fit (no payload), an unreadable record, a bad step name.
    """
    from zcalib.chain.pipeline import StepOutputs, _file_hash, _fit_outputs, _ts_outputs
    from zcalib.corrections.steps import load_correction_steps
    from zcalib.derive import check_step_name

    name, path = _split(spec)
    if path.is_dir():
        folder, corr = path, path / "corrections.json"
    elif path.is_file():
        folder, corr = path.parent, path
    else:
        msg = f"{path}: no such step folder or correction file"
        raise InvalidConfig(msg)
    if corr.name == "corrections.json" and (folder / "fit_result.json").is_file():
        record = _record(folder / "fit_result.json")
        if not corr.is_file():
            msg = (
                f"{folder}: the fit of this step has no payload (status "
                f"{record.get('status', 'unknown')!r}: {record.get('message', '')})"
            )
            raise InvalidConfig(msg)
        step = str(record.get("step") or folder.name)
        payload = record.get("payload") or {}
        names = EgmNames(payload.get("era", EgmNames().era), payload.get("collection", "Ele"))
        out = _fit_outputs(step, folder, {"smear_seed": payload.get("smear_seed")}, names)
        label = name or folder.name
        check_step_name(label, str(spec))
        return replace(out, name=label)
    if not corr.is_file():
        msg = f"{folder}: no corrections.json (is this the folder of a finished step?)"
        raise InvalidConfig(msg)
    label = name or folder.name
    check_step_name(label, str(spec))
    if corr.name == "corrections.json" and (folder / "time_stability.json").is_file():
        summary = _record(folder / "time_stability.json")
        table = folder / f"{summary.get('correction', f'{label}_scale')}s.dat"
        return _ts_outputs(label, summary, corr, table if table.is_file() else None)
    steps = load_correction_steps(corr)
    return StepOutputs(
        name=label,
        type="corrections",
        scales=tuple(s for s in steps if s.kind == "scale"),
        smear=next((s for s in reversed(steps) if s.kind == "smear"), None),
        output_hash=_file_hash(corr),
        summary={"corrections": [s.name for s in steps]},
    )


def prior_from_steps(specs: Sequence[str | Path], *, smear_mc: bool) -> tuple[CorrectionStep, ...]:
    """The corrections a single step applies on top of the finished steps ``specs`` (in
    execution order): their data scales in order, then, with ``smear_mc``, the MC smearing
    of the latest one providing it (:func:`~zcalib.chain.pipeline.prior_corrections`).

    Raises:
        InvalidConfig: see :func:`step_outputs`.
    """
    return _prior(specs, smear_mc=smear_mc)[0]


def _prior(
    specs: Sequence[str | Path], *, smear_mc: bool
) -> tuple[tuple[CorrectionStep, ...], tuple[WeightSpec, ...]]:
    from zcalib.chain.pipeline import prior_corrections

    scales, smear, weights = prior_corrections(step_outputs(s) for s in specs)
    return (*scales, *((smear,) if smear_mc and smear is not None else ())), weights


def assemble(
    specs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    era: str | None = None,
    collection: str | None = None,
    seed: int | None = None,
    description: str = "",
) -> dict[str, Path]:
    """Write the final payload of a chain of finished steps (in execution order), exactly as
    the pipeline writes ``final/``: ``corrections.json``, ``scales.dat``, ``smearings.dat``
    and ``assemble.json`` (the steps and the files they came from).

    Args:
        specs: step folders (or their correction files, or ``NAME=PATH``), in order.
        out_dir: output folder.
        era: era of the payload names; default: the one recorded by the fit steps.
        collection: ``Ele`` or ``Pho``; default: the one recorded by the fit steps.
        seed: smearing seed of ``EGMRandomGenerator``; default: the seed recorded by the
            fit step providing the final smearing (``0`` without one).
        description: description of the payload.

    Returns:
        The paths written.

    Raises:
        InvalidConfig: no steps, two steps of the same name, fit steps of different eras or
            collections, see :func:`step_outputs`.
    """
    from zcalib._atomic import atomic_write_text
    from zcalib.chain.pipeline import write_final_corrections
    from zcalib.corrections.egm import check_era

    if not specs:
        msg = "assemble: give the folders of the finished steps, in execution order"
        raise InvalidConfig(msg)
    outputs = [step_outputs(s) for s in specs]
    seen: dict[str, str] = {}
    for spec, o in zip(specs, outputs, strict=True):
        if o.name in seen:
            msg = (
                f"assemble: steps {seen[o.name]} and {spec} are both named {o.name!r}; "
                "name one of them with NAME=PATH"
            )
            raise InvalidConfig(msg)
        seen[o.name] = str(spec)
    recorded = {_names_of(o) for o in outputs if o.type == "fit"}
    if len(recorded) > 1 and (era is None or collection is None):
        found = ", ".join(f"{e}/{c}" for e, c in sorted(recorded))
        msg = f"assemble: the fit steps were written for different eras/collections ({found})"
        raise InvalidConfig(msg)
    rec_era, rec_coll = next(iter(recorded)) if recorded else (EgmNames().era, "Ele")
    names = EgmNames(check_era(era or rec_era, "--era"), collection or rec_coll)
    if seed is None:
        smearing = [o for o in outputs if o.smear is not None]
        seed = int(smearing[-1].summary.get("smear_seed") or 0) if smearing else 0
    out = Path(out_dir)
    paths, corrections = write_final_corrections(
        outputs,
        out,
        names=names,
        seed=seed,
        description=description or "zcalib assemble: " + ", ".join(o.name for o in outputs),
    )
    record = {
        "schema_version": 1,
        "command": "assemble",
        "order": [o.name for o in outputs],
        "steps": {
            o.name: {
                "type": o.type,
                "source": str(Path(o.scales[0].source if o.scales else "").parent),
                "output_hash": o.output_hash,
            }
            for o in outputs
        },
        "corrections": corrections,
        "smear_seed": seed,
    }
    paths["summary"] = atomic_write_text(
        out / "assemble.json", json.dumps(stamp(record), indent=2) + "\n"
    )
    return paths


def _names_of(o: StepOutputs) -> tuple[str, str]:
    """(era, collection) of a fit step's payload names (from its compound's name)."""
    compound = o.scales[0].name  # EGMScale_Compound_<P>_<era>
    _, _, rest = compound.partition("EGMScale_Compound_")
    particle, _, era = rest.partition("_")
    return era, particle
