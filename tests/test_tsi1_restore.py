"""``restore --index tsi1|inmem|auto`` (issue 17): the series file and every restored shard's
``index/`` built inside the same staged, journaled restore.

* the choice: every combination of --index, --config (index-version set, unset, bad) and target
  (fresh, inmem shards, tsi1 shards) gives the documented index, or one usage line;
* what lands equals what ``restore`` + ``build-tsi`` give, read by influx_inspect's own
  ``dumptsi`` (series per shard) and the TRUTH; ``verify-seriesfile`` finds nothing;
* ``--merge`` into a tsi1 database extends its series file: every existing series keeps its id,
  the target's untouched shards' indexes stay byte-identical;
* failures at every step and kills (``os._exit``) at every step leave the target as it was, once
  the next run's recovery has run — including the series file and index moved aside.

The influxd 1.6.7 proof (every fixture source served under ``index-version = "tsi1"``, and the
merge served) is in test_tsi1_restore_interop.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_restore import tree_state
from test_tsi1_inspect import _dumptsi_sections, influx_inspect, shard_dirs, truth_keys

from influx_archive.archive.errors import TargetError, UsageError
from influx_archive.archive.ops import restore as restore_pkg
from influx_archive.archive.ops.restore import execute_restore, plan_restore, recover_interrupted
from influx_archive.archive.ops.restore import tsi as restore_tsi
from influx_archive.archive.ops.select import Selection
from influx_archive.archive.sources import open_source
from influx_archive.tsm.tsi1 import seriesfile as sf


def _restore(cli, src: Path, root: Path, *args: str):
    return cli("restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), *args)


def _plan(src: Path, root: Path, **kw):
    return plan_restore(open_source(src), metadir=root / "meta", datadir=root / "data", recover=False, **kw)


CONFIGS = {
    "none": None,
    "tsi1": '[meta]\n  dir = "/x"\n[data]\n  dir = "/y"\n  index-version = "tsi1"\n',
    "inmem": '[data]\n  index-version = "inmem"\n',
    "unset": '[data]\n  dir = "/y"\n',
}


@pytest.mark.parametrize("target", ["fresh", "inmem", "tsi1"])
@pytest.mark.parametrize("conf", list(CONFIGS))
@pytest.mark.parametrize("index", ["auto", "inmem", "tsi1"])
def test_index_choice(index, conf, target, tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    if target != "fresh":
        assert _restore(cli, fixtures_dir / "legacy", root, "--db", "db2", "--index", target).code == 0
    config = None
    if CONFIGS[conf] is not None:
        config = tmp_path / "influxdb.conf"
        config.write_text(CONFIGS[conf])
    plan = _plan(fixtures_dir / "legacy", root, selection=Selection(database="db1"), index=index, config=config)
    from_conf = {"tsi1": "tsi1", "inmem": "inmem", "unset": "inmem"}.get(conf)
    if index != "auto":
        want = index
    elif from_conf is not None:
        want = from_conf
    else:
        want = "tsi1" if target == "tsi1" else "inmem"
    assert plan.index == want, (plan.index, plan.index_why)
    conflict = [w for w in plan.warnings if "--index" in w and "index-version" in w]
    assert bool(conflict) == (index != "auto" and from_conf is not None and from_conf != index)


@pytest.mark.parametrize(
    "text,msg",
    [
        ("[data\nindex-version = 1", "not a TOML file"),
        ('[data]\nindex-version = "tsi2"\n', "neither"),
        (b"\xff\xfe[data]", "not a TOML file"),
        ("x" * ((4 << 20) + 1), "not an influxdb.conf"),
        (None, "cannot read"),
    ],
)
def test_bad_config_is_one_usage_line(text, msg, tmp_path, fixtures_dir, cli) -> None:
    config = tmp_path / "influxdb.conf"
    if isinstance(text, bytes):
        config.write_bytes(text)
    elif text is not None:
        config.write_text(text)
    root = tmp_path / "root"
    proc = _restore(cli, fixtures_dir / "legacy", root, "--config", str(config))
    assert proc.code == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and msg in proc.stderr and str(config) in proc.stderr, proc.stderr
    assert not (root / "data").exists() or not any((root / "data").iterdir())
    proc = _restore(cli, fixtures_dir / "legacy", root, "--index", "tsi2")
    assert proc.code == 2 and proc.stderr.count("\n") == 1 and "--index" in proc.stderr


def _inspect_series(shard: Path) -> set[bytes]:
    proc = subprocess.run(
        [influx_inspect(), "dumptsi", "-series-file", str(shard.parents[1] / "_series"), "-series",
         str(shard / "index")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return {s.encode() for s in _dumptsi_sections(proc.stdout).get("Series", [])}


def _verify_seriesfiles(data: Path) -> None:
    for db in sorted(p for p in data.iterdir() if p.is_dir()):
        proc = subprocess.run(
            [influx_inspect(), "verify-seriesfile", "-series-file", str(db / "_series"), "-v"],
            capture_output=True, text=True, timeout=120,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "lvl=error" not in out and out.count("Verifying partition") == 8, out


@pytest.mark.interop  # influx_inspect reads what landed
@pytest.mark.parametrize("name,extra", [("legacy", ()), ("portable", ()), ("live", ("--waldir",))])
def test_same_as_restore_then_build_tsi(name, extra, tmp_path, fixtures_dir, truth, cli) -> None:
    """What restore --index tsi1 lands is what restore + build-tsi give (series per shard, read by
    influx_inspect's dumptsi; the series file's keys), and the TRUTH's series with points."""
    src = fixtures_dir / name
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for root, index in ((ours, "tsi1"), (theirs, "inmem")):
        args = [a for e in extra for a in (e, str(root / "wal"))]
        proc = _restore(cli, src, root, *args, "--index", index)
        assert proc.code == 0, proc.stderr
        # the index chosen is named; no build-tsi note: this target uses no tsi1 (cli/nextstep.py)
        assert f"index: {index}" in proc.stdout and "build-tsi" not in proc.stdout + proc.stderr, proc.stdout
    wal = ["--waldir", str(theirs / "wal")] if extra else []
    assert cli("build-tsi", "--datadir", str(theirs / "data"), *wal).code == 0
    assert [s.relative_to(ours) for s in shard_dirs(ours / "data")] == [
        s.relative_to(theirs) for s in shard_dirs(theirs / "data")
    ]
    want = truth_keys(truth(name))
    for shard in shard_dirs(ours / "data"):
        assert sorted(os.listdir(shard / "index")) == [str(p) for p in range(8)]
        assert _inspect_series(shard) == _inspect_series(theirs / shard.relative_to(ours)), shard
    for db in sorted(p.name for p in (ours / "data").iterdir()):
        keys = {k for _i, k in sf.SeriesFile(ours / "data" / db / "_series").series()}
        assert keys == {k for _i, k in sf.SeriesFile(theirs / "data" / db / "_series").series()}
        assert len(keys) == len(want[db])
    _verify_seriesfiles(ours / "data")


