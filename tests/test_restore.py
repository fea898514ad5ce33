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
import time
from pathlib import Path

import influxd as harness
import pytest

from influx_archive.archive.errors import TargetError, UsageError
from influx_archive.archive.ops.restore import execute_restore, plan_restore
from influx_archive.archive.ops.restore import shards as restore_shards
from influx_archive.archive.ops.select import Selection
from influx_archive.archive.sources import open_source
from influx_archive.meta.files import read_meta_db


def restore(cli, src: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = cli("restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), *args)
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


@pytest.mark.interop
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
def test_restore_is_served_like_the_source(name, extra, tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    src = fixtures_dir / name
    before = tree_state(src)
    root = tmp_path / "root"
    args = [a.replace("WAL", str(root / "wal")) for a in extra]
    proc = restore(cli, src, root, *args)
    assert proc.returncode == 0, proc.stderr
    assert tree_state(src) == before, "the source was modified"
    if name == "live" and not extra:
        assert not (root / "wal").exists()
    server = influxd_factory(root)
    # the *_incremental sets are `-database db1` backups of a server that also held db2
    dbs = ["db1"] if name.endswith("_incremental") else None
    assert harness.compare_truth(harness.without_dead_fields(truth(name)), server.dump(), databases=dbs) == []


@pytest.mark.interop
def test_shard_ids_ending_in_zero_and_tsi1_config(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    """influxd's offline restore writes shard 10 into ``hourly/1``; ours into ``hourly/10``. And
    the restored (index-less) shards are served under an ``index-version = "tsi1"`` config."""
    root = tmp_path / "root"
    assert restore(cli, fixtures_dir / "legacy", root).returncode == 0
    ten = root / "data" / "db1" / "hourly" / "10"
    assert sorted(os.listdir(ten)) == ["000000001-000000001.tombstone", "000000001-000000001.tsm"]
    assert (root / "data" / "db1" / "hourly" / "1").exists() is False
    server = influxd_factory(root, index="tsi1")
    assert harness.compare_truth(harness.without_dead_fields(truth("legacy")), server.dump()) == []
    assert "index_version=inmem" in server.log_path.read_text()


def test_users_grants_and_cqs_are_kept(tmp_path, fixtures_dir, cli) -> None:
    """influxd's portable restore drops users, grants and CQs; the restored meta.db keeps the
    source's users with their password hashes."""
    root = tmp_path / "root"
    assert restore(cli, fixtures_dir / "portable", root).returncode == 0
    restored = read_meta_db(root / "meta" / "meta.db")
    source = open_source(fixtures_dir / "portable").meta
    assert [(u.name, u.hash, u.admin) for u in restored.users] == [(u.name, u.hash, u.admin) for u in source.users]
    assert restored.database("db1").continuous_queries == source.database("db1").continuous_queries


def test_modes_match_influxd(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    assert restore(cli, fixtures_dir / "legacy", root).returncode == 0
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


@pytest.mark.interop
def test_newdb_newrp_and_filters(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    root = tmp_path / "root"
    proc = restore(
        cli, fixtures_dir / "legacy", root, "-db", "db1", "-newdb", "restored", "-rp", "hourly", "-newrp", "h1"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(root / "data")) == ["restored"]
    assert sorted(os.listdir(root / "data" / "restored")) == ["h1"]
    server = influxd_factory(root)
    expected = _renamed_truth(harness.without_dead_fields(truth("legacy")), "db1", "restored", "hourly", "h1")
    got = server.dump()
    assert harness.compare_truth(expected, got, sections={"databases", "retention_policies", "points", "fields"}) == []
    # reader had READ on db1: the grant follows the rename; db2's grant is not restored
    assert got["users"]["reader"]["grants"] == {"restored": "READ"}


@pytest.mark.interop
def test_existing_database_refused_then_merged(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    root = tmp_path / "root"
    assert restore(cli, fixtures_dir / "legacy", root, "--database", "db1").returncode == 0
    before = tree_state(root)
    proc = restore(cli, fixtures_dir / "legacy", root, "--database", "db1")
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
    proc = restore(cli, fixtures_dir / "legacy", root, "--database", "db1", "--merge")
    assert proc.returncode == 0, proc.stderr
    server = influxd_factory(root)
    got = server.dump()
    expected = harness.without_dead_fields(truth("legacy"))
    # the restored value wins on the conflicting point; the live-only point stays
    cpu = {
        tuple(sorted(s["tags"].items())): s["points"]
        for s in got["databases"]["db1"]["data"]["autogen"]["cpu"]["series"]
    }
    assert cpu[(("host", "h9"),)] == [[1793491200000000000, {"v": 5.0}]]
    got["databases"]["db1"]["data"]["autogen"]["cpu"]["series"] = [
        s for s in got["databases"]["db1"]["data"]["autogen"]["cpu"]["series"] if s["tags"] != {"host": "h9"}
    ]
    assert (
        harness.compare_truth(expected, got, databases=["db1"], sections={"points", "fields", "retention_policies"})
        == []
    )
    assert "other" in got["databases"]


@pytest.mark.interop
def test_restore_into_existing_metastore_allocates_new_ids(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    root = tmp_path / "root"
    assert restore(cli, fixtures_dir / "legacy", root, "--database", "db2").returncode == 0
    assert restore(cli, fixtures_dir / "legacy", root, "--database", "db1").returncode == 0
    meta = read_meta_db(root / "meta" / "meta.db")
    ids = [ref.shard.id for ref in meta.iter_shards()]
    assert len(ids) == len(set(ids)) and meta.max_shard_id == max(ids)
    for ref in meta.iter_shards():
        assert (root / "data" / ref.db.name / ref.rp.name / str(ref.shard.id)).is_dir()
    server = influxd_factory(root)
    assert (
        harness.compare_truth(
            harness.without_dead_fields(truth("legacy")),
            server.dump(),
            sections={"points", "fields", "retention_policies", "users"},
        )
        == []
    )


def test_dry_run_writes_nothing(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    proc = restore(cli, fixtures_dir / "portable", root, "--dry-run", "--json")
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
    plan = plan_restore(
        src, metadir=root / "meta", datadir=root / "data", selection=Selection(database="db1", newdb="x")
    )
    calls = {"n": 0}
    real = restore_shards._finish  # every staged file ends here, whichever way it was written

    def failing(out):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError(28, "No space left on device", out.name)
        return real(out)

    monkeypatch.setattr(restore_shards, "_finish", failing)
    with pytest.raises(TargetError, match="no space left"):
        execute_restore(plan)
    assert tree_state(tmp_path) == before


def test_damaged_source_refused_before_writing(tmp_path, fixtures_dir, cli) -> None:
    src = tmp_path / "src"
    import shutil

    shutil.copytree(fixtures_dir / "live", src)
    tsm = sorted((src / "data" / "db1" / "autogen").rglob("*.tsm"))[-1]
    data = bytearray(tsm.read_bytes())
    data[-3] ^= 0xFF  # index offset in the footer now points elsewhere
    tsm.write_bytes(bytes(data))
    root = tmp_path / "root"
    proc = restore(cli, src, root)
    assert proc.returncode == 1, proc.stderr
    assert str(tsm) in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "data").exists() and not (root / "meta").exists()


def test_usage_errors(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    for args, text in [
        (("--newdb", "x"), "--newdb needs --database"),
        (("--database", "nope"), "database 'nope' is not in"),
        (("-skip-errors",), "--salvage"),
    ]:
        proc = restore(cli, fixtures_dir / "legacy", root, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert text in proc.stderr and proc.stderr.count("\n") == 1
    assert not root.exists()
    with pytest.raises(UsageError):
        Selection(retention="autogen")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root (CI runs as root)")
def test_owner_chowns_everything_written(tmp_path, fixtures_dir, cli) -> None:
    user = "ia-restore-test"
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", user], check=True)
        pw = pwd.getpwnam(user)
    root = tmp_path / "root"
    proc = restore(cli, fixtures_dir / "live", root, "--owner", f"{user}:{user}", "--waldir", str(root / "wal"))
    assert proc.returncode == 0, proc.stderr
    paths = [root] + [Path(d) / n for d, ds, fs in os.walk(root) for n in ds + fs]
    assert len(paths) > 20
    for p in paths:
        st = p.lstat()
        assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid), p


def test_never_writes_through_a_symlink_in_the_target(tmp_path, fixtures_dir, cli) -> None:
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
    proc = restore(cli, fixtures_dir / "legacy", root)
    assert proc.returncode == 3 and "symbolic link" in proc.stderr and str(root / "data" / "db1") in proc.stderr
    assert list(elsewhere.iterdir()) == [] and not (root / "meta").exists()
    (disk / "db1").unlink()
    proc = restore(cli, fixtures_dir / "legacy", root)
    assert proc.returncode == 0, proc.stderr
    assert (disk / "db1" / "hourly" / "10").is_dir() and list(elsewhere.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="the warning is about running as root (CI runs as root)")
def test_root_without_owner_is_warned_when_the_target_belongs_to_someone_else(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.chown(root, 65534, 65534)  # nobody: like /var/lib/influxdb owned by influxdb
    proc = restore(cli, fixtures_dir / "legacy", root)
    assert proc.returncode == 0, proc.stderr
    assert "influx-archive: warning: running as root without --owner" in proc.stderr and "uid 65534" in proc.stderr


# --- portable sources: members inflated straight into the staging area --------------------------


def _targz_members(path: Path) -> dict[str, bytes]:
    import tarfile

    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}  # type: ignore[union-attr]


def _frames(tsm: bytes) -> list[tuple[bytes, int, int, bytes]]:
    import io

    from influx_archive.tsm.reader import TSMReader

    r = TSMReader(io.BytesIO(tsm), name="x.tsm")
    return [(k, e.min_time, e.max_time, r.read_frame(e)) for k, _, es in r.iter_index() for e in es]


def _damaged_portable(tmp_path: Path, fixtures_dir: Path, *, truncate_s4: bool) -> tuple[Path, int, bytes]:
    """fixtures/portable with one flipped byte in the 2nd block of shard 2's TSM (the .tar.gz
    re-compressed, so only the block is damaged) and, optionally, shard 4's .tar.gz cut in half.
    Returns the copy, the damaged block's offset in its TSM file, and that TSM file intact."""
    import gzip
    import io
    import shutil
    import tarfile

    from influx_archive.tsm.reader import TSMReader

    src = tmp_path / "portable"
    shutil.copytree(fixtures_dir / "portable", src)
    s2 = next(src.glob("*.s2.tar.gz"))
    raw = bytearray(gzip.decompress(s2.read_bytes()))
    with tarfile.open(fileobj=io.BytesIO(bytes(raw))) as tf:
        m = next(m for m in tf.getmembers() if m.name.endswith(".tsm"))
    intact = bytes(raw[m.offset_data : m.offset_data + m.size])
    r = TSMReader(io.BytesIO(intact), name="x.tsm")
    offset = sorted(e.offset for _, _, es in r.iter_index() for e in es)[1]
    raw[m.offset_data + offset + 12] ^= 0x40
    s2.write_bytes(gzip.compress(bytes(raw)))  # same tar bytes but one: the manifest size still holds
    if truncate_s4:
        s4 = next(src.glob("*.s4.tar.gz"))
        s4.write_bytes(s4.read_bytes()[: s4.stat().st_size // 2])
    return src, offset, intact


def test_portable_restore_writes_every_member_unchanged(tmp_path, fixtures_dir) -> None:
    src = fixtures_dir / "portable"
    root = tmp_path / "root"
    execute_restore(plan_restore(open_source(src), metadir=root / "meta", datadir=root / "data"))
    expected = {}
    for gz in src.glob("*.tar.gz"):
        expected.update(_targz_members(gz))
    got = {str(p.relative_to(root / "data")): p.read_bytes() for p in (root / "data").rglob("*") if p.is_file()}
    assert got == expected
    assert not [p for p in tmp_path.rglob("*") if "spool" in p.name or p.name.startswith(".")]


def test_portable_block_damage_refused_then_salvaged(tmp_path, fixtures_dir) -> None:
    from influx_archive.archive.errors import ChecksumError

    src, offset, intact = _damaged_portable(tmp_path, fixtures_dir, truncate_s4=False)
    root = tmp_path / "root"
    root.mkdir()
    before = tree_state(root)
    with pytest.raises(ChecksumError) as exc:
        execute_restore(plan_restore(open_source(src), metadir=root / "meta", datadir=root / "data"))
    assert exc.value.offset == offset and exc.value.member.endswith(".tsm") and ".s2.tar.gz" in exc.value.path
    assert tree_state(root) == before

    src2, offset, intact = _damaged_portable(tmp_path / "b", fixtures_dir, truncate_s4=True)
    source = open_source(src2, salvage=True)
    result = execute_restore(plan_restore(source, metadir=root / "meta", datadir=root / "data"))
    errors = [f for f in result.skipped if f.severity == "error"]
    assert any("damaged block" in f.message and f.offset == offset and ".s2.tar.gz" in f.path for f in errors)
    assert any(".s4.tar.gz" in f.path for f in errors)
    restored = next((root / "data" / "db1" / "autogen" / "2").glob("*.tsm")).read_bytes()
    assert _frames(restored) == [fr for fr in _frames(intact) if fr[3] != _frame_at(intact, offset)]
    assert not list((root / "data" / "db1" / "autogen").glob("4/*.tsm"))  # its only TSM was past the cut
    for gz in src2.glob("*.tar.gz"):
        if ".s2." in gz.name or ".s4." in gz.name:
            continue
        for name, data in _targz_members(gz).items():
            assert (root / "data" / name).read_bytes() == data, name


def _frame_at(tsm: bytes, offset: int) -> bytes:
    return next(fr for k, lo, hi, fr in _frames(tsm) if tsm[offset : offset + len(fr)] == fr)


@pytest.mark.parametrize("salvage", [False, True], ids=["strict", "salvage"])
def test_portable_container_damaged_after_it_was_listed(tmp_path, fixtures_dir, salvage: bool) -> None:
    """A .tar.gz that changes between open and restore (cut short here): strict restore refuses
    and leaves the target as it was; --salvage leaves that shard's files out and says so."""
    import shutil

    from influx_archive.archive.errors import ArchiveError

    src = tmp_path / "portable"
    shutil.copytree(fixtures_dir / "portable", src)
    plan = plan_restore(
        open_source(src, salvage=salvage), metadir=tmp_path / "root" / "meta", datadir=tmp_path / "root" / "data"
    )
    s3 = next(src.glob("*.s3.tar.gz"))
    s3.write_bytes(s3.read_bytes()[:40])
    (tmp_path / "root").mkdir()
    before = tree_state(tmp_path / "root")
    if not salvage:
        with pytest.raises(ArchiveError) as exc:
            execute_restore(plan)
        assert ".s3.tar.gz" in exc.value.path
        assert tree_state(tmp_path / "root") == before
        return
    result = execute_restore(plan)
    assert [f.path for f in result.skipped if f.severity == "error"] == [str(s3)]
    assert not list((tmp_path / "root" / "data" / "db1" / "autogen" / "3").glob("*"))
    assert list((tmp_path / "root" / "data" / "db1" / "autogen" / "2").glob("*.tsm"))
