"""simple8b word packing as influxd uses it (docs/formats.md#simple8b).

Each 64-bit big-endian word: top 4 bits select ``(n, bits)``; the low 60 bits hold ``n`` values
of ``bits`` bits, value 0 in the least significant bits. Selectors 0 and 1 carry no payload and
stand for 240 / 120 copies of the value **1**.

Encoding mirrors ``github.com/jwilder/encoding/simple8b`` exactly, including its two drivers:

* :func:`encode_all` -- the whole-list driver (``EncodeAll``, used for integer/unsigned blocks);
* :func:`encode_windowed` -- the 240-value FIFO driver (``Encoder.Write``/``Bytes``, used for
  timestamps).

They differ only in which candidate list the "all ones" test of selectors 0/1 looks at.

Decoding is table driven: one precomputed shift tuple and mask per selector, no per-value calls.
"""

from __future__ import annotations

import struct

from ...archive.errors import FormatError

MAX_VALUE = (1 << 60) - 1
"""Largest value a word can hold (``simple8b.MaxValue``)."""

SELECTORS: tuple[tuple[int, int], ...] = (
    (240, 0), (120, 0), (60, 1), (30, 2), (20, 3), (15, 4), (12, 5), (10, 6),
    (8, 7), (7, 8), (6, 10), (5, 12), (4, 15), (3, 20), (2, 30), (1, 60),
)
"""``(values per word, bits per value)`` by selector (docs/formats.md#simple8b)."""

# Values per word, indexed by the word's first byte.
_COUNT_BY_TOP_BYTE = tuple(SELECTORS[b >> 4][0] for b in range(256))
# Packed selectors in the order influxd tries them: (selector, n, bits, mask).
_PACKED = tuple((sel, n, bits, (1 << bits) - 1) for sel, (n, bits) in enumerate(SELECTORS) if bits)
# The first packed candidate worth testing for a first value of bit length b: every earlier
# selector has fewer than b bits (an optimisation only; the order of the tests is influxd's).
_START = tuple(next(i for i, (_, _, bits, _) in enumerate(_PACKED) if bits >= b) for b in range(61))
# Decoding table: selector -> (shifts, mask); selectors 0/1 -> ((), 0), handled as runs of ones.
_UNPACK = tuple(
    (tuple(range(0, n * bits, bits)), (1 << bits) - 1) if bits else ((), 0) for n, bits in SELECTORS
)
_ONES = ([1] * 240, [1] * 120)


def count(words: bytes | memoryview, *, what: str = "simple8b", base: int = 0) -> int:
    """Number of values held by a stream of words (it must be a whole number of words)."""
    if len(words) % 8:
        raise FormatError(
            f"{what}: packed section is {len(words)} bytes, not a multiple of 8",
            offset=base + len(words) - len(words) % 8, field=what,
        )
    return sum(map(_COUNT_BY_TOP_BYTE.__getitem__, bytes(words[::8])))


# same words; declines (None) what it cannot take
from ..compiled import core as _compiled  # noqa: E402 - kept beside the code it speeds up


def decode(words: bytes | memoryview, out: list[int], *, limit: int | None = None) -> None:
    """Append every value of a whole number of words to ``out`` (length checked by :func:`count`).

    ``limit``: the most values the caller accepts; the words' selectors are counted against it
    before anything is allocated (a word of selector 0 claims 240 values in 8 bytes), and more
    raise :class:`FormatError`."""
    if limit is not None:
        held = count(words)
        if held > limit:
            raise FormatError(f"simple8b: words hold {held} values, more than the limit of {limit}", field="simple8b")
    if _compiled is not None:
        got = _compiled.s8b_decode(words, -1 if limit is None else limit)
        if got is not None:
            out.extend(got)
            return
    py_decode(words, out)


def py_decode(words: bytes | memoryview, out: list[int]) -> None:
    """The pure Python decoder (reference and fallback)."""
    nwords = len(words) >> 3
    if not nwords:
        return
    extend = out.extend
    unpack = _UNPACK
    ones = _ONES
    for w in struct.unpack_from(f">{nwords}Q", words):
        sel = w >> 60
        if sel < 2:
            extend(ones[sel])
        else:
            shifts, mask = unpack[sel]
            extend([(w >> s) & mask for s in shifts])


def _pack(src: list[int], h: int, t: int, all_ones: bool) -> tuple[int, int]:
    """One word from the candidates ``src[h:t]``; ``all_ones`` tells whether every candidate is 1.

    Returns ``(word, values consumed)``. Mirrors ``simple8b.Encode`` / ``canPack``.
    """
    avail = t - h
    if all_ones:
        if avail >= 240:
            return 0, 240
        if avail >= 120:
            return 1 << 60, 120
    first_bits = src[h].bit_length()
    if first_bits > 60:
        raise ValueError(f"simple8b: value out of bounds at index {h}")
    for sel, n, bits, mask in _PACKED[_START[first_bits]:]:
        if avail >= n and max(src[h:h + n]) <= mask:
            word = 0
            for i in range(h + n - 1, h - 1, -1):
                word = (word << bits) | src[i]
            return (sel << 60) | word, n
    raise ValueError(f"simple8b: value out of bounds at index {h}")


def encode_all(values: list[int]) -> bytes:
    """Words for ``values`` (each ``0 <= v <= MAX_VALUE``), whole-list driver (integers)."""
    if _compiled is not None:
        got = _compiled.s8b_encode_all(values)
        if got is not None:
            return got
    return py_encode_all(values)


def py_encode_all(values: list[int]) -> bytes:
    """The pure Python whole-list driver (reference, and the path that raises errors)."""
    n = len(values)
    # The 0/1 selectors need every remaining value to be 1: that holds once h passes the last
    # value that is not 1.
    last_not_one = n - 1
    while last_not_one >= 0 and values[last_not_one] == 1:
        last_not_one -= 1
    words = []
    h = 0
    while h < n:
        word, used = _pack(values, h, n, h > last_not_one)
        words.append(word)
        h += used
    return struct.pack(f">{len(words)}Q", *words)


def encode_windowed(values: list[int]) -> bytes:
    """Words for ``values``, 240-value FIFO driver (timestamps): while more values follow a full
    FIFO of 240, one word is cut from that FIFO; the rest is flushed word by word at the end."""
    if _compiled is not None:
        got = _compiled.s8b_encode_windowed(values)
        if got is not None:
            return got
    return py_encode_windowed(values)


def py_encode_windowed(values: list[int]) -> bytes:
    """The pure Python FIFO driver (reference, and the path that raises errors)."""
    n = len(values)
    words = []
    h = 0
    while h + 240 < n:
        t = h + 240
        word, used = _pack(values, h, t, values[h] == 1 and values[h:t].count(1) == 240)
        words.append(word)
        h += used
    while h < n:
        word, used = _pack(values, h, n, values[h] == 1 and n - h >= 120 and values[h:].count(1) == n - h)
        words.append(word)
        h += used
    return struct.pack(f">{len(words)}Q", *words)
