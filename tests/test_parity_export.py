"""``export -datadir D -waldir W`` on a bare data directory (no metastore), against InfluxData's own
``influx_inspect export`` 1.6.7 on the same directories, and against influxd itself.

* Restored trees (every fixture kind): the same set of (series, field, time, value) as
  influx_inspect, the same first header line, the same (database, RP) pairs in the DDL and the
  same CONTEXT pairs; each database's first RP gets influx_inspect's very line.
* The live fixture's tree (WAL with deletes): what we export is what influxd serves (imported into
  a fresh influxd: every point and field type equal to the TRUTH); influx_inspect's export holds
  all of it plus the points the WAL deleted (it replays writes and ignores deletes).
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from pathlib import Path

import influxd as harness
import pytest
from parity_helpers import header, lp_values, restored_tree, run_inspect
from test_export import influx_import

_DDL_FIRST = re.compile(r"^CREATE DATABASE (\S+) WITH NAME (\S+)$")
_DDL_MORE = re.compile(r"^CREATE RETENTION POLICY (\S+) ON (\S+) DURATION INF REPLICATION 1$")


def _pairs(lines: list[str]) -> tuple[set, set, set]:
    """(DDL (db, rp) pairs, CONTEXT (db, rp) pairs, influx_inspect-shaped DDL lines)."""
    ddl, ctx, first = set(), set(), set()
    db = None
    for ln in lines:
        if m := _DDL_FIRST.match(ln):
            ddl.add((m[1], m[2]))
            first.add(ln)
        elif m := _DDL_MORE.match(ln):
            ddl.add((m[2], m[1]))
        elif ln.startswith("# CONTEXT-DATABASE:"):
            db = ln.split(":", 1)[1]
        elif ln.startswith("# CONTEXT-RETENTION-POLICY:"):
            ctx.add((db, ln.split(":", 1)[1]))
    return ddl, ctx, first


def _both(cli, tree: Path, tmp: Path, *extra: str) -> tuple[Path, Path]:
    ours, ref = tmp / "ours.lp", tmp / "ref.lp"
    proc = cli("export", "-datadir", tree / "data", "-waldir", tree / "wal", "-out", ours, *extra)
    assert proc.code == 0, proc.err
    proc = run_inspect("export", "-datadir", tree / "data", "-waldir", tree / "wal", "-out", ref, *extra)
    assert proc.returncode == 0, proc.stderr
    return ours, ref


@pytest.mark.interop
@pytest.mark.parametrize("name", ["legacy", "portable", "legacy_incremental", "portable_incremental",
                                  "union_legacy", "edge_1677"])
def test_restored_tree_same_values_and_header(name, tmp_path, fixtures_dir, cli) -> None:
    tree = restored_tree(cli, fixtures_dir / name, tmp_path / "tree")
    shutil.rmtree(tree / "meta")  # a bare data directory: nothing but data/ and wal/
    ours, ref = _both(cli, tree, tmp_path)
    mine, theirs = lp_values(ours), lp_values(ref)
    assert mine and mine == theirs
    h_ours, h_ref = header(ours), header(ref)
    assert h_ours[0] == h_ref[0] and h_ours[0].startswith("# INFLUXDB EXPORT: ")
    assert h_ours[1] == h_ref[1] == "# DDL" and "# DML" in h_ours and "# DML" in h_ref
    ddl_o, ctx_o, first_o = _pairs(h_ours)
    ddl_r, ctx_r, first_r = _pairs(h_ref)
    assert ddl_o == ddl_r and ctx_o == ctx_r == ddl_r
    assert first_o <= first_r  # each database's first RP: influx_inspect's line, verbatim
    assert {db for db, _ in ddl_o} == {_DDL_FIRST.match(ln)[1] for ln in first_o}  # type: ignore[index]


@pytest.mark.interop
def test_time_window_and_database_filter_match(tmp_path, fixtures_dir, cli) -> None:
    tree = restored_tree(cli, fixtures_dir / "portable", tmp_path / "tree")
    for i, extra in enumerate([("-database", "db1"), ("-database", "db1", "-retention", "autogen"),
                               ("-start", "2026-11-02T00:00:00Z", "-end", "2026-11-10T12:00:00Z"),
                               ("-database", "db2", "-start", "2026-11-20T02:00:00Z")]):
        d = tmp_path / f"run{i}"
        d.mkdir()
        ours, ref = _both(cli, tree, d, *extra)
        assert lp_values(ours) == lp_values(ref), extra
        assert _pairs(header(ours))[0] == _pairs(header(ref))[0], extra


@pytest.mark.interop
def test_compress_and_lponly(tmp_path, fixtures_dir, cli) -> None:
    tree = restored_tree(cli, fixtures_dir / "legacy", tmp_path / "tree")
    ours, ref = _both(cli, tree, tmp_path, "-compress")
    plain_o, plain_r = tmp_path / "o.lp", tmp_path / "r.lp"
    plain_o.write_bytes(gzip.decompress(ours.read_bytes()))
    plain_r.write_bytes(gzip.decompress(ref.read_bytes()))
    assert lp_values(plain_o) == lp_values(plain_r) and lp_values(plain_o)
    lp = tmp_path / "lp"
    proc = cli("export", "-datadir", tree / "data", "-lponly", "-out", lp)
    assert proc.code == 0, proc.err
    text = lp.read_text()
    assert "#" not in text.splitlines()[0] and not any(ln.startswith(("#", "CREATE")) for ln in text.splitlines())
    assert lp_values(lp) == lp_values(plain_r)


@pytest.mark.interop
def test_live_tree_is_what_influxd_serves(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(fixtures_dir / "live", tree)
    shutil.rmtree(tree / "meta")
    ours, ref = _both(cli, tree, tmp_path)
    mine, theirs = lp_values(ours), lp_values(ref)
    assert mine < theirs  # influx_inspect also replays what the WAL deleted
    server = influxd_factory()
    proc = influx_import(server, ours)
    assert proc.returncode == 0 and "0 points were inserted" not in proc.stderr, proc.stdout + proc.stderr
    expected = harness.without_dead_fields(truth("live"))
    assert harness.compare_truth(expected, server.dump(), sections={"databases", "fields", "points"}) == []


def test_bare_datadir_errors(tmp_path, cli) -> None:
    """One line, exit 2, nothing written: every way to get the bare-directory form wrong."""
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out.lp"
    cases = [
        ("-datadir", empty),  # no shard directory
        ("-datadir", tmp_path / "missing"),
        ("-datadir", empty, "-waldir", tmp_path / "missing"),
        ("-waldir", empty),  # -waldir alone
        (tmp_path, "-datadir", empty),  # SRC and -datadir
        (),  # neither
    ]
    for args in cases:
        proc = cli("export", *args, "-out", out)
        assert proc.code == 2, (args, proc)
        assert proc.err.count("\n") == 1 and proc.err.startswith("influx-archive: error: "), (args, proc.err)
        assert not out.exists()


def test_hostile_files_in_the_tree(tmp_path, fixtures_dir, cli) -> None:
    """A FIFO, a link to /dev/zero, a dangling link or a directory where a TSM / WAL file should
    be: one line naming it, exit 1, no output file."""
    for where, name in (("data", "000000009-000000001.tsm"), ("wal", "_00009.wal")):
        for kind in ("fifo", "dev-zero", "dangling", "dir"):
            tree = tmp_path / f"{where}-{kind}"
            shutil.copytree(fixtures_dir / "live", tree)
            bad = tree / where / "db1" / "autogen" / "1" / name
            bad.parent.mkdir(parents=True, exist_ok=True)
            if kind == "fifo":
                os.mkfifo(bad)
            elif kind == "dev-zero":
                bad.symlink_to("/dev/zero")
            elif kind == "dangling":
                bad.symlink_to(tree / "nothing")
            else:
                bad.mkdir()
            out = tree / "out.lp"
            proc = cli("export", "-datadir", tree / "data", "-waldir", tree / "wal", "-out", out)
            assert proc.code == 1, (where, kind, proc)
            assert proc.err.count("error:") == 1 and str(bad) in proc.err and "Traceback" not in proc.err
            assert not out.exists()
