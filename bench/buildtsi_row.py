"""The build-tsi row of bench/run.py alone, on cached datasets (a printed ratio; nothing asserts
a time).

    python bench/buildtsi_row.py [--cache DIR] [--runs N] [--before DIR] [full random full-x10 ...]

Times ``influx-archive build-tsi`` against ``influx_inspect buildtsi`` exactly as
:func:`bench.run.measure` does (same commands, same untimed fresh copy of the server root with
``peers.copy_root`` and ``peers.wal_dirs_for_shards`` before each run, ours and the peer
alternating run by run), for iterating on build-tsi without the whole bench. Datasets are those
of bench/dataset.py (``name`` or ``name-xF``), built first when not cached, or the path of a
stopped server root (``data/``, ``wal/``), such as ``bench/cache/buildtsi-100000`` that
bench/buildtsi.py writes with influxd.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset as ds  # noqa: E402
import peers  # noqa: E402
from peers import CLI, Cmd, alternate, copy_root, fresh  # noqa: E402
from run import precompile  # noqa: E402


def _dataset(name: str) -> ds.Dataset:
    if os.path.isdir(os.path.join(name, "data")):  # a stopped server root, e.g. bench/buildtsi.py's cache
        root = Path(name).resolve()
        return ds.Dataset(root.name, root, root, root, {})
    base, _, factor = name.partition("-x")
    return ds.scaled(base, int(factor), log=lambda m: None) if factor else ds.build(base, log=lambda m: None)


def row(data: ds.Dataset, tmp: Path, runs: int, inspect: str, before: str | None = None,
        no_series_file: bool = False) -> dict[str, peers.Timing]:
    def prep(name: str):
        def p(i: int) -> None:
            copy_root(data.root, tmp / name)
            peers.wal_dirs_for_shards(tmp / name)
            if no_series_file:
                peers.drop_series_files(tmp / name)
        return p

    cmds = [
            Cmd("ours", lambda i: CLI + ["build-tsi", "--datadir", str(tmp / "ta" / "data"), "--waldir",
                                         str(tmp / "ta" / "wal")], prepare=prep("ta")),
            Cmd("influx_inspect buildtsi", lambda i: [inspect, "buildtsi", "-datadir", str(tmp / "tb" / "data"),
                                                      "-waldir", str(tmp / "tb" / "wal")], prepare=prep("tb"),
                stdin="y\n"),
    ]
    empty = tmp / "te"
    (empty / "data").mkdir(parents=True, exist_ok=True)
    (empty / "wal").mkdir(exist_ok=True)
    cmds += [  # each side's start-up (bench/results.py subtracts it for the work ratio)
        Cmd("ours, empty", lambda i: CLI + ["build-tsi", "--datadir", str(empty / "data"), "--waldir",
                                            str(empty / "wal")]),
        Cmd("influx_inspect, empty", lambda i: [inspect, "buildtsi", "-datadir", str(empty / "data"), "-waldir",
                                                str(empty / "wal")], stdin="y\n"),
    ]
    if before is not None:
        boot = f"import sys; sys.path.insert(0, {before!r}); from influx_archive.cli.main import main; main()"
        cmds.append(Cmd("before", lambda i: [sys.executable, "-c", boot, "build-tsi", "--datadir",
                                             str(tmp / "tc" / "data"), "--waldir", str(tmp / "tc" / "wal")],
                        prepare=prep("tc")))
    got = alternate(runs, cmds)
    for d in ("ta", "tb", "tc", "te"):
        fresh(tmp, d)
    return got


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="*", default=["full", "random", "full-x10", "random-x10"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-series-file", action="store_true", help="remove every database's _series from the "
                    "copies first (a tree restored offline with the inmem index: the series file built from scratch)")
    ap.add_argument("--cache", default=None, help="dataset cache directory (as bench/run.py --cache)")
    ap.add_argument("--before", default=None, metavar="DIR", help="also time the build-tsi of an earlier tree: DIR "
                    "holds influx_archive/{archive,cli,meta,tsm} (links to that tree, its extensions built in place)")
    args = ap.parse_args(argv)
    if args.cache:
        os.environ["INFLUX_ARCHIVE_BENCH_CACHE"] = str(Path(args.cache).resolve())
    inspect = peers.influx_inspect()
    sets = [_dataset(n) for n in args.datasets]
    precompile()
    base = ds.cache_base()
    with tempfile.TemporaryDirectory(prefix="ia-bench-", dir=base) as tmpd:
        for d in sets:
            t = row(d, Path(tmpd), args.runs, inspect, args.before, args.no_series_file)
            theirs = t["influx_inspect buildtsi"].seconds
            so, sp = t.pop("ours, empty").seconds, t.pop("influx_inspect, empty").seconds
            work = (t["ours"].seconds - so) / max(theirs - sp, 1e-9)
            print(f"{d.mode:12s} " + "  ".join(
                f"{k} {v.seconds:.3f} s ({', '.join(f'{x:.3f}' for x in v.runs)}) ratio {v.seconds / theirs:.2f}"
                for k, v in t.items()) + f"  start-up {so:.3f} / {sp:.3f} s, work ratio {work:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
