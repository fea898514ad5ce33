"""``dump-tsi``: what a series file and a shard's tsi1 index hold (``influx_inspect dumptsi``).

:func:`dump_tsi` takes a database directory or its ``_series``, a shard directory or its
``index/``, and returns a plain dict the CLI prints (text or JSON). Everything is read with the
checked readers of :mod:`influx_archive.tsm.tsi1`: damage is one :class:`FormatError` naming the
file and offset.
"""

from __future__ import annotations

import os

from ...tsm.tsi1 import format as tfmt
from ...tsm.tsi1 import index as tindex
from ...tsm.tsi1 import seriesfile as sfmod
from ...tsm.tsi1 import serieskey
from ..errors import FormatError, SourceError


def _resolve(path: str, series_file: str | None) -> tuple[str | None, str | None]:
    """(series file dir, index dir) for ``path``."""
    p = os.path.normpath(path)
    if not os.path.isdir(p):
        raise SourceError(
            "not a directory: give a database directory, its _series, a shard directory or its index/", path=path
        )
    base = os.path.basename(p)
    index_dir = None
    sfile = series_file
    if base == tfmt.SERIES_FILE_DIR:
        sfile = sfile or p
    elif os.path.isdir(os.path.join(p, tfmt.SERIES_FILE_DIR)):
        sfile = sfile or os.path.join(p, tfmt.SERIES_FILE_DIR)
    elif base == tfmt.INDEX_DIR and os.path.lexists(os.path.join(p, "0", tfmt.MANIFEST_NAME)):
        index_dir = p
    elif os.path.isdir(os.path.join(p, tfmt.INDEX_DIR)):
        index_dir = os.path.join(p, tfmt.INDEX_DIR)
    else:
        raise SourceError("holds neither a series file (_series) nor a tsi1 index (index/)", path=path)
    if index_dir is not None and sfile is None:
        # <db>/<rp>/<shard>/index -> <db>/_series
        guess = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(index_dir))), tfmt.SERIES_FILE_DIR)
        if os.path.isdir(guess):
            sfile = guess
    return sfile, index_dir


def _series_doc(sid: int, key: bytes) -> dict:
    name, tags = serieskey.decode(key)
    return {
        "id": sid,
        "key": serieskey.to_line_key(name, tags).decode("utf-8", "backslashreplace"),
        "measurement": name.decode("utf-8", "backslashreplace"),
    }


def dump_tsi(path: str, *, series_file: str | None = None, series: bool = False, measurements: bool = False) -> dict:
    sdir, idir = _resolve(os.fspath(path), series_file)
    doc: dict = {"series_file": None, "index": None}
    sf = None
    if sdir is not None:
        sf = sfmod.SeriesFile(sdir)
        doc["series_file"] = {
            "path": sdir,
            "series": sf.series_count(),
            "partitions": [
                {
                    "id": p.id,
                    "segments": [
                        {"name": os.path.basename(s.path), "used": s.size, "size": s.file_size} for s in p.segments
                    ],
                    "series": len(p.keys),
                    "tombstones": len(p.tombstones),
                    "max_id": p.max_id,
                    "index_file": p.has_index,
                }
                for p in sf.partitions
            ],
        }
    ids: set[int] | None = None
    if idir is not None:
        si = tindex.ShardIndex(idir)
        ids = si.series_ids()
        doc["index"] = {
            "path": idir,
            "series": len(ids),
            "partitions": [
                {
                    "id": i,
                    "files": p.manifest.files,
                    "series": len(p.series),
                    "log_entries": p.log_entries,
                    "log_series": len(p.log_series),
                    "log_tombstones": len(p.log_tombstones),
                    "index_files": p.index_files,
                    "index_file_series": p.index_file_series,
                    "index_file_measurements": sorted(
                        m.name.decode("utf-8", "backslashreplace") for m in p.measurements.values()
                    ),
                }
                for i, p in enumerate(si.partitions)
            ],
        }
    listing: list[dict] = []
    if sf is not None and (series or measurements):
        if ids is None:
            listing = [_series_doc(sid, key) for sid, key in sf.series()]
        else:
            byid = dict(sf.series())
            missing = sorted(i for i in ids if i not in byid)
            if missing:
                raise FormatError(f"index holds series id {missing[0]} that the series file {sdir} does not", path=idir)
            listing = [_series_doc(i, byid[i]) for i in sorted(ids)]
    if series:
        doc["series"] = sorted(listing, key=lambda d: d["key"])
    if measurements:
        ms: dict[str, dict] = {}
        if sf is not None:
            byid_tags = {}
            for d in listing:
                ms.setdefault(d["measurement"], {"name": d["measurement"], "series": 0, "tag_keys": set()})[
                    "series"
                ] += 1
                byid_tags[d["id"]] = d["measurement"]
            src = sf.series() if ids is None else ((i, k) for i, k in sf.series() if i in ids)
            for _sid, key in src:
                name, tags = serieskey.decode(key)
                m = ms[name.decode("utf-8", "backslashreplace")]
                m["tag_keys"].update(k.decode("utf-8", "backslashreplace") for k, _ in tags)
        doc["measurements"] = [
            {"name": m["name"], "series": m["series"], "tag_keys": sorted(m["tag_keys"])} for _, m in sorted(ms.items())
        ]
    return doc
