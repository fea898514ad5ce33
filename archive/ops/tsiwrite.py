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
from .. import cleanup, staging
from ..errors import ArchiveError, FormatError, SourceIOError, TargetError, TargetIOError
from ..progress import ProgressCallback, Reporter
from ..staging import DIR_FLAGS, NOFOLLOW_DIR
from .tsifd import PartitionWriter, Tree, fd_path, rename_checked, sync_dir

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


def _create(tree: Tree, dir_fd: int, name: str, data: bytes, shown: str) -> int:
    """Create ``name`` (which must not exist) in the directory ``dir_fd`` holding ``data`` and
    start its writeback; returns the open descriptor, not yet fsynced (:func:`write_index_at`
    syncs it)."""
    fd = tree.create(dir_fd, name, shown)
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
        raise TargetIOError(f"cannot write target file: {exc.strerror}", path=shown) from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


_START_WRITEBACK = getattr(os, "posix_fadvise", None)


def _open_dir(path: str) -> int:
    """The directory ``path`` (a held descriptor's /proc/self/fd name, or one the caller named)."""
    try:
        return os.open(path, DIR_FLAGS)
    except OSError as exc:
        raise TargetIOError(f"cannot open target directory: {exc.strerror}", path=path) from exc


def write_index_dir(path: str, partitions: list[list[int]]) -> int:
    """:func:`write_index_at` for the path ``path`` (its parent opened by path)."""
    pfd = _open_dir(os.path.dirname(path) or ".")
    tree = Tree()
    try:
        return write_index_at(tree, pfd, os.path.basename(path), partitions, path)
    finally:
        tree.close()
        os.close(pfd)


