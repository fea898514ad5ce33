"""Independent work spread over the cores with threads (for work that releases the GIL: file
reads, inflating, CRCs), results kept in input order so that output never depends on timing; a
producer run a bounded number of items ahead of its consumer; and whether forked worker
processes can be used at all here."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
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


def read_ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """The items of ``items``, in order, produced by a thread of their own at most ``depth`` items
    ahead of the caller (memory: ``depth`` items). An exception of the producer is raised here, at
    its place in the sequence. Closing this iterator early (the caller's error) stops the producer
    and waits for it: no thread outlives the iteration, and nothing of ``items`` is read after.

    An item the producer hands over must stay valid while ``depth`` + 1 further items are produced
    (a producer reusing buffers keeps ``depth`` + 2 of them)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for x in items:
                if not put((True, x)):
                    return
            end: tuple = (False, None)
        except BaseException as exc:  # handed to the consumer, raised there
            end = (False, exc)
        put(end)

    worker = threading.Thread(target=run, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            ok, x = q.get()
            if ok:
                yield x
            elif x is None:
                return
            else:
                raise x
    finally:
        stop.set()
        worker.join()


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


def forked_pool(workers: int):
    """A ``ProcessPoolExecutor`` of ``workers`` forked processes that end when this process does,
    however it ends: a parent killed with SIGKILL cannot shut its pool down, and workers left
    waiting on its queues would live on for ever, holding the run's stdout and stderr open (a
    pipeline reading the run never saw its end). Each worker watches its parent and exits when it
    is gone."""
    import concurrent.futures
    import multiprocessing

    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork"), initializer=_watch_parent, initargs=(os.getpid(),))


def _watch_parent(parent: int) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="influx-archive-parent-watch", daemon=True).start()
