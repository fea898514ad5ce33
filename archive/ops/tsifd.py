"""The staging trees of the tsi1 writes (``restore --index tsi1``, ``build-tsi``) reached through
directory descriptors only: each directory is created relative to its parent's descriptor and
opened without following a link (checked to be the one just made, ours, empty), each file is
created relative to its directory's descriptor with O_EXCL|O_NOFOLLOW, chown walks descriptors
(:func:`os.fwalk`), fsync goes through descriptors, and before a tree is renamed into place every
name it holds is checked to still be the inode this run created (:meth:`Tree.verify`). A link
swapped in for any component during the run is never written through: it ends the run with one
line naming it (:class:`TargetError`, exit 3)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat

from ...tsm.tsi1 import format as tfmt
from ...tsm.tsi1 import seriesfile as sfmod
from ..errors import ArchiveError, TargetError, TargetIOError
from ..staging import NOFOLLOW_DIR, fsync_paths

FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FD_PATH = re.compile(r"^/proc/self/fd/(\d+)(?=/|$)")
_SWAPPED = (errno.ELOOP, errno.ENOTDIR, errno.ENOENT, errno.EEXIST)


def swapped(shown: str) -> TargetError:
    return TargetError(
        "is a symbolic link or not what this run created (swapped in during the run?); "
        "never written through", path=shown,
    )


def fd_path(fd: int, name: str | None = None) -> str:
    """The name of the open directory ``fd`` (and ``name`` in it) through /proc/self/fd."""
    return f"/proc/self/fd/{fd}" + (f"/{name}" if name is not None else "")


class Tree:
    """What one run created in a staging tree: its directories held open, and every directory
    and file by (parent descriptor, name) -> (dev, ino), to check before the tree is moved in."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, str, tuple[int, int], str]] = []
        self.fds: list[int] = []
        self.names: dict[int, str] = {}  # held directory descriptor -> the path shown for it

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        self.names.clear()

    def shown(self, path: str | None) -> str | None:
        """``path`` with a held descriptor's /proc/self/fd name turned back into the path known."""
        m = _FD_PATH.match(path) if path else None
        if path is None or m is None or int(m.group(1)) not in self.names:
            return path
        return self.names[int(m.group(1))] + path[m.end():]

    def mkdir(self, parent_fd: int, name: str, shown: str) -> int:
        """Create the directory ``name`` in ``parent_fd`` (mode 0777 less the umask, as influxd)
        and return its descriptor (held by the tree)."""
        try:
            os.mkdir(name, 0o777, dir_fd=parent_fd)
        except OSError as exc:
            raise TargetIOError(f"cannot create target directory: {exc.strerror}", path=shown) from exc
        try:
            made = os.lstat(name, dir_fd=parent_fd)
            fd = os.open(name, NOFOLLOW_DIR, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in _SWAPPED:
                raise swapped(shown) from None
            raise TargetIOError(f"cannot open target directory: {exc.strerror}", path=shown) from exc
        self.fds.append(fd)
        self.names[fd] = shown
        st = os.fstat(fd)
        ident = (st.st_dev, st.st_ino)
        if ident != (made.st_dev, made.st_ino) or st.st_uid != os.geteuid() or os.listdir(fd):
            raise swapped(shown)
        self.entries.append((parent_fd, name, ident, shown))
        return fd

    def create(self, dir_fd: int, name: str, shown: str, mode: int = 0o666) -> int:
        """Create the file ``name`` (which must not exist) in ``dir_fd``; returns it open for writing."""
        try:
            fd = os.open(name, FILE_FLAGS, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EEXIST):
                raise swapped(shown) from None
            raise TargetIOError(f"cannot write target file: {exc.strerror}", path=shown) from exc
        st = os.fstat(fd)
        self.entries.append((dir_fd, name, (st.st_dev, st.st_ino), shown))
        return fd

    def record(self, dir_fd: int, name: str, shown: str) -> None:
        """Enter a file this run made in ``dir_fd`` otherwise (a hard link)."""
        st = os.lstat(name, dir_fd=dir_fd)
        self.entries.append((dir_fd, name, (st.st_dev, st.st_ino), shown))

    def verify(self) -> None:
        """Every directory and file created still stands under its name, the same inode."""
        for parent_fd, name, ident, shown in self.entries:
            try:
                st = os.lstat(name, dir_fd=parent_fd)
            except FileNotFoundError:
                raise swapped(shown) from None
            except OSError as exc:
                raise TargetIOError(f"cannot check target: {exc.strerror}", path=shown) from exc
            if (st.st_dev, st.st_ino) != ident:
                raise swapped(shown)

    def sync(self, files: list[tuple[int, str]], dirs: list[int]) -> None:
        """fsync the files ``(dir_fd, name)`` (each opened without following a link, a regular
        file) and the directories ``dirs``, all together (:func:`fsync_paths`, on the descriptors)."""
        opened: list[int] = []
        shown: dict[int, str] = {}
        try:
            for dfd, name in files:
                where = self.shown(fd_path(dfd, name)) or name
                try:
                    fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
                except OSError as exc:
                    if exc.errno in _SWAPPED:
                        raise swapped(where) from None
                    raise TargetIOError(f"cannot open the target to sync it: {exc.strerror}", path=where) from exc
                opened.append(fd)
                shown[fd] = where
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise swapped(where)
            for d in dirs:
                shown[d] = self.names.get(d, fd_path(d))
            try:
                fsync_paths([fd_path(fd) for fd in [*opened, *dirs]])
            except ArchiveError as exc:
                m = _FD_PATH.match(exc.path or "")
                if m is not None and int(m.group(1)) in shown:
                    exc.path = shown[int(m.group(1))]
                raise
        finally:
            for fd in opened:
                os.close(fd)

    def chown(self, fd: int, owner: tuple[int, int] | None) -> None:
        """chown the directory ``fd`` and everything below it, never following a link
        (:func:`os.fwalk` opens each directory relative to its parent, without following)."""
        if owner is None:
            return
        uid, gid = owner
        shown = self.names.get(fd, fd_path(fd))
        try:
            os.chown(fd, uid, gid)
            for _top, dirs, files, top_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
                for n in dirs + files:
                    os.chown(n, uid, gid, dir_fd=top_fd, follow_symlinks=False)
        except OSError as exc:
            raise TargetIOError(f"cannot chown target: {exc.strerror}", path=shown) from exc


def sync_dir(fd: int, shown: str) -> None:
    """fsync the directory ``fd`` (a file system that cannot sync directories is accepted)."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise TargetIOError(f"cannot sync the directory: {exc.strerror}", path=shown) from exc


def rename_checked(src_fd: int, src: str, dst_fd: int, dst: str, ident: tuple[int, int] | None,
                   shown: str, rename) -> None:
    """Rename ``src`` (in ``src_fd``) to ``dst`` (in ``dst_fd``), checking first that ``src`` is
    still the inode ``ident`` (a link swapped in for it is never moved into place)."""
    if ident is not None:
        try:
            st = os.lstat(src, dir_fd=src_fd)
        except FileNotFoundError:
            raise swapped(shown) from None
        if (st.st_dev, st.st_ino) != ident:
            raise swapped(shown)
    rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


class PartitionWriter(sfmod.PartitionWriter):
    """The series file partition writer creating and opening its segments relative to the
    partition directory's held descriptor ``pfd`` (``part.path`` is its /proc/self/fd name)."""

    def __init__(self, part: sfmod.Partition, tree: Tree, pfd: int) -> None:
        self.tree = tree
        self.pfd = pfd
        super().__init__(part)

    def _create(self, path: str, segment_id: int) -> None:
        name = os.path.basename(path)
        shown = self.tree.shown(path) or path
        fd = self.tree.create(self.pfd, name, shown)
        try:
            os.write(fd, sfmod.segment_bytes_header())
            os.ftruncate(fd, tfmt.segment_size(segment_id))
        except OSError as exc:
            raise TargetIOError(f"cannot write target series segment: {exc.strerror}", path=shown) from exc
        finally:
            os.close(fd)
        self.written.append(path)

    def _open(self) -> int:
        if self._fd is None:
            name = os.path.basename(self.active.path)
            try:
                self._fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.pfd)
            except OSError as exc:
                shown = self.tree.shown(self.active.path) or self.active.path
                if exc.errno in _SWAPPED:
                    raise swapped(shown) from None
                raise TargetIOError(f"cannot write target series segment: {exc.strerror}", path=shown) from exc
            if not stat.S_ISREG(os.fstat(self._fd).st_mode):
                raise swapped(self.tree.shown(self.active.path) or self.active.path)
        return self._fd
