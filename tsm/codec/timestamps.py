"""Timestamp sections of TSM blocks (docs/formats.md#timestamp-encoding).

Work in u64: d_0 = t_0, d_i = t_i - t_(i-1) (wrap-around). Header byte = encoding << 4 | D:

* ``0x00`` raw: t_0 then d_1 .. d_(n-1), u64 BE, unscaled;
* ``0x10 | D`` packed: t_0 (u64 BE), then simple8b words (240-window driver) of d_i / 10^D;
* ``0x20 | D`` RLE: t_0 (u64 BE), uvarint d_1 / 10^D, uvarint n (the total count).

:func:`encode` mirrors influxd's choice exactly: D = largest 10^k (k <= 12) dividing every delta
(12 when there are none); RLE iff n > 1 and all deltas are equal; else raw iff some delta > 2^60 - 1;
else packed. It accepts any int64 sequence (wrap-around deltas), as influxd's encoder does;
order is checked by the block layer.

:func:`decode` is strict: a raw or packed body that is not a whole number of 8-byte words,
bytes after an RLE section, an unknown encoding nibble, no timestamps at all, or more than
``max_count`` timestamps (checked before anything is allocated) raise :class:`FormatError`.
It does not reject non-increasing timestamps.
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Sequence
from itertools import accumulate

from ...archive.errors import FormatError, TruncatedError
from ..compiled import core as _compiled
from . import simple8b, varint
from .integers import INT64_MAX, MASK64, to_int64

RAW, PACKED, RLE = 0x00, 0x10, 0x20
"""Encoding in the high nibble of the section header."""
MAX_SCALE = 12
"""Largest log10 divisor influxd's encoder uses (its decoder accepts up to 15)."""

_POW10 = tuple(10**k for k in range(16))
_WHAT = "timestamp section"


def encode(timestamps: Sequence[int], *, increasing: bool = False) -> bytes:
    """Section for the int64 ``timestamps`` (non-empty), byte-identical to influxd's encoder.
    ``increasing``: the caller checked they strictly increase (no delta can be negative). The
    compiled core's ``ts_encode`` writes the same bytes as :func:`py_encode` (the reference)."""
    if _compiled is not None:
        got = _compiled.ts_encode(timestamps)
        if got is not None:
            return got
    return py_encode(timestamps, increasing=increasing)


