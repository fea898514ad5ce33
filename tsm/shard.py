"""What influxd would serve from one shard: TSM files + their tombstones + the WAL cache
(docs/formats.md#reading-across-files, #tombstone-application, #wal-replay, #edge-cases).

:class:`ShardReader` combines, one key at a time (never the whole shard in memory):

* the shard's TSM files, given **oldest to newest** by (generation, sequence) (file name order);
* each file's :class:`~influx_archive.tsm.tombstone.TombstoneSet`, applied to that file only,
  with influxd's rules (a key can vanish from a file; deleted ranges drop values; a block inside a
  deleted range is skipped);
* the :class:`~influx_archive.tsm.wal.Cache` rebuilt from the WAL, if any.

Precedence for equal timestamps, highest first (docs/formats.md#reading-across-files): the cache, then the later file,
then — inside one file — the block whose index entry comes later (influxd's own order there comes from an
unstable sort; its writer never produces such files).

Duplicate timestamps *inside one block* (docs/formats.md#reading-across-files, #edge-cases): influxd serves both
points, and so does this reader as long as the block is not merged with another source: a raw copy keeps the block's
bytes, and a block decoded alone (because a tombstone or the requested range cuts it) keeps its values in
stored order. Only a merge of overlapping sources deduplicates, keeping the last value per
timestamp in precedence order — which is what influxd's merges and compactions do.

:meth:`ShardReader.iter_blocks` is the copy-without-decode path: a block that overlaps no other block
of its key (in any file or the cache), is untouched by its file's tombstones and lies inside the
requested range is yielded as a :class:`RawFrame` (CRC verified); everything else is decoded, merged,
filtered and yielded as :class:`Values` chunks of at most ``chunk_size`` points. The output is in time
order and its parts do not overlap.
"""

from __future__ import annotations

import bisect
import heapq
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar, cast

from ..archive.errors import ArchiveError, ChecksumError, FormatError, show
from .block import BLOCK_TYPE_NAMES, MAX_POINTS_PER_BLOCK, count_values, decode_block
from .compiled import core as _compiled
from .format import tsmfile as fmt
from .tombstone import KeyDeletion, TombstoneSet, filter_ranges
from .wal import Cache


def _in_order(ts: Sequence[int]) -> bool:
    """Timestamps never decreasing (equal neighbours allowed)."""
    if _compiled is not None:
        bad = _compiled.int64_order(ts, False)
        if bad is not None:
            return bad < 0
    return all(map(operator.le, ts, islice(ts, 1, None)))

#: Most merged values held at once while merging blocks whose time ranges overlap (about 40 MB);
#: larger overlapping groups are merged window by window (``ShardReader._merge_windows``).
MERGE_BUDGET = 250_000

_T = TypeVar("_T")

_MIN = -(1 << 63)
_MAX = (1 << 63) - 1
_NOTHING = KeyDeletion(False, ())


@dataclass(frozen=True, slots=True)
class RawFrame:
    """A stored block that can be copied unchanged: ``frame`` is CRC + block bytes."""

    entry: Any  # the source file's index entry (min_time, max_time, offset, size)
    frame: bytes
    min_time: int
    max_time: int
    block_type: int
    file: int  # index of the source file in the ShardReader's ``files``


@dataclass(frozen=True, slots=True)
class Values:
    """Decoded points, in time order (see the module docstring for duplicates)."""

    timestamps: list[int]
    values: list[Any]


@dataclass(slots=True)
class _Piece:
    """One source of values for a key: a TSM block, or the cache (``entry is None``)."""

    rank: tuple[int, int]  # precedence: (file index, entry index); the cache ranks above all files
    min_time: int
    max_time: int
    file: int
    entry: Any = None
    ranges: tuple[tuple[int, int], ...] = ()  # deleted ranges of this piece's file for the key
    timestamps: list[int] | None = None  # cache values, already final
    values: list[Any] | None = None


