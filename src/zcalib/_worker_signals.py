"""Dask worker preload of local clusters: the worker process ignores SIGINT.

A Ctrl-C in a terminal reaches every process of the foreground group; each local Dask
worker would print a ``KeyboardInterrupt`` traceback. The command (the only process that
should react) stops the run and closes the cluster, which ends the workers.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:  # noqa: ARG001  (the preload protocol passes it)
    """Ignore SIGINT in this worker process (``distributed`` preload hook)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
