"""Series file and tsi1 index layouts: Construct round trips (parse gives the object, build gives the
same bytes, sizeof right where fixed, compiled == interpreted), the hand-written fast paths agree
with the Construct definitions, the placement hash agrees with Go's ``cespare/xxhash``, and what
influxd 1.6.7 itself wrote under ``index-version = "tsi1"`` is read and re-encoded byte for byte."""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import pytest
from goprog import build_go_program
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.tsm.tsi1 import format as fmt
from influx_archive.tsm.tsi1 import index as ix
from influx_archive.tsm.tsi1 import seriesfile as sf
from influx_archive.tsm.tsi1 import serieskey as sk
from influx_archive.tsm.tsi1.xxhash import rhh_hash_key, sum64

part = st.binary(min_size=1, max_size=40)


def roundtrip(con, obj_bytes: bytes):
    obj = con.parse(obj_bytes)
    assert con.build(obj) == obj_bytes
    comp = con.compile()
    assert comp.parse(obj_bytes) == obj
    assert comp.build(obj) == obj_bytes
    return obj


def test_fixed_layouts_sizes() -> None:
    assert fmt.SegmentHeader.sizeof() == fmt.SEGMENT_HEADER_SIZE
    assert fmt.EntryHeader.sizeof() == fmt.ENTRY_HEADER_SIZE == fmt.ENTRY_HEADER.size
    assert fmt.SeriesIndexHeader.sizeof() == fmt.INDEX_HEADER_SIZE
    assert fmt.IndexFileTrailer.sizeof() == fmt.INDEX_FILE_TRAILER_SIZE
    assert fmt.MeasurementBlockTrailer.sizeof() == fmt.MEASUREMENT_BLOCK_TRAILER_SIZE
    assert fmt.TagBlockTrailer.sizeof() == fmt.TAG_BLOCK_TRAILER_SIZE
    assert [fmt.segment_size(i) for i in (0, 1, 5, 6, 7, 100)] == [1 << 22, 1 << 23, 1 << 27, 1 << 28, 1 << 28, 1 << 28]


def test_headers_roundtrip() -> None:
    roundtrip(fmt.SegmentHeader, sf.segment_bytes_header())
    raw = fmt.SeriesIndexHeader.build(
        {"version": 1, "max_series_id": 17, "max_offset": 5 << 32 | 9, "count": 3, "capacity": 4,
         "key_id_map": {"offset": 69, "size": 64}, "id_offset_map": {"offset": 133, "size": 64}}
    )
    assert len(raw) == fmt.INDEX_HEADER_SIZE
    assert roundtrip(fmt.SeriesIndexHeader, raw).max_offset == 5 << 32 | 9
    for con in (fmt.IndexFileTrailer, fmt.MeasurementBlockTrailer, fmt.TagBlockTrailer):
        raw = bytes(range(con.sizeof() - 2)) + b"\x00\x01"
        roundtrip(con, raw)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(name=part, tags=st.lists(st.tuples(part, part), max_size=6))
def test_series_key_fast_path_equals_construct(name, tags) -> None:
    key = sk.encode(name, tags)
    obj = roundtrip(fmt.SeriesKey, key)
    assert obj.name == name and [(t.key, t.value) for t in obj.tags] == tags
    assert sk.decode(key) == (name, tags)
    assert sk.key_extent(key + b"junk", 0, len(key) + 4) == len(key)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    flag=st.sampled_from(fmt.LOG_FLAGS),
    sid=st.integers(0, 2**64 - 1),
    name=st.binary(max_size=30),
    key=st.binary(max_size=30),
    value=st.binary(max_size=30),
)
def test_log_entry_fast_path_equals_construct(flag, sid, name, key, value) -> None:
    raw = ix.log_entry_bytes(flag, sid, name, key, value)
    obj = roundtrip(fmt.LogEntry, raw)
    assert (obj.body.flag, obj.body.series_id, obj.body.name, obj.body.key, obj.body.value) == (
        flag,
        sid,
        name,
        key,
        value,
    )
    assert obj.checksum == zlib.crc32(raw[:-4])
    if sid or flag not in (fmt.LOG_SERIES_INSERT, fmt.LOG_SERIES_TOMBSTONE):
        (e,) = ix.parse_log(raw)
        assert (e.flag, e.series_id, e.name, e.key, e.value, e.size) == (flag, sid, name, key, value, len(raw))


