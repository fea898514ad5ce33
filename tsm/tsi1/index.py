"""Read and write influxd 1.6.7's per-shard tsi1 index (``<shard>/index/0..7``).

Layouts: :mod:`influx_archive.tsm.tsi1.format` (from ``tsdb/index/tsi1/partition.go``,
``log_file.go``, ``index_file.go``, ``measurement_block.go``, ``tag_block.go``).

* ``MANIFEST``: :func:`read_manifest` / :func:`manifest_bytes` (Go's ``json.MarshalIndent`` form).
* log files (``.tsl``): :func:`iter_log_file` / :func:`log_entry_bytes`. influxd stops replaying a
  log at the first short or checksum-failing entry and carries on without what follows; here any
  such entry is a :class:`FormatError` (:class:`ChecksumError`, :class:`TruncatedError`) naming
  the file and offset, so nothing is lost silently.
* index files (``.tsi``, what influxd's compactions write): :class:`IndexFile`, read-only and
  whole: measurements with their series ids, tag keys, tag values with their series ids, the
  file's series id set and tombstone set (Roaring bitmaps, :mod:`.roaring`). Every offset, size
  and count is checked against the file before it is used; the file is memory-mapped.
* :class:`ShardIndex`: a whole ``index/`` directory.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...archive.errors import ChecksumError, FormatError, SourceIOError, TruncatedError
from ...archive.untrusted import open_regular
from . import format as fmt
from . import rhh, roaring
from .serieskey import read_uvarint
from .xxhash import sum64


def index_partition(line_series_key: bytes) -> int:
    """``Index.partitionIdx``: tsi1 partition of a line-protocol series key."""
    return sum64(line_series_key) & (fmt.INDEX_PARTITION_N - 1)


# ---- MANIFEST ------------------------------------------------------------------------------


def manifest_bytes(files: list[str], levels: Sequence[tuple[int, int]] = fmt.DEFAULT_LEVELS) -> bytes:
    """What ``Manifest.Write`` writes: ``json.MarshalIndent(m, "", "  ")`` + newline (empty
    fields and zero m/k are omitted, as Go's ``omitempty`` does)."""
    obj: dict[str, Any] = {}
    if levels:
        obj["levels"] = [{k: v for k, v in (("m", m), ("k", kk)) if v} for m, kk in levels]
    if files:
        obj["files"] = list(files)
    obj["version"] = fmt.MANIFEST_VERSION
    return json.dumps(obj, indent=2).encode() + b"\n"


@dataclass
class Manifest:
    levels: list[tuple[int, int]]
    files: list[str]
    version: int


def parse_manifest(data: bytes, path: str | None = None) -> Manifest:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"MANIFEST is not JSON: {exc}", path=path) from None
    if not isinstance(obj, dict):
        raise FormatError("MANIFEST is not a JSON object", path=path)
    version = obj.get("version", 0)
    if version != fmt.MANIFEST_VERSION:
        raise FormatError(
            f"MANIFEST version {version!r} (influxd 1.6.7 opens only {fmt.MANIFEST_VERSION})",
            path=path,
            field="version",
        )
    levels_raw = obj.get("levels", [])
    files = obj.get("files", [])
    if not isinstance(levels_raw, list) or not all(isinstance(x, dict) for x in levels_raw):
        raise FormatError("MANIFEST levels is not a list of objects", path=path, field="levels")
    levels = []
    for lv in levels_raw:
        m, k = lv.get("m", 0), lv.get("k", 0)
        if not (isinstance(m, int) and isinstance(k, int) and m >= 0 and k >= 0):
            raise FormatError("MANIFEST level with a bad m/k", path=path, field="levels")
        levels.append((m, k))
    if not isinstance(files, list) or not all(isinstance(x, str) for x in files):
        raise FormatError("MANIFEST files is not a list of names", path=path, field="files")
    for name in files:
        if not fmt.FILE_NAME_RE.match(name):
            raise FormatError(f"MANIFEST lists {name!r}, not an index or log file name", path=path, field="files")
    return Manifest(levels, files, version)


