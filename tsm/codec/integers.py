"""Integer (int64, block type 1) and unsigned (uint64, block type 4) value sections
(docs/formats.md#integer-encoding, #unsigned-encoding, #simple8b).

z_i = ZigZag(v_i - v_(i-1)) with v_(-1) = 0 and int64 wrap-around. Header high nibble:

* ``0x00`` raw: z_0 .. z_(n-1) as u64 BE;
* ``0x10`` packed: z_0 as u64 BE, then simple8b words (whole-list driver) of z_1 .. z_(n-1);
* ``0x20`` RLE: z_0 as u64 BE, uvarint z_1, uvarint (n - 1).

influxd's encoder picks RLE iff n > 2 and z_1 = ... = z_(n-1), else raw iff some z_i > 2^60 - 1,
else packed; :func:`encode` mirrors that byte for byte. Unsigned values use the same code on the
same 64 bits (:func:`encode_unsigned` / :func:`decode_unsigned`).

Interface: ``encode(values) -> bytes`` (the whole section, header included) and
``decode(section, count, *, base=0) -> list[int]``, where ``count`` is the number of timestamps
of the block. Decoding is strict: the section must hold exactly ``count`` values and nothing
after them, otherwise :class:`FormatError` (offsets are ``base`` + position in the section).
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Sequence
from itertools import accumulate, chain

from ...archive.errors import FormatError, TruncatedError
from . import simple8b, varint

RAW, PACKED, RLE = 0x00, 0x10, 0x20
"""Section header bytes."""

# running sums; None wherever the Python code must decide
from ..compiled import core as _compiled  # noqa: E402 - kept beside the code it speeds up

MASK64 = (1 << 64) - 1
_H = 1 << 63
INT64_MIN, INT64_MAX = -_H, _H - 1


def to_int64(values: list[int]) -> list[int]:
    """Reduce unbounded Python ints modulo 2^64 into int64 (two's complement); returns the list
    itself when nothing is out of range (the common case costs two C-level passes)."""
    if values and (min(values) < INT64_MIN or max(values) > INT64_MAX):
        return [((x + _H) & MASK64) - _H for x in values]
    return values


def to_uint64(values: list[int]) -> list[int]:
    """Reduce unbounded Python ints modulo 2^64 into 0 .. 2^64 - 1."""
    if values and (min(values) < 0 or max(values) > MASK64):
        return [x & MASK64 for x in values]
    return values


def _zigzag_deltas(values: Sequence[int]) -> list[int]:
    deltas = list(map(operator.sub, values, chain((0,), values)))
    # int64 wrap-around subtraction: only needed when a difference leaves the int64 range.
    deltas = to_int64(deltas)
    return [(d << 1) ^ (d >> 63) for d in deltas]


def encode(values: Sequence[int]) -> bytes:
    """Section for int64 ``values`` (non-empty), byte-identical to influxd's IntegerEncoder (the
    compiled core's ``int_encode`` writes the same bytes as :func:`py_encode`, the reference)."""
    if _compiled is not None:
        got = _compiled.int_encode(values, False)
        if got is not None:
            return got
    return py_encode(values)


def py_encode(values: Sequence[int]) -> bytes:
    """:func:`encode` in pure Python."""
    zs = _zigzag_deltas(values)
    n = len(zs)
    if n > 2 and zs.count(zs[1]) - (zs[0] == zs[1]) == n - 1:
        return b"".join((
            bytes((RLE,)), zs[0].to_bytes(8, "big"), varint.encode(zs[1]), varint.encode(n - 1),
        ))
    if max(zs) > simple8b.MAX_VALUE:
        return bytes((RAW,)) + struct.pack(f">{n}Q", *zs)
    return bytes((PACKED,)) + zs[0].to_bytes(8, "big") + simple8b.encode_all(zs[1:])


def encode_unsigned(values: Sequence[int]) -> bytes:
    """Section for uint64 ``values``: the int64 encoding of the same bits (docs/formats.md#unsigned-encoding)."""
    if _compiled is not None:
        got = _compiled.int_encode(values, True)
        if got is not None:
            return got
    return py_encode_unsigned(values)


def py_encode_unsigned(values: Sequence[int]) -> bytes:
    """:func:`encode_unsigned` in pure Python."""
    return py_encode([v - (1 << 64) if v > INT64_MAX else v for v in values])


def _sums(section: bytes | memoryview, count: int, what: str, base: int, signed: bool) -> list[int]:
    """Decoded values, reduced mod 2^64 into int64 (``signed``) or uint64."""
    if not section:
        raise TruncatedError(f"{what}: section is empty", offset=base, field="values")
    header = section[0]
    size = len(section)
    rest: Sequence[int]
    if header == RAW:
        body = size - 1
        if body % 8:
            raise FormatError(
                f"{what}: raw section of {body} bytes is not a whole number of 8-byte values",
                offset=base + 1 + body - body % 8, field="values",
            )
        if body // 8 != count:
            raise FormatError(
                f"{what}: section holds {body // 8} values but the block has {count} timestamps",
                offset=base, field="values",
            )
        zs = struct.unpack_from(f">{count}Q", section, 1)
        first, rest = zs[0], zs[1:]
    elif header == PACKED:
        if size < 9:
            raise TruncatedError(f"{what}: packed section shorter than its first value", offset=base, field="values")
        words = memoryview(section)[9:]
        held = 1 + simple8b.count(words, what=what, base=base + 9)
        if held != count:
            raise FormatError(
                f"{what}: section holds {held} values but the block has {count} timestamps",
                offset=base, field="values",
            )
        unpacked: list[int] = []
        simple8b.decode(words, unpacked, limit=count - 1)
        first, rest = int.from_bytes(section[1:9], "big"), unpacked
    elif header == RLE:
        if size < 9:
            raise TruncatedError(f"{what}: RLE section shorter than its first value", offset=base, field="values")
        first = int.from_bytes(section[1:9], "big")
        delta, pos = varint.decode(section, 9, what=f"{what} RLE delta", base=base)
        repeat, pos = varint.decode(section, pos, what=f"{what} RLE count", base=base)
        if pos != size:
            raise FormatError(f"{what}: {size - pos} bytes after the RLE section", offset=base + pos, field="values")
        if repeat + 1 != count:
            raise FormatError(
                f"{what}: section holds {repeat + 1} values but the block has {count} timestamps",
                offset=base, field="values",
            )
        v0 = (first >> 1) ^ -(first & 1)
        step = (delta >> 1) ^ -(delta & 1)
        wrap = to_int64 if signed else to_uint64
        if step == 0:
            return wrap([v0] * count)
        last = v0 + (count - 1) * step
        if signed and min(v0, last) >= INT64_MIN and max(v0, last) <= INT64_MAX:
            return list(range(v0, v0 + count * step, step))  # no wrap-around: nothing to reduce
        return wrap(list(range(v0, v0 + count * step, step)))
    else:
        raise FormatError(f"{what}: unknown encoding header 0x{header:02x}", offset=base, field="values")
    if _compiled is not None:
        got = _compiled.wrap_sums(first, rest, 1, True, signed)
        if got is not None:
            return got
    sums = list(accumulate([(z >> 1) ^ -(z & 1) for z in chain((first,), rest)]))
    return to_int64(sums) if signed else to_uint64(sums)


def decode(section: bytes | memoryview, count: int, *, base: int = 0) -> list[int]:
    """int64 values of an integer section holding exactly ``count`` values."""
    return _sums(section, count, "integer values", base, True)


def decode_unsigned(section: bytes | memoryview, count: int, *, base: int = 0) -> list[int]:
    """uint64 values of an unsigned section holding exactly ``count`` values."""
    return _sums(section, count, "unsigned values", base, False)