def py_encode(timestamps: Sequence[int], *, increasing: bool = False) -> bytes:
    """:func:`encode` in pure Python."""
    n = len(timestamps)
    if not n:
        raise ValueError("no timestamps to encode")
    first = (timestamps[0] & MASK64).to_bytes(8, "big")
    deltas = list(map(operator.sub, timestamps[1:], timestamps))
    if deltas and not increasing and min(deltas) < 0:
        deltas = [d & MASK64 for d in deltas]
    rle = n > 1 and deltas.count(deltas[0]) == n - 1
    # The largest 10^k (k <= 12) dividing every delta is the largest one dividing their gcd
    # (gcd of nothing / of zeros is 0, which every divisor divides: D = 12, as influxd).
    g = deltas[0] if rle else math.gcd(*deltas)
    scale = MAX_SCALE
    while scale and g % _POW10[scale]:
        scale -= 1
    div = _POW10[scale]
    if rle:
        return b"".join((
            bytes((RLE | scale,)), first, varint.encode(deltas[0] // div), varint.encode(n),
        ))
    if deltas and max(deltas) > simple8b.MAX_VALUE:
        return bytes((RAW,)) + first + struct.pack(f">{len(deltas)}Q", *deltas)
    if div > 1:
        deltas = [d // div for d in deltas]
    return bytes((PACKED | scale,)) + first + simple8b.encode_windowed(deltas)


def _running(t0: int, deltas: Sequence[int], mult: int) -> list[int]:
    """t0, t0 + d1*mult, ... modulo 2^64 as int64 (influxd's uint64 arithmetic)."""
    if _compiled is not None:
        got = _compiled.wrap_sums(t0, deltas, mult, False, True)
        if got is not None:
            return got
    if mult != 1:
        deltas = list(map(mult.__mul__, deltas))
    return to_int64(list(accumulate(deltas, initial=t0)))


def _count_limit_error(count: int, max_count: int, base: int) -> FormatError:
    return FormatError(
        f"{_WHAT}: {count} timestamps exceed the limit of {max_count}", offset=base, field="timestamps"
    )


def count(section: bytes | memoryview, *, max_count: int, base: int = 0) -> int:
    """Number of timestamps a section holds, from its header and lengths only (no decoding, no
    allocation); the same checks as :func:`decode` for the header, the body length and the limit."""
    size = len(section)
    if not size:
        raise TruncatedError(f"{_WHAT}: empty", offset=base, field="timestamps")
    header = section[0]
    encoding = header & 0xF0
    if encoding not in (RAW, PACKED, RLE):
        raise FormatError(f"{_WHAT}: unknown encoding header 0x{header:02x}", offset=base, field="timestamps")
    if size < 9:
        raise TruncatedError(
            f"{_WHAT}: {size} bytes, shorter than header + first timestamp", offset=base, field="timestamps"
        )
    if encoding == RAW:
        body = size - 1
        if body % 8:
            raise FormatError(
                f"{_WHAT}: raw body of {body} bytes is not a whole number of 8-byte values",
                offset=base + 1 + body - body % 8, field="timestamps",
            )
        n = body // 8
    elif encoding == PACKED:
        n = 1 + simple8b.count(memoryview(section)[9:], what=_WHAT, base=base + 9)
    else:
        _delta, pos = varint.decode(section, 9, what=f"{_WHAT} RLE delta", base=base)
        n, pos = varint.decode(section, pos, what=f"{_WHAT} RLE count", base=base)
        if pos != size:
            raise FormatError(
                f"{_WHAT}: {size - pos} bytes after the RLE fields", offset=base + pos, field="timestamps"
            )
        if n == 0:
            raise FormatError(f"{_WHAT}: RLE count is 0", offset=base, field="timestamps")
    if n > max_count:
        raise _count_limit_error(n, max_count, base)
    return n


def decode(section: bytes | memoryview, *, max_count: int, base: int = 0) -> list[int]:
    """int64 timestamps of a section; ``base`` is the section's offset in the block (for errors)."""
    size = len(section)
    if not size:
        raise TruncatedError(f"{_WHAT}: empty", offset=base, field="timestamps")
    header = section[0]
    encoding = header & 0xF0
    scale = header & 0x0F
    if encoding not in (RAW, PACKED, RLE):
        raise FormatError(f"{_WHAT}: unknown encoding header 0x{header:02x}", offset=base, field="timestamps")
    if size < 9:
        raise TruncatedError(
            f"{_WHAT}: {size} bytes, shorter than header + first timestamp", offset=base, field="timestamps"
        )
    t0 = struct.unpack_from(">q", section, 1)[0]
    if encoding == RAW:
        if scale:
            raise FormatError(f"{_WHAT}: raw encoding with scale nibble {scale}", offset=base, field="timestamps")
        body = size - 1
        if body % 8:
            raise FormatError(
                f"{_WHAT}: raw body of {body} bytes is not a whole number of 8-byte values",
                offset=base + 1 + body - body % 8, field="timestamps",
            )
        count = body // 8
        if count > max_count:
            raise _count_limit_error(count, max_count, base)
        deltas = struct.unpack_from(f">{count - 1}Q", section, 9)
        return _running(t0, deltas, 1)
    if encoding == PACKED:
        words = memoryview(section)[9:]
        count = 1 + simple8b.count(words, what=_WHAT, base=base + 9)
        if count > max_count:
            raise _count_limit_error(count, max_count, base)
        unpacked: list[int] = []
        simple8b.decode(words, unpacked, limit=count - 1)
        return _running(t0, unpacked, _POW10[scale])
    # RLE
    delta, pos = varint.decode(section, 9, what=f"{_WHAT} RLE delta", base=base)
    count, pos = varint.decode(section, pos, what=f"{_WHAT} RLE count", base=base)
    if pos != size:
        raise FormatError(f"{_WHAT}: {size - pos} bytes after the RLE fields", offset=base + pos, field="timestamps")
    if count == 0:
        raise FormatError(f"{_WHAT}: RLE count is 0", offset=base, field="timestamps")
    if count > max_count:
        raise _count_limit_error(count, max_count, base)
    step = (delta * _POW10[scale]) & MASK64
    if step == 0:
        return [t0] * count
    if t0 + (count - 1) * step <= INT64_MAX:  # no wrap-around: nothing to reduce
        return list(range(t0, t0 + count * step, step))
    return to_int64(list(range(t0, t0 + count * step, step)))
