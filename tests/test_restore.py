"""Offline restore (issue 3): every fixture kind restored by us, then served by the real influxd
1.6.7 and compared with the TRUTH recorded from the source server — points, field types, RPs,
users and grants, CQs, subscriptions, shard ids. Plus the regressions where influxd fails, the
existing-target rules, and the safety contract (dry run, rollback, source untouched, --owner).
"""

from __future__ import annotations

import copy
import hashlib
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import pytest

import influxd as harness
from influx_archive.archive import restore as restore_mod
from influx_archive.archive.errors import TargetError, UsageError
from influx_archive.archive.restore import execute_restore, plan_restore
from influx_archive.archive.select import Selection
from influx_archive.archive.source import open_source
from influx_archive.meta.files import read_meta_db

pytestmark = pytest.mark.interop


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from influx_archive.cli.main import main; main()", *args], capture_output=True, text=True, timeout=300
    )


def restore(src: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = run_cli("restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), *args)
    return proc


def tree_state(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner and content hash."""
    out: dict[str, tuple] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, digest)
    return out


@pytest.mark.parametrize(
    "name,extra",
    [
        ("legacy", ()),
        ("portable", ()),
        ("legacy_incremental", ()),
        ("portable_incremental", ()),
        ("live", ()),
        ("live", ("--waldir", "WAL")),
    ],
    ids=["legacy", "portable", "legacy_incremental", "portable_incremental", "live-flush-wal", "live-waldir"],
)
def test_restore_is_served_like_the_source(name, extra, tmp_path, fixtures_dir, influxd_factory, truth) -> None:
    src = fixtures_dir / name
    before = tree_state(src)
    root = tmp_path / "root"
    args = [a.replace("WAL", str(root / "wal")) for a in extra]
    proc = restore(src, root, *args)
    assert proc.returncode == 0, proc.stderr
    assert tree_state(src) == before, "the source was modified"
    if name == "live" and not extra:
        assert not (root / "wal").exists()
    server = influxd_factory(root)
    # the *_incremental sets are `-database db1` backups of a server that also held db2
    dbs = ["db1"] if name.endswith("_incremental") else None
    assert harness.compare_truth(harness.without_dead_fields(truth(name)), server.dump(), databases=dbs) == []


def test_shard_ids_ending_in_zero_and_tsi1_config(tmp_path, fixtures_dir, influxd_factory, truth) -> None:
    """influxd's offline restore writes shard 10 into ``hourly/1``; ours into ``hourly/10``. And
    the restored (index-less) shards are served under an ``index-version = "tsi1"`` config."""
    root = tmp_path / "root"
    assert restore(fixtures_dir / "legacy", root).returncode == 0
    ten = root / "data" / "db1" / "hourly" / "10"
    assert sorted(os.listdir(ten)) == ["000000001-000000001.tombstone", "000000001-000000001.tsm"]
    assert (root / "data" / "db1" / "hourly" / "1").exists() is False
    server = influxd_factory(root, index="tsi1")
    assert harness.compare_truth(harness.without_dead_fields(truth("legacy")), server.dump()) == []
    assert "index_version=inmem" in server.log_path.read_text()


def test_users_grants_and_cqs_are_kept(tmp_path, fixtures_dir) -> None:
    """influxd's portable restore drops users, grants and CQs; the restored meta.db keeps the
    source's users with their password hashes."""
    root = tmp_path / "root"
    assert restore(fixtures_dir / "portable", root).returncode == 0
    restored = read_meta_db(root / "meta" / "meta.db")
    source = open_source(fixtures_dir / "portable").meta
    assert [(u.name, u.hash, u.admin) for u in restored.users] == [(u.name, u.hash, u.admin) for u in source.users]
    assert restored.database("db1").continuous_queries == source.database("db1").continuous_queries


def test_modes_match_influxd(tmp_path, fixtures_dir) -> None:
    root = tmp_path / "root"
    assert restore(fixtures_dir / "legacy", root).returncode == 0
    mode = lambda p: (root / p).stat().st_mode & 0o7777  # noqa: E731
    assert mode("meta") == 0o755 and mode("meta/meta.db") == 0o644
    assert mode("data/db1") == 0o700 and mode("data/db1/hourly") == 0o700
    assert mode("data/db1/hourly/10") == 0o755
    assert mode("data/db1/hourly/10/000000001-000000001.tsm") == 0o644


def _renamed_truth(t: dict, db: str, newdb: str, rp: str | None = None, newrp: str | None = None) -> dict:
    out = copy.deepcopy(t)
    d = out["databases"].pop(db)
    if rp is not None:
        for section in ("data", "retention_policies", "subscriptions"):
            d[section] = {(newrp if k == rp else k): v for k, v in d[section].items() if k == rp}
        d["retention_policies"][newrp]["default"] = True
    out["databases"] = {newdb: d}
    return out


def test_newdb_newrp_and_filters(tmp_path, fixtures_dir, influxd_factory, truth) -> None:
    root = tmp_path / "root"
    proc = restore(fixtures_dir / "legacy", root, "-db", "db1", "-newdb", "restored", "-rp", "hourly", "-newrp", "h1")
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(root / "data")) == ["restored"]
    assert sorted(os.listdir(root / "data" / "restored")) == ["h1"]
    server = influxd_factory(root)
    expected = _renamed_truth(harness.without_dead_fields(truth("legacy")), "db1", "restored", "hourly", "h1")
    got = server.dump()
    assert harness.compare_truth(expected, got, sections={"databases", "retention_policies", "points", "fields"}) == []
    # reader had READ on db1: the grant follows the rename; db2's grant is not restored
    assert got["users"]["reader"]["grants"] == {"restored": "READ"}


def test_existing_database_refused_then_merged(tmp_path, fixtures_dir, influxd_factory, truth) -> None:
    root = tmp_path / "root"
    assert restore(fixtures_dir / "legacy", root, "--database", "db1").returncode == 0
    before = tree_state(root)
    proc = restore(fixtures_dir / "legacy", root, "--database", "db1")
    assert proc.returncode == 3
    assert "already exists" in proc.stderr and "--merge" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert tree_state(root) == before

    # A live server writes into db1: one point that conflicts with the backup, one that does not,
    # and a new database. Then the backup is merged in offline.
    # The live writes must reach TSM (cold snapshot after 1 s): points still in the target's WAL
    # win over any TSM file, restored or not, and the restore warns about that case.
    server = influxd_factory(root, cold="1s")
    server.write("cpu,host=h0 v=-1 1793491200000000000\ncpu,host=h9 v=5 1793491200000000000", db="db1", rp="autogen")
    server.execute("CREATE DATABASE other")
    server.write("x v=1 1793491200000000000", db="other")
    shard1 = root / "data" / "db1" / "autogen" / "1"
    deadline = time.monotonic() + 60
    while len(list(shard1.glob("*.tsm"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    server.stop()
    assert len(list(shard1.glob("*.tsm"))) == 2
    proc = restore(fixtures_dir / "legacy", root, "--database", "db1", "--merge")
    assert proc.returncode == 0, proc.stderr
    server = influxd_factory(root)
    got = server.dump()
    expected = harness.without_dead_fields(truth("legacy"))
    # the restored value wins on the conflicting point; the live-only point stays
    cpu = {tuple(sorted(s["tags"].items())): s["points"] for s in got["databases"]["db1"]["data"]["autogen"]["cpu"]["series"]}
    assert cpu[(("host", "h9"),)] == [[1793491200000000000, {"v": 5.0}]]
    got["databases"]["db1"]["data"]["autogen"]["cpu"]["series"] = [
        s for s in got["databases"]["db1"]["data"]["autogen"]["cpu"]["series"] if s["tags"] != {"host": "h9"}
    ]
    assert harness.compare_truth(expected, got, databases=["db1"], sections={"points", "fields", "retention_policies"}) == []
    assert "other" in got["databases"]


def test_restore_into_existing_metastore_allocates_new_ids(tmp_path, fixtures_dir, influxd_factory, truth) -> None:
    root = tmp_path / "root"
    assert restore(fixtures_dir / "legacy", root, "--database", "db2").returncode == 0
    assert restore(fixtures_dir / "legacy", root, "--database", "db1").returncode == 0
    meta = read_meta_db(root / "meta" / "meta.db")
    ids = [ref.shard.id for ref in meta.iter_shards()]
    assert len(ids) == len(set(ids)) and meta.max_shard_id == max(ids)
    for ref in meta.iter_shards():
        assert (root / "data" / ref.db.name / ref.rp.name / str(ref.shard.id)).is_dir()
    server = influxd_factory(root)
    assert harness.compare_truth(harness.without_dead_fields(truth("legacy")), server.dump(), sections={"points", "fields", "retention_policies", "users"}) == []


def test_dry_run_writes_nothing(tmp_path, fixtures_dir) -> None:
    root = tmp_path / "root"
    proc = restore(fixtures_dir / "portable", root, "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    assert not root.exists()
    import json

    plan = json.loads(proc.stdout)["plan"]
    assert {s["id"] for s in plan["shards"]} == set(range(1, 20))
    assert plan["bytes"] == sum(f["bytes"] for s in plan["shards"] for f in s["files"])


@pytest.mark.parametrize("existing", [False, True], ids=["fresh-target", "existing-target"])
def test_failure_midway_leaves_target_untouched(existing, tmp_path, fixtures_dir, monkeypatch) -> None:
    root = tmp_path / "root"
    if existing:
        plan = plan_restore(open_source(fixtures_dir / "legacy"), metadir=root / "meta", datadir=root / "data",
                            selection=Selection(database="db2"))
        execute_restore(plan)
    before = tree_state(tmp_path)
    src = open_source(fixtures_dir / "portable")
    plan = plan_restore(src, metadir=root / "meta", datadir=root / "data", selection=Selection(database="db1", newdb="x"))
    calls = {"n": 0}
    real = restore_mod._copy_raw

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(28, "No space left on device", str(a[1]))
        return real(*a, **kw)

    monkeypatch.setattr(restore_mod, "_copy_raw", failing)
    with pytest.raises(TargetError, match="no space left"):
        execute_restore(plan)
    assert tree_state(tmp_path) == before


def test_damaged_source_refused_before_writing(tmp_path, fixtures_dir) -> None:
    src = tmp_path / "src"
    import shutil

    shutil.copytree(fixtures_dir / "live", src)
    tsm = sorted((src / "data" / "db1" / "autogen").rglob("*.tsm"))[-1]
    data = bytearray(tsm.read_bytes())
    data[-3] ^= 0xFF  # index offset in the footer now points elsewhere
    tsm.write_bytes(bytes(data))
    root = tmp_path / "root"
    proc = restore(src, root)
    assert proc.returncode == 1, proc.stderr
    assert str(tsm) in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "data").exists() and not (root / "meta").exists()


def test_usage_errors(tmp_path, fixtures_dir) -> None:
    root = tmp_path / "root"
    for args, text in [
        (("--newdb", "x"), "--newdb needs --database"),
        (("--database", "nope"), "database 'nope' is not in"),
        (("-portable",), "offline"),
    ]:
        proc = restore(fixtures_dir / "legacy", root, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert text in proc.stderr and proc.stderr.count("\n") == 1
    assert not root.exists()
    with pytest.raises(UsageError):
        Selection(retention="autogen")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")
def test_owner_chowns_everything_written(tmp_path, fixtures_dir) -> None:
    user = "ia-restore-test"
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", user], check=True)
        pw = pwd.getpwnam(user)
    root = tmp_path / "root"
    proc = restore(fixtures_dir / "live", root, "--owner", f"{user}:{user}", "--waldir", str(root / "wal"))
    assert proc.returncode == 0, proc.stderr
    paths = [root] + [Path(d) / n for d, ds, fs in os.walk(root) for n in ds + fs]
    assert len(paths) > 20
    for p in paths:
        st = p.lstat()
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), p


def test_never_writes_through_a_symlink_in_the_target(tmp_path, fixtures_dir) -> None:
    """A database directory in the target that is a symbolic link to elsewhere is refused; the
    data directory itself may be a link (e.g. to another disk)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    disk = tmp_path / "disk"
    disk.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "data").symlink_to(disk)
    (disk / "db1").symlink_to(elsewhere)
    proc = restore(fixtures_dir / "legacy", root)
    assert proc.returncode == 3 and "symbolic link" in proc.stderr and str(root / "data" / "db1") in proc.stderr
    assert list(elsewhere.iterdir()) == [] and not (root / "meta").exists()
    (disk / "db1").unlink()
    proc = restore(fixtures_dir / "legacy", root)
    assert proc.returncode == 0, proc.stderr
    assert (disk / "db1" / "hourly" / "10").is_dir() and list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is about running as root (CI runs as root)")
def test_root_without_owner_is_warned_when_the_target_belongs_to_someone_else(tmp_path, fixtures_dir) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.chown(root, 65534, 65534)  # nobody: like /var/lib/influxdb owned by influxdb
    proc = restore(fixtures_dir / "legacy", root)
    assert proc.returncode == 0, proc.stderr
    assert "influx-archive: warning: running as root without --owner" in proc.stderr and "uid 65534" in proc.stderr
