"""restore: a run killed before its journal had a complete header is cleaned up; target OS
errors say "target" and name the path; names too long for a directory are a usage error.

* A restore SIGKILLed (or cut by a power loss) between creating its staging journal and
  completing the journal's first line left ``.influx-archive-restore-PID-N/`` behind, reported
  "left alone" by every later restore, forever. The header is written and fsynced before
  anything is staged or done to the target, so such a run had done nothing: a staging directory
  that passes every ownership check (this user, mode 0700, the name, a regular journal of this
  user with one link, nothing else in it) whose journal is empty or a beginning of the header
  (NUL bytes after it: the data of an unsynced write lost) is removed, and the restore completes.
  Anything failing a check is still left alone, byte for byte.
* Anything but a regular file where ``meta.db`` belongs (a directory: "unexpected
  IsADirectoryError ... 9"; a FIFO: "the target metastore changed") is one line, exit 3, saying
  "target" and naming the path, at plan time and at execution (:func:`read_meta_at`).
* ``--newdb``/``--newrp`` longer than NAME_MAX (255 bytes of UTF-8) are a usage error (exit 2)
  with one line (were "unexpected OSError: File name too long", or "is a symbolic link"); so is
  a database name of the source that long; an OS error while checking the target's paths is a
  TargetError naming the path.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import hostile_restore as hr
import pytest

from influx_archive.archive.errors import TargetError, UsageError
from influx_archive.archive.ops.restore import plan_restore, recover_interrupted
from influx_archive.archive.ops.restore.metastore import read_meta_at
from influx_archive.archive.ops.select import Selection
from influx_archive.archive.sources import open_source
from influx_archive.meta.files import read_meta_db

SRC = hr.FIXTURES / "legacy"

#: SIGKILLs the run while it writes its first staging journal's header: after ``N`` bytes of it
#: (``-N``: all but the last N; ``full``: the whole line, before its fsync; ``before``: before
#: the first byte)
KILL_DRIVER = r"""
import os, signal, sys
at = sys.argv[1]
_write = os.write
def write(fd, data):
    try:
        p = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        p = ""
    if p.endswith("/journal") and bytes(data[:10]) == b'{"format":':
        n = 0 if at == "before" else len(data) if at == "full" else int(at) % len(data)
        if n:
            _write(fd, bytes(data[:n]))
        os.kill(os.getpid(), signal.SIGKILL)
    return _write(fd, data)
os.write = write
from influx_archive.cli.main import main
main(sys.argv[2:])
"""


def _lines(err: str) -> list[str]:
    """stderr's lines without the next-step lines a finished restore adds."""
    assert "Traceback" not in err, err
    return [ln for ln in err.splitlines() if not ln.startswith(("influx-archive: next: ", "influx-archive: note: ",
                                                                 "influx-archive:   "))]


def _stages(root: Path) -> list[Path]:
    return sorted(root.glob(hr.STAGE_PREFIX + "*")) + sorted((root / "data").glob(hr.STAGE_PREFIX + "*"))


def _killed(root: Path, at: str, *extra: str) -> subprocess.CompletedProcess:
    argv = hr.restore_args(SRC, root, "--db", "db1", *extra)
    return subprocess.run([sys.executable, "-c", KILL_DRIVER, at, *argv], capture_output=True, text=True, timeout=300)


def _socket_at(p: Path) -> None:
    """A UNIX socket bound at ``p`` (through its directory: a socket path holds 107 bytes)."""
    here = os.getcwd()
    s = socket.socket(socket.AF_UNIX)
    try:
        os.chdir(p.parent)
        s.bind(p.name)
    finally:
        os.chdir(here)
        s.close()


def _restored(root: Path) -> set[str]:
    return {db.name for db in read_meta_db(root / "meta" / "meta.db").databases}


# --- 1. a run killed before its journal's header was complete ------------------------------------


def _real_header(tmp: Path) -> bytes:
    """The first line a real restore writes into its journal (without the newline), taken from a
    run killed after writing it, before its fsync."""
    root = tmp / "header-source"
    proc = _killed(root, "full")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (stage,) = _stages(root)
    data = (stage / "journal").read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    head = json.loads(data)
    assert head["format"] == hr.JOURNAL_FORMAT and head["main"] is True
    return data[:-1]


