"""The shard read model (docs/formats.md#reading-across-files, #tombstone-application, #wal-replay):
hand-built files with overlaps, tombstones and a cache, checked against a brute-force model; and a
real influxd 1.6.7 shard (TSM files, tombstones and WAL of a stopped server) read exactly as the
server served it."""

from __future__ import annotations

import io
import itertools
import struct
import time
import zlib
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_wal import as_served, assert_same_points, model_key, served  # shared helpers

from influx_archive.archive.errors import ChecksumError, FormatError
from influx_archive.tsm.block import FLOAT, INTEGER, decode_block, encode_block
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.shard import RawFrame, ShardReader, Values
from influx_archive.tsm.tombstone import Tombstone, TombstoneSet, read_tombstones
from influx_archive.tsm.wal import Cache, WALWriter

MIN, MAX = -(1 << 63), (1 << 63) - 1


@dataclass(frozen=True)
class Entry:
    min_time: int
    max_time: int
    offset: int
    size: int


class MemTSM:
    """A TSM file in memory with the reader interface ShardReader uses (``keys``, ``entries``,
    ``block_type``, ``read_frame``, ``decode_block``). Blocks are real (``encode_block``);
    entries keep the order given, so overlapping blocks in one file can be modelled."""

    def __init__(self, name: str, data: dict[bytes, tuple[int, list[tuple[list[int], list]]]]) -> None:
        self.name = name
        self._types: dict[bytes, int] = {}
        self._entries: dict[bytes, list[Entry]] = {}
        self._frames: dict[int, bytes] = {}
        offset = 5
        for key in sorted(data):
            typ, blocks = data[key]
            self._types[key] = typ
            for ts, vs in blocks:
                block = _encode_any(typ, ts, vs)
                frame = zlib.crc32(block).to_bytes(4, "big") + block
                self._frames[offset] = frame
                self._entries.setdefault(key, []).append(Entry(ts[0], ts[-1], offset, len(frame)))
                offset += len(frame)

    def keys(self):
        return iter(sorted(self._entries))

    def entries(self, key: bytes) -> list[Entry]:
        return list(self._entries.get(key, []))

    def block_type(self, key: bytes) -> int:
        return self._types[key]

    def read_frame(self, entry: Entry) -> bytes:
        return self._frames[entry.offset]

    def decode_block(self, key: bytes, entry: Entry):
        _typ, ts, vs = decode_block(self._frames[entry.offset][4:])
        return ts, vs

    def corrupt(self, entry: Entry) -> None:
        frame = bytearray(self._frames[entry.offset])
        frame[-1] ^= 0x01
        self._frames[entry.offset] = bytes(frame)


def _encode_any(typ: int, ts: list[int], vs: list) -> bytes:
    """encode_block refuses what influxd never writes (duplicates, unsorted); hand-build those
    as raw-timestamp float blocks so such stored blocks can be modelled."""
    if all(a < b for a, b in itertools.pairwise(ts)):
        return encode_block(typ, ts, vs)
    assert typ == FLOAT
    good = encode_block(FLOAT, list(range(len(ts))), vs)  # value section from the real encoder
    raw_ts = bytes([0x00]) + struct.pack(">q", ts[0]) + b"".join(
        struct.pack(">Q", (b - a) & ((1 << 64) - 1)) for a, b in itertools.pairwise(ts)
    )
    ts_len = good[1]  # uvarint of the real section length (< 128 here)
    value_section = good[2 + ts_len :]
    return bytes([FLOAT, len(raw_ts)]) + raw_ts + value_section


def f_blocks(*blocks: list[tuple[int, float]]) -> tuple[int, list]:
    return FLOAT, [([t for t, _ in b], [v for _, v in b]) for b in blocks]


K = b"cpu,host=a#!~#v"


def parts(reader: ShardReader, key: bytes, start=None, end=None) -> list[tuple[str, list[int]]]:
    out = []
    for p in reader.iter_blocks(key, start, end):
        if isinstance(p, RawFrame):
            out.append(("raw", [p.min_time, p.max_time]))
        else:
            assert isinstance(p, Values)
            out.append(("values", p.timestamps))
    return out


# ---------------------------------------------------------------------------------------------
# Hand-built cases (expected values by reasoning from docs/formats.md#reading-across-files,
# #tombstone-application)
# ---------------------------------------------------------------------------------------------


