"""``rebuild-meta``: write a ``meta.db`` from a data directory alone (the metastore was lost).

What the tree says (docs/formats.md#rebuilding-a-metastore):

* databases, retention policies and shard ids are the directory names ``<data>/<db>/<rp>/<id>``
  (and ``<wal>/<db>/<rp>/<id>``); anything else in the tree is ignored with a warning;
* each shard's time range is read from its TSM indexes (keys deleted by tombstones left out) and
  its WAL segments; a shard with neither holds no data and is left out of the metastore (its id
  still counts for ``MaxShardID``, so no new shard collides with its directory);
* a shard id found under two retention policies is refused (influxd would serve only one);
* each retention policy's shard group duration is given (``--shard-duration``) or inferred: the
  largest of influxd's defaults (1h, 1d, 7d) under which every shard's data lies in one group and
  no two shards share a group, else the largest such multiple of an hour up to 7d, else 1h;
* a shard's group is ``[start, end)`` aligned as influxd aligns it (Go's ``Time.Truncate``: a
  multiple of the duration since January 1 of year 1), widened to whole durations when the data
  spans more than one (a duration changed with ``ALTER RETENTION POLICY``);
* retention policy durations cannot be read from the data: every RP is written with an infinite
  duration, so influxd's retention service never deletes what was recovered; users, grants,
  continuous queries and subscriptions cannot be recovered at all. The plan's notes say so.

Nothing here prints: :func:`plan_rebuild` returns a :class:`RebuildPlan` (warnings and notes as
data), :func:`execute_rebuild` writes the one file atomically.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...meta import files as metafiles
from ...meta.model import (
    MIN_TIME,
    Data,
    DatabaseInfo,
    RetentionPolicyInfo,
    ShardGroupInfo,
    ShardInfo,
    encode_data,
)
from ..errors import FormatError, SourceIOError, TargetError, TargetIOError, UsageError, show
from ..findings import (
    ERROR,
    FILE_UNREADABLE,
    NON_ASCII_DIGITS,
    SHARD_DIR_NOT_A_NUMBER,
    SHARD_NOT_IN_META,
    WARNING,
    Finding,
)
from ..guard import LOCK_NAME
from ..progress import ProgressCallback, Reporter
from ..sources.baredata import scan_tree
from ..sources.model import Shard
from ..sources.ondisk import DiskSource, listdir
from ..sources.shardview import shard_index_summary
from ..timefmt import rfc3339
from .restore.shards import owner_text

HOUR = 3600 * 10**9
DAY = 24 * HOUR
WEEK = 7 * DAY
#: influxd's default shard group durations (services/meta/data.go ``shardGroupDuration``)
INFLUXD_DEFAULTS = (WEEK, DAY, HOUR)
#: Go's zero time (January 1, year 1, UTC) is this many ns before the Unix epoch
_GO_ZERO_OFFSET = 62135596800 * 10**9
MAX_TIME = (1 << 63) - 1
DEFAULT_RP = "autogen"
META_FILE = "meta.db"
META_DIR_MODE = 0o755

NOTES = (
    "users, grants, continuous queries and subscriptions cannot be recovered from data files: "
    "recreate them (CREATE USER ... WITH ALL PRIVILEGES first when auth is enabled)",
    "retention policy durations cannot be read from data files: every retention policy is written "
    "with an infinite duration (nothing is ever expired); set the real ones with ALTER RETENTION POLICY",
)

_DURATION = re.compile(r"(\d+)(ns|us|µs|ms|s|m|h|d|w)")
_UNIT = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": HOUR, "d": DAY,
         "w": WEEK}


def parse_duration(text: str) -> int:
    """An InfluxQL duration (``1h``, ``7d``, ``1w``, ``1h30m``) in ns; at least 1h (influxd's
    minimum shard group duration)."""
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise UsageError(f"--shard-duration: {show(text)} is not a duration (like 1h, 1d, 7d, 2w)")
    if total < HOUR or total > 100 * 365 * DAY:
        raise UsageError(f"--shard-duration: {show(text)} is outside 1h .. 100 years")
    return total


def parse_shard_durations(specs: list[str]) -> tuple[int | None, dict[tuple[str, str], int]]:
    """``--shard-duration`` values: ``DURATION`` (every RP) or ``DB/RP=DURATION`` (one RP)."""
    default: int | None = None
    per_rp: dict[tuple[str, str], int] = {}
    for spec in specs:
        where, eq, dur = spec.rpartition("=")
        if not eq:
            default = parse_duration(spec)
            continue
        db, slash, rp = where.partition("/")
        if not slash or not db or not rp:
            raise UsageError(f"--shard-duration: {show(spec)} is not DURATION or DB/RP=DURATION")
        per_rp[(db, rp)] = parse_duration(dur)
    return default, per_rp


def truncate(t: int, d: int) -> int:
    """Go's ``time.Unix(0, t).Truncate(d)``: down to a multiple of ``d`` since year 1."""
    return t - (t + _GO_ZERO_OFFSET) % d


