"""Tombstone files: read all versions, write v4 as influxd does, apply them (docs/formats.md#tombstones).

Reading (:func:`parse_tombstones`, :func:`read_tombstones`) mirrors influxd 1.6.7's
``Tombstoner.Walk`` (``tsdb/engine/tsm1/tombstone.go``):

* the first 4 bytes select the version (docs/formats.md#tombstone-formats); anything else, including a file shorter
  than 4 bytes, is v1 text (lines split like Go's ``bufio.Scanner``: a trailing ``\\r`` is dropped, empty lines are
  skipped, a line of 64 KiB or more fails);
* v4 is read member by member; a member's content may end with 1–3 stray bytes (a short read of the
  next key length), which influxd takes as the end of the member;
* v3 is one gzip *stream* (Go's reader is multi-member there, so records may span members);
* influxd fails the TSM file (renames it ``.bad``, the shard does not open, docs/formats.md#tombstone-failure) on a bad
  gzip header, corrupt deflate data, a CRC/size mismatch, or a record cut short: those raise
  :class:`~influx_archive.archive.errors.FormatError` (``TruncatedError`` / ``ChecksumError``) naming
  the file and the offset of the member (records inside a member are located by their offset in
  the member's decompressed content, in the message).

Damage that influxd tolerates silently (stray bytes at the end of a member's content, a cut gzip
trailer after complete data, a partial gzip header after the last member) is accepted like influxd
does and listed in :attr:`TombstoneFile.problems`; ``strict=True`` raises it instead. A member whose
*deflate data* is cut short always raises :class:`TruncatedError`: records were lost, and whether
influxd would fail or silently drop them depends on bit-level details of Go's inflater.

v2 files are read as written, although influxd 1.6.7 misreads them (its v2 reader overwrites the
first 8 bytes of every key with the record's max time, so none of their deletions reach a real
key); a note in :attr:`TombstoneFile.problems` says so.

Guards influxd lacks: record key lengths above 65535 (no TSM key can be that long) are rejected
before allocating, and the total decompressed size is capped (``max_decompressed``) against gzip
bombs (:class:`UnsupportedError`).

Writing (:func:`write_tombstones`, :func:`append_batch`, :func:`encode_member`) produces the layout
influxd writes (docs/formats.md#tombstone-formats): the ``00 00 15 04`` header and one gzip member per delete batch
with Go's gzip header. The deflate data comes from zlib, so it differs byte-wise from Go's; influxd's own
reader accepts it (tested against influxd's Tombstoner).

Applying (:class:`TombstoneSet`) follows influxd's ``indirectIndex.DeleteRange``
(docs/formats.md#tombstone-application), including its order-dependent rule for when several partial ranges remove a
whole key.
"""

from __future__ import annotations

import bisect
import io
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Union

from ..archive.errors import ArchiveError, ChecksumError, FormatError, TruncatedError, UnsupportedError, UsageError
from .format import tombstone as fmt

Source = bytes | bytearray | memoryview | BinaryIO
#: the file a message names
_Name = Union[str, "os.PathLike[str]", None]

#: Default cap on the decompressed size of all gzip members of one file (``max_decompressed``):
#: about a million records of typical key length (a DROP MEASUREMENT of a million series in one
#: shard), at most ~3.3 million distinct records in memory (~450 MB). Above it,
#: :class:`UnsupportedError`, found while inflating, before the records are parsed.
DEFAULT_MAX_DECOMPRESSED = 64 << 20

_MIN = fmt.MIN_TIME
_MAX = fmt.MAX_TIME
_GO_GZIP_HEADER: bytes = fmt.GO_GZIP_HEADER
_HEAD = fmt.RECORD_HEAD
_TIMES = fmt.RECORD_TIMES
_KEY = fmt.KEY_OFFSET
_TIMES_SIZE = fmt.RECORD_TIMES.size


@dataclass(frozen=True, slots=True)
class Tombstone:
    """Delete the values of composite ``key`` with ``min <= t <= max`` (both inclusive,
    docs/formats.md#tombstone-semantics)."""

    key: bytes
    min: int = _MIN
    max: int = _MAX

    @property
    def full_range(self) -> bool:
        """True for the all-time bounds influxd uses for DROP SERIES / DROP MEASUREMENT."""
        return self.min == _MIN and self.max == _MAX


