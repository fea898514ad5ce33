"""``rebuild-meta``: a metastore from a data directory alone.

The oracle is influxd: the live fixture's own ``meta.db`` (the groups influxd created for its
shards), and influxd 1.6.7 started on the rebuilt tree serving every point of the source.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import influxd as harness
import pytest

from influx_archive.meta.files import read_meta_db


def _bare_copy(fixtures_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root, symlinks=True)
    shutil.rmtree(root / "meta")
    return root


def _rebuild(cli, root: Path, *extra: str):
    return cli("rebuild-meta", "--datadir", root / "data", "--waldir", root / "wal", "--metadir", root / "meta",
               *extra)


def test_groups_are_the_ones_influxd_created(cli, fixtures_dir, tmp_path) -> None:
    """Given each RP's shard group duration, every shard lands in exactly the group influxd made."""
    original = read_meta_db(fixtures_dir / "live" / "meta" / "meta.db")
    root = _bare_copy(fixtures_dir, tmp_path)
    durs = [f"--shard-duration={db.name}/{rp.name}={rp.shard_group_duration}ns"
            for db in original.databases for rp in db.retention_policies]
    proc = _rebuild(cli, root, *durs)
    assert proc.returncode == 0, proc.stderr
    rebuilt = read_meta_db(root / "meta" / "meta.db")
    want = {r.shard.id: (r.db.name, r.rp.name, r.group.start_time, r.group.end_time) for r in original.iter_shards()}
    got = {r.shard.id: (r.db.name, r.rp.name, r.group.start_time, r.group.end_time) for r in rebuilt.iter_shards()}
    assert got == want
    assert rebuilt.max_shard_id == original.max_shard_id
    assert {db.name: db.default_retention_policy for db in rebuilt.databases} == {
        db.name: db.default_retention_policy for db in original.databases}


