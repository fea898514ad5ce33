"""One shard of a convert / trim / offline backup, file by file (docs/formats.md#per-file-conversion).

influxd serves a shard by reading its TSM files in (generation, sequence) order, each file's
tombstones applied to that file only, the newest file winning per (key, timestamp), the WAL cache
above every file (docs/formats.md#reading-across-files). Every change convert makes is a filter on
one file's own points — its tombstone, the ``[start, end]`` range, what a later increment's copy
replaces (a mask) — so each file is handled on its own and keeps its name and place in that
order, and the answers stay the same:

* a file that needs no change is copied byte for byte (streamed, every block's CRC checked on the
  way: :func:`~.tsmcopy.checked_chunks`; with ``--salvage`` its intact blocks only): one copy of
  the file (no twin left after :func:`~..sources.shardview.load_shard_files` drops the subset
  copies of ``-start/-end`` backups), no mask, a tombstone that deletes none of its points, and
  its index's time extent inside ``[start, end]``;
* a file wholly outside the range is dropped, and so is a file its filters leave empty;
* any other file is rewritten alone, under its own name: its copies (twins hold the same points)
  minus its own deletions (tombstone, mask spans, the mask's tombstones), cut to the range.
  Blocks left whole are still copied as raw frames (:mod:`.writeshard`). Only the newest file
  may roll over into several files (``(g, s+k)`` sort after every other file); an older file's
  rewrite that needs a second file where no free name sorts before the next file is refused;
* a live root's WAL becomes new TSM files in the generation above every file of the shard (the
  cache outranks every file in influxd, and so does the newest generation).

Never are files that need nothing merged. When one shard is converted alone (a trim inside one
shard), its rewrites use every core (``split``): several files to rewrite are shared out between
forked processes, each file still written whole by one of them; a lone newest file has its keys
split instead (slices in (g, s + i * SEQ_STRIDE + k), all sorting after the other files).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...meta import files as metafiles
from ...tsm import naming
from ...tsm.block import BLOCK_TYPE_NAMES
from ...tsm.keys import key_slice
from ...tsm.reader import TSMReader
from ...tsm.shard import ShardReader
from ...tsm.tombstone import TombstoneSet
from ..errors import ArchiveError, FormatError, UnsupportedError, show
from ..findings import BLOCK_LEFT_OUT, ERROR, FILE_LEFT_OUT, Finding
from ..sources import Shard, Source
from ..sources.model import Layer, ShardFile
from ..sources.shardview import load_shard_files
from ..threads import forked_pool, process_pool_available, read_ahead
from .tarwrite import SAMPLE_BYTES, Compression, GzipSink, OutputFile, TarWriter, choose_compression
from .tsmcopy import checked_chunks, damaged_blocks, write_intact_blocks
from .writeshard import MAX_FILE_BYTES, ShardFileWriter, WrittenFile

#: planned handling of one file: copied as it is, rewritten, or checked against the range when
#: written (its index says whether it lies inside, outside or across)
COPY, REWRITE, CHECK = "copy", "rewrite", "check"
#: sequence numbers reserved per worker of a split rewrite: worker i writes (g, s + i * SEQ_STRIDE + k)
SEQ_STRIDE = 1000
_NO_ROLL = 1 << 62  # an older file's rewrite never rolls over on size (see the module docstring)
#: a newest file smaller than this is rewritten in-process: forking and reopening cost more
SPLIT_MIN_BYTES = 16 << 20
#: windows of a copied file read and checked ahead of its writing (by a thread of its own)
READ_AHEAD = 2


@dataclass
class ShardJob:
    shard: Shard
    database: str  # target names
    retention_policy: str
    #: per layer of ``shard.layers()``, what the plan expects (files are decided when written)
    steps: list[str] = field(default_factory=list)
    #: the gzip strategy of a portable member, when the plan could sample the data (else decided
    #: from the member's first bytes when written)
    compression: Compression | None = None

    @property
    def copy_raw(self) -> bool:
        """Every file copied byte for byte, no WAL."""
        return bool(self.steps) and all(s == COPY for s in self.steps) and not self.shard.wal

    @property
    def bytes(self) -> int:
        return sum(f.size for f, _ in self.shard.tsm_layers()) + sum(
            t.size for _, t in self.shard.tsm_layers() if t is not None
        ) + sum(f.size for f in self.shard.wal)

    def counts(self) -> dict[str, int]:
        return {COPY: self.steps.count(COPY), REWRITE: self.steps.count(REWRITE), CHECK: self.steps.count(CHECK),
                "wal_segments": len(self.shard.wal)}


def plan_steps(shard: Shard, inside: bool) -> list[str]:
    """What each file of ``shard`` is expected to need; ``inside``: the shard group lies inside
    the range (its files are then still checked against it when written)."""
    out = []
    for layer in shard.layers():
        if not layer.plain or layer.tomb is not None:
            out.append(REWRITE)  # may still be copied: subset twins, a tombstone deleting none of it
        else:
            out.append(COPY if inside else CHECK)
    return out


def sample_compression(shard: Shard, level: int) -> Compression | None:
    """The strategy for the shard's member from the first bytes of its first TSM file, when they
    can be read cheaply (a file on disk or inside an uncompressed tar); else None."""
    if level == 0:
        return choose_compression(0, None)
    layers = shard.layers()
    if not layers:
        return None
    f = layers[0].tsm
    if f.gz or (f.member is not None and f.data_offset is None):
        return None
    try:
        with open(f.container, "rb") as fh:
            fh.seek(f.data_offset or 0)
            sample = fh.read(min(f.size, SAMPLE_BYTES))
    except OSError:
        return None
    return choose_compression(level, sample) if sample else None


@dataclass
class ShardOutput:
    database: str
    retention_policy: str
    id: int
    file_name: str
    tar_size: int  # uncompressed tar bytes
    file_size: int  # bytes on disk
    tsm_files: int
    copied: int = 0  # TSM files copied byte for byte
    rewritten: int = 0  # TSM files rewritten (tombstone, range cut, increments)
    dropped_files: int = 0  # TSM files outside the range or left empty
    compression: dict | None = None  # portable: Compression.to_dict() of the member


@dataclass
class ShardSettings:
    """What one shard's conversion needs from the plan."""

    source: Source
    to: str
    start: int | None
    end: int | None
    compress_level: int
    ts: str  # portable timestamp of the run


