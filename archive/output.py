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

Spools (private temporary directories) are :mod:`.spools`; the signal-safe cleanup steps and the
registry of this process's temporaries are :mod:`.cleanup`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .cleanup import discard, track, uninterrupted, untrack
from .errors import ArchiveError, SourceIOError, TargetError, TargetIOError, UsageError
from .staging import fsync_dir, temp_sibling

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
            raise UsageError(
                f"{what} is the source or lies inside it ({root}); write it somewhere else", path=os.fspath(path)
            )
        if holding and _within(root, real):
            raise UsageError(f"{what} holds the source ({root}); write it somewhere else", path=os.fspath(path))


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
        raise TargetIOError(f"cannot look at the target: {exc.strerror}", path=absolute) from exc
    real = _realpath(absolute)
    if lst is not None and stat.S_ISLNK(lst.st_mode):
        try:
            st = os.stat(absolute)
        except FileNotFoundError:
            raise TargetError(
                f"target is a symbolic link to {os.readlink(absolute)!r}, which does not exist; "
                "give the real path to create a file there", path=absolute) from None
        except OSError as exc:
            raise TargetError(f"cannot follow the symbolic link: {exc.strerror}", path=absolute) from exc
        return real, st
    # a directory above may be a symlink too: the file lands at the real place
    try:
        return real, os.stat(real)
    except FileNotFoundError:
        return real, None
    except OSError as exc:
        raise TargetIOError(f"cannot look at the target: {exc.strerror}", path=real) from exc


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
        raise TargetIOError(f"cannot list the target directory: {exc.strerror}", path=real) from exc
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
            raise TargetIOError(
                "cannot write the target: its reader closed it (broken pipe)", path=self._name) from None
        except OSError as exc:
            raise TargetIOError(f"cannot write the target: {exc.strerror}", path=self._name) from exc
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


def _new_temp_file(final: Path, tmp: Path | None = None) -> tuple[Path, int]:
    """Create and register ``final``'s temporary (``tmp``, by default ``.<name>.tmp-<pid>`` beside
    it; 0600, exclusive, no link followed) in one step no signal splits: (its path, a descriptor
    open for writing). OS errors are raised as they are."""
    tmp = temp_sibling(final) if tmp is None else tmp
    with uninterrupted():
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        track(tmp, False)
    return tmp, fd


@contextlib.contextmanager
def open_output(out: Output, *, mode: int = 0o644) -> Iterator[OutputFile]:
    """A binary file for ``out``: a stream written in place, or a temporary file linked into
    place when the block ends without an error (removed when it does not)."""
    if out.stream:
        yield from _open_stream(out)
        return
    final = Path(out.path)
    try:
        tmp, fd = _new_temp_file(final)
    except OSError as exc:
        raise TargetIOError(f"cannot create a file in the target's directory: {exc.strerror}", path=str(final)) from exc
    f = OutputFile(_TargetRaw(fd, str(final), False), 1 << 20)
    try:
        yield f
        f.flush()
        try:
            os.fchmod(fd, mode & ~_umask())
            os.fsync(fd)
        except OSError as exc:
            raise TargetIOError(f"cannot write the target: {exc.strerror}", path=str(final)) from exc
        f.close()
        with uninterrupted():
            _commit_file(tmp, final, out.force)
            untrack(tmp)
    except BaseException:
        with uninterrupted():
            with contextlib.suppress(Exception):
                f.close()
            discard(tmp, is_dir=False)
        raise


