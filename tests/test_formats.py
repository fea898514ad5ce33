"""Every Construct definition of the on-disk formats (tsm/format/*, meta/format.py,
tsm/tsi1/format.py) against fixed bytes, in construct's own round-trip idiom: a table of
``(definition, bytes, object)`` cases where parsing the bytes gives the object, building the
object gives the same bytes and ``sizeof`` is the length wherever the layout has a fixed size.

Then the fast paths: the ``struct`` formats, named offsets and hand-written decoders the hot
paths use instead of Construct, held equal to the Construct parse on hypothesis values; and the
layout constants of the compiled core (tsm/_speedups.c) held equal to the Python definitions.
The layouts themselves are described in docs/formats.md.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any

import pytest
from construct import Container, GreedyRange, ListContainer, SizeofError
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.meta import files as metafiles
from influx_archive.meta import format as mfmt
from influx_archive.meta.model import Data, encode_data
from influx_archive.tsm import block, tombstone, wal
from influx_archive.tsm.codec import booleans, floats, integers, simple8b, strings
from influx_archive.tsm.compiled import core as compiled
from influx_archive.tsm.format import tombstone as tfmt
from influx_archive.tsm.format import tsmfile as fmt
from influx_archive.tsm.format import wal as wfmt
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.tsi1 import format as ifmt
from influx_archive.tsm.tsi1 import index as tsi_index
from influx_archive.tsm.tsi1 import seriesfile, serieskey
from influx_archive.tsm.writer import TSMWriter

INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
UINT64 = st.integers(0, (1 << 64) - 1)
UINT32 = st.integers(0, (1 << 32) - 1)
KEY = st.binary(min_size=1, max_size=40)


def _c(**kw: Any) -> Container:
    return Container(**kw)


def _u64(v: int) -> bytes:
    return v.to_bytes(8, "big")


def _i64(v: int) -> bytes:
    return v.to_bytes(8, "big", signed=True)


SERIES_KEY_BODY = b"\x00\x03cpu" + b"\x01" + b"\x00\x04host" + b"\x00\x02h1"
LOG_BODY = b"\x00\x07\x03cpu\x04host\x02h1"

#: (definition, bytes, object); object None: compared through a second parse (Switch, Enum)
CASES: list[tuple[str, Any, bytes, Any]] = [
    # ---- TSM file (tsm/format/tsmfile.py)
    ("tsm Header", fmt.Header, b"\x16\xd1\x16\xd1\x01", _c(magic=fmt.MAGIC, version=1)),
    ("tsm Footer", fmt.Footer, _u64(0x1234), _c(index_offset=0x1234)),
    ("tsm BlockFrame", fmt.BlockFrame, b"\xde\xad\xbe\xef\x00\x01\x02", _c(crc=0xDEADBEEF, block=b"\x00\x01\x02")),
    (
        "tsm IndexEntry",
        fmt.IndexEntry,
        _i64(-5) + _i64(7) + _u64(5) + (40).to_bytes(4, "big"),
        _c(min_time=-5, max_time=7, offset=5, size=40),
    ),
    (
        "tsm IndexRecord",
        fmt.IndexRecord,
        b"\x00\x03cpu" + b"\x01" + b"\x00\x01" + _i64(1) + _i64(2) + _u64(5) + (9).to_bytes(4, "big"),
        _c(
            key_len=3,
            key=b"cpu",
            block_type=1,
            count=1,
            entries=ListContainer([_c(min_time=1, max_time=2, offset=5, size=9)]),
        ),
    ),
    # ---- WAL segments (tsm/format/wal.py)
    ("wal EntryHeader", wfmt.EntryHeader, b"\x01\x00\x00\x01\x00", _c(type=1, length=256)),
    ("wal WalValueType", wfmt.WalValueType, b"\x04", "string"),
    ("wal FloatValue", wfmt.FloatValue, _i64(-1) + struct.pack(">d", 1.5), _c(time=-1, bits=0x3FF8000000000000)),
    ("wal IntegerValue", wfmt.IntegerValue, _i64(3) + _i64(-4), _c(time=3, value=-4)),
    ("wal UnsignedValue", wfmt.UnsignedValue, _i64(3) + _u64(1 << 63), _c(time=3, value=1 << 63)),
    ("wal BooleanValue", wfmt.BooleanValue, _i64(9) + b"\x01", _c(time=9, value=1)),
    ("wal StringValue", wfmt.StringValue, _i64(9) + b"\x00\x00\x00\x02hi", _c(time=9, value=b"hi")),
    ("wal WriteGroup", wfmt.WriteGroup, b"\x02\x00\x01k\x00\x00\x00\x01" + _i64(1) + _i64(2), None),
    (
        "wal WritePayload",
        wfmt.WritePayload,
        b"\x02\x00\x01k\x00\x00\x00\x01" + _i64(1) + _i64(2) + b"\x03\x00\x01m\x00\x00\x00\x01" + _i64(5) + b"\x00",
        None,
    ),
    (
        "wal DeleteRangePayload",
        wfmt.DeleteRangePayload,
        _i64(-1) + _i64(1) + b"\x00\x00\x00\x01a\x00\x00\x00\x02bc",
        _c(min=-1, max=1, keys=ListContainer([b"a", b"bc"])),
    ),
    # ---- tombstones (tsm/format/tombstone.py)
    ("tombstone Header", tfmt.Header, b"\x00\x00\x15\x04", tfmt.V4_HEADER),
    (
        "tombstone Record",
        tfmt.Record,
        b"\x00\x00\x00\x01k" + _i64(-3) + _i64(3),
        _c(key_len=1, key=b"k", min=-3, max=3),
    ),
    (
        "tombstone GoGzipHeader",
        tfmt.GoGzipHeader,
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff",
        _c(magic=b"\x1f\x8b", method=b"\x08", flags=b"\x00", mtime=b"\x00\x00\x00\x00", xfl=b"\x00", os=b"\xff"),
    ),
    ("tombstone GzipTrailer", tfmt.GzipTrailer, b"\x01\x02\x03\x04\x05\x00\x00\x00", _c(crc=0x04030201, size=5)),
    # ---- metastore (meta/format.py)
    (
        "meta MetaNNHead",
        mfmt.MetaNNHead,
        _u64(mfmt.META_NN_MAGIC) + _u64(3),
        _c(magic=mfmt.META_NN_MAGIC, blob_length=3),
    ),
    ("meta MetaNNNodeLength", mfmt.MetaNNNodeLength, _u64(5), 5),
    (
        "meta MetaNNFrame",
        mfmt.MetaNNFrame,
        _u64(mfmt.META_NN_MAGIC) + _u64(2) + b"\x0a\x00" + _u64(5) + b"null\n",
        _c(magic=mfmt.META_NN_MAGIC, blob=b"\x0a\x00", node=b"null\n"),
    ),
    # ---- series file and tsi1 index (tsm/tsi1/format.py)
    ("tsi1 SegmentHeader", ifmt.SegmentHeader, b"SSEG\x01", _c(magic=b"SSEG", version=1)),
    ("tsi1 EntryHeader", ifmt.EntryHeader, b"\x01" + _u64(9), _c(flag=1, id=9)),
    ("tsi1 Tag", ifmt.Tag, b"\x00\x04host\x00\x02h1", _c(key=b"host", value=b"h1")),
    (
        "tsi1 SeriesKeyBody",
        ifmt.SeriesKeyBody,
        SERIES_KEY_BODY,
        _c(name=b"cpu", tag_n=1, tags=ListContainer([_c(key=b"host", value=b"h1")])),
    ),
    (
        "tsi1 SeriesKey",
        ifmt.SeriesKey,
        bytes([len(SERIES_KEY_BODY)]) + SERIES_KEY_BODY,
        _c(name=b"cpu", tag_n=1, tags=ListContainer([_c(key=b"host", value=b"h1")])),
    ),
    ("tsi1 MapPosition", ifmt.MapPosition, _i64(69) + _i64(32), _c(offset=69, size=32)),
    (
        "tsi1 SeriesIndexHeader",
        ifmt.SeriesIndexHeader,
        b"SIDX\x01" + _u64(8) + _i64(100) + _u64(2) + _i64(4) + _i64(69) + _i64(64) + _i64(133) + _i64(64),
        _c(
            magic=b"SIDX",
            version=1,
            max_series_id=8,
            max_offset=100,
            count=2,
            capacity=4,
            key_id_map=_c(offset=69, size=64),
            id_offset_map=_c(offset=133, size=64),
        ),
    ),
    ("tsi1 LogEntryBody", ifmt.LogEntryBody, LOG_BODY, _c(flag=0, series_id=7, name=b"cpu", key=b"host", value=b"h1")),
    (
        "tsi1 LogEntry",
        ifmt.LogEntry,
        LOG_BODY + zlib.crc32(LOG_BODY).to_bytes(4, "big"),
        _c(body=_c(flag=0, series_id=7, name=b"cpu", key=b"host", value=b"h1"), checksum=zlib.crc32(LOG_BODY)),
    ),
    ("tsi1 Section", ifmt.Section, _i64(4) + _i64(10), _c(offset=4, size=10)),
    (
        "tsi1 IndexFileTrailer",
        ifmt.IndexFileTrailer,
        b"".join(_i64(i) for i in range(10)) + b"\x00\x01",
        _c(
            measurement_block=_c(offset=0, size=1),
            series_id_set=_c(offset=2, size=3),
            tombstone_series_id_set=_c(offset=4, size=5),
            series_sketch=_c(offset=6, size=7),
            tombstone_series_sketch=_c(offset=8, size=9),
            version=1,
        ),
    ),
    (
        "tsi1 MeasurementBlockTrailer",
        ifmt.MeasurementBlockTrailer,
        b"".join(_i64(i) for i in range(8)) + b"\x00\x01",
        _c(
            data=_c(offset=0, size=1),
            hash_index=_c(offset=2, size=3),
            sketch=_c(offset=4, size=5),
            tombstone_sketch=_c(offset=6, size=7),
            version=1,
        ),
    ),
    (
        "tsi1 MeasurementElem",
        ifmt.MeasurementElem,
        b"\x01" + _u64(100) + _u64(50) + b"\x03cpu" + b"\x02" + b"\x01\x05",
        _c(flag=1, tag_block=_c(offset=100, size=50), name=b"cpu", series_n=2, series_data=b"\x05"),
    ),
    (
        "tsi1 TagBlockTrailer",
        ifmt.TagBlockTrailer,
        b"".join(_i64(i) for i in range(7)) + b"\x00\x01",
        _c(
            value_data=_c(offset=0, size=1),
            key_data=_c(offset=2, size=3),
            hash_index=_c(offset=4, size=5),
            size=6,
            version=1,
        ),
    ),
    (
        "tsi1 TagKeyElem",
        ifmt.TagKeyElem,
        b"\x00" + _u64(1) + _u64(2) + _u64(3) + _u64(4) + b"\x04host",
        _c(flag=0, data=_c(offset=1, size=2), hash_index=_c(offset=3, size=4), key=b"host"),
    ),
    (
        "tsi1 TagValueElem",
        ifmt.TagValueElem,
        b"\x01\x02h1\x03\x02\xaa\xbb",
        _c(flag=1, value=b"h1", series_n=3, series_data=b"\xaa\xbb"),
    ),
]


def _strip(obj: Any) -> Any:
    """A parse result without construct's private ``_io`` entries, for comparisons."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


