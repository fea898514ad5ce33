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
splits) are skipped and counted in :attr:`ExportResult.skipped`. A series is written one window
at a time (:func:`_write_series`), so memory is bounded by one decoded block per field of a
series, never by the length of a series; the lines are formatted by the compiled core where it is
built (:func:`~influx_archive.archive.ops.lineproto.window_lines`, Python as the reference).
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ...meta.model import shard_group_range
from ...tsm.block import DEFAULT_MAX_VALUES
from ...tsm.compiled import core
from ...tsm.format.tsmfile import BLOCK_OFFSET
from ...tsm.keys import key_slice, measurement_of, split_key
from ...tsm.shard import RawFrame, ShardReader
from ..errors import ArchiveError, UsageError
from ..output import OutputFile, open_output, os_error, plan_file_output, source_roots
from ..progress import ProgressCallback, Reporter
from ..sources import Shard, Source
from ..sources.shardview import open_shard_reader
from ..threads import forked_pool, process_pool_available
from ..timefmt import rfc3339
from .lineproto import Skips, escape_field_key_bytes, influxql_duration, quote_ident, window_lines
from .select import window_overlaps

_MIN = -(1 << 63)
_MAX = (1 << 63) - 1
#: Below this many bytes of shards (and unless ``workers`` is given) the export runs in this
#: process: a pool of forked workers costs ~25 ms to start, what one core exports from about half
#: a megabyte of shards (the 100 KB fixture: 5 ms in-process, 30 ms on two workers).
SERIAL_BELOW = 512 << 10


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

    Shards (each cut into ``workers`` slices at series boundaries) are exported by ``workers``
    processes (default: one per core; one, this one, below :data:`SERIAL_BELOW` bytes of shards)
    into temporary files appended in order; the output is the same as a sequential export (about
    1.8x faster on two idle cores even with the compiled core, since reading, checking and decoding
    blocks stays partly Python)."""
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
    sink = _Sink(out)
    res = ExportResult()
    rep = Reporter(progress, label="export")
    total = sum(s.bytes + sum(w.size for w in s.wal) for _, _, shards in groups for s in shards)
    rep.start(total)
    try:
        if not lp_only:
            sink.text(f"# INFLUXDB EXPORT: {rfc3339(lo)} - {rfc3339(hi)}\n# DDL\n")
            for line in ddl_lines(src, database, retention):
                sink.text(line + "\n")
            sink.text("# DML\n")
        jobs = [shard for _, _, shards in groups for shard in shards]
        n_workers = min(workers or (os.cpu_count() or 1 if total >= SERIAL_BELOW else 1), len(jobs))
        parts = (
            _Peekable(_parallel_parts(src, jobs, lo, hi, want, n_workers, tmpdir))
            if n_workers > 1 and not src.sequential and process_pool_available()
            else None
        )
        this = -1  # index of the shard in ``jobs`` (the order parts arrive in)
        try:
            for db, rp, shards in groups:
                if not shards:
                    continue
                if not lp_only:
                    sink.text(f"# CONTEXT-DATABASE:{db}\n# CONTEXT-RETENTION-POLICY:{rp}\n")
                for shard in shards:
                    this += 1
                    if parts is None:
                        with open_shard_reader(src, shard, tmpdir=tmpdir) as reader:
                            _export_shard(reader, sink, lo, hi, want, res)
                    else:
                        sink.flush()
                        while parts.peek() is not None and parts.peek()[0] == this:
                            _, part_res, findings, path = next(parts)
                            _append_part(path, out)
                            os.unlink(path)
                            res.merge(part_res)
                            src.findings.extend(findings)
                    res.shards += 1
                    rep.advance(shard.bytes + sum(w.size for w in shard.wal))
        finally:
            if parts is not None:
                parts.close()
        sink.flush()
    finally:
        rep.end()
    return res


def _append_part(path: str, out: BinaryIO) -> None:
    """Append a worker's part file to ``out``: in the kernel (``sendfile``) when ``out`` is the
    output primitive's file on a regular file (a third of the parent's CPU otherwise goes to
    copying through user space), else through Python."""
    with open(path, "rb") as part:
        if type(out) is OutputFile:
            out.flush()
            fd = out.fileno()
            if stat.S_ISREG(os.fstat(fd).st_mode):
                size = os.fstat(part.fileno()).st_size
                offset = 0
                try:
                    while offset < size:
                        sent = os.sendfile(fd, part.fileno(), offset, size - offset)
                        if sent == 0:
                            break  # the part shrank under us: the rest goes through Python
                        offset += sent
                        out.raw.written += sent  # type: ignore[attr-defined]
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise
                    # a file system without sendfile: the rest goes through Python
                part.seek(offset)
        shutil.copyfileobj(part, out, 1 << 20)


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
        sink = _Sink(raw)
        with open_shard_reader(src, shard, tmpdir=tmpdir) as reader:
            _export_shard(reader, sink, lo, hi, want, res, part)
        sink.flush()
    return res, src.findings[seen:], path


def _parallel_parts(
    src: Source, shards: list[Shard], lo: int, hi: int, want: bytes | None, workers: int, tmpdir: str | None
):
    """Yield (shard index, result, findings, part file) in output order from a pool of forked
    workers running a few slices ahead of the consumer. Every shard is cut into ``workers``
    slices so the last shards do not leave cores idle."""

    from ..spools import spool

    global _WORKER_SOURCE
    _WORKER_SOURCE = src
    tasks: list[tuple[int, Shard, tuple[int, int]]] = []
    for i, shard in enumerate(shards):
        # a .tar.gz shard is inflated by each of its slices: ISA-L inflates at ~25x the rate a
        # core formats lines, so the extra inflating costs less than idle cores would
        tasks.extend((i, shard, (k, workers)) for k in range(workers))
    try:
        with spool("export", tmpdir) as work, forked_pool(workers) as pool:
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


class _Sink:
    """Batches the many small texts of an export into writes of about a megabyte."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if len(data) >= _DIRECT:  # a window's lines: written as they are, not copied again
            self.flush()
            self._out.write(data)
        elif data:
            self._parts.append(data)
            self._size += len(data)
            if self._size >= _BATCH:
                self.flush()

    def text(self, line: str) -> None:
        self.write(line.encode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        if self._parts:
            self._out.write(b"".join(self._parts))
            self._parts = []
            self._size = 0


_BATCH = 1 << 20
_DIRECT = 1 << 15


def _ascending(ts: list[int], vs: list) -> tuple[list[int], list]:
    """A field's chunk in time order (stored blocks always are; a damaged one is sorted, stably,
    so that the window merge below always makes progress)."""
    ts = ts if type(ts) is list else list(ts)
    vs = vs if type(vs) is list else list(vs)
    bad = core.int64_order(ts, False) if core is not None else None
    if bad == -1 or (bad is None and all(a <= b for a, b in itertools.pairwise(ts))):
        return ts, vs
    order = sorted(range(len(ts)), key=ts.__getitem__)
    return [ts[k] for k in order], [vs[k] for k in order]


_Chunk = tuple[Any, Any, int, int]  # (timestamps, values, count, last timestamp)


def _chunks(reader: ShardReader, key: bytes, lo: int, hi: int) -> tuple[int, Iterator[_Chunk]]:
    """The key's block type and its values in ``[lo, hi]`` as ascending chunks (a block or a
    merged window each), decoded one at a time. A stored block the compiled core decodes whole
    stays packed (int64 timestamps and 8-byte values in two ``bytes``, see lineproto.py); anything
    else is decoded by the Python code, which also names any damage."""
    block_type, parts = reader.iter_key(key, lo, hi)

    def gen() -> Iterator[_Chunk]:
        for part in parts:
            if isinstance(part, RawFrame):
                if core is not None and part.block_type == block_type:
                    got = core.lp_decode(memoryview(part.frame)[BLOCK_OFFSET:], DEFAULT_MAX_VALUES)
                    if got is not None and got[0] == block_type:
                        n = len(got[1]) // 8
                        yield got[1], got[2], n, int.from_bytes(got[1][-8:], sys.byteorder, signed=True)
                        continue
                ts, vs = reader.decode_frame(key, part)
            else:
                ts, vs = part.timestamps, part.values
            if ts:
                ts, vs = _ascending(ts, vs)
                yield ts, vs, len(ts), ts[-1]

    return block_type, gen()


def _write_series(
    reader: ShardReader, series: bytes, keys: list[tuple[bytes, bytes]], lo: int, hi: int, sink: _Sink,
    res: ExportResult, skips: Skips,
) -> None:
    """One series' merged lines, one window at a time: each round writes every line up to the
    smallest last timestamp of the fields' current chunks (so that field's chunk is used up and
    the next one decoded), which keeps memory to one chunk per field however long the series."""
    prefix = series + b" "
    fields: list[list] = []
    sources: list[Iterator[_Chunk]] = []
    sizes: list[int] = []
    lasts: list[int] = []
    for name, key in keys:
        block_type, chunks = _chunks(reader, key, lo, hi)
        fields.append([escape_field_key_bytes(name) + b"=", block_type, [], [], 0])
        sources.append(chunks)
        sizes.append(0)
        lasts.append(0)
    live = list(range(len(fields)))
    while True:
        still = []
        for i in live:
            f = fields[i]
            if f[4] >= sizes[i] or f[4] >= _count(f):  # used up (the Python merge may have unpacked it)
                chunk = next(sources[i], None)
                if chunk is None:
                    f[2], f[3] = [], []
                    continue
                f[2], f[3], sizes[i], lasts[i] = chunk
                f[4] = 0
            still.append(i)
        live = still
        if not live:
            return
        window = [fields[i] for i in live]
        bound = min(lasts[i] for i in live)
        text, lines, values = window_lines(prefix, window, bound, skips)
        sink.write(text)
        res.lines += lines
        res.values += values


def _count(f: list) -> int:
    return len(f[2]) // 8 if type(f[2]) is bytes else len(f[2])


def _export_shard(
    reader: ShardReader, sink: _Sink, lo: int, hi: int, want: bytes | None, res: ExportResult,
    part: tuple[int, int] = (0, 1),
) -> None:
    """Write the shard's lines; ``part = (i, n)``: only the i-th of n slices of its keys, cut at
    series boundaries (so n workers can share one shard and the slices concatenate in order)."""
    skips = Skips()
    series: bytes | None = None
    fields: list[tuple[bytes, bytes]] = []
    keys = reader.keys() if part == (0, 1) else key_slice(list(reader.keys()), *part)
    for key in keys:
        if want is not None and measurement_of(key) != want:
            continue
        s, f = split_key(key)
        if s != series:
            if series is not None and fields:
                _write_series(reader, series, fields, lo, hi, sink, res, skips)
            series, fields = s, []
        fields.append((f, key))
    if series is not None and fields:
        _write_series(reader, series, fields, lo, hi, sink, res, skips)
    res.skipped_values += skips.values
    res.skipped.extend(n for n in skips.notes if n not in res.skipped)


def export_to_path(src: Source, path: str, *, compress: bool = False, force: bool = False,
                   exporter: Callable[..., ExportResult] | None = None, **kw) -> ExportResult:
    """Export into ``path`` through :mod:`~influx_archive.archive.output`: ``-``, a character
    device or a FIFO is written as a stream; a file is built under a temporary name beside it and
    linked into place when complete; an existing file is refused unless ``force``; a path equal to
    or inside the source is refused before anything is written. ``exporter`` writes the lines
    (default :func:`export`; a bare data directory's is in :mod:`.exportdatadir`)."""
    exporter = exporter or export
    roots = source_roots(src)
    out = plan_file_output(path, sources=roots, force=force, binary=compress)
    try:
        with open_output(out) as raw:
            if compress:
                from .tarwrite import gzip_writer

                name = "export" if out.stream else os.path.basename(out.path).removesuffix(".gz")
                with gzip_writer(raw, level=1, filename=name) as gz:
                    res = exporter(src, gz, **kw)
            else:
                res = exporter(src, raw, **kw)
    except BrokenPipeError:
        raise
    except OSError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise os_error(exc, target=out.display, sources=roots) from exc
    return res
