"""The derivation chain: run divide, time stability, Z pT x |y| weights, cached pipeline.

Public API:

* :func:`run_divide` → :class:`RunBins` (``zcalib run-divide``), :func:`load_run_bins`;
* :func:`time_stability` → :class:`TimeStabilityResult` (``zcalib time-stability``);
* :func:`derive_zweights` → :class:`ZWeights`, :func:`load_zweight_spec`;
* :func:`load_pipeline` → :class:`LoadedPipeline`, :func:`run_pipeline` →
  :class:`PipelineResult` (``zcalib pipeline``); :func:`closure_verdict` judges a residual
  fit the way a pipeline ``closure`` step does (scales consistent with 1, smearings with 0).

:class:`~zcalib.runner.EventLoop` (alias :class:`ChainLoop`) bundles what every event loop of the chain shares (inputs, selection,
binning, MC weights, prior corrections, executor). See ``docs/pipeline.md``.
"""

from __future__ import annotations

from zcalib.chain._events import ChainLoop
from zcalib.chain.config import LoadedPipeline, PipelineConfig, load_pipeline
from zcalib.chain.pipeline import PipelineResult, StepOutputs, closure_verdict, run_pipeline
from zcalib.chain.run_divide import RunBin, RunBins, divide, load_run_bins, run_divide
from zcalib.chain.time_stability import TimeStabilityResult, time_stability
from zcalib.chain.zweights import ZWeights, derive_zweights, load_zweight_spec, write_zweights

__all__ = [
    "ChainLoop",
    "LoadedPipeline",
    "PipelineConfig",
    "PipelineResult",
    "RunBin",
    "RunBins",
    "StepOutputs",
    "TimeStabilityResult",
    "ZWeights",
    "closure_verdict",
    "derive_zweights",
    "divide",
    "load_pipeline",
    "load_run_bins",
    "load_zweight_spec",
    "run_divide",
    "run_pipeline",
    "time_stability",
    "write_zweights",
]
