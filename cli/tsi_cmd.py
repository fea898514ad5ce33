"""``influx-archive build-tsi`` (alias ``buildtsi``) and ``dump-tsi``: the tsi1 index offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..archive.errors import escape
from .app import app, emit_json, example, run_plan


def _plan_text(plan) -> str:
    lines = [f"build-tsi in {plan.datadir}" + (f" (WAL {plan.waldir})" if plan.waldir else " (no WAL directory)")]
    for s in plan.shards:
        what = {"build": "build index/", "rebuild": "rebuild index/ (--force)", "skip": "skip: index/ exists"}[s.action]
        wal = f", WAL {s.wal_path}" if s.wal_path else ""
        count = f", {s.series} series" if s.action != "skip" else ""
        lines.append(f"  shard {s.database}/{s.retention_policy}/{s.shard_id}: {what}{count}{wal}")
    for db, n in plan.new_series.items():
        lines.append(f"  database {db}: {n} series added to _series")
    return "\n".join(escape(ln) for ln in lines)  # names from the directory tree: one line each


def _build(datadir, waldir, database, retention, shard, force, owner, dry_run, json_out) -> None:
    from ..archive.ops.buildtsi import build_tsi, plan_build_tsi

    owner_ids = None
    if owner:
        from ..archive.ops.restore import parse_owner  # the whole restore package: only for --owner

        owner_ids = parse_owner(owner)
    if dry_run:
        result = build_tsi(
            datadir, waldir, database=database, retention_policy=retention, shard_id=shard, force=force, dry_run=True
        )
        plan = result.plan
        for w in plan.warnings:  # includes what counting the series found
            sys.stderr.write(f"influx-archive: warning: {escape(w)}\n")
        if json_out:
            emit_json({"dry_run": True, "plan": plan.to_dict()})
        else:
            sys.stdout.write(_plan_text(plan) + "\n(dry run: nothing written)\n")
        return
    plan = plan_build_tsi(datadir, waldir, database=database, retention_policy=retention, shard_id=shard, force=force)
    result = run_plan(
        plan,
        lambda p, progress: build_tsi(
            datadir, waldir, database=database, retention_policy=retention, shard_id=shard,
            force=force, owner=owner_ids, progress=progress,
        ),
        dry_run=False, json_out=json_out, plan_text=_plan_text,
    )
    for w in result.plan.warnings:
        if w not in plan.warnings:
            sys.stderr.write(f"influx-archive: warning: {escape(w)}\n")
    if json_out:
        emit_json(result.plan.to_dict())
        return
    sys.stdout.write(_plan_text(result.plan) + "\n")
    n = sum(s.series for s in result.built)
    sys.stdout.write(f"built {len(result.built)} shard indexes ({n} series), skipped {len(result.skipped)}\n")


_DATADIR = typer.Option(..., "--datadir", help="influxd's data directory (e.g. /var/lib/influxdb/data).")
_WALDIR = typer.Option(
    None, "--waldir", help="influxd's WAL directory: series still only in the WAL are indexed too. Optional; "
    "when DATADIR is named 'data' and a sibling 'wal' exists, that one is used (a warning says so)."
)
_DB = typer.Option(None, "--db", "--database", help="Only this database.")
_RP = typer.Option(None, "--rp", "--retention", help="Only this retention policy.")
_SHARD = typer.Option(None, "--shard", help="Only this shard id.")
_FORCE = typer.Option(
    False,
    "--force",
    help="Rebuild shards that already have index/ (the old one is replaced only once the new one is complete).",
)
_OWNER = typer.Option(None, "--owner", help="USER[:GROUP] to own everything written (e.g. influxdb); a USER "
                      "alone means that user's primary group.")
_DRY = typer.Option(False, "--dry-run", help="Print what would be built (and how many series) and write nothing.")
_JSON = typer.Option(False, "--json", help="Print the plan / result as JSON.")


@app.command("build-tsi", epilog=example(
    "influx-archive build-tsi --datadir /var/lib/influxdb/data --waldir /var/lib/influxdb/wal --owner influxdb",
))
def build_tsi_cmd(
    datadir: Path = _DATADIR, waldir: Optional[Path] = _WALDIR, database: Optional[str] = _DB,
    retention: Optional[str] = _RP, shard: Optional[int] = _SHARD, force: bool = _FORCE,
    owner: Optional[str] = _OWNER, dry_run: bool = _DRY, json_out: bool = _JSON,
) -> None:
    """Build the tsi1 index (index/ and _series) of shards offline; influxd must be stopped.

    Like influx_inspect buildtsi (its -datadir, -waldir, -database, -retention, -shard are
    accepted) without the prompt and without needing a WAL directory. Shards that already have
    index/ are skipped unless --force. Each shard's index is built beside it and renamed into place;
    the series file is extended in a copy and swapped in. Exit 0 ok, 1 damaged input, 2 usage error,
    3 any other failure (a permission problem, a full disk), 5 influxd (or another run) holds the
    directory.
    """
    _build(datadir, waldir, database, retention, shard, force, owner, dry_run, json_out)


@app.command("buildtsi", hidden=True)
def buildtsi_alias(
    datadir: Path = _DATADIR, waldir: Optional[Path] = _WALDIR, database: Optional[str] = _DB,
    retention: Optional[str] = _RP, shard: Optional[int] = _SHARD, force: bool = _FORCE,
    owner: Optional[str] = _OWNER, dry_run: bool = _DRY, json_out: bool = _JSON,
) -> None:
    """Alias of build-tsi (influx_inspect's spelling)."""
    _build(datadir, waldir, database, retention, shard, force, owner, dry_run, json_out)


@app.command("dump-tsi", epilog=example("influx-archive dump-tsi /var/lib/influxdb/data/db1 --series-file"))
def dump_tsi_cmd(
    path: Path = typer.Argument(..., help="A database directory or its _series, a shard directory or its index/."),
    series_file: Optional[Path] = typer.Option(
        None, "--series-file", help="The series file (<db>/_series) of an index given alone."
    ),
    series: bool = typer.Option(False, "--series", help="List every series (of the index, or of the series file)."),
    measurements: bool = typer.Option(
        False, "--measurements", help="List measurements with their series count and tag keys."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Series file and tsi1 index summary, like influx_inspect dumptsi."""
    from ..archive.ops.dumptsi import dump_tsi

    doc = dump_tsi(
        str(path), series_file=str(series_file) if series_file else None, series=series, measurements=measurements
    )
    if json_out:
        emit_json(doc)
        return
    out = []
    sf = doc["series_file"]
    if sf is not None:
        out.append(f"series file: {sf['path']}  series {sf['series']}")
        for p in sf["partitions"]:
            segs = ", ".join(f"{s['name']} ({s['used']}/{s['size']} bytes)" for s in p["segments"]) or "no segments"
            extra = f", {p['tombstones']} tombstoned" if p["tombstones"] else ""
            idx = ", index file" if p["index_file"] else ""
            out.append(f"  partition {p['id']:02x}: {p['series']} series{extra}, max id {p['max_id']}; {segs}{idx}")
    ix = doc["index"]
    if ix is not None:
        out.append(f"index: {ix['path']}  series {ix['series']}")
        for p in ix["partitions"]:
            out.append(
                f"  partition {p['id']}: files {', '.join(p['files']) or 'none'}; {p['series']} series; "
                f"{p['log_entries']} log entries, {p['log_series']} series, {p['log_tombstones']} tombstoned"
                + (
                    f"; index files {', '.join(p['index_files'])}: {p['index_file_series']} series, measurements "
                    f"{', '.join(p['index_file_measurements'])}"
                    if p["index_files"]
                    else ""
                )
            )
    for m in doc.get("measurements", []):
        out.append(f"measurement {m['name']}: {m['series']} series, tag keys {', '.join(m['tag_keys']) or '-'}")
    for s in doc.get("series", []):
        out.append(f"series {s['id']}: {s['key']}")
    sys.stdout.write("\n".join(escape(ln) for ln in out) + "\n")  # names and keys read: one line each
