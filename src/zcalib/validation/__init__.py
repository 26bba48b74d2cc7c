"""Validation of a derivation: data/MC plots, NLL scans and the HTML report.

Public API:

* :func:`load_plot_categories` → :class:`PlotCategory` (pyval plot-category TSV or YAML)
* :func:`run_validation` → :class:`ValidationResult` (``zcalib validate``): data/MC plots
  per plot category, from histograms or from the ntuples (:class:`ValidationProcessor`)
* :func:`plot_data_mc` → a matplotlib ``Figure`` of one data/MC comparison
* :func:`run_scans` / :func:`nll_scans` → :class:`NllScan` (``zcalib scan``)
* :func:`write_report` (``zcalib report``): one self-contained HTML page per derivation

Example:
    >>> from zcalib.validation import PlotLabels
    >>> PlotLabels(lumi_label="59.7 fb$^{-1}$ (13 TeV)").data_title
    'Data'
"""

from __future__ import annotations

from zcalib.validation.plotcats import LeptonCuts, PlotCategory, load_plot_categories
from zcalib.validation.plots import (
    PlotInput,
    PlotLabels,
    ValidationProcessor,
    ValidationResult,
    data_mc_summary,
    plot_data_mc,
    run_validation,
)
from zcalib.validation.report import write_report
from zcalib.validation.scans import NllScan, ScanRun, nll_scans, plot_scan, run_scans

__all__ = [
    "LeptonCuts",
    "NllScan",
    "PlotCategory",
    "PlotInput",
    "PlotLabels",
    "ScanRun",
    "ValidationProcessor",
    "ValidationResult",
    "data_mc_summary",
    "load_plot_categories",
    "nll_scans",
    "plot_data_mc",
    "plot_scan",
    "run_scans",
    "run_validation",
    "write_report",
]
