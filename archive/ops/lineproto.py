"""Line protocol and InfluxQL text, exactly as influxd 1.6.7 parses it.

Escaping follows influxd's own writer (``models/points.go``, ``pkg/escape``): series keys are
stored in a TSM key already escaped and are written verbatim; field keys are stored unescaped and
get ``,`` ``"`` space ``=`` escaped with a backslash; string values get ``\\`` and ``"`` escaped.
Integers carry ``i``, unsigned ``u``; booleans are ``true``/``false``; floats use the shortest text
that parses back to the same 64-bit value (Python's ``repr``; influxd's parser reads exponents),
so extremes, subnormals and ``-0`` survive. NaN and ±Inf cannot be written in line protocol
(influxd rejects them): :func:`format_value` returns None for them. How this differs from
``influx_inspect export``'s text: docs/formats.md#export-line-protocol.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable

from ...tsm.block import BOOLEAN, FLOAT, INTEGER, STRING, UNSIGNED
from ...tsm.compiled import core

_FIELD_KEY = str.maketrans({",": "\\,", '"': '\\"', " ": "\\ ", "=": "\\="})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})


def escape_field_key(name: str) -> str:
    return name.translate(_FIELD_KEY)


def escape_field_key_bytes(name: bytes) -> bytes:
    """:func:`escape_field_key` on the stored bytes (the escaped characters are ASCII, so this is
    the same as decoding with ``surrogateescape``, escaping, and encoding back)."""
    return name.replace(b",", b"\\,").replace(b'"', b'\\"').replace(b" ", b"\\ ").replace(b"=", b"\\=")


def _float(v: float) -> str | None:
    if math.isfinite(v):
        return repr(v)
    return None


def _string(v) -> str:
    if isinstance(v, bytes):
        v = v.decode("utf-8", "surrogateescape")
    return '"' + v.translate(_STRING) + '"'


FORMATTERS: dict[int, Callable[[object], str | None]] = {
    FLOAT: _float,  # type: ignore[dict-item]
    INTEGER: lambda v: f"{v}i",
    UNSIGNED: lambda v: f"{v}u",
    BOOLEAN: lambda v: "true" if v else "false",
    STRING: _string,
}


def format_value(block_type: int, value) -> str | None:
    """The line-protocol text of a field value, or None when it cannot be written (NaN, ±Inf)."""
    return FORMATTERS[block_type](value)


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def influxql_duration(ns: int) -> str:
    """An InfluxQL duration literal for ``ns`` (``INF`` for 0, the RP meaning of zero)."""
    if ns == 0:
        return "INF"
    for unit, size in (("w", 604_800 * 10**9), ("d", 86_400 * 10**9), ("h", 3_600 * 10**9), ("m", 60 * 10**9),
                       ("s", 10**9), ("ms", 10**6), ("u", 10**3)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


# ---- merged lines of one series, one window at a time (archive/ops/export.py) ----------------------
#
# A field is ``[name_eq, block_type, timestamps, values, pos]``: ``name_eq`` the escaped field key
# followed by ``=`` (bytes), ``timestamps``/``values`` the field's current chunk, ``pos`` the first
# value not yet written. :func:`window_lines` writes, for every distinct timestamp ``t <= bound``
# among the values from ``pos`` on (each field's run of values up to the first one above ``bound``),
# one line ``prefix name=value,name=value t`` with the fields in their order, lines in time order,
# and moves each ``pos`` past what it wrote. The compiled core (``lp_window``) writes the same bytes
# for the input it accepts (strictly ascending 64-bit timestamps, values of the block's type, no
# NaN/Inf, no newline in a string) and declines everything else to :func:`py_window_lines`.


class Skips:
    """What could not be written: one note per (series, field, kind) and the number of values."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.values = 0

    def skip(self, series: str, name: str, what: str) -> None:
        self.values += 1
        note = f"{series} field {name}: {what} values cannot be imported as line protocol; skipped"
        if note not in self.notes:
            self.notes.append(note)


def _text(btype: int, v) -> tuple[str | None, str]:
    """(line-protocol text or None, why not)."""
    value = FORMATTERS[btype](v)
    if value is None:
        return None, "NaN/Inf float"
    if btype == STRING and "\n" in value:
        return None, "string with a newline"
    return value, ""


def py_window_lines(prefix: bytes, fields: list[list], bound: int, skips: Skips) -> tuple[bytes, int, int]:
    """The reference of :func:`window_lines`: ``(text, lines, values written)``."""
    series = prefix[:-1].decode("utf-8", "surrogateescape")
    merged: dict[int, list[str]] = {}
    for f in fields:
        name_eq, btype, ts, vs, pos = f
        name = name_eq[:-1].decode("utf-8", "surrogateescape")
        end = pos
        while end < len(ts) and ts[end] <= bound:
            end += 1
        for t, v in zip(ts[pos:end], vs[pos:end]):
            value, why = _text(btype, v)
            if value is None:
                skips.skip(series, name, why)
            else:
                merged.setdefault(t, []).append(f"{name}={value}")
        f[4] = end
    head = series + " "
    out = [f"{head}{','.join(merged[t])} {t}\n" for t in sorted(merged)]
    return "".join(out).encode("utf-8", "surrogateescape"), len(out), sum(map(len, merged.values()))


def window_lines(prefix: bytes, fields: list[list], bound: int, skips: Skips) -> tuple[bytes, int, int]:
    """``(text, lines, values written)`` of one window (see above); compiled where it can be."""
    if core is not None and _MIN <= bound <= _MAX:
        got = core.lp_window(prefix, fields, bound)
        if got is not None:
            return got
    for f in fields:
        if type(f[2]) is bytes:
            f[2], f[3] = unpack(f[1], f[2], f[3])
    return py_window_lines(prefix, fields, bound, skips)


_PACKED = {FLOAT: "d", INTEGER: "q", UNSIGNED: "Q", BOOLEAN: "Q"}


def unpack(block_type: int, ts: bytes, vs: bytes) -> tuple[list[int], list]:
    """Lists of a packed chunk (the compiled core's ``lp_decode``: native int64 timestamps and
    8-byte values: float64, int64, uint64, 0/1 for booleans)."""
    times = array.array("q")
    times.frombytes(ts)
    values = array.array(_PACKED[block_type])
    values.frombytes(vs)
    out = values.tolist()
    return times.tolist(), [bool(v) for v in out] if block_type == BOOLEAN else out


_MIN = -(1 << 63)
_MAX = (1 << 63) - 1


def _ryu_tables() -> tuple[bytes, bytes]:
    """The compiled float formatter's tables (Ryu's, 125-bit): the top bits of 5**i, i < 326,
    and 2**(bitlength(5**i) - 1 + 125) // 5**i + 1, i < 342, as (low, high) 64-bit pairs."""

    def pairs(values: list[int]) -> bytes:
        mask = (1 << 64) - 1
        return b"".join((v & mask).to_bytes(8, "little") + (v >> 64).to_bytes(8, "little") for v in values)

    def top(p: int) -> int:
        shift = p.bit_length() - 125
        return p >> shift if shift >= 0 else p << -shift

    pow5 = pairs([top(5**i) for i in range(326)])
    inv = pairs([(1 << ((5**i).bit_length() - 1 + 125)) // 5**i + 1 for i in range(342)])
    return pow5, inv


if core is not None:
    core.lp_tables(*_ryu_tables())
