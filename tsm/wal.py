"""WAL segments: read them the way influxd replays them, write them, and rebuild the cache (docs/formats.md#wal).

Reading (:func:`iter_wal`) mirrors influxd 1.6.7's ``WALSegmentReader`` (``tsdb/engine/tsm1/wal.go``):
entries are checked in influxd's order — 5-byte header, payload length, snappy block data, entry
type, payload — and on the **first** failure influxd logs ``File corrupt``, truncates the segment
at the end of the last good entry and moves on to the next segment (docs/formats.md#wal-damage). :func:`iter_wal` yields
the good entries and then one :class:`WALCorruption` naming that truncation offset; it never raises
for a damaged segment unless ``strict=True`` (then :class:`TruncatedError` for a cut entry,
:class:`FormatError` for anything else). ``salvage=True`` goes further than influxd: after the
damage it looks for the next offset where a complete, valid entry starts (e.g. after the zero-filled
hole of docs/formats.md#wal-damage bug 1) and continues from there, reporting the skipped span.

Guards influxd lacks: entry and snappy lengths are checked against the bytes actually present
before anything is allocated.

A write entry is decoded into a dict like influxd does (its payload is a Go map), so a key that
appears twice inside one entry keeps only its last group. Values are ``(timestamp, value)`` tuples:
float, int (integer and unsigned), bool, bytes.

:class:`WALWriter` writes entries (snappy block format via ``cramjam.snappy.compress_raw``) and
:class:`Cache` replays segments into what influxd's cache holds after a restart (docs/formats.md#wal-replay): segments
in byte-wise name order, writes appended per key, deletes removing ``[min, max]``, values per key
deduplicated on read (stable sort by time, the **last written** value wins).
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import os
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import cramjam

from ..archive.errors import FormatError, TruncatedError, UnsupportedError, UsageError, show
from ..archive.untrusted import open_regular
from .compiled import core as _compiled  # the resynchronisation prefilter; None: the Python one
from .format import wal as fmt

Source = bytes | bytearray | memoryview | BinaryIO

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_UINT32_MAX = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class WriteEntry:
    """A write (type 0x01): ``values[key] = (wal_type, [(t, v), ...])`` in arrival order."""

    values: dict[bytes, tuple[int, list[tuple[int, Any]]]]
    offset: int = -1  # file offset of the entry header (-1: not read from a file)
    size: int = 0  # bytes on disk, header included

    entry_type = fmt.WRITE_ENTRY


@dataclass(frozen=True, slots=True)
class DeleteEntry:
    """Delete these keys for all time (type 0x02; influxd 1.6 reads but never writes it)."""

    keys: tuple[bytes, ...]
    offset: int = -1
    size: int = 0

    entry_type = fmt.DELETE_ENTRY


@dataclass(frozen=True, slots=True)
class DeleteRangeEntry:
    """Delete the values of these keys with ``min <= t <= max`` (type 0x03)."""

    keys: tuple[bytes, ...]
    min: int
    max: int
    offset: int = -1
    size: int = 0

    entry_type = fmt.DELETE_RANGE_ENTRY


WALEntry = WriteEntry | DeleteEntry | DeleteRangeEntry


@dataclass(frozen=True, slots=True)
class WALCorruption:
    """Where and why reading a segment stopped.

    ``offset`` is where influxd truncates the segment (end of the last good entry); everything from
    there on is lost to influxd. ``error`` locates the bad entry. With ``salvage``, ``resume`` is the
    offset where reading went on (``None``: nothing valid was found after the damage)."""

    offset: int
    reason: str
    error: FormatError
    resume: int | None = None


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


MAX_ENTRY_PAYLOAD = 32 << 20
"""Largest decompressed payload of one entry this reader inflates (checked on the snappy
preamble, before inflating). influxd writes one entry per write request and shard; 32 MiB is
about a million values in one request, over three times the 10 MiB segment roll size. Larger
entries raise :class:`FormatError` even where influxd would tolerate damage (a torn tail): such an
entry is not damage influxd would drop, so it must not be dropped silently either."""
RESYNC_WORK_FACTOR = 8
"""Salvage resynchronisation earns this many bytes of decoding per segment byte it scans (see
``_resync``): all its searches in one segment decode at most 2 x MAX_ENTRY_PAYLOAD plus this
factor times the segment."""


class _TooLarge(FormatError):
    """An entry whose declared payload is above :data:`MAX_ENTRY_PAYLOAD` (raised, never tolerated)."""


class _Bad(Exception):
    """Internal: an entry influxd would reject; converted to a FormatError by the caller."""

    def __init__(self, reason: str, *, truncated: bool = False, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.truncated = truncated
        self.field = field


def _open_source(src: Source) -> tuple[BinaryIO, int, int]:
    """(stream, start, size) of a segment given as bytes or a seekable binary stream."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    try:
        start = src.tell()
        size = src.seek(0, io.SEEK_END)
        src.seek(start)
    except (OSError, AttributeError, ValueError) as exc:
        raise UsageError("a WAL segment must be bytes or a seekable binary stream") from exc
    return src, start, size


