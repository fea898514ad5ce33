"""On-disk layouts of influxd 1.6.7's series file and tsi1 index (no I/O here).

Facts from influxd's source (``tsdb/``):

Series file, one per database: ``<datadir>/<db>/_series/`` (``store.go`` ``SeriesFileDirectory``)
holding 8 partitions ``00``..``07`` (``series_file.go`` ``SeriesFilePartitionN``, dir names ``%02x``).
A series is placed in partition ``xxhash(series file key) % 8``; partition ``p`` hands out ids
``p+1, p+1+8, p+1+16, ...`` (``series_partition.go``: ``seq = id + 1``, ``seq += 8``), so
``(id - 1) % 8`` is the partition of an id.

* segment files ``0000``, ``0001``, ... (4 lowercase hex digits, ``series_segment.go``): header
  ``"SSEG"`` + version 1, then entries, then zeros up to the segment's fixed size
  (:func:`segment_size`: 4 MiB for segment 0, doubling up to 256 MiB). An entry is flag (1 insert,
  2 tombstone) + id (uint64 BE) + for an insert the series file key. A zero flag ends the data.
* series file key (``series_file.go`` ``AppendSeriesKey``): uvarint(size of the rest) +
  uint16 BE name length + name + uvarint(tag count) + per tag uint16 BE key length, key,
  uint16 BE value length, value. Names, keys and values are stored unescaped.
* ``index`` (``series_index.go``), written by influxd's partition compaction once 128 Ki series are
  held in memory: header ``"SIDX"`` + version 1 + max series id, max offset, count, capacity,
  key/id map offset+size, id/offset map offset+size (int64 BE each), then two Robin Hood hash maps
  of ``capacity`` 16-byte elements: (entry offset, id) by ``rhh.HashKey(key)`` and (id, entry
  offset) by ``rhh.HashUint64(id)``. Offsets are ``segment id << 32 | position of the entry``.

tsi1 index, one per shard: ``<shard>/index/0``..``7`` (``index/tsi1/index.go``, ``PartitionN = 8``);
a series goes to partition ``xxhash(line-protocol series key) & 7``.

* ``MANIFEST`` (``partition.go``): JSON ``{"levels": [...], "files": [...], "version": 1}``
  (Go ``json.MarshalIndent`` with two spaces, newline at the end).
* log files ``L0-%08d.tsl`` (``log_file.go``): entries flag + uvarint series id + uvarint length +
  measurement name + uvarint length + tag key + uvarint length + tag value + CRC-32 (IEEE, BE) of
  all the entry's bytes before it. Flag 0 adds a series (its name and tags come from the series
  file; name/key/value are empty), 1 tombstones a series id, 2/4/8 tombstone a measurement / tag
  key / tag value. influxd stops reading at the first short or checksum-failing entry.
* index files ``L<level>-%08d.tsi`` (``index_file.go``, ``measurement_block.go``,
  ``tag_block.go``), written by influxd's compactions: ``"TSI1"``, blocks, and an 82-byte trailer
  of (offset, size) pairs + version 1.
"""

from __future__ import annotations

import mmap
import re
import struct
from typing import Any

#: what the readers take: a file's bytes or its memory map
Buffer = bytes | bytearray | memoryview | mmap.mmap

# ---- series file ---------------------------------------------------------------------------

SERIES_FILE_DIR = "_series"
SERIES_PARTITION_N = 8
SEGMENT_MAGIC = b"SSEG"
SEGMENT_VERSION = 1
SEGMENT_HEADER_SIZE = 5
SEGMENT_MIN_SHIFT = 22  # 4 MiB
SEGMENT_MAX_SHIFT = 28  # 256 MiB
SEGMENT_NAME_RE = re.compile(r"^[0-9a-f]{4}$")
#: highest segment id a 2-byte id allows
MAX_SEGMENT_ID = 0xFFFF

ENTRY_INSERT = 0x01
ENTRY_TOMBSTONE = 0x02
ENTRY_HEADER_SIZE = 9  # flag + id

#: influxd's limit on a series key (``models.MaxKeyLength``); a series file key is at most this
#: plus its small header, so longer lengths read from a file are damage.
MAX_KEY_LEN = 65535
MAX_SERIES_KEY_SIZE = MAX_KEY_LEN + 16

INDEX_FILE_NAME = "index"
INDEX_MAGIC = b"SIDX"
INDEX_VERSION = 1
INDEX_HEADER_SIZE = 4 + 1 + 8 * 8
INDEX_ELEM_SIZE = 16
INDEX_LOAD_FACTOR = 90


