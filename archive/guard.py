"""Guards for verbs that write into (or back up) a server's directories.

Two mechanisms, both refusing with :class:`~influx_archive.archive.errors.BusyError` (exit 5):

* :class:`TargetLock` — one writer per target. An exclusive ``flock`` on
  :data:`LOCK_NAME` inside each target directory (``meta/``, ``data/``, ``wal/``), taken in a
  fixed order (by device and inode, so two runs naming the same directories differently cannot
  deadlock) and held for the whole run. The lock file records the holder's pid; a second run is
  told ``target in use by pid N``. The lock file is removed again when the run ends (it is
  re-checked to still be the locked inode first, so a run that opened the old file cannot think it
  holds the lock). A run killed outright leaves the file behind: it is reused by the next run.
  influxd 1.6.7 ignores it: ``tsdb/store.go`` ``loadShards`` skips non-directories in the data
  directory ("Skipping database dir"), ``services/meta/client.go`` reads only ``meta.db``, and
  WAL directories are opened per shard (``<wal>/<db>/<rp>/<id>``), never listed at the top.
* :func:`processes_using` / :func:`refuse_live` — never under a running influxd. Every process's
  ``/proc/<pid>/cwd`` and ``/proc/<pid>/fd/*`` are read (this process is skipped); any path equal
  to or inside a guarded directory means that process is using it. For a process named
  ``influxd``, the directories its configuration file names (``-config``, or
  ``INFLUXDB_CONFIG_PATH``; ``[meta] dir``, ``[data] dir`` and ``wal-dir``) count as well, since an
  idle influxd holds nothing open in ``meta/`` (nor in ``data/`` before its first shard).
  A process holding one of the guarded directories' lock files is another influx-archive run and
  is left to the lock to report ("target in use by pid N"). Processes whose ``/proc`` entries
  cannot be read (another user's, without privilege) are not seen: run as root (or as influxd's
  user) for the scan to be complete.

Both are per process: threads of one process share its locks (the lock is re-entrant so that a
library call inside a locked CLI run works).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ArchiveError, BusyError, TargetError, UsageError
from .untrusted import open_regular

LOCK_NAME = ".influx-archive.lock"
LOCK_MODE = 0o644
PARENT_MODE = 0o755  # missing parents of a target directory
MAX_LOCK_READ = 64  # bytes of the lock file read for the holder's pid
MAX_CONFIG_READ = 1 << 20  # bytes of an influxd configuration file read by the scan

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# --------------------------------------------------------------------------------------------
# the target lock


def ensure_dir(path: Path, mode: int) -> list[Path]:
    """Create ``path`` and its missing parents (``mode`` for each); returns those created, in
    creation order. An existing ``path`` must be a directory (a symbolic link to one is fine: the
    user named it)."""
    missing: list[Path] = []
    q = path
    while not os.path.lexists(q):
        missing.append(q)
        if q == q.parent:
            break
        q = q.parent
    created: list[Path] = []
    for d in reversed(missing):
        try:
            os.mkdir(d, mode if d == path else PARENT_MODE)
        except FileExistsError:
            continue
        except OSError as exc:
            raise TargetError(f"target: cannot create directory: {exc.strerror}", path=str(d)) from exc
        os.chmod(d, mode if d == path else PARENT_MODE)
        created.append(d)
    if not path.is_dir():
        raise UsageError("target is not a directory", path=str(path))
    return created


@dataclass
class _Held:
    path: Path  # the lock file
    dir_fd: int
    fd: int
    key: tuple[int, int]  # (st_dev, st_ino) of the directory


_HELD: dict[tuple[int, int], list] = {}  # directory (dev, ino) -> [_Held, count]: re-entrant in a process
_CREATED: list[Path] = []  # directories created by the locks held now, in creation order


def _holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, MAX_LOCK_READ, 0).decode("ascii", "replace").split()
        if text:
            return int(text[0])
    return None


def _lock_one(directory: Path) -> tuple[_Held, bool]:
    """Lock ``directory`` (already resolved, existing). Returns (held, newly taken)."""
    try:
        dir_fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        raise TargetError(f"target: cannot open directory: {exc.strerror}", path=str(directory)) from exc
    try:
        st = os.fstat(dir_fd)
        key = (st.st_dev, st.st_ino)
        if key in _HELD:
            os.close(dir_fd)
            _HELD[key][1] += 1
            return _HELD[key][0], False
        lock_path = directory / LOCK_NAME
        while True:
            try:
                fd = os.open(
                    LOCK_NAME,
                    os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    LOCK_MODE,
                    dir_fd=dir_fd,
                )
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise TargetError(
                        "target lock file is a symbolic link; refusing to use it", path=str(lock_path)
                    ) from exc
                raise TargetError(f"target: cannot open the lock file: {exc.strerror}", path=str(lock_path)) from exc
            try:
                fst = os.fstat(fd)
                if not stat.S_ISREG(fst.st_mode):
                    raise TargetError("target lock file is not a regular file; refusing to use it", path=str(lock_path))
                if fst.st_nlink != 1:  # a hard link planted there: writing our pid would change that file too
                    raise TargetError(
                        f"target lock file has {fst.st_nlink} hard links (a file elsewhere too); refusing to use "
                        "it: remove it", path=str(lock_path))
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        pid = _holder(fd)
                        for _ in range(50):  # the holder writes its pid just after it locks
                            if pid is not None:
                                break
                            time.sleep(0.01)
                            pid = _holder(fd)
                        who = f"pid {pid}" if pid is not None else "another influx-archive run"
                        raise BusyError(f"target in use by {who}; wait for it to finish", path=str(lock_path)) from exc
                    raise TargetError(f"target: cannot lock: {exc.strerror}", path=str(lock_path)) from exc
                # The holder before us may have removed the file after we opened it: then the
                # lock we hold is on an unlinked inode, and we must take the new file's lock.
                try:
                    now = os.stat(LOCK_NAME, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_dev, now.st_ino) != (fst.st_dev, fst.st_ino):
                    os.close(fd)
                    continue
                try:
                    os.ftruncate(fd, 0)
                    if os.pwrite(fd, f"{os.getpid()}\n".encode(), 0) == 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    os.fchmod(fd, LOCK_MODE)
                except OSError as exc:  # a full disk, say: the file is ours (we hold it), remove it
                    with contextlib.suppress(OSError):
                        os.unlink(LOCK_NAME, dir_fd=dir_fd)
                    raise TargetError(f"target: cannot write the lock file: {exc.strerror}",
                                      path=str(lock_path)) from exc
            except BaseException:
                os.close(fd)
                raise
            held = _Held(lock_path, dir_fd, fd, key)
            _HELD[key] = [held, 1]
            return held, True
    except BaseException:
        with contextlib.suppress(OSError):
            if not any(h[0].dir_fd == dir_fd for h in _HELD.values()):
                os.close(dir_fd)
        raise


def _unlock_one(held: _Held) -> None:
    entry = _HELD.get(held.key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] > 0:
        return
    del _HELD[held.key]
    with contextlib.suppress(OSError):
        os.unlink(LOCK_NAME, dir_fd=held.dir_fd)  # still ours: nobody else could lock it
    with contextlib.suppress(OSError):
        os.close(held.fd)
    with contextlib.suppress(OSError):
        os.close(held.dir_fd)


class TargetLock:
    """Exclusive lock on target directories for the whole run (a context manager).

    ``dirs`` are ``(path, mode)``; missing ones are created first (with ``mode``, influxd's) and,
    if the run leaves them empty, removed again at the end. ``None`` entries are skipped.
    Re-entrant within one process (a library call inside a locked CLI run). Raises BusyError
    when another process holds a lock on any of them (nothing is left locked then)."""

    def __init__(self, dirs: Iterable[tuple[os.PathLike[str] | str | None, int]]) -> None:
        self._dirs = [(Path(p).absolute(), mode) for p, mode in dirs if p is not None]
        self._held: list[_Held] = []
        self._created: list[Path] = []
        self.paths: list[Path] = []  # the resolved directories locked

    def __enter__(self) -> TargetLock:
        try:
            resolved: dict[tuple[int, int], Path] = {}
            for p, mode in self._dirs:
                made = ensure_dir(p, mode)
                self._created.extend(made)
                _CREATED.extend(made)
                real = Path(os.path.realpath(p))
                st = os.stat(real)
                resolved.setdefault((st.st_dev, st.st_ino), real)
            for key in sorted(resolved):  # a fixed order: no deadlock between two runs
                held, _new = _lock_one(resolved[key])
                self._held.append(held)
                self.paths.append(resolved[key])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for held in reversed(self._held):
            _unlock_one(held)
        self._held.clear()
        for d in reversed(self._created):
            with contextlib.suppress(ValueError):
                _CREATED.remove(d)
            with contextlib.suppress(OSError):
                os.rmdir(d)  # only when empty: a run that wrote nothing leaves nothing
        self._created.clear()


def created_dirs() -> list[Path]:
    """Directories the locks this process holds created (to chown them with the rest)."""
    return list(_CREATED)


def held_by_this_process(directory: os.PathLike[str] | str) -> bool:
    """Whether this process holds the :class:`TargetLock` of ``directory``."""
    try:
        st = os.stat(directory)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in _HELD


# --------------------------------------------------------------------------------------------
# the live-process scan


@dataclass(frozen=True)
class ProcessUse:
    pid: int
    comm: str
    path: str  # the file, directory or configured directory that lies in a guarded directory
    how: str  # "open file", "working directory", "configured directory"

    def describe(self) -> str:
        how = "open" if self.how == "open file" else "as its " + self.how
        return f"{self.comm} (pid {self.pid}) has {self.path} {how}"


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read(64).decode("utf-8", "replace").strip() or "?"
    except OSError:
        return "?"


_CONF_KEY = re.compile(r'^\s*(dir|wal-dir)\s*=\s*"([^"]*)"')
_CONF_SECTION = re.compile(r"^\s*\[([^\]]+)\]")


def _influxd_dirs(pid: str) -> list[str]:
    """The meta, data and WAL directories an influxd process was configured with (empty when
    they cannot be read)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "surrogateescape") for a in f.read(1 << 16).split(b"\0") if a]
    except OSError:
        return []
    config: str | None = None
    for i, a in enumerate(argv):
        if a in ("-config", "--config") and i + 1 < len(argv):
            config = argv[i + 1]
        elif a.startswith(("-config=", "--config=")):
            config = a.partition("=")[2]
    if config is None:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/environ", "rb") as f:
            for kv in f.read(1 << 20).split(b"\0"):
                if kv.startswith(b"INFLUXDB_CONFIG_PATH="):
                    config = kv.partition(b"=")[2].decode("utf-8", "surrogateescape")
    if not config:
        return []
    if not os.path.isabs(config):
        with contextlib.suppress(OSError):
            config = os.path.join(os.readlink(f"/proc/{pid}/cwd"), config)
    try:
        with open_regular(config, "config file") as f:  # a FIFO there must not stall the check
            text = f.read(MAX_CONFIG_READ).decode("utf-8", "replace")
    except (OSError, ArchiveError):
        return []
    out: list[str] = []
    section = ""
    for line in text.splitlines():
        m = _CONF_SECTION.match(line)
        if m:
            section = m.group(1).strip()
            continue
        m = _CONF_KEY.match(line)
        if m and section in ("meta", "data") and m.group(2):
            out.append(os.path.realpath(m.group(2)))
    return out