@pytest.mark.parametrize("name,con,raw,obj", CASES, ids=[c[0] for c in CASES])
def test_parse_build_sizeof(name: str, con: Any, raw: bytes, obj: Any) -> None:
    parsed = con.parse(raw)
    if obj is not None:
        assert _strip(parsed) == _strip(obj)
    assert con.build(parsed if obj is None else obj) == raw
    if obj is None:
        assert _strip(con.parse(con.build(parsed))) == _strip(parsed)
    try:
        size = con.sizeof()
    except SizeofError:
        return  # variable size
    assert size == len(raw)


def _definitions(module: Any) -> set[str]:
    import construct

    return {
        n for n, v in vars(module).items()
        if isinstance(v, construct.Construct) and not n.startswith("_") and v is not getattr(construct, n, None)
    }


def test_every_definition_has_a_case() -> None:
    """A definition added to a format module needs a row in CASES."""
    covered = {id(c[1]) for c in CASES}
    for module in (fmt, wfmt, tfmt, mfmt, ifmt):
        missing = sorted(n for n in _definitions(module) if id(getattr(module, n)) not in covered)
        assert not missing, f"{module.__name__}: no (definition, bytes, object) case for {missing}"


# ---- sizes the fast paths use ---------------------------------------------------------------


def test_fixed_sizes_match_the_definitions() -> None:
    assert fmt.Header.sizeof() == fmt.HEADER_SIZE
    assert fmt.Footer.sizeof() == fmt.FOOTER_SIZE
    assert fmt.ENTRY_SIZE == fmt.IndexEntry.sizeof() == fmt.ENTRY.size
    assert fmt.CRC_SIZE == fmt.CRC.size == fmt.BLOCK_OFFSET
    assert fmt.KEY_LEN.size == fmt.KEY_OFFSET
    assert fmt.KEY_LEN.size + 1 + fmt.COUNT.size == fmt.RECORD_HEAD_SIZE
    assert fmt.Header.build({"version": fmt.VERSION})[fmt.VERSION_OFFSET] == fmt.VERSION
    assert wfmt.EntryHeader.sizeof() == wfmt.ENTRY_HEADER_SIZE
    assert wfmt.EntryHeader.build({"type": 1, "length": 0xA0B0C0D})[
        wfmt.ENTRY_LENGTH_OFFSET :
    ] == wfmt.ENTRY_LENGTH.pack(0xA0B0C0D)
    assert tfmt.HEADER_SIZE == tfmt.Header.sizeof() == tfmt.VERSION_WORD.size
    assert tfmt.GoGzipHeader.sizeof() == tfmt.GZIP_FIXED_HEADER_SIZE
    assert tfmt.GzipTrailer.sizeof() == tfmt.GZIP_TRAILER_SIZE
    assert len(tfmt.Record.build({"key_len": 0, "key": b"", "min": 0, "max": 0})) == tfmt.MIN_RECORD_SIZE
    assert mfmt.MetaNNHead.sizeof() == mfmt.META_NN_BLOB_OFFSET
    assert mfmt.MetaNNHead.sizeof() + mfmt.MetaNNNodeLength.sizeof() == mfmt.META_NN_OVERHEAD
    assert ifmt.SegmentHeader.sizeof() == ifmt.SEGMENT_HEADER_SIZE
    assert ifmt.ENTRY_HEADER_SIZE == ifmt.EntryHeader.sizeof() == ifmt.ENTRY_HEADER.size
    assert ifmt.SeriesIndexHeader.sizeof() == ifmt.INDEX_HEADER_SIZE
    assert ifmt.INDEX_ELEM.size == ifmt.INDEX_ELEM_SIZE
    assert ifmt.IndexFileTrailer.sizeof() == ifmt.INDEX_FILE_TRAILER_SIZE
    assert ifmt.MeasurementBlockTrailer.sizeof() == ifmt.MEASUREMENT_BLOCK_TRAILER_SIZE
    assert ifmt.TagBlockTrailer.sizeof() == ifmt.TAG_BLOCK_TRAILER_SIZE


