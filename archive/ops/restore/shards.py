"""Staging a restore's shards: every file copied into a staging directory beside the target and
checked on the way (a TSM file's header, index, footer and every block's CRC; a tombstone file
parsed), a portable backup's ``.tar.gz`` members inflated straight into the staging area, a shard
whose increments do not reduce to whole files written anew, WAL segments copied raw or their
replayed cache written as one new TSM file, several shards at once; then the staged directories
renamed into place, and ``--owner``'s chown of everything written.

Files are created only through the descriptors of the staging directories this run made
(:data:`~.journal.STAGE_FDS`), so no link swapped in for a staging path is followed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import grp
import os
import pwd
import tarfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ....tsm.reader import TSMReader
from ....tsm.tombstone import read_tombstones
from ....tsm.writer import TSMWriter
from ... import guard
from ...errors import (
    ArchiveError,
    ChecksumError,
    FormatError,
    TargetError,
    TruncatedError,
    UsageError,
    show,
)
from ...findings import BLOCK_LEFT_OUT, ERROR, FILE_LEFT_OUT, Finding
from ...progress import Reporter
from ...sources import ShardFile
from ...sources.shardview import open_shard_reader, replay_wal
from ...sources.tarscan import GZIP_ERRORS, gzip_open, tar_error
from ...untrusted import open_tar
from ..tsmcopy import checked_chunks, damaged_blocks, write_intact_blocks
from ..writeshard import write_shard
from .journal import STAGE_FDS, Transaction
from .modes import DIR_MODE_DB, DIR_MODE_SHARD, DIR_MODE_WAL, FILE_MODE
from .plan import FilePlan, RestorePlan, ShardPlan

if TYPE_CHECKING:
    from ....tsm.wal import Cache

COPY_CHUNK = 1 << 20
MAX_STAGE_WORKERS = 4  # shards staged at once (bounded: each may spool a decompressed tar)

#: (shard plan, staged shard directory, staged WAL directory or None) of each shard staged
Staged = list[tuple[ShardPlan, Path, Path | None]]


def stage_all(plan: RestorePlan, tx: Transaction, rep: Reporter, salvaged: list | None) -> tuple[Staged, int, int]:
    """Stage every shard's files (validated while copied) in a staging dir per target root.
    Shards are staged in parallel (reads, writes, CRCs and fsyncs release the GIL). With
    ``salvaged`` (salvage) the damage left out is appended there, in shard order. Returns the
    staged shards, the files and the bytes written."""
    nfiles = 0
    nbytes = 0
    data_stage = tx.stage_dir(plan.datadir) if plan.shards else None
    wal_stage = tx.stage_dir(plan.waldir) if plan.waldir and any(s.wal_dir for s in plan.shards) else None
    lock = threading.Lock()
    failed = threading.Event()

    def advance(n: int) -> None:
        if failed.is_set():
            raise _Abandoned()  # another shard failed: stop copying, the staging area goes
        with lock:
            rep.advance(n)

    def stage(i: int, sp: ShardPlan):
        found: list | None = [] if salvaged is not None else None  # merged in shard order below
        try:
            return _stage_shard(plan, tx, sp, data_stage, wal_stage, i, advance, found), found  # type: ignore[arg-type]
        except BaseException:
            failed.set()
            raise

    # one more worker than cores: a worker waiting for its fsync leaves its core to the others
    workers = min((os.cpu_count() or 1) + 1, len(plan.shards), MAX_STAGE_WORKERS)
    plan.source.expect([sp.shard for sp in plan.shards])
    if workers <= 1:
        results = [stage(i, sp) for i, sp in enumerate(plan.shards)]
    else:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(stage, i, sp) for i, sp in enumerate(plan.shards)]
            try:
                results = [f.result() for f in futures]
            except BaseException as exc:
                failed.set()
                for f in futures:
                    f.cancel()
                concurrent.futures.wait(futures)
                if isinstance(exc, _Abandoned):  # this shard only stopped because another failed
                    raise _first_error(futures) from None
                raise
    staged: Staged = []
    for (sp, sdir, wdir, files, size), found in results:
        if found:
            salvaged.extend(found)  # type: ignore[union-attr]
        nfiles += files
        nbytes += size
        staged.append((sp, sdir, wdir))
    return staged, nfiles, nbytes


def move_in_all(tx: Transaction, staged: Staged) -> list[str]:
    """Rename the staged shard (and WAL) directories into place — into an existing shard with
    ``--merge``, file by file — creating the database and retention policy directories. Returns
    every path created, in creation order. Everything goes through descriptors (see
    :class:`~.journal.Roots`): nothing is looked up by path."""
    written: list[str] = []
    for sp, sdir, wdir in staged:
        _still_staged(sdir)
        if wdir is not None:
            _still_staged(wdir)
        tx.mkdirs(sp.target_dir.parent, DIR_MODE_DB)
        names = sorted(os.listdir(STAGE_FDS[sdir]))
        if sp.into_existing and tx.is_dir(sp.target_dir):
            for name in names:
                tx.move_in(sdir / name, sp.target_dir / name)
                written.append(str(sp.target_dir / name))
        else:
            tx.move_in(sdir, sp.target_dir)
            written.append(str(sp.target_dir))
            written.extend(str(sp.target_dir / n) for n in names)
        if wdir is not None and sp.wal_dir is not None:
            tx.mkdirs(sp.wal_dir.parent, DIR_MODE_WAL)
            names = sorted(os.listdir(STAGE_FDS[wdir]))
            tx.move_in(wdir, sp.wal_dir)
            written.append(str(sp.wal_dir))
            written.extend(str(sp.wal_dir / n) for n in names)
    return written


def _still_staged(sdir: Path) -> None:
    """``sdir`` still names the directory staged (held in :data:`STAGE_FDS`): a link swapped in
    for it is never moved into place."""
    held = os.fstat(STAGE_FDS[sdir])
    try:
        st = os.lstat(sdir.name, dir_fd=STAGE_FDS[sdir.parent])
    except FileNotFoundError:
        st = None
    if st is None or (st.st_dev, st.st_ino) != (held.st_dev, held.st_ino):
        raise TargetError(
            "is a symbolic link or not what this run created (swapped in during the run?); never moved into place",
            path=str(sdir),
        )


class _Abandoned(Exception):
    """Raised in a staging worker once another worker has failed (never reaches the caller)."""


def _first_error(futures) -> BaseException:
    """The error to report from failed staging workers: the first real one, in shard order."""
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    real = [e for e in errors if not isinstance(e, _Abandoned)]
    return (real or errors)[0]


def _stage_shard(
    plan: RestorePlan, tx: Transaction, sp: ShardPlan, data_stage: Path, wal_stage: Path | None, i: int, advance,
    salvaged: list | None,
) -> tuple[ShardPlan, Path, Path | None, int, int]:
    """Copy one shard's files (checked) into ``data_stage/i`` (and its WAL into ``wal_stage/i``),
    fsynced. Returns (shard plan, staged dir, staged WAL dir or None, files written, bytes written)."""
    nfiles = nbytes = 0
    sdir = tx.stage_subdir(data_stage, str(i), DIR_MODE_SHARD)
    wdir = None
    # Spool files (a sealed archive's members) go into the staging directory this run opened,
    # named through /proc/self/fd so that no link swapped in for its path is followed.
    spool = f"/proc/self/fd/{STAGE_FDS[data_stage]}"
    spool_dir = spool if os.path.isdir(spool) else str(data_stage)
    if sp.rewrite is not None:
        with open_shard_reader(plan.source, sp.shard, tmpdir=spool_dir) as reader:
            written = write_shard(reader, sdir, *sp.rewrite)
        for w in written:
            os.chmod(w.path, FILE_MODE)
            nfiles += 1
            nbytes += w.size
        advance(sp.files[0].size)
        sp.files[0].size = sum(w.size for w in written)
        os.fsync(STAGE_FDS[sdir])
        return sp, sdir, None, nfiles, nbytes
    with plan.source.open_shard(sp.shard, tmpdir=spool_dir, spool_gz=False) as opened:
        # Files inside a .tar.gz (portable backups) are inflated straight into the staging area,
        # one pass per container, and checked there: no temporary copy of the decompressed tar.
        inflated = _inflate_members(
            [fp for fp in sp.files if fp.source is not None and fp.source.gz], sdir, advance, salvaged
        )
        for fp in sp.files:
            if fp.source is None:
                continue
            if fp.source.gz:
                if fp.target_name not in inflated:
                    continue  # --salvage: lost with its damaged container (a finding says so)
                with _open_staged(sdir / fp.target_name) as staged:
                    wrote = _copy_validated(staged, fp.source, sdir / fp.target_name, advance, salvaged, in_place=True)
            else:
                wrote = _copy_validated(opened.stream(fp.source), fp.source, sdir / fp.target_name, advance, salvaged)
            if wrote:
                nfiles += 1
                nbytes += wrote
        if sp.flush_wal or sp.wal_dir is not None:
            cache = replay_wal(opened, sp.shard, salvage=salvaged is not None, findings=salvaged)
        if sp.flush_wal:
            advance(sum(f.size for f in sp.shard.wal))  # the segments just replayed (in the plan's total)
            name = sp.files[-1].target_name
            size = _flush_cache(cache, sdir / name)
            if size:
                nfiles += 1
                nbytes += size
            sp.files[-1].size = size
        if sp.wal_dir is not None:
            wdir = tx.stage_subdir(wal_stage, str(i), DIR_MODE_WAL)  # type: ignore[arg-type]
            for seg in sp.wal_files:
                _copy_raw(opened.stream(seg).read, wdir / seg.name, seg.size, advance)
                nfiles += 1
                nbytes += seg.size
    os.fsync(STAGE_FDS[sdir])
    if wdir is not None:
        os.fsync(STAGE_FDS[wdir])
    return sp, sdir, wdir, nfiles, nbytes


def _dir_fd_of(dest: Path) -> int | None:
    return STAGE_FDS.get(dest.parent)


def _create_staged(dest: Path):
    """A new file ``dest`` in a staging directory, created through the directory's descriptor
    (O_EXCL, O_NOFOLLOW); a plain exclusive create elsewhere."""
    fd = _dir_fd_of(dest)
    if fd is None:
        return open(dest, "xb")
    return open(dest, "xb", opener=_opener(dest, fd, FILE_MODE))


def _open_staged(dest: Path):
    fd = _dir_fd_of(dest)
    if fd is None:
        return open(dest, "rb")
    return open(dest, "rb", opener=_opener(dest, fd))


def _opener(dest: Path, dir_fd: int, mode: int = 0o600):
    """An ``open`` opener creating / opening ``dest.name`` relative to ``dir_fd`` without following
    a link; its errors name the whole path."""
    def opener(_path: str, flags: int) -> int:
        try:
            return os.open(dest.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
        except OSError as exc:
            exc.filename = str(dest)
            raise
    return opener


def _unlink_staged(dest: Path) -> None:
    fd = _dir_fd_of(dest)
    with contextlib.suppress(FileNotFoundError):
        if fd is None:
            os.unlink(dest)
        else:
            os.unlink(dest.name, dir_fd=fd)


def _replace_staged(src: Path, dest: Path) -> None:
    fd = _dir_fd_of(dest)
    if fd is None or _dir_fd_of(src) != fd:
        os.replace(src, dest)
    else:
        os.replace(src.name, dest.name, src_dir_fd=fd, dst_dir_fd=fd)


def _inflate_members(files: list[FilePlan], sdir: Path, advance, findings: list | None) -> set[str]:
    """Write the members behind ``files`` (all inside .tar.gz containers) to ``sdir/<target name>``,
    reading each container once, fsynced; returns the target names written. Damage in a
    container raises, or with ``findings`` (salvage) leaves its remaining files out, reported.
    Errors writing the staging area are OSErrors, as everywhere in the restore."""
    done: set[str] = set()
    by_container: dict[str, dict[str, FilePlan]] = {}
    fp: FilePlan | None
    for fp in files:
        by_container.setdefault(fp.source.container, {})[fp.source.member] = fp  # type: ignore[union-attr,index]
    for container, wanted in by_container.items():
        current: str | None = None  # the member being read, for error messages

        def read(fn, *args):
            """A read of the container: its damage becomes the source's FormatError."""
            try:
                return fn(*args)
            except (tarfile.TarError, *GZIP_ERRORS) as exc:
                # read late on purpose: the container and member being read when the error came
                raise tar_error(container, current, exc) from exc  # noqa: B023

        dest: Path | None = None
        try:
            with contextlib.ExitStack() as stack:
                gz = stack.enter_context(read(gzip_open, container))
                # bounded headers; called at once, in this iteration
                tf = stack.enter_context(read(lambda: open_tar(gz, "r|", bufsize=1 << 20)))  # noqa: B023
                members = iter(tf)
                while wanted:
                    member = read(next, members, None)
                    if member is None:
                        raise FormatError(
                            "members listed when the backup was opened are missing",
                            path=container,
                            member=sorted(wanted)[0],
                        )
                    current = member.name
                    fp = wanted.pop(member.name, None)
                    if fp is None:
                        continue
                    if not member.isfile() or member.size != fp.source.size:  # type: ignore[union-attr]
                        raise FormatError(
                            f"member is no longer the {fp.source.size}-byte file listed",  # type: ignore[union-attr]
                            path=container,
                            member=member.name,
                        )
                    src = read(tf.extractfile, member)
                    dest = sdir / fp.target_name
                    # both closures are called only inside this _copy_raw, in this iteration
                    _copy_raw(
                        lambda n: read(src.read, n), dest, member.size, advance,  # noqa: B023
                        ended_early=lambda _left: TruncatedError(
                            "tar archive is truncated (unexpected end of data)",
                            path=container, member=current),  # noqa: B023
                    )
                    done.add(fp.target_name)
                    dest = None
        except ArchiveError as exc:
            if findings is None:
                raise
            findings.append(
                Finding(ERROR, f"file left out: {exc.message}", exc.path, exc.member, exc.offset, code=FILE_LEFT_OUT))
            if dest is not None:
                _unlink_staged(dest)
    return done


