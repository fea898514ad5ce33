"""``verify-seriesfile``: check every database's tsi1 series file (``<db>/_series``) offline, as
``influx_inspect verify-seriesfile`` does, with the checked reader of
:mod:`influx_archive.tsm.tsi1.seriesfile` (segment headers, entry framing, ids in their
partition, nothing past a segment's end).

One result per series file: healthy with its live series count, or the one-line error that
names the damaged segment and offset. Nothing is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...tsm.tsi1 import format as tfmt
from ...tsm.tsi1.seriesfile import SeriesFile
from ..errors import ArchiveError, SourceError


@dataclass
class SeriesFileCheck:
    database: str | None
    path: str
    series: int | None = None  # live series, when healthy
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"database": self.database, "path": self.path, "ok": self.ok, "series": self.series,
                "error": self.error}


def _check(database: str | None, path: str) -> SeriesFileCheck:
    res = SeriesFileCheck(database, path)
    try:
        sf = SeriesFile(path)
        res.series = sf.series_count()
    except ArchiveError as exc:
        res.error = str(exc)
    return res


def verify_series_files(
    datadir: str | os.PathLike[str] | None = None, *, database: str | None = None,
    series_file: str | os.PathLike[str] | None = None,
) -> list[SeriesFileCheck]:
    """Check ``series_file`` alone, or every ``<db>/_series`` under ``datadir`` (only
    ``database``'s when given)."""
    if series_file is not None:
        p = os.fspath(series_file)
        if not os.path.isdir(p):
            raise SourceError("not a series file directory (expected <db>/_series)", path=p)
        return [_check(None, p)]
    if datadir is None:
        raise SourceError("give the data directory (--dir) or a series file (--series-file)")
    d = os.fspath(datadir)
    if not os.path.isdir(d):
        raise SourceError("not a directory (expected influxd's data directory)", path=d)
    try:
        names = sorted(os.listdir(d))
    except OSError as exc:
        raise SourceError(f"cannot read the data directory: {exc.strerror}", path=d) from exc
    if database is not None:
        if database not in names:
            raise SourceError(f"no database directory {database!r}", path=d)
        names = [database]
    out = []
    for db in names:
        sp = os.path.join(d, db, tfmt.SERIES_FILE_DIR)
        if os.path.isdir(sp):
            out.append(_check(db, sp))
    return out


__all__ = ["SeriesFileCheck", "verify_series_files"]
