"""Merging overlapping blocks within a memory bound: the windowed merge equals the plain one.

ShardReader merges blocks whose time ranges overlap (across files, or inside one); a group that
would hold more than ``MERGE_BUDGET`` merged values is merged window by window instead. Cases are
generated (chains of overlapping blocks as backfills leave them, blocks that all span the same
time, duplicate timestamps, a time range cut) with the budget lowered so that every group takes
the windowed path, and compared with the precedence rule stated directly: later file wins, inside
a file the later index entry wins, the cache above all.
"""

from __future__ import annotations

import random
import sys
import tracemalloc
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_shard_merge import MemTSM

from influx_archive.tsm import shard as shard_mod
from influx_archive.tsm.block import FLOAT, INTEGER
from influx_archive.tsm.shard import ShardReader

K = b"cpu,host=a#!~#v"


def _expected(files: list[list[tuple[list[int], list]]], lo: int, hi: int) -> tuple[list[int], list]:
    merged: dict[int, object] = {}
    for blocks in files:  # oldest file first; entries in index order
        for ts, vs in blocks:
            merged.update((t, v) for t, v in zip(ts, vs) if lo <= t <= hi)
    order = sorted(merged)
    return order, [merged[t] for t in order]


def _case(rng: random.Random, shape: str) -> list[list[tuple[list[int], list]]]:
    files = []
    for f in range(rng.randint(2, 5)):
        blocks = []
        if shape == "chain":  # blocks of each file offset from the others': one long overlap chain
            start = f * 7
            for _ in range(rng.randint(3, 12)):
                ts = sorted(rng.sample(range(start, start + 40), rng.randint(1, 25)))
                blocks.append((ts, [float(f * 1000 + t) for t in ts]))
                start += rng.randint(20, 40)
        else:  # every block spans (nearly) the same time
            for _ in range(rng.randint(2, 8)):
                ts = sorted(rng.sample(range(300), rng.randint(2, 60)))
                ts[0], ts[-1] = min(ts[0], rng.randint(0, 3)), max(ts[-1], 296 + rng.randint(0, 3))
                ts = sorted(set(ts))
                blocks.append((ts, [float(f * 1000 + t) for t in ts]))
        files.append(blocks)
    return files


@pytest.mark.slow
@pytest.mark.parametrize("budget", [1, 5, 40])
@pytest.mark.parametrize("shape", ["chain", "same-span"])
@pytest.mark.parametrize("seed", range(25))
def test_windowed_merge_equals_the_precedence_rule(monkeypatch, budget: int, shape: str, seed: int) -> None:
    rng = random.Random(seed * 7919 + budget)
    files = _case(rng, shape)
    lo, hi = (None, None) if seed % 3 else (rng.randint(0, 50), rng.randint(150, 400))
    readers = [(MemTSM(f"00000000{i + 1}-000000001.tsm", {K: (FLOAT, blocks)}), None) for i, blocks in enumerate(files)]
    monkeypatch.setattr(shard_mod, "MERGE_BUDGET", budget)
    typ, ts, vs = ShardReader(readers).read(K, lo, hi)
    want = _expected(files, -(1 << 63) if lo is None else lo, (1 << 63) - 1 if hi is None else hi)
    assert typ == FLOAT and (ts, vs) == want
    # the chunks never hold more than the budget's worth of a window, and are in time order
    parts = list(ShardReader(readers).iter_blocks(K, lo, hi))
    flat = [t for p in parts for t in getattr(p, "timestamps", [])]
    assert flat == sorted(set(flat))


@pytest.mark.slow
def test_large_overlapping_group_is_merged_in_bounded_windows(monkeypatch) -> None:
    """160 integer blocks of 1000 points each, every one overlapping its neighbours (a chain that
    makes the whole series one group): with a budget of 8,000 the merge's peak allocation is a
    fraction of the plain merge's, and the output is the precedence rule's."""
    rng = random.Random(5)
    files = []
    for f in range(4):
        blocks = []
        for b in range(40):
            base = b * 10_000 + f * 2_500  # each block spans 40,000 ns: it overlaps its neighbours
            ts = sorted(rng.sample(range(base, base + 40_000), 1000))
            blocks.append((ts, [rng.randint(0, 9) for _ in ts]))
        files.append(blocks)
    readers = [
        (MemTSM(f"00000000{i + 1}-000000001.tsm", {K: (INTEGER, blocks)}), None) for i, blocks in enumerate(files)
    ]
    want = _expected(files, -(1 << 63), (1 << 63) - 1)

    def peak(budget: int) -> int:
        monkeypatch.setattr(shard_mod, "MERGE_BUDGET", budget)
        got_ts: list[int] = []
        tracemalloc.start()
        try:
            for part in ShardReader(readers).iter_blocks(K):
                got_ts.extend(part.timestamps[:1])  # consume; keep almost nothing
            _, top = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return top

    plain, windowed = peak(10**9), peak(8_000)
    assert windowed * 3 < plain, (plain, windowed)
    monkeypatch.setattr(shard_mod, "MERGE_BUDGET", 8_000)
    typ, ts, vs = ShardReader(readers).read(K)
    assert (ts, vs) == want and typ == INTEGER