def _copy_validated(
    stream, f: ShardFile, dest: Path, advance, findings: list | None = None, *, in_place: bool = False
) -> int:
    """Copy a shard file into the staging area, checked on the way: a TSM file's header, index and
    footer first, then every block's CRC while its bytes are copied; a tombstone file is parsed
    first. ``in_place``: the file is already at ``dest`` (``stream`` reads it) and is only checked.
    A damaged file raises (the staging area is then discarded). With ``findings`` (salvage) a
    damaged TSM file keeps its intact blocks, an unreadable file is left out, and each loss is
    appended there. Returns the bytes written (0: left out)."""
    intact = dest.with_name(dest.name + ".intact")  # salvage: the intact blocks, renamed to dest
    try:
        if f.kind == "tombstone":
            read_tombstones(stream, name=f.origin)
            if not in_place:
                stream.seek(0)
                _copy_raw(stream.read, dest, f.size, advance)
            return f.size
        reader = TSMReader(stream, name=f.origin, size=f.size)
        damaged: list[ArchiveError] = []
        copied = 0
        with contextlib.ExitStack() as stack:
            out = None if in_place else stack.enter_context(_create_staged(dest))
            flusher = _Writeback(out) if out is not None else None
            try:
                for chunk in checked_chunks(stream, reader, on_damage=None if findings is None else damaged.append):
                    if out is not None:
                        out.write(chunk)
                        flusher.wrote(len(chunk))  # type: ignore[union-attr]
                        advance(len(chunk))
                        copied += len(chunk)
            except TruncatedError as exc:
                if findings is None:
                    raise
                damaged.append(exc)
            if not damaged:
                if out is not None:
                    _finish(out)
                return f.size
        # --salvage, and the file has damaged blocks: a new TSM file of its intact blocks instead
        for err in damaged:
            if not isinstance(err, (ChecksumError, TruncatedError)):
                raise err  # a block that is intact but not what the index says: the file is left out
        for key, e in damaged_blocks(reader):
            findings.append(  # type: ignore[union-attr]
                Finding(ERROR, f"damaged block of key {show(key)} left out", f.container, f.member, e.offset,
                        code=BLOCK_LEFT_OUT))
        with _create_staged(intact) as out:
            size = write_intact_blocks(reader, out)
            _finish(out)
        if not in_place:
            advance(f.size - copied)
        _unlink_staged(dest)
        if size is None:
            _unlink_staged(intact)
            return 0
        _replace_staged(intact, dest)
        return size
    except ArchiveError as exc:
        exc.located(path=f.container, member=f.member)
        if findings is None:
            raise exc
        findings.append(
            Finding(ERROR, f"file left out: {exc.message}", exc.path, exc.member, exc.offset, code=FILE_LEFT_OUT))
        _unlink_staged(dest)
        _unlink_staged(intact)
        return 0


