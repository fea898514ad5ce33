"""Line protocol and InfluxQL text, exactly as influxd 1.6.7 parses it.

Escaping follows influxd's own writer (``models/points.go``, ``pkg/escape``): series keys are
stored in a TSM key already escaped and are written verbatim; field keys are stored unescaped and
get ``,`` ``"`` space ``=`` escaped with a backslash; string values get ``\\`` and ``"`` escaped.
Integers carry ``i``, unsigned ``u``; booleans are ``true``/``false``; floats use the shortest text
that parses back to the same 64-bit value (Python's ``repr``; influxd's parser reads exponents),
so extremes, subnormals and ``-0`` survive. NaN and ±Inf cannot be written in line protocol
(influxd rejects them): :func:`format_value` returns None for them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ...tsm.block import BOOLEAN, FLOAT, INTEGER, STRING, UNSIGNED

_FIELD_KEY = str.maketrans({",": "\\,", '"': '\\"', " ": "\\ ", "=": "\\="})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})


def escape_field_key(name: str) -> str:
    return name.translate(_FIELD_KEY)


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