def _series_ids(data: Path, db: str) -> dict[bytes, int]:
    return {k: i for i, k in sf.SeriesFile(data / db / "_series").series()}


@pytest.mark.interop  # influx_inspect reads what landed
@pytest.mark.parametrize("how", ["auto", "tsi1", "config"])
def test_merge_extends_the_series_file(how, tmp_path, fixtures_dir, cli) -> None:
    """db2 merged into a tsi1 db1: db1's series keep their ids, db2's are appended; the shards not
    merged into keep their index byte for byte; the one merged into gets both sets of series."""
    root = tmp_path / "root"
    assert _restore(cli, fixtures_dir / "legacy", root, "--db", "db1", "--index", "tsi1").code == 0
    before_ids = _series_ids(root / "data", "db1")
    before = tree_state(root / "data")
    args = {"auto": [], "tsi1": ["--index", "tsi1"], "config": ["--config", str(tmp_path / "c.conf")]}[how]
    (tmp_path / "c.conf").write_text('[data]\nindex-version = "tsi1"\n')
    proc = _restore(cli, fixtures_dir / "legacy", root, "--db", "db2", "--newdb", "db1", "--merge", *args)
    assert proc.code == 0, proc.stderr
    assert "index: tsi1" in proc.stdout and "build-tsi" not in proc.stdout
    after_ids = _series_ids(root / "data", "db1")
    assert {k: after_ids.get(k) for k in before_ids} == before_ids
    assert len(after_ids) > len(before_ids)
    into = [ln for ln in proc.stdout.splitlines() if "into existing shard" in ln]
    assert into, proc.stdout
    merged = {Path(ln.split(" -> ")[1].split(" (")[0]) for ln in into}
    for shard in shard_dirs(root / "data"):
        series = _inspect_series(shard)
        assert series, shard
        rel = shard.relative_to(root / "data")
        old = {p: v for p, v in before.items() if p.startswith(f"{rel}/index/") or p == f"{rel}/index"}
        now = {p: v for p, v in tree_state(root / "data").items() if p in old}
        if shard in merged:
            assert now != old
        elif old:
            assert now == old, shard
    _verify_seriesfiles(root / "data")


