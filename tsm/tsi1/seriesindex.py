"""Check a series file partition's hash ``index`` (``tsdb/series_index.go``) against its segments.

influxd writes ``_series/<p>/index`` when it compacts a partition (layout in docs/formats.md,
"Series file"): two Robin Hood tables of ``capacity`` 16-byte slots, key -> (entry offset, id) and
id -> (id, entry offset). It covers the entries up to its ``max offset``; influxd replays the
segments after that into memory when it opens the partition. A series the table misplaces is one
influxd cannot find by key (it then hands out a second id for the same series) or by id (its key
is lost to queries), so :func:`check_series_index` checks, bounded by the file's own size:

* the header (magic, version, count equal to the insert entries up to ``max offset``, capacity
  the power of 2 influxd derives from it, both maps inside the file and ``capacity`` slots long);
* every non-empty slot names an insert entry of the segments with the slot's id, and influxd's
  own lookup (``FindIDBySeriesKey`` / ``FindOffsetByID``) reaches that slot;
* every live series whose entry is at or before ``max offset`` is in both maps, which hold the
  same number of series, and ``max offset`` / ``max series id`` name an insert entry.

Damage is a :class:`FormatError` naming the file and the offset of the header field or slot.
"""

from __future__ import annotations

import mmap
import os
import struct

from ...archive.errors import FormatError, TruncatedError
from ...archive.untrusted import open_regular
from . import format as fmt
from . import rhh
from .seriesfile import Partition, _pow2, segment_entries
from .serieskey import key_extent

_HEADER = struct.Struct(">4sBQqQqqqqq")
_ELEM = struct.Struct(">QQ")


class _Entries:
    """Insert entries of a partition's segments read at joined offsets (memory-mapped)."""

    def __init__(self, part: Partition) -> None:
        self.segments = {s.id: s for s in part.segments}
        self.maps: dict[int, tuple[object, mmap.mmap | bytes]] = {}
        self.cache: dict[int, tuple[int, bytes] | None] = {}

    def close(self) -> None:
        for f, m in self.maps.values():
            if isinstance(m, mmap.mmap):
                m.close()
            f.close()  # type: ignore[attr-defined]

    def at(self, offset: int) -> tuple[int, bytes] | None:
        """(id, series file key) of the insert entry at ``offset``, or None."""
        if offset in self.cache:
            return self.cache[offset]
        got = self._read(offset)
        self.cache[offset] = got
        return got

    def _read(self, offset: int) -> tuple[int, bytes] | None:
        seg_id, pos = fmt.split_offset(offset)
        if offset >> 48:
            return None
        seg = self.segments.get(seg_id)
        if seg is None or pos < fmt.SEGMENT_HEADER_SIZE or pos + fmt.ENTRY_HEADER_SIZE > seg.size:
            return None
        if seg_id not in self.maps:
            f = open_regular(seg.path, "series segment")
            n = os.fstat(f.fileno()).st_size
            self.maps[seg_id] = (f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if n else b"")
        buf = self.maps[seg_id][1]
        end = min(seg.size, len(buf))
        flag, sid = fmt.ENTRY_HEADER.unpack_from(buf, pos)
        if flag != fmt.ENTRY_INSERT:
            return None
        k0 = pos + fmt.ENTRY_HEADER_SIZE
        k1 = key_extent(buf, k0, end)
        if k1 is None:
            return None
        return sid, bytes(buf[k0:k1])


def check_series_index(path: str, part: Partition) -> None:
    """Check the ``index`` file at ``path`` of the partition ``part`` (as :func:`read_partition`
    read it: its segments parsed whole). See the module docstring."""
    f = open_regular(path, "series index")
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < _HEADER.size:
            raise TruncatedError(f"series index of {size} bytes is shorter than its header", path=path, offset=0)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            entries = _Entries(part)
            try:
                _check(buf, size, path, part, entries)
            finally:
                entries.close()