@settings(max_examples=100, deadline=None)
@given(sid=st.integers(1, 2**64 - 1), name=part, tags=st.lists(st.tuples(part, part), max_size=4))
def test_series_entry_roundtrip(sid, name, tags) -> None:
    key = sk.encode(name, tags)
    raw = sf.entry_bytes(fmt.ENTRY_INSERT, sid, key)
    head = roundtrip(fmt.EntryHeader, raw[: fmt.ENTRY_HEADER_SIZE])
    assert (head.flag, head.id) == (fmt.ENTRY_INSERT, sid)
    assert raw[fmt.ENTRY_HEADER_SIZE:] == key
    assert sf.entry_bytes(fmt.ENTRY_TOMBSTONE, sid, key) == fmt.ENTRY_HEADER.pack(fmt.ENTRY_TOMBSTONE, sid)


def test_manifest_roundtrip() -> None:
    raw = ix.manifest_bytes(["L0-00000001.tsl", "L1-00000002.tsi"])
    m = ix.parse_manifest(raw)
    assert m.files == ["L0-00000001.tsl", "L1-00000002.tsi"] and m.levels == list(fmt.DEFAULT_LEVELS)
    assert ix.manifest_bytes(m.files, m.levels) == raw


# ---- Go: the hash and the series index writer ---------------------------------------------

GO_HASH = r"""
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/cespare/xxhash"
	"github.com/influxdata/influxdb/pkg/rhh"
)

func main() {
	s := bufio.NewScanner(os.Stdin)
	s.Buffer(make([]byte, 1<<20), 1<<22)
	for s.Scan() {
		b, _ := hex.DecodeString(s.Text())
		fmt.Printf("%d %d\n", xxhash.Sum64(b), rhh.HashKey(b))
	}
}
"""


def test_xxhash_matches_go(tmp_path) -> None:
    tool = build_go_program(GO_HASH, tmp_path, "the xxhash differential")
    samples = [b"", b"a", b"abc", bytes(range(256)) * 3] + [os.urandom(n) for n in range(0, 200, 3)] + [b"x" * 60000]
    samples += [sk.encode(b"cpu", [(b"host", b"h%d" % i)]) for i in range(300)]
    out = subprocess.run(
        [str(tool)], input="\n".join(s.hex() for s in samples) + "\n", capture_output=True, text=True, check=True
    )
    got = [tuple(map(int, line.split())) for line in out.stdout.splitlines()]
    assert got == [(sum64(s), rhh_hash_key(s)) for s in samples]


GO_INDEX = r"""
package main

import (
	"fmt"
	"os"

	"github.com/influxdata/influxdb/models"
	"github.com/influxdata/influxdb/tsdb"
)

// Insert N series into a series file with a tiny compaction threshold, so every partition
// writes its "index" file (tsdb/series_partition.go), then close.
func main() {
	f := tsdb.NewSeriesFile(os.Args[1])
	if err := f.Open(); err != nil {
		panic(err)
	}
	for _, p := range f.Partitions() {
		p.CompactThreshold = 5
	}
	var names [][]byte
	var tags []models.Tags
	for i := 0; i < 400; i++ {
		names = append(names, []byte("cpu"))
		tags = append(tags, models.NewTags(map[string]string{"host": fmt.Sprintf("h%04d", i)}))
	}
	if _, err := f.CreateSeriesListIfNotExists(names, tags); err != nil {
		panic(err)
	}
	f.Wait()
	if err := f.Close(); err != nil {
		panic(err)
	}
}
"""


@pytest.mark.slow
def test_series_index_writer_matches_influxd(tmp_path) -> None:
    """influxd's own SeriesPartitionCompactor writes each partition's ``index``; ours, built from
    the same segments, is the same bytes."""
    tool = build_go_program(GO_INDEX, tmp_path, "the series index differential")
    sdir = tmp_path / "_series"
    subprocess.run([str(tool), str(sdir)], check=True, timeout=120)
    sfile = sf.SeriesFile(sdir)
    assert sfile.series_count() == 400
    checked = 0
    for p in sfile.partitions:
        ipath = Path(p.path) / fmt.INDEX_FILE_NAME
        assert ipath.exists(), "influxd did not compact"
        theirs = ipath.read_bytes()
        hdr = fmt.SeriesIndexHeader.parse(theirs)
        # their index covers the entries up to hdr.max_offset; rebuild ours from the same prefix
        part = sf.read_partition(p.path, p.id)
        keep = {i: o for i, o in part.offsets.items() if o <= hdr.max_offset}
        part.offsets = keep
        part.inserts = len(keep)
        part.max_id = max(keep)
        part.last_insert = max(keep.values())
        mine = sf.build_index(part, sfile_key_reader(part))
        assert mine == theirs
        checked += 1
    assert checked == 8


