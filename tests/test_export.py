"""export (issue 5): every fixture exported, loaded by the real `influx -import` into a fresh real
influxd, and compared point for point (and RP settings) with the source server's TRUTH."""

from __future__ import annotations

import gzip
import shutil
import subprocess
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
