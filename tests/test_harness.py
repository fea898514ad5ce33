"""The real-influxd harness (``fixtures/influxd.py``) and the committed fixtures.

Every test here starts the real influxd 1.6.7 on 127.0.0.1 (free ports) or reads what it wrote.
Expected values come from the line protocol written in the test or from independent reasoning
about influxd's documented behaviour, never from the harness itself.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import struct
from pathlib import Path

import influxd
import pytest
from make_fixtures import FIXTURES

NS = 1_000_000_000


def bits(x: float) -> bytes:
    return struct.pack(">d", x)


def points_of(truth: dict, db: str, rp: str, m: str) -> dict[tuple, list]:
    return {
        tuple(sorted(s["tags"].items())): s["points"]
        for s in truth["databases"][db]["data"][rp][m]["series"]
    }


@pytest.mark.interop
def test_server_exact_round_trip(influxd_factory, tmp_path: Path) -> None:
    server = influxd_factory()
    assert server.running and server.host == f"127.0.0.1:{server.rpc_port}"
    server.execute('CREATE DATABASE "d b"')
    lp = (
        "x,k=v f=-0.0,g=0.0,h=1.0,big=9223372036854775807i,small=-9223372036854775808i,"
        "odd=9007199254740993i,tiny=5e-324 1\n"
        r"we\ ird\,m,t\ a\=g=v\,a\ l\=ue f\ i\=e\,ld=2.5 2" "\n"
        'température,città=zürich wert=1,s="日本 \\"q\\" \\\\" 3\n'
    )
    server.write(lp, db="d b")
    truth = server.dump()
    data = truth["databases"]["d b"]["data"]["autogen"]

    [(t, x)] = data["x"]["series"][0]["points"]
    assert t == 1
    assert bits(x["f"]) == bits(-0.0) and bits(x["g"]) == bits(0.0)
    assert type(x["h"]) is float and x["h"] == 1.0
    assert (x["big"], x["small"], x["odd"]) == (2**63 - 1, -(2**63), 2**53 + 1)
    assert x["tiny"] == 5e-324
    assert data["x"]["fields"]["big"] == "integer" and data["x"]["fields"]["f"] == "float"

    weird = data["we ird,m"]["series"][0]
    assert weird["tags"] == {"t a=g": "v,a l=ue"} and weird["points"] == [[2, {"f i=e,ld": 2.5}]]
    temp = data["température"]["series"][0]
    assert temp["tags"] == {"città": "zürich"}
    assert temp["points"] == [[3, {"wert": 1.0, "s": '日本 "q" \\'}]]

    # save/load keeps every value exact, including the sign of zero and the int/float split
    path = tmp_path / "t.truth.json"
    influxd.save_truth(path, truth)
    assert '{"float": "-0.0"}' in path.read_text(encoding="utf-8")
    again = influxd.load_truth(path)
    assert influxd.compare_truth(truth, again) == []
    [(_, y)] = again["databases"]["d b"]["data"]["autogen"]["x"]["series"][0]["points"]
    assert bits(y["f"]) == bits(-0.0) and type(y["h"]) is float and type(y["big"]) is int

    pid = server.pid
    server.stop()
    server.stop()  # idempotent
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.interop
def test_query_and_write_errors_raise(influxd_factory) -> None:
    server = influxd_factory()
    with pytest.raises(influxd.InfluxdError, match="database not found"):
        server.execute("SELECT * FROM m", "nope")
    with pytest.raises(influxd.InfluxdError, match="HTTP 404"):
        server.write("m f=1 1", db="nope")
    server.execute("CREATE DATABASE d")
    with pytest.raises(influxd.InfluxdError, match="HTTP 400"):
        server.write("m f=", db="d")


@pytest.mark.interop
def test_dump_pages_through_large_series(influxd_factory) -> None:
    """25,000 rows of one series span three 10,000-row chunks; the dump must hold all, in order."""
    server = influxd_factory()
    server.execute("CREATE DATABASE big")
    n = 25_000
    server.write("".join(f"m v={k}i {k * NS}\n" for k in range(n)), db="big")
    [series] = server.dump()["databases"]["big"]["data"]["autogen"]["m"]["series"]
    assert series["points"] == [[k * NS, {"v": k}] for k in range(n)]


@pytest.mark.slow
def test_compare_truth_reports_injected_differences(truth) -> None:
    expected = truth("legacy")
    actual = copy.deepcopy(expected)
    assert influxd.compare_truth(expected, actual) == []

    cpu = actual["databases"]["db1"]["data"]["autogen"]["cpu"]["series"][0]
    host = cpu["tags"]["host"]
    t0, fields0 = cpu["points"][0]
    fields0["v"] = -fields0["v"]  # different value
    t1, _ = cpu["points"].pop(1)  # missing point
    fl = actual["databases"]["db2"]["data"]["autogen"]["fl"]["series"][0]["points"]
    t_neg0, v = fl[0]
    assert bits(v["x"]) == bits(-0.0)
    v["x"] = 0.0  # -0.0 vs 0.0 must count as a difference
    actual["databases"]["db1"]["retention_policies"]["hourly"]["default"] = True
    actual["users"]["reader"]["grants"]["db1"] = "WRITE"

    diffs = influxd.compare_truth(expected, actual, max_diffs=100)
    text = "\n".join(diffs)
    assert f"db1.autogen cpu,host={host} t={t0} " in text and "field v" in text
    assert f"db1.autogen cpu,host={host} t={t1} " in text and "missing point" in text
    assert f"db2.autogen fl,k=v t={t_neg0} " in text and "expected -0.0 (float), got 0.0 (float)" in text
    assert "db1: retention policy hourly" in text
    assert "user reader" in text
    assert len(diffs) == 5

    # filters: by database, by time (inclusive bounds), by section, and the max_diffs cap
    only_db2 = influxd.compare_truth(expected, actual, databases=["db2"], sections={"points"})
    assert len(only_db2) == 1 and "fl,k=v" in only_db2[0]
    window = influxd.compare_truth(expected, actual, start=t1, end=t1, sections={"points"})
    assert len(window) == 1 and f"t={t1}" in window[0]
    assert influxd.compare_truth(expected, actual, start=t1 + 1, end=t1 + 1, sections={"points"}) == []
    capped = influxd.compare_truth(expected, actual, max_diffs=2)
    assert len(capped) == 2 and capped[-1] == "... and 4 more differences"


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_truth_loads_and_is_not_empty(name: str, fixtures_dir: Path, truth) -> None:
    folder = fixtures_dir / name
    assert folder.is_dir() and any(folder.iterdir())
    t = truth(name)
    assert {"db1", "db2"} <= set(t["databases"])
    assert t["users"]["root"]["admin"] is True
    assert t["users"]["reader"]["grants"] == {"db1": "READ", "db2": "ALL PRIVILEGES"}
    assert "cq1" in t["databases"]["db1"]["continuous_queries"]
    assert "sub1" in t["databases"]["db1"]["subscriptions"]["autogen"]
    # 20 days x 48 half-hours x 3 hosts were written to db1.autogen.cpu
    n_cpu = sum(len(p) for p in points_of(t, "db1", "autogen", "cpu").values())
    assert n_cpu > 2500
    assert any(sh["id"] == 10 and sh["retention_policy"] == "hourly" for sh in t["shards"])
    xs = [v["x"] for _, v in t["databases"]["db2"]["data"]["autogen"]["fl"]["series"][0]["points"]]
    assert bits(xs[0]) == bits(-0.0) and max(xs) == 1.7976931348623157e308 and 5e-324 in xs
    assert not any(math.isnan(x) for x in xs)


@pytest.mark.slow
def test_tombstones_are_in_the_truth(truth) -> None:
    """The fixtures' DELETE / DROP SERIES are visible to clients in the TRUTH after them."""
    before, after = truth("portable_range"), truth("legacy")
    h1_before = points_of(before, "db1", "autogen", "cpu")[(("host", "h1"),)]
    h1_after = points_of(after, "db1", "autogen", "cpu")[(("host", "h1"),)]
    lo, hi = influxd.rfc3339_to_ns("2026-11-10T00:00:00Z"), influxd.rfc3339_to_ns("2026-11-11T00:00:00Z")
    deleted = [t for t, _ in h1_before if lo <= t < hi]
    assert len(deleted) == 48  # one day of half-hours
    assert len(h1_after) == len(h1_before) - 48
    assert (("sensor", "b"),) in points_of(before, "db1", "hourly", "temp")
    assert (("sensor", "b"),) not in points_of(after, "db1", "hourly", "temp")