def read_manifest(path: str) -> Manifest:
    try:
        with open_regular(path, "MANIFEST") as f:
            data = f.read(fmt.MAX_MANIFEST_SIZE + 1)
    except OSError as exc:
        raise SourceIOError(f"cannot read source MANIFEST: {exc.strerror}", path=path) from exc
    if len(data) > fmt.MAX_MANIFEST_SIZE:
        raise FormatError("MANIFEST larger than 1 MiB", path=path)
    return parse_manifest(data, path)


# ---- log files -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEntry:
    flag: int
    series_id: int
    name: bytes
    key: bytes
    value: bytes
    offset: int
    size: int


def _uvarint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def log_entry_bytes(flag: int, series_id: int = 0, name: bytes = b"", key: bytes = b"", value: bytes = b"") -> bytes:
    """``appendLogEntry``."""
    body = b"".join(
        (
            bytes([flag]),
            _uvarint(series_id),
            _uvarint(len(name)),
            name,
            _uvarint(len(key)),
            key,
            _uvarint(len(value)),
            value,
        )
    )
    return body + fmt.CHECKSUM.pack(zlib.crc32(body))


def parse_log(buf: fmt.Buffer, path: str | None = None, base: int = 0) -> Iterator[LogEntry]:
    """Entries of a log file's bytes, every one checked (see the module docstring)."""
    n = len(buf)
    pos = 0
    while pos < n:
        start = pos
        flag = buf[pos]
        if flag not in fmt.LOG_FLAGS:
            raise FormatError(f"log entry flag {flag:#04x} unknown", path=path, offset=base + start, field="flag")
        pos += 1
        r = read_uvarint(buf, pos, n)
        if r is None:
            raise TruncatedError("log entry cut in its series id", path=path, offset=base + start, field="series id")
        sid, pos = r
        parts = []
        for what in ("name", "key", "value"):
            r = read_uvarint(buf, pos, n)
            if r is None:
                raise TruncatedError(f"log entry cut in its {what} length", path=path, offset=base + start, field=what)
            ln, pos = r
            if ln > fmt.MAX_KEY_LEN:
                raise FormatError(
                    f"log entry {what} length {ln} above influxd's key limit",
                    path=path,
                    offset=base + start,
                    field=what,
                )
            if pos + ln > n:
                raise TruncatedError(
                    f"log entry {what} of {ln} bytes cut by the end of the file",
                    path=path,
                    offset=base + start,
                    field=what,
                )
            parts.append(bytes(buf[pos : pos + ln]))
            pos += ln
        if pos + fmt.CHECKSUM.size > n:
            raise TruncatedError("log entry cut in its checksum", path=path, offset=base + start, field="checksum")
        want = fmt.CHECKSUM.unpack_from(buf, pos)[0]
        got = zlib.crc32(buf[start:pos])
        if want != got:
            raise ChecksumError(
                f"log entry checksum {want:#010x}, computed {got:#010x} (influxd drops this entry and all after it)",
                path=path, offset=base + start, field="checksum",
            )
        pos += fmt.CHECKSUM.size
        if flag in (fmt.LOG_SERIES_INSERT, fmt.LOG_SERIES_TOMBSTONE) and sid == 0:
            raise FormatError("log series entry with id 0", path=path, offset=base + start, field="series id")
        yield LogEntry(flag, sid, parts[0], parts[1], parts[2], base + start, pos - start)


def iter_log_file(path: str) -> Iterator[LogEntry]:
    f = open_regular(path, "log file")
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            yield from parse_log(m, path)


# ---- index files (read-only) ---------------------------------------------------------------


@dataclass
class TagValue:
    value: bytes
    series_n: int
    deleted: bool
    series_ids: list[int] = field(default_factory=list)
    offset: int = 0  # of the element in the file


@dataclass
class TagKey:
    key: bytes
    deleted: bool
    values: list[TagValue] = field(default_factory=list)
    offset: int = 0