Member = tuple[str, int, Callable[[], Any], bool]  # (name, size, opener, streamed: advance per chunk)


def convert_shard(
    cfg: ShardSettings, job: ShardJob, tmp: Path, advance: Callable[[int], None], split: int = 1
) -> ShardOutput | None:
    """Write one shard's tar (or .tar.gz) into ``tmp``; None when nothing is left of it. ``split``
    > 1 shares its rewrites out to that many forked processes (only when no other thread runs)."""
    shard = job.shard
    prefix = f"{job.database}/{job.retention_policy}/{shard.id}/"
    work = tmp / f".work-{shard.id}"
    os.mkdir(work)
    try:
        with contextlib.ExitStack() as stack:
            opened = stack.enter_context(cfg.source.open_shard(shard, tmpdir=str(work)))
            parts = load_shard_files(opened, shard, salvage=cfg.source.salvage, findings=cfg.source.findings)
            layers = shard.layers()
            groups = _group(parts.layers, layers)
            if sum(1 for g in groups if g) + (parts.cache is not None) > 1:
                _check_types(groups, parts.cache)
            counts = {"copied": 0, "rewritten": 0, "dropped_files": 0}
            members: list[Member] = []
            acts = [_decide(cfg, layer, groups[i]) for i, layer in enumerate(layers)]
            rewrites = [i for i, a in enumerate(acts) if a == REWRITE]
            written = _rewrite(cfg, shard, layers, groups, rewrites, work, split)
            for i, layer in enumerate(layers):
                if acts[i] == COPY:
                    if layer.tomb is not None:
                        advance(layer.tomb.size)
                    got = _copy_members(cfg.source, layer.tsm, groups[i][0][0], opened, work / f"f{i}", stack)
                    if not got or not got[0][3]:  # nothing streamed from the source: salvaged or left out
                        advance(layer.tsm.size)
                else:
                    advance(_size(layer))
                    got = _file_members(written.get(i, []), stack)
                counts["dropped_files" if not got else "copied" if acts[i] == COPY else "rewritten"] += 1
                members.extend(got)
            if parts.cache is not None:
                gen = max((naming.order_key(x.name)[0] for x in layers), default=0) + 1
                wdir = work / "wal"
                os.mkdir(wdir)
                damaged: list[ArchiveError] | None = [] if cfg.source.salvage else None
                from_wal = _write_keys(ShardReader([], parts.cache, damaged=damaged), wdir, gen, 1, cfg, None)
                _note_damaged(cfg.source, damaged)
                advance(sum(f.size for f in shard.wal))
                members.extend(_file_members(from_wal, stack))
            if not members:
                return None
            members.sort(key=lambda m: m[0])
            return _write_tar(cfg, job, tmp, prefix, members, counts, advance)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _group(flat: list[tuple[TSMReader, TombstoneSet | None]], layers: list[Layer]) -> list[list]:
    """The opened (reader, tombstones) pairs of each layer (a file left out by salvage has none)."""
    where: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for copy in [layer.tsm] + layer.twins:
            where[copy.origin] = i
    out: list[list] = [[] for _ in layers]
    for reader, tset in flat:
        out[where[str(reader.name)]].append((reader, tset))
    return out


