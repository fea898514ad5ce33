"""Where outputs go: THE one primitive every verb writes its output through.

A verb first *plans* its output (:func:`plan_file_output` / :func:`plan_dir_output`: checks only,
nothing written), then writes it (:func:`open_output` / :func:`building_dir`):

* ``-`` is standard output; a character device (``/dev/null``, ``/dev/full``, a tape) or a FIFO is
  a **stream**: opened for writing as it is, never created, truncated, replaced or renamed.
* a symbolic link is resolved first: a link to a regular file replaces that file (``force``) and
  the link stays; a link to a device or FIFO is that stream; a dangling link is refused (writing
  through it would create a file wherever it points).
* a regular file is built under a temporary name beside its final place (``.<name>.tmp-<pid>``,
  mode 0600), fsynced, and linked into place; an existing file is refused unless ``force``, and
  even then a file created by someone else meanwhile is not lost to a rename race (without
  ``force`` the final step is ``link``, which fails on an existing name).
* a directory output (a backup) must be new or empty; it is built in ``.<name>.tmp-<pid>`` (0700)
  and renamed into place when complete.
* an output equal to, inside, or holding the source is refused before anything is written,
  compared after resolving symlinks and ``..`` (:func:`refuse_inside_source`).
* any OS error while writing becomes a :class:`TargetIOError` naming the target path; an OS error
  on a source file a :class:`SourceIOError` naming it (:func:`os_error`).

Temporaries of killed runs carry their PID and are removed by the next run (``staging``).

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
import errno
import io
import os
import re
import secrets
import shutil
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ArchiveError, SourceIOError, TargetError, TargetIOError, UsageError
from .staging import pid_alive, temp_sibling

STDOUT = "-"

#: errnos that only a write can produce: with no file name attached they are the target's
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EPIPE}


def _realpath(p: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(p)))


@dataclass(frozen=True)
class Output:
    """A planned output. ``path`` is where the bytes go (symlinks resolved; ``-`` for standard
    output); ``stream`` outputs are written in place; ``exists`` for a regular file or a
    non-empty-checked directory that is there now."""

    given: str
    path: str
    stream: bool
    exists: bool
    force: bool = False
    binary: bool = True

    @property
    def stdout(self) -> bool:
        return self.path == STDOUT

    @property
    def display(self) -> str:
        return "standard output" if self.stdout else self.path


# ---------------------------------------------------------------------------- the source


def source_roots(src) -> list[str]:
    """Real paths no output may equal or lie inside: every path the source reads or keeps private
    (``Source.reads_from``: the archive being read and its spool, a single file source itself, a
    directory source and every directory its files live in)."""
    return sorted({_realpath(p) for p in src.reads_from()})


def _within(child: str, parent: str) -> bool:
    return child == parent or os.path.commonpath([child, parent]) == parent


def refuse_inside_source(
    path: str | os.PathLike[str], roots: Iterable[str], *, what: str = "output", holding: bool = True
) -> None:
    """UsageError when ``path`` (resolved) is a source root, lies inside one, or (``holding``)
    holds one."""
    if os.fspath(path) == STDOUT:
        return
    real = _realpath(path)
    for root in roots:
        if _within(real, root):
            raise UsageError(f"{what} is the source or lies inside it ({root}); write it somewhere else", path=os.fspath(path))
        if holding and _within(root, real):
            raise UsageError(f"{what} holds the source ({root}); write it somewhere else", path=os.fspath(path))


# ---------------------------------------------------------------------------- cleanup

_CRITICAL = 0
_PENDING: list = []


def defer_if_cleaning(handler) -> bool:
    """For a signal handler (the CLI's SIGTERM): True when a cleanup or commit step is running,
    in which case ``handler()`` is called as soon as it ends instead (so a signal never leaves a
    half-removed temporary or spool behind)."""
    if _CRITICAL > 0:
        _PENDING.append(handler)
        return True
    return False


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Run a commit or cleanup step to its end before a deferred signal is acted on.

    Python runs signal handlers in the main thread only, so only the main thread's steps can be
    interrupted and only they are counted: a worker thread's step never defers the signal (the
    deferred handler would then raise in that worker, not where the run unwinds)."""
    global _CRITICAL
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _CRITICAL += 1
    try:
        yield
    finally:
        _CRITICAL -= 1
        if _CRITICAL == 0 and _PENDING:
            handler = _PENDING.pop()
            _PENDING.clear()
            handler()


# Every temporary this process creates (a file or directory beside a target, a private spool) is
# entered here in the same uninterrupted step that creates it, and leaves it in the step that
# renames or removes it. A signal therefore never finds a temporary that nothing will remove: the
# CLI calls remove_temporaries() on its way out, however the verb ended. (Without this, SIGTERM
# landing right after a mkdir, before the code that cleans up had been entered, left an empty
# .bk.tmp-PID or spool directory behind on a loaded machine: 3 in 300 runs.)
_TEMPORARIES: dict[str, bool] = {}  # path -> is a directory
_TEMPORARIES_LOCK = threading.Lock()


def _track(path: str | os.PathLike[str], is_dir: bool) -> None:
    with _TEMPORARIES_LOCK:
        _TEMPORARIES[os.fspath(path)] = is_dir


def _untrack(path: str | os.PathLike[str]) -> None:
    with _TEMPORARIES_LOCK:
        _TEMPORARIES.pop(os.fspath(path), None)


def remove_temporaries() -> list[str]:
    """Remove every temporary file, build directory and spool this process made and has not
    renamed into place or removed yet; the paths removed."""
    with _TEMPORARIES_LOCK:
        left = sorted(_TEMPORARIES.items())
        _TEMPORARIES.clear()
    with uninterrupted():
        for path, is_dir in left:
            if is_dir:
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    return [path for path, _ in left]


# ---------------------------------------------------------------------------- planning


def _resolve(given: str) -> tuple[str, os.stat_result | None]:
    """(absolute path with symlinks resolved, its stat or None when nothing is there). A
    dangling symlink (or a loop) is refused."""
    absolute = os.path.abspath(given)
    try:
        lst = os.lstat(absolute)
    except FileNotFoundError:
        lst = None
    except OSError as exc:
        raise TargetIOError(f"cannot look at the target: {exc.strerror}", path=absolute) from None
    real = _realpath(absolute)
    if lst is not None and stat.S_ISLNK(lst.st_mode):
        try:
            st = os.stat(absolute)
        except FileNotFoundError:
            raise TargetError(
                f"target is a symbolic link to {os.readlink(absolute)!r}, which does not exist; "
                "give the real path to create a file there", path=absolute) from None
        except OSError as exc:
            raise TargetError(f"cannot follow the symbolic link: {exc.strerror}", path=absolute) from None
        return real, st
    # a directory above may be a symlink too: the file lands at the real place
    try:
        return real, os.stat(real)
    except FileNotFoundError:
        return real, None
    except OSError as exc:
        raise TargetIOError(f"cannot look at the target: {exc.strerror}", path=real) from None


def plan_file_output(
    given: str | os.PathLike[str], *, sources: Iterable[str] = (), force: bool = False, binary: bool = True
) -> Output:
    """Check a single-file output (export ``--out``, pack ``ARCHIVE``); writes nothing.

    ``binary``: refuse to write to standard output when it is a terminal."""
    given = os.fspath(given)
    if given == STDOUT:
        if binary and sys.stdout is not None and _isatty(1):
            raise UsageError("refusing to write binary data to a terminal; redirect standard output or give a file")
        return Output(given, STDOUT, True, True, force, binary)
    if not given:
        raise UsageError("empty output path")
    refuse_inside_source(given, sources)
    real, st = _resolve(given)
    if st is None:
        parent = os.path.dirname(real)
        if not os.path.isdir(parent):
            raise TargetError("the directory to write into does not exist", path=parent)
        return Output(given, real, False, False, force, binary)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return Output(given, real, True, True, force, binary)
    if stat.S_ISDIR(st.st_mode):
        raise TargetError("target is a directory; give a file name", path=given)
    if not stat.S_ISREG(st.st_mode):
        raise TargetError("target is not a regular file, character device or FIFO", path=given)
    if not force:
        raise TargetError("target exists (pass --force to replace it)", path=given)
    return Output(given, real, False, True, force, binary)


def plan_dir_output(given: str | os.PathLike[str], *, sources: Iterable[str] = ()) -> Output:
    """Check a directory output (a backup: convert, trim, backup, unpack DEST): new, or an empty
    directory (a symlink to one is resolved); writes nothing."""
    given = os.fspath(given)
    if given == STDOUT:
        raise UsageError("this verb writes a directory; - (standard output) is only for file outputs")
    if not given:
        raise UsageError("empty destination path")
    refuse_inside_source(given, sources, what="destination")
    real, st = _resolve(given)
    if st is None:
        return Output(given, real, False, False)
    if not stat.S_ISDIR(st.st_mode):
        raise TargetError("destination exists and is not a directory", path=given)
    try:
        empty = not os.listdir(real)
    except OSError as exc:
        raise TargetIOError(f"cannot list the target directory: {exc.strerror}", path=real) from None
    if not empty:
        raise TargetError("destination directory is not empty; give a new or empty directory", path=given)
    return Output(given, real, False, True)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


# ---------------------------------------------------------------------------- writing


class _TargetRaw(io.RawIOBase):
    """Raw writes to one fd; an OS error becomes a TargetIOError naming the target (EPIPE on
    standard output stays a BrokenPipeError: the reader went away, the CLI exits quietly)."""

    def __init__(self, fd: int, name: str, stdout: bool) -> None:
        super().__init__()
        self._fd = fd
        self._name = name
        self._stdout = stdout
        self.written = 0

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, b) -> int:
        try:
            n = os.write(self._fd, b)
        except BrokenPipeError:
            if self._stdout:
                raise
            raise TargetIOError("cannot write the target: its reader closed it (broken pipe)", path=self._name) from None
        except OSError as exc:
            raise TargetIOError(f"cannot write the target: {exc.strerror}", path=self._name) from None
        self.written += n
        return n

    def close(self) -> None:
        if not self.closed:
            super().close()
            os.close(self._fd)