# ---------------------------------------------------------------------------------------------
# the tree


def open_bare(datadir: Path, waldir: Path | None) -> DiskSource:
    """The shards of a data directory (and WAL directory) without any metastore, read by
    :func:`~influx_archive.archive.sources.baredata.scan_tree`: a ``live`` source whose ``meta`` is
    None. Names influxd does not read as part of the tree (a file where a directory belongs, a
    link, a shard directory not named by ASCII digits) are ignored with a warning each."""
    for flag, d in (("--datadir", datadir), ("--waldir", waldir)):
        if d is not None and not Path(d).is_dir():
            raise UsageError(f"{flag} is not a directory", path=str(d))
    src = DiskSource("live", str(datadir))
    found: list[Finding] = []
    src.shards = [s for s in scan_tree(datadir, waldir, findings=found) if _without_links(s)]
    for f in found:  # influxd skips a shard directory it cannot parse ("invalid shard ID"): so do we
        if f.code == NON_ASCII_DIGITS:
            f = Finding(WARNING, f"{f.message}; ignored (influxd does not read it either)", f.path, code=f.code)
        src.findings.append(f)
    for base in (datadir, waldir):
        if base is not None:
            src.findings.extend(_junk(Path(base)))
    return src


def _linked(container: str) -> bool:
    """Whether a shard directory ``<db>/<rp>/<id>`` is reached through a symbolic link at any of
    those three levels (influxd lists them with Lstat and skips links; _junk warns)."""
    p = Path(container)
    return p.is_symlink() or p.parent.is_symlink() or p.parent.parent.is_symlink()


def _without_links(s: Shard) -> bool:
    """Drop the parts of ``s`` reached through a link; False when nothing is left."""
    bad = {c for c in s.containers if _linked(c)}
    if bad:
        s.containers = [c for c in s.containers if c not in bad]
        s.files = [f for f in s.files if os.path.dirname(f.container) not in bad]
        s.wal = [f for f in s.wal if os.path.dirname(f.container) not in bad]
    return bool(s.containers)


def _junk(base: Path) -> list[Finding]:
    """A warning for every name scan_tree passes over without a word: files and links where
    influxd expects database, retention policy and shard directories."""
    out: list[Finding] = []

    def note(p: Path, what: str) -> None:
        out.append(Finding(WARNING, f"not a {what} directory; ignored", path=str(p), code=SHARD_DIR_NOT_A_NUMBER))

    for db in listdir(base):
        dbp = base / db
        if db == LOCK_NAME:
            continue
        if dbp.is_symlink() or not dbp.is_dir():
            note(dbp, "database")
            continue
        if db.startswith("_") and db != "_internal":
            note(dbp, "database")
            continue
        for rp in listdir(dbp):
            rpp = dbp / rp
            if rp == "_series":
                continue
            if rpp.is_symlink() or not rpp.is_dir():
                note(rpp, "retention policy")
                continue
            for sid in listdir(rpp):
                sp = rpp / sid
                if sp.is_symlink() or not sp.is_dir():
                    note(sp, "shard")
    return out


