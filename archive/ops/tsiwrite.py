"""Writing a tsi1 index on disk for build-tsi: the series file staged and swapped in, each shard's
``index/`` directory written beside the live one and renamed into place, recovery of a swap that
a kill interrupted. Every step is durable (fsync) before the next one depends on it."""

from __future__ import annotations

import os
import shutil

from ...tsm.tsi1 import format as tfmt
from ...tsm.tsi1 import index as tindex
from ...tsm.tsi1 import seriesfile as sfmod
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


def write_file(path: str, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise TargetIOError(f"cannot write target file: {exc.strerror}", path=path) from exc


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


def write_index_dir(path: str, partitions: list[list[int]]) -> int:
    """Write a complete ``index/`` directory at ``path`` (which must not exist): partition ``p``
    gets a MANIFEST and ``L0-00000001.tsl`` with one series entry per id in ``partitions[p]``, in
    that order. Everything fsynced. Returns the bytes of log written."""
    makedir(path)
    total = 0
    name = tfmt.log_file_name(1)
    manifest = tindex.manifest_bytes([name])
    for p in range(tfmt.INDEX_PARTITION_N):
        pdir = os.path.join(path, str(p))
        makedir(pdir)
        log = b"".join(tindex.log_entry_bytes(tfmt.LOG_SERIES_INSERT, sid) for sid in partitions[p])
        total += len(log)
        write_file(os.path.join(pdir, name), log)
        write_file(os.path.join(pdir, tfmt.MANIFEST_NAME), manifest)
        fsync_dir(pdir)
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


def extend_series_file(
    db_dir: str, existing: sfmod.SeriesFile | None, new_keys: list[bytes], owner, progress: Progress
) -> sfmod.SeriesFile:
    """Add ``new_keys`` (series file keys, absent from ``existing``, the live file as read)
    atomically; returns the resulting series file state (paths pointing at the live directory)."""
    live = os.path.join(db_dir, tfmt.SERIES_FILE_DIR)
    rep = Reporter(progress, unit="series", label=f"series file {os.path.basename(db_dir)}")
    stage = os.path.join(db_dir, f"{SERIES_STAGE}{os.getpid()}")
    rmtree(stage)
    try:
        sfile = stage_series_file(live, stage, existing)
        writers: list[sfmod.PartitionWriter | None] = [None] * tfmt.SERIES_PARTITION_N
        rep.start(len(new_keys))
        for i, key in enumerate(new_keys, 1):
            p = sfmod.key_partition(key)
            if writers[p] is None:
                writers[p] = sfmod.PartitionWriter(sfile.partitions[p])
            w = writers[p]
            assert w is not None
            w.insert(key)
            if i % 4096 == 0:
                rep.advance(4096)
        rep.advance(len(new_keys) % 4096)
        rep.end()
        for p, wr in enumerate(writers):
            if wr is not None:
                wr.close()
            part = sfile.partitions[p]
            if not part.segments:  # influxd creates an empty segment 0000 in every partition
                sfmod.PartitionWriter(part).close()
            fsync_dir(part.path)
        fsync_dir(stage)
        chown_tree(stage, owner)
        old = os.path.join(db_dir, f"{SERIES_OLD}{os.getpid()}")
        if os.path.lexists(live):
            os.rename(live, old)
        os.rename(stage, live)
        fsync_dir(db_dir)
        rmtree(old)
    except OSError as exc:
        rmtree(stage)
        raise TargetIOError(f"cannot write target series file: {exc.strerror}", path=live) from exc
    except BaseException:
        rmtree(stage)
        raise
    for part in sfile.partitions:
        part.path = os.path.join(live, tfmt.partition_dir_name(part.id))
        for seg in part.segments:
            seg.path = os.path.join(part.path, os.path.basename(seg.path))
    return sfile


def shard_partitions(keys: list[tuple[bytes, bytes]], ids: dict[bytes, int], where: str) -> list[list[int]]:
    """Series ids of the shard's (line key, series file key) pairs, by tsi1 partition."""
    parts: list[list[int]] = [[] for _ in range(tfmt.INDEX_PARTITION_N)]
    seen: set[int] = set()
    for k, skey in keys:
        sid = ids.get(skey, 0)
        if sid == 0:  # cannot happen: the series file was extended with every key first
            raise FormatError(f"series {k!r} missing from the series file", path=where)
        if sid in seen:
            continue
        seen.add(sid)
        parts[tindex.index_partition(k)].append(sid)
    return parts


def install_index(shard_dir: str, parts: list[list[int]], owner, replace: bool) -> int:
    stage = os.path.join(shard_dir, STAGE_INDEX)
    target = os.path.join(shard_dir, tfmt.INDEX_DIR)
    rmtree(stage)
    try:
        n = write_index_dir(stage, parts)
        chown_tree(stage, owner)
        old = None
        if replace and os.path.lexists(target):
            old = os.path.join(shard_dir, f"{INDEX_OLD}{os.getpid()}")
            os.rename(target, old)
        elif os.path.lexists(target):
            raise TargetIOError("target shard already has an index/", path=target)
        os.rename(stage, target)
        fsync_dir(shard_dir)
        if old is not None:
            rmtree(old)
        return n
    except OSError as exc:
        rmtree(stage)
        raise TargetIOError(f"cannot write target index: {exc.strerror}", path=target) from exc
    except BaseException:
        rmtree(stage)
        raise
