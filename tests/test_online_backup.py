"""Online backup against the real influxd 1.6.7: backup --host -> our offline restore -> influxd
serves exactly the live server's truth (every point, field type, RP, user, grant, CQ); --start/--end
exact to the point; and what influxd's own backup/restore loses on the same server."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time
from pathlib import Path

import influxd as harness
import pytest
from live_server import DAY, MIN, T0, live_server

pytestmark = [pytest.mark.interop, pytest.mark.slow]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("live")) as lv:
        yield lv


def restore_and_serve(cli, backup: Path, root: Path, factory, *args: str):
    r = cli("restore", str(backup), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), *args)
    assert r.code == 0, r.err
    return factory(root)


def points(truth: dict):
    """(db, rp, measurement, tags, t) of every point."""
    for db, d in truth["databases"].items():
        for rp, ms in d["data"].items():
            for m, e in ms.items():
                for s in e["series"]:
                    for t, _ in s["points"]:
                        yield db, rp, m, tuple(sorted(s["tags"].items())), t


def settled_dump(server, at_least: int) -> dict:
    """The server's truth once it serves ``at_least`` points (influxd's online restore returns
    before its shards land, and queries meanwhile fail with "shard is disabled"), or after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        try:
            got = server.dump()
            if sum(1 for _ in points(got)) >= at_least or time.monotonic() > deadline:
                return got
        except harness.InfluxdError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def tars_of(backup: Path) -> dict[str, list[str]]:
    out = {}
    for p in sorted(backup.iterdir()):
        if p.name.endswith(".tar.gz"):
            data = gzip.decompress(p.read_bytes())
        elif p.suffix[1:].isdigit() and not p.name.startswith(("meta.", ".")):
            data = p.read_bytes()
        else:
            continue
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            out[p.name] = [m.name for m in tf]
    return out


@pytest.mark.parametrize("to", ["portable", "legacy"])
def test_full_backup_restores_to_the_truth(live, to, tmp_path, cli, influxd_factory):
    dest = tmp_path / "b"
    r = cli("backup", "--host", live.host, str(dest), "--to", to, "--json")
    assert r.code == 0, r.err
    result = json.loads(r.out)
    ids = sorted(sh["id"] for sh in live.truth["shards"])
    assert sorted(s["id"] for s in result["shards"]) == ids
    names = sorted(p.name for p in dest.iterdir())
    tars = tars_of(dest)
    if to == "legacy":
        assert "meta.00" in names
        assert ".influx-archive-run.00" in names  # when the run started, for later --since increments
        assert sorted(tars) == sorted(f"{s['database']}.{s['retention_policy']}.{s['id']:05d}.00"
                                      for s in live.truth["shards"])
        # tombstones kept, as the server sent them (an offline restore copies them)
        assert sum(n.endswith(".tombstone") for ms in tars.values() for n in ms) == len(live.tombstones)
    else:
        stamps = {n.split(".")[0] for n in names}
        assert len(stamps) == 1
        ts = stamps.pop()
        assert sorted(names) == sorted([f"{ts}.meta", f"{ts}.manifest"] + [f"{ts}.s{i}.tar.gz" for i in ids])
        # tombstones applied into the data: influxd's own restores ignore .tombstone files
        assert not any(n.endswith(".tombstone") for ms in tars.values() for n in ms)
        manifest = json.loads((dest / f"{ts}.manifest").read_text())
        assert all(f["lastModified"] > 0 for f in manifest["files"])
    server = restore_and_serve(cli, dest, tmp_path / "root", influxd_factory)
    assert harness.compare_truth(harness.without_dead_fields(live.truth), server.dump()) == []


RANGES = [
    # exactly at points, spanning shards of every database and RP
    (T0 + 1234 * MIN + 1, T0 + 10 * DAY + 30 * 7 * MIN),
    # inside one shard (and one TSM block), across the deleted range
    (T0 + 100 * MIN, T0 + 2500 * MIN + 2),
    # one nanosecond inside the points at both ends
    (T0 + 1234 * MIN + 2, T0 + 2500 * MIN + 1),
]


