"""``build-tsi``: build the tsi1 index of shards offline (``influx_inspect buildtsi``'s job).

For every selected shard directory ``<datadir>/<db>/<rp>/<id>`` without an ``index/`` (or every
one with ``force``) this reads the series the shard serves — the keys of its TSM files minus those
their tombstones delete whole, plus the keys of its WAL segments (``<waldir>/<db>/<rp>/<id>``)
after their deletes — exactly the set influxd itself would index when it opens the shard
(``tsdb/engine/tsm1/engine.go`` ``LoadMetadataIndex``). Then:

1. the database's series file ``<db>/_series`` gets every series it lacks, with the id influxd
   would give it (:mod:`influx_archive.tsm.tsi1.seriesfile`): the series file is copied to a
   staging directory beside it (unchanged segments hard-linked), extended, fsynced, and swapped in
   with two renames. A run killed between them leaves ``.influx-archive-series-old-*``, which the
   next run moves back first;
2. each shard's ``index/`` is written into ``<shard>/.index`` (influx_inspect's staging name):
   partitions ``0``..``7``, each a ``MANIFEST`` and one log file ``L0-00000001.tsl`` holding one
   entry per series (``tsdb/index/tsi1/``), fsynced, then renamed to ``index`` (with ``force`` the
   old index is swapped out and removed only after the new one is in place).

Differences from ``influx_inspect buildtsi`` 1.6.7: no prompt, no WAL directory required (WAL
segments found are indexed); series whose every value is deleted by tombstones are left out
(influx_inspect indexes them, influxd does not); a damaged TSM, tombstone or WAL file stops the
run with one line naming it (influx_inspect skips an unreadable TSM file with a log line and
indexes nothing of it); refused while another process holds files of the data or WAL directory
open (influxd running); indexes are log files (influxd compacts them into ``.tsi`` files itself,
once a partition's log passes ``max-index-log-file-size``); modes are influxd's (directories
0777, files 0666, less the umask); ``owner`` chowns everything written.

Links: the data directory itself may be a link (to another disk, say). Below it a database,
retention policy or shard directory that is a symbolic link is left as it is, with a warning; one
swapped in during the run is never written through: every database and shard directory is reached
through descriptors opened component by component without following links (:class:`.tsidirs.Beneath`),
and named through ``/proc/self/fd`` from then on, whatever is renamed meanwhile. Below them the
staging trees (series file stage, ``.index``) are written, chowned, fsynced and renamed through
directory descriptors only, each name checked to be what this run created before the rename
(:mod:`.tsifd`): a link swapped in for one is refused by name (exit 3).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ...tsm import naming
from ...tsm.keys import series_of
from ...tsm.reader import TSMReader
from ...tsm.shard import ShardReader
from ...tsm.tombstone import TombstoneSet, read_tombstones
from ...tsm.tsi1 import format as tfmt
from ...tsm.tsi1 import seriesfile as sfmod
from ...tsm.tsi1 import serieskey
from ...tsm.tsi1.compiled import core
from ...tsm.wal import Cache
from ..errors import (
    ArchiveError,
    BusyError,
    FormatError,
    SourceError,
    TargetError,
    UsageError,
)
from ..guard import TargetLock
from ..progress import ProgressCallback, Reporter
from ..untrusted import open_regular
from .tsidirs import Beneath, DataDirLock, holders
from .tsiwrite import (
    extend_series_file,
    install_index,
    linked_partition,
    listdir,
    recover_series_file,
    shard_partitions,
)

Progress = ProgressCallback | None

_SHARD_RE = re.compile(r"^\d+$")


@dataclass
class ShardPlan:
    database: str
    retention_policy: str
    shard_id: int
    path: str
    wal_path: str | None
    action: str  # "build", "rebuild" (force, index/ exists), "skip" (index/ exists)
    series: int = 0  # filled in by the run
    log_bytes: int = 0

    def to_dict(self) -> dict:
        return {
            "database": self.database,
            "retention_policy": self.retention_policy,
            "shard": self.shard_id,
            "path": self.path,
            "wal": self.wal_path,
            "action": self.action,
            "series": self.series,
        }


@dataclass
class BuildPlan:
    datadir: str
    waldir: str | None
    shards: list[ShardPlan]
    warnings: list[str] = field(default_factory=list)
    new_series: dict[str, int] = field(default_factory=dict)  # database -> series added to _series

    def to_dict(self) -> dict:
        return {
            "datadir": self.datadir,
            "waldir": self.waldir,
            "shards": [s.to_dict() for s in self.shards],
            "new_series": dict(self.new_series),
            "warnings": list(self.warnings),
        }


def plan_build_tsi(
    datadir: str | os.PathLike[str],
    waldir: str | os.PathLike[str] | None = None,
    *,
    database: str | None = None,
    retention_policy: str | None = None,
    shard_id: int | None = None,
    force: bool = False,
) -> BuildPlan:
    """Which shards would be (re)built or skipped. Filters work alone or together, like
    influx_inspect's ``-database``/``-retention``/``-shard``; a filter matching nothing is a usage
    error."""
    d = os.fspath(datadir)
    if not os.path.isdir(d):
        raise SourceError("data directory does not exist or is not a directory", path=d)
    warnings: list[str] = []
    w = os.fspath(waldir) if waldir is not None else None
    if w is not None and not os.path.isdir(w):
        raise SourceError("WAL directory does not exist or is not a directory", path=w)
    if w is None and os.path.basename(os.path.normpath(d)) == "data":
        guess = os.path.join(os.path.dirname(os.path.normpath(d)), "wal")
        if os.path.isdir(guess):
            w = guess
            warnings.append(f"no --waldir given: indexing the WAL segments in {guess}")
    shards: list[ShardPlan] = []
    for db in listdir(d, "data directory"):
        dbp = os.path.join(d, db)
        if not os.path.isdir(dbp) or db.startswith("."):
            continue
        if database is not None and db != database:
            continue
        if os.path.islink(dbp):
            warnings.append(f"{dbp} is a symbolic link: left as it is (build-tsi never writes through links)")
            continue
        if os.path.islink(os.path.join(dbp, tfmt.SERIES_FILE_DIR)):
            raise TargetError(
                f"{tfmt.SERIES_FILE_DIR} is a symbolic link: build-tsi swaps the series file in with renames and "
                "would replace the link by a directory; point --datadir at the real tree",
                path=os.path.join(dbp, tfmt.SERIES_FILE_DIR),
            )
        linked = linked_partition(os.path.join(dbp, tfmt.SERIES_FILE_DIR))
        if linked is not None:
            raise TargetError(
                "is a symbolic link: a series file partition is copied through no link (its files would "
                "be handed to --owner); point it at the real directory", path=linked,
            )
        for rp in listdir(dbp, "database directory"):
            rpp = os.path.join(dbp, rp)
            if rp == tfmt.SERIES_FILE_DIR or rp.startswith(".") or not os.path.isdir(rpp):
                continue
            if retention_policy is not None and rp != retention_policy:
                continue
            if os.path.islink(rpp):
                warnings.append(f"{rpp} is a symbolic link: left as it is (build-tsi never writes through links)")
                continue
            for sh in listdir(rpp, "retention policy directory"):
                shp = os.path.join(rpp, sh)
                if not _SHARD_RE.match(sh) or not os.path.isdir(shp):
                    continue
                sid = int(sh)
                if shard_id is not None and sid != shard_id:
                    continue
                if os.path.islink(shp):
                    warnings.append(f"{shp} is a symbolic link: left as it is (build-tsi never writes through links)")
                    continue
                wp = os.path.join(w, db, rp, sh) if w is not None else None
                if wp is not None and not os.path.isdir(wp):
                    wp = None
                has_index = os.path.lexists(os.path.join(shp, tfmt.INDEX_DIR))
                action = "rebuild" if has_index and force else "skip" if has_index else "build"
                shards.append(ShardPlan(db, rp, sid, shp, wp, action))
    if not shards and (database is not None or retention_policy is not None or shard_id is not None):
        what = ", ".join(
            f"{k} {v}"
            for k, v in (("database", database), ("retention policy", retention_policy), ("shard", shard_id))
            if v is not None
        )
        raise UsageError(f"no shard directory matches {what}", path=d)
    skipped = [s for s in shards if s.action == "skip"]
    if skipped:
        warnings.append(f"{len(skipped)} shard(s) already have index/ and are left as they are (--force rebuilds them)")
    return BuildPlan(d, w, shards, warnings)


# ---- reading a shard's series --------------------------------------------------------------


def _open_staged(path: str, what: str):
    """``path`` opened for reading without following a link in its last component (a staged
    file: one swapped for a link or anything but a regular file during the run is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TargetError(f"a staged {what} is a symbolic link now (swapped in during the run?)",
                              path=path) from None
        raise TargetError(f"cannot read staged {what}: {exc.strerror}", path=path) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TargetError(f"a staged {what} is no regular file now (swapped in during the run?)", path=path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _staged_reader(path: str) -> TSMReader:
    fh = _open_staged(path, "TSM file")
    try:
        reader = TSMReader(fh, name=path)
    except BaseException:
        fh.close()
        raise
    reader._owns = True
    return reader


def shard_series(shard_dir: str, wal_dir: str | None = None, *, nofollow: bool = False) -> list[bytes]:
    """Line-protocol series keys the shard serves (see the module docstring), sorted. With
    ``nofollow`` (a staged shard, named through its held descriptor) no file is read through a
    link: one found is refused (TargetError)."""
    opener = _open_staged if nofollow else open_regular
    names = listdir(shard_dir, "shard directory")
    tsm = sorted((n for n in names if n.endswith(".tsm") and naming.parse_name(n)), key=naming.order_key)
    layers = []
    opened = []
    try:
        for n in tsm:
            p = os.path.join(shard_dir, n)
            reader = TSMReader.open(p) if not nofollow else _staged_reader(p)
            opened.append(reader)
            tomb = p[: -len(".tsm")] + ".tombstone"
            tset = None
            if os.path.lexists(tomb):  # a dangling link is refused, not taken for "no tombstones"
                with opener(tomb, "tombstone file") as f:
                    tset = TombstoneSet(read_tombstones(f, name=tomb))
            layers.append((reader, tset))
        cache = None
        if wal_dir is not None:
            segs = sorted((n for n in listdir(wal_dir, "WAL directory") if n.endswith(".wal")), key=os.fsencode)
            if segs:
                cache = Cache()
                for n in segs:
                    p = os.path.join(wal_dir, n)
                    f = opener(p, "WAL segment")
                    with f:
                        cache.replay(f, name=p, salvage=True)
                for _name, corruption in cache.corruptions:
                    if corruption.resume is not None:
                        raise corruption.error
        series: set[bytes] = set()
        fast = core.series_of_keys if core is not None else None
        for keys in ShardReader(layers, cache).key_lists():
            got = fast(keys) if fast is not None else None
            series.update(got if got is not None else map(series_of, keys))
        return sorted(series)
    finally:
        for r in opened:
            r.close()


def _write_path_name(key: bytes) -> bytes:
    """The measurement name influxd's write path gives a point (``models.point.Name``:
    ``escape.Unescape``, which also unescapes ``\\=`` and ``\\\"``)."""
    _, raw = serieskey._scan_to(key, 0, 0x2C)
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        if raw[i] == 0x5C and i + 1 < n and raw[i + 1] in b',"= ':
            out.append(raw[i + 1])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def _name_mismatch_warning(shard_dir: str, keys: list[bytes]) -> str | None:
    """influxd 1.6.7 names a measurement written as ``a\\=b`` ``a=b`` in its write path (and in
    the ``fields.idx`` it saves) but ``a\\=b`` when it reads keys back (index rebuilds, buildtsi,
    this tool). Under tsi1 with a ``fields.idx`` present, such a measurement's points are not
    served (influxd itself has the same problem natively); without ``fields.idx`` influxd
    rebuilds the field list from the data under the key-parser name and serves them."""
    if b"\\" not in b"".join(keys) or not os.path.exists(os.path.join(shard_dir, "fields.idx")):
        return None
    odd = sorted(
        {serieskey.parse_key(k)[0] for k in keys if b"\\" in k and _write_path_name(k) != serieskey.parse_key(k)[0]}
    )
    if not odd:
        return None
    names = ", ".join(repr(n.decode("utf-8", "backslashreplace")) for n in odd[:3]) + (" ..." if len(odd) > 3 else "")
    return (
        f"{shard_dir}: measurement(s) {names} contain \\= or \\\" escapes, which influxd 1.6.7 names differently in "
        f"fields.idx and in its index: under tsi1 their points are not served until {shard_dir}/fields.idx is removed "
        "(influxd then rebuilds it from the data)"
    )


def _keyed(keys: list[bytes], where: str) -> list[tuple[bytes, bytes]]:
    """(line key, series file key) of each key, checked."""
    if core is not None:
        got = core.keyed_series(keys)  # None: some key is not plain, the Python path decides all
        if got is not None:
            return got
    out = []
    fast = core.series_file_key if core is not None else None
    for k in keys:
        if len(k) > tfmt.MAX_KEY_LEN:
            raise FormatError(f"series key of {len(k)} bytes is longer than influxd's limit", path=where)
        sk = fast(k) if fast is not None else None  # None: an escape, an empty part... the Python path decides
        if sk is not None:
            out.append((k, sk))
            continue
        name, tags = serieskey.parse_key(k)
        if not name:
            raise FormatError(f"series key {k[:80]!r} has no measurement name", path=where)
        out.append((k, serieskey.encode(name, tags)))
    return out


def keyed_series(shard_dir: str, wal_dir: str | None = None, *, nofollow: bool = False) -> list[tuple[bytes, bytes]]:
    """(line key, series file key) of every series the shard serves (:func:`shard_series`), each
    checked (length, measurement name): what a shard's index and its database's series file hold."""
    return _keyed(shard_series(shard_dir, wal_dir, nofollow=nofollow), shard_dir)


def series_ids(sfile: sfmod.SeriesFile) -> dict[bytes, int]:
    """Series file key -> id of every series of ``sfile``."""
    return _all_ids(sfile)


def _all_ids(sfile: sfmod.SeriesFile) -> dict[bytes, int]:
    ids: dict[bytes, int] = {}
    for part in sfile.partitions:
        ids.update(part.keys)
    return ids


#: threads writing shard indexes at once: the work is mostly fsync (no CPU), so more than the cores
_JOBS = 8


class _ShardWriters:
    """Shard ``index/`` installs on a small thread pool. The first failure stops new installs
    (those not started are not run) and is raised once the running ones have finished, so every
    shard is left either with its complete new index or as it was; an exception in the main
    thread (a signal) also waits for the running installs before it propagates."""

    def __init__(self, jobs: int, rep: Reporter, beneath: Beneath) -> None:
        self.jobs = max(1, jobs)
        self.rep = rep
        self.beneath = beneath
        self.pool = ThreadPoolExecutor(max_workers=self.jobs) if self.jobs > 1 else None
        self.futures: list[Future] = []

    def _install(self, s: ShardPlan, parts: list[list[int]], owner) -> None:
        with self.beneath.shard(s.database, s.retention_policy, s.path) as shard_dir:
            s.log_bytes = install_index(shard_dir, parts, owner, replace=s.action == "rebuild")

    def submit(self, s: ShardPlan, parts: list[list[int]], owner) -> None:
        if self.pool is None:
            self._install(s, parts, owner)
            self.rep.advance(1)
            return
        self._reap(block=False)
        self.futures.append(self.pool.submit(self._install, s, parts, owner))

    def _reap(self, block: bool) -> None:
        pending = []
        for f in self.futures:
            if block or f.done():
                f.result()  # raises the install's error
                self.rep.advance(1)
            else:
                pending.append(f)
        self.futures = pending

    def __enter__(self) -> _ShardWriters:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.pool is None:
            return
        try:
            if exc_type is None:
                try:
                    self._reap(block=True)
                    return
                except BaseException:
                    for f in self.futures:
                        f.cancel()
                    raise
            for f in self.futures:
                f.cancel()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class BuildResult:
    plan: BuildPlan
    built: list[ShardPlan]
    skipped: list[ShardPlan]


def build_shard_index(
    shard_dir: str | os.PathLike[str],
    series_file_dir: str | os.PathLike[str],
    *,
    wal_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    owner: tuple[int, int] | None = None,
    progress: Progress = None,
) -> int:
    """Build ``index/`` for one (e.g. freshly staged) shard directory, extending the series file
    at ``series_file_dir`` (``<db>/_series``; created when missing) first. For restore: the
    shard's directory may be a staging directory anywhere. Returns the number of series indexed."""
    shard = os.fspath(shard_dir)
    sdir = os.fspath(series_file_dir)
    if os.path.lexists(os.path.join(shard, tfmt.INDEX_DIR)) and not force:
        return 0
    db_dir = os.path.dirname(os.path.normpath(sdir))
    if os.path.basename(os.path.normpath(sdir)) != tfmt.SERIES_FILE_DIR:
        raise UsageError(f"a series file directory is named {tfmt.SERIES_FILE_DIR}", path=sdir)
    keys = _keyed(shard_series(shard, os.fspath(wal_dir) if wal_dir is not None else None), shard)
    recover_series_file(db_dir)
    live = os.path.join(db_dir, tfmt.SERIES_FILE_DIR)
    existing = sfmod.SeriesFile(live) if os.path.isdir(live) else None
    _sfile, _added, ids, (parts,) = _db_series(db_dir, existing, [keys], owner, progress)
    if parts is None:
        parts = shard_partitions(keys, ids, shard)
    install_index(shard, parts, owner, replace=force)
    return len(keys)


def _db_series(
    db_dir: str, sfile: sfmod.SeriesFile | None, shard_keys: list[list[tuple[bytes, bytes]]], owner, progress: Progress,
    name: str | None = None,
) -> tuple[sfmod.SeriesFile, int, dict[bytes, int], list[list[list[int]] | None]]:
    """The database's series file (``sfile``: the live one as read, or None) holding every key of
    ``shard_keys`` ((line key, series file key) pairs; extended when needed), how many series
    were added, its ids (:func:`series_ids`), and each shard's ids by index partition where every
    key of the shard already had one (None elsewhere: :func:`shard_partitions` once extended)."""
    new: list[bytes] = []
    have = _all_ids(sfile) if sfile is not None else {}
    seen: set[bytes] = set()
    parts: list[list[list[int]] | None] = []
    for keys in shard_keys:
        # usually every key has an id already: the compiled core's partitions say so, and the
        # ordered loop below (which keeps influxd's id order) is skipped
        got = core.shard_partitions(keys, have) if core is not None else None
        parts.append(got)
        if got is not None:
            continue
        missing = {sk for _k, sk in keys}.difference(have)
        if not missing:
            continue
        for _k, sk in keys:
            if sk in seen or sk not in missing:
                continue
            seen.add(sk)
            new.append(sk)
    if new or sfile is None:
        sfile = extend_series_file(db_dir, sfile, new, owner, progress, name=name)
        have = _all_ids(sfile)  # the ids there were are unchanged: so are the partitions above
    return sfile, len(new), have, parts


def build_tsi(
    datadir: str | os.PathLike[str],
    waldir: str | os.PathLike[str] | None = None,
    *,
    database: str | None = None,
    retention_policy: str | None = None,
    shard_id: int | None = None,
    force: bool = False,
    owner: tuple[int, int] | None = None,
    dry_run: bool = False,
    progress: Progress = None,
    jobs: int | None = None,
) -> BuildResult:
    """Build the tsi1 index of every selected shard (see the module docstring). ``owner`` is
    (uid, gid). With ``dry_run`` only the plan is made (and each shard's series counted).
    ``jobs``: threads writing shard indexes (default :data:`_JOBS`; 1 writes them in order)."""
    plan = plan_build_tsi(
        datadir, waldir, database=database, retention_policy=retention_policy, shard_id=shard_id, force=force
    )
    todo = [s for s in plan.shards if s.action != "skip"]
    skipped = [s for s in plan.shards if s.action == "skip"]
    roots = [plan.datadir] + ([plan.waldir] if plan.waldir else [])
    # the targets' lock first: restore, delete-tsm and another build-tsi hold it (restore --force
    # passes the live-process check below, never the lock), and its message names the run
    target_lock = contextlib.nullcontext() if dry_run else TargetLock([(plan.datadir, 0o755)])
    with target_lock:
        held = holders(roots)
        if held is not None:
            raise BusyError(f"process {held[0]} holds {held[1]} open (stop influxd first)", path=plan.datadir)
        return _locked_build(plan, todo, skipped, owner, progress, jobs, dry_run)


def _locked_build(
    plan: BuildPlan, todo: list[ShardPlan], skipped: list[ShardPlan], owner, progress: Progress,
    jobs: int | None, dry_run: bool,
) -> BuildResult:
    lock = None if dry_run else DataDirLock(plan.datadir)
    beneath = Beneath(lock.fd, plan.datadir) if lock is not None else None
    try:
        return _build(plan, todo, skipped, beneath, owner, progress, jobs)
    except ArchiveError as exc:
        if beneath is not None:
            exc.path = beneath.shown(exc.path)
        raise
    finally:
        if beneath is not None:
            beneath.close()
        if lock is not None:
            lock.release()


def _build(
    plan: BuildPlan, todo: list[ShardPlan], skipped: list[ShardPlan], beneath: Beneath | None, owner,
    progress: Progress, jobs: int | None,
) -> BuildResult:
    """build_tsi's work, under its lock; ``beneath`` is None for a dry run (which writes nothing
    and reads through the paths)."""
    dry_run = beneath is None
    by_db: dict[str, list[ShardPlan]] = {}
    for s in todo:
        by_db.setdefault(s.database, []).append(s)
    rep = Reporter(progress, unit="shards", label="build-tsi")
    rep.start(len(todo))
    # 1. read and check everything (shards' TSM/tombstone/WAL files, existing series files)
    #    before writing anything: damaged input leaves the tree exactly as it was
    work = []
    for db, shards in by_db.items():
        db_dir = os.path.join(plan.datadir, db) if beneath is None else beneath.db(db)
        keysets = []
        for s in shards:
            where = (s.database, s.retention_policy, s.path)
            opened = beneath.shard(*where) if beneath else contextlib.nullcontext(s.path)
            with opened as shard_dir:
                raw = shard_series(shard_dir, s.wal_path)
            keys = _keyed(raw, s.path)
            s.series = len(keys)
            keysets.append(keys)
            w = _name_mismatch_warning(s.path, raw)
            if w is not None:
                plan.warnings.append(w)
        if not dry_run:
            recover_series_file(db_dir)
        live = os.path.join(db_dir, tfmt.SERIES_FILE_DIR)
        sfile = sfmod.SeriesFile(live) if os.path.isdir(live) else None
        if dry_run:
            have = _all_ids(sfile) if sfile is not None else {}
            plan.new_series[db] = len({sk for ks in keysets for _k, sk in ks if sk not in have})
        work.append((db, db_dir, shards, keysets, sfile))
    if dry_run:
        return BuildResult(plan, todo, skipped)
    # 2. per database: extend the series file (atomically), then each shard's index/. The
    #    shard indexes are written by a few threads (their time is fsync, which releases the
    #    GIL) while the next database's series file is written here; each is atomic on its own
    #    and its bytes do not depend on the order (tests/test_tsi1_speed.py compares)
    assert beneath is not None
    with _ShardWriters(jobs if jobs is not None else _JOBS, rep, beneath) as writers:
        for db, db_dir, shards, keysets, sfile in work:
            sfile, plan.new_series[db], ids, known = _db_series(
                db_dir, sfile, keysets, owner, progress, name=os.path.join(plan.datadir, db)
            )
            for s, keys, parts in zip(shards, keysets, known):
                if parts is None:
                    parts = shard_partitions(keys, ids, s.path)
                writers.submit(s, parts, owner)
    rep.end()
    return BuildResult(plan, todo, skipped)

