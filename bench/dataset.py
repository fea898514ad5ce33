"""Build (once) and cache the benchmark datasets with the real influxd 1.6.7.

Recipes (``RECIPES``; each is cached under ``<cache>/<name>-v<version>/``, so a changed recipe
bumps its version and rebuilds):

* ``full``: 1,000 series (``cpu,host=h000..h999``) x 2 fields (float ``v`` as a random walk with
  two decimals, integer ``n`` a growing counter) x 10,080 points 10 s apart (28 hours) = 20.2
  million values in 5 shards (6-hour shard groups), fully compacted: one TSM file per shard.
* ``random``: the same shape with **near-random values** (floats of 17 significant digits, 63-bit
  integers; neither Gorilla nor simple8b can shrink them) and **three level-1 TSM files per shard**,
  the shape of every recently written shard. Each shard's points are written in three time slices;
  after each slice the server is left idle until the cache snapshot (``cache-snapshot-write-cold-
  duration``) has written one level-1 file per shard. The snapshot size limit is raised so a slice
  is never split, and ``compact-full-write-cold-duration`` is 10,000 h so nothing is compacted
  (the level-1 planner needs 8 files of a level). The shape is checked before the cache is kept.
* ``small`` / ``random-small``: the same recipes with 100 series (``--quick``); ``tiny`` /
  ``random-tiny``: 20 series (tests/test_bench_smoke.py).

Plus one ``events,kind=deploy`` point (a boolean and a string field) in every dataset.

Writes go over HTTP in gzip bodies of ~50,000 lines, from two processes in parallel.

:func:`scaled` builds the same dataset at ``factor`` times its size with influxd alone: a fresh
server, ``influxd restore -portable -db bench -newdb benchK`` of the dataset's portable backup
once per copy (the shard files are imported as they are, so their shape is kept), then influxd's
legacy (one ``influxd backup -database benchK`` per database into one directory) and portable
backups of it.

Each cache directory holds the stopped server root (``server/``: meta, data, wal), a legacy and a
portable backup of a fresh start on it, and a ``DONE`` file (the dataset's facts, JSON) marking a
complete build. The base is ``INFLUX_ARCHIVE_BENCH_CACHE`` (``bench/run.py --cache`` sets it) or
``bench/cache/``.
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import random
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))
import influxd as harness  # noqa: E402

START_NS = 1_790_000_000 * 10**9 - (1_790_000_000 * 10**9) % (6 * 3600 * 10**9)  # aligned to 6 h
SHARD_NS = 6 * 3600 * 10**9
STEP_NS = 10 * 10**9
RECIPES: dict[str, dict] = {
    "full": {"version": 1, "series": 1000, "points": 10_080, "values": "walk", "files": 0},
    "small": {"version": 1, "series": 100, "points": 4_000, "values": "walk", "files": 0},
    "random": {"version": 1, "series": 1000, "points": 10_080, "values": "random", "files": 3},
    "random-small": {"version": 1, "series": 100, "points": 4_320, "values": "random", "files": 3},
    # tests/test_bench_smoke.py
    "tiny": {"version": 1, "series": 20, "points": 4_000, "values": "walk", "files": 0},
    # one HTTP body per shard and slice: a short idle time cannot split a slice
    "random-tiny": {"version": 1, "series": 20, "points": 4_320, "values": "random", "files": 3, "cold": "1s"},
}
SCALED_VERSION = 1
_BATCH_SERIES = 50  # series per HTTP body (x points of one slice of a shard)


@dataclass
class Dataset:
    mode: str
    root: Path  # stopped server root (meta/, data/, wal/)
    legacy: Path
    portable: Path
    info: dict

    @property
    def databases(self) -> list[str]:
        return list(self.info.get("databases", ["bench"]))


def cache_base() -> Path:
    return Path(os.environ.get("INFLUX_ARCHIVE_BENCH_CACHE", HERE / "cache"))


def _open_cached(mode: str, base: Path) -> Dataset | None:
    done = base / "DONE"
    if not done.exists():
        return None
    return Dataset(mode, base / "server", base / "legacy", base / "portable", json.loads(done.read_text()))


# ---------------------------------------------------------------------------------------------
# line protocol


def _walk_lines(cfg: dict) -> Iterator[list[str]]:
    """The ``full`` recipe's values, as before (one list of lines per time step)."""
    rnd = random.Random(20261125)
    state = [50.0 + rnd.random() * 10 for _ in range(cfg["series"])]
    counter = [0] * cfg["series"]
    for p in range(cfg["points"]):
        t = START_NS + p * STEP_NS
        out = []
        for s in range(cfg["series"]):
            state[s] += rnd.uniform(-0.5, 0.5)
            counter[s] += rnd.randrange(0, 100)
            out.append(f"cpu,host=h{s:03d} v={state[s]:.2f},n={counter[s]}i {t}")
        yield out


