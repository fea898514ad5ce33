"""Leftovers of interrupted runs: every verb builds its output under a name carrying its PID and
renames it into place when complete, so a run killed with SIGKILL leaves only such a temporary
name behind. The next run removes the ones whose process is gone."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

from .errors import TargetIOError


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # a name's digits past any pid: no such process
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale(directory: Path, prefix: str) -> list[Path]:
    """Remove ``directory/<prefix><pid>`` files or directories whose process is gone, owned by
    this user and not symbolic links (anything else with such a name is left alone)."""
    removed: list[Path] = []
    pattern = re.compile(re.escape(prefix) + r"([0-9]+)$")
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if not m or pid_alive(int(m.group(1))):
            continue
        p = directory / name
        with contextlib.suppress(OSError):
            st = os.lstat(p)
            # Only what a run of ours could have left: created by this user, not a link (a name
            # planted to look like ours is left alone, never followed or removed).
            if st.st_uid != os.geteuid() or stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def temp_sibling(target: Path) -> Path:
    """The temporary name ``target`` is built under (``.<name>.tmp-<pid>`` beside it, so the final
    rename stays on one file system), after removing those of runs that were killed."""
    remove_stale(target.parent, f".{target.name}.tmp-")
    return target.parent / f".{target.name}.tmp-{os.getpid()}"


# --------------------------------------------------------------------------------------------
# Directories reached through file descriptors: no symbolic link below a root is ever followed,
# whatever is swapped in while a run goes on (each component is opened with O_NOFOLLOW at the
# moment of use, relative to its parent's descriptor).

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
NOFOLLOW_DIR = DIR_FLAGS | os.O_NOFOLLOW
SAFE_PART = re.compile(r"^(?!\.{1,2}$)[^/\x00]{1,255}$")  # one path component, not "." or ".."


class SymlinkError(OSError):
    """A path component below a root is a symbolic link (or not a directory)."""


def open_beneath(
    root_fd: int, parts: tuple[str, ...] | list[str], *, create_mode: int | None = None, on_create=None
) -> int:
    """Open the directory ``root/parts...`` through descriptors, never following a symbolic link
    below ``root``. Missing components are created with ``create_mode`` (``on_create(i)`` is
    called just before component ``i`` is created, e.g. to journal it), or raise
    FileNotFoundError when ``create_mode`` is None. Raises :class:`SymlinkError` (with
    ``filename`` the offending component's index as ``errno`` ELOOP) for a link. The caller
    closes the returned descriptor."""
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            if not SAFE_PART.match(part):
                raise SymlinkError(errno.EINVAL, "unsafe path component", i)
            try:
                nfd = os.open(part, NOFOLLOW_DIR, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                if on_create is not None:
                    on_create(i)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, create_mode, dir_fd=fd)
                nfd = os.open(part, NOFOLLOW_DIR, dir_fd=fd)
                os.fchmod(nfd, create_mode)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise SymlinkError(errno.ELOOP, "is a symbolic link or not a directory", i) from None
                raise
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


_RENAME_NOREPLACE = 1
_libc: Any = None  # renameat2 from libc once looked up; False where there is none


def rename_noreplace(src: str, dst: str, *, src_dir_fd: int, dst_dir_fd: int) -> None:
    """Rename ``src`` to ``dst`` (names relative to the two directory descriptors), failing with
    FileExistsError if ``dst`` exists, atomically where the kernel has ``renameat2``
    (RENAME_NOREPLACE); elsewhere checked just before an ordinary rename."""
    global _libc
    if _libc is None:
        import ctypes

        try:
            lib = ctypes.CDLL(None, use_errno=True)
            fn = lib.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            _libc = fn
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        import ctypes

        if _libc(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), dst)
    try:
        os.lstat(dst, dir_fd=dst_dir_fd)
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)


def remove_beneath(dir_fd: int, name: str, *, expect: tuple[int, int] | None = None, last: str | None = None) -> bool:
    """Remove ``name`` in the directory ``dir_fd`` (a whole tree for a directory, never following a
    link inside it; a link itself is only unlinked). With ``expect`` = (dev, ino), only if ``name``
    is still that inode. With ``last``, that entry of the directory goes after all the others (a
    staging directory's journal: killed during the removal, what is left still carries the journal
    that lets the next run recognise it as its own and finish the job). Returns whether something
    was removed."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    if expect is not None and (st.st_dev, st.st_ino) != tuple(expect):
        return False
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
    elif last is None:
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        fd = os.open(name, NOFOLLOW_DIR, dir_fd=dir_fd)
        try:
            fst = os.fstat(fd)
            if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                return False  # swapped since the lstat: not the directory meant
            for entry in sorted(os.listdir(fd)):
                if entry != last:
                    remove_beneath(fd, entry)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(last, dir_fd=fd)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
    return True


def fsync_dir(directory: str | os.PathLike[str], *, best_effort: bool = False) -> None:
    """fsync a directory so that the renames and creations in it are durable. A file system that
    cannot sync directories (EINVAL, ENOTSUP) is accepted; any other failure is a TargetIOError
    naming the directory, unless ``best_effort`` (then nothing is raised)."""
    directory = os.fspath(directory)
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as exc:
        if best_effort:
            return
        raise TargetIOError(f"cannot open the directory to sync it: {exc.strerror}", path=directory) from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        if not best_effort and exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise TargetIOError(f"cannot sync the directory: {exc.strerror}", path=directory) from exc
    finally:
        os.close(fd)


def fsync_paths(paths: list[str], *, jobs: int = 8) -> None:
    """fsync every file and directory of ``paths`` (each opened read-only by its path), on up to
    ``jobs`` threads at once: fsync releases the GIL, and the writeback and journal commits of
    files synced together overlap (ext4 commits them in one transaction) instead of waiting one
    after another. Every path is durable when this returns; otherwise the first failure is raised
    as a TargetIOError naming its path, once the threads running have stopped (those not started
    are not synced). A file system that cannot sync directories (EINVAL, ENOTSUP) is accepted,
    as in :func:`fsync_dir`."""
    import threading

    todo = list(reversed(paths))
    failed: list[TargetIOError] = []
    stop: list[bool] = []  # the calling thread is leaving (an exception, a signal): no new syncs
    lock = threading.Lock()

    def one(path: str) -> None:
        is_dir = os.path.isdir(path)
        try:
            fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if is_dir else 0))
        except OSError as exc:
            raise TargetIOError(f"cannot open the target to sync it: {exc.strerror}", path=path) from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            if not (is_dir and exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)):
                raise TargetIOError(f"cannot sync target: {exc.strerror}", path=path) from exc
        finally:
            os.close(fd)

    def work() -> None:
        while True:
            with lock:
                if failed or stop or not todo:
                    return
                path = todo.pop()
            try:
                one(path)
            except TargetIOError as exc:
                with lock:
                    failed.append(exc)
                return

    n = min(jobs, len(todo))
    if n <= 1:
        for p in paths:
            one(p)
        return
    threads = [threading.Thread(target=work, name="fsync", daemon=True) for _ in range(n - 1)]
    for t in threads:
        t.start()
    try:
        work()
    finally:
        stop.append(True)
        for t in threads:
            t.join()
    if failed:
        raise failed[0]
