"""``influx-archive pack`` / ``unpack``: sealed, checksummed ``.tar.zst`` archives."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .app import app, emit_json, example, progress_bars


@app.command(epilog=example("influx-archive pack /backups/2026-11-30 /offsite/2026-11-30.tar.zst --level 9"))
def pack(
    src: Path = typer.Argument(
        ..., readable=False, help="Backup directory (legacy or portable) or a stopped server root."
    ),
    archive: Path = typer.Argument(
        ...,
        readable=False,
        help="The archive to write, e.g. backup.tar.zst; - (standard output), a device or a FIFO is written as a "
             "stream.",
    ),
    level: int = typer.Option(3, "--level", help="zstd level 1-22."),
    threads: int = typer.Option(0, "--threads", help="Compression threads (0: one per core)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing archive."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Seal a backup into one zstd-compressed tar with a manifest of every file's size and sha256.

    A server root is backed up (portable) first. Every verb reads the archive directly
    (inspect, verify, restore, convert, trim, export); `unpack` restores the directory exactly.
    """
    from ..archive.ops.pack import pack as pack_backup

    with progress_bars() as bars:
        res = pack_backup(src, archive, level=level, threads=threads, force=force, progress=bars)
    if str(archive) == "-":
        return  # the archive is standard output: nothing else goes there, and stderr stays quiet
    if json_out:
        emit_json(res.to_dict())
    else:
        ratio = res.bytes_out / res.bytes_in if res.bytes_in else 0
        sys.stdout.write(
            f"packed {res.files} files, {res.bytes_in} bytes -> {res.archive} ({res.bytes_out} bytes, ratio "
            f"{ratio:.3f})\n"
        )


@app.command(epilog=example("influx-archive unpack /offsite/2026-11-30.tar.zst /restore/2026-11-30"))
def unpack(
    archive: Path = typer.Argument(..., readable=False, help="A sealed .tar.zst archive."),
    dest: Path = typer.Argument(..., readable=False, help="New or empty directory for the backup."),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Restore the backup directory from a sealed archive, checking every file's size and sha256.

    Nothing is written unless the whole archive checks out.
    """
    from ..archive.ops.pack import unpack as unpack_archive

    with progress_bars() as bars:
        res = unpack_archive(archive, dest, progress=bars)
    if json_out:
        emit_json(res.to_dict())
    else:
        sys.stdout.write(f"unpacked {res.files} files, {res.bytes_out} bytes into {dest}\n")