#: placeholder before the first record of a run (never appended: the first record always differs)
_NO_TOMBSTONE = Tombstone(b"")


@dataclass(frozen=True, slots=True)
class TombstoneMember:
    """Where a file's records came from: a gzip member (v3/v4), the v2 body, or the v1 text."""

    offset: int  # file offset of the member header (v3/v4) or of the body (v1: 0, v2: 4)
    size: int  # bytes of the file it spans
    count: int  # records it held


@dataclass
class TombstoneFile:
    """Everything :func:`parse_tombstones` learnt about one file."""

    version: int
    entries: list[Tombstone] = field(default_factory=list)
    members: list[TombstoneMember] = field(default_factory=list)
    #: Damage influxd accepts silently (see the module docstring); empty for a healthy file.
    problems: list[ArchiveError] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def parse_tombstones(
    src: Source, *, name: str | None = None, max_decompressed: int = DEFAULT_MAX_DECOMPRESSED
) -> TombstoneFile:
    """Parse a tombstone file of any version. ``src`` is the file's bytes or a binary stream
    (read from its current position to the end). Raises :class:`FormatError` (or a subclass)
    wherever influxd would fail the TSM file, :class:`UnsupportedError` above ``max_decompressed``."""
    data = _read_all(src)
    name = name if name is not None else getattr(src, "name", None)
    if not isinstance(name, (str, os.PathLike)):
        name = None
    version = fmt.VERSION_WORD.unpack_from(data)[0] if len(data) >= fmt.HEADER_SIZE else None
    try:
        if version == fmt.V4_HEADER:
            return _parse_gzip(data, 4, name, max_decompressed)
        if version == fmt.V3_HEADER:
            return _parse_gzip(data, 3, name, max_decompressed)
        if version == fmt.V2_HEADER:
            return _parse_v2(data, name)
        return _parse_v1(data, name)
    except ArchiveError as err:
        raise err.located(path=name)  # noqa: B904 - the same error re-raised, its location filled in


def read_tombstones(
    src: Source,
    *,
    name: str | None = None,
    strict: bool = False,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
) -> list[Tombstone]:
    """The entries of a tombstone file in file order (see :func:`parse_tombstones`). With
    ``strict=True`` damage that influxd tolerates silently raises too."""
    parsed = parse_tombstones(src, name=name, max_decompressed=max_decompressed)
    if strict and parsed.problems:
        raise parsed.problems[0]
    return parsed.entries


def _read_all(src: Source) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src)
    data = src.read()
    if not isinstance(data, bytes):
        raise UsageError("tombstone source must be a binary stream")
    return data


def _parse_v1(data: bytes, name: _Name) -> TombstoneFile:
    out = TombstoneFile(version=1)
    pos = 0
    n = len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        end = n if nl < 0 else nl
        if end - pos >= fmt.V1_MAX_LINE:
            raise FormatError(
                f"v1 tombstone line of {end - pos} bytes: influxd's line reader stops at "
                f"{fmt.V1_MAX_LINE - 1} (token too long) and fails the TSM file",
                path=name,
                offset=pos,
            )
        line = data[pos:end]
        if line.endswith(b"\r"):
            line = line[:-1]
        if line:
            out.entries.append(Tombstone(line, _MIN, _MAX))
        pos = end + 1
    out.members.append(TombstoneMember(0, n, len(out.entries)))
    return out


