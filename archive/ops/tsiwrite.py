"""Writing a tsi1 index on disk for build-tsi: the series file staged and swapped in, each shard's
``index/`` directory written beside the live one and renamed into place, recovery of a swap that
a kill interrupted. Every step is durable (fsync) before the next one depends on it."""

from __future__ import annotations

import errno
import os
import shutil
import stat

from ...tsm.tsi1 import format as tfmt
from ...tsm.tsi1 import index as tindex
from ...tsm.tsi1 import seriesfile as sfmod
from ...tsm.tsi1.compiled import core
from ...tsm.tsi1.xxhash import sum64
from .. import cleanup
from ..errors import FormatError, SourceIOError, TargetError, TargetIOError
from ..progress import ProgressCallback, Reporter
from ..staging import NOFOLLOW_DIR, fsync_dir, fsync_paths

STAGE_INDEX = ".index"
SERIES_STAGE = ".influx-archive-series-new-"
SERIES_OLD = ".influx-archive-series-old-"
INDEX_OLD = ".influx-archive-index-old-"
Progress = ProgressCallback | None

def listdir(path: str, what: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        return []
    except OSError as exc:
        raise SourceIOError(f"cannot list source {what}: {exc.strerror}", path=path) from exc


def makedir(path: str) -> None:
    try:
        os.mkdir(path, 0o777)
    except OSError as exc:
        raise TargetIOError(f"cannot create target directory: {exc.strerror}", path=path) from exc


def chown_tree(path: str, owner: tuple[int, int] | None) -> None:
    if owner is None:
        return
    uid, gid = owner
    try:
        os.lchown(path, uid, gid)
        for dirpath, dirnames, filenames in os.walk(path):
            for n in dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), uid, gid)
    except OSError as exc:
        raise TargetIOError(f"cannot chown target: {exc.strerror}", path=path) from exc


