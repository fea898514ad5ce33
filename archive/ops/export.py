"""Export any source as line protocol in ``influx_inspect export``'s format.

::

    # INFLUXDB EXPORT: <start> - <end>
    # DDL
    CREATE DATABASE "db1" WITH DURATION INF REPLICATION 1 SHARD DURATION 1w NAME "autogen"
    CREATE RETENTION POLICY "hourly" ON "db1" DURATION INF REPLICATION 1 SHARD DURATION 1h
    # DML
    # CONTEXT-DATABASE:db1
    # CONTEXT-RETENTION-POLICY:autogen
    cpu,host=h0 b=false,i=-763i,s="idle",v=73.63359934913034 1793491200000000000

``influx -import -path F -precision ns`` executes the DDL lines as queries (so databases and RPs
come back with their settings, the default RP included) and writes the rest in batches. Every
line ends with a newline (the importer drops a last line without one).

The data is what the source server served (:func:`~influx_archive.archive.sources.shardview.open_shard_reader`:
tombstones applied, newest file wins, WAL included), filtered by database, RP, measurement and
``start <= t <= end`` (inclusive). One line per (series, timestamp) with all its fields; values
that line protocol cannot carry (NaN, ±Inf floats; strings with a newline, which the importer
splits) are skipped and counted in :attr:`ExportResult.skipped`. Memory is bounded by one
series of one shard.
"""

from __future__ import annotations

import io
import math
import os
import shutil
from dataclasses import dataclass, field
from typing import BinaryIO

from ...meta.model import shard_group_range
from ...tsm.block import BOOLEAN, FLOAT, INTEGER, STRING, UNSIGNED
from ...tsm.keys import key_slice, measurement_of, split_key
from ...tsm.shard import RawFrame, ShardReader
from ..errors import ArchiveError, UsageError
from ..output import open_output, os_error, plan_file_output, source_roots
from ..progress import ProgressCallback, Reporter
from ..sources import Shard, Source
from ..sources.shardview import open_shard_reader
from ..spools import spool
from ..timefmt import rfc3339
from .lineproto import FORMATTERS, escape_field_key, influxql_duration, quote_ident
from .select import window_overlaps

_MIN = -(1 << 63)
_MAX = (1 << 63) - 1


@dataclass
class ExportResult:
    lines: int = 0
    values: int = 0
    shards: int = 0
    skipped: list[str] = field(default_factory=list)  # what could not be written, one entry per value kind+key
    skipped_values: int = 0

    def merge(self, other: ExportResult) -> None:
        self.lines += other.lines
        self.values += other.values
        self.skipped_values += other.skipped_values
        self.skipped.extend(n for n in other.skipped if n not in self.skipped)

    def to_dict(self) -> dict:
        return {"lines": self.lines, "values": self.values, "shards": self.shards,
                "skipped_values": self.skipped_values, "skipped": self.skipped}


def _selected_shards(
    src: Source, database: str | None, retention: str | None, start: int, end: int
) -> list[tuple[str, str, list[Shard]]]:
    """(db, rp, shards) in metastore order, shards in time order, only those overlapping the range."""
    assert src.meta is not None
    by_key = {s.key: s for s in src.shards}
    out = []
    for db in src.meta.databases:
        if database is not None and db.name != database:
            continue
        for rp in db.retention_policies:
            if retention is not None and rp.name != retention:
                continue
            shards = []
            for g in sorted(rp.shard_groups, key=lambda g: (shard_group_range(g)[0], g.id)):
                if g.deleted or not window_overlaps(shard_group_range(g), start, end):
                    continue
                for si in g.shards:
                    s = by_key.get((db.name, rp.name, si.id))
                    if s is not None and (s.tsm_layers() or s.wal):
                        shards.append(s)
            out.append((db.name, rp.name, shards))
    return out


