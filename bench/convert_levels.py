"""convert against ``influxd backup -portable`` on shards of several level-1 TSM files (issue 15).

Dataset ``levels`` (built once with influxd 1.6.7, cached under ``bench/cache/levels-v1/``;
``INFLUX_ARCHIVE_BENCH_CACHE`` overrides the base): database ``bench`` with 1-hour shard groups,
5 shards, 200 series x 2 fields (a random float ``v`` and a random 62-bit integer ``n``, values
that barely compress) x 3,600 points 1 s apart per shard = 7.2 M values. Each shard is written in
3 batches, each snapshotted into its own level-1 TSM file (``cache-snapshot-write-cold-duration``
10 s, waited out between batches; full compactions held off), so every shard holds 3 level-1
files (more if a loaded machine paused 10 s inside a batch).

Timed, alternating, ``--runs`` times each (the machine is shared: compare ratios of the same run):
``influxd backup -portable`` of the live server, ``influx-archive convert`` of influxd's legacy
backup of it to portable, ``influx-archive trim`` of 20 minutes inside one shard, and
``influx-archive --help`` (the start-up every verb pays). Wall time and CPU time (for influxd's
backup: the client's plus what the server spent streaming it, from ``/proc/<pid>/stat``) are both
reported: on a loaded machine the CPU ratio is the steadier one.

    python bench/convert_levels.py [--runs 3] [--scale N]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
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


def cache_dir(scale: int = 1) -> Path:
    base = Path(os.environ.get("INFLUX_ARCHIVE_BENCH_CACHE", HERE / "cache"))
    return base / ("levels-v1" if scale == 1 else f"levels-v1-x{scale}")


def _server(root: Path) -> harness.InfluxServer:
    return harness.InfluxServer(root, cold="10s", extra={"data.cache-snapshot-memory-size": "1g",
                                                        "data.compact-full-write-cold-duration": "24h"})


def build(scale: int = 1) -> Path:
    """The dataset with ``scale`` times the series (the same shards and files, each larger)."""
    series = SERIES * scale
    d = cache_dir(scale)
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
                    for k in range(series):
                        lines.append(f"cpu,host=h{k:03d} v={rng.random() * 1e6!r},n={rng.getrandbits(62)}i {t}")
                    if len(lines) >= 20_000:
                        server.write("\n".join(lines), db="bench")
                        lines = []
                if lines:
                    server.write("\n".join(lines), db="bench")
            deadline = time.monotonic() + 300
            shards = server.data_dir / "bench" / "autogen"
            while not (shards.exists() and len(list(shards.glob("*/*.tsm"))) >= SHARDS * (b + 1)
                       and all(w.stat().st_size == 0 for w in server.wal_dir.rglob("*.wal"))):
                if time.monotonic() > deadline:
                    raise SystemExit(f"batch {b}: {sorted(p.name for p in shards.glob('*/*.tsm'))}")
                time.sleep(0.5)
        proc = server.backup(d / "legacy", "-database", "bench")
        assert proc.returncode == 0, proc.stderr
    (d / "DONE").write_text(f"{SHARDS} shards x {BATCHES} level-1 files, {series * SHARDS * POINTS * 2} values\n")
    return d


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], server_pid: int | None = None) -> tuple[float, float]:
    """(wall s, CPU s of the command and, for influxd's backup, of the server that streams it)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    srv = _proc_cpu(server_pid) if server_pid else 0.0
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if server_pid:
        cpu += _proc_cpu(server_pid) - srv
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=int, default=1, help="times the series (and the data)")
    args = ap.parse_args()
    d = build(args.scale)
    files = sorted((d / "server" / "data" / "bench" / "autogen").glob("*/*.tsm"))
    print(f"dataset {d}: {len(files)} TSM files, {sum(f.stat().st_size for f in files) / 1e6:.1f} MB")
    exe = shutil.which("influx-archive") or str(Path(sys.executable).parent / "influx-archive")
    work = d / "work"
    lo = START + 2 * HOUR + 30 * 60 * 10**9
    times: dict[str, list[tuple[float, float]]] = {
        "influxd backup -portable": [], "convert legacy->portable": [], "trim 20 min": [], "--help (start-up)": []}
    with _server(d / "server").start() as server:
        for _ in range(args.runs):
            for what in times:
                shutil.rmtree(work, ignore_errors=True)
                pid = None
                if what.startswith("influxd"):
                    argv = [server.binary, "backup", "-portable", "-host", server.host, str(work)]
                    pid = server.pid
                elif what.startswith("--help"):
                    argv = [exe, "--help"]
                elif what.startswith("convert"):
                    argv = [exe, "convert", str(d / "legacy"), str(work), "--to", "portable"]
                else:
                    argv = [exe, "trim", str(d / "legacy"), str(work), "--start", str(lo),
                            "--end", str(lo + 20 * 60 * 10**9)]
                times[what].append(timed(argv, pid))
    shutil.rmtree(work, ignore_errors=True)
    ref = [statistics.median(x[i] for x in times["influxd backup -portable"]) for i in (0, 1)]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall ratios are noisy when loaded)")
    for what, ts in times.items():
        wall, cpu = (statistics.median(x[i] for x in ts) for i in (0, 1))
        print(f"{what:26s} wall {wall:5.2f} s (ratio {wall / ref[0]:.2f})  CPU {cpu:5.2f} s (ratio {cpu / ref[1]:.2f})"
              f"  runs {' '.join(f'{w:.2f}' for w, _ in ts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
