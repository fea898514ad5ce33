"""``influx-archive export``: line protocol (influx_inspect export format) from any source."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .app import SALVAGE_HELP, app, example, progress_bars, report_findings, say


@app.command(epilog=example(
    "influx-archive export /backups/portable --db db1 --out db1.lp --compress",
    "influx -import -path db1.lp -precision ns -compressed",
))
def export(
    src: Optional[Path] = typer.Argument(
        None, readable=False, help="Any source: legacy or portable backup, stopped server root (or --host, --datadir)."
    ),
    host: Optional[str] = typer.Option(
        None, "--host", help="Read the running influxd at this snapshotter address HOST:PORT instead of SRC "
        "(no authentication on that port: never expose it)."
    ),
    datadir: Optional[Path] = typer.Option(
        None, "--datadir", help="A bare data directory (<db>/<rp>/<id>/, no metastore needed) instead of SRC, "
        "as influx_inspect export -datadir: databases and RPs are named from the directories."
    ),
    waldir: Optional[Path] = typer.Option(
        None, "--waldir", help="With --datadir: the WAL directory, replayed on top (points only in the WAL)."
    ),
    database: Optional[str] = typer.Option(None, "--database", "--db", help="Only this database."),
    retention: Optional[str] = typer.Option(
        None, "--retention", "--rp", help="Only this retention policy of --database."
    ),
    measurement: Optional[str] = typer.Option(None, "--measurement", help="Only this measurement."),
    start: Optional[str] = typer.Option(None, "--start", help="First time kept: RFC3339 or integer ns (inclusive)."),
    end: Optional[str] = typer.Option(None, "--end", help="Last time kept: RFC3339 or integer ns (inclusive)."),
    out: str = typer.Option(
        "-",
        "--out",
        help="Output file, or - for standard output. A character device or a FIFO is written as a stream; an existing "
             "file needs --force; a path inside the source is refused.",
    ),
    compress: bool = typer.Option(False, "--compress", help="gzip the output."),
    lponly: bool = typer.Option(False, "--lponly", help="Only line protocol: no comments, no DDL."),
    salvage: bool = typer.Option(False, "--salvage", help=SALVAGE_HELP),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Write SRC's points as line protocol with nanosecond timestamps.

    The format is influx_inspect export's: load it with `influx -import -path FILE -precision ns`
    (add -compressed for --compress); its DDL recreates the databases and retention policies with
    their settings. Tombstones are applied, the newest value wins, a server root's WAL is included.
    NaN/Inf floats cannot be written as line protocol and are skipped (reported on stderr).

    Without a metastore, influx_inspect's form reads a bare data directory:
    influx-archive export -datadir /var/lib/influxdb/data -waldir /var/lib/influxdb/wal -out F
    """
    from ..archive.errors import UsageError
    from ..archive.ops.export import export_to_path
    from ..archive.sources import open_datadir, open_source
    from ..archive.timefmt import parse_time

    given = [n for n, v in (("SRC", src), ("--host", host), ("--datadir", datadir)) if v is not None]
    if len(given) != 1:
        raise UsageError("give SRC, --host HOST:PORT or --datadir (with --waldir)" if not given
                         else f"give only one of SRC, --host, --datadir (not both {' and '.join(given[:2])})")
    if waldir is not None and datadir is None:
        raise UsageError("--waldir goes with --datadir (a server root SRC has its own wal/)")

    kw: dict[str, Any] = {
        "database": database,
        "retention": retention,
        "measurement": measurement,
        "start": parse_time(start, option="--start") if start is not None else None,
        "end": parse_time(end, option="--end") if end is not None else None,
        "lp_only": lponly,
    }
    if datadir is not None:
        from ..archive.ops.exportdatadir import export_datadir_to_path
        from ..archive.sources.model import raise_first_error

        with open_datadir(datadir, waldir, salvage=salvage) as source, progress_bars() as bars:
            raise_first_error(source, salvage)
            res = export_datadir_to_path(source, out, compress=compress, force=force, progress=bars, **kw)
    else:
        with open_source(src, salvage=salvage, host=host) as source, progress_bars() as bars:
            res = export_to_path(source, out, compress=compress, force=force, progress=bars, **kw)
    report_findings(source.findings)
    for note in res.skipped:
        say(f"warning: {note}")
    if out != "-":
        sys.stderr.write(f"exported {res.lines} lines, {res.values} values from {res.shards} shards to {out}\n")