def test_later_file_wins_and_untouched_blocks_are_raw() -> None:
    old = MemTSM("1-1", {K: f_blocks([(1, 1.0), (2, 2.0), (3, 3.0)], [(10, 10.0), (11, 11.0)], [(20, 20.0)])})
    new = MemTSM("2-1", {K: f_blocks([(2, 200.0), (4, 400.0)])})
    reader = ShardReader([(old, None), (new, None)])
    assert reader.read(K) == (FLOAT, [1, 2, 3, 4, 10, 11, 20], [1.0, 200.0, 3.0, 400.0, 10.0, 11.0, 20.0])
    assert parts(reader, K) == [("values", [1, 2, 3, 4]), ("raw", [10, 11]), ("raw", [20, 20])]
    # the raw frame is the stored frame, byte for byte
    raw = [p for p in reader.iter_blocks(K) if isinstance(p, RawFrame)]
    assert raw[0].frame == old.read_frame(old.entries(K)[1]) and raw[0].file == 0 and raw[0].block_type == FLOAT
    # reversed file order: the other file wins
    assert ShardReader([(new, None), (old, None)]).read(K)[2][:4] == [1.0, 2.0, 3.0, 400.0]


def test_tombstones_apply_to_their_own_file_only() -> None:
    old = MemTSM("1-1", {K: f_blocks([(1, 1.0), (2, 2.0), (3, 3.0)], [(10, 10.0), (11, 11.0)])})
    new = MemTSM("2-1", {K: f_blocks([(2, 200.0), (3, 300.0)])})
    reader = ShardReader([(old, TombstoneSet([Tombstone(K, 1, 2)])), (new, TombstoneSet([Tombstone(K, 3, 3)]))])
    # old loses 1 and 2; new loses 3; so 2 comes from new, 3 from old
    assert reader.read(K) == (FLOAT, [2, 3, 10, 11], [200.0, 3.0, 10.0, 11.0])
    # a block inside a deleted range is skipped; a touched block is decoded and filtered
    cut = ShardReader([(old, TombstoneSet([Tombstone(K, 0, 5), Tombstone(K, 11, 11)]))])
    assert parts(cut, K) == [("values", [10])]


def test_key_removed_by_tombstones_of_every_file() -> None:
    old = MemTSM("1-1", {K: f_blocks([(1, 1.0)]), b"b#!~#v": f_blocks([(1, 5.0)])})
    new = MemTSM("2-1", {K: f_blocks([(2, 2.0)])})
    gone = ShardReader([(old, TombstoneSet([Tombstone(K)])), (new, TombstoneSet([Tombstone(K, 0, 10)]))])
    assert list(gone.keys()) == [b"b#!~#v"]
    with pytest.raises(KeyError):
        gone.read(K)
    half = ShardReader([(old, TombstoneSet([Tombstone(K)])), (new, None)])
    assert list(half.keys()) == [b"b#!~#v", K]
    assert half.read(K) == (FLOAT, [2], [2.0])
    # deleted everywhere but written again in the WAL
    cache = Cache.load([("_00001.wal", _wal({K: (1, [(7, 7.0)])}))])
    assert list(ShardReader([(old, TombstoneSet([Tombstone(K)]))], cache).keys()) == [b"b#!~#v", K]


def test_cache_wins_and_its_deletes_stay_in_the_cache() -> None:
    tsm = MemTSM("1-1", {K: f_blocks([(1, 1.0), (2, 2.0), (3, 3.0)], [(10, 10.0)])})
    cache = Cache.load([("_00001.wal", _wal({K: (1, [(2, 20.0), (5, 50.0), (3, 30.0)])}, ([K], 3, 3)))])
    reader = ShardReader([(tsm, None)], cache)
    # the WAL delete of t=3 removed only the cache's value: the TSM value at 3 stays
    assert reader.read(K) == (FLOAT, [1, 2, 3, 5, 10], [1.0, 20.0, 3.0, 50.0, 10.0])
    assert parts(reader, K) == [("values", [1, 2, 3, 5]), ("raw", [10, 10])]
    only_cache = ShardReader([], cache)
    assert only_cache.read(K) == (FLOAT, [2, 5], [20.0, 50.0])