def _check(buf: mmap.mmap, size: int, path: str, part: Partition, entries: _Entries) -> None:
    magic, version, max_id, max_off, count, cap, k_off, k_size, i_off, i_size = _HEADER.unpack_from(buf, 0)
    if magic != fmt.INDEX_MAGIC:
        raise FormatError(f"not a series index (magic {magic!r})", path=path, offset=0, field="magic")
    if version != fmt.INDEX_VERSION:
        raise FormatError(f"series index version {version}", path=path, offset=4, field="version")
    if cap <= 0 or cap & (cap - 1) or cap * fmt.INDEX_ELEM_SIZE > size:
        raise FormatError(f"series index capacity {cap} (a power of 2 that fits the file)", path=path, offset=29,
                          field="capacity")
    # influxd's count is every insert entry up to the max offset (tombstoned ones too), and its
    # capacity follows from it (``compactIndexTo``)
    inserts = sum(
        1
        for seg in part.segments
        for flag, _i, off, _k in segment_entries(seg.path, seg.id, part.id)
        if flag == fmt.ENTRY_INSERT and off <= max_off
    )
    if count != inserts:
        raise FormatError(f"series index count {count}, the segments hold {inserts} series up to its max offset",
                          path=path, offset=21, field="count")
    if cap != _pow2(count * 100 // fmt.INDEX_LOAD_FACTOR):
        raise FormatError(f"series index capacity {cap} for {count} series (influxd makes it "
                          f"{_pow2(count * 100 // fmt.INDEX_LOAD_FACTOR)})", path=path, offset=29, field="capacity")
    want = cap * fmt.INDEX_ELEM_SIZE
    for what, off, sz, at in (("key/id map", k_off, k_size, 37), ("id/offset map", i_off, i_size, 53)):
        if sz != want or off < _HEADER.size or off + sz > size:
            raise FormatError(f"series index {what} at {off}+{sz}: not {cap} slots inside the file", path=path,
                              offset=at, field=what)
    mask = cap - 1
    if count:
        e = entries.at(max_off) if max_off > 0 else None
        if e is None or e[0] != max_id:
            raise FormatError(f"series index max offset {max_off} / max id {max_id} name no insert entry",
                              path=path, offset=13, field="max offset")
    key_slots: dict[int, int] = {}  # entry offset -> slot
    hashes: dict[int, int] = {}

    def key_hash(off: int) -> int | None:
        h = hashes.get(off)
        if h is None:
            e = entries.at(off)
            if e is None:
                return None
            h = hashes[off] = rhh.hash_key(e[1])
        return h

    for i in range(cap):
        at = k_off + i * fmt.INDEX_ELEM_SIZE
        off, sid = _ELEM.unpack_from(buf, at)
        if off == 0:
            continue
        e = entries.at(off)
        if e is None or e[0] != sid:
            raise FormatError(f"series index key slot {i} names offset {off:#x} id {sid}: no such insert entry",
                              path=path, offset=at, field="key/id map")
        if off in key_slots:
            raise FormatError(f"series index key slot {i} repeats offset {off:#x}", path=path, offset=at,
                              field="key/id map")
        key_slots[off] = i

    def key_slot(j: int) -> int:
        return int(_ELEM.unpack_from(buf, k_off + j * fmt.INDEX_ELEM_SIZE)[0])

    for off, i in key_slots.items():
        h = key_hash(off)
        assert h is not None
        why = rhh.probe(h & mask, cap, key_slot, off.__eq__, key_hash)
        if why is not None:
            raise FormatError(f"series index key slot {i}: influxd's lookup of its key fails ({why})", path=path,
                              offset=k_off + i * fmt.INDEX_ELEM_SIZE, field="key/id map")
    id_slots: dict[int, int] = {}  # id -> entry offset
    for i in range(cap):
        at = i_off + i * fmt.INDEX_ELEM_SIZE
        sid, off = _ELEM.unpack_from(buf, at)
        if off == 0 and sid == 0:
            continue
        e = entries.at(off)
        if e is None or e[0] != sid or sid in id_slots:
            raise FormatError(f"series index id slot {i} names id {sid} at offset {off:#x}: no such insert entry",
                              path=path, offset=at, field="id/offset map")
        id_slots[sid] = off

    def id_slot(j: int) -> int:
        return int(_ELEM.unpack_from(buf, i_off + j * fmt.INDEX_ELEM_SIZE)[0])

    for sid in id_slots:
        why = rhh.probe(rhh.hash_uint64(sid) & mask, cap, id_slot, sid.__eq__,
                        lambda v: rhh.hash_uint64(v) if v in id_slots else None)
        if why is not None:
            raise FormatError(f"series index: influxd's lookup of id {sid} fails ({why})", path=path,
                              offset=i_off, field="id/offset map")
    if len(id_slots) != len(key_slots):
        raise FormatError(f"series index maps hold {len(key_slots)} keys and {len(id_slots)} ids", path=path,
                          offset=i_off, field="id/offset map")
    for sid, off in part.offsets.items():
        if off <= max_off and (off not in key_slots or id_slots.get(sid) != off):
            raise FormatError(f"series index lacks series {sid} (entry at {off:#x}, before its max offset "
                              f"{max_off:#x}): influxd cannot find it", path=path, offset=k_off, field="key/id map")
