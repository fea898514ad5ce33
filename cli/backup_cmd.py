"""``influx-archive backup``: back up a running influxd over its snapshotter port (``--host``), or a
stopped server root offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from ..archive.ops.onlinebackup import OnlinePlan

from ..archive.errors import UsageError, escape
from .app import SALVAGE_HELP, app, emit_json, example, report_findings, run_plan
from .convert_cmd import _TIME_HELP, _run

_PORT_WARNING = (
    "The snapshotter port has no authentication and no encryption: anyone who reaches it can read every "
    "database and rewrite the metastore. Keep it on loopback or a private network (influxd's bind-address); "
    "never expose it."
)


def _plan_text(plan: OnlinePlan) -> str:
    from ..archive.timefmt import rfc3339

    lines = [f"influxd at {plan.client.address} -> {plan.to} backup {plan.dest}"
             + (f" (increment .{plan.increment:02d})" if plan.append and plan.to == "legacy" else "")
             + (" (added to the existing backup)" if plan.append and plan.to == "portable" else "")]
    if plan.start is not None or plan.end is not None:
        lines.append(
            f"  keep points with {plan.start if plan.start is not None else '-inf'} <= t <= "
            f"{plan.end if plan.end is not None else '+inf'} (ns), exact: whole shards fetched, trimmed here"
        )
    if plan.since is not None:
        lines.append(f"  only TSM and tombstone files modified after {rfc3339(plan.since)}")
    for s in plan.shards:
        lines.append(f"  shard {s.database}/{s.retention_policy}/{s.id}: fetch (request type 0)")
    lines.append("  metastore: fetched again after the shards (shard groups created meanwhile are fetched too)")
    return "\n".join(escape(ln) for ln in lines)


def _online(host: str, dest: Path, *, to: str, database, retention, shard, start, end, since,
            compress_level: int, dry_run: bool, json_out: bool) -> None:
    from ..archive.ops.onlinebackup import execute_online_backup, plan_online_backup
    from ..archive.ops.select import Selection
    from ..archive.timefmt import parse_time

    sel = Selection(database=database, retention=retention, shard=shard)
    lo = parse_time(start, option="--start") if start is not None else None
    hi = parse_time(end, option="--end") if end is not None else None
    si = parse_time(since, option="--since") if since is not None else None
    plan = plan_online_backup(host, dest, to=to, selection=sel, start=lo, end=hi, since=si,
                              compress_level=compress_level)
    result = run_plan(plan, lambda p, progress: execute_online_backup(p, progress=progress),
                      dry_run=dry_run, json_out=json_out, plan_text=_plan_text)
    if result is None:
        return
    if json_out:
        emit_json(result.to_dict())
        return
    report_findings(result.findings)
    added = ""
    if plan.append:
        added = f", increment .{plan.increment:02d} added" if plan.to == "legacy" else ", increment added"
    out = [f"backed up {len(result.shards)} shards from influxd at {plan.client.address} to {plan.dest} "
           f"({plan.to}{added})"]
    for r in result.shards:
        what = {"copy": "server's tar", "rewrite": "tombstones applied" if plan.start is None and plan.end is None
                else "trimmed", "dropped": "nothing in the range, left out"}[r.how]
        out.append(f"  shard {r.database}/{r.retention_policy}/{r.id}: {r.received} bytes received, {what}"
                   + (f", {r.tombstones} tombstone files" if r.tombstones else ""))
    for late in result.late_shards:
        out.append(f"  shard {late}: created during the backup, fetched too")
    out.append(f"wrote {len(result.files)} files ({result.bytes_received} bytes received)")
    sys.stdout.write("\n".join(escape(ln) for ln in out) + "\n")


_HELP = f"""Back up a running influxd (--host) or a stopped server root, as influxd lays out backups.

Online: influx-archive backup --host HOST:PORT DEST. HOST:PORT is influxd's snapshotter port
(its bind-address, default 127.0.0.1:8088). Every shard is fetched whole and checked; --start/--end
are exact to the point (trimmed here, not block-granular as influxd's); tombstones stay in legacy
output and are applied into the data of portable output (influxd's restores ignore tombstone files);
users, grants and CQs are kept; the metastore is taken again after the shards. --since T fetches only
files modified after T; given an existing backup directory of the same format it adds the increment
to it (our restore merges the chain).

{_PORT_WARNING}

Offline: influx-archive backup ROOT DEST reads a STOPPED server's meta/, data/ and wal/ without
starting influxd (points only in the WAL included). A root that a running process holds open is
refused (exit 5; --force overrides); if its files change while reading, nothing is written."""


@app.command(
    help="\n\n".join(" ".join(par.split()) for par in _HELP.split("\n\n")),
    epilog=example(
        "influx-archive backup --host 127.0.0.1:8088 /backups/$(date +%F)",
        "systemctl stop influxdb && influx-archive backup /var/lib/influxdb /backups/$(date +%F)",
    ),
)
def backup(
    paths: list[Path] = typer.Argument(
        ..., readable=False, metavar="[ROOT] DEST",
        help="DEST (new or empty directory; with --since an existing backup to add to); offline: ROOT DEST.",
    ),
    host: Optional[str] = typer.Option(
        None, "--host", help="Back up the running influxd at this snapshotter address HOST:PORT (default port 8088). "
        + _PORT_WARNING,
    ),
    to: str = typer.Option("portable", "--to", help="portable (default) or legacy."),
    database: Optional[str] = typer.Option(None, "--database", "--db", help="Only this database."),
    retention: Optional[str] = typer.Option(None, "--retention", "--rp", help="Only this retention policy of --db."),
    shard: Optional[int] = typer.Option(None, "--shard", help="Only this shard id."),
    start: Optional[str] = typer.Option(None, "--start", help="Keep points at or after this time. " + _TIME_HELP),
    end: Optional[str] = typer.Option(None, "--end", help="Keep points at or before this time. " + _TIME_HELP),
    since: Optional[str] = typer.Option(
        None, "--since", help="Online: only files modified after this time (an increment). " + _TIME_HELP
    ),
    compress_level: int = typer.Option(1, "--compress-level", help="gzip level 0-9 for portable output."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be fetched / written; write nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan / result as JSON."),
    salvage: bool = typer.Option(False, "--salvage", help="Offline only. " + SALVAGE_HELP),
    force: bool = typer.Option(
        False, "--force", help="Offline: back up even though a running process (influxd) holds the root's files open."
    ),
) -> None:
    if host is not None:
        if len(paths) != 1:
            raise UsageError("with --host give only DEST (the server is the source)")
        if salvage or force:
            raise UsageError("--salvage and --force are for the offline form (ROOT DEST)")
        _online(host, paths[0], to=to, database=database, retention=retention, shard=shard, start=start, end=end,
                since=since, compress_level=compress_level, dry_run=dry_run, json_out=json_out)
        return
    if len(paths) != 2:
        raise UsageError("give ROOT DEST (a stopped server root and a new directory), or --host HOST:PORT DEST")
    if since is not None:
        raise UsageError("--since (files modified after T) needs a running server: use --host HOST:PORT")
    _run(paths[0], paths[1], to=to, database=database, retention=retention, shard=shard, newdb=None, newrp=None,
         start=start, end=end, compress_level=compress_level, dry_run=dry_run, json_out=json_out,
         require_kind="live", salvage=salvage, force=force)
