"""Float value sections: influxd's Gorilla XOR variant (docs/formats.md#float-encoding, worked example
#example-tsm-file).

Section = header ``0x10``, then an MSB-first bit stream zero-padded to a byte: the first value's
64 bits, then per value (x = bits XOR previous bits): ``0`` if x = 0, else ``1`` and either ``0`` +
the bits of x inside the stored window (reuse) or ``1`` + 5 bits L + 6 bits S (64 written as 0) +
S bits of x >> T (new window). The stream ends with the sentinel ``0x7FF8000000000001`` (Go's
``math.NaN()`` bits) encoded like a value.

influxd's encoder quirks mirrored by :func:`encode`: L = clz(x) & 0x1F (mod 32, not clamped);
reuse iff a window exists and L >= L_stored and T >= T_stored. NaN cannot be stored
(:class:`UnsupportedError`).

:func:`decode` reads the stream through 512-bit windows (one ``int.from_bytes`` per several
values, no per-bit calls) and is strict where influxd is lenient: any read past the end of the section, a
window with L + S > 64, a missing end marker, a value count different from the block's timestamp
count, non-zero padding bits or bytes after the padding raise :class:`FormatError`.

Interface: ``encode(values) -> bytes`` (the whole section) and
``decode(section, count, *, base=0) -> list[float]``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from ...archive.errors import FormatError, TruncatedError, UnsupportedError

HEADER = 0x10
"""Section header byte (encoding 1 = Gorilla, the only one)."""
SENTINEL = 0x7FF8000000000001
"""End-of-stream marker: Go's ``math.NaN()`` bits."""

_ABS = 0x7FFFFFFFFFFFFFFF
_INF = 0x7FF0000000000000
_FLUSH_BITS = 1024
_WINDOW = 64  # bytes loaded per decode window
_MAX_VALUE_BITS = 77  # control 2 + L 5 + S 6 + 64 data bits
_MASKS = tuple((1 << m) - 1 for m in range(65))
_WHAT = "float value section"


# None without a C compiler: the Python codec does everything
from ..compiled import core as _compiled  # noqa: E402 - kept beside the code it speeds up


def encode(values: Sequence[float]) -> bytes:
    """Section for ``values`` (non-empty), byte-identical to influxd's FloatEncoder."""
    if _compiled is not None:
        out = _compiled.encode(values)
        if out is not None:
            return out
    return py_encode(values)


def decode(section: bytes | memoryview, count: int, *, base: int = 0) -> list[float]:
    """Exactly ``count`` floats of a section; ``base`` is its offset in the block (for errors)."""
    if _compiled is not None:
        out = _compiled.decode(section, count)
        if out is not None:
            return out
    return py_decode(section, count, base=base)


def py_encode(values: Sequence[float]) -> bytes:
    """The pure Python encoder (the reference; also the path for every input the compiled one
    declines, so its errors are the ones raised)."""
    n = len(values)
    bits = struct.unpack(f">{n}Q", struct.pack(f">{n}d", *values))
    for i, b in enumerate(bits):
        if b & _ABS > _INF:
            raise UnsupportedError(f"float value {i} is NaN, which a TSM float block cannot store")
    out = bytearray((HEADER,))
    prev = acc = bits[0]
    nacc = 64
    lead = -1  # no window yet
    trail = 0
    for b in (*bits[1:], SENTINEL):
        x = b ^ prev
        prev = b
        if not x:
            acc <<= 1
            nacc += 1
        else:
            lz = (64 - x.bit_length()) & 0x1F  # clz mod 32, as influxd
            tz = (x & -x).bit_length() - 1
            if lead >= 0 and lz >= lead and tz >= trail:
                # control 1, reuse 0, then the bits of x inside the stored window
                m = 64 - lead - trail
                acc = (((acc << 2) | 0b10) << m) | (x >> trail)
                nacc += 2 + m
            else:
                # control 1, new window 1, 5 bits L, 6 bits S (64 -> 0), S bits
                lead, trail = lz, tz
                m = 64 - lz - tz
                window = (0b11 << 11) | (lz << 6) | (m & 63)
                acc = (((acc << 13) | window) << m) | (x >> tz)
                nacc += 13 + m
        if nacc >= _FLUSH_BITS:
            rest = nacc & 7
            out += (acc >> rest).to_bytes(nacc >> 3, "big")
            acc &= (1 << rest) - 1
            nacc = rest
    pad = -nacc & 7
    out += (acc << pad).to_bytes((nacc + pad) >> 3, "big")
    return bytes(out)