def _check_types(groups: list[list], cache) -> None:
    """One block type per key across the shard's files and WAL (a key a file's tombstone removes
    wholly does not count there), as when the files are read together: a file copied or rewritten
    alone would otherwise carry a conflict influxd cannot serve or compact. One file's key types
    are held at a time besides the first type seen per key."""
    seen: dict[bytes, tuple[int, str]] = {}

    def check(key: bytes, typ: int, where: str) -> None:
        first = seen.setdefault(key, (typ, where))
        if first[0] != typ:
            raise FormatError(
                f"key {show(key)} is {BLOCK_TYPE_NAMES.get(first[0], first[0])} in {first[1]} but "
                f"{BLOCK_TYPE_NAMES.get(typ, typ)} in {where}; influxd cannot serve or compact it",
                path=where if where != "the WAL cache" else None, field="block type")

    for got in groups:
        for reader, tset in got:
            types = {key: bt for _off, _size, key, bt in reader.frames()}
            if tset is not None:
                for key in tset.keys():
                    if key in types:
                        entries = reader.entries(key)
                        if tset.key_deleted_fully(key, entries[0].min_time, max(e.max_time for e in entries)):
                            del types[key]
            where = str(reader.name)
            for key, typ in types.items():
                check(key, typ, where)
    if cache is not None:
        for key in cache.keys():
            check(key, cache.block_type(key), "the WAL cache")


def _size(layer: Layer) -> int:
    return layer.tsm.size + (layer.tomb.size if layer.tomb is not None else 0)


def _deletes_nothing(reader: TSMReader, tset: TombstoneSet) -> bool:
    """No deletion of ``tset`` removes a point of ``reader`` (influxd's rules, per key span)."""
    for key in tset.keys():
        if key not in reader:
            continue
        entries = reader.entries(key)
        kmin, kmax = entries[0].min_time, max(e.max_time for e in entries)
        state = tset.state(key, kmin, kmax)
        if state.deleted:
            return False
        for lo, hi in state.ranges:
            if any(lo <= e.max_time and hi >= e.min_time for e in entries):
                return False
    return True


def _decide(cfg: ShardSettings, layer: Layer, got: list) -> str:
    """What one file needs: COPY, REWRITE, or "drop" (outside the range, or left out by salvage)."""
    if not got:  # left out by salvage (a finding says so)
        return "drop"
    readers = [r for r, _ in got]
    tset = got[0][1]
    lo = min(r.min_time for r in readers)
    hi = max(r.max_time for r in readers)
    start, end = cfg.start, cfg.end
    if (start is not None and hi < start) or (end is not None and lo > end):
        return "drop"
    inside = (start is None or lo >= start) and (end is None or hi <= end)
    if len(readers) == 1 and inside and (tset is None or _deletes_nothing(readers[0], tset)):
        return COPY
    return REWRITE