def test_in_block_duplicates_kept_alone_last_wins_when_merged() -> None:
    dup = MemTSM("1-1", {K: f_blocks([(1, 1.0), (2, 2.0), (2, 2.5), (3, 3.0)])})
    assert ShardReader([(dup, None)]).read(K) == (FLOAT, [1, 2, 2, 3], [1.0, 2.0, 2.5, 3.0])
    cut = ShardReader([(dup, TombstoneSet([Tombstone(K, 3, 3)]))])
    assert cut.read(K) == (FLOAT, [1, 2, 2], [1.0, 2.0, 2.5])
    other = MemTSM("2-1", {K: f_blocks([(3, 30.0)])})
    assert ShardReader([(dup, None), (other, None)]).read(K) == (FLOAT, [1, 2, 3], [1.0, 2.5, 30.0])


def test_overlapping_blocks_in_one_file_later_entry_wins() -> None:
    odd = MemTSM("1-1", {K: f_blocks([(1, 1.0), (5, 5.0)], [(3, 3.0), (5, 55.0)])})
    assert ShardReader([(odd, None)]).read(K) == (FLOAT, [1, 3, 5], [1.0, 3.0, 55.0])


def test_time_range_is_inclusive_and_raw_only_inside() -> None:
    tsm = MemTSM("1-1", {K: f_blocks([(1, 1.0), (2, 2.0)], [(10, 10.0), (11, 11.0)], [(20, 20.0), (30, 30.0)])})
    reader = ShardReader([(tsm, None)])
    assert reader.read(K, 2, 20) == (FLOAT, [2, 10, 11, 20], [2.0, 10.0, 11.0, 20.0])
    assert parts(reader, K, 2, 20) == [("values", [2]), ("raw", [10, 11]), ("values", [20])]
    assert reader.point_count(K, 2, 20) == 4
    assert reader.read(K, 12, 19) == (FLOAT, [], [])


def test_chunks_and_type_conflict_and_crc() -> None:
    evens, odds = list(range(0, 2500, 2)), list(range(1, 2500, 2))
    many = MemTSM("1-1", {K: (INTEGER, [(evens, list(range(1250))), (odds, list(range(1250)))])})
    chunks = list(ShardReader([(many, None)], chunk_size=1000).iter_blocks(K))
    assert [len(c.timestamps) for c in chunks] == [1000, 1000, 500]
    other = MemTSM("2-1", {K: f_blocks([(1, 1.0)])})
    with pytest.raises(FormatError) as exc:
        ShardReader([(many, None), (other, None)]).read(K)
    assert exc.value.path == "2-1" and exc.value.field == "block type"  # the file that disagrees
    assert "float in 2-1" in str(exc.value) and "integer in 1-1" in str(exc.value)
    bad = MemTSM("1-1", {K: f_blocks([(1, 1.0)])})
    bad.corrupt(bad.entries(K)[0])
    with pytest.raises(ChecksumError) as exc:
        list(ShardReader([(bad, None)]).iter_blocks(K))
    assert exc.value.path == "1-1" and exc.value.offset == 5


def _wal(*ops) -> bytes:
    buf = io.BytesIO()
    w = WALWriter(buf)
    for op in ops:
        w.write(op) if isinstance(op, dict) else w.delete_range(*op)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Random shards against a brute-force model
# ---------------------------------------------------------------------------------------------

