"""build-tsi against ``influx_inspect buildtsi`` 1.6.7 on the same tree (a printed ratio; nothing
asserts a time).

    INFLUX_INSPECT=/path/to/influx_inspect python bench/buildtsi.py [--series N] [--runs R]

The tree is written once by the real influxd (inmem index, ``N`` series of one field over 3
shards, the last part left in the WAL) and cached in ``bench/cache/buildtsi-N``. Each run works on
a fresh copy. influx_inspect is given the WAL directories it insists on, and its root prompt
answered. Prints seconds and peak RSS (median of the runs) and ours/theirs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))
import influxd as harness  # noqa: E402

sys.path.insert(0, str(HERE))
import peers  # noqa: E402

_SCRIPT = Path(sys.executable).with_name("influx-archive")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from influx_archive.cli.main import main; main()"]
WEEK = 7 * 24 * 3600 * 10**9
BASE = 1_700_000_000 * 10**9 // WEEK * WEEK


def make_tree(path: Path, n_series: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    server = harness.InfluxServer(tmp, index="inmem", cold="1s")
    server.start()
    try:
        server.execute("CREATE DATABASE bench")
        batch = []
        for i in range(n_series):
            shard = i % 3
            batch.append(f"m{i % 20},host=h{i:08d},dc=dc{i % 13},rack=r{i % 97} v={i} {BASE + shard * WEEK + i}")
            if len(batch) == 5000:
                server.write("\n".join(batch), db="bench")
                batch = []
        if batch:
            server.write("\n".join(batch), db="bench")
        deadline = time.monotonic() + 120
        while not list((tmp / "data" / "bench").glob("*/*/*.tsm")) and time.monotonic() < deadline:
            time.sleep(0.5)
        server.write(f"late,host=wal v=1 {BASE + 1}", db="bench")
    finally:
        server.stop()
    os.rename(tmp, path)


def timed(argv: list[str], stdin: str | None = None) -> tuple[float, int]:
    """(seconds, peak RSS MiB); stderr to a file (buildtsi's log would fill a pipe and block)."""
    return peers.run(argv, stdin=stdin)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    inspect = os.environ.get("INFLUX_INSPECT")
    if not inspect:
        sys.exit("set INFLUX_INSPECT to influx_inspect 1.6.7")
    cache = HERE / "cache" / f"buildtsi-{args.series}"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {args.series} series with influxd (cached in {cache}) ...", file=sys.stderr)
        make_tree(cache, args.series)
    ours, theirs = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(dir=HERE / "cache") as work:
            a, b = Path(work, "a"), Path(work, "b")
            shutil.copytree(cache, a)
            shutil.copytree(cache, b)
            for shard in (b / "data").glob("*/*/*"):
                if shard.is_dir() and shard.name.isdigit() and shard.parent.name != "_series":
                    (b / "wal" / shard.relative_to(b / "data")).mkdir(parents=True, exist_ok=True)
            ours.append(timed([*CLI, "build-tsi", "--datadir", str(a / "data"), "--waldir", str(a / "wal"), "--quiet"]))
            theirs.append(
                timed([inspect, "buildtsi", "-datadir", str(b / "data"), "-waldir", str(b / "wal")], stdin="y\n")
            )
    t_o, t_t = statistics.median(t for t, _ in ours), statistics.median(t for t, _ in theirs)
    m_o, m_t = statistics.median(m for _, m in ours), statistics.median(m for _, m in theirs)
    print(f"series {args.series}, {args.runs} runs (median)")
    print(f"  influx-archive build-tsi:   {t_o:8.2f} s  {m_o:6d} MiB peak RSS")
    print(f"  influx_inspect buildtsi:    {t_t:8.2f} s  {m_t:6d} MiB peak RSS")
    print(f"  ratio ours/theirs: time {t_o / t_t:.2f}x, memory {m_o / max(m_t, 1):.2f}x")


if __name__ == "__main__":
    main()
