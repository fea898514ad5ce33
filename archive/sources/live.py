"""A stopped server's root: ``meta/meta.db``, ``data/<db>/<rp>/<id>/`` and usually ``wal/``.

Nothing is skipped silently: a TSM / tombstone / WAL name that is not a regular readable file (a
dangling link, a FIFO, a directory, a device behind a link, unreadable) is an error finding, and
so is a number written with non-ASCII digits in a name (:mod:`~influx_archive.tsm.naming`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...meta import files as metafiles
from ...tsm import naming
from ..errors import FormatError, show
from ..findings import ERROR, FILE_UNREADABLE, META_MISSING, SHARD_DIR_NOT_A_NUMBER, SHARD_NOT_IN_META, WARNING, Finding
from ..untrusted import probe_regular
from .model import Shard, ShardFile, file_kind, fill_from_meta, non_ascii_number
from .ondisk import DiskSource, listdir


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
    shards: dict[tuple[str, str, int], Shard] = {}

    def walk(base: Path, is_wal: bool) -> None:
        if not base.is_dir():
            return
        for db in listdir(base):
            dbp = base / db
            if not dbp.is_dir() or db.startswith("_"):
                continue
            for rp in listdir(dbp):
                rpp = dbp / rp
                if not rpp.is_dir() or rp == "_series":
                    continue
                for sid_text in listdir(rpp):
                    sp = rpp / sid_text
                    if not sp.is_dir():
                        continue
                    sid, bad = naming.number_field(sid_text)
                    if bad:
                        src.findings.append(non_ascii_number(f"shard directory name {show(sid_text)}", str(sp)))
                        continue
                    if sid is None:
                        src.findings.append(Finding(WARNING, "not a shard directory (name is not a number); ignored",
                                                    path=str(sp), code=SHARD_DIR_NOT_A_NUMBER))
                        continue
                    key = (db, rp, sid)
                    s = shards.get(key)
                    if s is None:
                        s = shards[key] = Shard(*key)
                        src.shards.append(s)
                    s.containers.append(str(sp))
                    for name in listdir(sp):
                        fp = sp / name
                        kind = file_kind(name)
                        if kind == naming.BAD_NUMBER:
                            src.findings.append(non_ascii_number(f"file name {show(name)}", str(fp)))
                            continue
                        if kind not in (("wal",) if is_wal else ("tsm", "tombstone")):
                            continue  # fields.idx, index/, a WAL's neighbours: not shard data
                        size, why = probe_regular(fp, raise_os=not salvage)
                        if why is not None:  # never skipped silently: influxd would fail on it
                            src.findings.append(Finding(ERROR, f"{kind} file cannot be read: {why}", path=str(fp),
                                                        code=FILE_UNREADABLE))
                            continue
                        sf = ShardFile(name=name, kind=kind, size=size, container=str(fp))  # type: ignore[arg-type]
                        (s.wal if is_wal else s.files).append(sf)
                    # influxd replays segments in lexical name order (docs/formats.md)
                    s.wal.sort(key=lambda f: f.name)

    walk(p / "data", False)
    walk(p / "wal", True)
    fill_from_meta(src)
    for s in src.shards:
        if src.meta is not None and not s.in_meta and (s.files or s.wal):
            src.findings.append(
                Finding(WARNING, f"shard {s.database}/{s.retention_policy}/{s.id} is on disk but not in the metastore: "
                        "influxd opens it but never serves it", path=str(p), code=SHARD_NOT_IN_META)
            )
    return src
