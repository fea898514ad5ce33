"""String value sections (docs/formats.md#string-encoding).

Section = header ``0x10``, then the snappy **block** format (not the framed format) of the
concatenation of uvarint(len) + bytes for each value. Values are raw bytes (need not be UTF-8).

Interface: ``encode(values) -> bytes`` (the whole section) and
``decode(section, count, *, base=0) -> list[bytes]``. The encoder uses
``cramjam.snappy.compress_raw``; its output matched Go's snappy on all verified vectors
(this project's ``tests/vectors``), which is an observation, not a guarantee.

Decoding is strict: the declared uncompressed size is checked against the largest expansion a
valid snappy block can have before anything is allocated, and the payload must hold exactly
``count`` values and nothing after them; otherwise :class:`FormatError`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...archive.errors import FormatError, TruncatedError
from . import varint

HEADER = 0x10
"""Section header byte (encoding 1 = snappy, the only one)."""

MAX_EXPANSION = 22
"""A snappy element of k bytes yields at most 64 bytes per 3 (copy with 2-byte offset), so a valid
block of c bytes decompresses to at most 64 * c / 3 < 22 * c bytes."""

_WHAT = "string value section"


def encode(values: Sequence[bytes]) -> bytes:
    """Section for ``values`` (byte strings, non-empty list)."""
    import cramjam  # here, not at the top: a run that meets no string block never loads it (start-up)

    parts = []
    for v in values:
        parts.append(varint.encode(len(v)))
        parts.append(v)
    return bytes((HEADER,)) + bytes(cramjam.snappy.compress_raw(b"".join(parts)))


def decode(section: bytes | memoryview, count: int, *, base: int = 0) -> list[bytes]:
    """Exactly ``count`` byte strings of a section; ``base`` is its offset in the block (for errors)."""
    if not section:
        raise TruncatedError(f"{_WHAT}: empty", offset=base, field="values")
    if section[0] != HEADER:
        raise FormatError(f"{_WHAT}: unknown encoding header 0x{section[0]:02x}", offset=base, field="values")
    compressed = bytes(section[1:])
    ulen, _ = varint.decode(compressed, 0, what=f"{_WHAT} snappy length", base=base + 1)
    if ulen > MAX_EXPANSION * len(compressed):
        raise FormatError(
            f"{_WHAT}: snappy length {ulen} impossible for {len(compressed)} compressed bytes",
            offset=base + 1, field="values",
        )
    if ulen < count:  # every value takes at least its 1-byte length
        raise FormatError(
            f"{_WHAT}: {ulen} payload bytes cannot hold the block's {count} values", offset=base + 1, field="values"
        )
    import cramjam

    try:
        payload = bytes(cramjam.snappy.decompress_raw(compressed))
    except cramjam.DecompressionError as e:
        raise FormatError(f"{_WHAT}: corrupt snappy data ({e})", offset=base + 1, field="values") from e
    end = len(payload)
    if end != ulen:
        raise FormatError(f"{_WHAT}: snappy data is {end} bytes, header says {ulen}", offset=base + 1, field="values")
    out: list[bytes] = []
    append = out.append
    pos = 0
    for i in range(count):
        if pos >= end:
            raise FormatError(
                f"{_WHAT}: holds {i} values but the block has {count} timestamps", offset=base, field="values"
            )
        n = payload[pos]
        if n < 0x80:
            pos += 1
        else:
            n, pos = _payload_varint(payload, pos, base)
        stop = pos + n
        if stop > end:
            raise FormatError(
                f"{_WHAT}: value {i} of {n} bytes runs past the payload end", offset=base, field="values"
            )
        append(payload[pos:stop])
        pos = stop
    if pos != end:
        raise FormatError(
            f"{_WHAT}: {end - pos} payload bytes after the block's {count} values", offset=base, field="values"
        )
    return out


def _payload_varint(payload: bytes, pos: int, base: int) -> tuple[int, int]:
    # Offsets inside the decompressed payload do not map to block offsets: report the section.
    try:
        return varint.decode(payload, pos, what=f"{_WHAT} value length")
    except FormatError as e:
        raise FormatError(f"{e.message} (at payload byte {pos})", offset=base, field="values") from e
