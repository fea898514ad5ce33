"""Online restore (issue 16) into a fresh RUNNING influxd 1.6.7, compared with the TRUTH recorded
from the source server: every point, field type, RP, subscription and CQ; ``--newdb`` (CQ text
rewritten, grants following); an existing database refused with the server untouched; deleted
data staying deleted where influxd's own restore brings it back; and the guards (a shard that
holds data is never uploaded into, a failure part-way says exactly what landed).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import influxd as harness
import pytest

from influx_archive.archive import snapshotter_upload as snap
from influx_archive.archive.errors import TargetError
from influx_archive.archive.ops.restore.online_http import HttpApi
from influx_archive.archive.snapshotter import ProtocolError, Unreachable
from influx_archive.archive.sources import open_source

pytestmark = pytest.mark.interop

SERVED = {"databases", "retention_policies", "continuous_queries", "subscriptions", "fields", "points"}


def online(cli, src: Path | str, server: harness.InfluxServer, *args: str):
    return cli("restore", str(src), "--host", server.host, "--http", server.url, *args)


def databases(server: harness.InfluxServer) -> list[str]:
    return sorted(r[0] for s in server.series("SHOW DATABASES") for r in s.get("values", []) or [])


@pytest.mark.parametrize(
    "name,truth_name,dbs",
    [
        ("legacy", "legacy", None),
        ("portable", "portable", None),
        ("portable_incremental", "portable_incremental", ["db1"]),
        ("union_legacy", "union", None),
        ("union_portable", "union", None),
        ("live", "live", None),
        ("sealed", "portable", None),
    ],
)
def test_online_restore_is_served_like_the_source(
    name, truth_name, dbs, tmp_path, fixtures_dir, influxd_factory, truth, cli
) -> None:
    src = fixtures_dir / name
    if name == "sealed":
        src = tmp_path / "portable.tar.zst"
        assert cli("pack", str(fixtures_dir / "portable"), str(src)).returncode == 0
    server = influxd_factory()
    proc = online(cli, src, server, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    expected = harness.without_dead_fields(truth(truth_name))
    got = server.dump()
    assert harness.compare_truth(expected, got, databases=dbs, sections=SERVED) == []
    # every shard holding data was uploaded once and confirmed by a listing
    shards = [s for d in doc["databases"] for s in d["shards"]]
    assert shards and all(s["status"] in ("confirmed", "empty") for s in shards)
    # the source's users are listed, not silently dropped (no password over this protocol)
    assert sorted(u["name"] for u in doc["users_not_restored"]) == sorted(expected["users"])
    assert got["users"] == {}


@pytest.mark.parametrize(
    "newdb,quoted", [("copy", "copy"), ("copy-1 x", '"copy-1 x"')], ids=["bare", "needs-quoting"]
)
def test_newdb_copy_is_identical_and_cqs_and_grants_follow(
    newdb, quoted, fixtures_dir, influxd_factory, truth, cli
) -> None:
    server = influxd_factory()
    server.execute("CREATE USER reader WITH PASSWORD 'secret'")
    proc = online(cli, fixtures_dir / "legacy", server, "--db", "db1", "--newdb", newdb)
    assert proc.returncode == 0, proc.stderr
    expected = copy.deepcopy(harness.without_dead_fields(truth("legacy")))
    d = expected["databases"].pop("db1")
    d["continuous_queries"] = {
        "cq1": f"CREATE CONTINUOUS QUERY cq1 ON {quoted} BEGIN SELECT mean(v) INTO {quoted}.autogen.cpu_1h "
        f"FROM {quoted}.autogen.cpu GROUP BY time(1h), * END"
    }
    expected["databases"] = {newdb: d}
    got = server.dump()
    assert harness.compare_truth(expected, got, sections=SERVED) == []
    assert got["users"]["reader"]["grants"] == {newdb: "READ"}  # db2's grant is not restored


def test_rp_and_newrp_restore_one_policy(fixtures_dir, influxd_factory, truth, cli) -> None:
    server = influxd_factory()
    proc = online(cli, fixtures_dir / "portable", server, "--db", "db1", "--newdb", "r", "--rp", "hourly",
                  "--newrp", "h1")
    assert proc.returncode == 0, proc.stderr
    expected = copy.deepcopy(harness.without_dead_fields(truth("portable")))
    d = expected["databases"].pop("db1")
    for section in ("data", "retention_policies", "subscriptions"):
        d[section] = {("h1" if k == "hourly" else k): v for k, v in d[section].items() if k == "hourly"}
    d["retention_policies"]["h1"]["default"] = True
    d["continuous_queries"] = {}
    expected["databases"] = {"r": d}
    assert harness.compare_truth(expected, server.dump(), sections=SERVED) == []
    assert "continuous queries of db1 (cq1) are not recreated" in proc.stderr


def test_existing_database_is_refused_before_anything_is_sent(fixtures_dir, influxd_factory, cli) -> None:
    server = influxd_factory()
    # Only db2 exists (empty): a restore of everything must not create db1 either.
    server.execute("CREATE DATABASE db2")
    proc = online(cli, fixtures_dir / "legacy", server)
    assert proc.returncode == 3 and "already exists" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert databases(server) == ["db2"]
    server.execute("DROP DATABASE db2")
    assert online(cli, fixtures_dir / "legacy", server).returncode == 0
    before = server.dump()
    for args in ([], ["--db", "db1"], ["--db", "db2"], ["--db", "db2", "--newdb", "db1"], ["--db", "db1", "--rp",
                 "hourly"], ["--shard", "10"]):
        for src in ("legacy", "portable"):
            proc = online(cli, fixtures_dir / src, server, *args)
            assert proc.returncode == 3, (args, proc.stderr)
            assert "already exists" in proc.stderr and "nothing was sent" in proc.stderr
            assert "Traceback" not in proc.stderr
    assert server.dump() == before


def _points(truth: dict, db: str) -> set[tuple]:
    out = set()
    for rp, ms in truth["databases"][db]["data"].items():
        for m, body in ms.items():
            for series in body["series"]:
                tags = tuple(sorted(series["tags"].items()))
                for t, fields in series["points"]:
                    out.add((rp, m, tags, t, tuple(sorted((k, repr(v)) for k, v in fields.items()))))
    return out


def _settled_dump(server: harness.InfluxServer, timeout: float = 60) -> dict:
    """The server's TRUTH once influxd's own restore has finished: its client does not wait for
    the server's EOF, so shards can still be disabled (being restored) when it exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server.dump()
        except harness.InfluxdError as exc:
            if "shard is disabled" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_deleted_points_stay_deleted_where_influxds_restore_resurrects_them(
    fixtures_dir, influxd_factory, truth, cli
) -> None:
    """The legacy fixture's shards carry uncompacted .tombstone files (fixtures/README.md)."""
    expected = harness.without_dead_fields(truth("legacy"))
    stock = influxd_factory()
    stock.restore_online(fixtures_dir / "legacy", "-db", "db1")
    stock_got = _settled_dump(stock)
    resurrected = _points(stock_got, "db1") - _points(expected, "db1")
    assert resurrected, "influxd's own online restore was expected to bring deleted points back"
    # and it drops the CQs
    assert expected["databases"]["db1"]["continuous_queries"]
    assert not stock_got["databases"]["db1"]["continuous_queries"]
    ours = influxd_factory()
    assert online(cli, fixtures_dir / "legacy", ours, "--db", "db1").returncode == 0
    got = ours.dump()
    assert harness.compare_truth(expected, got, databases=["db1"], sections=SERVED) == []
    assert not (_points(got, "db1") & resurrected)