def ddl_lines(src: Source, database: str | None, retention: str | None) -> list[str]:
    assert src.meta is not None
    lines = []
    for db in src.meta.databases:
        if database is not None and db.name != database:
            continue
        rps = [rp for rp in db.retention_policies if retention is None or rp.name == retention]
        default = next((rp for rp in rps if rp.name == db.default_retention_policy), rps[0] if rps else None)
        if default is None:
            lines.append(f"CREATE DATABASE {quote_ident(db.name)}")
            continue
        lines.append(
            f"CREATE DATABASE {quote_ident(db.name)} WITH DURATION {influxql_duration(default.duration)} "
            f"REPLICATION {default.replica_n or 1} SHARD DURATION {influxql_duration(default.shard_group_duration)} "
            f"NAME {quote_ident(default.name)}"
        )
        for rp in rps:
            if rp is default:
                continue
            lines.append(
                f"CREATE RETENTION POLICY {quote_ident(rp.name)} ON {quote_ident(db.name)} "
                f"DURATION {influxql_duration(rp.duration)} REPLICATION {rp.replica_n or 1} "
                f"SHARD DURATION {influxql_duration(rp.shard_group_duration)}"
            )
    return lines


def export(
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
    workers: int | None = None,
) -> ExportResult:
    """Write the export of ``src`` to the binary stream ``out``.

    Formatting line protocol is Python-bound, so shards are exported by ``workers`` processes
    (default: one per core) into temporary files that are appended in order; the output is the
    same as a sequential export."""
    if src.meta is None:
        raise UsageError("the source has no metastore: export needs a backup or a server root", path=src.path)
    if retention is not None and database is None:
        raise UsageError("--retention needs --database")
    if database is not None and src.meta.database(database) is None:
        raise UsageError(f"database {database!r} is not in the source", path=src.path)
    lo = _MIN if start is None else start
    hi = _MAX if end is None else end
    groups = _selected_shards(src, database, retention, lo, hi)
    want = measurement.encode("utf-8") if measurement is not None else None
    text = io.TextIOWrapper(out, encoding="utf-8", errors="surrogateescape", newline="\n", write_through=False)
    res = ExportResult()
    rep = Reporter(progress, label="export")
    rep.start(sum(s.bytes + sum(w.size for w in s.wal) for _, _, shards in groups for s in shards))
    try:
        if not lp_only:
            text.write(f"# INFLUXDB EXPORT: {rfc3339(lo)} - {rfc3339(hi)}\n# DDL\n")
            for line in ddl_lines(src, database, retention):
                text.write(line + "\n")
            text.write("# DML\n")
        jobs = [shard for _, _, shards in groups for shard in shards]
        n_workers = min(workers or os.cpu_count() or 1, len(jobs))
        parts = (
            _Peekable(_parallel_parts(src, jobs, lo, hi, want, n_workers, tmpdir))
            if n_workers > 1 and not src.sequential
            else None
        )
        this = -1  # index of the shard in ``jobs`` (the order parts arrive in)
        try:
            for db, rp, shards in groups:
                if not shards:
                    continue
                if not lp_only:
                    text.write(f"# CONTEXT-DATABASE:{db}\n# CONTEXT-RETENTION-POLICY:{rp}\n")
                for shard in shards:
                    this += 1
                    if parts is None:
                        with open_shard_reader(src, shard, tmpdir=tmpdir) as reader:
                            _export_shard(reader, text, lo, hi, want, res)
                    else:
                        text.flush()
                        while parts.peek() is not None and parts.peek()[0] == this:
                            _, part_res, findings, path = next(parts)
                            with open(path, "rb") as part:
                                shutil.copyfileobj(part, out, 1 << 20)
                            os.unlink(path)
                            res.merge(part_res)
                            src.findings.extend(findings)
                    res.shards += 1
                    rep.advance(shard.bytes + sum(w.size for w in shard.wal))
        finally:
            if parts is not None:
                parts.close()
        text.flush()
    finally:
        text.detach()
        rep.end()
    return res


