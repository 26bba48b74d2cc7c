"""Smooth Et curves (:mod:`zcalib.fit.smooth`) written as correctionlib ``Formula`` nodes.

A smooth step keeps the layout of a binned one (``syst`` category, then a multibinning over
the inputs the categories cut on): every bin of a cell that has a curve holds a ``Formula``
of ``pt`` (TFormula, ``x`` = pt) that evaluates to the fitted curve, clamped to the fitted Et
range, instead of a number. So the payload is evaluated exactly as a binned one,
``evaluate(syst, ..., pt, ...)``, and the EGM compound and ``EGMSmearAndSyst`` carry it
unchanged. Keys:

=====================  ============================================================
scale keys             ``scale = f(pt)``, ``escale = e(pt)``, ``scale_up/down = f ± e``
smear keys             ``smear = σ(pt)``, ``esmear = e(pt)``, ``smear_up = σ + e``,
                       ``smear_down = max(σ − e, 0)``
=====================  ============================================================

with ``e`` the curve's propagated uncertainty (from the binned values' stat ⊕ MC-stat
covariance). Cells with a single Et bin keep their binned numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from correctionlib import schemav2
from numpy.typing import NDArray

from zcalib.corrections.writer import SCALE_SYST_KEYS, SMEAR_SYST_KEYS, _Grid
from zcalib.fit.smooth import curve_formula, error_formula

if TYPE_CHECKING:
    from zcalib.categories import Category
    from zcalib.fit.smooth import SmoothCurve

__all__ = ["smooth_content", "with_smooth_curves"]


def _formula(expression: str) -> schemav2.Formula:
    return schemav2.Formula(
        nodetype="formula", expression=expression, parser="TFormula", variables=["pt"]
    )


def _expressions(curve: SmoothCurve, kind: str) -> dict[str, str]:
    f = curve_formula(curve)
    e = error_formula(curve)
    if kind == "scale":
        return {"scale": f, "escale": e, "scale_up": f"({f})+({e})", "scale_down": f"({f})-({e})"}
    return {
        "smear": f,
        "esmear": e,
        "smear_up": f"({f})+({e})",
        "smear_down": f"max(({f})-({e}),0)",
    }


def smooth_content(
    cats: Sequence[Category], curves: Mapping[int, SmoothCurve], kind: str
) -> dict[str, schemav2.Content]:
    """The content of each ``syst`` key with the curves' formulas in their categories' bins.

    Args:
        cats: the scale (``kind="scale"``) or smear categories of the step.
        curves: the curve of each category index that has one.
        kind: ``"scale"`` or ``"smear"``.
    """
    grid = _Grid.from_categories(cats)
    keys = SCALE_SYST_KEYS if kind == "scale" else SMEAR_SYST_KEYS
    exprs = {i: _expressions(c, kind) for i, c in curves.items()}
    return {
        key: grid.node(
            _nan_values(len(cats)),
            1.0 if kind == "scale" and key != "escale" else 0.0,
            leaf=lambda i, key=key: _formula(exprs[i][key]) if i in exprs else None,  # type: ignore[misc]
        )
        for key in keys
    }


def _nan_values(n: int) -> NDArray[np.float64]:
    return np.full(n, np.nan)


def with_smooth_curves(
    corr: schemav2.Correction,
    cats: Sequence[Category],
    curves: Mapping[int, SmoothCurve],
    kind: str,
) -> schemav2.Correction:
    """A copy of a binned step (or ``EGMSmearAndSyst``) whose ``kind`` keys are the curves.

    Categories without a curve keep the numbers of ``corr``; keys of other kinds (the MC
    scale uncertainty of ``EGMSmearAndSyst``) are kept as they are.
    """
    if not curves:
        return corr
    data = corr.data
    assert isinstance(data, schemav2.Category)  # built by zcalib: syst category on top
    binned = {str(item.key): item.value for item in data.content}
    fresh = smooth_content(cats, curves, kind)
    missing = {i for i in range(len(cats)) if i not in curves}
    content = []
    for key, value in binned.items():
        node = fresh.get(key, value)
        if key in fresh and missing:
            node = _fill_missing(fresh[key], value)
        content.append(schemav2.CategoryItem(key=key, value=node))
    return corr.model_copy(
        update={
            "data": schemav2.Category(nodetype="category", input="syst", content=content),
            "description": f"{corr.description} Smooth Et curves (Formula of pt) per cell.",
        }
    )


def _fill_missing(node: schemav2.Content, binned: schemav2.Content) -> schemav2.Content:
    """Numbers of ``binned`` where ``node`` holds the NaN placeholder of a curve-less bin."""
    if isinstance(node, float) and node != node:  # noqa: PLR0124 (NaN)
        return binned
    if isinstance(node, schemav2.MultiBinning | schemav2.Binning) and isinstance(
        binned, type(node)
    ):
        return node.model_copy(
            update={
                "content": [
                    _fill_missing(a, b) for a, b in zip(node.content, binned.content, strict=True)
                ]
            }
        )
    return node
