"""``influx-archive rebuild-meta``: a new ``meta.db`` from a data directory alone."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

import typer

from ..archive.errors import escape
from ..archive.timefmt import rfc3339
from .app import app, emit_json, example, progress_bars, say


def _dur(ns: int) -> str:
    for unit, n in (("w", 7 * 86400 * 10**9), ("d", 86400 * 10**9), ("h", 3600 * 10**9)):
        if ns % n == 0:
            return f"{ns // n}{unit}"
    return f"{ns}ns"


def _plan_text(plan) -> str:
    lines = [f"rebuild {plan.meta_path} from {plan.datadir}" + (f" (WAL {plan.waldir})" if plan.waldir else "")
             + (" (replacing the existing meta.db)" if plan.replace else "")]
    by_rp: dict = {}
    for r in plan.shards:
        by_rp.setdefault((r.database, r.retention_policy), []).append(r)
    for db in plan.meta.databases:
        lines.append(f"database {db.name}  (default RP: {db.default_retention_policy})")
        for rp in db.retention_policies:
            d, how = plan.durations[(db.name, rp.name)]
            lines.append(f"  RP {rp.name}  duration INF, shard groups {_dur(d)} ({how})")
            for r in sorted(by_rp.get((db.name, rp.name), []), key=lambda r: r.id):
                lines.append(f"    shard {r.id}: group {r.group_id} {rfc3339(r.group_start)} .. "
                             f"{rfc3339(r.group_end)}; {r.series} series, "
                             f"data {rfc3339(r.min_time)} .. {rfc3339(r.max_time)}")
    lines.append(f"  max shard id {plan.meta.max_shard_id}, max shard group id {plan.meta.max_shard_group_id}")
    return "\n".join(escape(ln) for ln in lines)


@app.command(
    "rebuild-meta",
    epilog=example(
        "influx-archive rebuild-meta --datadir /var/lib/influxdb/data --waldir /var/lib/influxdb/wal "
        "--metadir /var/lib/influxdb/meta --owner influxdb",
    ),
)
def rebuild_meta(
    datadir: Path = typer.Option(..., "--datadir", help="influxd's data directory (e.g. /var/lib/influxdb/data)."),
    waldir: Optional[Path] = typer.Option(
        None, "--waldir", help="influxd's WAL directory: points still only in the WAL count for the time ranges. "
        "Without it, a sibling 'wal' of a DATADIR named 'data' is read (a warning says so)."),
    metadir: Path = typer.Option(..., "--metadir", help="Meta directory to write meta.db into (new or empty)."),
    shard_duration: list[str] = typer.Option(
        [], "--shard-duration",
        help="Shard group duration: DURATION for every RP, or DB/RP=DURATION for one (repeatable; 1h, 1d, 7d, ...). "
        "Default: inferred from the shards' time ranges (influxd's defaults 1h, 1d, 7d preferred)."),
    owner: Optional[str] = typer.Option(
        None, "--owner", help="USER[:GROUP] to own meta/ and meta.db (a name alone means that user's primary group)."),
    force: bool = typer.Option(
        False, "--force", help="Replace the meta.db of a meta directory that is not empty. A running influxd is "
        "refused all the same."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the metastore that would be written; write nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan / result as JSON."),
) -> None:
    """Write a meta.db from a data directory alone, when the metastore is lost (influxd stopped).

    Databases, retention policies and shard ids come from the directory names, shard groups from
    each shard's time range (TSM indexes and WAL) aligned to the RP's shard group duration (given,
    or inferred). Users, grants and CQs cannot be recovered; RP durations are written as INF.
    Exit 0 ok, 1 damaged data file, 2 usage error, 3 any other failure (a meta directory that is
    not empty, without --force; a permission problem), 5 influxd (or another run) uses the tree.
    """
    from ..archive import guard
    from ..archive.ops.rebuildmeta import execute_rebuild, plan_rebuild
    from ..archive.ops.restore import parse_owner

    owner_ids = parse_owner(owner) if owner else None
    dirs = [metadir, datadir, waldir]
    guard.refuse_live(dirs, what="rebuild the metastore of", force=False)
    lock = contextlib.nullcontext() if dry_run else guard.TargetLock([(metadir, 0o755)])
    with lock:
        if not dry_run:
            guard.refuse_live(dirs, what="rebuild the metastore of", force=False)
        with progress_bars() as bars:
            plan = plan_rebuild(datadir, waldir, metadir, shard_durations=shard_duration, force=force, progress=bars)
        for f in plan.findings:
            say(str(f))
        if dry_run:
            if json_out:
                emit_json({"dry_run": True, "plan": plan.to_dict()})
            else:
                sys.stdout.write(_plan_text(plan) + "\n(dry run: nothing written)\n")
            for n in plan.notes:
                say(f"note: {n}")
            return
        path = execute_rebuild(plan, owner=owner_ids)
    if json_out:
        emit_json({"written": str(path), **plan.to_dict()})
    else:
        sys.stdout.write(_plan_text(plan) + "\n")
        sys.stdout.write(f"wrote {path}: {len(plan.meta.databases)} databases, {len(plan.shards)} shards\n")
    for n in plan.notes:
        say(f"note: {n}")
    say(f"next: point influxdb.conf's [meta] dir at {metadir} and start influxd")
