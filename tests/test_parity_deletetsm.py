"""``deletetsm -measurement NAME [-sanitize] FILE...``: checked by starting influxd on the result
(the measurement is gone, every other point, field type and series equal to the TRUTH taken
before), its tombstones kept consistent (made by influxd's own DELETE), against InfluxData's own
``influx_inspect deletetsm`` on a copy (the same keys and values left), refused under a running
influxd, and a generator of hostile inputs (damaged files, FIFOs, links): one line, nothing
changed, no temporary left."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import influxd as harness
import pytest
from parity_helpers import run_inspect
from test_parity_report import _variants

from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.tombstone import read_tombstones
from influx_archive.tsm.writer import TSMWriter

T0 = 1793491200000000000


def _state(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(d.rglob("*"))}


def _content(path: Path) -> dict[bytes, tuple[list[int], list]]:
    with TSMReader.open(path) as r:
        return {k: r.read_key(k) for k in r.keys()}


def _without(truth: dict, db: str, measurement: str) -> dict:
    out = json.loads(json.dumps(truth))
    for rp in out["databases"][db]["data"].values():
        rp.pop(measurement, None)
    return out


@pytest.mark.interop
def test_influxd_serves_everything_but_the_measurement(tmp_path, influxd_factory, cli) -> None:
    """Points of two measurements in one TSM file, tombstones of both made by influxd's DELETE."""
    root = tmp_path / "root"
    server = influxd_factory(root, cold="1s")
    server.execute("CREATE DATABASE d")
    lines = []
    for i in range(300):
        lines.append(f"gone,host=h{i % 3} v={i}.5,n={i}i {T0 + i * 10**9}")
        lines.append(f'kept,host=h{i % 4},dc=x v={i * 2}.25,s="s{i}" {T0 + i * 10**9}')
    server.write("\n".join(lines), db="d")
    shard = next((root / "data" / "d" / "autogen").glob("*"))
    deadline = time.monotonic() + 60
    while not list(shard.glob("*.tsm")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(shard.glob("*.tsm"))
    server.execute(f"DELETE FROM gone WHERE host = 'h1' AND time < {T0 + 100 * 10**9}", db="d")
    server.execute(f"DELETE FROM kept WHERE host = 'h2' AND time < {T0 + 50 * 10**9}", db="d")
    truth = harness.without_dead_fields(server.dump())
    server.stop()
    tombs = list(shard.glob("*.tombstone"))
    assert tombs, "influxd wrote no tombstone: the test would prove nothing"
    before = {bytes(t.key) for t in read_tombstones(tombs[0].open("rb"))}
    assert any(k.startswith(b"gone,") for k in before) and any(k.startswith(b"kept,") for k in before)

    proc = cli("deletetsm", "-measurement", "gone", *sorted(shard.glob("*.tsm")))
    assert proc.code == 0, proc.err
    for tsm in shard.glob("*.tsm"):
        assert not any(k.startswith(b"gone,") for k in _content(tsm))
    after = [bytes(t.key) for t in read_tombstones(tombs[0].open("rb"))]
    assert after and not any(k.startswith(b"gone,") for k in after)
    assert set(after) == {k for k in before if not k.startswith(b"gone,")}
    assert not [p for p in shard.iterdir() if ".tmp-" in p.name]

    server = influxd_factory(root)
    got = server.dump()
    assert "gone" not in json.dumps(server.series("SHOW MEASUREMENTS", db="d"))
    assert harness.compare_truth(_without(truth, "d", "gone"), got, sections={"points", "fields"}) == []


def _copy_file(src: Path, dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True)
    shutil.copy(src, dest_dir / src.name)
    return dest_dir / src.name


@pytest.mark.interop
@pytest.mark.parametrize("measurement", ["m", "in", "we ird,m", "température", "no-such"])
def test_same_result_as_influx_inspect(measurement, tmp_path, fixtures_dir, cli) -> None:
    src = next((fixtures_dir / "live" / "data" / "db2" / "autogen" / "17").glob("*.tsm"))
    ours = _copy_file(src, tmp_path / "ours")
    ref = _copy_file(src, tmp_path / "ref")
    proc = cli("deletetsm", "-measurement", measurement, ours)
    assert proc.code == 0, proc.err
    r = run_inspect("deletetsm", "-measurement", measurement, ref)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _content(ours) == _content(ref)
    if measurement == "no-such":
        assert ours.read_bytes() == src.read_bytes()  # nothing to remove: not rewritten


def _hostile_keys_file(path: Path) -> dict[bytes, bool]:
    """A TSM file whose keys are printable or not; returns key -> whether -sanitize keeps it."""
    keys = {
        b"ok,host=a#!~#v": True,
        b"ok,host=caf\xc3\xa9#!~#v": True,
        b"bad\x01m,host=a#!~#v": False,
        b"badtag,h\x7fst=a#!~#v": False,
        b"badval,host=\xff#!~#v": False,
        b"repl,host=\xef\xbf\xbd#!~#v": False,  # U+FFFD
        b"zw,host=a\xe2\x80\x8bb#!~#v": False,  # U+200B, a format character
        b"nbsp,host=a\xc2\xa0b#!~#v": False,  # U+00A0, a space that is not ASCII's
    }
    with open(path, "wb") as f:
        w = TSMWriter(f)
        for k in sorted(keys):
            w.write_values(k, 0, [T0, T0 + 1], [1.5, 2.5])
        w.close()
    return keys


@pytest.mark.interop
def test_sanitize_same_as_influx_inspect(tmp_path, cli) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "ref").mkdir()
    keys = _hostile_keys_file(tmp_path / "ours" / "000000001-000000001.tsm")
    shutil.copy(tmp_path / "ours" / "000000001-000000001.tsm", tmp_path / "ref")
    proc = cli("deletetsm", "-sanitize", tmp_path / "ours" / "000000001-000000001.tsm")
    assert proc.code == 0, proc.err
    r = run_inspect("deletetsm", "-sanitize", tmp_path / "ref" / "000000001-000000001.tsm")
    assert r.returncode == 0, r.stdout + r.stderr
    left = _content(tmp_path / "ours" / "000000001-000000001.tsm")
    assert set(left) == {k for k, keep in keys.items() if keep}
    assert left == _content(tmp_path / "ref" / "000000001-000000001.tsm")