class _Writeback:
    """Starts the kernel writing a file's pages to disk while the copy goes on, so that the fsync
    at its end has little left to wait for (the copy and the disk work at the same time).
    ``POSIX_FADV_DONTNEED`` on just-written, still dirty pages starts their writeback (the same
    fallback PostgreSQL's pg_flush_data uses); it changes nothing a reader sees."""

    STEP = 1 << 20  # measured: 8 MiB 77 ms, 2 MiB 69 ms, 1 MiB 64 ms for the 80 MB bench backup

    __slots__ = ("_done", "_fd", "_pending")

    def __init__(self, out) -> None:
        self._fd = out.fileno() if hasattr(os, "posix_fadvise") else None
        self._done = 0
        self._pending = 0

    def wrote(self, n: int) -> None:
        self._pending += n
        if self._pending >= self.STEP and self._fd is not None:
            try:
                os.posix_fadvise(self._fd, self._done, self._pending, os.POSIX_FADV_DONTNEED)
            except OSError:  # a file system without it: the fsync at the end still does the work
                self._fd = None
            self._done += self._pending
            self._pending = 0


def _finish(out) -> None:
    out.flush()
    os.fchmod(out.fileno(), FILE_MODE)
    os.fsync(out.fileno())


def _copy_raw(read, dest: Path, size: int, advance, *, ended_early=None) -> None:
    """Copy ``size`` bytes from ``read(n)`` to the new file ``dest`` (writeback started on the way,
    finished and fsynced). A source that runs out raises ``ended_early(bytes left)``, by default
    a TargetError naming ``dest``."""
    with _create_staged(dest) as out:
        flusher = _Writeback(out)
        left = size
        while left > 0:
            chunk = read(min(COPY_CHUNK, left))
            if not chunk:
                if ended_early is not None:
                    raise ended_early(left)
                raise TargetError(f"source ended {left} bytes early while copying", path=str(dest))
            out.write(chunk)
            flusher.wrote(len(chunk))
            left -= len(chunk)
            advance(len(chunk))
        _finish(out)


