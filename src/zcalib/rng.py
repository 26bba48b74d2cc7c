"""Counter-based random numbers keyed on event identity.

**The MC smearing generator** (:func:`random_generator`, :func:`lepton_normals`) is one
definition shared by the payload and the processor: the correction ``EGMRandomGenerator``
written into every zcalib payload, evaluated as (HiggsDNA's call)::

    z = cset["EGMRandomGenerator"].evaluate("stdnormal", pt, r9, AbsScEta, event)

a correctionlib ``HashPRNG`` (``distribution: "normal"``) keyed on the lepton's raw
(uncorrected, unsmeared) ``pt``, ``r9``, ``|eta_SC|`` and the event number, with the
smearing seed folded into the event number (``event + seed * 2**32``). zcalib's processor
draws its ``z`` by evaluating exactly this correction (:func:`lepton_normals`), so an analyst
evaluating the payload gets the same smeared energy for the same lepton. ``"stdflat"`` gives
an independent uniform number on [0, 1) (the ``pt`` key sign-flipped), for double-Gaussian
smearing. Inputs without event numbers use a pseudo event number from the file identity and
the entry index (:func:`entry_events`).

The older SplitMix64 helpers below remain for keys that are not lepton smearing.

Smearing MC must not depend on how events are split into chunks or spread over workers, and
the up/down variations must reuse the same random numbers as the nominal. So each lepton's
standard-normal number is a pure function of ``(seed, run, lumi, event, lepton index)``: the
key is hashed with the SplitMix64 finaliser (a bijective 64-bit mixer), two independent
53-bit uniforms are drawn from it, and a Box–Muller transform gives ``z ~ N(0, 1)``.

When the input has no event numbers (the seed's minimal ECALELF branch list), the key is
built from the file's ROOT UUID and the entry index instead (:func:`entry_keys`).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RNG_INPUTS",
    "RNG_NAME",
    "entry_events",
    "entry_keys",
    "event_keys",
    "lepton_normals",
    "normal_from_keys",
    "random_generator",
]

#: Name of the random-number correction in zcalib payloads (as in the IJazZ payloads).
RNG_NAME = "EGMRandomGenerator"
#: Its inputs, in call order.
RNG_INPUTS: tuple[str, ...] = ("distribution", "pt", "r9", "AbsScEta", "event")
_SEED_STRIDE = 1 << 32
_EVENT_BITS = (1 << 52) - 1

U64 = NDArray[np.uint64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / float(1 << 53)


def _mix(x: U64) -> U64:
    """SplitMix64 finaliser (bijective on uint64)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def _combine(h: U64, v: NDArray[Any]) -> U64:
    with np.errstate(over="ignore"):
        return _mix(h ^ np.asarray(v).astype(np.uint64))