def _parse_v2(data: bytes, name: _Name) -> TombstoneFile:
    out = TombstoneFile(version=2)
    pos = fmt.HEADER_SIZE
    n = len(data)
    entries = out.entries
    while pos < n:
        if n - pos < fmt.MIN_RECORD_SIZE:
            raise TruncatedError(
                f"v2 tombstone ends inside a record ({n - pos} bytes left)",
                path=name,
                offset=pos,
                field="record",
            )
        (klen,) = _HEAD.unpack_from(data, pos)
        _check_key_len(klen, name, pos)
        end = pos + fmt.MIN_RECORD_SIZE + klen
        if end > n:
            raise TruncatedError(
                f"v2 tombstone record with a {klen}-byte key runs past the end of the file",
                path=name,
                offset=pos,
                field="record",
            )
        mn, mx = _TIMES.unpack_from(data, pos + _KEY + klen)
        entries.append(Tombstone(data[pos + _KEY : pos + _KEY + klen], mn, mx))
        pos = end
    out.members.append(TombstoneMember(fmt.HEADER_SIZE, n - fmt.HEADER_SIZE, len(entries)))
    if entries:
        out.problems.append(
            UnsupportedError(
                "v2 tombstone: influxd 1.6.7 misreads this version (the first 8 bytes of every key are "
                "overwritten by the record's max time), so it applies none of these deletions; "
                "they are returned as written",
                path=name,
                offset=fmt.HEADER_SIZE,
            )
        )
    return out


def _check_key_len(klen: int, name: _Name, offset: int, detail: str = "") -> None:
    if klen > fmt.MAX_KEY_LEN:
        raise FormatError(
            f"tombstone record key length {klen} exceeds {fmt.MAX_KEY_LEN}{detail}",
            path=name,
            offset=offset,
            field="key_len",
        )


def _parse_records(
    content: bytes, entries: list[Tombstone], name: _Name, member_offset: int, base: int, *, carry: bool = False
) -> int:
    """Append the records of decompressed ``content``; returns how many bytes are left over at the
    end: 0..3 (a short key-length read, which influxd takes as the end) or, with ``carry`` (v3,
    where a record may continue in the next member), the start of an incomplete record. ``base``
    is the content's offset in the decompressed stream, for messages."""
    pos = 0
    n = len(content)
    head = _HEAD.unpack_from
    times = _TIMES.unpack_from
    append = entries.append
    # Memory is bounded by what the records say, not by how often they say it: a run of
    # identical records (influxd writes one record per key per batch, so never within a member;
    # a gzip bomb repeats one) shares one Tombstone object (8 bytes per repeat), and each key's
    # bytes are shared by all its records.
    keys: dict[bytes, bytes] = {}
    last: bytes | None = None
    last_obj = _NO_TOMBSTONE
    while n - pos >= _KEY:
        (klen,) = head(content, pos)
        if klen > fmt.MAX_KEY_LEN:
            _check_key_len(klen, name, member_offset, f" (record at decompressed offset {base + pos})")
        kend = pos + _KEY + klen
        if kend + _TIMES_SIZE > n:
            if carry:
                break
            raise _cut_record(name, member_offset, base + pos, n - pos, klen)
        raw = content[pos : kend + _TIMES_SIZE]
        pos = kend + _TIMES_SIZE
        if raw != last:
            last = raw
            mn, mx = times(raw, _KEY + klen)
            key = raw[_KEY : _KEY + klen]
            last_obj = Tombstone(keys.setdefault(key, key), mn, mx)
        append(last_obj)
    return n - pos


def _cut_record(name: _Name, member_offset: int, at: int, have: int, klen: int) -> TruncatedError:
    return TruncatedError(
        f"tombstone record at decompressed offset {at} is cut short ({have} of {klen + fmt.MIN_RECORD_SIZE} bytes); "
        "influxd fails the TSM file",
        path=name,
        offset=member_offset,
        field="record",
    )


@dataclass(slots=True)
class _Member:
    """One gzip member of a v3/v4 tombstone file, as far as it could be read."""

    offset: int
    content: bytes
    end: int  # file offset after the member (or after what exists of it)
    state: str  # ok | truncated_trailer | truncated_header | truncated_data | empty


