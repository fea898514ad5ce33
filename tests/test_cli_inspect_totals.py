"""``inspect``: shards the metastore lists without data, and ``--points`` totals per database and
overall, checked against the points influxd served (the fixtures' TRUTH)."""

from __future__ import annotations

import json
import shutil

import pytest


def _truth_counts(truth: dict) -> dict[str, tuple[int, int]]:
    """(points, values) per database as influxd served them."""
    out = {}
    for db, d in truth["databases"].items():
        points = values = 0
        for rp in d["data"].values():
            for m in rp.values():
                for series in m["series"]:
                    points += len(series["points"])
                    values += sum(sum(v is not None for v in fields.values()) for _t, fields in series["points"])
        out[db] = (points, values)
    return out


@pytest.mark.parametrize("name", ["legacy", "portable", "live"])
def test_points_totals_match_what_influxd_served(cli, fixtures_dir, truth, name) -> None:
    proc = cli("inspect", fixtures_dir / name, "--points", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    want = _truth_counts(truth(name))
    got = {db: (t["points"], t["values"]) for db, t in doc["totals"]["databases"].items()}
    assert got == want
    assert doc["totals"]["points"] == sum(p for p, _ in want.values())
    assert doc["totals"]["values"] == sum(v for _, v in want.values())
    text = cli("inspect", fixtures_dir / name, "--points").stdout
    for db, (p, v) in want.items():
        assert f"total {db}: {p} points ({v} values)" in text
    assert f"total: {sum(p for p, _ in want.values())} points" in text


def test_no_totals_without_points(cli, fixtures_dir) -> None:
    doc = json.loads(cli("inspect", fixtures_dir / "legacy", "--json").stdout)
    assert "totals" not in doc


@pytest.mark.parametrize("gone", [("db1", "autogen", 2), ("db1", "hourly", 9), ("db2", "short", 19)])
def test_metastore_shards_without_data_are_shown(cli, fixtures_dir, tmp_path, gone) -> None:
    root = tmp_path / "live"
    shutil.copytree(fixtures_dir / "live", root)
    db, rp, sid = gone
    shutil.rmtree(root / "data" / db / rp / str(sid))
    shutil.rmtree(root / "wal" / db / rp / str(sid), ignore_errors=True)
    doc = json.loads(cli("inspect", root, "--json").stdout)
    entries = {(d["name"], r["name"], s["id"]): s for d in doc["databases"] for r in d["retention_policies"]
               for s in r["shards"]}
    assert entries[gone]["no_data"] is True and entries[gone]["files"] == 0
    assert sum(e["no_data"] for e in entries.values()) == 1
    text = cli("inspect", root).stdout
    assert f"shard {sid}:" in text and "no data in this source" in text


def _influx_inspect() -> str:
    import os

    path = os.environ.get("INFLUX_INSPECT")
    assert path and os.path.exists(path), "INFLUX_INSPECT must name influx_inspect 1.6.7"
    return path


@pytest.mark.interop
@pytest.mark.parametrize("name", ["live", "legacy"])
def test_verify_deep_counts_values_per_shard_like_influx_inspect(cli, fixtures_dir, tmp_path, name) -> None:
    """Values decoded per shard = influx_inspect dumptsm's "Points: Total" summed over the shard's TSM
    files (read without their tombstones: influx_inspect leaves deleted keys out, verify decodes
    every block)."""
    import re
    import subprocess

    src = fixtures_dir / name
    if name == "legacy":  # influx_inspect reads loose files: restore the tars first
        assert cli("restore", src, "--metadir", tmp_path / "m", "--datadir", tmp_path / "d").returncode == 0
        data = tmp_path / "d"
    else:
        shutil.copytree(src / "data", tmp_path / "d")
        data = tmp_path / "d"
    for tomb in data.glob("*/*/*/*.tombstone"):
        tomb.unlink()
    proc = cli("verify", src, "--deep", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    got = {(s["database"], s["retention_policy"], s["id"]): s["values"] for s in doc["shards"]}
    want = {}
    for tsm in sorted(data.glob("*/*/*/*.tsm")):
        out = subprocess.run([_influx_inspect(), "dumptsm", str(tsm)], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        m = re.search(r"Points:\s+Total: (\d+)", out)
        assert m, out
        db, rp, sid = tsm.parent.parent.parent.name, tsm.parent.parent.name, int(tsm.parent.name)
        want[(db, rp, sid)] = want.get((db, rp, sid), 0) + int(m.group(1))
    assert {k: v for k, v in got.items() if v} == want
    assert doc["values"] == sum(got.values())
    text = cli("verify", src, "--deep").stdout
    for (db, rp, sid), n in got.items():
        assert f"shard {db}/{rp}/{sid}: {n} values" in text
