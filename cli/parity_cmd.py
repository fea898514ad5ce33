"""influx_inspect's verbs by their own names: ``report``, ``deletetsm``, ``verify-seriesfile``,
and the aliases ``dumptsm`` (of dump-tsm) and ``dumptsi`` (of dump-tsi); ``verify --dir`` is
rendered here too. Their single-dash flags are rewritten in :mod:`.inspect_flags`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..archive.errors import EXIT_DAMAGED, escape
from .app import app, emit_json, example, progress_bars, report_findings, say

_EST = " (est)"


def _open_for_report(path: Path, waldir: Optional[Path]):
    """A source, a bare data directory, or one shard directory ``<db>/<rp>/<id>`` of one."""
    from ..archive.sources import open_datadir, open_source_or_datadir

    name = path.name
    if path.is_dir() and name.isascii() and name.isdigit() and not (path / "meta").exists():
        path = path.absolute()  # "report 5" run inside the RP directory
        root = path.parent.parent.parent
        src = open_datadir(root, waldir)
        key = (path.parent.parent.name, path.parent.name, int(name))
        src.shards = [s for s in src.shards if s.key == key]
        return src
    return open_source_or_datadir(path, waldir=waldir)


@app.command("report", epilog=example(
    "influx-archive report /var/lib/influxdb/data -exact", "influx-archive report /backups/portable --detailed --json",
))
def report_cmd(
    path: Path = typer.Argument(..., readable=False, help="A data directory, a shard directory, a server root, or "
                                "any backup / sealed archive."),
    pattern: Optional[str] = typer.Option(None, "--pattern", help="Only TSM files and WAL segments whose path "
                                          "contains this text."),
    exact: bool = typer.Option(False, "--exact", help="Exact counts (memory grows with the number of series); "
                               "without it, HyperLogLog++ estimates computed as influx_inspect's."),
    detailed: bool = typer.Option(False, "--detailed", help="Also per measurement series and fields, per tag key "
                                  "distinct values."),
    waldir: Optional[Path] = typer.Option(None, "--waldir", help="With a bare data directory: its WAL directory."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Per shard: files, series, time range; per database: series cardinality, like influx_inspect report.

    Without --exact the cardinalities are estimates (HyperLogLog++, the same numbers influx_inspect
    prints); with --exact they are exact. "series" counts series keys (what SHOW
    SERIES lists); "keys" counts series+field keys, what influx_inspect report calls Series.
    Tombstoned keys are left out and the WAL is counted, as influxd serves them.

    """
    from ..archive.ops.report import report

    with _open_for_report(path, waldir) as src, progress_bars() as bars:
        doc = report(src, pattern=pattern, exact=exact, detailed=detailed, progress=bars)
    if json_out:
        emit_json(doc)
        return
    est = "" if exact else _EST
    rows = [["DB", "RP", "Shard", "Files", "Series", "Keys", "New" + est, "Min Time", "Max Time"]]
    for r in doc["shards"]:
        rows.append([r["database"], r["retention_policy"], str(r["shard"]), str(r["files"]), str(r["series"]),
                     str(r["keys"]), str(r["new_series"]), r["min_time"] or "-", r["max_time"] or "-"])
    widths = [max(len(escape(row[i])) for row in rows) for i in range(len(rows[0]))]
    out = ["  ".join(escape(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    out += ["", "Summary:", f"  Files: {doc['files']}",
            f"  Time Range: {doc['min_time'] or '-'} - {doc['max_time'] or '-'}",
            f"  Duration: {_duration(doc['duration_ns'])}", "", "Statistics", "  Series:"]
    total = doc["total_series"] or 1
    for d in doc["databases"]:
        out.append(f"     - {escape(d['name'])}{est}: {d['series']} series ({int(d['series'] / total * 100)}%), "
                   f"{d['keys']} keys")
    out.append(f"  Total{est}: {doc['total_series']} series, {doc['total_keys']} keys")
    if detailed:
        out.append(f"\n  Measurements{est}:")
        out += [f"    - {escape(m['name'])}: {m['series']} series ({int(m['series'] / total * 100)}%), "
                f"{m['fields']} fields" for m in doc["measurements"]]
        out.append(f"\n  Tags{est}:")
        out += [f"    - {escape(t['key'])}: {t['values']} values" for t in doc["tags"]]
    sys.stdout.write("\n".join(out) + "\n")
    report_findings(list(src.findings))


def _duration(ns: Optional[int]) -> str:
    if ns is None:
        return "-"
    s, rem = divmod(ns, 1_000_000_000)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    frac = f".{rem:09d}".rstrip("0").rstrip(".")
    return f"{h}h{m}m{s}{frac}s"


@app.command("deletetsm", epilog=example(
    "influx-archive deletetsm -measurement cpu /var/lib/influxdb/data/db/autogen/3/*.tsm --dry-run",
))
def deletetsm_cmd(
    files: list[Path] = typer.Argument(..., readable=False, help="TSM files (<gen>-<seq>.tsm) of a stopped server."),
    measurement: Optional[str] = typer.Option(None, "--measurement", help="Remove this measurement's keys."),
    sanitize: bool = typer.Option(False, "--sanitize", help="Remove keys whose measurement or tags hold "
                                  "non-printable characters or invalid UTF-8."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; write nothing."),
    force: bool = typer.Option(False, "--force", help="Go on although a running process (influxd) uses the "
                               "directory: influxd would keep serving, then compact back, the removed data."),
    verbose: bool = typer.Option(False, "--verbose", help="List every removed key."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Remove a measurement (or keys with non-printable names) from TSM files offline, like influx_inspect deletetsm.

    Each file is rewritten beside itself and renamed over the original (no backup copy is kept,
    as influx_inspect); its .tombstone loses the entries of removed keys. A file left without keys
    is removed. influxd must be stopped (exit 5 otherwise). Exit 1 on a damaged file (that file
    and the ones after it are left as they were).

    """
    from ..archive.ops.deletetsm import delete_tsm

    with progress_bars() as bars:
        results = delete_tsm([str(f) for f in files], measurement=measurement, sanitize=sanitize,
                             dry_run=dry_run, force=force, progress=bars)
    if json_out:
        emit_json({"dry_run": dry_run, "files": [r.to_dict() for r in results]})
        return
    verb = {"unchanged": "unchanged", "rewritten": "would rewrite" if dry_run else "rewritten",
            "removed": "would remove (no key left)" if dry_run else "removed (no key left)"}
    for r in results:
        extra = f", {r.tombstone_entries_removed} tombstone entries dropped" if r.tombstone_entries_removed else ""
        sys.stdout.write(escape(f"{r.path}: {verb[r.action]}: {len(r.removed_keys)} of {r.keys} keys, "
                                f"{r.blocks_removed} blocks removed{extra}") + "\n")
        if verbose:
            sys.stdout.write("".join(f"  {escape(k)}\n" for k in r.removed_keys))


@app.command("verify-seriesfile", epilog=example("influx-archive verify-seriesfile -dir /var/lib/influxdb/data"))
def verify_seriesfile_cmd(
    dir_: Optional[Path] = typer.Option(None, "--dir", help="The data directory (every <db>/_series is checked)."),
    db: Optional[str] = typer.Option(None, "--db", help="Only this database's series file."),
    series_file: Optional[Path] = typer.Option(None, "--series-file", help="One series file (<db>/_series)."),
    verbose: bool = typer.Option(False, "--verbose", help="influx_inspect's -v; every file is listed anyway."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check tsi1 series files (<db>/_series), like influx_inspect verify-seriesfile; exit 1 if one is damaged.

    """
    from ..archive.ops.seriescheck import verify_series_files

    checks = verify_series_files(dir_, database=db, series_file=series_file)
    if json_out:
        emit_json({"ok": all(c.ok for c in checks), "series_files": [c.to_dict() for c in checks]})
    else:
        for c in checks:
            what = f"{c.path}: healthy ({c.series} series)" if c.ok else f"{c.path}: corrupt: {c.error}"
            sys.stdout.write(escape(what) + "\n")
        if not checks:
            say("no series file found (databases indexed with inmem have none)")
    if not all(c.ok for c in checks):
        raise typer.Exit(EXIT_DAMAGED)


def verify_dir(root: Path, json_out: bool) -> None:
    """``verify -dir ROOT`` (influx_inspect's form): every TSM file under ROOT/data (or ROOT, when
    it is the data directory itself), one line each, "healthy" or "corrupt", then
    ``Broken Blocks: N / TOTAL``; exit 1 if a file is corrupt."""
    from ..archive.errors import SourceError
    from ..archive.ops.verify import verify_files
    from ..archive.sources import scan_tree

    if not root.is_dir():
        raise SourceError("not a directory (expected influxd's root, holding data/)", path=str(root))
    data = root / "data" if (root / "data").is_dir() else root
    findings: list = []
    shards = scan_tree(data, None, findings=findings)
    files = [f.container for s in shards for f in s.files if f.kind == "tsm"]
    if not files:
        say(f"warning: no TSM file found under {data} (expected <db>/<rp>/<id>/*.tsm)")
    docs = []
    broken = total = 0
    lines = [str(f) for f in findings]
    with progress_bars() as bars:
        reports = verify_files([str(p) for p in files], progress=bars)  # files on every core, in order
        for path, rep in zip(files, reports):
            errors = [f for f in rep.findings if f.severity == "error"]
            broken += len(errors)
            total += rep.blocks
            docs.append({"path": path, "healthy": not errors, "blocks": rep.blocks,
                         "findings": [f.to_dict() for f in rep.findings]})
            lines += [str(f) for f in errors]
            lines.append(f"{path}: {'healthy' if not errors else 'corrupt'}")
    ok = broken == 0 and not any(f.severity == "error" for f in findings)
    if json_out:
        emit_json({"ok": ok, "files": docs, "broken_blocks": broken, "blocks": total,
                   "findings": [f.to_dict() for f in findings]})
    else:
        sys.stdout.write("".join(escape(ln) + "\n" for ln in lines) + f"Broken Blocks: {broken} / {total}\n")
    if not ok:
        raise typer.Exit(EXIT_DAMAGED)


@app.command("dumptsm", hidden=True)
def dumptsm_alias(
    spec: str = typer.Argument(..., help="A .tsm file, or CONTAINER::MEMBER."),
    index: bool = typer.Option(False, "--index", help="List the index (every key; the default here)."),
    blocks: bool = typer.Option(False, "--blocks", help="List every block."),
    all_: bool = typer.Option(False, "--all", help="Index and blocks."),
    filter_key: Optional[str] = typer.Option(None, "--filter-key", help="Only keys containing this text."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Alias of dump-tsm (influx_inspect dumptsm's flags: -index -blocks -all -filter-key)."""
    from .dump_cmd import dump_tsm

    key = None
    if filter_key is not None:  # influx_inspect matches a substring; dump-tsm takes a shell pattern
        key = "*" + "".join("[" + c + "]" if c in "*?[]" else c for c in filter_key) + "*"
    dump_tsm(spec, blocks=blocks or all_, key=key, json_out=json_out)


@app.command("dumptsi", hidden=True)
def dumptsi_alias(
    paths: list[Path] = typer.Argument(..., help="A database directory or its _series, a shard directory or its "
                                       "index/."),
    series_file: Optional[Path] = typer.Option(None, "--series-file", help="The series file of an index given alone."),
    series: bool = typer.Option(False, "--series", help="List every series."),
    measurements: bool = typer.Option(False, "--measurements", help="List measurements."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Alias of dump-tsi (influx_inspect dumptsi's -series-file -series -measurements)."""
    from ..archive.errors import UsageError
    from .tsi_cmd import dump_tsi_cmd

    if len(paths) != 1:
        raise UsageError("dumptsi takes one path here (run it once per path)")
    dump_tsi_cmd(paths[0], series_file=series_file, series=series, measurements=measurements, json_out=json_out)
