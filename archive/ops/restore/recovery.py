"""Recovery of what a restore killed outright (SIGKILL, power loss) left behind: its staging
directories and journals (see :class:`~.journal.Transaction`), found beside or inside the data
and WAL directories by the next restore into the same target.

Trust: a staging directory is acted on only when it provably belongs to this target (this user,
mode 0700, a journal naming this very directory and these target directories); anything else is
reported and left alone. One more kind is ours to remove: a staging directory of this user,
mode 0700, holding nothing but its own regular journal (this user's, one link) that is empty or
holds only a torn first line. The journal's header is written and fsynced before anything is
staged in it or done to the target (:meth:`~.journal.Transaction.stage_dir`), so a run killed
before that line was complete had done nothing: there is nothing to undo and nothing to keep.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from pathlib import Path

from ... import staging
from ...errors import format_where
from ...staging import pid_alive
from .journal import (
    JOURNAL,
    JOURNAL_FORMAT,
    JOURNAL_VERSION,
    MAX_LEFT_ALONE_NOTES,
    STAGE_FDS,
    STAGE_MODE,
    Roots,
    _undo,
)

_STAGE_RE = re.compile(r"^\.influx-archive-restore-([0-9]+)-[0-9]+$")
MAX_JOURNAL_BYTES = 64 << 20  # far above any real journal (one short line per directory / move)
#: far above any header (three target directories, each path and real path at most PATH_MAX,
#: escaped): a longer journal without a complete line is not a torn header
MAX_HEADER_BYTES = 1 << 20
#: how every header the restore writes begins (``Transaction.stage_dir``: these keys first, compact)
_HEADER_START = (
    json.dumps({"format": JOURNAL_FORMAT, "version": JOURNAL_VERSION}, separators=(",", ":"))[:-1] + ',"pid":'
).encode("ascii")
_OPS = ("dir", "moved", "aside", "meta", "commit")
_ASIDE_RE = re.compile(r"^aside-[0-9]+$")


def _where(p: os.PathLike[str] | str) -> str:
    return format_where(os.fspath(p))


class _NotOurs(Exception):
    """A staging directory that does not provably belong to this target (the message says why)."""


def _torn_journal(stage_fd: int) -> tuple[int, int] | None:
    """(device, inode) of the staging directory's journal when it is a regular file of this user
    with one link, empty or holding only a torn header: a beginning of the first line the restore
    writes, no newline (NUL bytes after it: a file system that lost the data of a write not yet
    synced). None for anything else (:func:`_read_journal` says what)."""
    try:
        fd = os.open(JOURNAL, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=stage_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1
            or st.st_size > MAX_HEADER_BYTES
        ):
            return None
        data = os.read(fd, MAX_HEADER_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > MAX_HEADER_BYTES or b"\n" in data:
        return None
    start = data.rstrip(b"\0")
    if not (_HEADER_START.startswith(start) or start.startswith(_HEADER_START)):
        return None
    return st.st_dev, st.st_ino


def _remove_torn(
    base_fd: int, sfd: int, name: str, ident: tuple[int, int], journal: tuple[int, int], stage: Path, pid: int,
    apply: bool,
) -> str:
    """Remove a staging directory holding only a journal with no complete header (see
    :func:`_torn_journal`): the journal through the directory's descriptor, only if it is still
    the inode examined, then the directory, only if it is still the one examined and empty."""
    what = (f"an earlier restore (pid {pid}) was killed before its journal's first line was complete (it had "
            "done nothing yet)")
    if not apply:
        return f"{what}: a real run removes its staging directory{_where(stage)}"
    removed = False
    with contextlib.suppress(OSError):
        jst = os.lstat(JOURNAL, dir_fd=sfd)
        if (jst.st_dev, jst.st_ino) == journal:
            os.unlink(JOURNAL, dir_fd=sfd)
        dst = os.lstat(name, dir_fd=base_fd)
        if (dst.st_dev, dst.st_ino) == ident:
            os.rmdir(name, dir_fd=base_fd)  # only ever removes an empty directory
            removed = True
    return f"{what}: its staging directory was {'removed' if removed else 'not removed (it changed)'}{_where(stage)}"


def _read_journal(stage_fd: int, stage_ident: tuple[int, int]) -> tuple[dict, list[dict]]:
    """The journal of a staging directory: (header, operations), checked to be well formed and
    written by this user for this very directory. A torn last line (a run killed while writing
    it: the operation it announced had not started) is ignored; anything else wrong raises
    _NotOurs."""
    try:
        fd = os.open(JOURNAL, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=stage_fd)
    except FileNotFoundError:
        raise _NotOurs("it holds no journal") from None
    except OSError as exc:
        raise _NotOurs(f"its journal cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _NotOurs("its journal is not a regular file")
        if st.st_uid != os.geteuid():
            raise _NotOurs(f"its journal belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})")
        if st.st_size > MAX_JOURNAL_BYTES:
            raise _NotOurs(f"its journal is {st.st_size} bytes, more than any restore writes ({MAX_JOURNAL_BYTES})")
        chunks = []
        left = MAX_JOURNAL_BYTES + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > MAX_JOURNAL_BYTES:
        raise _NotOurs("its journal grew while read")
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a torn line
    if not lines:
        raise _NotOurs("its journal has no complete header")
    try:
        recs = [json.loads(line.decode("ascii")) for line in lines]
    except (UnicodeDecodeError, ValueError):
        raise _NotOurs("its journal is not one the restore writes (unreadable line)") from None
    header, ops = recs[0], recs[1:]
    if (
        not isinstance(header, dict)
        or header.get("format") != JOURNAL_FORMAT
        or header.get("version") != JOURNAL_VERSION
    ):
        raise _NotOurs("its journal has no header this version writes")
    if header.get("uid") != os.geteuid():
        raise _NotOurs(f"its journal was written by uid {header.get('uid')!r}, not by this user")
    stage = header.get("stage")
    if not isinstance(stage, dict) or (stage.get("dev"), stage.get("ino")) != stage_ident:
        raise _NotOurs("its journal was written for another directory (device/inode differ)")
    targets = header.get("targets")
    if not isinstance(targets, dict) or "data" not in targets:
        raise _NotOurs("its journal names no target directories")
    for role, ident in targets.items():
        if role not in ("meta", "data", "wal") or not isinstance(ident, dict) or not all(
            isinstance(ident.get(k), t) for k, t in (("path", str), ("real", str), ("dev", int), ("ino", int))
        ):
            raise _NotOurs("its journal names target directories in a form the restore never writes")
    if not isinstance(header.get("main"), bool):
        raise _NotOurs("its journal header is incomplete")
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in _OPS:
            raise _NotOurs("its journal holds an operation the restore never writes")
        if op["op"] in ("dir", "moved", "aside"):
            rel = op.get("rel")
            if (
                op.get("root") not in targets or not isinstance(rel, list) or not rel
                or not all(isinstance(p, str) and staging.SAFE_PART.match(p) for p in rel)
            ):
                raise _NotOurs("its journal names a path outside its target directories")
            if (op["op"] != "dir" and not (isinstance(op.get("dev"), int) and isinstance(op.get("ino"), int))) or (
                op["op"] == "aside" and not (isinstance(op.get("name"), str) and _ASIDE_RE.match(op["name"]))
            ):
                raise _NotOurs("its journal names a move without its inode or aside name")
        if op["op"] == "meta" and not (
            isinstance(op.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", op["sha256"])
        ):
            raise _NotOurs("its journal holds a malformed metastore record")
    return header, ops


def _matches(targets: dict, ours: dict[str, dict]) -> str | None:
    """None when every target the journal names is this run's directory of that role (same
    device and inode, same path); else why not."""
    for role, ident in targets.items():
        mine = ours.get(role)
        if mine is None:
            return f"it names a {role} directory ({ident['path']}) this restore was not given"
        if (ident["dev"], ident["ino"]) != (mine["dev"], mine["ino"]) or (
            ident["path"] != mine["path"] and ident["real"] != mine["real"]
        ):
            return f"it belongs to a restore into other directories ({ident['path']})"
    return None


def recover_interrupted(
    *, metadir: Path | None = None, datadir: Path | None = None, waldir: Path | None = None, apply: bool = True
) -> list[str]:
    """Undo restores into these target directories that were killed before they finished
    (their staging directories and journals, see :class:`~.journal.Transaction`), found beside
    or inside the data and WAL directories. Only a staging directory that provably belongs to
    this target is acted on: a directory (not a link) of this user, mode 0700, whose journal
    records this staging directory's own device and inode and these target directories (path,
    device, inode), and names only paths below them. Anything else is reported and left alone,
    except a staging directory of ours that is empty or holds only its journal, empty or with a
    torn header (a run killed before it had done anything, see the module's docstring): removed.
    Undoing removes only the inodes the journal recorded as renamed in, and empty directories it
    created. Returns one note per staging directory found (with ``apply`` false: what a real
    run would do, changing nothing). Call it holding the targets'
    :class:`~influx_archive.archive.guard.TargetLock`."""
    paths = {r: p for r, p in (("meta", metadir), ("data", datadir), ("wal", waldir)) if p is not None and p.is_dir()}
    if "data" not in paths:
        return []
    roots = Roots(paths)
    notes: list[str] = []
    left_alone = 0
    try:
        ours = roots.identities()
        seen: set[tuple[int, int]] = set()
        for role in ("data", "wal"):
            if role not in paths:
                continue
            for base in (paths[role], paths[role].parent):
                try:
                    base_fd = os.open(base, staging.DIR_FLAGS)
                except OSError:
                    continue
                try:
                    bst = os.fstat(base_fd)
                    if (bst.st_dev, bst.st_ino) in seen:
                        continue
                    seen.add((bst.st_dev, bst.st_ino))
                    for name in sorted(os.listdir(base_fd)):
                        m = _STAGE_RE.match(name)
                        if m and (base / name) not in STAGE_FDS:  # not a staging area of this run
                            note = _recover_stage(roots, ours, base_fd, base / name, int(m.group(1)), apply)
                            if note and note.startswith(_LEFT_ALONE):
                                left_alone += 1
                                if left_alone > MAX_LEFT_ALONE_NOTES:
                                    continue
                            if note:
                                notes.append(note)
                finally:
                    os.close(base_fd)
    finally:
        roots.close()
    if left_alone > MAX_LEFT_ALONE_NOTES:
        notes.append(
            f"{left_alone - MAX_LEFT_ALONE_NOTES} more such staging directories were left "
            f"alone{_where(sorted(paths.values())[0].parent)}"
        )
    return notes


_LEFT_ALONE = "a staging directory that is not provably"


def _reopen_stage(base_fd: int, name: str, ident: tuple[int, int]) -> int:  # for its moved-aside entries; -1: gone
    with contextlib.suppress(OSError):
        sfd = os.open(name, staging.NOFOLLOW_DIR, dir_fd=base_fd)
        fst = os.fstat(sfd)
        if (fst.st_dev, fst.st_ino) == ident:
            return sfd
        os.close(sfd)
    return -1


def _recover_stage(roots: Roots, ours: dict[str, dict], base_fd: int, stage: Path, pid: int, apply: bool) -> str | None:
    name = stage.name
    try:
        st = os.lstat(name, dir_fd=base_fd)
        if stat.S_ISLNK(st.st_mode):
            raise _NotOurs("it is a symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            raise _NotOurs("it is not a directory")
        if st.st_uid != os.geteuid():
            raise _NotOurs(f"it belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})")
        if stat.S_IMODE(st.st_mode) != STAGE_MODE:
            raise _NotOurs(f"its mode is {stat.S_IMODE(st.st_mode):04o}, not {STAGE_MODE:04o}")
        try:
            sfd = os.open(name, staging.NOFOLLOW_DIR, dir_fd=base_fd)
        except OSError as exc:
            raise _NotOurs(f"it cannot be opened: {exc.strerror}") from None
        try:
            fst = os.fstat(sfd)
            ident = (fst.st_dev, fst.st_ino)
            if ident != (st.st_dev, st.st_ino):
                raise _NotOurs("it changed while examined")
            entries = os.listdir(sfd)
            if not entries:  # killed before its journal was written, or as its clean-up ended
                if apply:
                    with contextlib.suppress(OSError):
                        os.rmdir(name, dir_fd=base_fd)  # only ever removes an empty directory
                    return (f"an earlier restore (pid {pid}) left an empty staging directory (interrupted before it "
                            f"wrote anything, or as it finished): removed{_where(stage)}")
                return (f"an earlier restore (pid {pid}) left an empty staging directory (interrupted before it "
                        f"wrote anything, or as it finished): a real run removes it{_where(stage)}")
            torn = _torn_journal(sfd) if entries == [JOURNAL] else None
            if torn is not None:
                if pid != os.getpid() and pid_alive(pid):
                    return None  # perhaps a restore into other directories, just writing its header
                return _remove_torn(base_fd, sfd, name, ident, torn, stage, pid, apply)
            header, ops = _read_journal(sfd, ident)
        finally:
            os.close(sfd)
        why = _matches(header["targets"], ours)
        if why is not None:
            if pid_alive(pid):
                return None  # a restore running into other directories: not ours to mention
            raise _NotOurs(why)
    except _NotOurs as exc:
        return f"{_LEFT_ALONE} left by an interrupted restore into this target ({exc}): left alone{_where(stage)}"
    if not apply:
        return f"an earlier restore (pid {pid}) was interrupted; a real run undoes it first{_where(stage)}"
    committed = False
    moved: list = []
    created: list = []
    asides: list = []
    for op in ops:
        if op["op"] == "commit":
            committed = True
        elif op["op"] == "meta" and "meta" in roots.fds:
            with contextlib.suppress(OSError):
                fd = os.open(
                    "meta.db", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=roots.fds["meta"]
                )
                try:
                    h = hashlib.sha256()
                    while chunk := os.read(fd, 1 << 20):
                        h.update(chunk)
                finally:
                    os.close(fd)
                committed = committed or h.hexdigest() == op["sha256"]
        elif op["op"] == "moved":
            moved.append((op["root"], tuple(op["rel"]), (op["dev"], op["ino"])))
        elif op["op"] == "dir":
            created.append((op["root"], tuple(op["rel"])))
        elif op["op"] == "aside":
            asides.append((op["root"], tuple(op["rel"]), op["name"], (op["dev"], op["ino"])))
    undone = 0
    if header["main"] and not committed:
        afd = _reopen_stage(base_fd, name, (st.st_dev, st.st_ino)) if asides else -1
        undone = _undo(roots, moved, created, asides, afd)  # suppresses every error itself
        if afd >= 0:
            os.close(afd)
    with contextlib.suppress(OSError):
        staging.remove_beneath(base_fd, name, expect=(st.st_dev, st.st_ino), last=JOURNAL)
    if not header["main"]:
        return f"an earlier restore (pid {pid}) was interrupted; its staging area was removed{_where(stage)}"
    return f"an earlier restore (pid {pid}) was interrupted; " + (
        "its staging area was removed" if committed else f"its {undone} partial moves into the target were undone"
    ) + _where(stage)
