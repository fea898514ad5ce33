"""Benchmarks: influx-archive against influxd 1.6.7 on the same data, in one run.

    python bench/run.py            # full dataset (20 M values; built once, cached in bench/cache/)
    python bench/run.py --small    # 200 k values, 1 run each: checks that everything works

Prints one table (ours, reference, ratio, target) and writes bench/RESULTS.md (full mode) with the
machine and date. Every figure is the median of ``--runs`` runs (3 by default; 1 with --small);
peak RSS comes from ``wait4`` on each child process. Nothing here asserts a time.

``python bench/linear.py`` is the linearity benchmark (WAL resynchronisation, manifests, metastore
merge and codec, TSM index scan at n = 10k / 40k / 160k, with the ratio per 4x); its table is the
"Linearity" section of bench/RESULTS.md, which this script keeps when it rewrites the file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset as ds  # noqa: E402

harness = ds.harness
_SCRIPT = Path(sys.executable).with_name("influx-archive")
#: the installed console command when there is one (what an operator runs), else the same entry point
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from influx_archive.cli.main import main; main()"]


def precompile() -> None:
    """Byte-compile the package as ``pip install`` does, so that no run pays for compiling our
    sources (an editable install under PYTHONDONTWRITEBYTECODE=1 would, on every start)."""
    import compileall
    import importlib

    for sub in ("archive", "cli", "meta", "tsm"):
        mod = importlib.import_module(f"influx_archive.{sub}")
        compileall.compile_dir(str(Path(mod.__file__).parent), quiet=1)


def run(argv: list[str], *, cwd: str | None = None) -> tuple[float, int]:
    """(seconds, peak RSS in MiB) of one child process; raises on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err.strip()[-500:]}")
    return elapsed, usage.ru_maxrss // 1024


def median_of(runs: int, make_argv, prepare=None) -> tuple[float, int]:
    times, rss = [], []
    for i in range(runs):
        if prepare is not None:
            prepare(i)
        t, r = run(make_argv(i))
        times.append(t)
        rss.append(r)
    return statistics.median(times), max(rss)


def fresh(base: Path, name: str) -> Path:
    p = base / name
    if p.exists():
        shutil.rmtree(p)
    return p


