"""``export --datadir D [--waldir W]``: export a bare data directory (no metastore) in
``influx_inspect export``'s layout.

Without a metastore the retention policies' settings are unknown, so the DDL is influx_inspect's
``CREATE DATABASE <db> WITH NAME <rp>`` (infinite duration, the server's default shard
duration). influx_inspect 1.6.7 writes that line for every RP of a database, and influxd refuses
the second one ("retention policy conflicts with an existing policy"), so an import loses every
RP but the first; here the first RP of a database (``autogen`` when present) gets that line and
each further one ``CREATE RETENTION POLICY <rp> ON <db> DURATION INF REPLICATION 1``
(docs/formats.md#bare-data-directories). Only RPs that hold data files are named, as
influx_inspect does. The points are :func:`~influx_archive.archive.ops.export.export`'s: what
influxd would serve (tombstones applied, newest value wins, WAL replayed on top).
"""

from __future__ import annotations

import datetime
from typing import BinaryIO

from ..errors import UsageError
from ..progress import ProgressCallback
from ..sources.model import Source
from .export import ExportResult, export, export_to_path

_MIN = -(1 << 63)
_MAX = (1 << 63) - 1

#: InfluxQL's keywords (influxql/token.go): an identifier spelled like one must be quoted
_KEYWORDS = frozenset({
    "all", "alter", "analyze", "and", "any", "as", "asc", "begin", "by", "cardinality", "continuous", "create",
    "database", "databases", "default", "delete", "desc", "destinations", "diagnostics", "distinct", "drop",
    "duration", "end", "every", "exact", "explain", "false", "field", "for", "from", "grant", "grants", "group",
    "groups", "in", "inf", "insert", "into", "key", "keys", "kill", "limit", "measurement", "measurements",
    "name", "offset", "on", "or", "order", "password", "policies", "policy", "privileges", "queries", "query",
    "read", "replication", "resample", "retention", "revoke", "select", "series", "set", "shard", "shards",
    "show", "slimit", "soffset", "stats", "subscription", "subscriptions", "tag", "to", "true", "user", "users",
    "values", "where", "with", "write"
})


def quote_ident(name: str) -> str:
    """An InfluxQL identifier as influxql.QuoteIdent writes it: bare when it is a plain
    identifier (ASCII letter or ``_``, then letters, digits, ``_``; not a keyword), else in
    double quotes with ``\\``, ``"`` and newlines escaped (what influx_inspect's DDL lines use)."""
    plain = (
        bool(name) and name.lower() not in _KEYWORDS and name.isascii()
        and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c == "_" for c in name)
    )
    if plain:
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def go_rfc3339_seconds(ns: int) -> str:
    """``time.Unix(0, ns).UTC().Format(time.RFC3339)``: whole seconds (floored), ``Z``."""
    secs = ns // 1_000_000_000
    t = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=secs)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _groups(src: Source, database: str | None, retention: str | None) -> list[tuple[str, list[str]]]:
    """(database, [RP, ...]) with data files, in name order; a database's ``autogen`` first."""
    with_data: dict[str, set[str]] = {}
    for s in src.shards:
        wanted = (database is None or s.database == database) and (retention is None or s.retention_policy == retention)
        if wanted and (any(f.kind == "tsm" for f in s.files) or s.wal):
            with_data.setdefault(s.database, set()).add(s.retention_policy)
    out = []
    for db in sorted(with_data):
        rps = sorted(with_data[db], key=lambda rp: (rp != "autogen", rp))
        out.append((db, rps))
    return out


def ddl_lines(groups: list[tuple[str, list[str]]]) -> list[str]:
    lines = []
    for db, rps in groups:
        lines.append(f"CREATE DATABASE {quote_ident(db)} WITH NAME {quote_ident(rps[0])}")
        for rp in rps[1:]:
            lines.append(f"CREATE RETENTION POLICY {quote_ident(rp)} ON {quote_ident(db)} DURATION INF REPLICATION 1")
    return lines


def export_datadir(
    src: Source,
    out: BinaryIO,
    *,
    database: str | None = None,
    retention: str | None = None,
    measurement: str | None = None,
    start: int | None = None,
    end: int | None = None,
    lp_only: bool = False,
    progress: ProgressCallback | None = None,
    tmpdir: str | None = None,
) -> ExportResult:
    """Write the export of a bare data directory source (:func:`~..sources.open_datadir`) to ``out``."""
    if retention is not None and database is None:
        raise UsageError("--retention needs --database")
    if database is not None and not any(s.database == database for s in src.shards):
        raise UsageError(f"database {database!r} is not in the data directory", path=src.path)
    groups = _groups(src, database, retention)
    res = ExportResult()
    if not lp_only:
        lo = _MIN if start is None else start
        hi = _MAX if end is None else end
        first = f"# INFLUXDB EXPORT: {go_rfc3339_seconds(lo)} - {go_rfc3339_seconds(hi)}"
        head = [first, "# DDL", *ddl_lines(groups), "# DML"]
        out.write(("\n".join(head) + "\n").encode("utf-8", "surrogateescape"))
    for db, rps in groups:
        for rp in rps:
            if not lp_only:
                context = f"# CONTEXT-DATABASE:{db}\n# CONTEXT-RETENTION-POLICY:{rp}\n"
                out.write(context.encode("utf-8", "surrogateescape"))
            part = export(src, out, database=db, retention=rp, measurement=measurement, start=start, end=end,
                          lp_only=True, progress=progress, tmpdir=tmpdir)
            res.merge(part)
            res.shards += part.shards
    return res


def export_datadir_to_path(src: Source, path: str, *, compress: bool = False, force: bool = False,
                           **kw) -> ExportResult:
    """:func:`export_datadir` into ``path`` through :mod:`~influx_archive.archive.output` (a stream,
    or a file built under a temporary name and linked into place when complete)."""
    return export_to_path(src, path, compress=compress, force=force, exporter=export_datadir, **kw)


__all__ = ["ddl_lines", "export_datadir", "export_datadir_to_path"]
