"""Series keys in the two forms influxd 1.6.7 uses.

* the line-protocol form stored in TSM and WAL keys (``cpu,host=a\\ b``), parsed here exactly like
  ``models.ParseKeyBytes`` (``models/points.go``: ``scanMeasurement``, ``walkTags``,
  ``scanTo``/``scanTagValue``, the sequential ``bytes.Replace`` unescaping — including its quirks:
  a tag with an empty value is dropped);
* the series file form (``tsdb/series_file.go`` ``AppendSeriesKey``), see
  :mod:`influx_archive.tsm.tsi1.format`.

The hot paths are written with ``struct``/slicing; the test suite checks them against the
Construct definition :data:`~influx_archive.tsm.tsi1.format.SeriesKey`.
"""

from __future__ import annotations

from . import format as fmt
from .compiled import core

_MEAS_ESC = ((b"\\,", b","), (b"\\ ", b" "))
_TAG_ESC = ((b"\\,", b","), (b"\\ ", b" "), (b"\\=", b"="))


def _unescape(b: bytes, codes: tuple[tuple[bytes, bytes], ...]) -> bytes:
    if b"\\" not in b:
        return b
    for esc, k in codes:
        if k in b:  # Go checks for the unescaped byte, then replaces every escape of it
            b = b.replace(esc, k)
    return b


def _scan_to(buf: bytes, i: int, stop: int) -> tuple[int, bytes]:
    start = i
    n = len(buf)
    while i < n:
        if buf[i] == stop and (i == 0 or buf[i - 1] != 0x5C):
            break
        i += 1
    return i, buf[start:i]


def _scan_tag_value(buf: bytes, i: int) -> tuple[int, bytes]:
    start = i
    n = len(buf)
    while i < n:
        if buf[i] == 0x2C and buf[i - 1] != 0x5C:
            break
        i += 1
    return i, buf[start:i]


def _scan_measurement(buf: bytes) -> tuple[bool, int]:
    """(has tags, end index) as ``scanMeasurement(buf, 0)``: with tags the index is past the comma."""
    n = len(buf)
    if n == 0 or buf[0] == 0x2C:
        return False, 0
    i = 0
    while True:
        i += 1
        if i >= n:
            return False, i
        if buf[i - 1] == 0x5C:
            continue
        if buf[i] == 0x2C:
            return True, i + 1
        if buf[i] == 0x20:
            return False, i


def parse_key(key: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """``models.ParseKeyBytes``: (unescaped measurement, [(tag key, tag value)]) in stored order."""
    if b"\\" not in key and b" " not in key:
        # fast path, same result: no escapes, every tag "k=v" with a non-empty value
        parts = key.split(b",")
        if parts[0]:
            parted = [p.partition(b"=") for p in parts[1:]]
            if all(eq and v for _k, eq, v in parted):
                return parts[0], [(k, v) for k, _eq, v in parted]
    has_tags, i = _scan_measurement(key)
    tags: list[tuple[bytes, bytes]] = []
    if has_tags:
        name = key[: i - 1]
        _walk_tags(key, tags)
    else:
        name = key[:i]
    return _unescape(name, _MEAS_ESC), tags


def _walk_tags(buf: bytes, out: list[tuple[bytes, bytes]]) -> None:
    if not buf:
        return
    pos, name = _scan_to(buf, 0, 0x2C)
    if not name:
        return
    has_escape = b"\\" in buf
    i = pos + 1
    n = len(buf)
    while i < n:
        i, k = _scan_to(buf, i, 0x3D)
        i, v = _scan_tag_value(buf, i + 1)
        if not v:
            continue
        if has_escape:
            out.append((_unescape(k, _TAG_ESC), _unescape(v, _TAG_ESC)))
        else:
            out.append((k, v))
        i += 1


def _uvarint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def encode(name: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """``AppendSeriesKey``: the series file form. Lengths are uint16 in influxd (it truncates);
    longer parts than influxd accepts in a key are refused here instead."""
    if len(name) > 0xFFFF or any(len(k) > 0xFFFF or len(v) > 0xFFFF for k, v in tags):
        raise ValueError("series key part longer than 65535 bytes")
    parts = [len(name).to_bytes(2, "big"), name, _uvarint(len(tags))]
    for k, v in tags:
        parts += (len(k).to_bytes(2, "big"), k, len(v).to_bytes(2, "big"), v)
    body = b"".join(parts)
    return _uvarint(len(body)) + body


def from_line_key(key: bytes) -> bytes:
    """Series file key of a line-protocol series key (the compiled core's, :mod:`.compiled`, for a
    key without escapes; the same bytes)."""
    if core is not None:
        fast = core.series_file_key(key)
        if fast is not None:
            return fast
    return encode(*parse_key(key))


def read_uvarint(buf: fmt.Buffer, pos: int, end: int) -> tuple[int, int] | None:
    """(value, next position) of a Go uvarint at ``pos``, or None when it runs past ``end`` or
    overflows 64 bits (``binary.Uvarint``'s error cases)."""
    x = 0
    s = 0
    for i in range(10):
        if pos + i >= end:
            return None
        b = buf[pos + i]
        if b < 0x80:
            if i == 9 and b > 1:
                return None
            return x | (b << s), pos + i + 1
        x |= (b & 0x7F) << s
        s += 7
    return None


def key_extent(buf: fmt.Buffer, pos: int, end: int) -> int | None:
    """End position of the series file key at ``pos``, or None when its size prefix does not fit."""
    r = read_uvarint(buf, pos, end)
    if r is None:
        return None
    size, p = r
    if p + size > end:
        return None
    return p + size


def decode(key: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(name, tags) of a series file key; ValueError when its parts do not add up."""
    n = len(key)
    r = read_uvarint(key, 0, n)
    if r is None or r[1] + r[0] != n:
        raise ValueError("size prefix does not match the key")
    p = r[1]
    if p + 2 > n:
        raise ValueError("name length cut")
    ln = int.from_bytes(key[p : p + 2], "big")
    p += 2
    if p + ln > n:
        raise ValueError("name longer than the key")
    name = key[p : p + ln]
    p += ln
    r = read_uvarint(key, p, n)
    if r is None:
        raise ValueError("tag count cut")
    tag_n, p = r
    if tag_n * 4 > n - p:
        raise ValueError(f"tag count {tag_n} does not fit in the key")
    tags = []
    for _ in range(tag_n):
        parts = []
        for _what in ("key", "value"):
            if p + 2 > n:
                raise ValueError("tag length cut")
            ln = int.from_bytes(key[p : p + 2], "big")
            p += 2
            if p + ln > n:
                raise ValueError("tag longer than the key")
            parts.append(key[p : p + ln])
            p += ln
        tags.append((parts[0], parts[1]))
    if p != n:
        raise ValueError(f"{n - p} bytes after the last tag")
    return name, tags


def _escape(b: bytes, specials: bytes) -> bytes:
    for c in specials:
        ch = bytes([c])
        if ch in b:
            b = b.replace(ch, b"\\" + ch)
    return b


def to_line_key(name: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """``models.MakeKey``: line-protocol series key (escaped measurement, tags as given)."""
    out = [_escape(name, b", ")]
    for k, v in tags:
        out.append(b"," + _escape(k, b", =") + b"=" + _escape(v, b", ="))
    return b"".join(out)
