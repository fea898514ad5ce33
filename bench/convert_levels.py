"""convert against ``influxd backup -portable`` on shards of several level-1 TSM files (issue 15).

Dataset ``levels`` (built once with influxd 1.6.7, cached under ``bench/cache/levels-v1/``;
``INFLUX_ARCHIVE_BENCH_CACHE`` overrides the base): database ``bench`` with 1-hour shard groups,
5 shards, 200 series x 2 fields (a random float ``v`` and a random 62-bit integer ``n``, values
that barely compress) x 3,600 points 1 s apart per shard = 7.2 M values. Each shard is written in
3 batches, each snapshotted into its own level-1 TSM file (``cache-snapshot-write-cold-duration``
1 s between batches, full compactions held off), so every shard holds 3 level-1 files.

Timed, alternating, ``--runs`` times each (the machine is shared: compare ratios of the same run):
``influxd backup -portable`` of the live server, ``influx-archive convert`` of influxd's legacy
backup of it to portable, and ``influx-archive trim`` of 20 minutes inside one shard.

    python bench/convert_levels.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))
import influxd as harness  # noqa: E402

SERIES, SHARDS, POINTS, BATCHES = 200, 5, 3600, 3
HOUR = 3600 * 10**9
START = 1_790_000_000 * 10**9 // HOUR * HOUR


def cache_dir() -> Path:
    return Path(os.environ.get("INFLUX_ARCHIVE_BENCH_CACHE", HERE / "cache")) / "levels-v1"


def _server(root: Path) -> harness.InfluxServer:
    return harness.InfluxServer(root, cold="1s", extra={"data.cache-snapshot-memory-size": "1g",
                                                        "data.compact-full-write-cold-duration": "24h"})


def build() -> Path:
    d = cache_dir()
    if (d / "DONE").exists():
        return d
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = random.Random(15)
    with _server(d / "server").start() as server:
        server.execute("CREATE DATABASE bench WITH SHARD DURATION 1h")
        per = POINTS // BATCHES
        for b in range(BATCHES):
            for s in range(SHARDS):
                lines = []
                for p in range(b * per, (b + 1) * per):
                    t = START + s * HOUR + p * 10**9
                    for k in range(SERIES):
                        lines.append(f"cpu,host=h{k:03d} v={rng.random() * 1e6!r},n={rng.getrandbits(62)}i {t}")
                    if len(lines) >= 20_000:
                        server.write("\n".join(lines), db="bench")
                        lines = []
                if lines:
                    server.write("\n".join(lines), db="bench")
            deadline = time.monotonic() + 300
            shards = server.data_dir / "bench" / "autogen"
            while not (shards.exists() and len(list(shards.glob("*/*.tsm"))) == SHARDS * (b + 1)):
                if time.monotonic() > deadline:
                    raise SystemExit(f"batch {b}: {sorted(p.name for p in shards.glob('*/*.tsm'))}")
                time.sleep(0.5)
        proc = server.backup(d / "legacy", "-database", "bench")
        assert proc.returncode == 0, proc.stderr
    (d / "DONE").write_text(f"{SHARDS} shards x {BATCHES} level-1 files, {SERIES * SHARDS * POINTS * 2} values\n")
    return d


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    d = build()
    files = sorted((d / "server" / "data" / "bench" / "autogen").glob("*/*.tsm"))
    print(f"dataset {d}: {len(files)} TSM files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    exe = shutil.which("influx-archive") or str(Path(sys.executable).parent / "influx-archive")
    work = d / "work"
    lo = START + 2 * HOUR + 30 * 60 * 10**9
    times: dict[str, list[float]] = {"influxd backup -portable": [], "convert legacy->portable": [], "trim 20 min": []}
    with _server(d / "server").start() as server:
        for _ in range(args.runs):
            for what in times:
                shutil.rmtree(work, ignore_errors=True)
                if what.startswith("influxd"):
                    argv = [server.binary, "backup", "-portable", "-host", server.host, str(work)]
                elif what.startswith("convert"):
                    argv = [exe, "convert", str(d / "legacy"), str(work), "--to", "portable"]
                else:
                    argv = [exe, "trim", str(d / "legacy"), str(work), "--start", str(lo),
                            "--end", str(lo + 20 * 60 * 10**9)]
                times[what].append(timed(argv))
    shutil.rmtree(work, ignore_errors=True)
    ref = statistics.median(times["influxd backup -portable"])
    for what, ts in times.items():
        med = statistics.median(ts)
        print(f"{what:28s} median {med:6.2f} s  runs {' '.join(f'{t:.2f}' for t in ts)}  ratio {med / ref:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