# ---- TSM fast paths -----------------------------------------------------------------------------

ENTRY_VALUES = st.tuples(INT64, INT64, UINT64, UINT32)


@given(ENTRY_VALUES)
def test_tsm_entry_struct_is_the_definition(e: tuple[int, int, int, int]) -> None:
    raw = fmt.ENTRY.pack(*e)
    parsed = fmt.IndexEntry.parse(raw)
    assert (parsed.min_time, parsed.max_time, parsed.offset, parsed.size) == e
    assert fmt.IndexEntry.build(dict(zip(("min_time", "max_time", "offset", "size"), e))) == raw


@given(st.binary(min_size=1, max_size=300), st.binary(max_size=4))
def test_frame_crc_check_is_the_definition(blk: bytes, pad: bytes) -> None:
    frame = fmt.frame(blk)
    parsed = fmt.BlockFrame.parse(frame)
    assert parsed.block == blk and parsed.crc == zlib.crc32(blk)
    assert fmt.BlockFrame.build({"crc": zlib.crc32(blk), "block": blk}) == frame
    # in place, at an offset inside a larger buffer, and the stored CRC against zlib's
    buf = bytearray(pad + frame + pad)
    assert fmt.frame_crcs(buf, len(pad), len(frame)) == (zlib.crc32(blk), zlib.crc32(blk))
    assert fmt.frame_crc_ok(memoryview(buf), len(pad), len(frame))
    buf[len(pad)] ^= 0x01
    stored, computed = fmt.frame_crcs(bytes(buf), len(pad), len(frame))
    assert computed == zlib.crc32(blk) and stored != computed
    assert not fmt.frame_crc_ok(buf, len(pad), len(frame))


