"""``influx-archive verify``: check a backup without a server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..archive.errors import EXIT_DAMAGED, escape
from .app import app, emit_json, example, progress_bars
from .collector import paused_collector


@app.command(epilog=example(
    "influx-archive verify /backups/2026-11-30 --deep", "influx-archive verify /offsite/2026-11-30.tar.zst",
))
def verify(
    src: Optional[Path] = typer.Argument(None, readable=False, help="Backup directory, server root, or single file."),
    host: Optional[str] = typer.Option(
        None, "--host", help="Read the running influxd at this snapshotter address HOST:PORT instead of SRC "
        "(no authentication on that port: never expose it)."
    ),
    dir_: Optional[Path] = typer.Option(
        None, "--dir", help="influx_inspect verify's form: every TSM file under DIR/data, one 'healthy' or 'corrupt' "
        "line each and 'Broken Blocks: N / TOTAL'."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    deep: bool = typer.Option(False, "--deep", help="Also decode every block (counts, time order, index min/max) "
                              "and report the values counted per shard."),
) -> None:
    """Check everything that can be checked without a server; list every problem found.

    Manifests and metastore files, tar/gzip integrity (including influxd's truncated -start/-end
    tars), TSM headers, indexes and every block CRC, tombstones, WAL framing. One line per finding
    (severity: message [file F, member M, offset N]). Exit 0 when no error was found, 1 otherwise.
    """
    with paused_collector():  # start-up
        from ..archive.errors import UsageError
        from ..archive.ops.verify import verify as verify_source

    given = [n for n, v in (("SRC", src), ("--host", host), ("--dir", dir_)) if v is not None]
    if len(given) != 1:
        raise UsageError("give SRC, --host HOST:PORT or --dir DIR (influx_inspect's form)" if not given
                         else f"give only one of SRC, --host, --dir (not both {' and '.join(given[:2])})")
    if dir_ is not None:
        from .parity_cmd import verify_dir

        verify_dir(dir_, json_out)
        return
    with progress_bars() as bars:
        report = verify_source(src, deep=deep, progress=bars, host=host)
    if json_out:
        emit_json(report.to_dict())
    else:
        for f in report.findings:
            sys.stdout.write(str(f) + "\n")
        for sh in report.shards:  # --deep
            wal = f" + {sh['wal_values']} in the WAL" if sh["wal_values"] else ""
            where = f"{sh['database']}/{sh['retention_policy']}/{sh['id']}"
            sys.stdout.write(escape(f"shard {where}: {sh['values']} values in {sh['blocks']} blocks{wal}") + "\n")
        if deep:
            sys.stdout.write(f"values decoded: {report.values} in TSM blocks, {report.wal_values} in WAL entries\n")
        state = "OK" if report.ok else "DAMAGED"
        sys.stdout.write(
            f"{state}: {report.files} files, {report.blocks} blocks, {report.bytes} bytes checked; "
            f"{sum(f.severity == 'error' for f in report.findings)} errors, "
            f"{sum(f.severity == 'warning' for f in report.findings)} warnings\n"
        )
    if not report.ok:
        raise typer.Exit(EXIT_DAMAGED)