class OutputFile(io.BufferedWriter):
    """The buffered binary file :func:`open_output` yields; ``written`` counts bytes written
    (also for streams, where ``tell`` is not available)."""

    @property
    def written(self) -> int:
        return self.raw.written  # type: ignore[attr-defined]

    def tell(self) -> int:  # streams cannot tell; the bytes handed over can be counted
        self.flush()
        return self.raw.written  # type: ignore[attr-defined]


@contextlib.contextmanager
def open_output(out: Output, *, mode: int = 0o644) -> Iterator[OutputFile]:
    """A binary file for ``out``: a stream written in place, or a temporary file linked into
    place when the block ends without an error (removed when it does not)."""
    if out.stream:
        yield from _open_stream(out)
        return
    final = Path(out.path)
    try:
        tmp = temp_sibling(final)
        with uninterrupted():
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            _track(tmp, False)
    except OSError as exc:
        raise TargetIOError(f"cannot create a file in the target's directory: {exc.strerror}", path=str(final)) from None
    f = OutputFile(_TargetRaw(fd, str(final), False), 1 << 20)
    try:
        yield f
        f.flush()
        try:
            os.fchmod(fd, mode & ~_umask())
            os.fsync(fd)
        except OSError as exc:
            raise TargetIOError(f"cannot write the target: {exc.strerror}", path=str(final)) from None
        f.close()
        with uninterrupted():
            _commit_file(tmp, final, out.force)
            _untrack(tmp)
    except BaseException:
        with uninterrupted():
            with contextlib.suppress(Exception):
                f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            _untrack(tmp)
        raise


