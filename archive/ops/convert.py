"""Convert any source into a legacy or portable backup, offline; trim it to a time range; back up a
stopped server root.

Outputs are what influxd 1.6.7 writes (docs/formats.md#legacy-backups, #portable-backups): legacy ``meta.00`` plus one
``<db>.<rp>.<id5>.00`` tar per shard; portable ``<ts>.meta``, ``<ts>.s<id>.tar.gz`` (0600) and
``<ts>.manifest`` (0600, ``meta.size`` = blob length, entry ``size`` = uncompressed tar bytes,
``limited`` false and no ``database``/``policy``/``shard_id`` — influxd never sets them). The
backup directory is created 0700.

What the data files hold is what the source server served, so that influxd's own restores serve
it too:

* tombstones are applied into the TSM data (influxd's online restore discards ``.tombstone``
  files, docs/formats.md#shard-upload) and no tombstone file is written;
* several increments (legacy ``.NN``, several manifests) are merged into one full backup: their
  union, newest file winning per point, with what later compactions deleted left out (the
  resolved state of :meth:`Shard.layers`);
* a live server root's WAL is replayed exactly as influxd replays it and written into the TSM data;
* ``start``/``end`` keep exactly the points with ``start <= t <= end`` (both inclusive); blocks fully
  inside are copied raw, boundary blocks decoded and re-encoded; shards with nothing left are dropped
  from the data files and the manifest (influxd keeps whole blocks and can write truncated tars).

A shard whose data is one TSM file with no tombstone and no WAL, entirely inside the range, is
copied byte for byte (its header, index and footer checked first); everything else goes through
:func:`~influx_archive.archive.ops.writeshard.write_shard`, which still copies untouched blocks raw.
Shards are processed in parallel (gzip and file I/O release the GIL). The output is built in a
hidden sibling directory and renamed to ``dest`` only when complete.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as _dt
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ...meta import files as metafiles
from ...meta.model import Data, encode_data
from ...tsm import naming
from ...tsm.keys import key_slice
from ...tsm.reader import TSMReader
from .. import guard
from ..errors import ArchiveError, SourceError, UsageError, show
from ..findings import BLOCK_LEFT_OUT, ERROR, FILE_LEFT_OUT, Finding
from ..output import building_dir, os_error, plan_dir_output, source_roots
from ..progress import ProgressCallback, Reporter
from ..sources import Shard, Source, open_source
from ..sources.shardview import open_shard_reader
from .select import Selection, select_meta, window_inside, window_overlaps
from .tarwrite import TarWriter, gzip_writer
from .tsmcopy import checked_chunks, damaged_blocks, write_intact_blocks
from .writeshard import write_shard

FORMATS = ("legacy", "portable")


@dataclass
class ShardJob:
    shard: Shard
    database: str  # target names
    retention_policy: str
    copy_raw: bool  # one TSM, no tombstone, no WAL, inside the range: byte copy

    @property
    def bytes(self) -> int:
        return sum(f.size for f, _ in self.shard.tsm_layers()) + sum(
            t.size for _, t in self.shard.tsm_layers() if t is not None
        ) + sum(f.size for f in self.shard.wal)


@dataclass
class ConvertPlan:
    source: Source
    dest: Path
    to: str
    meta: Data
    jobs: list[ShardJob]
    start: int | None = None
    end: int | None = None
    compress_level: int = 1
    warnings: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(j.bytes for j in self.jobs)

    def to_dict(self) -> dict:
        return {
            "source": {"kind": self.source.kind, "path": self.source.display_path},
            "dest": str(self.dest),
            "to": self.to,
            "start": self.start,
            "end": self.end,
            "databases": [db.name for db in self.meta.databases],
            "shards": [
                {
                    "source": f"{j.shard.database}/{j.shard.retention_policy}/{j.shard.id}",
                    "database": j.database,
                    "retention_policy": j.retention_policy,
                    "id": j.shard.id,
                    "how": "copy" if j.copy_raw else "rewrite",
                    "bytes": j.bytes,
                }
                for j in self.jobs
            ],
            "bytes": self.bytes,
            "warnings": list(self.warnings),
        }


@dataclass
class ShardOutput:
    database: str
    retention_policy: str
    id: int
    file_name: str
    tar_size: int  # uncompressed tar bytes
    file_size: int  # bytes on disk
    tsm_files: int


@dataclass
class ConvertResult:
    plan: ConvertPlan
    files: list[str]  # names written in dest
    shards: list[ShardOutput]
    dropped: list[str]  # shards left empty by the range / deletes
    bytes_read: int
    bytes_written: int
    findings: list[Finding] = field(default_factory=list)  # damage left out (salvage) and other findings

    def to_dict(self) -> dict:
        return {
            "dest": str(self.plan.dest),
            "to": self.plan.to,
            "files": self.files,
            "shards": [s.__dict__ for s in self.shards],
            "dropped_empty_shards": self.dropped,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "warnings": list(self.plan.warnings),
            "findings": [f.to_dict() for f in self.findings],
        }


def _overlaps(shard: Shard, start: int | None, end: int | None) -> bool:
    return window_overlaps((shard.group_start, shard.group_end), start, end)


def _inside(shard: Shard, start: int | None, end: int | None) -> bool:
    return window_inside((shard.group_start, shard.group_end), start, end)


def plan_convert(
    src: Source,
    dest: str | os.PathLike[str],
    *,
    to: str | None = None,
    selection: Selection = Selection(),
    start: int | None = None,
    end: int | None = None,
    compress_level: int = 1,
) -> ConvertPlan:
    """Decide what :func:`execute_convert` writes. Checks the destination; writes nothing."""
    if src.meta is None:
        raise UsageError(
            "the source has no metastore (expected a legacy or portable backup, or a server root with meta/meta.db)",
            path=src.path,
        )
    if to is None:
        to = src.kind if src.kind in FORMATS else "portable"
    if to not in FORMATS:
        raise UsageError(f"--to must be legacy or portable, not {to!r}")
    if not 0 <= compress_level <= 9:
        raise UsageError("--compress-level must be 0..9")
    if start is not None and end is not None and start > end:
        raise UsageError("--start is after --end")
    out = plan_dir_output(dest, sources=source_roots(src))
    dest_p = Path(out.path)

    selected = select_meta(src.meta, selection, origin=src.meta_origin or src.path)
    warnings = list(selected.warnings)
    live = {ref.shard.id for ref in src.meta.iter_shards() if not ref.group.deleted}
    by_key = {s.key: s for s in src.shards}
    jobs: list[ShardJob] = []
    for ref in src.meta.iter_shards():  # meta order: RP order, then shard-group order (as influxd)
        key = (ref.db.name, ref.rp.name, ref.shard.id)
        shard = by_key.get(key)
        if shard is None or ref.group.deleted or not selection.keeps(*key):
            continue
        if not (shard.tsm_layers() or shard.wal) or not _overlaps(shard, start, end):
            continue
        tdb, trp = selection.target_names(ref.db.name, ref.rp.name)
        layers = shard.tsm_layers()
        copy_raw = (
            len(layers) == 1 and layers[0][1] is None and shard.plain and not shard.wal and _inside(shard, start, end)
        )
        jobs.append(ShardJob(shard, tdb, trp, copy_raw))
    for s in src.shards:
        if (s.files or s.wal) and s.id not in live and selection.keeps(*s.key):
            warnings.append(
                f"shard {s.database}/{s.retention_policy}/{s.id} has data but no live shard group in the metastore; "
                "influxd would never serve it: left out"
            )
    return ConvertPlan(src, dest_p, to, selected.data, jobs, start, end, compress_level, warnings)


def _stat_sources(src: Source) -> dict[str, tuple[int, int]]:
    paths = {src.meta_origin} if src.meta_origin else set()
    for s in src.shards:
        for f in s.files + s.wal:
            paths.add(f.container)
    out = {}
    for p in paths:
        try:
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
        except OSError:
            out[p] = (-1, -1)
    return out


def execute_convert(
    plan: ConvertPlan, *, progress: ProgressCallback | None = None, workers: int | None = None, force: bool = False
) -> ConvertResult:
    """Write the backup of ``plan`` to ``plan.dest`` (atomically: all of it or nothing).

    A server root that a running process (influxd) uses is refused with BusyError unless
    ``force`` (:func:`~influx_archive.archive.guard.refuse_live`)."""
    src = plan.source
    if src.kind == "live":
        root = Path(src.path)  # its meta/, data/, wal/ may be links to other disks
        guard.refuse_live([root, root / "meta", root / "data", root / "wal"], what="back up", force=force)
    before = _stat_sources(src) if src.kind == "live" else None
    dest = plan.dest
    out = plan_dir_output(dest, sources=source_roots(src))  # again: time passed since the plan
    rep = Reporter(progress, label="convert")
    rep.start(plan.bytes)
    lock = threading.Lock()

    def advance(n: int) -> None:
        with lock:
            rep.advance(n)

    blob = encode_data(plan.meta)
    ts = metafiles.portable_timestamp(_dt.datetime.now(_dt.UTC))
    try:
        with building_dir(out, sources=source_roots(src)) as tmp:
            cores = workers or os.cpu_count() or 1
            outputs: list[ShardOutput | None] = []
            if len(plan.jobs) == 1 and cores > 1 and not plan.jobs[0].copy_raw and not src.sequential:
                # one shard to rewrite (e.g. a trim inside one shard): its keys are shared out to
                # forked processes instead (no other thread runs here, so forking is safe)
                outputs.append(_convert_shard(plan, plan.jobs[0], tmp, ts, advance, split=cores))
            else:
                n_workers = max(1, min(cores, len(plan.jobs) or 1))
                src.expect([job.shard for job in plan.jobs])
                with concurrent.futures.ThreadPoolExecutor(n_workers) as pool:
                    futures = [pool.submit(_convert_shard, plan, job, tmp, ts, advance) for job in plan.jobs]
                    try:
                        for fut in futures:
                            outputs.append(fut.result())
                    except BaseException:
                        for fut in futures:
                            fut.cancel()
                        raise
            shards = [o for o in outputs if o is not None]
            dropped = [
                f"{j.shard.database}/{j.shard.retention_policy}/{j.shard.id}"
                for j, o in zip(plan.jobs, outputs)
                if o is None
            ]
            files = [o.file_name for o in shards]
            if plan.to == "legacy":
                meta_name = metafiles.legacy_meta_file_name(0)
                _write_file(tmp / meta_name, metafiles.build_meta_nn(blob), 0o644)
                files.insert(0, meta_name)
            else:
                names = metafiles.portable_names(ts, [])
                _write_file(tmp / names.meta, metafiles.build_portable_meta(blob), 0o644)
                manifest = metafiles.Manifest(
                    meta_file_name=names.meta,
                    meta_size=len(blob),
                    limited=False,
                    files=[
                        metafiles.ManifestEntry(o.database, o.retention_policy, o.id, o.file_name, o.tar_size, 0)
                        for o in shards
                    ]
                    or None,
                )
                _write_file(tmp / names.manifest, metafiles.dump_manifest(manifest), 0o600)
                files = [names.meta] + files + [names.manifest]
            if before is not None and _stat_sources(src) != before:
                raise SourceError(
                    "source files changed while they were read: is influxd still running on it? Stop it and run again",
                    path=src.path,
                )
    except OSError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise os_error(exc, target=str(dest), sources=source_roots(src)) from exc
    finally:
        rep.end()
    written = sum(o.file_size for o in shards)
    return ConvertResult(plan, files, shards, dropped, plan.bytes, written, list(src.findings))


def _write_file(path: Path, data: bytes, mode: int) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fchmod(f.fileno(), mode)
        os.fsync(f.fileno())



def _convert_shard(plan: ConvertPlan, job: ShardJob, tmp: Path, ts: str, advance, split: int = 1) -> ShardOutput | None:
    """Write one shard's tar (or .tar.gz); None when nothing is left of it. ``split`` > 1 rewrites
    it with that many forked processes (only when no other thread runs: see execute_convert)."""
    shard = job.shard
    prefix = f"{job.database}/{job.retention_policy}/{shard.id}/"
    work = tmp / f".work-{shard.id}"
    os.mkdir(work)
    try:
        members: list[tuple[str, int, object]] = []  # (name, size, opener)
        with contextlib.ExitStack() as stack:
            if job.copy_raw:
                opened = stack.enter_context(plan.source.open_shard(shard, tmpdir=str(work)))
                tsm = shard.tsm_layers()[0][0]
                stream = opened.stream(tsm)
                try:
                    reader = TSMReader(stream, name=tsm.origin, size=tsm.size)
                    bad = damaged_blocks(reader) if plan.source.salvage else []
                except ArchiveError as exc:
                    exc.located(path=tsm.container, member=tsm.member)
                    if not plan.source.salvage:
                        raise exc
                    plan.source.findings.append(Finding(
                        ERROR, f"file left out: {exc.message}", exc.path, exc.member, exc.offset, code=FILE_LEFT_OUT))
                    return None
                if bad:
                    for key, e in bad:
                        plan.source.findings.append(
                            Finding(ERROR, f"damaged block of key {show(key)} left out", tsm.container, tsm.member,
                                    e.offset, code=BLOCK_LEFT_OUT))
                    salvaged = work / tsm.name
                    with open(salvaged, "xb") as out:
                        size = write_intact_blocks(reader, out)
                    if size is None:
                        return None
                    members.append((tsm.name, size, lambda p=salvaged: stack.enter_context(open(p, "rb"))))
                else:
                    members.append((tsm.name, tsm.size, lambda r=reader, s=stream: _ChunkStream(checked_chunks(s, r))))
            else:
                layers = shard.tsm_layers()
                gen = max((naming.order_key(f.name)[0] for f, _ in layers), default=1)
                seq = max((naming.order_key(f.name)[1] for f, _ in layers), default=0) + 1
                if split > 1:
                    written = _rewrite_in_processes(plan, shard, work, gen, seq, split)
                else:
                    with open_shard_reader(plan.source, shard, tmpdir=str(work)) as shard_reader:
                        written = write_shard(shard_reader, work, gen, seq, start=plan.start, end=plan.end)
                advance(job.bytes)
                for w in written:
                    members.append((w.name, w.size, lambda p=w.path: stack.enter_context(open(p, "rb"))))
            if not members:
                return None
            members.sort(key=lambda m: m[0])
            if plan.to == "legacy":
                name = metafiles.legacy_shard_file_name(job.database, job.retention_policy, shard.id, 0)
            else:
                name = metafiles.portable_names(ts, [shard.id]).shards[shard.id]
            path = tmp / name
            with open(path, "xb") as raw:
                sink = (
                    gzip_writer(raw, level=plan.compress_level, filename=name[: -len(".gz")])
                    if plan.to == "portable"
                    else raw
                )
                tar = TarWriter(sink)
                for mname, size, opener in members:
                    tar.add(prefix + mname, size, opener(), on_bytes=advance if job.copy_raw else None)  # type: ignore[operator]
                tar.close()
                if sink is not raw:
                    sink.close()
                raw.flush()
                os.fchmod(raw.fileno(), 0o600 if plan.to == "portable" else 0o644)
                os.fsync(raw.fileno())
                file_size = raw.tell()
            return ShardOutput(job.database, job.retention_policy, shard.id, name, tar.size, file_size, len(members))
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: (plan, shard) of a parallel rewrite, inherited by the forked workers (never pickled)
_REWRITE: tuple | None = None
#: sequence numbers reserved per worker: each worker's files are gen-(seq + i * SEQ_STRIDE + k)
SEQ_STRIDE = 1000


def _rewrite_slice(i: int, n: int, work: str, gen: int, seq: int) -> tuple[list, list]:
    """Worker: write the i-th of n key slices of the shard; returns (files, new findings)."""
    assert _REWRITE is not None
    plan, shard = _REWRITE
    seen = len(plan.source.findings)
    with open_shard_reader(plan.source, shard, tmpdir=work) as reader:
        keys = key_slice(list(reader.keys()), i, n)
        written = write_shard(reader, Path(work), gen, seq + i * SEQ_STRIDE, start=plan.start, end=plan.end, keys=keys)
    return written, plan.source.findings[seen:]


def _rewrite_in_processes(plan: ConvertPlan, shard: Shard, work: Path, gen: int, seq: int, n: int) -> list:
    """Rewrite one shard with ``n`` forked processes, each writing the TSM files of a contiguous
    slice of its keys (cut at series boundaries; slices never share a key, so file order is moot)."""
    import multiprocessing

    global _REWRITE
    _REWRITE = (plan, shard)
    try:
        ctx = multiprocessing.get_context("fork")
        with concurrent.futures.ProcessPoolExecutor(n, mp_context=ctx) as pool:
            futs = [pool.submit(_rewrite_slice, i, n, str(work), gen, seq) for i in range(n)]
            results = [f.result() for f in futs]
    finally:
        _REWRITE = None
    written = []
    for files, findings in results:
        written.extend(files)
        plan.source.findings.extend(findings)
    return written


class _ChunkStream:
    """A read()-able view of a chunk iterator (the checked bytes of a TSM file). ``read(n)`` returns
    at most ``n`` bytes of the current chunk, uncopied: the caller writes them before reading on
    (:func:`checked_chunks` reuses its buffer for the next chunk)."""

    def __init__(self, chunks) -> None:
        self._chunks = iter(chunks)
        self._rest = memoryview(b"")

    def read(self, n: int):
        if not self._rest:
            nxt = next(self._chunks, None)
            if nxt is None:
                return b""
            self._rest = memoryview(nxt)
        out, self._rest = self._rest[:n], self._rest[n:]
        return out


def convert(
    src: str | os.PathLike[str] | Source,
    dest: str | os.PathLike[str],
    *,
    to: str | None = None,
    selection: Selection = Selection(),
    start: int | None = None,
    end: int | None = None,
    compress_level: int = 1,
    progress: ProgressCallback | None = None,
) -> ConvertResult:
    """Plan and execute in one call (``src`` a path or an opened :class:`Source`)."""
    if not isinstance(src, Source):
        with open_source(src) as source:
            return convert(source, dest, to=to, selection=selection, start=start, end=end,
                           compress_level=compress_level, progress=progress)
    plan = plan_convert(src, dest, to=to, selection=selection, start=start, end=end, compress_level=compress_level)
    return execute_convert(plan, progress=progress)