# ---------------------------------------------------------------------------------------------
# the plan


@dataclass
class ShardRange:
    database: str
    retention_policy: str
    id: int
    min_time: int | None
    max_time: int | None
    series: int
    group_id: int = 0
    group_start: int = 0
    group_end: int = 0

    def to_dict(self) -> dict:
        return {
            "database": self.database, "retention_policy": self.retention_policy, "id": self.id,
            "series": self.series, "min_time": rfc3339(self.min_time), "max_time": rfc3339(self.max_time),
            "group_id": self.group_id or None, "group_start": rfc3339(self.group_start) if self.group_id else None,
            "group_end": rfc3339(self.group_end) if self.group_id else None,
        }


@dataclass
class RebuildPlan:
    datadir: Path
    waldir: Path | None
    metadir: Path
    meta: Data
    shards: list[ShardRange]
    durations: dict[tuple[str, str], tuple[int, str]]  # (db, rp) -> (shard group duration, how chosen)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=lambda: list(NOTES))
    replace: bool = False

    @property
    def meta_path(self) -> Path:
        return self.metadir / META_FILE

    def to_dict(self) -> dict:
        dbs = []
        for db in self.meta.databases:
            rps = []
            for rp in db.retention_policies:
                dur, how = self.durations[(db.name, rp.name)]
                rps.append({"name": rp.name, "shard_group_duration_ns": dur, "shard_group_duration_from": how,
                            "duration_ns": rp.duration, "shard_groups": len(rp.shard_groups)})
            dbs.append({"name": db.name, "default_retention_policy": db.default_retention_policy,
                        "retention_policies": rps})
        return {
            "datadir": str(self.datadir), "waldir": str(self.waldir) if self.waldir else None,
            "metastore": str(self.meta_path), "databases": dbs, "shards": [s.to_dict() for s in self.shards],
            "max_shard_id": self.meta.max_shard_id, "max_shard_group_id": self.meta.max_shard_group_id,
            "findings": [f.to_dict() for f in self.findings], "notes": list(self.notes),
        }


def _fits(ranges: list[ShardRange], d: int) -> tuple[bool, bool]:
    """(every shard in one group of duration ``d``, no two shards in the same group)."""
    one = all(truncate(r.min_time, d) == truncate(r.max_time, d) for r in ranges)  # type: ignore[arg-type]
    starts = [truncate(r.min_time, d) for r in ranges]  # type: ignore[arg-type]
    return one, len(set(starts)) == len(starts)


def infer_duration(ranges: list[ShardRange]) -> tuple[int, str]:
    """The shard group duration of one RP from its shards' ranges (see the module docstring)."""
    for d in INFLUXD_DEFAULTS:
        if all(_fits(ranges, d)):
            return d, "inferred (influxd default)"
    for hours in range(7 * 24, 0, -1):
        if all(_fits(ranges, hours * HOUR)):
            return hours * HOUR, "inferred"
    return HOUR, "inferred (shards overlap: groups widened)"


def _group(r: ShardRange, d: int) -> tuple[int, int]:
    lo = r.min_time if r.min_time is not None else 0
    hi = r.max_time if r.max_time is not None else lo
    start = truncate(lo, d)
    end = truncate(hi, d) + d
    # influxd's CreateShardGroup clamps the end to MaxNanoTime + 1; a start below the lowest int64
    # time is stored as the lowest (influxd would wrap it, docs/formats.md#metastore-data)
    return max(start, MIN_TIME), min(end, MAX_TIME)


