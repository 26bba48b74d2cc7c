"""Getting a Dask ``distributed.Client``: a local cluster by default, or an existing scheduler.

The local cluster uses worker *processes* bound to 127.0.0.1 with one thread each, so the
histogram filling is truly parallel and nothing listens on external interfaces.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from zcalib.exceptions import InvalidConfig

__all__ = ["dask_client"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def dask_client(
    *, scheduler: str | None = None, workers: int = 2, memory_limit: str = "4GiB"
) -> Iterator[Any]:
    """Yield a ``distributed.Client``; a local cluster is created and closed if needed.

    Args:
        scheduler: address of an existing scheduler (``tcp://host:8786``,
            ``tls://localhost:8786`` on coffea-casa). ``None`` starts a LocalCluster.
        workers: number of local worker processes.
        memory_limit: memory limit per local worker.

    Raises:
        InvalidConfig: the scheduler cannot be reached.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            msg = f"cannot connect to Dask scheduler {scheduler} ({err})"
            raise InvalidConfig(msg) from None
        log.info("connected to %s (dashboard %s)", scheduler, client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        memory_limit=memory_limit,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    log.info("local Dask cluster with %d workers (dashboard %s)", workers, client.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
