"""The benchmark script runs end to end (small dataset, one run each) and prints every row. It
measures, it never asserts a time (timing targets live in bench/, issue 7)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.interop
def test_bench_small_mode_prints_every_row(tmp_path) -> None:
    env = {"INFLUX_ARCHIVE_BENCH_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/local/bin"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--small", "--no-write"],
        capture_output=True, text=True, timeout=600, env={**__import__("os").environ, **env},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [
        re.sub(r"\(\d+ MB\)", "(N MB)", line.split("|")[1].strip())
        for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert rows == [
        "verb", "convert legacy->portable", "restore (offline)", "restore, same durability", "restore, against influxd",
        "restore, start-up excluded", "restore, 10x (N MB)", "restore, 10x, same durability",
        "trim (2 h inside one shard)", "export",
        "verify", "verify, start-up excluded", "pack (zstd 3)", "unpack", "peak RSS, any verb",
    ]
    assert "800,002 values" in proc.stdout