class ShardReader:
    """Read a shard the way influxd serves it. ``files`` are ``(TSMReader, TombstoneSet | None)``
    pairs ordered oldest to newest; ``cache`` is the replayed WAL or ``None``."""

    def __init__(
        self,
        files: Sequence[tuple[Any, TombstoneSet | None]],
        cache: Cache | None = None,
        *,
        chunk_size: int = MAX_POINTS_PER_BLOCK,
        damaged: list[ArchiveError] | None = None,
    ) -> None:
        self.files = list(files)
        self.cache = cache
        self.chunk_size = chunk_size
        #: salvage mode when a list: blocks that fail their CRC or do not decode are left out and
        #: their errors appended here, instead of raised
        self.damaged = damaged
        self._reported: set[int] = set()

    # ---- keys ---------------------------------------------------------------------------

    def keys(self) -> Iterator[bytes]:
        """Every key with data in some file (not removed by that file's tombstones) or in the
        cache, ascending, streamed (a heap merge of the files' key iterators). A key whose values
        are all removed by partial tombstone ranges (not by influxd's whole-key rule) is still
        listed and reads as empty."""
        streams: list[Iterable[bytes]] = [self._live_keys(i) for i in range(len(self.files))]
        if self.cache is not None:
            streams.append(self.cache.keys())
        last = None
        for key in heapq.merge(*streams):
            if key != last:
                yield key
                last = key

    def key_lists(self) -> list[list[bytes]]:
        """The keys :meth:`keys` merges, one ascending list per source (each file's keys not
        removed by its tombstones, then the cache's when there is one), not merged: for callers
        that need the union only, not its order."""
        out = []
        for i, (reader, tombs) in enumerate(self.files):
            out.append(list(reader.keys()) if tombs is None else list(self._live_keys(i)))
        if self.cache is not None:
            out.append(list(self.cache.keys()))
        return out

    def _live_keys(self, i: int) -> Iterator[bytes]:
        reader, tombs = self.files[i]
        for key in reader.keys():
            if tombs is not None and key in tombs and self._deletion(i, key)[1].deleted:
                continue
            yield key

    def _deletion(self, i: int, key: bytes) -> tuple[list[Any], KeyDeletion]:
        """(index entries of ``key`` in file ``i``, what its tombstones do to the key)."""
        reader, tombs = self.files[i]
        entries = _entries(reader, key)
        if not entries or tombs is None or key not in tombs:
            return entries, _NOTHING
        return entries, tombs.state(key, entries[0].min_time, entries[-1].max_time)

    # ---- values -------------------------------------------------------------------------

    def block_type(self, key: bytes) -> int:
        """TSM block type (0..4) of ``key``; :class:`FormatError` if sources disagree,
        ``KeyError`` if no source has the key (files whose tombstones remove it do not count)."""
        return self._plan(key, _MIN, _MAX)[0]

    def iter_blocks(self, key: bytes, start: int | None = None, end: int | None = None) -> Iterator[RawFrame | Values]:
        """The final data of ``key`` with ``start <= t <= end`` (inclusive; ``None`` = unbounded),
        as raw frames where possible and decoded chunks elsewhere (module docstring)."""
        lo = _MIN if start is None else start
        hi = _MAX if end is None else end
        block_type, pieces = self._plan(key, lo, hi)
        return self._parts(key, block_type, pieces, lo, hi, raw=True)

    def iter_key(
        self, key: bytes, start: int | None = None, end: int | None = None
    ) -> tuple[int, Iterator[RawFrame | Values]]:
        """``(block_type, parts)``: :meth:`iter_blocks` with the key's block type, for writers."""
        lo = _MIN if start is None else start
        hi = _MAX if end is None else end
        block_type, pieces = self._plan(key, lo, hi)
        return block_type, self._parts(key, block_type, pieces, lo, hi, raw=True)

    def read(self, key: bytes, start: int | None = None, end: int | None = None) -> tuple[int, list[int], list[Any]]:
        """``(block_type, timestamps, values)`` of ``key`` in ``[start, end]``, as served."""
        lo = _MIN if start is None else start
        hi = _MAX if end is None else end
        block_type, pieces = self._plan(key, lo, hi)
        ts: list[int] = []
        vs: list[Any] = []
        for part in self._parts(key, block_type, pieces, lo, hi, raw=False):
            part = cast(Values, part)  # raw=False: decoded chunks only
            ts.extend(part.timestamps)
            vs.extend(part.values)
        return block_type, ts, vs

    def point_count(self, key: bytes, start: int | None = None, end: int | None = None) -> int:
        """Number of values of ``key`` in ``[start, end]`` (raw frames: timestamps decoded only)."""
        n = 0
        for part in self.iter_blocks(key, start, end):
            if isinstance(part, RawFrame):
                n += self._located(part, count_values, key)
            else:
                n += len(part.timestamps)
        return n

    def decode_frame(self, key: bytes, part: RawFrame) -> tuple[list[int], list[Any]]:
        """``(timestamps, values)`` of a raw frame yielded by :meth:`iter_blocks`, with errors
        naming its file and absolute offset."""
        _typ, ts, vs = self._located(part, decode_block, key)
        return ts, vs

    def _located(self, part: RawFrame, fn: Callable[[bytes], _T], key: bytes) -> _T:
        try:
            return fn(part.frame[fmt.BLOCK_OFFSET :])
        except FormatError as exc:
            rel = exc.offset or 0
            raise FormatError(
                f"block of key {key!r}: {exc.message}",
                path=_file_name(self.files[part.file][0], part.file),
                offset=part.entry.offset + fmt.BLOCK_OFFSET + rel,
                field=exc.field,
            ) from exc

    def _plan(self, key: bytes, lo: int, hi: int) -> tuple[int, list[_Piece]]:
        """The key's block type and its sources overlapping ``[lo, hi]``, tombstones resolved."""
        pieces: list[_Piece] = []
        types: list[tuple[int, str]] = []
        for i in range(len(self.files)):
            entries, deletion = self._deletion(i, key)
            if not entries or deletion.deleted:
                continue
            reader = self.files[i][0]
            types.append((reader.block_type(key), _file_name(reader, i)))
            ranges = deletion.ranges  # merged: sorted and disjoint, so starts and ends both ascend
            starts = [a for a, _ in ranges]
            ends = [b for _, b in ranges]
            for j, e in enumerate(entries):
                if e.max_time < lo or e.min_time > hi:
                    continue
                # the ranges meeting the block, by bisection (a scan per block was O(blocks x ranges))
                touching = ranges[bisect.bisect_left(ends, e.min_time) : bisect.bisect_right(starts, e.max_time)]
                if len(touching) == 1 and touching[0][0] <= e.min_time and touching[0][1] >= e.max_time:
                    continue  # every value of the block is deleted (docs/formats.md#tombstone-application)
                pieces.append(_Piece((i, j), e.min_time, e.max_time, i, e, tuple(touching)))
        if self.cache is not None and key in self.cache:
            typ, ts, vs = self.cache.values(key)
            types.append((typ, "the WAL cache"))
            if ts and (ts[0] < lo or ts[-1] > hi):
                keep = [k for k, t in enumerate(ts) if lo <= t <= hi]
                ts = [ts[k] for k in keep]
                vs = [vs[k] for k in keep]
            if ts:
                pieces.append(_Piece((len(self.files), 0), ts[0], ts[-1], -1, None, (), ts, vs))
        if not types:
            raise KeyError(key)
        first, first_where = types[0]
        for typ, where in types[1:]:
            if typ != first:
                raise FormatError(
                    f"key {show(key)} is {BLOCK_TYPE_NAMES.get(first, first)} in {first_where} but "
                    f"{BLOCK_TYPE_NAMES.get(typ, typ)} in {where}; influxd cannot serve or compact it",
                    path=where if where != "the WAL cache" else None,
                    field="block type",
                )
        return first, pieces

    def _parts(
        self, key: bytes, block_type: int, pieces: list[_Piece], lo: int, hi: int, *, raw: bool
    ) -> Iterator[RawFrame | Values]:
        """Group pieces whose time ranges overlap (inclusive) and emit each group in time order;
        ``raw``: lone untouched blocks as :class:`RawFrame` (else decoded like the rest)."""
        pieces.sort(key=lambda p: (p.min_time, p.rank))
        group: list[_Piece] = []
        group_max = _MIN
        for piece in pieces:
            if group and piece.min_time > group_max:
                yield from self._emit(key, block_type, group, lo, hi, raw)
                group = []
            if not group or piece.max_time > group_max:
                group_max = piece.max_time
            group.append(piece)
        if group:
            yield from self._emit(key, block_type, group, lo, hi, raw)

    def _emit(
        self, key: bytes, block_type: int, group: list[_Piece], lo: int, hi: int, raw: bool
    ) -> Iterator[RawFrame | Values]:
        if len(group) == 1:
            piece = group[0]
            if raw and piece.entry is not None and not piece.ranges and lo <= piece.min_time and piece.max_time <= hi:
                try:
                    frame = self._raw(key, block_type, piece)
                except (ChecksumError, FormatError) as exc:
                    if self.damaged is None:
                        raise
                    self.damaged.append(exc)
                    return
                yield frame
                return
            ts, vs = self._decode_salvaged(key, piece, lo, hi)
        else:
            merged: dict[int, Any] = {}
            ranked = sorted(group, key=lambda p: p.rank)
            for piece in ranked:
                t, v = self._decode_salvaged(key, piece, lo, hi)
                merged.update(zip(t, v))
                if len(merged) > MERGE_BUDGET:
                    del merged, t, v
                    yield from self._merge_windows(key, ranked, lo, hi)
                    return
            ts = sorted(merged)
            vs = [merged[t] for t in ts]
        size = self.chunk_size
        for k in range(0, len(ts), size):
            yield Values(ts[k : k + size], vs[k : k + size])

    def _merge_windows(self, key: bytes, ranked: list[_Piece], lo: int, hi: int) -> Iterator[Values]:
        """The merge of a large overlapping group (pieces in precedence order) in time windows,
        so that at most about :data:`MERGE_BUDGET` merged values (plus one decoded block) are held
        at once. One pass finds each piece's real time span (its values may lie outside its index
        entry's); then each window decodes only the pieces whose span meets it, and shrinks when it
        would hold more than the budget. Chains of overlapping blocks (backfills across files)
        cost one or two decodes per block; blocks that all span the same time cost one decode per
        window each (slow, but still within the memory bound)."""
        spans: list[tuple[int, int, int]] = []  # (first, last, index in ranked)
        total = 0
        for i, piece in enumerate(ranked):
            t, _v = self._decode_salvaged(key, piece, lo, hi)
            if t:
                spans.append((min(t), max(t), i))
                total += len(t)
        if not spans:
            return
        spans.sort()
        a = spans[0][0]
        end = max(last for _, last, _ in spans)
        width = max(1, (end - a + 1) * MERGE_BUDGET // (2 * total))
        nxt = 0  # spans[:nxt] have started (first <= window end)
        active: list[tuple[int, int, int]] = []
        while a <= end:
            b = min(end, a + width - 1)
            while nxt < len(spans) and spans[nxt][0] <= b:
                active.append(spans[nxt])
                nxt += 1
            active = [sp for sp in active if sp[1] >= a]
            merged: dict[int, Any] = {}
            over = False
            for _f, _l, i in sorted(active, key=lambda sp: sp[2]):  # precedence order
                t, v = self._decode_salvaged(key, ranked[i], a, b)
                if t and (min(t) < a or max(t) > b):  # values outside the block's index range
                    keep = [k for k, x in enumerate(t) if a <= x <= b]
                    t, v = [t[k] for k in keep], [v[k] for k in keep]
                merged.update(zip(t, v))
                if len(merged) > MERGE_BUDGET and b > a:
                    over = True
                    break
            if over:
                width = max(1, (b - a + 1) // 2)
                continue
            ts = sorted(merged)
            vs = [merged[t] for t in ts]
            del merged
            size = self.chunk_size
            for k in range(0, len(ts), size):
                yield Values(ts[k : k + size], vs[k : k + size])
            if len(ts) < MERGE_BUDGET // 4:
                width *= 2
            a = b + 1

    def _decode_salvaged(self, key: bytes, piece: _Piece, lo: int, hi: int) -> tuple[list[int], list[Any]]:
        try:
            return self._decode(key, piece, lo, hi)
        except FormatError as exc:  # ChecksumError included
            if self.damaged is None:
                raise
            if id(piece) not in self._reported:  # a windowed merge may decode a piece again
                self._reported.add(id(piece))
                self.damaged.append(exc)
            return [], []

    def _decode(self, key: bytes, piece: _Piece, lo: int, hi: int) -> tuple[list[int], list[Any]]:
        if piece.entry is None:
            return piece.timestamps or [], piece.values or []
        ts, vs = self.files[piece.file][0].decode_block(key, piece.entry)
        if piece.ranges:
            ts, vs = filter_ranges(piece.ranges, ts, vs)
        if lo > piece.min_time or hi < piece.max_time:
            if _in_order(ts):  # stored order (always, from influxd)
                a, b = bisect.bisect_left(ts, lo), bisect.bisect_right(ts, hi)
                ts, vs = ts[a:b], vs[a:b]
            else:
                keep = [k for k, t in enumerate(ts) if lo <= t <= hi]
                ts = [ts[k] for k in keep]
                vs = [vs[k] for k in keep]
        return list(ts), list(vs)

    def _raw(self, key: bytes, block_type: int, piece: _Piece) -> RawFrame:
        reader = self.files[piece.file][0]
        frame = reader.read_frame(piece.entry)
        if len(frame) <= fmt.CRC_SIZE or not fmt.frame_crc_ok(frame):
            raise ChecksumError(
                f"block CRC mismatch for key {show(key)}",
                path=_file_name(reader, piece.file),
                offset=piece.entry.offset,
                field="crc",
            )
        out = RawFrame(piece.entry, bytes(frame), piece.min_time, piece.max_time, block_type, piece.file)
        # A frame copied unchanged is never decoded here: still refuse one whose timestamp section
        # claims more values than any reader should allocate (cheap: header and lengths only).
        self._located(out, count_values, key)
        return out


def _entries(reader: Any, key: bytes) -> list[Any]:
    try:
        return list(reader.entries(key))
    except KeyError:
        return []


def _file_name(reader: Any, i: int) -> str:
    name = getattr(reader, "name", None)
    return str(name) if name else f"TSM file #{i}"


__all__ = ["RawFrame", "ShardReader", "Values"]