def sfile_key_reader(part):
    def read(offset: int) -> bytes:
        seg_id, pos = fmt.split_offset(offset)
        seg = next(s for s in part.segments if s.id == seg_id)
        data = Path(seg.path).read_bytes()
        start = pos + fmt.ENTRY_HEADER_SIZE
        return data[start : sk.key_extent(data, start, len(data))]

    return read


# ---- what influxd wrote ---------------------------------------------------------------------


@pytest.mark.interop
def test_influxd_written_files_reencode(tmp_path, influxd_factory) -> None:
    """influxd 1.6.7 under tsi1 writes points with unicode, escapes and long keys, then a DROP SERIES
    (a tombstone in both files); every segment, log file and MANIFEST it wrote re-encodes to the
    same bytes, and every series sits in the partition our hash puts it in."""
    root = tmp_path / "root"
    server = influxd_factory(root, index="tsi1")
    server.execute("CREATE DATABASE db")
    lines = [f"cpu,host=h{i},region=r{i % 3} v={i} {1000 + i}" for i in range(500)]
    lines += [
        "we\\ ird\\,m,t\\=k=v\\ a\\,b,ü=ñ f=1 5",
        "ホスト,場所=東京 v=1 5",
        f"long,k={'y' * 60000} v=1 5",
        "gone,a=b v=1 5",
    ]
    server.write("\n".join(lines), db="db")
    server.execute("DROP SERIES FROM gone", db="db")
    server.stop()
    data = root / "data" / "db"
    sfile = sf.SeriesFile(data / "_series")
    assert sfile.series_count() == 503  # "gone" is tombstoned
    assert sum(len(p.tombstones) for p in sfile.partitions) == 1
    for p in sfile.partitions:
        for seg in p.segments:
            raw = Path(seg.path).read_bytes()
            mine = sf.segment_bytes_header() + b"".join(
                sf.entry_bytes(e.flag, e.id, e.key or b"") for e in sf.iter_segment(seg.path, seg.id, p.id)
            )
            assert raw == mine + bytes(len(raw) - len(mine))
            for e in sf.iter_segment(seg.path, seg.id, p.id):
                if e.key is not None:
                    assert sk.encode(*sk.decode(e.key)) == e.key
    byid = dict(sfile.series())
    (shard,) = [d for d in (data / "autogen").iterdir() if d.is_dir()]
    seen = set()
    tombstoned = 0
    for pdir in sorted((shard / "index").iterdir()):
        manifest = (pdir / fmt.MANIFEST_NAME).read_bytes()
        m = ix.parse_manifest(manifest)
        assert ix.manifest_bytes(m.files, m.levels) == manifest
        for name in m.files:
            raw = (pdir / name).read_bytes()
            entries = list(ix.iter_log_file(str(pdir / name)))
            assert b"".join(ix.log_entry_bytes(e.flag, e.series_id, e.name, e.key, e.value) for e in entries) == raw
            for e in entries:
                if e.flag == fmt.LOG_SERIES_TOMBSTONE:
                    tombstoned += 1
                elif e.flag == fmt.LOG_SERIES_INSERT and e.series_id in byid:
                    line_key = sk.to_line_key(*sk.decode(byid[e.series_id]))
                    assert ix.index_partition(line_key) == int(pdir.name)
                    seen.add(e.series_id)
    assert tombstoned == 1
    assert seen == set(byid)
    si = ix.ShardIndex(shard / "index")
    assert si.series_ids() == set(byid)
    # the series file key of every TSM/WAL key is what influxd stored
    for sid, key in byid.items():
        assert sfile.find(key) == sid
    assert sfile.find(sk.from_line_key(b"we\\ ird\\,m,t\\=k=v\\ a\\,b,\xc3\xbc=\xc3\xb1"))