def segment_size(segment_id: int) -> int:
    """``SeriesSegmentSize``: fixed file size of segment ``segment_id``."""
    return 1 << min(segment_id + SEGMENT_MIN_SHIFT, SEGMENT_MAX_SHIFT)


def segment_name(segment_id: int) -> str:
    return f"{segment_id:04x}"


def partition_dir_name(p: int) -> str:
    return f"{p:02x}"


def join_offset(segment_id: int, pos: int) -> int:
    return (segment_id << 32) | pos


def split_offset(offset: int) -> tuple[int, int]:
    return (offset >> 32) & 0xFFFF, offset & 0xFFFFFFFF


def partition_of_id(series_id: int) -> int:
    return (series_id - 1) % SERIES_PARTITION_N


#: the fixed part of an entry (:data:`EntryHeader`); an insert is followed by a :data:`SeriesKey`
ENTRY_HEADER = struct.Struct(">BQ")
INDEX_ELEM = struct.Struct(">QQ")

# ---- tsi1 index ----------------------------------------------------------------------------

INDEX_DIR = "index"
INDEX_PARTITION_N = 8
MANIFEST_NAME = "MANIFEST"
MANIFEST_VERSION = 1
LOG_FILE_EXT = ".tsl"
FILE_NAME_RE = re.compile(r"^L(\d+)-(\d+)\.(tsl|tsi)$")

#: ``partition.go`` ``DefaultCompactionLevels`` (bloom filter bits m, hash count k per level)
DEFAULT_LEVELS = (
    (0, 0),
    (1 << 25, 6),
    (1 << 25, 6),
    (1 << 26, 6),
    (1 << 27, 6),
    (1 << 28, 6),
    (1 << 29, 6),
    (1 << 30, 6),
)

#: largest tsi1 ``MANIFEST`` read (influxd's are a few hundred bytes)
MAX_MANIFEST_SIZE = 1 << 20

LOG_SERIES_INSERT = 0x00
LOG_SERIES_TOMBSTONE = 0x01
LOG_MEASUREMENT_TOMBSTONE = 0x02
LOG_TAG_KEY_TOMBSTONE = 0x04
LOG_TAG_VALUE_TOMBSTONE = 0x08
LOG_FLAGS = (
    LOG_SERIES_INSERT,
    LOG_SERIES_TOMBSTONE,
    LOG_MEASUREMENT_TOMBSTONE,
    LOG_TAG_KEY_TOMBSTONE,
    LOG_TAG_VALUE_TOMBSTONE,
)

#: a log entry's checksum (:data:`LogEntry`)
CHECKSUM = struct.Struct(">I")


def log_file_name(file_id: int) -> str:
    return f"L0-{file_id:08d}{LOG_FILE_EXT}"


INDEX_FILE_MAGIC = b"TSI1"
INDEX_FILE_VERSION = 1
INDEX_FILE_TRAILER_SIZE = 82

MEASUREMENT_BLOCK_VERSION = 1
MEASUREMENT_TOMBSTONE = 0x01
MEASUREMENT_BLOCK_TRAILER_SIZE = 66
#: the data section starts with one zero byte (``MeasurementFillSize``)
MEASUREMENT_FILL_SIZE = 1
#: the fixed head of :data:`MeasurementElem` (flag, tag block offset, size), read by hand
MEASUREMENT_ELEM_HEAD = struct.Struct(">BQQ")

TAG_BLOCK_VERSION = 1
TAG_KEY_TOMBSTONE = 0x01
TAG_VALUE_TOMBSTONE = 0x01
TAG_BLOCK_TRAILER_SIZE = 58
#: the fixed head of :data:`TagKeyElem` (flag, data offset, size, hash index offset, size)
TAG_KEY_ELEM_HEAD = struct.Struct(">BQQQQ")


