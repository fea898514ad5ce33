#!/usr/bin/env python3
"""How shard-file resolution scales with the number of tar members (issue 6, part).

Two steps run on every open of a backup, both fed here with synthetic members (no I/O):

* registration: every member of every shard tar of every increment is filed under its shard
  (``_add_tar_shard``; it used to rebuild a dict of every shard per tar, O(shards x tars));
* resolution: :meth:`Shard.layers` of one shard holding all the files (copies of one name across
  increments, block-filtered copies, compaction outputs superseding earlier files; it used to
  compare every file with every later one, O(n^2)).

Prints the seconds for 10k, 40k and 160k members and the growth factor per step (x4 members):
about 4-5 for O(n log n), 16 for O(n^2). Usage: ``python bench/linear_resolution.py``.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from influx_archive.archive.sources.model import Shard, ShardFile, mark_range_increments
from influx_archive.archive.sources.ondisk import DiskSource, add_tar_shard
from influx_archive.archive.sources.tarscan import TarMember


def members_for(n: int, rng: random.Random) -> tuple[list[ShardFile], dict]:
    """n TSM/tombstone files of one shard over 8 increments, and n members over n/4 shard tars."""
    files = []
    gen = 0
    for i in range(n):
        inc = i * 8 // n
        kind = "tombstone" if i % 5 == 4 else "tsm"
        if i % 3 == 0 or gen == 0:
            gen += 1
        seq = rng.choice([1, 1, 1, 2, 3])
        name = f"{gen:09d}-{seq:09d}.{kind}"
        size = 1000 + rng.randrange(4) * 100  # some names come back smaller: range copies
        files.append(ShardFile(name, kind, size, "/nowhere", "m", inc, mtime=10 + inc, set_time=10 + inc + (i % 2)))
    tars = {}
    for t in range(max(1, n // 4)):
        tars[f"/nowhere/db.rp.{t:05d}.00"] = [
            TarMember(
                f"db/rp/{t}/{k:09d}-000000001.tsm", ("db", "rp", t, f"{k:09d}-000000001.tsm"), 100, 512 * (k + 1), 0
            )
            for k in range(4)
        ]
    return files, tars


def main() -> int:
    rng = random.Random(6)
    last = {}
    print(f"{'members':>8}  {'register s':>10}  {'x':>5}  {'resolve s':>10}  {'x':>5}")
    for n in (10_000, 40_000, 160_000):
        files, tars = members_for(n, rng)
        src = DiskSource("legacy", "/nowhere", prescanned=tars)
        t0 = time.perf_counter()
        for path in tars:
            add_tar_shard(src, Path(path), gz=False, increment=0, fallback=None)
        reg = time.perf_counter() - t0
        shard = Shard("db", "rp", 1, files=files)
        t0 = time.perf_counter()
        mark_range_increments([shard])
        layers = shard.layers()
        res = time.perf_counter() - t0
        assert len(src.shards) == len(tars) and layers
        fr = f"{reg / last['reg']:5.1f}" if last else "    -"
        fs = f"{res / last['res']:5.1f}" if last else "    -"
        print(f"{n:>8}  {reg:>10.3f}  {fr}  {res:>10.3f}  {fs}")
        last = {"reg": reg, "res": res}
    return 0


if __name__ == "__main__":
    sys.exit(main())
