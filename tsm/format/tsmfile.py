"""TSM1 file layout (docs/formats.md, TSM section): Construct definitions, the ``struct`` formats
the hot paths use for the same fields, named offsets and sizes, and the block-frame CRC check.
No I/O.

::

    header  @0            magic 0x16D116D1 (u32 BE), version 0x01
    blocks  @5            frames: CRC-32/IEEE (u32 BE) of the block + block bytes (type byte first)
    index   @index_offset per key: key_len u16, key, type u8, count u16, count x entry
    footer  @size-8       index_offset u64 BE

An index entry is 28 bytes: min_time i64, max_time i64, offset u64 (of the frame's CRC), size u32
(frame length including the 4 CRC bytes).

The Construct definitions are the reference (building, dumps, tests); the readers and writers use
the ``struct`` formats and offsets below, which tests/test_formats.py holds equal to them.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any

MAGIC = 0x16D116D1
VERSION = 1
MAX_KEY_LEN = 0xFFFF
MAX_ENTRIES_PER_KEY = 0xFFFF

# --- header and footer ----------------------------------------------------------------------
#: magic u32 BE, version u8 (``Header``'s fields)
HEADER = struct.Struct(">IB")
HEADER_SIZE = 5
#: offset of the version byte in the header
VERSION_OFFSET = 4

#: the index offset, u64 BE (``Footer``)
FOOTER = struct.Struct(">Q")
FOOTER_SIZE = 8

# --- block frames ---------------------------------------------------------------------------
CRC_SIZE = 4
#: offset of the block (its type byte) inside a frame
BLOCK_OFFSET = CRC_SIZE
#: smallest frame an index entry may point at: CRC, type byte and one more byte
MIN_FRAME_SIZE = CRC_SIZE + 2
CRC = struct.Struct(">I")
_unpack_crc = CRC.unpack_from

# --- index ------------------------------------------------------------------------------------
ENTRY_SIZE = 28
ENTRY = struct.Struct(">qqQI")

#: the key length at the start of a record, and the entry count after the type byte
KEY_LEN = struct.Struct(">H")
COUNT = struct.Struct(">H")
#: offset of the key in a record
KEY_OFFSET = KEY_LEN.size
#: offsets after the key: the type byte, the entry count, the first entry
TYPE_AFTER_KEY = 0
COUNT_AFTER_KEY = 1
ENTRIES_AFTER_KEY = 3
#: key_len (2) + type (1) + count (2) around the key bytes of an index record
RECORD_HEAD_SIZE = KEY_OFFSET + ENTRIES_AFTER_KEY
#: the longest possible first record with one entry (what a reader probes before a large index)
MAX_FIRST_RECORD_SIZE = RECORD_HEAD_SIZE + MAX_KEY_LEN + ENTRY_SIZE

#: smallest index offset a footer may hold (after the header and one frame of >= 1 block byte)
MIN_INDEX_OFFSET = HEADER_SIZE + CRC_SIZE + 1
#: smallest valid file: header, one frame of >= 1 byte, one record with a 1-byte key and one entry, footer
MIN_FILE_SIZE = MIN_INDEX_OFFSET + RECORD_HEAD_SIZE + 1 + ENTRY_SIZE + FOOTER_SIZE


# --- the Construct definitions: made on first use (importing construct is ~40 ms of start-up that
# the readers, which use the struct formats above, do not need) ---------------------------------
Header: Any
Footer: Any
BlockFrame: Any
IndexEntry: Any
IndexRecord: Any
_CONSTRUCT_NAMES = frozenset({"Header", "Footer", "BlockFrame", "IndexEntry", "IndexRecord"})


def _construct_definitions() -> dict[str, Any]:
    from construct import Array, Bytes, Const, GreedyBytes, Int8ub, Int16ub, Int32ub, Int64sb, Int64ub, Struct, this

    index_entry = Struct(
        "min_time" / Int64sb,
        "max_time" / Int64sb,
        "offset" / Int64ub,
        "size" / Int32ub,
    )
    return {
        "Header": Struct(
            "magic" / Const(MAGIC, Int32ub),
            "version" / Int8ub,
        ),
        "Footer": Struct("index_offset" / Int64ub),
        #: A frame as stored: CRC-32 of ``block``, then the block (its first byte is the block type).
        "BlockFrame": Struct(
            "crc" / Int32ub,
            "block" / GreedyBytes,
        ),
        "IndexEntry": index_entry,
        #: One index record: the key, its block type and its ``count`` entries.
        "IndexRecord": Struct(
            "key_len" / Int16ub,
            "key" / Bytes(this.key_len),
            "block_type" / Int8ub,
            "count" / Int16ub,
            "entries" / Array(this.count, index_entry),
        ),
    }


def __getattr__(name: str) -> Any:
    """``Header``, ``Footer``, ``BlockFrame``, ``IndexEntry``, ``IndexRecord`` (PEP 562)."""
    if name in _CONSTRUCT_NAMES:
        globals().update(_construct_definitions())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- the block CRC ----------------------------------------------------------------------------
Buffer = bytes | bytearray | memoryview

def _pick_crc32() -> Callable[[Buffer], int]:
    try:  # ISA-L's CRC-32 (the same IEEE CRC as zlib's) is about 3x faster on block-sized slices
        from isal.isal_zlib import crc32 as fast
    except ImportError:  # pragma: no cover - exercised only where isal is missing
        return zlib.crc32
    return fast


#: CRC-32 (IEEE) of a block: ISA-L's where installed, else zlib's (same values).
crc32: Callable[[Buffer], int] = _pick_crc32()


def frame_crcs(buf: Buffer, start: int = 0, size: int | None = None) -> tuple[int, int]:
    """``(stored CRC, CRC-32 of the block)`` of the frame ``buf[start:start + size]`` (``size``
    None: to the end of ``buf``, which must hold the 4 CRC bytes). The one block CRC check: every
    reader and copier calls it, directly or through :func:`frame_crc_ok`."""
    view = buf if type(buf) is memoryview else memoryview(buf)
    return _unpack_crc(view, start)[0], crc32(view[start + CRC_SIZE : len(view) if size is None else start + size])


def frame_crc_ok(buf: Buffer, start: int = 0, size: int | None = None) -> bool:
    """True when the frame ``buf[start:start + size]`` holds the CRC-32 of its block."""
    stored, computed = frame_crcs(buf, start, size)
    return stored == computed


def frame(block: Buffer) -> bytes:
    """The frame of ``block``: its CRC-32, then the block."""
    return CRC.pack(crc32(block)) + bytes(block)


__all__ = [
    "BLOCK_OFFSET",
    "COUNT",
    "COUNT_AFTER_KEY",
    "CRC",
    "CRC_SIZE",
    "ENTRIES_AFTER_KEY",
    "ENTRY",
    "ENTRY_SIZE",
    "FOOTER",
    "FOOTER_SIZE",
    "HEADER",
    "HEADER_SIZE",
    "KEY_LEN",
    "KEY_OFFSET",
    "MAGIC",
    "MAX_ENTRIES_PER_KEY",
    "MAX_FIRST_RECORD_SIZE",
    "MAX_KEY_LEN",
    "MIN_FILE_SIZE",
    "MIN_FRAME_SIZE",
    "MIN_INDEX_OFFSET",
    "RECORD_HEAD_SIZE",
    "TYPE_AFTER_KEY",
    "VERSION",
    "VERSION_OFFSET",
    "BlockFrame",
    "Footer",
    "Header",
    "IndexEntry",
    "IndexRecord",
    "crc32",
    "frame",
    "frame_crc_ok",
    "frame_crcs",
]
