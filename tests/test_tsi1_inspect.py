"""Differential against InfluxData's own ``influx_inspect`` 1.6.7 (located ONLY through the
``INFLUX_INSPECT`` environment variable; missing, the tests fail — never skip).

* ``verify-seriesfile`` finds no error in the series files build-tsi writes;
* ``dumptsi`` reads build-tsi's index and series file, and lists what our reader lists;
* ``buildtsi`` on a copy of the same tree yields the same series: the same series file keys, and
  per shard the same series — except series every value of which is deleted by tombstones,
  which influx_inspect indexes and influxd does not serve (checked against the TRUTH);
* our readers read influx_inspect's files, including the ``.tsi`` index files its compactions
  write (forced with a tiny ``-max-log-file-size``), and a hostile-input generator cuts and lies
  in those ``.tsi`` files: one error line naming the file, exit 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_trust_tsi1 import tree_hash

from influx_archive.tsm.tsi1 import format as fmt
from influx_archive.tsm.tsi1 import index as ix
from influx_archive.tsm.tsi1 import seriesfile as sf
from influx_archive.tsm.tsi1 import serieskey as sk


def influx_inspect() -> str:
    path = os.environ.get("INFLUX_INSPECT")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "INFLUX_INSPECT must name influx_inspect 1.6.7 (the CI builds it and exports the variable)", pytrace=False
        )
    return path


def inspect_buildtsi(tree: Path, *extra: str) -> None:
    """influx_inspect buildtsi needs a WAL directory for every shard, and asks for a 'y' as root."""
    for shard in (tree / "data").glob("*/*/*"):
        if shard.is_dir() and shard.name.isdigit() and shard.parent.name != "_series":
            (tree / "wal" / shard.relative_to(tree / "data")).mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [influx_inspect(), "buildtsi", "-datadir", str(tree / "data"), "-waldir", str(tree / "wal"), *extra],
        input="y\n", capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def shard_dirs(data: Path) -> list[Path]:
    return sorted(p for p in data.glob("*/*/*") if p.is_dir() and p.name.isdigit() and p.parent.name != "_series")


def line_keys(sfile: sf.SeriesFile, ids=None) -> set[bytes]:
    return {sk.to_line_key(*sk.decode(key)) for sid, key in sfile.series() if ids is None or sid in ids}


def truth_keys(truth: dict) -> dict[str, set[bytes]]:
    """Line keys (tags sorted, empty values dropped) of series with points, per database."""
    out: dict[str, set[bytes]] = {}
    for db, d in truth["databases"].items():
        s = out.setdefault(db, set())
        for _rp, ms in d.get("data", {}).items():
            for m, entry in ms.items():
                for series in entry["series"]:
                    if series["points"]:
                        tags = [(k.encode(), v.encode()) for k, v in sorted(series["tags"].items()) if v != ""]
                        s.add(sk.to_line_key(m.encode(), tags))
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory, cli):
    """(ours, theirs, unindexed) for the live fixture restored with its WAL."""
    base = tmp_path_factory.mktemp("tsi1-inspect")
    fixtures = Path(__file__).resolve().parent.parent / "fixtures"
    unindexed = base / "unindexed"
    assert cli("restore", str(fixtures / "live"), "--metadir", str(unindexed / "meta"),
                  "--datadir", str(unindexed / "data"), "--waldir", str(unindexed / "wal")).code == 0
    ours = base / "ours"
    shutil.copytree(unindexed, ours)
    assert cli("build-tsi", "-datadir", str(ours / "data"), "-waldir", str(ours / "wal")).code == 0
    theirs = base / "theirs"
    shutil.copytree(unindexed, theirs)
    inspect_buildtsi(theirs)
    return ours, theirs, unindexed


@pytest.mark.interop
def test_verify_seriesfile_finds_nothing(trees) -> None:
    ours = trees[0]
    proc = subprocess.run(
        [influx_inspect(), "verify-seriesfile", "-dir", str(ours / "data")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "lvl=error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    for db in sorted((ours / "data").iterdir()):
        proc = subprocess.run(
            [influx_inspect(), "verify-seriesfile", "-series-file", str(db / "_series"), "-v"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0 and "lvl=error" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
        assert proc.stdout.count("Verifying partition") + proc.stderr.count("Verifying partition") == 8


def _dumptsi_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        head = line.strip()
        if head in ("Series", "Measurement"):
            cur = sections.setdefault(head, [])
            continue
        if not line.strip():
            continue
        if cur is not None and not line[:1].isspace():
            cur.append(line.rstrip("\t"))
    return sections


@pytest.mark.interop
def test_dumptsi_reads_ours(trees) -> None:
    ours = trees[0]
    for shard in shard_dirs(ours / "data"):
        sdir = shard.parents[1] / "_series"
        proc = subprocess.run(
            [
                influx_inspect(),
                "dumptsi",
                "-series-file",
                str(sdir),
                "-series",
                "-measurements",
                "-tag-keys",
                "-tag-values",
                str(shard / "index"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        sec = _dumptsi_sections(proc.stdout)
        sfile = sf.SeriesFile(sdir)
        # dumptsi prints the measurement name as stored (unescaped) and the tags escaped
        printed = {name + sk.to_line_key(b"", tags) for name, tags in (sk.decode(k) for _i, k in sfile.series())}
        assert {s.encode() for s in sec["Series"]} == printed
        ids = ix.ShardIndex(shard / "index").series_ids()
        names = {sk.decode(k)[0] for i, k in sfile.series() if i in ids}
        assert {m.encode() for m in sec.get("Measurement", [])} == names, shard


@pytest.mark.interop
def test_inspect_buildtsi_same_series(trees, truth) -> None:
    ours, theirs, _ = trees
    want = truth_keys(truth("live"))
    for db in sorted(p.name for p in (ours / "data").iterdir()):
        mine = sf.SeriesFile(ours / "data" / db / "_series")
        other = sf.SeriesFile(theirs / "data" / db / "_series")
        assert line_keys(mine) == want[db]
        # influx_inspect also indexes series whose every value is deleted: never one we serve
        assert line_keys(other) >= line_keys(mine)
        assert not (line_keys(other) - line_keys(mine)) & want[db]
        for shard in shard_dirs(ours / "data" / db):
            rel = shard.relative_to(ours)
            a = line_keys(mine, ix.ShardIndex(shard / "index").series_ids())
            b = line_keys(other, ix.ShardIndex(theirs / rel / "index").series_ids())
            assert a <= b and not (b - a) & want[db], rel


@pytest.fixture(scope="module")
def compacted(tmp_path_factory, trees) -> Path:
    """influx_inspect's buildtsi with a 1-byte max log size: every partition compacts its log into
    ``.tsi`` index files."""
    tree = tmp_path_factory.mktemp("tsi1-compacted") / "t"
    shutil.copytree(trees[2], tree)
    inspect_buildtsi(tree, "-max-log-file-size", "1")
    assert list((tree / "data").glob("*/*/*/index/*/*.tsi"))
    return tree


@pytest.mark.interop
def test_index_files_readable(compacted, trees) -> None:
    ours = trees[0]
    n = 0
    for shard in shard_dirs(compacted / "data"):
        si = ix.ShardIndex(shard / "index")
        names = {m for p in si.partitions for m, meas in p.measurements.items() if not meas.deleted}
        sfile = sf.SeriesFile(ours / shard.relative_to(compacted).parents[1] / "_series")
        mine = ix.ShardIndex(ours / shard.relative_to(compacted) / "index").series_ids()
        assert {sk.decode(k)[0] for i, k in sfile.series() if i in mine} <= names
        for p in si.partitions:
            for m in p.measurements.values():
                for tk in m.tag_keys:
                    assert tk.values and all(v.series_n >= 0 for v in tk.values)
        n += sum(len(p.index_files) for p in si.partitions)
    assert n > 0


def tsi_cases(tree: Path, out: Path) -> list[tuple[str, Path, Path, list[str]]]:
    """Hostile ``.tsi`` files derived from influx_inspect's: cut at a spread of points, trailer
    offsets and sizes that point past the file, versions changed, the magic broken. Returns
    (name, case tree, damaged file, argv)."""
    files = sorted((tree / "data").glob("*/*/*/index/*/*.tsi"))[:2]
    cases = []
    for fi, f in enumerate(files):
        rel = f.relative_to(tree)
        data = f.read_bytes()
        n = len(data)
        variants = []
        for cut in sorted({3, 10, n // 4, n // 2, n - fmt.INDEX_FILE_TRAILER_SIZE, n - 40, n - 2, n - 1}):
            variants.append((f"cut{cut}", data[:cut]))
        tr = n - fmt.INDEX_FILE_TRAILER_SIZE
        for field in range(10):  # each offset / size in the trailer
            pos = tr + field * 8
            variants.append((f"trailer{field}-huge", data[:pos] + (2**62).to_bytes(8, "big") + data[pos + 8:]))
            variants.append((f"trailer{field}-neg", data[:pos] + (2**64 - 5).to_bytes(8, "big") + data[pos + 8:]))
        variants.append(("version", data[:-2] + b"\x00\x09"))
        variants.append(("magic", b"TSI2" + data[4:]))
        t = fmt.IndexFileTrailer.parse(data[tr:])
        mb_end = t.measurement_block.offset + t.measurement_block.size
        variants.append(("mblock-version", data[: mb_end - 2] + b"\x00\x07" + data[mb_end:]))
        mt = mb_end - fmt.MEASUREMENT_BLOCK_TRAILER_SIZE
        variants.append(("mblock-data-huge", data[:mt] + (2**40).to_bytes(8, "big") + data[mt + 8:]))
        for name, blob in variants:
            case = out / f"tsi{fi}-{name}"
            shutil.copytree(tree, case)
            (case / rel).write_bytes(blob)
            shard = (case / rel).parents[2]
            cases.append((name, case, case / rel, ["dump-tsi", str(shard)]))
    return cases


@pytest.mark.interop
def test_hostile_index_files(compacted, tmp_path, cli) -> None:
    cases = tsi_cases(compacted, tmp_path)
    assert len(cases) >= 40
    for name, tree, path, argv in cases:
        before = tree_hash(tree)
        code, _out, err = cli(*argv)
        lines = err.splitlines()
        assert code == 1, (name, code, err)
        assert len(lines) == 1 and str(path) in lines[0] and "Traceback" not in err, (name, err)
        assert tree_hash(tree) == before
        shutil.rmtree(tree)


@pytest.mark.interop
def test_inspect_buildtsi_output_is_servable_like_ours(trees) -> None:
    """Same MANIFEST bytes and log-file framing as influx_inspect writes (both read back by each
    other's readers)."""
    ours, theirs, _ = trees
    for shard in shard_dirs(theirs / "data"):
        for p in range(fmt.INDEX_PARTITION_N):
            a = ours / shard.relative_to(theirs) / "index" / str(p) / fmt.MANIFEST_NAME
            b = shard / "index" / str(p) / fmt.MANIFEST_NAME
            assert a.read_bytes() == b.read_bytes()
            for log in (shard / "index" / str(p)).glob("*.tsl"):
                entries = list(ix.iter_log_file(str(log)))
                assert (
                    b"".join(ix.log_entry_bytes(e.flag, e.series_id, e.name, e.key, e.value) for e in entries)
                    == log.read_bytes()
                )