def test_crc_primitive_is_ieee() -> None:
    for data in (b"", b"a", bytes(range(256)) * 40):
        assert fmt.crc32(data) == zlib.crc32(data)
        assert fmt.crc32(memoryview(data)) == zlib.crc32(data)


KEYS = st.lists(KEY, min_size=1, max_size=6, unique=True).map(sorted)


@settings(max_examples=40, deadline=None)
@given(KEYS, st.data())
def test_tsm_index_fast_paths_are_the_definition(keys: list[bytes], data: st.DataObject) -> None:
    """The writer builds index records with struct and named offsets, the reader scans them
    (compiled core or Python) the same way: both agree with :data:`IndexRecord`."""
    blk = block.encode_block(block.INTEGER, [1, 2], [3, 4])
    out = io.BytesIO()
    w = TSMWriter(out)
    expected = []
    for key in keys:
        n = data.draw(st.integers(1, 3))
        entries = []
        for j in range(n):
            offset = w.bytes_written
            w.write_block(key, block.INTEGER, 10 * j, 10 * j + 5, blk)
            entries.append(
                {"min_time": 10 * j, "max_time": 10 * j + 5, "offset": offset, "size": fmt.CRC_SIZE + len(blk)}
            )
        expected.append({"key_len": len(key), "key": key, "block_type": block.INTEGER, "count": n, "entries": entries})
    w.close()
    raw = out.getvalue()
    index_offset = fmt.Footer.parse(raw[-fmt.FOOTER_SIZE :]).index_offset
    index = raw[index_offset : -fmt.FOOTER_SIZE]
    assert GreedyRange(fmt.IndexRecord).build(expected) == index
    records = GreedyRange(fmt.IndexRecord).parse(index)
    reader = TSMReader(io.BytesIO(raw))
    got = [(k, t, [(e.min_time, e.max_time, e.offset, e.size) for e in es]) for k, t, es in reader.iter_index()]
    want = [(r.key, r.block_type, [(e.min_time, e.max_time, e.offset, e.size) for e in r.entries]) for r in records]
    assert got == want
    reader._keys, reader._positions = [], type(reader._positions)("q")
    reader.overlapping_keys = []
    reader._scan_index_py()  # the pure-Python scan too, wherever the compiled one ran
    got_py = [(k, t, [(e.min_time, e.max_time, e.offset, e.size) for e in es]) for k, t, es in reader.iter_index()]
    assert got_py == want
    assert sorted(reader.frames()) == sorted(
        (e.offset, e.size, r.key, r.block_type) for r in records for e in r.entries
    )