@pytest.mark.parametrize("to", ["portable", "legacy"])
@pytest.mark.parametrize("lo,hi", RANGES, ids=["at-points", "in-one-shard", "between-points"])
def test_range_backup_is_exact_to_the_point(live, to, lo, hi, tmp_path, cli, influxd_factory):
    dest = tmp_path / "b"
    r = cli("backup", "--host", live.host, str(dest), "--to", to, "--start", str(lo), "--end", str(hi))
    assert r.code == 0, r.err
    server = restore_and_serve(cli, dest, tmp_path / "root", influxd_factory)
    got = server.dump()
    want = live.truth
    inside = [p for p in points(want) if lo <= p[4] <= hi]
    assert inside, "the range holds points"
    assert sorted(points(got)) == sorted(inside)
    assert harness.compare_truth(
        want, got, start=lo, end=hi,
        sections={"points", "users", "continuous_queries", "retention_policies", "databases"},
    ) == []


def test_dry_run_lists_and_writes_nothing(live, tmp_path, cli):
    dest = tmp_path / "b"
    r = cli("backup", "--host", live.host, str(dest), "--db", "db1", "--rp", "hourly", "--dry-run", "--json")
    assert r.code == 0, r.err
    plan = json.loads(r.out)["plan"]
    want = sorted(s["id"] for s in live.truth["shards"] if (s["database"], s["retention_policy"]) == ("db1", "hourly"))
    assert sorted(s["id"] for s in plan["shards"]) == want
    assert not dest.exists()


def test_filters_db_rp_shard(live, tmp_path, cli, influxd_factory):
    sid = next(s["id"] for s in live.truth["shards"] if s["retention_policy"] == "fine")
    cases = [(("--db", "db2"), {"db2"}), (("--db", "db1", "--rp", "hourly"), {"db1"}),
             (("--db", "db2", "--rp", "fine", "--shard", str(sid)), {"db2"})]
    for i, (args, dbs) in enumerate(cases):
        dest = tmp_path / f"b{i}"
        r = cli("backup", "--host", live.host, str(dest), "--to", "legacy", *args, "--json")
        assert r.code == 0, r.err
        got = {(s["database"], s["retention_policy"], s["id"]) for s in json.loads(r.out)["shards"]}
        want = {(s["database"], s["retention_policy"], s["id"]) for s in live.truth["shards"]
                if s["database"] in dbs and ("--rp" not in args or s["retention_policy"] == args[3])
                and ("--shard" not in args or s["id"] == sid)}
        assert got == want
    server = restore_and_serve(cli, tmp_path / "b1", tmp_path / "root", influxd_factory)
    got = server.dump()
    hourly = [p for p in points(live.truth) if p[:2] == ("db1", "hourly")]
    assert sorted(points(got)) == sorted(hourly)


def test_errors_are_one_line_with_codes(live, tmp_path, cli):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    cases = [
        (("backup", "--host", f"127.0.0.1:{port}", str(tmp_path / "a")), 3, "connection refused"),
        (("backup", "--host", live.server.url[len("http://"):], str(tmp_path / "b")), 1, "HTTP port"),
        (("backup", "--host", "http://x:1", str(tmp_path / "c")), 2, "not a URL"),
        (("backup", "--host", live.host, str(full)), 3, "not empty"),
        (("backup", "--host", live.host, str(tmp_path / "d"), "--db", "nope"), 2, "is not in the metastore"),
        (("backup", "--host", live.host, str(tmp_path / "e"), "--since", "2026-01-01T00:00:00Z",
          "--start", "2026-01-01T00:00:00Z"), 2, "--since cannot be combined"),
        (("backup", "--host", live.host, str(tmp_path / "f"), "--to", "zip"), 2, "--to"),
        (("backup", "--host", live.host, str(full), "--since", "2026-01-01T00:00:00Z"), 3, "this directory is not one"),
        (("backup", "--host", live.host, str(full), "--to", "legacy", "--since", "2026-01-01T00:00:00Z"), 3,
         "this directory is not one"),
        (("backup", str(tmp_path / "g"), "--since", "2026-01-01T00:00:00Z", str(tmp_path / "h")), 2, "--host"),
    ]
    for args, code, text in cases:
        r = cli(*args)
        assert r.code == code, (args, r.code, r.err)
        assert text in r.err, (args, r.err)
        assert len(r.err.strip().splitlines()) == 1, r.err
        assert "Traceback" not in r.err
    assert not any((tmp_path / n).exists() for n in "abcdefgh")
    assert [p.name for p in full.iterdir()] == ["x"]


