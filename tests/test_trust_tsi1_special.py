"""Special files planted where a tsi1 tree, a TSM file, a tombstone or a WAL segment must be.

A FIFO where a series segment stands used to hang ``build-tsi``, ``verify`` and ``dump-tsi``
forever (a plain ``open`` of a FIFO blocks until a writer comes); a symbolic link to
``/dev/zero`` read as an empty tombstone. The generator below plants every kind of special file
(FIFO, socket, link to a character device, directory, dangling link) in the place of every kind
of file the readers open, and runs every verb that reads such a tree, as a subprocess with a
time limit (a hang fails the case instead of the suite). Each run must end in time, without a
traceback; a verb that refuses says so in one line naming the planted path and leaves the tree as
it was; ``verify`` always reports the planted path.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CLI = [sys.executable, "-c", "from influx_archive.cli.main import main; main()"]


def _plant_fifo(p: Path) -> None:
    os.mkfifo(p)


def _plant_socket(p: Path) -> None:
    # bound in a short directory (AF_UNIX paths stop at 108 bytes), then renamed into place
    with tempfile.TemporaryDirectory(dir="/tmp") as short:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(os.path.join(short, "s"))
        finally:
            s.close()
        os.rename(os.path.join(short, "s"), p)


def _plant_zero(p: Path) -> None:
    os.symlink("/dev/zero", p)


def _plant_dir(p: Path) -> None:
    p.mkdir()


def _plant_dangling(p: Path) -> None:
    os.symlink(p.parent / "no-such-file", p)


PLANTS: dict[str, Callable[[Path], None]] = {
    "fifo": _plant_fifo,
    "socket": _plant_socket,
    "link to /dev/zero": _plant_zero,
    "directory": _plant_dir,
    "dangling link": _plant_dangling,
}

#: (kind, path in the indexed tree of the live fixture, verbs that must refuse it). Every verb
#: not listed may not need the file (build-tsi without --force skips indexed shards; --force
#: replaces the index it would have read); it must then still end in time and cleanly.
TARGETS = [
    ("series segment", "data/db1/_series/03/0000",
     {"build-tsi --force", "dump-tsi db", "dump-tsi index", "restore --merge", "inspect"}),
    # build-tsi writes no series index (influxd writes one when a partition compacts): planted
    # where none stood, it is what an influxd-compacted partition would have
    ("series index", "data/db1/_series/03/index", set()),
    ("MANIFEST", "data/db1/autogen/1/index/0/MANIFEST", {"dump-tsi index"}),
    ("log file", "data/db1/autogen/1/index/0/L0-00000001.tsl", {"dump-tsi index"}),
    ("TSM file", "data/db1/autogen/1/000000001-000000001.tsm", {"build-tsi --force", "restore --merge", "inspect"}),
    ("tombstone", "data/db1/autogen/2/000000001-000000001.tombstone", {"build-tsi --force", "inspect"}),
    ("WAL segment", "wal/db1/autogen/4/_00004.wal", {"build-tsi --force", "inspect"}),
]

VERBS: dict[str, Callable[[Path], list[str]]] = {
    "build-tsi": lambda t: ["build-tsi", "--datadir", str(t / "data"), "--waldir", str(t / "wal")],
    "build-tsi --force": lambda t: ["build-tsi", "--datadir", str(t / "data"), "--waldir", str(t / "wal"), "--force"],
    "verify": lambda t: ["verify", str(t)],
    "inspect": lambda t: ["inspect", str(t)],  # damage is a finding (exit 1), the rest still listed
    "dump-tsi db": lambda t: ["dump-tsi", str(t / "data" / "db1")],
    "dump-tsi index": lambda t: ["dump-tsi", str(t / "data" / "db1" / "autogen" / "1" / "index")],
    # the planted file is in the target: a merge that extends the series file must not hang on it
    "restore --merge": lambda t: ["restore", str(FIXTURES / "portable"), "--metadir", str(t / "meta"),
                                  "--datadir", str(t / "data"), "--waldir", str(t / "wal"), "--merge",
                                  "--index", "tsi1"],
}
#: exit code of a refusal: damage in a source is 1; damage in a restore's target is 3
REFUSAL = {"restore --merge": 3}


def lstat_tree(root: Path) -> dict[str, tuple]:
    """What a run may not change, read without opening anything (a FIFO must not be opened)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            st = p.lstat()
            # a directory's mtime moves when a restore's lock or staging entry comes and goes;
            # its entries are all listed here, which is what must not change
            stamp = None if stat.S_ISDIR(st.st_mode) else (st.st_size, st.st_mtime_ns, st.st_ino)
            out[str(p.relative_to(root))] = (st.st_mode, stamp)
    return out


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tsi1-special") / "indexed"
    for argv in (
        ["restore", str(FIXTURES / "live"), "--metadir", str(root / "meta"), "--datadir", str(root / "data"),
         "--waldir", str(root / "wal")],
        ["build-tsi", "--datadir", str(root / "data"), "--waldir", str(root / "wal")],
    ):
        r = subprocess.run([*CLI, *argv], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=120)
        assert r.returncode == 0, r.stderr
    for kind, rel, _ in TARGETS:
        assert kind == "series index" or (root / rel).is_file(), f"the live fixture no longer has {rel}"
    return root