def _open_stream(out: Output) -> Iterator[OutputFile]:
    if out.stdout:
        try:
            sys.stdout.flush()
            fd = os.dup(sys.stdout.fileno())  # what sys.stdout is, when a caller redirected it
        except (AttributeError, OSError, ValueError):
            fd = os.dup(1)
    else:
        try:
            fd = os.open(out.path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            raise TargetIOError(f"cannot open the target for writing: {exc.strerror}", path=out.path) from None
        st = os.fstat(fd)
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):  # swapped since the plan
            os.close(fd)
            raise TargetError("target changed since it was checked (no longer a device or FIFO)", path=out.path)
    f = OutputFile(_TargetRaw(fd, out.display, out.stdout), 1 << 20)
    try:
        yield f
        f.flush()
    finally:
        with contextlib.suppress(Exception):
            f.close()
        if not f.raw.closed:
            with contextlib.suppress(OSError):
                os.close(fd)


def _commit_file(tmp: Path, final: Path, force: bool) -> None:
    try:
        if force:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)  # fails on an existing name: never a silent replace
            except FileExistsError:
                raise TargetError("target exists (pass --force to replace it)", path=str(final)) from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if os.path.lexists(final):  # a file system without hard links
                    raise TargetError("target exists (pass --force to replace it)", path=str(final)) from None
                os.rename(tmp, final)
            else:
                os.unlink(tmp)
        _fsync_dir(final.parent)
    except OSError as exc:
        raise TargetIOError(f"cannot move the finished file into place: {exc.strerror}", path=str(final)) from None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _UMASK = int(line.split()[1], 8)
                        break
        except OSError:
            pass
        if _UMASK is None:
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


