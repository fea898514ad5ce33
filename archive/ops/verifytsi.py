"""``verify`` of a server root's tsi1 index: what ``influx_inspect verify-seriesfile`` checks, and
the index against the data.

For every database directory of ``<root>/data``:

* its series file ``_series``: every partition's segments read and parsed (header, every entry's
  flag, id, key and its partition — tsm/tsi1/seriesfile.py); a damaged partition is one finding
  with the segment and offset, and the checks below leave its series out; a partition's hash
  ``index`` (influxd writes one when it compacts the partition) checked slot by slot against the
  segments (tsm/tsi1/seriesindex.py): one finding with the file and offset;
* every shard's ``index/``: every partition's MANIFEST and the log files it lists (each entry's
  checksum) and index files (their blocks' bounds) — one finding per damaged partition, with the
  file and offset;
* every series key of every TSM file of the shard (minus whole-series tombstones) and of its WAL
  segments (``<root>/wal``) is in the series file and in the shard's index (log files and the
  ``.tsi`` index files influxd's compactions write alike: their series id sets are decoded);
  index entries naming ids the series file lacks; shards without ``index/`` in a database whose
  other shards have one (influxd opens those with inmem, even under tsi1).

A shard whose TSM or WAL files cannot be read is not cross-checked here: the TSM / WAL checks
report that damage.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...tsm.tsi1 import format as tfmt
from ...tsm.tsi1 import index as tindex
from ...tsm.tsi1 import seriesfile as sfmod
from ...tsm.tsi1 import serieskey
from ...tsm.tsi1.seriesindex import check_series_index
from ..errors import ArchiveError, show
from ..findings import (
    ERROR,
    TSI1_INDEX_DAMAGED,
    TSI1_INDEX_ID_UNKNOWN,
    TSI1_SERIES_FILE_DAMAGED,
    TSI1_SERIES_FILE_MISSING,
    TSI1_SERIES_NOT_IN_FILE,
    TSI1_SERIES_NOT_IN_INDEX,
    TSI1_SHARD_WITHOUT_INDEX,
    WARNING,
    Finding,
)
from .buildtsi import keyed_series

SHOWN_KEYS = 3  # series keys named in one finding; the count says the rest


def _dirs(p: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(p) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _damaged(what: str, exc: ArchiveError, code: str) -> Finding:
    return Finding(ERROR, f"{what}: {exc.message}", exc.path, exc.member, exc.offset, code=code)


def _keys(keys: list[bytes]) -> str:
    shown = ", ".join(show(k.decode("utf-8", "backslashreplace")) for k in keys[:SHOWN_KEYS])
    return shown + (f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else "")


def check_tsi1(data: Path, wal: Path | None) -> tuple[list[Finding], int]:
    """Findings of the tsi1 checks of a data directory, and how many files were read."""
    findings: list[Finding] = []
    files = 0
    for db in _dirs(data):
        if db.startswith("_"):
            continue
        dbp = data / db
        shards = [dbp / rp / sh for rp in _dirs(dbp) if rp != tfmt.SERIES_FILE_DIR for sh in _dirs(dbp / rp)
                  if sh.isdigit()]
        indexed = [s for s in shards if os.path.lexists(s / tfmt.INDEX_DIR)]
        sdir = dbp / tfmt.SERIES_FILE_DIR
        if not indexed:
            continue  # an inmem database (its series file, if any, is influxd's own cache)
        ids: dict[bytes, int] = {}
        readable: set[int] = set()  # series partitions read whole
        if not sdir.is_dir():
            findings.append(Finding(ERROR, f"{len(indexed)} shard(s) have index/ but the database has no "
                                    f"{tfmt.SERIES_FILE_DIR}: influxd cannot open them", str(dbp),
                                    code=TSI1_SERIES_FILE_MISSING))
        else:
            for p in range(tfmt.SERIES_PARTITION_N):
                ppath = sdir / tfmt.partition_dir_name(p)
                try:
                    part = sfmod.read_partition(str(ppath), p)
                except ArchiveError as exc:
                    findings.append(_damaged(f"tsi1 series file partition {p}", exc, TSI1_SERIES_FILE_DAMAGED))
                    continue
                files += len(part.segments)
                readable.add(p)
                ids.update(part.keys)
                if part.has_index:  # influxd's hash index of the partition (tsm/tsi1/seriesindex.py)
                    files += 1
                    try:
                        check_series_index(str(ppath / tfmt.INDEX_FILE_NAME), part)
                    except ArchiveError as exc:
                        findings.append(_damaged(f"tsi1 series file partition {p} index", exc,
                                                 TSI1_SERIES_FILE_DAMAGED))
        known = set(ids.values())
        by_id = {v: k for k, v in ids.items()}
        decoded: dict[int, tuple[bytes, set]] = {}
        for shard in shards:
            if shard not in indexed:
                findings.append(Finding(WARNING, "shard has no index/ while other shards of its database have one: "
                                        "influxd opens it with the inmem index, even under tsi1", str(shard),
                                        code=TSI1_SHARD_WITHOUT_INDEX))
                continue
            files += _check_shard(shard, wal, data, ids, readable, known, sdir.is_dir(), findings, by_id, decoded)
    return findings, files


def _index_file_against_series_file(
    ms: list[tindex.Measurement], by_id: dict[int, bytes], decoded: dict[int, tuple[bytes, set]]
) -> tuple[int, str] | None:
    """(offset, what) of the first element of an index file that names a series whose series file
    key has another measurement name or lacks the tag: the index answers queries from these
    lists, so a wrong one serves the wrong series. Ids the series file lacks are left to the
    unknown-id check."""

    def key_of(sid: int) -> tuple[bytes, set] | None:
        got = decoded.get(sid)
        if got is None:
            raw = by_id.get(sid)
            if raw is None:
                return None
            name, tags = serieskey.decode(raw)
            got = decoded[sid] = (name, set(tags))
        return got

    for m in ms:
        for sid in m.series_ids:
            k = key_of(sid)
            if k is not None and k[0] != m.name:
                return m.offset, f"measurement {m.name[:80]!r} lists series {sid}, a series of {k[0][:80]!r}"
        for tk in m.tag_keys:
            for tv in tk.values:
                for sid in tv.series_ids:
                    k = key_of(sid)
                    if k is not None and (k[0] != m.name or (tk.key, tv.value) not in k[1]):
                        return tv.offset, (f"tag {tk.key[:80]!r}={tv.value[:80]!r} of {m.name[:80]!r} lists series "
                                           f"{sid}, which has no such tag")
    return None


def _check_shard(
    shard: Path, wal: Path | None, data: Path, ids: dict[bytes, int], readable: set[int], known: set[int],
    have_sfile: bool, findings: list[Finding], by_id: dict[int, bytes], decoded: dict[int, tuple[bytes, set]],
) -> int:
    idir = shard / tfmt.INDEX_DIR
    series: dict[int, set[int]] = {}  # index partition -> its series ids (log and index files)
    files = 0
    for p in range(tfmt.INDEX_PARTITION_N):
        try:
            summary = tindex.read_index_partition(str(idir / str(p)), p)
        except ArchiveError as exc:
            findings.append(_damaged(f"tsi1 index partition {p}", exc, TSI1_INDEX_DAMAGED))
            continue
        files += len(summary.manifest.files) + 1
        series[p] = summary.series
        for fpath, ms in summary.index_file_measurements.items():
            bad = _index_file_against_series_file(ms, by_id, decoded)
            if bad is not None:
                findings.append(Finding(ERROR, f"tsi1 index file: {bad[1]}", fpath, offset=bad[0],
                                        code=TSI1_INDEX_DAMAGED))
    unknown = sorted(i for s in series.values() for i in s if i not in known) if have_sfile and len(readable) == \
        tfmt.SERIES_PARTITION_N else []
    if unknown:
        findings.append(Finding(WARNING, f"the index lists {len(unknown)} series id(s) the series file does not hold "
                                f"(first {unknown[0]})", str(idir), code=TSI1_INDEX_ID_UNKNOWN))
    wdir = wal / shard.relative_to(data) if wal is not None else None
    try:
        keys = keyed_series(str(shard), str(wdir) if wdir is not None and wdir.is_dir() else None)
    except ArchiveError:
        return files  # damaged data: the TSM / WAL checks report it
    not_in_file: list[bytes] = []
    not_in_index: list[bytes] = []
    for line_key, skey in keys:
        if sfmod.key_partition(skey) not in readable:
            continue
        sid = ids.get(skey)
        if sid is None:
            not_in_file.append(line_key)
            continue
        got = series.get(tindex.index_partition(line_key))
        if got is not None and sid not in got:
            not_in_index.append(line_key)
    if have_sfile and not_in_file:
        findings.append(Finding(ERROR, f"{len(not_in_file)} series of the shard's data are not in the series file: "
                                f"{_keys(not_in_file)}", str(shard), code=TSI1_SERIES_NOT_IN_FILE))
    if not_in_index:
        findings.append(Finding(ERROR, f"{len(not_in_index)} series of the shard's data are not in its index "
                                f"(influxd does not serve them while fields.idx is present): {_keys(not_in_index)}",
                                str(idir), code=TSI1_SERIES_NOT_IN_INDEX))
    return files
