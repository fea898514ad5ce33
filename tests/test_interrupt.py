"""Interrupted runs (issue 8): a restore, convert, pack or export killed at any point (SIGKILL,
simulated by ``os._exit`` inside the run so no cleanup code can run) leaves no partial output in
place, and the next run succeeds with a result identical to an uninterrupted one. SIGINT runs the
normal rollback. ENOSPC while writing gives a clean error and no output."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = r"""
import os, signal, sys
from influx_archive.archive.ops import convert, tarwrite
from influx_archive.archive.ops.restore import journal, metastore, shards
from influx_archive.archive.sources import sealed
kind, n = sys.argv[1], int(sys.argv[2])
count = [0]
MAIN = os.getpid()
def tick():
    count[0] += 1
    if count[0] == n:
        if os.getpid() != MAIN:  # a forked worker (shards rewritten in processes): kill -9 the whole run
            os.killpg(0, signal.SIGKILL)
        os._exit(137)  # like SIGKILL: no finally, no rollback
if kind == "move":
    real = journal.Transaction.move_in
    def move_in(self, a, b):
        real(self, a, b); tick()
    journal.Transaction.move_in = move_in
elif kind == "copy":
    real = shards._copy_validated
    def copy(*a, **kw):
        r = real(*a, **kw); tick(); return r
    shards._copy_validated = copy
elif kind == "meta":
    real = metastore.metafiles.write_meta_db
    def wm(*a, **kw):
        real(*a, **kw); tick()
    metastore.metafiles.write_meta_db = wm
elif kind == "tar":
    real = tarwrite.TarWriter.add
    def add(self, *a, **kw):
        real(self, *a, **kw); tick()
    tarwrite.TarWriter.add = add
from influx_archive.cli.main import main
main(sys.argv[3:])
"""


def run(args: list[str], kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess[str]:
    if kill is None:
        argv = [sys.executable, "-c", "from influx_archive.cli.main import main; main()", *args]
    else:
        argv = [sys.executable, "-c", DRIVER, kill[0], str(kill[1]), *args]
    # its own session: a kill from a forked worker takes the run's process group, never pytest's
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, start_new_session=kill is not None)


def tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kill", [("copy", 3), ("copy", 20), ("move", 1), ("move", 7), ("meta", 1)])
def test_killed_restore_is_undone_by_the_next_run(kill, tmp_path, fixtures_dir) -> None:
    src = fixtures_dir / "legacy"
    clean = tmp_path / "clean"
    assert (
        run(["restore", str(src), "--metadir", str(clean / "meta"), "--datadir", str(clean / "data")]).returncode == 0
    )
    root = tmp_path / "root"
    args = ["restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data")]
    proc = run(args, kill=kill)
    assert proc.returncode == 137, proc.stderr
    if kill[0] != "meta":
        assert not (root / "meta" / "meta.db").exists()  # never committed: nothing served
    proc = run(args)
    if kill[0] == "meta":  # committed before the kill: the restore is complete, a re-run is refused
        assert proc.returncode == 3 and "already exists" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert "was interrupted" in proc.stderr
    assert tree(root) == tree(clean)
    assert not list(tmp_path.rglob(".influx-archive-restore-*"))


@pytest.mark.slow
@pytest.mark.parametrize("verb", ["convert", "pack"])
@pytest.mark.parametrize("n", [1, 5])
def test_killed_convert_and_pack_leave_no_output(verb, n, tmp_path, fixtures_dir) -> None:
    out = tmp_path / ("out" if verb == "convert" else "a.tar.zst")
    args = [verb, str(fixtures_dir / "portable"), str(out)]
    proc = run(args, kill=("tar", n))
    assert proc.returncode in (137, -9), proc.stderr  # -9: the kill came from a forked worker
    assert not out.exists()
    proc = run(args)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # the killed run's temp is gone


@pytest.mark.slow
def test_sigint_rolls_back(tmp_path, fixtures_dir) -> None:
    """A real SIGINT during a restore: the interrupt is reported, the target is as before."""
    root = tmp_path / "root"
    argv = [
        sys.executable,
        "-c",
        DRIVER.replace(
            "os._exit(137)", "os.kill(os.getpid(), __import__('signal').SIGINT); __import__('time').sleep(1)"
        ),
        "copy",
        "5",
        "restore",
        str(fixtures_dir / "legacy"),
        "--metadir",
        str(root / "meta"),
        "--datadir",
        str(root / "data"),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130 and "interrupted" in proc.stderr
    assert not root.exists() or tree(root) == {}
    assert not list(tmp_path.rglob(".influx-archive-restore-*"))


def test_enospc_is_a_clean_error(tmp_path, fixtures_dir) -> None:
    """A full disk while writing (a small tmpfs would need a mount; instead RLIMIT_FSIZE makes
    writes past 5,000 bytes of one file fail with EFBIG, the same error path as ENOSPC)."""
    out = tmp_path / "out"
    code = (
        "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (5000, 5000)); "
        "from influx_archive.cli.main import main; main(sys.argv[1:])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "convert", str(fixtures_dir / "legacy"), str(out), "--to", "legacy"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert (
        proc.stderr.startswith("influx-archive: error: ")
        and proc.stderr.count("\n") == 1
        and "Traceback" not in proc.stderr
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []


_SIGTERM_DURING_IMPORT = """
import importlib.abc, os, signal, sys
class SignalOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == sys.argv[1]:
            os.kill(os.getpid(), signal.SIGTERM)
        return None
sys.meta_path.insert(0, SignalOnImport())
from influx_archive.cli.main import main
main(["build-tsi", "--datadir", sys.argv[2]])
"""


@pytest.mark.parametrize("module", ["influx_archive.cli.collector", "typer", "influx_archive.cli.app",
                                    "influx_archive.archive.ops.buildtsi"])
def test_sigterm_during_start_up_exits_143_with_one_line(tmp_path, module) -> None:
    """A SIGTERM that lands while the app and the verb are still being imported (an operator's
    stop, a supervisor's timeout) ends the run as any other SIGTERM does: exit 143 and one line,
    not death by the signal with nothing said (which an online-backup kill test met under load)."""
    r = subprocess.run([sys.executable, "-c", _SIGTERM_DURING_IMPORT, module, str(tmp_path)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 143, (r.returncode, r.stderr)
    assert r.stderr.splitlines() == ["influx-archive: terminated (SIGTERM); nothing was left half-written"], r.stderr
