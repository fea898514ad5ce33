"""Hypothesis: decoders fed lying counts raise only FormatError and allocate within a bound.

Random bytes rarely form a header that claims a huge count, so the strategies here build the
headers on purpose (RLE timestamp counts up to 2^64 - 1 with every scale nibble, simple8b words
weighted towards selectors 0 and 1, raw bodies, integer/boolean/string value counts, WAL entry
lengths and snappy preambles, tombstone key lengths) and then let hypothesis vary them. For each
input: the only exception is a FormatError (exit 1), the result never holds more values than the
documented cap, and the peak Python allocation (tracemalloc) stays under a fixed bound that does
not depend on the claimed numbers. The compiled core and the Python code must agree on every
count. The linear tombstone replay is checked against influxd's loop written out directly.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import struct
import tracemalloc
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import FormatError, UnsupportedError
from influx_archive.tsm import block as tsm_block
from influx_archive.tsm.codec import simple8b, timestamps
from influx_archive.tsm.compiled import core as compiled
from influx_archive.tsm.tombstone import TombstoneSet, parse_tombstones
from influx_archive.tsm.wal import MAX_ENTRY_PAYLOAD, iter_wal

CAP = tsm_block.MAX_BLOCK_VALUES
#: Peak allocation any one decode of these small inputs may reach: a full block at the cap
#: (10,000 timestamps and values as Python objects) is about 1 MB; 16 MiB leaves room for
#: interpreter noise but not for a count taken at its word.
PEAK = 16 << 20

FAST = settings(max_examples=300, deadline=timedelta(seconds=10), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

u64 = st.integers(0, (1 << 64) - 1)
counts = st.one_of(
    st.integers(0, 3 * CAP), st.integers(0, (1 << 64) - 1), st.sampled_from([CAP, CAP + 1, (1 << 64) - 1])
)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@st.composite
def ts_sections(draw) -> bytes:
    kind = draw(st.sampled_from(["rle", "packed", "raw"]))
    scale = draw(st.integers(0, 15))
    t0 = struct.pack(">Q", draw(u64))
    if kind == "rle":
        return bytes((0x20 | scale,)) + t0 + uvarint(draw(u64)) + uvarint(draw(counts))
    if kind == "packed":
        sel = st.one_of(st.sampled_from([0, 1]), st.integers(0, 15))
        words = draw(st.lists(st.tuples(sel, st.integers(0, (1 << 60) - 1)), max_size=80))
        return bytes((0x10 | scale,)) + t0 + b"".join(struct.pack(">Q", (s << 60) | v) for s, v in words)
    return bytes((0x00,)) + t0 + draw(st.binary(max_size=8 * 40))


@st.composite
def value_sections(draw, btype: int) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    if btype in (tsm_block.INTEGER, tsm_block.UNSIGNED):
        head = draw(st.sampled_from([0x00, 0x10, 0x20]))
        first = struct.pack(">Q", draw(u64))
        if head == 0x20:
            return bytes((head,)) + first + uvarint(draw(u64)) + uvarint(draw(counts))
        return bytes((head,)) + first + draw(st.binary(max_size=64))
    if btype == tsm_block.BOOLEAN:
        return b"\x10" + uvarint(draw(counts)) + draw(st.binary(max_size=16))
    if btype == tsm_block.STRING:
        return b"\x10" + uvarint(draw(st.one_of(counts, st.integers(0, 1 << 40)))) + draw(st.binary(max_size=32))
    return b"\x10" + draw(st.binary(max_size=64))


@st.composite
def lying_blocks(draw) -> bytes:
    btype = draw(st.integers(0, 4))
    ts = draw(ts_sections())
    ts_len = draw(st.one_of(st.just(len(ts)), st.integers(0, len(ts) + 4)))
    return bytes((btype,)) + uvarint(ts_len) + ts + draw(value_sections(btype))


def _bounded(fn, *args, **kw):
    tracemalloc.start()
    try:
        try:
            out = fn(*args, **kw)
        except FormatError as exc:
            out = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK, f"{fn.__name__} allocated {peak} bytes"
    return out


@pytest.mark.slow
@FAST
@given(lying_blocks())
def test_decode_block_never_trusts_a_count(data: bytes) -> None:
    got = _bounded(tsm_block.decode_block, data)
    if not isinstance(got, FormatError):
        _t, ts, vs = got
        assert len(ts) == len(vs) <= CAP


@pytest.mark.slow
@FAST
@given(lying_blocks())
def test_counting_agrees_with_decoding_and_the_compiled_core(data: bytes) -> None:
    counted = _bounded(tsm_block.count_values, data)
    decoded = _bounded(tsm_block.decode_block, data)
    if isinstance(decoded, FormatError):
        pass  # count_values reads less than decoding does: it may accept what decoding refuses
    else:
        # everything count_values checks, decoding checks too: a block that decodes counts
        assert counted == len(decoded[1]) <= CAP
    framed = b"\xaa" * 7 + data + b"\xbb" * 3
    at = _bounded(tsm_block.count_values_at, framed, 7, len(data))
    assert type(at) is type(counted) and (at == counted if isinstance(at, int) else True)
    if compiled is not None:
        c = compiled.block_count(framed, 7, len(data), CAP)
        assert c == (counted if isinstance(counted, int) else -1)


@FAST
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, (1 << 60) - 1)), max_size=300), st.integers(0, CAP))
def test_simple8b_decode_refuses_more_than_its_limit(words: list, limit: int) -> None:
    data = b"".join(struct.pack(">Q", (s << 60) | v) for s, v in words)
    out: list[int] = []
    got = _bounded(simple8b.decode, data, out, limit=limit)
    held = simple8b.count(data)
    if held > limit:
        assert isinstance(got, FormatError) and not out
    else:
        assert len(out) == held


@pytest.mark.slow
@FAST
@given(ts_sections(), st.integers(1, CAP))
def test_timestamp_count_checked_before_allocating(section: bytes, limit: int) -> None:
    got = _bounded(timestamps.decode, section, max_count=limit)
    if not isinstance(got, FormatError):
        assert 1 <= len(got) <= limit


@st.composite
def lying_wal(draw) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        typ = draw(st.sampled_from([1, 2, 3, draw(st.integers(0, 255))]))
        preamble = uvarint(draw(st.one_of(counts, st.just(MAX_ENTRY_PAYLOAD + 1), st.integers(0, 1 << 33))))
        body = preamble + draw(st.binary(max_size=48))
        length = draw(st.one_of(st.just(len(body)), st.integers(0, (1 << 32) - 1)))
        parts.append(struct.pack(">BI", typ, length) + body)
    return b"".join(parts)


@pytest.mark.slow
@FAST
@given(lying_wal(), st.booleans())
def test_wal_reader_never_trusts_a_length(data: bytes, salvage: bool) -> None:
    got = _bounded(lambda: list(iter_wal(data, salvage=salvage)))
    assert isinstance(got, (list, FormatError))


@st.composite
def lying_tombstone(draw) -> bytes:
    records = b"".join(
        struct.pack(">I", draw(st.one_of(st.integers(0, 40), st.integers(0, (1 << 32) - 1))))
        + draw(st.binary(max_size=24)) for _ in range(draw(st.integers(1, 4)))
    )
    version = draw(st.sampled_from([2, 3, 4]))
    if version == 2:
        return b"\x00\x00\x15\x02" + records
    import gzip

    return struct.pack(">I", 0x1500 | version) + gzip.compress(records, mtime=0)


@pytest.mark.slow
@FAST
@given(lying_tombstone())
def test_tombstone_reader_never_trusts_a_key_length(data: bytes) -> None:
    tracemalloc.start()
    try:
        with contextlib.suppress(FormatError, UnsupportedError):
            parse_tombstones(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK


def _influxd_replay(raw: list[tuple[int, int]], key_min: int, key_max: int) -> bool:
    """influxd's ``DeleteRange`` loop for one key, written out directly
    (docs/formats.md#tombstone-application): True = removed."""
    lo_all, hi_all = -(1 << 63), (1 << 63) - 1
    applied: list[tuple[int, int]] = []
    for lo, hi in raw:
        if lo == lo_all and hi == hi_all:
            return True
        if lo > key_max or hi < key_min:
            continue
        if lo <= key_min and hi >= key_max:
            return True
        bisect.insort(applied, (lo, hi))
        ok = True
        for (plo, phi), (clo, chi) in itertools.pairwise(applied):
            below = clo - 1 if clo != lo_all else hi_all
            if not (phi == below or (plo <= chi and phi >= clo)):
                ok = False
                break
        if ok and applied[0][0] <= key_min and max(h for _, h in applied) >= key_max:
            return True
    return False


small = st.integers(-5, 60)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, derandomize=True)
@given(st.lists(st.tuples(small, small).map(lambda r: (min(r), max(r))), max_size=12), small, small)
def test_tombstone_replay_matches_influxds_loop(ranges: list, a: int, b: int) -> None:
    key_min, key_max = min(a, b), max(a, b)
    ts = TombstoneSet([])
    got = ts._replay(ranges, key_min, key_max)
    assert got.deleted == _influxd_replay(ranges, key_min, key_max)