def _rewrite(cfg: ShardSettings, shard: Shard, layers: list[Layer], groups: list[list], rewrites: list[int],
             work: Path, split: int) -> dict[int, list[WrittenFile]]:
    """The files of the layers ``rewrites``, each written alone under its own name: in-process,
    or with ``split`` > 1 by forked processes — several files shared out between them, or the keys
    of a lone newest file."""
    out: dict[int, list[WrittenFile]] = {}
    big = sum(layers[i].tsm.size for i in rewrites) >= SPLIT_MIN_BYTES
    if split > 1 and not process_pool_available():
        split = 1  # no semaphores for a process pool here: the same rewrite in this process
    if split > 1 and big and len(rewrites) > 1:
        out = _rewrite_in_processes(cfg, shard, layers, rewrites, work, split, by_keys=False)
    elif split > 1 and big and rewrites == [len(layers) - 1]:
        out = _rewrite_in_processes(cfg, shard, layers, rewrites, work, split, by_keys=True)
    else:
        for i in rewrites:
            out[i] = _rewrite_one(cfg, layers, groups[i], i, work)
    for i, files in out.items():
        layer = layers[i]
        if files and files[0].name != layer.name and naming.order_key(files[0].name) == naming.order_key(layer.name):
            target = files[0].path.parent / layer.name  # keep the file's own spelling of its name
            os.rename(files[0].path, target)
            files[0] = WrittenFile(layer.name, target, files[0].size, files[0].keys)
    return out


def _rewrite_one(cfg: ShardSettings, layers: list[Layer], got: list, i: int, work: Path,
                 keys: list[bytes] | None = None, slot: int = 0) -> list[WrittenFile]:
    """Layer ``i`` (or the slice ``keys`` of it, as worker ``slot``) written alone, into its own
    directory under ``work``."""
    g, s = naming.order_key(layers[i].name)
    nxt = naming.order_key(layers[i + 1].name) if i + 1 < len(layers) else None
    wdir = work / f"f{i}-{slot}"
    os.mkdir(wdir)
    damaged: list[ArchiveError] | None = [] if cfg.source.salvage else None
    copies = [layers[i].tsm] + layers[i].twins
    try:
        written = _write_keys(ShardReader(got, None, damaged=damaged), wdir, g, s + slot * SEQ_STRIDE, cfg, nxt,
                              keys=keys)
    except ArchiveError as exc:
        raise _locate(exc, copies) from None
    for bad in damaged or []:
        _locate(bad, copies)
    _note_damaged(cfg.source, damaged)
    return written


def _locate(exc: ArchiveError, files: list[ShardFile]) -> ArchiveError:
    """Name the container and member of the file an error was raised for (readers are named
    ``CONTAINER::MEMBER``)."""
    for f in files:
        if exc.path == f.origin:
            exc.located(path=f.container, member=f.member)
    return exc


def _write_keys(reader: ShardReader, wdir: Path, g: int, s: int, cfg: ShardSettings,
                nxt: tuple[int, int] | None, keys: list[bytes] | None = None) -> list[WrittenFile]:
    """Every key of ``reader`` (or ``keys``), cut to the range, into (g, s), (g, s+1)...; with a
    next file ``nxt`` every name must sort before it."""
    out = ShardFileWriter(wdir, g, s, max_bytes=MAX_FILE_BYTES if nxt is None else _NO_ROLL)
    try:
        for key in reader.keys() if keys is None else keys:
            out.write_key(reader, key, cfg.start, cfg.end)
            if nxt is not None and (g, out.sequence) >= nxt:
                raise UnsupportedError(
                    f"rewriting TSM file {naming.tsm_name(g, s)} alone needs more files than there are free names "
                    f"before {naming.tsm_name(*nxt)} (key {show(key)} has more blocks than one file holds)")
        return out.close()
    except BaseException:
        out.abort()
        raise


def _note_damaged(src: Source, damaged: list[ArchiveError] | None) -> None:
    for exc in damaged or []:
        f = Finding.from_error(exc)
        src.findings.append(Finding(f.severity, f"damaged block left out: {f.message}", f.path, f.member, f.offset,
                                    code=BLOCK_LEFT_OUT))


def _file_members(written: list[WrittenFile], stack: contextlib.ExitStack) -> list[Member]:
    def opener(p: Path) -> Callable[[], Any]:
        return lambda: stack.enter_context(open(p, "rb"))

    return [(w.name, w.size, opener(w.path), False) for w in written]


