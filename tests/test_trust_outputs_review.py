"""Output promises a review broke, each as a family of cases: the target lock on a full disk, an
export written into its own --waldir, streams reached through links (bash's >(cmd), /dev/stdout
on a pipe), a closed standard output, and forked workers outliving a run killed with SIGKILL."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from influx_archive.archive import guard
from influx_archive.archive.errors import TargetError

REPO = Path(__file__).resolve().parent.parent
LEGACY = REPO / "fixtures" / "legacy"
LIVE = REPO / "fixtures" / "live"
CLI = [sys.executable, "-c", "from influx_archive.cli.main import main; main()"]


@pytest.mark.parametrize("call", ["ftruncate", "pwrite", "fchmod"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS])
def test_a_lock_that_cannot_be_written_is_a_target_error_and_leaves_nothing(tmp_path, monkeypatch, call, err) -> None:
    """Bug found: on a full disk the lock's pid write raised a bare OSError ('unexpected ...', no
    path) and left the lock file and the directories made for it."""
    real = getattr(os, call)

    def failing(fd, *a):
        if os.fstat(fd).st_ino == os.stat(target / guard.LOCK_NAME).st_ino:
            raise OSError(err, os.strerror(err))
        return real(fd, *a)

    target = tmp_path / "a" / "b" / "meta"
    monkeypatch.setattr(os, call, failing)
    with pytest.raises(TargetError) as ei, guard.TargetLock([(target, 0o755)]):
        pass
    assert str(target / guard.LOCK_NAME) in str(ei.value) and os.strerror(err) in str(ei.value)
    assert "\n" not in str(ei.value) and ei.value.exit_code == 3
    assert list(tmp_path.iterdir()) == []  # the lock file and a/b/meta removed again


def test_the_cli_says_target_for_a_lock_that_cannot_be_written(tmp_path, cli, monkeypatch) -> None:
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, off: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
                        if data.strip().isdigit() else real(fd, data, off))
    code, _out, err = cli("restore", str(LEGACY), "--metadir", str(tmp_path / "t" / "meta"),
                          "--datadir", str(tmp_path / "t" / "data"))
    assert code == 3 and "target: cannot write the lock file" in err and "unexpected" not in err, err
    assert not (tmp_path / "t").exists()


def test_export_into_its_own_wal_directory_is_refused(tmp_path, cli) -> None:
    """Bug found: export --datadir D --waldir W --out W/x.lp wrote inside the WAL directory it
    read (exit 0), where D/x.lp was refused."""
    root = tmp_path / "live"
    shutil.copytree(LIVE, root)
    (tmp_path / "walink").symlink_to(root / "wal")
    first = next(p for p in (root / "wal").rglob("*") if p.is_dir())
    outs = [root / "wal" / "x.lp", first / "x.lp", tmp_path / "walink" / "y.lp", root / "data" / "x.lp",
            tmp_path / "walink" / first.relative_to(root / "wal") / "z.lp"]
    for out in outs:
        code, _o, err = cli("-q", "export", "--datadir", str(root / "data"), "--waldir", str(root / "wal"),
                            "--out", str(out))
        assert code == 2 and "inside" in err, (out, code, err)
        assert not out.exists(), out
    code, _o, err = cli("-q", "export", "--datadir", str(root / "data"), "--waldir", str(root / "wal"),
                        "--out", str(tmp_path / "ok.lp"))
    assert code == 0 and (tmp_path / "ok.lp").stat().st_size > 0, err


def _drain(fd: int, got: list[bytes]) -> threading.Thread:
    def run() -> None:
        with os.fdopen(fd, "rb") as f:
            got.append(f.read())
    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.parametrize("verb", ["export", "pack"])
def test_streams_reached_through_links_are_written(tmp_path, verb) -> None:
    """Bug found: an output that is a link to a pipe (/dev/fd/N as bash's >(cmd) gives it,
    /dev/stdout on a pipe, a symlink to /proc/self/fd/N) was resolved to 'pipe:[N]' and refused
    (exit 3); a symlink to a FIFO kept working. Each is written as a stream now."""
    ref = subprocess.run([*CLI, "-q", verb, str(LEGACY), "-"] if verb == "pack" else
                         [*CLI, "-q", verb, str(LEGACY), "--out", "-"], capture_output=True, timeout=300)
    assert ref.returncode == 0 and ref.stdout, ref.stderr
    kinds = ["/dev/fd/N", "/proc/self/fd/N", "/dev/stdout", "symlink to /dev/fd/N", "symlink to a FIFO"]
    for kind in kinds:
        r, w = os.pipe()
        got: list[bytes] = []
        fifo = tmp_path / f"fifo-{kinds.index(kind)}"
        link = tmp_path / f"link-{kinds.index(kind)}"
        if kind == "symlink to a FIFO":
            os.close(r)
            os.close(w)
            os.mkfifo(fifo)
            link.symlink_to(fifo)
            out = str(link)
            reader = threading.Thread(target=lambda got=got, fifo=fifo: got.append(fifo.read_bytes()))
            reader.start()
            pass_fds: tuple[int, ...] = ()
            stdout = subprocess.DEVNULL
        else:
            reader = _drain(r, got)
            out = {"/dev/fd/N": f"/dev/fd/{w}", "/proc/self/fd/N": f"/proc/self/fd/{w}", "/dev/stdout": "/dev/stdout",
                   "symlink to /dev/fd/N": str(link)}[kind]
            if kind == "symlink to /dev/fd/N":
                link.symlink_to(f"/dev/fd/{w}")
            pass_fds, stdout = ((), w) if kind == "/dev/stdout" else ((w,), subprocess.DEVNULL)
        args = [*CLI, "-q", verb, str(LEGACY), out] if verb == "pack" else [*CLI, "-q", verb, str(LEGACY), "--out", out]
        proc = subprocess.run(args, pass_fds=pass_fds, stdout=stdout, stderr=subprocess.PIPE, timeout=300)
        if kind != "symlink to a FIFO":
            os.close(w)
        reader.join(60)
        assert proc.returncode == 0, (kind, proc.stderr)
        if verb == "export":
            assert got == [ref.stdout], kind
        else:  # a sealed archive holds its creation time: compare what it holds
            assert got and got[0][:4] == b"\x28\xb5\x2f\xfd" and len(got[0]) > 1000, kind


@pytest.mark.parametrize("args", [["export", str(LEGACY), "--out", "-"], ["pack", str(LEGACY), "-"],
                                  ["export", str(LEGACY)]])
def test_a_closed_standard_output_is_a_target_error(args) -> None:
    """Bug found: with stdout closed the error said 'cannot read the source: Bad file descriptor
    [file SRC]'."""
    line = " ".join(f"'{a}'" for a in [*CLI, "-q", *args])
    proc = subprocess.run(["sh", "-c", f"exec >&-; exec {line}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert "standard output" in proc.stderr and "source" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def _descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(k) for k in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(kids - out)
            out |= kids
    return out


def _alive(pids: set[int]) -> set[int]:
    left = set()
    for p in pids:
        try:
            state = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.add(p)
    return left


@pytest.mark.parametrize("fixture,to", [("legacy", "portable"), ("portable", "legacy")])
def test_workers_of_a_run_killed_with_sigkill_end_too(tmp_path, fixture, to) -> None:
    """Bug found: a run killed with SIGKILL while its forked workers ran left them alive for ever
    (waiting on the dead parent's queues), holding its stdout: a pipeline reading the run never
    got its end. Killed at successive moments while it has workers, none may outlive it."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "fixtures" / fixture, src)
    killed_with_workers = 0
    for i in range(40):
        out = tmp_path / f"out{i}"
        proc = subprocess.Popen([*CLI, "-q", "convert", str(src), str(out), "--to", to], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        workers: set[int] = set()
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline and not workers:
            workers = _descendants(proc.pid)
        time.sleep(0.01 * (i % 5))
        if proc.poll() is not None or not workers:
            proc.communicate()
            continue
        workers |= _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_with_workers += 1
        t0 = time.monotonic()
        while _alive(workers) and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        left = _alive(workers)
        for p in left:
            os.kill(p, signal.SIGKILL)
        assert not left, f"workers {sorted(left)} outlived their parent"
        assert proc.stdout is not None and proc.stdout.read() == b""  # the pipe ends: every writer is gone
        proc.stdout.close()
        if killed_with_workers >= 5:
            break
    assert killed_with_workers >= 3, killed_with_workers


class _Stop(BaseException):
    """What a deferred SIGTERM handler raises as the uninterrupted step that made a file ends."""


@pytest.mark.parametrize("stop", [_Stop, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("by_fd", [True, False])
def test_a_signal_acted_on_as_the_temporary_is_made_leaves_none(tmp_path, monkeypatch, stop, by_fd) -> None:
    """Bug found: SIGTERM during a restore's meta.db write (exit 143, 'nothing was left
    half-written') left meta/.meta.db.tmp-PID: deferred while the temporary was made, the signal
    was acted on just after, before the step that removes it on failure began, and the run's exit
    removed it by its /proc/self/fd/N/... name once that descriptor was closed."""
    from influx_archive.archive import cleanup, output

    real = output._new_temp_file

    def made_then_stopped(final, tmp=None):
        real(final, tmp)
        raise stop()

    monkeypatch.setattr(output, "_new_temp_file", made_then_stopped)
    meta = tmp_path / "meta"
    meta.mkdir()
    dfd = os.open(meta, os.O_RDONLY | os.O_DIRECTORY)
    try:
        where = f"/proc/self/fd/{dfd}/meta.db" if by_fd else str(meta / "meta.db")
        with pytest.raises(stop):
            output.write_file_atomically(where, b"x" * 100)
        assert os.listdir(dfd) == []  # removed while its directory's descriptor is still open
    finally:
        os.close(dfd)
    assert not [p for p in cleanup.remove_temporaries() if "meta.db" in p]  # and not left for the exit


@pytest.mark.parametrize("where", ["__del__", "weakref callback"])
@pytest.mark.parametrize("verb", [["verify", str(LEGACY)], ["inspect", str(LEGACY)]])
def test_a_sigterm_handled_where_python_cannot_raise_is_not_lost(where, verb) -> None:
    """Bug found by CI's random-SIGTERM test: the handler ran inside an import lock's weakref
    callback, where its exception can only be printed ('Exception ignored in ...', a traceback)
    and is dropped, and the run went on to exit 0. The signal is sent again now: exit 143, one
    line, no traceback."""
    code = f"""
import signal, sys, time, weakref
from influx_archive.cli import app as A
from influx_archive.cli.main import main
class D:
    def __del__(self):
        A._on_sigterm(signal.SIGTERM, None)
class R:
    pass
orig = A._run
def run(argv):
    if {where!r} == "__del__":
        D()
    else:
        r = R()
        keep = weakref.ref(r, lambda ref: A._on_sigterm(signal.SIGTERM, None))
        del r
    time.sleep(0.3)
    orig(argv)
A._run = run
main({verb!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr == "influx-archive: terminated (SIGTERM); nothing was left half-written\n", proc.stderr


@pytest.mark.parametrize("step", ["stage_all", "move_in_all"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EDQUOT])
def test_a_restore_write_error_without_a_file_name_names_the_target(tmp_path, cli, monkeypatch, step, err) -> None:
    """Bug found: ENOSPC from a write() (no file name in the error) said 'error: no space left on
    device; nothing was restored' with no path and no 'target'."""
    from influx_archive.archive.ops import restore as r

    real = getattr(r, step)

    def failing(*a, **k):
        real(*a, **k)
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(r, step, failing)
    data = tmp_path / "t" / "data"
    code, _out, text = cli("-q", "restore", str(LEGACY), "--metadir", str(tmp_path / "t" / "meta"),
                           "--datadir", str(data))
    assert code == 3, text
    line = text.strip().splitlines()[-1]
    assert "cannot write the target" in line and f"[file {data}]" in line and "nothing was restored" in line, line
    assert not [p for p in (tmp_path / "t").rglob("*") if p.is_file()]  # rolled back
