"""``inspect`` of server roots that hold tsi1 indexes: each shard says which index influxd opens it
with (``index/`` present: tsi1, otherwise inmem) and each database its series file (live series,
bytes on disk). Expected series counts come from the truth the source influxd served
(fixtures/*.truth.json), never from the code under test; damage in a series file is a finding
naming the file, the rest of the summary still printed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from test_tsi1_inspect import truth_keys

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _truth(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.truth.json").read_text())


def _shards(doc: dict) -> dict[tuple[str, str, int], dict]:
    return {(db["name"], rp["name"], sh["id"]): sh for db in doc["databases"] for rp in db["retention_policies"]
            for sh in rp["shards"]}


@pytest.fixture(scope="module")
def restored(tmp_path_factory, cli) -> Path:
    root = tmp_path_factory.mktemp("inspect-tsi1") / "root"
    r = cli("restore", str(FIXTURES / "legacy"), "--metadir", str(root / "meta"), "--datadir", str(root / "data"),
            "--index", "tsi1")
    assert r.code == 0, r.err
    return root


def _inspect(cli, root: Path) -> tuple[int, dict]:
    r = cli("inspect", str(root), "--json")
    assert "Traceback" not in r.err, r.err
    return r.code, json.loads(r.out)


def test_a_tsi1_restore_shows_tsi1_shards_and_the_served_series(restored, cli) -> None:
    code, doc = _inspect(cli, restored)
    assert code == 0, doc["findings"]
    want = truth_keys(_truth("legacy"))
    got = {db["name"]: db["series_file"] for db in doc["databases"]}
    assert set(got) == set(want)
    for db, sfile in got.items():
        assert sfile is not None and sfile["series"] == len(want[db]), (db, sfile, len(want[db]))
        assert sfile["disk_bytes"] > 0
    shards = _shards(doc)
    on_disk = {(p.parts[-3], p.parts[-2], int(p.name)) for p in (restored / "data").glob("*/*/*")
               if p.name.isdigit() and p.parent.name != "_series"}
    assert set(shards) == on_disk
    assert {sh["index"] for sh in shards.values()} == {"tsi1"}
    text = cli("inspect", str(restored)).out
    for db in want:
        assert f"  series file: {len(want[db])} series, " in text
    assert text.count("; index tsi1\n") + text.endswith("; index tsi1") == len(on_disk)


def test_an_inmem_server_says_inmem_and_no_series_file_line(cli) -> None:
    code, doc = _inspect(cli, FIXTURES / "live")
    assert code == 0
    assert all(db["series_file"] is None for db in doc["databases"])
    assert {sh["index"] for sh in _shards(doc).values()} == {"inmem"}
    assert "series file" not in cli("inspect", str(FIXTURES / "live")).out


def test_backups_carry_no_index_and_say_nothing_of_one(cli) -> None:
    for name in ("legacy", "portable"):
        code, doc = _inspect(cli, FIXTURES / name)
        assert code == 0
        assert all("series_file" not in db for db in doc["databases"]), name
        assert all("index" not in sh for sh in _shards(doc).values()), name


def test_build_tsi_of_one_database_shows_in_inspect(tmp_path, cli) -> None:
    root = tmp_path / "root"
    assert cli("restore", str(FIXTURES / "legacy"), "--metadir", str(root / "meta"), "--datadir",
               str(root / "data")).code == 0
    assert cli("build-tsi", "--datadir", str(root / "data"), "--db", "db2").code == 0
    _code, doc = _inspect(cli, root)
    for (db, _rp, _sid), sh in _shards(doc).items():
        assert sh["index"] == ("tsi1" if db == "db2" else "inmem")
    sfiles = {db["name"]: db["series_file"] for db in doc["databases"]}
    assert sfiles["db1"] is None and sfiles["db2"]["series"] == len(truth_keys(_truth("legacy"))["db2"])
    # the indexes without their series file: influxd would make an empty one; inspect says so
    shutil.rmtree(root / "data" / "db2" / "_series")
    text = cli("inspect", str(root)).out
    assert "series file: none, though shards here hold tsi1 indexes" in text
    assert text.count("series file:") == 1


def _corruptions(sdir: Path):
    """(name, how) pairs: each damages one file of a copied series file differently."""
    seg = sdir / "00" / "0000"

    def header(p=seg):
        with open(p, "r+b") as f:
            f.write(b"XSEG")

    def flag(p=seg):
        with open(p, "r+b") as f:
            f.seek(5)
            f.write(b"\x07")

    def truncate(p=seg):
        os.truncate(p, 3)

    def fifo(p=seg):
        p.unlink()
        os.mkfifo(p)

    def directory(p=seg):
        p.unlink()
        p.mkdir()

    def stray_bytes_after_entries(p=seg):
        with open(p, "r+b") as f:
            f.seek(os.path.getsize(p) - 1)
            f.write(b"\x01")

    return [("header", header), ("flag", flag), ("truncate", truncate), ("fifo", fifo), ("directory", directory),
            ("stray", stray_bytes_after_entries)]


@pytest.mark.parametrize("which", range(6))
def test_a_damaged_series_file_is_a_finding_naming_it(restored, tmp_path, cli, which) -> None:
    root = tmp_path / "root"
    shutil.copytree(restored, root)
    sdir = root / "data" / "db1" / "_series"
    name, damage = _corruptions(sdir)[which]
    damage()
    code, doc = _inspect(cli, root)
    assert code == 1, name
    sfiles = {db["name"]: db["series_file"] for db in doc["databases"]}
    assert sfiles["db1"]["series"] is None, name
    assert sfiles["db2"]["series"] == len(truth_keys(_truth("legacy"))["db2"]), name  # the rest still read
    errors = [f for f in doc["findings"] if f["severity"] == "error"]
    assert len(errors) == 1 and errors[0]["path"].startswith(str(sdir)), (name, errors)
    assert len(_shards(doc)) == len(_shards(_inspect(cli, restored)[1]))
    r = cli("inspect", str(root))
    assert r.code == 1 and "series file: unreadable" in r.out and "Traceback" not in r.err, name


@pytest.mark.parametrize("link", ["series-file", "partition"])
def test_a_series_file_link_to_a_big_tree_is_not_walked(restored, tmp_path, link) -> None:
    """``_series`` (or a partition) a link to ``/``: inspect counts the partitions' own entries
    only, never walking the tree the link names, and ends within seconds; each partition missing
    or a link is a warning naming it, and only what the partitions hold is counted."""
    import subprocess
    import sys

    root = tmp_path / "root"
    shutil.copytree(restored, root)
    sdir = root / "data" / "db1" / "_series"
    where = sdir if link == "series-file" else sdir / "00"
    shutil.rmtree(where)
    where.symlink_to("/")
    r = subprocess.run([sys.executable, "-c", "from influx_archive.cli.main import main; main()", "inspect",
                        str(root), "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    doc = json.loads(r.stdout)
    sfiles = {db["name"]: db["series_file"] for db in doc["databases"]}
    warned = sorted(f["path"] for f in doc["findings"] if f["severity"] == "warning")
    if link == "series-file":  # "/" has no partition directories 00..07: all missing, nothing held
        assert sfiles["db1"]["series"] == 0
        assert warned == [str(sdir / f"{p:02x}") for p in range(8)], warned
    else:  # partition 0's series are gone; the others' counted
        want = truth_keys(_truth("legacy"))["db1"]
        assert 0 < sfiles["db1"]["series"] < len(want)
        assert warned == [str(sdir / "00")], warned
        assert "symbolic link" in next(f["message"] for f in doc["findings"] if f["severity"] == "warning")


def test_a_partition_that_is_a_file_or_missing_is_a_warning(restored, tmp_path, cli) -> None:
    for i, how in enumerate(("missing", "file", "fifo")):
        root = tmp_path / f"root{i}"
        shutil.copytree(restored, root)
        part = root / "data" / "db2" / "_series" / "03"
        shutil.rmtree(part)
        if how == "file":
            part.write_bytes(b"x")
        elif how == "fifo":
            os.mkfifo(part)
        code, doc = _inspect(cli, root)
        warned = [f for f in doc["findings"] if f["severity"] == "warning"]
        assert code == 0 and [f["path"] for f in warned] == [str(part)], (how, doc["findings"])
        assert ("missing" if how == "missing" else "not a directory") in warned[0]["message"], how


@pytest.mark.parametrize("name", ["..", ".", "../outside", "a/../../outside", ""])
def test_a_metastore_name_never_reads_outside_the_data_directory(restored, tmp_path, name) -> None:
    """Database names come from the metastore: one that is not a directory name below the data
    directory (a hostile ``meta.db``) has no series file, whatever stands where the name points."""
    from influx_archive.archive.ops import inspect as ins

    data = tmp_path / "root" / "data"
    data.mkdir(parents=True)
    (data / "a").mkdir()
    for where in (tmp_path / "outside", tmp_path / "root" / "outside", tmp_path / "root", data):
        shutil.copytree(restored / "data" / "db1" / "_series", where / "_series")  # where each name leads
    findings: list = []
    assert ins._series_file(data, name, findings) is None and findings == []
    assert ins._series_file(tmp_path, "outside", findings) is not None  # the planted copies do read
