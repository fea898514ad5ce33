"""Read one shard of any source the way influxd would serve it.

:func:`open_shard_reader` opens the shard's effective TSM files (oldest to newest), their
tombstones and, for live sources, replays its WAL segments into a cache, and hands them to
:class:`~influx_archive.tsm.shard.ShardReader` (precedence: cache > newer file > older file;
each file's tombstones apply to that file only — docs/formats.md).
:func:`shard_index_summary` answers the cheap questions (series, time extent) from the indexes
alone, without decoding blocks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ...tsm.keys import series_of
from ...tsm.reader import TSMReader
from ...tsm.shard import ShardReader
from ...tsm.tombstone import Tombstone, TombstoneSet, read_tombstones
from ...tsm.wal import Cache
from ..errors import ArchiveError
from ..findings import BLOCK_LEFT_OUT, FILE_LEFT_OUT, WAL_DAMAGED_ENTRY, Finding
from .model import OpenShard, Shard, Source


@dataclass
class ShardFiles:
    """The opened parts of one shard: (reader, tombstones) oldest to newest, and the WAL cache."""

    layers: list[tuple[TSMReader, TombstoneSet | None]]
    cache: Cache | None


def load_shard_files(
    opened: OpenShard, shard: Shard, *, salvage: bool = False, findings: list | None = None
) -> ShardFiles:
    """Open the shard's current state (:meth:`Shard.layers`): each file's copies, tombstones and
    masks, and the WAL. With ``salvage`` a TSM or tombstone file that cannot be opened is left out
    (and a damaged WAL entry skipped) with an error finding appended to ``findings``, instead of
    failing.

    Copies of one file: a twin whose index is a subset of the largest copy's (what a
    ``-start/-end`` backup writes) adds nothing and is dropped here; any other twin is kept as a
    layer of its own right below the largest copy (same points, so their order is moot). A masked
    file gets, besides its own tombstone, one deletion per key covering the span its mask holds
    for that key, the mask's tombstone, what the mask's own mask hands down, and for every key
    the proven range of each masking copy's increment (see :meth:`Shard.layers`)."""
    plan = shard.layers()
    readers: dict[str, list[TSMReader]] = {}
    tombs: dict[str, list[Tombstone]] = {}
    masking = {inc for layer in plan for inc in layer.mask_increments}
    proven: dict[int, list[int]] = {}  # increment -> [lo, hi]: see proven_range
    for layer in plan:
        got: list[TSMReader] = []
        for copy in [layer.tsm] + layer.twins:
            try:
                got.append(TSMReader(opened.stream(copy), name=copy.origin, size=copy.size))
                if copy.increment in masking:
                    proven_range(proven.setdefault(copy.increment, [_NO_LO, _NO_HI]), got[-1], copy,
                                 dated=copy.increment not in shard.range_increments)
            except ArchiveError as exc:
                exc.located(path=copy.container, member=copy.member)
                if not salvage:
                    raise exc
                _note(findings, exc, "TSM file left out", FILE_LEFT_OUT)
        if len(got) > 1:
            got = [got[0]] + [r for r in got[1:] if not _index_subset(r, got[0])]
        readers[layer.name] = got
        tomb = layer.tomb
        if tomb is not None:
            try:
                tombs[layer.name] = list(read_tombstones(opened.stream(tomb), name=tomb.origin))
            except ArchiveError as exc:
                exc.located(path=tomb.container, member=tomb.member)
                if not salvage:
                    raise exc
                _note(findings, exc, "tombstone file left out: points it deleted are served again", FILE_LEFT_OUT)
    by_name = {layer.name: layer for layer in plan}
    inherited: dict[str, list[Tombstone]] = {}

    def handed_down(name: str) -> list[Tombstone]:
        """What a file masked by ``name`` must delete: per key the span its copies hold, its
        tombstone, and what its own mask hands down (iterative: chains can be long)."""
        chain = []
        while name not in inherited and name in by_name:
            chain.append(name)
            nxt = by_name[name].masks
            if not nxt or nxt[0] in chain:
                break
            name = nxt[0]
        for n in reversed(chain):
            out: list[Tombstone] = []
            for r in readers.get(n, ()):
                for key, _btype, ents in r.iter_index():
                    out.append(Tombstone(key, ents[0].min_time, max(e.max_time for e in ents)))
            out.extend(tombs.get(n, ()))
            nxt = by_name[n].masks
            if nxt and nxt[0] != n:
                out.extend(inherited.get(nxt[0], ()))
            inherited[n] = out
        return inherited.get(chain[0] if chain else name, [])

    def run_ranges(layer) -> list[tuple[int, int]]:
        """The proven ranges of the increments of ``layer``'s mask chain (see :meth:`Shard.layers`)."""
        out: list[tuple[int, int]] = []
        seen: set[str] = set()
        while layer.masks and layer.name not in seen:
            seen.add(layer.name)
            lo, hi = proven.get(layer.mask_increments[0], (_NO_LO, _NO_HI)) if layer.mask_increments else (0, -1)
            if lo <= hi:
                out.append((lo, hi))
            if layer.masks[0] not in by_name:
                break
            layer = by_name[layer.masks[0]]
        return out

    layers: list[tuple[TSMReader, TombstoneSet | None]] = []
    for layer in plan:
        entries = list(tombs.get(layer.name, ()))
        for mask in layer.masks:
            entries.extend(handed_down(mask))
        if layer.masks:
            spans = run_ranges(layer)
            keys = {key for r in readers[layer.name] for key, _bt, _ents in r.iter_index()} if spans else ()
            entries.extend(Tombstone(key, lo, hi) for key in keys for lo, hi in spans)
        tset = TombstoneSet(entries) if entries else None
        got = readers[layer.name]
        for reader in got[1:] + got[:1]:  # largest copy last
            layers.append((reader, tset))
    cache = replay_wal(opened, shard, salvage=salvage, findings=findings) if shard.wal else None
    return ShardFiles(layers, cache)


