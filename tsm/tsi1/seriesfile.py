"""Read and write influxd 1.6.7's per-database series file (``_series/00..07``).

Layouts and placement rules: :mod:`influx_archive.tsm.tsi1.format` (from ``tsdb/series_file.go``,
``series_partition.go``, ``series_segment.go``, ``series_index.go``).

Reading (:class:`SeriesFile`) checks more than influxd does, because influxd silently loses what it
cannot read: an entry cut by the end of the segment, a key whose parts do not add up, an id or key
in the wrong partition, or non-zero bytes after the zero flag that ends a segment's data (influxd
would stop there and overwrite the rest with new series) are each a :class:`FormatError` naming
the segment file and the entry's offset. Segments are memory-mapped, never read whole.

Writing (:class:`SeriesFileWriter`) appends new series the way influxd's
``CreateSeriesListIfNotExists`` does (same partition, same next id, same entry bytes, a new
segment when the active one is full) into a directory the caller stages; :func:`compact_index`
writes a partition's ``index`` file byte for byte as influxd's ``SeriesPartitionCompactor``.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from ...archive.errors import FormatError, SourceIOError, TargetIOError, TruncatedError
from ...archive.untrusted import open_regular
from . import format as fmt
from . import serieskey
from .compiled import core
from .xxhash import rhh_hash_key, rhh_hash_uint64, sum64


def key_partition(series_file_key: bytes) -> int:
    """``SeriesKeyPartitionID``: partition of a series file key."""
    return sum64(series_file_key) % fmt.SERIES_PARTITION_N


@dataclass(frozen=True, slots=True)
class SeriesEntry:
    flag: int
    id: int
    offset: int  # joined offset: segment id << 32 | position
    key: bytes | None  # series file key of an insert, None for a tombstone


@dataclass
class Segment:
    id: int
    path: str
    size: int  # bytes of entries + header (where the next entry would go)
    file_size: int


class _Mapped:
    """Read-only view of a file: mmap when it has bytes, else empty."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open_regular(path, "series file")
        try:
            self.size = os.fstat(self._f.fileno()).st_size
            self.buf = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""
        except OSError as exc:
            self._f.close()
            raise SourceIOError(f"cannot read source series file: {exc.strerror}", path=path) from exc
        self.zero_from = _hole_tail(self._f.fileno(), self.size)

    def close(self) -> None:
        if isinstance(self.buf, mmap.mmap):
            self.buf.close()
        self._f.close()


