"""``report``: per shard files, series and time range, per database series cardinality — what
``influx_inspect report`` prints, for any source (a data directory, a server root, a backup, a
sealed archive).

Series are counted as influxd serves them: keys every value of which a tombstone deleted are left
out (influxd drops them from its index when it opens the file) and the WAL's keys are added. Two
numbers per database:

* ``series``: distinct series keys (``measurement,tag=value...``), what ``SHOW SERIES`` lists
  (influxd 1.6.7's ``SHOW SERIES EXACT CARDINALITY`` under inmem adds up the shards' counts);
* ``keys``: distinct series + field keys, what influx_inspect report calls "Series" (it counts the
  TSM index keys, one per series and field).

Without ``exact`` both are HyperLogLog++ estimates computed as influx_inspect computes them
(:mod:`.hllpp`); with ``exact`` they are exact and memory grows with the number of distinct keys
(as influx_inspect warns for its ``-exact``). ``detailed`` adds, per measurement, its series and
field counts and, per tag key, its distinct values (estimates unless ``exact``).

``pattern`` keeps only the TSM files and WAL segments whose path contains it (influx_inspect's
documented meaning; its 1.6.7 code leaves exactly those files *out*: docs/formats.md#report).
No block is decoded: every number comes from TSM indexes and the replayed WAL cache.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ...tsm.keys import parse_series_key, split_key
from ..errors import ArchiveError
from ..findings import Finding
from ..progress import ProgressCallback, Reporter
from ..sources.model import Shard, Source
from ..sources.shardview import load_shard_files, shard_served_keys
from ..timefmt import rfc3339
from .hllpp import HLLPP


class _Counter(Protocol):
    def add(self, value: bytes) -> None: ...

    def count(self) -> int: ...


class _Exact:
    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: set[bytes] = set()

    def add(self, value: bytes) -> None:
        self.seen.add(value)

    def count(self) -> int:
        return len(self.seen)


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def _filtered(shard: Shard, pattern: str | None) -> Shard:
    """``shard`` with only the TSM files (and their tombstones) and WAL segments whose path
    contains ``pattern``."""
    if not pattern:
        return shard
    tsm = [f for f in shard.files if f.kind == "tsm" and pattern in f.origin]
    stems = {f.name.rsplit(".", 1)[0] for f in tsm}
    tombs = [f for f in shard.files if f.kind == "tombstone" and f.name.rsplit(".", 1)[0] in stems]
    wal = [f for f in shard.wal if pattern in f.origin]
    return dataclasses.replace(shard, files=tsm + tombs, wal=wal, _resolved=None)


def _shard_keys(src: Source, shard: Shard):
    """(keys served, files read, min time, max time) of one shard, from its indexes and WAL."""
    files = sum(1 for f in shard.files if f.kind == "tsm")
    keys, lo, hi = shard_served_keys(src, shard, salvage=src.salvage, findings=src.findings)
    return keys, files, lo, hi
    with src.open_shard(shard) as opened:
        parts = load_shard_files(opened, shard, salvage=src.salvage, findings=src.findings)
        for reader, tset in parts.layers:
            for key, _btype, entries in reader.iter_index():
                kmin = entries[0].min_time
                kmax = max(e.max_time for e in entries)
                if tset is not None and key in tset and tset.key_deleted_fully(key, kmin, kmax):
                    continue
                keys.add(key)
                lo = kmin if lo is None else min(lo, kmin)
                hi = kmax if hi is None else max(hi, kmax)
        if parts.cache is not None:
            for key in parts.cache.keys():
                _bt, ts, _vs = parts.cache.values(key)
                if ts:
                    keys.add(key)
                    lo = ts[0] if lo is None else min(lo, ts[0])
                    hi = ts[-1] if hi is None else max(hi, ts[-1])
    return keys, files, lo, hi


def report(
    src: Source,
    *,
    pattern: str | None = None,
    exact: bool = False,
    detailed: bool = False,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """The report of ``src`` as the ``report --json`` document (see the module docstring)."""

    def counter() -> _Counter:
        return _Exact() if exact else HLLPP()

    findings: list[Finding] = list(src.findings)
    seen = len(src.findings)
    total_series, total_keys = counter(), counter()
    db_series: dict[str, _Counter] = {}
    db_keys: dict[str, _Counter] = {}
    meas_series: dict[str, _Counter] = {}
    meas_fields: dict[str, _Counter] = {}
    tag_values: dict[str, _Counter] = {}
    rows: list[dict[str, Any]] = []
    lo_all: int | None = None
    hi_all: int | None = None
    n_files = 0
    shards = sorted(src.shards, key=lambda s: (s.id, s.database, s.retention_policy))  # influx_inspect: by id
    rep = Reporter(progress, unit="B", label="report")
    rep.start(sum(s.bytes + sum(f.size for f in s.wal) for s in shards))
    for shard in shards:
        view = _filtered(shard, pattern)
        try:
            keys, files, lo, hi = _shard_keys(src, view)
        except ArchiveError as exc:
            if not src.salvage:
                raise
            findings.append(Finding.from_error(exc))
            keys, files, lo, hi = set(), 0, None, None
        rep.advance(shard.bytes + sum(f.size for f in shard.wal))
        if not files and not view.wal:
            continue
        n_files += files
        dbs = db_series.setdefault(shard.database, counter())
        dbk = db_keys.setdefault(shard.database, counter())
        before = dbs.count()
        series: set[bytes] = set()
        for key in sorted(keys):
            s, field = split_key(key)
            series.add(s)
            dbk.add(key)
            total_keys.add(key)
            if detailed:
                m, tags = parse_series_key(s)
                name = _text(m)
                meas_series.setdefault(name, counter()).add(s)
                meas_fields.setdefault(name, counter()).add(field)
                for tk, tv in tags:
                    tag_values.setdefault(_text(tk), counter()).add(tv)
        for s in series:
            dbs.add(s)
            total_series.add(s)
        if lo is not None:
            lo_all = lo if lo_all is None else min(lo_all, lo)
        if hi is not None:
            hi_all = hi if hi_all is None else max(hi_all, hi)
        rows.append({
            "database": shard.database, "retention_policy": shard.retention_policy, "shard": shard.id,
            "files": files, "wal_segments": len(view.wal), "series": len(series), "keys": len(keys),
            "new_series": dbs.count() - before, "min_time": rfc3339(lo), "max_time": rfc3339(hi),
        })
    rep.end()
    findings.extend(src.findings[seen:])
    doc: dict[str, Any] = {
        "source": {"kind": src.kind, "path": src.display_path},
        "exact": exact,
        "shards": rows,
        "files": n_files,
        "min_time": rfc3339(lo_all),
        "max_time": rfc3339(hi_all),
        "duration_ns": (hi_all - lo_all) if lo_all is not None and hi_all is not None else None,
        "databases": [
            {"name": db, "series": db_series[db].count(), "keys": db_keys[db].count()} for db in sorted(db_series)
        ],
        "total_series": total_series.count(),
        "total_keys": total_keys.count(),
        "findings": [f.to_dict() for f in findings],
    }
    if detailed:
        doc["measurements"] = [
            {"name": m, "series": meas_series[m].count(), "fields": meas_fields[m].count()} for m in sorted(meas_series)
        ]
        doc["tags"] = [{"key": k, "values": tag_values[k].count()} for k in sorted(tag_values)]
    return doc


__all__ = ["report"]