def event_keys(
    seed: int,
    run: NDArray[np.integer[Any]],
    lumi: NDArray[np.integer[Any]],
    event: NDArray[np.integer[Any]],
) -> U64:
    """One 64-bit key per event from ``(seed, run, lumi, event)``."""
    h = _mix(np.full(len(run), np.uint64(seed & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64))
    h = _combine(h, run)
    h = _combine(h, lumi)
    return _combine(h, event)


def entry_keys(seed: int, file_id: str, entries: NDArray[np.integer[Any]]) -> U64:
    """One 64-bit key per event from ``(seed, file identity, entry index)``.

    Args:
        seed: the smearing seed.
        file_id: a stable identity of the file (its ROOT UUID, or a checksum).
        entries: global entry numbers in the file (chunk offset + local index).
    """
    digest = hashlib.blake2b(file_id.encode(), digest_size=8).digest()
    fid = np.uint64(int.from_bytes(digest, "little"))
    h = _mix(np.full(len(entries), np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ fid, dtype=np.uint64))
    return _combine(h, entries)


def normal_from_keys(keys: U64, n_leptons: int = 2) -> NDArray[np.float64]:
    """Standard-normal numbers of shape ``(len(keys), n_leptons)``, one per lepton.

    Example:
        >>> import numpy as np
        >>> k = event_keys(1, np.array([1, 1]), np.array([1, 1]), np.array([10, 11]))
        >>> z = normal_from_keys(k)
        >>> z.shape, bool(np.all(z == normal_from_keys(k)))
        ((2, 2), True)
    """
    out = np.empty((len(keys), n_leptons), dtype=np.float64)
    for i in range(n_leptons):
        base = _combine(keys, np.full(len(keys), i, dtype=np.uint64))
        a = _mix(base)
        b = _mix(a)
        u1 = ((a >> _S11).astype(np.float64) + 0.5) * _INV53  # (0, 1): log is finite
        u2 = (b >> _S11).astype(np.float64) * _INV53
        out[:, i] = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return out


def random_generator(seed: int = 0, name: str = RNG_NAME) -> Any:
    """The shared random-number correction (``schemav2.Correction``; module docstring).

    Args:
        seed: the smearing seed (``>= 0``), folded into the event number.
        name: correction name.

    Example:
        >>> import correctionlib
        >>> from correctionlib import schemav2
        >>> cset = schemav2.CorrectionSet(schema_version=2, corrections=[random_generator(1)])
        >>> ev = correctionlib.CorrectionSet(cset)["EGMRandomGenerator"]
        >>> z = ev.evaluate("stdnormal", 40.0, 0.95, 0.5, 1234.0)
        >>> z == ev.evaluate("stdnormal", 40.0, 0.95, 0.5, 1234.0)
        True
    """
    from correctionlib import schemav2

    if seed < 0:
        msg = f"smearing seed {seed} must be >= 0"
        raise ValueError(msg)
    keys = list(RNG_INPUTS[1:])

    def seeded(node: Any) -> Any:
        if seed == 0:
            return node
        rule = schemav2.Formula(
            nodetype="formula",
            expression=f"x+{seed * _SEED_STRIDE}",
            parser="TFormula",
            variables=["event"],
        )
        return schemav2.Transform(nodetype="transform", input="event", rule=rule, content=node)

    def flipped(node: Any) -> Any:
        rule = schemav2.Formula(
            nodetype="formula", expression="-x", parser="TFormula", variables=["pt"]
        )
        return schemav2.Transform(nodetype="transform", input="pt", rule=rule, content=node)

    normal = schemav2.HashPRNG(nodetype="hashprng", inputs=keys, distribution="normal")
    flat = schemav2.HashPRNG(nodetype="hashprng", inputs=keys, distribution="stdflat")
    descriptions = {
        "pt": "Raw (uncorrected, unsmeared) transverse momentum of the lepton [GeV]",
        "r9": "R9 of the supercluster",
        "AbsScEta": "|eta_SC|",
        "event": "Event number (a real; exact below 2**53)",
    }
    return schemav2.Correction(
        name=name,
        version=1,
        description=(
            "Counter-based random numbers for the MC smearing E' = E (1 + smear z): "
            "correctionlib HashPRNG keyed on (pt, r9, AbsScEta, event + seed * 2**32), "
            f"seed {seed}; zcalib's processor draws z from this same definition"
        ),
        inputs=[
            schemav2.Variable(
                name="distribution", type="string", description="stdnormal or stdflat"
            ),
            *(schemav2.Variable(name=k, type="real", description=descriptions[k]) for k in keys),
        ],
        output=schemav2.Variable(name="random", type="real", description="Random number"),
        data=schemav2.Category(
            nodetype="category",
            input="distribution",
            content=[
                schemav2.CategoryItem(key="stdnormal", value=seeded(normal)),
                schemav2.CategoryItem(key="stdflat", value=seeded(flipped(flat))),
            ],
        ),
    )


@functools.lru_cache(maxsize=8)
def _generator(seed: int) -> Any:
    import correctionlib
    from correctionlib import schemav2

    cset = schemav2.CorrectionSet(schema_version=2, corrections=[random_generator(seed)])
    return correctionlib.CorrectionSet.from_string(cset.model_dump_json(exclude_unset=True))[
        RNG_NAME
    ]


def lepton_normals(
    seed: int,
    pt: NDArray[np.floating[Any]],
    r9: NDArray[np.floating[Any]],
    abs_sc_eta: NDArray[np.floating[Any]],
    event: NDArray[Any],
    distribution: str = "stdnormal",
) -> NDArray[np.float64]:
    """Standard-normal ``z`` per lepton from the shared definition (:func:`random_generator`);
    ``distribution="stdflat"``: the independent uniform ``u`` on [0, 1) of the same
    generator, which picks the component of a double-Gaussian smearing
    (:func:`zcalib.physics.mixture_width_factor`).

    All arrays broadcast together (``event`` is per lepton, or broadcast from per event).

    Example:
        >>> import numpy as np
        >>> args = (np.array([40.0, 35.0]), np.array([0.9, 0.95]), np.array([0.3, 1.2]),
        ...         np.array([7, 7]))
        >>> z = lepton_normals(0, *args)
        >>> u = lepton_normals(0, *args, distribution="stdflat")
        >>> z.shape, bool(z[0] != z[1]), bool(np.all((u >= 0) & (u < 1)))
        ((2,), True, True)
    """
    arrays = np.broadcast_arrays(
        np.asarray(pt, dtype=np.float64),
        np.asarray(r9, dtype=np.float64),
        np.asarray(abs_sc_eta, dtype=np.float64),
        np.asarray(event, dtype=np.float64),
    )
    shape = arrays[0].shape
    flat = [np.ascontiguousarray(a.ravel()) for a in arrays]
    out = np.asarray(_generator(int(seed)).evaluate(distribution, *flat), dtype=np.float64)
    return out.reshape(shape)


def entry_events(file_id: str, entries: NDArray[np.integer[Any]]) -> NDArray[np.float64]:
    """Pseudo event numbers (exact doubles below 2**52) from a file identity and entries.

    For inputs without event numbers: the key of :func:`entry_keys` (seed 0) cut to 52 bits.
    """
    keys = entry_keys(0, file_id, entries)
    return (keys & np.uint64(_EVENT_BITS)).astype(np.float64)