@pytest.mark.slow
@pytest.mark.parametrize("at", ["before", "1", "2", "10", "11", "40", "100", "-2", "-1"])
def test_a_run_killed_while_writing_its_journal_header_is_cleaned_by_the_next(tmp_path, cli, at) -> None:
    """The red team's repro (repro-4.sh): SIGKILL between creating the journal and finishing its
    first line, at several byte counts; the next restore removes the staging dir and completes,
    and the one after it sees nothing."""
    root = tmp_path / "t"
    proc = _killed(root, at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (stage,) = _stages(root)
    assert stat.S_IMODE(os.lstat(stage).st_mode) == 0o700 and os.listdir(stage) == ["journal"]
    assert b"\n" not in (stage / "journal").read_bytes()
    code, _out, err = cli(*hr.restore_args(SRC, root, "--db", "db1"))
    lines = _lines(err)
    assert code == 0 and len(lines) == 1, err
    assert str(stage) in lines[0] and "removed" in lines[0] and "left alone" not in lines[0], lines
    assert not _stages(root) and _restored(root) == {"db1"}
    code, _out, err = cli(*hr.restore_args(SRC, root, "--db", "db2"))
    assert code == 0 and _lines(err) == [], err
    assert not _stages(root) and _restored(root) == {"db1", "db2"}


def _plant(stage: Path, journal: bytes | None, *, fsync: bool) -> None:
    """A staging dir as a run killed at that point leaves it (``journal`` None: none yet)."""
    stage.mkdir()
    os.chmod(stage, 0o700)
    if journal is not None:
        fd = os.open(stage / "journal", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, journal)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)