def _open_stream(out: Output) -> Iterator[OutputFile]:
    if out.stdout:
        try:
            sys.stdout.flush()
            fd = os.dup(sys.stdout.fileno())  # what sys.stdout is, when a caller redirected it
        except (AttributeError, OSError, ValueError):
            try:
                fd = os.dup(1)
            except OSError as exc:
                raise TargetIOError(f"cannot write to standard output: {exc.strerror} (is it closed?)",
                                    path="-") from exc
    else:
        try:
            # by the name given: a link to a pipe (/dev/stdout, bash's >(cmd) as /dev/fd/63)
            # resolves to 'pipe:[N]', which no open() finds, while the link itself opens the pipe
            fd = os.open(os.path.abspath(out.given), os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError as exc:
            raise TargetIOError(f"cannot open the target for writing: {exc.strerror}", path=out.path) from exc
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


def link_into_place(tmp: str | os.PathLike[str], final: str | os.PathLike[str], *, replace: bool) -> None:
    """Move the finished temporary ``tmp`` to ``final``: renamed over it when ``replace``; else
    hard-linked, which fails on an existing name (FileExistsError), so a file created meanwhile by
    someone else is never replaced (a file system without hard links: a rename after a check).
    Other OS errors are raised as they are."""
    if replace:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)
    except OSError as exc:
        no_links = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)
        if isinstance(exc, FileExistsError) or exc.errno not in no_links:
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "File exists", os.fspath(final)) from None
        os.rename(tmp, final)
        return
    os.unlink(tmp)


def _commit_file(tmp: Path, final: Path, force: bool) -> None:
    try:
        try:
            link_into_place(tmp, final, replace=force)
        except FileExistsError:
            raise TargetError("target exists (pass --force to replace it)", path=str(final)) from None
        fsync_dir(final.parent, best_effort=True)
    except OSError as exc:
        raise TargetIOError(f"cannot move the finished file into place: {exc.strerror}", path=str(final)) from exc


def write_file_atomically(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, replace: bool = False
) -> None:
    """Write a small file (a ``meta.db``) in one step readers cannot see half done: a temporary
    beside it (registered, so no signal leaves it behind), written, chmod ``mode``, fsynced,
    moved into place (:func:`link_into_place`), the directory fsynced. An existing ``path`` is a
    TargetError unless ``replace``; an OS error a TargetIOError naming ``path``."""
    final = Path(path)
    tmp = temp_sibling(final)
    try:
        # inside the try: a SIGTERM deferred while the temporary was made is acted on as
        # _new_temp_file returns, and the temporary must go now: ``path`` may name its directory
        # by a descriptor (/proc/self/fd/N/...) that is closed when the run's exit removes the rest
        try:
            tmp, fd = _new_temp_file(final, tmp)
        except OSError as exc:
            raise TargetIOError(f"cannot create a temporary file: {exc.strerror}", path=str(final)) from exc
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            with uninterrupted():
                try:
                    link_into_place(tmp, final, replace=replace)
                except FileExistsError:
                    raise TargetError("already exists (pass overwrite=True to replace it)", path=str(final)) from None
                untrack(tmp)
        except OSError as exc:
            raise TargetIOError(f"cannot write: {exc.strerror or exc}", path=str(final)) from exc
    except BaseException:
        discard(tmp, is_dir=False)
        raise
    fsync_dir(final.parent)


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
            track(tmp, True)
    except OSError as exc:
        raise TargetIOError(f"cannot create the target directory: {exc.strerror}", path=str(final)) from exc
    try:
        yield tmp
        fsync_dir(tmp, best_effort=True)
        with uninterrupted():
            try:
                with contextlib.suppress(FileNotFoundError):
                    final.rmdir()  # an empty destination directory was accepted by the plan
                os.rename(tmp, final)
                untrack(tmp)
            except OSError as exc:
                raise TargetIOError(
                    f"cannot move the finished backup into place: {exc.strerror}", path=str(final)
                ) from exc
        fsync_dir(final.parent, best_effort=True)
    except BaseException as exc:
        discard(tmp, is_dir=True)
        if isinstance(exc, OSError) and not isinstance(exc, ArchiveError):
            err = os_error(exc, target=str(final), sources=list(sources))
            if isinstance(err, TargetIOError):
                err.path = str(final)
            raise err from exc
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


def refuse_dirs_inside_source(src, dirs: Iterable[tuple[str, str | os.PathLike[str] | None]]) -> None:
    """:func:`refuse_inside_source` for each named directory output of a verb (restore's
    ``--metadir`` / ``--datadir`` / ``--waldir``); ``None`` entries are skipped."""
    roots = source_roots(src)
    for name, p in dirs:
        if p is not None:
            refuse_inside_source(p, roots, what=name, holding=False)  # restore adds to a tree