def iter_wal(
    src: Source, *, name: str | None = None, strict: bool = False, salvage: bool = False
) -> Iterator[WALEntry | WALCorruption]:
    """Entries of one segment, in file order, each carrying its ``offset`` and ``size``.

    On damage: yields a final :class:`WALCorruption` (``strict=False``) or raises (``strict=True``).
    With ``salvage=True`` reading resumes at the next valid entry after the damage, each skipped
    span reported by a :class:`WALCorruption` with ``resume`` set."""
    stream, start, size = _open_source(src)
    if name is None:
        name = getattr(src, "name", None)
        if not isinstance(name, (str, os.PathLike)):
            name = None
    pos = start
    rest: bytes | None = None  # the segment from ``start``, read once at the first resynchronisation
    budget = [0]  # decoding left to all resynchronisations of this segment (set with ``rest``)
    while pos < size:
        try:
            entry, end = _read_entry(stream, pos, size)
        except _TooLarge as exc:
            raise FormatError(exc.message, path=name, offset=pos, field="payload") from None
        except _Bad as bad:
            cls = TruncatedError if bad.truncated else FormatError
            err = cls(f"WAL entry: {bad.reason}", path=name, offset=pos, field=bad.field)
            if strict:
                raise err from None
            resume = None
            if salvage:
                if rest is None:
                    stream.seek(start)
                    rest = stream.read(size - start)
                    budget = [2 * MAX_ENTRY_PAYLOAD]  # one maximal candidate pair, then earned by scanning
                found = _resync(rest, pos - start, budget)
                resume = None if found is None else start + found
            yield WALCorruption(pos, bad.reason, err, resume)
            if resume is None:
                return
            pos = resume
            continue
        yield entry
        pos = end


def _resync(data: bytes, bad: int, budget: list[int]) -> int | None:
    """First offset after ``bad`` in ``data`` (the segment's bytes) where a valid entry starts that
    is followed by the end of the segment or by another valid entry.

    Linear in the segment: :func:`_candidate` skips, with O(1) checks per offset on bytes already
    in memory, every offset where no entry can start (entry type, length within the segment,
    snappy preamble within :data:`MAX_ENTRY_PAYLOAD` and the snappy expansion bound, and the same
    at the candidate's end). Only the offsets left are decoded, and the decoding is paid from
    ``budget`` (bytes, shared by every search in one segment), which scanning earns at
    :data:`RESYNC_WORK_FACTOR` bytes per byte passed: a candidate whose claimed lengths cost more
    than the budget holds is skipped like an invalid one, so all searches of a segment decode at
    most 2 x MAX_ENTRY_PAYLOAD + RESYNC_WORK_FACTOR x its size. Whatever is skipped is reported
    as part of the damaged span (never kept unchecked, never dropped silently)."""
    n = len(data)
    view = io.BytesIO(data)
    head = fmt.ENTRY_LENGTH.unpack_from
    hsize = fmt.ENTRY_HEADER_SIZE
    length_at = fmt.ENTRY_LENGTH_OFFSET
    p = bad
    while True:
        prev = p
        p = _candidate(data, p + 1)
        if p < 0:
            return None
        budget[0] += RESYNC_WORK_FACTOR * (p - prev)
        end = p + hsize + head(data, p + length_at)[0]
        cost = end - p + (hsize + head(data, end + length_at)[0] if end < n else 0)
        if cost > budget[0]:
            continue
        budget[0] -= cost
        try:
            _entry, e = _read_entry(view, p, n)
            if e < n:
                _read_entry(view, e, n)
        except (_Bad, FormatError):  # FormatError: an entry above the payload cap resumes nothing
            continue
        return p


