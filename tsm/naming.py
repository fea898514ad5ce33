"""Numbers in names, and shard file names (docs/formats.md#shard-directory, #file-names, #wal-segments).

``GGGGGGGGG-SSSSSSSSS.tsm`` / ``.tombstone``: (generation, sequence) order defines which file is
newer: on a conflicting point the later file wins (docs/formats.md#reading-across-files). Generations are zero-padded
to 9 digits but may grow beyond that. WAL segments are ``_NNNNN.wal``.

Every number read from a name (shard directories, ``<db>.<rp>.<id>.NN``, ``meta.NN``, TSM and
WAL names) is parsed here, as influxd parses it (Go's ``strconv.ParseUint``): ASCII ``0-9`` only.
Python's ``\\d`` and ``str.isdigit`` also accept ``٢`` (Arabic-Indic two) or ``²``, and ``int()``
turns ``٢`` into 2 — so a directory ``٢`` would be merged into shard 2. :func:`ascii_number`
refuses those, and :func:`numeral_like` recognises them, so that callers can report such a name
instead of taking it for "some other file".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)
# Shapes, with any text where the numbers go; the numbers are then checked by ascii_number.
_TSM_SHAPE = re.compile(r"^([^-./]+)-([^-./]+)\.(tsm|tombstone)$")
_WAL_SHAPE = re.compile(r"^_([^./]+)\.wal$")

TSM = "tsm"
TOMBSTONE = "tombstone"
WAL = "wal"
OTHER = "other"
#: shaped like a TSM / tombstone / WAL name but its numbers are not ASCII digits
BAD_NUMBER = "bad-number"


def ascii_number(text: str) -> int | None:
    """The value of ``text`` when it is one or more ASCII digits, else None (never raises)."""
    return int(text) if _ASCII_DIGITS.fullmatch(text) else None


def numeral_like(text: str) -> bool:
    """Whether ``text`` is written only in characters Unicode calls numeric (``٢``, ``²``, ``Ⅻ``,
    fullwidth ``２``) but is not plain ASCII digits: meant as a number, not parseable as one."""
    return bool(text) and ascii_number(text) is None and all(c.isnumeric() or c in "0123456789" for c in text)


def number_field(text: str) -> tuple[int | None, bool]:
    """(value, bad): the ASCII value, or (None, True) for a numeral that is not ASCII, or
    (None, False) for text that is no number at all."""
    n = ascii_number(text)
    return (n, False) if n is not None else (None, numeral_like(text))


def classify(name: str) -> str:
    """A shard directory entry by its base name: :data:`TSM`, :data:`TOMBSTONE`, :data:`WAL`,
    :data:`OTHER`, or :data:`BAD_NUMBER` (shaped like one of the first three, with non-ASCII
    digits: influxd cannot parse it and refuses the shard)."""
    m = _TSM_SHAPE.match(name)
    if m:
        (g, gbad), (s, sbad) = number_field(m.group(1)), number_field(m.group(2))
        if g is not None and s is not None:
            return m.group(3)
        return BAD_NUMBER if (g is not None or gbad) and (s is not None or sbad) else OTHER
    m = _WAL_SHAPE.match(name)
    if m:
        n, bad = number_field(m.group(1))
        return WAL if n is not None else BAD_NUMBER if bad else OTHER
    return OTHER


def parse_name(name: str) -> tuple[int, int, str] | None:
    """(generation, sequence, extension) of a TSM or tombstone file name, or None."""
    m = _TSM_SHAPE.match(name)
    if not m:
        return None
    g, s = ascii_number(m.group(1)), ascii_number(m.group(2))
    if g is None or s is None:
        return None
    return g, s, m.group(3)


def tsm_name(generation: int, sequence: int, ext: str = "tsm") -> str:
    return f"{generation:09d}-{sequence:09d}.{ext}"


def order_key(name: str, default: tuple[int, int] | None = None) -> tuple[int, int]:
    """(generation, sequence) of a name :func:`classify` accepted as TSM or tombstone; another
    name gives ``default``, or raises ValueError without one."""
    parsed = parse_name(name)
    if parsed is None:
        if default is not None:
            return default
        raise ValueError(f"not a TSM file name: {name!r}")
    return parsed[0], parsed[1]


def max_generation(names: Iterable[str]) -> int:
    """Highest generation among TSM/tombstone names (0 when there is none)."""
    gens = [p[0] for p in (parse_name(n) for n in names) if p is not None]
    return max(gens, default=0)


def next_generation_name(names: Iterable[str], sequence: int = 1) -> str:
    """A TSM name whose generation is above every existing one (so its points win)."""
    return tsm_name(max_generation(names) + 1, sequence)
