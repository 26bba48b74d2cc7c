"""Fit configuration: an immutable, validated :class:`FitConfig`.

Example:
    >>> cfg = FitConfig(window=(82.0, 98.0))
    >>> cfg.with_overrides(fix_scales=True).fix_scales
    True
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal, NoReturn, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zcalib.config import DEFAULT_WINDOW
from zcalib.exceptions import InvalidConfig

__all__ = [
    "DoubleGaussian",
    "FitConfig",
    "McStatLikelihood",
    "McStatMethod",
    "Smearing",
    "StartStyle",
    "TemplateBias",
    "parse_ignored",
]

StartStyle = Literal["scan", "random", "specify"]
McStatMethod = Literal["sandwich", "bootstrap", "none"]
Minimizer = Literal["newton", "lbfgs"]
McStatLikelihood = Literal["none", "bb-lite", "noise-corrected"]
TemplateBias = Literal["bootstrap", "none"]
Smearing = Literal["gaussian", "double-gaussian"]


_PAIRS = ("window", "scale_bounds", "smear_bounds", "scan_scale_range", "scan_smear_range")
_LITERALS = {
    "start": StartStyle,
    "mc_stat": McStatMethod,
    "mc_stat_likelihood": McStatLikelihood,
    "template_bias": TemplateBias,
    "smearing": Smearing,
}


class DoubleGaussian(BaseModel):
    """Fixed shape of the double-Gaussian smearing ``(1 − f) N(0, σ²) + f N(0, k² σ²)``.

    The defaults (a 20 % tail twice as wide as the core) are an illustrative choice of
    zcalib, not values taken from IJazZ2.0; set them to what the derivation calls for.

    Attributes:
        fraction: ``f``, fraction of the second (tail) component, in ``(0, 1)``.
        width_ratio: ``k``, width of the second component over the core's, ``> 0``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fraction: float = 0.2
    width_ratio: float = 2.0