def _read_member(data: bytes, pos: int, budget: int, name: _Name, what: str) -> _Member:
    """Decode one gzip member starting at ``pos`` with Go's header rules (``compress/gzip``)."""
    n = len(data)
    if pos >= n:
        return _Member(pos, b"", pos, "empty")
    if n - pos < fmt.GZIP_FIXED_HEADER_SIZE:
        return _Member(pos, b"", n, "truncated_header")
    if data[pos : pos + 2] != fmt.GZIP_ID or data[pos + 2] != fmt.GZIP_CM_DEFLATE:
        raise FormatError(f"{what}: gzip: invalid header", path=name, offset=pos, field="gzip header")
    flags = data[pos + 3]
    p = pos + fmt.GZIP_FIXED_HEADER_SIZE
    if flags & fmt.FLAG_EXTRA:
        if n - p < 2:
            return _Member(pos, b"", n, "truncated_header")
        (xlen,) = fmt.GZIP_U16.unpack_from(data, p)
        p += fmt.GZIP_U16.size + xlen
        if p > n:
            return _Member(pos, b"", n, "truncated_header")
    for flag in (fmt.FLAG_NAME, fmt.FLAG_COMMENT):
        if flags & flag:
            nul = data.find(b"\x00", p, p + fmt.GO_GZIP_MAX_STRING + 1)
            if nul < 0:
                if n - p > fmt.GO_GZIP_MAX_STRING:
                    raise FormatError(
                        f"{what}: gzip: invalid header (name/comment longer than Go accepts)",
                        path=name,
                        offset=pos,
                        field="gzip header",
                    )
                return _Member(pos, b"", n, "truncated_header")
            p = nul + 1
    if flags & fmt.FLAG_HCRC:
        if n - p < fmt.GZIP_U16.size:
            return _Member(pos, b"", n, "truncated_header")
        if fmt.GZIP_U16.unpack_from(data, p)[0] != zlib.crc32(data[pos:p]) & 0xFFFF:
            raise FormatError(f"{what}: gzip: invalid header (header CRC)", path=name, offset=pos, field="gzip header")
        p += fmt.GZIP_U16.size
    inflater = zlib.decompressobj(-15)
    try:
        content = inflater.decompress(memoryview(data)[p:], budget + 1)
    except zlib.error as exc:
        raise FormatError(f"{what}: corrupt deflate data ({exc})", path=name, offset=pos, field="gzip data") from exc
    if len(content) > budget:
        raise UnsupportedError(
            f"{what}: decompressed tombstone data exceeds the limit (max_decompressed); "
            "raise it if this file is genuine",
            path=name,
            offset=pos,
        )
    if not inflater.eof:
        return _Member(pos, content, n, "truncated_data")
    data_end = n - len(inflater.unused_data)
    if n - data_end < fmt.GZIP_TRAILER_SIZE:
        return _Member(pos, content, n, "truncated_trailer")
    crc, size = fmt.GZIP_TRAILER.unpack_from(data, data_end)
    if crc != zlib.crc32(content) or size != len(content) & 0xFFFFFFFF:
        raise ChecksumError(f"{what}: gzip: invalid checksum", path=name, offset=pos, field="gzip trailer")
    return _Member(pos, content, data_end + fmt.GZIP_TRAILER_SIZE, "ok")