@dataclass
class Measurement:
    name: bytes
    deleted: bool
    series_n: int
    tag_keys: list[TagKey] = field(default_factory=list)
    series_ids: list[int] = field(default_factory=list)
    offset: int = 0


def _section(
    buf: fmt.Buffer, off: int, size: int, lo: int, hi: int, what: str, path: str | None, where: int
) -> tuple[int, int]:
    if off < lo or size < 0 or off + size > hi:
        raise FormatError(f"{what} at {off}+{size} outside {lo}..{hi}", path=path, offset=where, field=what)
    return off, off + size


def _prefixed(buf: fmt.Buffer, pos: int, end: int, what: str, path: str | None) -> tuple[int, int]:
    """A uvarint length at ``pos`` and the field it prefixes: (field start, field end), inside ``end``."""
    r = read_uvarint(buf, pos, end)
    if r is None:
        raise TruncatedError(f"{what} length cut", path=path, offset=pos, field=what)
    ln, p = r
    if p + ln > end:
        raise TruncatedError(f"{what} of {ln} bytes runs past its block", path=path, offset=pos, field=what)
    return p, p + ln


def _varbytes(buf: fmt.Buffer, pos: int, end: int, what: str, path: str | None) -> tuple[bytes, int]:
    p, stop = _prefixed(buf, pos, end, what, path)
    return bytes(buf[p:stop]), stop


def _series_list(
    buf: fmt.Buffer, pos: int, end: int, count: int, what: str, path: str | None, where: int
) -> tuple[list[int], int]:
    """A series data field: uvarint length + delta-encoded uvarint ids (``measurement_block.go``
    ``ForEachSeriesID``, ``tag_block.go`` ``SeriesIDs``); ``count`` ids, strictly increasing."""
    p, stop = _prefixed(buf, pos, end, what, path)
    ln = stop - p
    if count > ln:  # every id takes at least one byte
        raise FormatError(f"{what}: {count} ids stated in {ln} bytes", path=path, offset=where, field=what)
    out: list[int] = []
    prev = 0
    while p < stop:
        r = read_uvarint(buf, p, stop)
        if r is None:
            raise TruncatedError(f"{what}: id cut", path=path, offset=p, field=what)
        delta, p = r
        if delta == 0 or prev + delta > 0xFFFFFFFFFFFFFFFF:
            raise FormatError(f"{what}: ids not strictly increasing", path=path, offset=p, field=what)
        prev += delta
        out.append(prev)
    if len(out) != count:
        raise FormatError(f"{what}: {len(out)} ids, the element states {count}", path=path, offset=where, field=what)
    return out, stop


_U64 = struct.Struct(">Q")


def _check_hash_index(
    buf: fmt.Buffer, h0: int, h1: int, elems: dict[int, bytes], what: str, path: str | None
) -> None:
    """A block's hash index ``buf[h0:h1]`` (uint64 capacity, then that many uint64 element
    offsets: ``rhh`` tables, ``MeasurementBlock.Elem``, ``TagBlock.DecodeTagKeyElem`` /
    ``DecodeTagValueElem``) finds every element of ``elems`` (offset -> key) where it is."""
    if h1 - h0 < 8:
        raise TruncatedError(f"{what} hash index of {h1 - h0} bytes", path=path, offset=h0, field=what)
    n = _U64.unpack_from(buf, h0)[0]
    if 8 + 8 * n != h1 - h0 or (elems and n == 0) or n & (n - 1):
        raise FormatError(f"{what} hash index of capacity {n} in {h1 - h0} bytes", path=path, offset=h0, field=what)
    hashes = {off: rhh.hash_key(k) for off, k in elems.items()}
    for off, key in elems.items():
        why = rhh.probe(
            hashes[off], n, lambda i: _U64.unpack_from(buf, h0 + 8 + 8 * i)[0], off.__eq__, hashes.get
        )
        if why is not None:
            raise FormatError(f"{what} hash index does not find {key[:80]!r}: {why}", path=path, offset=h0,
                              field=what)


