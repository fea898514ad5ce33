"""The series file partitions' hash ``index`` (tsm/tsi1/seriesindex.py): the files influxd's own
SeriesPartitionCompactor writes (a Go program on influxd 1.6.7's tsdb package, compaction
threshold lowered) pass, and so do ours (seriesfile.build_index); damage — every header field,
slots swapped, cleared, pointed elsewhere, the file cut — is one finding of ``verify`` on a
server root, naming the index file and an offset, and never goes unnoticed."""

from __future__ import annotations

import json
import random
import shutil
import struct
from pathlib import Path

import pytest
from goprog import build_go_program
from test_tsi1_format import GO_INDEX, sfile_key_reader

from influx_archive.archive.errors import FormatError
from influx_archive.tsm.tsi1 import format as fmt
from influx_archive.tsm.tsi1 import seriesfile as sf
from influx_archive.tsm.tsi1.seriesindex import check_series_index

pytestmark = pytest.mark.slow
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="module")
def influxd_series_file(tmp_path_factory) -> Path:
    import subprocess

    tmp = tmp_path_factory.mktemp("sidx")
    tool = build_go_program(GO_INDEX, tmp, "the series index differential")
    sdir = tmp / "_series"
    subprocess.run([str(tool), str(sdir)], check=True, timeout=120)
    return sdir


def test_influxds_index_files_pass(influxd_series_file) -> None:
    sfile = sf.SeriesFile(influxd_series_file)
    for p in sfile.partitions:
        assert p.has_index
        check_series_index(str(Path(p.path) / fmt.INDEX_FILE_NAME), p)


def test_ours_pass(influxd_series_file, tmp_path) -> None:
    sdir = tmp_path / "_series"
    shutil.copytree(influxd_series_file, sdir)
    for p in sf.SeriesFile(sdir).partitions:
        ipath = Path(p.path) / fmt.INDEX_FILE_NAME
        ipath.write_bytes(sf.build_index(p, sfile_key_reader(p)))
        check_series_index(str(ipath), p)


def _damages(data: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    hdr = fmt.SeriesIndexHeader.parse(data)
    cap, k0, i0 = hdr.capacity, hdr.key_id_map.offset, hdr.id_offset_map.offset
    out = []
    for name, at in (("magic", 0), ("version", 4), ("max id", 5), ("max offset", 13), ("count", 21),
                     ("capacity", 29), ("key map offset", 37), ("key map size", 45), ("id map offset", 53),
                     ("id map size", 61)):
        b = bytearray(data)
        b[at + (0 if name in ("magic", "version") else 7)] ^= 0x5A
        out.append((f"header {name}", bytes(b)))
    for base, what in ((k0, "key"), (i0, "id")):
        full = [i for i in range(cap) if data[base + 16 * i : base + 16 * i + 16] != bytes(16)]
        empty = [i for i in range(cap) if i not in set(full)]
        for _ in range(3):
            i = rng.choice(full)
            b = bytearray(data)
            b[base + 16 * i : base + 16 * i + 16] = bytes(16)  # a series dropped from the map
            out.append((f"{what} slot {i} cleared", bytes(b)))
            j = rng.choice(full)
            b = bytearray(data)
            b[base + 16 * i + 8 : base + 16 * i + 16], b[base + 16 * j + 8 : base + 16 * j + 16] = (
                data[base + 16 * j + 8 : base + 16 * j + 16], data[base + 16 * i + 8 : base + 16 * i + 16])
            if b != data:
                out.append((f"{what} slots {i},{j} values swapped", bytes(b)))
            if empty:
                e = rng.choice(empty)
                b = bytearray(data)  # an element moved to a slot its lookup never reaches
                b[base + 16 * e : base + 16 * e + 16] = data[base + 16 * i : base + 16 * i + 16]
                b[base + 16 * i : base + 16 * i + 16] = bytes(16)
                out.append((f"{what} slot {i} moved to {e}", bytes(b)))
            b = bytearray(data)
            struct.pack_into(">Q", b, base + 16 * i + (0 if what == "key" else 8), 0x12345)
            out.append((f"{what} slot {i} offset elsewhere", bytes(b)))
    out.append(("cut", data[: len(data) - 17]))
    out.append(("header only", data[:40]))
    return out


def _server_root(tmp: Path, sdir: Path, cli) -> Path:
    """A server root (the live fixture restored) with one more database directory whose series
    file is ``sdir`` and whose one shard has a tsi1 index (empty), so verify reads the series file."""
    root = tmp / "root"
    r = cli("restore", str(FIXTURES / "live"), "--metadir", str(root / "meta"), "--datadir", str(root / "data"),
            "--waldir", str(root / "wal"))
    assert r.code == 0, r.err
    db = root / "data" / "sidx"
    shutil.copytree(sdir, db / fmt.SERIES_FILE_DIR)
    idx = db / "autogen" / "1" / fmt.INDEX_DIR
    from influx_archive.archive.ops.tsiwrite import write_index_dir

    (db / "autogen" / "1").mkdir(parents=True)
    write_index_dir(str(idx), [[] for _ in range(fmt.INDEX_PARTITION_N)])
    return root


def test_damage_is_one_finding_naming_the_file(influxd_series_file, tmp_path, cli) -> None:
    rng = random.Random(3)
    root = _server_root(tmp_path, influxd_series_file, cli)
    sfile = sf.SeriesFile(root / "data" / "sidx" / fmt.SERIES_FILE_DIR)
    code, out, err = cli("verify", str(root), "--json")
    doc = json.loads(out)
    assert "findings" in doc, (code, out, err)
    assert not [f for f in doc["findings"] if f["severity"] == "error"], doc["findings"]
    tried = 0
    for p in (sfile.partitions[0], sfile.partitions[5]):
        ipath = Path(p.path) / fmt.INDEX_FILE_NAME
        good = ipath.read_bytes()
        for kind, bad in _damages(good, rng):
            ipath.write_bytes(bad)
            tried += 1
            with pytest.raises(FormatError) as exc:
                check_series_index(str(ipath), sf.read_partition(p.path, p.id))
            assert exc.value.path == str(ipath) and exc.value.offset is not None, kind
            code, out, err = cli("verify", str(root), "--json")
            errors = [f for f in json.loads(out)["findings"] if f["severity"] == "error"]
            assert code == 1 and len(errors) == 1, (kind, errors)
            assert errors[0]["path"].endswith(f"{p.id:02x}/index") and errors[0]["offset"] is not None, kind
        ipath.write_bytes(good)
    assert tried >= 40
