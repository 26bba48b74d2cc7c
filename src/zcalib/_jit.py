"""Numba compilation on first use: the per-event loops (pair cuts, category look-up, merging
of filled bins) are compiled the first time they run in a process, so modules that never
run them (the fit, the CLI's other commands) do not import numba."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["jitted"]


@functools.cache
def jitted(func: Callable[..., Any]) -> Callable[..., Any]:
    """``numba.njit(cache=True)`` of ``func``, compiled once per process (cached on disk)."""
    import numba

    return numba.njit(cache=True)(func)
