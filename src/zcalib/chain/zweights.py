"""Z pT × |y| reweighting of MC to data (pymin ``-w ptz_x_rapidity_weights``).

The selected pairs (prior corrections applied, MC with its weights) are histogrammed in Z
pT × |y| (:class:`~zcalib.processors.runs.ZKinProcessor`). The weight of a bin is the ratio
of the data and MC fractions,

    w = (N_data / ΣN_data) / (W_MC / ΣW_MC),

``1`` where the MC bin is empty, capped at ``max_weight``. It is stored as a correctionlib
correction (inputs ``ptZ`` [GeV], ``absYZ``, ``weights`` = ``nominal | up | down``;
``multibinning`` with ``flow: clamp``) with the variations ``up = w²`` and ``down = 1``
(reweighting applied twice / not at all). Later steps apply it to MC as a
:class:`~zcalib.processors.zee.WeightSpec` with pair-level inputs ``("ptZ", "absYZ")``,
computed from the corrected energies, next to the other MC weights (pile-up...).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from correctionlib import schemav2
from numpy.typing import NDArray

from zcalib._atomic import atomic_write_text
from zcalib.chain._events import eta_scheme, run_loop
from zcalib.exceptions import InputError, InvalidConfig
from zcalib.outputs import run_tag, stamp
from zcalib.processors.runs import ZKinProcessor
from zcalib.processors.zee import WeightSpec
from zcalib.runner import EventLoop

__all__ = [
    "DEFAULT_PT_EDGES",
    "DEFAULT_Y_EDGES",
    "ZWeights",
    "build_zweight_correction",
    "derive_zweights",
    "load_zweight_spec",
    "write_zweights",
]

log = logging.getLogger(__name__)

#: Default Z pT bin edges [GeV].
DEFAULT_PT_EDGES: tuple[float, ...] = (
    0,
    2,
    4,
    6,
    8,
    10,
    12,
    15,
    20,
    25,
    30,
    40,
    50,
    70,
    100,
    150,
    250,
)
#: Default Z |y| bin edges.
DEFAULT_Y_EDGES: tuple[float, ...] = (0, 0.3, 0.6, 0.9, 1.2, 1.5, 1.8, 2.1, 2.5)
_ALL_ETA = ((0.0, 1.4442), (1.566, 1000.0))
_KEYS = ("nominal", "up", "down")


@dataclass(frozen=True)
class ZWeights:
    """The data and MC Z pT × |y| histograms and the weights.

    Attributes:
        pt_edges: Z pT edges [GeV].
        y_edges: Z |y| edges.
        data: data pairs per bin, shape ``(n_pt, n_y)``.
        mc: MC Σw per bin.
        weights: ``w`` per bin (nominal).
        name: correction name.
        max_weight: the cap.
    """

    pt_edges: tuple[float, ...]
    y_edges: tuple[float, ...]
    data: NDArray[np.float64]
    mc: NDArray[np.float64]
    weights: NDArray[np.float64]
    name: str = "zpt_weight"
    max_weight: float = 5.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary."""
        return {
            "schema_version": 1,
            "correction": self.name,
            "pt_edges": list(self.pt_edges),
            "y_edges": list(self.y_edges),
            "max_weight": self.max_weight,
            "data": self.data.tolist(),
            "mc": self.mc.tolist(),
            "weights": self.weights.tolist(),
        }


def _check_edges(name: str, edges: Sequence[float]) -> tuple[float, ...]:
    e = tuple(float(x) for x in edges)
    if (
        len(e) < 2
        or not all(math.isfinite(x) for x in e)
        or any(b <= a for a, b in itertools.pairwise(e))
        or e[0] < 0
    ):
        msg = f"zweights: {name} must be >= 2 increasing finite edges starting at >= 0, got {e}"
        raise InvalidConfig(msg)
    return e


def derive_zweights(
    loop: EventLoop,
    *,
    name: str = "zpt_weight",
    pt_edges: Sequence[float] = DEFAULT_PT_EDGES,
    y_edges: Sequence[float] = DEFAULT_Y_EDGES,
    max_weight: float = 5.0,
) -> ZWeights:
    """Fill data and MC in Z pT × |y| (one event loop) and compute the weights.

    Raises:
        InvalidConfig: bad edges or cap; InputError: no data or no MC pairs selected.
    """
    pt = _check_edges("pt_edges", pt_edges)
    y = _check_edges("y_edges", y_edges)
    if not (math.isfinite(max_weight) and max_weight >= 1):
        msg = f"zweights: max_weight must be a finite number >= 1, got {max_weight!r}"
        raise InvalidConfig(msg)
    loop.only("data")
    loop.only("mc")
    scheme = eta_scheme(_ALL_ETA, "zweights: all |eta| outside the crack")
    out = run_loop(loop, loop.cfg, ZKinProcessor, scheme, pt_edges=pt, y_edges=y)
    h = out["hist"]
    kinds = loop.cfg.kinds()
    data = np.zeros((len(pt) - 1, len(y) - 1))
    mc = np.zeros_like(data)
    view: Any = h.view(flow=False)
    for di, ds in enumerate(h.axes["dataset"]):
        target = data if kinds.get(ds) == "data" else mc
        target += view[di]["value"]
    if not data.sum() > 0 or not mc.sum() > 0:
        msg = (
            f"zweights: no selected {'data' if not data.sum() > 0 else 'MC'} pairs in Z pT "
            f"{pt[0]:g}-{pt[-1]:g} GeV x |y| {y[0]:g}-{y[-1]:g}"
        )
        raise InputError(msg)
    f_d = data / data.sum()
    f_m = mc / mc.sum()
    w = np.divide(f_d, f_m, out=np.ones_like(f_d), where=f_m > 0)
    capped = w > max_weight
    if capped.any():
        log.info("zweights: %d bins capped at %g", int(capped.sum()), max_weight)
    w = np.minimum(w, max_weight)
    return ZWeights(
        pt_edges=pt, y_edges=y, data=data, mc=mc, weights=w, name=name, max_weight=max_weight
    )


