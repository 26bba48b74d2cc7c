"""Deterministic generator of realistic Z->ee demo ntuples (data, MC and the injected truth).

:func:`generate` writes ``data.root``, ``mc.root`` and ``truth.json`` into a folder. Both ROOT
files hold one dielectron pair per event that passes the acceptance, as ECALELF ``selected``
or NanoAOD ``Events`` TTrees. Data carry a per-category miscalibration and extra smearing
(and optionally a linear drift in run number); ``truth.json`` holds the values a perfect fit
returns, in the conventions of ``DESIGN.md``.

Physics model (MC and data share everything except the injected data effects):

* Z: relativistic Breit-Wigner in ``s = m²`` (M = 91.1876, Γ = 2.4952 GeV) for
  ``50 < m < 150`` GeV; pT with density ``∝ pT (1 + pT²/p0²)⁻²`` (peak ≈ 4.5 GeV, mean
  ≈ 12 GeV, tail ``∝ pT⁻³``); rapidity ``N(0, 2)``; uniform φ. Decay ``1 + cos²θ`` in the Z
  rest frame (beam axis), boosted to the lab. Out-of-cone final-state radiation: 5 % of the
  electrons lose a log-uniform fraction 0.5-50 % of their energy (the generator-level
  ``energy_true_ele`` is the electron energy after this loss).
* Per electron: supercluster η = track η + N(0, 0.002); R9 from a "golden" (N(0.967, 0.011))
  plus a "showering" (0.975 - Γ(1.5, 0.06)) component, the golden fraction falling with the
  tracker material (≈ 55 % above 0.96 in the barrel, ≈ 45 % in the endcaps); seed gain 12,
  switching to 6 (1) for seed-crystal energies above ~150 (1600) GeV in the barrel and
  ~300 (3000) GeV in the endcaps (``gain_thresholds`` lowers the barrel values, the endcap
  ones scale with them, so that a small sample populates gains 6 and 1); cumulative ID working points (veto ⊃ loose ⊃ medium ⊃
  tight, ~87 % tight); opposite charges.
* Energy response ``E_reco = E_true (1 + μ + σ z + t)``: resolution
  ``σ = a/√E ⊕ b/E ⊕ c`` with the stochastic ``a`` and constant ``c`` larger in the endcaps
  and for low R9, a pile-up-dependent noise ``b``; a small low-R9 bias ``μ`` and a low-side
  tail ``t = -Exp(λ)`` for a fraction of (mostly low-R9) electrons.
* Data only, per electron with scale category ``k`` and smear category ``l`` (assigned with
  |η_SC| and signed η_SC, R9, the true Et = E_true/cosh η_SC, gain and run; optionally a
  smooth function of the true Et on top, :class:`EtDependence`)::

      E_raw = E_reco · (1 + smear[l] · z) / scale[k] · (1 + drift · (run - run_mid) / (run_max - run_min))

  with ``z ~ N(0, 1)``. All factors are multiplicative, so "smearing before or after the
  miscalibration" is the same thing: the written energy is exactly this product. ``scale`` is
  therefore the correction a fit must return (``E_corr = scale · E_raw``) and ``smear`` the
  relative smearing MC needs (``E_smeared = E · (1 + smear · z)``).

Acceptance, applied to the written (float32) quantities, for both electrons:
``|η| < 2.5`` outside ``1.4442 < |η| < 1.566`` for the supercluster *and* the track η,
``Et > 25 / 20`` GeV (leading/subleading) for ``E/cosh η_SC`` *and* ``E/cosh η`` (NanoAOD
``pt``), and ``60 < m_ee < 120`` GeV. Any reader-side definition therefore sees every pair
as accepted.

Random numbers come from ``np.random.Generator(np.random.PCG64(...))`` streams spawned from
``np.random.SeedSequence(seed)``: distinct streams for data, MC, and the extra (non-pair)
NanoAOD electrons of each, so data and MC share no events and the pair events are the same in
both output formats. Candidates are generated in fixed-size batches, so the first ``n``
events of a larger sample are the events of a smaller one with the same seed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np
import uproot
import yaml
from numpy.typing import NDArray

from zcalib._atomic import atomic_write_text, temporary_sibling
from zcalib.categories import CRACK, Category, CategoryScheme, build_scheme
from zcalib.exceptions import InvalidConfig, OutputError
from zcalib.outputs import current_run_id, stamp

__all__ = [
    "DEFAULT_CATEGORIES_YAML",
    "EtDependence",
    "GenerateResult",
    "default_categories",
    "default_truth",
    "generate",
    "parse_et_dependence",
    "parse_gain_thresholds",
]

log = logging.getLogger(__name__)

Format = Literal["ecalelf", "nanoaod"]
_FORMATS: tuple[str, ...] = ("ecalelf", "nanoaod")

#: The default single-electron scheme: 4 |η_SC| bins x 2 R9 bins, for scales and smearings.
DEFAULT_CATEGORIES_YAML = """\
schema_version: 1
scale:
  - {eta: [0, 1], r9: [0, 0.96]}
  - {eta: [1, 1.4442], r9: [0, 0.96]}
  - {eta: [1.566, 2], r9: [0, 0.96]}
  - {eta: [2, 2.5], r9: [0, 0.96]}
  - {eta: [0, 1], r9: [0.96, 10]}
  - {eta: [1, 1.4442], r9: [0.96, 10]}
  - {eta: [1.566, 2], r9: [0.96, 10]}
  - {eta: [2, 2.5], r9: [0.96, 10]}
smear:
  - {eta: [0, 1], r9: [0, 0.96]}
  - {eta: [1, 1.4442], r9: [0, 0.96]}
  - {eta: [1.566, 2], r9: [0, 0.96]}
  - {eta: [2, 2.5], r9: [0, 0.96]}
  - {eta: [0, 1], r9: [0.96, 10]}
  - {eta: [1, 1.4442], r9: [0.96, 10]}
  - {eta: [1.566, 2], r9: [0.96, 10]}
  - {eta: [2, 2.5], r9: [0.96, 10]}