@pytest.mark.interop
def test_server_on_copy_of_live_serves_live_truth(influxd_factory, fixtures_dir: Path, tmp_path: Path, truth) -> None:
    root = tmp_path / "live"
    shutil.copytree(fixtures_dir / "live", root)
    assert any(p.stat().st_size > 0 for p in (root / "wal").rglob("*.wal"))
    server = influxd_factory(root, cold="1h")
    assert influxd.compare_truth(truth("live"), server.dump(), max_diffs=50) == []


@pytest.mark.interop
def test_offline_restore_of_legacy_reproduces_shard_10_bug(
    fixtures_dir: Path, tmp_path: Path, influxd_factory, truth
) -> None:
    """Why this project exists (docs/formats.md#offline-restore): ``influxd restore`` strips
    leading AND trailing zeros from the shard ID in ``db1.hourly.00010.00``, so shard 10's files
    land in ``data/db1/hourly/1``, a directory no metastore entry points to. After the "successful"
    restore the hour 2026-11-24T05:00-06:00 of db1.hourly is silently empty."""
    backup = tmp_path / "legacy"
    shutil.copytree(fixtures_dir / "legacy", backup)
    root = tmp_path / "restored"
    influxd.restore_offline(backup, root / "meta", root / "data", "-database", "db1")
    hourly = root / "data" / "db1" / "hourly"
    assert (hourly / "1").is_dir() and any((hourly / "1").glob("*.tsm"))
    assert not (hourly / "10").exists()

    server = influxd_factory(root)
    expected = truth("legacy")
    actual = server.dump()
    lo = influxd.rfc3339_to_ns("2026-11-24T05:00:00Z")
    hi = lo + 3600 * NS - 1
    lost = [t for t, _ in points_of(expected, "db1", "hourly", "temp")[(("sensor", "a"),)] if lo <= t <= hi]
    assert len(lost) == 60  # sensor a, one point a minute (sensor b was dropped before the backup)
    diffs = influxd.compare_truth(expected, actual, databases=["db1"], sections={"points"}, max_diffs=1000)
    hourly = [d for d in diffs if d.startswith("db1.hourly ")]
    assert len(hourly) == 60
    assert all(d.startswith("db1.hourly temp,sensor=a t=") and "missing point" in d for d in hourly)
    assert [d for d in hourly if "(2026-11-24T05:" not in d] == []
    res = server.series('SELECT count(value) FROM "hourly"."temp" WHERE time >= \'2026-11-24T05:00:00Z\' '
                        "AND time < '2026-11-24T06:00:00Z'", "db1")
    assert res == []  # no rows at all: the data is on disk but invisible

    # Worse, data/db1/autogen/1 (shard 1) and the misplaced data/db1/hourly/1 now share ID 1 and
    # influxd keeps whichever opened last (docs/formats.md#restored-server). Depending on the run,
    # either all else is intact, or shard 1 serves the hourly files: its 144 cpu points of
    # 2026-11-01 vanish and the 60 lost temp points show up in the wrong RP, db1.autogen.
    others = [d for d in diffs if d not in hourly]
    if others:
        missing_cpu = [d for d in others if d.startswith("db1.autogen cpu,host=") and "(2026-11-01T" in d
                       and "missing point" in d]
        stray_temp = [d for d in others if d.startswith("db1.autogen temp,sensor=a t=")
                      and "(2026-11-24T05:" in d and "unexpected point" in d]
        assert (len(missing_cpu), len(stray_temp), len(others)) == (144, 60, 204)
