"""Timing primitives for bench/run.py: one child process timed (wall seconds, peak RSS), several
commands alternated run by run, and the copies of a server root the peers need.

Peak RSS is ``ru_maxrss`` of ``wait4`` on the child: the largest resident set of the child and of
every descendant it waited for (``sh -c 'tar ...'`` reports tar's).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_SCRIPT = Path(sys.executable).with_name("influx-archive")
#: the installed console command when there is one (what an operator runs), else the same entry point
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from influx_archive.cli.main import main; main()"]


def influx_inspect() -> str:
    """``$INFLUX_INSPECT`` or /work/cache/influx_inspect; exits with a clear line when missing."""
    path = os.environ.get("INFLUX_INSPECT") or "/work/cache/influx_inspect"
    if not os.access(path, os.X_OK):
        sys.exit(
            f"bench: influx_inspect 1.6.7 not found at {path}: set INFLUX_INSPECT (build it with "
            "InfluxData's 1.6.7 sources, see bench/README.md)"
        )
    return path


def run(argv: list[str], *, stdin: str | None = None) -> tuple[float, int]:
    """(seconds, peak RSS in MiB) of one child process; raises on failure."""
    # stderr goes to a file, never a pipe: influx_inspect buildtsi logs ~10 KB per shard and would
    # block on a full pipe that is read only after the exit
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errf,
        )
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errf.seek(0)
            err = errf.read().decode(errors="replace")
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()[-800:]}")
    return elapsed, usage.ru_maxrss // 1024


@dataclass
class Cmd:
    """One side of a comparison: ``argv(i)`` for run ``i``; ``prepare(i)`` runs untimed before it."""

    name: str
    argv: Callable[[int], list[str]]
    prepare: Callable[[int], None] | None = None
    stdin: str | None = None


@dataclass
class Timing:
    seconds: float  # median
    rss_mib: int  # largest of the runs
    runs: list[float] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"seconds": round(self.seconds, 4), "rss_mib": self.rss_mib, "runs": [round(t, 4) for t in self.runs]}


def alternate(runs: int, cmds: list[Cmd]) -> dict[str, Timing]:
    """Run every command once per round, ``runs`` rounds (ours, peer, ours, peer, ...); the median
    time and the largest peak RSS of each."""
    times: dict[str, list[float]] = {c.name: [] for c in cmds}
    rss: dict[str, int] = {c.name: 0 for c in cmds}
    for i in range(runs):
        for c in cmds:
            if c.prepare is not None:
                c.prepare(i)
            t, r = run(c.argv(i), stdin=c.stdin)
            times[c.name].append(t)
            rss[c.name] = max(rss[c.name], r)
    return {n: Timing(statistics.median(ts), rss[n], ts) for n, ts in times.items()}


def fresh(base: Path, name: str) -> Path:
    p = base / name
    if p.exists():
        shutil.rmtree(p)
    return p


def copy_root(src: Path, dst: Path) -> None:
    """A working copy of a stopped server root: TSM files hard-linked (influxd and every tool here
    only ever read them, never write one in place), everything else copied (the series file, the
    WAL, ``fields.idx`` and the metastore are written in place by influxd)."""

    def link_tsm(s: str, d: str) -> None:
        if s.endswith(".tsm"):
            try:
                os.link(s, d)
                return
            except OSError:
                pass
        shutil.copy2(s, d)

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=link_tsm, ignore=shutil.ignore_patterns("*.log", "*.sock"))


def wal_dirs_for_shards(root: Path) -> None:
    """``influx_inspect buildtsi`` wants a WAL directory for every shard; make the missing ones."""
    for shard in (root / "data").glob("*/*/*"):
        if shard.is_dir() and shard.name.isdigit() and shard.parent.name != "_series":
            (root / "wal" / shard.relative_to(root / "data")).mkdir(parents=True, exist_ok=True)


def drop_series_files(root: Path) -> None:
    """Remove every database's series file (``data/<db>/_series``): the tree an offline restore
    with the inmem index leaves, whose series file influxd would create on its first start."""
    for sdir in (root / "data").glob("*/_series"):
        shutil.rmtree(sdir)


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def has_verb(verb: str) -> bool:
    """True when ``influx-archive VERB --help`` works (a verb another branch adds)."""
    try:
        return subprocess.run(CLI + [verb, "--help"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
