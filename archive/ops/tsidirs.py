"""build-tsi's hold on the data directory: the busy check (another process holding a file below
it open: influxd running), the directory's own flock, and :class:`Beneath`, through which every
database and shard directory below it is reached without following a link (see
:mod:`influx_archive.archive.ops.buildtsi`)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from collections.abc import Iterable, Iterator

from ..errors import ArchiveError, BusyError, SourceIOError, TargetError, TargetIOError
from ..staging import SymlinkError, open_beneath


def holders(paths: Iterable[str]) -> tuple[int, str] | None:
    """(pid, file) of another process holding a file below one of ``paths`` open, if any."""
    roots = [os.path.realpath(p) + os.sep for p in paths]
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        if pid == me:
            continue
        fddir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fddir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fddir, fd))
            except OSError:
                continue
            for r in roots:
                if target.startswith(r) or target + os.sep == r:
                    return pid, target
    return None


class DataDirLock:
    """flock on the data directory itself: one build-tsi (or other locking run) at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError as exc:
            raise SourceIOError(f"cannot open source data directory: {exc.strerror}", path=path) from exc
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise BusyError("another influx-archive run holds the data directory's lock", path=path) from exc
            raise TargetIOError(f"cannot lock target data directory: {exc.strerror}", path=path) from exc

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


_FD_PATH = re.compile(r"^/proc/self/fd/(\d+)(?=/|$)")


class Beneath:
    """Database and shard directories below the data directory (``data_fd``, the lock's
    descriptor), each opened through descriptors without following a link, and named as
    ``/proc/self/fd/N`` for the reads, stages and renames that follow: a link swapped in for one
    of their paths during the run is never followed. :meth:`shown` turns such a name back into
    the path the user knows, for messages."""

    def __init__(self, data_fd: int, datadir: str) -> None:
        self.data_fd = data_fd
        self.datadir = datadir
        self.names: dict[int, str] = {}  # fd -> path shown for it
        self.dbs: dict[str, int] = {}

    def _open(self, base_fd: int, rel: tuple[str, ...], shown: str) -> int:
        try:
            fd = open_beneath(base_fd, rel)
        except SymlinkError:
            raise TargetError(
                "is a symbolic link or not a directory now (swapped in during the run?); build-tsi never "
                "writes through links", path=shown,
            ) from None
        except OSError as exc:
            raise TargetIOError(f"cannot open target directory: {exc.strerror}", path=shown) from exc
        self.names[fd] = shown
        return fd

    def db(self, db: str) -> str:
        """The database directory, opened once for the run."""
        fd = self.dbs.get(db)
        if fd is None:
            fd = self.dbs[db] = self._open(self.data_fd, (db,), os.path.join(self.datadir, db))
        return f"/proc/self/fd/{fd}"

    @contextlib.contextmanager
    def shard(self, database: str, retention_policy: str, path: str) -> Iterator[str]:
        """The shard directory ``path`` (``<datadir>/<database>/<retention_policy>/<id>``), open
        for the ``with`` block."""
        self.db(database)
        fd = self._open(self.dbs[database], (retention_policy, os.path.basename(path)), path)
        try:
            yield f"/proc/self/fd/{fd}"
        except ArchiveError as exc:  # named while the descriptor is still this shard's
            exc.path = self.shown(exc.path)
            raise
        finally:
            del self.names[fd]
            os.close(fd)

    def shown(self, path: str | None) -> str | None:
        m = _FD_PATH.match(path) if path else None
        if path is None or m is None or int(m.group(1)) not in self.names:
            return path
        return self.names[int(m.group(1))] + path[m.end():]

    def close(self) -> None:
        for fd in self.dbs.values():
            os.close(fd)
        self.dbs.clear()
