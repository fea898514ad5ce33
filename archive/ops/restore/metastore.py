"""The target metastore: reading the ``meta.db`` a restore adds to, merging the source's
(selected, renamed) metastore into it, and writing the result.

:func:`merge_meta` works on decoded metastores only and assumes nothing about where the target
lives: an online restore, which gets the target's metastore from the server, reuses it as is. The
readers and writers below are the offline side: a ``meta.db`` in a meta directory, reached through
the descriptor the restore opened (see :class:`~.journal.Roots`)."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from ....meta import files as metafiles
from ....meta.model import (
    Data,
    DatabaseInfo,
    RetentionPolicyInfo,
    ShardGroupInfo,
    UserPrivilege,
    decode_data,
    shard_group_sort_key,
)
from ...errors import ArchiveError, SourceIOError, TargetError
from ...output import write_file_atomically
from ...untrusted import kind_of
from ..select import Selection, max_ids
from .modes import FILE_MODE

#: source (db, rp, shard id) -> (target db, target rp, target shard id, into an existing shard)
Placement = dict[tuple[str, str, int], tuple[str, str, int, bool]]


def _cannot_read(exc: OSError, meta_path: Path) -> TargetError:
    if exc.errno == errno.ELOOP:  # O_NOFOLLOW: a link stands there
        return TargetError("target: meta.db is a symbolic link; refusing to restore through it", path=str(meta_path))
    return TargetError(f"target: cannot read the metastore: {exc.strerror or exc}", path=str(meta_path))


def _check_regular(mode: int, meta_path: Path) -> None:
    """Refuse (TargetError naming it) a ``meta.db`` that is a link, a directory, a FIFO, ..."""
    if stat.S_ISLNK(mode):
        raise TargetError("target: meta.db is a symbolic link; refusing to restore through it", path=str(meta_path))
    if not stat.S_ISREG(mode):
        raise TargetError(
            f"target: {kind_of(mode)} stands where meta.db must be; refusing to restore into it", path=str(meta_path)
        )


def read_target(meta_path: Path) -> tuple[bool, bytes | None, Data | None]:
    """(whether ``meta_path`` is a file, its bytes, its decoded metastore) of the target; the bytes
    and metastore are None when there is none yet. Anything but a regular file there (a link, a
    directory, a FIFO, ...) and an OS refusal are a TargetError naming it."""
    try:
        st = os.lstat(meta_path)
    except FileNotFoundError:
        return False, None, None
    except OSError as exc:
        raise _cannot_read(exc, meta_path) from exc
    _check_regular(st.st_mode, meta_path)
    try:
        meta_blob = metafiles.read_meta_db_bytes(meta_path)
    except SourceIOError as exc:  # read_small says "source"; this is the target's
        cause = exc.__cause__
        raise (_cannot_read(cause, meta_path) if isinstance(cause, OSError) else exc) from exc
    return True, meta_blob, decode_data(meta_blob, path=str(meta_path))


def merge_meta(
    target: Data,
    selected: Data,
    src_meta: Data,
    selection: Selection,
    merge: bool,
    placement: Placement,
    warnings: list[str],
    meta_path: Path,
) -> Data:
    """Add ``selected`` (already filtered and renamed) into a copy of ``target``."""
    out = target.copy()
    max_sg, max_sh = max_ids(out)
    # Source group/shard ids in the selected metastore are the source's, in source order.
    src_names = {
        selection.target_names(db.name, rp.name): (db.name, rp.name)
        for db in src_meta.databases
        for rp in db.retention_policies
    }

    def renumbered(group: ShardGroupInfo, sdb: str, srp: str, tdb: str, trp: str) -> ShardGroupInfo:
        nonlocal max_sg, max_sh
        g = ShardGroupInfo(
            id=0, start_time=group.start_time, end_time=group.end_time, deleted_at=group.deleted_at,
            shards=[], truncated_at=group.truncated_at, unknown=group.unknown,
        )
        max_sg += 1
        g.id = max_sg
        for s in group.shards:
            max_sh += 1
            new = type(s)(
                id=max_sh,
                owner_ids=list(s.owner_ids),
                owners=[type(o)(node_id=o.node_id, unknown=o.unknown) for o in s.owners],
                unknown=s.unknown,
            )
            g.shards.append(new)
            placement[(sdb, srp, s.id)] = (tdb, trp, max_sh, False)
        return g

    for sdb_info in selected.databases:
        tdb_name = sdb_info.name
        existing = out.database(tdb_name)
        if existing is not None and not merge:
            raise TargetError(
                f"database {tdb_name!r} already exists in the target metastore; pass --merge to restore into it "
                "(or --newdb to restore under another name)",
                path=str(meta_path),
            )
        if existing is None:
            existing = DatabaseInfo(
                name=tdb_name,
                default_retention_policy=sdb_info.default_retention_policy,
                retention_policies=[],
                continuous_queries=[],
                unknown=sdb_info.unknown,
            )
            out.databases.append(existing)
        for rp in sdb_info.retention_policies:
            sdb, srp = src_names[(tdb_name, rp.name)]
            trp = existing.retention_policy(rp.name)
            live_groups = [g for g in rp.shard_groups if not g.deleted]
            if trp is None:
                trp = RetentionPolicyInfo(
                    name=rp.name, duration=rp.duration, shard_group_duration=rp.shard_group_duration,
                    replica_n=rp.replica_n, shard_groups=[], subscriptions=list(rp.subscriptions), unknown=rp.unknown,
                )
                existing.retention_policies.append(trp)
            else:
                if (trp.duration, trp.shard_group_duration, trp.replica_n) != (
                    rp.duration,
                    rp.shard_group_duration,
                    rp.replica_n,
                ):
                    warnings.append(
                        f"retention policy {tdb_name}.{rp.name} exists in the target with other settings; the target's "
                        "are kept"
                    )
                have = {s.name for s in trp.subscriptions}
                trp.subscriptions.extend(s for s in rp.subscriptions if s.name not in have)
            # The first live target group with shards for each (start, end): one pass, then O(1)
            # per source group (a scan per group was quadratic in tens of thousands of groups).
            by_range: dict[tuple[int, int], ShardGroupInfo] = {}
            for tg in trp.shard_groups:
                if not tg.deleted and tg.shards:
                    by_range.setdefault((tg.start_time, tg.end_time), tg)
            for g in live_groups:
                match = by_range.get((g.start_time, g.end_time))
                if match is not None:
                    for s in g.shards:
                        placement[(sdb, srp, s.id)] = (tdb_name, rp.name, match.shards[0].id, True)
                else:
                    new_group = renumbered(g, sdb, srp, tdb_name, rp.name)
                    trp.shard_groups.append(new_group)
                    if new_group.shards:
                        by_range.setdefault((g.start_time, g.end_time), new_group)
            trp.shard_groups.sort(key=shard_group_sort_key)
        have_cq = {cq.name for cq in existing.continuous_queries}
        existing.continuous_queries.extend(cq for cq in sdb_info.continuous_queries if cq.name not in have_cq)
        if not existing.default_retention_policy:
            existing.default_retention_policy = sdb_info.default_retention_policy

    users = {u.name: u for u in out.users}
    for u in selected.users:
        cur = users.get(u.name)
        if cur is None:
            out.users.append(u)
            continue
        if cur.hash != u.hash or cur.admin != u.admin:
            warnings.append(f"user {u.name} exists in the target: its password and admin flag are kept")
        have = {p.database for p in cur.privileges}
        cur.privileges.extend(
            UserPrivilege(database=p.database, privilege=p.privilege) for p in u.privileges if p.database not in have
        )
    out.max_shard_group_id, out.max_shard_id = max_sg, max_sh
    out.index += 1
    return out


def read_meta_at(meta_fd: int, meta_path: Path) -> bytes | None:
    """The target ``meta.db`` read through the meta directory's descriptor (None: absent)."""
    try:
        fd = os.open("meta.db", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=meta_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket: say what stands there
            with contextlib.suppress(OSError):
                _check_regular(os.lstat("meta.db", dir_fd=meta_fd).st_mode, meta_path)
        raise _cannot_read(exc, meta_path) from exc
    try:
        _check_regular(os.fstat(fd).st_mode, meta_path)
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read()
    except OSError as exc:
        raise _cannot_read(exc, meta_path) from exc
    finally:
        if fd >= 0:
            os.close(fd)


def write_meta_at(meta_fd: int, meta_path: Path, blob: bytes, *, overwrite: bool) -> None:
    """Write ``meta.db`` atomically into the meta directory the run opened (through
    ``/proc/self/fd``, which names that very directory whatever is renamed meanwhile)."""
    via = f"/proc/self/fd/{meta_fd}"
    if not os.path.isdir(via):  # no /proc: the path itself
        via = str(meta_path.parent)
    try:
        metafiles.write_meta_db(os.path.join(via, "meta.db"), blob, mode=FILE_MODE, overwrite=overwrite)
    except ArchiveError as exc:
        exc.path = str(meta_path)
        raise


def put_back_meta(meta_fd: int, old_meta: bytes | None) -> None:
    """Undo :func:`write_meta_at`: the ``meta.db`` that was there before (``old_meta``), or none."""
    if old_meta is not None:
        write_file_atomically(f"/proc/self/fd/{meta_fd}/meta.db", old_meta, mode=FILE_MODE, replace=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink("meta.db", dir_fd=meta_fd)
