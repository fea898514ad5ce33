"""A bare data directory (and optionally its WAL directory) without any metastore.

``influx_inspect export -datadir D -waldir W`` and ``report`` work on ``<db>/<rp>/<id>/`` trees
alone; so do :func:`open_datadir` and everything built on it. The one tree walk is
:func:`scan_tree` (also used for a server root's ``data/`` and ``wal/``, :mod:`.live`, and meant
for rebuilding a metastore from the tree): databases and retention policies are the directory
names, shard ids the numeric directories below them (docs/formats.md#bare-data-directories).

Nothing is skipped silently: a TSM / tombstone / WAL name that is not a regular readable file is
an error finding, a number written with non-ASCII digits is an error finding, a non-numeric shard
directory a warning. Directories whose name starts with ``_`` at the database level (``_series``
lives below a database; ``_internal`` is influxd's monitoring database) see :func:`scan_tree`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...meta.model import MIN_TIME, Data, DatabaseInfo, RetentionPolicyInfo, ShardGroupInfo, ShardInfo
from ...tsm import naming
from ..errors import SourceError, show
from ..findings import ERROR, FILE_UNREADABLE, SHARD_DIR_NOT_A_NUMBER, WAL_NOT_GIVEN, WARNING, Finding
from ..untrusted import probe_regular
from .model import Shard, ShardFile, file_kind, non_ascii_number
from .ondisk import DiskSource, listdir

MAX_TIME = (1 << 63) - 1

#: the retention policy a synthesized metastore makes default when the tree has it
DEFAULT_RP = "autogen"


def _walk(
    base: Path, is_wal: bool, shards: dict[tuple[str, str, int], Shard], findings: list[Finding], salvage: bool,
    internal: bool,
) -> None:
    if not base.is_dir():
        return
    for db in listdir(base):
        dbp = base / db
        if not dbp.is_dir() or (db.startswith("_") and not (internal and db == "_internal")):
            continue
        for rp in listdir(dbp):
            rpp = dbp / rp
            if not rpp.is_dir() or rp == "_series":
                continue
            for sid_text in listdir(rpp):
                sp = rpp / sid_text
                if not sp.is_dir():
                    continue
                sid, bad = naming.number_field(sid_text)
                if bad:
                    findings.append(non_ascii_number(f"shard directory name {show(sid_text)}", str(sp)))
                    continue
                if sid is None:
                    findings.append(Finding(WARNING, "not a shard directory (name is not a number); ignored",
                                            path=str(sp), code=SHARD_DIR_NOT_A_NUMBER))
                    continue
                key = (db, rp, sid)
                s = shards.get(key)
                if s is None:
                    s = shards[key] = Shard(*key)
                s.containers.append(str(sp))
                for name in listdir(sp):
                    fp = sp / name
                    kind = file_kind(name)
                    if kind == naming.BAD_NUMBER:
                        findings.append(non_ascii_number(f"file name {show(name)}", str(fp)))
                        continue
                    if kind not in (("wal",) if is_wal else ("tsm", "tombstone")):
                        continue  # fields.idx, index/, a WAL's neighbours: not shard data
                    size, why = probe_regular(fp, raise_os=not salvage)
                    if why is not None:  # never skipped silently: influxd would fail on it
                        findings.append(Finding(ERROR, f"{kind} file cannot be read: {why}", path=str(fp),
                                                code=FILE_UNREADABLE))
                        continue
                    sf = ShardFile(name=name, kind=kind, size=size, container=str(fp))  # type: ignore[arg-type]
                    (s.wal if is_wal else s.files).append(sf)
                # influxd replays segments in lexical name order (docs/formats.md)
                s.wal.sort(key=lambda f: f.name)


def scan_tree(
    datadir: str | os.PathLike[str] | None,
    waldir: str | os.PathLike[str] | None,
    *,
    findings: list[Finding],
    salvage: bool = False,
    internal: bool = True,
) -> list[Shard]:
    """Every shard of a ``<db>/<rp>/<id>/`` data tree and its WAL tree, sorted by (db, rp, id).

    A shard present in only one of the two trees is still listed (a shard whose points are all
    in the WAL has a data directory influxd creates empty, or none at all in a copy). Problems are
    appended to ``findings``; with ``salvage`` an unreadable file is a finding instead of an error.
    Database directories starting with ``_`` are skipped, except ``_internal`` when ``internal``
    (influx_inspect exports it; a server root's reader leaves it to its metastore's choice: off)."""
    shards: dict[tuple[str, str, int], Shard] = {}
    if datadir is not None:
        _walk(Path(datadir), False, shards, findings, salvage, internal)
    if waldir is not None:
        _walk(Path(waldir), True, shards, findings, salvage, internal)
    return sorted(shards.values(), key=lambda s: s.key)


def looks_like_datadir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is shaped like influxd's data directory: some ``<db>/<rp>/<digits>/``."""
    p = Path(path)
    try:
        for db in os.listdir(p):
            dbp = p / db
            if not dbp.is_dir():
                continue
            for rp in os.listdir(dbp):
                rpp = dbp / rp
                if rp == "_series" or not rpp.is_dir():
                    continue
                if any(n.isascii() and n.isdigit() and (rpp / n).is_dir() for n in os.listdir(rpp)):
                    return True
    except OSError:
        return False
    return False


