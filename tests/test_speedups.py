"""The compiled core (tsm/_speedups.c: Gorilla floats, simple8b, the TSM index scan) against the
pure Python code it speeds up.

The compiled functions handle only valid input and decline everything else (returning None), so
that the Python codec raises its precise errors. These tests hold the two to the same bytes on
influxd's own encoder output and on hypothesis inputs, and check the compiled decoder never
accepts what the Python one refuses."""

from __future__ import annotations

import io
import os
import struct

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_block import GO_BLOCKS, _values
from test_tsm_file import fixture_tsm_files

from influx_archive.archive.errors import ArchiveError
from influx_archive.tsm import block
from influx_archive.tsm import reader as tsm_reader
from influx_archive.tsm.codec import floats, simple8b, varint
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.writer import TSMWriter

compiled = floats._compiled
needs_compiled = pytest.mark.skipif(
    compiled is None and os.environ.get("CI") != "true", reason="no C compiler where the package was installed"
)


def bits(values: list[float]) -> list[int]:
    return list(struct.unpack(f">{len(values)}Q", struct.pack(f">{len(values)}d", *values)))


def value_section(raw: bytes) -> tuple[bytes, int]:
    ts_len, pos = varint.decode(raw, 1, what="ts_len")
    return raw[pos + ts_len :], len(block.decode_timestamps(raw))


def test_compiled_codec_is_built_where_ci_installs() -> None:
    """CI installs with a C compiler: the fast path must be there (locally it may be absent)."""
    if os.environ.get("CI") == "true":
        assert compiled is not None


FLOAT_BLOCKS = [d for d in GO_BLOCKS if d["type"] == block.FLOAT]


@needs_compiled
def test_go_vectors_both_codecs() -> None:
    assert len(FLOAT_BLOCKS) > 50
    for d in FLOAT_BLOCKS:
        raw = bytes.fromhex(d["block"])
        section, count = value_section(raw)
        values = _values(block.FLOAT, d["v"])
        assert compiled.encode(values) == floats.py_encode(values) == section
        assert bits(compiled.decode(section, count)) == bits(floats.py_decode(section, count)) == bits(values)


finite_or_inf = st.floats(allow_nan=False)


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.lists(finite_or_inf, min_size=1, max_size=1200))
def test_same_bytes_and_values(values: list[float]) -> None:
    section = floats.py_encode(values)
    assert compiled.encode(values) == section
    assert bits(compiled.decode(section, len(values))) == bits(values)