def processes_using(dirs: Iterable[os.PathLike[str] | str]) -> list[ProcessUse]:
    """Processes (other than this one) using a file or directory inside ``dirs``: an open file
    descriptor, the working directory, or (influxd) a configured directory equal to or inside
    one of them. One entry per process (the first use found), in pid order."""
    roots = sorted({os.path.realpath(d) for d in dirs})
    if not roots:
        return []
    me = str(os.getpid())
    found: list[ProcessUse] = []
    try:
        pids = sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int)
    except OSError:
        return []
    for pid in pids:
        if pid == me:
            continue
        use = _process_use(pid, roots)
        if use is not None:
            found.append(use)
    return found


def _process_use(pid: str, roots: list[str]) -> ProcessUse | None:
    """How process ``pid`` uses ``roots`` (None: it does not). A process holding one of their
    lock files is another influx-archive run: the lock, not this scan, reports it."""
    first: ProcessUse | None = None
    with contextlib.suppress(OSError):
        cwd = os.readlink(f"/proc/{pid}/cwd")
        if _inside(cwd, roots):
            first = ProcessUse(int(pid), _comm(pid), cwd, "working directory")
    fd_dir = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.endswith(" (deleted)"):
                target = target[: -len(" (deleted)")]
            if not (target.startswith("/") and _inside(target, roots)):
                continue
            if os.path.basename(target) == LOCK_NAME:
                return None
            if first is None:
                first = ProcessUse(int(pid), _comm(pid), target, "open file")
    if first is not None:
        return first
    comm = _comm(pid)
    if comm == "influxd":
        for d in _influxd_dirs(pid):
            if _inside(d, roots) or any(_inside(r, [d]) for r in roots):
                return ProcessUse(int(pid), comm, d, "configured directory")
    return None


def refuse_live(dirs: Iterable[os.PathLike[str] | str | None], *, what: str, force: bool = False) -> list[ProcessUse]:
    """Raise BusyError naming the first process (comm and pid) that uses one of ``dirs``, unless
    ``force``: then return them (for a warning). ``what`` says which run refuses ("restore
    into", "back up")."""
    present = [d for d in dirs if d is not None and os.path.exists(d)]
    uses = sorted(processes_using(present), key=lambda u: u.comm != "influxd")  # a server first, if any
    if uses and not force:
        u = uses[0]
        more = f" (and {len(uses) - 1} more processes)" if len(uses) > 1 else ""
        raise BusyError(
            f"refusing to {what} directories a running process uses: {u.describe()}{more}; "
            "stop it first (restore and backup take --force to go on anyway)",
            path=u.path,
        )
    return uses
