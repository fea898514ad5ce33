"""inspect and the source model against the truth the real influxd served (fixtures/*.truth.json).

Expected numbers are derived from the truth files (what the source server answered to queries),
never from the code under test.
"""

from __future__ import annotations

import json
import shutil

import influxd  # fixtures/influxd.py (put on sys.path by conftest)
import pytest

from influx_archive.archive.errors import FormatError, SourceError
from influx_archive.archive.ops.inspect import inspect_source
from influx_archive.archive.sources import open_source
from influx_archive.archive.timefmt import rfc3339

FULL_FIXTURES = ["legacy", "portable", "legacy_incremental", "portable_incremental", "live"]
#: databases whose data each backup holds (the *_incremental sets are `-database db1` backups;
#: their truth describes the whole server, and every backup carries the whole metastore)
BACKED_UP = {"legacy_incremental": {"db1"}, "portable_incremental": {"db1"}}


def truth_points_per_shard(truth: dict) -> dict[tuple[str, str, int], tuple[int, int, int]]:
    """(db, rp, shard id) -> (points, values, series) the server served inside the shard group's range."""
    out = {}
    for sh in truth["shards"]:
        start = influxd.rfc3339_to_ns(sh["start"])
        end = influxd.rfc3339_to_ns(sh["end"])
        data = truth["databases"][sh["database"]].get("data", {}).get(sh["retention_policy"], {})
        points = values = 0
        series = 0
        for m in data.values():
            for s in m["series"]:
                inside = [p for p in s["points"] if start <= p[0] < end]
                if inside:
                    series += 1
                points += len(inside)
                values += sum(len(p[1]) for p in inside)
        out[(sh["database"], sh["retention_policy"], sh["id"])] = (points, values, series)
    return out


def _shards(doc: dict) -> dict[tuple[str, str, int], dict]:
    return {
        (db["name"], rp["name"], sh["id"]): sh
        for db in doc["databases"]
        for rp in db["retention_policies"]
        for sh in rp["shards"]
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_FIXTURES)
def test_inspect_points_equal_truth(name, fixtures_dir, truth):
    t = truth(name)
    src = open_source(fixtures_dir / name)
    doc = inspect_source(src, points=True)
    assert not [f for f in doc["findings"] if f["severity"] == "error"]
    got = _shards(doc)
    want = truth_points_per_shard(t)
    for key, (points, values, series) in want.items():
        if name in BACKED_UP and key[0] not in BACKED_UP[name]:
            assert got[key]["files"] == 0
            continue
        assert key in got, f"shard {key} missing from inspect"
        sh = got[key]
        assert (sh["points"], sh["values"]) == (points, values), f"{name} shard {key}"
        if points:
            assert sh["series"] == series
            assert sh["files"] > 0 or sh["wal_segments"] > 0


@pytest.mark.parametrize("name", FULL_FIXTURES)
def test_inspect_metastore_equals_truth(name, fixtures_dir, truth):
    t = truth(name)
    doc = inspect_source(open_source(fixtures_dir / name))
    dbs = {d["name"]: d for d in doc["databases"]}
    assert set(dbs) == set(t["databases"])
    for dbname, tdb in t["databases"].items():
        rps = {rp["name"]: rp for rp in dbs[dbname]["retention_policies"]}
        assert set(rps) == set(tdb["retention_policies"])
        for rpname, trp in tdb["retention_policies"].items():
            assert rps[rpname]["replica_n"] == trp["replication"]
            assert (dbs[dbname]["default_retention_policy"] == rpname) == trp["default"]
            assert rps[rpname]["shard_group_duration_ns"] == _go_duration_ns(trp["shard_group_duration"])
            assert rps[rpname]["duration_ns"] == _go_duration_ns(trp["duration"])
        cqs = {c["name"]: c["query"] for c in doc["continuous_queries"] if c["database"] == dbname}
        assert cqs == tdb["continuous_queries"]
    users = {u["name"]: u for u in doc["users"]}
    assert {n: u["admin"] for n, u in users.items()} == {n: u["admin"] for n, u in t["users"].items()}
    for n, u in t["users"].items():
        assert {p["database"]: p["privilege"] for p in users[n]["privileges"]} == u["grants"]
    shards = _shards(doc)
    for sh in t["shards"]:
        got = shards[(sh["database"], sh["retention_policy"], sh["id"])]
        assert (got["group_start"], got["group_end"]) == (sh["start"], sh["end"])


