"""Increments are a union (issue 15) and shard groups at the int64 edges (issue 16), case by case
from ``tests/hostile_interop.py``.

Every case runs through the CLI in-process and asserts: the exact exit code, on failure exactly one
stderr line naming the file and no traceback, the source byte-identical afterwards, nothing written
outside the target. Successful cases then compare what was written, point for point, with what the
server model (chains) or the real influxd (edge windows: the fixture's TRUTH) served.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostile_interop as gen

from influx_archive.archive.sources import open_source
from influx_archive.archive.sources.shardview import open_shard_reader
from influx_archive.tsm.keys import split_key

_ROOT = tempfile.TemporaryDirectory(prefix="interop-cases-")
CHAINS = {c.name: c for c in gen.build_chains(Path(_ROOT.name) / "chains")}
EDGES = {c.name: c for c in gen.build_edge_windows(Path(_ROOT.name) / "edge")}
HOSTILE = {c.name: c for c in gen.build_hostile_union(Path(_ROOT.name) / "hostile")}


def tree(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``path`` (or of ``path`` itself)."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    out = {}
    for dirpath, _dirs, files in os.walk(path):
        for n in files:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def checked_run(cli, case: gen.Case, argv_for, tmp_path: Path) -> tuple[Path, str]:
    """Run ``argv_for(src, targets)`` on ``case`` with every contract check; returns (targets, stdout)."""
    targets = tmp_path / "targets"
    targets.mkdir()
    before = tree(case.path)
    code, out, err = cli(*argv_for(case.path, targets), cwd=tmp_path)
    where = f"{case.name}: exit {code}, stderr {err!r}"
    assert code == case.code, where
    assert "Traceback" not in err and "Traceback" not in out, where
    if case.code != 0:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("influx-archive: error: "), where
        assert case.mention and case.mention in lines[0], where
        assert not list(targets.iterdir()), f"{where}: left {list(targets.iterdir())}"
    assert tree(case.path) == before, f"{where}: the source changed"
    assert {p.name for p in tmp_path.iterdir()} == {"targets"}, f"{where}: wrote outside the target"
    return targets, out


def served(path: Path) -> dict:
    """key -> {t: value} that every shard of the source at ``path`` serves (our reader)."""
    src = open_source(path)
    out: dict = {}
    for shard in src.shards:
        if not (shard.tsm_layers() or shard.wal):
            continue
        with open_shard_reader(src, shard) as reader:
            for key in reader.keys():
                _bt, ts, vs = reader.read(key)
                if ts:
                    out.setdefault(key, {}).update(zip(ts, vs))
    return out


def served_by_series(path: Path) -> dict:
    """(db, rp, "measurement,tags", field) -> {t: value}, to compare with a TRUTH."""
    src = open_source(path)
    out: dict = {}
    for shard in src.shards:
        if not (shard.tsm_layers() or shard.wal):
            continue
        with open_shard_reader(src, shard) as reader:
            for key in reader.keys():
                _bt, ts, vs = reader.read(key)
                series, fld = split_key(key)
                name = series.decode()
                m, _, tags = name.partition(",")
                label = m + "," + ",".join(sorted(tags.split(","))) if tags else m + ","
                for t, v in zip(ts, vs):
                    out.setdefault((shard.database, shard.retention_policy, label, fld.decode()), {})[t] = v
    return out


# ---------------------------------------------------------------------------------- chains


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CHAINS))
def test_chain_source_reads_as_the_server_served(name: str) -> None:
    case = CHAINS[name]
    assert served(case.path) == case.points


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CHAINS))
def test_chain_convert_holds_what_the_server_served(name: str, tmp_path: Path, cli) -> None:
    case = CHAINS[name]
    fmt = "portable" if name.endswith("portable") else "legacy"
    targets, _ = checked_run(cli, case, lambda s, t: ["convert", str(s), str(t / "out"), "--to", fmt], tmp_path)
    assert served(targets / "out") == case.points


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in CHAINS if n.split("-")[1] in ("0", "1")])
def test_chain_restore_holds_what_the_server_served(name: str, tmp_path: Path, cli) -> None:
    case = CHAINS[name]
    targets, _ = checked_run(cli,
        case, lambda s, t: ["restore", str(s), "--metadir", str(t / "meta"), "--datadir", str(t / "data")], tmp_path
    )
    assert served(targets) == case.points


def test_chain_generator_covers_every_template() -> None:
    for template in gen.TEMPLATES:
        got = [c for c in CHAINS.values() if c.name.startswith(template + "-")]
        assert len(got) >= 18, template  # 6 chains x (portable, legacy, legacy with run mtimes)
        assert all(c.points for c in got), template


# ---------------------------------------------------------------------------------- edge windows


EDGE_VERBS = {
    "trim": lambda c: (lambda s, t: ["trim", str(s), str(t / "out"), *c.args]),
    "convert": lambda c: (lambda s, t: ["convert", str(s), str(t / "out"), "--to", "legacy", *c.args]),
}


@pytest.mark.slow
@pytest.mark.parametrize("verb", list(EDGE_VERBS))
@pytest.mark.parametrize("name", list(EDGES))
def test_edge_window_keeps_every_point(name: str, verb: str, tmp_path: Path, cli) -> None:
    case = EDGES[name]
    targets, _ = checked_run(cli, case, EDGE_VERBS[verb](case), tmp_path)
    out = targets / "out"
    got = served_by_series(out) if out.exists() else {}
    assert got == case.points


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EDGES))
def test_edge_window_export_keeps_every_point(name: str, tmp_path: Path, cli) -> None:
    case = EDGES[name]
    targets, _ = checked_run(
        cli, case, lambda s, t: ["export", str(s), "--lponly", "--out", str(t / "out.lp"), *case.args], tmp_path
    )
    lines = (targets / "out.lp").read_text().splitlines()
    want = sum(len(set(pts)) for key, pts in _by_series(case.points).items())
    assert len(lines) == want
    assert sorted(int(ln.rsplit(" ", 1)[1]) for ln in lines) == sorted(
        t for pts in _by_series(case.points).values() for t in pts
    )


def _by_series(points: dict) -> dict:
    out: dict = {}
    for (db, rp, series, _f), pts in points.items():
        out.setdefault((db, rp, series), set()).update(pts)
    return out


def test_edge_fixture_has_wrapped_groups() -> None:
    """The fixture is what the issue is about: groups whose stored start lies after their end."""
    src = open_source(gen.FIXTURES / "edge_1677")
    wrapped = [ref for ref in src.meta.iter_shards() if ref.group.start_time > ref.group.end_time]
    assert {ref.shard.id for ref in wrapped} == {1, 4}
    for ref in wrapped:
        assert ref.group.effective_start == gen.LOWEST
        shard = src.shard(ref.db.name, ref.rp.name, ref.shard.id)
        assert shard.group_start == gen.LOWEST and shard.group_end == ref.group.end_time
    warned = [f for f in src.findings if f.severity == "warning" and "after its end" in f.message]
    assert sorted(f.message.split()[2] for f in warned) == ["1", "4"]
    assert all(f.path == src.meta_origin for f in warned)


# ---------------------------------------------------------------------------------- hostile


HOSTILE_VERBS = {
    "restore": lambda s, t: ["restore", str(s), "--metadir", str(t / "meta"), "--datadir", str(t / "data")],
    "convert": lambda s, t: ["convert", str(s), str(t / "out")],
    "export": lambda s, t: ["export", str(s), "--out", str(t / "out.lp")],
}


@pytest.mark.slow
@pytest.mark.parametrize("verb", list(HOSTILE_VERBS))
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_union_is_refused_in_one_line(name: str, verb: str, tmp_path: Path, cli) -> None:
    checked_run(cli, HOSTILE[name], HOSTILE_VERBS[verb], tmp_path)


# ---------------------------------------------------------------------------------- whole sets


@pytest.mark.slow
def test_union_fixture_export_has_every_point(tmp_path: Path, cli) -> None:
    """export of the full + range + since set: one line per point the server served at the end."""
    truth = gen.harness.load_truth(gen.FIXTURES / "union.truth.json")
    want = sorted(t for pts in gen.truth_points(truth).values() for t in pts)
    case = gen.Case("union_portable", gen.FIXTURES / "union_portable")
    targets, _ = checked_run(
        cli, case, lambda s, t: ["export", str(s), "--lponly", "--out", str(t / "out.lp")], tmp_path
    )
    lines = (targets / "out.lp").read_text().splitlines()
    assert sorted(int(ln.rsplit(" ", 1)[1]) for ln in lines) == want


@pytest.mark.slow
@pytest.mark.parametrize("name", ["range_after_compacted_delete-0-legacymtime", "union-legacy-cut-range-tar-s2"])
def test_console_script_contract(name: str, tmp_path: Path) -> None:
    """The same contract through the installed ``influx-archive`` console script."""
    import subprocess

    case = CHAINS.get(name) or HOSTILE[name]
    targets = tmp_path / "targets"
    targets.mkdir()
    before = tree(case.path)
    exe = Path(sys.executable).parent / "influx-archive"
    r = subprocess.run([str(exe), "convert", str(case.path), str(targets / "out")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == case.code, r.stderr
    assert "Traceback" not in r.stderr
    if case.code:
        assert len(r.stderr.splitlines()) == 1 and case.mention in r.stderr
        assert not list(targets.iterdir())
    else:
        assert served(targets / "out") == case.points
    assert tree(case.path) == before
    assert {p.name for p in tmp_path.iterdir()} == {"targets"}


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["union_portable", "union_legacy"])
def test_union_set_sealed_then_converted(fixture: str, tmp_path: Path, cli) -> None:
    """A sealed archive of the set reads as the set does (its files keep their names)."""
    truth = gen.harness.load_truth(gen.FIXTURES / "union.truth.json")
    code, _o, err = cli("pack", str(gen.FIXTURES / fixture), str(tmp_path / "a.tar.zst"), cwd=tmp_path)
    assert code == 0, err
    case = gen.Case(fixture, tmp_path / "a.tar.zst")
    sub = tmp_path / "run"
    sub.mkdir()
    targets, _ = checked_run(cli, case, lambda s, t: ["convert", str(s), str(t / "out")], sub)
    assert served_by_series(targets / "out") == gen.truth_points(truth)
