"""``influx-archive dump-tsm`` / ``dump-wal``: one file's structure, also inside a backup."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from ..archive.errors import escape
from .app import app, emit_json, example

_WHERE = ("or CONTAINER::MEMBER (a shard tar, .tar.gz, backup dir or server root and the member "
          "<db>/<rp>/<id>/<file>).")
_TSM_SPEC = "One TSM data file (<generation>-<sequence>.tsm, in <data>/<db>/<rp>/<id>/), " + _WHERE
_WAL_SPEC = "One WAL segment (_NNNNN.wal, in <wal>/<db>/<rp>/<id>/), " + _WHERE


@app.command("dump-tsm", epilog=example(
    "influx-archive dump-tsm /var/lib/influxdb/data/db1/autogen/1/000000001-000000001.tsm --blocks",
    "influx-archive dump-tsm '/backups/legacy::db1/autogen/1/000000001-000000001.tsm' --key 'cpu*'",
))
def dump_tsm(
    spec: str = typer.Argument(..., metavar="TSM_FILE", help=_TSM_SPEC),
    blocks: bool = typer.Option(False, "--blocks", help="List every block: offset, size, type, encodings, count, CRC."),
    key: Optional[str] = typer.Option(None, "--key", help="Only keys matching this shell pattern (e.g. 'cpu,*')."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Header, index and (with --blocks) blocks of one TSM file (.tsm), like influx_inspect dumptsm.

    For a WAL segment (_NNNNN.wal) use dump-wal. Exit 1 when a block is damaged (listed first)."""
    from ..archive.ops.dump import dump_tsm as dump_tsm_file

    doc = dump_tsm_file(spec, blocks=blocks, key_pattern=key)
    if json_out:
        emit_json(doc)
        _fail_on_damage(doc)
        return
    out = [
        f"file: {doc['file']}  size {doc['size']}  version {doc['version']}  keys {doc['keys']}  blocks {doc['blocks']}"
    ]
    for k in doc["index"]:
        out.append(f"{k['key']}  {k['type']}  {k['blocks']} blocks  {k['min_time']} .. {k['max_time']}")
        for b in k.get("block_list", []):
            enc = b.get("encoding") or {}
            out.append(
                f"  offset {b['offset']} size {b['size']} {b['min_time']} .. {b['max_time']} "
                f"count {b.get('count', '?')} ts {enc.get('timestamps', '?')} values {enc.get('values', '?')} crc "
                f"{b['crc']}"
                + (f" ({b['error']})" if "error" in b else "")
            )
    sys.stdout.write("\n".join(escape(ln) for ln in out) + "\n")  # keys read from the file: one line each
    _fail_on_damage(doc)


def _fail_on_damage(doc: dict) -> None:
    """After the listing: exit 1 with one line naming the first damaged block / entry."""
    from ..archive.ops.dump import first_damage

    err = first_damage(doc)
    if err is not None:
        sys.stdout.flush()
        raise err


@app.command("dump-wal", epilog=example("influx-archive dump-wal /var/lib/influxdb/wal/db1/autogen/1/_00001.wal"))
def dump_wal(
    spec: str = typer.Argument(..., metavar="WAL_FILE", help=_WAL_SPEC),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Entries of one WAL segment (_NNNNN.wal): writes (keys, value counts), deletes, delete-ranges, damage.

    For a TSM file (.tsm) use dump-tsm. Exit 1 when an entry is damaged."""
    from ..archive.ops.dump import dump_wal as dump_wal_file

    doc = dump_wal_file(spec)
    if json_out:
        emit_json(doc)
        _fail_on_damage(doc)
        return
    out = [f"file: {doc['file']}  size {doc['size']}  entries {len(doc['entries'])}"]
    for e in doc["entries"]:
        if e["type"] == "write":
            out.append(f"  @{e['offset']} write: {e['keys']} keys, {e['values']} values")
            out.extend(f"    {k}" for k in e["key_list"])
        elif e["type"] == "damage":
            out.append(
                f"  @{e['offset']} damage: {e['reason']}"
                + ("" if e["resume"] is None else f"; resumed at {e['resume']}")
            )
        else:
            rng = f" {e['min_time']}..{e['max_time']}" if e["type"] == "delete-range" else ""
            out.append(f"  @{e['offset']} {e['type']}{rng}: " + ", ".join(e["keys"]))
    sys.stdout.write("\n".join(escape(ln) for ln in out) + "\n")  # keys read from the file: one line each
    _fail_on_damage(doc)
