"""``restore --index tsi1`` against the real influxd 1.6.7 under ``index-version = "tsi1"``:

* every fixture source restored with --index tsi1: every shard directory holds ``index/`` before
  influxd starts, influxd opens every shard with tsi1, serves every point and field type of the
  TRUTH, SHOW SERIES / TAG VALUES / SERIES CARDINALITY equal the TRUTH, and finds nothing to add to
  the index or series file (byte-identical after it ran); influx_inspect's verify-seriesfile finds
  no error;
* --merge into a database a tsi1 influxd has written to (new series in a restored shard and a
  shard of its own): the series file is extended (every id kept), the server's own shard keeps its
  index byte for byte, and influxd under tsi1 serves old and new series alike — the same answers
  as influxd under inmem on the same data.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import influxd as harness
import pytest
from test_tsi1_interop import assert_served_with_tsi1, index_state, meta_answers
from test_tsi1_restore import _restore, _series_ids, _verify_seriesfiles

SOURCES = [
    ("legacy", ()),
    ("portable", ()),
    ("legacy_incremental", ()),
    ("portable_incremental", ()),
    ("portable_range", ()),
    ("live", ()),
    ("live", ("--waldir",)),
]


@pytest.mark.interop
@pytest.mark.parametrize("name,extra", SOURCES, ids=[n + ("-waldir" if e else "") for n, e in SOURCES])
def test_every_source_restored_with_tsi1_is_served(name, extra, tmp_path, fixtures_dir, influxd_factory, truth, cli):
    root = tmp_path / "root"
    args = [a for e in extra for a in (e, str(root / "wal"))]
    proc = _restore(cli, fixtures_dir / name, root, "--index", "tsi1", *args)
    assert proc.code == 0, proc.stderr
    assert "build-tsi" not in proc.stdout + proc.stderr
    _verify_seriesfiles(root / "data")
    dbs = None
    if name.endswith(("_incremental", "_range")):  # `-database db1` backups of a server that held db2 too
        dbs = sorted(p.name for p in (root / "data").iterdir() if p.is_dir())
    if name.endswith("_range"):  # the TRUTH is the whole server's: influxd under inmem on the same data
        expected, baseline = _inmem_answers(root, influxd_factory)
    else:
        expected, baseline = harness.without_dead_fields(truth(name)), None
    answers = assert_served_with_tsi1(root, expected, influxd_factory, baseline=baseline, databases=dbs)
    for db, a in answers.items():
        n = sum(1 for _ in a["series"])
        assert a["exact_cardinality"] and n > 0, db


def _inmem_answers(root: Path, influxd_factory) -> tuple[dict, dict]:
    """dump and meta answers of influxd under inmem on a copy of ``root`` without any index/."""
    copy_root = root.parent / (root.name + "-inmem")
    shutil.copytree(root, copy_root, symlinks=True)
    for idx in copy_root.glob("data/*/*/*/index"):
        shutil.rmtree(idx)
    server = influxd_factory(copy_root, index="inmem")
    try:
        return server.dump(), meta_answers(server)
    finally:
        server.stop()


@pytest.mark.interop
def test_merge_into_a_tsi1_database_extends_it(tmp_path, fixtures_dir, influxd_factory, cli) -> None:
    root = tmp_path / "root"
    assert _restore(cli, fixtures_dir / "legacy", root, "--db", "db1", "--index", "tsi1").code == 0
    restored = set((root / "data" / "db1" / "autogen").iterdir())
    server = influxd_factory(root, index="tsi1", cold="1s")
    far = 1893456000000000000  # 2030: a shard group of the server's own
    server.write(f"cpu,host=h9 v=5 1793491200000000000\nbrandnew,k=v v=1 {far}", db="db1", rp="autogen")
    deadline = time.monotonic() + 60  # until influxd snapshotted its cache to TSM
    while time.monotonic() < deadline and any(p.stat().st_size for p in (root / "wal" / "db1").glob("*/*/*.wal")):
        time.sleep(0.2)
    server.stop()
    own = sorted(set((root / "data" / "db1" / "autogen").iterdir()) - restored)
    assert own and all((p / "index").is_dir() for p in own)
    ids_before = _series_ids(root / "data", "db1")
    state_before = index_state(root / "data")
    proc = _restore(cli, fixtures_dir / "legacy", root, "--db", "db2", "--newdb", "db1", "--merge")
    assert proc.code == 0, proc.stderr
    assert "index: tsi1" in proc.stdout
    ids_after = _series_ids(root / "data", "db1")
    assert {k: ids_after.get(k) for k in ids_before} == ids_before
    assert len(ids_after) > len(ids_before)
    for shard in own:  # the server's shard with only WAL data, untouched, index and all
        rel = str(shard.relative_to(root / "data"))
        assert {k: v for k, v in index_state(root / "data").items() if k.startswith(rel + "/")} == {
            k: v for k, v in state_before.items() if k.startswith(rel + "/")
        }
    _verify_seriesfiles(root / "data")
    expected, baseline = _inmem_answers(root, influxd_factory)
    answers = assert_served_with_tsi1(root, expected, influxd_factory, baseline=baseline)
    series = {r[1] for rows in answers["db1"]["series_by_rp"].values() for r in rows}
    assert {"cpu,host=h9", "brandnew,k=v"} <= series, sorted(series)[:20]
    from influx_archive.tsm.tsi1 import serieskey as sk

    in_file = {sk.to_line_key(*sk.decode(k)).decode() for k in ids_after}
    assert series <= in_file, sorted(series - in_file)
    assert in_file - series == set(), sorted(in_file - series)