def _copy_members(src: Source, tsm: ShardFile, reader: TSMReader, opened, wdir: Path,
                  stack: contextlib.ExitStack) -> list[Member]:
    """The byte copy of one TSM file (with --salvage: its intact blocks, when some are not)."""
    stream = opened.stream(tsm)
    try:
        bad = damaged_blocks(reader) if src.salvage else []
    except ArchiveError as exc:  # pragma: no cover - damaged_blocks reports block damage itself
        exc.located(path=tsm.container, member=tsm.member)
        if not src.salvage:
            raise exc
        src.findings.append(Finding(
            ERROR, f"file left out: {exc.message}", exc.path, exc.member, exc.offset, code=FILE_LEFT_OUT))
        return []
    if not bad:
        # read and checked by a thread of its own up to READ_AHEAD windows ahead of the writing
        return [(tsm.name, tsm.size, lambda: _ChunkStream(
            read_ahead(checked_chunks(stream, reader, buffers=READ_AHEAD + 2), READ_AHEAD), tsm, stack), True)]
    for key, e in bad:
        src.findings.append(Finding(ERROR, f"damaged block of key {show(key)} left out", tsm.container, tsm.member,
                                    e.offset, code=BLOCK_LEFT_OUT))
    os.mkdir(wdir)
    salvaged = wdir / tsm.name
    with open(salvaged, "xb") as out:
        size = write_intact_blocks(reader, out)
    if size is None:
        return []
    return [(tsm.name, size, lambda: stack.enter_context(open(salvaged, "rb")), False)]


def _write_tar(cfg: ShardSettings, job: ShardJob, tmp: Path, prefix: str, members: list[Member],
               counts: dict[str, int], advance) -> ShardOutput:
    shard = job.shard
    if cfg.to == "legacy":
        name = metafiles.legacy_shard_file_name(job.database, job.retention_policy, shard.id, 0)
    else:
        name = metafiles.portable_names(cfg.ts, [shard.id]).shards[shard.id]
    path = tmp / name
    with open(path, "xb", buffering=0) as f:
        raw: Any = OutputFile(f)  # unbuffered, gathered writes, writeback started as it goes
        sink: Any = raw
        if cfg.to == "portable":
            sink = GzipSink(raw, level=cfg.compress_level, filename=name[: -len(".gz")], compression=job.compression)
        tar = TarWriter(sink)
        for mname, size, opener, streamed in members:
            tar.add(prefix + mname, size, opener(), on_bytes=advance if streamed else None)
        tar.close()
        compression = None
        if sink is not raw:
            sink.close()
            compression = sink.compression.to_dict()
        raw.flush()
        os.fchmod(raw.fileno(), 0o600 if cfg.to == "portable" else 0o644)
        os.fsync(raw.fileno())
        file_size = raw.tell()
    return ShardOutput(job.database, job.retention_policy, shard.id, name, tar.size, file_size, len(members),
                       compression=compression, **counts)


#: (settings, shard) of a parallel rewrite, inherited by the forked workers (never pickled)
_REWRITE: tuple | None = None
#: (settings, jobs, tmp) of shards converted in forked processes, inherited (never pickled)
_SHARDS: tuple | None = None


def _shard_worker(index: int) -> tuple[ShardOutput | None, list, int]:
    """Worker: convert job ``index`` of :data:`_SHARDS`; returns (its output, new findings, bytes
    of progress)."""
    assert _SHARDS is not None
    cfg, jobs, tmp = _SHARDS
    seen = len(cfg.source.findings)
    done = [0]

    def count(n: int) -> None:
        done[0] += n

    out = convert_shard(cfg, jobs[index], tmp, count)
    return out, cfg.source.findings[seen:], done[0]