def _parse_gzip(data: bytes, version: int, name: _Name, max_decompressed: int) -> TombstoneFile:
    """v4: records per member. v3: records over the concatenation of all members (Go's multistream)."""
    out = TombstoneFile(version=version)
    entries = out.entries
    pos = fmt.HEADER_SIZE
    budget = max_decompressed
    pending = b""  # v3: an incomplete record carried into the next member
    pending_member = pos
    decoded = 0  # bytes of decompressed content so far, for messages
    first = True
    while True:
        what = f"v{version} tombstone gzip member at offset {pos}"
        m = _read_member(data, pos, budget, name, what)
        if m.state == "empty":
            if version == 3 and first:
                raise TruncatedError(
                    "v3 tombstone holds no gzip data; influxd fails the TSM file (EOF)", path=name, offset=pos
                )
            break
        if m.state == "truncated_header":
            if first:
                raise TruncatedError(
                    f"{what}: gzip header cut short; influxd fails the TSM file", path=name, offset=pos
                )
            out.problems.append(
                TruncatedError(
                    f"{_n_bytes(len(data) - pos)} after the last member (a cut gzip header); influxd ignores them",
                    path=name,
                    offset=pos,
                )
            )
            break
        if m.state == "truncated_data":
            raise TruncatedError(
                f"{what}: deflate data cut short, records lost", path=name, offset=pos, field="gzip data"
            )
        budget -= len(m.content)
        before = len(entries)
        if version == 4:
            left = _parse_records(m.content, entries, name, pos, decoded)
            if left:
                out.problems.append(
                    FormatError(
                        f"{what}: {left} stray byte(s) after the last record; influxd ignores them",
                        path=name,
                        offset=pos,
                        field="record",
                    )
                )
        else:
            buf = pending + m.content
            left = _parse_records(buf, entries, name, pos, decoded - len(pending), carry=True)
            pending = buf[len(buf) - left :] if left else b""
            pending_member = pos
        decoded += len(m.content)
        out.members.append(TombstoneMember(pos, m.end - pos, len(entries) - before))
        if m.state == "truncated_trailer":
            out.problems.append(
                TruncatedError(
                    f"{what}: gzip trailer cut short after complete data; influxd ignores it",
                    path=name,
                    offset=pos,
                    field="gzip trailer",
                )
            )
            break
        pos = m.end
        first = False
    if len(pending) >= _KEY:
        (klen,) = _HEAD.unpack_from(pending)
        raise _cut_record(name, pending_member, decoded - len(pending), len(pending), klen)
    if pending:
        out.problems.append(
            FormatError(
                f"v3 tombstone: {len(pending)} stray byte(s) after the last record; influxd ignores them",
                path=name,
                offset=pending_member,
                field="record",
            )
        )
    return out


def _n_bytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n} bytes"


# --------------------------------------------------------------------------------------------
# Writing (v4, as influxd 1.6.7 writes it)
# --------------------------------------------------------------------------------------------


def encode_member(entries: Iterable[Tombstone]) -> bytes:
    """One gzip member holding ``entries``, laid out as influxd's Tombstoner writes a batch: Go's
    gzip header (MTIME 0, XFL 0, OS 255), deflate data, CRC-32 and size.

    The deflate stream comes from zlib (level 6), so the compressed bytes differ from Go's
    encoder; influxd reads any valid deflate stream (tests run influxd's own tombstone reader on
    what we write). A hand-written Go-identical deflater is not worth its risk: a bad tombstone
    makes influxd rename a healthy TSM file ``.bad`` (docs/formats.md#tombstone-failure)."""
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    body: list[bytes] = []
    crc = 0
    size = 0
    count = 0
    for t in entries:
        key = bytes(t.key)
        if len(key) > fmt.MAX_KEY_LEN:
            raise UnsupportedError(f"tombstone key of {len(key)} bytes is longer than any TSM key ({fmt.MAX_KEY_LEN})")
        if not (_MIN <= t.min <= _MAX and _MIN <= t.max <= _MAX) or t.min > t.max:
            raise UnsupportedError(f"tombstone range [{t.min}, {t.max}] is not an int64 interval")
        record = fmt.Record.build({"key_len": len(key), "key": key, "min": t.min, "max": t.max})
        body.append(deflater.compress(record))
        crc = zlib.crc32(record, crc)
        size += len(record)
        count += 1
    if count == 0:
        raise UsageError("a tombstone batch needs at least one entry (influxd never writes an empty one)")
    body.append(deflater.flush())
    return _GO_GZIP_HEADER + b"".join(body) + fmt.GZIP_TRAILER.pack(crc, size & 0xFFFFFFFF)


def write_tombstones(stream: BinaryIO, entries: Iterable[Tombstone]) -> int:
    """Write a new v4 tombstone file holding one batch (one gzip member). Returns bytes written."""
    member = encode_member(entries)
    header = fmt.Header.build(fmt.V4_HEADER)
    stream.write(header)
    stream.write(member)
    return len(header) + len(member)


