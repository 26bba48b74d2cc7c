"""Numba compilation on first use: the per-event loops (pair cuts, category look-up, merging
of filled bins) are compiled the first time they run in a process, so modules that never
run them (the fit, the CLI's other commands) do not import numba."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["jitted", "vectorized"]


@functools.cache
def jitted(func: Callable[..., Any]) -> Callable[..., Any]:
    """``numba.njit(cache=True)`` of ``func``, compiled once per process (cached on disk)."""
    import numba

    return numba.njit(cache=True)(func)


@functools.cache
def vectorized(func: Callable[..., Any], n_args: int) -> Callable[..., Any]:
    """``numba.vectorize`` of a scalar ``func`` of ``n_args`` float64 arguments: a numpy
    ufunc evaluating it in one compiled pass, without temporary arrays (cached on disk)."""
    import numba

    signature = numba.float64(*([numba.float64] * n_args))
    return numba.vectorize([signature], cache=True)(func)  # type: ignore[no-any-return]
