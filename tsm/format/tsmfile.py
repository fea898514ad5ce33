"""TSM1 file layout (TSM_WAL.md §1.1-§1.7): Construct definitions and constants, no I/O.

::

    header  @0            magic 0x16D116D1 (u32 BE), version 0x01
    blocks  @5            frames: CRC-32/IEEE (u32 BE) + block bytes (§1.3)
    index   @index_offset per key: key_len u16, key, type u8, count u16, count x entry (§1.5)
    footer  @size-8       index_offset u64 BE (§1.6)

An index entry is 28 bytes: min_time i64, max_time i64, offset u64 (of the frame's CRC), size u32
(frame length including the 4 CRC bytes).
"""

from __future__ import annotations

from construct import Bytes, Const, Int8ub, Int16ub, Int32ub, Int64sb, Int64ub, Struct, this

MAGIC = 0x16D116D1
VERSION = 1
HEADER_SIZE = 5
FOOTER_SIZE = 8
CRC_SIZE = 4
ENTRY_SIZE = 28
#: key_len (2) + type (1) + count (2) around the key bytes of an index record
RECORD_HEAD_SIZE = 5
#: smallest valid file: header, one frame of >= 1 byte, one record with a 1-byte key and one entry, footer
MIN_FILE_SIZE = HEADER_SIZE + CRC_SIZE + 1 + RECORD_HEAD_SIZE + 1 + ENTRY_SIZE + FOOTER_SIZE
MAX_KEY_LEN = 0xFFFF
MAX_ENTRIES_PER_KEY = 0xFFFF
#: influxd starts a new file once written bytes + index exceed this (§1.7)
MAX_FILE_SIZE_SOFT = 0x80000000

Header = Struct(
    "magic" / Const(MAGIC, Int32ub),
    "version" / Int8ub,
)

Footer = Struct("index_offset" / Int64ub)

IndexEntry = Struct(
    "min_time" / Int64sb,
    "max_time" / Int64sb,
    "offset" / Int64ub,
    "size" / Int32ub,
)

RecordHead = Struct(
    "key_len" / Int16ub,
    "key" / Bytes(this.key_len),
    "block_type" / Int8ub,
    "count" / Int16ub,
)

#: Compiled parsers skip checks (Construct docs); the reader uses struct for hot paths and these
#: definitions for building and for tests.
__all__ = [
    "MAGIC",
    "VERSION",
    "HEADER_SIZE",
    "FOOTER_SIZE",
    "CRC_SIZE",
    "ENTRY_SIZE",
    "RECORD_HEAD_SIZE",
    "MIN_FILE_SIZE",
    "MAX_KEY_LEN",
    "MAX_ENTRIES_PER_KEY",
    "Header",
    "Footer",
    "IndexEntry",
    "RecordHead",
]
