"""The compiled block encoders (tsm/_speedups.c ``ts_encode``, ``int_encode``: trim's boundary
blocks) against the pure-Python encoders they speed up, which stay the reference: the same bytes
on influxd's own blocks and on hypothesis inputs (int64 / uint64 extremes, equal deltas for RLE,
deltas past simple8b's 60 bits for raw, every power-of-ten scale, one value, 1000 values), the
Python decoders reading back the values, and None for anything they must not vouch for."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_block import GO_BLOCKS, GO_TS_SECTIONS, _values

from influx_archive.tsm import block
from influx_archive.tsm.codec import integers, timestamps, varint

compiled = integers._compiled
needs_compiled = pytest.mark.skipif(
    compiled is None and os.environ.get("CI") != "true", reason="no C compiler where the package was installed"
)
I64 = (-(1 << 63), (1 << 63) - 1)
U64 = (0, (1 << 64) - 1)


def sections(raw: bytes) -> tuple[bytes, bytes]:
    ts_len, pos = varint.decode(raw, 1, what="ts_len")
    return raw[pos : pos + ts_len], raw[pos + ts_len :]


@needs_compiled
def test_influxd_blocks_same_bytes_from_both_encoders() -> None:
    seen = {block.INTEGER: 0, block.UNSIGNED: 0}
    for d in GO_BLOCKS:
        raw = bytes.fromhex(d["block"])
        ts_section, value_section = sections(raw)
        _, ts, _ = block.decode_block(raw)  # the vector's "ts" holds the first time, then deltas
        assert compiled.ts_encode(ts) == timestamps.py_encode(ts) == ts_section
        if d["type"] in seen:
            values = _values(d["type"], d["v"])
            unsigned = d["type"] == block.UNSIGNED
            ref = integers.py_encode_unsigned(values) if unsigned else integers.py_encode(values)
            assert compiled.int_encode(values, unsigned) == ref == value_section
            seen[d["type"]] += 1
    assert all(seen.values()), seen
    assert len(GO_TS_SECTIONS) > 20
    for d in GO_TS_SECTIONS:
        section = bytes.fromhex(d["section"])
        ts = timestamps.decode(section, max_count=block.MAX_BLOCK_VALUES)
        assert compiled.ts_encode(ts) == timestamps.py_encode(ts) == section


def _scaled(draw, n: int) -> list[int]:
    """Strictly increasing int64 timestamps of one of several shapes."""
    shape = draw(st.sampled_from(["equal", "scaled", "wide", "any"]))
    if shape == "equal":  # RLE
        step = draw(st.sampled_from([1, 10, 10**6, 10**9, 10**12, 10**13, 7 * 10**11, (1 << 61) // max(n, 1)]))
        first = draw(st.integers(I64[0], I64[1] - step * (n - 1)))
        return [first + i * step for i in range(n)]
    if shape == "scaled":  # a power-of-ten scale up to 12 (and above it)
        k = draw(st.integers(0, 14))
        units = draw(st.lists(st.integers(-(10**18) // 10**k, 10**18 // 10**k), min_size=n, max_size=n, unique=True))
        return sorted(u * 10**k for u in units)
    if shape == "wide":  # deltas past 2^60 - 1: raw
        return sorted(draw(st.lists(st.integers(*I64), min_size=n, max_size=n, unique=True)) + [])
    return sorted(draw(st.lists(st.integers(0, 4 * n), min_size=n, max_size=n, unique=True)))


@st.composite
def increasing(draw) -> list[int]:
    n = draw(st.sampled_from([1, 2, 3, 239, 240, 241, 1000]) | st.integers(1, 1200))
    return _scaled(draw, n)


@needs_compiled
@settings(max_examples=120, deadline=None)
@given(increasing())
def test_timestamps_same_bytes(ts: list[int]) -> None:
    got = compiled.ts_encode(ts)
    assert got == timestamps.py_encode(ts, increasing=True) == timestamps.py_encode(ts)
    assert timestamps.decode(got, max_count=len(ts)) == ts


@needs_compiled
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(*I64), min_size=1, max_size=300))
def test_timestamps_in_any_order_same_bytes(ts: list[int]) -> None:
    """influxd's encoder takes any int64s (wrap-around deltas); so do both."""
    assert compiled.ts_encode(ts) == timestamps.py_encode(ts)


