"""Composite TSM keys: ``<series key>#!~#<field>`` (docs/formats.md#tsm-keys).

Series keys are stored escaped (line-protocol form) and are treated as opaque bytes; the field
name after the separator is stored unescaped. influxd splits on the **first** ``#!~#``.
"""

from __future__ import annotations

SEPARATOR = b"#!~#"


def split_key(key: bytes) -> tuple[bytes, bytes]:
    """(series key, field name); a key without the separator is all series key, empty field."""
    i = key.find(SEPARATOR)
    if i < 0:
        return key, b""
    return key[:i], key[i + len(SEPARATOR):]


def series_of(key: bytes) -> bytes:
    i = key.find(SEPARATOR)
    return key if i < 0 else key[:i]


def make_key(series: bytes, field: bytes) -> bytes:
    return series + SEPARATOR + field


def _unescape(part: bytes, specials: bytes) -> bytes:
    if b"\\" not in part:
        return part
    out = bytearray()
    i = 0
    n = len(part)
    while i < n:
        c = part[i]
        if c == 0x5C and i + 1 < n and part[i + 1] in specials:
            out.append(part[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def _split_unescaped(data: bytes, sep: int) -> list[bytes]:
    """Split on ``sep`` bytes that are not preceded by a backslash escape."""
    parts = []
    start = 0
    i = 0
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x5C:
            i += 2
            continue
        if c == sep:
            parts.append(data[start:i])
            start = i + 1
        i += 1
    parts.append(data[start:])
    return parts


def parse_series_key(series: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(measurement, [(tag key, tag value), ...]) with escapes removed, in stored order."""
    parts = _split_unescaped(series, 0x2C)
    measurement = _unescape(parts[0], b", ")
    tags = []
    for p in parts[1:]:
        kv = _split_unescaped(p, 0x3D)
        k = kv[0]
        v = p[len(k) + 1:] if len(kv) > 1 else b""
        tags.append((_unescape(k, b", ="), _unescape(v, b", =")))
    return measurement, tags


def measurement_of(key: bytes) -> bytes:
    """Unescaped measurement name of a composite or series key."""
    return parse_series_key(series_of(key))[0]


def key_slice(keys: list[bytes], i: int, n: int) -> list[bytes]:
    """The i-th of n contiguous slices of sorted composite ``keys``, each cut moved forward to a
    series boundary (so the fields of one series stay together and slices concatenate in order)."""

    def cut(k: int) -> int:
        pos = len(keys) * k // n
        while 0 < pos < len(keys) and series_of(keys[pos]) == series_of(keys[pos - 1]):
            pos += 1
        return pos

    return keys[cut(i) : cut(i + 1)]