def test_inferred_durations_follow_the_data(cli, fixtures_dir, tmp_path) -> None:
    root = _bare_copy(fixtures_dir, tmp_path)
    proc = _rebuild(cli, root, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    durs = {(db["name"], rp["name"]): rp["shard_group_duration_ns"]
            for db in doc["databases"] for rp in db["retention_policies"]}
    original = read_meta_db(fixtures_dir / "live" / "meta" / "meta.db")
    # consecutive hourly shards can only be 1h groups; the weekly ones are influxd's 7d default
    for db in original.databases:
        for rp in db.retention_policies:
            if len(rp.shard_groups) > 2:
                assert durs[(db.name, rp.name)] == rp.shard_group_duration
    assert "users, grants, continuous queries" in proc.stderr
    assert all(rp["duration_ns"] == 0 for db in doc["databases"] for rp in db["retention_policies"])


@pytest.mark.parametrize("what", ["file", "dir", "lock-only"])
def test_non_empty_metadir_refused_unless_force(cli, fixtures_dir, tmp_path, what) -> None:
    root = _bare_copy(fixtures_dir, tmp_path)
    (root / "meta").mkdir()
    if what == "file":
        (root / "meta" / "meta.db").write_bytes(b"old")
    elif what == "dir":
        (root / "meta" / "raft").mkdir()
    else:
        (root / "meta" / ".influx-archive.lock").write_bytes(b"")
    proc = _rebuild(cli, root)
    if what == "lock-only":
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "not empty" in proc.stderr and "--force" in proc.stderr
    if what == "file":
        assert (root / "meta" / "meta.db").read_bytes() == b"old"
    proc = _rebuild(cli, root, "--force")
    assert proc.returncode == 0, proc.stderr
    read_meta_db(root / "meta" / "meta.db")


def test_dry_run_writes_nothing(cli, fixtures_dir, tmp_path) -> None:
    root = _bare_copy(fixtures_dir, tmp_path)
    proc = _rebuild(cli, root, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "dry run" in proc.stdout and not (root / "meta").exists()


@pytest.mark.parametrize("bad", ["", "1", "1x", "h", "30m", "-1h", "1h-", "db1/=1h", "/autogen=1h", "db1/autogen="])
def test_bad_shard_durations_are_usage_errors(cli, fixtures_dir, tmp_path, bad) -> None:
    root = _bare_copy(fixtures_dir, tmp_path)
    proc = _rebuild(cli, root, "--shard-duration", bad)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--shard-duration" in proc.stderr
    assert not (root / "meta").exists()


def test_shard_id_in_two_places_is_refused(cli, fixtures_dir, tmp_path) -> None:
    root = _bare_copy(fixtures_dir, tmp_path)
    shutil.copytree(root / "data" / "db1" / "autogen" / "1", root / "data" / "db2" / "autogen" / "1")
    proc = _rebuild(cli, root)
    assert proc.returncode == 1, proc.stderr
    assert "shard id 1" in proc.stderr and not (root / "meta" / "meta.db").exists()


# ---------------------------------------------------------------------------------------------
# interop: influxd started on the rebuilt metastore serves every point


def _served_equal(truth: dict, server) -> None:
    got = server.dump()
    assert harness.compare_truth(truth, got, sections={"databases", "points", "fields"}) == []
    for db in got["databases"].values():
        for rp in db["retention_policies"].values():
            assert rp["duration"] == "0s"
    return got


@pytest.mark.interop
def test_live_fixture_served_after_rebuild(cli, fixtures_dir, tmp_path, influxd_factory, truth) -> None:
    root = _bare_copy(fixtures_dir, tmp_path)
    proc = _rebuild(cli, root)
    assert proc.returncode == 0, proc.stderr
    server = influxd_factory(root)
    got = _served_equal(truth("live"), server)
    on_disk = {int(p.name) for p in (root / "data").glob("*/*/*") if any(p.glob("*.tsm"))}
    assert on_disk <= {sh["id"] for sh in got["shards"]}


_RPS = {"autogen": None, "h1": "1h", "d1": "1d", "w2": "2w"}
_HOUR = 3600 * 10**9


def _lines(rng: random.Random, base: int, span_h: int, n: int, tag: str) -> list[str]:
    out = []
    for _ in range(n):
        t = base + rng.randrange(span_h * _HOUR)
        kind = rng.randrange(4)
        value = [f"{rng.random()}", f"{rng.randrange(-99, 99)}i", f'"s{rng.randrange(9)}"',
                 rng.choice(["t", "f"])][kind]
        out.append(f"m{kind},host={tag} v={value} {t}")
    return out


def _wait_for_tsm(root: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(root.glob("data/*/*/*/*.tsm")):
            return
        time.sleep(0.2)
    raise AssertionError("influxd wrote no TSM file (cold snapshot)")


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_generated_shapes_served_after_rebuild(cli, tmp_path, influxd_factory, seed) -> None:
    """Several databases and RPs (1h, 1d, 2w, default 7d groups), TSM and WAL-only shards, an RP
    whose shard duration changed (shards of two sizes), empty shard dirs, junk in the tree."""
    rng = random.Random(seed)
    root = tmp_path / "src"
    base = 1_600_000_000 * 10**9 + rng.randrange(1000) * _HOUR
    dbs = [f"db{i}" for i in range(rng.randrange(1, 3) + 1)]
    rps: dict[str, list[str]] = {}
    with harness.InfluxServer(root, cold="1s") as server:  # batch A: flushed into TSM files
        for db in dbs:
            server.execute(f"CREATE DATABASE {db}")
            for rp, dur in _RPS.items():
                if dur and rng.random() < 0.8:
                    server.execute(f"CREATE RETENTION POLICY {rp} ON {db} DURATION INF REPLICATION 1 "
                                   f"SHARD DURATION {dur}")
            rps[db] = [r["name"] for s in server.series(f"SHOW RETENTION POLICIES ON {db}") for r in harness._rows(s)]
            for rp in rps[db]:
                server.write("\n".join(_lines(rng, base, 30, 40, "a")), db=db, rp=rp)
        _wait_for_tsm(root)
        time.sleep(1.5)  # let every shard's cold snapshot run
    with harness.InfluxServer(root, cold="10m0s") as server:  # batch B: stays in the WAL
        for db in dbs:
            if "d1" in rps[db]:  # later d1 shards are 1h: the RP holds shards of two sizes
                server.execute(f"ALTER RETENTION POLICY d1 ON {db} SHARD DURATION 1h")
            for rp in rps[db]:
                server.write("\n".join(_lines(rng, base + 200 * _HOUR, 30, 20, "b")), db=db, rp=rp)
                server.write("\n".join(_lines(rng, base, 30, 10, "b")), db=db, rp=rp)
        want = server.dump()
    assert any(not any(p.glob("*.tsm")) for p in root.glob("data/*/*/*")), "no WAL-only shard generated"
    shutil.rmtree(root / "meta")
    ids = [int(p.name) for p in root.glob("data/*/*/*")]
    empty = max(ids) + 7
    (root / "data" / dbs[0] / "autogen" / str(empty)).mkdir()
    junk = [root / "data" / "README", root / "data" / dbs[0] / "notes.txt", root / "data" / dbs[0] / "autogen" / "tmp",
            root / "data" / dbs[0] / "autogen" / "x1", root / "data" / dbs[0] / "autogen" / "\u0663",
            root / "data" / "linked", root / "data" / "_old"]
    junk[0].write_text("x")
    junk[1].write_text("x")
    junk[2].mkdir()
    junk[3].write_text("x")
    junk[4].mkdir()
    junk[5].symlink_to(root / "data" / dbs[0])
    (junk[6] / "autogen").mkdir(parents=True)  # influxd would open a copied shard here too: keep it empty
    proc = _rebuild(cli, root)
    assert proc.returncode == 0, proc.stderr
    for j in junk:
        assert any(str(j) in line and "ignored" in line for line in proc.stderr.splitlines()), (j, proc.stderr)
    assert f"/{empty}" in proc.stderr and "holds no data" in proc.stderr
    with harness.InfluxServer(root) as server:
        _served_equal(want, server)
        # a new shard gets an id above every directory on disk, the empty one included
        server.write(f"new v=1 {base + 5000 * _HOUR}", db=dbs[0])
        assert max(r["id"] for r in server.dump()["shards"]) == empty + 1


@pytest.mark.interop
def test_refused_while_influxd_runs_on_the_tree(cli, fixtures_dir, tmp_path) -> None:
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root, symlinks=True)
    before = (root / "meta" / "meta.db").read_bytes()
    with harness.InfluxServer(root):
        for extra in ((), ("--force",), ("--dry-run",)):
            proc = _rebuild(cli, root, *extra)
            assert proc.returncode == 5, proc.stderr
            assert proc.stderr.count("\n") == 1 and "influxd" in proc.stderr
    assert (root / "meta" / "meta.db").read_bytes() == before


def test_owner_and_modes(cli, fixtures_dir, tmp_path) -> None:
    import os
    import pwd

    root = _bare_copy(fixtures_dir, tmp_path)
    me = pwd.getpwuid(os.geteuid())
    proc = _rebuild(cli, root, "--owner", f"{me.pw_name}:{me.pw_gid}")
    assert proc.returncode == 0, proc.stderr
    for p in (root / "meta", root / "meta" / "meta.db"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (me.pw_uid, me.pw_gid)
    assert (root / "meta" / "meta.db").stat().st_mode & 0o777 == 0o644
    assert not (root / "meta" / ".influx-archive.lock").exists()
    assert sorted(p.name for p in (root / "meta").iterdir()) == ["meta.db"]


@pytest.mark.parametrize("args,code", [
    (("--datadir", "/nonexistent/data", "--metadir", "M"), 2),
    (("--datadir", "D", "--waldir", "/nonexistent/wal", "--metadir", "M"), 2),
    (("--datadir", "D", "--metadir", "M", "--owner", "no-such-user-xyz"), 2),
    (("--datadir", "D", "--metadir", "M", "--shard-duration", "nope/rp=1h"), 2),
])
def test_usage_errors_one_line_and_json(cli, fixtures_dir, tmp_path, args, code) -> None:
    root = _bare_copy(fixtures_dir, tmp_path)
    argv = [str(root / "data") if a == "D" else str(root / "meta") if a == "M" else a for a in args]
    proc = cli("rebuild-meta", *argv, "--json")
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("influx-archive: error: ")
    assert json.loads(proc.stdout)["error"]["exit_code"] == code
    assert not (root / "meta").exists()


def _damage_variants():
    tsm = "data/db1/autogen/1/000000001-000000001.tsm"
    tomb = "data/db1/autogen/2/000000001-000000001.tombstone"
    wal = "wal/db1/autogen/4/_00004.wal"
    yield "tsm-truncated-header", tsm, lambda b: b[:3]
    yield "tsm-truncated-footer", tsm, lambda b: b[:-3]
    yield "tsm-index-garbage", tsm, lambda b: b[:-40] + b"\xff" * 32 + b[-8:]
    yield "tsm-footer-points-past-end", tsm, lambda b: b[:-8] + (len(b) * 4).to_bytes(8, "big")
    yield "tsm-empty", tsm, lambda b: b""
    yield "tombstone-v4-garbage", tomb, lambda b: b"\x00\x00\x15\x04" + b"\xff" * 64
    yield "tombstone-v4-truncated-gzip", tomb, lambda b: b[: len(b) // 2]
    yield "wal-damage-then-valid", wal, lambda b: b[:5] + b"\xff\xff\xff" + b[8:] + b
    yield "tsm-fifo", tsm, None


@pytest.mark.parametrize("name,rel,mutate", list(_damage_variants()), ids=[v[0] for v in _damage_variants()])
def test_damaged_data_refused_naming_the_file(cli, fixtures_dir, tmp_path, name, rel, mutate) -> None:
    import os

    root = _bare_copy(fixtures_dir, tmp_path)
    p = root / rel
    if mutate is None:
        p.unlink()
        os.mkfifo(p)
    else:
        p.write_bytes(mutate(p.read_bytes()))
    proc = _rebuild(cli, root)
    assert proc.returncode in (1, 3), (name, proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("influx-archive: error: "), proc.stderr
    assert str(p) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (root / "meta").exists()


@pytest.mark.interop
def test_wal_beside_data_is_read_without_waldir(cli, fixtures_dir, tmp_path, influxd_factory, truth) -> None:
    """Forgetting --waldir must not hide the WAL-only shards: the sibling wal/ is read, with a warning."""
    root = _bare_copy(fixtures_dir, tmp_path)
    proc = cli("rebuild-meta", "--datadir", root / "data", "--metadir", root / "meta")
    assert proc.returncode == 0, proc.stderr
    assert f"no --waldir given: reading the WAL segments in {root / 'wal'}" in proc.stderr
    server = influxd_factory(root)
    _served_equal(truth("live"), server)


def test_without_any_wal_the_wal_only_shard_is_named(cli, fixtures_dir, tmp_path) -> None:
    root = _bare_copy(fixtures_dir, tmp_path)
    (root / "wal").rename(tmp_path / "elsewhere")
    proc = cli("rebuild-meta", "--datadir", root / "data", "--metadir", root / "meta")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "db1/hourly/21 holds no data" in ln]
    assert len(lines) == 1 and "pass --waldir" in lines[0]