def _flush_cache(cache: Cache, dest: Path) -> int:
    """Write the replayed WAL cache as one TSM file; returns its size (0: nothing to write)."""
    keys = cache.keys()
    if not keys:
        return 0
    with _create_staged(dest) as out:
        w = TSMWriter(out)
        for key in keys:
            btype, ts, vs = cache.values(key)
            if ts:
                w.write_values(key, btype, ts, vs)
        size = w.close()
        out.flush()
        os.fchmod(out.fileno(), FILE_MODE)
        os.fsync(out.fileno())
    return size


def parse_owner(spec: str) -> tuple[int, int]:
    """``user[:group]`` (names or numeric ids) -> (uid, gid); the group defaults to the user's."""
    user, _, group = spec.partition(":")
    try:
        pw = pwd.getpwuid(int(user)) if (user.isascii() and user.isdigit()) else pwd.getpwnam(user)
    except (KeyError, ValueError):
        if (user.isascii() and user.isdigit()):
            return int(user), int(group) if (group.isascii() and group.isdigit()) else _gid(group, int(user))
        raise UsageError(f"--owner: no such user {user!r}") from None
    uid, gid = pw.pw_uid, pw.pw_gid
    if group:
        gid = _gid(group, gid)
    return uid, gid


def owner_text(uid: int, gid: int) -> str:
    """``user:group`` by name where the system has names (numbers otherwise), for messages."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


def _gid(group: str, default: int) -> int:
    if not group:
        return default
    if (group.isascii() and group.isdigit()):
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UsageError(f"--owner: no such group {group!r}") from None


def chown_all(tx: Transaction, written: list[str], plan: RestorePlan, ids: tuple[int, int]) -> None:
    uid, gid = ids
    for d in guard.created_dirs():  # the target directories and parents made at the start
        try:
            os.lchown(d, uid, gid)
        except OSError as exc:
            raise TargetError(f"cannot chown to {owner_text(uid, gid)}: {exc.strerror}", path=str(d)) from exc
    for p in [*tx.created_dirs, *map(Path, written)]:
        role, rel = tx.roots.locate(p)
        try:
            if not rel:
                os.chown(tx.roots.fds[role], uid, gid)
                continue
            fd = tx.roots.open_dir(role, rel[:-1])
            try:
                os.chown(rel[-1], uid, gid, dir_fd=fd, follow_symlinks=False)
            finally:
                os.close(fd)
        except OSError as exc:
            raise TargetError(f"cannot chown to {owner_text(uid, gid)}: {exc.strerror}", path=str(p)) from exc
