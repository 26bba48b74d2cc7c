"""Exceptions raised by zcalib.

Every error a user can cause derives from :class:`ZcalibError` and carries a one-line
message naming the file, the field, the bad value and what is allowed. The CLI maps
``ZcalibError`` to exit code 1, :class:`FitFailed` (a fit that ran but did not converge) to
exit code 3, and anything else to exit code 2.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FitError",
    "FitFailed",
    "InputError",
    "InvalidCategories",
    "InvalidConfig",
    "OutputError",
    "ZcalibError",
]


class ZcalibError(Exception):
    """Base class of all user-facing zcalib errors (CLI exit code 1)."""


class InvalidConfig(ZcalibError):
    """A configuration file (YAML/TSV) is malformed or semantically invalid."""


ConfigError = InvalidConfig


class InvalidCategories(InvalidConfig):
    """A category scheme has gaps, overlaps, bad ranges or empty categories."""


class InputError(ZcalibError):
    """An input file is missing, unreadable, lacks a branch/tree, or holds bad values."""


class FitError(ZcalibError):
    """The fit cannot be set up or did not produce a usable result."""


class FitFailed(FitError):
    """A fit ran but its result is not trustworthy (status ``failed``; CLI exit code 3).

    The message says why in words (parameters at a fit-range bound, EDM or gradient test
    failed, Hessian not positive definite).
    """


class OutputError(ZcalibError):
    """An output could not be written."""