_MEASUREMENT_HEAD = fmt.MEASUREMENT_ELEM_HEAD
_TAG_KEY_HEAD = fmt.TAG_KEY_ELEM_HEAD


class IndexFile:
    """A ``.tsi`` file: measurements with their tag keys and values (read-only)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open_regular(path, "index file")
        self.size = os.fstat(self._f.fileno()).st_size
        try:
            self._buf = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""
            self._parse()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        buf = getattr(self, "_buf", None)
        if isinstance(buf, mmap.mmap):
            buf.close()
        self._f.close()

    def __enter__(self) -> IndexFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _parse(self) -> None:
        buf, n, path = self._buf, self.size, self.path
        if n < len(fmt.INDEX_FILE_MAGIC) + fmt.INDEX_FILE_TRAILER_SIZE:
            raise TruncatedError(f"index file of {n} bytes is shorter than magic + trailer", path=path, offset=0)
        magic = bytes(buf[0 : len(fmt.INDEX_FILE_MAGIC)])
        if magic != fmt.INDEX_FILE_MAGIC:
            raise FormatError(f"not a tsi1 index file (magic {magic!r})", path=path, offset=0, field="magic")
        toff = n - fmt.INDEX_FILE_TRAILER_SIZE
        t = fmt.IndexFileTrailer.parse(bytes(buf[toff:n]))
        if t.version != fmt.INDEX_FILE_VERSION:
            raise FormatError(f"index file version {t.version}", path=path, offset=n - 2, field="version")
        for name in (
            "measurement_block",
            "series_id_set",
            "tombstone_series_id_set",
            "series_sketch",
            "tombstone_series_sketch",
        ):
            s = t[name]
            _section(buf, s.offset, s.size, len(fmt.INDEX_FILE_MAGIC), toff, name.replace("_", " "), path, toff)
        self.trailer = t
        # ids are 32-bit in the sets (``tsdb.SeriesIDSet``); a file of n bytes states at most
        # 8n ids in bitmap containers, and a run container is bounded by this too
        bound = 8 * n + (1 << 16)
        s = t.series_id_set
        self.series_ids = roaring.decode(buf, s.offset, s.offset + s.size, path=path, max_ids=bound)
        s = t.tombstone_series_id_set
        self.tombstone_ids = roaring.decode(
            buf, s.offset, s.offset + s.size, path=path, max_ids=bound, what="tombstone series id set"
        )
        mb = t.measurement_block
        self.measurements = self._measurements(mb.offset, mb.offset + mb.size)

    def _measurements(self, lo: int, hi: int) -> list[Measurement]:
        buf, path = self._buf, self.path
        if hi - lo < fmt.MEASUREMENT_BLOCK_TRAILER_SIZE:
            raise TruncatedError("measurement block shorter than its trailer", path=path, offset=lo)
        toff = hi - fmt.MEASUREMENT_BLOCK_TRAILER_SIZE
        t = fmt.MeasurementBlockTrailer.parse(bytes(buf[toff:hi]))
        if t.version != fmt.MEASUREMENT_BLOCK_VERSION:
            raise FormatError(f"measurement block version {t.version}", path=path, offset=hi - 2, field="version")
        # offsets in the trailer are relative to the block
        d0, d1 = _section(buf, lo + t.data.offset, t.data.size, lo, toff, "measurement data", path, toff)
        out: list[Measurement] = []
        elems: dict[int, bytes] = {}
        if d1 - d0 < fmt.MEASUREMENT_FILL_SIZE:
            raise FormatError("measurement data section without its padding byte", path=path, offset=d0)
        pos = d0 + fmt.MEASUREMENT_FILL_SIZE  # a zero byte so that no element has offset 0
        while pos < d1:
            start = pos
            if pos + _MEASUREMENT_HEAD.size > d1:
                raise TruncatedError("measurement element cut", path=path, offset=pos)
            flag, tb_off, tb_size = _MEASUREMENT_HEAD.unpack_from(buf, pos)
            if flag & ~fmt.MEASUREMENT_TOMBSTONE:
                raise FormatError(f"measurement flag {flag:#04x} unknown", path=path, offset=start, field="flag")
            name, pos = _varbytes(buf, pos + _MEASUREMENT_HEAD.size, d1, "measurement name", path)
            if out and name <= out[-1].name:
                raise FormatError(f"measurement {name[:80]!r} out of order", path=path, offset=start, field="name")
            r = read_uvarint(buf, pos, d1)
            if r is None:
                raise TruncatedError("measurement series count cut", path=path, offset=pos)
            series_n, pos = r
            sids, pos = _series_list(buf, pos, d1, series_n, "measurement series data", path, start)
            m = Measurement(name, bool(flag & fmt.MEASUREMENT_TOMBSTONE), series_n, series_ids=sids, offset=start)
            t0, t1 = _section(
                buf,
                tb_off,
                tb_size,
                len(fmt.INDEX_FILE_MAGIC),
                self.size - fmt.INDEX_FILE_TRAILER_SIZE,
                "tag block",
                path,
                start,
            )
            m.tag_keys = self._tag_block(t0, t1)
            out.append(m)
            elems[start - d0] = name
        h0, h1 = _section(buf, lo + t.hash_index.offset, t.hash_index.size, lo, toff, "measurement hash index", path,
                          toff)
        _check_hash_index(buf, h0, h1, elems, "measurement block", path)
        return out

    def _tag_block(self, lo: int, hi: int) -> list[TagKey]:
        buf, path = self._buf, self.path
        if hi - lo < fmt.TAG_BLOCK_TRAILER_SIZE:
            raise TruncatedError("tag block shorter than its trailer", path=path, offset=lo)
        toff = hi - fmt.TAG_BLOCK_TRAILER_SIZE
        t = fmt.TagBlockTrailer.parse(bytes(buf[toff:hi]))
        if t.version != fmt.TAG_BLOCK_VERSION:
            raise FormatError(f"tag block version {t.version}", path=path, offset=hi - 2, field="version")
        if t.size != hi - lo:
            raise FormatError(
                f"tag block size {t.size}, block is {hi - lo} bytes", path=path, offset=toff, field="size"
            )
        k0, k1 = _section(buf, lo + t.key_data.offset, t.key_data.size, lo, toff, "tag key data", path, toff)
        keys: list[TagKey] = []
        key_elems: dict[int, bytes] = {}
        pos = k0
        while pos < k1:
            if pos + _TAG_KEY_HEAD.size > k1:
                raise TruncatedError("tag key element cut", path=path, offset=pos)
            flag, d_off, d_size, _h_off, _h_size = _TAG_KEY_HEAD.unpack_from(buf, pos)
            start = pos
            if flag & ~fmt.TAG_KEY_TOMBSTONE:
                raise FormatError(f"tag key flag {flag:#04x} unknown", path=path, offset=start, field="flag")
            key, pos = _varbytes(buf, pos + _TAG_KEY_HEAD.size, k1, "tag key", path)
            if keys and key <= keys[-1].key:
                raise FormatError(f"tag key {key[:80]!r} out of order", path=path, offset=start, field="tag key")
            tk = TagKey(key, bool(flag & fmt.TAG_KEY_TOMBSTONE), offset=start)
            v0, v1 = _section(buf, lo + d_off, d_size, lo, toff, "tag value data", path, start)
            value_elems: dict[int, bytes] = {}
            p = v0
            while p < v1:
                vstart = p
                vflag = buf[p]
                if vflag & ~fmt.TAG_VALUE_TOMBSTONE:
                    raise FormatError(f"tag value flag {vflag:#04x} unknown", path=path, offset=p, field="flag")
                value, p = _varbytes(buf, p + 1, v1, "tag value", path)
                if tk.values and value <= tk.values[-1].value:
                    raise FormatError(f"tag value {value[:80]!r} out of order", path=path, offset=vstart,
                                      field="tag value")
                r = read_uvarint(buf, p, v1)
                if r is None:
                    raise TruncatedError("tag value series count cut", path=path, offset=p)
                sn, p = r
                sids, p = _series_list(buf, p, v1, sn, "tag value series data", path, vstart)
                tk.values.append(TagValue(value, sn, bool(vflag & fmt.TAG_VALUE_TOMBSTONE), sids, vstart))
                value_elems[vstart - lo] = value
            x0, x1 = _section(buf, lo + _h_off, _h_size, lo, toff, "tag value hash index", path, start)
            _check_hash_index(buf, x0, x1, value_elems, f"tag key {key[:80]!r} value", path)
            keys.append(tk)
            key_elems[start - lo] = key
        h0, h1 = _section(buf, lo + t.hash_index.offset, t.hash_index.size, lo, toff, "tag key hash index", path, toff)
        _check_hash_index(buf, h0, h1, key_elems, "tag key", path)
        return keys


# ---- a shard's index directory ------------------------------------------------------------


@dataclass
class PartitionSummary:
    path: str
    manifest: Manifest
    log_series: set[int] = field(default_factory=set)  # series ids added (and not tombstoned) by log files
    log_tombstones: set[int] = field(default_factory=set)
    log_entries: int = 0
    index_files: list[str] = field(default_factory=list)
    measurements: dict[bytes, Measurement] = field(default_factory=dict)  # from index files
    #: the partition's series (``Partition.buildSeriesSet``): files oldest first, each one's
    #: tombstones removed, then its series added, from log and index files alike
    series: set[int] = field(default_factory=set)
    index_file_series: int = 0  # ids in the index files' series sets
    #: every index file's measurements (path -> as read), for checks against the series file
    index_file_measurements: dict[str, list[Measurement]] = field(default_factory=dict)


def read_index_partition(pdir: str, p: int) -> PartitionSummary:
    """One partition ``index/<p>`` of a shard's index: MANIFEST, every log and index file it lists."""
    mpath = os.path.join(pdir, fmt.MANIFEST_NAME)
    if not os.path.lexists(mpath):
        raise FormatError(f"index partition {p} has no MANIFEST", path=pdir)
    summary = PartitionSummary(pdir, read_manifest(mpath))
    # the MANIFEST lists the newest file first (``FileSet.PrependLogFile``)
    for name in reversed(summary.manifest.files):
        fpath = os.path.join(pdir, name)
        if not os.path.lexists(fpath):
            raise FormatError(f"MANIFEST lists {name}, which is missing", path=mpath, field="files")
        added: set[int] = set()
        dropped: set[int] = set()
        if name.endswith(fmt.LOG_FILE_EXT):
            for e in iter_log_file(fpath):
                summary.log_entries += 1
                if e.flag == fmt.LOG_SERIES_INSERT:
                    added.add(e.series_id)
                    dropped.discard(e.series_id)
                elif e.flag == fmt.LOG_SERIES_TOMBSTONE:
                    added.discard(e.series_id)
                    dropped.add(e.series_id)
            summary.log_series -= dropped
            summary.log_series |= added
            summary.log_tombstones -= added
            summary.log_tombstones |= dropped
        else:
            summary.index_files.insert(0, name)
            with IndexFile(fpath) as f:
                summary.index_file_measurements[fpath] = f.measurements
                for m in f.measurements:
                    summary.measurements.setdefault(m.name, m)
                added = set(f.series_ids)
                dropped = set(f.tombstone_ids)
                summary.index_file_series += len(added)
        summary.series -= dropped
        summary.series |= added
    return summary


class ShardIndex:
    """A shard's ``index/`` directory: the 8 partitions, their manifests, log and index files."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.partitions: list[PartitionSummary] = [
            read_index_partition(os.path.join(self.path, str(p)), p) for p in range(fmt.INDEX_PARTITION_N)
        ]

    def series_ids(self) -> set[int]:
        """Series ids the index holds: every partition's :attr:`PartitionSummary.series`."""
        out: set[int] = set()
        for p in self.partitions:
            out |= p.series
        return out
