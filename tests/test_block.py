"""TSM block bytes (docs/formats.md#tsm-blocks, #edge-cases, #examples).

* the annotated real block of docs/formats.md#example-tsm-file, byte for byte and with its CRC;
* influxd's own encoder: ``tests/vectors/blocks.jsonl.gz`` was written by
  ``tests/vectors/gen_vectors.go`` (linked against the installed influxd 1.6.7 ``tsm1`` package);
  every block must decode to the generator's input and re-encode to the same bytes;
* hypothesis round trips of all five block types, strict decoding and encoder refusals.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import struct
import zlib
from itertools import accumulate
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import ArchiveError, FormatError, TruncatedError, UnsupportedError
from influx_archive.tsm import block
from influx_archive.tsm.codec import floats, timestamps, varint

VECTORS = Path(__file__).parent / "vectors" / "blocks.jsonl.gz"
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
T0 = 1795219200000000000


def f64bits(values: list[float]) -> list[int]:
    return list(struct.unpack(f">{len(values)}Q", struct.pack(f">{len(values)}d", *values)))


def same_values(block_type: int, a: list, b: list) -> bool:
    if block_type == block.FLOAT:
        return f64bits(a) == f64bits(b)
    return a == b and [type(x) for x in a] == [type(x) for x in b]


# --- the real block of docs/formats.md#example-tsm-file -----------------------------------------

SPEC_FILE = bytes.fromhex(
    "16d116d101f24b66dc00111a18e9e659d5f60000e00001f3c0000001"
    "10408f480000000000e61738befddd60000000000400136370752c68"
    "6f73743d6123217e2375736167650000 0118e9e659d5f6000018e9f8"
    "8a72db400000000000000000050000002c0000000000000031".replace(" ", "")
)


def test_spec_annotated_block() -> None:
    assert len(SPEC_FILE) == 109
    crc, = struct.unpack_from(">I", SPEC_FILE, 5)
    raw = SPEC_FILE[9:49]  # index: offset 5, size 44 = 4 CRC + 40 block bytes
    assert zlib.crc32(raw) == crc == 0xF24B66DC
    ts = [T0, T0 + 10 * 10**9, T0 + 20000 * 10**9]
    assert block.decode_block(raw) == (block.FLOAT, ts, [1001.0, 1002.0, 1003.0])
    assert block.encode_block(block.FLOAT, ts, [1001.0, 1002.0, 1003.0]) == raw
    assert block.decode_timestamps(raw) == ts
    assert block.block_type_of(raw) == block.FLOAT


def test_spec_rle_block_prefix() -> None:
    # docs/formats.md#timestamp-encoding: first block of cpu,host=a usage: type 00, ts_len 0c, RLE
    # section, float header and 0.0.
    ts = [T0 + i * 10 * 10**9 for i in range(1000)]
    encoded = block.encode_block(block.FLOAT, ts, [0.0] + [1.0] * 999)
    assert encoded.startswith(bytes.fromhex("000c2a18e9e659d5f6000001e80710" "0000000000000000"))


def test_constants() -> None:
    assert (block.FLOAT, block.INTEGER, block.BOOLEAN, block.STRING, block.UNSIGNED) == (0, 1, 2, 3, 4)
    assert block.BLOCK_TYPE_NAMES == {0: "float", 1: "integer", 2: "boolean", 3: "string", 4: "unsigned"}
    assert block.MAX_POINTS_PER_BLOCK == 1000


# --- influxd's Go encoder ------------------------------------------------------------------------

def _timestamps(deltas: list[int]) -> list[int]:
    # The generator stores t0 and the differences as uint64 (wrapped); sum modulo 2^64 -> int64.
    return [((t + (1 << 63)) % (1 << 64)) - (1 << 63) for t in accumulate(deltas)]


def _values(block_type: int, raw: list) -> list:
    if block_type == block.FLOAT:
        return [float(v) for v in raw]  # Go's shortest repr: "-0", "+Inf", "5e-324" parse exactly
    if block_type == block.STRING:
        return [bytes.fromhex(v) for v in raw]
    return raw


def _load_vectors() -> tuple[list[dict], list[dict]]:
    blocks, sections = [], []
    with gzip.open(VECTORS, "rt") as f:
        for line in f:
            d = json.loads(line)
            (blocks if "block" in d else sections).append(d)
    return blocks, sections


GO_BLOCKS, GO_TS_SECTIONS = _load_vectors()


def test_go_vectors_cover_the_encoder_choices() -> None:
    # Guard against a regenerated file that lost coverage: every type, every timestamp encoding,
    # 1- and 2-value blocks, and blocks above 1000 values.
    types = {d["type"] for d in GO_BLOCKS}
    assert types == {0, 1, 2, 3, 4}
    ts_headers = set()
    sizes = set()
    for d in GO_BLOCKS:
        raw = bytes.fromhex(d["block"])
        _, pos = varint.decode(raw, 1, what="ts_len")
        ts_headers.add(raw[pos] >> 4)
        sizes.add(len(d["ts"]))
    assert ts_headers == {0, 1, 2}
    assert {1, 2}.issubset(sizes) and max(sizes) > 1000
    assert len(GO_BLOCKS) >= 600 and len(GO_TS_SECTIONS) >= 40


@pytest.mark.parametrize("block_type", [0, 1, 2, 3, 4], ids=block.BLOCK_TYPE_NAMES.__getitem__)
def test_go_vectors(block_type: int) -> None:
    checked = 0
    for d in GO_BLOCKS:
        if d["type"] != block_type:
            continue
        raw = bytes.fromhex(d["block"])
        ts = _timestamps(d["ts"])
        values = _values(block_type, d["v"])
        got_type, got_ts, got_values = block.decode_block(raw)
        assert got_type == block_type, d["kind"]
        assert got_ts == ts, d["kind"]
        assert same_values(block_type, got_values, values), d["kind"]
        assert block.decode_timestamps(raw) == ts
        assert block.check_block_order(got_ts) is None
        # Byte identity with influxd (string payloads: cramjam's snappy matched Go's on all of them).
        assert block.encode_block(block_type, ts, values) == raw, d["kind"]
        checked += 1
    assert checked >= 120


def test_go_timestamp_sections_unsorted() -> None:
    # Non-increasing inputs through influxd's bare timestamp encoder (wrap-around deltas).
    for d in GO_TS_SECTIONS:
        ts = _timestamps(d["ts"])
        section = bytes.fromhex(d["section"])
        assert timestamps.encode(ts) == section, d["kind"]
        assert timestamps.decode(section, max_count=len(ts)) == ts, d["kind"]


# --- round trips ---------------------------------------------------------------------------------

int64s = st.integers(INT64_MIN, INT64_MAX)
timestamp_lists = st.one_of(
    st.sets(int64s, min_size=1, max_size=300).map(sorted),
    st.sets(st.integers(-(10**6), 10**6), min_size=1, max_size=300).map(lambda s: sorted(t * 10**9 for t in s)),
    st.tuples(int64s, st.integers(1, 1 << 62), st.integers(1, 50)).map(
        lambda a: [a[0] + i * a[1] for i in range(a[2]) if a[0] + i * a[1] <= INT64_MAX]
    ),
)
VALUE_STRATEGIES = {
    block.FLOAT: st.floats(allow_nan=False, allow_infinity=True, allow_subnormal=True),
    block.INTEGER: st.one_of(int64s, st.integers(-5, 5)),
    block.BOOLEAN: st.booleans(),
    block.STRING: st.one_of(st.binary(max_size=40), st.just(b""), st.just(b"\xff\xfe")),
    block.UNSIGNED: st.one_of(st.integers(0, UINT64_MAX), st.just(UINT64_MAX), st.integers(0, 5)),
}


@st.composite
def blocks(draw: st.DrawFn) -> tuple[int, list[int], list]:
    block_type = draw(st.sampled_from(sorted(VALUE_STRATEGIES)))
    ts = draw(timestamp_lists)
    values = draw(st.lists(VALUE_STRATEGIES[block_type], min_size=len(ts), max_size=len(ts)))
    return block_type, ts, values


@pytest.mark.slow
@settings(max_examples=300)
@given(blocks())
def test_block_round_trip(case: tuple[int, list[int], list]) -> None:
    block_type, ts, values = case
    raw = block.encode_block(block_type, ts, values)
    assert raw[0] == block_type
    ts_len, pos = varint.decode(raw, 1, what="ts_len")
    assert timestamps.decode(raw[pos:pos + ts_len], max_count=len(ts)) == ts
    got_type, got_ts, got_values = block.decode_block(raw)
    assert (got_type, got_ts) == (block_type, ts)
    assert same_values(block_type, got_values, values)
    assert block.decode_timestamps(raw) == ts
    view_type, view_ts, view_values = block.decode_block(memoryview(raw))
    assert (view_type, view_ts) == (block_type, ts) and same_values(block_type, view_values, values)


@pytest.mark.parametrize("block_type, value", [(0, 1.5), (1, -7), (2, True), (3, b"x"), (4, UINT64_MAX)])
def test_one_and_two_values(block_type: int, value: object) -> None:
    one = block.encode_block(block_type, [-5], [value])
    assert one[1:3] == bytes((9, 0x1C))  # docs/formats.md#edge-cases: single timestamp packed with D = 12
    assert block.decode_block(one) == (block_type, [-5], [value])
    two = block.encode_block(block_type, [INT64_MIN + 2, INT64_MAX - 2], [value, value])
    assert two[2] >> 4 == 2  # docs/formats.md#edge-cases: two timestamps are always RLE
    assert block.decode_block(two) == (block_type, [INT64_MIN + 2, INT64_MAX - 2], [value, value])


def test_more_than_1000_values() -> None:
    ts = list(range(0, 5000 * 7, 7))
    raw = block.encode_block(block.INTEGER, ts, list(range(5000)))
    assert block.decode_block(raw) == (block.INTEGER, ts, list(range(5000)))


# --- strict decoding -----------------------------------------------------------------------------

def _assemble(block_type: int, ts_section: bytes, value_section: bytes) -> bytes:
    return bytes((block_type,)) + varint.encode(len(ts_section)) + ts_section + value_section


GOOD = block.encode_block(block.FLOAT, [T0, T0 + 10 * 10**9, T0 + 20000 * 10**9], [1001.0, 1002.0, 1003.0])
TS3 = timestamps.encode([1, 2, 3])


@pytest.mark.parametrize(
    "data, error, offset, match",
    [
        (b"", TruncatedError, 0, "too short"),
        (b"\x00", TruncatedError, 0, "too short"),
        (b"\x05" + GOOD[1:], FormatError, 0, "unknown block type 0x05"),
        (b"\x08" + GOOD[1:], FormatError, 0, "unknown block type 0x08"),
        (b"\x00\x80", TruncatedError, 1, "varint"),
        (b"\x00\x30" + GOOD[2:], TruncatedError, 1, "runs past the end"),
        (GOOD[:-1], TruncatedError, len(GOOD) - 1, "float value section"),
        (GOOD + b"\x00", FormatError, len(GOOD), "after the end marker"),
        (
            _assemble(1, TS3, b"\x10" + bytes(8) + bytes.fromhex("f000000000000002")),
            FormatError, 2 + len(TS3), "holds 2 values but the block has 3",
        ),
        (_assemble(2, TS3, bytes.fromhex("1004a0")), FormatError, 3 + len(TS3), "holds 4 values but the block has 3"),
        (_assemble(3, TS3, b"\x10" + bytes.fromhex("03" "08" "000161")), FormatError, 2 + len(TS3), "holds 2 values"),
        (_assemble(4, TS3, bytes.fromhex("30") + bytes(8)), FormatError, 2 + len(TS3), "unknown encoding"),
        (_assemble(0, TS3 + b"\x00", floats.encode([1.0, 2.0, 3.0])), FormatError, 2 + len(TS3), "after the RLE"),
        (_assemble(0, b"\x00" + bytes(7), floats.encode([1.0])), TruncatedError, 2, "timestamp section"),
    ],
)
def test_decode_damaged(data: bytes, error: type, offset: int, match: str) -> None:
    with pytest.raises(error, match=match) as e:
        block.decode_block(data)
    assert e.value.offset == offset
    assert str(e.value).endswith(f"offset {offset}, field {e.value.field}]")


def test_decode_count_cap_before_allocating() -> None:
    rle = bytes.fromhex("20" + "00" * 8 + "01") + varint.encode(1 << 62)
    hostile = _assemble(block.BOOLEAN, rle, b"\x10" + varint.encode(1 << 62))
    with pytest.raises(FormatError, match="exceed the limit") as e:
        block.decode_block(hostile)
    assert e.value.offset == 2
    with pytest.raises(FormatError, match="exceed the limit of 2"):
        block.decode_block(GOOD, max_values=2)
    with pytest.raises(FormatError, match="exceed the limit of 2"):
        block.decode_timestamps(GOOD, max_values=2)
    assert len(block.decode_block(GOOD, max_values=3)[1]) == 3


def test_decode_does_not_reject_unordered_timestamps() -> None:
    # Value section for [0, 0, 0, 0]: RLE (n > 2, equal deltas).
    raw = _assemble(block.INTEGER, timestamps.encode([5, 3, 3, 9]), bytes.fromhex("20" + "00" * 8 + "00" + "03"))
    assert block.decode_block(raw) == (block.INTEGER, [5, 3, 3, 9], [0, 0, 0, 0])


def test_check_block_order() -> None:
    assert block.check_block_order([1, 2, 3]) is None
    assert block.check_block_order([7]) is None
    assert block.check_block_order([]) is None
    assert block.check_block_order([1, 2, 2, 3]) == 2
    assert block.check_block_order([5, 4]) == 1
    assert block.check_block_order([INT64_MIN, INT64_MAX, 0]) == 2


def test_block_type_of() -> None:
    assert block.block_type_of(b"\x04") == block.UNSIGNED
    with pytest.raises(TruncatedError):
        block.block_type_of(b"")
    with pytest.raises(FormatError, match="0x07"):
        block.block_type_of(b"\x07\x00")


@settings(max_examples=400)
@given(st.binary(max_size=120), st.integers(0, 4))
def test_decode_garbage_raises_only_format_errors(data: bytes, block_type: int) -> None:
    for candidate in (data, bytes((block_type,)) + data, bytes((block_type,)) + varint.encode(len(data) // 2) + data):
        with contextlib.suppress(FormatError):
            block.decode_block(candidate, max_values=100_000)


@pytest.mark.slow
@settings(max_examples=300)
@given(blocks(), st.data())
def test_decode_mutated_blocks_raise_only_format_errors(case: tuple[int, list[int], list], data: st.DataObject) -> None:
    raw = bytearray(block.encode_block(*case))
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        with contextlib.suppress(FormatError):
            block.decode_block(candidate, max_values=100_000)


# --- encoder refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "block_type, ts, values, match",
    [
        (0, [], [], "at least one"),
        (0, [1, 2], [1.0], "2 timestamps but 1 values"),
        (0, [1, 2], [1.0, math.nan], "NaN"),
        (0, [2, 1], [1.0, 2.0], "strictly increasing: index 1"),
        (0, [1, 1], [1.0, 2.0], "strictly increasing"),
        (0, [1, 2], [1, 2], "must all be float"),
        (1, [1, 2], [True, 2], "must all be int"),
        (1, [1], [1 << 63], "out of range"),
        (4, [1], [-1], "out of range"),
        (4, [1], [1 << 64], "out of range"),
        (2, [1], [1], "must all be bool"),
        (3, [1], ["text"], "must all be bytes"),
        (5, [1], [1], "unknown block type"),
        (1, [1 << 63], [1], "int64"),
        (1, [1.0], [1], "int64"),
    ],
)
def test_encode_refuses(block_type: int, ts: list, values: list, match: str) -> None:
    with pytest.raises(UnsupportedError, match=match) as e:
        block.encode_block(block_type, ts, values)
    assert isinstance(e.value, ArchiveError)
