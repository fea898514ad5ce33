"""Layout of WAL segments ``_NNNNN.wal`` (docs/formats.md#wal, influxd 1.6.7 ``tsdb/engine/tsm1/wal.go``).

No I/O here: constants and Construct definitions only. A segment is entries back to back, with no
header, checksum or trailer (docs/formats.md#wal-segments). Each entry (docs/formats.md#wal-entries) is a type byte, a
uint32 BE length and that many bytes of snappy *block* format data; the decompressed payload depends on the type
(docs/formats.md#wal-write, #wal-delete, #wal-delete-range).

Write payloads can hold hundreds of thousands of values, so :mod:`influx_archive.tsm.wal` parses
them with the precompiled ``struct`` formats below (the codec-style inner loop); the test suite
checks that fast path against :data:`WriteGroup`.
"""

from __future__ import annotations

import struct
from typing import Any

# Entry types (docs/formats.md#wal-entries).
WRITE_ENTRY = 0x01
DELETE_ENTRY = 0x02
DELETE_RANGE_ENTRY = 0x03
ENTRY_TYPES = (WRITE_ENTRY, DELETE_ENTRY, DELETE_RANGE_ENTRY)

# WAL value type codes (docs/formats.md#wal-write). They differ from the TSM block types (0..4).
WAL_FLOAT = 1
WAL_INTEGER = 2
WAL_BOOLEAN = 3
WAL_STRING = 4
WAL_UNSIGNED = 5
WAL_TYPE_NAMES = {1: "float", 2: "integer", 3: "boolean", 4: "string", 5: "unsigned"}
#: WAL value type -> TSM block type (FLOAT..UNSIGNED = 0..4, docs/formats.md#tsm-blocks).
WAL_TO_BLOCK_TYPE = {WAL_FLOAT: 0, WAL_INTEGER: 1, WAL_BOOLEAN: 2, WAL_STRING: 3, WAL_UNSIGNED: 4}

#: influxd rolls to a new segment before a write once the current one exceeds this (docs/formats.md#wal-segments).
SEGMENT_ROLL_SIZE = 10 * 1024 * 1024
#: Segment file names: ``_`` + 5-digit zero-padded id + ``.wal`` (more digits above 99999).
SEGMENT_PREFIX = "_"
SEGMENT_EXTENSION = "wal"

#: Longest composite key a write group can carry (uint16 length, docs/formats.md#tsm-limits).
MAX_KEY_LEN = 65535
#: Snappy expands at most ~21.3x (a 3-byte copy tag yields 64 bytes): a decoded length above this
#: factor of the compressed length is corrupt and must not be allocated.
SNAPPY_MAX_EXPANSION = 22

# --- Entry framing (docs/formats.md#wal-entries) -------------------------------------------------------------------
#: Entry header: type byte, payload length u32 BE (``EntryHeader``'s fields).
ENTRY_HEADER = struct.Struct(">BI")
ENTRY_HEADER_SIZE = ENTRY_HEADER.size
#: The length field alone (at :data:`ENTRY_LENGTH_OFFSET` of the header), for scans that test
#: many offsets.
ENTRY_LENGTH = struct.Struct(">I")
ENTRY_LENGTH_OFFSET = 1

# --- Write entry payload (docs/formats.md#wal-write): groups repeated until the payload ends ----------------------
#: Fast-path formats for the same layout as ``WriteGroup``.
GROUP_TYPE_KEYLEN = struct.Struct(">BH")
GROUP_KEYLEN = struct.Struct(">H")
GROUP_COUNT = struct.Struct(">I")
#: Per-type (struct format of one value, its size) for fixed-size values.
FIXED_VALUE = {
    WAL_FLOAT: struct.Struct(">qd"),
    WAL_INTEGER: struct.Struct(">qq"),
    WAL_UNSIGNED: struct.Struct(">qQ"),
    WAL_BOOLEAN: struct.Struct(">qB"),
}
STRING_HEAD = struct.Struct(">qI")

# --- Delete entry (docs/formats.md#wal-delete): keys joined by "\n" -------------------------------------------------
KEY_SEPARATOR = b"\n"

# --- Delete-range entry (docs/formats.md#wal-delete-range) ------------------------------------------------------------
DELETE_RANGE_HEAD = struct.Struct(">qq")
DELETE_RANGE_KEYLEN = struct.Struct(">I")


def segment_name(segment_id: int) -> str:
    """File name influxd gives segment ``segment_id`` (``_00001.wal``)."""
    return f"{SEGMENT_PREFIX}{segment_id:05d}.{SEGMENT_EXTENSION}"


# --- the Construct definitions: made on first use (importing construct is ~40 ms of start-up that
# the readers, which use the struct formats above, do not need) ---------------------------------
EntryHeader: Any
WalValueType: Any
FloatValue: Any
IntegerValue: Any
UnsignedValue: Any
BooleanValue: Any
StringValue: Any
WriteGroup: Any
WritePayload: Any
DeleteRangePayload: Any
_CONSTRUCT_NAMES = frozenset({
    "EntryHeader", "WalValueType", "FloatValue", "IntegerValue", "UnsignedValue", "BooleanValue", "StringValue",
    "WriteGroup", "WritePayload", "DeleteRangePayload",
})


def _construct_definitions() -> dict[str, Any]:
    from construct import (
        Byte,
        Enum,
        GreedyBytes,
        GreedyRange,
        Int16ub,
        Int32ub,
        Int64sb,
        Int64ub,
        Prefixed,
        PrefixedArray,
        Struct,
        Switch,
        this,
    )

    wal_value_type = Enum(
        Byte, float=WAL_FLOAT, integer=WAL_INTEGER, boolean=WAL_BOOLEAN, string=WAL_STRING, unsigned=WAL_UNSIGNED
    )
    # One value of each type: timestamp int64 BE, then the value. A boolean byte ``01`` is true and
    # anything else false; strings carry a uint32 BE length.
    values = {
        "float": Struct("time" / Int64sb, "bits" / Int64ub),
        "integer": Struct("time" / Int64sb, "value" / Int64sb),
        "unsigned": Struct("time" / Int64sb, "value" / Int64ub),
        "boolean": Struct("time" / Int64sb, "value" / Byte),
        "string": Struct("time" / Int64sb, "value" / Prefixed(Int32ub, GreedyBytes)),
    }
    write_group = Struct(
        "type" / wal_value_type,
        "key" / Prefixed(Int16ub, GreedyBytes),
        "values" / PrefixedArray(Int32ub, Switch(this._.type, values)),
    )
    return {
        "EntryHeader": Struct(
            "type" / Byte,
            "length" / Int32ub,
        ),
        "WalValueType": wal_value_type,
        "FloatValue": values["float"],
        "IntegerValue": values["integer"],
        "UnsignedValue": values["unsigned"],
        "BooleanValue": values["boolean"],
        "StringValue": values["string"],
        "WriteGroup": write_group,
        "WritePayload": GreedyRange(write_group),
        "DeleteRangePayload": Struct(
            "min" / Int64sb,
            "max" / Int64sb,
            "keys" / GreedyRange(Prefixed(Int32ub, GreedyBytes)),
        ),
    }


def __getattr__(name: str) -> Any:
    """The Construct definitions above (PEP 562)."""
    if name in _CONSTRUCT_NAMES:
        globals().update(_construct_definitions())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