def rmtree(path: str) -> None:
    """Remove ``path``: a directory tree, or whatever else stands there (a FIFO, a file, a link:
    unlinked; ``shutil.rmtree`` would open a FIFO and wait for a writer forever)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise TargetIOError(f"cannot remove target staging directory: {exc.strerror}", path=path) from exc


def _create(path: str, data: bytes) -> int:
    """Create ``path`` (which must not exist) holding ``data`` and start its writeback; returns
    the open descriptor, not yet fsynced (:func:`write_index_dir` syncs it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise TargetIOError(f"cannot write target file: {exc.strerror}", path=path) from exc
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if _START_WRITEBACK is not None:
            # Linux starts writing the dirty pages out here, asynchronously: the fsyncs that follow
            # then wait for writes already under way together instead of each starting its own
            _START_WRITEBACK(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError as exc:
        os.close(fd)
        raise TargetIOError(f"cannot write target file: {exc.strerror}", path=path) from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


_START_WRITEBACK = getattr(os, "posix_fadvise", None)


def write_index_dir(path: str, partitions: list[list[int]]) -> int:
    """Write a complete ``index/`` directory at ``path`` (which must not exist): partition ``p``
    gets a MANIFEST and ``L0-00000001.tsl`` with one series entry per id in ``partitions[p]``, in
    that order. Everything fsynced before this returns: the 16 files (all written first, then
    each fsynced, so their writeback overlaps), then each partition directory, then ``path``.
    Returns the bytes of log written."""
    makedir(path)
    total = 0
    name = tfmt.log_file_name(1)
    manifest = tindex.manifest_bytes([name])
    fds: list[tuple[int, str]] = []
    try:
        for p in range(tfmt.INDEX_PARTITION_N):
            pdir = os.path.join(path, str(p))
            makedir(pdir)
            log = core.log_inserts(partitions[p]) if core is not None else None
            if log is None:
                log = b"".join(tindex.log_entry_bytes(tfmt.LOG_SERIES_INSERT, sid) for sid in partitions[p])
            total += len(log)
            for fname, data in ((name, log), (tfmt.MANIFEST_NAME, manifest)):
                fpath = os.path.join(pdir, fname)
                fds.append((_create(fpath, data), fpath))
        fds.reverse()
        while fds:
            fd, fpath = fds.pop()
            try:
                os.fsync(fd)
            except OSError as exc:
                raise TargetIOError(f"cannot sync target file: {exc.strerror}", path=fpath) from exc
            finally:
                os.close(fd)
    finally:
        for fd, _ in fds:
            os.close(fd)
    for p in range(tfmt.INDEX_PARTITION_N):
        fsync_dir(os.path.join(path, str(p)))
    fsync_dir(path)
    return total


def recover_series_file(db_dir: str) -> None:
    """Undo what a killed run left in a database directory: a staged series file is removed; an
    old series file swapped out but not replaced is moved back."""
    names = listdir(db_dir, "database directory")
    live = os.path.join(db_dir, tfmt.SERIES_FILE_DIR)
    for n in names:
        p = os.path.join(db_dir, n)
        if (n.startswith((SERIES_OLD, SERIES_STAGE))) and (os.path.islink(p) or not os.path.isdir(p)):
            continue  # not what a killed run leaves (a directory): never moved in as _series
        if n.startswith(SERIES_OLD):
            if not os.path.lexists(live):
                try:
                    os.rename(p, live)
                except OSError as exc:
                    raise TargetIOError(
                        f"cannot move back the series file of a killed run: {exc.strerror}", path=p
                    ) from exc
            else:
                rmtree(p)
        elif n.startswith(SERIES_STAGE):
            rmtree(p)


def linked_partition(series_dir: str | os.PathLike[str]) -> str | None:
    """The first partition directory of the series file ``series_dir`` that is a symbolic link
    (:func:`stage_series_file` copies through none: its files would be handed to ``--owner``)."""
    for p in range(tfmt.SERIES_PARTITION_N):
        pp = os.path.join(series_dir, tfmt.partition_dir_name(p))
        if os.path.islink(pp):
            return pp
    return None


def _open_nofollow_dir(path: str, dir_fd: int | None = None, *, shown: str | None = None) -> int | None:
    """Descriptor of the directory ``path`` (relative to ``dir_fd``), not following a link in its
    last component; None when it does not exist. A link or non-directory is a TargetError."""
    try:
        return os.open(path, NOFOLLOW_DIR, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise TargetError(
                "is a symbolic link or not a directory: the series file is copied through no link", path=shown or path
            ) from None
        raise SourceIOError(f"cannot open source series file directory: {exc.strerror}", path=shown or path) from exc


def _copy_sparse(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes of ``src`` to the new file ``dst`` in the kernel (sendfile), its data
    extents only: a series segment is 4 MiB+ of which entries fill a few KB and influxd leaves
    the rest a hole (it truncates a new segment to size); holes stay holes, reading as zeros."""

    def send(start: int, end: int) -> None:
        os.lseek(dst, start, os.SEEK_SET)
        while start < end:
            n = os.sendfile(dst, src, start, end - start)
            if n == 0:  # the source shrank under us: what is left stays a hole, then truncated
                return
            start += n

    pos = 0
    while pos < size:
        try:
            data = os.lseek(src, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                break
            send(pos, size)  # no SEEK_DATA on this file system: everything
            break
        hole = min(os.lseek(src, data, os.SEEK_HOLE), size)
        send(data, hole)
        pos = hole
    os.ftruncate(dst, size)


def _stage_partition(
    pfd: int, src_p: str, dst_p: str, last: int | None, known: set[str], copied: list[str] | None
) -> None:
    """Hard-link or copy the regular files of the partition directory ``pfd`` into ``dst_p``.
    ``known``: the segment files read before; each must still be there, a regular file."""
    try:
        names = sorted(os.listdir(pfd))
    except OSError as exc:
        raise SourceIOError(f"cannot list source series partition: {exc.strerror}", path=src_p) from exc
    gone = known.difference(names)
    if gone:
        raise TargetError(
            f"segment {min(gone)} was read a moment ago and is gone: is another process writing the series file?",
            path=src_p,
        )
    for n in names:
        t = os.path.join(dst_p, n)
        try:
            if not stat.S_ISREG(os.lstat(n, dir_fd=pfd).st_mode):
                if n in known:
                    raise TargetError(
                        "a segment read a moment ago is no longer a regular file (swapped during the run?); "
                        "the series file is copied through no link", path=os.path.join(src_p, n),
                    )
                continue  # links, FIFOs, directories: never part of a series file, never followed
            if tfmt.SEGMENT_NAME_RE.match(n) and int(n, 16) != last:
                try:
                    os.link(n, t, src_dir_fd=pfd, follow_symlinks=False)
                    continue
                except OSError:
                    pass
            try:
                fd = os.open(n, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=pfd)
            except OSError as exc:
                if exc.errno == errno.ELOOP and n not in known:  # swapped for a link since the lstat
                    continue
                raise
            with os.fdopen(fd, "rb") as src:
                st = os.fstat(src.fileno())
                if not stat.S_ISREG(st.st_mode):
                    if n in known:
                        raise TargetError("a segment read a moment ago is no longer a regular file",
                                          path=os.path.join(src_p, n))
                    continue
                with open(t, "xb") as dst:
                    _copy_sparse(src.fileno(), dst.fileno(), st.st_size)
                os.chmod(t, stat.S_IMODE(st.st_mode))
            if copied is not None:
                copied.append(t)
        except OSError as exc:
            raise TargetIOError(f"cannot stage target series file: {exc.strerror}", path=t) from exc


def stage_series_file(
    live: str, stage: str, sfile: sfmod.SeriesFile | None, copied: list[str] | None = None
) -> sfmod.SeriesFile:
    """Copy ``live`` (if any) into ``stage``: segments other than each partition's last are
    hard-linked (they are never written again), the rest copied; the copies' paths are added to
    ``copied`` (not fsynced here). Returns the staged file's state.

    ``live`` and its partition directories are opened without following links and every file
    is read through them: a link there (also one swapped in during the run) is refused, never
    followed — the copy is chowned to ``--owner``, and a partition linked to ``/etc`` would
    otherwise hand its files to the database's owner."""
    makedir(stage)
    live_fd = _open_nofollow_dir(live) if sfile is not None else None
    try:
        for p in range(tfmt.SERIES_PARTITION_N):
            name = tfmt.partition_dir_name(p)
            dst_p = os.path.join(stage, name)
            makedir(dst_p)
            if sfile is None or live_fd is None:
                continue
            src_p = os.path.join(live, name)
            pfd = _open_nofollow_dir(name, live_fd, shown=src_p)
            if pfd is None:
                continue
            try:
                part = sfile.partitions[p]
                last = part.segments[-1].id if part.segments else None
                known = {os.path.basename(seg.path) for seg in part.segments}
                _stage_partition(pfd, src_p, dst_p, last, known, copied)
            finally:
                os.close(pfd)
            # the staged partition now lives at dst_p
            for seg in part.segments:
                seg.path = os.path.join(dst_p, os.path.basename(seg.path))
            part.path = dst_p
    finally:
        if live_fd is not None:
            os.close(live_fd)
    if sfile is None:
        sfile = sfmod.SeriesFile.__new__(sfmod.SeriesFile)
        sfile.path = stage
        sfile.partitions = [
            sfmod.Partition(p, os.path.join(stage, tfmt.partition_dir_name(p))) for p in range(tfmt.SERIES_PARTITION_N)
        ]
    return sfile


def make_stage(path: str) -> None:
    """Create the staging directory ``path`` (a leftover of a killed run removed first) and enter
    it in the temporaries registry in the same uninterrupted step (archive/cleanup.py), so a
    SIGTERM at any moment leaves nothing behind."""
    with cleanup.uninterrupted():
        rmtree(path)
        makedir(path)
        cleanup.track(path, is_dir=True)


def claim_stage(path: str) -> None:
    """Like :func:`make_stage` for a staging directory the caller creates itself (a leftover of a
    killed run removed first): it is in the temporaries registry before it exists."""
    with cleanup.uninterrupted():
        rmtree(path)
        cleanup.track(path, is_dir=True)


def drop_stage(path: str) -> None:
    with cleanup.uninterrupted():
        rmtree(path)
        cleanup.untrack(path)


def swap_in(stage: str, live: str, old: str) -> None:
    """Rename the complete, fsynced staged directory ``stage`` to ``live``. A ``live`` already
    there is renamed to ``old`` first and removed once the new one is in place; a kill between
    the two renames leaves ``old``, which :func:`recover_series_file` / the next
    :func:`install_index` deal with. One uninterrupted step: a signal waits for its end."""
    parent = os.path.dirname(live)
    with cleanup.uninterrupted():
        had = os.path.lexists(live)
        try:
            if had:
                os.rename(live, old)
            try:
                os.rename(stage, live)
            except BaseException:
                if had:
                    os.rename(old, live)
                raise
        except OSError as exc:
            raise TargetIOError(f"cannot move the staged directory into place: {exc.strerror}", path=live) from exc
        cleanup.untrack(stage)
        fsync_dir(parent)
        if had:
            rmtree(old)


def write_series_stage(
    stage: str, live: str, existing: sfmod.SeriesFile | None, new_keys: list[bytes], progress: Progress, label: str
) -> sfmod.SeriesFile:
    """Write at ``stage`` (which must not exist) the series file ``live`` (``existing``: it as
    read, or None) extended by ``new_keys`` (series file keys absent from it): existing series
    keep their ids, new ones get the ids influxd would give them. Everything fsynced (every file
    copied or written and every directory, together: :func:`fsync_paths`). Returns the staged
    file's state (paths inside ``stage``)."""
    rep = Reporter(progress, unit="series", label=label)
    durable: list[str] = []  # files copied or written, then the directories
    sfile = stage_series_file(live, stage, existing, durable)
    writers: list[sfmod.PartitionWriter | None] = [None] * tfmt.SERIES_PARTITION_N
    rep.start(len(new_keys))
    for i, key in enumerate(new_keys, 1):
        p = sfmod.key_partition(key)
        w = writers[p]
        if w is None:
            w = writers[p] = sfmod.PartitionWriter(sfile.partitions[p])
        w.insert(key)
        if i % 4096 == 0:
            rep.advance(4096)
    rep.advance(len(new_keys) % 4096)
    rep.end()
    try:
        for p, wr in enumerate(writers):
            part = sfile.partitions[p]
            if wr is None and not part.segments:  # influxd creates an empty segment 0000 in every partition
                wr = sfmod.PartitionWriter(part)
            if wr is not None:
                wr.close()
                durable += wr.written
        durable += [part.path for part in sfile.partitions] + [stage]
        fsync_paths(durable)
    except OSError as exc:
        raise TargetIOError(f"cannot write target series file: {exc.strerror}", path=stage) from exc
    return sfile


def relocate(sfile: sfmod.SeriesFile, path: str) -> None:
    """Point ``sfile``'s partitions and segments at the series file directory ``path``."""
    sfile.path = path
    for part in sfile.partitions:
        part.path = os.path.join(path, tfmt.partition_dir_name(part.id))
        for seg in part.segments:
            seg.path = os.path.join(part.path, os.path.basename(seg.path))


def extend_series_file(
    db_dir: str, existing: sfmod.SeriesFile | None, new_keys: list[bytes], owner, progress: Progress,
    name: str | None = None,
) -> sfmod.SeriesFile:
    """Add ``new_keys`` (series file keys, absent from ``existing``, the live file as read)
    atomically; returns the resulting series file state (paths pointing at the live directory).
    ``name``: the database directory as the progress label shows it (default ``db_dir``)."""
    live = os.path.join(db_dir, tfmt.SERIES_FILE_DIR)
    stage = os.path.join(db_dir, f"{SERIES_STAGE}{os.getpid()}")
    make_stage(stage)
    try:
        label = f"series file {os.path.basename(name or db_dir)}"
        sfile = write_series_stage(os.path.join(stage, "s"), live, existing, new_keys, progress, label)
        chown_tree(stage, owner)
        swap_in(os.path.join(stage, "s"), live, os.path.join(db_dir, f"{SERIES_OLD}{os.getpid()}"))
    finally:
        drop_stage(stage)
    relocate(sfile, live)
    return sfile


def shard_partitions(keys: list[tuple[bytes, bytes]], ids: dict[bytes, int], where: str) -> list[list[int]]:
    """Series ids of the shard's (line key, series file key) pairs, by tsi1 partition."""
    if core is not None:
        got = core.shard_partitions(keys, ids)  # None: a key is missing, raised below
        if got is not None:
            return got
    parts: list[list[int]] = [[] for _ in range(tfmt.INDEX_PARTITION_N)]
    seen: set[int] = set()
    get, mask, h = ids.get, tfmt.INDEX_PARTITION_N - 1, sum64  # tindex.index_partition, inlined (hot)
    for k, skey in keys:
        sid = get(skey, 0)
        if sid == 0:  # cannot happen: the series file was extended with every key first
            raise FormatError(f"series {k!r} missing from the series file", path=where)
        if sid in seen:
            continue
        seen.add(sid)
        parts[h(k) & mask].append(sid)
    return parts


def install_index(shard_dir: str, parts: list[list[int]], owner, replace: bool) -> int:
    """Write the shard's ``index/`` beside it (``.index``) and rename it into place (with
    ``replace`` an existing one is swapped out, removed once the new one is in). A leftover of a
    killed swap (``.influx-archive-index-old-*``) is moved back first, or removed."""
    stage = os.path.join(shard_dir, STAGE_INDEX)
    target = os.path.join(shard_dir, tfmt.INDEX_DIR)
    for name in listdir(shard_dir, "shard directory"):
        if name.startswith(INDEX_OLD):
            if os.path.islink(os.path.join(shard_dir, name)) or not os.path.isdir(os.path.join(shard_dir, name)):
                continue  # not what a killed swap leaves (a directory): never moved in as index/
            if os.path.lexists(target):
                rmtree(os.path.join(shard_dir, name))
            else:
                os.rename(os.path.join(shard_dir, name), target)
    if os.path.lexists(target) and not replace:
        raise TargetIOError("target shard already has an index/", path=target)
    claim_stage(stage)  # write_index_dir creates it: registered already, so a signal removes it
    try:
        n = write_index_dir(stage, parts)
        chown_tree(stage, owner)
        swap_in(stage, target, os.path.join(shard_dir, f"{INDEX_OLD}{os.getpid()}"))
        return n
    except OSError as exc:
        raise TargetIOError(f"cannot write target index: {exc.strerror}", path=target) from exc
    finally:
        drop_stage(stage)
