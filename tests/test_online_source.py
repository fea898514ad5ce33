"""A running influxd as a source (--host on inspect, export, verify; archive/sources/remote.py),
against the real influxd 1.6.7."""

from __future__ import annotations

import json
import socket
from collections import Counter

import influxd as harness
import pytest
from live_server import live_server

pytestmark = [pytest.mark.interop, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("live")) as lv:
        yield lv


def truth_by_shard(truth: dict) -> tuple[Counter, Counter]:
    """(points, values) per shard id, placing each point by its shard group's time range."""
    ranges = [(s["database"], s["retention_policy"], harness.rfc3339_to_ns(s["start"]),
               harness.rfc3339_to_ns(s["end"]), s["id"]) for s in truth["shards"]]
    pts: Counter = Counter()
    vals: Counter = Counter()
    for db, d in truth["databases"].items():
        for rp, ms in d["data"].items():
            for e in ms.values():
                for s in e["series"]:
                    for t, v in s["points"]:
                        (sid,) = [i for d2, r2, lo, hi, i in ranges if (d2, r2) == (db, rp) and lo <= t < hi]
                        pts[sid] += 1
                        vals[sid] += len(v)
    return pts, vals


def test_inspect_host_counts_what_the_server_serves(live, cli):
    r = cli("inspect", "--host", live.host, "--points", "--json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["source"]["kind"] == "remote"
    got_pts: Counter = Counter()
    got_vals: Counter = Counter()
    for db in doc["databases"]:
        for rp in db["retention_policies"]:
            for sh in rp["shards"]:
                got_pts[sh["id"]] += sh["points"]
                got_vals[sh["id"]] += sh["values"]
    want_pts, want_vals = truth_by_shard(live.truth)
    assert +got_pts == want_pts and +got_vals == want_vals
    assert {u["name"] for u in doc["users"]} == set(live.truth["users"])
    assert {(c["database"], c["name"]) for c in doc["continuous_queries"]} == {
        (db, n) for db, d in live.truth["databases"].items() for n in d["continuous_queries"]}


def test_export_host_equals_export_of_a_backup(live, cli, tmp_path):
    r = cli("backup", "--host", live.host, str(tmp_path / "b"), "--to", "legacy")
    assert r.code == 0, r.err
    for args in ((), ("--db", "db2"), ("--db", "db1", "--rp", "hourly", "--start", "2026-10-15T01:00:00Z")):
        a = cli("export", "--host", live.host, "--lponly", *args)
        b = cli("export", str(tmp_path / "b"), "--lponly", *args)
        assert a.code == 0 and b.code == 0, (a.err, b.err)
        assert a.out == b.out and a.out
    lines = cli("export", "--host", live.host, "--lponly").out.splitlines()
    assert len(lines) == sum(truth_by_shard(live.truth)[0].values())  # one line per point


def test_verify_host(live, cli):
    r = cli("verify", "--host", live.host, "--deep", "--json")
    assert r.code == 0, r.err
    rep = json.loads(r.out)
    assert not [f for f in rep["findings"] if f["severity"] == "error"]
    assert rep["files"] >= len(live.truth["shards"])


def test_host_errors_are_one_line(live, cli, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    for verb in (("inspect",), ("verify",), ("export",)):
        r = cli(*verb, "--host", f"127.0.0.1:{port}")
        assert r.code == 3 and "connection refused" in r.err and len(r.err.strip().splitlines()) == 1, r.err
        r = cli(*verb, str(tmp_path), "--host", live.host)
        assert r.code == 2 and "not both" in r.err, r.err
        r = cli(*verb, "--host", "[::1")
        assert r.code == 2, r.err
