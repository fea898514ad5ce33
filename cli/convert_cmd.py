"""``influx-archive convert`` and ``trim``: write a new backup from any source, offline (``backup`` is in
:mod:`.backup_cmd`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from ..archive.ops.convert import ConvertPlan

from ..archive.errors import UsageError, escape
from .app import SALVAGE_HELP, app, emit_json, example, report_findings, run_plan

_TIME_HELP = "RFC3339 (2026-11-24T05:00:00Z) or integer nanoseconds; inclusive."


def _plan_text(plan: ConvertPlan) -> str:
    lines = [f"{plan.source.kind} {plan.source.display_path} -> {plan.to} backup {plan.dest}"]
    if plan.start is not None or plan.end is not None:
        lines.append(
            f"  keep points with {plan.start if plan.start is not None else '-inf'} <= t <= "
            f"{plan.end if plan.end is not None else '+inf'} (ns)"
        )
    for j in plan.jobs:
        src = f"{j.shard.database}/{j.shard.retention_policy}/{j.shard.id}"
        dst = f"{j.database}/{j.retention_policy}/{j.shard.id}"
        c = j.counts()
        files = [f"{c[k]} {k}" for k in ("copy", "rewrite", "check") if c[k]]
        if c["wal_segments"]:
            files.append(f"{c['wal_segments']} WAL segments to new TSM")
        how = ("copy" if j.copy_raw else "per file: " + ", ".join(files)) if files else "nothing"
        if plan.to == "portable":
            how += "; compression: " + (j.compression.describe() if j.compression is not None
                                         else f"level {plan.compress_level}, stored if the first MiB does not compress")
        lines.append(f"  shard {src}" + (f" -> {dst}" if src != dst else "") + f": {how}, {j.bytes} bytes")
    lines.append(f"  databases in the metastore: {', '.join(db.name for db in plan.meta.databases) or 'none'}")
    return "\n".join(escape(ln) for ln in lines)  # names read from the source: one line each


def _run(
    src: Path, dest: Path, *, to: Optional[str], database, retention, shard, newdb, newrp,
    start: Optional[str], end: Optional[str], compress_level: int, dry_run: bool, json_out: bool,
    require_kind: Optional[str] = None, salvage: bool = False, force: bool = False,
) -> None:
    from ..archive.ops.convert import unread_shards
    from ..archive.ops.select import Selection
    from ..archive.sources import open_source
    from ..archive.timefmt import parse_time

    sel = Selection(database=database, retention=retention, shard=shard, newdb=newdb, newrp=newrp)
    lo = parse_time(start, option="--start") if start is not None else None
    hi = parse_time(end, option="--end") if end is not None else None
    # a single portable backup's shards the filters or the window leave out are never inflated
    with open_source(src, salvage=salvage, unread=unread_shards(sel, lo, hi)) as source:
        _run_source(source, src, dest, sel, lo, hi, to=to, compress_level=compress_level, dry_run=dry_run,
                    json_out=json_out, require_kind=require_kind, force=force)


def _run_source(source, src: Path, dest: Path, sel, lo, hi, *, to, compress_level: int, dry_run: bool,
                json_out: bool, require_kind: Optional[str], force: bool = False) -> None:
    from ..archive.ops.convert import execute_convert, plan_convert

    if require_kind is not None and source.kind != require_kind:
        raise UsageError(
            f"expected a stopped server root (meta/, data/, wal/), found a {source.kind} source", path=str(src)
        )
    plan = plan_convert(source, dest, to=to, selection=sel, start=lo, end=hi, compress_level=compress_level)
    result = run_plan(
        plan, lambda p, progress: execute_convert(p, progress=progress, force=force),
        dry_run=dry_run, json_out=json_out, plan_text=_plan_text,
    )
    if result is None:
        return
    if json_out:
        emit_json(result.to_dict())
        return
    report_findings(result.findings)
    sys.stdout.write(_plan_text(plan) + "\n")
    for o in result.shards:
        how = f"{o.copied} TSM files copied, {o.rewritten} rewritten, {o.dropped_files} left out"
        if o.compression is not None:
            how += f"; {o.compression['text']}"
        sys.stdout.write(escape(f"  wrote shard {o.database}/{o.retention_policy}/{o.id}: {how}") + "\n")
    for d in result.dropped:
        sys.stdout.write(f"  shard {d}: nothing left in the range, left out\n")
    sys.stdout.write(
        f"wrote {len(result.files)} files ({result.bytes_written} bytes of shard data) to {plan.dest}\n"
    )


_to_opt = typer.Option(
    None, "--to", help="legacy or portable (default: the source's format; portable for a server root)."
)
_db_opt = typer.Option(None, "--database", "--db", help="Only this database.")
_rp_opt = typer.Option(None, "--retention", "--rp", help="Only this retention policy of --database.")
_shard_opt = typer.Option(None, "--shard", help="Only this shard id.")
_newdb_opt = typer.Option(None, "--newdb", help="Rename --database in the output.")
_newrp_opt = typer.Option(None, "--newrp", help="Rename --retention in the output.")
_level_opt = typer.Option(
    1, "--compress-level",
    help="gzip level 0-9 for portable output (1-3 ISA-L, 4-9 zlib, 0 stored; data that does not compress is "
         "stored at any level).")
_dry_opt = typer.Option(False, "--dry-run", help="Print the plan and write nothing.")
_json_opt = typer.Option(False, "--json", help="Print the plan / result as JSON.")
_salvage_opt = typer.Option(False, "--salvage", help=SALVAGE_HELP)


@app.command(epilog=example(
    "influx-archive convert /backups/legacy /backups/portable --to portable",
    "influx-archive convert /var/lib/influxdb /backups/db1 --db telegraf --since 2026-11-01T00:00:00Z",
))
def convert(
    src: Path = typer.Argument(..., readable=False, help="Any source: legacy or portable backup, stopped server root."),
    dest: Path = typer.Argument(..., readable=False, help="New or empty directory for the backup."),
    to: Optional[str] = _to_opt,
    database: Optional[str] = _db_opt,
    retention: Optional[str] = _rp_opt,
    shard: Optional[int] = _shard_opt,
    newdb: Optional[str] = _newdb_opt,
    newrp: Optional[str] = _newrp_opt,
    start: Optional[str] = typer.Option(None, "--start", help="Keep points at or after this time. " + _TIME_HELP),
    end: Optional[str] = typer.Option(None, "--end", help="Keep points at or before this time. " + _TIME_HELP),
    since: Optional[str] = typer.Option(None, "--since", help="influxd's alias of --start."),
    compress_level: int = _level_opt,
    dry_run: bool = _dry_opt,
    json_out: bool = _json_opt,
    salvage: bool = _salvage_opt,
) -> None:
    """Write SRC as a legacy or portable backup in DEST, offline.

    The output is what influxd 1.6.7 writes and restores (influxd restore, restore -portable),
    holding what the source served: tombstones applied into the data, increments merged newest
    first, a server root's WAL included. --start/--end keep exactly the points with
    start <= t <= end; shards with nothing left are dropped.
    """
    if since is not None and start is not None:
        raise UsageError("give --since or --start, not both (--since is influxd's name for --start)")
    _run(src, dest, to=to, database=database, retention=retention, shard=shard, newdb=newdb, newrp=newrp,
         start=start if start is not None else since, end=end, compress_level=compress_level, dry_run=dry_run,
         json_out=json_out, salvage=salvage)


@app.command(epilog=example(
    "influx-archive trim /backups/full /backups/nov --start 2026-11-01T00:00:00Z --end 2026-11-30T23:59:59Z",
))
def trim(
    src: Path = typer.Argument(..., readable=False, help="Any source."),
    dest: Path = typer.Argument(..., readable=False, help="New or empty directory for the trimmed backup."),
    start: str = typer.Option(..., "--start", help="First time kept. " + _TIME_HELP),
    end: str = typer.Option(..., "--end", help="Last time kept. " + _TIME_HELP),
    database: Optional[str] = _db_opt,
    retention: Optional[str] = _rp_opt,
    compress_level: int = _level_opt,
    dry_run: bool = _dry_opt,
    json_out: bool = _json_opt,
    salvage: bool = _salvage_opt,
) -> None:
    """Copy SRC keeping exactly the points with start <= t <= end, in SRC's format.

    Blocks fully inside the range are copied without decoding; only boundary blocks are decoded.
    Shards with nothing left in the range are left out of the data files and the manifest.
    """
    _run(src, dest, to=None, database=database, retention=retention, shard=None, newdb=None, newrp=None,
         start=start, end=end, compress_level=compress_level, dry_run=dry_run, json_out=json_out, salvage=salvage)