def synthesize_meta(shards: list[Shard]) -> Data:
    """A metastore naming what the tree names: one database per database directory, one
    retention policy per RP directory (infinite duration, replication 1, shard duration unknown:
    0), the default RP ``autogen`` when present else the first by name, and one shard group per
    shard spanning all time (its real range is whatever its data holds).

    It is enough to select and read shards (export, report); it is not a metastore to hand to
    influxd (shard-group ranges are not aligned; users and CQs are unknown)."""
    data = Data()
    dbs: dict[str, DatabaseInfo] = {}
    rps: dict[tuple[str, str], RetentionPolicyInfo] = {}
    for s in sorted(shards, key=lambda s: s.key):
        db = dbs.get(s.database)
        if db is None:
            db = dbs[s.database] = DatabaseInfo(name=s.database)
            data.databases.append(db)
        rp = rps.get((s.database, s.retention_policy))
        if rp is None:
            rp = rps[(s.database, s.retention_policy)] = RetentionPolicyInfo(name=s.retention_policy, replica_n=1)
            db.retention_policies.append(rp)
        rp.shard_groups.append(
            ShardGroupInfo(id=s.id, start_time=MIN_TIME, end_time=MAX_TIME, shards=[ShardInfo(id=s.id)])
        )
        data.max_shard_group_id = max(data.max_shard_group_id, s.id)
        data.max_shard_id = max(data.max_shard_id, s.id)
    for db in data.databases:
        names = [rp.name for rp in db.retention_policies]
        db.default_retention_policy = DEFAULT_RP if DEFAULT_RP in names else names[0]
    return data


def open_datadir(
    datadir: str | os.PathLike[str],
    waldir: str | os.PathLike[str] | None = None,
    *,
    salvage: bool = False,
) -> DiskSource:
    """A bare data directory (and WAL directory) as a :class:`DiskSource` of kind ``datadir``,
    with a metastore synthesized from the tree (:func:`synthesize_meta`, ``meta_origin`` None)."""
    dp = Path(datadir)
    if not dp.is_dir():
        raise SourceError("not a directory (expected influxd's data directory)", path=str(dp))
    if waldir is not None and not Path(waldir).is_dir():
        raise SourceError("not a directory (expected influxd's WAL directory)", path=str(waldir))
    src = DiskSource("datadir", str(dp), salvage=salvage, also_reads=[str(waldir)] if waldir is not None else [])
    src.shards = scan_tree(dp, waldir, findings=src.findings, salvage=salvage)
    if not src.shards:
        hint = ("; this looks like a server root: give its data/ directory, or the root itself as SRC"
                if (dp / "data").is_dir() else "")
        raise SourceError("no shards found: expected <database>/<retention policy>/<shard id>/ directories"
                          + hint, path=str(dp))
    src.meta = synthesize_meta(src.shards)
    src.meta_origin = None
    for s in src.shards:
        s.in_meta = True
        s.group_id = s.id
        s.group_start, s.group_end = MIN_TIME, MAX_TIME
    if waldir is None:
        src.findings.append(Finding(WARNING, "no WAL directory given: points only in the WAL are not read",
                                    path=str(dp), code=WAL_NOT_GIVEN))
    return src