# ---- WAL fast paths -----------------------------------------------------------------------------

WAL_VALUES = {
    wfmt.WAL_FLOAT: st.floats(allow_nan=False),
    wfmt.WAL_INTEGER: INT64,
    wfmt.WAL_UNSIGNED: UINT64,
    wfmt.WAL_BOOLEAN: st.booleans(),
    wfmt.WAL_STRING: st.binary(max_size=20),
}


@st.composite
def write_groups(draw: st.DrawFn) -> list[tuple[bytes, int, list[tuple[int, Any]]]]:
    keys = draw(st.lists(KEY, min_size=1, max_size=4, unique=True))
    out = []
    for key in keys:
        typ = draw(st.sampled_from(sorted(WAL_VALUES)))
        vals = draw(st.lists(st.tuples(INT64, WAL_VALUES[typ]), min_size=1, max_size=5))
        out.append((key, typ, vals))
    return out


def _construct_value(typ: int, v: Any) -> Any:
    if typ == wfmt.WAL_FLOAT:
        return struct.unpack(">d", struct.pack(">Q", v.bits))[0]
    if typ == wfmt.WAL_BOOLEAN:
        return v.value == 1
    return v.value


@settings(max_examples=60, deadline=None)
@given(write_groups())
def test_wal_write_payload_fast_path_is_the_definition(groups: list[tuple[bytes, int, list[tuple[int, Any]]]]) -> None:
    payload = b"".join(wal._encode_group(key, typ, vals) for key, typ, vals in groups)
    parsed = wfmt.WritePayload.parse(payload)
    assert wfmt.WritePayload.build(parsed) == payload
    fast = wal._decode_write(payload)
    assert list(fast) == [g.key for g in parsed]
    for g in parsed:
        typ, values = fast[g.key]
        assert wfmt.WalValueType.build(g.type) == bytes([typ])
        assert [(t, v) for t, v in values] == [(v.time, _construct_value(typ, v)) for v in g["values"]]