@pytest.mark.parametrize("error", [TargetError, Unreachable, ProtocolError], ids=lambda e: e.__name__)
def test_a_failure_part_way_reports_exactly_what_landed(
    error, tmp_path, fixtures_dir, influxd_factory, cli, monkeypatch
) -> None:
    server = influxd_factory()
    real = snap.upload_shard
    calls = []

    def failing(*a, **kw):
        calls.append(a[2])
        if len(calls) == 3:
            raise error("simulated: the network went away")
        return real(*a, **kw)

    monkeypatch.setattr(snap, "upload_shard", failing)
    proc = online(cli, fixtures_dir / "legacy", server, "--json")
    assert proc.returncode == 3
    doc = json.loads(proc.stdout)
    assert doc["error"]["code"] == "target.partial" and "simulated" in doc["error"]["message"]
    db1, db2 = doc["report"]["databases"]
    status = [s["status"] for s in db1["shards"]]
    assert status[:3] == ["confirmed", "confirmed", "failed"] and set(status[3:]) == {"not sent"}
    assert db1["statements"][0]["status"] == "not sent"
    assert db2["status"] == "not sent" and {s["status"] for s in db2["shards"]} == {"not sent"}
    assert databases(server) == ["db1"]
    addr = snap.parse_host(server.host)
    for s in db1["shards"]:  # what the report says landed is on the server, and nothing else
        listed = snap.list_shard(addr, s["new_id"], str(tmp_path))
        assert bool(listed) == (s["status"] == "confirmed"), s
    # the same in text
    monkeypatch.setattr(snap, "upload_shard", failing)
    calls.clear()
    server.execute("DROP DATABASE db1")
    proc = online(cli, fixtures_dir / "legacy", server)
    assert proc.returncode == 3 and "online restore incomplete" in proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(": failed" in ln and "simulated" in ln for ln in lines) == 1
    assert sum(": confirmed" in ln for ln in lines) == 2
    assert "  database db2: not sent; metadata 174 bytes, 3 shards" in lines


