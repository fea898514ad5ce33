"""TSM block bytes: encode and decode one block (docs/formats.md#tsm-blocks, #block-encodings, #edge-cases).

A block (what follows the 4-byte CRC of a block frame) is::

    type byte | uvarint ts_len | timestamp section (ts_len bytes) | value section (rest)

The value count is the timestamp count; influxd silently stops at the shorter of the two
sections, :func:`decode_block` reports any mismatch instead. The frame header is two fields
parsed on every block read, so it is read here in plain Python rather than through a Construct
definition (the CRC frame around it is a layout of ``format.tsmfile``).

:func:`encode_block` is byte-identical to influxd 1.6.7's encoder for the same values (string
payloads: identical as far as cramjam's snappy matches Go's, see ``codec.strings``).
Errors from :func:`decode_block` are :class:`FormatError` with ``offset`` relative to the first
byte of the block (the type byte) and ``field`` naming the part that failed; a file reader adds
the block's file position to ``offset`` and fills in the path with ``located``.
"""

from __future__ import annotations

import array
import operator
from collections.abc import Callable, Sequence
from itertools import islice, repeat
from typing import Any

from ..archive.errors import FormatError, TruncatedError, UnsupportedError
from .codec import booleans, floats, integers, simple8b, strings, varint
from .codec import timestamps as ts_codec
from .compiled import core as _compiled

FLOAT, INTEGER, BOOLEAN, STRING, UNSIGNED = 0, 1, 2, 3, 4
"""TSM block type bytes (docs/formats.md#tsm-blocks)."""
BLOCK_TYPE_NAMES = {FLOAT: "float", INTEGER: "integer", BOOLEAN: "boolean", STRING: "string", UNSIGNED: "unsigned"}
MAX_POINTS_PER_BLOCK = 1000
"""Values per block influxd writes (``tsdb.DefaultMaxPointsPerBlock``, docs/formats.md#tsm-limits); readers accept
more."""
MAX_BLOCK_VALUES = 10 * MAX_POINTS_PER_BLOCK
"""Most values one block may hold when read: ten times what influxd 1.x ever writes (its cache
snapshots and compactions cut blocks at 1000, ``tsdb/engine/tsm1/compact.go``; no option raises
that in 1.6). influxd trusts RLE and simple8b counts blindly (docs/formats.md#reader-hardening): an RLE section of a
dozen bytes can claim 2^64 values. Every count is checked against this cap *before* anything is allocated, so
a block costs at most ~1 MB of decoded values and a TSM file at most ~200 decoded values per
byte (influxd's own densest RLE blocks reach ~20)."""
DEFAULT_MAX_VALUES = MAX_BLOCK_VALUES
"""Default ``max_values`` of :func:`decode_block` / :func:`decode_timestamps`."""

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1

_ENCODERS: dict[int, Callable[[Sequence[Any]], bytes]] = {
    FLOAT: floats.encode,
    INTEGER: integers.encode,
    BOOLEAN: booleans.encode,
    STRING: strings.encode,
    UNSIGNED: integers.encode_unsigned,
}
_DECODERS: dict[int, Callable[..., list[Any]]] = {
    FLOAT: floats.decode,
    INTEGER: integers.decode,
    BOOLEAN: booleans.decode,
    STRING: strings.decode,
    UNSIGNED: integers.decode_unsigned,
}
# Python type each block type takes, and the integer range where it applies.
_VALUE_TYPES = {FLOAT: float, INTEGER: int, BOOLEAN: bool, STRING: bytes, UNSIGNED: int}
_INT_RANGES = {INTEGER: (_INT64_MIN, _INT64_MAX), UNSIGNED: (0, _UINT64_MAX)}


#: a block is at least its type byte and one byte of the timestamp section length
MIN_BLOCK_SIZE = 2
#: a value section's header byte and its first 8-byte value (packed and RLE integers, floats)
_FIRST_VALUE_END = 1 + 8
#: header byte of the one encoding of float, boolean and string sections
_VALUE_HEADERS = {FLOAT: floats.HEADER, BOOLEAN: booleans.HEADER, STRING: strings.HEADER}

_INT_ONLY = frozenset((int,))
#: tsm/_speedups.c all_exact() kind of each block type's values
_EXACT_KIND = {FLOAT: 0, INTEGER: 1, UNSIGNED: 2, STRING: 3, BOOLEAN: 4}


