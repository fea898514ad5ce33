"""Boolean value sections (docs/formats.md#boolean-encoding).

Section = header ``0x10``, uvarint n, then ceil(n / 8) bytes of bits, first value in the most
significant bit, 1 = true, padding bits 0.

Interface: ``encode(values) -> bytes`` (the whole section) and
``decode(section, count, *, base=0) -> list[bool]``. Decoding is strict: n must equal the block's
timestamp count, the bit bytes must be exactly ceil(n / 8) with zero padding bits; otherwise
:class:`FormatError` (influxd instead clamps n to the bytes present).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...archive.errors import FormatError, TruncatedError
from . import varint

HEADER = 0x10
"""Section header byte (encoding 1 = bit-packed, the only one)."""

_TO_DIGITS = bytes.maketrans(b"\x00\x01", b"01")
_FROM_DIGITS = bytes.maketrans(b"01", b"\x00\x01")
_WHAT = "boolean value section"


def encode(values: Sequence[bool]) -> bytes:
    """Section for ``values`` (non-empty), byte-identical to influxd's BooleanEncoder."""
    n = len(values)
    digits = bytes(map(bool, values)).translate(_TO_DIGITS) + b"0" * (-n & 7)
    return bytes((HEADER,)) + varint.encode(n) + int(digits, 2).to_bytes(len(digits) >> 3, "big")


def decode(section: bytes | memoryview, count: int, *, base: int = 0) -> list[bool]:
    """Exactly ``count`` booleans of a section; ``base`` is its offset in the block (for errors)."""
    if not section:
        raise TruncatedError(f"{_WHAT}: empty", offset=base, field="values")
    if section[0] != HEADER:
        raise FormatError(f"{_WHAT}: unknown encoding header 0x{section[0]:02x}", offset=base, field="values")
    n, pos = varint.decode(section, 1, what=f"{_WHAT} count", base=base)
    if n != count:
        raise FormatError(
            f"{_WHAT}: holds {n} values but the block has {count} timestamps", offset=base + 1, field="values"
        )
    need = (n + 7) >> 3
    have = len(section) - pos
    if have < need:
        raise TruncatedError(f"{_WHAT}: {have} bit bytes for {n} values", offset=base + len(section), field="values")
    if have > need:
        raise FormatError(f"{_WHAT}: {have - need} bytes after the bits", offset=base + pos + need, field="values")
    if not n:
        return []
    bits = int.from_bytes(section[pos:], "big")
    pad = -n & 7
    if bits & ((1 << pad) - 1):
        raise FormatError(f"{_WHAT}: non-zero padding bits", offset=base + len(section) - 1, field="values")
    digits = format(bits >> pad, f"0{n}b").encode("ascii").translate(_FROM_DIGITS)
    return list(map(bool, digits))