def _torn_journals(header: bytes) -> Iterator[tuple[str, bytes | None]]:
    """What a killed run (or a power loss: the data of an unsynced write read back as NULs) can
    leave as its journal: none, empty, every beginning of the header, some followed by NULs."""
    yield "absent", None
    for n in range(len(header) + 1):
        yield f"prefix-{n}", header[:n]
    for n in (0, 1, 9, 10, 11, len(header) // 2, len(header)):
        for zeros in (1, 511, 4096):
            yield f"prefix-{n}-nul-{zeros}", header[:n] + b"\0" * zeros


@pytest.mark.slow
def test_every_torn_header_a_killed_run_can_leave_is_removed(tmp_path, cli) -> None:
    """Every prefix of a real header (fsynced or not, beside or inside the data dir, NUL-padded):
    the recovery removes the staging dir with one note naming it, and nothing else changes."""
    header = _real_header(tmp_path)
    pid = hr.dead_pid()
    root = tmp_path / "t"
    assert cli(*hr.restore_args(SRC, root, "--db", "db2")).code == 0
    before = hr.snapshot(root)
    failures = []
    cases = 0
    for (label, journal), where, fsync in (
        (c, w, f) for c in _torn_journals(header) for w in ("beside", "inside") for f in (True, False)
    ):
        if not fsync and (where == "inside" or not label.startswith("prefix-") or "nul" in label):
            continue  # fsync or not is the same on disk: once is enough for most of them
        cases += 1
        stage = (root if where == "beside" else root / "data") / f"{hr.STAGE_PREFIX}{pid}-{cases}"
        _plant(stage, journal, fsync=fsync)
        dry = recover_interrupted(metadir=root / "meta", datadir=root / "data", apply=False)
        notes = recover_interrupted(metadir=root / "meta", datadir=root / "data")
        try:
            assert len(dry) == 1 and str(stage) in dry[0] and "a real run removes" in dry[0], dry
            assert len(notes) == 1 and str(stage) in notes[0] and "removed" in notes[0], notes
            assert "left alone" not in notes[0], notes
            assert not os.path.lexists(stage)
            assert hr.snapshot(root) == before
        except AssertionError as exc:
            failures.append(f"{label} {where} fsync={fsync}: {exc}")
            shutil.rmtree(stage, ignore_errors=True)
    assert cases > 2 * len(header)
    assert not failures, "\n".join(failures[:20])
    # and a restore after a torn one completes (the CLI path, once per place)
    for where in ("beside", "inside"):
        stage = (root if where == "beside" else root / "data") / f"{hr.STAGE_PREFIX}{pid}-0"
        _plant(stage, header[: len(header) // 3], fsync=True)
    code, _out, err = cli(*hr.restore_args(SRC, root, "--db", "db1"))
    lines = _lines(err)
    assert code == 0 and len(lines) == 2 and all("removed" in ln for ln in lines), err
    assert not _stages(root) and _restored(root) == {"db1", "db2"}


@dataclass
class Kept:
    name: str
    stage: Path
    mention: bool  # reported (a warning naming it, "left alone"), or not even mentioned


def _not_ours(work: Path, header: bytes, only: str | None = None) -> list[Kept]:
    """Staging dirs with an empty or torn journal that fail one ownership check each: every one
    must be left alone, byte for byte (``only``: just the case of that name)."""
    am_root = os.geteuid() == 0
    pid = hr.dead_pid()
    torn = header[:25]
    victim = work / "victim"
    victim.mkdir()
    (victim / "journal").write_bytes(torn)
    (victim / "realstage").mkdir(mode=0o700)
    (victim / "realstage" / "journal").write_bytes(torn)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    work.joinpath("live.pid").write_text(str(live.pid))

    def plain(stage: Path, data: bytes = torn) -> None:
        _plant(stage, data, fsync=False)

    def mode(m: int) -> Callable[[Path], None]:
        def build(stage: Path) -> None:
            plain(stage)
            os.chmod(stage, m)
        return build

    def owner(which: str) -> Callable[[Path], None]:
        def build(stage: Path) -> None:
            plain(stage)
            os.chown(stage / "journal" if which == "journal" else stage, hr.OTHER_UID, hr.OTHER_UID)
        return build

    def journal_as(make: Callable[[Path], None]) -> Callable[[Path], None]:
        def build(stage: Path) -> None:
            _plant(stage, None, fsync=False)
            make(stage / "journal")
        return build

    def with_extra(entry: str, is_dir: bool) -> Callable[[Path], None]:
        def build(stage: Path) -> None:
            plain(stage)
            if is_dir:
                (stage / entry).mkdir()
                (stage / entry / "000000001-000000001.tsm").write_bytes(b"staged")
            else:
                (stage / entry).write_bytes(b"staged")
        return build

    reported: dict[str, Callable[[Path], None]] = {
        "mode-0755": mode(0o755), "mode-0750": mode(0o750), "mode-0777": mode(0o777), "mode-1700": mode(0o1700),
        "mode-0600": mode(0o600),
        "stage-symlink": lambda s: s.symlink_to(victim / "realstage"),
        "stage-file": lambda s: s.write_bytes(torn),
        "journal-symlink": journal_as(lambda j: j.symlink_to(victim / "journal")),
        "journal-dangling": journal_as(lambda j: j.symlink_to(victim / "nothing")),
        "journal-fifo": journal_as(os.mkfifo),
        "journal-socket": journal_as(_socket_at),
        "journal-dir": journal_as(lambda j: j.mkdir()),
        "journal-hardlink": journal_as(lambda j: os.link(victim / "journal", j)),
        "extra-staged-dir": with_extra("0", True),
        "extra-file": with_extra("series-0", False),
        "extra-aside": with_extra("aside-0", False),
        "other-name-only": journal_as(lambda j: (j.parent / "journal.tmp").write_bytes(torn)),
        "not-a-header": lambda s: plain(s, b"garbage"),
        "spaced-header": lambda s: plain(s, b'{"format": "influx-archive restore journal", "vers'),
        "other-format": lambda s: plain(s, b'{"format":"influx-archive restore journal","version":3,"pid":1'),
        "nul-inside": lambda s: plain(s, b'{"form\0at":'),
        "nul-first": lambda s: plain(s, b"\0" + torn),
        "huge": lambda s: plain(s, torn + b"x" * ((1 << 20) + 1)),
    }
    if am_root:
        reported["stage-other-uid"] = owner("stage")
        reported["journal-other-uid"] = owner("journal")
    cases: list[Kept] = []
    for where in ("beside", "inside"):
        parent = work / "t" if where == "beside" else work / "t" / "data"
        for i, (name, build) in enumerate(reported.items()):
            if only not in (None, f"{where}-{name}"):
                continue
            stage = parent / f"{hr.STAGE_PREFIX}{pid}-{i}"
            build(stage)
            cases.append(Kept(f"{where}-{name}", stage, True))
        for name, stage_name in (
            ("live-pid", f"{hr.STAGE_PREFIX}{live.pid}-0"),  # perhaps a restore into other dirs, mid-header
            ("name-letters", f"{hr.STAGE_PREFIX}x{pid}-0"),
            ("name-suffix", f"{hr.STAGE_PREFIX}{pid}-0.old"),
            ("name-no-seq", f"{hr.STAGE_PREFIX}{pid}"),
        ):
            if only not in (None, f"{where}-{name}"):
                continue
            stage = parent / stage_name
            plain(stage)
            cases.append(Kept(f"{where}-{name}", stage, False))
    return cases


@pytest.mark.slow
def test_torn_journals_failing_any_ownership_check_are_still_left_alone(tmp_path, cli) -> None:
    header = _real_header(tmp_path)
    work = tmp_path / "w"
    work.mkdir()
    assert cli(*hr.restore_args(SRC, work / "t", "--db", "db2")).code == 0
    cases = _not_ours(work, header)
    try:
        before = hr.snapshot(work)
        code, _out, err = cli(*hr.restore_args(SRC, work / "t", "--db", "db1"))
        lines = _lines(err)
        assert code == 0, err
        reported = sum(c.mention for c in cases)
        assert reported > hr_max_notes()
        assert len(lines) == hr_max_notes() + 1 and all("left alone" in ln for ln in lines), err
        quiet = [c for c in cases if not c.mention]
        assert not [ln for ln in lines for c in quiet if ln.endswith(f"[file {c.stage}]")], err
        after = hr.snapshot(work)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        assert all(k.startswith(("t/data/db1", "t/meta/meta.db")) for k in changed), changed[:10]
        assert _restored(work / "t") == {"db1", "db2"}
    finally:
        os.kill(int((work / "live.pid").read_text()), signal.SIGKILL)


def hr_max_notes() -> int:
    from influx_archive.archive.ops.restore import journal

    return journal.MAX_LEFT_ALONE_NOTES


@pytest.mark.slow
def test_torn_journals_failing_a_check_are_reported_one_by_one(tmp_path, cli) -> None:
    """Each case of :func:`_not_ours` alone (the shared run above shows only the first notes):
    one warning line naming it, "left alone", the staging dir byte for byte as planted."""
    header = _real_header(tmp_path)
    probe = tmp_path / "probe"
    (probe / "t" / "data").mkdir(parents=True)
    names = [c.name for c in _not_ours(probe, header)]
    os.kill(int((probe / "live.pid").read_text()), signal.SIGKILL)
    base = tmp_path / "base"
    assert cli(*hr.restore_args(SRC, base, "--db", "db2")).code == 0
    failures = []
    for name in names:
        work = tmp_path / f"case-{names.index(name)}"
        work.mkdir()
        shutil.copytree(base, work / "t", symlinks=True)
        try:
            (keep,) = _not_ours(work, header, only=name)
            before = hr.snapshot(keep.stage)
            code, _out, err = cli(*hr.restore_args(SRC, work / "t", "--db", "db1"))
            lines = _lines(err)
            ok = code == 0 and hr.snapshot(keep.stage) == before
            if keep.mention:
                ok = ok and len(lines) == 1 and str(keep.stage) in lines[0] and "left alone" in lines[0]
            else:
                ok = ok and lines == []
            if not ok:
                failures.append(f"{name}: code {code}: {lines}")
        finally:
            os.kill(int((work / "live.pid").read_text()), signal.SIGKILL)
    assert len(names) >= 50
    assert not failures, "\n".join(failures)


# --- 2. what stands where meta.db belongs -------------------------------------------------------


def _meta_kinds(work: Path) -> Iterator[tuple[str, Callable[[Path], None]]]:
    other = work / "elsewhere"
    other.mkdir(exist_ok=True)
    (other / "dir").mkdir(exist_ok=True)
    good = other / "meta.db"  # a file, but reached through a link: refused all the same
    good.write_bytes(b"never read")
    if not (other / "fifo").exists():
        os.mkfifo(other / "fifo")

    def dir_with_files(p: Path) -> None:
        p.mkdir()
        (p / "x").write_bytes(b"x")

    yield "directory", lambda p: p.mkdir()
    yield "directory-with-files", dir_with_files
    yield "fifo", os.mkfifo
    yield "socket", _socket_at
    yield "symlink-to-dir", lambda p: p.symlink_to(other / "dir")
    yield "dangling-symlink", lambda p: p.symlink_to(other / "nothing")
    yield "symlink-to-fifo", lambda p: p.symlink_to(other / "fifo")
    yield "symlink-to-file", lambda p: p.symlink_to(good)
    yield "symlink-loop", lambda p: p.symlink_to(p)
    if os.geteuid() == 0:
        yield "char-device", lambda p: os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3))


@pytest.mark.slow
def test_anything_but_a_file_where_meta_db_belongs_is_one_target_line(tmp_path, cli) -> None:
    failures = []
    n = 0
    for kind, make in _meta_kinds(tmp_path):
        for extra in ([], ["--merge"], ["--dry-run"], ["--db", "db1", "--newdb", "x"]):
            n += 1
            root = tmp_path / f"{kind}-{n}"
            (root / "meta").mkdir(parents=True)
            meta = root / "meta" / "meta.db"
            make(meta)
            before = hr.snapshot(tmp_path / "elsewhere")
            code, _out, err = cli(*hr.restore_args(SRC, root, *extra))
            lines = err.splitlines()
            ok = (
                code == 3 and len(lines) == 1 and "Traceback" not in err and "unexpected" not in err
                and lines[0].startswith("influx-archive: error: target: ") and lines[0].endswith(f"[file {meta}]")
                and hr.snapshot(tmp_path / "elsewhere") == before and not (root / "data" / "db1").exists()
                and not _stages(root)
            )
            if not ok:
                failures.append(f"{kind} {extra}: code {code}: {err!r}")
    assert n >= 36
    assert not failures, "\n".join(failures)


def test_read_meta_at_refuses_what_is_not_a_file_with_a_target_error(tmp_path) -> None:
    """At execution (the plan saw a file; now something else is there): one TargetError naming
    the path, never an OSError."""
    for kind, make in _meta_kinds(tmp_path):
        d = tmp_path / f"m-{kind}"
        d.mkdir()
        make(d / "meta.db")
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(TargetError) as info:
                read_meta_at(fd, d / "meta.db")
        finally:
            os.close(fd)
        assert str(info.value).startswith("target: ") and str(d / "meta.db") in str(info.value), (kind, info.value)
    d = tmp_path / "ok"
    d.mkdir()
    (d / "meta.db").write_bytes(b"abc")
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_meta_at(fd, d / "meta.db") == b"abc"
        os.unlink(d / "meta.db")
        assert read_meta_at(fd, d / "meta.db") is None
    finally:
        os.close(fd)


# --- 3. names too long for a directory ---------------------------------------------------------


def _names(lo: int = 254, hi: int = 300) -> Iterator[tuple[str, int]]:
    """(name, its UTF-8 length) for every length lo..hi, in 1-, 2-, 3- and 4-byte characters
    (a name over 255 bytes can be under 255 characters)."""
    for size in range(lo, hi + 1):
        for ch in ("a", "é", "日", "😀"):
            w = len(ch.encode())
            name = ch * (size // w) + "a" * (size % w)
            assert len(name.encode()) == size
            yield name, size


@pytest.mark.slow
def test_newdb_and_newrp_longer_than_name_max_are_usage_errors(tmp_path, cli) -> None:
    failures = []
    ran_ok = 0
    for i, (name, size) in enumerate(_names()):
        for opt, sel in (("--newdb", ["--db", "db1"]), ("--newrp", ["--db", "db1", "--rp", "autogen"])):
            if size <= 255 and not name.startswith("a"):
                continue  # restoring under multi-byte names that fit: once is enough (below)
            root = tmp_path / f"n{i}{opt}"
            code, _out, err = cli(*hr.restore_args(SRC, root, *sel, opt, name))
            lines = [ln for ln in _lines(err) if "warning" not in ln]
            if size > 255:
                ok = (code == 2 and len(err.splitlines()) == 1 and opt in lines[0] and f"{size} bytes" in lines[0]
                      and "255" in lines[0] and "unexpected" not in err and "symbolic link" not in err
                      and not (root / "data").exists() and not (root / "meta").exists())
            else:
                ran_ok += 1
                ok = code == 0 and lines == [] and any(p.name == name for p in (root / "data").rglob("*"))
            if not ok:
                failures.append(f"{opt} {size} bytes ({name[:3]}...): code {code}: {err[-300:]!r}")
    assert ran_ok == 4 and not failures, "\n".join(failures[:20])
    for ch in ("é", "日", "😀"):  # the longest names that fit, in multi-byte characters
        name = ch * (255 // len(ch.encode()))
        root = tmp_path / f"fit-{ch}"
        code, _out, err = cli(*hr.restore_args(SRC, root, "--db", "db1", "--rp", "autogen", "--newdb", name,
                                               "--newrp", name))
        assert code == 0 and (root / "data" / name / name).is_dir(), err


def test_selection_refuses_names_over_255_bytes() -> None:
    for name, size in _names(250, 270):
        for field_ in ("newdb", "newrp"):
            kw = {"database": "db1", "retention": "autogen", field_: name}
            if size > 255:
                with pytest.raises(UsageError, match=f"{size} bytes"):
                    Selection(**kw)  # type: ignore[arg-type]
            else:
                Selection(**kw)  # type: ignore[arg-type]
    for bad in ("", ".", "..", "a/b", "a\0b"):
        with pytest.raises(UsageError, match="not a usable name"):
            Selection(database="db1", newdb=bad)


def test_a_source_database_name_too_long_for_a_directory_is_a_usage_error(tmp_path) -> None:
    """A portable manifest (or metastore) can name a database longer than NAME_MAX: refused
    before anything is written, saying how to restore it under another name."""
    for size in (256, 300):
        for which in ("database", "retention policy"):
            src = open_source(SRC)
            long = "d" * size
            assert src.meta is not None
            db = src.meta.database("db1")
            assert db is not None
            if which == "database":
                db.name = long
                for sh in src.shards:
                    if sh.database == "db1":
                        sh.database = long
            else:
                rp = db.retention_policy("autogen")
                assert rp is not None
                rp.name = long
                if db.default_retention_policy == "autogen":
                    db.default_retention_policy = long
                for sh in src.shards:
                    if sh.database == "db1" and sh.retention_policy == "autogen":
                        sh.retention_policy = long
            root = tmp_path / f"{which[0]}{size}"
            with pytest.raises(UsageError, match=f"{size} bytes") as info:
                plan_restore(src, metadir=root / "meta", datadir=root / "data")
            assert ("--newdb" if which == "database" else "--newrp") in str(info.value)
            assert not (root / "data" / "db2").exists() and not (root / "meta" / "meta.db").exists()


def test_an_os_error_checking_target_paths_names_the_target(tmp_path, cli) -> None:
    """A data directory so deep that a shard's path passes PATH_MAX (4096): the plan's checks get
    ENAMETOOLONG; it is one target line naming the path (was "unexpected OSError")."""
    d = tmp_path
    while len(str(d)) < 3845:
        d = d / ("x" * min(200, 3845 - len(str(d)) - 1))
    datadir = d / "data"
    datadir.mkdir(parents=True)
    assert len(str(datadir)) + len("/.influx-archive.lock") < 4096 < len(str(datadir)) + 1 + 255
    root = tmp_path / "m"
    code, _out, err = cli("restore", str(SRC), "--metadir", str(root / "meta"), "--datadir", str(datadir),
                          "--db", "db1", "--newdb", "n" * 255)
    lines = err.splitlines()
    assert code == 3 and len(lines) == 1 and "unexpected" not in err, err
    assert lines[0].startswith("influx-archive: error: target: ") and str(datadir)[:200] in lines[0], err
    assert not (root / "meta" / "meta.db").exists()