def append_batch(stream: BinaryIO, entries: Iterable[Tombstone]) -> int:
    """Append one batch as a new gzip member, like influxd does for every delete (docs/formats.md#tombstone-formats).

    ``stream`` is a readable, writable, seekable binary stream holding an existing v4 file (or
    nothing: then the v4 header is written first). Older versions are refused: influxd would
    rewrite them as v3 and lose their entries. Returns bytes written."""
    member = encode_member(entries)
    stream.seek(0)
    head = stream.read(fmt.HEADER_SIZE)
    written = 0
    if not head:
        stream.write(fmt.Header.build(fmt.V4_HEADER))
        written = fmt.HEADER_SIZE
    elif len(head) < fmt.HEADER_SIZE or fmt.VERSION_WORD.unpack(head)[0] != fmt.V4_HEADER:
        raise UnsupportedError("can only append to a v4 tombstone file")
    stream.seek(0, io.SEEK_END)
    stream.write(member)
    return written + len(member)


@dataclass(frozen=True, slots=True)
class KeyDeletion:
    """What one tombstone file does to one key of its TSM file."""

    deleted: bool  # the key is gone from the file's index (invisible, dropped by compactions)
    ranges: tuple[tuple[int, int], ...]  # otherwise: deleted inclusive ranges, merged and sorted


_NOTHING = KeyDeletion(False, ())
_GONE = KeyDeletion(True, ((_MIN, _MAX),))


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort inclusive ranges and merge those that overlap or are exactly adjacent."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def _joined(p: tuple[int, int], c: tuple[int, int]) -> bool:
    """influxd's test of two consecutive ranges of the sorted list (``p`` sorts first): adjacent
    (Go computes ``c.min - 1`` in int64, which wraps at the minimum) or overlapping."""
    below = c[0] - 1 if c[0] != _MIN else _MAX
    return p[1] == below or (p[0] <= c[1] and p[1] >= c[0])