class _Peekable:
    def __init__(self, it) -> None:
        self._it = it
        self._head = None
        self._has = False

    def peek(self):
        if not self._has:
            self._head = next(self._it, None)
            self._has = True
        return self._head

    def __next__(self):
        head = self.peek()
        self._has = False
        if head is None:
            raise StopIteration
        return head

    def close(self) -> None:
        self._it.close()


# The source of the running export, inherited by forked worker processes (never pickled).
_WORKER_SOURCE: Source | None = None


def _export_part(
    shard: Shard, part: tuple[int, int], lo: int, hi: int, want: bytes | None, path: str, tmpdir: str | None
):
    """Worker: export one slice of one shard into ``path``; returns (result, new findings, path)."""
    src = _WORKER_SOURCE
    assert src is not None
    seen = len(src.findings)
    res = ExportResult()
    with open(path, "wb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="\n")
        with open_shard_reader(src, shard, tmpdir=tmpdir) as reader:
            _export_shard(reader, text, lo, hi, want, res, part)
        text.flush()
        text.detach()
    return res, src.findings[seen:], path


def _parallel_parts(
    src: Source, shards: list[Shard], lo: int, hi: int, want: bytes | None, workers: int, tmpdir: str | None
):
    """Yield (shard index, result, findings, part file) in output order from a pool of forked
    workers running a few slices ahead of the consumer. Every shard is cut into ``workers``
    slices so the last shards do not leave cores idle."""
    import concurrent.futures
    import multiprocessing

    global _WORKER_SOURCE
    _WORKER_SOURCE = src
    tasks: list[tuple[int, Shard, tuple[int, int]]] = []
    for i, shard in enumerate(shards):
        # a .tar.gz shard is inflated by each of its slices: ISA-L inflates at ~25x the rate a
        # core formats lines, so the extra inflating costs less than idle cores would
        tasks.extend((i, shard, (k, workers)) for k in range(workers))
    try:
        with spool("export", tmpdir) as work:
            ctx = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                pending: list = []
                it = iter(enumerate(tasks))

                def submit() -> None:
                    nxt = next(it, None)
                    if nxt is not None:
                        t, (i, shard, part) = nxt
                        path = os.path.join(work, f"{t}.lp")
                        pending.append((i, pool.submit(_export_part, shard, part, lo, hi, want, path, tmpdir)))

                for _ in range(workers + 1):
                    submit()
                while pending:
                    i, fut = pending.pop(0)
                    submit()
                    yield (i, *fut.result())
    finally:
        _WORKER_SOURCE = None


def _field_values(reader: ShardReader, key: bytes, lo: int, hi: int) -> tuple[int, list[int], list]:
    block_type, parts = reader.iter_key(key, lo, hi)
    ts: list[int] = []
    vs: list = []
    for part in parts:
        if isinstance(part, RawFrame):
            t, v = reader.decode_frame(key, part)
            ts.extend(t)
            vs.extend(v)
        else:
            ts.extend(part.timestamps)
            vs.extend(part.values)
    return block_type, ts, vs


def _export_shard(
    reader: ShardReader, text: io.TextIOWrapper, lo: int, hi: int, want: bytes | None, res: ExportResult,
    part: tuple[int, int] = (0, 1),
) -> None:
    """Write the shard's lines; ``part = (i, n)``: only the i-th of n slices of its keys, cut at
    series boundaries (so n workers can share one shard and the slices concatenate in order)."""
    series: bytes | None = None
    fields: list[tuple[str, int, list[int], list]] = []

    def flush() -> None:
        if series is None or not fields:
            return
        _write_series(text, series.decode("utf-8", "surrogateescape"), fields, res)

    keys = reader.keys() if part == (0, 1) else key_slice(list(reader.keys()), *part)
    for key in keys:
        s, f = split_key(key)
        if want is not None and measurement_of(key) != want:
            continue
        if s != series:
            flush()
            series, fields = s, []
        block_type, ts, vs = _field_values(reader, key, lo, hi)
        if ts:
            fields.append((escape_field_key(f.decode("utf-8", "surrogateescape")), block_type, ts, vs))
    flush()


def _column(res: ExportResult, series: str, name: str, btype: int, vs: list) -> list[str | None]:
    """``name=value`` texts of one field's values, whole column at once (the hot path); None where
    a value cannot be written as line protocol (counted in ``res``)."""
    p = name + "="
    if btype == FLOAT:
        if all(map(math.isfinite, vs)):
            return [p + r for r in map(repr, vs)]
    elif btype == INTEGER:
        return [f"{p}{v}i" for v in vs]
    elif btype == UNSIGNED:
        return [f"{p}{v}u" for v in vs]
    elif btype == BOOLEAN:
        yes, no = p + "true", p + "false"
        return [yes if v else no for v in vs]
    return [_checked(res, series, name, btype, FORMATTERS[btype], v) for v in vs]


def _write_series(
    text: io.TextIOWrapper, series: str, fields: list[tuple[str, int, list[int], list]], res: ExportResult
) -> None:
    prefix = series + " "
    if len(fields) == 1 or all(f[2] == fields[0][2] for f in fields[1:]):
        # every field has the same timestamps (the common case): zip the columns
        ts = fields[0][2]
        cols = [_column(res, series, name, btype, vs) for name, btype, _, vs in fields]
        if any(None in c for c in cols):
            rows = [[c for c in row if c is not None] for row in zip(*cols)]
            out = [f"{prefix}{','.join(r)} {t}\n" for r, t in zip(rows, ts) if r]
            res.values += sum(len(r) for r in rows)
        elif len(cols) == 1:
            out = [f"{prefix}{a} {t}\n" for a, t in zip(cols[0], ts)]
            res.values += len(ts)
        elif len(cols) == 2:
            out = [f"{prefix}{a},{b} {t}\n" for a, b, t in zip(cols[0], cols[1], ts)]
            res.values += 2 * len(ts)
        else:
            out = [f"{prefix}{','.join(r)} {t}\n" for r, t in zip(zip(*cols), ts)]
            res.values += len(cols) * len(ts)
    else:
        merged: dict[int, list[str]] = {}
        for name, btype, ts, vs in fields:
            for t, value in zip(ts, _column(res, series, name, btype, vs)):
                if value is not None:
                    merged.setdefault(t, []).append(value)
        out = [f"{prefix}{','.join(merged[t])} {t}\n" for t in sorted(merged)]
        res.values += sum(len(v) for v in merged.values())
    res.lines += len(out)
    text.write("".join(out))


def _checked(res: ExportResult, series: str, name: str, btype: int, fmt, v) -> str | None:
    value = fmt(v)
    if value is None or (btype == STRING and "\n" in value):
        res.skipped_values += 1
        what = "NaN/Inf float" if value is None else "string with a newline"
        note = f"{series} field {name}: {what} values cannot be imported as line protocol; skipped"
        if note not in res.skipped:
            res.skipped.append(note)
        return None
    return f"{name}={value}"


def export_to_path(src: Source, path: str, *, compress: bool = False, force: bool = False, **kw) -> ExportResult:
    """Export into ``path`` through :mod:`~influx_archive.archive.output`: ``-``, a character
    device or a FIFO is written as a stream; a file is built under a temporary name beside it and
    linked into place when complete; an existing file is refused unless ``force``; a path equal to
    or inside the source is refused before anything is written."""
    roots = source_roots(src)
    out = plan_file_output(path, sources=roots, force=force, binary=compress)
    try:
        with open_output(out) as raw:
            if compress:
                from .tarwrite import gzip_writer

                name = "export" if out.stream else os.path.basename(out.path).removesuffix(".gz")
                with gzip_writer(raw, level=1, filename=name) as gz:
                    res = export(src, gz, **kw)
            else:
                res = export(src, raw, **kw)
    except BrokenPipeError:
        raise
    except OSError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise os_error(exc, target=out.display, sources=roots) from exc
    return res
