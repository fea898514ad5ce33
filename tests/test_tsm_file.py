"""TSM1 reader and writer: real influxd files, the spec's annotated file, hostile input, interop."""

from __future__ import annotations

import io
import math
import struct
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import ArchiveError, ChecksumError, FormatError, TruncatedError
from influx_archive.tsm import block
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.writer import TSMWriter

# docs/formats.md#example-tsm-file: 000000002-000000001.tsm, three overwrites of cpu,host=a usage.
ANNOTATED = bytes.fromhex(
    "16d1 16d1 01f2 4b66 dc00 111a 18e9 e659"
    "d5f6 0000 e000 01f3 c000 0001 1040 8f48"
    "0000 0000 00e6 1738 befd dd60 0000 0000"
    "0400 1363 7075 2c68 6f73 743d 6123 217e"
    "2375 7361 6765 0000 0118 e9e6 59d5 f600"
    "0018 e9f8 8a72 db40 0000 0000 0000 0000"
    "0500 0000 2c00 0000 0000 0000 31"
)
T0 = 1795219200000000000


def fixture_tsm_files(fixtures_dir: Path) -> list[tuple[str, bytes]]:
    """Every TSM written by the real influxd in the fixtures (live dirs and legacy shard tars)."""
    out = [(str(p), p.read_bytes()) for p in sorted((fixtures_dir / "live" / "data").rglob("*.tsm"))]
    for tar in sorted((fixtures_dir / "legacy").glob("db*.*")):
        with tarfile.open(tar) as tf:
            for m in tf:
                if m.name.endswith(".tsm"):
                    out.append((f"{tar}::{m.name}", tf.extractfile(m).read()))
    assert len(out) > 10
    return out


def rebuild(data: bytes, name: str) -> bytes:
    r = TSMReader(io.BytesIO(data), name=name)
    out = io.BytesIO()
    w = TSMWriter(out)
    for key, btype, entries in r.iter_index():
        ts: list[int] = []
        vs: list = []
        for e in entries:
            t, v = r.decode_block(key, e)
            ts.extend(t)
            vs.extend(v)
        w.write_values(key, btype, ts, vs)
    w.close()
    return out.getvalue()


def test_annotated_file_from_spec():
    assert len(ANNOTATED) == 109
    r = TSMReader(io.BytesIO(ANNOTATED))
    assert list(r.keys()) == [b"cpu,host=a#!~#usage"]
    (e,) = r.entries(b"cpu,host=a#!~#usage")
    assert (e.offset, e.size) == (5, 44)
    assert (e.min_time, e.max_time) == (T0, T0 + 20000 * 10**9)
    assert r.index_offset == 49
    ts, vs = r.decode_block(b"cpu,host=a#!~#usage", e)
    assert ts == [T0, T0 + 10 * 10**9, T0 + 20000 * 10**9]
    assert vs == [1001.0, 1002.0, 1003.0]
    out = io.BytesIO()
    w = TSMWriter(out)
    w.write_values(b"cpu,host=a#!~#usage", block.FLOAT, ts, vs)
    w.close()
    assert out.getvalue() == ANNOTATED


def test_every_real_file_rebuilds_byte_identical(fixtures_dir):
    """Decode -> re-encode of every influxd-written file gives the same bytes (index, CRCs, footer).

    influxd writes at most 1000 values per block and cuts keys the same way, so writing the
    decoded values of a key in one call reproduces its blocks."""
    for name, data in fixture_tsm_files(fixtures_dir):
        assert rebuild(data, name) == data, name


def test_raw_frame_copy_is_identical(fixtures_dir):
    for name, data in fixture_tsm_files(fixtures_dir)[:5]:
        r = TSMReader(io.BytesIO(data), name=name)
        out = io.BytesIO()
        w = TSMWriter(out)
        for key, btype, entries in r.iter_index():
            for e in entries:
                w.write_frame(key, btype, e.min_time, e.max_time, r.read_frame(e))
        w.close()
        assert out.getvalue() == data


def _small_file() -> bytes:
    out = io.BytesIO()
    w = TSMWriter(out)
    w.write_values(b"a#!~#f", block.FLOAT, [1, 2, 3], [1.5, 2.5, -0.0])
    w.write_values(b"b#!~#i", block.INTEGER, list(range(1, 1502)), list(range(1501)))
    w.close()
    return out.getvalue()


def test_writer_cuts_blocks_at_1000():
    r = TSMReader(io.BytesIO(_small_file()))
    assert [len(r.decode_block(b"b#!~#i", e)[0]) for e in r.entries(b"b#!~#i")] == [1000, 501]
    _ts, vs = r.read_key(b"a#!~#f")
    assert math.copysign(1, vs[2]) == -1


def test_writer_refuses_bad_order_and_empty():
    w = TSMWriter(io.BytesIO())
    w.write_values(b"b", block.FLOAT, [1], [1.0])
    with pytest.raises(ArchiveError):
        w.write_values(b"a", block.FLOAT, [1], [1.0])
    with pytest.raises(ArchiveError):
        w.write_values(b"b", block.INTEGER, [5], [1])
    with pytest.raises(ArchiveError):
        TSMWriter(io.BytesIO()).close()