def encode_block(block_type: int, timestamps: Sequence[int], values: Sequence[Any]) -> bytes:
    """Block bytes (without the CRC) for one key's points, byte-identical to influxd.

    ``timestamps`` must be non-empty, strictly increasing int64s; ``values`` one per timestamp of
    the block type's Python type: float (not NaN), int (int64), bool, bytes, int (uint64).
    Anything else raises :class:`UnsupportedError`.
    """
    if block_type not in _ENCODERS:
        raise UnsupportedError(f"unknown block type {block_type!r}")
    n = len(timestamps)
    if not n:
        raise UnsupportedError("a TSM block needs at least one value")
    if len(values) != n:
        raise UnsupportedError(f"{n} timestamps but {len(values)} values")
    bad = _compiled.int64_order(timestamps, True) if _compiled is not None else None
    if bad is None:  # not only exact int64s (or no compiled core): the Python checks decide
        if not set(map(type, timestamps)) <= _INT_ONLY or min(timestamps) < _INT64_MIN or max(timestamps) > _INT64_MAX:
            raise UnsupportedError("timestamps must be int64 integers")
        bad = check_block_order(timestamps)
    elif bad < 0:
        bad = None
    if bad is not None:
        raise UnsupportedError(
            f"timestamps must be strictly increasing: index {bad} ({timestamps[bad]}) follows {timestamps[bad - 1]}"
        )
    _check_values(block_type, values)
    ts = ts_codec.encode(timestamps, increasing=True)
    return b"".join((bytes((block_type,)), varint.encode(len(ts)), ts, _ENCODERS[block_type](values)))


def _check_values(block_type: int, values: Sequence[Any]) -> None:
    if _compiled is not None and _compiled.all_exact(values, _EXACT_KIND[block_type]):
        return  # every value exactly of the type (and int64 / uint64 range)
    name = BLOCK_TYPE_NAMES[block_type]
    kind = _VALUE_TYPES[block_type]
    if not all(map(isinstance, values, repeat(kind))) or (
        kind is int and any(map(isinstance, values, repeat(bool)))
    ):
        raise UnsupportedError(f"{name} block values must all be {kind.__name__}")
    if block_type in _INT_RANGES:
        lo, hi = _INT_RANGES[block_type]
        if min(values) < lo or max(values) > hi:
            raise UnsupportedError(f"{name} block value out of range {lo}..{hi}")


def check_block_order(timestamps: Sequence[int]) -> int | None:
    """Index of the first timestamp that is not greater than its predecessor, or None."""
    if _compiled is not None:
        bad = _compiled.int64_order(timestamps, True)
        if bad is not None:
            return None if bad < 0 else bad
    flags = list(map(operator.ge, timestamps, islice(timestamps, 1, None)))
    if True in flags:
        return flags.index(True) + 1
    return None


def _frame(data: bytes | memoryview) -> tuple[int, int, int]:
    """(block type, start of the timestamp section, start of the value section)."""
    size = len(data)
    if size < MIN_BLOCK_SIZE:
        raise TruncatedError(f"block of {size} bytes is too short", offset=0, field="type")
    block_type = data[0]
    if block_type not in _DECODERS:
        raise FormatError(f"unknown block type 0x{block_type:02x}", offset=0, field="type")
    ts_len, start = varint.decode(data, 1, what="timestamp section length", base=0)
    if ts_len > size - start:
        raise TruncatedError(
            f"timestamp section of {ts_len} bytes runs past the end of the {size}-byte block",
            offset=1, field="timestamp section length",
        )
    return block_type, start, start + ts_len


def block_sections(data: bytes | memoryview) -> tuple[int, int, int]:
    """``(block type, timestamp encoding, value encoding)`` from the section headers (the high
    nibble of each section's first byte), without decoding (for dumps)."""
    block_type, start, end = _frame(data)
    ts_enc = data[start] >> 4 if start < end else -1
    val_enc = data[end] >> 4 if end < len(data) else -1
    return block_type, ts_enc, val_enc


def block_type_of(data: bytes | memoryview) -> int:
    """The block's type byte, checked to be one of the five known types."""
    if not len(data):
        raise TruncatedError("empty block", offset=0, field="type")
    block_type = data[0]
    if block_type not in _DECODERS:
        raise FormatError(f"unknown block type 0x{block_type:02x}", offset=0, field="type")
    return block_type


def count_values(data: bytes | memoryview, *, max_values: int = DEFAULT_MAX_VALUES) -> int:
    """Number of values a block claims, read from its section headers without decoding anything
    (O(section bytes / 8), no allocation): the cheap check for blocks copied unchanged.

    More than ``max_values`` timestamps, a malformed timestamp section header, or a value section
    whose header states another count (integer / unsigned raw, simple8b and RLE counts, the
    boolean count and bit bytes, a string snappy length too small for the count or too large for
    its bytes, a float section too short for its first value) raise :class:`FormatError`. What
    only decoding can tell (the Gorilla stream, string lengths inside the payload) is not checked."""
    block_type, start, end = _frame(data)
    view = memoryview(data)
    n = ts_codec.count(view[start:end], max_count=max_values, base=start)
    _check_value_header(block_type, view[end:], n, end)
    return n


