"""The transaction of an offline restore: the target directories held open, staging directories
beside them, the journal that records every change to the target, commit, rollback, and the
targets' lock. Recovery of what a killed run left behind is :mod:`.recovery`'s.

Trust (see :mod:`~influx_archive.archive.guard`):

* one writer per target: planning and execution hold the targets' flock (:func:`target_lock`,
  ``.influx-archive.lock`` in each target directory);
* the target directories are opened once (a link the user named is followed then) and every
  later step — creating directories, renaming staged shards in, writing ``meta.db``, chown,
  undo — goes through descriptors (:class:`Roots`), each component opened with O_NOFOLLOW at the
  moment of use, renames with RENAME_NOREPLACE; a target directory renamed away and replaced is
  refused before ``meta.db`` is written (:meth:`Roots.check_unmoved`);
* a staging directory or journal found beside the target is acted on only when it provably
  belongs to this target (:func:`~.recovery.recover_interrupted`); anything else is reported,
  left alone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from ... import staging
from ...errors import TargetError
from ...guard import TargetLock
from .modes import DIR_MODE_META, DIR_MODE_SHARD

STAGE_PREFIX = ".influx-archive-restore-"
MAX_LEFT_ALONE_NOTES = 10  # then one line counts the rest (see .recovery)
JOURNAL = "journal"
JOURNAL_FORMAT = "influx-archive restore journal"
JOURNAL_VERSION = 2
STAGE_MODE = 0o700

# Staging directories (and the shard directories staged in them) by path -> their descriptor:
# files are created in them relative to it, so no link swapped in for a staging path is followed.
STAGE_FDS: dict[Path, int] = {}


def target_lock(metadir: Path, datadir: Path, waldir: Path | None) -> TargetLock:
    """The :class:`~influx_archive.archive.guard.TargetLock` a restore into these directories
    holds (creating them with influxd's modes)."""
    return TargetLock([(metadir, DIR_MODE_META), (datadir, DIR_MODE_SHARD), (waldir, DIR_MODE_SHARD)])


class Roots:
    """The target directories by role (``meta``, ``data``, ``wal``), each opened once, following
    a link the user named, and from then on reached only through that descriptor: a directory
    below them is opened component by component with O_NOFOLLOW at the moment of use."""

    def __init__(self, paths: Mapping[str, Path | None]) -> None:
        self.paths = {r: p for r, p in paths.items() if p is not None}
        self.fds: dict[str, int] = {}
        try:
            for r, p in self.paths.items():
                try:
                    self.fds[r] = os.open(p, staging.DIR_FLAGS)
                except OSError as exc:
                    raise TargetError(f"target: cannot open directory: {exc.strerror}", path=str(p)) from exc
        except BaseException:
            self.close()
            raise

    def identities(self) -> dict[str, dict]:
        out = {}
        for r, p in self.paths.items():
            st = os.fstat(self.fds[r])
            out[r] = {"path": str(p), "real": os.path.realpath(p), "dev": st.st_dev, "ino": st.st_ino}
        return out

    def locate(self, p: Path) -> tuple[str, tuple[str, ...]]:
        """(role, components below that root) of a path inside a target directory."""
        best: tuple[str, tuple[str, ...]] | None = None
        for r, root in self.paths.items():
            if p == root or root in p.parents:
                rel = p.relative_to(root).parts
                if best is None or len(rel) < len(best[1]):
                    best = (r, rel)
        if best is None:
            raise TargetError("path lies outside the target directories; refusing to write it", path=str(p))
        return best

    def open_dir(self, role: str, rel: tuple[str, ...] | list[str], **kw) -> int:
        """Descriptor of ``root/rel`` (see :func:`staging.open_beneath`); a link below the root
        is a TargetError naming it."""
        try:
            return staging.open_beneath(self.fds[role], rel, **kw)
        except staging.SymlinkError as exc:
            bad = self.paths[role].joinpath(*rel[: int(exc.filename) + 1])
            if exc.errno == errno.EINVAL:  # "..", a "/" or too long: never made by a plan that checked names
                raise TargetError(
                    "target: not a usable directory name; refusing to restore into it", path=str(bad)
                ) from None
            raise TargetError("is a symbolic link; refusing to restore through it", path=str(bad)) from None

    def check_unmoved(self) -> None:
        """Each target path still names the directory opened at the start (not renamed away and
        replaced, e.g. by a link to elsewhere): else TargetError naming it."""
        for r, p in self.paths.items():
            st = os.fstat(self.fds[r])
            try:
                now = os.stat(p)
            except OSError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise TargetError("target directory was replaced while restoring; nothing was restored", path=str(p))

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()


class Transaction:
    """Records every change to the target so a failure can undo it.

    Each staging directory holds a journal whose first line says whose it is (this user, the
    staging directory's own device and inode, and the path, device and inode of every target
    directory); the first one then records, fsynced before each happens, every directory created
    and every rename into the target (with the inode renamed), the hash of the ``meta.db``
    about to be written, and ``commit``. The header is written and fsynced before anything is
    staged or done to the target. A restore killed before it finished (SIGKILL, power loss)
    leaves its staging directory and journal behind; :func:`~.recovery.recover_interrupted`,
    run by the next restore into the same target, undoes it — only once the journal proves it
    belongs to that target, and only on the exact inodes it recorded."""

    def __init__(self, roots: Roots) -> None:
        self.roots = roots
        self.created_dirs: list[Path] = []  # in creation order
        self._created: list[tuple[str, tuple[str, ...]]] = []
        self.moved_in: list[Path] = []  # final paths renamed into place
        self._moved: list[tuple[str, tuple[str, ...], tuple[int, int]]] = []
        #: (root, rel, name in the main staging directory, dev/ino) of what was moved out of the way
        self._asides: list[tuple[str, tuple[str, ...], str, tuple[int, int]]] = []
        self.stages: list[Path] = []
        self._stage_entries: list[tuple[int, str, tuple[int, int], Path]] = []  # (base fd, name, dev/ino, path)
        self._journal: int | None = None

    def _log(self, rec: dict) -> None:
        if self._journal is not None:
            data = (json.dumps(rec, separators=(",", ":")) + "\n").encode("ascii")
            while data:
                data = data[os.write(self._journal, data):]
            os.fsync(self._journal)

    def mkdirs(self, p: Path, mode: int, parent_modes: dict[Path, int] | None = None) -> None:
        role, rel = self.roots.locate(p)
        root = self.roots.paths[role]

        def created(i: int) -> None:
            self._log({"op": "dir", "root": role, "rel": list(rel[: i + 1])})
            self._created.append((role, rel[: i + 1]))
            self.created_dirs.append(root.joinpath(*rel[: i + 1]))

        try:
            fd = self.roots.open_dir(role, rel, create_mode=mode, on_create=created)
        except OSError as exc:
            raise TargetError(f"cannot create directory: {exc.strerror}", path=str(p)) from exc
        os.close(fd)

    def stage_dir(self, near: Path) -> Path:
        """A fresh staging directory (0700) on the same file system as ``near`` (its parent when
        that is the same device, so influxd never sees it inside the data directory)."""
        parent = near.parent
        base = near
        with contextlib.suppress(OSError):
            if os.stat(parent).st_dev == os.stat(near).st_dev:
                base = parent
        try:
            base_fd = os.open(base, staging.DIR_FLAGS)
        except OSError as exc:
            raise TargetError(f"cannot open directory for staging: {exc.strerror}", path=str(base)) from exc
        try:
            n = len(self.stages)
            while True:
                name = f"{STAGE_PREFIX}{os.getpid()}-{n}"
                try:
                    os.mkdir(name, STAGE_MODE, dir_fd=base_fd)
                    break
                except FileExistsError:
                    n += 1  # someone else's (or planted): never reused
            sfd = os.open(name, staging.NOFOLLOW_DIR, dir_fd=base_fd)
        except OSError as exc:
            os.close(base_fd)
            raise TargetError(f"cannot create staging directory: {exc.strerror}", path=str(base / name)) from exc
        path = base / name
        st = os.fstat(sfd)
        os.fchmod(sfd, STAGE_MODE)
        self.stages.append(path)
        self._stage_entries.append((base_fd, name, (st.st_dev, st.st_ino), path))
        STAGE_FDS[path] = sfd
        main = self._journal is None
        jfd = os.open(JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=sfd)
        header = {
            "format": JOURNAL_FORMAT, "version": JOURNAL_VERSION, "pid": os.getpid(), "uid": os.geteuid(),
            "stage": {"dev": st.st_dev, "ino": st.st_ino}, "main": main, "targets": self.roots.identities(),
        }
        # written and synced before anything is staged here or done to the target: a journal
        # without this complete line is one of a run that had done nothing (.recovery removes it)
        data = (json.dumps(header, separators=(",", ":")) + "\n").encode("ascii")
        while data:
            data = data[os.write(jfd, data):]
        os.fsync(jfd)
        os.fsync(sfd)
        if main:
            self._journal = jfd
        else:
            os.close(jfd)
        return path

    def stage_subdir(self, parent: Path, name: str, mode: int) -> Path:
        """A directory ``name`` made inside the staging directory ``parent`` (through its
        descriptor), registered so files are created in it the same way."""
        pfd = STAGE_FDS[parent]
        os.mkdir(name, mode, dir_fd=pfd)
        fd = os.open(name, staging.NOFOLLOW_DIR, dir_fd=pfd)
        os.fchmod(fd, mode)
        STAGE_FDS[parent / name] = fd
        return parent / name

    def is_dir(self, p: Path) -> bool:
        """Whether ``p`` (inside a target directory) is a directory, reached without links."""
        role, rel = self.roots.locate(p)
        try:
            fd = self.roots.open_dir(role, rel)
        except FileNotFoundError:
            return False
        os.close(fd)
        return True

    def move_in(self, staged: Path, final: Path) -> None:
        src_fd = STAGE_FDS[staged.parent]
        role, rel = self.roots.locate(final)
        if not rel:
            raise TargetError("refusing to replace a target directory", path=str(final))
        parent_fd = self.roots.open_dir(role, rel[:-1])
        try:
            st = os.lstat(staged.name, dir_fd=src_fd)
            self._log({"op": "moved", "root": role, "rel": list(rel), "dev": st.st_dev, "ino": st.st_ino})
            try:
                staging.rename_noreplace(staged.name, rel[-1], src_dir_fd=src_fd, dst_dir_fd=parent_fd)
            except FileExistsError:
                raise TargetError("appeared while restoring; refusing to overwrite", path=str(final)) from None
            except OSError as exc:
                raise TargetError(f"cannot move into place: {exc.strerror}", path=str(final)) from exc
            self.moved_in.append(final)
            self._moved.append((role, rel, (st.st_dev, st.st_ino)))
            os.fsync(parent_fd)
        finally:
            os.close(parent_fd)

    def aside(self, final: Path) -> bool:
        """Move ``final`` (a tsi1 series file or index a staged one replaces) into the main staging
        directory, journaled first: rollback and recovery move it back, commit drops it with the
        staging directory. False when nothing is there."""
        sfd = STAGE_FDS[self.stages[0]]
        role, rel = self.roots.locate(final)
        if not rel:
            raise TargetError("refusing to replace a target directory", path=str(final))
        parent_fd = self.roots.open_dir(role, rel[:-1])
        try:
            try:
                st = os.lstat(rel[-1], dir_fd=parent_fd)
            except FileNotFoundError:
                return False
            name, ident = f"aside-{len(self._asides)}", (st.st_dev, st.st_ino)
            self._log({"op": "aside", "root": role, "rel": list(rel), "name": name, "dev": ident[0], "ino": ident[1]})
            try:
                staging.rename_noreplace(rel[-1], name, src_dir_fd=parent_fd, dst_dir_fd=sfd)
            except OSError as exc:
                raise TargetError(f"cannot move out of the way: {exc.strerror}", path=str(final)) from exc
            self._asides.append((role, rel, name, ident))
            os.fsync(parent_fd)
            os.fsync(sfd)
            return True
        finally:
            os.close(parent_fd)

    def will_write_meta(self, path: Path, blob: bytes) -> None:
        """Journal the metastore about to be written: a restore killed after the atomic
        rename of ``meta.db`` but before ``commit`` is complete, one killed before it is not."""
        self._log({"op": "meta", "sha256": hashlib.sha256(blob).hexdigest()})

    def commit(self) -> None:
        self._log({"op": "commit"})

    def rollback(self) -> None:
        main = STAGE_FDS.get(self.stages[0], -1) if self.stages else -1
        _undo(self.roots, self._moved, self._created, self._asides, main)
        self.cleanup()

    def cleanup(self) -> None:
        if self._journal is not None:
            os.close(self._journal)
            self._journal = None
        for p in [p for p in STAGE_FDS if any(p == s or s in p.parents for s in self.stages)]:
            with contextlib.suppress(OSError):
                os.close(STAGE_FDS.pop(p))
        for base_fd, name, ident, _path in self._stage_entries:
            with contextlib.suppress(OSError):
                staging.remove_beneath(base_fd, name, expect=ident, last=JOURNAL)
            with contextlib.suppress(OSError):
                os.close(base_fd)
        self._stage_entries.clear()
        self.stages.clear()


def _undo(roots: Roots, moved: list, created: list, asides: list | None = None, stage_fd: int = -1) -> int:
    """Move out what was renamed in (only the inodes recorded), move back what was moved aside
    into the staging directory ``stage_fd`` (only the inodes recorded, only where nothing is in
    its place), and remove the directories created (only when empty: never what someone else put
    there). Returns how many moves were undone."""
    undone = 0
    for role, rel, ident in reversed(moved):
        with contextlib.suppress(OSError, TargetError):
            fd = roots.open_dir(role, rel[:-1])
            try:
                undone += staging.remove_beneath(fd, rel[-1], expect=ident)
            finally:
                os.close(fd)
    for role, rel, name, ident in reversed(asides if asides and stage_fd >= 0 else []):
        with contextlib.suppress(OSError, TargetError):
            st = os.lstat(name, dir_fd=stage_fd)
            if (st.st_dev, st.st_ino) != tuple(ident):
                continue
            fd = roots.open_dir(role, rel[:-1])
            try:
                staging.rename_noreplace(name, rel[-1], src_dir_fd=stage_fd, dst_dir_fd=fd)
                os.fsync(fd)
                undone += 1
            finally:
                os.close(fd)
    for role, rel in reversed(created):
        with contextlib.suppress(OSError, TargetError):
            fd = roots.open_dir(role, rel[:-1])
            try:
                os.rmdir(rel[-1], dir_fd=fd)
            finally:
                os.close(fd)
    return undone