def select_all_values(server) -> int:
    """Ask influxd for every value (SELECT * ... GROUP BY *, chunked), read it all, count values."""
    n = 0
    for m in ("cpu", "events"):
        q = urllib.parse.urlencode(
            {"db": "bench", "q": f'SELECT * FROM "{m}" GROUP BY *', "chunked": "true", "chunk_size": "10000"}
        )
        with urllib.request.urlopen(f"{server.url}/query?{q}", timeout=3600) as resp:
            for line in resp:
                doc = json.loads(line)
                for res in doc.get("results", []):
                    for s in res.get("series", []) or []:
                        cols = len(s["columns"]) - 1
                        for row in s.get("values", []):
                            n += sum(1 for v in row[1:] if v is not None) if cols else 0
    return n


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    except OSError:
        mem = 0
    return f"{os.cpu_count()} cores, {cpu}, {mem} GiB RAM, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="small dataset, one run each (a smoke run)")
    ap.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; 1 with --small)")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    args = ap.parse_args()
    mode = "small" if args.small else "full"
    runs = args.runs or (1 if args.small else 3)
    data = ds.build(mode, log=lambda m: print(m, file=sys.stderr))
    precompile()
    info = data.info
    legacy_bytes = info["legacy_bytes"]
    rows: list[tuple[str, str, str, str, str, str]] = []
    rss: dict[str, int] = {}

    with tempfile.TemporaryDirectory(prefix="ia-bench-", dir=ds.cache_base()) as tmpd:
        tmp = Path(tmpd)

        # convert legacy -> portable  vs  influxd backup -portable of the same data from a live server
        ours, rss["convert"] = median_of(
            runs, lambda i: CLI + ["convert", str(data.legacy), str(fresh(tmp, "conv")), "--to", "portable"]
        )
        server = harness.InfluxServer(fresh(tmp, "live"))
        shutil.copytree(data.root / "meta", server.meta_dir)
        shutil.copytree(data.root / "data", server.data_dir)
        shutil.copytree(data.root / "wal", server.wal_dir)
        server.start()
        try:
            ref, _ = median_of(
                runs,
                lambda i: [
                    server.binary,
                    "backup",
                    "-host",
                    server.host,
                    "-portable",
                    "-database",
                    "bench",
                    str(fresh(tmp, "ref")),
                ],
            )
            t0 = time.perf_counter()
            n_select = select_all_values(server)
            select_s = time.perf_counter() - t0
        finally:
            server.stop()
        rows.append(
            (
                "convert legacy->portable",
                f"{ours:.2f} s",
                f"{ref:.2f} s (influxd backup -portable)",
                f"{ours / ref:.2f}",
                "<= 1.0",
                _met(ours / ref <= 1.0),
            )
        )

        # restore  vs  tar -x of the same legacy shard tars (+ the meta file)
        def untar(src: Path, *, sync: bool = False) -> Callable[[int], list[str]]:
            def argv(i: int) -> list[str]:
                d = fresh(tmp, "untar")
                d.mkdir()
                script = f'cp "{src}"/meta.* "{d}"/ && for f in "{src}"/bench*.*.*.*; do tar -xf "$f" -C "{d}"; done'
                return ["sh", "-c", script + (f' && sync -f "{d}"' if sync else "")]
            return argv

        def restore(src: Path) -> Callable[[int], list[str]]:
            return lambda i: (
                CLI
                + [
                    "restore",
                    str(src),
                    "--metadir",
                    str(fresh(tmp, "rs") / "meta"),
                    "--datadir",
                    str(tmp / "rs" / "data"),
                ]
            )

        ref, _ = median_of(runs, untar(data.legacy))
        ref_sync, _ = median_of(runs, untar(data.legacy, sync=True))
        # influxd's own offline restore of the same backup (it fsyncs every file too, checks no CRC)
        influxd_restore, _ = median_of(
            runs,
            lambda i: [
                server.binary,
                "restore",
                "-metadir",
                str(fresh(tmp, "ir") / "meta"),
                "-datadir",
                str(tmp / "ir" / "data"),
                "-database",
                "bench",
                str(data.legacy),
            ],
        )
        ours, rss["restore"] = median_of(runs, restore(data.legacy))
        startup, _ = median_of(runs, lambda i: restore(data.legacy)(i) + ["--dry-run"])  # everything but the copy
        steady = ours - startup
        rows.append(
            (
                "restore (offline)",
                f"{ours:.2f} s",
                f"{ref:.2f} s (tar -x)",
                f"{ours / ref:.2f}",
                "<= 1.5",
                _met(ours / ref <= 1.5),
            )
        )
        rows.append(
            (
                "restore, same durability",
                f"{ours:.2f} s",
                f"{ref_sync:.2f} s (tar -x, then sync -f: our restore fsyncs every file)",
                f"{ours / ref_sync:.2f}",
                "<= 1.5",
                _met(ours / ref_sync <= 1.5),
            )
        )
        rows.append(
            (
                "restore, against influxd",
                f"{ours:.2f} s",
                f"{influxd_restore:.2f} s (influxd restore -metadir -datadir -database)",
                f"{ours / influxd_restore:.2f}",
                "",
                "",
            )
        )
        rows.append(
            (
                "restore, start-up excluded",
                f"{steady:.2f} s",
                f"{ref:.2f} s (tar -x); start-up and plan {startup:.2f} s (restore --dry-run)",
                f"{steady / ref:.2f}",
                "<= 1.5",
                _met(steady / ref <= 1.5),
            )
        )

        # the same at 10x the size, where start-up counts for less: ten copies of the data (our
        # restore with --newdb bench0..bench9 into one server root) backed up as one legacy backup
        root = fresh(tmp, "root10")
        for k in range(10):
            run(
                CLI
                + [
                    "restore",
                    str(data.legacy),
                    "--metadir",
                    str(root / "meta"),
                    "--datadir",
                    str(root / "data"),
                    "--db",
                    "bench",
                    "--newdb",
                    f"bench{k}",
                ]
            )
        (root / "wal").mkdir()
        big = fresh(tmp, "legacy10")
        run(CLI + ["convert", str(root), str(big), "--to", "legacy"])
        shutil.rmtree(root)
        big_bytes = sum(p.stat().st_size for p in big.iterdir())
        ref, _ = median_of(runs, untar(big))
        ref_sync, _ = median_of(runs, untar(big, sync=True))
        ours, _ = median_of(runs, restore(big))
        size = f"{big_bytes / 1e6:.0f} MB"
        rows.append(
            (
                f"restore, 10x ({size})",
                f"{ours:.2f} s",
                f"{ref:.2f} s (tar -x)",
                f"{ours / ref:.2f}",
                "<= 1.5",
                _met(ours / ref <= 1.5),
            )
        )
        rows.append(
            (
                "restore, 10x, same durability",
                f"{ours:.2f} s",
                f"{ref_sync:.2f} s (tar -x, then sync -f)",
                f"{ours / ref_sync:.2f}",
                "<= 1.5",
                _met(ours / ref_sync <= 1.5),
            )
        )
        shutil.rmtree(big)
        for d in ("rs", "untar", "ir"):
            shutil.rmtree(tmp / d, ignore_errors=True)

        # trim a window inside one shard  vs  plain convert of the same (portable) source
        lo = ds.START_NS + 6 * 3600 * 10**9 + 3600 * 10**9
        hi = lo + 2 * 3600 * 10**9
        ref, _ = median_of(runs, lambda i: CLI + ["convert", str(data.portable), str(fresh(tmp, "pc"))])
        ours, rss["trim"] = median_of(
            runs,
            lambda i: CLI + ["trim", str(data.portable), str(fresh(tmp, "tr")), "--start", str(lo), "--end", str(hi)],
        )
        rows.append(
            (
                "trim (2 h inside one shard)",
                f"{ours:.2f} s",
                f"{ref:.2f} s (convert)",
                f"{ours / ref:.2f}",
                "<= 1.2",
                _met(ours / ref <= 1.2),
            )
        )

        # export values/s  vs  influxd SELECT * GROUP BY * over HTTP
        ours, rss["export"] = median_of(
            runs, lambda i: CLI + ["export", str(data.legacy), "--out", str(tmp / "export.lp"), "--force"]
        )
        ours_rate = info["values"] / ours
        ref_rate = n_select / select_s
        rows.append(
            (
                "export",
                f"{ours_rate / 1e6:.2f} M values/s",
                f"{ref_rate / 1e6:.2f} M values/s (SELECT *, 1 run)",
                f"{ours_rate / ref_rate:.2f}x",
                ">= 3x and >= 2 M/s",
                _met(ours_rate >= 3 * ref_rate and ours_rate >= 2e6),
            )
        )

        # verify MB/s (uncompressed legacy backup: the bytes checked are the bytes read). Every
        # run also pays the interpreter and import start-up; the steady-state rate subtracts a
        # verify of the tiny shipped fixture, which is nearly all start-up.
        ours, rss["verify"] = median_of(runs, lambda i: CLI + ["verify", str(data.legacy)])
        startup, _ = median_of(runs, lambda i: CLI + ["verify", str(HERE.parent / "fixtures" / "legacy")])
        rate = legacy_bytes / ours / 1e6
        steady = legacy_bytes / max(ours - startup, 1e-9) / 1e6
        rows.append(
            (
                "verify",
                f"{rate:.0f} MB/s",
                f"{legacy_bytes / 1e6:.0f} MB legacy backup",
                "",
                ">= 300 MB/s",
                _met(rate >= 300),
            )
        )
        rows.append(
            (
                "verify, start-up excluded",
                f"{steady:.0f} MB/s",
                f"start-up {startup:.2f} s (verify of a 100 KB backup)",
                "",
                ">= 300 MB/s",
                _met(steady >= 300),
            )
        )

        # pack / unpack (sealed archives; no influxd counterpart)
        ours, rss["pack"] = median_of(
            runs, lambda i: CLI + ["pack", str(data.legacy), str(tmp / "a.tar.zst"), "--force"]
        )
        ratio = (tmp / "a.tar.zst").stat().st_size / legacy_bytes
        rows.append(("pack (zstd 3)", f"{legacy_bytes / ours / 1e6:.0f} MB/s", f"ratio {ratio:.3f}", "", "", ""))
        ours, rss["unpack"] = median_of(runs, lambda i: CLI + ["unpack", str(tmp / "a.tar.zst"), str(fresh(tmp, "un"))])
        rows.append(("unpack", f"{legacy_bytes / ours / 1e6:.0f} MB/s", "", "", "", ""))

    peak = max(rss.values())
    rows.append(
        (
            "peak RSS, any verb",
            f"{peak} MiB",
            ", ".join(f"{k} {v}" for k, v in rss.items()),
            "",
            "<= 200 MiB",
            _met(peak <= 200),
        )
    )

    header = ("verb", "ours", "reference", "ratio", "target", "met")
    table = [header, tuple("---" for _ in header)] + rows
    text = "\n".join("| " + " | ".join(r) + " |" for r in table)
    desc = (
        f"{info['values']:,} values, {info['series']:,} series, {info['shards']} shards, TSM "
        f"{info['tsm_bytes'] / 1e6:.0f} MB, "
        f"legacy backup {legacy_bytes / 1e6:.0f} MB, portable {info['portable_bytes'] / 1e6:.0f} MB"
    )
    print(f"dataset ({mode}): {desc}\nmachine: {machine()}\n\n{text}")
    if mode == "full" and not args.no_write:
        # sections written by the other bench scripts (bench/linear.py's "## ...") are kept
        old = (HERE / "RESULTS.md").read_text() if (HERE / "RESULTS.md").exists() else ""
        kept = old[old.index("\n## ") :] if "\n## " in old else ""
        (HERE / "RESULTS.md").write_text(
            f"# Benchmark results\n\n`python bench/run.py` on {_dt.date.today().isoformat()}, median of {runs} runs "
            "each.\n\n"
            f"- machine: {machine()}\n- dataset: {desc}\n- influxd: 1.6.7 (Debian package)\n"
            f"- ours: `{Path(CLI[0]).name}` ({_install_kind()}), typer {_version('typer')}, compiled core "
            f"{'yes' if _compiled() else 'no'}\n\n{text}\n"
            + kept
        )
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _install_kind() -> str:
    """How influx-archive is installed where the bench runs: a plain or an editable pip install."""
    import json as _json
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        url = distribution("influx-archive").read_text("direct_url.json")
    except PackageNotFoundError:
        return "not installed"
    editable = bool(url and _json.loads(url).get("dir_info", {}).get("editable"))
    return "editable pip install" if editable else "pip install, not editable"


def _compiled() -> bool:
    from influx_archive.tsm.compiled import core

    return core is not None


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


if __name__ == "__main__":
    sys.exit(main())
