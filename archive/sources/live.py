"""A stopped server's root: ``meta/meta.db``, ``data/<db>/<rp>/<id>/`` and usually ``wal/``.

Nothing is skipped silently: a TSM / tombstone / WAL name that is not a regular readable file (a
dangling link, a FIFO, a directory, a device behind a link, unreadable) is an error finding, and
so is a number written with non-ASCII digits in a name (:mod:`~influx_archive.tsm.naming`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...meta import files as metafiles
from ..errors import FormatError
from ..findings import META_MISSING, SHARD_NOT_IN_META, WARNING, Finding
from ..untrusted import probe_regular
from .baredata import scan_tree
from .model import fill_from_meta
from .ondisk import DiskSource


def open_live(p: Path, salvage: bool = False) -> DiskSource:
    src = DiskSource("live", str(p), salvage=salvage)
    meta_db = p / "meta" / "meta.db"
    if meta_db.is_file():
        src.meta = metafiles.read_meta_db(meta_db)
        src.meta_origin = str(meta_db)
    elif os.path.lexists(meta_db):
        raise FormatError(f"the metastore cannot be read: {probe_regular(meta_db)[1]}", path=str(meta_db))
    else:
        src.findings.append(Finding(WARNING, "server root has no meta/meta.db: shards are listed without metastore",
                                    path=str(p / "meta"), code=META_MISSING))
    src.shards.extend(scan_tree(p / "data", p / "wal", findings=src.findings, salvage=salvage,
                                 internal=False))
    fill_from_meta(src)
    for s in src.shards:
        if src.meta is not None and not s.in_meta and (s.files or s.wal):
            src.findings.append(
                Finding(WARNING, f"shard {s.database}/{s.retention_policy}/{s.id} is on disk but not in the metastore: "
                        "influxd opens it but never serves it", path=str(p), code=SHARD_NOT_IN_META)
            )
    return src