def _hole_tail(fd: int, size: int) -> int:
    """Where the hole that runs to the end of the file starts (``size`` when there is none, or the
    filesystem cannot say). influxd creates segments sparse (``Truncate`` to 4 MiB and more), so
    the zeros after the entries are usually a hole: checking that they are zeros need not read (or
    page-fault in) megabytes of them. Two ``lseek`` calls: the first hole, and no data after it."""
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        if hole >= size:
            return size
        try:
            os.lseek(fd, hole, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data from ``hole`` to the end
                return hole
            return size
        return size  # data after the first hole: read everything
    except (OSError, AttributeError):  # no SEEK_HOLE here
        return size


def _all_zero(buf: bytes | mmap.mmap, start: int, end: int) -> int:
    """-1 when ``buf[start:end]`` is all zeros, else the position of the first non-zero byte."""
    chunk = 1 << 20
    p = start
    while p < end:
        q = min(end, p + chunk)
        part = buf[p:q]
        if part.count(0) != len(part):
            return p + (len(part) - len(part.lstrip(b"\0")))
        p = q
    return -1


def iter_segment(path: str, segment_id: int, partition: int | None = None) -> Iterator[SeriesEntry]:
    """Entries of one segment file, checked (see the module docstring)."""
    m = _Mapped(path)
    try:
        buf, n = m.buf, m.size
        limit = min(n, fmt.segment_size(segment_id))
        if n < fmt.SEGMENT_HEADER_SIZE:
            raise TruncatedError(
                f"series segment shorter than its {fmt.SEGMENT_HEADER_SIZE}-byte header", path=path, offset=0
            )
        if buf[0:4] != fmt.SEGMENT_MAGIC:
            raise FormatError(f"not a series segment (magic {bytes(buf[0:4])!r})", path=path, offset=0, field="magic")
        if buf[4] != fmt.SEGMENT_VERSION:
            raise FormatError(
                f"series segment version {buf[4]} (influxd 1.6.7 writes {fmt.SEGMENT_VERSION})",
                path=path,
                offset=4,
                field="version",
            )
        pos = fmt.SEGMENT_HEADER_SIZE
        if core is not None and n:  # the compiled core reads a valid segment whole (None: decide here)
            fast = _scan(buf, limit, m.zero_from, segment_id, partition)
            if fast is not None:
                for flag, sid, off, key in fast:
                    yield SeriesEntry(flag, sid, off, key)
                return
        unpack = fmt.ENTRY_HEADER.unpack_from
        while pos < limit:
            flag = buf[pos]
            if flag not in (fmt.ENTRY_INSERT, fmt.ENTRY_TOMBSTONE):
                bad = _all_zero(buf, pos, max(pos, min(limit, m.zero_from)))  # a hole is zeros
                if bad >= 0:
                    raise FormatError(
                        f"byte {buf[bad]:#04x} after the end of the entries (influxd stops at offset {pos} and would "
                        "lose what follows)",
                        path=path,
                        offset=bad,
                        field="entry flag",
                    )
                return
            if pos + fmt.ENTRY_HEADER_SIZE > limit:
                raise TruncatedError("series entry cut by the end of the segment", path=path, offset=pos)
            _, sid = unpack(buf, pos)
            if sid == 0:
                raise FormatError("series entry with id 0", path=path, offset=pos, field="id")
            if partition is not None and fmt.partition_of_id(sid) != partition:
                raise FormatError(
                    f"series id {sid} belongs to partition {fmt.partition_of_id(sid)}, not {partition}",
                    path=path,
                    offset=pos,
                    field="id",
                )
            key = None
            end = pos + fmt.ENTRY_HEADER_SIZE
            if flag == fmt.ENTRY_INSERT:
                r = serieskey.read_uvarint(buf, end, limit)
                if r is None:
                    raise TruncatedError(
                        "series key size cut by the end of the segment", path=path, offset=end, field="key size"
                    )
                size, kp = r
                if size > fmt.MAX_SERIES_KEY_SIZE:
                    raise FormatError(
                        f"series key size {size} above influxd's limit", path=path, offset=end, field="key size"
                    )
                if kp + size > limit:
                    raise TruncatedError(
                        f"series key of {size} bytes cut by the end of the segment", path=path, offset=end, field="key"
                    )
                key = bytes(buf[end : kp + size])
                try:
                    serieskey.decode(key)
                except ValueError as exc:
                    raise FormatError(f"series key: {exc}", path=path, offset=end, field="key") from None
                if partition is not None and key_partition(key) != partition:
                    raise FormatError(
                        f"series key hashes to partition {key_partition(key)}, not {partition}",
                        path=path,
                        offset=end,
                        field="key",
                    )
                end = kp + size
            yield SeriesEntry(flag, sid, fmt.join_offset(segment_id, pos), key)
            pos = end
    finally:
        m.close()


def _scan(
    buf: bytes | mmap.mmap, limit: int, zero_from: int, segment_id: int, partition: int | None
) -> list[tuple[int, int, int, bytes | None]] | None:
    """The compiled core's entries of a segment, or None (the Python path decides). Scanned first
    only up to ``zero_from`` (the bytes from there on are a hole, zeros): the same entries as the
    whole ``limit`` whenever that gives any; when not (an entry running into the hole), the whole."""
    part = -1 if partition is None else partition
    if zero_from < limit:
        fast = core.scan_segment(buf, zero_from, segment_id, part)
        if fast is not None:
            return cast("list[tuple[int, int, int, bytes | None]]", fast)
    return cast("list[tuple[int, int, int, bytes | None]] | None", core.scan_segment(buf, limit, segment_id, part))


def segment_entries(
    path: str, segment_id: int, partition: int | None = None
) -> list[tuple[int, int, int, bytes | None]]:
    """(flag, id, offset, key) of every entry of a segment, as :func:`iter_segment` gives them (and
    raises): the compiled core's list when it reads the segment whole."""
    if core is not None:
        m = _Mapped(path)
        try:
            buf, n = m.buf, m.size
            if n >= fmt.SEGMENT_HEADER_SIZE and buf[0:4] == fmt.SEGMENT_MAGIC and buf[4] == fmt.SEGMENT_VERSION:
                limit = min(n, fmt.segment_size(segment_id))
                fast = _scan(buf, limit, m.zero_from, segment_id, partition)
                if fast is not None:
                    return fast
        finally:
            m.close()
    return [(e.flag, e.id, e.offset, e.key) for e in iter_segment(path, segment_id, partition)]


def _segment_end(path: str, segment_id: int) -> int:
    end = fmt.SEGMENT_HEADER_SIZE
    for e in iter_segment(path, segment_id):
        end = (e.offset & 0xFFFFFFFF) + fmt.ENTRY_HEADER_SIZE + (len(e.key) if e.key is not None else 0)
    return end


@dataclass
class Partition:
    """One partition's state after reading all its segments."""

    id: int
    path: str
    segments: list[Segment] = field(default_factory=list)
    keys: dict[bytes, int] = field(default_factory=dict)  # live series file key -> id
    offsets: dict[int, int] = field(default_factory=dict)  # live id -> entry offset
    tombstones: set[int] = field(default_factory=set)
    max_id: int = 0
    entries: int = 0
    inserts: int = 0  # insert entries, tombstoned or not (influxd's index count)
    last_insert: int = 0  # offset of the last insert entry
    has_index: bool = False

    @property
    def next_id(self) -> int:
        return self.max_id + fmt.SERIES_PARTITION_N if self.max_id else self.id + 1


def read_partition(path: str, pid: int) -> Partition:
    part = Partition(pid, path)
    try:
        names = sorted(os.listdir(path))
    except FileNotFoundError:
        return part
    except OSError as exc:
        raise SourceIOError(f"cannot list source series partition: {exc.strerror}", path=path) from exc
    part.has_index = fmt.INDEX_FILE_NAME in names
    seg_ids = []
    for name in names:
        if fmt.SEGMENT_NAME_RE.match(name):
            seg_ids.append(int(name, 16))
    for sid in sorted(seg_ids):
        p = os.path.join(path, fmt.segment_name(sid))
        end = fmt.SEGMENT_HEADER_SIZE
        ents = segment_entries(p, sid, pid)
        part.entries += len(ents)
        keys = [e[3] for e in ents]
        if ents and all(e[0] == fmt.ENTRY_INSERT for e in ents) and len(set(keys)) == len(keys) and (
            part.keys.keys().isdisjoint(keys)
        ):  # the common segment: inserts of distinct new keys, taken in bulk (same state as below)
            ids = [e[1] for e in ents]
            part.keys.update(zip(cast("list[bytes]", keys), ids))
            part.offsets.update((e[1], e[2]) for e in ents)
            part.tombstones.difference_update(ids)
            part.max_id = max(part.max_id, *ids)
            part.inserts += len(ents)
            part.last_insert = ents[-1][2]
            end = (ents[-1][2] & 0xFFFFFFFF) + fmt.ENTRY_HEADER_SIZE + len(cast(bytes, keys[-1]))
            ents = []
        for flag, eid, offset, k in ents:
            if flag == fmt.ENTRY_INSERT:
                key = cast(bytes, k)  # iter_segment gives every insert its key
                old = part.keys.get(key)
                if old is not None:
                    part.offsets.pop(old, None)
                part.keys[key] = eid
                part.offsets[eid] = offset
                part.tombstones.discard(eid)
                part.max_id = max(part.max_id, eid)
                part.inserts += 1
                part.last_insert = offset
                end = (offset & 0xFFFFFFFF) + fmt.ENTRY_HEADER_SIZE + len(key)
            else:
                part.tombstones.add(eid)
                part.offsets.pop(eid, None)
                end = (offset & 0xFFFFFFFF) + fmt.ENTRY_HEADER_SIZE
        part.segments.append(Segment(sid, p, end, os.path.getsize(p)))
    if part.tombstones:
        part.keys = {k: i for k, i in part.keys.items() if i not in part.tombstones}
    return part


class SeriesFile:
    """A database's series file, read and checked. ``partitions[p].keys`` maps every live series
    file key to its id."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.partitions = [
            read_partition(os.path.join(self.path, fmt.partition_dir_name(p)), p) for p in range(fmt.SERIES_PARTITION_N)
        ]

    def series(self) -> Iterator[tuple[int, bytes]]:
        """(id, series file key) of every live series, by partition then id."""
        for part in self.partitions:
            for key, sid in sorted(part.keys.items(), key=lambda kv: kv[1]):
                yield sid, key

    def series_count(self) -> int:
        return sum(len(p.keys) for p in self.partitions)

    def find(self, series_file_key: bytes) -> int:
        """Id of a live series, 0 when absent."""
        return self.partitions[key_partition(series_file_key)].keys.get(series_file_key, 0)

    def key(self, series_id: int) -> bytes | None:
        part = self.partitions[fmt.partition_of_id(series_id)]
        off = part.offsets.get(series_id)
        if off is None:
            return None
        sid, pos = fmt.split_offset(off)
        for seg in part.segments:
            if seg.id == sid:
                with open_regular(seg.path, "series segment") as f:
                    f.seek(pos + fmt.ENTRY_HEADER_SIZE)
                    head = f.read(10)
                    r = serieskey.read_uvarint(head, 0, len(head))
                    f.seek(pos + fmt.ENTRY_HEADER_SIZE)
                    return f.read(r[0] + r[1]) if r else None
        return None


# ---- writing -------------------------------------------------------------------------------


def segment_bytes_header() -> bytes:
    """:data:`~.format.SegmentHeader` of a new segment, built by hand: every build-tsi run writes
    one, and the Construct definitions are not worth importing construct for (start-up)."""
    return fmt.SEGMENT_MAGIC + bytes((fmt.SEGMENT_VERSION,))


def entry_bytes(flag: int, series_id: int, key: bytes = b"") -> bytes:
    """``AppendSeriesEntry``."""
    return fmt.ENTRY_HEADER.pack(flag, series_id) + (key if flag == fmt.ENTRY_INSERT else b"")


def create_segment(path: str, segment_id: int) -> None:
    """A new empty segment (header, then zeros to its fixed size, sparse), like
    ``CreateSeriesSegment``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            os.write(fd, segment_bytes_header())
            os.ftruncate(fd, fmt.segment_size(segment_id))
        finally:
            os.close(fd)
    except OSError as exc:
        raise TargetIOError(f"cannot write target series segment: {exc.strerror}", path=path) from exc


class PartitionWriter:
    """Appends inserts to one partition directory (whose segments were read into ``part``).
    Nothing is fsynced here: ``written`` lists every segment file this writer created or wrote,
    for the caller to make durable before anything depends on them (a series file's all together,
    :func:`influx_archive.archive.staging.fsync_paths`)."""

    def __init__(self, part: Partition) -> None:
        self.part = part
        self.written: list[str] = []
        self._fd: int | None = None
        self._buf: list[bytes] = []
        self._buf_n = 0
        if not part.segments:
            os.makedirs(part.path, 0o777, exist_ok=True)
            p = os.path.join(part.path, fmt.segment_name(0))
            self._create(p, 0)
            part.segments.append(Segment(0, p, fmt.SEGMENT_HEADER_SIZE, fmt.segment_size(0)))
        self.active = part.segments[-1]
        self._written = self.active.size  # where the buffered entries go

    def _create(self, path: str, segment_id: int) -> None:
        create_segment(path, segment_id)
        self.written.append(path)

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.active.path, os.O_WRONLY)
            except OSError as exc:
                raise TargetIOError(
                    f"cannot write target series segment: {exc.strerror}", path=self.active.path
                ) from exc
        return self._fd

    def _flush(self) -> None:
        if self._buf:
            fd = self._open()
            data = b"".join(self._buf)
            try:
                os.pwrite(fd, data, self._written)
            except OSError as exc:
                raise TargetIOError(
                    f"cannot write target series segment: {exc.strerror}", path=self.active.path
                ) from exc
            self._written += len(data)
            self._buf, self._buf_n = [], 0

    def insert(self, key: bytes) -> int:
        """Add a series file key (not already present); returns its new id."""
        part = self.part
        sid = part.next_id
        data = entry_bytes(fmt.ENTRY_INSERT, sid, key)
        limit = fmt.segment_size(self.active.id)
        if self.active.size + len(data) > limit:
            self.close_active()
            nid = self.active.id + 1
            if nid > fmt.MAX_SEGMENT_ID:
                raise TargetIOError("series partition has no segment ids left", path=part.path)
            p = os.path.join(part.path, fmt.segment_name(nid))
            self._create(p, nid)
            self.active = Segment(nid, p, fmt.SEGMENT_HEADER_SIZE, fmt.segment_size(nid))
            part.segments.append(self.active)
            self._written = self.active.size
        off = fmt.join_offset(self.active.id, self.active.size)
        self._buf.append(data)
        self._buf_n += len(data)
        self.active.size += len(data)
        part.keys[key] = sid
        part.offsets[sid] = off
        part.max_id = sid
        part.inserts += 1
        part.last_insert = off
        if self._buf_n >= 1 << 20:
            self._flush()
        return sid

    def close_active(self) -> None:
        """Write out what is buffered and close the active segment (not fsynced: ``written``)."""
        self._flush()
        if self._fd is not None:
            if self.active.path not in self.written:
                self.written.append(self.active.path)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self.close_active()