def _ints(lo: int, hi: int):
    edge = st.sampled_from([lo, hi, 0, 1, -1 if lo < 0 else 2, lo + 1, hi - 1, 1 << 59, (1 << 60) - 1, 1 << 60])
    small = st.integers(-8 if lo < 0 else 0, 8)
    runs = st.tuples(st.integers(lo, hi), st.integers(-1000, 1000), st.integers(1, 1000)).map(
        lambda t: [min(hi, max(lo, t[0] + i * t[1])) for i in range(t[2])]
    )  # equal deltas (RLE), clipped at the edges
    lists = st.lists(st.integers(lo, hi) | edge | small, min_size=1, max_size=1000)
    return runs | lists | st.lists(small, min_size=1, max_size=1000) | st.lists(edge, min_size=1, max_size=50)


@needs_compiled
@settings(max_examples=120, deadline=None)
@given(_ints(*I64))
def test_integers_same_bytes(values: list[int]) -> None:
    got = compiled.int_encode(values, False)
    assert got == integers.py_encode(values)
    assert integers.decode(got, len(values)) == values


@needs_compiled
@settings(max_examples=120, deadline=None)
@given(_ints(*U64))
def test_unsigned_same_bytes(values: list[int]) -> None:
    got = compiled.int_encode(values, True)
    assert got == integers.py_encode_unsigned(values)
    assert integers.decode_unsigned(got, len(values)) == values


@needs_compiled
@settings(max_examples=60, deadline=None)
@given(increasing(), st.data())
def test_blocks_same_bytes_as_the_python_codecs_alone(ts: list[int], data) -> None:
    """encode_block through the public codecs equals the block the Python codecs alone write."""
    btype = data.draw(st.sampled_from([block.INTEGER, block.UNSIGNED]))
    lo, hi = I64 if btype == block.INTEGER else U64
    values = data.draw(st.lists(st.integers(lo, hi), min_size=len(ts), max_size=len(ts)))
    py = integers.py_encode(values) if btype == block.INTEGER else integers.py_encode_unsigned(values)
    raw = block.encode_block(btype, ts, values)
    assert sections(raw) == (timestamps.py_encode(ts), py)
    assert block.decode_block(raw) == (btype, ts, values)


@needs_compiled
def test_declines_what_the_python_code_must_decide() -> None:
    for bad in ([], [1.0], [True], [1 << 63], [-(1 << 63) - 1], [1, "2"], [1, 2, 1 << 64]):
        assert compiled.ts_encode(bad) is None, bad
        assert compiled.int_encode(bad, False) is None, bad
    for bad in ([], [-1], [1 << 64], [False], [3, 2.0]):
        assert compiled.int_encode(bad, True) is None, bad


def _outcome(fn, raw: bytes):
    try:
        btype, ts, vs = fn(raw)
    except Exception as exc:  # the error itself (class, message, offset) must be the same
        return type(exc).__name__, str(exc)
    return btype, ts, [v.hex() if isinstance(v, float) else (type(v).__name__, v) for v in vs]


@needs_compiled
@settings(max_examples=150, deadline=None)
@given(increasing(), st.data())
def test_decode_block_equals_the_python_codecs_alone(ts: list[int], data) -> None:
    """decode_block (the compiled whole-block decoder where it accepts) returns and raises exactly
    what py_decode_block does, on valid blocks and on the same blocks with bytes cut or changed."""
    btype = data.draw(st.sampled_from([block.FLOAT, block.INTEGER, block.UNSIGNED, block.BOOLEAN]))
    values = data.draw(st.lists(
        {block.FLOAT: st.floats(allow_nan=False), block.INTEGER: st.integers(*I64),
         block.UNSIGNED: st.integers(*U64), block.BOOLEAN: st.booleans()}[btype], min_size=len(ts), max_size=len(ts)))
    raw = block.encode_block(btype, ts, values)
    assert _outcome(block.decode_block, raw) == _outcome(block.py_decode_block, raw)
    cut = data.draw(st.integers(0, len(raw)))
    at = data.draw(st.integers(0, len(raw) - 1))
    flipped = raw[:at] + bytes((raw[at] ^ data.draw(st.integers(1, 255)),)) + raw[at + 1:]
    for bad in (raw[:cut], flipped, raw + b"\0"):
        assert _outcome(block.decode_block, bad) == _outcome(block.py_decode_block, bad)


@needs_compiled
def test_decode_block_on_influxd_blocks_equals_the_python_codecs_alone() -> None:
    for d in GO_BLOCKS:
        raw = bytes.fromhex(d["block"])
        assert _outcome(block.decode_block, raw) == _outcome(block.py_decode_block, raw)
