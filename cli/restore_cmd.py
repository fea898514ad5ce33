"""``influx-archive restore``: offline restore into a stopped server's directories."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from ..archive.ops.restore import RestorePlan

from ..archive.errors import ArchiveError, UsageError, escape
from .app import SALVAGE_HELP, app, emit_json, example, report_findings, run_plan
from .nextstep import next_steps
from .restore_online import HOST_HELP, HTTP_HELP, restore_online


def _plan_text(plan: RestorePlan) -> str:
    lines = [
        f"restore {plan.source.kind} backup {plan.source.display_path}",
        f"  metastore: {plan.metadir / 'meta.db'} ({'add to the existing one' if plan.meta_exists else 'new'})",
    ]
    for a, b in plan.databases:
        lines.append(f"  database {a}" + (f" -> {b}" if a != b else ""))
    for s in plan.shards:
        src = f"{s.shard.database}/{s.shard.retention_policy}/{s.shard.id}"
        how = "into existing shard" if s.into_existing else "new shard"
        wal = f", {len(s.wal_files)} WAL segments -> {s.wal_dir}" if s.wal_dir else ""
        flush = ", WAL flushed into a new TSM file" if s.flush_wal else ""
        if s.rewrite is not None:
            flush = ", increments merged into new TSM files"
        lines.append(f"  shard {src} -> {s.target_dir} ({how}; {len(s.files)} files, {s.bytes} bytes{wal}{flush})")
    lines.append(f"  users: {', '.join(u.name for u in plan.meta.users) or 'none'}")
    lines.append(f"  index: {plan.index} ({plan.index_why})")
    lines.append(f"  total {plan.bytes} bytes in {len(plan.shards)} shards")
    return "\n".join(escape(ln) for ln in lines)  # names read from the source: one line each


@app.command(epilog=example(
    "systemctl stop influxdb",
    "influx-archive restore /backups/portable --metadir /var/lib/influxdb/meta --datadir /var/lib/influxdb/data "
    "--owner influxdb",
))
def restore(
    src: Path = typer.Argument(
        ..., readable=False, help="Legacy or portable backup directory, a stopped server root, or a sealed "
        "archive (.tar.zst written by pack)."
    ),
    metadir: Optional[Path] = typer.Option(
        None, "--metadir", help="Target meta directory (meta.db is created or added to)."
    ),
    datadir: Optional[Path] = typer.Option(None, "--datadir", help="Target data directory."),
    waldir: Optional[Path] = typer.Option(
        None,
        "--waldir",
        help="Target WAL directory: WAL segments of a live source are copied there. "
        "Without it they are replayed and written as one new TSM file per shard (no point is lost).",
    ),
    database: Optional[str] = typer.Option(None, "--database", "--db", help="Restore only this database."),
    newdb: Optional[str] = typer.Option(None, "--newdb", help="Restore --database under this name."),
    retention: Optional[str] = typer.Option(
        None, "--retention", "--rp", help="Restore only this retention policy of --database."
    ),
    newrp: Optional[str] = typer.Option(None, "--newrp", help="Restore --retention under this name."),
    shard: Optional[int] = typer.Option(None, "--shard", help="Restore only this shard id."),
    merge: bool = typer.Option(
        False,
        "--merge",
        help="Restore into a database that exists in the target metastore. Shards whose "
        "shard group matches an existing one (same time range) are added to that shard with higher TSM "
        "generations, so where both hold a value for the same point THE RESTORED VALUE WINS; other shards "
        "become new shard groups.",
    ),
    owner: Optional[str] = typer.Option(
        None, "--owner", help="USER[:GROUP] to own everything written (e.g. influxdb); a USER alone means that "
        "user's primary group. Needed when root restores for an influxd that runs as another user."
    ),
    index: str = typer.Option(
        "auto", "--index",
        help="Index of the restored shards: tsi1 builds the series file and each shard's index/ as part of the "
        "restore; inmem builds none; auto (default) follows --config's index-version, else the target (tsi1 when "
        "one of its shards has index/, else inmem).",
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", help="influxdb.conf of the target server: --index auto follows its index-version."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and write nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print the plan / result as JSON."),
    salvage: bool = typer.Option(False, "--salvage", help=SALVAGE_HELP),
    force: bool = typer.Option(
        False,
        "--force",
        help="Restore even though a running process (influxd) holds the target directories "
        "open. The lock against a second influx-archive run is never overridden.",
    ),
    portable: bool = typer.Option(False, "--portable", hidden=True),
    online: bool = typer.Option(False, "--online", hidden=True),
    host: Optional[str] = typer.Option(None, "--host", help=HOST_HELP),
    http: Optional[str] = typer.Option(None, "--http", help=HTTP_HELP),
) -> None:
    """Restore SRC offline into --metadir/--datadir (influxd must be stopped), or online with --host.

    Any source kind works (legacy, portable with one or several manifests, stopped server root);
    influxd's spellings (-metadir, -datadir, -database/-db, -retention/-rp, -newdb, -newrp, -shard)
    are accepted. Unlike influxd 1.6.7: shard ids ending in 0 land in the right directory, users,
    grants and CQs are kept, deleted data stays deleted, increments do not resurrect deletes, and an
    existing meta.db is added to (new ids above the existing ones), never replaced.

    Nothing is half-written: on any failure the target is left as it was. One run at a time per
    target (a lock file in each target directory), and never into directories a running influxd
    uses (--force overrides). SRC may be a sealed .tar.zst (pack). The next step (influxdb.conf lines,
    --owner, tsi1) is printed on stderr. Exit 0 ok, 1 damaged source, 2 usage error, 3 any other
    failure (unsupported input, disk full, permission, target exists), 4 --salvage left data out,
    5 target busy.

    Online (--host HOST:PORT, a running influxd 1.5+): one database at a time, each shard uploaded
    once with increments merged and deletes applied, CQs and grants recreated over --http; an
    existing database is refused before anything is sent. Users cannot be restored online (they
    are listed, with what to run). The snapshotter port has no authentication: never expose it.
    """
    from ..archive import guard
    from ..archive.ops.restore import check_target_args, execute_restore, plan_restore, target_lock
    from ..archive.ops.select import Selection
    from ..archive.sources import open_source

    sel = Selection(database=database, retention=retention, shard=shard, newdb=newdb, newrp=newrp)
    if host is not None:
        if metadir is not None or datadir is not None or waldir is not None or merge or owner or force:
            raise UsageError("--host restores online: --metadir/--datadir/--waldir/--merge/--owner/--force are offline")
        restore_online(src, host=host, http=http, selection=sel, dry_run=dry_run, json_out=json_out, salvage=salvage)
        return
    if http is not None:
        raise UsageError("--http is for an online restore (with --host)")
    if portable or online:
        raise UsageError(
            "influx-archive restores offline into --metadir/--datadir, or online with --host; -portable/-online are "
            "not needed (every backup kind is recognised)"
        )
    if metadir is None or datadir is None:
        raise UsageError("--metadir and --datadir are needed (or --host HOST:PORT to restore into a running influxd)")
    with open_source(src, salvage=salvage) as source:
        targets = check_target_args(source, metadir, datadir, waldir)
        # The lock is held from before planning to the end: what the plan reads of the target stays
        # true while it is carried out. A dry run writes nothing and takes no lock.
        # A running process is looked for before anything is created or locked, and again once the
        # lock is held (a server started in between).
        uses = guard.refuse_live(targets, what="restore into", force=force)
        with contextlib.nullcontext() if dry_run else target_lock(*targets):
            if not dry_run:
                uses = guard.refuse_live(targets, what="restore into", force=force)
            for u in uses:
                sys.stderr.write(f"influx-archive: warning: --force: restoring although {u.describe()}\n")
            try:
                plan = plan_restore(
                    source, metadir=metadir, datadir=datadir, waldir=waldir, selection=sel, merge=merge,
                    recover=not dry_run, index=index, config=config,
                )
            except ArchiveError as exc:  # what the recovery of an interrupted run did is still said
                for note in getattr(exc, "notes", []):
                    sys.stderr.write(f"influx-archive: warning: {note}\n")
                raise
            result = run_plan(
                plan, lambda p, progress: execute_restore(p, owner=owner, progress=progress),
                dry_run=dry_run, json_out=json_out, plan_text=_plan_text,
            )
    if result is None:
        return
    if json_out:
        emit_json(result.to_dict())
        return
    report_findings(result.skipped)
    sys.stdout.write(_plan_text(plan) + "\n")
    sys.stdout.write(
        f"restored {result.shards} shards, {result.files} files, {result.bytes} bytes; metastore "
        f"{plan.metadir / 'meta.db'}\n"
    )
    # a restore that builds the tsi1 index itself (--index tsi1) needs no tsi1 note
    indexed = plan.index == "tsi1"
    for line in next_steps(plan.metadir, plan.datadir, plan.waldir, owner, indexed=indexed):
        sys.stderr.write(line + "\n")
