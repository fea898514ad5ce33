"""build-tsi's behaviour around the index it writes: dry run, skip / --force, --owner, influxd's
modes, a run killed half-way, a busy target, and the per-shard entry point restore will call."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_trust_tsi1 import tree_hash

from influx_archive.archive.ops import buildtsi, tsiwrite
from influx_archive.tsm.tsi1 import index as ix
from influx_archive.tsm.tsi1 import seriesfile as sf

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture
def tree(tmp_path, cli) -> Path:
    root = tmp_path / "root"
    assert cli("restore", str(FIXTURES / "live"), "--metadir", str(root / "meta"),
                  "--datadir", str(root / "data"), "--waldir", str(root / "wal")).code == 0
    return root


def build(root: Path, *extra: str) -> list[str]:
    return ["build-tsi", "--datadir", str(root / "data"), "--waldir", str(root / "wal"), *extra]


def test_dry_run_writes_nothing(tree, cli) -> None:
    before = tree_hash(tree)
    code, out, err = cli(*build(tree, "--dry-run"))
    assert code == 0, err
    assert "(dry run: nothing written)" in out and "db1/autogen/4: build index/, 4 series" in out
    assert "database db1: 7 series added to _series" in out
    assert tree_hash(tree) == before


@pytest.mark.slow
def test_skip_then_force_rebuilds_identically(tree, cli) -> None:
    assert cli(*build(tree))[0] == 0
    built = tree_hash(tree / "data")
    code, out, _ = cli(*build(tree))
    assert code == 0 and "built 0 shard indexes" in out and "skipped 21" in out
    assert tree_hash(tree / "data") == built
    code, out, _ = cli(*build(tree, "--force", "--db", "db1", "--rp", "autogen", "--shard", "4"))
    assert code == 0 and "rebuild index/ (--force)" in out and "built 1 shard indexes" in out
    assert tree_hash(tree / "data") == built  # same series, same ids, same bytes; no leftovers


@pytest.mark.slow
def test_modes_are_influxds(tree, cli) -> None:
    old = os.umask(0o022)
    try:
        assert cli(*build(tree))[0] == 0
    finally:
        os.umask(old)
    for sub in ("db1/_series", "db1/autogen/4/index"):
        for dirpath, _dirs, files in os.walk(tree / "data" / sub):
            assert os.stat(dirpath).st_mode & 0o7777 == 0o755, dirpath
            for f in files:
                assert os.stat(Path(dirpath) / f).st_mode & 0o7777 == 0o644, f


@pytest.mark.slow
def test_owner_applies_to_everything_written(tree, cli) -> None:
    # the CI runs as root; elsewhere only one's own ids can be given
    uid, gid = (4321, 4322) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    tsm_owner = {p: p.stat().st_uid for p in (tree / "data").glob("*/*/*/*.tsm")}
    assert cli(*build(tree, "--owner", f"{uid}:{gid}"))[0] == 0
    written = [
        p for sub in ("_series", "*/*/index") for d in (tree / "data").glob(f"*/{sub}") for p in [d, *d.rglob("*")]
    ]
    assert written
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in written} == {(uid, gid)}
    assert {p: p.stat().st_uid for p in tsm_owner} == tsm_owner


@pytest.mark.slow
def test_killed_run_is_undone_first(tree, cli) -> None:
    """A run killed between the two renames of the series file swap left ``_series`` missing and
    the old one under its temporary name, plus a staged copy and a half-written ``.index``."""
    assert cli(*build(tree))[0] == 0
    built = tree_hash(tree / "data")
    db = tree / "data" / "db1"
    os.rename(db / "_series", db / f"{tsiwrite.SERIES_OLD}999")
    shutil.copytree(db / f"{tsiwrite.SERIES_OLD}999", db / f"{tsiwrite.SERIES_STAGE}999")
    shard = db / "autogen" / "4"
    shutil.rmtree(shard / "index")
    (shard / tsiwrite.STAGE_INDEX / "0").mkdir(parents=True)
    (shard / tsiwrite.STAGE_INDEX / "0" / "L0-00000001.tsl").write_bytes(b"\x00half")
    code, _out, err = cli(*build(tree))
    assert code == 0, err
    assert tree_hash(tree / "data") == built


def test_busy_target_is_refused(tree, cli) -> None:
    tsm = next((tree / "data").glob("db1/autogen/1/*.tsm"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; f=open(sys.argv[1],'rb'); print('ok', flush=True); time.sleep(60)",
            str(tsm),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        before = tree_hash(tree)
        code, _out, err = cli(*build(tree))
        assert code == 5 and len(err.splitlines()) == 1 and str(tsm) in err and f"process {holder.pid}" in err, err
        assert tree_hash(tree) == before
    finally:
        holder.kill()
        holder.wait()
    # another run holding the data directory's lock
    fd = os.open(tree / "data", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        code, _out, err = cli(*build(tree))
        assert code == 5 and "lock" in err and len(err.splitlines()) == 1, err
    finally:
        os.close(fd)


def test_build_shard_index_for_a_staged_shard(tree, tmp_path) -> None:
    """The entry point restore will call: one shard directory anywhere (staged), the database's
    series file named explicitly (created when missing), the shard's WAL optional."""
    staged = tmp_path / "stage" / "4"
    shutil.copytree(tree / "data" / "db1" / "autogen" / "4", staged)
    sdir = tmp_path / "db" / "_series"
    sdir.parent.mkdir()
    n = buildtsi.build_shard_index(staged, sdir, wal_dir=tree / "wal" / "db1" / "autogen" / "4")
    assert n == 4
    sfile = sf.SeriesFile(sdir)
    assert sfile.series_count() == 4
    assert ix.ShardIndex(staged / "index").series_ids() == {i for i, _k in sfile.series()}
    # again: index/ exists, nothing done; with force the same bytes
    before = tree_hash(tmp_path)
    assert buildtsi.build_shard_index(staged, sdir) == 0
    assert buildtsi.build_shard_index(staged, sdir, wal_dir=tree / "wal" / "db1" / "autogen" / "4", force=True) == 4
    assert tree_hash(tmp_path) == before