def _candidate(data: bytes, start: int) -> int:
    """First offset ``>= start`` where an entry could start (see :func:`_resync`), or -1."""
    if _compiled is not None:
        return _compiled.wal_candidate(data, start, MAX_ENTRY_PAYLOAD, fmt.SNAPPY_MAX_EXPANSION)
    n = len(data)
    find = data.find
    types = fmt.ENTRY_TYPES
    # next offset of each entry-type byte; each pointer only moves forward (bytes.find runs in C)
    nxt = {t: find(bytes((t,)), start) for t in types}
    while True:
        live = [q for q in nxt.values() if q >= 0]
        if not live:
            return -1
        p = min(live)
        for t in types:
            if nxt[t] == p:
                nxt[t] = find(bytes((t,)), p + 1)
        end = _plausible(data, n, p)
        if end < 0 or (end < n and _plausible(data, n, end) < 0):
            continue
        return p


def _plausible(data: bytes, n: int, p: int) -> int:
    """O(1): end of an entry that could start at ``p`` (type, length, snappy preamble), or -1."""
    if data[p] not in fmt.ENTRY_TYPES or p + fmt.ENTRY_HEADER_SIZE > n:
        return -1
    length: int = fmt.ENTRY_LENGTH.unpack_from(data, p + fmt.ENTRY_LENGTH_OFFSET)[0]
    at = p + fmt.ENTRY_HEADER_SIZE
    if length == 0 or length > n - at:
        return -1
    value = shift = 0
    for i in range(min(5, length)):
        b = data[at + i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value <= MAX_ENTRY_PAYLOAD and value <= fmt.SNAPPY_MAX_EXPANSION * length:
                return at + length
            return -1
        shift += 7
    return -1


def _read_entry(stream: BinaryIO, pos: int, size: int) -> tuple[WALEntry, int]:
    stream.seek(pos)
    avail = size - pos
    if avail < fmt.ENTRY_HEADER_SIZE:
        raise _Bad(f"unexpected EOF: {avail} of {fmt.ENTRY_HEADER_SIZE} header bytes", truncated=True, field="header")
    entry_type, length = fmt.ENTRY_HEADER.unpack(stream.read(fmt.ENTRY_HEADER_SIZE))
    if length > avail - fmt.ENTRY_HEADER_SIZE:
        raise _Bad(
            f"unexpected EOF: payload of {length} bytes, {avail - fmt.ENTRY_HEADER_SIZE} present",
            truncated=True,
            field="length",
        )
    payload = _snappy_decode(stream.read(length))
    if entry_type == fmt.WRITE_ENTRY:
        entry: WALEntry = WriteEntry(_decode_write(payload), pos, fmt.ENTRY_HEADER_SIZE + length)
    elif entry_type == fmt.DELETE_ENTRY:
        keys = tuple(payload.split(fmt.KEY_SEPARATOR)) if payload else ()
        entry = DeleteEntry(keys, pos, fmt.ENTRY_HEADER_SIZE + length)
    elif entry_type == fmt.DELETE_RANGE_ENTRY:
        mn, mx, keys = _decode_delete_range(payload)
        entry = DeleteRangeEntry(keys, mn, mx, pos, fmt.ENTRY_HEADER_SIZE + length)
    else:
        raise _Bad(f"unknown wal entry type: {entry_type}", field="type")
    return entry, pos + fmt.ENTRY_HEADER_SIZE + length


def _snappy_decode(data: bytes) -> bytes:
    """Snappy block format with the checks of Go's ``snappy.Decode`` (and a length bound)."""
    decoded_len = 0
    shift = 0
    for _i, b in enumerate(data[:10]):
        decoded_len |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
    else:
        raise _Bad("snappy: corrupt input (bad length header)", field="payload")
    if decoded_len > _UINT32_MAX:
        raise _Bad("snappy: decoded block is too large", field="payload")
    if decoded_len > fmt.SNAPPY_MAX_EXPANSION * len(data):
        raise _Bad(f"snappy: corrupt input (claims {decoded_len} bytes from {len(data)})", field="payload")
    if decoded_len > MAX_ENTRY_PAYLOAD:
        raise _TooLarge(
            f"WAL entry: snappy payload declares {decoded_len} bytes, more than the limit of "
            f"{MAX_ENTRY_PAYLOAD} (MAX_ENTRY_PAYLOAD); refused before inflating"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except cramjam.DecompressionError as exc:
        raise _Bad(f"snappy: corrupt input ({exc})", field="payload") from None


def _decode_write(b: bytes) -> dict[bytes, tuple[int, list[tuple[int, Any]]]]:
    """Write payload (docs/formats.md#wal-write) with influxd's checks, in its order
    (``WriteWALEntry.UnmarshalBinary``)."""
    out: dict[bytes, tuple[int, list[tuple[int, Any]]]] = {}
    n = len(b)
    i = 0
    fixed = fmt.FIXED_VALUE
    klen_size = fmt.GROUP_KEYLEN.size
    count_size = fmt.GROUP_COUNT.size
    while i < n:
        typ = b[i]
        i += 1
        if i + klen_size > n:
            raise _Bad("write entry: key length cut short", field="payload")
        (klen,) = fmt.GROUP_KEYLEN.unpack_from(b, i)
        i += klen_size
        if i + klen > n:
            raise _Bad("write entry: key cut short", field="payload")
        key = b[i : i + klen]
        i += klen
        if i + count_size > n:
            raise _Bad("write entry: value count cut short", field="payload")
        (count,) = fmt.GROUP_COUNT.unpack_from(b, i)
        i += count_size
        if count == 0 or count > n:
            raise _Bad(f"write entry: value count {count} for a {n}-byte payload", field="payload")
        vs = fixed.get(typ)
        if vs is not None:
            end = i + vs.size * count
            if end > n:
                raise _Bad(f"write entry: {count} values need {vs.size * count} bytes, {n - i} left", field="payload")
            if typ == fmt.WAL_BOOLEAN:
                values = [(t, v == 1) for t, v in vs.iter_unpack(b[i:end])]
            else:
                values = list(vs.iter_unpack(b[i:end]))
            i = end
        elif typ == fmt.WAL_STRING:
            values = []
            head = fmt.STRING_HEAD.unpack_from
            head_size = fmt.STRING_HEAD.size
            for _ in range(count):
                if i + head_size > n:
                    raise _Bad("write entry: string value cut short", field="payload")
                t, slen = head(b, i)
                i += head_size
                if i + slen > n:
                    raise _Bad("write entry: string value cut short", field="payload")
                values.append((t, b[i : i + slen]))
                i += slen
        else:
            raise _Bad(f"unsupported value type: {typ:#x}", field="payload")
        out[key] = (typ, values)
    return out


def _decode_delete_range(b: bytes) -> tuple[int, int, tuple[bytes, ...]]:
    n = len(b)
    if n < fmt.DELETE_RANGE_HEAD.size:
        raise _Bad(f"delete-range entry of {n} bytes (needs {fmt.DELETE_RANGE_HEAD.size})", field="payload")
    mn, mx = fmt.DELETE_RANGE_HEAD.unpack_from(b)
    keys = []
    i = fmt.DELETE_RANGE_HEAD.size
    while i < n:
        if i + fmt.DELETE_RANGE_KEYLEN.size > n:
            raise _Bad("delete-range entry: key length cut short", field="payload")
        (klen,) = fmt.DELETE_RANGE_KEYLEN.unpack_from(b, i)
        i += fmt.DELETE_RANGE_KEYLEN.size
        if i + klen > n:
            raise _Bad("delete-range entry: key cut short", field="payload")
        keys.append(b[i : i + klen])
        i += klen
    return mn, mx, tuple(keys)


def read_wal(src: Source, *, name: str | None = None) -> list[WALEntry]:
    """All entries of a segment; raises on any damage (``iter_wal(strict=True)``)."""
    return list(iter_wal(src, name=name, strict=True))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class WALWriter:
    """Appends entries to a segment stream. Rolling to a new segment (influxd starts one before a
    write once the current exceeds 10 MiB, ``fmt.SEGMENT_ROLL_SIZE``) is the caller's job; see
    :attr:`size`."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        #: Bytes written through this writer.
        self.size = 0

    def write(self, values: Mapping[bytes, tuple[int, Sequence[tuple[int, Any]]]]) -> int:
        """A write entry: ``{key: (wal_type, [(t, v), ...])}`` in the given key order. Returns the
        entry's size on disk."""
        if not values:
            raise UsageError("a WAL write entry needs at least one key")
        parts = []
        for key, (typ, vals) in values.items():
            parts.append(_encode_group(bytes(key), typ, vals))
        return self._emit(fmt.WRITE_ENTRY, b"".join(parts))

    def delete(self, keys: Iterable[bytes]) -> int:
        """A delete entry (all time). influxd 1.6 never writes one but replays it."""
        keys = [bytes(k) for k in keys]
        _check_keys(keys)
        for k in keys:
            if fmt.KEY_SEPARATOR in k:
                raise UnsupportedError(f"a delete entry cannot hold a key containing a newline: {show(k)}")
        return self._emit(fmt.DELETE_ENTRY, fmt.KEY_SEPARATOR.join(keys))

    def delete_range(self, keys: Iterable[bytes], min: int, max: int) -> int:
        """A delete-range entry: values of ``keys`` with ``min <= t <= max``."""
        keys = [bytes(k) for k in keys]
        _check_keys(keys)
        if not (_INT64_MIN <= min <= max <= _INT64_MAX):
            raise UnsupportedError(f"delete range [{min}, {max}] is not an int64 interval")
        payload = fmt.DeleteRangePayload.build({"min": min, "max": max, "keys": keys})
        return self._emit(fmt.DELETE_RANGE_ENTRY, payload)

    def write_entry(self, entry: WALEntry) -> int:
        """Write any entry object (e.g. one read by :func:`iter_wal`)."""
        if isinstance(entry, WriteEntry):
            return self.write(entry.values)
        if isinstance(entry, DeleteEntry):
            return self.delete(entry.keys)
        if isinstance(entry, DeleteRangeEntry):
            return self.delete_range(entry.keys, entry.min, entry.max)
        raise UsageError(f"not a WAL entry: {entry!r}")

    def _emit(self, entry_type: int, payload: bytes) -> int:
        compressed = bytes(cramjam.snappy.compress_raw(payload))
        if len(compressed) > _UINT32_MAX:
            raise UnsupportedError("WAL entry larger than 4 GiB")
        frame = fmt.EntryHeader.build({"type": entry_type, "length": len(compressed)}) + compressed
        self._stream.write(frame)
        self.size += len(frame)
        return len(frame)


def _check_keys(keys: list[bytes]) -> None:
    if not keys:
        raise UsageError("a WAL delete entry needs at least one key")
    for k in keys:
        if not k or len(k) > fmt.MAX_KEY_LEN:
            raise UnsupportedError(f"WAL key must be 1..{fmt.MAX_KEY_LEN} bytes, got {len(k)}")


def _encode_group(key: bytes, typ: int, vals: Sequence[tuple[int, Any]]) -> bytes:
    if not key or len(key) > fmt.MAX_KEY_LEN:
        raise UnsupportedError(f"WAL key must be 1..{fmt.MAX_KEY_LEN} bytes, got {len(key)}")
    if typ not in fmt.WAL_TYPE_NAMES:
        raise UsageError(f"unknown WAL value type {typ} (1 float, 2 integer, 3 boolean, 4 string, 5 unsigned)")
    n = len(vals)
    if n == 0:
        raise UsageError(f"WAL write group for {show(key)} has no values (influxd rejects count 0)")
    head = fmt.GROUP_TYPE_KEYLEN.pack(typ, len(key)) + key + fmt.GROUP_COUNT.pack(n)
    flat: list[Any] = []
    try:
        if typ == fmt.WAL_STRING:
            parts = [head]
            for t, v in vals:
                v = bytes(v)
                if len(v) > _UINT32_MAX:
                    raise UnsupportedError(f"string value of {len(v)} bytes for {show(key)}")
                parts.append(fmt.STRING_HEAD.pack(t, len(v)))
                parts.append(v)
            return b"".join(parts)
        for t, v in vals:
            if typ == fmt.WAL_BOOLEAN:
                if not isinstance(v, bool):
                    raise UnsupportedError(f"boolean value expected for {show(key)}, got {v!r}")
                v = int(v)
            elif typ == fmt.WAL_FLOAT:
                if not isinstance(v, (float, int)) or isinstance(v, bool):
                    raise UnsupportedError(f"float value expected for {show(key)}, got {v!r}")
                if math.isnan(v):
                    raise UnsupportedError(f"NaN cannot be stored (TSM has no encoding for it): {show(key)} at {t}")
            elif not isinstance(v, int) or isinstance(v, bool):
                raise UnsupportedError(f"{fmt.WAL_TYPE_NAMES[typ]} value expected for {show(key)}, got {v!r}")
            flat.append(t)
            flat.append(v)
        return head + struct.pack(">" + fmt.FIXED_VALUE[typ].format[1:] * n, *flat)
    except struct.error as exc:
        raise UnsupportedError(
            f"value out of range for a {fmt.WAL_TYPE_NAMES[typ]} WAL group of {show(key)}: {exc}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise UnsupportedError(f"bad value in WAL group of {show(key)}: {exc}") from None


# --------------------------------------------------------------------------------------------
# Cache replay (docs/formats.md#wal-replay)
# --------------------------------------------------------------------------------------------


class Cache:
    """What influxd's cache holds for a shard after replaying its WAL segments (docs/formats.md#wal-replay).

    Stricter than influxd in one place: influxd's cache-level type check lets values of other
    types follow *unsigned* values of a key (its snapshot then fails); here any mix of types in a
    key is a :class:`FormatError`, like influxd's ``field type conflict`` for the other types.
    """

    def __init__(self) -> None:
        self._store: dict[bytes, tuple[int, list[int], list[Any]]] = {}
        #: partial deletes not applied yet, per key: (values stored when the delete came, min, max).
        #: Applied in one pass when the cache is read, so n deletes of a key holding v values cost
        #: O((v + n) log n), not O(v * n) as a filter per delete does (influxd's own way).
        self._pending: dict[bytes, list[tuple[int, int, int]]] = {}
        #: Damage found while replaying (influxd truncates those segments), in replay order.
        self.corruptions: list[tuple[str | None, WALCorruption]] = []
        #: Names of the replayed segments, in replay order.
        self.segments: list[str | None] = []

    @classmethod
    def load(
        cls, segments: Iterable[tuple[str, Source]], *, strict: bool = False, salvage: bool = False
    ) -> Cache:
        """Replay ``(name, segment)`` pairs in influxd's order (byte-wise sort of the names)."""
        cache = cls()
        for name, src in sorted(segments, key=lambda s: os.fsencode(s[0])):
            cache.replay(src, name=name, strict=strict, salvage=salvage)
        return cache

    @classmethod
    def open(cls, paths: Iterable[str | os.PathLike[str]], *, strict: bool = False, salvage: bool = False) -> Cache:
        """Replay segment files (one shard's WAL directory) in influxd's order."""
        cache = cls()
        for path in sorted((os.fspath(p) for p in paths), key=os.fsencode):
            with open_regular(path, "WAL segment") as f:
                cache.replay(f, name=path, strict=strict, salvage=salvage)
        return cache

    def replay(self, src: Source, *, name: str | None = None, strict: bool = False, salvage: bool = False) -> None:
        """Apply one segment's entries (call in segment order)."""
        self.segments.append(name)
        for item in iter_wal(src, name=name, strict=strict, salvage=salvage):
            if isinstance(item, WALCorruption):
                self.corruptions.append((name, item))
            else:
                self.apply(item, name=name)

    def apply(self, entry: WALEntry, *, name: str | None = None) -> None:
        """Apply one entry the way influxd's cache does."""
        if isinstance(entry, WriteEntry):
            store = self._store
            for key, (typ, values) in entry.values.items():
                cur = store.get(key)
                if cur is not None and cur[0] != typ and key in self._pending:
                    self._settle()  # pending deletes may have emptied the key: then no conflict
                    cur = store.get(key)
                if cur is None:
                    store[key] = (typ, [t for t, _ in values], [v for _, v in values])
                elif cur[0] != typ:
                    raise FormatError(
                        f"field type conflict: {show(key)} holds {fmt.WAL_TYPE_NAMES[cur[0]]} values and this "
                        f"entry writes {fmt.WAL_TYPE_NAMES[typ]}; influxd fails to open the shard",
                        path=name,
                        offset=entry.offset if entry.offset >= 0 else None,
                        field="value type",
                    )
                else:
                    cur[1].extend(t for t, _ in values)
                    cur[2].extend(v for _, v in values)
        elif isinstance(entry, DeleteEntry):
            for key in entry.keys:
                self._delete(key, _INT64_MIN, _INT64_MAX)
        elif isinstance(entry, DeleteRangeEntry):
            for key in entry.keys:
                self._delete(key, entry.min, entry.max)
        else:
            raise UsageError(f"not a WAL entry: {entry!r}")

    def _delete(self, key: bytes, mn: int, mx: int) -> None:
        cur = self._store.get(key)
        if cur is None:
            return
        if mn == _INT64_MIN and mx == _INT64_MAX:
            del self._store[key]
            self._pending.pop(key, None)
            return
        if mn > mx:
            return
        self._pending.setdefault(key, []).append((len(cur[1]), mn, mx))

    def _settle(self) -> None:
        """Apply the pending partial deletes: a value is gone if a delete that came after it
        (more values stored than its position) covers its time. Values are visited from the
        last written back, adding each delete's range once every value before it is reached."""
        for key, deletes in self._pending.items():
            typ, ts, vs = self._store[key]
            deletes.sort(key=lambda d: d[0])
            starts: list[int] = []  # merged, disjoint ranges of the deletes seen so far
            ends: list[int] = []
            k = len(deletes) - 1
            keep = bytearray(len(ts))
            for j in range(len(ts) - 1, -1, -1):
                while k >= 0 and deletes[k][0] > j:
                    _n, lo, hi = deletes[k]
                    a = bisect.bisect_left(ends, lo - 1 if lo > _INT64_MIN else lo)
                    b = bisect.bisect_right(starts, hi + 1 if hi < _INT64_MAX else hi)
                    if a < b:
                        lo, hi = min(lo, starts[a]), max(hi, ends[b - 1])
                    starts[a:b] = [lo]
                    ends[a:b] = [hi]
                    k -= 1
                t = ts[j]
                i = bisect.bisect_right(starts, t) - 1
                keep[j] = not (i >= 0 and t <= ends[i])
            if all(keep):
                continue
            kept_ts = [t for t, f in zip(ts, keep) if f]
            if kept_ts:
                self._store[key] = (typ, kept_ts, [v for v, f in zip(vs, keep) if f])
            else:
                del self._store[key]
        self._pending.clear()

    def __len__(self) -> int:
        if self._pending:
            self._settle()
        return len(self._store)

    def __contains__(self, key: object) -> bool:
        if self._pending:
            self._settle()
        return key in self._store

    def keys(self) -> list[bytes]:
        """Cached keys, ascending (byte-wise)."""
        if self._pending:
            self._settle()
        return sorted(self._store)

    def wal_type(self, key: bytes) -> int:
        if self._pending:
            self._settle()
        return self._store[key][0]

    def block_type(self, key: bytes) -> int:
        """TSM block type (0..4) of the key's values."""
        if self._pending:
            self._settle()
        return fmt.WAL_TO_BLOCK_TYPE[self._store[key][0]]

    def values(self, key: bytes) -> tuple[int, list[int], list[Any]]:
        """``(tsm_block_type, timestamps, values)``: sorted by time, one value per timestamp, the
        last written winning (what influxd serves and snapshots)."""
        if self._pending:
            self._settle()
        typ, ts, vs = self._store[key]
        if all(a < b for a, b in itertools.pairwise(ts)):
            return fmt.WAL_TO_BLOCK_TYPE[typ], list(ts), list(vs)
        last = dict(zip(ts, vs))
        order = sorted(last)
        return fmt.WAL_TO_BLOCK_TYPE[typ], order, [last[t] for t in order]


__all__ = [
    "Cache",
    "DeleteEntry",
    "DeleteRangeEntry",
    "WALCorruption",
    "WALEntry",
    "WALWriter",
    "WriteEntry",
    "iter_wal",
    "read_wal",
]
