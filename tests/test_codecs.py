"""Block value codecs (docs/formats.md#block-encodings): spec examples byte for byte, hypothesis
round trips, and strict decoding of damaged sections.

Expected bytes come from real examples (docs/formats.md#timestamp-encoding, #integer-encoding,
#example-tsm-file) or are built here from the format rules by hand (bit strings, snappy literal
tags), never from the code under test.
The cross-check against influxd's own Go encoder is in test_block.py.
"""

from __future__ import annotations

import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import FormatError, TruncatedError, UnsupportedError
from influx_archive.tsm.codec import booleans, floats, integers, simple8b, strings, timestamps, varint

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
T0 = 1795219200000000000  # 2026-11-21T00:00:00Z, the data of docs/formats.md#examples


def bits(s: str) -> bytes:
    """Bytes of an MSB-first bit string (spaces ignored), zero-padded to a byte."""
    s = s.replace(" ", "")
    s += "0" * (-len(s) % 8)
    return int(s, 2).to_bytes(len(s) // 8, "big") if s else b""


def f64bits(x: float) -> int:
    return struct.unpack(">Q", struct.pack(">d", x))[0]


def same_floats(a: list[float], b: list[float]) -> bool:
    return [f64bits(x) for x in a] == [f64bits(x) for x in b]


int64s = st.integers(INT64_MIN, INT64_MAX)
uint64s = st.integers(0, UINT64_MAX)
# Biased towards the values that select special encodings: small deltas, 1s, extremes.
int64_lists = st.lists(
    st.one_of(int64s, st.integers(-3, 3), st.sampled_from([INT64_MIN, INT64_MAX, 0, 1, -1])), min_size=1, max_size=300
)
finite_or_inf = st.floats(allow_nan=False, allow_infinity=True, allow_subnormal=True)


# --- varint -----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "value, encoded",
    [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"), (1000, "e807"),
     (UINT64_MAX, "ffffffffffffffffff01")],
)
def test_varint_known(value: int, encoded: str) -> None:
    assert varint.encode(value) == bytes.fromhex(encoded)
    assert varint.decode(bytes.fromhex(encoded), 0, what="x") == (value, len(encoded) // 2)


@given(uint64s)
def test_varint_round_trip(value: int) -> None:
    data = b"\xaa" + varint.encode(value) + b"\xbb"
    assert varint.decode(data, 1, what="x") == (value, len(data) - 1)


def test_varint_errors() -> None:
    with pytest.raises(TruncatedError) as e:
        varint.decode(b"\x01\x80\x80", 1, what="count", base=10)
    assert e.value.offset == 11 and e.value.field == "count"
    with pytest.raises(FormatError, match="overflows"):
        varint.decode(b"\xff" * 9 + b"\x02", 0, what="count")  # 10th byte > 1
    with pytest.raises(FormatError, match="overflows"):
        varint.decode(b"\x80" * 10 + b"\x00", 0, what="count")  # 11 bytes
    assert varint.decode(b"\x80\x00", 0, what="x") == (0, 2)  # non-minimal: accepted like Go


# --- simple8b ---------------------------------------------------------------------------------

def test_simple8b_spec_word() -> None:
    # docs/formats.md#example-tsm-file: selector 14 (2 x 30 bits), value0 = 1, value1 = 1999.
    word = bytes.fromhex("e00001f3c0000001")
    assert simple8b.encode_windowed([1, 1999]) == word
    assert simple8b.encode_all([1, 1999]) == word
    out: list[int] = []
    simple8b.decode(word, out)
    assert out == [1, 1999]


def test_simple8b_runs_of_one() -> None:
    # Selectors 0/1 stand for 240/120 ones (docs/formats.md#simple8b).
    assert simple8b.encode_all([1] * 240) == bytes(8)
    assert simple8b.encode_all([1] * 120) == bytes.fromhex("1000000000000000")
    # 60 ones in one-bit fields: selector 2, payload all ones.
    assert simple8b.encode_all([1] * 60) == bytes.fromhex("2fffffffffffffff")
    out: list[int] = []
    simple8b.decode(bytes(8) + bytes.fromhex("1000000000000000"), out)
    assert out == [1] * 360


def test_simple8b_drivers_differ_as_specified() -> None:
    # Whole-list driver: 240 ones followed by a 2 are not "all ones", so four 60 x 1-bit words,
    # then the 2 alone (selector 15).
    values = [1] * 240 + [2]
    one_bit = "2fffffffffffffff"
    assert simple8b.encode_all(values) == bytes.fromhex(one_bit * 4 + "f000000000000002")
    # 240-window driver: adding the 241st value flushes a full FIFO of 240 ones as selector 0.
    assert simple8b.encode_windowed(values) == bytes.fromhex("0000000000000000" + "f000000000000002")


def test_simple8b_value_layout() -> None:
    # Value k at bit offset k * bits (value 0 least significant): selector 13, 3 x 20 bits.
    # The largest value needs 17 bits and only 3 values remain: selector 13 is the first that fits.
    word = (13 << 60) | (3 << 40) | ((2 << 15) << 20) | (1 << 15)
    assert simple8b.encode_all([1 << 15, 2 << 15, 3]) == word.to_bytes(8, "big")


@pytest.mark.slow
@given(st.lists(st.one_of(st.integers(0, simple8b.MAX_VALUE), st.integers(0, 3), st.just(1)), max_size=800))
def test_simple8b_round_trip(values: list[int]) -> None:
    for encoded in (simple8b.encode_all(values), simple8b.encode_windowed(values)):
        assert simple8b.count(encoded) == len(values)
        out: list[int] = []
        simple8b.decode(encoded, out)
        assert out == values


def test_simple8b_count_rejects_partial_word() -> None:
    with pytest.raises(FormatError, match="multiple of 8") as e:
        simple8b.count(bytes(12), what="ts", base=9)
    assert e.value.offset == 9 + 8


# --- timestamps -------------------------------------------------------------------------------

def test_timestamps_spec_rle() -> None:
    # docs/formats.md#timestamp-encoding: 1000 points every 10 s -> RLE, D = 10, delta 1, count 1000.
    ts = [T0 + i * 10_000_000_000 for i in range(1000)]
    section = bytes.fromhex("2a18e9e659d5f6000001e807")
    assert timestamps.encode(ts) == section
    assert timestamps.decode(section, max_count=1000) == ts


def test_timestamps_spec_single() -> None:
    # docs/formats.md#timestamp-encoding: a single timestamp is packed with D = 12 and no words.
    section = bytes.fromhex("1c18e9e659dd51cd15")
    assert timestamps.encode([1795219200123456789]) == section
    assert timestamps.decode(section, max_count=1) == [1795219200123456789]


def test_timestamps_spec_raw() -> None:
    # docs/formats.md#timestamp-encoding: deltas above 2^60 - 1 force raw; raw stores t0 then unscaled deltas.
    ts = [1 << 61, (1 << 61) + 5, (1 << 63) - 2]
    section = bytes.fromhex("00" "2000000000000000" "0000000000000005" "5ffffffffffffff9")
    assert timestamps.encode(ts) == section
    assert timestamps.decode(section, max_count=3) == ts


def test_timestamps_spec_packed() -> None:
    # docs/formats.md#example-tsm-file: t0, t0 + 10 s, t0 + 20000 s -> packed, D = 10, one selector-14 word (1, 1999).
    ts = [T0, T0 + 10_000_000_000, T0 + 20_000_000_000_000]
    section = bytes.fromhex("1a18e9e659d5f60000e00001f3c0000001")
    assert timestamps.encode(ts) == section
    assert timestamps.decode(section, max_count=3) == ts


def test_timestamps_two_values_always_rle() -> None:
    # docs/formats.md#edge-cases: even a delta of 2^62 (not divisible by 10: D = 0) is RLE, as a 9-byte uvarint.
    section = bytes.fromhex("20" "0000000000000000" "808080808080808040" "02")
    assert timestamps.encode([0, 1 << 62]) == section
    assert timestamps.decode(section, max_count=2) == [0, 1 << 62]


def test_timestamps_scale_is_largest_common_power_of_ten() -> None:
    # deltas 3000 and 5000: D = 3; the scaled deltas 3 and 5 are only 2 values, so the first
    # selector that fits is 14 (2 x 30 bits).
    section = timestamps.encode([0, 3000, 8000])
    assert section[0] == 0x13
    assert section[9:] == ((14 << 60) | (5 << 30) | 3).to_bytes(8, "big")


def test_timestamps_negative_and_wrapping() -> None:
    ts = [INT64_MIN + 2, -1, 0, INT64_MAX - 2]
    assert timestamps.decode(timestamps.encode(ts), max_count=4) == ts


@given(int64_lists)
def test_timestamps_round_trip_any_order(ts: list[int]) -> None:
    # The codec itself mirrors influxd for any int64 sequence (u64 wrap-around deltas).
    assert timestamps.decode(timestamps.encode(ts), max_count=len(ts)) == ts


@given(st.sets(int64s, min_size=1, max_size=300), st.sampled_from([1, 1000, 10**6, 10**9, 10**10]))
def test_timestamps_round_trip_increasing(raw: set[int], unit: int) -> None:
    ts = sorted({max(INT64_MIN, min(INT64_MAX, t // unit * unit)) for t in raw})
    assert timestamps.decode(timestamps.encode(ts), max_count=len(ts)) == ts


@pytest.mark.parametrize(
    "section, error, offset",
    [
        ("", TruncatedError, 0),
        ("30" + "00" * 8, FormatError, 0),  # unknown encoding
        ("1c0000", TruncatedError, 0),  # shorter than t0
        ("05" + "00" * 8, FormatError, 0),  # raw with a scale nibble
        ("00" + "00" * 12, FormatError, 9),  # raw body not a whole number of words
        ("10" + "00" * 8 + "00" * 4, FormatError, 9),  # packed words not whole
        ("20" + "00" * 8 + "01", TruncatedError, 10),  # RLE without its count
        ("20" + "00" * 8 + "0101ff", FormatError, 11),  # bytes after the RLE fields
        ("20" + "00" * 8 + "0100", FormatError, 0),  # RLE count 0
    ],
)
def test_timestamps_damaged(section: str, error: type, offset: int) -> None:
    with pytest.raises(error) as e:
        timestamps.decode(bytes.fromhex(section), max_count=100)
    assert type(e.value) is error
    assert e.value.offset == offset
    assert e.value.field is not None and "timestamp" in e.value.field


def test_timestamps_count_limits_before_allocating() -> None:
    rle = bytes.fromhex("20" + "00" * 8 + "01") + varint.encode(1 << 60)
    with pytest.raises(FormatError, match="exceed the limit"):
        timestamps.decode(rle, max_count=10_000_000)
    bomb = bytes.fromhex("10" + "00" * 8) + bytes(8 * 1000)  # 1000 selector-0 words = 240000 ones
    with pytest.raises(FormatError, match="240001 timestamps exceed"):
        timestamps.decode(bomb, max_count=100_000)
    raw = bytes(1 + 8 * 11)
    with pytest.raises(FormatError, match="11 timestamps exceed"):
        timestamps.decode(raw, max_count=10)


def test_timestamps_base_offsets_in_errors() -> None:
    with pytest.raises(FormatError) as e:
        timestamps.decode(bytes.fromhex("00" + "00" * 12), max_count=5, base=2)
    assert e.value.offset == 11


# --- floats -----------------------------------------------------------------------------------

SENTINEL = 0x7FF8000000000001


def test_floats_spec_stream() -> None:
    # docs/formats.md#example-tsm-file: 1001.0, 1002.0, 1003.0 and the annotated bit stream.
    section = bytes.fromhex("10" "408f480000000000" "e61738befddd600000000004")
    assert floats.encode([1001.0, 1002.0, 1003.0]) == section
    assert floats.decode(section, 3) == [1001.0, 1002.0, 1003.0]
    # The same stream rebuilt from the annotation's bit fields.
    sentinel_x = f64bits(1003.0) ^ SENTINEL
    stream = (
        format(f64bits(1001.0), "064b")
        + "1 1 10011 000010 11"  # 1002.0: new window L = 19, S = 2
        + "1 0 01"  # 1003.0: reuse
        + "1 1 00010 111110" + format(sentinel_x, "064b")[2:]  # sentinel: L = 2, S = 62, T = 0
    )
    assert section == b"\x10" + bits(stream)


def test_floats_single_value() -> None:
    # docs/formats.md#edge-cases: one value = its 64 bits, then the sentinel encoded as a value (x = 1.0 ^ sentinel has
    # 1 leading zero, 0 trailing: new window L = 1, S = 63).
    x = f64bits(1.0) ^ SENTINEL
    expected = b"\x10" + bits(format(f64bits(1.0), "064b") + "1 1 00001 111111" + format(x, "064b")[1:])
    assert floats.encode([1.0]) == expected
    assert floats.decode(expected, 1) == [1.0]


def test_floats_leading_zeros_modulo_32() -> None:
    # x = 0xFFFFFF has 40 leading zeros, 0 trailing: L = 40 & 0x1F = 8, S = 56 (so 32 explicit
    # zero bits are stored). Sentinel: 0x3FF0000000FFFFFF ^ 0x7FF8000000000001 =
    # 0x4008000000FFFFFE, L = 1 < 8 so a new window with T = 1, S = 62.
    a = 1.0
    b = struct.unpack(">d", struct.pack(">Q", 0x3FF0000000FFFFFF))[0]
    stream = (
        format(f64bits(a), "064b")
        + "1 1 01000 111000" + format(0xFFFFFF, "056b")
        + "1 1 00001 111110" + format(0x4008000000FFFFFE >> 1, "062b")
    )
    assert floats.encode([a, b]) == b"\x10" + bits(stream)


def test_floats_repeat_and_reuse_before_window() -> None:
    # A repeated value is a single 0 bit.
    # Sentinel after 2.0: x = 0x4000000000000000 ^ 0x7FF8000000000001 = 0x3FF8000000000001,
    # L = 2, T = 0, S = 62.
    stream = format(f64bits(2.0), "064b") + "0" + "1 1 00010 111110" + format(0x3FF8000000000001, "062b")
    assert floats.encode([2.0, 2.0]) == b"\x10" + bits(stream)
    # Decoder: "reuse" before any window means L = T = 0, 64 data bits.
    reuse = format(f64bits(2.0), "064b") + "1 0" + format(f64bits(2.0) ^ f64bits(3.0), "064b")
    reuse += "1 0" + format(f64bits(3.0) ^ SENTINEL, "064b")
    assert floats.decode(b"\x10" + bits(reuse), 2) == [2.0, 3.0]


def test_floats_s64_written_as_zero() -> None:
    # 1.0 then bits 0xBFF0000000000001: x = 0x8000000000000001, L = 0, T = 0, S = 64 written as
    # 000000. Sentinel: 0xBFF0000000000001 ^ 0x7FF8000000000001 = 0xC008000000000000, L = 0 and
    # T = 51 fit the stored window (0, 0): reuse, 64 bits.
    a = 1.0
    b = struct.unpack(">d", struct.pack(">Q", 0xBFF0000000000001))[0]
    stream = (
        format(f64bits(a), "064b")
        + "1 1 00000 000000" + format(0x8000000000000001, "064b")
        + "1 0" + format(0xC008000000000000, "064b")
    )
    encoded = floats.encode([a, b])
    assert encoded == b"\x10" + bits(stream)
    assert same_floats(floats.decode(encoded, 2), [a, b])


@pytest.mark.parametrize(
    "special", [-0.0, math.inf, -math.inf, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
)
def test_floats_specials_bit_exact(special: float) -> None:
    values = [0.0, special, special, 1.0, special]
    assert same_floats(floats.decode(floats.encode(values), 5), values)


@given(st.lists(finite_or_inf, min_size=1, max_size=300))
def test_floats_round_trip(values: list[float]) -> None:
    assert same_floats(floats.decode(floats.encode(values), len(values)), values)


@given(st.lists(st.integers(0, 50).map(lambda i: 100.0 + i / 8), min_size=1, max_size=300))
def test_floats_round_trip_close_values(values: list[float]) -> None:
    assert floats.decode(floats.encode(values), len(values)) == values


def test_floats_nan_refused() -> None:
    with pytest.raises(UnsupportedError, match="NaN"):
        floats.encode([1.0, math.nan])
    with pytest.raises(UnsupportedError, match="NaN"):
        floats.encode([struct.unpack(">d", struct.pack(">Q", SENTINEL))[0]])


def test_floats_damaged() -> None:
    good = floats.encode([1001.0, 1002.0, 1003.0])
    with pytest.raises(TruncatedError) as e:
        floats.decode(good[:-1], 3, base=20)  # the sentinel's last bits are missing
    assert e.value.offset == 20 + len(good) - 1
    with pytest.raises(TruncatedError, match="without its end marker"):
        floats.decode(good[:9], 3)
    with pytest.raises(FormatError, match="bytes after the end marker"):
        floats.decode(good + b"\x00", 3)
    with pytest.raises(FormatError, match="padding"):
        floats.decode(good[:-1] + bytes((good[-1] | 1,)), 3)
    with pytest.raises(FormatError, match="holds 3 values but the block has 4"):
        floats.decode(good, 4)
    with pytest.raises(FormatError, match="more values than the block's 2"):
        floats.decode(good, 2)
    with pytest.raises(FormatError, match="unknown encoding"):
        floats.decode(b"\x20" + good[1:], 3)
    with pytest.raises(FormatError, match="holds 0 values"):
        floats.decode(b"\x10" + SENTINEL.to_bytes(8, "big"), 1)
    # New window with L = 31 and S = 63: T would be negative.
    bad = b"\x10" + bits(format(f64bits(1.0), "064b") + "1 1 11111 111111" + "1" * 63 + "0" * 100)
    with pytest.raises(FormatError, match="exceeds 64 bits"):
        floats.decode(bad, 2)


# --- integers / unsigned ----------------------------------------------------------------------

def test_integers_spec_rle() -> None:
    # docs/formats.md#integer-encoding: 0, 7, ..., 2093 (300 values): RLE, z0 = 0, delta zigzag 14, count n - 1 = 299.
    values = list(range(0, 2094, 7))
    section = bytes.fromhex("20" "0000000000000000" "0e" "ab02")
    assert integers.encode(values) == section
    assert integers.decode(section, 300) == values


def test_integers_known_choices() -> None:
    # ZigZag: 0->0, -1->1, 1->2, -2->3; one value is packed: header + 8 bytes, no words.
    assert integers.encode([-1]) == bytes.fromhex("10" "0000000000000001")
    assert integers.encode([1]) == bytes.fromhex("10" "0000000000000002")
    # Two values are never RLE (needs n > 2): packed, z1 = zigzag(+1) = 2 in one selector-15 word.
    assert integers.encode([5, 6]) == bytes.fromhex("10" "000000000000000a" "f000000000000002")
    # zigzag(INT64_MIN) = 2^64 - 1 > 2^60 - 1: raw, zigzag deltas (not values).
    assert integers.encode([INT64_MIN]) == bytes.fromhex("00" "ffffffffffffffff")
    # INT64_MIN then INT64_MAX: delta wraps to -1 -> zigzag 1.
    assert integers.encode([INT64_MIN, INT64_MAX]) == bytes.fromhex("00" "ffffffffffffffff" "0000000000000001")
    assert integers.decode(bytes.fromhex("00" "ffffffffffffffff" "0000000000000001"), 2) == [INT64_MIN, INT64_MAX]
    # Constant run: z1 = ... = 0 -> RLE with delta 0, count n - 1.
    assert integers.encode([3, 3, 3]) == bytes.fromhex("20" "0000000000000006" "00" "02")


def test_unsigned_same_bits_as_int64() -> None:
    assert integers.encode_unsigned([UINT64_MAX]) == bytes.fromhex("10" "0000000000000001")  # bits of -1
    assert integers.decode_unsigned(bytes.fromhex("10" "0000000000000001"), 1) == [UINT64_MAX]
    values = [UINT64_MAX, 0, 1 << 63, (1 << 63) - 1]
    assert integers.decode_unsigned(integers.encode_unsigned(values), 4) == values


@pytest.mark.slow
@given(int64_lists)
def test_integers_round_trip(values: list[int]) -> None:
    assert integers.decode(integers.encode(values), len(values)) == values


@pytest.mark.slow
@given(st.lists(st.one_of(uint64s, st.integers(0, 5), st.just(UINT64_MAX)), min_size=1, max_size=300))
def test_unsigned_round_trip(values: list[int]) -> None:
    assert integers.decode_unsigned(integers.encode_unsigned(values), len(values)) == values


@pytest.mark.slow
@given(st.integers(INT64_MIN, INT64_MAX), st.integers(INT64_MIN, INT64_MAX), st.integers(3, 50))
def test_integers_rle_wraps(start: int, step: int, n: int) -> None:
    # Arithmetic sequences modulo 2^64 (RLE path), wrapped to int64.
    values = [((start + i * step + (1 << 63)) % (1 << 64)) - (1 << 63) for i in range(n)]
    assert integers.decode(integers.encode(values), n) == values


@pytest.mark.parametrize(
    "section, count, error, match",
    [
        ("", 1, TruncatedError, "empty"),
        ("30" + "00" * 8, 1, FormatError, "unknown encoding"),
        ("01" + "00" * 8, 1, FormatError, "unknown encoding"),
        ("00" + "00" * 8 + "00", 1, FormatError, "whole number"),
        ("00" + "00" * 16, 1, FormatError, "holds 2 values but the block has 1"),
        ("10" + "0000", 1, TruncatedError, "shorter"),
        ("10" + "00" * 8 + "f000000000000002", 3, FormatError, "holds 2 values but the block has 3"),
        ("10" + "00" * 8 + "f0000000", 2, FormatError, "multiple of 8"),
        ("20" + "00" * 8 + "0e" + "02", 4, FormatError, "holds 3 values but the block has 4"),
        ("20" + "00" * 8 + "0e" + "02" + "00", 3, FormatError, "after the RLE"),
        ("20" + "00" * 8 + "0e", 3, TruncatedError, "varint"),
    ],
)
def test_integers_damaged(section: str, count: int, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as e:
        integers.decode(bytes.fromhex(section), count)
    assert "values" in e.value.field


# --- booleans ---------------------------------------------------------------------------------

def test_booleans_known() -> None:
    # First value in the MSB, zero padding: 1 0 1 -> 1010 0000.
    assert booleans.encode([True, False, True]) == bytes.fromhex("1003a0")
    nine = [True] * 8 + [True]
    assert booleans.encode(nine) == bytes.fromhex("1009ff80")
    assert booleans.decode(bytes.fromhex("1009ff80"), 9) == nine
    big = [i % 3 == 0 for i in range(1000)]
    assert booleans.encode(big)[:3] == b"\x10" + varint.encode(1000)


@given(st.lists(st.booleans(), min_size=1, max_size=2000))
def test_booleans_round_trip(values: list[bool]) -> None:
    decoded = booleans.decode(booleans.encode(values), len(values))
    assert decoded == values and all(type(v) is bool for v in decoded)


@pytest.mark.parametrize(
    "section, count, error, match",
    [
        ("", 1, TruncatedError, "empty"),
        ("2003a0", 3, FormatError, "unknown encoding"),
        ("1003a0", 4, FormatError, "holds 3 values but the block has 4"),
        ("1009ff", 9, TruncatedError, "1 bit bytes for 9"),
        ("1003a000", 3, FormatError, "1 bytes after"),
        ("1003a1", 3, FormatError, "padding"),
        ("1080", 3, TruncatedError, "varint"),
    ],
)
def test_booleans_damaged(section: str, count: int, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        booleans.decode(bytes.fromhex(section), count)


# --- strings ----------------------------------------------------------------------------------

def test_strings_known() -> None:
    # Payload 00 | 01 'a' (3 bytes) as a snappy block: uvarint length 03, one literal element
    # with tag (3 - 1) << 2 = 0x08, then the bytes.
    section = bytes.fromhex("10" "03" "08" "000161")
    assert strings.encode([b"", b"a"]) == section
    assert strings.decode(section, 2) == [b"", b"a"]


@pytest.mark.slow
@given(
    st.lists(
        st.one_of(st.binary(max_size=300), st.sampled_from([b"", b"\xff\xfe", "été".encode()])),
        min_size=1, max_size=200,
    )
)
def test_strings_round_trip(values: list[bytes]) -> None:
    assert strings.decode(strings.encode(values), len(values)) == values


def test_strings_damaged() -> None:
    good = strings.encode([b"abc", b"", b"\xff" * 200])
    with pytest.raises(FormatError, match="holds 3 values but the block has 4"):
        strings.decode(good, 4)
    with pytest.raises(FormatError, match="payload bytes after"):
        strings.decode(good, 2)
    with pytest.raises(FormatError, match="unknown encoding"):
        strings.decode(b"\x00" + good[1:], 3)
    with pytest.raises(FormatError, match="corrupt snappy"):
        strings.decode(b"\x10" + bytes.fromhex("0a" "08" "000161"), 2)  # says 10 bytes, has 3
    with pytest.raises(FormatError, match="impossible"):
        strings.decode(b"\x10" + varint.encode(1 << 40) + b"\x00", 1)
    with pytest.raises(FormatError, match="cannot hold"):
        strings.decode(b"\x10" + bytes.fromhex("03" "08" "000161"), 5)
    # A value length that runs past the payload: payload 05 'a' (2 bytes).
    with pytest.raises(FormatError, match="runs past"):
        strings.decode(b"\x10" + bytes.fromhex("02" "04" "0561"), 1)
    with pytest.raises(TruncatedError):
        strings.decode(b"", 1)


@settings(max_examples=300)
@given(st.binary(max_size=80), st.integers(1, 20))
def test_value_decoders_raise_only_format_errors(data: bytes, count: int) -> None:
    for decode in (floats.decode, integers.decode, integers.decode_unsigned, booleans.decode, strings.decode):
        for section in (data, b"\x10" + data, b"\x00" + data, b"\x20" + data):
            with contextlib.suppress(FormatError):
                assert len(decode(section, count)) == count
    for section in (data, b"\x10" + data, b"\x00" + data, b"\x2a" + data):
        with contextlib.suppress(FormatError):
            timestamps.decode(section, max_count=1000)
