"""Unsigned LEB128 varints as Go's ``encoding/binary`` writes them (docs/formats.md#tsm-blocks, #timestamp-encoding,
#integer-encoding, #boolean-encoding).

Used for the block's ``ts_len``, RLE deltas and counts, the boolean count and string lengths.
The decoder follows Go's ``binary.Uvarint``: at most 10 bytes, the value must fit in 64 bits
(a 10th byte above 1 overflows); non-minimal encodings are accepted, as Go accepts them.
"""

from __future__ import annotations

from ...archive.errors import FormatError, TruncatedError

MAX_LEN = 10
"""Longest uvarint of a 64-bit value (``binary.MaxVarintLen64``)."""


def encode(value: int) -> bytes:
    """Minimal uvarint of ``0 <= value < 2**64``."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode(data: bytes | memoryview, pos: int, *, what: str, base: int = 0) -> tuple[int, int]:
    """Read a uvarint at ``data[pos]``; return ``(value, position after it)``.

    ``what`` names the field for the error message; ``base`` is added to offsets in errors (the
    position of ``data[0]`` inside the enclosing block). Raises :class:`TruncatedError` when the
    data ends inside the varint and :class:`FormatError` when it overflows 64 bits.
    """
    value = 0
    shift = 0
    end = len(data)
    start = pos
    while True:
        if pos >= end:
            raise TruncatedError(f"{what}: data ends inside a varint", offset=base + start, field=what)
        b = data[pos]
        pos += 1
        if b < 0x80:
            if pos - start == MAX_LEN and b > 1:
                break
            return value | (b << shift), pos
        value |= (b & 0x7F) << shift
        shift += 7
        if pos - start == MAX_LEN:
            break
    raise FormatError(f"{what}: varint overflows 64 bits", offset=base + start, field=what)
