"""Writing a tsi1 index on disk for build-tsi: the series file staged and swapped in, each shard's
``index/`` directory written beside the live one and renamed into place, recovery of a swap that
a kill interrupted. Every step is durable (fsync) before the next one depends on it."""

from __future__ import annotations

import os
import shutil

from ...tsm.tsi1 import format as tfmt
from ...tsm.tsi1 import index as tindex
from ...tsm.tsi1 import seriesfile as sfmod
from ...tsm.tsi1.compiled import core
from ...tsm.tsi1.xxhash import sum64
from .. import cleanup
from ..errors import FormatError, SourceIOError, TargetIOError
from ..progress import ProgressCallback, Reporter
from ..staging import fsync_dir

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
    try:
        shutil.rmtree(path)
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


def stage_series_file(live: str, stage: str, sfile: sfmod.SeriesFile | None) -> sfmod.SeriesFile:
    """Copy ``live`` (if any) into ``stage``: segments other than each partition's last are
    hard-linked (they are never written again), the rest copied. Returns the staged file's state."""
    makedir(stage)
    for p in range(tfmt.SERIES_PARTITION_N):
        src_p = os.path.join(live, tfmt.partition_dir_name(p))
        dst_p = os.path.join(stage, tfmt.partition_dir_name(p))
        makedir(dst_p)
        if sfile is None or not os.path.isdir(src_p):
            continue
        part = sfile.partitions[p]
        last = part.segments[-1].id if part.segments else None
        for n in listdir(src_p, "series partition"):
            s, t = os.path.join(src_p, n), os.path.join(dst_p, n)
            if not os.path.isfile(s) or os.path.islink(s):
                continue
            try:
                if tfmt.SEGMENT_NAME_RE.match(n) and int(n, 16) != last:
                    try:
                        os.link(s, t)
                        continue
                    except OSError:
                        pass
                shutil.copyfile(s, t)
                shutil.copymode(s, t)
            except OSError as exc:
                raise TargetIOError(f"cannot stage target series file: {exc.strerror}", path=t) from exc
        # the staged partition now lives at dst_p
        for seg in part.segments:
            seg.path = os.path.join(dst_p, os.path.basename(seg.path))
        part.path = dst_p
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
    keep their ids, new ones get the ids influxd would give them. Everything fsynced. Returns the
    staged file's state (paths inside ``stage``)."""
    rep = Reporter(progress, unit="series", label=label)
    sfile = stage_series_file(live, stage, existing)
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
            if wr is not None:
                wr.close()
            part = sfile.partitions[p]
            if not part.segments:  # influxd creates an empty segment 0000 in every partition
                sfmod.PartitionWriter(part).close()
            fsync_dir(part.path)
        fsync_dir(stage)
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
    db_dir: str, existing: sfmod.SeriesFile | None, new_keys: list[bytes], owner, progress: Progress
) -> sfmod.SeriesFile:
    """Add ``new_keys`` (series file keys, absent from ``existing``, the live file as read)
    atomically; returns the resulting series file state (paths pointing at the live directory)."""
    live = os.path.join(db_dir, tfmt.SERIES_FILE_DIR)
    stage = os.path.join(db_dir, f"{SERIES_STAGE}{os.getpid()}")
    make_stage(stage)
    try:
        label = f"series file {os.path.basename(db_dir)}"
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
