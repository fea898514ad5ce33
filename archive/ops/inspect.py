"""``inspect``: a summary of any source without restoring it.

:func:`inspect_source` returns plain data (the JSON shape documented in the README); the CLI only
renders it. With ``points=True`` every shard is read the way influxd would serve it (tombstones
applied, duplicates across files resolved newest-wins, WAL replayed on top for live sources) and
its exact point count is filled in. A *point* is one (series, timestamp) pair, as in line
protocol; ``values`` counts field values.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Any

from ...meta.model import shard_group_range
from ...tsm.keys import series_of
from ...tsm.tsi1 import format as tsifmt
from ...tsm.tsi1.seriesfile import read_partition
from ..errors import ArchiveError
from ..findings import ERROR, TSI1_SERIES_FILE_DAMAGED, WARNING, Finding
from ..progress import ProgressCallback, Reporter
from ..sources.model import Shard, Source
from ..sources.shardview import open_shard_reader, shard_index_summary
from ..staging import SAFE_PART
from ..timefmt import rfc3339
from ..untrusted import kind_of


def _shard_entry(shard: Shard) -> dict:
    return {
        "id": shard.id,
        "group_start": rfc3339(shard.group_start),
        "group_end": rfc3339(shard.group_end),
        "files": len(shard.data_files()),
        "bytes": shard.bytes,
        "wal_segments": len(shard.wal),
        "wal_bytes": sum(f.size for f in shard.wal),
        "series": 0,
        "min_time": None,
        "max_time": None,
        "points": None,
        "values": None,
        "in_metastore": shard.in_meta,
        "no_data": shard.in_meta and not shard.data_files() and not shard.wal,
    }


def inspect_source(src: Source, *, points: bool = False, progress: ProgressCallback | None = None) -> dict:
    """Summarise ``src`` as the ``inspect --json`` document."""
    findings: list[Finding] = list(src.findings)
    seen = len(src.findings)  # reading shards (salvage mode) adds what it had to leave out
    shards_by_rp: dict[tuple[str, str], list[dict]] = {}
    rep = Reporter(progress, unit="B", label="inspect")
    total = sum(s.bytes + sum(f.size for f in s.wal) for s in src.shards)
    rep.start(total)
    data_root = _data_root(src)
    for shard in src.shards:
        entry = _shard_entry(shard)
        if data_root is not None:
            entry["index"] = _shard_index(data_root, shard)
        try:
            if points:
                _fill_exact(src, shard, entry)
            else:
                _fill_from_index(src, shard, entry)
        except ArchiveError as exc:
            findings.append(Finding.from_error(exc))
        rep.advance(shard.bytes + sum(f.size for f in shard.wal))
        shards_by_rp.setdefault((shard.database, shard.retention_policy), []).append(entry)
    rep.end()
    findings.extend(src.findings[seen:])
    _add_meta_only_shards(src, shards_by_rp)

    databases: list[dict[str, Any]] = []
    seen_rps: set[tuple[str, str]] = set()
    if src.meta is not None:
        for db in src.meta.databases:
            rps = []
            for rp in db.retention_policies:
                seen_rps.add((db.name, rp.name))
                rps.append(
                    {
                        "name": rp.name,
                        "duration_ns": rp.duration,
                        "shard_group_duration_ns": rp.shard_group_duration,
                        "replica_n": rp.replica_n,
                        "shards": sorted(shards_by_rp.get((db.name, rp.name), []), key=lambda e: e["id"]),
                    }
                )
            databases.append(
                {"name": db.name, "default_retention_policy": db.default_retention_policy, "retention_policies": rps}
            )
    # Shards the metastore does not know (or sources without a metastore).
    extra: dict[str, list] = {}
    for (dbname, rpname), entries in sorted(shards_by_rp.items()):
        if (dbname, rpname) in seen_rps:
            continue
        extra.setdefault(dbname, []).append(
            {
                "name": rpname,
                "duration_ns": None,
                "shard_group_duration_ns": None,
                "replica_n": None,
                "shards": sorted(entries, key=lambda e: e["id"]),
            }
        )
    for dbname, rps in extra.items():
        existing = next((d for d in databases if d["name"] == dbname), None)
        if existing is None:
            databases.append({"name": dbname, "default_retention_policy": None, "retention_policies": rps})
        else:
            existing["retention_policies"].extend(rps)

    if data_root is not None:
        for db_entry in databases:
            db_entry["series_file"] = _series_file(data_root, db_entry["name"], findings)

    users = []
    cqs = []
    if src.meta is not None:
        for u in src.meta.users:
            users.append(
                {
                    "name": u.name,
                    "admin": bool(u.admin),
                    "privileges": [
                        {"database": p.database, "privilege": _PRIVILEGES.get(p.privilege, str(p.privilege))}
                        for p in u.privileges
                    ],
                }
            )
        for db in src.meta.databases:
            for cq in db.continuous_queries:
                cqs.append({"database": db.name, "name": cq.name, "query": cq.query})

    doc: dict[str, Any] = {
        "source": {"kind": src.kind, "path": src.display_path},
        "databases": databases,
        "users": users,
        "continuous_queries": cqs,
        "findings": [f.to_dict() for f in findings],
    }
    if points:
        doc["totals"] = _totals(databases)
    if src.kind == "file":
        doc["source"]["file_kind"] = src.file_kind
    if src.kind in ("legacy", "portable"):
        doc["source"]["increments"] = src.increments
    return doc


def _data_root(src: Source) -> Path | None:
    """The data directory of a server root or bare data directory (the trees that can hold tsi1
    indexes and series files); None for backups and single files, which carry no index."""
    if src.kind == "live":
        return Path(src.path) / "data"
    if src.kind == "datadir":
        return Path(src.path)
    return None


def _shard_index(data_root: Path, shard: Shard) -> str:
    """The index influxd 1.6.7 opens the shard with: ``tsi1`` when its directory holds ``index/``,
    otherwise ``inmem`` (an existing shard without one stays on the in-memory index whatever
    ``index-version`` says; docs/formats.md#tsi1-index)."""
    d = data_root / shard.database / shard.retention_policy / str(shard.id) / tsifmt.INDEX_DIR
    return "tsi1" if os.path.isdir(d) else "inmem"


def _series_file(data_root: Path, database: str, findings: list[Finding]) -> dict | None:
    """A database's tsi1 series file (``<db>/_series``): its live series and the bytes its
    partitions' files take on disk (segments are sparse: 4 MiB and more each, mostly holes), or
    None when the database has none. A damaged partition is an error finding and leaves the count
    unknown (None); a partition missing (influxd creates it empty) or a link (build-tsi and
    restore refuse one) is a warning. ``verify`` checks the series file against the shards."""
    if not SAFE_PART.match(database):
        return None  # a metastore's name that is no directory below the data directory: never read
    path = data_root / database / tsifmt.SERIES_FILE_DIR
    if not os.path.isdir(path):
        return None
    size = 0
    series: int | None = 0
    for p in range(tsifmt.SERIES_PARTITION_N):
        part = path / tsifmt.partition_dir_name(p)
        try:
            st = os.lstat(part)
        except OSError:
            _warn_partition(findings, p, part, "missing (influxd creates it empty)")
            continue
        if stat.S_ISLNK(st.st_mode):  # read through below, as influxd would; its size not counted
            _warn_partition(findings, p, part, "a symbolic link (influxd follows it; build-tsi and restore refuse it)")
        elif not stat.S_ISDIR(st.st_mode):
            _warn_partition(findings, p, part, f"{kind_of(st.st_mode)}, not a directory")
            continue
        else:  # its own files only: never a walk down links; an entry gone meanwhile counts 0
            with contextlib.suppress(OSError), os.scandir(part) as it:
                for e in it:
                    with contextlib.suppress(OSError):
                        size += e.stat(follow_symlinks=False).st_blocks * 512
        try:
            n = len(read_partition(str(part), p).keys)
        except ArchiveError as exc:
            findings.append(Finding(ERROR, f"tsi1 series file partition {p}: {exc.message}", exc.path, exc.member,
                                    exc.offset, code=TSI1_SERIES_FILE_DAMAGED))
            series = None
            continue
        if series is not None:
            series += n
    return {"series": series, "disk_bytes": size}


def _warn_partition(findings: list[Finding], p: int, part: Path, what: str) -> None:
    findings.append(Finding(WARNING, f"tsi1 series file partition {p} is {what}", str(part),
                            code=TSI1_SERIES_FILE_DAMAGED))


def _add_meta_only_shards(src: Source, shards_by_rp: dict[tuple[str, str], list[dict]]) -> None:
    """Shards the metastore lists that the source holds no files for (influxd serves nothing
    from them): listed with ``no_data`` so an operator sees the gap."""
    if src.meta is None:
        return
    have = {s.key for s in src.shards}
    for ref in src.meta.iter_shards():
        key = (ref.db.name, ref.rp.name, ref.shard.id)
        if key in have or ref.group.deleted:
            continue
        start, end = shard_group_range(ref.group)
        entry = {
            "id": ref.shard.id, "group_start": rfc3339(start), "group_end": rfc3339(end), "files": 0, "bytes": 0,
            "wal_segments": 0, "wal_bytes": 0, "series": 0, "min_time": None, "max_time": None, "points": None,
            "values": None, "in_metastore": True, "no_data": True,
        }
        shards_by_rp.setdefault((ref.db.name, ref.rp.name), []).append(entry)


def _totals(databases: list[dict]) -> dict:
    """``--points``: points, values, series and shards per database and over all of them."""
    per_db: dict[str, dict] = {}
    for db in databases:
        t = per_db.setdefault(db["name"], {"points": 0, "values": 0, "series": 0, "shards": 0})
        for rp in db["retention_policies"]:
            for sh in rp["shards"]:
                t["points"] += sh["points"] or 0
                t["values"] += sh["values"] or 0
                t["series"] += sh["series"] or 0
                t["shards"] += 0 if sh.get("no_data") else 1
    grand = {k: sum(t[k] for t in per_db.values()) for k in ("points", "values", "series", "shards")}
    return {"databases": per_db, **grand}


_PRIVILEGES = {0: "NO PRIVILEGES", 1: "READ", 2: "WRITE", 3: "ALL PRIVILEGES"}


def _fill_from_index(src: Source, shard: Shard, entry: dict) -> None:
    summary = shard_index_summary(src, shard)
    entry["series"] = summary.series
    entry["min_time"] = rfc3339(summary.min_time)
    entry["max_time"] = rfc3339(summary.max_time)


def _fill_exact(src: Source, shard: Shard, entry: dict) -> None:
    n_points = 0
    n_values = 0
    series = 0
    lo: int | None = None
    hi: int | None = None
    with open_shard_reader(src, shard) as reader:
        cur_series: bytes | None = None
        times: set[int] = set()
        for key in reader.keys():
            _btype, ts, _values = reader.read(key)
            if not ts:
                continue
            s = series_of(key)
            if s != cur_series:
                n_points += len(times)
                times = set()
                cur_series = s
                series += 1
            times.update(ts)
            n_values += len(ts)
            lo = ts[0] if lo is None else min(lo, ts[0])
            hi = ts[-1] if hi is None else max(hi, ts[-1])
        n_points += len(times)
    entry.update(
        series=series,
        points=n_points,
        values=n_values,
        min_time=rfc3339(lo),
        max_time=rfc3339(hi),
    )


__all__ = ["ERROR", "inspect_source"]