def _slices(cfg: dict) -> list[list[tuple[int, int]]]:
    """Per slice (``files`` of them), the point ranges [p0, p1) of every shard in that slice."""
    per_shard = SHARD_NS // STEP_NS
    shards = [(p, min(p + per_shard, cfg["points"])) for p in range(0, cfg["points"], per_shard)]
    n = cfg["files"]
    out: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for a, b in shards:
        cuts = [a + (b - a) * k // n for k in range(n + 1)]
        for k in range(n):
            out[k].append((cuts[k], cuts[k + 1]))
    return out


def _random_body(task: tuple[str, int, int, int, int, str]) -> int:
    """Write one gzip body of random values (series s0..s1, points p0..p1, plus the ``extra`` line
    when there is one) to ``url``; values sent."""
    url, s0, s1, p0, p1, extra = task
    rnd = random.Random(s0 * 1_000_003 + p0)
    lines = [extra] if extra else []
    r, bits = rnd.random, rnd.getrandbits
    for s in range(s0, s1):
        head = f"cpu,host=h{s:03d} v="
        for p in range(p0, p1):
            lines.append(f"{head}{(r() - 0.5) * 2e6!r},n={bits(63) - 2**62}i {START_NS + p * STEP_NS}")
    _post(url, "\n".join(lines).encode())
    return 2 * len(lines)  # the extra line also holds two values


def _post(url: str, body: bytes) -> None:
    req = urllib.request.Request(url, data=gzip.compress(body, 1), method="POST")
    req.add_header("Content-Encoding", "gzip")
    req.add_header("Content-Type", "text/plain; charset=utf-8")
    with urllib.request.urlopen(req, timeout=600) as resp:
        if resp.status != 204:
            raise RuntimeError(f"write: HTTP {resp.status}: {resp.read()[:500]!r}")


def _tsm_counts(data: Path) -> dict[str, int]:
    return {
        str(d.relative_to(data)): len(list(d.glob("*.tsm")))
        for d in sorted((data / "bench").glob("*/*"))
        if d.is_dir() and d.name.isdigit() and d.parent.name != "_series"
    }


def _wait_files(data: Path, want: int, shards: int, log, timeout: float = 900) -> None:
    """Wait until every one of ``shards`` shards has ``want`` TSM files and nothing is in flight."""
    deadline = time.monotonic() + timeout
    last, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        counts = _tsm_counts(data)
        tmp = any(p.name.endswith(".tmp") for p in data.rglob("*"))
        snap = (tuple(sorted(counts.items())), tmp)
        if snap != last:
            last, stable_since = snap, time.monotonic()
        ok = len(counts) == shards and all(v == want for v in counts.values()) and not tmp
        if ok and time.monotonic() - stable_since > 2:
            return
        if any(v > want for v in counts.values()):
            raise RuntimeError(f"dataset: expected {want} TSM files per shard, found {counts}")
        time.sleep(0.5)
    raise RuntimeError(f"dataset: snapshots did not reach {want} TSM files per shard within {timeout} s: {last}")


# ---------------------------------------------------------------------------------------------
# build


def build(mode: str = "full", *, log=print) -> Dataset:
    cfg = RECIPES[mode]
    base = cache_base() / f"{mode}-v{cfg['version']}"
    cached = _open_cached(mode, base)
    if cached is not None:
        return cached
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    t0 = time.monotonic()
    if cfg["files"]:
        extra = {
            "data.cache-snapshot-memory-size": "1g",
            "data.cache-max-memory-size": "4g",
            "data.compact-full-write-cold-duration": "10000h",
            "http.max-body-size": 0,
        }
        server = harness.InfluxServer(base / "server", cold=cfg.get("cold", "4s"), extra=extra)
    else:
        server = harness.InfluxServer(
            base / "server", cold="1s", extra={"data.compact-full-write-cold-duration": "2s"}
        )
    server.start()
    event = 'events,kind=deploy ok=true,msg="release 1.2.3" ' + str(START_NS + 3600 * 10**9)
    try:
        server.execute("CREATE DATABASE bench WITH DURATION INF REPLICATION 1 SHARD DURATION 6h NAME autogen")
        values = 0
        if cfg["files"]:
            url = f"{server.url}/write?db=bench&precision=ns"
            slices = _slices(cfg)
            n_shards = len(slices[0])
            with multiprocessing.get_context("fork").Pool(2) as pool:
                for k, ranges in enumerate(slices):
                    # the event goes in the very first body: a write of its own could be
                    # snapshotted alone (a fourth file) while the pool starts
                    tasks = [
                        (url, s, min(s + _BATCH_SERIES, cfg["series"]), a, b, event if k == j == s == 0 else "")
                        for j, (a, b) in enumerate(ranges)
                        for s in range(0, cfg["series"], _BATCH_SERIES)
                    ]
                    values += sum(pool.imap_unordered(_random_body, tasks))
                    log(f"dataset {mode}: slice {k + 1}/{len(slices)} written ({values} values), waiting for snapshots")
                    _wait_files(base / "server" / "data", k + 1, n_shards, log)
        else:
            batch: list[str] = []
            for rows in _walk_lines(cfg):
                batch.extend(rows)
                values += 2 * len(rows)
                if len(batch) >= 10_000:
                    server.write("\n".join(batch), db="bench")
                    batch = []
            if batch:
                server.write("\n".join(batch), db="bench")
            server.write(event, db="bench")
            values += 2
            log(f"dataset {mode}: wrote {values} values in {time.monotonic() - t0:.1f} s; waiting for compactions")
            _settle(base / "server" / "data", log)
    finally:
        server.stop()
    shape = _tsm_counts(base / "server" / "data")
    if cfg["files"] and any(v != cfg["files"] for v in shape.values()):
        raise RuntimeError(f"dataset {mode}: TSM files per shard after stop: {shape}")
    portable_s = _backups(base, ["bench"], cold_extra=cfg["files"] > 0)
    info = _facts(base, mode, values, cfg["series"] + 1, ["bench"], t0, portable_s)
    info["recipe"] = cfg
    (base / "DONE").write_text(json.dumps(info, indent=2))
    log(f"dataset {mode}: {info}")
    return Dataset(mode, base / "server", base / "legacy", base / "portable", info)


def _no_compaction() -> dict:
    return {"data.compact-full-write-cold-duration": "10000h"}


def _backups(base: Path, dbs: list[str], *, cold_extra: bool) -> float:
    """influxd's legacy and portable backups of a fresh start on ``base/server``; seconds of the
    portable one."""
    server = harness.InfluxServer(base / "server", extra=_no_compaction() if cold_extra else None)
    server.start()
    try:
        for db in dbs:
            proc = server.backup(base / "legacy", "-database", db)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
        t1 = time.monotonic()
        args = ["-portable", "-database", "bench"] if dbs == ["bench"] else ["-portable"]
        proc = server.backup(base / "portable", *args)
        portable_s = time.monotonic() - t1
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr)
    finally:
        server.stop()
    return portable_s