times_st = st.lists(st.integers(0, 60), min_size=1, max_size=8, unique=True).map(sorted)
block_st = times_st.map(lambda ts: [(t, float(t) + 0.5) for t in ts])
file_st = st.lists(block_st, min_size=1, max_size=3)
tomb_st = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 20)).map(lambda p: Tombstone(K, p[0], p[0] + p[1]))
    | st.just(Tombstone(K)),
    max_size=3,
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(file_st, tomb_st), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 60), st.floats(-1e3, 1e3)), max_size=6),
    st.tuples(st.integers(-5, 65), st.integers(-5, 65)).map(sorted),
)
def test_random_shards_match_a_brute_force_model(files, cache_vals, window) -> None:
    readers = []
    expected: dict[int, float] = {}
    for n, (blocks, tombs) in enumerate(files):
        tsm = MemTSM(f"{n + 1}-1", {K: f_blocks(*blocks)})
        tset = TombstoneSet(tombs)
        readers.append((tsm, tset))
        # model: this file's values after its tombstones, applied in precedence order
        entries = tsm.entries(K)
        state = tset.state(K, entries[0].min_time, entries[-1].max_time)
        if state.deleted:
            continue
        for block in blocks:
            for t, v in block:
                if not any(lo <= t <= hi for lo, hi in state.ranges):
                    expected[t] = v
    cache = None
    if cache_vals:
        cache = Cache.load([("_00001.wal", _wal({K: (1, cache_vals)}))])
        expected.update(dict(cache_vals))
    lo, hi = window
    reader = ShardReader(readers, cache)
    want = sorted(t for t in expected if lo <= t <= hi)
    if not want and not list(reader.keys()):
        return
    got = reader.read(K, lo, hi) if list(reader.keys()) else (FLOAT, [], [])
    assert got == (FLOAT, want, [expected[t] for t in want])
    # iter_blocks: ordered, non-overlapping parts; raw frames only for blocks nothing else overlaps
    prev = None
    for p in reader.iter_blocks(K, lo, hi) if list(reader.keys()) else []:
        first, last = (p.min_time, p.max_time) if isinstance(p, RawFrame) else (p.timestamps[0], p.timestamps[-1])
        assert prev is None or first > prev
        prev = last
        if isinstance(p, RawFrame):
            assert lo <= p.min_time and p.max_time <= hi
            others = [(i, e) for i, (r, _t) in enumerate(readers) for e in r.entries(K) if (i, e) != (p.file, p.entry)]
            assert not any(
                e.min_time <= p.max_time and e.max_time >= p.min_time for i, e in others if _live(readers[i], e)
            )
            if cache is not None:
                assert not any(p.min_time <= t <= p.max_time for t in dict(cache_vals))


def _live(source, entry) -> bool:
    """False if the block's own file's tombstones skip it (such a block does not count as overlap)."""
    r, tset = source
    es = r.entries(K)
    state = tset.state(K, es[0].min_time, es[-1].max_time)
    return not state.deleted and not any(a <= entry.min_time and b >= entry.max_time for a, b in state.ranges)


# ---------------------------------------------------------------------------------------------
# A real shard from influxd 1.6.7 (TSM files + tombstones + WAL) against what it served
# ---------------------------------------------------------------------------------------------