def _pow2(v: int) -> int:
    i = 2
    while i < v:
        i *= 2
    return i


def _dist(h: int, i: int, capacity: int) -> int:
    mask = capacity - 1
    return (i + capacity - (h & mask)) & mask


def build_index(part: Partition, read_key: Callable[[int], bytes]) -> bytes:
    """``compactIndexTo``: the partition's ``index`` file for all its entries (``read_key(offset)``
    returns the series file key of the entry at a joined offset)."""
    live = sorted(part.offsets.items(), key=lambda kv: kv[1])  # (id, offset) in file order
    count = part.inserts
    capacity = _pow2((count * 100) // fmt.INDEX_LOAD_FACTOR)
    mask = capacity - 1
    key_id = [(0, 0)] * capacity
    id_off = [(0, 0)] * capacity
    # influxd records the last insert entry it processed, tombstoned or not
    max_id, max_off = part.max_id, part.last_insert
    hashes: dict[int, int] = {}

    def key_hash(off: int) -> int:
        h = hashes.get(off)
        if h is None:
            h = hashes[off] = rhh_hash_key(read_key(off))
        return h

    for sid, off in live:
        # id -> offset map
        h = rhh_hash_uint64(sid)
        pos, dist, cid, coff = h & mask, 0, sid, off
        while True:
            eid, eoff = id_off[pos]
            if eoff == 0 or eoff == coff:
                id_off[pos] = (cid, coff)
                break
            d = _dist(rhh_hash_uint64(eid), pos, capacity)
            if d < dist:
                id_off[pos] = (cid, coff)
                cid, coff, dist = eid, eoff, d
            pos, dist = (pos + 1) & mask, dist + 1
        # key -> id map
        h = key_hash(off)
        pos, dist, cid, coff = h & mask, 0, sid, off
        while True:
            eoff, eid = key_id[pos]
            if eoff == 0 or eoff == coff:
                key_id[pos] = (coff, cid)
                break
            eh = key_hash(eoff)
            d = _dist(eh, pos, capacity)
            if d < dist:
                key_id[pos] = (coff, cid)
                coff, cid, dist = eoff, eid, d
            pos, dist = (pos + 1) & mask, dist + 1
    size = capacity * fmt.INDEX_ELEM_SIZE
    header = fmt.SeriesIndexHeader.build(
        {
            "version": fmt.INDEX_VERSION,
            "max_series_id": max_id,
            "max_offset": max_off,
            "count": count,
            "capacity": capacity,
            "key_id_map": {"offset": fmt.INDEX_HEADER_SIZE, "size": size},
            "id_offset_map": {"offset": fmt.INDEX_HEADER_SIZE + size, "size": size},
        }
    )
    pack = fmt.INDEX_ELEM.pack
    return cast(bytes, header) + b"".join(pack(a, b) for a, b in key_id) + b"".join(pack(a, b) for a, b in id_off)