class FitConfig(BaseModel):
    """Settings of one scale/smearing fit (frozen pydantic model, unknown fields rejected;
    use :meth:`with_overrides`). Every invalid value raises :class:`InvalidConfig` naming
    the field, the value and what is allowed.

    Attributes:
        window: fit window ``(lo, hi)`` in GeV; snapped to fine-bin edges (``hi`` is lowered
            to a whole number of data bins).
        bin_width: target data-bin width in GeV at the window centre (sets ``rebin`` when
            that is ``None``).
        rebin: fine mass bins per data bin (``>= 1``); overrides ``bin_width``.
        min_data: regions with less data Σw inside the window are dropped.
        min_mc: regions with fewer MC effective entries ``(Σw)²/Σw²`` inside the window are
            dropped.
        scale_bounds: allowed range of every scale.
        smear_bounds: allowed range of every smearing (``lo >= 0``).
        start: start style: ``"scan"`` (1D NLL scans per parameter, others at defaults),
            ``"random"`` (uniform in the scan ranges, ``seed``), ``"specify"``
            (``start_scales`` / ``start_smears``).
        seed: seed of the ``"random"`` start and of the MC-statistics bootstrap.
        scan_scale_range: scale range of the start scans (and of random starts).
        scan_smear_range: smearing range of the start scans (and of random starts).
        scan_points: grid points per start scan (refined by a parabola).
        start_scales: start values of all scale categories for ``start="specify"``.
        start_smears: start values of all smear categories for ``start="specify"``.
        fix_scales: fit smearings only; scales held at ``fixed_scales`` (default all 1).
        fixed_scales: values of the scales when ``fix_scales`` (one per scale category).
        fix_smears: fit scales only; smearings held at ``fixed_smears`` (default all 0).
        fixed_smears: values of the smearings when ``fix_smears``.
        ignore_scales: scale categories held at 1, by index or by name (``scale[3]``, as the
            results table names them); every region touching one is excluded from the
            likelihood.
        ignore_smears: smear categories held at 0, by index or by name (``smear[3]``);
            every region touching one is excluded from the likelihood.
        mc_stat: how the MC-statistics uncertainty is estimated: ``"sandwich"`` (linear
            propagation of the template Σw², ``H⁻¹ V H⁻¹``), ``"bootstrap"`` (replicas of
            Gaussian-fluctuated templates, each solved from the minimum with its exact
            gradient, see ``template_bias``; the default), ``"none"``.
            With ``mc_stat_likelihood="bb-lite"`` the meaning is unchanged: ``stat`` is
            the data-only error (plain-NLL Hessian at the BB-lite minimum) and ``mc_stat``
            the MC-statistics error by this method, so nothing is counted twice (the
            BB-lite Hessian is not used for errors; see :mod:`zcalib.fit.fitter`).
        mc_stat_likelihood: ``"none"``: plain multinomial NLL (template taken as exact);
            ``"bb-lite"``: Barlow-Beeston-lite likelihood, the template's per-data-bin
            prediction variance ``V_b = Σ_k K_bk² Σw²_k`` profiled with one constrained
            nuisance per bin. Experimental: it reduces the upward smear bias from template
            noise in sparse regions but over-corrects when MC ~ data and does not yet pass
            the MC-vs-MC zero-smearing closure (see ``tests/fit/test_mc_stat_likelihood.py``).
        template_bias: ``"bootstrap"`` (default): subtract the estimator's bias of second
            order in the template noise, estimated from ``BIAS_PAIRS`` (4; 8 where the
            noise acts non-linearly) antithetic pairs of template replicas (``t ± ε``), each
            solved to its own minimum (the mean pair minimum minus the plain-NLL minimum on
            the observed template; not applied to a smearing in the template-noise well at
            σ ≈ 0, whose replicas do not leave it). With
            ``mc_stat="bootstrap"`` the pairs also give the MC-statistics covariance: the
            exact linear propagation of the smoothed Σw², scaled per parameter by the
            pairs' measured shrink of its odd part, plus the spread of the pair means
            (:func:`zcalib.fit.fitter.bootstrap_covariance`). ``"none"``: the minimum as it
            is. Not applied with ``mc_stat="none"`` (the template taken as exact) nor with
            ``mc_stat_likelihood="bb-lite"`` (see ``docs/fit.md``).
        template_smoothing: soft floor of the smearing kernel in fine mass bins: the MC
            histogram is read as a density smoothed by this many fine bins (``s₀``, 0.058 %
            of the mass per bin) where the fitted smearing vanishes, so that the likelihood
            stays smooth in the scales there; smearings ``>> s₀`` are unaffected (see
            :meth:`zcalib.fit.model.TemplateModel.effective_s2`). ``0`` switches it off.
        smearing: shape of the extra smearing of data: ``"gaussian"`` (default) or
            ``"double-gaussian"``, the mixture of :class:`DoubleGaussian` with a fixed shape
            whose core width ``σ`` is what the fit varies (and reports as the smearing).
        double_gaussian: that shape (``fraction``, ``width_ratio``); used only with
            ``smearing="double-gaussian"``.
        n_bootstrap: number of independent template replicas (one Newton step each) of
            ``mc_stat="bootstrap"`` when the bias is not estimated (``template_bias="none"``,
            ``mc_stat_likelihood="bb-lite"``, injection toys); the default fit uses the
            ``template_bias`` pairs instead.
        minimizer: ``"newton"``: Newton iterations with the exact Hessian (damped, in a
            trust region, projected on the bounds), L-BFGS-B only if they do not converge;
            ``"lbfgs"``: L-BFGS-B on the exact gradient (the former default).
        max_iter: maximum quasi-Newton iterations.
        edm_tolerance: convergence requires the estimated distance to the minimum
            ``½ gᵀH⁻¹g`` (in NLL units) below this.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: tuple[float, float] = DEFAULT_WINDOW
    bin_width: float = 0.5
    rebin: int | None = None
    min_data: float = 100.0
    min_mc: float = 200.0
    scale_bounds: tuple[float, float] = (0.9, 1.1)
    smear_bounds: tuple[float, float] = (0.0, 0.1)
    start: StartStyle = "scan"
    seed: int = 0
    scan_scale_range: tuple[float, float] = (0.97, 1.03)
    scan_smear_range: tuple[float, float] = (0.0, 0.04)
    scan_points: int = 21
    start_scales: tuple[float, ...] | None = None
    start_smears: tuple[float, ...] | None = None
    fix_scales: bool = False
    fixed_scales: tuple[float, ...] | None = None
    fix_smears: bool = False
    fixed_smears: tuple[float, ...] | None = None
    ignore_scales: tuple[int, ...] = ()
    ignore_smears: tuple[int, ...] = ()
    mc_stat: McStatMethod = "bootstrap"
    mc_stat_likelihood: McStatLikelihood = "noise-corrected"
    template_bias: TemplateBias = "bootstrap"
    template_smoothing: float = 2.0
    smearing: Smearing = "gaussian"
    double_gaussian: DoubleGaussian = DoubleGaussian()
    n_bootstrap: int = 20
    minimizer: Minimizer = "newton"
    max_iter: int = 1000
    edm_tolerance: float = 1e-3

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            e = err.errors()[0]
            field = ".".join(str(x) for x in e["loc"]) or "?"
            if e["type"] == "literal_error" and field in _LITERALS:
                allowed = ", ".join(get_args(_LITERALS[field]))
                msg = f"fit config: field '{field}' is {e.get('input')!r}; allowed: {allowed}"
            elif e["type"] == "extra_forbidden":
                owner = DoubleGaussian if field.startswith("double_gaussian.") else type(self)
                allowed = ", ".join(owner.model_fields)
                msg = f"fit config: unknown field '{field}'; allowed fields: {allowed}"
            elif e["type"] == "value_error":
                msg = "fit config: " + str(e["msg"]).removeprefix("Value error, ")
            else:
                msg = f"fit config: field '{field}' is {e.get('input')!r}; {e['msg']}"
            raise InvalidConfig(msg) from None

    @field_validator("ignore_scales", "ignore_smears", mode="before")
    @classmethod
    def _ignored_by_name(cls, v: Any, info: ValidationInfo) -> Any:
        """Categories named as the fit names them (``smear[3]``, the start of the results
        table's category column) or by index."""
        kind = "scale" if info.field_name == "ignore_scales" else "smear"
        if isinstance(v, str | int):
            v = [v]
        if not isinstance(v, Sequence):
            return v
        out: list[Any] = []
        for item in v:
            m = _IGNORED.match(item.strip()) if isinstance(item, str) else None
            if m is None and isinstance(item, str) and not item.strip().isdigit():
                msg = (
                    f"field '{info.field_name}' lists {item!r}; allowed: {kind}[i] (as the "
                    "fit names it) or an index i"
                )
                raise ValueError(msg)
            if m is None:
                out.append(item)
            elif m.group(1) == kind:
                out.append(int(m.group(2)))
            else:
                msg = (
                    f"field '{info.field_name}' lists {item!r}, a {m.group(1)} category; "
                    f"allowed: {kind}[i] or an index i (put {item} under "
                    f"ignore_{m.group(1)}s)"
                )
                raise ValueError(msg)
        return out

    @model_validator(mode="after")
    def _checked(self) -> FitConfig:
        self._validate()
        return self

    def _validate(self) -> None:
        def bad(field: str, value: Any, allowed: str) -> NoReturn:
            msg = f"fit config: field '{field}' is {value!r}; {allowed}"
            raise InvalidConfig(msg)

        for name in _PAIRS:
            pair = getattr(self, name)
            if len(pair) != 2 or not all(math.isfinite(x) for x in pair) or not pair[0] < pair[1]:
                bad(name, pair, "expected two finite numbers (lo, hi) with lo < hi")
        if self.window[0] <= 0:
            bad("window", self.window, "masses must be positive")
        if self.scale_bounds[0] <= 0:
            bad("scale_bounds", self.scale_bounds, "scales must be positive")
        if self.smear_bounds[0] < 0:
            bad("smear_bounds", self.smear_bounds, "smearings must be >= 0")
        if self.scan_scale_range[0] <= 0:
            bad("scan_scale_range", self.scan_scale_range, "scales must be positive")
        if self.scan_smear_range[0] < 0:
            bad("scan_smear_range", self.scan_smear_range, "smearings must be >= 0")
        if not (math.isfinite(self.bin_width) and self.bin_width > 0):
            bad("bin_width", self.bin_width, "expected a positive width in GeV")
        if self.rebin is not None and (int(self.rebin) != self.rebin or self.rebin < 1):
            bad("rebin", self.rebin, "expected an integer >= 1 or None")
        for name in ("min_data", "min_mc"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                bad(name, v, "expected a number >= 0")
        if not (math.isfinite(self.template_smoothing) and 0 <= self.template_smoothing <= 20):
            bad("template_smoothing", self.template_smoothing, "expected fine bins in [0, 20]")
        dg = self.double_gaussian
        if not (math.isfinite(dg.fraction) and 0.0 < dg.fraction < 1.0):
            bad("double_gaussian.fraction", dg.fraction, "expected a fraction in (0, 1)")
        if not (math.isfinite(dg.width_ratio) and dg.width_ratio > 0.0):
            bad("double_gaussian.width_ratio", dg.width_ratio, "expected a positive ratio")
        if self.scan_points < 3:
            bad("scan_points", self.scan_points, "expected at least 3")
        if self.n_bootstrap < 2:
            bad("n_bootstrap", self.n_bootstrap, "expected at least 2")
        if self.max_iter < 1:
            bad("max_iter", self.max_iter, "expected at least 1")
        if not self.edm_tolerance > 0:
            bad("edm_tolerance", self.edm_tolerance, "expected a positive number")
        if self.start == "specify" and self.start_scales is None and self.start_smears is None:
            bad("start", self.start, "start='specify' needs start_scales and/or start_smears")
        for name in ("start_scales", "fixed_scales"):
            vals = getattr(self, name)
            if vals is not None and not all(math.isfinite(x) and x > 0 for x in vals):
                bad(name, vals, "scales must be finite and positive")
        for name in ("start_smears", "fixed_smears"):
            vals = getattr(self, name)
            if vals is not None and not all(math.isfinite(x) and x >= 0 for x in vals):
                bad(name, vals, "smearings must be finite and >= 0")
        for name in ("ignore_scales", "ignore_smears"):
            vals = getattr(self, name)
            if any(x < 0 for x in vals):
                bad(name, vals, "category indices must be >= 0")

    def double_gaussian_shape(self) -> tuple[float, float] | None:
        """``(fraction, width_ratio)`` with ``smearing="double-gaussian"``, else ``None``.

        Example:
            >>> FitConfig(smearing="double-gaussian").double_gaussian_shape()
            (0.2, 2.0)
        """
        if self.smearing != "double-gaussian":
            return None
        return (self.double_gaussian.fraction, self.double_gaussian.width_ratio)

    def with_overrides(self, **changes: Any) -> FitConfig:
        """A copy with some fields replaced (validated again).

        Example:
            >>> FitConfig().with_overrides(window=(85, 97)).window
            (85.0, 97.0)
        """
        return FitConfig(**{**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict of all fields (tuples become lists)."""
        out: dict[str, Any] = self.model_dump(mode="json")
        return out

    def check_lengths(self, n_scale: int, n_smear: int) -> None:
        """Check per-category value lists against the numbers of categories.

        Raises:
            InvalidConfig: a list has the wrong length or an index is out of range.
        """
        lists: Sequence[tuple[str, tuple[float, ...] | None, int]] = (
            ("start_scales", self.start_scales, n_scale),
            ("fixed_scales", self.fixed_scales, n_scale),
            ("start_smears", self.start_smears, n_smear),
            ("fixed_smears", self.fixed_smears, n_smear),
        )
        for name, vals, n in lists:
            if vals is not None and len(vals) != n:
                msg = (
                    f"fit config: field '{name}' has {len(vals)} values but the category "
                    f"scheme has {n} {'scale' if 'scale' in name else 'smear'} categories"
                )
                raise InvalidConfig(msg)
        for name, idx, n in (
            ("ignore_scales", self.ignore_scales, n_scale),
            ("ignore_smears", self.ignore_smears, n_smear),
        ):
            out = [i for i in idx if i >= n]
            if out:
                msg = (
                    f"fit config: field '{name}' lists {out}; allowed category indices are "
                    f"0..{n - 1}"
                )
                raise InvalidConfig(msg)


_IGNORED = re.compile(r"^(scale|smear)\[(\d+)\]$")


def parse_ignored(items: Sequence[int | str], where: str = "ignore") -> dict[str, tuple[int, ...]]:
    """``ignore_scales`` / ``ignore_smears`` of :class:`FitConfig` from category names.

    A category is named as the fit names it (``scale[3]``, ``smear[5]``: its kind and index in
    the scheme); a bare index (``3``) is a scale category. The CLI ``--ignore`` and the
    pipeline YAML ``ignore`` both read this way, so a category without data (a smear
    category no region reaches, say) is held fixed by name from either.

    Raises:
        InvalidConfig: an item that is neither an index nor ``scale[i]`` / ``smear[i]``.

    Example:
        >>> parse_ignored([3, "smear[5]", "scale[0]"])
        {'ignore_scales': (0, 3), 'ignore_smears': (5,)}
    """
    found: dict[str, set[int]] = {"scale": set(), "smear": set()}
    for item in items:
        text = str(item).strip()
        m = _IGNORED.match(text)
        if text.isdigit():
            found["scale"].add(int(text))
        elif m:
            found[m.group(1)].add(int(m.group(2)))
        else:
            msg = (
                f"{where + ': ' if where else ''}{item!r} is not a category; allowed: scale[i], "
                "smear[i] (as the fit names them) or a scale index i"
            )
            raise InvalidConfig(msg)
    return {f"ignore_{k}s": tuple(sorted(v)) for k, v in found.items()}
