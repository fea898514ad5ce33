"""Benchmarks: influx-archive against the real peers (influxd 1.6.7, influx_inspect 1.6.7, tar) on
the same data, in one run, ours and the peer alternating run by run.

    python bench/run.py                   # full: datasets full + random, and both at 10x
    python bench/run.py --quick           # small datasets (x2), 1 run each: a few minutes
    python bench/run.py --write-results   # also rewrite the tables of bench/RESULTS.md

Datasets (bench/dataset.py) are built once by driving influxd and cached under ``--cache`` (default
``$INFLUX_ARCHIVE_BENCH_CACHE`` or bench/cache/). Every figure is the median of ``--runs`` runs (3
by default; 1 at 10x and with --quick); peak RSS comes from ``wait4`` on each child process.
Prints the targets table, one table per dataset and the scaling table; ``--json FILE`` keeps
every measurement. Nothing here asserts a time. bench/README.md says what each row runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset as ds  # noqa: E402
import peers  # noqa: E402
import results  # noqa: E402
from peers import CLI, Cmd, alternate, copy_root, fresh  # noqa: E402

harness = ds.harness
FIXTURE_100K = HERE.parent / "fixtures" / "legacy"  # the shipped ~100 KB legacy backup


def precompile() -> None:
    """Byte-compile the package as ``pip install`` does, so that no run pays for compiling our
    sources (an editable install under PYTHONDONTWRITEBYTECODE=1 would, on every start)."""
    import compileall
    import importlib

    for sub in ("archive", "cli", "meta", "tsm"):
        mod = importlib.import_module(f"influx_archive.{sub}")
        compileall.compile_dir(str(Path(mod.__file__ or ".").parent), quiet=1)


def _untar(src: Path, dest: Callable, *, sync: bool) -> Callable[[int], list[str]]:
    def argv(i: int) -> list[str]:
        d = dest()
        d.mkdir(parents=True)
        script = f'cp "{src}"/meta.* "{d}"/ && for f in "{src}"/*.*.*.[0-9][0-9]; do tar -xf "$f" -C "{d}"; done'
        return ["sh", "-c", script + (f' && sync -f "{d}"' if sync else "")]

    return argv


def measure(data: ds.Dataset, tmp: Path, runs: int, inspect: str, log) -> dict:
    """Every comparison on one dataset; {verb: {side: Timing json}, ...} plus facts."""
    out: dict = {"info": data.info, "verbs": {}}
    verbs = out["verbs"]
    dbs = data.databases
    one_db = dbs == ["bench"]

    def rec(verb: str, timings: dict, **extra) -> None:
        verbs[verb] = {k: v.as_json() for k, v in timings.items()} | extra
        log(f"  {data.mode} {verb}: " + ", ".join(f"{k} {v.seconds:.2f} s {v.rss_mib} MiB" for k, v in timings.items()))

    # convert legacy -> portable, our offline backup of the stopped root, influxd backup -portable
    # of the same data from a live server (a copy of the root)
    live = fresh(tmp, "live")
    copy_root(data.root, live)
    server = harness.InfluxServer(live, extra={"data.compact-full-write-cold-duration": "10000h"})
    server.start()
    try:
        db_args = ["-database", "bench"] if one_db else []
        rec(
            "convert",
            alternate(
                runs,
                [
                    Cmd("ours", lambda i: CLI + ["convert", str(data.legacy), str(fresh(tmp, "conv")),
                                                 "--to", "portable"]),
                    Cmd("ours backup", lambda i: CLI + ["backup", str(data.root), str(fresh(tmp, "bk")),
                                                        "--to", "portable"]),
                    Cmd(
                        "influxd backup -portable",
                        lambda i: [server.binary, "backup", "-host", server.host, "-portable", *db_args,
                                   str(fresh(tmp, "ref"))],
                    ),
                ],
            ),
            out_bytes={"ours": peers.tree_bytes(tmp / "conv"), "ours backup": peers.tree_bytes(tmp / "bk"),
                       "influxd backup -portable": peers.tree_bytes(tmp / "ref")},
        )
    finally:
        server.stop()
    for d in ("live", "conv", "bk", "ref"):
        fresh(tmp, d)

    # export: the same stopped root for both (TSM + WAL)
    rec(
        "export",
        alternate(
            runs,
            [
                Cmd("ours", lambda i: CLI + ["export", str(data.root), "--out", str(tmp / "ours.lp"), "--force"]),
                Cmd(
                    "influx_inspect export",
                    lambda i: [inspect, "export", "-datadir", str(data.root / "data"), "-waldir",
                               str(data.root / "wal"), "-out", str(tmp / "theirs.lp")],
                ),
            ],
        ),
        out_bytes={"ours": (tmp / "ours.lp").stat().st_size,
                   "influx_inspect export": (tmp / "theirs.lp").stat().st_size},
    )
    (tmp / "ours.lp").unlink()
    (tmp / "theirs.lp").unlink()

    # verify: ours on the legacy backup (every byte checked is a byte read), influx_inspect on the root
    rec(
        "verify",
        alternate(
            runs,
            [
                Cmd("ours", lambda i: CLI + ["verify", str(data.legacy)]),
                Cmd("influx_inspect verify", lambda i: [inspect, "verify", "-dir", str(data.root)]),
            ],
        ),
        bytes=data.info["legacy_bytes"],
    )

    # restore (offline) against tar -x, tar -x + sync, and influxd's own offline restore
    def influxd_restore(i: int) -> list[str]:
        r = fresh(tmp, "ir")
        # one database per call; each call also restores the metastore (it names every database)
        exe = harness.require_influxd()
        return ["sh", "-c", " && ".join(
            f'"{exe}" restore -metadir "{r}/meta" -datadir "{r}/data" -database {db} "{data.legacy}" >/dev/null'
            for db in dbs
        )]

    rec(
        "restore",
        alternate(
            runs,
            [
                Cmd("ours", lambda i: CLI + ["restore", str(data.legacy), "--metadir", str(fresh(tmp, "rs") / "meta"),
                                             "--datadir", str(tmp / "rs" / "data")]),
                Cmd("tar -x", _untar(data.legacy, lambda: fresh(tmp, "untar"), sync=False)),
                Cmd("tar -x + sync", _untar(data.legacy, lambda: fresh(tmp, "untar"), sync=True)),
                Cmd("influxd restore", influxd_restore),
            ],
        ),
        bytes=data.info["legacy_bytes"],
    )
    for d in ("rs", "untar", "ir"):
        fresh(tmp, d)

    # trim a 2 h window inside one shard against a plain convert of the same portable backup
    lo = ds.START_NS + ds.SHARD_NS + 3600 * 10**9
    hi = lo + 2 * 3600 * 10**9
    rec(
        "trim",
        alternate(
            runs,
            [
                Cmd("ours", lambda i: CLI + ["trim", str(data.portable), str(fresh(tmp, "tr")), "--start", str(lo),
                                             "--end", str(hi)]),
                Cmd("ours convert", lambda i: CLI + ["convert", str(data.portable), str(fresh(tmp, "pc"))]),
            ],
        ),
    )
    for d in ("tr", "pc"):
        fresh(tmp, d)

    # build-tsi against influx_inspect buildtsi, each on a fresh copy of the root (copy untimed);
    # then on copies without their series files (the tree an offline inmem restore leaves). Each
    # side also runs on an empty data directory: its start-up, subtracted for the work ratio
    def prep(name: str, no_series_file: bool):
        def p(i: int) -> None:
            copy_root(data.root, tmp / name)
            peers.wal_dirs_for_shards(tmp / name)
            if no_series_file:
                peers.drop_series_files(tmp / name)
        return p

    empty = fresh(tmp, "te")
    (empty / "data").mkdir(parents=True)
    (empty / "wal").mkdir()
    for verb, scratch in (("build-tsi", False), ("build-tsi (no _series)", True)):
        rec(
            verb,
            alternate(
                runs,
                [
                    Cmd("ours", lambda i: CLI + ["build-tsi", "--datadir", str(tmp / "ta" / "data"), "--waldir",
                                                 str(tmp / "ta" / "wal")], prepare=prep("ta", scratch)),
                    Cmd("influx_inspect buildtsi",
                        lambda i: [inspect, "buildtsi", "-datadir", str(tmp / "tb" / "data"), "-waldir",
                                   str(tmp / "tb" / "wal")], prepare=prep("tb", scratch), stdin="y\n"),
                ] + ([
                    Cmd("ours, empty data directory",
                        lambda i: CLI + ["build-tsi", "--datadir", str(empty / "data"), "--waldir",
                                         str(empty / "wal")]),
                    Cmd("influx_inspect buildtsi, empty data directory",
                        lambda i: [inspect, "buildtsi", "-datadir", str(empty / "data"), "-waldir",
                                   str(empty / "wal")], stdin="y\n"),
                ] if not scratch else []),
            ),
        )
    for d in ("ta", "tb", "te"):
        fresh(tmp, d)

    # report --exact, once the verb exists (branch parity)
    if peers.has_verb("report"):
        rec(
            "report --exact",
            alternate(
                runs,
                [
                    Cmd("ours", lambda i: CLI + ["report", str(data.root / "data"), "--exact"]),
                    Cmd("influx_inspect report -exact",
                        lambda i: [inspect, "report", "-exact", str(data.root / "data")]),
                ],
            ),
        )

    # pack / unpack (sealed archives; no peer)
    archive = tmp / "a.tar.zst"
    rec("pack", alternate(runs, [Cmd("ours", lambda i: CLI + ["pack", str(data.legacy), str(archive), "--force"])]),
        bytes=data.info["legacy_bytes"], out_bytes={"ours": archive.stat().st_size})
    rec("unpack", alternate(runs, [Cmd("ours", lambda i: CLI + ["unpack", str(archive), str(fresh(tmp, "un"))])]),
        bytes=data.info["legacy_bytes"])
    (tmp / "a.tar.zst").unlink()
    fresh(tmp, "un")
    return out


def startup(runs: int) -> dict:
    """``--help`` and ``verify`` of the shipped ~100 KB legacy backup: interpreter + imports."""
    t = alternate(
        max(runs, 5),
        [Cmd("--help", lambda i: CLI + ["--help"]),
         Cmd("verify 100 KB", lambda i: CLI + ["verify", str(FIXTURE_100K)])],
    )
    return {k: v.as_json() for k, v in t.items()} | {"fixture_bytes": peers.tree_bytes(FIXTURE_100K)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", "--small", action="store_true", help="small datasets at x2, one run each (minutes)")
    ap.add_argument("--datasets", default=None, help="comma-separated recipes (default full,random; "
                    "--quick: small,random-small)")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure at 1x (default 3; 1 with --quick)")
    ap.add_argument("--scale", type=int, default=None, help="scale factor of the second pass (default 10; "
                    "2 with --quick; 1 = no second pass)")
    ap.add_argument("--scaled-runs", type=int, default=1, help="runs per figure at the scaled size (default 1)")
    ap.add_argument("--cache", default=None, help="dataset cache directory (default $INFLUX_ARCHIVE_BENCH_CACHE "
                    "or bench/cache)")
    ap.add_argument("--json", dest="json_out", default=None, help="also write every measurement to this JSON file")
    ap.add_argument("--write-results", action="store_true", help="rewrite the tables of bench/RESULTS.md")
    ap.add_argument("--results-file", default=str(HERE / "RESULTS.md"), help=argparse.SUPPRESS)  # for the test
    ap.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)  # the old default; kept as a no-op
    args = ap.parse_args(argv)
    if args.cache:
        os.environ["INFLUX_ARCHIVE_BENCH_CACHE"] = str(Path(args.cache).resolve())
    quick = args.quick
    names = (args.datasets or ("small,random-small" if quick else "full,random")).split(",")
    runs = args.runs or (1 if quick else 3)
    scale = args.scale or (2 if quick else 10)
    inspect = peers.influx_inspect()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    t_start = time.monotonic()
    sets = [ds.build(n, log=log) for n in names]
    scaled = [ds.scaled(n, scale, log=log) for n in names] if scale > 1 else []
    log(f"datasets ready after {time.monotonic() - t_start:.0f} s")
    precompile()
    doc: dict = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "quick": quick,
        "runs": runs,
        "scaled_runs": args.scaled_runs,
        "scale": scale,
        "machine": results.machine(),
        "versions": results.versions(inspect),
        "startup": startup(runs),
        "datasets": {},
    }
    base = ds.cache_base()
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ia-bench-", dir=base) as tmpd:
        for d in sets:
            doc["datasets"][d.mode] = measure(d, Path(tmpd), runs, inspect, log) | {"base": d.mode, "factor": 1}
        for n, d in zip(names, scaled):
            got = measure(d, Path(tmpd), args.scaled_runs, inspect, log)
            doc["datasets"][d.mode] = got | {"base": n, "factor": scale}
    doc["bench_seconds"] = round(time.monotonic() - t_start, 1)
    print(results.render(doc))
    log(f"bench finished in {doc['bench_seconds']:.0f} s")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(doc, indent=2))
    if args.write_results:
        results.write_results(Path(args.results_file), doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
