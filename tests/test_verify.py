"""verify / dump-tsm / dump-wal (issue 5): clean on every intact fixture, exact findings on damaged
copies, influxd's own truncated -start/-end tar reported, every damage reported (not only the first)."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from influx_archive.archive.ops.verify import verify
from influx_archive.archive.timefmt import parse_time
from influx_archive.tsm.reader import TSMReader


@pytest.mark.parametrize(
    "name", ["legacy", "portable", "legacy_incremental", "portable_incremental", "live", "portable_range"]
)
def test_intact_fixtures_verify_clean(name, fixtures_dir, cli) -> None:
    proc = cli("verify", str(fixtures_dir / name), "--deep", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["findings"] == [] and doc["blocks"] > 0


@pytest.mark.parametrize("name", ["legacy", "portable", "live", "portable_range_db2"])
def test_the_thread_pool_reports_what_one_thread_does(name, fixtures_dir, monkeypatch) -> None:
    """A small source is checked shard after shard on one thread (SERIAL_BELOW: start-up), a
    larger one on a thread pool: the same report either way, damage included."""
    from influx_archive.archive.ops import verify as module

    pools = []
    original = module.map_on_cores

    def counting(fn, items):
        pools.append(1)
        return original(fn, items)

    monkeypatch.setattr(module, "map_on_cores", counting)
    one_thread = verify(fixtures_dir / name, deep=True).to_dict()
    assert pools == []
    monkeypatch.setattr(module, "SERIAL_BELOW", 0)
    pooled = verify(fixtures_dir / name, deep=True).to_dict()
    assert pools == [1]
    assert pooled == one_thread


def test_influxd_truncated_range_tar_is_an_error(fixtures_dir, cli) -> None:
    proc = cli("verify", str(fixtures_dir / "portable_range_db2"))
    assert proc.returncode == 1
    line = proc.stdout.splitlines()[0]
    assert line.startswith("error: tar archive is truncated")
    assert "s17.tar.gz" in line and "member db2/autogen/17/000000001-000000001.tsm" in line


def _legacy_copy(tmp_path: Path, fixtures_dir: Path) -> Path:
    dst = tmp_path / "legacy"
    shutil.copytree(fixtures_dir / "legacy", dst)
    return dst


def _member_data_offset(tar_path: Path, suffix: str) -> tuple[int, int]:
    with tarfile.open(tar_path) as tf:
        m = next(m for m in tf.getmembers() if m.name.endswith(suffix))
        return m.offset_data, m.size


def test_every_damage_is_reported(tmp_path, fixtures_dir, cli) -> None:
    src = _legacy_copy(tmp_path, fixtures_dir)
    # 1. one flipped byte inside the second block of shard 2's TSM file
    tar2 = src / "db1.autogen.00002.00"
    off, size = _member_data_offset(tar2, ".tsm")
    with open(tar2, "rb") as f:
        f.seek(off)
        reader = TSMReader(__import__("io").BytesIO(f.read(size)), size=size)
    entry = sorted((e for _, _, es in reader.iter_index() for e in es), key=lambda e: e.offset)[1]
    data = bytearray(tar2.read_bytes())
    data[off + entry.offset + 10] ^= 0x01
    tar2.write_bytes(bytes(data))
    # 2. shard 4's tar truncated in the middle of its TSM member
    tar4 = src / "db1.autogen.00004.00"
    off4, size4 = _member_data_offset(tar4, ".tsm")
    tar4.write_bytes(tar4.read_bytes()[: off4 + size4 // 2])
    # 3. a broken meta.NN frame (the older snapshot: the newer one is still used)
    meta = src / "meta.00"
    meta.write_bytes(meta.read_bytes()[:-3])
    # 4. a corrupt tombstone in shard 3
    tar3 = src / "db1.autogen.00003.00"
    offt, sizet = _member_data_offset(tar3, ".tombstone")
    data = bytearray(tar3.read_bytes())
    data[offt + sizet // 2] ^= 0xFF  # inside the compressed payload of the v4 file
    tar3.write_bytes(bytes(data))

    report = verify(src)
    errors = [f for f in report.findings if f.severity == "error"]
    by_file = {Path(f.path).name: f for f in errors}
    assert set(by_file) == {"db1.autogen.00002.00", "db1.autogen.00004.00", "meta.00", "db1.autogen.00003.00"}, errors
    crc = by_file["db1.autogen.00002.00"]
    assert "CRC" in crc.message and crc.member == "db1/autogen/2/000000001-000000001.tsm" and crc.offset == entry.offset
    assert "truncated" in by_file["db1.autogen.00004.00"].message
    assert by_file["db1.autogen.00003.00"].member.endswith(".tombstone")
    proc = cli("verify", str(src))
    assert proc.returncode == 1 and proc.stdout.count("error: ") == 4


def test_missing_portable_shard_file(tmp_path, fixtures_dir) -> None:
    src = tmp_path / "portable"
    shutil.copytree(fixtures_dir / "portable", src)
    victim = sorted(src.glob("*.s5.tar.gz"))[0]
    victim.unlink()
    report = verify(src)
    assert [f.message for f in report.findings if f.severity == "error"] == [
        f"shard file {victim.name} listed by the manifest is missing"
    ]


def test_manifest_size_checked(tmp_path, fixtures_dir) -> None:
    src = tmp_path / "portable"
    shutil.copytree(fixtures_dir / "portable", src)
    manifest = next(src.glob("*.manifest"))
    doc = json.loads(manifest.read_text())
    entry = doc["files"][0]
    entry["size"] += 512
    manifest.write_text(json.dumps(doc, indent=2))
    report = verify(src)
    msgs = [f.message for f in report.findings if f.severity == "error"]
    assert msgs == [f"the manifest records {entry['size']} uncompressed bytes, the file holds {entry['size'] - 512}"]


def test_dump_tsm_inside_a_backup(fixtures_dir, cli) -> None:
    spec = f"{fixtures_dir / 'legacy' / 'db1.hourly.00010.00'}::db1/hourly/10/000000001-000000001.tsm"
    proc = cli("dump-tsm", spec, "--blocks", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    # shard 10 = db1.hourly 05:00-06:00: sensor a (value) and b (value, n), one point a minute
    assert [k["key"] for k in doc["index"]] == [
        "temp,sensor=a#!~#value",
        "temp,sensor=b#!~#n",
        "temp,sensor=b#!~#value",
    ]
    assert [b["count"] for k in doc["index"] for b in k["block_list"]] == [60, 60, 60]
    assert {b["crc"] for k in doc["index"] for b in k["block_list"]} == {"ok"}
    assert [k["type"] for k in doc["index"]] == ["float", "integer", "float"]
    proc = cli("dump-tsm", spec, "--key", "temp,sensor=b*")
    assert proc.returncode == 0 and proc.stdout.count("sensor=b") == 2 and "sensor=a" not in proc.stdout


def test_dump_wal_of_a_live_root(fixtures_dir, cli) -> None:
    proc = cli("dump-wal", f"{fixtures_dir / 'live'}::db1/hourly/21/_00001.wal", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    # fixtures/README.md: sensor=d written 13:00..13:09, the 13:02 point again, then
    # DELETE ... time >= 13:05 AND time < 13:08 (a delete-range entry)
    assert [e["type"] for e in doc["entries"]] == ["write", "write", "delete-range"]
    assert [e["values"] for e in doc["entries"][:2]] == [10, 1]
    assert doc["entries"][0]["key_list"] == ["temp,sensor=d#!~#value"]
    rng = doc["entries"][2]
    assert (rng["min_time"], rng["max_time"]) == (
        parse_time("2026-11-24T13:05:00Z"),
        parse_time("2026-11-24T13:08:00Z") - 1,
    )
    proc = cli("dump-wal", f"{fixtures_dir / 'live'}::nope.wal")
    assert proc.returncode == 2 and "no wal file" in proc.stderr
