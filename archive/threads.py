"""Independent work spread over the cores with threads (for work that releases the GIL: file
reads, inflating, CRCs), results kept in input order so that output never depends on timing; and
whether forked worker processes can be used at all here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_on_cores(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]`` on up to one thread per core; the first exception is raised."""
    items = list(items)
    workers = min(os.cpu_count() or 1, len(items))
    if workers <= 1:
        return [fn(x) for x in items]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def process_pool_available() -> bool:
    """Whether forked worker processes can be started: their queues need POSIX semaphores
    (``/dev/shm``), which a container without ``/dev/shm`` or a file size limit refuses. Callers
    then do the same work in this process (same output)."""
    import multiprocessing

    try:
        multiprocessing.get_context("fork").Lock()
    except OSError:
        return False
    return True