@pytest.mark.interop
def test_refused_while_influxd_runs(tmp_path, fixtures_dir, influxd_factory, cli) -> None:
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root)
    influxd_factory(root)
    files = sorted((root / "data" / "db1" / "autogen").rglob("*.tsm"))
    before = _state(root / "data")
    proc = cli("deletetsm", "-measurement", "cpu", *files)
    assert proc.code == 5, proc
    assert "influxd" in proc.err and proc.err.count("\n") == 1
    assert _state(root / "data") == before


def test_whole_file_removed_with_its_tombstone(tmp_path, fixtures_dir, cli) -> None:
    shard = tmp_path / "3"
    shutil.copytree(fixtures_dir / "live" / "data" / "db1" / "autogen" / "3", shard)
    assert list(shard.glob("*.tombstone"))
    proc = cli("deletetsm", "-measurement", "cpu", "--json", *shard.glob("*.tsm"))
    assert proc.code == 0, proc.err
    doc = json.loads(proc.out)
    assert [f["action"] for f in doc["files"]] == ["removed"]
    assert not list(shard.glob("*.tsm")) and not list(shard.glob("*.tombstone"))


def test_dry_run_and_usage_errors(tmp_path, fixtures_dir, cli) -> None:
    shard = tmp_path / "17"
    shutil.copytree(fixtures_dir / "live" / "data" / "db2" / "autogen" / "17", shard)
    tsm = next(shard.glob("*.tsm"))
    before = _state(shard)
    proc = cli("deletetsm", "-measurement", "m", "--dry-run", "--json", tsm)
    assert proc.code == 0 and json.loads(proc.out)["files"][0]["action"] == "rewritten"
    assert _state(shard) == before
    for args in [(tsm,), ("-measurement", "m"), ("-measurement", "m", shard / "x.tsm"),
                 ("-measurement", "m", shard), ("-measurement", "m", shard / "fields.idx")]:
        proc = cli("deletetsm", *args)
        assert proc.code == 2, (args, proc)
        assert proc.err.count("\n") == 1 and proc.err.startswith("influx-archive: error: "), proc.err
    assert _state(shard) == before


def test_hostile_files_left_as_they_were(tmp_path, fixtures_dir, cli) -> None:
    good = next((fixtures_dir / "live" / "data" / "db2" / "autogen" / "17").glob("*.tsm")).read_bytes()
    n = 0
    for name, blob in _variants(good):
        d = tmp_path / name
        d.mkdir()
        tsm = d / "000000001-000000001.tsm"
        tsm.write_bytes(blob)
        other = d / "000000002-000000001.tsm"
        other.write_bytes(good)
        before = _state(d)
        # the damaged file comes first: the good one after it is not touched either
        proc = cli("deletetsm", "-measurement", "m", tsm, other)
        assert proc.code == 1, (name, proc)
        assert proc.err.count("\n") == 1 and str(tsm) in proc.err and "Traceback" not in proc.err, proc.err
        assert _state(d) == before, name
        n += 1
    assert n >= 15
    for kind in ("fifo", "link", "dangling", "dir"):
        d = tmp_path / kind
        d.mkdir()
        bad = d / "000000001-000000001.tsm"
        if kind == "fifo":
            os.mkfifo(bad)
        elif kind == "link":
            (d / "real").write_bytes(good)
            bad.symlink_to(d / "real")
        elif kind == "dangling":
            bad.symlink_to(d / "nothing")
        else:
            bad.mkdir()
        before = _state(d)
        proc = cli("deletetsm", "-measurement", "m", bad)
        assert proc.code == 2, (kind, proc)
        assert proc.err.count("\n") == 1 and str(bad) in proc.err, proc.err
        assert _state(d) == before