def _wait(pred, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.interop
def test_real_shard_reads_exactly_as_served(influxd_factory, tmp_path) -> None:
    root = tmp_path / "srv"
    t0 = 1795219200000000000
    s = 1_000_000_000
    server = influxd_factory(root, cold="1s")
    server.execute("CREATE DATABASE d")
    shard = root / "data" / "d" / "autogen" / "1"
    wal = root / "wal" / "d" / "autogen" / "1"

    def flushed() -> bool:
        return bool(list(shard.glob("*.tsm"))) and not any(p.stat().st_size for p in wal.glob("_*.wal"))

    lines = []
    for h in ("a", "b", "c"):
        for i in range(2500):  # 3 blocks per key
            lines.append(f'cpu,host={h} v={i * 0.25},n={i}i,ok={"true" if i % 3 else "false"},s="x{i}" {t0 + i * s}')
    server.write("\n".join(lines), db="d")
    _wait(flushed, "first snapshot")
    # overwrites in the middle of blocks -> a newer file overlapping the first
    server.write("\n".join(f"cpu,host=a v=-{i}.5,n=-{i}i {t0 + i * 7 * s}" for i in range(50)), db="d")
    _wait(lambda: len(list(shard.glob("*.tsm"))) >= 2 and flushed(), "second snapshot")
    server.execute(f"DELETE FROM cpu WHERE host='b' AND time >= {t0 + 100 * s} AND time < {t0 + 1500 * s}", db="d")
    server.execute(f"DELETE FROM cpu WHERE host='a' AND time >= {t0 + 14 * s} AND time <= {t0 + 21 * s}", db="d")
    server.stop()

    # phase 2: long cold duration so new writes stay in the WAL
    server = influxd_factory(root, cold="10m0s")
    server.write("\n".join(f"cpu,host=a v=1e{i % 300},n={i}i {t0 + i * 11 * s}" for i in range(100)), db="d")
    server.write("\n".join(f"cpu,host=d v={i}.0 {t0 + i * s}" for i in range(10)), db="d")
    server.write(f'cpu,host=c s="late" {t0 + 5000 * s}', db="d")
    server.execute(f"DELETE FROM cpu WHERE host='a' AND time >= {t0 + 2000 * s} AND time <= {t0 + 2100 * s}", db="d")
    server.execute("DROP SERIES FROM cpu WHERE host='c'", db="d")
    expected = served(server, "d")
    server.stop()

    tsm_paths = sorted(shard.glob("*.tsm"))
    assert len(tsm_paths) >= 2 and list(shard.glob("*.tombstone")) and any(p.stat().st_size for p in wal.glob("_*.wal"))
    files = []
    for p in tsm_paths:
        tomb = p.with_suffix(".tombstone")
        tombs = TombstoneSet(read_tombstones(tomb.read_bytes(), name=str(tomb))) if tomb.exists() else None
        files.append((TSMReader.open(p), tombs))
    cache = Cache.open(sorted(wal.glob("_*.wal")))
    reader = ShardReader(files, cache)
    got = {}
    raw_frames = 0
    for key in reader.keys():
        btype, ts, vs = reader.read(key)
        if ts:
            got[model_key(key)] = list(zip(ts, as_served(btype, vs)))
        raw_frames += sum(isinstance(p, RawFrame) for p in reader.iter_blocks(key))
    for tsm, _tombs in files:
        tsm.close()
    assert_same_points(got, expected)
    assert raw_frames > 0  # untouched blocks are copied without decoding
    assert ("cpu", (("host", "c"),), "s") not in got


# ---------------------------------------------------------------------------------------------
# The committed fixture live/ (a stopped influxd tree with tombstones and WAL) against its TRUTH
# ---------------------------------------------------------------------------------------------


def test_live_fixture_reads_exactly_as_its_truth(fixtures_dir, truth) -> None:
    """Every shard of ``fixtures/live`` read offline equals what influxd served (live.truth.json)."""
    root = fixtures_dir / "live"
    got: dict[tuple, dict[tuple, dict[int, dict]]] = {}  # (db, rp, measurement) -> tags -> t -> fields
    shards = sorted(p for p in (root / "data").glob("*/*/*") if p.name.isdigit())
    assert shards
    for shard in shards:
        db, rp = shard.parent.parent.name, shard.parent.name
        files = []
        for p in sorted(shard.glob("*.tsm")):
            tomb = p.with_suffix(".tombstone")
            tombs = TombstoneSet(read_tombstones(tomb.read_bytes(), name=str(tomb))) if tomb.exists() else None
            files.append((TSMReader.open(p), tombs))
        cache = Cache.open(sorted((root / "wal" / db / rp / shard.name).glob("_*.wal")))
        assert not cache.corruptions
        reader = ShardReader(files, cache)
        for key in reader.keys():
            btype, ts, vs = reader.read(key)
            measurement, tags, field = model_key(key)
            points = got.setdefault((db, rp, measurement), {}).setdefault(tags, {})
            for t, v in zip(ts, as_served(btype, vs)):
                points.setdefault(t, {})[field] = v
        for tsm, _tombs in files:
            tsm.close()
    expected = truth("live")
    want: dict[tuple, dict[tuple, dict[int, dict]]] = {}
    for db, dbinfo in expected["databases"].items():
        for rp, measurements in dbinfo["data"].items():
            for m, info in measurements.items():
                for series in info["series"]:
                    tags = tuple(sorted(series["tags"].items()))
                    want.setdefault((db, rp, m), {})[tags] = dict(series["points"])
    got = {k: {tags: pts for tags, pts in v.items() if pts} for k, v in got.items()}
    got = {k: v for k, v in got.items() if v}
    assert sorted(got) == sorted(want)
    for where in want:
        assert sorted(got[where]) == sorted(want[where]), where
        for tags, points in want[where].items():
            mine = got[where][tags]
            assert sorted(mine) == sorted(points), (where, tags)
            for t, fields in points.items():
                assert set(mine[t]) == set(fields), (where, tags, t)
                for f, v in fields.items():
                    if isinstance(v, float):
                        assert struct.pack(">d", v) == struct.pack(">d", mine[t][f]), (where, tags, t, f)
                    else:
                        assert type(mine[t][f]) is type(v) and mine[t][f] == v, (where, tags, t, f)