def test_inmem_into_a_tsi1_shard_is_refused(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    assert _restore(cli, fixtures_dir / "legacy", root, "--db", "db1", "--index", "tsi1").code == 0
    before = tree_state(tmp_path)
    proc = _restore(cli, fixtures_dir / "legacy", root, "--db", "db2", "--newdb", "db1", "--merge", "--index", "inmem")
    assert proc.code == 2 and proc.stderr.count("\n") == 1 and "tsi1 index" in proc.stderr, proc.stderr
    assert tree_state(tmp_path) == before


STEPS = ["build_indexes", "move_aside", "move_in_all", "install", "write_meta_at"]


def _fail_at(monkeypatch, step: str, how) -> None:
    real = getattr(restore_pkg, step)

    def patched(*a, **kw):
        if step in ("move_in_all", "install"):
            real(*a, **kw)  # the step happened; what follows it fails
        how()
        raise AssertionError("unreachable")

    monkeypatch.setattr(restore_pkg, step, patched)


def _merge_target(tmp_path: Path, fixtures_dir: Path) -> Path:
    root = tmp_path / "root"
    plan = plan_restore(open_source(fixtures_dir / "legacy"), metadir=root / "meta", datadir=root / "data",
                        selection=Selection(database="db1"), index="tsi1")
    execute_restore(plan)
    return root


def _merge_plan(root: Path, fixtures_dir: Path):
    return plan_restore(open_source(fixtures_dir / "legacy"), metadir=root / "meta", datadir=root / "data",
                        selection=Selection(database="db2", newdb="db1"), merge=True)


@pytest.mark.parametrize("step", STEPS)
def test_failure_at_every_step_leaves_the_target(step, tmp_path, fixtures_dir, monkeypatch) -> None:
    root = _merge_target(tmp_path, fixtures_dir)
    before = tree_state(tmp_path)
    plan = _merge_plan(root, fixtures_dir)
    assert plan.index == "tsi1"

    def fail():
        raise OSError(28, "No space left on device", str(root / "data"))

    _fail_at(monkeypatch, step, fail)
    with pytest.raises(TargetError):
        execute_restore(plan)
    assert tree_state(tmp_path) == before


@pytest.mark.interop  # influx_inspect reads what landed
@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_step_is_undone_by_the_next_run(step, tmp_path, fixtures_dir, monkeypatch) -> None:
    root = _merge_target(tmp_path, fixtures_dir)
    before = tree_state(root)
    plan = _merge_plan(root, fixtures_dir)
    _fail_at(monkeypatch, step, lambda: os._exit(9))
    pid = os.fork()
    if pid == 0:  # the child dies inside the step, as SIGKILL would leave it
        try:
            execute_restore(plan)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9
    monkeypatch.undo()
    notes = recover_interrupted(metadir=root / "meta", datadir=root / "data")
    assert notes and all("interrupted" in n for n in notes), notes
    locks = {p for p in tree_state(root) if p.endswith(".influx-archive.lock")}  # a lock file stays
    assert {p: v for p, v in tree_state(root).items() if p not in locks} == before
    assert not [p for p in root.iterdir() if p.name.startswith(".influx-archive-restore-")]
    # and the restore then goes through
    execute_restore(_merge_plan(root, fixtures_dir))
    _verify_seriesfiles(root / "data")


def _die_at_removal(k: int, run) -> None:
    """Run ``run()`` in this (forked) process, dying with exit 9 at its k-th ``unlink``/``rmdir``
    after the restore journaled its commit (exit 0 when it ends first)."""
    from influx_archive.archive.ops.restore import journal

    committed: list[bool] = []
    removed = [0]
    real_commit = journal.Transaction.commit

    def commit(self) -> None:
        real_commit(self)
        committed.append(True)

    def counting(real):
        def f(*a, **kw):
            if committed:
                if removed[0] == k:
                    os._exit(9)
                removed[0] += 1
            return real(*a, **kw)
        return f

    journal.Transaction.commit = commit  # type: ignore[method-assign]
    os.unlink, os.rmdir = counting(os.unlink), counting(os.rmdir)  # type: ignore[assignment]
    run()
    os._exit(0 if committed else 3)


def test_kill_during_the_clean_up_after_commit_completes(tmp_path, fixtures_dir) -> None:
    """Killed while the committed run removes its staging areas (the target's old index and
    series file moved aside, the journal), after every k-th removal in turn: the next run's
    recovery finishes the removal, and the target is the complete merge. The journal goes
    last: before, a kill that left the moved-aside copies but not the journal made recovery leave
    the staging directory alone ("holds no journal"), for ever, with a note at every run."""
    ref = _merge_target(tmp_path / "ref", fixtures_dir)
    execute_restore(_merge_plan(ref, fixtures_dir))
    complete = {p: v for p, v in tree_state(ref).items() if not p.endswith(".influx-archive.lock")}
    base = _merge_target(tmp_path / "base", fixtures_dir)
    k, tried, finished = 0, 0, False
    while not finished:
        assert k < 200, "the clean-up never ended"
        root = tmp_path / f"k{k}"
        shutil.copytree(base, root, symlinks=True)
        pid = os.fork()
        if pid == 0:  # the child: dies at the k-th removal once the commit is journaled
            try:
                _die_at_removal(k, lambda r=root: execute_restore(_merge_plan(r, fixtures_dir)))
            finally:
                os._exit(3)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        assert code in (0, 9), code
        finished = code == 0
        recover_interrupted(metadir=root / "meta", datadir=root / "data")
        state = tree_state(root)
        assert not [n for n in state if ".influx-archive-restore-" in n], (k, sorted(state)[:4])
        assert {p: v for p, v in state.items() if not p.endswith(".influx-archive.lock")} == complete, k
        shutil.rmtree(root)
        tried += 1
        k = k + 1 if k < 8 else k * 3 // 2  # every early removal (the journal's neighbours), then sampled
    assert tried > 5  # the clean-up removed several entries, each one a kill point


def test_damaged_target_series_file_is_refused(tmp_path, fixtures_dir) -> None:
    root = _merge_target(tmp_path, fixtures_dir)
    seg = root / "data" / "db1" / "_series" / "03" / "0000"
    raw = bytearray(seg.read_bytes())
    raw[0:4] = b"XXXX"
    seg.write_bytes(bytes(raw))
    before = tree_state(tmp_path)
    with pytest.raises(TargetError, match="series file cannot be extended") as err:
        execute_restore(_merge_plan(root, fixtures_dir))
    assert str(seg) in str(err.value)
    assert tree_state(tmp_path) == before


def test_owner_and_modes(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    proc = _restore(cli, fixtures_dir / "legacy", root, "--index", "tsi1", "--owner", "nobody:nogroup")
    assert proc.code == 0, proc.stderr
    umask = os.umask(0)
    os.umask(umask)
    for dirpath, dirs, files in os.walk(root / "data"):
        rel = Path(dirpath).relative_to(root / "data").parts
        if "index" not in rel and "_series" not in rel:
            continue
        for n in dirs + files:
            st = os.lstat(os.path.join(dirpath, n))
            assert (st.st_uid, st.st_gid) != (0, 0), os.path.join(dirpath, n)
            want = (0o777 if n in dirs else 0o666) & ~umask
            assert st.st_mode & 0o777 == want, (os.path.join(dirpath, n), oct(st.st_mode))
    shutil.rmtree(root)
    with pytest.raises(UsageError):
        restore_tsi.choose_index("btree", root / "data", None)


def test_dry_run_names_the_index_and_writes_nothing(tmp_path, fixtures_dir, cli) -> None:
    import json

    root = _merge_target(tmp_path, fixtures_dir)
    before = tree_state(tmp_path)
    for extra, want in (([], "tsi1"), (["--index", "tsi1"], "tsi1"), (["--json"], "tsi1")):
        proc = _restore(cli, fixtures_dir / "legacy", root, "--db", "db2", "--newdb", "db1", "--merge", "--dry-run",
                        *extra)
        assert proc.code == 0, proc.stderr
        if "--json" in extra:
            assert json.loads(proc.stdout)["plan"]["index"]["type"] == want
        else:
            assert f"index: {want} (" in proc.stdout
        assert tree_state(tmp_path) == before


@pytest.mark.parametrize("damage", ["cut-footer", "cut-half", "zero-magic", "index-lies"])
def test_damaged_target_shard_merged_into_is_a_target_error(damage, tmp_path, fixtures_dir, cli) -> None:
    """The merged-into shard's own TSM files are read to index it: damage there is exit 3, one
    line naming that file, nothing restored."""
    root = _merge_target(tmp_path, fixtures_dir)
    tsm = sorted((root / "data" / "db1" / "autogen" / "4").glob("*.tsm"))[0]
    raw = bytearray(tsm.read_bytes())
    if damage == "cut-footer":
        raw = raw[:-3]
    elif damage == "cut-half":
        raw = raw[: len(raw) // 2]
    elif damage == "zero-magic":
        raw[0:4] = b"\0\0\0\0"
    else:
        raw[-8:] = (len(raw) * 4).to_bytes(8, "big")  # index offset past the end
    tsm.write_bytes(bytes(raw))
    before = tree_state(tmp_path)
    proc = _restore(cli, fixtures_dir / "legacy", root, "--db", "db2", "--newdb", "db1", "--merge")
    assert proc.code == 3, (proc.code, proc.stderr)
    assert proc.stderr.count("\n") == 1 and str(tsm) in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    locks = {p for p in tree_state(tmp_path) if p.endswith(".influx-archive.lock")}
    assert {p: v for p, v in tree_state(tmp_path).items() if p not in locks} == {
        p: v for p, v in before.items() if p not in locks}
