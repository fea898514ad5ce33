"""Layout of ``.tombstone`` files (docs/formats.md#tombstone-formats, influxd 1.6.7 ``tsdb/engine/tsm1/tombstone.go``).

No I/O here: constants and Construct definitions only. The readers in
:mod:`influx_archive.tsm.tombstone` parse records with the precompiled :data:`RECORD_HEAD` /
:data:`RECORD_TIMES` ``struct`` formats derived from the same layout (records are the inner loop of a
possibly multi-megabyte file); the test suite checks both against :data:`Record`.

=======  ===============  =====================================================================
version  first 4 bytes    body
=======  ===============  =====================================================================
v1       anything else    text, one key per line, each key deleted for all time (pre-0.13)
v2       ``00 00 15 02``  records, uncompressed
v3       ``00 00 15 03``  one gzip stream (influxd reads it multi-member) holding records
v4       ``00 00 15 04``  concatenated gzip members, one per delete batch, each holding records
=======  ===============  =====================================================================
"""

from __future__ import annotations

import struct
from typing import Any

#: Length of the version word at the start of v2..v4 files.
HEADER_SIZE = 4
V2_HEADER = 0x00001502
V3_HEADER = 0x00001503
V4_HEADER = 0x00001504

#: Full-range delete bounds (DROP SERIES, DROP MEASUREMENT, DELETE without time; docs/formats.md#tombstone-semantics).
MIN_TIME = -(1 << 63)
MAX_TIME = (1 << 63) - 1

#: Longest composite key a TSM file or line protocol can hold (docs/formats.md#tsm-limits); longer record
#: keys cannot match anything and are treated as damage.
MAX_KEY_LEN = 65535

#: influxd's v1 reader is a ``bufio.Scanner`` with the default 64 KiB token limit: a line of this
#: many bytes or more (newline excluded) fails the TSM file's open.
V1_MAX_LINE = 64 * 1024

#: Fixed parts of :data:`Record` for the fast path: key length, then (min, max) after the key.
RECORD_HEAD = struct.Struct(">I")
RECORD_TIMES = struct.Struct(">qq")
#: Offset of the key in a record.
KEY_OFFSET = RECORD_HEAD.size
#: Smallest record: empty key.
MIN_RECORD_SIZE = RECORD_HEAD.size + RECORD_TIMES.size

#: Version word (v2..v4), and its fast-path format.
VERSION_WORD = struct.Struct(">I")

#: The 10-byte gzip member header Go's ``compress/gzip`` writes with default settings: ID1 ID2,
#: CM=8 (deflate), FLG=0, MTIME=0, XFL=0, OS=255 (unknown) — verified on influxd's files
#: (docs/formats.md#tombstone-formats).
GO_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

#: gzip header fields a reader must understand (RFC 1952 §2.3.1); Go's reader handles all four.
GZIP_ID = b"\x1f\x8b"
GZIP_CM_DEFLATE = 8
GZIP_FIXED_HEADER_SIZE = 10
#: gzip trailer: CRC-32 and size (mod 2^32) of the uncompressed data, little-endian.
GZIP_TRAILER = struct.Struct("<II")
GZIP_TRAILER_SIZE = GZIP_TRAILER.size
#: the little-endian u16 of FEXTRA's XLEN and of FHCRC (low 16 bits of the header's CRC-32)
GZIP_U16 = struct.Struct("<H")
FLAG_HCRC = 0x02
FLAG_EXTRA = 0x04
FLAG_NAME = 0x08
FLAG_COMMENT = 0x10
#: Go's gzip reader keeps NAME / COMMENT in a 512-byte buffer: longer ones are ``ErrHeader``.
GO_GZIP_MAX_STRING = 511


# --- the Construct definitions: made on first use (importing construct is ~40 ms of start-up that
# the readers, which use the struct formats above, do not need) ---------------------------------
Record: Any  # one tombstone record (v2 body; v3/v4 gzip content)
Header: Any  # the version word
GoGzipHeader: Any  # GO_GZIP_HEADER field by field
GzipTrailer: Any  # GZIP_TRAILER
_CONSTRUCT_NAMES = frozenset({"Record", "Header", "GoGzipHeader", "GzipTrailer"})


def _construct_definitions() -> dict[str, Any]:
    from construct import Bytes, Const, Int32ub, Int32ul, Int64sb, Struct, this

    return {
        "Record": Struct(
            "key_len" / Int32ub,
            "key" / Bytes(this.key_len),
            "min" / Int64sb,
            "max" / Int64sb,
        ),
        "Header": Int32ub,
        "GoGzipHeader": Struct(
            "magic" / Const(b"\x1f\x8b"),
            "method" / Const(b"\x08"),
            "flags" / Const(b"\x00"),
            "mtime" / Const(b"\x00\x00\x00\x00"),
            "xfl" / Const(b"\x00"),
            "os" / Const(b"\xff"),
        ),
        "GzipTrailer": Struct("crc" / Int32ul, "size" / Int32ul),
    }


def __getattr__(name: str) -> Any:
    """``Record``, ``Header``, ``GoGzipHeader``, ``GzipTrailer`` (PEP 562)."""
    if name in _CONSTRUCT_NAMES:
        globals().update(_construct_definitions())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