def _check_value_header(block_type: int, s: memoryview, n: int, base: int) -> None:
    name = BLOCK_TYPE_NAMES[block_type]
    what = f"{name} value section"
    size = len(s)
    if not size:
        raise TruncatedError(f"{what}: empty", offset=base, field="values")
    head = s[0]

    def held(k: int) -> None:
        if k != n:
            raise FormatError(f"{what}: holds {k} values but the block has {n} timestamps", offset=base, field="values")

    if block_type in (INTEGER, UNSIGNED):
        if head == integers.RAW:
            if (size - 1) % 8:
                raise FormatError(f"{what}: raw section of {size - 1} bytes is not a whole number of 8-byte values",
                                  offset=base + 1, field="values")
            held((size - 1) // 8)
        elif head == integers.PACKED:
            if size < _FIRST_VALUE_END:
                raise TruncatedError(
                    f"{what}: packed section shorter than its first value", offset=base, field="values"
                )
            held(1 + simple8b.count(s[_FIRST_VALUE_END:], what=what, base=base + _FIRST_VALUE_END))
        elif head == integers.RLE:
            if size < _FIRST_VALUE_END:
                raise TruncatedError(f"{what}: RLE section shorter than its first value", offset=base, field="values")
            _delta, pos = varint.decode(s, _FIRST_VALUE_END, what=f"{what} RLE delta", base=base)
            repeat, pos = varint.decode(s, pos, what=f"{what} RLE count", base=base)
            if pos != size:
                raise FormatError(
                    f"{what}: {size - pos} bytes after the RLE section", offset=base + pos, field="values"
                )
            held(repeat + 1)
        else:
            raise FormatError(f"{what}: unknown encoding header 0x{head:02x}", offset=base, field="values")
        return
    if head != _VALUE_HEADERS[block_type]:
        raise FormatError(f"{what}: unknown encoding header 0x{head:02x}", offset=base, field="values")
    if block_type == BOOLEAN:
        k, pos = varint.decode(s, 1, what=f"{what} count", base=base)
        held(k)
        if size - pos != (n + 7) >> 3:
            raise FormatError(f"{what}: {size - pos} bit bytes for {n} values", offset=base + pos, field="values")
    elif block_type == STRING:
        ulen, _pos = varint.decode(s, 1, what=f"{what} snappy length", base=base + 1)
        if ulen > strings.MAX_EXPANSION * (size - 1) or ulen < n:
            raise FormatError(f"{what}: snappy length {ulen} impossible for {size - 1} compressed bytes and {n} values",
                              offset=base + 1, field="values")
    elif size < _FIRST_VALUE_END:
        raise TruncatedError(f"{what}: shorter than its first value", offset=base, field="values")


def count_values_at(
    buf: bytes | bytearray | memoryview, start: int, size: int, *, max_values: int = DEFAULT_MAX_VALUES
) -> int:
    """:func:`count_values` of the block ``buf[start:start + size]`` without slicing it (the
    compiled core reads it in place; anything it declines goes to :func:`count_values`, which
    raises the precise error, offsets relative to ``start``)."""
    if _compiled is not None:
        n = _compiled.block_count(buf, start, size, max_values)
        if n >= 0:
            return n
    return count_values(memoryview(buf)[start : start + size], max_values=max_values)


def decode_timestamps(data: bytes | memoryview, *, max_values: int = DEFAULT_MAX_VALUES) -> list[int]:
    """Only the timestamps of a block (cheap path for time filters); same checks as
    :func:`decode_block` for the frame and the timestamp section."""
    _, start, end = _frame(data)
    return ts_codec.decode(memoryview(data)[start:end], max_count=max_values, base=start)


def decode_block(
    data: bytes | memoryview, *, max_values: int = DEFAULT_MAX_VALUES
) -> tuple[int, list[int], list[Any]]:
    """``(block_type, timestamps, values)`` of a block (bytes after the CRC).

    Strict: an unknown type or encoding, a truncated section, a value count different from the
    timestamp count, trailing bytes, or more than ``max_values`` timestamps (checked before
    allocating) raise :class:`FormatError` (offsets relative to the block start). Timestamp
    order is not checked here: see :func:`check_block_order`.
    """
    if _compiled is not None and max_values >= 1:
        got = _compiled.lp_decode(data, max_values)  # None wherever the Python codecs must decide
        if got is not None:
            return _unpacked(*got)
    return py_decode_block(data, max_values=max_values)


#: array type codes of the compiled decoder's 8-byte values per block type (booleans as 0/1)
_PACKED = {FLOAT: "d", INTEGER: "q", UNSIGNED: "Q", BOOLEAN: "Q"}


def _unpacked(block_type: int, ts: bytes, vs: bytes) -> tuple[int, list[int], list[Any]]:
    """Lists of the compiled core's ``lp_decode`` result (native int64 timestamps, 8-byte values)."""
    times = array.array("q")
    times.frombytes(ts)
    values = array.array(_PACKED[block_type])
    values.frombytes(vs)
    out = values.tolist()
    return block_type, times.tolist(), [v == 1 for v in out] if block_type == BOOLEAN else out


def py_decode_block(
    data: bytes | memoryview, *, max_values: int = DEFAULT_MAX_VALUES
) -> tuple[int, list[int], list[Any]]:
    """:func:`decode_block` by the Python codecs alone (the reference of the compiled path: it
    takes only valid, strictly increasing non-string blocks and declines everything else)."""
    block_type, start, end = _frame(data)
    view = memoryview(data)
    ts = ts_codec.decode(view[start:end], max_count=max_values, base=start)
    values = _DECODERS[block_type](view[end:], len(ts), base=end)
    return block_type, ts, values
