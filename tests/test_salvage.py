"""--salvage (issue 5): a damaged backup is refused by default, naming the damage; with --salvage
restore / convert / export keep every intact point, report exactly what was left out, and the
result served by the real influxd equals the source's TRUTH minus exactly the damaged parts."""

from __future__ import annotations

import copy
import io
import json
import shutil
import tarfile
from pathlib import Path

import influxd as harness
import pytest

from influx_archive.archive.timefmt import parse_time
from influx_archive.tsm.keys import parse_series_key, split_key
from influx_archive.tsm.reader import TSMReader

SECTIONS = {"databases", "retention_policies", "fields", "points"}


@pytest.fixture
def damaged(tmp_path, fixtures_dir, truth):
    """A copy of fixtures/legacy with one flipped byte in a block of shard 2 and shard 4's tar cut
    in the middle of its only TSM file; and the TRUTH without exactly those points."""
    src = tmp_path / "legacy"
    shutil.copytree(fixtures_dir / "legacy", src)
    tar2 = src / "db1.autogen.00002.00"
    with tarfile.open(tar2) as tf:
        m = next(m for m in tf.getmembers() if m.name.endswith(".tsm"))
    data = bytearray(tar2.read_bytes())
    reader = TSMReader(io.BytesIO(bytes(data[m.offset_data : m.offset_data + m.size])), size=m.size)
    key, entry = sorted(((k, e) for k, _, es in reader.iter_index() for e in es), key=lambda ke: ke[1].offset)[1]
    data[m.offset_data + entry.offset + 12] ^= 0x40
    tar2.write_bytes(bytes(data))
    tar4 = src / "db1.autogen.00004.00"
    with tarfile.open(tar4) as tf:
        m4 = next(m for m in tf.getmembers() if m.name.endswith(".tsm"))
    tar4.write_bytes(tar4.read_bytes()[: m4.offset_data + m4.size // 2])

    expected = copy.deepcopy(truth("legacy"))
    series, field = split_key(key)
    meas, tags = parse_series_key(series)
    tagmap = {k.decode(): v.decode() for k, v in tags}
    lo4, hi4 = parse_time("2026-11-16T00:00:00Z"), parse_time("2026-11-23T00:00:00Z") - 1  # shard 4
    for s in expected["databases"]["db1"]["data"]["autogen"][meas.decode()]["series"]:
        kept = []
        for t, values in s["points"]:
            if lo4 <= t <= hi4:
                continue
            if s["tags"] == tagmap and entry.min_time <= t <= entry.max_time:
                values = {f: v for f, v in values.items() if f != field.decode()}
            if values:
                kept.append([t, values])
        s["points"] = kept
    lost_values = sum(
        1 for s in truth("legacy")["databases"]["db1"]["data"]["autogen"][meas.decode()]["series"]
        if s["tags"] == tagmap for t, _ in s["points"] if entry.min_time <= t <= entry.max_time
    )
    assert lost_values > 0
    return src, harness.without_dead_fields(expected), entry.offset


def test_damage_refused_without_salvage(damaged, tmp_path, cli) -> None:
    src, _, _offset = damaged
    root = tmp_path / "root"
    for args in (
        ("restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data")),
        ("convert", str(src), str(tmp_path / "out")),
        ("export", str(src), "--out", str(tmp_path / "x.lp")),
    ):
        proc = cli(*args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert "db1.autogen.0000" in proc.stderr
    assert not root.exists() and not (tmp_path / "out").exists() and not (tmp_path / "x.lp").exists()


@pytest.mark.interop
def test_salvage_restore_keeps_every_intact_point(damaged, tmp_path, influxd_factory, cli) -> None:
    src, expected, offset = damaged
    root = tmp_path / "root"
    proc = cli("restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), "--salvage")
    assert proc.returncode == 4, proc.stderr  # EXIT_SALVAGED: data was left out
    assert "truncated" in proc.stderr and "db1.autogen.00004.00" in proc.stderr
    assert "damaged block of key" in proc.stderr and f"offset {offset}" in proc.stderr
    server = influxd_factory(root)
    assert harness.compare_truth(expected, server.dump(), sections=SECTIONS) == []


@pytest.mark.interop
def test_salvage_convert_and_export(damaged, tmp_path, influxd_factory, cli) -> None:
    src, expected, _ = damaged
    out = tmp_path / "portable"
    proc = cli("convert", str(src), str(out), "--to", "portable", "--salvage", "--json")
    assert proc.returncode == 4, proc.stderr  # EXIT_SALVAGED
    findings = json.loads(proc.stdout)["findings"]
    assert {Path(f["path"]).name for f in findings if f["severity"] == "error"} == {
        "db1.autogen.00002.00",
        "db1.autogen.00004.00",
    }
    server = influxd_factory()
    assert server.restore_portable(out).returncode == 0
    assert harness.compare_when_settled(server, expected, sections=SECTIONS) == []

    proc = cli("export", str(src), "--salvage", "--lponly", "--db", "db1", "--rp", "autogen")
    assert proc.returncode == 4, proc.stderr  # EXIT_SALVAGED
    lines = proc.stdout.splitlines()
    points = sum(len(s["points"]) for s in expected["databases"]["db1"]["data"]["autogen"]["cpu"]["series"])
    assert len(lines) == points