def py_decode(section: bytes | memoryview, count: int, *, base: int = 0) -> list[float]:
    """The pure Python decoder: exactly ``count`` floats, every damage a precise error."""
    size = len(section)
    if not size:
        raise TruncatedError(f"{_WHAT}: empty", offset=base, field="values")
    if section[0] != HEADER:
        raise FormatError(f"{_WHAT}: unknown encoding header 0x{section[0]:02x}", offset=base, field="values")
    if size < 9:
        raise TruncatedError(f"{_WHAT}: shorter than its first value", offset=base, field="values")
    nbits = (size - 1) << 3
    buf = bytes(section[1:]) + bytes(_WINDOW)  # zero tail: windows never run short
    frombytes = int.from_bytes
    masks = _MASKS
    val = frombytes(buf[:8], "big")
    if val == SENTINEL:
        raise _count_error(0, count, base)
    out = [val]
    append = out.append
    n = 1
    lead = trail = 0
    pos = 64  # stream bit position of the window's first unread bit
    finished = False
    while not finished:
        # Load a window; bit i of the stream is bit (top - 1 - (i - pos)) of w. Values are
        # decoded while a whole value (<= 77 bits) is surely inside it; "rem" counts the
        # window bits not consumed yet, "end" is rem's value at the end of the stream.
        bp = pos >> 3
        w = frombytes(buf[bp:bp + _WINDOW], "big")
        top = rem = (_WINDOW << 3) - (pos & 7)
        end = top - (nbits - pos)
        while rem >= _MAX_VALUE_BITS:
            if rem <= end:
                raise TruncatedError(
                    f"{_WHAT}: bit stream ends without its end marker", offset=base + size, field="values"
                )
            rem -= 1
            if (w >> rem) & 1:
                rem -= 1
                if (w >> rem) & 1:
                    rem -= 11
                    window = (w >> rem) & 0x7FF
                    lead = window >> 6
                    m = window & 63 or 64
                    trail = 64 - lead - m
                    if trail < 0:
                        raise FormatError(
                            f"{_WHAT}: window of {lead} leading zeros and {m} bits exceeds 64 bits",
                            offset=base + 1 + ((pos + top - rem) >> 3), field="values",
                        )
                else:
                    m = 64 - lead - trail
                rem -= m
                if rem < end:
                    raise TruncatedError(f"{_WHAT}: bit stream read past its end", offset=base + size, field="values")
                val ^= ((w >> rem) & masks[m]) << trail
                if val == SENTINEL:
                    finished = True
                    break
            if n == count:
                raise FormatError(
                    f"{_WHAT}: more values than the block's {count} timestamps",
                    offset=base + 1 + ((pos + top - rem) >> 3), field="values",
                )
            append(val)
            n += 1
        pos += top - rem
    if n != count:
        raise _count_error(n, count, base)
    used = (pos + 7) >> 3
    if used != size - 1:
        raise FormatError(
            f"{_WHAT}: {size - 1 - used} bytes after the end marker", offset=base + 1 + used, field="values"
        )
    if pos & 7 and buf[used - 1] & masks[8 - (pos & 7)]:
        raise FormatError(f"{_WHAT}: non-zero padding bits after the end marker", offset=base + used, field="values")
    return list(struct.unpack(f">{count}d", struct.pack(f">{count}Q", *out)))


def _count_error(held: int, count: int, base: int) -> FormatError:
    return FormatError(
        f"{_WHAT}: holds {held} values but the block has {count} timestamps", offset=base, field="values"
    )