def build_zweight_correction(zw: ZWeights) -> schemav2.Correction:
    """The correctionlib weight: inputs ``ptZ``, ``absYZ``, ``weights`` (nominal/up/down).

    Example:
        >>> zw = ZWeights((0, 10, 20), (0, 1, 2.5), np.ones((2, 2)), np.ones((2, 2)),
        ...               np.array([[1.0, 1.1], [0.9, 1.2]]))
        >>> ev = build_zweight_correction(zw).to_evaluator()
        >>> [ev.evaluate(15.0, 0.5, k) for k in ("nominal", "up", "down")]
        [0.9, 0.81, 1.0]
    """
    w = np.asarray(zw.weights, dtype=np.float64)
    tables = {"nominal": w, "up": w * w, "down": np.ones_like(w)}
    content = [
        schemav2.CategoryItem(
            key=key,
            value=schemav2.MultiBinning(
                nodetype="multibinning",
                inputs=["ptZ", "absYZ"],
                edges=[[_stored(x) for x in zw.pt_edges], [_stored(x) for x in zw.y_edges]],
                content=[_stored(x) for x in tables[key].ravel()],  # ptZ slowest
                flow="clamp",
            ),
        )
        for key in _KEYS
    ]
    return schemav2.Correction(
        name=zw.name,
        description=(
            "Z pT x |y| MC weights: data/MC fractions, capped at "
            f"{zw.max_weight:g}; up = w^2, down = 1"
        ),
        version=1,
        inputs=[
            schemav2.Variable(name="ptZ", type="real", description="Dielectron pT [GeV]"),
            schemav2.Variable(name="absYZ", type="real", description="Dielectron |rapidity|"),
            schemav2.Variable(name="weights", type="string", description="nominal, up or down"),
        ],
        output=schemav2.Variable(name="weight", type="real", description="MC event weight"),
        data=schemav2.Category(nodetype="category", input="weights", content=content),
    )


def _stored(x: float) -> float:
    return float(f"{float(x):.15g}")


def write_zweights(zw: ZWeights, out_dir: str | Path) -> dict[str, Path]:
    """Write ``corrections.json``, ``ptz_x_rapidity_weights.tsv`` and ``zweights.json``."""
    from zcalib.corrections import write_correction_set

    out = Path(out_dir)
    lines = ["#absY_min\tabsY_max\tptZ_min\tptZ_max\tweight\tdata\tmc_sumw"]
    for j in range(len(zw.y_edges) - 1):
        for i in range(len(zw.pt_edges) - 1):
            lines.append(
                f"{zw.y_edges[j]:g}\t{zw.y_edges[j + 1]:g}\t{zw.pt_edges[i]:g}\t"
                f"{zw.pt_edges[i + 1]:g}\t{zw.weights[i, j]:.6g}\t"
                f"{zw.data[i, j]:.6g}\t{zw.mc[i, j]:.6g}"
            )
    return {
        "corrections": write_correction_set(
            out / "corrections.json",
            [build_zweight_correction(zw)],
            description=f"zcalib Z pT x |y| weights ({zw.name})",
        ),
        "table": atomic_write_text(
            out / "ptz_x_rapidity_weights.tsv", "\n".join([*lines, f"# {run_tag()}"]) + "\n"
        ),
        "summary": atomic_write_text(
            out / "zweights.json", json.dumps(stamp(zw.to_dict()), indent=1) + "\n"
        ),
    }


def load_zweight_spec(path: str | Path, name: str, *, weight_name: str = "zpt") -> WeightSpec:
    """A :class:`WeightSpec` (inputs ``ptZ``, ``absYZ``) from a written weights file.

    Raises:
        InvalidConfig: missing file or correction, or other inputs than ``ptZ, absYZ``.
    """
    import correctionlib

    p = Path(path)
    if not p.is_file():
        msg = f"{p}: Z pT x |y| weights file not found"
        raise InvalidConfig(msg)
    text = p.read_text()
    try:
        model = correctionlib.schemav2.CorrectionSet.model_validate_json(text)
    except Exception as err:  # noqa: BLE001
        msg = f"{p}: not a valid correctionlib file ({err.__class__.__name__}: {err})"
        raise InvalidConfig(msg) from None
    by_name = {c.name: c for c in model.corrections}
    if name not in by_name:
        msg = f"{p}: no correction named {name!r}; available: {', '.join(sorted(by_name))}"
        raise InvalidConfig(msg)
    inputs = [v.name for v in by_name[name].inputs]
    if inputs != ["ptZ", "absYZ", "weights"]:
        msg = f"{p}: correction {name!r} has inputs {inputs}; expected [ptZ, absYZ, weights]"
        raise InvalidConfig(msg)
    from zcalib.corrections.apply import bind_weight

    return bind_weight(
        WeightSpec(
            name=weight_name, payload=text, correction=name, inputs=("ptZ", "absYZ"), source=str(p)
        )
    )