@pytest.mark.slow
def test_extends_an_existing_series_file_keeping_ids(tree, cli) -> None:
    """A database whose _series already has series (influxd ran with inmem): their ids stay,
    new series get the next ids of their partitions."""
    assert cli(*build(tree, "--db", "db1", "--rp", "hourly"))[0] == 0
    first = {k: i for i, k in sf.SeriesFile(tree / "data" / "db1" / "_series").series()}
    assert cli(*build(tree))[0] == 0
    after = {k: i for i, k in sf.SeriesFile(tree / "data" / "db1" / "_series").series()}
    assert {k: after[k] for k in first} == first
    assert len(after) > len(first)
    for k, i in after.items():
        p = sf.key_partition(k)
        assert (i - 1) % 8 == p
    per_part: dict[int, list[int]] = {}
    for k, i in after.items():
        per_part.setdefault(sf.key_partition(k), []).append(i)
    for p, ids in per_part.items():
        assert sorted(ids) == list(range(p + 1, p + 2 + 8 * (len(ids) - 1), 8))


@pytest.mark.slow
def test_symbolic_links_are_not_written_through(tree, tmp_path, cli) -> None:
    """A shard directory that is a link is left alone (a warning says so); a _series that is a
    link is refused before anything is written (the swap would replace the link)."""
    elsewhere = tmp_path / "elsewhere"
    shard = tree / "data" / "db2" / "short" / "19"
    shutil.move(str(shard), elsewhere)
    os.symlink(elsewhere, shard)
    before = tree_hash(elsewhere)
    code, _out, err = cli(*build(tree))
    assert code == 0 and f"{shard} is a symbolic link" in err, err
    assert tree_hash(elsewhere) == before and not (elsewhere / "index").exists()
    series = tree / "data" / "db1" / "_series"
    real = tmp_path / "real_series"
    shutil.move(str(series), real)
    os.symlink(real, series)
    snapshot = tree_hash(tree)
    code, _out, err = cli(*build(tree, "--force"))
    assert code == 3 and len(err.splitlines()) == 1 and str(series) in err, err
    assert tree_hash(tree) == snapshot and os.path.islink(series)