@given(INT64, INT64, st.lists(st.binary(max_size=30), max_size=5))
def test_wal_delete_range_fast_path_is_the_definition(mn: int, mx: int, keys: list[bytes]) -> None:
    payload = wfmt.DeleteRangePayload.build({"min": mn, "max": mx, "keys": keys})
    assert wal._decode_delete_range(payload) == (mn, mx, tuple(keys))
    assert wfmt.DELETE_RANGE_HEAD.pack(mn, mx) + b"".join(
        wfmt.DELETE_RANGE_KEYLEN.pack(len(k)) + k for k in keys
    ) == payload


@given(st.sampled_from(wfmt.ENTRY_TYPES), UINT32)
def test_wal_entry_header_fast_path_is_the_definition(typ: int, length: int) -> None:
    raw = wfmt.EntryHeader.build({"type": typ, "length": length})
    assert wfmt.ENTRY_LENGTH.unpack_from(raw, wfmt.ENTRY_LENGTH_OFFSET) == (length,)
    assert raw[0] == typ


# ---- tombstone fast paths -----------------------------------------------------------------------

TOMBSTONES = st.lists(
    st.tuples(st.binary(max_size=30), INT64, INT64).map(lambda t: (t[0], min(t[1:]), max(t[1:]))),
    min_size=1,
    max_size=6,
)


def _record(key: bytes, mn: int, mx: int) -> bytes:
    return bytes(tfmt.Record.build({"key_len": len(key), "key": key, "min": mn, "max": mx}))


@settings(max_examples=50, deadline=None)
@given(TOMBSTONES)
def test_tombstone_v2_records_fast_path_is_the_definition(records: list[tuple[bytes, int, int]]) -> None:
    body = b"".join(_record(*r) for r in records)
    assert [(r.key, r.min, r.max) for r in GreedyRange(tfmt.Record).parse(body)] == records
    parsed = tombstone.parse_tombstones(tfmt.Header.build(tfmt.V2_HEADER) + body)
    assert parsed.version == 2
    assert [(bytes(t.key), t.min, t.max) for t in parsed.entries] == records


@settings(max_examples=50, deadline=None)
@given(TOMBSTONES)
def test_tombstone_v4_member_is_the_definition(records: list[tuple[bytes, int, int]]) -> None:
    member = tombstone.encode_member([tombstone.Tombstone(k, a, b) for k, a, b in records])
    head = tfmt.GoGzipHeader.build({})
    assert member.startswith(head)
    content = zlib.decompress(member[len(head) :], -15)
    trailer = tfmt.GzipTrailer.parse(member[-tfmt.GZIP_TRAILER_SIZE :])
    assert (trailer.crc, trailer.size) == tfmt.GZIP_TRAILER.unpack(member[-tfmt.GZIP_TRAILER_SIZE :])
    assert trailer.crc == zlib.crc32(content) and trailer.size == len(content)
    assert content == b"".join(_record(*r) for r in records)
    parsed = tombstone.parse_tombstones(tfmt.Header.build(tfmt.V4_HEADER) + member)
    assert [(bytes(t.key), t.min, t.max) for t in parsed.entries] == records