def cases() -> list:
    out = []
    for kind, rel, refusers in TARGETS:
        for plant in PLANTS:
            for verb in VERBS:
                out.append(pytest.param(kind, rel, plant, verb, verb in refusers, id=f"{kind}-{plant}-{verb}"))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "rel", "plant", "verb", "must_refuse"), cases())
def test_special_file_is_refused_in_time(indexed, tmp_path, kind, rel, plant, verb, must_refuse) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(indexed, tree, symlinks=True)
    target = tree / rel
    target.unlink(missing_ok=True)
    PLANTS[plant](target)
    before = lstat_tree(tree)
    siblings = sorted(os.listdir(tmp_path))
    try:
        r = subprocess.run([*CLI, *VERBS[verb](tree)], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{verb} hung on a {plant} where a {kind} must be")
    assert "Traceback" not in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == siblings, "something was written beside the tree"
    if verb == "verify":
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert str(target) in r.stdout + r.stderr, r.stdout
        assert lstat_tree(tree) == before, "verify changed the tree"
        return
    if verb == "inspect":
        assert r.returncode in ((1,) if must_refuse else (0, 1)), (r.returncode, r.stdout, r.stderr)
        if r.returncode:
            assert str(target) in r.stdout, r.stdout
        assert r.stdout.startswith("source: live "), r.stdout
        assert lstat_tree(tree) == before, "inspect changed the tree"
        return
    if must_refuse or r.returncode != 0:
        assert r.returncode == REFUSAL.get(verb, 1), (r.returncode, r.stderr)
        # one error line, the last, naming the planted path (a merge warns first about the
        # target's WAL: those lines are the target's state, not this failure)
        lines = r.stderr.splitlines()
        errors = [n for n in lines if n.startswith("influx-archive: error:")]
        assert errors == lines[-1:] and str(target) in errors[0], r.stderr
        assert all(n.startswith("influx-archive: warning:") for n in lines[:-1]), r.stderr
        assert lstat_tree(tree) == before, "a refused run changed the tree"


@pytest.mark.parametrize("plant", list(PLANTS))
def test_special_file_as_config_is_refused_in_time(tmp_path, plant) -> None:
    """``restore --index auto --config F`` reads an influxdb.conf: a FIFO there used to block the
    restore before it started."""
    config = tmp_path / "influxdb.conf"
    PLANTS[plant](config)
    target = tmp_path / "target"
    try:
        r = subprocess.run([*CLI, "restore", str(FIXTURES / "portable"), "--metadir", str(target / "meta"),
                            "--datadir", str(target / "data"), "--index", "auto", "--config", str(config)],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"restore hung on a {plant} given as --config")
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "--config" in lines[0] and str(config) in lines[0], r.stderr
    assert not target.exists()


# ---- links below the data directory -------------------------------------------------------------


def _tree_copy(indexed: Path, dst: Path) -> Path:
    shutil.copytree(indexed, dst, symlinks=True)
    for index in dst.glob("data/*/*/*/index"):  # unindexed: build-tsi has every shard to write
        shutil.rmtree(index)
    return dst


@pytest.mark.parametrize("level", ["database", "retention policy", "shard"])
def test_links_below_the_data_directory_are_left_alone(indexed, tmp_path, level) -> None:
    """A database, retention policy or shard directory that is a link (to a decoy outside the
    tree) is skipped with a warning; nothing is written into the decoy."""
    tree = _tree_copy(indexed, tmp_path / "tree")
    rel = {"database": "db2", "retention policy": "db1/hourly", "shard": "db1/autogen/2"}[level]
    real = tree / "data" / rel
    decoy = tmp_path / "decoy"
    shutil.move(str(real), decoy)
    os.symlink(decoy, real)
    before = lstat_tree(decoy)
    r = subprocess.run([*CLI, *VERBS["build-tsi"](tree)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{real} is a symbolic link: left as it is" in r.stderr, r.stderr
    assert lstat_tree(decoy) == before, "build-tsi wrote through a link"
    assert (tree / "data" / "db1" / "autogen" / "1" / "index").is_dir()


@pytest.mark.parametrize("level", ["database", "shard"])
def test_a_link_swapped_in_during_the_run_is_not_written_through(indexed, tmp_path, monkeypatch, level) -> None:
    """Between reading the shards and writing their indexes, a directory of the tree is renamed
    away and a link to a decoy put in its place. The decoy gets nothing: the database directory
    was opened before (its indexes land in the directory opened, wherever it went); a shard
    directory is opened at the moment of writing, finds the link and the run stops naming it."""
    from influx_archive.archive.errors import TargetError
    from influx_archive.archive.ops import buildtsi

    tree = _tree_copy(indexed, tmp_path / "tree")
    rel = {"database": "db2", "shard": "db1/autogen/2"}[level]
    real = tree / "data" / rel
    moved = real.with_name(real.name + "-moved")
    decoy = tmp_path / "decoy"
    shutil.copytree(real, decoy, symlinks=True)
    before = lstat_tree(decoy)
    original = buildtsi._db_series
    swapped = []

    def swap_then_extend(*args, **kw):
        if not swapped:
            os.rename(real, moved)
            os.symlink(decoy, real)
            swapped.append(True)
        return original(*args, **kw)

    monkeypatch.setattr(buildtsi, "_db_series", swap_then_extend)
    if level == "shard":
        with pytest.raises(TargetError) as exc:
            buildtsi.build_tsi(tree / "data", tree / "wal", jobs=1)
        assert exc.value.path == str(real) and "symbolic link" in exc.value.message, exc.value
    else:
        buildtsi.build_tsi(tree / "data", tree / "wal", jobs=4)
        shards = [p for p in moved.glob("*/*") if p.name.isdigit() and p.parent.name != "_series"]
        assert shards and all((p / "index").is_dir() for p in shards), shards
        assert (moved / "_series").is_dir()
    assert swapped and lstat_tree(decoy) == before, "build-tsi wrote through a link swapped in during the run"
    assert os.path.islink(real)


# ---- two runs at once ---------------------------------------------------------------------------

_SLOW_BUILD = """
import sys, time
from influx_archive.archive.ops import buildtsi
real = buildtsi._db_series
def slow(*a, **kw):
    print("building", flush=True)
    time.sleep(float(sys.argv[3]))
    return real(*a, **kw)
buildtsi._db_series = slow
buildtsi.build_tsi(sys.argv[1], sys.argv[2], jobs=1)
print("built", flush=True)
"""


def test_a_restore_with_force_is_refused_while_build_tsi_runs(indexed, tmp_path) -> None:
    """restore --force passes its live-process check (a false positive, say) but never the lock:
    build-tsi holds the same lock as restore, so a merge cannot swap the series file in under it."""
    tree = _tree_copy(indexed, tmp_path / "tree")
    builder = subprocess.Popen([sys.executable, "-c", _SLOW_BUILD, str(tree / "data"), str(tree / "wal"), "6"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert builder.stdout is not None and builder.stdout.readline().strip() == "building"
        r = subprocess.run([*CLI, *VERBS["restore --merge"](tree), "--force"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 5, (r.returncode, r.stderr)
        assert f"pid {builder.pid}" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        out, err = builder.communicate(timeout=120)
        assert builder.returncode == 0 and "built" in out, err
    finally:
        if builder.poll() is None:
            builder.kill()
            builder.wait()
    assert not (tree / "data" / ".influx-archive.lock").exists()


def test_build_tsi_is_refused_while_a_restore_holds_the_lock(indexed, tmp_path) -> None:
    tree = _tree_copy(indexed, tmp_path / "tree")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom influx_archive.archive.guard import TargetLock\n"
         "with TargetLock([(sys.argv[1], 0o755)]):\n    print('locked', flush=True)\n    time.sleep(60)",
         str(tree / "data")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = lstat_tree(tree)
        r = subprocess.run([*CLI, *VERBS["build-tsi"](tree)], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        assert r.returncode == 5 and f"target in use by pid {holder.pid}" in r.stderr, r.stderr
        assert r.stderr.splitlines()[-1].startswith("influx-archive: error:"), r.stderr
        assert lstat_tree(tree) == before
    finally:
        holder.kill()
        holder.wait()


# ---- kill -9 at random moments ------------------------------------------------------------------


def _state(tree: Path) -> dict[str, str]:
    """Content of every regular file below data/ (series segments compared by their data)."""
    from test_trust_tsi1 import file_hash

    out = {}
    for p in sorted((tree / "data").rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(tree))] = file_hash(p)
    return out


@pytest.mark.slow
def test_sigkill_at_random_moments_then_a_rerun_equals_a_clean_build(indexed, tmp_path) -> None:
    """build-tsi killed with SIGKILL (no handler runs: its stages, the lock file and a half-done
    series swap stay) at seeded random moments of a run that builds every shard. What a kill
    leaves is always usable or recoverable: each database has ``_series`` or the swapped-out
    copy the next run moves back, and every ``index/`` present opens whole. The next run completes
    and the tree is then the one an uninterrupted run writes, byte for byte."""
    import random
    import signal

    from influx_archive.tsm.tsi1 import index as ix
    from influx_archive.tsm.tsi1 import seriesfile as sf

    clean = _tree_copy(indexed, tmp_path / "clean")
    shutil.rmtree(clean / "data" / "db1" / "_series")  # the run also writes a series file anew
    base = tmp_path / "base"
    shutil.copytree(clean, base, symlinks=True)
    argv = [*CLI, *VERBS["build-tsi"](clean), "--quiet"]
    t0 = __import__("time").monotonic()
    assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    full = __import__("time").monotonic() - t0
    want = _state(clean)
    rng = random.Random(90210)
    killed = i = 0
    while killed < 6 and i < 20:  # a run that ends before its kill is in no step: later ones come sooner
        i += 1
        tree = tmp_path / f"t{i}"
        shutil.copytree(base, tree, symlinks=True)
        run = [*CLI, *VERBS["build-tsi"](tree), "--quiet"]
        t0 = __import__("time").monotonic()
        proc = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=rng.uniform(0.05, 1.0) * full)
            full = __import__("time").monotonic() - t0
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
        for db in (tree / "data").iterdir():
            olds = list(db.glob(".influx-archive-series-old-*"))
            if (db / "_series").exists():
                sf.SeriesFile(db / "_series")
            elif db.name == "db2" or olds:
                assert len(olds) == 1, (i, db, os.listdir(db))
        for index in (tree / "data").glob("*/*/*/index"):
            ix.ShardIndex(index)
        r = subprocess.run(run, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (i, r.stderr)
        assert _state(tree) == want, f"run {i}: the tree after a kill and a rerun differs from a clean build"
        assert not list(tree.rglob(".influx-archive*")) and not list(tree.rglob(".index")), i
        shutil.rmtree(tree)
    assert killed >= 6, f"only {killed} of {i} runs were killed mid-way"


# ---- a series file partition that is a link ------------------------------------------------------


def _partial_tree(indexed: Path, dst: Path) -> Path:
    """A tree whose db1 series file holds one shard's series only: the next build-tsi extends it
    (copies it into a stage, chowns the copy to --owner, swaps it in)."""
    tree = _tree_copy(indexed, dst)
    shutil.rmtree(tree / "data" / "db1" / "_series")
    r = subprocess.run([*CLI, *VERBS["build-tsi"](tree), "--db", "db1", "--rp", "autogen", "--shard", "1"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr
    return tree


def _decoy_partition(tree: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Partition 00 of db1's series file moved to a decoy directory that also holds a root-only
    file (what /etc holds); returns (partition path, decoy)."""
    part = tree / "data" / "db1" / "_series" / "00"
    decoy = tmp_path / "decoy"
    shutil.copytree(part, decoy)
    secret = decoy / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    return part, decoy


@pytest.mark.parametrize("verb", ["build-tsi", "restore --merge"])
def test_a_linked_series_partition_is_never_copied_through(indexed, tmp_path, verb) -> None:
    """_series/00 a link to a directory holding a root-only file: the extension copied every
    file of the partition into the new series file and chowned it to --owner (the database's
    owner could then read any file root can). Now refused by name, exit 3, nothing written."""
    tree = _partial_tree(indexed, tmp_path / "tree")
    part, decoy = _decoy_partition(tree, tmp_path)
    shutil.rmtree(part)
    os.symlink(decoy, part)
    before, decoy_before = lstat_tree(tree), lstat_tree(decoy)
    r = subprocess.run([*CLI, *VERBS[verb](tree), "--owner", "65534:65534"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert r.stderr.splitlines()[-1].startswith("influx-archive: error:") and str(part) in r.stderr, r.stderr
    assert lstat_tree(decoy) == decoy_before
    assert not list(tree.rglob("secret")), "a file of the linked directory was copied in"
    assert lstat_tree(tree) == before


def test_a_series_partition_swapped_for_a_link_mid_run_is_never_copied_through(indexed, tmp_path,
                                                                               monkeypatch) -> None:
    """The same link swapped in after the series file was read, just before it is staged."""
    from influx_archive.archive.errors import TargetError
    from influx_archive.archive.ops import buildtsi

    tree = _partial_tree(indexed, tmp_path / "tree")
    part, decoy = _decoy_partition(tree, tmp_path)
    decoy_before = lstat_tree(decoy)
    original = buildtsi._db_series

    def swap_then_extend(*args, **kw):
        if not os.path.islink(part):
            os.rename(part, part.with_name("00-moved"))
            os.symlink(decoy, part)
        return original(*args, **kw)

    monkeypatch.setattr(buildtsi, "_db_series", swap_then_extend)
    with pytest.raises(TargetError) as exc:
        buildtsi.build_tsi(tree / "data", tree / "wal", owner=(65534, 65534), jobs=1)
    assert exc.value.path == str(part), exc.value
    assert lstat_tree(decoy) == decoy_before
    assert not list(tree.rglob("secret")), "a file of the linked directory was copied in"
    assert not list(tree.rglob(".influx-archive-series-*")), "a stage was left behind"


def test_a_segment_swapped_for_a_link_mid_run_is_refused_not_dropped(indexed, tmp_path, monkeypatch) -> None:
    """A segment that was read, replaced by a link before the copy: skipping it would swap in a
    series file without it (its series' ids gone); the run stops instead."""
    from influx_archive.archive.errors import ArchiveError
    from influx_archive.archive.ops import buildtsi

    tree = _partial_tree(indexed, tmp_path / "tree")
    seg = tree / "data" / "db1" / "_series" / "00" / "0000"
    outside = tmp_path / "outside-0000"
    original = buildtsi._db_series

    def swap_then_extend(*args, **kw):
        if not os.path.islink(seg):
            shutil.copyfile(seg, outside)
            seg.unlink()
            os.symlink(outside, seg)
        return original(*args, **kw)

    monkeypatch.setattr(buildtsi, "_db_series", swap_then_extend)
    with pytest.raises(ArchiveError) as exc:
        buildtsi.build_tsi(tree / "data", tree / "wal", jobs=1)
    assert exc.value.path == str(seg), exc.value
    assert os.path.islink(seg) and not list(tree.rglob(".influx-archive-series-*"))


@pytest.mark.parametrize("leftover", ["series", "index"])
def test_a_planted_leftover_link_is_never_moved_in(indexed, tmp_path, leftover) -> None:
    """What a killed swap leaves (``.influx-archive-series-old-*``, ``.influx-archive-index-old-*``)
    is moved back as ``_series`` / ``index/`` by the next run. A link planted under that name
    (to a decoy) must not become the series file or an index: it is left as it is."""
    tree = _tree_copy(indexed, tmp_path / "tree")
    decoy = tmp_path / "decoy"
    if leftover == "series":
        shutil.move(str(tree / "data" / "db1" / "_series"), decoy)
        planted = tree / "data" / "db1" / ".influx-archive-series-old-999"
        live = tree / "data" / "db1" / "_series"
    else:
        shutil.copytree(indexed / "data" / "db1" / "autogen" / "1" / "index", decoy)
        planted = tree / "data" / "db1" / "autogen" / "1" / ".influx-archive-index-old-999"
        live = tree / "data" / "db1" / "autogen" / "1" / "index"
    os.symlink(decoy, planted)
    decoy_before = lstat_tree(decoy)
    r = subprocess.run([*CLI, *VERBS["build-tsi"](tree)], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=120)
    assert r.returncode == 0, r.stderr
    assert live.is_dir() and not live.is_symlink(), "the planted link became the live directory"
    assert os.path.islink(planted) and lstat_tree(decoy) == decoy_before


# ---- names with control characters --------------------------------------------------------------

_NASTY = "d\n\x1b[2Jb\x07"  # a newline, a terminal's clear-screen, a bell
_SHOWN = "d\\n\\x1b[2Jb\\x07"


@pytest.mark.parametrize("argv", [
    ["build-tsi", "--datadir", "{data}", "--dry-run"],
    ["build-tsi", "--datadir", "{data}", "--force"],
    ["dump-tsi", "{db}"],
    ["dump-tsi", "{db}/autogen/2", "--series", "--measurements"],
    ["verify", "{root}"],
    ["verify-seriesfile", "-dir", "{data}"],
    ["report", "{data}"],
], ids=lambda a: " ".join(a[:2]))
def test_names_with_control_characters_are_shown_escaped(indexed, tmp_path, argv) -> None:
    """A database directory named with control characters: every line the tsi1 verbs print shows
    it escaped, on one line, and nothing they print can drive a terminal."""
    tree = _tree_copy(indexed, tmp_path / "tree")
    assert subprocess.run([*CLI, *VERBS["build-tsi"](tree)], capture_output=True, timeout=120).returncode == 0
    db = tree / "data" / _NASTY
    os.rename(tree / "data" / "db1", db)
    args = [a.format(data=tree / "data", db=db, root=tree) for a in argv]
    r = subprocess.run([*CLI, *args], capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert b"Traceback" not in r.stderr, r.stderr
    for stream in (r.stdout, r.stderr):
        assert not [c for c in stream if (c < 0x20 and c != 0x0A) or c == 0x7F], stream[:2000]
        for line in stream.decode().splitlines():
            assert "\\n\\x1b" not in line or _SHOWN in line, line  # the name whole, on one line
    assert _SHOWN.encode() in r.stdout + r.stderr, (r.stdout[:1000], r.stderr[:1000])


@pytest.mark.parametrize("plant", [p for p in PLANTS if p != "directory"])
def test_force_replaces_a_special_file_standing_as_index(indexed, tmp_path, plant) -> None:
    """``index`` of a shard is a FIFO, socket, link or dangling link: --force builds the index and
    removes what stood there without opening it (removing a FIFO with shutil.rmtree opened it
    and waited for a writer forever, with the swap's signal guard held) and without following
    a link (the directory it points to is left as it is)."""
    tree = _tree_copy(indexed, tmp_path / "tree")
    index = tree / "data" / "db1" / "autogen" / "1" / "index"
    other = indexed / "data" / "db1" / "autogen" / "2" / "index"
    other_before = lstat_tree(other)
    if plant == "link to /dev/zero":
        os.symlink(other, index)  # a link to another shard's index, the case that matters here
    else:
        PLANTS[plant](index)
    try:
        r = subprocess.run([*CLI, *VERBS["build-tsi --force"](tree)], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"build-tsi --force hung on a {plant} standing as index/")
    assert r.returncode == 0, r.stderr
    assert index.is_dir() and not index.is_symlink()
    assert not [n for n in os.listdir(index.parent) if n.startswith(".")], os.listdir(index.parent)
    assert lstat_tree(other) == other_before


# ---- the staged copy ----------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(size=st.sampled_from([0, 1, 4095, 4096, 70_000, 1 << 20]),
       writes=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=9000)),
                       max_size=5))
def test_the_sparse_copy_equals_its_source(tmp_path_factory, size, writes) -> None:
    """The staged series file's copies (tsiwrite._copy_sparse: data extents by sendfile, holes
    left holes) read back byte for byte as the source, whatever its holes."""
    from influx_archive.archive.ops.tsiwrite import _copy_sparse

    d = tmp_path_factory.mktemp("sparse")
    src, dst = d / "src", d / "dst"
    with open(src, "wb") as f:
        f.truncate(size)
        for where, data in writes:
            if size:
                off = int(where * size)
                f.seek(off)
                f.write(data[: size - off])
    with open(src, "rb") as s, open(dst, "xb") as t:
        _copy_sparse(s.fileno(), t.fileno(), os.fstat(s.fileno()).st_size)
    assert dst.read_bytes() == src.read_bytes()