# --- the Construct definitions: made on first use (importing construct is ~40 ms of start-up that
# the readers and writers, which use the struct formats above, do not need) ----------------------
SegmentHeader: Any  # a segment file's header: ``SEGMENT_MAGIC`` + version
EntryHeader: Any  # the fixed part of a series file entry (:data:`ENTRY_HEADER`)
Tag: Any  # one tag of a series file key
SeriesKeyBody: Any  # series file key (``AppendSeriesKey``) without its size prefix
SeriesKey: Any  # series file key (``AppendSeriesKey``): size-prefixed body
MapPosition: Any  # (offset, size) of one of a series index's maps
SeriesIndexHeader: Any  # the header of a series ``index`` file
LogEntryBody: Any  # one log entry without its checksum (the bytes the CRC covers)
LogEntry: Any  # one log entry: body + CRC-32 (:data:`CHECKSUM`)
Section: Any  # (offset, size) of a section of an index file or block
IndexFileTrailer: Any  # an index file's trailer (:data:`INDEX_FILE_TRAILER_SIZE` bytes)
MeasurementBlockTrailer: Any  # a measurement block's trailer (:data:`MEASUREMENT_BLOCK_TRAILER_SIZE` bytes)
MeasurementElem: Any  # one measurement element: flag, tag block (offset, size), name, series count, series data
TagBlockTrailer: Any  # a tag block's trailer (:data:`TAG_BLOCK_TRAILER_SIZE` bytes)
TagKeyElem: Any  # one tag key element (head: :data:`TAG_KEY_ELEM_HEAD`)
TagValueElem: Any  # one tag value element
_CONSTRUCT_NAMES = frozenset({"SegmentHeader", "EntryHeader", "Tag", "SeriesKeyBody", "SeriesKey",
    "MapPosition", "SeriesIndexHeader", "LogEntryBody", "LogEntry", "Section", "IndexFileTrailer",
    "MeasurementBlockTrailer", "MeasurementElem", "TagBlockTrailer", "TagKeyElem", "TagValueElem"})


def _construct_definitions() -> dict[str, Any]:
    from construct import (
        Array,
        Const,
        GreedyBytes,
        Int8ub,
        Int16ub,
        Int32ub,
        Int64sb,
        Int64ub,
        Prefixed,
        Struct,
        VarInt,
        this,
    )

    SegmentHeader = Struct("magic" / Const(SEGMENT_MAGIC), "version" / Int8ub)
    EntryHeader = Struct("flag" / Int8ub, "id" / Int64ub)
    Tag = Struct("key" / Prefixed(Int16ub, GreedyBytes), "value" / Prefixed(Int16ub, GreedyBytes))
    SeriesKeyBody = Struct(
        "name" / Prefixed(Int16ub, GreedyBytes),
        "tag_n" / VarInt,
        "tags" / Array(this.tag_n, Tag),
    )
    SeriesKey = Prefixed(VarInt, SeriesKeyBody)
    MapPosition = Struct("offset" / Int64sb, "size" / Int64sb)
    SeriesIndexHeader = Struct(
        "magic" / Const(INDEX_MAGIC),
        "version" / Int8ub,
        "max_series_id" / Int64ub,
        "max_offset" / Int64sb,
        "count" / Int64ub,
        "capacity" / Int64sb,
        "key_id_map" / MapPosition,
        "id_offset_map" / MapPosition,
    )
    LogEntryBody = Struct(
        "flag" / Int8ub,
        "series_id" / VarInt,
        "name" / Prefixed(VarInt, GreedyBytes),
        "key" / Prefixed(VarInt, GreedyBytes),
        "value" / Prefixed(VarInt, GreedyBytes),
    )
    LogEntry = Struct("body" / LogEntryBody, "checksum" / Int32ub)
    Section = Struct("offset" / Int64sb, "size" / Int64sb)
    IndexFileTrailer = Struct(
        "measurement_block" / Section,
        "series_id_set" / Section,
        "tombstone_series_id_set" / Section,
        "series_sketch" / Section,
        "tombstone_series_sketch" / Section,
        "version" / Int16ub,
    )
    MeasurementBlockTrailer = Struct(
        "data" / Section,
        "hash_index" / Section,
        "sketch" / Section,
        "tombstone_sketch" / Section,
        "version" / Int16ub,
    )
    MeasurementElem = Struct(
        "flag" / Int8ub,
        "tag_block" / Struct("offset" / Int64ub, "size" / Int64ub),
        "name" / Prefixed(VarInt, GreedyBytes),
        "series_n" / VarInt,
        "series_data" / Prefixed(VarInt, GreedyBytes),
    )
    TagBlockTrailer = Struct(
        "value_data" / Section,
        "key_data" / Section,
        "hash_index" / Section,
        "size" / Int64sb,
        "version" / Int16ub,
    )
    TagKeyElem = Struct(
        "flag" / Int8ub,
        "data" / Struct("offset" / Int64ub, "size" / Int64ub),
        "hash_index" / Struct("offset" / Int64ub, "size" / Int64ub),
        "key" / Prefixed(VarInt, GreedyBytes),
    )
    TagValueElem = Struct(
        "flag" / Int8ub,
        "value" / Prefixed(VarInt, GreedyBytes),
        "series_n" / VarInt,
        "series_data" / Prefixed(VarInt, GreedyBytes),
    )
    return {k: v for k, v in locals().items() if k in _CONSTRUCT_NAMES}


def __getattr__(name: str) -> Any:
    """The Construct definitions above (PEP 562): built, with construct imported, on first access."""
    if name in _CONSTRUCT_NAMES:
        globals().update(_construct_definitions())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
