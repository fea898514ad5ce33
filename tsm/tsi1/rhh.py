"""influxd's Robin Hood hash lookups (``pkg/rhh``), to check the hash indexes of tsi1 index files
and the series file's ``index`` against what they index: every key must be found, by influxd's own
probe sequence, at the slot holding its element (a damaged table makes influxd miss a measurement,
tag or series it has)."""

from __future__ import annotations

from collections.abc import Callable

from .xxhash import rhh_hash_key as hash_key
from .xxhash import rhh_hash_uint64 as hash_uint64

__all__ = ["dist", "hash_key", "hash_uint64", "probe"]


def dist(h: int, i: int, capacity: int) -> int:
    mask = capacity - 1
    return (i + capacity - (h & mask)) & mask


def _go_mod(a: int, n: int) -> int:
    """Go's ``%`` (truncated toward zero) on int64."""
    r = abs(a) % n
    return -r if a < 0 else r


def probe(
    h: int,
    capacity: int,
    slot: Callable[[int], int],
    is_target: Callable[[int], bool],
    hash_of: Callable[[int], int | None],
) -> str | None:
    """Walk influxd's lookup for a key of hash ``h`` in a table of ``capacity`` slots: ``slot(i)``
    is the value in slot ``i`` (0: empty), ``is_target(v)`` says a slot value is the key's element,
    ``hash_of(v)`` the hash of the element a value names (None: it names no element). Returns None
    when the lookup finds the element, else why it does not."""
    pos = _go_mod(h, capacity)
    if pos < 0:
        return "a hash that influxd cannot place"
    d = 0
    while True:
        v = slot(pos)
        if v == 0:
            return f"the lookup ends at empty slot {pos}"
        if is_target(v):
            return None
        oh = hash_of(v)
        if oh is None:
            return f"slot {pos} holds {v}, which is no element"
        if d > dist(oh, pos, capacity):
            return f"the lookup stops at slot {pos} (probe distance {d})"
        pos = (pos + 1) % capacity
        d += 1
        if d > capacity:
            return "the key is in no slot"