@given(st.sampled_from((tfmt.V2_HEADER, tfmt.V3_HEADER, tfmt.V4_HEADER)))
def test_tombstone_version_word_is_the_definition(word: int) -> None:
    assert tfmt.VERSION_WORD.pack(word) == tfmt.Header.build(word)


# ---- metastore fast paths -----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=20))
def test_meta_nn_fast_path_is_the_definition(node: bytes) -> None:
    blob = encode_data(Data())
    raw = metafiles.build_meta_nn(blob, node)
    assert mfmt.MetaNNFrame.build({"magic": mfmt.META_NN_MAGIC, "blob": blob, "node": node}) == raw
    head = mfmt.MetaNNHead.parse(raw)
    assert head.blob_length == len(blob) and len(raw) == mfmt.META_NN_OVERHEAD + len(blob) + len(node)
    got = metafiles.parse_meta_nn(raw)
    frame = mfmt.MetaNNFrame.parse(raw)
    assert (got.blob, got.node_json) == (frame.blob, frame.node)


# ---- series file and tsi1 fast paths ------------------------------------------------------------

NAME = st.binary(min_size=1, max_size=20)
TAGS = st.lists(st.tuples(st.binary(min_size=1, max_size=10), st.binary(max_size=10)), max_size=4)


@given(NAME, TAGS)
def test_series_key_fast_path_is_the_definition(name: bytes, tags: list[tuple[bytes, bytes]]) -> None:
    raw = serieskey.encode(name, tags)
    obj = {"name": name, "tag_n": len(tags), "tags": [{"key": k, "value": v} for k, v in tags]}
    assert ifmt.SeriesKey.build(obj) == raw
    parsed = ifmt.SeriesKey.parse(raw)
    assert serieskey.decode(raw) == (parsed.name, [(t.key, t.value) for t in parsed.tags])
    assert serieskey.key_extent(raw + b"tail", 0, len(raw) + 4) == len(raw)


@given(st.sampled_from((ifmt.ENTRY_INSERT, ifmt.ENTRY_TOMBSTONE)), UINT64, NAME, TAGS)
def test_series_entry_fast_path_is_the_definition(
    flag: int, sid: int, name: bytes, tags: list[tuple[bytes, bytes]]
) -> None:
    key = serieskey.encode(name, tags)
    raw = seriesfile.entry_bytes(flag, sid, key)
    head = ifmt.EntryHeader.parse(raw)
    assert (head.flag, head.id) == ifmt.ENTRY_HEADER.unpack_from(raw) == (flag, sid)
    assert raw[ifmt.ENTRY_HEADER_SIZE :] == (key if flag == ifmt.ENTRY_INSERT else b"")
    assert seriesfile.segment_bytes_header() == ifmt.SegmentHeader.build({"version": ifmt.SEGMENT_VERSION})


@given(st.sampled_from(ifmt.LOG_FLAGS), st.integers(1, (1 << 64) - 1), st.binary(max_size=20), st.binary(max_size=20),
       st.binary(max_size=20))
def test_log_entry_fast_path_is_the_definition(flag: int, sid: int, name: bytes, key: bytes, value: bytes) -> None:
    raw = tsi_index.log_entry_bytes(flag, sid, name, key, value)
    body = {"flag": flag, "series_id": sid, "name": name, "key": key, "value": value}
    assert ifmt.LogEntry.build({"body": body, "checksum": zlib.crc32(ifmt.LogEntryBody.build(body))}) == raw
    (entry,) = tsi_index.parse_log(raw)
    parsed = ifmt.LogEntry.parse(raw)
    assert (entry.flag, entry.series_id, entry.name, entry.key, entry.value) == tuple(
        parsed.body[k] for k in ("flag", "series_id", "name", "key", "value")
    )
    assert parsed.checksum == ifmt.CHECKSUM.unpack_from(raw, len(raw) - ifmt.CHECKSUM.size)[0]