def test_a_shard_that_holds_data_is_never_uploaded_into(fixtures_dir, influxd_factory, cli, monkeypatch) -> None:
    server = influxd_factory()
    with open_source(fixtures_dir / "legacy") as src:
        assert src.meta is not None
        first = next(r for r in src.meta.iter_shards() if r.db.name == "db1" and not r.group.deleted)
        start, rp = first.group.start_time, first.rp.name
    real = snap.import_database

    def then_a_writer(*a, **kw):
        mapping = real(*a, **kw)
        if a[2] == "db1":  # someone writes into the new database before the upload
            server.write(f"intruder v=1 {start}", db="db1", rp=rp)
        return mapping

    monkeypatch.setattr(snap, "import_database", then_a_writer)
    proc = online(cli, fixtures_dir / "legacy", server)
    assert proc.returncode == 3 and "refusing to upload into it" in proc.stderr, proc.stderr
    rows = server.series("SELECT count(*) FROM intruder", "db1")
    assert rows and rows[0]["values"][0][1] == 1  # the writer's point is still there, untouched


def test_dry_run_sends_nothing(fixtures_dir, influxd_factory, cli) -> None:
    server = influxd_factory()
    proc = online(cli, fixtures_dir / "portable", server, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["dry_run"] and [d["target"] for d in doc["plan"]["databases"]] == ["db1", "db2"]
    assert databases(server) == []
    # influxd's own spelling of the line pastes as it is
    proc = cli("restore", "-portable", "-host", server.host, "-http", server.url, "-db", "db1", "-newdb", "x",
               "--dry-run", "--json", str(fixtures_dir / "portable"))
    assert proc.returncode == 0, proc.stderr
    assert [d["target"] for d in json.loads(proc.stdout)["plan"]["databases"]] == ["x"]
    assert databases(server) == []


@pytest.mark.slow
def test_a_metastore_over_200_kb_restores_where_influxds_own_fails(tmp_path, influxd_factory, cli) -> None:
    source = influxd_factory()
    source.execute("CREATE DATABASE big")
    lines = []
    for i in range(30):
        source.execute(f"CREATE RETENTION POLICY rp_{i:02d} ON big DURATION INF REPLICATION 1 SHARD DURATION 1h")
        lines.append(f"cpu,host=h{i} v={i}.5 {1795000000000000000 + i * 3600 * 10**9}")
        source.write(f"m{i},k=x n={i}i,s=\"t{i}\" {1795000000000000000 + i * 7200 * 10**9}", db="big", rp=f"rp_{i:02d}")
    source.write("\n".join(lines), db="big")
    pad = "p" * 700
    source.execute(";".join(
        f"CREATE CONTINUOUS QUERY cq_{i:03d} ON big BEGIN SELECT mean(v) AS v INTO big.rp_{i % 30:02d}.down_{i:03d} "
        f"FROM big.autogen.cpu WHERE host = '{pad}{i}' GROUP BY time(1h), * END"
        for i in range(350)
    ))
    for i in range(5):
        source.execute(f"CREATE USER u{i} WITH PASSWORD 'pw{i}'")
        source.execute(f"GRANT READ ON big TO u{i}")
    backup = tmp_path / "backup"
    source.backup(backup, "-portable")
    meta = next(backup.glob("*.meta"))
    assert meta.stat().st_size > 200_000
    expected = source.dump()

    target = influxd_factory()
    with pytest.raises(harness.InfluxdError):
        target.restore_portable(backup)
    assert "big" not in databases(target)
    proc = online(cli, backup, target)
    assert proc.returncode == 0, proc.stderr
    got = target.dump()
    assert len(got["databases"]["big"]["continuous_queries"]) == 350
    assert harness.compare_truth(expected, got, sections=SERVED) == []


def test_http_credentials_come_from_the_environment(fixtures_dir, influxd_factory, truth, cli, monkeypatch) -> None:
    server = influxd_factory(extra={"http.auth-enabled": True})
    server.execute("CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES")  # the first user needs no login
    addr = snap.parse_host(server.host)
    monkeypatch.delenv("INFLUX_USERNAME", raising=False)
    monkeypatch.delenv("INFLUX_PASSWORD", raising=False)
    proc = online(cli, fixtures_dir / "legacy", server)
    assert proc.returncode == 3 and "authentication failed" in proc.stderr, proc.stderr
    assert not snap.database_exists(addr, "db1")  # refused before anything was sent
    monkeypatch.setenv("INFLUX_USERNAME", "admin")
    monkeypatch.setenv("INFLUX_PASSWORD", "wrong")
    assert online(cli, fixtures_dir / "legacy", server).returncode == 3
    assert not snap.database_exists(addr, "db1")
    monkeypatch.setenv("INFLUX_PASSWORD", "pw")
    proc = online(cli, fixtures_dir / "legacy", server)
    assert proc.returncode == 0, proc.stderr
    api = HttpApi(server.url)
    assert sorted(api.column("SHOW DATABASES")) == ["db1", "db2"]
    cqs = api.query("SHOW CONTINUOUS QUERIES")[0]["series"]
    got = {row[0]: row[1] for s in cqs if s["name"] == "db1" for row in s["values"]}
    assert got == truth("legacy")["databases"]["db1"]["continuous_queries"]


def test_shard_filter_restores_exactly_that_shard(fixtures_dir, influxd_factory, truth, cli) -> None:
    full = harness.without_dead_fields(truth("legacy"))
    server = influxd_factory()
    for sh in full["shards"]:
        if sh["id"] not in (1, 4, 10, 16, 17, 19):
            continue
        db, rp, new = sh["database"], sh["retention_policy"], f"s{sh['id']}"
        lo, hi = harness.rfc3339_to_ns(sh["start"]), harness.rfc3339_to_ns(sh["end"])
        proc = online(cli, fixtures_dir / "legacy", server, "--db", db, "--newdb", new, "--shard", str(sh["id"]))
        assert proc.returncode == 0, proc.stderr
        d = copy.deepcopy(full["databases"][db])
        d["retention_policies"] = {rp: {**d["retention_policies"][rp], "default": True}}
        d["subscriptions"] = {k: v for k, v in d["subscriptions"].items() if k == rp}
        d["continuous_queries"] = {}
        data = {}
        for m, body in d["data"].get(rp, {}).items():
            series = [{**s, "points": [p for p in s["points"] if lo <= p[0] < hi]} for s in body["series"]]
            series = [s for s in series if s["points"]]
            if series:
                data[m] = {**body, "series": series}
        d["data"] = {rp: data} if data else {}
        got = server.dump()
        assert harness.compare_truth({"databases": {new: d}}, got, databases=[new], sections=SERVED - {"fields"}) == []


@pytest.mark.slow
def test_a_production_like_server_round_trips_online(tmp_path, influxd_factory, cli) -> None:
    """tests/live_server.py: shard ids >= 10, deletes with tombstones on disk, several RPs, users,
    grants, CQs (one with RESAMPLE). Its own portable backup, restored online by us: served as the
    source served; by influxd's own restore: deleted points back, CQs gone."""
    from live_server import live_server

    backup = tmp_path / "backup"
    with live_server(tmp_path / "live") as live:
        assert live.tombstones
        live.server.backup(backup, "-portable")
        expected = live.truth
    ours = influxd_factory()
    ours.execute("CREATE USER reader WITH PASSWORD 'x'")
    proc = online(cli, backup, ours)
    assert proc.returncode == 0, proc.stderr
    got = ours.dump()
    assert harness.compare_truth(expected, got, sections=SERVED) == []
    assert got["users"]["reader"]["grants"] == expected["users"]["reader"]["grants"]
    # --newdb of db2: the RESAMPLE CQ follows
    proc = online(cli, backup, ours, "--db", "db2", "--newdb", "db2_copy")
    assert proc.returncode == 0, proc.stderr
    got = ours.dump()
    d = copy.deepcopy(expected["databases"]["db2"])
    d["continuous_queries"] = {
        "cq_m": "CREATE CONTINUOUS QUERY cq_m ON db2_copy RESAMPLE EVERY 2h BEGIN SELECT max(f) INTO "
        "db2_copy.fine.m_max FROM db2_copy.fine.m GROUP BY time(1d) END"
    }
    assert harness.compare_truth({"databases": {"db2_copy": d}}, got, databases=["db2_copy"], sections=SERVED) == []

    stock = influxd_factory()
    stock.restore_portable(backup)
    stock_got = _settled_dump(stock)
    back = {db: _points(stock_got, db) - _points(expected, db) for db in ("db1", "db2")}
    assert any(back.values()), "influxd's own restore was expected to bring deleted points back"
    assert all(not d["continuous_queries"] for d in stock_got["databases"].values())


def test_an_interruption_part_way_still_says_what_landed(fixtures_dir, influxd_factory, cli, monkeypatch) -> None:
    server = influxd_factory()
    real = snap.upload_shard
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(snap, "upload_shard", interrupted)
    proc = online(cli, fixtures_dir / "legacy", server)
    assert proc.returncode == 130
    lines = proc.stdout.splitlines()
    assert sum(": confirmed" in ln for ln in lines) == 1
    assert sum(": failed" in ln and "interrupted" in ln for ln in lines) == 1
    assert "  database db2: not sent; metadata 174 bytes, 3 shards" in lines
    assert "interrupted part-way" in proc.stderr


def _damage_first_block(tar_path: Path, k: int) -> None:
    """Flip byte ``k`` of the first block (after its CRC) of the first TSM member of a shard tar."""
    import tarfile

    with tarfile.open(tar_path) as tf:
        member = next(m for m in tf if m.name.endswith(".tsm"))
    data = bytearray(tar_path.read_bytes())
    data[member.offset_data + 5 + 4 + k] ^= 0x5A
    tar_path.write_bytes(bytes(data))


@pytest.mark.parametrize("k", [0, 3, 9])
def test_a_damaged_source_stops_before_its_database_reaches_the_server(
    k, tmp_path, fixtures_dir, influxd_factory, cli
) -> None:
    import shutil

    server = influxd_factory()
    for name, want_rc, want_dbs in (("db1.autogen.00002.00", 1, []), ("db2.autogen.00017.00", 3, ["db1"])):
        src = tmp_path / f"legacy-{name}"
        shutil.copytree(fixtures_dir / "legacy", src)
        _damage_first_block(src / name, k)
        proc = online(cli, src, server, "--json")
        assert proc.returncode == want_rc, proc.stderr
        assert name in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert databases(server) == want_dbs
        if want_rc == 3:
            report = json.loads(proc.stdout)["report"]["databases"]
            assert [d["status"] for d in report] == ["restored", "not sent"]
        for db in want_dbs:
            server.execute(f"DROP DATABASE {db}")


def test_a_failing_cq_is_reported_and_the_data_still_lands(
    fixtures_dir, influxd_factory, truth, cli, monkeypatch
) -> None:
    server = influxd_factory()
    real = HttpApi.query

    def refusing(self, q, db=None):
        if q.startswith("CREATE CONTINUOUS QUERY"):
            return [{"statement_id": 0, "error": "simulated: not allowed"}]
        return real(self, q, db)

    monkeypatch.setattr(HttpApi, "query", refusing)
    proc = online(cli, fixtures_dir / "legacy", server, "--json")
    assert proc.returncode == 3 and "continuous query cq1: simulated: not allowed" in proc.stderr
    report = json.loads(proc.stdout)["report"]["databases"]
    assert [d["status"] for d in report] == ["restored", "restored"]
    assert report[0]["statements"] == [{
        "what": "continuous query cq1", "statement": truth("legacy")["databases"]["db1"]["continuous_queries"]["cq1"],
        "status": "failed", "error": "simulated: not allowed",
    }]
    expected = harness.without_dead_fields(truth("legacy"))
    assert harness.compare_truth(expected, server.dump(), sections=SERVED - {"continuous_queries"}) == []


def test_a_database_without_shards_restores(tmp_path, influxd_factory, cli) -> None:
    """influxd answers the import of a database without shard groups like a failure (no pairs)."""
    source = influxd_factory()
    source.execute("CREATE DATABASE empty")
    source.execute("CREATE RETENTION POLICY weekly ON empty DURATION 520w REPLICATION 1 DEFAULT")
    source.execute("CREATE CONTINUOUS QUERY c ON empty BEGIN SELECT count(v) INTO empty.weekly.n FROM empty.weekly.m "
                   "GROUP BY time(1d) END")
    backup = tmp_path / "b"
    source.backup(backup, "-portable")
    expected = source.dump()
    target = influxd_factory()
    proc = online(cli, backup, target)
    assert proc.returncode == 0, proc.stderr
    assert harness.compare_truth(expected, target.dump(), sections=SERVED) == []


@pytest.mark.slow
def test_live_server_to_live_server_through_our_online_backup(tmp_path, influxd_factory, cli) -> None:
    """backup --host (both layouts) of a production-like server, restored by restore --host into
    a fresh one: served exactly as the source served (deletes stay deleted either way)."""
    from live_server import live_server

    with live_server(tmp_path / "live") as live:
        expected = live.truth
        for to in ("portable", "legacy"):
            r = cli("backup", "--host", live.host, str(tmp_path / to), "--to", to)
            assert r.returncode == 0, r.stderr
    for to in ("portable", "legacy"):
        target = influxd_factory()
        proc = online(cli, tmp_path / to, target)
        assert proc.returncode == 0, proc.stderr
        assert harness.compare_truth(expected, target.dump(), sections=SERVED) == [], to


@pytest.mark.parametrize("lands", [False, True], ids=["import-lost", "answer-lost"])
def test_a_failed_metadata_import_says_whether_the_database_landed(
    lands, fixtures_dir, influxd_factory, cli, monkeypatch
) -> None:
    server = influxd_factory()
    real = snap.import_database

    def failing(*a, **kw):
        if lands:
            real(*a, **kw)
        raise Unreachable("simulated: connection reset by the server")

    monkeypatch.setattr(snap, "import_database", failing)
    proc = online(cli, fixtures_dir / "legacy", server, "--json")
    assert proc.returncode == 3 and "simulated" in proc.stderr
    assert databases(server) == (["db1"] if lands else [])
    doc = json.loads(proc.stdout)
    if lands:  # the database exists (its shards empty): the report says so
        db1 = doc["report"]["databases"][0]
        assert db1["status"] == "failed" and {s["status"] for s in db1["shards"]} == {"not sent"}
    else:  # nothing reached the server: the plain error
        assert doc["error"]["code"] == Unreachable.code and "report" not in doc


CQ_SHAPES = [
    # (name, statement with {db} for the database and {q} for a quoted-if-needed form), variety of clauses
    ("plain", "CREATE CONTINUOUS QUERY plain ON {db} BEGIN SELECT mean(v) INTO {db}.autogen.out FROM {db}.autogen.cpu "
              "GROUP BY time(1h), * END"),
    ("resample", "CREATE CONTINUOUS QUERY rs ON {db} RESAMPLE EVERY 1h FOR 2h BEGIN SELECT max(v) AS mx INTO "
                 "{db}.autogen.:MEASUREMENT FROM {db}.autogen./^c.*/ GROUP BY time(30m), host fill(none) END"),
    ("unqualified", "CREATE CONTINUOUS QUERY uq ON {db} BEGIN SELECT count(v) INTO out FROM cpu WHERE "
                    "host = 'db.autogen.cpu' GROUP BY time(1h) END"),
    ("emptyrp", "CREATE CONTINUOUS QUERY er ON {db} BEGIN SELECT sum(v) / 2 INTO {db}..half FROM {db}..cpu "
                "WHERE host =~ /a\\/b/ GROUP BY time(1d) END"),
    ("other", "CREATE CONTINUOUS QUERY ot ON {db} BEGIN SELECT min(v) INTO elsewhere.autogen.out FROM "
              "{db}.autogen.cpu, elsewhere.autogen.cpu GROUP BY time(1h) END"),
]


@pytest.mark.parametrize("old,new", [("db", "copy"), ("my-db", "dst db"), ("select", "x\"y")],
                         ids=["bare", "quoted", "keyword-and-quote"])
def test_newdb_cq_texts_are_what_the_server_makes_of_the_renamed_statements(
    old, new, tmp_path, influxd_factory, cli
) -> None:
    """The server is the oracle: the CQs created on a scratch server from the statements written
    with the new name must read back exactly as the ones our rewrite created."""
    from influx_archive.archive.ops.restore.online_cq import quote_ident

    source = influxd_factory()
    scratch = influxd_factory()
    for server in (source, scratch):
        server.execute("CREATE DATABASE elsewhere")
    source.execute(f"CREATE DATABASE {quote_ident(old)}")
    scratch.execute(f"CREATE DATABASE {quote_ident(new)}")
    for _, text in CQ_SHAPES:
        source.execute(text.format(db=quote_ident(old)))
        scratch.execute(text.format(db=quote_ident(new)))
    backup = tmp_path / "b"
    source.backup(backup, "-portable")
    target = influxd_factory()
    target.execute("CREATE DATABASE elsewhere")
    proc = online(cli, backup, target, "--db", old, "--newdb", new)
    assert proc.returncode == 0, proc.stderr
    assert target.dump()["databases"][new]["continuous_queries"] == scratch.dump()["databases"][new][
        "continuous_queries"]