def _facts(base: Path, mode: str, values: int, series: int, dbs: list[str], t0: float, portable_s: float) -> dict:
    data = base / "server" / "data"
    return {
        "mode": mode,
        "values": values,
        "series": series,
        "databases": dbs,
        "shards": sum(len(list((data / db / "autogen").iterdir())) for db in dbs),
        "tsm_files_per_shard": sorted(set(_tsm_counts_all(data, dbs).values())),
        "tsm_bytes": sum(p.stat().st_size for p in data.rglob("*.tsm")),
        "legacy_bytes": sum(p.stat().st_size for p in (base / "legacy").iterdir()),
        "portable_bytes": sum(p.stat().st_size for p in (base / "portable").iterdir()),
        "build_seconds": round(time.monotonic() - t0, 1),
        "first_portable_backup_seconds": round(portable_s, 3),
    }


def _tsm_counts_all(data: Path, dbs: list[str]) -> dict[str, int]:
    return {
        str(d.relative_to(data)): len(list(d.glob("*.tsm")))
        for db in dbs
        for d in (data / db).glob("*/*")
        if d.is_dir() and d.name.isdigit() and d.parent.name != "_series"
    }


def scaled(mode: str, factor: int, *, log=print) -> Dataset:
    """``mode`` at ``factor`` x its size: ``factor`` databases (bench, bench1, ...) holding the
    same shards, imported by influxd's own portable restore (see the module docstring)."""
    one = build(mode, log=log)
    name = f"{mode}-x{factor}"
    base = cache_base() / f"{name}-v{RECIPES[mode]['version']}.{SCALED_VERSION}"
    cached = _open_cached(name, base)
    if cached is not None:
        return cached
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    t0 = time.monotonic()
    dbs = ["bench"] + [f"bench{k}" for k in range(1, factor)]
    server = harness.InfluxServer(base / "server", extra=_no_compaction())
    server.start()
    try:
        for db in dbs:
            args = ["-db", "bench"] + ([] if db == "bench" else ["-newdb", db])
            proc = server.restore_portable(one.portable, *args)
            if proc.returncode != 0:
                raise RuntimeError(f"influxd restore -portable {' '.join(args)}: {proc.stderr[-500:]}")
        log(f"dataset {name}: {factor} copies imported by influxd restore -portable")
    finally:
        server.stop()
    want = sorted(set(one.info.get("tsm_files_per_shard", [1])))
    have = sorted(set(_tsm_counts_all(base / "server" / "data", dbs).values()))
    if have != want:
        raise RuntimeError(f"dataset {name}: TSM files per shard {have}, the 1x dataset has {want}")
    portable_s = _backups(base, dbs, cold_extra=True)
    info = _facts(base, name, factor * one.info["values"], factor * one.info["series"], dbs, t0, portable_s)
    info["factor"] = factor
    (base / "DONE").write_text(json.dumps(info, indent=2))
    log(f"dataset {name}: {info}")
    return Dataset(name, base / "server", base / "legacy", base / "portable", info)


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


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="build and cache the bench datasets")
    ap.add_argument("modes", nargs="*", default=["full", "random"])
    ap.add_argument("--scale", type=int, default=10, help="also build each at this factor (0: no)")
    ap.add_argument("--cache", help="cache directory (default $INFLUX_ARCHIVE_BENCH_CACHE or bench/cache)")
    args = ap.parse_args(argv)
    if args.cache:
        os.environ["INFLUX_ARCHIVE_BENCH_CACHE"] = args.cache
    for mode in args.modes:
        d = build(mode)
        print(mode, d.info, flush=True)
        if args.scale > 1:
            print(mode, scaled(mode, args.scale).info, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
