"""Hostile input to the series file / tsi1 readers and to build-tsi (generators in hostile_tsi1.py).

Every case: the exact exit code, exactly one stderr line, naming the damaged file, no traceback,
the tree byte-identical afterwards (nothing half-written, sources untouched) and nothing new next
to it. Memory stays bounded when lengths lie (checked with tracemalloc on the worst kinds).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tracemalloc
from pathlib import Path

import hostile_tsi1 as hostile
import pytest


def file_hash(p: Path) -> str:
    """sha256 over the data extents of a file (and its size): series segments are mostly holes,
    and reading 4 MiB of zeros per segment per case would dominate the run."""
    h = hashlib.sha256()
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h.update(str(size).encode())
        pos = 0
        while pos < size:
            try:
                start = os.lseek(f.fileno(), pos, os.SEEK_DATA)
            except OSError:  # no data after pos
                break
            end = os.lseek(f.fileno(), start, os.SEEK_HOLE)
            f.seek(start)
            h.update(str(start).encode())
            h.update(f.read(end - start))
            pos = end
    return h.hexdigest()


def tree_hash(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            p = Path(dirpath) / d
            out[str(p.relative_to(root))] = ("dir", p.lstat().st_mode)
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = (file_hash(p), p.lstat().st_mode)
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory, cli) -> tuple[Path, Path]:
    """(unindexed, indexed): the live fixture restored with its WAL (TSM files, tombstones, WAL
    segments), and the same after build-tsi."""
    base = tmp_path_factory.mktemp("tsi1-base")
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    unindexed = base / "unindexed"
    code = cli("restore", str(fixtures / "live"), "--metadir", str(unindexed / "meta"),
               "--datadir", str(unindexed / "data"), "--waldir", str(unindexed / "wal")).code
    assert code == 0
    indexed = base / "indexed"
    shutil.copytree(unindexed, indexed)
    assert cli("build-tsi", "-datadir", str(indexed / "data"), "-waldir", str(indexed / "wal")).code == 0
    return unindexed, indexed


def check_case(cli, case: hostile.Case) -> None:
    before = tree_hash(case.tree)
    siblings = sorted(os.listdir(case.tree.parent))
    code, _out, err = cli(*case.argv)
    lines = err.splitlines()
    assert code == case.exit_code, (case.name, code, err)
    assert len(lines) == 1, (case.name, err)
    assert case.mentions in lines[0], (case.name, lines[0])
    assert "Traceback" not in err
    assert tree_hash(case.tree) == before, f"{case.name}: the tree changed"
    assert sorted(os.listdir(case.tree.parent)) == siblings, f"{case.name}: something was written beside the tree"
    shutil.rmtree(case.tree)


@pytest.mark.slow
def test_series_segment_damage(trees, tmp_path, cli) -> None:
    cases = hostile.series_segment_cases(trees[1], tmp_path, limit_per_kind=3)
    assert len(cases) >= 45
    for case in cases:
        check_case(cli, case)


@pytest.mark.slow
def test_log_file_damage(trees, tmp_path, cli) -> None:
    cases = hostile.log_file_cases(trees[1], tmp_path)
    assert len(cases) >= 30
    for case in cases:
        check_case(cli, case)


@pytest.mark.slow
def test_manifest_damage(trees, tmp_path, cli) -> None:
    cases = hostile.manifest_cases(trees[1], tmp_path)
    assert len(cases) >= 20
    for case in cases:
        check_case(cli, case)


@pytest.mark.slow
def test_build_tsi_refuses_damaged_input_and_writes_nothing(trees, tmp_path, cli) -> None:
    cases = hostile.build_input_cases(trees[0], trees[1], tmp_path)
    kinds = {c.name.split(":")[0].split("-")[0] for c in cases}
    assert {"tsm", "tombstone", "wal", "series"} <= kinds, kinds
    for case in cases:
        check_case(cli, case)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["keysize-huge", "keysize-overflow", "namelen-huge"])
def test_lying_lengths_allocate_nothing(trees, tmp_path, kind, cli) -> None:
    cases = [c for c in hostile.series_segment_cases(trees[1], tmp_path / "s", limit_per_kind=1)
             + hostile.log_file_cases(trees[1], tmp_path / "l", limit_files=1) if c.name.startswith(kind + ":")]
    assert cases
    tracemalloc.start()
    try:
        for case in cases:
            cli(*case.argv)
        _cur, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def test_usage_errors(trees, tmp_path, cli) -> None:
    """Missing directories and filters matching nothing: exit 2, one line, nothing written."""
    indexed = trees[1]
    snapshot = tree_hash(indexed)
    for argv, mention in [
        (["build-tsi", "--datadir", str(tmp_path / "nope")], str(tmp_path / "nope")),
        (
            ["build-tsi", "--datadir", str(indexed / "data"), "--waldir", str(tmp_path / "nowal")],
            str(tmp_path / "nowal"),
        ),
        (["build-tsi", "-datadir", str(indexed / "data"), "-database", "nosuchdb"], "nosuchdb"),
        (["build-tsi", "-datadir", str(indexed / "data"), "-retention", "nosuchrp"], "nosuchrp"),
        (["build-tsi", "-datadir", str(indexed / "data"), "-shard", "999"], "999"),
        (["dump-tsi", str(tmp_path / "nope")], str(tmp_path / "nope")),
        (["dump-tsi", str(indexed / "meta")], str(indexed / "meta")),
    ]:
        code, _out, err = cli(*argv)
        assert code == 2, (argv, err)
        assert len(err.splitlines()) == 1 and mention in err and "Traceback" not in err, err
    assert tree_hash(indexed) == snapshot


# ---- verify of tsi1 trees ---------------------------------------------------------------------


def check_verify_case(cli, case: hostile.Case, code_prefix: str = "tsi1.") -> list[dict]:
    """verify --json: exit 1, findings JSON on stdout, a finding with a tsi1 code naming the file
    (with an offset where the damage has one), the tree unchanged, nothing written beside it."""
    import json

    before = tree_hash(case.tree)
    siblings = sorted(os.listdir(case.tree.parent))
    code, out, err = cli(*case.argv)
    assert code == case.exit_code, (case.name, code, err, out[-2000:])
    assert "Traceback" not in err
    found = [f for f in json.loads(out)["findings"] if f["severity"] == "error"]
    hits = [f for f in found if f["code"].startswith(code_prefix) and f["path"] and case.mentions in f["path"]]
    assert hits, (case.name, case.mentions, found)
    assert tree_hash(case.tree) == before, f"{case.name}: the tree changed"
    assert sorted(os.listdir(case.tree.parent)) == siblings
    shutil.rmtree(case.tree)
    return hits


def test_verify_clean_tree_has_no_tsi1_finding(trees, cli) -> None:
    import json

    code, out, err = cli("verify", "--json", str(trees[1]))
    assert code == 0, out + err
    assert [f for f in json.loads(out)["findings"] if f["code"].startswith("tsi1.")] == []


@pytest.mark.slow
def test_verify_reports_series_file_and_log_damage(trees, tmp_path, cli) -> None:
    cases = hostile.series_segment_cases(trees[1], tmp_path / "s", limit_per_kind=2) + hostile.log_file_cases(
        trees[1], tmp_path / "l", limit_files=2)
    assert len(cases) >= 40
    with_offset = 0
    for case in cases:
        hits = check_verify_case(cli, hostile.as_verify(case))
        with_offset += any(h["offset"] is not None for h in hits)
    assert with_offset >= len(cases) * 3 // 4, with_offset  # a cut at the very end has none


@pytest.mark.slow
def test_verify_reports_manifest_damage(trees, tmp_path, cli) -> None:
    cases = hostile.manifest_cases(trees[1], tmp_path)
    for case in cases:
        check_verify_case(cli, hostile.as_verify(case), "tsi1.index_damaged")


@pytest.mark.slow
def test_verify_reports_series_left_out_of_an_index(trees, tmp_path, cli) -> None:
    cases = hostile.missing_series_cases(trees[1], tmp_path, limit=10)
    assert len(cases) >= 8
    for case, code in cases:
        check_verify_case(cli, case, code)


@pytest.mark.slow
def test_verify_reports_series_missing_from_the_series_file(trees, tmp_path, cli) -> None:
    """Every shard in turn is the only one whose series the series file holds (``_series``
    emptied, build-tsi --force on that shard): every other shard with series of its own is named."""
    from test_tsi1_inspect import shard_dirs

    from influx_archive.archive.ops.buildtsi import keyed_series

    base = trees[1]
    shards = shard_dirs(base / "data")
    for i, keep in enumerate(shards[:6]):
        tree = tmp_path / f"only{i}"
        shutil.copytree(base, tree, symlinks=True)
        rel = keep.relative_to(base / "data")
        shutil.rmtree(tree / "data" / rel.parts[0] / "_series")
        assert cli("build-tsi", "-datadir", str(tree / "data"), "-waldir", str(tree / "wal"), "-database",
                   rel.parts[0], "-retention", rel.parts[1], "-shard", rel.parts[2], "--force").code == 0
        kept = {sk for _k, sk in keyed_series(str(tree / "data" / rel), str(tree / "wal" / rel))}
        want = set()
        for other in shard_dirs(tree / "data"):
            if other == tree / "data" / rel or other.relative_to(tree / "data").parts[0] != rel.parts[0]:
                continue
            r = other.relative_to(tree / "data")
            if {sk for _k, sk in keyed_series(str(other), str(tree / "wal" / r))} - kept:
                want.add(str(other))
        import json

        code, out, _err = cli("verify", "--json", str(tree))
        named = {f["path"] for f in json.loads(out)["findings"] if f["code"] == "tsi1.series_not_in_file"}
        assert named == want, (rel, named, want)
        assert (code == 1) == bool(want)
        shutil.rmtree(tree)


# ---- build-tsi under SIGTERM -------------------------------------------------------------------


def _leftovers(tree: Path) -> list[str]:
    return sorted(str(p.relative_to(tree)) for p in tree.rglob("*")
                  if p.name == ".index" or p.name.startswith(".influx-archive-series-") or
                  p.name.startswith(".influx-archive-index-old-") or ".tmp-" in p.name)


@pytest.mark.slow
def test_sigterm_at_random_points_leaves_nothing_behind(trees, tmp_path) -> None:
    """build-tsi --force terminated (SIGTERM) at random (seeded) moments, with CPU hogs loading the
    machine so the signal also lands inside a mkdir or rename: exit 143 with one line, or 0; no
    staging directory (``.index``, ``.influx-archive-series-*``) left anywhere; every shard's
    index/ complete (8 partitions, each a MANIFEST and its log) and the series file readable —
    and a next run completes with verify finding nothing."""
    import json
    import random
    import signal
    import subprocess
    import threading

    from hostile_outputs import cli_argv

    from influx_archive.tsm.tsi1 import index as ix
    from influx_archive.tsm.tsi1 import seriesfile as sf

    rng = random.Random(1717)
    tree = tmp_path / "t"
    shutil.copytree(trees[1], tree)
    argv = cli_argv("build-tsi", "--datadir", str(tree / "data"), "--waldir", str(tree / "wal"), "--force", "--quiet")
    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    terminated = 0
    try:
        for i in range(16):
            delay = rng.choice([0.0, rng.uniform(0.2, 0.8), rng.uniform(0.5, 1.5), rng.uniform(1.0, 3.0)])
            # a run that finished before the signal (a fast core, or the machine's load) is tried
            # again, signalled sooner, up to three times: every attempt is checked
            for attempt in range(3):
                proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                threading.Event().wait(delay * (1.0, 0.3, 0.1)[attempt])
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=120)
                text = err.decode()
                assert "Traceback" not in text, text
                assert proc.returncode in (0, 143, -15), (i, proc.returncode, text)
                if proc.returncode == 143:
                    terminated += 1
                    assert len(text.splitlines()) == 1 and "terminated" in text, text
                assert _leftovers(tree) == [], (i, delay, _leftovers(tree))
                if proc.returncode != 0:
                    break
            for shard in sorted(p for p in (tree / "data").glob("*/*/*") if (p / "index").exists()):
                ix.ShardIndex(shard / "index")  # complete: raises on a missing or cut file
            for db in (tree / "data").iterdir():
                if (db / "_series").exists():
                    sf.SeriesFile(db / "_series")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert terminated >= 4, f"only {terminated} of 16 runs were terminated mid-way"
    assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    proc = subprocess.run(cli_argv("verify", "--json", str(tree)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert [f for f in json.loads(proc.stdout)["findings"] if f["code"].startswith("tsi1.")] == []
