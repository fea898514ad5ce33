"""The benchmark harness runs end to end on two tiny datasets built by the real influxd, and at x2
(influxd's own portable restore into a second database), against every peer, and prints and
writes every table. It measures; it never asserts a time (timing targets live in bench/)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VERBS = ["convert", "export", "verify", "restore", "trim", "build-tsi", "build-tsi (no _series)", "pack", "unpack"]
PEERS = {
    "convert": {"ours", "ours backup", "influxd backup -portable"},
    "export": {"ours", "influx_inspect export"},
    "verify": {"ours", "influx_inspect verify"},
    "restore": {"ours", "tar -x", "tar -x + sync", "influxd restore"},
    "trim": {"ours", "ours convert"},
    "build-tsi": {"ours", "influx_inspect buildtsi", "ours, empty data directory",
                  "influx_inspect buildtsi, empty data directory"},
    "build-tsi (no _series)": {"ours", "influx_inspect buildtsi"},
    "report --exact": {"ours", "influx_inspect report -exact"},
    "pack": {"ours"},
    "unpack": {"ours"},
}


def _tsm_per_shard(server_root: Path) -> dict[str, int]:
    return {
        str(d.relative_to(server_root / "data")): len(list(d.glob("*.tsm")))
        for d in (server_root / "data").glob("*/*/*")
        if d.is_dir() and d.name.isdigit() and d.parent.name != "_series"
    }


@pytest.mark.interop
@pytest.mark.slow
def test_bench_quick_run_on_tiny_datasets(tmp_path: Path) -> None:
    inspect = os.environ.get("INFLUX_INSPECT", "/work/cache/influx_inspect")
    results_md = tmp_path / "RESULTS.md"
    kept = "\n## Notes on targets not met\n\nnotes\n\n## Linearity and memory bounds\n\nkept text\n"
    results_md.write_text("# old\n\nold table\n" + kept)
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--datasets", "tiny,random-tiny", "--scale", "2",
         "--cache", str(tmp_path / "cache"), "--json", str(out_json), "--write-results",
         "--results-file", str(results_md)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "INFLUX_INSPECT": inspect},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out_json.read_text())
    sets = doc["datasets"]
    assert set(sets) == {"tiny", "random-tiny", "tiny-x2", "random-tiny-x2"}

    # the datasets' shapes, from the files influxd wrote (ls), not from the harness's own facts
    cache = tmp_path / "cache"
    one = {"tiny": cache / "tiny-v1", "random-tiny": cache / "random-tiny-v1"}
    for name, base in one.items():
        shape = _tsm_per_shard(base / "server")
        assert len(shape) == 2, shape  # 2 shards of 6 h
        assert set(shape.values()) == ({3} if name == "random-tiny" else {1}), shape
        x2 = _tsm_per_shard(cache / f"{name}-x2-v1.1" / "server")
        assert len(x2) == 4 and set(x2.values()) == set(shape.values()), x2
        size1 = sum(p.stat().st_size for p in (base / "server" / "data").rglob("*.tsm"))
        size2 = sum(p.stat().st_size for p in (cache / f"{name}-x2-v1.1" / "server" / "data").rglob("*.tsm"))
        assert size2 == 2 * size1
        # near-random values barely compress: about 8 bytes per value or more; the walk compresses
        per_value = size1 / sets[name]["info"]["values"]
        assert per_value > 7.5 if name == "random-tiny" else per_value < 6, per_value

    has_report = subprocess.run(
        [sys.executable, "-c", "from influx_archive.cli.main import main; main()", "report", "--help"],
        capture_output=True,
    ).returncode == 0
    for name, d in sets.items():
        want = VERBS + (["report --exact"] if has_report else [])
        assert sorted(d["verbs"]) == sorted(want), name
        for verb, sides in d["verbs"].items():
            timed = {k for k, v in sides.items() if isinstance(v, dict) and "seconds" in v}
            assert timed == PEERS[verb], (name, verb)
            for side in timed:
                assert sides[side]["seconds"] > 0 and sides[side]["rss_mib"] > 0, (name, verb, side)
                assert len(sides[side]["runs"]) == 1
        # every output the comparison counted was really written (and is not empty)
        assert all(v > 0 for v in d["verbs"]["export"]["out_bytes"].values()), name
        assert all(v > 0 for v in d["verbs"]["convert"]["out_bytes"].values()), name
    assert doc["startup"]["verify 100 KB"]["seconds"] > 0

    rows = [line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.startswith("| ")]
    for prefix in (
        "convert / influxd backup -portable, tiny", "convert / influxd backup -portable, random-tiny-x2",
        "export / influx_inspect export (wall), random-tiny", "verify steady state", "restore / (tar -x + sync)",
        "trim inside one shard / convert, tiny-x2", "peak RSS, every verb, at x2", "time at x2",
        "peak RSS at x2", "start-up: verify of a 100 KB backup", "start-up: --help",
        "build-tsi / influx_inspect buildtsi, tiny", "build-tsi (no _series) / influx_inspect buildtsi, tiny",
        "build-tsi work / influx_inspect buildtsi work",
    ):
        assert any(r.startswith(prefix) for r in rows), prefix
    met = [line.split("|")[4].strip() for line in proc.stdout.splitlines() if line.startswith("| ") and
           line.count("|") == 5 and "---" not in line][1:]
    assert met and set(met) <= {"met", "not met", "—"}

    text = results_md.read_text()
    assert text.startswith("# Benchmark results") and "old table" not in text
    assert text.endswith(kept) and text.count("## Notes") == 1
    assert re.search(r"influx_inspect: .*influx_inspect", text)
    for name in sets:
        assert f"### {name}:" in text
