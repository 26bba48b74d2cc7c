"""Scale and smearing fit: binned multinomial NLL of data against shifted + smeared MC.

Public API:

* :func:`fit_histograms` / :func:`fit_arrays` → :class:`FitResult`
* :class:`FitConfig` (immutable settings)
* :func:`inject` / :func:`inject_arrays` → :class:`InjectionResult` (method accuracy)
* :func:`synthetic_histograms` (event-level toy data for tests and benchmarks)

Example:
    >>> from zcalib.fit import FitConfig
    >>> FitConfig().window
    (80.0, 100.0)
"""

from __future__ import annotations

from zcalib.fit.config import FitConfig, McStatMethod, StartStyle
from zcalib.fit.fitter import fit_arrays, fit_histograms
from zcalib.fit.inject import InjectionResult, inject, inject_arrays
from zcalib.fit.problem import FitProblem, build_problem
from zcalib.fit.result import CategoryFit, FitResult, FitStatus, RegionInfo
from zcalib.fit.synthetic import synthetic_histograms

__all__ = [
    "CategoryFit",
    "FitConfig",
    "FitProblem",
    "FitResult",
    "FitStatus",
    "InjectionResult",
    "McStatMethod",
    "RegionInfo",
    "StartStyle",
    "build_problem",
    "fit_arrays",
    "fit_histograms",
    "inject",
    "inject_arrays",
    "synthetic_histograms",
]
