"""export (issue 5): every fixture exported, loaded by the real `influx -import` into a fresh real
influxd, and compared point for point (and RP settings) with the source server's TRUTH."""

from __future__ import annotations

import gzip
import math
import os
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import influxd as harness
import pytest

from influx_archive.archive.ops.lineproto import format_value, influxql_duration
from influx_archive.archive.timefmt import parse_time
from influx_archive.tsm.block import BOOLEAN, FLOAT, INTEGER, STRING, UNSIGNED

SECTIONS = {"databases", "retention_policies", "fields", "points"}


def influx_import(server, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("influx")
    if binary is None:
        pytest.fail(f"the influx CLI is missing: {harness.INSTALL_HINT}", pytrace=False)
    return subprocess.run(
        [
            binary,
            "-host",
            "127.0.0.1",
            "-port",
            str(server.http_port),
            "-import",
            "-path",
            str(path),
            "-precision",
            "ns",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.interop
@pytest.mark.parametrize("name", ["legacy", "portable", "legacy_incremental", "portable_incremental", "live"])
def test_export_imports_like_the_source(name, tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    out = tmp_path / "export.lp"
    proc = cli("export", str(fixtures_dir / name), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    server = influxd_factory()
    proc = influx_import(server, out)
    assert proc.returncode == 0 and "0 points were inserted" not in proc.stderr, proc.stdout + proc.stderr
    dbs = ["db1"] if name.endswith("_incremental") else None
    expected = harness.without_dead_fields(truth(name))
    assert harness.compare_truth(expected, server.dump(), databases=dbs, sections=SECTIONS) == []


@pytest.mark.interop
def test_export_filters_and_compressed(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    lo, hi = "2026-11-24T02:30:00Z", "2026-11-24T05:00:00Z"
    out = tmp_path / "export.lp.gz"
    proc = cli("export", str(fixtures_dir / "portable"), "--db", "db1", "--rp", "hourly", "--measurement", "temp",
               "--start", lo, "--end", hi, "--compress", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = gzip.decompress(out.read_bytes()).decode()
    assert text.count("CREATE ") == 1 and "# CONTEXT-RETENTION-POLICY:hourly\n" in text
    server = influxd_factory()
    proc = influx_import(server, out, "-compressed")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = server.dump()
    expected = harness.without_dead_fields(truth("portable"))
    a, b = parse_time(lo), parse_time(hi)
    series = expected["databases"]["db1"]["data"]["hourly"]["temp"]["series"]
    want = {tuple(sorted(s["tags"].items())): [p for p in s["points"] if a <= p[0] <= b] for s in series}
    have = {
        tuple(sorted(s["tags"].items())): s["points"]
        for s in got["databases"]["db1"]["data"]["hourly"]["temp"]["series"]
    }
    assert have == {k: v for k, v in want.items() if v}
    assert list(got["databases"]["db1"]["data"]) == ["hourly"]
    assert got["databases"]["db1"]["retention_policies"]["hourly"]["shard_group_duration"] == "1h0m0s"


def test_lponly_has_no_comments(tmp_path, fixtures_dir, cli) -> None:
    proc = cli("export", str(fixtures_dir / "legacy"), "--db", "db2", "--lponly")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and not any(line.startswith(("#", "CREATE")) for line in lines)
    assert all(line.rsplit(" ", 1)[1].lstrip("-").isdigit() for line in lines)


def test_value_formatting() -> None:
    # floats parse back to the same 64-bit value; these are the texts influxd's parser reads
    for v in (-0.0, 5e-324, 1.7976931348623157e308, 0.1, 1e16, -2.5e-3):
        assert float(format_value(FLOAT, v)) == v and str(format_value(FLOAT, v)).startswith("-") == (str(v)[0] == "-")
    assert format_value(FLOAT, float("nan")) is None and format_value(FLOAT, float("-inf")) is None
    assert format_value(INTEGER, -(2**63)) == "-9223372036854775808i"
    assert format_value(UNSIGNED, 2**64 - 1) == "18446744073709551615u"
    assert format_value(BOOLEAN, False) == "false"
    assert format_value(STRING, 'a"b\\c') == '"a\\"b\\\\c"'
    assert influxql_duration(0) == "INF" and influxql_duration(3600 * 10**9) == "1h"
    assert influxql_duration(604800 * 10**9) == "1w" and influxql_duration(90 * 10**9) == "90s"



# ---- the reference influx_inspect export on the same data -------------------------------------------
#
# influx_inspect writes one line per field value, TSM files in name order then the WAL, and ignores
# WAL deletes (it warns about them); floats as Go's FormatFloat(v, 'g', -1). Parsed into
# (db, rp, series, field, t) -> typed value, later lines winning, it must equal ours parsed the same
# way, except for points deleted by the WAL of a db/rp it warned about.


def influx_inspect() -> str:
    path = os.environ.get("INFLUX_INSPECT")
    if not path or not os.access(path, os.X_OK):
        pytest.fail("INFLUX_INSPECT must name influx_inspect 1.6.7 (the CI builds it and exports the variable)",
                    pytrace=False)
    return path


def split_line(line: str) -> tuple[str, list[tuple[str, str]], int]:
    """(series key, [(field key, value text)], timestamp) of one line of line protocol."""
    i, n = 0, len(line)
    while i < n and line[i] != " ":
        i += 2 if line[i] == "\\" else 1
    series, i = line[:i], i + 1
    fields = []
    while True:
        j = i
        while line[j] != "=":
            j += 2 if line[j] == "\\" else 1
        key, k = line[i:j], j + 1
        if line[k] == '"':
            k += 1
            while line[k] != '"':
                k += 2 if line[k] == "\\" else 1
            k += 1
        else:
            while line[k] not in ", ":
                k += 1
        fields.append((key, line[j + 1 : k]))
        if line[k] == " ":
            return series, fields, int(line[k + 1 :])
        i = k + 1


def typed(text: str) -> tuple[str, object]:
    if text.startswith('"'):
        return "string", text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if text in ("true", "false"):
        return "bool", text == "true"
    if text[-1] in "iu":
        return text[-1], int(text[:-1])
    return "float", struct.pack(">d", float(text))  # bits: -0.0 is not 0.0


def lp_points(path: Path) -> dict[tuple, tuple[str, object]]:
    out: dict[tuple, tuple[str, object]] = {}
    db = rp = None
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# CONTEXT-DATABASE:"):
                db = line.split(":", 1)[1]
            elif line.startswith("# CONTEXT-RETENTION-POLICY:"):
                rp = line.split(":", 1)[1]
            elif line and not line.startswith(("#", "CREATE ")):
                series, fields, t = split_line(line)
                for key, value in fields:
                    out[(db, rp, series, key, t)] = typed(value)
    return out


def compare_with_influx_inspect(root: Path, tmp_path: Path, cli) -> tuple[int, set[tuple[str, str]]]:
    """Export the server root ``root`` with both tools; returns (points, db/rp with WAL deletes)."""
    ref = tmp_path / "ref.lp"
    proc = subprocess.run([influx_inspect(), "export", "-datadir", str(root / "data"), "-waldir", str(root / "wal"),
                           "-out", str(ref)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    warned = set()
    for line in proc.stderr.splitlines():
        if line.startswith("Some series for "):
            db, rp = line.split('"')[1].split("/")
            warned.add((db, rp))
    ours = tmp_path / "ours.lp"
    res = cli("export", str(root), "--out", str(ours))
    assert res.returncode == 0, res.stderr
    want, got = lp_points(ref), lp_points(ours)
    assert {k: v for k, v in got.items() if want.get(k) != v} == {}  # everything we wrote, as they did
    missing = [k for k in want if k not in got]
    assert all((k[0], k[1]) in warned for k in missing), missing[:5]  # the rest: deleted by the WAL
    return len(got), warned


@pytest.mark.interop
def test_same_points_as_influx_inspect_export_on_the_live_fixture(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "live"
    shutil.copytree(fixtures_dir / "live", root)  # influx_inspect gets a copy: sources are never touched
    n, warned = compare_with_influx_inspect(root, tmp_path, cli)
    assert n > 10_000 and warned  # the fixture has WAL deletes: the exception above is exercised


MEAS = ["cpu", "we ird,m", "ünï"]
TAGS = ["h0", "a b", "c,d", "e=f", "ü€", "x\\y"]
FIELDS = {"v": "float", "n": "int", "ok": "bool", "s": "string", "f k,=\"": "float", "big": "int"}
FLOATS = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
          1e21, 1e-21, 1e16, 9007199254740993.0, 0.1, 1 / 3, 123456789.125]
INTS = [-(2**63), 2**63 - 1, 2**63 - 2, 0, -1, 2**53 + 1]
STRINGS = ["", 'q"uote', "back\\slash", "tr\\", "sp ace, comma=eq", "ünï €😀", '\\"']


def _escape_tag(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _lp_value(kind: str, rng: random.Random) -> str:
    if kind == "float":
        v = rng.choice(FLOATS) if rng.random() < 0.3 else struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        return repr(v) if math.isfinite(v) else "1.5"
    if kind == "int":
        return f"{rng.choice(INTS) if rng.random() < 0.3 else rng.getrandbits(64) - 2**63}i"
    if kind == "bool":
        return rng.choice(["true", "false"])
    s = rng.choice(STRINGS) if rng.random() < 0.7 else "".join(rng.choice('ab"\\ ,=é') for _ in range(6))
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_same_points_as_influx_inspect_export_on_generated_data(seed, tmp_path, influxd_factory, cli) -> None:
    """Random keys (escapes, unicode), random and extreme values of every type, fields written at
    different times, several level-1 TSM files per shard (a cold snapshot between the rounds, the
    later rounds overwriting some points) plus a WAL that was never snapshotted."""
    rng = random.Random(seed)
    root = tmp_path / "gen"
    server = influxd_factory(root, cold="1s", extra={"data.compact-full-write-cold-duration": "1000h"})
    server.execute("CREATE DATABASE g WITH DURATION INF REPLICATION 1 SHARD DURATION 1h NAME autogen")
    t0 = 1_790_000_000 * 10**9
    rounds = 4
    for r in range(rounds):
        lines = []
        for _ in range(1500):
            m = rng.choice(MEAS)
            series = m.replace(",", "\\,").replace(" ", "\\ ") + f",host={_escape_tag(rng.choice(TAGS))}"
            names = rng.sample(sorted(FIELDS), rng.randrange(1, len(FIELDS) + 1))
            fields = ",".join(f"{_escape_tag(k)}={_lp_value(FIELDS[k], rng)}" for k in names)
            t = t0 + rng.randrange(0, 3 * 3600) * 10**9 + rng.randrange(0, 3) * (10**9 // 3)
            lines.append(f"{series} {fields} {t}")
        server.write("\n".join(lines), db="g")
        if r < rounds - 1:
            time.sleep(3)  # cold snapshot: one more level-1 file in every shard written to
    server.stop()
    tsm = list((root / "data" / "g").rglob("*.tsm"))
    assert len(tsm) > len({p.parent for p in tsm})  # several files per shard
    n, warned = compare_with_influx_inspect(root, tmp_path, cli)
    assert n > 5000 and not warned
