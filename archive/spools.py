"""Private spool directories.

Private spool directories (a sealed archive's metadata, export workers' parts, a server root
packed via a backup) live under one per-user directory, ``$TMPDIR/influx-archive-<uid>`` (0700,
refused when it is a symlink or someone else's), each named ``<purpose>-<pid>-<start>-<token>``
(0700). :func:`make_spool` first removes the spools whose process is gone (the PID no longer
exists, or now belongs to a process started at another time); it never touches a live process's
spool, a name of another shape, or an entry owned by another user. A ``kill -9`` therefore leaves
at most a 0700 directory inside a 0700 directory, removed by the next run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .cleanup import discard, track, uninterrupted
from .errors import TargetError, TargetIOError
from .staging import pid_alive

_SPOOL_RE = re.compile(r"^([a-z]+)-(\d+)-(\d+)-([0-9a-f]+)$")


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (0 when unknown): with the PID it
    names one process, so a reused PID does not keep a dead run's spool alive forever."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _spool_owner_alive(pid: int, start: int) -> bool:
    if not pid_alive(pid):
        return False
    if start == 0:
        return True
    now = _start_time(pid)
    return now == 0 or now == start


def spool_root(base: str | os.PathLike[str] | None = None) -> Path:
    """The per-user spool directory (0700, ours, not a symlink), created when missing."""
    uid = os.getuid()
    parent = Path(base) if base is not None else Path(tempfile.gettempdir())
    root = parent / (f"influx-archive-{uid}" if base is None else f".influx-archive-{uid}")
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TargetIOError(f"cannot create the private spool directory: {exc.strerror}", path=str(root)) from exc
    try:
        st = os.lstat(root)
    except OSError as exc:
        raise TargetIOError(f"cannot use the private spool directory: {exc.strerror}", path=str(root)) from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise TargetError(
            "the private spool directory is not a directory owned by this user; remove it", path=str(root)
        )
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(root, 0o700)
    return root


def clean_stale_spools(root: Path) -> list[Path]:
    """Remove the spools in ``root`` whose process is gone; returns what was removed."""
    removed: list[Path] = []
    uid = os.getuid()
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        m = _SPOOL_RE.match(name)
        if m is None:
            continue
        p = root / name
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
            continue
        if _spool_owner_alive(int(m.group(2)), int(m.group(3))):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def make_spool(purpose: str, base: str | os.PathLike[str] | None = None) -> str:
    """A new private (0700) spool directory for this process; remove it with :func:`remove_spool`.
    Spools of dead runs are removed first."""
    import secrets  # hmac, hashlib: only when a spool is made (start-up of every other run)

    if not re.fullmatch(r"[a-z]+", purpose):
        raise ValueError(purpose)
    root = spool_root(base)
    clean_stale_spools(root)
    pid = os.getpid()
    path = root / f"{purpose}-{pid}-{_start_time(pid)}-{secrets.token_hex(6)}"
    try:
        with uninterrupted():
            os.mkdir(path, 0o700)
            track(path, True)
    except OSError as exc:
        raise TargetIOError(f"cannot create a private spool directory: {exc.strerror}", path=str(path)) from exc
    return str(path)


def remove_spool(path: str | os.PathLike[str]) -> None:
    """Remove a spool made by :func:`make_spool` (and its per-user root when a ``base`` was given
    and it is left empty)."""
    p = Path(path)
    with uninterrupted():
        discard(p, is_dir=True)
        if p.parent.name.startswith(".influx-archive-"):
            with contextlib.suppress(OSError):
                p.parent.rmdir()


@contextlib.contextmanager
def spool(purpose: str, base: str | os.PathLike[str] | None = None) -> Iterator[str]:
    path = make_spool(purpose, base)
    try:
        yield path
    finally:
        remove_spool(path)
