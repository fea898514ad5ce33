"""Read the series id sets of a tsi1 index file: a 32-bit Roaring bitmap in its portable
serialization (what influxd 1.6.7's ``tsdb.SeriesIDSet.WriteTo`` writes through
``github.com/RoaringBitmap/roaring``; layout in docs/formats.md, "Roaring series id sets").

All integers little-endian. A cookie ``uint32`` 12346 (no run containers) is followed by the
container count (``uint32``); a cookie whose low 16 bits are 12347 holds count - 1 in its high 16
bits and is followed by a bitmap of which containers are runs. Then per container (key, cardinality
- 1) as two ``uint16``; then, unless the set has run containers and fewer than 4 containers, one
``uint32`` offset per container; then the containers: a run container is ``uint16`` run count and
(start, length - 1) ``uint16`` pairs, a container of more than 4096 values an 8 KiB bitmap, any
other an array of ``uint16`` values. A value is ``key << 16 | low 16 bits``.

Every length is checked against the section before it is read; every container's content must
agree with its stated cardinality and sit at its stated offset, and the bitmap must fill its
section exactly; the total is bounded by the caller's ``max_ids`` (run
containers can state 65536 ids in 4 bytes: the bound keeps memory tied to the work, not to
numbers read from the file).
"""

from __future__ import annotations

import struct

from ...archive.errors import FormatError, TruncatedError
from . import format as fmt

COOKIE_NO_RUN = 12346
COOKIE_RUN = 12347
NO_OFFSET_THRESHOLD = 4
ARRAY_MAX = 4096
BITMAP_BYTES = 8192
MAX_CONTAINERS = 1 << 16

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


def decode(
    buf: fmt.Buffer, lo: int, hi: int, *, path: str | None, max_ids: int, what: str = "series id set"
) -> list[int]:
    """The sorted values of the bitmap serialized in ``buf[lo:hi]`` (an empty section is the empty
    set). Damage is a :class:`FormatError` naming ``path`` and the offset."""
    if hi <= lo:
        return []

    def need(pos: int, n: int, part: str) -> None:
        if pos + n > hi:
            raise TruncatedError(f"{what}: {part} of {n} bytes runs past its section (ends at {hi})",
                                 path=path, offset=pos, field=what)

    need(lo, 4, "cookie")
    cookie = _U32.unpack_from(buf, lo)[0]
    pos = lo + 4
    runs: bytes | None = None
    if cookie & 0xFFFF == COOKIE_RUN:
        size = (cookie >> 16) + 1
        nb = (size + 7) // 8
        need(pos, nb, "run bitmap")
        runs = bytes(buf[pos : pos + nb])
        pos += nb
    elif cookie == COOKIE_NO_RUN:
        need(pos, 4, "container count")
        size = _U32.unpack_from(buf, pos)[0]
        pos += 4
        if size > MAX_CONTAINERS:
            raise FormatError(f"{what}: {size} containers (at most {MAX_CONTAINERS})", path=path, offset=pos - 4,
                              field=what)
    else:
        raise FormatError(f"{what}: cookie {cookie:#010x} is not a Roaring bitmap's", path=path, offset=lo, field=what)
    header = pos
    need(pos, 4 * size, "container header")
    pos += 4 * size
    offsets = None
    if runs is None or size >= NO_OFFSET_THRESHOLD:
        need(pos, 4 * size, "container offsets")
        offsets = pos
        pos += 4 * size
    # the stated cardinalities bound what is decoded: check the total before decoding anything
    total = 0
    for i in range(size):
        total += _U16.unpack_from(buf, header + 4 * i + 2)[0] + 1
    if total > max_ids:
        raise FormatError(f"{what}: states {total} ids, more than the {max_ids} this index can hold",
                          path=path, offset=header, field=what)
    out: list[int] = []
    prev_key = -1
    for i in range(size):
        key, card_m1 = struct.unpack_from("<HH", buf, header + 4 * i)
        card = card_m1 + 1
        start = pos
        if offsets is not None and _U32.unpack_from(buf, offsets + 4 * i)[0] != pos - lo:
            raise FormatError(f"{what}: container {i} stated at offset {_U32.unpack_from(buf, offsets + 4 * i)[0]}, "
                              f"found at {pos - lo}", path=path, offset=offsets + 4 * i, field=what)
        if key <= prev_key:
            raise FormatError(f"{what}: container keys not increasing ({key} after {prev_key})", path=path,
                              offset=header + 4 * i, field=what)
        prev_key = key
        base = key << 16
        if runs is not None and runs[i // 8] & (1 << (i % 8)):
            need(pos, 2, "run count")
            nr = _U16.unpack_from(buf, pos)[0]
            pos += 2
            need(pos, 4 * nr, "runs")
            vals: list[int] = []
            last = -1
            for j in range(nr):
                s, ln = struct.unpack_from("<HH", buf, pos + 4 * j)
                if s <= last or s + ln > 0xFFFF:
                    raise FormatError(f"{what}: run {j} ({s}+{ln}) overlaps or leaves its container", path=path,
                                      offset=pos + 4 * j, field=what)
                last = s + ln
                if len(vals) + ln + 1 > card:
                    break
                vals.extend(range(base + s, base + s + ln + 1))
            pos += 4 * nr
        elif card > ARRAY_MAX:
            need(pos, BITMAP_BYTES, "bitmap container")
            word = int.from_bytes(bytes(buf[pos : pos + BITMAP_BYTES]), "little")
            vals = []
            b = 0
            while word:
                low = word & -word
                b = low.bit_length() - 1
                vals.append(base + b)
                word ^= low
            pos += BITMAP_BYTES
        else:
            need(pos, 2 * card, "array container")
            lows = struct.unpack_from(f"<{card}H", buf, pos)
            if any(lows[j] >= lows[j + 1] for j in range(card - 1)):
                raise FormatError(f"{what}: array container {i} not strictly increasing", path=path, offset=pos,
                                  field=what)
            vals = [base + v for v in lows]
            pos += 2 * card
        if len(vals) != card:
            raise FormatError(f"{what}: container {i} holds {len(vals)} ids, its header says {card}", path=path,
                              offset=start, field=what)
        out.extend(vals)
    if pos != hi:  # influxd's section is the bitmap, exactly
        raise FormatError(f"{what}: {hi - pos} bytes after the bitmap's last container", path=path, offset=pos,
                          field=what)
    return out


def encode(values: list[int]) -> bytes:
    """The portable serialization of a set of 32-bit values, arrays and bitmaps only (cookie
    12346, offsets present): what the Go library writes for a set never run-optimised. For tests
    and fixtures."""
    vals = sorted(set(values))
    groups: dict[int, list[int]] = {}
    for v in vals:
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError("a Roaring bitmap holds 32-bit values")
        groups.setdefault(v >> 16, []).append(v & 0xFFFF)
    keys = sorted(groups)
    head = _U32.pack(COOKIE_NO_RUN) + _U32.pack(len(keys))
    desc = b"".join(struct.pack("<HH", k, len(groups[k]) - 1) for k in keys)
    bodies = []
    for k in keys:
        g = groups[k]
        if len(g) > ARRAY_MAX:
            word = 0
            for v in g:
                word |= 1 << v
            bodies.append(word.to_bytes(BITMAP_BYTES, "little"))
        else:
            bodies.append(struct.pack(f"<{len(g)}H", *g))
    off = len(head) + len(desc) + 4 * len(keys)
    offsets = []
    for b in bodies:
        offsets.append(_U32.pack(off))
        off += len(b)
    return head + desc + b"".join(offsets) + b"".join(bodies)