@pytest.mark.slow
@needs_compiled
@settings(max_examples=400, deadline=None)
@given(st.lists(finite_or_inf, min_size=1, max_size=60), st.data())
def test_damaged_sections_never_accepted_by_the_compiled_decoder_alone(values: list[float], data) -> None:
    section = bytearray(floats.py_encode(values))
    how = data.draw(st.sampled_from(["flip", "cut", "append", "count"]))
    count = len(values)
    if how == "flip":
        i = data.draw(st.integers(0, len(section) - 1))
        section[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "cut":
        del section[data.draw(st.integers(1, len(section))) :]
    elif how == "append":
        section += bytes([data.draw(st.integers(0, 255))])
    else:
        count += data.draw(st.sampled_from([-1, 1]))
    fast = compiled.decode(bytes(section), count) if count >= 1 else None
    try:
        slow = floats.py_decode(bytes(section), count)
    except ArchiveError:
        assert fast is None  # declined: the Python codec raises its precise error
        with pytest.raises(ArchiveError):
            floats.decode(bytes(section), count)
        return
    assert fast is None or bits(fast) == bits(slow)


@needs_compiled
def test_declines_what_it_cannot_encode() -> None:
    assert compiled.encode([1.0, float("nan")]) is None
    assert compiled.encode([1, 2.0]) is None  # an int is not a float: the Python codec decides
    assert compiled.encode([]) is None
    with pytest.raises(ArchiveError):
        floats.encode([1.0, float("nan")])


# --- simple8b --------------------------------------------------------------------------------

s8_values = st.lists(
    st.one_of(st.just(1), st.integers(0, 1), st.integers(0, (1 << 60) - 1), st.integers(0, 255)), max_size=1300
)


@pytest.mark.slow
@needs_compiled
@settings(max_examples=400, deadline=None)
@given(s8_values)
def test_simple8b_same_words_both_drivers(values: list[int]) -> None:
    for fast, slow in ((compiled.s8b_encode_all, simple8b.py_encode_all),
                       (compiled.s8b_encode_windowed, simple8b.py_encode_windowed)):
        words = slow(values)
        assert fast(values) == words
        out: list[int] = []
        simple8b.py_decode(words, out)
        assert compiled.s8b_decode(words) == out == values


@needs_compiled
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_simple8b_decode_any_words(data: bytes) -> None:
    got = compiled.s8b_decode(data)
    if len(data) % 8:
        assert got is None
    else:
        out: list[int] = []
        simple8b.py_decode(data, out)
        assert got == out


@needs_compiled
def test_simple8b_declines_out_of_range() -> None:
    for bad in ([1 << 60], [-1], [1.5]):
        assert compiled.s8b_encode_all(bad) is None and compiled.s8b_encode_windowed(bad) is None
    with pytest.raises(ValueError):
        simple8b.encode_all([1 << 60])


# --- the TSM index scan --------------------------------------------------------------------------


def python_reader(data: bytes, monkeypatch) -> TSMReader:
    with monkeypatch.context() as m:
        m.setattr(tsm_reader, "_compiled", None)
        r = TSMReader(io.BytesIO(data), name="t.tsm")
        r.frames_py = r.frames()  # type: ignore[attr-defined]
    return r


def same_index(fast: TSMReader, slow: TSMReader) -> None:
    assert fast._keys == slow._keys
    assert list(fast._positions) == list(slow._positions)
    assert (fast.min_time, fast.max_time) == (slow.min_time, slow.max_time)
    assert fast.overlapping_keys == slow.overlapping_keys
    assert fast.frames() == slow.frames_py  # type: ignore[attr-defined]


@needs_compiled
def test_index_scan_same_result_on_influxd_files(fixtures_dir, monkeypatch) -> None:
    files = fixture_tsm_files(fixtures_dir)
    for name, data in files:
        same_index(TSMReader(io.BytesIO(data), name=name), python_reader(data, monkeypatch))


def small_tsm(draw_keys: list[tuple[bytes, list[list[int]]]]) -> bytes:
    out = io.BytesIO()
    w = TSMWriter(out)
    for key, blocks in draw_keys:
        for ts in blocks:
            w.write_values(key, block.INTEGER, ts, list(range(len(ts))))
    w.close()
    return out.getvalue()


def ascending_blocks(gaps: list[list[int]]) -> list[list[int]]:
    t, blocks = -(10**6), []
    for block_gaps in gaps:
        ts = []
        for g in block_gaps:
            t += g
            ts.append(t)
        blocks.append(ts)
    return blocks


tsm_layouts = st.lists(
    st.lists(st.lists(st.integers(1, 10**6), min_size=1, max_size=5), min_size=1, max_size=3).map(ascending_blocks),
    min_size=1, max_size=4,
).map(lambda keys: [(b"m,k=%d#!~#v" % i, blocks) for i, blocks in enumerate(keys)])


@pytest.mark.slow
@needs_compiled
@settings(max_examples=300, deadline=None)
@given(tsm_layouts, st.data())
def test_index_scan_accepts_exactly_what_the_python_scan_accepts(layout, data) -> None:
    """Damage anywhere in the index (flips, cuts, overlapping or unsorted entries): the compiled
    scan declines exactly where the Python scan raises, and agrees with it everywhere else."""
    raw = small_tsm(layout)
    index_offset = int.from_bytes(raw[-8:], "big")
    index = bytearray(raw[index_offset:-8])
    how = data.draw(st.sampled_from(["flip", "cut", "byte", "overlap", "none"]))
    if how == "overlap":  # a block that starts before the previous one of its key ends: legal
        pos = 0
        while pos < len(index):
            klen = int.from_bytes(index[pos : pos + 2], "big")
            count = int.from_bytes(index[pos + 3 + klen : pos + 5 + klen], "big")
            at = pos + 5 + klen
            if count > 1:
                index[at + 28 : at + 36] = index[at + 8 : at + 16]  # 2nd min_time = 1st max_time
                break
            pos = at + 28 * count
    elif how == "flip":
        i = data.draw(st.integers(0, len(index) - 1))
        index[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "cut":
        del index[data.draw(st.integers(0, len(index) - 1)) :]
    elif how == "byte":
        index[data.draw(st.integers(0, len(index) - 1))] = data.draw(st.sampled_from([0, 0xFF, 1, 0x80]))
    fast = compiled.scan_index(bytes(index), index_offset)
    r = TSMReader.__new__(TSMReader)
    r.name, r._index, r.index_offset = "t.tsm", bytes(index), index_offset
    r._keys, r._positions, r.overlapping_keys = [], tsm_reader.array("q"), []
    try:
        r._scan_index_py()
    except ArchiveError:
        event("the Python scan refuses")
        assert fast is None
        return
    event("overlapping blocks accepted" if r.overlapping_keys else "accepted")
    assert fast is not None
    keys, positions, lo, hi, overlapping = fast
    assert keys == r._keys and (lo, hi) == (r.min_time, r.max_time) and overlapping == r.overlapping_keys
    assert list(tsm_reader.array("q", positions)) == list(r._positions)
    got = compiled.index_frames(r._index, r._positions, r._keys)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(tsm_reader, "_compiled", None)
        assert got == r.frames()


# --- list checks and running sums ---------------------------------------------------------------

int64s = st.integers(-(1 << 63), (1 << 63) - 1)
anything = st.one_of(int64s, st.integers(), st.booleans(), st.floats(), st.binary(max_size=3))


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(int64s, anything), max_size=30), st.booleans())
def test_int64_order_agrees_or_declines(values, strict: bool) -> None:
    got = compiled.int64_order(values, strict)
    exact = all(type(v) is int and -(1 << 63) <= v < (1 << 63) for v in values)
    if not exact:
        assert got is None
        return
    bad = next(
        (i for i in range(1, len(values)) if (values[i] <= values[i - 1] if strict else values[i] < values[i - 1])), -1
    )
    assert got == bad
    if strict:
        assert block.check_block_order(values) == (None if bad < 0 else bad)


