"""Time linear in the input, shown by counting work (not by timing: timings are in bench/linear.py).

* WAL resynchronisation: a segment of one repeated byte value (every offset looks like a write
  entry whose length runs far) and segments with damage every few entries, for each entry type
  byte; the number of entry decodes is bounded by the number of entries, and every valid entry
  after damage is found.
* The tombstone replay: the number of pairwise checks is linear in the ranges.
"""

from __future__ import annotations

import io

import pytest

from influx_archive.tsm import tombstone as tomb_mod
from influx_archive.tsm import wal
from influx_archive.tsm.tombstone import Tombstone, TombstoneSet
from influx_archive.tsm.wal import DeleteRangeEntry, WALCorruption, WALWriter, WriteEntry, iter_wal

KEY = b"cpu,host=a#!~#v"


def _counting(monkeypatch) -> list[int]:
    calls = [0]
    real = wal._read_entry

    def counted(stream, pos, size):
        calls[0] += 1
        return real(stream, pos, size)

    monkeypatch.setattr(wal, "_read_entry", counted)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("byte", [0x01, 0x02, 0x03, 0x00, 0x80, 0xFF])
def test_resync_over_one_repeated_byte_decodes_almost_nothing(monkeypatch, byte: int, compiled: bool) -> None:
    if not compiled:
        monkeypatch.setattr(wal, "_compiled", None)
    size = (17 << 20) if compiled else (1 << 20)  # the Python prefilter is linear but slower
    data = bytes((byte,)) * size
    calls = _counting(monkeypatch)
    out = list(iter_wal(data, salvage=True))
    assert len(out) == 1 and isinstance(out[0], WALCorruption) and out[0].resume is None
    assert calls[0] <= 3  # the damaged first entry; no candidate passes the O(1) checks


def _segment(n: int, every: int, kind: str) -> tuple[bytes, int]:
    buf = io.BytesIO()
    w = WALWriter(buf)
    spans = []
    for i in range(n):
        start = buf.tell()
        if kind == "write" or i % 2:
            w.write({KEY: (1, [(i * 10**9 + j, float(j)) for j in range(3)])})
        else:
            w.delete_range([KEY], i, i + 5)
        spans.append(start)
    data = bytearray(buf.getvalue())
    damaged = 0
    for i in range(0, n, every):
        data[spans[i] + 5 : spans[i] + 7] = b"\xff\xff"  # the snappy preamble overflows
        damaged += 1
    return bytes(data), n - damaged


@pytest.mark.slow
@pytest.mark.parametrize("every", [2, 3, 7])
@pytest.mark.parametrize("kind", ["write", "mixed"])
def test_resync_finds_every_valid_entry_with_linear_work(monkeypatch, every: int, kind: str) -> None:
    data, valid = _segment(3000, every, kind)
    calls = _counting(monkeypatch)
    out = list(iter_wal(data, salvage=True))
    good = [e for e in out if isinstance(e, (WriteEntry, DeleteRangeEntry))]
    # a valid entry is only trusted when the next one is valid too (or the segment ends): with
    # damage every 2nd entry only the last one qualifies; otherwise every valid entry is found
    assert len(good) == (valid if every > 2 else 1)
    assert calls[0] <= 4 * 3000


def test_tombstone_replay_is_linear_in_the_ranges(monkeypatch) -> None:
    calls = [0]
    real = tomb_mod._joined

    def counted(p, c):
        calls[0] += 1
        return real(p, c)

    monkeypatch.setattr(tomb_mod, "_joined", counted)
    k = 20_000
    # disjoint partial ranges, in an order that makes every insertion land inside the list
    ranges = [(i * 10, i * 10 + 3) for i in range(k)]
    ranges = ranges[::2] + ranges[1::2]
    ts = TombstoneSet([Tombstone(KEY, a, b) for a, b in ranges])
    state = ts.state(KEY, 0, 10 * k)
    assert not state.deleted and len(state.ranges) == k
    assert calls[0] <= 3 * k


# ---------------------------------------------------------------------------------- WAL cache deletes

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from influx_archive.tsm.wal import Cache, DeleteEntry  # noqa: E402

_LO, _HI = -(1 << 63), (1 << 63) - 1
_keys = st.sampled_from([b"a#!~#v", b"b#!~#v"])
_t = st.integers(-5, 40)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("w"), _keys, st.lists(_t, min_size=1, max_size=6)),
        st.tuples(st.just("d"), _keys, st.tuples(_t, _t)),
        st.tuples(st.just("D"), _keys, st.just((_LO, _HI))),
    ),
    max_size=40,
)


def _model(ops) -> dict:
    """influxd's cache, applied eagerly: a delete filters what is stored at that moment."""
    store: dict[bytes, list[tuple[int, float]]] = {}
    n = 0
    for op, key, arg in ops:
        if op == "w":
            for t in arg:
                n += 1
                store.setdefault(key, []).append((t, float(n)))
        else:
            lo, hi = arg
            if key in store:
                store[key] = [(t, v) for t, v in store[key] if t < lo or t > hi]
                if not store[key]:
                    del store[key]
    out = {}
    for key, vals in store.items():
        last = dict(vals)
        out[key] = (sorted(last), [last[t] for t in sorted(last)])
    return out


@pytest.mark.slow
@settings(max_examples=400, deadline=None, derandomize=True)
@given(_ops)
def test_cache_deletes_applied_late_equal_deletes_applied_at_once(ops) -> None:
    cache = Cache()
    n = 0
    for op, key, arg in ops:
        if op == "w":
            vals = []
            for t in arg:
                n += 1
                vals.append((t, float(n)))
            cache.apply(WriteEntry({key: (1, vals)}))
        elif op == "D":
            cache.apply(DeleteEntry((key,)))
        else:
            cache.apply(DeleteRangeEntry((key,), *arg))
    got = {k: cache.values(k)[1:] for k in cache.keys()}
    assert got == _model(ops)


def test_many_deletes_on_a_large_key() -> None:
    cache = Cache()
    cache.apply(WriteEntry({KEY: (1, [(t, float(t)) for t in range(0, 40_000, 2)])}))
    for t in range(0, 40_000, 4):  # 10,000 deletes, each of one stored value
        cache.apply(DeleteRangeEntry((KEY,), t, t))
    _typ, ts, _vs = cache.values(KEY)
    assert ts == list(range(2, 40_000, 4))
