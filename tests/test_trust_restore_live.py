"""Never under a running influxd (item 4), and the lock file is harmless to influxd (item 3):
real influxd 1.6.7 servers on loopback ports."""

from __future__ import annotations

import re
import time
from pathlib import Path

import hostile_restore as hr
import influxd as harness
import pytest

from influx_archive.archive.guard import LOCK_NAME

SRC = hr.FIXTURES / "legacy"


def leftovers(*roots: Path) -> list[Path]:
    return [p for r in roots for p in r.rglob("*") if p.name == LOCK_NAME or p.name.startswith(hr.STAGE_PREFIX)]


#: what a finished restore prints after its result (cli/nextstep.py), never a finding
NEXT_STEP = re.compile(r"^influx-archive: (next: |note: |  )")


def one_line(err: str) -> str:
    """The one line of a case's stderr, after the next-step lines a finished restore adds."""
    assert "Traceback" not in err
    err = "".join(ln for ln in err.splitlines(keepends=True) if not NEXT_STEP.match(ln))
    assert err.count("\n") == 1, err
    return err


@pytest.mark.interop
def test_restore_into_and_backup_of_a_running_server_are_refused(tmp_path, influxd_factory, cli) -> None:
    server = influxd_factory(tmp_path / "srv")
    server.execute("CREATE DATABASE srv")
    server.write("m v=1 1000000000\n", db="srv")
    time.sleep(0.5)
    work = tmp_path / "work"
    work.mkdir()
    meta_before = (server.meta_dir / "meta.db").read_bytes()
    src_before = hr.snapshot(SRC)
    cases = hr.live_targets(server.root, work)
    assert len(cases) == 8
    for name, args in cases:
        proc = cli("restore", str(SRC), *args)
        line = one_line(proc.stderr)
        assert proc.returncode == 5, (name, proc.stderr)
        assert "influxd" in line and f"pid {server.pid}" in line and "--force" in line, (name, line)
        assert sorted(p.name for p in work.iterdir()) == ["alias-data"], name  # nothing created elsewhere
        assert not leftovers(server.root, work), name
        assert (server.meta_dir / "meta.db").read_bytes() == meta_before, name
    dest = tmp_path / "bk"
    proc = cli("backup", str(server.root), str(dest))
    line = one_line(proc.stderr)
    assert proc.returncode == 5 and "influxd" in line and f"pid {server.pid}" in line and "back up" in line, proc.stderr
    assert not dest.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bk")]
    assert hr.snapshot(SRC) == src_before
    assert server.running and server.execute("SHOW DATABASES")


@pytest.mark.interop
def test_force_proceeds_under_a_running_server(tmp_path, influxd_factory, cli) -> None:
    server = influxd_factory(tmp_path / "srv")
    server.execute("CREATE DATABASE srv")
    server.write("m v=1 1000000000\n", db="srv")
    time.sleep(0.5)
    dest = tmp_path / "bk"
    proc = cli("backup", str(server.root), str(dest), "--force")
    assert proc.returncode == 0, proc.stderr
    assert list(dest.glob("*.manifest"))
    proc = cli("restore", str(SRC), "--metadir", str(server.meta_dir), "--datadir", str(server.data_dir),
               "--waldir", str(server.wal_dir), "--force")
    assert proc.returncode == 0, proc.stderr
    line = one_line(proc.stderr)
    assert "warning: --force" in line and f"pid {server.pid}" in line
    assert (server.data_dir / "db1").is_dir() and not leftovers(server.root)


@pytest.mark.interop
def test_an_idle_server_with_nothing_open_is_found_by_its_configuration(tmp_path, influxd_factory, cli) -> None:
    """A fresh influxd holds nothing open in meta/ or data/: its config names them."""
    server = influxd_factory(tmp_path / "srv")
    proc = cli("restore", str(SRC), "--metadir", str(server.meta_dir), "--datadir", str(server.data_dir))
    assert (
        proc.returncode == 5 and "configured directory" in one_line(proc.stderr) and f"pid {server.pid}" in proc.stderr
    )
    assert not leftovers(server.root)


@pytest.mark.interop
def test_a_lock_file_left_by_a_killed_run_is_harmless_to_influxd(tmp_path, influxd_factory, truth, cli) -> None:
    """influxd 1.6.7 skips non-directories in data/ (tsdb/store.go), reads only meta.db in meta/,
    and opens WAL dirs per shard: a stray lock file in each changes nothing it serves."""
    root = tmp_path / "root"
    proc = cli("restore", str(hr.FIXTURES / "live"), "--metadir", str(root / "meta"), "--datadir", str(root / "data"),
               "--waldir", str(root / "wal"))
    assert proc.returncode == 0, proc.stderr
    for d in ("meta", "data", "wal"):
        (root / d / LOCK_NAME).write_text("4242\n")
    server = influxd_factory(root)
    assert harness.compare_truth(harness.without_dead_fields(truth("live")), server.dump()) == []
    server.execute("CREATE DATABASE later")  # a metadata change rewrites meta.db: still fine
    server.stop()
    server.start()
    assert (
        harness.compare_truth(harness.without_dead_fields(truth("live")), server.dump(), databases=["db1", "db2"]) == []
    )
    assert all((root / d / LOCK_NAME).exists() for d in ("meta", "data", "wal"))