@given(st.integers(0, 255), UINT64, UINT64, UINT64, UINT64, st.binary(max_size=20))
def test_tsi1_element_heads_are_the_definitions(flag: int, a: int, b: int, c: int, d: int, name: bytes) -> None:
    """tsm/tsi1/index.py reads the fixed heads of measurement and tag key elements by struct."""
    m = ifmt.MeasurementElem.build(
        {"flag": flag, "tag_block": {"offset": a, "size": b}, "name": name, "series_n": 0, "series_data": b""}
    )
    assert ifmt.MEASUREMENT_ELEM_HEAD.unpack_from(m) == (flag, a, b)
    assert ifmt.MeasurementElem.parse(m).name == name == m[ifmt.MEASUREMENT_ELEM_HEAD.size + 1 :][: len(name)]
    k = ifmt.TagKeyElem.build(
        {"flag": flag, "data": {"offset": a, "size": b}, "hash_index": {"offset": c, "size": d}, "key": name}
    )
    assert ifmt.TAG_KEY_ELEM_HEAD.unpack_from(k) == (flag, a, b, c, d)


@given(UINT64, UINT64)
def test_series_index_element_struct(offset: int, sid: int) -> None:
    raw = ifmt.INDEX_ELEM.pack(offset, sid)
    assert len(raw) == ifmt.INDEX_ELEM_SIZE and ifmt.INDEX_ELEM.unpack(raw) == (offset, sid)


# ---- the compiled core's constants ---------------------------------------------------------------


def test_compiled_constants_are_the_python_definitions() -> None:
    """tsm/_speedups.c repeats the layouts it parses; its module attributes must equal the Python
    definitions. CI builds the extension: there a missing one fails, elsewhere it skips."""
    if compiled is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and the compiled core tsm/_speedups.c is not built (or stale)")
        pytest.skip("no compiled core where the package was installed (no C compiler)")
    expected = {
        "TSM_HEADER_SIZE": fmt.HEADER_SIZE,
        "INDEX_ENTRY_SIZE": fmt.ENTRY_SIZE,
        "MIN_FRAME_SIZE": fmt.MIN_FRAME_SIZE,
        "INDEX_KEY_OFFSET": fmt.KEY_OFFSET,
        "INDEX_TYPE_AFTER_KEY": fmt.TYPE_AFTER_KEY,
        "INDEX_COUNT_AFTER_KEY": fmt.COUNT_AFTER_KEY,
        "INDEX_ENTRIES_AFTER_KEY": fmt.ENTRIES_AFTER_KEY,
        "INDEX_RECORD_HEAD_SIZE": fmt.RECORD_HEAD_SIZE,
        "BLOCK_FLOAT": block.FLOAT,
        "BLOCK_INTEGER": block.INTEGER,
        "BLOCK_BOOLEAN": block.BOOLEAN,
        "BLOCK_STRING": block.STRING,
        "BLOCK_UNSIGNED": block.UNSIGNED,
        "MAX_BLOCK_TYPE": max(block.BLOCK_TYPE_NAMES),
        "VALUE_HEADER": floats.HEADER,
        "FIRST_VALUE_END": block._FIRST_VALUE_END,
        "INT_RAW": integers.RAW,
        "INT_PACKED": integers.PACKED,
        "INT_RLE": integers.RLE,
        "STRING_MAX_EXPANSION": strings.MAX_EXPANSION,
        "WAL_FIRST_ENTRY_TYPE": min(wfmt.ENTRY_TYPES),
        "WAL_LAST_ENTRY_TYPE": max(wfmt.ENTRY_TYPES),
        "WAL_ENTRY_HEADER_SIZE": wfmt.ENTRY_HEADER_SIZE,
        "FLOAT_SENTINEL": floats.SENTINEL,
        "S8_MAX_VALUE": simple8b.MAX_VALUE,
        "S8_SELECTORS": tuple(tuple(s) for s in simple8b.SELECTORS),
    }
    got = {name: getattr(compiled, name, None) for name in expected}
    assert got == expected
    # the entry types the C prefilter accepts are a contiguous range, and the one section
    # header it knows for floats, booleans and strings is each codec's
    assert set(wfmt.ENTRY_TYPES) == set(range(min(wfmt.ENTRY_TYPES), max(wfmt.ENTRY_TYPES) + 1))
    assert floats.HEADER == booleans.HEADER == strings.HEADER
    assert sorted(block.BLOCK_TYPE_NAMES) == list(range(max(block.BLOCK_TYPE_NAMES) + 1))