@pytest.mark.parametrize(
    "mutate, cls, offset",
    [
        (lambda d: d[:4], TruncatedError, 0),
        (lambda d: b"\x00" + d[1:], FormatError, 0),
        (lambda d: d[:4] + b"\x02" + d[5:], FormatError, 4),
        (lambda d: d[:-8] + struct.pack(">Q", len(d)), FormatError, None),
    ],
)
def test_damaged_headers(mutate, cls, offset):
    data = _small_file()
    with pytest.raises(cls) as exc:
        TSMReader(io.BytesIO(mutate(data)), name="x.tsm")
    assert "x.tsm" in str(exc.value)
    if offset is not None:
        assert exc.value.offset == offset
    else:
        assert exc.value.offset == len(data) - 8


def test_index_damage_is_located():
    data = bytearray(_small_file())
    r = TSMReader(io.BytesIO(bytes(data)))
    idx = r.index_offset
    # count of the first key (after key_len(2) + key(6) + type(1)) set to 0
    bad = bytearray(data)
    bad[idx + 9 : idx + 11] = b"\x00\x00"
    with pytest.raises(FormatError) as exc:
        TSMReader(io.BytesIO(bytes(bad)))
    assert exc.value.offset == idx + 9 and "0 index entries" in str(exc.value)
    # first entry's offset pointed past the blocks area
    bad = bytearray(data)
    bad[idx + 11 + 16 : idx + 11 + 24] = struct.pack(">Q", idx)
    with pytest.raises(FormatError) as exc:
        TSMReader(io.BytesIO(bytes(bad)))
    assert exc.value.offset == idx + 11 and "outside the blocks area" in str(exc.value)
    # keys out of order: swap first letter of the second key to sort before the first
    bad = bytearray(data)
    second = idx + 2 + 6 + 3 + 28
    bad[second + 2] = ord("A")
    with pytest.raises(FormatError) as exc:
        TSMReader(io.BytesIO(bytes(bad)))
    assert "out of order" in str(exc.value) and exc.value.offset == second


def test_flipped_block_byte_is_a_checksum_error():
    data = bytearray(_small_file())
    data[12] ^= 0x01
    r = TSMReader(io.BytesIO(bytes(data)), name="f.tsm")
    (e,) = r.entries(b"a#!~#f")
    with pytest.raises(ChecksumError) as exc:
        r.read_block(e)
    assert exc.value.offset == 5 and "f.tsm" in str(exc.value)


def test_truncation_at_every_byte_raises_only_format_errors(fixtures_dir):
    name, data = fixture_tsm_files(fixtures_dir)[0]
    for cut in range(len(data)):
        try:
            r = TSMReader(io.BytesIO(data[:cut]), name=name)
            for key, _bt, entries in r.iter_index():
                for e in entries:
                    r.decode_block(key, e)
        except FormatError:
            continue


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_mutated_real_file_raises_only_archive_errors(data):
    base = _small_file()
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] = data.draw(st.integers(0, 255))
    try:
        r = TSMReader(io.BytesIO(bytes(buf)))
        for key, _bt, entries in r.iter_index():
            for e in entries:
                r.decode_block(key, e)
    except ArchiveError:
        pass


@pytest.mark.interop
def test_our_tsm_is_served_by_real_influxd(influxd_factory, tmp_path):
    """A TSM file written by TSMWriter (all five types, > 1000 points in a key) dropped into a real
    influxd shard directory is served back exactly."""
    srv = influxd_factory(tmp_path / "srv")
    srv.execute("CREATE DATABASE x")
    srv.write(f"seed,k=v f=1 {T0}", db="x")
    shard_dirs = [p for p in (srv.data_dir / "x" / "autogen").iterdir() if p.name.isdigit()]
    srv.stop()
    (shard,) = shard_dirs
    n = 2500
    ts = [T0 + i * 1_000_003 for i in range(n)]
    floats = [(-1) ** i * i / 7 for i in range(n)]
    floats[1] = -0.0
    ints = [(-(2**63)) if i == 5 else i * 12345 - 10**6 for i in range(n)]
    uints = [2**64 - 1 - i for i in range(n)]
    strs = [f'v"{i}\\ é'.encode() for i in range(n)]
    bools = [i % 3 == 0 for i in range(n)]
    series = b"m,t=a\\ b"
    out = shard / "000000009-000000001.tsm"
    with open(out, "wb") as fh:
        w = TSMWriter(fh)
        w.write_values(series + b"#!~#b", block.BOOLEAN, ts, bools)
        w.write_values(series + b"#!~#f", block.FLOAT, ts, floats)
        w.write_values(series + b"#!~#i", block.INTEGER, ts, ints)
        w.write_values(series + b"#!~#s", block.STRING, ts, strs)
        w.write_values(series + b"#!~#u", block.UNSIGNED, ts, uints)
        w.close()
    srv.start()
    rows = []
    for _ in range(50):
        res = srv.query('SELECT * FROM "x"."autogen"."m" GROUP BY *', db="x")
        series_ = res["results"][0].get("series") or []
        if series_:
            rows = series_[0]["values"]
            cols = series_[0]["columns"]
            break
        time.sleep(0.2)
    assert len(rows) == n
    idx = {c: i for i, c in enumerate(cols)}
    for i, row in enumerate(rows):
        assert row[idx["time"]] == ts[i]
        assert row[idx["b"]] is bools[i]
        assert struct.pack(">d", float(row[idx["f"]])) == struct.pack(">d", floats[i])
        assert row[idx["i"]] == ints[i]
        assert row[idx["s"]] == strs[i].decode()
        assert row[idx["u"]] == uints[i]