def _go_duration_ns(text: str) -> int:
    """Parse Go's Duration.String() output as influxd prints it in SHOW RETENTION POLICIES."""
    import re

    units = {"h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3, "µs": 10**3, "ns": 1}
    total = 0
    for num, unit in re.findall(r"([0-9.]+)(h|ms|us|µs|ns|m|s)", text):
        total += int(float(num) * units[unit])
    return total


def test_inspect_without_points_uses_index(fixtures_dir, truth):
    """The cheap path gives series and a time extent inside every shard's group range."""
    doc = inspect_source(open_source(fixtures_dir / "legacy"))
    want = truth_points_per_shard(truth("legacy"))
    for key, sh in _shards(doc).items():
        assert sh["points"] is None
        if want.get(key, (0,))[0]:
            assert sh["series"] == want[key][2]
            assert sh["group_start"] <= sh["min_time"] <= sh["max_time"] < sh["group_end"]


def test_legacy_increments_and_kinds(fixtures_dir):
    src = open_source(fixtures_dir / "legacy_incremental")
    assert src.kind == "legacy" and src.increments == 2
    src = open_source(fixtures_dir / "portable_incremental")
    assert src.kind == "portable" and len(src.manifests) == 2
    src = open_source(fixtures_dir / "live")
    assert src.kind == "live" and any(s.wal for s in src.shards)


def test_shard_ten_is_shard_ten(fixtures_dir, truth):
    """influxd's offline restore trims zeros from '00010'; our model keeps the integer id."""
    src = open_source(fixtures_dir / "legacy")
    sh = src.shard("db1", "hourly", 10)
    assert sh is not None and sh.files
    assert all(f.member.startswith("db1/hourly/10/") for f in sh.files)
    t = next(s for s in truth("legacy")["shards"] if s["id"] == 10)
    assert rfc3339(sh.group_start) == t["start"]


def test_truncated_tar_of_influxd_start_end_backup_is_reported(fixtures_dir):
    """influxd 1.6.7 writes a truncated tar for a -start/-end backup of a shard with a tombstone."""
    with pytest.raises(FormatError) as exc:
        open_source(fixtures_dir / "portable_range_db2")
    assert "truncated" in str(exc.value)
    assert ".tar.gz" in str(exc.value) and "member" in str(exc.value)


def test_single_files(fixtures_dir, tmp_path):
    legacy = fixtures_dir / "legacy"
    meta = open_source(legacy / "meta.01")
    assert meta.kind == "file" and meta.file_kind == "meta.NN" and meta.meta is not None
    tar = next(legacy.glob("db1.hourly.00010.00"))
    s = open_source(tar)
    assert s.file_kind == "tar" and [x.id for x in s.shards] == [10]
    live_db = open_source(fixtures_dir / "live" / "meta" / "meta.db")
    assert live_db.file_kind == "meta.db"
    manifest = next((fixtures_dir / "portable").glob("*.manifest"))
    m = open_source(manifest)
    assert m.file_kind == "manifest" and m.shards
    gz = next((fixtures_dir / "portable").glob("*.tar.gz"))
    assert open_source(gz).file_kind == "tar.gz"
    tsm = next((fixtures_dir / "live" / "data").rglob("*.tsm"))
    doc = inspect_source(open_source(tsm), points=True)
    assert doc["source"]["file_kind"] == "tsm"


def test_bad_paths(tmp_path):
    with pytest.raises(SourceError) as exc:
        open_source(tmp_path / "missing")
    assert exc.value.exit_code == 2
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(SourceError) as exc:
        open_source(tmp_path / "junk")
    assert "x.txt" in str(exc.value)


def test_mixed_directory_refused(fixtures_dir, tmp_path):
    d = tmp_path / "mixed"
    shutil.copytree(fixtures_dir / "legacy", d)
    for f in (fixtures_dir / "portable").glob("*.manifest"):
        shutil.copy(f, d)
    with pytest.raises(SourceError) as exc:
        open_source(d)
    assert "mixes" in str(exc.value)


def test_hostile_tar_members_are_ignored(tmp_path):
    """Members with .., absolute paths, links and devices are reported, never used."""
    import io
    import tarfile

    path = tmp_path / "db.rp.00001.00"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name in ("db/rp/1/../../../../etc/x.tsm", "/abs/rp/1/000000001-000000001.tsm"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("db/rp/1/000000001-000000002.tsm")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
        dev = tarfile.TarInfo("db/rp/1/000000001-000000003.tsm")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
    src = open_source(path)
    assert all(not s.files for s in src.shards)
    assert len(src.findings) == 4


def test_cli_inspect_json_shape_and_exit_codes(fixtures_dir, cli):
    r = cli("inspect", str(fixtures_dir / "portable"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["source"]["kind"] == "portable"
    db = doc["databases"][0]
    assert {"name", "default_retention_policy", "retention_policies"} <= set(db)
    rp = db["retention_policies"][0]
    assert {"name", "duration_ns", "shard_group_duration_ns", "replica_n", "shards"} <= set(rp)
    sh = rp["shards"][0]
    assert {"id", "group_start", "group_end", "files", "bytes", "series", "min_time", "max_time", "points"} <= set(sh)
    assert {"name", "admin"} <= set(doc["users"][0])
    assert {"database", "name", "query"} <= set(doc["continuous_queries"][0])

    r = cli("inspect", str(fixtures_dir / "does-not-exist"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    # a damaged source is still summarised: the damage is a finding, the exit code 1
    r = cli("inspect", str(fixtures_dir / "portable_range_db2"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("error: ")] == [
        "error: tar archive is truncated (unexpected end of data) [file "
        f"{fixtures_dir / 'portable_range_db2' / '20261125T064330Z.s17.tar.gz'}, "
        "member db2/autogen/17/000000001-000000001.tsm]"
    ]
    r = cli("inspect", "--no-such-flag", str(fixtures_dir / "legacy"))
    assert r.returncode == 2


def test_cli_accepts_influxd_single_dash_flags(fixtures_dir, cli):
    r = cli("inspect", "-json", str(fixtures_dir / "legacy"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["source"]["kind"] == "legacy"


def test_cli_text_mentions_every_shard(fixtures_dir, truth, cli):
    r = cli("inspect", "--points", str(fixtures_dir / "live"))
    assert r.returncode == 0, r.stderr
    for sh in truth("live")["shards"]:
        assert f"shard {sh['id']}:" in r.stdout
