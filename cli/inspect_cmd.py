"""``influx-archive inspect``: what is in a backup, server root or file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..archive.errors import EXIT_DAMAGED, escape
from ..archive.findings import Finding
from .app import app, emit_json, example, progress_bars


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def render_text(doc: dict) -> str:
    lines = []
    src = doc["source"]
    kind = src["kind"] + (f" ({src['file_kind']})" if src.get("file_kind") else "")
    inc = f", {src['increments']} backup sets" if src.get("increments", 1) > 1 else ""
    lines.append(f"source: {kind}{inc}  {src['path']}")
    for db in doc["databases"]:
        default = db["default_retention_policy"]
        lines.append(f"database {db['name']}" + (f"  (default RP: {default})" if default else ""))
        if "series_file" in db:  # server roots and data directories
            sfile = db["series_file"]
            tsi1 = any(sh.get("index") == "tsi1" for rp in db["retention_policies"] for sh in rp["shards"])
            if sfile is None and tsi1:
                lines.append("  series file: none, though shards here hold tsi1 indexes "
                             "(rebuild them: build-tsi --force)")
            elif sfile is not None:
                n = "unreadable" if sfile["series"] is None else f"{sfile['series']} series"
                lines.append(f"  series file: {n}, {_fmt_bytes(sfile['disk_bytes'])} on disk")
        for rp in db["retention_policies"]:
            if rp["duration_ns"] is None:
                lines.append(f"  RP {rp['name']}  (not in the metastore)")
            else:
                dur = "INF" if rp["duration_ns"] == 0 else f"{rp['duration_ns'] // 10**9}s"
                lines.append(
                    f"  RP {rp['name']}  duration {dur}, shard groups {rp['shard_group_duration_ns'] // 10**9}s, "
                    f"replication {rp['replica_n']}"
                )
            for sh in rp["shards"]:
                if sh.get("no_data"):
                    lines.append(f"    shard {sh['id']}: {sh['group_start']} .. {sh['group_end']}; no data in this "
                                 "source (listed by the metastore only)")
                    continue
                span = f"{sh['group_start']} .. {sh['group_end']}" if sh["group_start"] else "(no shard group)"
                data = f"{sh['files']} files, {_fmt_bytes(sh['bytes'])}"
                if sh.get("wal_segments"):
                    data += f", {sh['wal_segments']} WAL segments ({_fmt_bytes(sh['wal_bytes'])})"
                extent = ""
                if sh["min_time"]:
                    extent = f"; data {sh['min_time']} .. {sh['max_time']}"
                count = f", {sh['points']} points ({sh['values']} values)" if sh["points"] is not None else ""
                index = f"; index {sh['index']}" if "index" in sh else ""
                lines.append(f"    shard {sh['id']}: {span}; {data}; {sh['series']} series{count}{extent}{index}")
        totals = doc.get("totals", {}).get("databases", {}).get(db["name"])
        if totals is not None:
            lines.append(f"  total {db['name']}: {totals['points']} points ({totals['values']} values), "
                         f"{totals['series']} series in {totals['shards']} shards")
    if "totals" in doc:
        t = doc["totals"]
        lines.append(f"total: {t['points']} points ({t['values']} values), {t['series']} series in {t['shards']} "
                     f"shards, {len(t['databases'])} databases")
    if doc["users"]:
        lines.append("users:")
        for u in doc["users"]:
            privs = ", ".join(f"{p['privilege']} ON {p['database']}" for p in u.get("privileges", []))
            lines.append(f"  {u['name']}" + (" (admin)" if u["admin"] else "") + (f": {privs}" if privs else ""))
    if doc["continuous_queries"]:
        lines.append("continuous queries:")
        for cq in doc["continuous_queries"]:
            lines.append(f"  {cq['database']}.{cq['name']}: {cq['query']}")
    for f in doc["findings"]:
        lines.append(str(Finding(**f)))
    return "\n".join(escape(ln) for ln in lines)  # names read from files: one line each


@app.command(epilog=example(
    "influx-archive inspect /backups/legacy --points", "influx-archive inspect /var/lib/influxdb --json",
))
def inspect(
    path: Optional[Path] = typer.Argument(
        None, readable=False, help="Backup directory (legacy or portable), stopped server root, or a single file."
    ),
    host: Optional[str] = typer.Option(
        None, "--host", help="Read the running influxd at this snapshotter address HOST:PORT instead of SRC "
        "(no authentication on that port: never expose it)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the machine-readable document."),
    points: bool = typer.Option(
        False,
        "--points",
        help="Read every shard and count exactly the points a server would serve "
        "(tombstones applied, newest file wins, WAL included). A point is one (series, time) pair.",
    ),
) -> None:
    """Summarise databases, retention policies, shards, users and CQs of PATH.

    Shards the metastore lists but the source holds no files for are shown as "no data". With
    --points, per-database and grand totals follow. Exit 0 when the source reads cleanly, 1 when
    damage was found (listed as findings).
    """
    from ..archive.ops.inspect import inspect_source
    from ..archive.sources import open_source

    # show everything readable; damage becomes findings
    with open_source(path, salvage=True, host=host) as src, progress_bars() as bars:
        doc = inspect_source(src, points=points, progress=bars)
    if json_out:
        emit_json(doc)
    else:
        sys.stdout.write(render_text(doc) + "\n")
    if any(f["severity"] == "error" for f in doc["findings"]):
        raise typer.Exit(EXIT_DAMAGED)