def test_influxds_own_backup_loses_what_ours_keeps(live, tmp_path, influxd_factory, cli):
    """Side by side on the same live server (the README table): influxd backup -portable +
    influxd restore -portable resurrects tombstoned points, drops users and CQs, and its
    -start/-end keeps whole blocks (or, on a shard with tombstones, cuts the tar)."""
    truth = live.truth
    target = influxd_factory()
    r = live.server.backup(tmp_path / "theirs", "-portable")
    assert r.returncode == 0, r.stderr
    r = target.restore_portable(tmp_path / "theirs")
    assert r.returncode == 0, r.stderr
    got = settled_dump(target, sum(1 for _ in points(truth)))
    resurrected = set(points(got)) - set(points(truth))
    assert resurrected, "influxd's restore resurrects the deleted points (B2)"
    assert all(p[:3] in {("db1", "autogen", "cpu"), ("db1", "hourly", "temp"), ("db2", "fine", "m"),
                        ("db2", "autogen", "m")}
               for p in resurrected)
    assert got["users"] == {} and truth["users"], "influxd's portable restore drops users (B4)"
    assert all(not d["continuous_queries"] for d in got["databases"].values()), "and CQs (B4)"
    # -start/-end (request type 5): over an RP whose shards hold tombstones the tar is cut (B1)
    # and the restore fails; on a shard without tombstones whole blocks come back (B5)
    lo, hi = T0 + 8 * DAY + 3 * MIN, T0 + 9 * DAY
    rng = ("-start", harness.ns_to_rfc3339(lo), "-end", harness.ns_to_rfc3339(hi))
    r = live.server.backup(tmp_path / "range", "-portable", "-db", "db1", "-rp", "autogen", *rng)
    assert r.returncode == 0, r.stderr  # influxd's backup does not notice the cut tar
    with pytest.raises(harness.InfluxdError, match="unexpected EOF"):
        influxd_factory().restore_portable(tmp_path / "range")
    sid = next(s["id"] for s in truth["shards"] if s["database"] == "db1" and s["retention_policy"] == "autogen"
               and harness.rfc3339_to_ns(s["start"]) <= lo < harness.rfc3339_to_ns(s["end"]))
    assert not any(p.parent.name == str(sid) for p in live.tombstones)
    r = live.server.backup(tmp_path / "range1", "-portable", "-db", "db1", "-rp", "autogen", "-shard", str(sid), *rng)
    assert r.returncode == 0, r.stderr
    target2 = influxd_factory()
    target2.restore_portable(tmp_path / "range1")
    outside = sum(1 for p in points(settled_dump(target2, 1)) if not lo <= p[4] <= hi)
    assert outside > 0, "influxd's -start/-end keeps whole blocks (B5)"
    # ours on the same server and range: exact
    r2 = cli("backup", "--host", live.host, str(tmp_path / "ours"), "--db", "db1", "--rp", "autogen",
             "--start", str(lo), "--end", str(hi))
    assert r2.code == 0, r2.err
    mine = restore_and_serve(cli, tmp_path / "ours", tmp_path / "root", influxd_factory).dump()
    assert sorted(points(mine)) == sorted(p for p in points(truth) if p[:2] == ("db1", "autogen") and lo <= p[4] <= hi)


@pytest.mark.parametrize("to", ["portable", "legacy"])
def test_offline_backup_takes_the_same_filters(to, tmp_path, cli, influxd_factory, fixtures_dir, truth):
    """backup ROOT DEST (a stopped server root) with --db/--start/--end: exact to the point."""
    want = truth("live")
    lo, hi = harness.rfc3339_to_ns("2026-11-03T06:00:00Z"), harness.rfc3339_to_ns("2026-11-20T12:00:00Z")
    dest = tmp_path / "b"
    r = cli("backup", str(fixtures_dir / "live"), str(dest), "--to", to, "--db", "db1",
            "--start", str(lo), "--end", str(hi))
    assert r.code == 0, r.err
    got = restore_and_serve(cli, dest, tmp_path / "root", influxd_factory).dump()
    inside = sorted(p for p in points(want) if p[0] == "db1" and lo <= p[4] <= hi)
    assert inside and sorted(points(got)) == inside
    r = cli("backup", str(fixtures_dir / "live"), str(tmp_path / "c"), "--since", "2026-01-01T00:00:00Z")
    assert r.code == 2 and "--host" in r.err
