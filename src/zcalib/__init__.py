"""zcalib: residual electron energy scales (data) and smearings (MC) from Z->ee histograms.

The public API is importable from the package root; everything is imported lazily, so
``import zcalib`` stays fast and pulls in neither coffea nor numpy until a name is used.

=============================  ==========================================================
name                           what
=============================  ==========================================================
``CalibrationConfig``          what to calibrate (immutable; ``for_format``, ``with_overrides``)
``load_datasets``              dataset description YAML → ``DatasetConfig``
``datasets_from_files``        ``data=`` / ``mc=`` file lists → ``DatasetConfig``
``fill_histograms``            datasets → ``Histograms`` (all variations, one pass)
``load_histograms``            saved ``.npz`` → ``Histograms``
``run_fit``                    histograms → ``Fit`` (scales, smearings, errors)
``validate``                   histograms + fit → ``Validation`` (``zcalib.validation``)
``write_corrections``          fit → ``Corrections`` (correctionlib JSON, legacy text)
``calibrate``                  all of the above → ``Calibration``
=============================  ==========================================================

``fill_histograms`` and ``run_fit`` are :func:`zcalib.api.histograms` and
:func:`zcalib.api.fit` (``zcalib.histograms`` and ``zcalib.fit`` are sub-packages).

Example:
    >>> import zcalib
    >>> cfg = zcalib.CalibrationConfig.for_format("nanoaod")
    >>> cfg.with_overrides(selection={"id_level": "tight"}).id_level
    'tight'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zcalib.api import Calibration, Corrections, Fit, Histograms, Validation
    from zcalib.api import calibrate as calibrate
    from zcalib.api import datasets_from_files as datasets_from_files
    from zcalib.api import fit as run_fit
    from zcalib.api import histograms as fill_histograms
    from zcalib.api import load_datasets as load_datasets
    from zcalib.api import load_histograms as load_histograms
    from zcalib.api import validate as validate
    from zcalib.api import write_corrections as write_corrections
    from zcalib.calibration import CalibrationConfig, McWeight, PriorCorrection

__all__ = [
    "Calibration",
    "CalibrationConfig",
    "Corrections",
    "Fit",
    "Histograms",
    "McWeight",
    "PriorCorrection",
    "Validation",
    "__version__",
    "calibrate",
    "datasets_from_files",
    "fill_histograms",
    "load_datasets",
    "load_histograms",
    "run_fit",
    "validate",
    "write_corrections",
]

#: public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "CalibrationConfig": ("zcalib.calibration", "CalibrationConfig"),
    "McWeight": ("zcalib.calibration", "McWeight"),
    "PriorCorrection": ("zcalib.calibration", "PriorCorrection"),
    "Calibration": ("zcalib.api", "Calibration"),
    "Corrections": ("zcalib.api", "Corrections"),
    "Fit": ("zcalib.api", "Fit"),
    "Histograms": ("zcalib.api", "Histograms"),
    "Validation": ("zcalib.api", "Validation"),
    "calibrate": ("zcalib.api", "calibrate"),
    "datasets_from_files": ("zcalib.api", "datasets_from_files"),
    "fill_histograms": ("zcalib.api", "histograms"),
    "load_datasets": ("zcalib.api", "load_datasets"),
    "load_histograms": ("zcalib.api", "load_histograms"),
    "run_fit": ("zcalib.api", "fit"),
    "validate": ("zcalib.api", "validate"),
    "write_corrections": ("zcalib.api", "write_corrections"),
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("zcalib")
        except metadata.PackageNotFoundError:
            return "unknown"
    if name == "api":
        return importlib.import_module("zcalib.api")
    target = _LAZY.get(name)
    if target is None:
        msg = f"module 'zcalib' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
