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

Each TSM file is handled on its own (:mod:`.convertshard`, docs/formats.md#per-file-conversion):
a file that needs no change is copied byte for byte, CRC-checked on the way; only a file with
deletions to apply, cut by the range or merged from increments is rewritten, under its own name.
Portable members of data that does not compress are stored (:class:`~.tarwrite.GzipSink`).
Shards are processed in parallel (gzip and file I/O release the GIL). The output is built in a
hidden sibling directory and renamed to ``dest`` only when complete.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...meta import files as metafiles
from ...meta.model import Data, encode_data, shard_group_range
from .. import guard
from ..errors import ArchiveError, SourceError, UsageError
from ..findings import Finding
from ..output import building_dir, os_error, plan_dir_output, source_roots
from ..progress import ProgressCallback, Reporter
from ..sources import Shard, Source, open_source
from ..threads import process_pool_available
from .convertshard import (
    ShardJob,
    ShardOutput,
    ShardSettings,
    convert_shard,
    convert_shards_in_processes,
    plan_steps,
    sample_compression,
)
from .select import Selection, select_meta, window_inside, window_overlaps

FORMATS = ("legacy", "portable")


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
                    "how": "copy" if j.copy_raw else "per-file",
                    "files": j.counts(),
                    "compression": j.compression.to_dict() if j.compression is not None else None,
                    "bytes": j.bytes,
                }
                for j in self.jobs
            ],
            "bytes": self.bytes,
            "warnings": list(self.warnings),
        }


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


def unread_shards(
    selection: Selection, start: int | None, end: int | None
) -> Callable[[Data], set[tuple[str, str, int]]]:
    """For :func:`~influx_archive.archive.sources.open_source`: the shards :func:`plan_convert`
    leaves out whatever they hold (a live shard group the filters or the time window exclude), so
    a single portable backup's other shards are never inflated. A shard of a deleted group, or in
    no group, is read (its data is reported); one a kept group also lists is read."""

    def pick(meta: Data) -> set[tuple[str, str, int]]:
        out: set[tuple[str, str, int]] = set()
        kept: set[tuple[str, str, int]] = set()
        for ref in meta.iter_shards():
            key = (ref.db.name, ref.rp.name, ref.shard.id)
            if ref.group.deleted or _in_scope(key, False, shard_group_range(ref.group), selection, start, end):
                kept.add(key)
            else:
                out.add(key)
        return out - kept

    return pick


def _in_scope(
    key: tuple[str, str, int], deleted: bool, group: tuple[int | None, int | None], selection: Selection,
    start: int | None, end: int | None,
) -> bool:
    """Whether :func:`plan_convert` may write the shard ``key`` of a group ``(start, end)``: a live
    group the filters keep and the time window overlaps (whether it holds data is asked apart)."""
    return not deleted and selection.keeps(*key) and window_overlaps(group, start, end)


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
        if shard is None or not _in_scope(key, ref.group.deleted, (shard.group_start, shard.group_end), selection,
                                          start, end):
            continue
        if not (shard.tsm_layers() or shard.wal):
            continue
        tdb, trp = selection.target_names(ref.db.name, ref.rp.name)
        steps = plan_steps(shard, _inside(shard, start, end))
        # a sealed archive's containers exist only while their shard is open: decided when written
        sample = to == "portable" and (not src.sequential or compress_level == 0)
        compression = sample_compression(shard, compress_level) if sample else None
        jobs.append(ShardJob(shard, tdb, trp, steps, compression))
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
            cfg = ShardSettings(src, plan.to, plan.start, plan.end, plan.compress_level, ts)
            if len(plan.jobs) == 1 and cores > 1 and not plan.jobs[0].copy_raw and not src.sequential:
                # one shard with a file to rewrite (e.g. a trim inside one shard): the keys of its
                # newest file are shared out to forked processes (no other thread runs here, so
                # forking is safe)
                outputs.append(convert_shard(cfg, plan.jobs[0], tmp, advance, split=cores))
            elif (cores > 1 and not src.sequential and sum(not j.copy_raw for j in plan.jobs) > 1
                  and process_pool_available()):
                # several shards to rewrite (a trim across databases, tombstones to apply): their
                # per-key work holds the GIL, so each shard goes to a forked process (no other
                # thread runs here, so forking is safe)
                outputs.extend(convert_shards_in_processes(cfg, plan.jobs, tmp, advance, cores))
            else:
                n_workers = max(1, min(cores, len(plan.jobs) or 1))
                src.expect([job.shard for job in plan.jobs])
                with concurrent.futures.ThreadPoolExecutor(n_workers) as pool:
                    futures = [pool.submit(convert_shard, cfg, job, tmp, advance) for job in plan.jobs]
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
            entries = [(o.database, o.retention_policy, o.id, o.file_name, o.tar_size, 0) for o in shards]
            files = write_backup_meta(tmp, plan.to, blob, ts, entries, files)
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


def write_backup_meta(tmp: Path, to: str, blob: bytes, ts: str, entries: list[tuple[str, str, int, str, int, int]],
                      files: list[str], *, increment: int = 0) -> list[str]:
    """Write a backup's metastore files beside its shard ``files`` in ``tmp``, as influxd does:
    legacy ``meta.NN`` (``increment``); portable ``<ts>.meta`` and the ``<ts>.manifest`` listing
    ``entries`` (database, RP, shard id, file name, tar size, lastModified). Returns every file
    name of the backup in influxd's order."""
    if to == "legacy":
        name = metafiles.legacy_meta_file_name(increment)
        write_file(tmp / name, metafiles.build_meta_nn(blob), 0o644)
        return [name, *files]
    names = metafiles.portable_names(ts, [])
    write_file(tmp / names.meta, metafiles.build_portable_meta(blob), 0o644)
    manifest = metafiles.Manifest(
        meta_file_name=names.meta,
        meta_size=len(blob),
        limited=False,
        files=[metafiles.ManifestEntry(*e) for e in entries] or None,
    )
    write_file(tmp / names.manifest, metafiles.dump_manifest(manifest), 0o600)
    return [names.meta, *files, names.manifest]


def write_file(path: Path, data: bytes, mode: int) -> None:
    """A new file of a backup being built: written, given ``mode`` and fsynced."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fchmod(f.fileno(), mode)
        os.fsync(f.fileno())



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