@contextlib.contextmanager
def building_dir(out: Output, *, sources: Iterable[str] = ()) -> Iterator[Path]:
    """A private (0700) temporary directory beside ``out``; renamed to it when the block ends
    without an error, removed when it does not. An OS error in the block is classified by
    :func:`os_error` (``sources``: real source roots); errors naming a file in the temporary
    directory (gone by then) name ``out`` instead."""
    final = Path(out.path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(final)
        with uninterrupted():
            os.mkdir(tmp, 0o700)
            _track(tmp, True)
    except OSError as exc:
        raise TargetIOError(f"cannot create the target directory: {exc.strerror}", path=str(final)) from None
    try:
        yield tmp
        _fsync_dir(tmp)
        with uninterrupted():
            try:
                with contextlib.suppress(FileNotFoundError):
                    final.rmdir()  # an empty destination directory was accepted by the plan
                os.rename(tmp, final)
                _untrack(tmp)
            except OSError as exc:
                raise TargetIOError(f"cannot move the finished backup into place: {exc.strerror}", path=str(final)) from None
        _fsync_dir(final.parent)
    except BaseException as exc:
        with uninterrupted():
            shutil.rmtree(tmp, ignore_errors=True)
            _untrack(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, ArchiveError):
            exc = os_error(exc, target=str(final), sources=list(sources))
            if isinstance(exc, TargetIOError):
                exc.path = str(final)
            raise exc from None
        if isinstance(exc, TargetIOError) and exc.path and _within(_realpath(exc.path), _realpath(tmp)):
            exc.path = str(final)
        raise


def os_error(exc: OSError, *, target: str, sources: Iterable[str] = (), spools: Iterable[str] = ()) -> ArchiveError:
    """The ArchiveError an unexpected OSError of a verb stands for: a file of the source
    (``sources``: real roots) gives SourceIOError; a file elsewhere (the target, its temporary
    files, a spool) or a write-only errno gives TargetIOError; no file name and a read errno is
    the source's."""
    what = exc.strerror or str(exc)
    name = exc.filename
    if name is not None:
        real = _realpath(name)
        if any(_within(real, r) for r in sources) and not any(_within(real, s) for s in spools):
            return SourceIOError(f"cannot read the source: {what}", path=os.fspath(name))
        if any(_within(real, s) for s in spools):
            return TargetIOError(f"cannot write a temporary file: {what}", path=os.fspath(name))
        return TargetIOError(f"cannot write the target: {what}", path=os.fspath(name))
    if exc.errno in _WRITE_ERRNOS:
        return TargetIOError(f"cannot write the target: {what}", path=target)
    roots = list(sources)
    return SourceIOError(f"cannot read the source: {what}", path=roots[0] if roots else None)


# ---------------------------------------------------------------------------- spools

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
        raise TargetIOError(f"cannot create the private spool directory: {exc.strerror}", path=str(root)) from None
    try:
        st = os.lstat(root)
    except OSError as exc:
        raise TargetIOError(f"cannot use the private spool directory: {exc.strerror}", path=str(root)) from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        raise TargetError("the private spool directory is not a directory owned by this user; remove it", path=str(root))
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(root, 0o700)
    return root


def clean_stale_spools(root: Path) -> list[Path]:
    """Remove the spools in ``root`` whose process is gone; returns what was removed."""
    removed = []
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
    if not re.fullmatch(r"[a-z]+", purpose):
        raise ValueError(purpose)
    root = spool_root(base)
    clean_stale_spools(root)
    pid = os.getpid()
    path = root / f"{purpose}-{pid}-{_start_time(pid)}-{secrets.token_hex(6)}"
    try:
        with uninterrupted():
            os.mkdir(path, 0o700)
            _track(path, True)
    except OSError as exc:
        raise TargetIOError(f"cannot create a private spool directory: {exc.strerror}", path=str(path)) from None
    return str(path)


def remove_spool(path: str | os.PathLike[str]) -> None:
    """Remove a spool made by :func:`make_spool` (and its per-user root when a ``base`` was given
    and it is left empty)."""
    p = Path(path)
    with uninterrupted():
        shutil.rmtree(p, ignore_errors=True)
        _untrack(p)
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


def refuse_dirs_inside_source(src, dirs: Iterable[tuple[str, str | os.PathLike[str] | None]]) -> None:
    """:func:`refuse_inside_source` for each named directory output of a verb (restore's
    ``--metadir`` / ``--datadir`` / ``--waldir``); ``None`` entries are skipped."""
    roots = source_roots(src)
    for name, p in dirs:
        if p is not None:
            refuse_inside_source(p, roots, what=name, holding=False)  # restore adds to a tree