_NO_LO = 2**63  # an empty proven range: lo above hi
_NO_HI = -(2**63) - 1


def proven_range(span: list[int], reader: TSMReader, copy, *, dated: bool) -> None:
    """Widen ``span`` ([lo, hi]) to what ``copy`` proves about its run's time range (see
    :meth:`Shard.layers`): every block of a ``-start/-end`` run meets the range, so the range
    reaches from at most the lowest block end to at least the highest block start; a copy older
    than its run was kept whole, so it lies inside the range. ``dated``: its mtimes can be
    trusted for that (not so in an increment shown to be a range backup by a smaller same-named
    copy: there the files may have been copied without their mtimes, which makes a filtered
    copy look older than its run)."""
    whole = dated and copy.mtime is not None and copy.set_time is not None and not copy.maybe_filtered
    for _key, _btype, ents in reader.iter_index():
        for e in ents:
            if e.max_time < span[0]:
                span[0] = e.max_time
            if e.min_time > span[1]:
                span[1] = e.min_time
            if whole:
                span[0] = min(span[0], e.min_time)
                span[1] = max(span[1], e.max_time)


def _index_subset(small: TSMReader, big: TSMReader) -> bool:
    """Every block of ``small`` is a block of ``big`` (same key, time range and size)."""
    for key, _btype, ents in small.iter_index():
        try:
            have = {(e.min_time, e.max_time, e.size) for e in big.entries(key)}
        except KeyError:
            return False
        if any((e.min_time, e.max_time, e.size) not in have for e in ents):
            return False
    return True


def replay_wal(opened: OpenShard, shard: Shard, *, salvage: bool = False, findings: list | None = None) -> Cache:
    """Replay the shard's WAL segments in influxd's order. A torn last entry ends a segment, as in
    influxd. Damage followed by valid entries (which influxd would silently drop) is refused,
    or with ``salvage`` skipped (the valid entries after it are kept) and reported."""
    cache = Cache()
    for seg in shard.wal:  # already in influxd's replay order
        cache.replay(opened.stream(seg), name=seg.origin, salvage=True)
    for name, corruption in cache.corruptions:
        if corruption.resume is not None:
            err = corruption.error
            if seg_member := next((f for f in shard.wal if f.origin == name), None):
                err.located(path=seg_member.container, member=seg_member.member)
            if not salvage:
                raise err
            _note(findings, err, "damaged WAL entry skipped", WAL_DAMAGED_ENTRY)
    return cache


def _note(findings: list | None, exc: ArchiveError, what: str, code: str) -> None:
    if findings is not None:
        f = Finding.from_error(exc)
        findings.append(Finding(f.severity, f"{what}: {f.message}", f.path, f.member, f.offset, code=code))


@contextlib.contextmanager
def open_shard_reader(src: Source, shard: Shard, *, tmpdir: str | None = None) -> Iterator[ShardReader]:
    """A :class:`ShardReader` over ``shard``. For a source opened with ``salvage``, damaged files
    and blocks are left out and reported in ``src.findings``."""
    with src.open_shard(shard, tmpdir=tmpdir) as opened:
        parts = load_shard_files(opened, shard, salvage=src.salvage, findings=src.findings)
        damaged: list | None = [] if src.salvage else None
        try:
            yield ShardReader(parts.layers, parts.cache, damaged=damaged)
        finally:
            for exc in damaged or []:
                _note(src.findings, exc, "damaged block left out", BLOCK_LEFT_OUT)


@dataclass
class IndexSummary:
    series: int
    min_time: int | None
    max_time: int | None


def shard_index_summary(src: Source, shard: Shard, *, tmpdir: str | None = None) -> IndexSummary:
    """Series count and time extent from TSM indexes (keys fully deleted by tombstones left out)
    and the WAL cache; no block is decoded."""
    series, lo, hi = shard_served_keys(src, shard, fold=series_of, tmpdir=tmpdir)
    return IndexSummary(len(series), lo, hi)


def shard_served_keys(
    src: Source, shard: Shard, *, fold: Callable[[bytes], bytes] = lambda key: key, tmpdir: str | None = None,
    salvage: bool = False, findings: list | None = None,
) -> tuple[set[bytes], int | None, int | None]:
    """``fold`` of every key the shard serves (TSM index keys not fully deleted by their
    tombstones, and the WAL cache's keys) and their time extent; no block is decoded."""
    keys: set[bytes] = set()
    lo: int | None = None
    hi: int | None = None
    if not shard.layers() and not shard.wal:
        return keys, lo, hi
    with src.open_shard(shard, tmpdir=tmpdir) as opened:
        parts = load_shard_files(opened, shard, salvage=salvage, findings=findings)
        for reader, tset in parts.layers:
            for key, _btype, entries in reader.iter_index():
                kmin = entries[0].min_time
                kmax = max(e.max_time for e in entries)
                if tset is not None and key in tset and tset.key_deleted_fully(key, kmin, kmax):
                    continue
                keys.add(fold(key))
                lo = kmin if lo is None else min(lo, kmin)
                hi = kmax if hi is None else max(hi, kmax)
        if parts.cache is not None:
            for key in parts.cache.keys():
                _bt, ts, _vs = parts.cache.values(key)
                if ts:
                    keys.add(fold(key))
                    lo = ts[0] if lo is None else min(lo, ts[0])
                    hi = ts[-1] if hi is None else max(hi, ts[-1])
    return keys, lo, hi
