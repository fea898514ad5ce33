"""What influxd would serve from one shard: TSM files + their tombstones + the WAL cache (TSM_WAL.md
§1.10, §3.5, §4.6, §6).

:class:`ShardReader` combines, one key at a time (never the whole shard in memory):

* the shard's TSM files, given **oldest to newest** by (generation, sequence) (file name order);
* each file's :class:`~influx_archive.tsm.tombstone.TombstoneSet`, applied to that file only,
  with influxd's rules (a key can vanish from a file; deleted ranges drop values; a block inside a
  deleted range is skipped);
* the :class:`~influx_archive.tsm.wal.Cache` rebuilt from the WAL, if any.

Precedence for equal timestamps, highest first (§1.10): the cache, then the later file, then —
inside one file — the block whose index entry comes later (influxd's own order there comes from an
unstable sort; its writer never produces such files).

Duplicate timestamps *inside one block* (§1.10, §6): influxd serves both points, and so does this
reader as long as the block is not merged with another source: a raw copy keeps the block's bytes,
and a block decoded alone (because a tombstone or the requested range cuts it) keeps its values in
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
import zlib
from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterable, Iterator, Sequence

from ..archive.errors import ChecksumError, FormatError, show
from .block import BLOCK_TYPE_NAMES, MAX_POINTS_PER_BLOCK, decode_timestamps
from .tombstone import KeyDeletion, TombstoneSet, filter_ranges
from .compiled import core as _compiled
from .wal import Cache


def _in_order(ts: Sequence[int]) -> bool:
    """Timestamps never decreasing (equal neighbours allowed)."""
    if _compiled is not None:
        bad = _compiled.int64_order(ts, False)
        if bad is not None:
            return bad < 0
    return all(map(operator.le, ts, islice(ts, 1, None)))

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
    values: list


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
    values: list | None = None


class ShardReader:
    """Read a shard the way influxd serves it. ``files`` are ``(TSMReader, TombstoneSet | None)``
    pairs ordered oldest to newest; ``cache`` is the replayed WAL or ``None``."""

    def __init__(
        self,
        files: Sequence[tuple[Any, TombstoneSet | None]],
        cache: Cache | None = None,
        *,
        chunk_size: int = MAX_POINTS_PER_BLOCK,
        damaged: list | None = None,
    ) -> None:
        self.files = list(files)
        self.cache = cache
        self.chunk_size = chunk_size
        #: salvage mode when a list: blocks that fail their CRC or do not decode are left out and
        #: their errors appended here, instead of raised
        self.damaged = damaged

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

    def _live_keys(self, i: int) -> Iterator[bytes]:
        reader, tombs = self.files[i]
        for key in reader.keys():
            if tombs is not None and key in tombs and self._deletion(i, key)[1].deleted:
                continue
            yield key

    def _deletion(self, i: int, key: bytes) -> tuple[list, KeyDeletion]:
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

    def read(self, key: bytes, start: int | None = None, end: int | None = None) -> tuple[int, list[int], list]:
        """``(block_type, timestamps, values)`` of ``key`` in ``[start, end]``, as served."""
        lo = _MIN if start is None else start
        hi = _MAX if end is None else end
        block_type, pieces = self._plan(key, lo, hi)
        ts: list[int] = []
        vs: list = []
        for part in self._parts(key, block_type, pieces, lo, hi, raw=False):
            ts.extend(part.timestamps)
            vs.extend(part.values)
        return block_type, ts, vs

    def point_count(self, key: bytes, start: int | None = None, end: int | None = None) -> int:
        """Number of values of ``key`` in ``[start, end]`` (raw frames: timestamps decoded only)."""
        n = 0
        for part in self.iter_blocks(key, start, end):
            if isinstance(part, RawFrame):
                n += len(decode_timestamps(part.frame[4:]))
            else:
                n += len(part.timestamps)
        return n

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
            ranges = deletion.ranges
            for j, e in enumerate(entries):
                if e.max_time < lo or e.min_time > hi:
                    continue
                if any(a <= e.min_time and b >= e.max_time for a, b in ranges):
                    continue  # every value of the block is deleted (§3.5)
                touching = tuple((a, b) for a, b in ranges if a <= e.max_time and b >= e.min_time)
                pieces.append(_Piece((i, j), e.min_time, e.max_time, i, e, touching))
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
            for piece in sorted(group, key=lambda p: p.rank):
                t, v = self._decode_salvaged(key, piece, lo, hi)
                merged.update(zip(t, v))
            ts = sorted(merged)
            vs = [merged[t] for t in ts]
        size = self.chunk_size
        for k in range(0, len(ts), size):
            yield Values(ts[k : k + size], vs[k : k + size])

    def _decode_salvaged(self, key: bytes, piece: _Piece, lo: int, hi: int) -> tuple[list[int], list]:
        try:
            return self._decode(key, piece, lo, hi)
        except FormatError as exc:  # ChecksumError included
            if self.damaged is None:
                raise
            self.damaged.append(exc)
            return [], []

    def _decode(self, key: bytes, piece: _Piece, lo: int, hi: int) -> tuple[list[int], list]:
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
        if len(frame) < 5 or int.from_bytes(frame[:4], "big") != zlib.crc32(frame[4:]):
            raise ChecksumError(
                f"block CRC mismatch for key {show(key)}",
                path=_file_name(reader, piece.file),
                offset=piece.entry.offset,
                field="crc",
            )
        return RawFrame(piece.entry, bytes(frame), piece.min_time, piece.max_time, block_type, piece.file)


def _entries(reader: Any, key: bytes) -> list:
    try:
        return list(reader.entries(key))
    except KeyError:
        return []


def _file_name(reader: Any, i: int) -> str:
    name = getattr(reader, "name", None)
    return str(name) if name else f"TSM file #{i}"


__all__ = ["RawFrame", "ShardReader", "Values"]