"""

# --- generator constants (GeV) ---------------------------------------------------------
Z_MASS = 91.1876
Z_WIDTH = 2.4952
GEN_MASS_RANGE = (50.0, 150.0)
MASS_WINDOW = (60.0, 120.0)
ET_LEADING = 25.0
ET_SUBLEADING = 20.0
ETA_MAX = 2.5
_ZPT_P0 = 4.5 * math.sqrt(3.0)  # density ∝ pT (1 + pT²/p0²)^-2 peaks at p0/√3
_ZPT_MAX = 250.0
_Y_SIGMA = 2.0
_FSR_PROB = 0.05
_FSR_FRAC = (0.005, 0.5)
_ETA_TRK_RES = 3e-4
_PHI_TRK_RES = 3e-4
_ETA_SC_RES = 2e-3
_ELECTRON_MASS = 0.000511
_BATCH = 1 << 17  # candidates per batch (fixed: samples of one seed are prefixes)
_WRITE_CHUNK = 100_000
_FILL_FLOAT = -999.0
_SCALE_PATTERN = (1.004, 0.992, 1.007, 0.996, 0.998, 1.003, 0.991, 1.009)
_ECALELF_ID_BITS = (0x01, 0x02, 0x04, 0x08, 0x10)  # fiducial, veto, loose, medium, tight
_GAIN_VALUES = np.array([12, 6, 1], dtype=np.uint8)
#: Barrel seed-crystal energies [GeV] above which the seed switches to gain 6 and to gain 1.
GAIN_THRESHOLDS: tuple[float, float] = (150.0, 1600.0)
_EE_GAIN_FACTOR = (2.0, 1.875)  # endcap thresholds / barrel thresholds (300, 3000 GeV)

_CONVENTIONS = (
    "scale: correction for data, E_corr = scale * E_raw (data were written with "
    "E_raw = E_reco * (1 + smear*z) / scale * drift_factor). smear: relative Gaussian width "
    "MC needs, E_smeared = E * (1 + smear * z). drift_factor = 1 + drift * (run - run_mid) / "
    "(run_max - run_min). Categories are assigned with |eta_SC|, R9, the true Et = "
    "E_true/cosh(eta_SC) (generator level), gain (12/6/1) and run, before the injected effects."
)


@dataclass(frozen=True)
class GenerateResult:
    """What :func:`generate` wrote.

    Attributes:
        data: Path of the data ROOT file.
        mc: Path of the MC ROOT file.
        truth: Path of ``truth.json``.
        fmt: Output format (``ecalelf`` or ``nanoaod``).
        tree: Name of the TTree in both ROOT files.
        n_data: Data events written.
        n_mc: MC events written.
        n_candidates_data: Data Z candidates generated to get ``n_data`` accepted events.
        n_candidates_mc: MC Z candidates generated to get ``n_mc`` accepted events.
        seconds: Wall time of the whole call.
    """

    data: Path
    mc: Path
    truth: Path
    fmt: str
    tree: str
    n_data: int
    n_mc: int
    n_candidates_data: int
    n_candidates_mc: int
    seconds: float


def default_categories() -> CategoryScheme:
    """The built-in 8-category scheme (|η_SC| bins [0,1], [1,1.4442], [1.566,2], [2,2.5] x
    R9 bins [0,0.96), [0.96,10)), identical to ``configs/cats_eta_r9.tsv``.

    Example:
        >>> s = default_categories()
        >>> (len(s.scale), len(s.smear), s.n_cells)
        (8, 8, 8)
    """
    raw = yaml.safe_load(DEFAULT_CATEGORIES_YAML)

    def conv(kind: Literal["scale", "smear"]) -> list[Category]:
        cats = []
        for i, item in enumerate(raw[kind]):
            cats.append(
                Category(
                    kind=kind,
                    index=i,
                    eta=(float(item["eta"][0]), float(item["eta"][1])),
                    r9=(float(item["r9"][0]), float(item["r9"][1])),
                )
            )
        return cats

    return build_scheme(conv("scale"), conv("smear"), source="zcalib.generate.default")


def default_truth(scheme: CategoryScheme) -> tuple[list[float], list[float]]:
    """Default injected ``(scales, smears)`` for a scheme.

    Scales cycle through varied values within ±1 % (1.004, 0.992, 1.007, ...). Smears grow
    with |η| (0.006, 0.009, 0.014, 0.016 for the |η| bins of the default scheme, by the
    category's |η| centre) and by 0.005 for low-R9 categories (R9 upper edge <= 0.96).

    Example:
        >>> scales, smears = default_truth(default_categories())
        >>> scales[:3], smears[:4]
        ([1.004, 0.992, 1.007], [0.011, 0.014, 0.019, 0.021])
    """
    scales = [_SCALE_PATTERN[i % len(_SCALE_PATTERN)] for i in range(len(scheme.scale))]
    smears = []
    for cat in scheme.smear:
        lo = max(cat.eta[0], 0.0)
        hi = min(cat.eta[1], ETA_MAX)
        mid = 0.5 * (lo + hi) if hi > lo else lo
        if mid < 1.0:
            base = 0.006
        elif mid < CRACK[1]:
            base = 0.009
        elif mid < 2.0:
            base = 0.014
        else:
            base = 0.016
        if cat.r9[1] <= 0.96:
            base += 0.005
        smears.append(round(base, 4))
    return scales, smears


def generate(
    out_dir: str | Path,
    *,
    n_data: int,
    n_mc: int,
    seed: int = 1,
    fmt: Format = "ecalelf",
    drift: float = 0.0,
    categories: CategoryScheme | None = None,
    truth_scales: Sequence[float] | None = None,
    truth_smears: Sequence[float] | None = None,
    runs: tuple[int, int] = (355000, 356000),
    gain_thresholds: tuple[float, float] = GAIN_THRESHOLDS,
    et_dependence: EtDependence | None = None,
) -> GenerateResult:
    """Generate Z->ee data and MC ntuples with a known miscalibration.

    Args:
        out_dir: Folder for ``data.root``, ``mc.root`` and ``truth.json`` (created if
            missing; existing files of those names are replaced atomically).
        n_data: Number of data events (accepted pairs) to write.
        n_mc: Number of MC events (accepted pairs) to write.
        seed: Seed of all random streams; the same seed gives identical files' contents.
        fmt: ``"ecalelf"`` (tree ``selected``, fixed-size ``[3]`` arrays) or ``"nanoaod"``
            (tree ``Events``, jagged ``Electron_*``). The same seed gives the same pair
            events in both formats.
        drift: Total relative linear drift of the data energy scale across ``runs``
            (``E_raw *= 1 + drift * (run - run_mid) / (run_max - run_min)``).
        categories: Category scheme of the injected scales and smearings; defaults to
            :func:`default_categories`.
        truth_scales: Scale correction per scale category (``E_corr = scale * E_raw``);
            defaults to :func:`default_truth`.
        truth_smears: Extra relative smearing per smear category (what MC needs);
            defaults to :func:`default_truth`.
        runs: Inclusive data run range; data runs are uniform in it (MC has run 1).
        gain_thresholds: Barrel seed-crystal energies [GeV] above which the seed switches to
            gain 6 and to gain 1 (endcap: 2x and 1.875x), the same for data and MC. The
            default gives ~1 % gain-6 and no gain-1 Z electrons; e.g. ``(35, 50)`` puts
            about a third of the barrel electrons in each gain (gain-dependent scales).
        et_dependence: a smooth dependence of the injected values on the true electron Et
            (:class:`EtDependence`), on top of the per-category values. Categories that cut
            on Et are assigned with the true Et too, so Et-binned truth is defined on it.

    Returns:
        The paths written and the event counts.

    Raises:
        InvalidConfig: an argument is out of range (the message names it and what is
            allowed).
        OutputError: the files cannot be written.

    Example:
        >>> import tempfile
        >>> res = generate(tempfile.mkdtemp(), n_data=1000, n_mc=2000, seed=3)
        >>> res.n_data, res.n_mc, res.tree
        (1000, 2000, 'selected')
    """
    t0 = time.perf_counter()
    out = _check_out_dir(out_dir)
    n_data = _check_count("n_data", n_data)
    n_mc = _check_count("n_mc", n_mc)
    seed = _check_seed(seed)
    if fmt not in _FORMATS:
        msg = f"fmt: unknown format {fmt!r}; allowed: 'ecalelf', 'nanoaod'"
        raise InvalidConfig(msg)
    drift = _check_drift(drift)
    run_range = _check_runs(runs)
    scheme = _check_categories(categories)
    thresholds = _check_gain_thresholds(gain_thresholds)
    def_scales, def_smears = default_truth(scheme)
    scales = _check_truth("truth_scales", truth_scales, def_scales, "scale", (0.5, 2.0))
    smears = _check_truth("truth_smears", truth_smears, def_smears, "smear", (0.0, 0.2))

    _make_out_dir(out)  # writable, and the .tmp.root files of a killed run removed

    ss = np.random.SeedSequence(seed)
    s_data, s_mc, s_data_extra, s_mc_extra = ss.spawn(4)
    et_dependence = _check_et_dependence(et_dependence)
    inject = _Injection(
        scheme, np.asarray(scales), np.asarray(smears), drift, run_range, et_dependence
    )
    data, nc_data = _collect(
        n_data, s_data, s_data_extra, is_mc=False, inject=inject, gain=thresholds
    )
    mc, nc_mc = _collect(n_mc, s_mc, s_mc_extra, is_mc=True, inject=None, gain=thresholds)
    log.info(
        "generated %d data (of %d candidates) and %d MC (of %d candidates) events in %.1f s",
        n_data,
        nc_data,
        n_mc,
        nc_mc,
        time.perf_counter() - t0,
    )

    tree = "selected" if fmt == "ecalelf" else "Events"
    writer = _write_ecalelf if fmt == "ecalelf" else _write_nanoaod
    data_path = out / "data.root"
    mc_path = out / "mc.root"
    _atomic_root(data_path, lambda f: writer(f, data, is_mc=False))
    _atomic_root(mc_path, lambda f: writer(f, mc, is_mc=True))

    truth: dict[str, Any] = {
        "schema_version": 1,
        "generator": "zcalib.generate",
        "seed": seed,
        "n_data": n_data,
        "n_mc": n_mc,
        "n_candidates_data": nc_data,
        "n_candidates_mc": nc_mc,
        "format": fmt,
        "tree": tree,
        "files": {"data": data_path.name, "mc": mc_path.name},
        "drift": drift,
        "gain_thresholds": list(thresholds),
        "drift_formula": "E_raw *= 1 + drift * (run - run_mid) / (run_max - run_min)",
        "runs": list(run_range),
        "run_mid": 0.5 * (run_range[0] + run_range[1]),
        "categories": scheme.to_yaml_dict(),
        "scale": [float(x) for x in scales],
        "smear": [float(x) for x in smears],
        "scale_labels": [c.label() for c in scheme.scale],
        "smear_labels": [c.label() for c in scheme.smear],
        "et_dependence": None if et_dependence is None else et_dependence.to_dict(),
        "mass_window": list(MASS_WINDOW),
        "selection": {
            "et_leading": ET_LEADING,
            "et_subleading": ET_SUBLEADING,
            "abs_eta_max": ETA_MAX,
            "crack": list(CRACK),
            "note": "applied to SC and track eta, to E/cosh(eta_SC) and pt; no ID cut",
        },
        "z": {"mass": Z_MASS, "width": Z_WIDTH, "generated_mass_range": list(GEN_MASS_RANGE)},
        "conventions": _CONVENTIONS,
    }
    truth_path = atomic_write_text(out / "truth.json", json.dumps(stamp(truth), indent=2) + "\n")
    dt = time.perf_counter() - t0
    log.debug("wrote %s, %s, %s in %.1f s", data_path, mc_path, truth_path, dt)
    return GenerateResult(
        data=data_path,
        mc=mc_path,
        truth=truth_path,
        fmt=fmt,
        tree=tree,
        n_data=n_data,
        n_mc=n_mc,
        n_candidates_data=nc_data,
        n_candidates_mc=nc_mc,
        seconds=dt,
    )


# --------------------------------------------------------------------------- validation


def _check_out_dir(out_dir: str | Path) -> Path:
    try:
        p = Path(out_dir)
    except TypeError:
        msg = f"out_dir: expected a path, got {type(out_dir).__name__}"
        raise InvalidConfig(msg) from None
    if p.exists() and not p.is_dir():
        msg = f"out_dir: {p} exists and is not a directory"
        raise InvalidConfig(msg)
    return p


def _make_out_dir(p: Path) -> None:
    from zcalib._atomic import clean_stale_temporaries
    from zcalib.outputs import check_writable

    check_writable(p)
    clean_stale_temporaries(p)


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _check_count(name: str, n: Any) -> int:
    if not _is_int(n) or n <= 0:
        msg = f"{name}: must be a positive integer, got {n!r}"
        raise InvalidConfig(msg)
    return int(n)


def _check_seed(seed: Any) -> int:
    if not _is_int(seed) or seed < 0:
        msg = f"seed: must be a non-negative integer, got {seed!r}"
        raise InvalidConfig(msg)
    return int(seed)


def _check_drift(drift: Any) -> float:
    ok = isinstance(drift, int | float | np.integer | np.floating) and not isinstance(drift, bool)
    if not ok or not math.isfinite(float(drift)) or abs(float(drift)) >= 0.5:
        msg = f"drift: must be a finite number with |drift| < 0.5, got {drift!r}"
        raise InvalidConfig(msg)
    return float(drift)


def _check_runs(runs: Any) -> tuple[int, int]:
    ok = (
        isinstance(runs, tuple | list)
        and len(runs) == 2
        and all(_is_int(r) for r in runs)
        and 1 <= runs[0] < runs[1] < 2**32
    )
    if not ok:
        msg = (
            "runs: must be two integers (run_min, run_max) with 1 <= run_min < run_max, "
            f"got {runs!r}"
        )
        raise InvalidConfig(msg)
    return int(runs[0]), int(runs[1])


def _check_categories(categories: object) -> CategoryScheme:
    if categories is None:
        return default_categories()
    if not isinstance(categories, CategoryScheme):
        msg = f"categories: expected a CategoryScheme or None, got {type(categories).__name__}"
        raise InvalidConfig(msg)
    if categories.columns:
        msg = (
            f"categories: the generator cannot inject scales in the input column(s) "
            f"{', '.join(categories.columns)}; allowed: run, eta, sceta, r9, et, gain"
        )
        raise InvalidConfig(msg)
    return categories


def _check_gain_thresholds(thresholds: Any) -> tuple[float, float]:
    ok = (
        isinstance(thresholds, Sequence)
        and len(thresholds) == 2
        and all(isinstance(x, int | float) and math.isfinite(x) for x in thresholds)
        and 0 < thresholds[0] < thresholds[1]
    )
    if not ok:
        msg = f"gain_thresholds: {thresholds!r}; allowed: two seed energies [GeV] 0 < gain6 < gain1"
        raise InvalidConfig(msg)
    return float(thresholds[0]), float(thresholds[1])


def _check_et_dependence(dep: object) -> EtDependence | None:
    if dep is not None and not isinstance(dep, EtDependence):
        msg = f"et_dependence: expected an EtDependence or None, got {type(dep).__name__}"
        raise InvalidConfig(msg)
    return dep


def _check_truth(
    name: str,
    values: Sequence[float] | None,
    default: list[float],
    what: str,
    bounds: tuple[float, float],
) -> list[float]:
    if values is None:
        return default
    try:
        vals = [float(v) for v in values]
    except (TypeError, ValueError):
        msg = f"{name}: expected a sequence of numbers, got {values!r}"
        raise InvalidConfig(msg) from None
    if len(vals) != len(default):
        msg = f"{name}: expected {len(default)} values (one per {what} category), got {len(vals)}"
        raise InvalidConfig(msg)
    lo, hi = bounds
    for i, v in enumerate(vals):
        if not (math.isfinite(v) and lo <= v <= hi) or (what == "scale" and v == lo):
            low = f"({lo:g}" if what == "scale" else f"[{lo:g}"
            msg = f"{name}[{i}]: value {v!r} out of range; allowed: {low}, {hi:g}]"
            raise InvalidConfig(msg)
    return vals


# --------------------------------------------------------------------------- physics


@dataclass(frozen=True)
class EtDependence:
    """A smooth dependence of the injected scales and smearings on the *true* electron Et.

    With ``Et`` the generator-level electron energy over ``cosh η_SC`` (after final-state
    radiation, before any detector effect), the category values ``scale_k`` and
    ``smear_l`` become::

        scale_k(Et) = scale_k · (1 + scale_amplitude · ((Et / 45)^scale_power − 1))
        smear_l(Et) = √(smear_l² + smear_b / Et)

    the forms of the smooth post-fit (:mod:`zcalib.fit.smooth`: ``power`` for scales,
    ``sqrt_inverse`` for smearings), so a fitted curve can be compared with the truth. At
    45 GeV the scale is ``scale_k``; for ``Et → ∞`` the smearing tends to ``smear_l``.

    Attributes:
        scale_amplitude: relative scale change ``A`` (``|A| < 0.2``).
        scale_power: exponent ``b`` of ``(Et/45)^b`` (``|b| <= 5``).
        smear_b: ``b`` of ``√(a² + b/Et)`` [GeV] (``0 <= b <= 1``).

    Example:
        >>> dep = EtDependence(scale_amplitude=0.01, scale_power=-1.0, smear_b=0.009)
        >>> s, m = dep.apply(np.array([1.0, 1.0]), np.array([0.01, 0.01]), np.array([30.0, 90.0]))
        >>> s.round(4).tolist(), m.round(4).tolist()
        ([1.005, 0.995], [0.02, 0.0141])
    """

    scale_amplitude: float = 0.0
    scale_power: float = 1.0
    smear_b: float = 0.0

    def __post_init__(self) -> None:
        checks = (
            ("scale_amplitude", self.scale_amplitude, -0.2, 0.2),
            ("scale_power", self.scale_power, -5.0, 5.0),
            ("smear_b", self.smear_b, 0.0, 1.0),
        )
        for name, v, lo, hi in checks:
            if not (isinstance(v, int | float) and math.isfinite(v) and lo <= v <= hi):
                msg = f"et_dependence.{name}: value {v!r} out of range; allowed: [{lo:g}, {hi:g}]"
                raise InvalidConfig(msg)

    def apply(
        self,
        scale: NDArray[np.float64],
        smear: NDArray[np.float64],
        et_true: NDArray[np.float64],
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """The scale and smearing of each electron at its true Et (arrays of one shape)."""
        et = np.clip(et_true, 1.0, None)
        factor = 1.0 + self.scale_amplitude * ((et / 45.0) ** self.scale_power - 1.0)
        return scale * factor, np.sqrt(smear * smear + self.smear_b / et)

    def to_dict(self) -> dict[str, Any]:
        """The parameters and formulas, as written to ``truth.json``."""
        return {
            "scale_amplitude": self.scale_amplitude,
            "scale_power": self.scale_power,
            "smear_b": self.smear_b,
            "scale_formula": "scale * (1 + scale_amplitude * ((Et/45)^scale_power - 1))",
            "smear_formula": "sqrt(smear^2 + smear_b / Et)",
            "et": "true Et: generator-level electron energy / cosh(eta_SC)",
        }


@dataclass(frozen=True)
class _Injection:
    """Data-only effects: per-category miscalibration and smearing, run drift."""

    scheme: CategoryScheme
    scales: NDArray[np.float64]
    smears: NDArray[np.float64]
    drift: float
    runs: tuple[int, int]
    et: EtDependence | None = None


def _z_kinematics(
    rng: np.random.Generator, n: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Z mass, pT, rapidity and φ (mass: Breit-Wigner in s by inverse CDF)."""
    m2 = Z_MASS * Z_MASS
    mg = Z_MASS * Z_WIDTH
    t_lo = math.atan((GEN_MASS_RANGE[0] ** 2 - m2) / mg)
    t_hi = math.atan((GEN_MASS_RANGE[1] ** 2 - m2) / mg)
    s = m2 + mg * np.tan(rng.uniform(t_lo, t_hi, n))
    mass = np.sqrt(s)
    u_max = 1.0 - 1.0 / (1.0 + (_ZPT_MAX / _ZPT_P0) ** 2)
    u = rng.uniform(0.0, u_max, n)
    pt = _ZPT_P0 * np.sqrt(u / (1.0 - u))  # inverse of F = 1 - 1/(1 + pT²/p0²)
    y = rng.normal(0.0, _Y_SIGMA, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    return mass, pt, y, phi


def _decay(
    rng: np.random.Generator,
    mass: NDArray[np.float64],
    pt: NDArray[np.float64],
    y: NDArray[np.float64],
    phi: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lab-frame energies ``(n, 2)`` and momenta ``(n, 2, 3)`` of both (massless) electrons."""
    n = len(mass)
    # 1 + cos²θ by inverse CDF: c³ + 3c + (4 - 8u) = 0 (Cardano, one real root)
    q = 4.0 - 8.0 * rng.uniform(0.0, 1.0, n)
    r = np.sqrt(0.25 * q * q + 1.0)
    cos_t = np.cbrt(-0.5 * q + r) + np.cbrt(-0.5 * q - r)
    sin_t = np.sqrt(np.clip(1.0 - cos_t * cos_t, 0.0, None))
    phis = rng.uniform(-np.pi, np.pi, n)
    half = 0.5 * mass
    pstar = half[:, None] * np.stack([sin_t * np.cos(phis), sin_t * np.sin(phis), cos_t], 1)
    mt = np.sqrt(mass * mass + pt * pt)
    energy_z = mt * np.cosh(y)
    pz = np.stack([pt * np.cos(phi), pt * np.sin(phi), mt * np.sinh(y)], 1)
    beta = pz / energy_z[:, None]
    gamma = energy_z / mass
    energies = np.empty((n, 2))
    momenta = np.empty((n, 2, 3))
    for k, sign in enumerate((1.0, -1.0)):  # the two daughters, not events
        ps = sign * pstar
        bp = np.einsum("ij,ij->i", beta, ps)
        coef = gamma * gamma / (gamma + 1.0) * bp + gamma * half
        momenta[:, k] = ps + beta * coef[:, None]
        energies[:, k] = gamma * (half + bp)
    return energies, momenta


def _r9(rng: np.random.Generator, abs_eta: NDArray[np.float64]) -> NDArray[np.float64]:
    """R9: golden (narrow, near 0.967) and showering (long low tail) components; the golden
    fraction falls with the tracker material in front of ECAL."""
    barrel = abs_eta < CRACK[0]
    f_golden = np.where(barrel, 0.72 - 0.10 * (abs_eta / CRACK[0]) ** 2, 0.55)
    golden = rng.uniform(0.0, 1.0, abs_eta.shape) < f_golden
    r9_golden = rng.normal(0.967, 0.011, abs_eta.shape)
    r9_shower = 0.975 - rng.gamma(1.5, 0.06, abs_eta.shape)
    return np.clip(np.where(golden, r9_golden, r9_shower), 0.2, 1.05)


def _response(
    rng: np.random.Generator,
    e_true: NDArray[np.float64],
    abs_eta: NDArray[np.float64],
    r9: NDArray[np.float64],
    mu_pu: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Reconstructed energy and its estimated resolution (same model for data and MC)."""
    barrel = abs_eta < CRACK[0]
    shower = np.clip(0.965 - r9, 0.0, 0.3)
    worse = 1.0 + 4.0 * shower
    a = np.where(barrel, 0.028, 0.045) * worse
    c = (
        np.where(
            barrel,
            0.005 + 0.004 * (abs_eta / CRACK[0]) ** 2,
            0.012 + 0.004 * np.clip((abs_eta - CRACK[1]) / (ETA_MAX - CRACK[1]), 0.0, 1.0),
        )
        * worse
    )
    b = np.where(barrel, 0.12, 0.25) * np.sqrt(mu_pu / 25.0)
    sigma = np.sqrt((a * a) / e_true + (b / e_true) ** 2 + c * c)
    bias = -0.02 * shower
    tail_prob = 0.02 + 0.5 * shower
    has_tail = rng.uniform(0.0, 1.0, e_true.shape) < tail_prob
    tail = rng.exponential(1.0, e_true.shape) * (0.02 + 0.1 * shower)
    z = rng.normal(0.0, 1.0, e_true.shape)
    rel = 1.0 + bias + sigma * z - np.where(has_tail, tail, 0.0)
    e_reco = e_true * np.clip(rel, 0.05, None)
    return e_reco, sigma * e_reco


def _gain_index(
    rng: np.random.Generator,
    e_reco: NDArray[np.float64],
    abs_eta: NDArray[np.float64],
    r9: NDArray[np.float64],
    thresholds: tuple[float, float] = GAIN_THRESHOLDS,
) -> NDArray[np.uint8]:
    """ECALELF gain index (0 = gain 12, 1 = gain 6, 2 = gain 1) from the seed-crystal energy."""
    barrel = abs_eta < CRACK[0]
    e_seed = e_reco * 0.85 * np.clip(r9, 0.3, 1.0)
    jitter = 1.0 + 0.03 * rng.normal(0.0, 1.0, e_reco.shape)
    thr6 = thresholds[0] * np.where(barrel, 1.0, _EE_GAIN_FACTOR[0]) * jitter
    thr1 = thresholds[1] * np.where(barrel, 1.0, _EE_GAIN_FACTOR[1]) * jitter
    return ((e_seed > thr6).astype(np.uint8) + (e_seed > thr1).astype(np.uint8)).astype(np.uint8)


def _id_level(
    rng: np.random.Generator, r9: NDArray[np.float64], barrel: NDArray[np.bool_]
) -> NDArray[np.int32]:
    """NanoAOD cutBased level 0-4 (fail, veto, loose, medium, tight), cumulative."""
    u = rng.uniform(0.0, 1.0, r9.shape)
    worse = np.where(barrel, 0.0, 0.03) + 0.15 * np.clip(0.9 - r9, 0.0, 0.5)
    level = np.zeros(r9.shape, dtype=np.int32)
    for p in (0.995, 0.975, 0.94, 0.88):  # veto, loose, medium, tight efficiencies
        level += (u < p - worse).astype(np.int32)
    return level


def _batch(
    rng: np.random.Generator,
    rng_extra: np.random.Generator,
    start: int,
    *,
    is_mc: bool,
    inject: _Injection | None,
    gain: tuple[float, float] = GAIN_THRESHOLDS,
) -> tuple[dict[str, NDArray[Any]], int]:
    """Generate one batch of ``_BATCH`` candidates; return the accepted events' columns.

    Every draw has a fixed size, so the stream position after a batch does not depend on
    how many candidates were accepted.
    """
    n = _BATCH
    mass, zpt, zy, zphi = _z_kinematics(rng, n)
    e_gen, p_gen = _decay(rng, mass, zpt, zy, zphi)
    charge0 = np.where(rng.uniform(0.0, 1.0, n) < 0.5, -1, 1).astype(np.int32)
    fsr = rng.uniform(0.0, 1.0, (n, 2)) < _FSR_PROB
    frac = _FSR_FRAC[0] * (_FSR_FRAC[1] / _FSR_FRAC[0]) ** rng.uniform(0.0, 1.0, (n, 2))
    e_true = e_gen * np.where(fsr, 1.0 - frac, 1.0)

    pt_gen = np.hypot(p_gen[..., 0], p_gen[..., 1])
    eta_true = np.arcsinh(p_gen[..., 2] / pt_gen)
    phi_true = np.arctan2(p_gen[..., 1], p_gen[..., 0])
    eta = eta_true + rng.normal(0.0, _ETA_TRK_RES, (n, 2))
    phi = phi_true + rng.normal(0.0, _PHI_TRK_RES, (n, 2))
    phi = np.where(phi > np.pi, phi - 2 * np.pi, np.where(phi < -np.pi, phi + 2 * np.pi, phi))
    deta_sc = rng.normal(0.0, _ETA_SC_RES, (n, 2))
    abs_sc = np.abs(eta + deta_sc)

    mu_pu = rng.gamma(16.0, 25.0 / 16.0, n)
    n_pu = rng.poisson(mu_pu).astype(np.int32)
    r9 = _r9(rng, abs_sc)
    e_reco, e_err = _response(rng, e_true, abs_sc, r9, mu_pu[:, None])
    gain_idx = _gain_index(rng, e_reco, abs_sc, r9, gain)
    id_level = _id_level(rng, r9, abs_sc < CRACK[0])

    run = rng.integers(
        inject.runs[0] if inject else 1, (inject.runs[1] if inject else 1) + 1, n
    ).astype(np.uint32)
    lumi = rng.integers(1, 1201, n).astype(np.uint32)
    z_smear = rng.normal(0.0, 1.0, (n, 2))
    w_sign = np.where(rng.uniform(0.0, 1.0, n) < 0.02, -1.0, 1.0)
    w_mag = np.exp(rng.normal(0.0, 0.05, n))

    energy = e_reco
    if inject is not None and not is_mc:
        scheme = inject.scheme
        gain_val = _GAIN_VALUES[gain_idx].astype(np.int64)
        et_true = e_true / np.cosh(abs_sc)
        cell = scheme.assign(
            abs_eta=abs_sc.ravel(),
            r9=r9.ravel(),
            et=et_true.ravel(),
            gain=gain_val.ravel(),
            run=np.repeat(run.astype(np.int64), 2),
            sceta=(eta + deta_sc).ravel(),
        ).reshape(n, 2)
        ok = cell >= 0
        safe = np.where(ok, cell, 0)
        scale = np.where(ok, inject.scales[scheme.cell_scale_index()[safe]], 1.0)
        smear = np.where(ok, inject.smears[scheme.cell_smear_index()[safe]], 0.0)
        if inject.et is not None:
            scale, smear = inject.et.apply(scale, smear, et_true)
        width = float(inject.runs[1] - inject.runs[0])
        mid = 0.5 * (inject.runs[0] + inject.runs[1])
        drift_f = 1.0 + inject.drift * (run.astype(np.float64) - mid) / width
        energy = e_reco * np.clip(1.0 + smear * z_smear, 1e-3, None) / scale * drift_f[:, None]

    # written (float32) quantities, and the acceptance on them
    energy32 = energy.astype(np.float32)
    eta32 = eta.astype(np.float32)
    deta32 = deta_sc.astype(np.float32)
    sc_nano = eta32.astype(np.float64) + deta32.astype(np.float64)  # what a NanoAOD reader sees
    sc32 = sc_nano.astype(np.float32)  # ECALELF etaSCEle
    phi32 = phi.astype(np.float32)
    pt32 = (energy32 / np.cosh(eta32.astype(np.float64))).astype(np.float32)

    def fiducial(x: NDArray[Any]) -> NDArray[np.bool_]:
        a = np.abs(x)
        return np.asarray((a < ETA_MAX) & ~((a > CRACK[0]) & (a < CRACK[1])), dtype=np.bool_)

    e64 = energy32.astype(np.float64)
    et_defs = (
        e64 / np.cosh(sc32.astype(np.float64)),
        e64 / np.cosh(sc_nano),
        pt32.astype(np.float64),
    )
    acc = np.all(fiducial(sc32) & fiducial(eta32) & fiducial(sc_nano), axis=1)
    for et in et_defs:
        acc &= (et.max(axis=1) > ET_LEADING) & (et.min(axis=1) > ET_SUBLEADING)
    pt64 = e64 / np.cosh(eta32.astype(np.float64))
    dphi = phi32[:, 0].astype(np.float64) - phi32[:, 1].astype(np.float64)
    deta = eta32[:, 0].astype(np.float64) - eta32[:, 1].astype(np.float64)
    m_ee = np.sqrt(
        np.clip(2.0 * pt64[:, 0] * pt64[:, 1] * (np.cosh(deta) - np.cos(dphi)), 0.0, None)
    )
    acc &= (m_ee > MASS_WINDOW[0]) & (m_ee < MASS_WINDOW[1])

    # extra low-pt (non-pair) electrons for NanoAOD, from their own stream (fixed sizes)
    n_extra = np.searchsorted([0.8, 0.95], rng_extra.uniform(0.0, 1.0, n), side="right")
    x_pt = 5.0 + 10.0 * rng_extra.uniform(0.0, 1.0, (n, 2)) ** 1.5
    x_eta = rng_extra.uniform(-2.4, 2.4, (n, 2))
    x_phi = rng_extra.uniform(-np.pi, np.pi, (n, 2))
    x_deta = rng_extra.normal(0.0, 0.004, (n, 2))
    x_r9 = np.clip(rng_extra.uniform(0.35, 1.0, (n, 2)), 0.0, 0.99)
    x_id = np.searchsorted(
        [0.6, 0.85, 0.95, 0.98], rng_extra.uniform(0.0, 1.0, (n, 2)), side="right"
    ).astype(np.int32)
    x_charge = np.where(rng_extra.uniform(0.0, 1.0, (n, 2)) < 0.5, -1, 1).astype(np.int32)
    x_pt = -np.sort(-x_pt, axis=1)  # descending within the event

    idx = np.flatnonzero(acc)
    # leading (higher NanoAOD pt) first
    swap = pt32[idx, 1] > pt32[idx, 0]
    order = np.stack([swap.astype(np.int64), (~swap).astype(np.int64)], 1)

    def pair(x: NDArray[Any]) -> NDArray[Any]:
        return np.take_along_axis(x[idx], order, axis=1)

    charge = np.stack([charge0, -charge0], 1)
    glob = (start + idx).astype(np.uint64)
    cols: dict[str, NDArray[Any]] = {
        "energy": pair(energy32),
        "eta": pair(eta32),
        "deta_sc": pair(deta32),
        "sc_eta": pair(sc32),
        "phi": pair(phi32),
        "pt": pair(pt32),
        "r9": pair(r9.astype(np.float32)),
        "e_err": pair(e_err.astype(np.float32)),
        "gain_idx": pair(gain_idx),
        "id_level": pair(id_level),
        "charge": pair(charge),
        "e_true": pair(e_true.astype(np.float32)),
        "mass": m_ee[idx].astype(np.float32),
        "candidate": glob,
        "run": run[idx] if not is_mc else np.ones(len(idx), np.uint32),
        "lumi": lumi[idx] if not is_mc else (1 + glob // 500).astype(np.uint32),
        # odd multiplier mod 2^32: a bijection, so event numbers are unique and look random
        "event": ((glob * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(2**32)),
        "weight": (w_sign * w_mag)[idx].astype(np.float32),
        "mu_pu": mu_pu[idx].astype(np.float32),
        "n_pu": n_pu[idx],
        "n_extra": n_extra[idx].astype(np.int64),
        "x_pt": x_pt[idx].astype(np.float32),
        "x_eta": x_eta[idx].astype(np.float32),
        "x_phi": x_phi[idx].astype(np.float32),
        "x_deta": x_deta[idx].astype(np.float32),
        "x_r9": x_r9[idx].astype(np.float32),
        "x_id": x_id[idx],
        "x_charge": x_charge[idx],
    }
    return cols, n


def _collect(
    n_events: int,
    seq: np.random.SeedSequence,
    seq_extra: np.random.SeedSequence,
    *,
    is_mc: bool,
    inject: _Injection | None,
    gain: tuple[float, float] = GAIN_THRESHOLDS,
) -> tuple[dict[str, NDArray[Any]], int]:
    """Generate batches until ``n_events`` are accepted; return them and the candidates used."""
    rng = np.random.Generator(np.random.PCG64(seq))
    rng_extra = np.random.Generator(np.random.PCG64(seq_extra))
    parts: list[dict[str, NDArray[Any]]] = []
    have = 0
    start = 0
    while have < n_events:
        cols, n = _batch(rng, rng_extra, start, is_mc=is_mc, inject=inject, gain=gain)
        start += n
        parts.append(cols)
        have += len(cols["mass"])
    out = {k: np.concatenate([p[k] for p in parts])[:n_events] for k in parts[0]}
    # Z candidates used: up to and including the last kept one
    return out, int(out["candidate"][-1]) + 1


# --------------------------------------------------------------------------- writing


def _atomic_root(path: Path, fill: Any) -> None:
    """Write a ROOT file through ``fill(file)`` into a temporary sibling, then rename."""
    tmp = temporary_sibling(path, suffix=".tmp.root")  # named so later runs clean it if killed
    try:
        with uproot.recreate(tmp) as f:
            fill(f)
            f["zcalib_run_id"] = current_run_id()  # TObjString: which run wrote the file
        Path(tmp).chmod(0o644)  # mkstemp creates 0600; outputs are meant to be shared
        Path(tmp).replace(path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        msg = f"{path}: cannot write output ({err.strerror or err})"
        raise OutputError(msg) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _chunks(n: int) -> Iterator[slice]:
    for lo in range(0, n, _WRITE_CHUNK):
        yield slice(lo, min(lo + _WRITE_CHUNK, n))


def _three(x: NDArray[Any], fill: float, dtype: Any) -> NDArray[Any]:
    """Pad an ``(n, 2)`` pair array to ECALELF's fixed ``(n, 3)`` with ``fill`` in slot 2."""
    out = np.full((len(x), 3), fill, dtype=dtype)
    out[:, :2] = x
    return out


def _ecalelf_columns(c: Mapping[str, NDArray[Any]], *, is_mc: bool) -> dict[str, NDArray[Any]]:
    f32 = np.float32
    bits = np.cumsum(np.array((0, *_ECALELF_ID_BITS[1:]), dtype=np.uint32))  # level -> mask
    ele_id = (bits[c["id_level"]] | np.uint32(_ECALELF_ID_BITS[0])).astype(np.uint32)
    cols: dict[str, NDArray[Any]] = {
        "runNumber": c["run"].astype(np.uint32),
        "lumiBlock": c["lumi"].astype(np.uint32),
        "eventNumber": c["event"].astype(np.uint64),
        "R9Ele": _three(c["r9"], _FILL_FLOAT, f32),
        "etaEle": _three(c["eta"], _FILL_FLOAT, f32),
        "etaSCEle": _three(c["sc_eta"], _FILL_FLOAT, f32),
        "phiEle": _three(c["phi"], _FILL_FLOAT, f32),
        "energy_ECAL_ele": _three(c["energy"], _FILL_FLOAT, f32),
        "invMass_ECAL_ele": c["mass"].astype(f32),
        "gainSeedSC": _three(c["gain_idx"], 0, np.uint8),
        "eleID": _three(ele_id, 0, np.uint32),
        "chargeEle": _three(c["charge"], 0, np.int32),
    }
    if is_mc:
        cols["mcGenWeight"] = c["weight"].astype(f32)
        cols["nPU"] = c["mu_pu"].astype(f32)
        cols["energy_true_ele"] = _three(c["e_true"], _FILL_FLOAT, f32)
    return cols


def _write_ecalelf(f: Any, c: Mapping[str, NDArray[Any]], *, is_mc: bool) -> None:
    cols = _ecalelf_columns(c, is_mc=is_mc)
    types = {
        k: np.dtype((v.dtype, v.shape[1:])) if v.ndim > 1 else v.dtype for k, v in cols.items()
    }
    tree = f.mktree("selected", types, title="ECALELF-like Z->ee ntuple (zcalib.generate)")
    for sl in _chunks(len(cols["runNumber"])):
        tree.extend({k: v[sl] for k, v in cols.items()})


def _nano_electrons(c: Mapping[str, NDArray[Any]]) -> tuple[ak.Array, NDArray[np.int64]]:
    """Jagged ``Electron`` record: the pair (pt-ordered) then 0-2 extra low-pt electrons."""
    n = len(c["mass"])
    counts = 2 + c["n_extra"]
    keep = np.arange(4)[None, :] < counts[:, None]  # (n, 4) slots: pair + up to 2 extras

    def flat(pair_vals: NDArray[Any], extra_vals: NDArray[Any], dtype: Any) -> NDArray[Any]:
        full = np.empty((n, 4), dtype=dtype)
        full[:, :2] = pair_vals
        full[:, 2:] = extra_vals
        return full[keep]

    f32 = np.float32
    x_energy = c["x_pt"].astype(np.float64) * np.cosh(c["x_eta"].astype(np.float64))
    charge = flat(c["charge"], c["x_charge"], np.int32)
    fields = {
        "pt": flat(c["pt"], c["x_pt"], f32),
        "eta": flat(c["eta"], c["x_eta"], f32),
        "phi": flat(c["phi"], c["x_phi"], f32),
        "mass": np.full(int(counts.sum()), _ELECTRON_MASS, dtype=f32),
        "deltaEtaSC": flat(c["deta_sc"], c["x_deta"], f32),
        "r9": flat(c["r9"], c["x_r9"], f32),
        "energyErr": flat(c["e_err"], (0.05 * x_energy).astype(f32), f32),
        "seedGain": flat(_GAIN_VALUES[c["gain_idx"]], np.full((n, 2), 12, np.uint8), np.uint8),
        "cutBased": flat(c["id_level"], c["x_id"], np.int32),
        "charge": charge,
        "pdgId": (-11 * charge).astype(np.int32),
    }
    record = ak.zip({k: ak.unflatten(v, counts) for k, v in fields.items()})
    return record, counts


def _write_nanoaod(f: Any, c: Mapping[str, NDArray[Any]], *, is_mc: bool) -> None:
    electrons, _ = _nano_electrons(c)
    cols: dict[str, Any] = {
        "run": c["run"].astype(np.uint32),
        "luminosityBlock": c["lumi"].astype(np.uint32),
        "event": c["event"].astype(np.uint64),
    }
    if is_mc:
        cols["genWeight"] = c["weight"].astype(np.float32)
        cols["Pileup_nTrueInt"] = c["mu_pu"].astype(np.float32)
        cols["Pileup_nPU"] = c["n_pu"].astype(np.int32)
    types: dict[str, Any] = {k: v.dtype for k, v in cols.items()}
    types["Electron"] = electrons.type.content
    tree = f.mktree("Events", types, title="NanoAOD-like Z->ee events (zcalib.generate)")
    for sl in _chunks(len(cols["run"])):
        chunk = {k: v[sl] for k, v in cols.items()}
        chunk["Electron"] = electrons[sl]
        tree.extend(chunk)


# --------------------------------------------------------------- options written as text
def parse_gain_thresholds(text: str, where: str = "gain_thresholds") -> tuple[float, float]:
    """Gain-switch thresholds written ``G6,G1``: two seed energies [GeV], 0 < G6 < G1
    (``generate(gain_thresholds=...)``); the error message names ``where``.

    Example:
        >>> parse_gain_thresholds("35,50")
        (35.0, 50.0)
    """
    try:
        g6, g1 = (float(v) for v in text.split(","))
    except ValueError:
        g6 = g1 = float("nan")
    if not (0 < g6 < g1 < float("inf")):
        msg = (
            f"{where} {text!r}; allowed: two seed energies [GeV] G6,G1 with 0 < G6 < G1, e.g. 35,50"
        )
        raise InvalidConfig(msg)
    return g6, g1


#: Keys of :func:`parse_et_dependence` -> :class:`EtDependence` fields.
ET_KEYS = {"A": "scale_amplitude", "P": "scale_power", "B": "smear_b"}


def parse_et_dependence(text: str, where: str = "et_dependence") -> EtDependence:
    """An :class:`EtDependence` written ``A=..,P=..,B=..`` (any subset, each key once; keys
    :data:`ET_KEYS`); the error messages name ``where``, the item and the field.

    Example:
        >>> parse_et_dependence("A=0.01,P=-1")
        EtDependence(scale_amplitude=0.01, scale_power=-1.0, smear_b=0.0)
    """
    allowed = "KEY=VALUE pairs separated by commas, keys A, P, B (e.g. A=0.01,P=-1,B=0.009)"
    kw: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or key not in ET_KEYS or ET_KEYS[key] in kw or math.isnan(number):
            msg = f"{where} {text!r}: bad item {item!r}; allowed: {allowed}"
            raise InvalidConfig(msg)
        kw[ET_KEYS[key]] = number
    try:
        return EtDependence(**kw)
    except InvalidConfig as err:
        detail = str(err)
        for key, field in ET_KEYS.items():
            detail = detail.replace(f"et_dependence.{field}:", f"{key} ({field}):")
        msg = f"{where} {text!r}: {detail}"
        raise InvalidConfig(msg) from None