@pytest.mark.slow
@needs_compiled
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(block.BLOCK_TYPE_NAMES)), st.lists(anything, min_size=1, max_size=8))
def test_all_exact_only_vouches_for_what_the_python_check_accepts(btype: int, values) -> None:
    if compiled.all_exact(values, block._EXACT_KIND[btype]):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(block, "_compiled", None)
            block._check_values(btype, values)  # must not raise


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.lists(st.integers(0, (1 << 64) - 1), max_size=40),
    st.sampled_from([1, 10, 1000, 10**12]),
    st.booleans(),
    st.booleans(),
)
def test_wrap_sums_equal_unbounded_sums_reduced(
    first: int, deltas: list[int], mult: int, zigzag: bool, signed: bool
) -> None:
    from itertools import accumulate

    from influx_archive.tsm.codec.integers import to_int64, to_uint64

    def unzig(z: int) -> int:
        z &= (1 << 64) - 1
        return (z >> 1) ^ -(z & 1)

    f = unzig if zigzag else (lambda d: d)
    sums = list(accumulate([f(first)] + [f(d) * mult for d in deltas]))
    assert compiled.wrap_sums(first, deltas, mult, zigzag, signed) == (to_int64(sums) if signed else to_uint64(sums))
    assert compiled.wrap_sums(first, deltas + [-1], mult, zigzag, signed) is None
    assert compiled.wrap_sums(first, deltas + [1 << 64], mult, zigzag, signed) is None


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.lists(int64s, min_size=1, max_size=1000, unique=True).map(sorted),
    st.lists(int64s, min_size=1, max_size=1000),
)
def test_codecs_same_bytes_and_values_with_and_without_the_compiled_core(ts, ints) -> None:
    from influx_archive.tsm.codec import integers, timestamps

    fast = (block.encode_block(block.INTEGER, ts, ints[: len(ts)] + [0] * (len(ts) - len(ints[: len(ts)]))),
            timestamps.encode(ts), integers.encode(ints))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(block, "_compiled", None)
        m.setattr(integers, "_compiled", None)
        m.setattr(timestamps, "_compiled", None)
        slow = (block.encode_block(block.INTEGER, ts, ints[: len(ts)] + [0] * (len(ts) - len(ints[: len(ts)]))),
                timestamps.encode(ts), integers.encode(ints))
        assert slow == fast
        slow_decoded = (block.decode_block(slow[0]), integers.decode(slow[2], len(ints)))
    assert (block.decode_block(fast[0]), integers.decode(fast[2], len(ints))) == slow_decoded
    assert slow_decoded[0][1] == ts and slow_decoded[1] == ints
