"""Compacted tsi1 index files (``L1-*.tsi`` and up) as influxd 1.6.7 writes them: a server run with
``index-version = "tsi1"`` and a 1 KiB ``max-index-log-file-size`` compacts every partition's log
into index files while thousands of series (unicode, escapes, long keys) are written. On its
stopped tree:

* index files exist, and our reader decodes every one of them whole (series id sets, measurement
  and tag value series lists), their series counts agreeing with what they state;
* ``verify`` reports nothing, and the index's series set (log + index files) holds exactly the
  series the data has: every TSM/WAL series, by id, through the series file;
* ``dump-tsi --series`` lists the same series as the reference ``influx_inspect dumptsi``;
* damage to an index file (generated over its sections: trailer offsets, the Roaring sets, the
  measurement and tag blocks, truncation) is one ERROR finding of ``verify`` naming the file with
  an offset, and ``dump-tsi`` exits 1 naming it.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import influxd as harness
import pytest
from parity_helpers import run_inspect
from test_tsi1_inspect import _dumptsi_sections

from influx_archive.archive.ops import buildtsi
from influx_archive.tsm.tsi1 import format as fmt
from influx_archive.tsm.tsi1 import index as ix
from influx_archive.tsm.tsi1 import seriesfile as sf
from influx_archive.tsm.tsi1 import serieskey as sk

pytestmark = [pytest.mark.interop, pytest.mark.slow]

BASE = 1_600_000_000 * 10**9


def _lines(n: int) -> list[str]:
    out = []
    for i in range(n):
        kind = i % 5
        if kind == 0:
            out.append(f"cpu,host=h{i:05d},region=eu value={i} {BASE + i}")
        elif kind == 1:
            out.append(f"wetter,stadt=m\u00fcnchen{i},b\u00e4r=\u00fc\u00df value={i} {BASE + i}")
        elif kind == 2:
            out.append(f"esc\\ aped\\,m,tag\\ key=va\\,l\\=ue{i},k2=a\\ b value={i} {BASE + i}")
        elif kind == 3:
            out.append(f"long,k={'x' * 2000}{i} value={i} {BASE + i}")
        else:
            out.append(f"mem,host=h{i % 97},dc=dc{i % 7},id=i{i} value={i}i {BASE + i + 7 * 24 * 3600 * 10**9}")
    return out


@pytest.fixture(scope="module")
def compacted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compacted") / "srv"
    server = harness.InfluxServer(root, index="tsi1", extra={"data.max-index-log-file-size": "1k"})
    with server:
        server.execute("CREATE DATABASE db")
        lines = _lines(3000)
        for i in range(0, len(lines), 250):
            server.write("\n".join(lines[i : i + 250]), db="db")
        server.execute("DROP SERIES FROM cpu WHERE host = 'h00000'", db="db")
    return root


def _tsi_files(root: Path) -> list[Path]:
    return sorted(root.glob("data/*/*/*/index/*/L*.tsi"))


def _shards(root: Path) -> list[Path]:
    return sorted(p for p in (root / "data").glob("*/*/*") if p.name.isdigit() and p.parent.name != "_series")


def test_index_files_are_read_whole(compacted) -> None:
    files = _tsi_files(compacted)
    assert len(files) >= 8, "influxd compacted no partition"
    for f in files:
        with ix.IndexFile(str(f)) as idx:
            assert idx.series_ids == sorted(set(idx.series_ids))
            in_measurements = set()
            for m in idx.measurements:
                assert len(m.series_ids) == m.series_n
                in_measurements |= set(m.series_ids)
                for tk in m.tag_keys:
                    for tv in tk.values:
                        assert len(tv.series_ids) == tv.series_n
                        assert set(tv.series_ids) <= set(m.series_ids)
            assert set(idx.series_ids) <= in_measurements | set(idx.tombstone_ids)


def test_index_series_equal_the_data_series(compacted, cli) -> None:
    data = compacted / "data"
    sfile = sf.SeriesFile(str(data / "db" / fmt.SERIES_FILE_DIR))
    ids = buildtsi.series_ids(sfile)
    for shard in _shards(compacted):
        wal = compacted / "wal" / shard.relative_to(data)
        keys = buildtsi.keyed_series(str(shard), str(wal) if wal.is_dir() else None)
        want = {ids[skey] for _k, skey in keys}
        got = ix.ShardIndex(shard / fmt.INDEX_DIR).series_ids()
        assert got == want, (shard, len(got), len(want))
    code, out, err = cli("verify", str(compacted), "--json")
    assert code == 0, out + err
    doc = json.loads(out)
    assert [f for f in doc["findings"] if f["severity"] in ("error", "warning")] == []


def test_dump_tsi_agrees_with_influx_inspect_dumptsi(compacted, cli) -> None:
    """influx_inspect dumptsi lists the series file's series and the index's measurements (from
    its log and index files): ours, and what our index reader decodes, are the same."""
    sdir = compacted / "data" / "db" / fmt.SERIES_FILE_DIR
    sfile = sf.SeriesFile(str(sdir))
    for shard in _shards(compacted):
        proc = run_inspect("dumptsi", "-series-file", sdir, "-series", "-measurements", shard / "index")
        assert proc.returncode == 0, proc.stderr
        sec = _dumptsi_sections(proc.stdout)
        code, out, err = cli("dump-tsi", str(shard), "--series-file", str(sdir), "--series", "--measurements",
                             "--json")
        assert code == 0, err
        doc = json.loads(out)
        ids = ix.ShardIndex(shard / fmt.INDEX_DIR).series_ids()
        names = {sk.decode(k)[0] for i, k in sfile.series() if i in ids}
        assert {m.encode() for m in sec["Measurement"]} == names, shard
        assert {m["name"].encode() for m in doc["measurements"]} == names, shard
        assert {s["id"] for s in doc["series"]} == ids
        printed = {name + sk.to_line_key(b"", tags) for name, tags in (sk.decode(k) for _i, k in sfile.series())}
        live = {x.encode() for x in sec["Series"] if not x.endswith("(deleted)")}
        dropped = {x.split("\t")[0].encode() for x in sec["Series"] if x.endswith("(deleted)")}
        assert live == printed
        assert dropped == {b"cpu,host=h00000,region=eu"}  # the DROP SERIES: tombstoned in the series file


def _damages(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    """Damaged variants of an index file's bytes, one per section of it."""
    n = len(data)
    t = n - fmt.INDEX_FILE_TRAILER_SIZE
    trailer = fmt.IndexFileTrailer.parse(data[t:])
    out = []
    for i, name in enumerate(("measurement_block", "series_id_set", "tombstone_series_id_set")):
        for what, val in (("offset", n + 10), ("size", n)):
            b = bytearray(data)
            struct.pack_into(">q", b, t + 16 * i + (0 if what == "offset" else 8), val)
            out.append((f"trailer {name} {what}", bytes(b)))
    s = trailer.series_id_set
    if s.size >= 8:
        for off, val in ((0, b"\xff\xff\xff\xff"), (4, b"\xff\xff\x00\x00")):
            b = bytearray(data)
            b[s.offset + off : s.offset + off + 4] = val
            out.append((f"series id set +{off}", bytes(b)))
        b = bytearray(data)  # a container's stated cardinality raised
        if data[s.offset : s.offset + 4] == b"\x3a\x30\x00\x00":  # cookie 12346: a uint32 count
            header = s.offset + 8
        else:  # cookie 12347: count - 1 in the high half, then the run bitmap
            header = s.offset + 4 + (struct.unpack_from("<H", data, s.offset + 2)[0] + 8) // 8
        card_at = header + 2
        b[card_at] ^= 0x40
        out.append(("series id set cardinality", bytes(b)))
    mb = trailer.measurement_block
    mt = fmt.MeasurementBlockTrailer.parse(data[mb.offset + mb.size - fmt.MEASUREMENT_BLOCK_TRAILER_SIZE:])
    # the data and hash index sections (the HLL sketches that follow are estimates: not checked)
    for sec in (mt.data, mt.hash_index):
        for _ in range(3):
            b = bytearray(data)
            pos = mb.offset + rng.randrange(sec.offset + (1 if sec is mt.data else 0), sec.offset + sec.size)
            b[pos : pos + 9] = bytes(x ^ 0xA5 for x in b[pos : pos + 9])
            out.append((f"measurement block @{pos}", bytes(b)))
    # every byte of the tag blocks (between the file's magic and the measurement block) counts
    for _ in range(4):
        b = bytearray(data)
        pos = rng.randrange(4, mb.offset)
        b[pos] ^= 0xFF
        out.append((f"tag block @{pos}", bytes(b)))
    out.append(("truncated", data[: n // 2]))
    out.append(("trailer version", data[:-2] + b"\x00\x09"))
    return out


def test_damaged_index_file_is_one_finding_with_file_and_offset(compacted, tmp_path, cli) -> None:
    rng = random.Random(17)
    files = _tsi_files(compacted)
    tried = 0
    for victim in (files[0], files[-1]):
        rel = victim.relative_to(compacted)
        data = victim.read_bytes()
        for kind, bad in _damages(data, rng):
            tree = tmp_path / f"t{tried}"
            shutil.copytree(compacted, tree, symlinks=True)
            (tree / rel).write_bytes(bad)
            tried += 1
            code, out, err = cli("verify", str(tree), "--json")
            doc = json.loads(out)
            errors = [f for f in doc["findings"] if f["severity"] == "error"]
            named = [f for f in errors if f["path"] and f["path"].endswith(str(rel))]
            # the damage may also surface as an index-vs-data error for the same partition, but the
            # damaged file is named with an offset exactly once
            assert code != 0 and len(named) == 1, (kind, errors)
            assert named[0]["offset"] is not None, (kind, named)
            code, out, err = cli("dump-tsi", str((tree / rel).parents[2]))
            assert code == 1 and str(rel) in err and "Traceback" not in err, (kind, err)
            shutil.rmtree(tree)
    assert tried >= 20