def plan_rebuild(
    datadir: Path, waldir: Path | None, metadir: Path, *, shard_durations: list[str] | None = None,
    force: bool = False, progress: ProgressCallback | None = None,
) -> RebuildPlan:
    """Read the tree and decide the metastore; nothing is written. Raises UsageError for bad
    arguments, TargetError for a metadir that is not empty (unless ``force``), FormatError for a
    damaged data file (its time range cannot be known)."""
    default_d, per_rp = parse_shard_durations(shard_durations or [])
    replace = _check_metadir(metadir, force)
    guessed: list[Finding] = []
    if waldir is None and Path(datadir).name == "data" and (Path(datadir).parent / "wal").is_dir():
        # points only in the WAL would otherwise not count: their shard would be left out, unserved
        waldir = Path(datadir).parent / "wal"
        guessed.append(Finding(WARNING, f"no --waldir given: reading the WAL segments in {waldir}", path=str(waldir),
                               code=SHARD_NOT_IN_META))
    src = open_bare(datadir, waldir)
    src.findings[:0] = guessed
    for f in src.findings:  # a shard whose files cannot be read has no known time range
        if f.severity == ERROR:
            raise (SourceIOError if f.code == FILE_UNREADABLE else FormatError)(f.message, path=f.path)
    seen: dict[int, Shard] = {}
    for s in src.shards:
        other = seen.setdefault(s.id, s)
        if other is not s:
            raise FormatError(
                f"shard id {s.id} is both {show(other.database)}/{show(other.retention_policy)}/{s.id} and "
                f"{show(s.database)}/{show(s.retention_policy)}/{s.id}: influxd cannot serve both; move one away",
                path=s.containers[0])
    findings = list(src.findings)
    rep = Reporter(progress, unit="B", label="rebuild-meta: reading shard ranges")
    rep.start(sum(s.bytes + sum(f.size for f in s.wal) for s in src.shards))
    ranges: list[ShardRange] = []
    max_shard_id = 0
    for s in src.shards:
        max_shard_id = max(max_shard_id, s.id)
        summary = shard_index_summary(src, s)
        rep.advance(s.bytes + sum(f.size for f in s.wal))
        r = ShardRange(s.database, s.retention_policy, s.id, summary.min_time, summary.max_time, summary.series)
        if r.min_time is None:
            hint = "" if waldir is not None else " (no WAL directory was read: pass --waldir if it has one)"
            findings.append(Finding(
                WARNING, f"shard {s.database}/{s.retention_policy}/{s.id} holds no data{hint}: left out of the "
                "metastore (influxd opens its directory and serves nothing from it)", path=s.containers[0],
                code=SHARD_NOT_IN_META))
            continue
        if s.wal and not any(os.path.commonpath([c, str(datadir)]) == str(datadir) for c in s.containers):
            findings.append(Finding(
                WARNING, f"shard {s.database}/{s.retention_policy}/{s.id} has WAL segments but no directory in "
                f"--datadir: influxd serves it only once {datadir / s.database / s.retention_policy / str(s.id)} "
                "exists (mkdir it, owned by influxd's user)", path=s.containers[0], code=SHARD_NOT_IN_META))
        ranges.append(r)
    rep.end()
    for (db, rp), _d in per_rp.items():
        if not any(r.database == db and r.retention_policy == rp for r in ranges):
            raise UsageError(f"--shard-duration: no shard with data in {show(db)}/{show(rp)}")
    meta, durations = _build(ranges, default_d, per_rp, max_shard_id)
    return RebuildPlan(Path(datadir), waldir, Path(metadir), meta, ranges, durations, findings, replace=replace)


