"""Shard file names (TSM_WAL.md §0, §1.9): ``GGGGGGGGG-SSSSSSSSS.tsm`` / ``.tombstone``.

(generation, sequence) order defines which file is newer: on a conflicting point the later file
wins (§1.10). Generations are zero-padded to 9 digits but may grow beyond that.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

_NAME_RE = re.compile(r"^(\d+)-(\d+)\.(tsm|tombstone)$")


def parse_name(name: str) -> Optional[tuple[int, int, str]]:
    """(generation, sequence, extension) of a TSM or tombstone file name, or None."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), m.group(3)


def tsm_name(generation: int, sequence: int, ext: str = "tsm") -> str:
    return f"{generation:09d}-{sequence:09d}.{ext}"


def order_key(name: str) -> tuple[int, int]:
    parsed = parse_name(name)
    if parsed is None:
        raise ValueError(f"not a TSM file name: {name!r}")
    return parsed[0], parsed[1]


def max_generation(names: Iterable[str]) -> int:
    """Highest generation among TSM/tombstone names (0 when there is none)."""
    gens = [p[0] for p in (parse_name(n) for n in names) if p is not None]
    return max(gens, default=0)


def next_generation_name(names: Iterable[str], sequence: int = 1) -> str:
    """A TSM name whose generation is above every existing one (so its points win)."""
    return tsm_name(max_generation(names) + 1, sequence)
