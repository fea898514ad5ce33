"""Every kind of InfluxDB 1.x input as one model: ``open_source(path)``.

Recognised (see docs/formats.md):

=========  ==================================================================================
kind       what
=========  ==================================================================================
legacy     a directory of ``meta.NN`` + ``<db>.<rp>.<id5>.NN`` shard tars (``influxd backup``):
           :mod:`.legacy`
portable   a directory of ``<ts>.manifest`` + ``<ts>.meta`` + ``<ts>.s<id>.tar.gz``
           (``influxd backup -portable``), one or several manifests: :mod:`.portable`
live       a stopped server root holding ``meta/``, ``data/`` and usually ``wal/``: :mod:`.live`
file       a single ``.tsm``, ``.tombstone``, ``.wal``, ``meta.NN``, ``.meta``, ``meta.db``,
           ``.manifest``, shard ``.tar`` or ``.tar.gz``: :mod:`.single`
sealed     a ``.tar.zst`` written by ``pack``, read as the backup it holds: :mod:`.sealed`
remote     a running influxd over its snapshotter port (``open_source(None, host="HOST:PORT")``),
           one shard fetched at a time: :mod:`.remote`
datadir    a bare data directory (and WAL directory) without metastore, opened only on request
           (:func:`open_datadir`, :func:`open_source_or_datadir`): :mod:`.baredata`
=========  ==================================================================================

The model (:class:`Source`, :class:`Shard`, :class:`ShardFile`) is in :mod:`.model`; tar and
gzip scanning in :mod:`.tarscan`. A source is a context manager (``with open_source(p) as src``):
closing it releases what it holds (a sealed archive's private spool).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SourceError, UsageError
from .baredata import looks_like_datadir, open_datadir, scan_tree, synthesize_meta
from .directory import open_dir
from .model import OpenShard, Shard, ShardFile, Source, raise_first_error
from .single import open_file


def open_source(
    path: str | os.PathLike[str] | None, *, salvage: bool = False, host: str | None = None, unread=None,
) -> Source:
    """Recognise ``path`` and build its :class:`Source` model (reads metadata and tar listings only).

    ``salvage``: a damaged shard tar is recorded as an error finding (``Source.findings``) and the
    members read intact before the damage are used, instead of failing. Without it the first
    error finding is raised (:class:`~influx_archive.archive.errors.FormatError`).

    ``host`` (``HOST:PORT``, influxd's snapshotter port) instead of ``path``: the running server.

    ``unread(meta) -> {(db, rp, shard id)}``: shards the caller will not read, which a single
    portable backup then neither inflates nor lists (a convert's filters and time window,
    :func:`~influx_archive.archive.ops.convert.unread_shards`)."""
    if host is not None:
        if path is not None:
            raise UsageError("give a source path or --host, not both")
        from .remote import open_remote  # the snapshotter client: only for --host

        return _checked(open_remote(host, salvage=salvage), salvage)
    if path is None:
        raise UsageError("give a source path (or --host HOST:PORT for a running influxd)")
    p = Path(path)
    if not p.exists():
        raise SourceError("no such file or directory", path=str(p))
    if p.is_dir():
        src = open_dir(p, salvage, {}, unread)
    elif p.is_file():
        from .sealed import is_zstd_file, open_sealed

        if p.name.endswith((".tar.zst", ".tzst")) or is_zstd_file(p):
            src = open_sealed(p, salvage=salvage)
        else:
            src = open_file(p, salvage)
    else:
        raise SourceError("not a regular file or directory", path=str(p))
    return _checked(src, salvage)


def _checked(src: Source, salvage: bool) -> Source:
    """``src``, unless (without ``salvage``) it holds an error finding: then closed and raised."""
    try:
        raise_first_error(src, salvage)
    except BaseException:
        src.close()
        raise
    return src


def open_source_or_datadir(
    path: str | os.PathLike[str], *, waldir: str | os.PathLike[str] | None = None, salvage: bool = False
) -> Source:
    """:func:`open_source`, or, for a directory that is no source kind but is shaped like
    influxd's data directory (``<db>/<rp>/<id>/``), :func:`open_datadir` on it (with ``waldir``).
    Verbs that only read (export, report, verify) use it; restore and convert do not (a
    synthesized metastore is not one to hand to influxd)."""
    p = Path(path)
    if waldir is None and not (p.is_dir() and looks_like_datadir(p)):
        return open_source(p, salvage=salvage)
    if waldir is None:
        try:
            return open_source(p, salvage=salvage)
        except SourceError:
            pass
    src = open_datadir(p, waldir, salvage=salvage)
    try:
        raise_first_error(src, salvage)
    except BaseException:
        src.close()
        raise
    return src


__all__ = [
    "OpenShard", "Shard", "ShardFile", "Source", "open_datadir", "open_source", "open_source_or_datadir",
    "scan_tree", "synthesize_meta",
]
