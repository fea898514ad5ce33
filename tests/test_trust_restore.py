"""restore never acts on planted state (item 1), one writer per target (item 3).

Generators in ``tests/hostile_restore.py``; every case checks the exact exit code, exactly one
stderr line naming the file, no traceback, the source unchanged (hash before/after) and nothing
written outside the target (a snapshot of everything around it before/after)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import hostile_restore as hr
import pytest

from influx_archive.archive.guard import LOCK_NAME, TargetLock
from influx_archive.archive.ops.restore import journal as restore_journal
from influx_archive.meta.files import read_meta_db

SRC = hr.FIXTURES / "legacy"


def around(case_dir: Path) -> dict:
    """Everything in a case's directory except what the restore of db1 legitimately writes."""
    snap = hr.snapshot(case_dir)
    return {k: v for k, v in snap.items() if not k.startswith("root/data/db1") and k != "root/meta/meta.db"}


#: what a finished restore prints after its result: the next step (cli/nextstep.py), never a finding
NEXT_STEP = re.compile(r"^influx-archive: (next: |note: |  )")


def without_next_step(err: str) -> str:
    """stderr without the next-step lines a finished restore adds."""
    return "".join(ln for ln in err.splitlines(keepends=True) if not NEXT_STEP.match(ln))


def one_line(err: str) -> str:
    """The one line of stderr a case produced, after the next-step lines a finished restore adds."""
    assert "Traceback" not in err
    err = without_next_step(err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err


@pytest.mark.slow
def test_planted_staging_dirs_are_reported_and_left_alone(tmp_path, cli) -> None:
    cases = hr.planted_stages(tmp_path, lambda argv: cli(*argv).code)
    assert len(cases) >= 100, len(cases)
    src_before = hr.snapshot(SRC)
    others_before = hr.snapshot(tmp_path / "_other")
    failures = []
    for case in cases:
        case_dir = case.root.parent
        before = around(case_dir)
        code, _out, err = cli(*case.args)
        try:
            assert code == case.code, (code, err)
            line = one_line(err)
            assert case.mention in line and "left alone" in line and "warning" in line, line
            assert around(case_dir) == before  # the planted dir, the victim, db2: byte for byte
            names = {db.name for db in read_meta_db(case.root / "meta" / "meta.db").databases}
            assert names == {"db1", "db2"}, names
            assert (case.root / "data" / "db1").is_dir()
            assert not (case.root / "meta" / LOCK_NAME).exists() and not (case.root / "data" / LOCK_NAME).exists()
        except AssertionError as exc:
            failures.append(f"{case.name}: {exc}")
    assert hr.snapshot(SRC) == src_before
    assert hr.snapshot(tmp_path / "_other") == others_before
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_planted_stages_in_a_dry_run_are_reported_too(tmp_path, cli) -> None:
    cases = hr.planted_stages(tmp_path, lambda argv: cli(*argv).code)[:12]
    for case in cases:
        before = hr.snapshot(case.root.parent)
        code, out, err = cli(*case.args + ["--dry-run"])
        assert code == 0 and case.mention in one_line(err) and "left alone" in err, (case.name, err)
        assert "dry run" in out
        assert hr.snapshot(case.root.parent) == before, case.name


@pytest.mark.slow
def test_stale_journals_of_this_target_remove_only_their_own_inodes(tmp_path, cli) -> None:
    cases = hr.stale_but_ours(tmp_path, lambda argv: cli(*argv).code)
    assert len(cases) == 18
    src_before = hr.snapshot(SRC)
    for case in cases:
        keep_before = {str(k): hr.snapshot(k) for k in case.keep}
        code, _out, err = cli(*case.args)
        assert code == 0, (case.name, err)
        line = one_line(err)
        assert case.mention in line and "was interrupted" in line and "0 partial moves" in line, (case.name, line)
        assert not os.path.lexists(case.planted), case.name  # recovered: its staging area is gone
        assert {str(k): hr.snapshot(k) for k in case.keep} == keep_before, case.name  # db2 untouched
        names = {db.name for db in read_meta_db(case.root / "meta" / "meta.db").databases}
        assert names == {"db1", "db2"}
    assert hr.snapshot(SRC) == src_before


# --- a genuine journal of a restore killed outright (SIGKILL) is still recovered ------------------

KILL_DRIVER = r"""
import os, sys
from influx_archive.archive.ops.restore import journal
n = int(sys.argv[1])
count = [0]
real = journal.Transaction._log
def log(self, rec):
    real(self, rec)
    if self._journal is not None:
        count[0] += 1
        if count[0] == n:
            os._exit(137)  # like SIGKILL, right after the journal line and before its step
journal.Transaction._log = log
from influx_archive.cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.slow
def test_killed_restore_at_every_journal_step_is_recovered(tmp_path, cli) -> None:
    args = ["--db", "db1", "--rp", "autogen"]
    clean = tmp_path / "clean"
    assert cli(*hr.restore_args(SRC, clean, *args)).code == 0
    want = hr.snapshot(clean)
    src_before = hr.snapshot(SRC)
    n = 1
    seen_committed = seen_undone = False
    while True:
        root = tmp_path / f"k{n}"
        argv = hr.restore_args(SRC, root, *args)
        proc = subprocess.run(
            [sys.executable, "-c", KILL_DRIVER, str(n), *argv], capture_output=True, text=True, timeout=300
        )
        if proc.returncode == 0:
            break  # n is past the last journal line: every step has been killed at
        assert proc.returncode == 137, proc.stderr
        assert list(root.glob(hr.STAGE_PREFIX + "*")), "a killed run leaves its journal"
        code, _out, err = cli(*argv)
        lines = without_next_step(err).splitlines()
        assert "Traceback" not in err and lines and "was interrupted" in lines[0] and str(root) in lines[0], err
        if "staging area was removed" in lines[0]:  # killed after meta.db landed: it is complete
            seen_committed = True
            assert code == 3 and len(lines) == 2 and "already exists" in lines[1], err
        else:
            seen_undone = True
            assert code == 0 and len(lines) == 1, err
        assert hr.snapshot(root) == want, n
        assert not list(root.glob(hr.STAGE_PREFIX + "*"))
        n += 1
        assert n < 60
    assert n >= 6 and seen_committed and seen_undone
    assert hr.snapshot(SRC) == src_before


# --- one writer per target ----------------------------------------------------------------

PAUSE_DRIVER = r"""
import sys
from influx_archive.archive.ops.restore import journal
real = journal.Transaction.stage_dir
def stage_dir(self, near):
    sys.stdout.write("staging\n"); sys.stdout.flush()
    sys.stdin.readline()  # held here, inside the run, until the test says go
    return real(self, near)
journal.Transaction.stage_dir = stage_dir
from influx_archive.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("idx", range(6))
def test_second_run_on_an_overlapping_target_is_busy(idx, tmp_path, cli) -> None:
    name, first, second, shared = hr.overlapping_targets(tmp_path)[idx]
    src_before = hr.snapshot(SRC)
    holder = subprocess.Popen([sys.executable, "-c", PAUSE_DRIVER, "restore", str(SRC), *first, "--db", "db1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "staging\n"
        around_before = hr.snapshot(tmp_path / "b")
        code, _out, err = cli("restore", str(SRC), *second, "--db", "db2")
        line = one_line(err)
        assert code == 5, (name, err)
        assert f"target in use by pid {holder.pid}" in line and str(Path(shared) / LOCK_NAME) in line, (name, line)
        assert hr.snapshot(tmp_path / "b") == around_before, name  # the refused run wrote nothing
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        rc = holder.wait(120)
    assert rc == 0, holder.stderr.read()
    if name in ("same-dirs", "shared-metadir", "symlinked-alias"):
        code, _out, err = cli("restore", str(SRC), *second, "--db", "db2")
        assert code == 0, err
        meta = read_meta_db(tmp_path / "a" / "meta" / "meta.db")
        assert {db.name for db in meta.databases} == {"db1", "db2"}
        ids = [s.id for db in meta.databases for rp in db.retention_policies for g in rp.shard_groups for s in g.shards]
        assert len(ids) == len(set(ids))
    assert hr.snapshot(SRC) == src_before
    assert not list(tmp_path.rglob(LOCK_NAME))


@pytest.mark.slow
def test_two_restores_started_together_never_both_write(tmp_path) -> None:
    """The issue's case: two restores of different databases into one metadir, different data
    dirs, started at once. Whatever the interleaving, every database whose run exited 0 is in
    meta.db, every shard id is unique, and each data dir holds only shards meta.db names."""
    for rnd in range(4):
        w = tmp_path / f"r{rnd}"
        argv = [
            ["restore", str(SRC), "--metadir", str(w / "meta"), "--datadir", str(w / f"data{i}"), "--db", db]
            for i, db in enumerate(("db1", "db2"))
        ]
        procs = [subprocess.Popen([sys.executable, "-c", "from influx_archive.cli.main import main; main()", *a],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for a in argv]
        results = [(p.wait(300), p.stderr.read()) for p in procs]
        codes = sorted(c for c, _ in results)
        assert codes in ([0, 0], [0, 5]), results
        for (c, err), p in zip(results, procs):
            if c == 5:
                line = one_line(err)
                other = procs[1 - procs.index(p)]
                assert f"target in use by pid {other.pid}" in line, line
        meta = read_meta_db(w / "meta" / "meta.db")
        names = {db.name for db in meta.databases}
        assert names == {("db1", "db2")[i] for i, (c, _) in enumerate(results) if c == 0}
        ids = {s.id for db in meta.databases for rp in db.retention_policies for g in rp.shard_groups for s in g.shards}
        count = sum(len(g.shards) for db in meta.databases for rp in db.retention_policies for g in rp.shard_groups)
        assert len(ids) == count
        for i in range(2):
            on_disk = {int(p.name) for p in (w / f"data{i}").glob("*/*/*")} if (w / f"data{i}").exists() else set()
            assert on_disk <= ids


def test_lock_file_is_refused_when_planted_as_a_link_or_not_a_file(tmp_path, cli) -> None:
    victim = tmp_path / "victim"  # outside every target: its bytes and mode must stay
    victim.write_bytes(b"keep")
    victim.chmod(0o600)
    for kind, where in itertools.product(("symlink", "dir", "fifo", "hardlink"), ("meta", "data")):
        root = tmp_path / f"{kind}-{where}"
        (root / where).mkdir(parents=True)
        lock = root / where / LOCK_NAME
        {"symlink": lambda lock=lock: lock.symlink_to(victim), "dir": lock.mkdir,
         "fifo": lambda lock=lock: os.mkfifo(lock), "hardlink": lambda lock=lock: os.link(victim, lock)}[kind]()
        before = hr.snapshot(tmp_path)
        code, _out, err = cli(*hr.restore_args(SRC, root))
        assert code == 3 and str(lock) in one_line(err) and "lock file" in err, (kind, err)
        assert hr.snapshot(tmp_path) == before, kind


def test_lock_is_reentrant_and_released(tmp_path) -> None:
    d = tmp_path / "t"
    with TargetLock([(d, 0o755)]) as outer:
        assert (d / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        with TargetLock([(d, 0o755)]):
            pass
        assert (d / LOCK_NAME).exists() and outer.paths == [d]
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from influx_archive.archive.guard import TargetLock\n"
                "try:\n  TargetLock([(sys.argv[1], 0o755)]).__enter__()\nexcept Exception as e: "
                "print(type(e).__name__, e)",
                str(d),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.stdout.startswith("BusyError target in use by pid " + str(os.getpid())), proc.stdout
    assert not d.exists()  # created for the run, empty again: removed


# --- a symbolic link swapped in while the restore runs ---------------------------------------


def _swap(p: Path, victim: Path) -> None:
    os.rename(p, p.with_name(p.name + ".moved-away"))
    p.symlink_to(victim)


@pytest.mark.slow
@pytest.mark.parametrize(
    "what,at,code",
    [
        ("data/db1", 1, 3),
        ("data/db1/autogen", 1, 3),
        ("data/db1/hourly", 5, 3),
        ("data", 2, 3),
        ("meta", 9, 3),
        ("stage", 1, 0),
    ],
)
def test_symlink_swapped_in_during_the_run_redirects_nothing(what, at, code, tmp_path, monkeypatch, cli) -> None:
    root = tmp_path / "root"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_bytes(b"keep")
    real = restore_journal.Transaction.move_in
    n = {"i": 0}

    def move_in(self, staged, final):
        real(self, staged, final)
        n["i"] += 1
        if n["i"] == at:
            target = self.stages[0] if what == "stage" else root / what
            _swap(target, victim)

    monkeypatch.setattr(restore_journal.Transaction, "move_in", move_in)
    victim_before = hr.snapshot(victim)
    src_before = hr.snapshot(SRC)
    got, _out, err = cli(*hr.restore_args(SRC, root))
    assert got == code, err
    if code:
        line = one_line(err)
        shown = str(root / what)
        assert shown in line and ("symbolic link" in line or "replaced" in line), line
        assert not (root / "meta" / "meta.db").exists() and not (root / "meta.moved-away" / "meta.db").exists()
    else:
        assert without_next_step(err) == "", err
    assert hr.snapshot(victim) == victim_before  # nothing was written through the link
    assert hr.snapshot(SRC) == src_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "victim"]


# --- temporaries of killed convert / pack runs: only this user's own are removed ----------------


@pytest.mark.parametrize("verb", ["convert", "pack"])
def test_planted_temporaries_beside_an_output_are_left_alone(verb, tmp_path, cli) -> None:
    name = "out" if verb == "convert" else "a.tar.zst"
    alone, gone, victim = hr.planted_temp_siblings(tmp_path, name)
    before = {str(p): hr.snapshot(p) for p in alone}
    victim_before = hr.snapshot(victim)
    src_before = hr.snapshot(SRC)
    code, _out, err = cli(verb, str(SRC), str(tmp_path / name))
    assert code == 0 and err == "", err
    assert {str(p): hr.snapshot(p) for p in alone} == before
    assert not [p for p in gone if os.path.lexists(p)]
    assert hr.snapshot(victim) == victim_before and hr.snapshot(SRC) == src_before


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["file", "dir", "symlink", "empty-dir"])
def test_a_path_that_appears_at_the_moment_of_a_rename_is_never_overwritten(kind, tmp_path, monkeypatch, cli) -> None:
    """Another writer creates the shard directory between the plan's check and the rename:
    the rename (RENAME_NOREPLACE) refuses, the intruder is kept, the run rolls back."""
    root = tmp_path / "root"
    victim = tmp_path / "victim"
    victim.mkdir()
    real = restore_journal.Transaction.move_in
    made: list[Path] = []

    def move_in(self, staged, final):
        if not made:
            made.append(final)
            {
                "file": lambda: final.write_bytes(b"theirs"),
                "dir": lambda: (final.mkdir(), (final / "f").write_bytes(b"theirs")),
                "symlink": lambda: final.symlink_to(victim),
                "empty-dir": final.mkdir,
            }[kind]()
        real(self, staged, final)

    monkeypatch.setattr(restore_journal.Transaction, "move_in", move_in)
    src_before = hr.snapshot(SRC)
    code, _out, err = cli(*hr.restore_args(SRC, root))
    assert code == 3 and "appeared while restoring" in one_line(err) and str(made[0]) in err, err
    intruder = hr.snapshot(made[0])
    assert intruder and intruder["."][0] == {"file": "file", "symlink": "link"}.get(kind, intruder["."][0])
    if kind == "dir":
        assert (made[0] / "f").read_bytes() == b"theirs"
    assert not (root / "meta" / "meta.db").exists() and hr.snapshot(victim) == {".": hr.snapshot(victim)["."]}
    assert hr.snapshot(SRC) == src_before
    assert not list(tmp_path.rglob(hr.STAGE_PREFIX + "*")) and not list(tmp_path.rglob(LOCK_NAME))


def test_many_planted_staging_dirs_are_reported_in_bounded_lines(tmp_path, cli) -> None:
    root = hr.many_planted(tmp_path, 40)
    before = hr.snapshot(root)
    code, _out, err = cli(*hr.restore_args(SRC, root))
    assert code == 0 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("influx-archive: warning: ")]  # not the next step
    assert len(lines) == restore_journal.MAX_LEFT_ALONE_NOTES + 1, err
    assert all("left alone" in line for line in lines) and "30 more" in lines[-1]
    after = hr.snapshot(root)
    assert {k: v for k, v in after.items() if k.startswith(hr.STAGE_PREFIX)} == {
        k: v for k, v in before.items() if k.startswith(hr.STAGE_PREFIX)}