def _build(ranges: list[ShardRange], default_d: int | None, per_rp: dict[tuple[str, str], int],
           max_shard_id: int) -> tuple[Data, dict[tuple[str, str], tuple[int, str]]]:
    by_rp: dict[str, dict[str, list[ShardRange]]] = {}
    for r in ranges:
        by_rp.setdefault(r.database, {}).setdefault(r.retention_policy, []).append(r)
    durations: dict[tuple[str, str], tuple[int, str]] = {}
    meta = Data(index=1)
    groups: list[tuple[int, int, str, str, ShardRange]] = []
    rp_infos: dict[tuple[str, str], RetentionPolicyInfo] = {}
    for dbname in sorted(by_rp):
        rps = by_rp[dbname]
        default_rp = DEFAULT_RP if DEFAULT_RP in rps else sorted(rps)[0]
        db = DatabaseInfo(name=dbname, default_retention_policy=default_rp)
        for rpname in sorted(rps):
            members = rps[rpname]
            if (dbname, rpname) in per_rp:
                d, how = per_rp[(dbname, rpname)], "given"
            elif default_d is not None:
                d, how = default_d, "given"
            else:
                d, how = infer_duration(members)
            durations[(dbname, rpname)] = (d, how)
            rp = RetentionPolicyInfo(name=rpname, duration=0, shard_group_duration=d, replica_n=1)
            db.retention_policies.append(rp)
            rp_infos[(dbname, rpname)] = rp
            for r in members:
                r.group_start, r.group_end = _group(r, d)
                groups.append((r.group_start, r.id, dbname, rpname, r))
        meta.databases.append(db)
    # group ids in time order (as influxd would have created them), shards in id order within a time
    for gid, (start, _sid, dbname, rpname, r) in enumerate(sorted(groups, key=lambda g: g[:2]), 1):
        r.group_id = gid
        rp_infos[(dbname, rpname)].shard_groups.append(ShardGroupInfo(
            id=gid, start_time=start, end_time=r.group_end, shards=[ShardInfo(id=r.id)]))
    for rp in rp_infos.values():  # influxd keeps groups sorted by end time, then start
        rp.shard_groups.sort(key=lambda g: (g.end_time, g.start_time, g.id))
    meta.max_shard_group_id = len(groups)
    meta.max_shard_id = max_shard_id
    # influxd draws a random cluster id once; a digest of the rest keeps the output deterministic
    meta.cluster_id = int.from_bytes(hashlib.sha256(encode_data(meta)).digest()[:8], "big") >> 1
    return meta, durations


def _check_metadir(metadir: Path, force: bool) -> bool:
    """Whether an existing meta.db will be replaced; refuses a metadir holding anything (but our
    lock file) unless ``force``."""
    if os.path.lexists(metadir) and not metadir.is_dir():
        raise UsageError("--metadir is not a directory", path=str(metadir))
    try:
        names = [n for n in os.listdir(metadir) if n != ".influx-archive.lock"] if metadir.is_dir() else []
    except OSError as exc:
        raise TargetIOError(f"cannot read the meta directory: {exc.strerror}", path=str(metadir)) from exc
    if names and not force:
        raise TargetError(
            f"the meta directory is not empty ({show(sorted(names)[0])}{' ...' if len(names) > 1 else ''}); "
            "pass --force to replace its meta.db", path=str(metadir))
    return os.path.lexists(metadir / META_FILE)


def execute_rebuild(plan: RebuildPlan, *, owner: tuple[int, int] | None = None) -> Path:
    """Write the plan's ``meta.db`` (temporary beside it, fsynced, renamed in; the directory is
    created with influxd's mode 0755 if missing) and return its path."""
    try:
        plan.metadir.mkdir(mode=META_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise TargetIOError(f"cannot create the meta directory: {exc.strerror}", path=str(plan.metadir)) from exc
    metafiles.write_meta_db(plan.meta_path, plan.meta, overwrite=plan.replace)
    if owner is not None:
        for p in (plan.metadir, plan.meta_path):
            try:
                os.lchown(p, *owner)
            except OSError as exc:
                raise TargetError(f"cannot chown to {owner_text(*owner)}: {exc.strerror}", path=str(p)) from exc
    return plan.meta_path
