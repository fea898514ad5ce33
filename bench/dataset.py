"""Build (once) and cache the benchmark dataset with the real influxd 1.6.7.

``full``: 1,000 series (``cpu,host=h000..h999``) x 2 fields (float ``v``, integer ``n``) x 10,080
points 10 s apart (28 hours) = 20.2 million values in 5 shards (6-hour shard groups), plus a
few boolean/string points. ``small``: 100 series x 4,000 points (800,000 values), 2-3 shards.

The server root is stopped after the cache has been snapshotted and compactions have settled;
``influxd backup`` then takes a legacy and a portable backup of a fresh start on it (the portable
one timed: the reference for ``convert``). Everything lives under ``bench/cache/<mode>/``
(``INFLUX_ARCHIVE_BENCH_CACHE`` overrides the base); a ``DONE`` file marks a complete build.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))
import influxd as harness  # noqa: E402

VERSION = 1
START_NS = 1_790_000_000 * 10**9 - (1_790_000_000 * 10**9) % (6 * 3600 * 10**9)  # aligned to 6 h
MODES = {
    "full": {"series": 1000, "points": 10_080, "batch": 10_000},
    "small": {"series": 100, "points": 4_000, "batch": 5_000},
}


@dataclass
class Dataset:
    mode: str
    root: Path  # stopped server root (meta/, data/, wal/)
    legacy: Path
    portable: Path
    info: dict


def cache_base() -> Path:
    return Path(os.environ.get("INFLUX_ARCHIVE_BENCH_CACHE", HERE / "cache"))


def _lines(mode: str):
    cfg = MODES[mode]
    rnd = random.Random(20261125)
    state = [50.0 + rnd.random() * 10 for _ in range(cfg["series"])]
    counter = [0] * cfg["series"]
    for p in range(cfg["points"]):
        t = START_NS + p * 10 * 10**9
        out = []
        for s in range(cfg["series"]):
            state[s] += rnd.uniform(-0.5, 0.5)
            counter[s] += rnd.randrange(0, 100)
            out.append(f"cpu,host=h{s:03d} v={state[s]:.2f},n={counter[s]}i {t}")
        yield out


def build(mode: str = "full", *, log=print) -> Dataset:
    base = cache_base() / f"{mode}-v{VERSION}"
    done = base / "DONE"
    if done.exists():
        return Dataset(mode, base / "server", base / "legacy", base / "portable", json.loads(done.read_text()))
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    cfg = MODES[mode]
    t0 = time.monotonic()
    server = harness.InfluxServer(base / "server", cold="1s", extra={"data.compact-full-write-cold-duration": "2s"})
    server.start()
    try:
        server.execute("CREATE DATABASE bench WITH DURATION INF REPLICATION 1 SHARD DURATION 6h NAME autogen")
        batch: list[str] = []
        values = 0
        for rows in _lines(mode):
            batch.extend(rows)
            values += 2 * len(rows)
            if len(batch) >= cfg["batch"]:
                server.write("\n".join(batch), db="bench")
                batch = []
        if batch:
            server.write("\n".join(batch), db="bench")
        server.write('events,kind=deploy ok=true,msg="release 1.2.3" ' + str(START_NS + 3600 * 10**9), db="bench")
        values += 2
        log(f"dataset {mode}: wrote {values} values in {time.monotonic() - t0:.1f} s; waiting for compactions")
        _settle(base / "server" / "data", log)
    finally:
        server.stop()
    server = harness.InfluxServer(base / "server")
    server.start()
    try:
        proc = server.backup(base / "legacy", "-database", "bench")
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
        t1 = time.monotonic()
        proc = server.backup(base / "portable", "-portable", "-database", "bench")
        portable_s = time.monotonic() - t1
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
    finally:
        server.stop()
    tsm = sum(p.stat().st_size for p in (base / "server" / "data").rglob("*.tsm"))
    info = {
        "mode": mode,
        "values": values,
        "series": cfg["series"] + 1,
        "shards": len(list((base / "server" / "data" / "bench" / "autogen").iterdir())),
        "tsm_bytes": tsm,
        "legacy_bytes": sum(p.stat().st_size for p in (base / "legacy").iterdir()),
        "portable_bytes": sum(p.stat().st_size for p in (base / "portable").iterdir()),
        "build_seconds": round(time.monotonic() - t0, 1),
        "first_portable_backup_seconds": round(portable_s, 3),
    }
    done.write_text(json.dumps(info, indent=2))
    log(f"dataset {mode}: {info}")
    return Dataset(mode, base / "server", base / "legacy", base / "portable", info)


def _settle(data: Path, log, timeout: float = 600) -> None:
    """Wait until the cache is snapshotted and no TSM file changed for a few seconds."""
    deadline = time.monotonic() + timeout
    last = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        snap = sorted((str(p), p.stat().st_size) for p in data.rglob("*.tsm*"))
        if snap != last:
            last = snap
            stable_since = time.monotonic()
        elif time.monotonic() - stable_since > 8 and not any(n.endswith(".tmp") for n, _ in snap):
            return
        time.sleep(1)
    log("dataset: compactions did not settle within the timeout; using the files as they are")
