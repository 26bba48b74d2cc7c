"""Statistical validation of a derivation with cabinetry/pyhf.

A HistFactory workspace of the pair-mass histograms (data vs the MC template, free
normalisation per region, MC statistical uncertainties, one shape nuisance per scale and
smear category whose step is the derived calibration uncertainty), fitted with cabinetry:
nuisance pulls, saturated-model goodness of fit, pre/post-fit plots. After correction the
pulls must be compatible with 0 and the fit good; before correction they are not.

Public API:

* :func:`run_stats` → :class:`StatsResult` (writes ``stats.json``, ``workspace.json``, plots)
* :func:`build_model` → :class:`StatsModel`, :func:`fit_model`
* :class:`StatsConfig`, :class:`NuisanceSteps`, :func:`steps_from_corrections`,
  :func:`default_steps`

Example:
    >>> from zcalib.stats import StatsConfig
    >>> StatsConfig().window, StatsConfig().bin_width
    ((80.0, 100.0), 1.0)
"""

from __future__ import annotations

from zcalib.stats.fit import NuisancePull, StatsResult, fit_model, run_stats, write_plots
from zcalib.stats.workspace import (
    NuisanceSteps,
    RegionTemplates,
    StatsConfig,
    StatsModel,
    build_model,
    build_templates,
    cabinetry_config,
    default_steps,
    shift_smear,
    steps_from_corrections,
)

__all__ = [
    "NuisancePull",
    "NuisanceSteps",
    "RegionTemplates",
    "StatsConfig",
    "StatsModel",
    "StatsResult",
    "build_model",
    "build_templates",
    "cabinetry_config",
    "default_steps",
    "fit_model",
    "run_stats",
    "shift_smear",
    "steps_from_corrections",
    "write_plots",
]
