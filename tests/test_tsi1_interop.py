"""build-tsi against the real influxd 1.6.7: trees restored by ``restore`` (inmem, no index) and a
stopped server's own tree get ``index/`` + ``_series`` from build-tsi, then influxd is started with
``index-version = "tsi1"`` on them. Checked:

* every point, SHOW MEASUREMENTS / SERIES / TAG KEYS / TAG VALUES / SERIES CARDINALITY equal the
  TRUTH and what the same tree serves under inmem;
* influxd logged every shard as opened with tsi1 (none with inmem);
* influxd found nothing to add: every ``index/`` and ``_series`` file is byte-identical after it
  ran (had our index lacked a series or our series file a key, influxd would have appended it —
  it re-adds every TSM key when a shard has no ``fields.idx``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import influxd as harness
import pytest


def index_state(data: Path) -> dict[str, str]:
    """sha256 of every file of every ``index/`` and ``_series`` below ``data``."""
    out = {}
    for dirpath, _dirs, files in os.walk(data):
        rel = Path(dirpath).relative_to(data)
        if "index" not in rel.parts and "_series" not in rel.parts:
            continue
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(data))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def shard_dirs(data: Path) -> list[Path]:
    return sorted(p for p in data.glob("*/*/*") if p.is_dir() and p.name.isdigit() and p.parent.name != "_series")


def meta_answers(server: harness.InfluxServer) -> dict:
    """What the index serves, per database: measurements, tag keys, tag values (all, and per key),
    exact and estimated cardinalities — and SHOW SERIES both database-wide and per retention
    policy (``FROM "rp"./.*/``). influxd 1.6.7's inmem index is one per database, tsi1 one per
    shard, so influxd itself answers SHOW SERIES differently under the two: database-wide under
    inmem, default-RP shards (or the RP named) under tsi1; the other answers agree."""
    out = {}
    dbs = [row[0] for s in server.series("SHOW DATABASES") for row in s.get("values", [])]
    for db in sorted(dbs):
        def rows(q, db=db):
            return sorted(
                (s.get("name", ""),) + tuple(map(str, r))
                for s in server.series(q, db=db)
                for r in s.get("values", []) or []
            )

        tag_values = {}
        for name, k in rows("SHOW TAG KEYS"):
            q = f"SHOW TAG VALUES FROM {harness.quote_ident(name)} WITH KEY = {harness.quote_ident(k)}"
            tag_values[f"{name}.{k}"] = rows(q)
        rps = [r[1] for r in rows("SHOW RETENTION POLICIES")]
        out[db] = {
            "measurements": rows("SHOW MEASUREMENTS"),
            "tag_keys": rows("SHOW TAG KEYS"),
            "tag_values": rows("SHOW TAG VALUES WITH KEY =~ /.*/"),
            "tag_values_by_key": tag_values,
            "exact_cardinality": rows("SHOW SERIES EXACT CARDINALITY"),
            "cardinality": rows("SHOW SERIES CARDINALITY"),
            "measurement_cardinality": rows("SHOW MEASUREMENT EXACT CARDINALITY"),
            "tag_key_cardinality": rows("SHOW TAG KEY EXACT CARDINALITY"),
            "tag_value_cardinality": rows("SHOW TAG VALUES EXACT CARDINALITY WITH KEY =~ /.*/"),
            "series": rows("SHOW SERIES"),
            "series_by_rp": {rp: rows(f"SHOW SERIES FROM {harness.quote_ident(rp)}./.*/") for rp in rps},
        }
    return out


def _esc(s: str, chars: str) -> str:
    for c in chars:
        s = s.replace(c, "\\" + c)
    return s


def truth_series_by_rp(truth: dict) -> dict:
    """SHOW SERIES rows per database and RP as influxd prints them, from the TRUTH (series with
    points only)."""
    out: dict = {}
    for db, d in truth["databases"].items():
        per = out.setdefault(db, {rp: [] for rp in d.get("retention_policies", {})})
        for rp, ms in d.get("data", {}).items():
            for m, entry in ms.items():
                for series in entry["series"]:
                    if not series["points"]:
                        continue
                    tags = "".join(
                        f",{_esc(k, ', =')}={_esc(v, ', =')}" for k, v in sorted(series["tags"].items()) if v != ""
                    )
                    per[rp].append(("", _esc(m, ", ") + tags))
        for rp in per:
            per[rp].sort()
    return out


def assert_served_with_tsi1(
    root: Path, expected_truth: dict, influxd_factory, *, baseline: dict | None, databases: list[str] | None = None
) -> dict:
    """``databases``: compare only those (a backup of some databases restores the others' metastore
    entries, empty)."""
    data = root / "data"
    before = index_state(data)
    assert before, "build-tsi wrote nothing"
    for sd in shard_dirs(data):
        assert (sd / "index").is_dir(), f"{sd} has no index/ before influxd starts"
    server = influxd_factory(root, index="tsi1")
    got = server.dump()
    answers = meta_answers(server)
    server.stop()
    log = server.log_path.read_text()
    log = log[log.rfind('msg="InfluxDB starting"'):]  # this run's (a root's log is appended to)
    opened = re.findall(r'msg="Opened shard" .*?index_version=(\w+)', log)
    assert len(opened) == len(shard_dirs(data)), (opened, shard_dirs(data), log[-3000:])
    assert set(opened) == {"tsi1"}, opened
    assert harness.compare_truth(expected_truth, got, databases=databases) == []
    if databases is not None:
        answers = {db: a for db, a in answers.items() if db in databases}
        baseline = {db: a for db, a in baseline.items() if db in databases} if baseline is not None else None
    if baseline is not None:
        assert answers.keys() == baseline.keys()
        for db, a in answers.items():
            b = baseline[db]
            diffs = {k: (a[k], b[k]) for k in a if k not in ("series", "series_by_rp") and a[k] != b[k]}
            assert not diffs, repr(diffs)[:3000]
            # inmem answers SHOW SERIES database-wide: the union of what tsi1 serves per RP
            assert sorted(set().union(*map(set, a["series_by_rp"].values()))) == b["series"]
    want = {db: v for db, v in truth_series_by_rp(expected_truth).items() if databases is None or db in databases}
    got = {db: a["series_by_rp"] for db, a in answers.items()}
    diff = {
        (db, rp): (
            sorted(set(v) - set(want.get(db, {}).get(rp, []))),
            sorted(set(want.get(db, {}).get(rp, [])) - set(v)),
        )
        for db, rps in got.items()
        for rp, v in rps.items()
        if v != want.get(db, {}).get(rp)
    }
    assert got == want, repr({k: ([r[1][:80] for r in a], [r[1][:80] for r in b]) for k, (a, b) in diff.items()})[:3000]
    assert index_state(data) == before, "influxd had to add to the index / series file we built"
    return answers


def _inmem_baseline(root: Path, influxd_factory) -> dict:
    copy = root.parent / (root.name + "-inmem")
    shutil.copytree(root, copy, symlinks=True)
    server = influxd_factory(copy, index="inmem")
    try:
        return meta_answers(server)
    finally:
        server.stop()


@pytest.mark.interop
@pytest.mark.parametrize("name", ["legacy", "portable", "live-waldir"])
def test_restored_tree_served_by_tsi1(name, tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    src = fixtures_dir / ("live" if name.startswith("live") else name)
    root = tmp_path / "root"
    args = ["--waldir", str(root / "wal")] if name == "live-waldir" else []
    proc = cli("restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), *args)
    assert proc.returncode == 0, proc.stderr
    baseline = _inmem_baseline(root, influxd_factory)
    wal = ["-waldir", str(root / "wal")] if (root / "wal").exists() else []
    proc = cli("build-tsi", "-datadir", str(root / "data"), *wal)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    expected = harness.without_dead_fields(truth(src.name))
    answers = assert_served_with_tsi1(root, expected, influxd_factory, baseline=baseline)
    assert sum(len(a["series"]) for a in answers.values()) > 0


@pytest.mark.interop
def test_stopped_server_tree_converted_in_place(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    """The operator's case: a stopped inmem server's own data/ + wal/ (with its fields.idx files,
    so influxd under tsi1 does not re-add TSM keys: the index we build is all it has)."""
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root)
    assert list((root / "data").glob("*/*/*/fields.idx")), "fixture lost its fields.idx files"
    baseline = _inmem_baseline(root, influxd_factory)
    # no --waldir: data/'s sibling wal/ is found and used, with a warning
    proc = cli("buildtsi", "-datadir", str(root / "data"))
    assert proc.returncode == 0, proc.stderr
    assert "indexing the WAL segments in" in proc.stderr
    # the tree keeps its fields.idx, so dead field keys are still listed, as on the source server
    assert_served_with_tsi1(root, truth("live"), influxd_factory, baseline=baseline)
    # a second run skips every shard and changes nothing
    before = index_state(root / "data")
    proc = cli("build-tsi", "--datadir", str(root / "data"), "--waldir", str(root / "wal"))
    assert proc.returncode == 0, proc.stderr
    assert "skipped" in proc.stdout and index_state(root / "data") == before


def _write_server_data(server: harness.InfluxServer, n_series: int) -> None:
    server.execute("CREATE DATABASE odd")
    long_value = "x" * 60000
    lines = [
        "temp\\ erature,loc\\,ation=k\\=1,unit=°C v=1 1000",
        "wéird\\,name,tag\\ key=välue\\ with\\ spaces v=2 1000",
        "cpu,host=ホスト,region=日本 v=3 1000",
        f"big,k={long_value} v=4 1000",
        f"big,k={long_value[:-1]}y,k2=z v=5 1000",
        "eq,a=b\\=c v=6 1000",
        'quote"m,a=b"c v=7 1000',
    ]
    server.write("\n".join(lines), db="odd")
    batch = []
    for i in range(n_series):
        batch.append(f"many,host=h{i:05d},dc=dc{i % 7} v={i} {2000 + i}")
        if len(batch) == 1000:
            server.write("\n".join(batch), db="odd")
            batch = []
    if batch:
        server.write("\n".join(batch), db="odd")


@pytest.mark.interop
def test_unicode_escapes_long_keys_and_thousands_of_series(tmp_path, influxd_factory, cli) -> None:
    """Keys with escapes, unicode and 60 KB tag values, and 3000 series: part of them in TSM files
    (snapshotted), part only in the WAL when influxd stops."""
    root = tmp_path / "root"
    server = influxd_factory(root, index="inmem", cold="1s")
    _write_server_data(server, 3000)
    # wait for the cache to be snapshotted to TSM, then write more that stays in the WAL
    import time

    deadline = time.monotonic() + 30
    while not list((root / "data" / "odd").glob("*/*/*.tsm")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list((root / "data" / "odd").glob("*/*/*.tsm")), "influxd did not snapshot"
    server.write("late,only=wal v=1 3000\nmany,host=h99999,dc=dcX v=1 3000", db="odd")
    expected = server.dump()
    baseline = meta_answers(server)
    server.stop()
    assert list((root / "wal" / "odd").glob("*/*/*.wal"))
    proc = cli("build-tsi", "--datadir", str(root / "data"), "--waldir", str(root / "wal"))
    assert proc.returncode == 0, proc.stderr
    answers = assert_served_with_tsi1(root, expected, influxd_factory, baseline=baseline)
    assert len(answers["odd"]["series"]) == 3000 + 7 + 2


@pytest.mark.interop
def test_measurement_escape_quirk_is_warned_and_fixable(tmp_path, influxd_factory, cli) -> None:
    """influxd 1.6.7 names ``eq\\=sign`` ``eq=sign`` in its write path (and fields.idx) but
    ``eq\\=sign`` when it parses keys back: under tsi1 the points are invisible while the old
    fields.idx is there (natively too). build-tsi says so; removing fields.idx as the warning says
    makes influxd rebuild it and serve the points."""
    root = tmp_path / "root"
    server = influxd_factory(root, index="inmem")
    server.execute("CREATE DATABASE odd")
    server.write("eq\\=sign,a=b\\=c v=6 1000\nplain,a=b v=1 1000", db="odd")
    server.stop()
    fields = list((root / "data" / "odd").glob("*/*/fields.idx"))
    assert fields
    proc = cli("build-tsi", "--datadir", str(root / "data"), "--waldir", str(root / "wal"))
    assert proc.returncode == 0, proc.stderr
    assert "fields.idx is removed" in proc.stderr and "'eq\\\\=sign'" in proc.stderr, proc.stderr
    for f in fields:
        f.unlink()
    server = influxd_factory(root, index="tsi1")
    got = server.series("SELECT * FROM odd.autogen./eq/", db="odd")
    assert [s["values"] for s in got] == [[[1000, "b=c", 6]]]
    assert server.series("SELECT * FROM odd.autogen.plain", db="odd")[0]["values"] == [[1000, "b", 1]]