def write_index_at(tree: Tree, parent_fd: int, name: str, partitions: list[list[int]], shown: str,
                   owner: tuple[int, int] | None = None) -> int:
    """Write a complete ``index/`` directory ``name`` in the directory ``parent_fd`` (it must not
    exist; ``shown``: its path in messages), every directory and file through the descriptors of
    ``tree``: partition ``p`` gets a MANIFEST and ``L0-00000001.tsl`` with one series entry per id
    in ``partitions[p]``, in that order. Everything fsynced before this returns: the 16 files
    (all written first, then each fsynced, so their writeback overlaps), then each partition
    directory, then the directory itself; then chowned to ``owner``. Returns the bytes of log
    written."""
    dfd = tree.mkdir(parent_fd, name, shown)
    total = 0
    fname = tfmt.log_file_name(1)
    manifest = tindex.manifest_bytes([fname])
    fds: list[tuple[int, str]] = []
    pfds: list[int] = []
    try:
        for p in range(tfmt.INDEX_PARTITION_N):
            pshown = os.path.join(shown, str(p))
            pfd = tree.mkdir(dfd, str(p), pshown)
            pfds.append(pfd)
            log = core.log_inserts(partitions[p]) if core is not None else None
            if log is None:
                log = b"".join(tindex.log_entry_bytes(tfmt.LOG_SERIES_INSERT, sid) for sid in partitions[p])
            total += len(log)
            for n, data in ((fname, log), (tfmt.MANIFEST_NAME, manifest)):
                fpath = os.path.join(pshown, n)
                fds.append((_create(tree, pfd, n, data, fpath), fpath))
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
    for p, pfd in enumerate(pfds):
        sync_dir(pfd, os.path.join(shown, str(p)))
    sync_dir(dfd, shown)
    tree.chown(dfd, owner)
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
    tree: Tree, pfd: int, src_p: str, dfd: int, dst_p: str, last: int | None, known: set[str],
    copied: list[tuple[int, str]] | None,
) -> None:
    """Hard-link or copy the regular files of the partition directory ``pfd`` into the staged
    partition directory ``dfd`` (``dst_p`` in messages), by name relative to both descriptors.
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
                    os.link(n, n, src_dir_fd=pfd, dst_dir_fd=dfd, follow_symlinks=False)
                    tree.record(dfd, n, t)
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
                with os.fdopen(tree.create(dfd, n, t), "wb") as dst:
                    _copy_sparse(src.fileno(), dst.fileno(), st.st_size)
                    os.fchmod(dst.fileno(), stat.S_IMODE(st.st_mode))
            if copied is not None:
                copied.append((dfd, n))
        except OSError as exc:
            raise TargetIOError(f"cannot stage target series file: {exc.strerror}", path=t) from exc


def stage_series_file(
    tree: Tree, sfd: int, stage: str, live: str, sfile: sfmod.SeriesFile | None,
    copied: list[tuple[int, str]] | None = None,
) -> tuple[sfmod.SeriesFile, list[int]]:
    """Copy ``live`` (if any) into the new, empty staging directory ``sfd`` (``stage`` in
    messages): segments other than each partition's last are hard-linked (they are never written
    again), the rest copied; the copies are added to ``copied`` as (directory descriptor, name),
    not fsynced here. Returns the staged file's state (its partitions named by their held
    descriptors, /proc/self/fd/N) and the partition directories' descriptors.

    ``live`` and its partition directories are opened without following links and every file
    is read through them: a link there (also one swapped in during the run) is refused, never
    followed — the copy is chowned to ``--owner``, and a partition linked to ``/etc`` would
    otherwise hand its files to the database's owner. The staged side is written through the
    descriptors of ``tree`` only."""
    live_fd = _open_nofollow_dir(live) if sfile is not None else None
    pfds: list[int] = []
    try:
        for p in range(tfmt.SERIES_PARTITION_N):
            name = tfmt.partition_dir_name(p)
            dfd = tree.mkdir(sfd, name, os.path.join(stage, name))
            pfds.append(dfd)
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
                _stage_partition(tree, pfd, src_p, dfd, os.path.join(stage, name), last, known, copied)
            finally:
                os.close(pfd)
    finally:
        if live_fd is not None:
            os.close(live_fd)
    if sfile is None:
        sfile = sfmod.SeriesFile.__new__(sfmod.SeriesFile)
        sfile.partitions = [sfmod.Partition(p, "") for p in range(tfmt.SERIES_PARTITION_N)]
    sfile.path = fd_path(sfd)
    for part, dfd in zip(sfile.partitions, pfds):  # the staged partitions, through their descriptors
        part.path = fd_path(dfd)
        for seg in part.segments:
            seg.path = fd_path(dfd, os.path.basename(seg.path))
    return sfile, pfds


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


def swap_in(tree: Tree, stage_fd: int, stage: str, dir_fd: int, live: str, old: str, *, tracked: str,
            shown: str) -> None:
    """Rename the complete, fsynced staged directory ``stage`` (in ``stage_fd``) to ``live`` (in
    ``dir_fd``), once every name of ``tree`` is checked to be what this run created. A ``live``
    already there is renamed to ``old`` first and removed once the new one is in place; a kill
    between the two renames leaves ``old``, which :func:`recover_series_file` / the next
    :func:`install_index` deal with; a ``live`` that appears meanwhile is never replaced. One
    uninterrupted step: a signal waits for its end. ``tracked``: the temporary registered."""
    with cleanup.uninterrupted():
        tree.verify()
        ident = next(e[2] for e in tree.entries if e[0] == stage_fd and e[1] == stage)
        try:
            os.lstat(live, dir_fd=dir_fd)
            had = True
        except FileNotFoundError:
            had = False
        try:
            if had:
                staging.rename_noreplace(live, old, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            try:
                rename_checked(stage_fd, stage, dir_fd, live, ident, tree.shown(fd_path(stage_fd, stage)) or stage,
                               staging.rename_noreplace)
            except BaseException:
                if had:
                    staging.rename_noreplace(old, live, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                raise
        except FileExistsError:
            raise TargetError("appeared during the run; refusing to replace it", path=shown) from None
        except OSError as exc:
            raise TargetIOError(f"cannot move the staged directory into place: {exc.strerror}", path=shown) from exc
        cleanup.untrack(tracked)
        sync_dir(dir_fd, os.path.dirname(shown))
        if had:
            try:
                staging.remove_beneath(dir_fd, old)
            except OSError as exc:
                raise TargetIOError(f"cannot remove target staging directory: {exc.strerror}",
                                    path=os.path.join(os.path.dirname(shown), old)) from exc


def write_series_stage(
    tree: Tree, parent_fd: int, name: str, shown: str, live: str, existing: sfmod.SeriesFile | None,
    new_keys: list[bytes], progress: Progress, label: str, owner: tuple[int, int] | None = None,
) -> sfmod.SeriesFile:
    """Write as ``name`` in the directory ``parent_fd`` (it must not exist; ``shown``: its path)
    the series file ``live`` (``existing``: it as read, or None) extended by ``new_keys`` (series
    file keys absent from it): existing series keep their ids, new ones get the ids influxd would
    give them. Every directory and file through the descriptors of ``tree``; everything fsynced
    (every file copied or written and every directory, together), then chowned to ``owner``.
    Returns the staged file's state (paths inside ``shown``)."""
    rep = Reporter(progress, unit="series", label=label)
    sfd = tree.mkdir(parent_fd, name, shown)
    durable: list[tuple[int, str]] = []  # files copied or written: (directory descriptor, name)
    try:
        sfile, pfds = stage_series_file(tree, sfd, shown, live, existing, durable)
        writers: list[sfmod.PartitionWriter | None] = [None] * tfmt.SERIES_PARTITION_N
        rep.start(len(new_keys))
        for i, key in enumerate(new_keys, 1):
            p = sfmod.key_partition(key)
            w = writers[p]
            if w is None:
                w = writers[p] = PartitionWriter(sfile.partitions[p], tree, pfds[p])
            w.insert(key)
            if i % 4096 == 0:
                rep.advance(4096)
        rep.advance(len(new_keys) % 4096)
        rep.end()
        try:
            for p, wr in enumerate(writers):
                part = sfile.partitions[p]
                if wr is None and not part.segments:  # influxd creates an empty segment 0000 in every partition
                    wr = PartitionWriter(part, tree, pfds[p])
                if wr is not None:
                    wr.close()
                    durable += [(pfds[p], os.path.basename(w)) for w in wr.written]
            tree.sync(durable, [*pfds, sfd])
        except OSError as exc:
            raise TargetIOError(f"cannot write target series file: {exc.strerror}", path=shown) from exc
        tree.chown(sfd, owner)
    except ArchiveError as exc:
        exc.path = tree.shown(exc.path)
        raise
    relocate(sfile, shown)
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
    stage_name = f"{SERIES_STAGE}{os.getpid()}"
    stage = os.path.join(db_dir, stage_name)
    dfd = _open_dir(db_dir)
    tree = Tree()
    try:
        with cleanup.uninterrupted():
            rmtree(stage)
            sfd = tree.mkdir(dfd, stage_name, stage)
            cleanup.track(stage, is_dir=True)
        try:
            label = f"series file {os.path.basename(name or db_dir)}"
            sfile = write_series_stage(tree, sfd, "s", os.path.join(stage, "s"), live, existing, new_keys,
                                       progress, label)
            tree.chown(sfd, owner)
            swap_in(tree, sfd, "s", dfd, tfmt.SERIES_FILE_DIR, f"{SERIES_OLD}{os.getpid()}",
                    tracked=os.path.join(stage, "s"), shown=live)
        finally:
            tree.close()
            drop_stage(stage)
    finally:
        os.close(dfd)
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
    killed swap (``.influx-archive-index-old-*``) is moved back first, or removed. Written through
    the shard directory's descriptor and those of the directories made below it (:class:`Tree`)."""
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
    sfd = _open_dir(shard_dir)
    tree = Tree()
    try:
        claim_stage(stage)  # write_index_at creates it: registered already, so a signal removes it
        n = write_index_at(tree, sfd, STAGE_INDEX, parts, stage, owner)
        swap_in(tree, sfd, STAGE_INDEX, sfd, tfmt.INDEX_DIR, f"{INDEX_OLD}{os.getpid()}", tracked=stage, shown=target)
        return n
    except OSError as exc:
        raise TargetIOError(f"cannot write target index: {exc.strerror}", path=target) from exc
    finally:
        tree.close()
        os.close(sfd)
        drop_stage(stage)