class TombstoneSet:
    """The deletions of one tombstone file, applied to its own TSM file the way influxd does.

    influxd applies the entries in file order, per key (``indirectIndex.DeleteRange``):

    * a full-range entry removes the key;
    * a partial entry outside the key's *span* (first index entry's ``min_time`` .. last index
      entry's ``max_time``) is ignored; one covering the span removes the key;
    * otherwise the range is added to the key's list (sorted by min, then max); if every
      *consecutive pair* of that list overlaps or is adjacent and the list covers the span, the key
      is removed. The pairwise test is influxd's: ``[0,60] [10,20] [61,100]`` does not remove a key
      spanning 0..100 although the union covers it, and the outcome depends on the entry order.

    Methods taking ``key_min``/``key_max`` need the key's span in this file to reproduce that;
    without it every partial range of the key is used (which differs from influxd only for files
    whose blocks of one key overlap).
    """

    def __init__(self, entries: Iterable[Tombstone]) -> None:
        self._ranges: dict[bytes, list[tuple[int, int]]] = {}
        for t in entries:
            lst = self._ranges.setdefault(bytes(t.key), [])
            # a range equal to the key's previous one changes nothing in influxd's replay (the
            # pairwise test sees two overlapping copies): kept once, so repeats cost no memory
            if not lst or lst[-1] != (t.min, t.max):
                lst.append((t.min, t.max))
        self._cache: dict[tuple[bytes, int, int], KeyDeletion] = {}

    def __len__(self) -> int:
        """Number of distinct keys mentioned."""
        return len(self._ranges)

    def __contains__(self, key: object) -> bool:
        return key in self._ranges

    def keys(self) -> Iterator[bytes]:
        return iter(self._ranges)

    def entries(self, key: bytes) -> list[tuple[int, int]]:
        """The (min, max) entries recorded for ``key``, in file order."""
        return list(self._ranges.get(key, ()))

    def state(self, key: bytes, key_min: int, key_max: int) -> KeyDeletion:
        """influxd's verdict for ``key`` whose blocks in this file span ``[key_min, key_max]``."""
        raw = self._ranges.get(key)
        if not raw:
            return _NOTHING
        memo = (key, key_min, key_max)
        hit = self._cache.get(memo)
        if hit is None:
            hit = self._cache[memo] = self._replay(raw, key_min, key_max)
        return hit

    @staticmethod
    def _replay(raw: list[tuple[int, int]], key_min: int, key_max: int) -> KeyDeletion:
        # influxd re-checks the whole sorted list after every entry; the verdict only depends on
        # whether every consecutive pair is joined, on the first range's min and on the largest
        # max, so those are kept up to date per insertion (a count of the unjoined pairs) instead
        # of rescanning: O(k log k) comparisons for k ranges, not O(k^2).
        applied: list[tuple[int, int]] = []
        gaps = 0  # consecutive pairs of ``applied`` that influxd's pairwise test does not join
        top = _MIN  # largest max in ``applied``
        for lo, hi in raw:
            if lo == _MIN and hi == _MAX:
                return _GONE
            if lo > key_max or hi < key_min:
                continue
            if lo <= key_min and hi >= key_max:
                return _GONE
            r = (lo, hi)
            i = bisect.bisect_right(applied, r)
            prev = applied[i - 1] if i > 0 else None
            nxt = applied[i] if i < len(applied) else None
            if prev is not None and nxt is not None:
                gaps -= not _joined(prev, nxt)
            if prev is not None:
                gaps += not _joined(prev, r)
            if nxt is not None:
                gaps += not _joined(r, nxt)
            applied.insert(i, r)
            if hi > top:
                top = hi
            if not gaps and applied[0][0] <= key_min and top >= key_max:
                return _GONE
        return KeyDeletion(False, merge_ranges(applied))

    def key_deleted_fully(self, key: bytes, key_min: int, key_max: int) -> bool:
        """True if influxd removes ``key`` from this file's index."""
        return self.state(key, key_min, key_max).deleted

    def ranges(self, key: bytes, key_min: int | None = None, key_max: int | None = None) -> tuple[tuple[int, int], ...]:
        """Deleted inclusive ranges of ``key``, merged (overlapping or adjacent)."""
        if key_min is not None and key_max is not None:
            return self.state(key, key_min, key_max).ranges
        return merge_ranges(self._ranges.get(key, ()))

    def covers_block(
        self, key: bytes, min_time: int, max_time: int, key_min: int | None = None, key_max: int | None = None
    ) -> bool:
        """True if every timestamp of ``[min_time, max_time]`` is deleted (the block can be skipped)."""
        return any(lo <= min_time and hi >= max_time for lo, hi in self.ranges(key, key_min, key_max))

    def touches(
        self, key: bytes, min_time: int, max_time: int, key_min: int | None = None, key_max: int | None = None
    ) -> bool:
        """True if some deleted range intersects ``[min_time, max_time]``."""
        return any(lo <= max_time and hi >= min_time for lo, hi in self.ranges(key, key_min, key_max))

    def filter(
        self,
        key: bytes,
        timestamps: Sequence[int],
        values: Sequence[Any],
        key_min: int | None = None,
        key_max: int | None = None,
    ) -> tuple[list[int], list[Any]]:
        """``(timestamps, values)`` without the deleted points (order and duplicates kept)."""
        ranges = self.ranges(key, key_min, key_max)
        if not ranges or not timestamps:
            return list(timestamps), list(values)
        return filter_ranges(ranges, timestamps, values)


def filter_ranges(
    ranges: Sequence[tuple[int, int]], timestamps: Sequence[int], values: Sequence[Any]
) -> tuple[list[int], list[Any]]:
    """Drop the points whose timestamp lies in one of the merged, sorted inclusive ``ranges``."""
    starts = [lo for lo, _hi in ranges]
    ends = [hi for _lo, hi in ranges]
    out_t: list[int] = []
    out_v: list[Any] = []
    for t, v in zip(timestamps, values):
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0 and t <= ends[i]:
            continue
        out_t.append(t)
        out_v.append(v)
    return out_t, out_v


__all__ = [
    "DEFAULT_MAX_DECOMPRESSED",
    "KeyDeletion",
    "Tombstone",
    "TombstoneFile",
    "TombstoneMember",
    "TombstoneSet",
    "append_batch",
    "encode_member",
    "filter_ranges",
    "merge_ranges",
    "parse_tombstones",
    "read_tombstones",
    "write_tombstones",
]
