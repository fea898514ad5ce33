"""``report``: series counts against influxd (SHOW SERIES and SHOW SERIES CARDINALITY on a
server started on the same tree) and against InfluxData's own ``influx_inspect report`` 1.6.7 —
exact counts, its HyperLogLog++ estimates (the same numbers), ``-detailed`` field and tag counts,
``-pattern``, and hostile inputs (damaged TSM files, lying counts, FIFOs, links): one line naming
the file, exit 1, no traceback."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from parity_helpers import restored_tree, run_inspect

_DB_LINE = re.compile(r"^\s+- (\S+?)(?: \(est\))?: (\d+) \(\d+%\)$")
_FIELD_LINE = re.compile(r"^\s+- (.+): (\d+)$")


def _ref_db_counts(out: str) -> dict[str, int]:
    counts = {}
    section = None
    for ln in out.splitlines():
        if ln.strip().startswith("Series:"):
            section = "series"
        elif ln.strip().startswith(("Total", "Measurements")):
            section = None
        elif section == "series" and (m := _DB_LINE.match(ln)):
            counts[m[1]] = int(m[2])
    return counts


def _ref_sections(out: str) -> dict[str, dict[str, int]]:
    """-detailed: {"Fields": {measurement: n}, "Tags": {key: n}}."""
    got: dict[str, dict[str, int]] = {}
    section = None
    for ln in out.splitlines():
        s = ln.strip()
        if s.startswith(("Fields", "Tags", "Measurements")):
            section = s.split()[0]
            got[section] = {}
        elif section and (m := _FIELD_LINE.match(ln)):
            got[section][m[1]] = int(m[2])
    return got


def _ours(cli, *args) -> dict:
    proc = cli("report", *args, "--json")
    assert proc.code == 0, proc.err
    return json.loads(proc.out)


@pytest.mark.interop
def test_exact_series_equal_what_influxd_serves(tmp_path, fixtures_dir, influxd_factory, cli) -> None:
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root)
    doc = _ours(cli, "-exact", root)
    assert doc["exact"] is True and doc["databases"]
    server = influxd_factory(root)
    for d in doc["databases"]:
        # influxd 1.6.7's SHOW SERIES EXACT CARDINALITY under inmem adds up every shard's count
        # (a series in 4 shards counts 4 times); the list and the cardinality sketch do not
        listed = sum(len(r.get("values", [])) for r in server.series("SHOW SERIES", db=d["name"]))
        rows = server.series("SHOW SERIES CARDINALITY", db=d["name"])
        sketch = sum(int(v[0]) for r in rows for v in r.get("values", []))
        assert d["series"] == listed == sketch, d


@pytest.mark.interop
@pytest.mark.parametrize("name", ["legacy", "portable_incremental", "union_legacy", "live"])
def test_counts_equal_influx_inspect(name, tmp_path, fixtures_dir, cli) -> None:
    if name == "live":  # influx_inspect report reads TSM files only: compare on data/ alone
        data = fixtures_dir / "live" / "data"
    else:
        data = restored_tree(cli, fixtures_dir / name, tmp_path / "tree") / "data"
    for exact in (True, False):
        flag = ("-exact",) if exact else ()
        ref = run_inspect("report", *flag, data)
        assert ref.returncode == 0, ref.stderr
        theirs = _ref_db_counts(ref.stdout)
        doc = _ours(cli, *flag, data)
        assert theirs and {d["name"]: d["keys"] for d in doc["databases"]} == theirs, (exact, ref.stdout)
        total = re.search(r"Total(?: \(est\))?: (\d+)", ref.stdout)
        assert total and doc["total_keys"] == int(total[1])
        assert doc["files"] == int(re.search(r"Files: (\d+)", ref.stdout + ref.stderr)[1])  # type: ignore[index]


@pytest.mark.interop
def test_detailed_fields_and_tags_equal_influx_inspect(tmp_path, fixtures_dir, cli) -> None:
    data = restored_tree(cli, fixtures_dir / "portable", tmp_path / "tree") / "data"
    shard_dirs = sorted(p for p in data.glob("*/*/*") if p.is_dir() and any(p.glob("*.tsm")))
    assert len(shard_dirs) > 3
    for sd in shard_dirs:
        ref = run_inspect("report", "-detailed", "-exact", sd)
        assert ref.returncode == 0, ref.stderr
        theirs = _ref_sections(ref.stdout)
        doc = _ours(cli, "-detailed", "-exact", sd)
        assert {m["name"]: m["fields"] for m in doc["measurements"]} == theirs["Fields"], sd
        assert {t["key"]: t["values"] for t in doc["tags"]} == theirs.get("Tags", {}), sd
        assert [r["shard"] for r in doc["shards"]] == [int(sd.name)]


def test_pattern_keeps_only_matching_files(tmp_path, fixtures_dir, cli) -> None:
    root = fixtures_dir / "live"
    everything = _ours(cli, "-exact", root / "data")
    for pattern in ("/autogen/", "db2", "000000002-", "no-such-file"):
        doc = _ours(cli, "-exact", "-pattern", pattern, root / "data")
        tsm = [p for p in (root / "data").rglob("*.tsm") if pattern in str(p)]
        assert doc["files"] == len(tsm)
        assert doc["total_keys"] <= everything["total_keys"]
        if not tsm:
            assert doc["shards"] == [] and doc["total_keys"] == 0


def test_text_output_and_estimate_label(fixtures_dir, cli) -> None:
    for args, est in ((("-exact",), False), ((), True)):
        proc = cli("report", *args, fixtures_dir / "legacy")
        assert proc.code == 0, proc.err
        assert "Summary:" in proc.out and "Statistics" in proc.out
        assert ("(est)" in proc.out) is est


# ---- hostile inputs ------------------------------------------------------------------------


def _variants(good: bytes):
    """(name, bytes) of damaged copies of one TSM file: cut at a spread of points, a lying index
    offset, a lying key length, a lying entry count, a garbled magic."""
    n = len(good)
    for cut in sorted({1, 4, 5, n // 3, n // 2, n - 9, n - 8, n - 1}):
        yield f"cut{cut}", good[:cut]
    idx = int.from_bytes(good[-8:], "big")
    for lie in (0, n, n * 7, 2**63 - 1, idx + 1, idx - 1):
        yield f"index-offset-{lie}", good[:-8] + lie.to_bytes(8, "big")
    yield "key-len-lie", good[:idx] + (0xFFFF).to_bytes(2, "big") + good[idx + 2:]
    klen = int.from_bytes(good[idx:idx + 2], "big")
    at = idx + 2 + klen + 1
    for count in (0, 0xFFFF):
        yield f"count-{count}", good[:at] + count.to_bytes(2, "big") + good[at + 2:]
    yield "magic", b"\x00\x00\x00\x00" + good[4:]


def _shard_copy(tmp: Path, fixtures_dir: Path) -> tuple[Path, Path]:
    data = tmp / "data"
    shard = data / "db1" / "autogen" / "1"
    shutil.copytree(fixtures_dir / "live" / "data" / "db1" / "autogen" / "1", shard)
    return data, next(shard.glob("*.tsm"))


def test_hostile_tsm_files_one_line_exit_1(tmp_path, fixtures_dir, cli) -> None:
    _, good_path = _shard_copy(tmp_path / "src", fixtures_dir)
    good = good_path.read_bytes()
    seen = 0
    for name, blob in _variants(good):
        data, tsm = _shard_copy(tmp_path / name, fixtures_dir)
        tsm.write_bytes(blob)
        for args in (("-exact",), (), ("-detailed",)):
            proc = cli("report", *args, data)
            assert proc.code == 1, (name, args, proc)
            lines = proc.err.strip().splitlines()
            assert lines[-1].startswith("influx-archive: error: ") and str(tsm) in lines[-1], (name, proc.err)
            assert "Traceback" not in proc.err
        seen += 1
    assert seen >= 15


def test_fifo_link_and_directory_named_tsm(tmp_path, fixtures_dir, cli) -> None:
    for kind in ("fifo", "dev-zero-link", "dangling-link", "directory"):
        data, _ = _shard_copy(tmp_path / kind, fixtures_dir)
        bad = data / "db1" / "autogen" / "1" / "000000009-000000001.tsm"
        if kind == "fifo":
            os.mkfifo(bad)
        elif kind == "dev-zero-link":
            bad.symlink_to("/dev/zero")
        elif kind == "dangling-link":
            bad.symlink_to(tmp_path / "nothing-here")
        else:
            bad.mkdir()
        proc = cli("report", "-exact", data)
        assert proc.code == 1, (kind, proc)
        assert str(bad) in proc.err and proc.err.count("error:") == 1 and "Traceback" not in proc.err, proc.err