def convert_shards_in_processes(cfg: ShardSettings, jobs: list[ShardJob], tmp: Path,
                                advance: Callable[[int], None], n: int) -> list[ShardOutput | None]:
    """:func:`convert_shard` of every job, shared out to ``n`` forked processes (only when no
    other thread runs): the per-key work of rewrites holds the GIL, so threads would run it on one
    core. Largest jobs are started first; outputs come back in ``jobs`` order, findings in it too
    (each worker writes only its own shard's tar in ``tmp``)."""

    global _SHARDS
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].copy_raw, -jobs[i].bytes))
    _SHARDS = (cfg, jobs, tmp)
    try:
        with forked_pool(max(1, min(n, len(jobs)))) as pool:
            futs = {i: pool.submit(_shard_worker, i) for i in order}
            try:
                for fut in concurrent.futures.as_completed(futs.values()):
                    advance(fut.result()[2])
            except BaseException:
                for fut in futs.values():
                    fut.cancel()
                raise
            results = [futs[i].result() for i in range(len(jobs))]
    finally:
        _SHARDS = None
    for _, findings, _ in results:
        cfg.source.findings.extend(findings)
    return [out for out, _, _ in results]


def _rewrite_worker(slot: int, n: int, work: str, indices: list[int], by_keys: bool) -> tuple[dict, list]:
    """Worker: reopen the shard and write layers ``indices`` (or, ``by_keys``, the ``slot``-th of
    ``n`` key slices of the one layer); returns ({layer: files}, new findings)."""
    assert _REWRITE is not None
    cfg, shard = _REWRITE
    src = cfg.source
    out: dict[int, list[WrittenFile]] = {}
    with src.open_shard(shard, tmpdir=work) as opened:
        parts = load_shard_files(opened, shard, salvage=src.salvage, findings=[])  # the parent reported them
        seen = len(src.findings)
        layers = shard.layers()
        groups = _group(parts.layers, layers)
        for i in indices:
            if by_keys:
                keys = key_slice(list(ShardReader(groups[i], None).keys()), slot, n)
                out[i] = _rewrite_one(cfg, layers, groups[i], i, Path(work), keys=keys, slot=slot)
            else:
                out[i] = _rewrite_one(cfg, layers, groups[i], i, Path(work))
    return out, src.findings[seen:]


def _rewrite_in_processes(cfg: ShardSettings, shard: Shard, layers: list[Layer], rewrites: list[int], work: Path,
                          n: int, *, by_keys: bool) -> dict[int, list[WrittenFile]]:
    """Rewrite with ``n`` forked processes: the files ``rewrites`` shared out between them (largest
    first, each to the least loaded worker), or (``by_keys``) the keys of the one newest file in
    contiguous slices cut at series boundaries — slices never share a key, so their order is moot,
    and every name (g, s + k) sorts after the shard's other files."""

    global _REWRITE
    if by_keys:
        tasks = [(slot, [rewrites[0]]) for slot in range(n)]
    else:
        width = min(n, len(rewrites))
        load = [0] * width
        share: list[list[int]] = [[] for _ in range(width)]
        for i in sorted(rewrites, key=lambda i: -layers[i].tsm.size):
            least = load.index(min(load))
            load[least] += layers[i].tsm.size
            share[least].append(i)
        tasks = list(enumerate(share))
    _REWRITE = (cfg, shard)
    try:
        with forked_pool(len(tasks)) as pool:
            futs = [pool.submit(_rewrite_worker, slot, n, str(work), idx, by_keys) for slot, idx in tasks]
            results = [f.result() for f in futs]
    finally:
        _REWRITE = None
    out: dict[int, list[WrittenFile]] = {}
    for files, findings in results:
        for i, written in files.items():
            out.setdefault(i, []).extend(written)
        cfg.source.findings.extend(findings)
    return out


class _ChunkStream:
    """A read()-able view of a chunk iterator (the checked bytes of a TSM file). ``read(n)`` returns
    at most ``n`` bytes of the current chunk, uncopied: the caller writes them before reading on
    (:func:`checked_chunks` reuses its buffer for the next chunk)."""

    def __init__(self, chunks, origin: ShardFile, stack: contextlib.ExitStack | None = None) -> None:
        self._chunks = iter(chunks)
        self._rest = memoryview(b"")
        self._origin = origin
        if stack is not None and hasattr(self._chunks, "close"):
            stack.callback(self._chunks.close)  # a read-ahead thread stops with the shard

    def read(self, n: int):
        if not self._rest:
            try:
                nxt = next(self._chunks, None)
            except ArchiveError as exc:
                raise _locate(exc, [self._origin]) from None
            if nxt is None:
                return b""
            self._rest = memoryview(nxt)
        out, self._rest = self._rest[:n], self._rest[n:]
        return out
