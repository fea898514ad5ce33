"""A legacy backup directory (``influxd backup``): ``meta.NN`` metastore snapshots and
``<db>.<rp>.<id5>.NN`` shard tars, one or several backup runs (increments). See docs/formats.md.

Shard file names are parsed by :func:`~influx_archive.meta.files.parse_legacy_shard_file_name`;
a name shaped like one with a number written in non-ASCII digits is an error finding, never
taken for the shard it resembles (see :mod:`~influx_archive.tsm.naming`).
"""

from __future__ import annotations

import bisect
import os
import re
from pathlib import Path

from ...meta import files as metafiles
from ...meta.format import MAX_META_FILE_SIZE
from ...tsm import naming
from ..errors import show
from ..findings import ERROR, NOT_A_BACKUP_FILE, PARTIAL_DOWNLOAD, TAR_UNREADABLE, WARNING, Finding
from ..untrusted import probe_regular, read_small
from .model import fill_from_meta, mark_range_increments, meta_shard_index, non_ascii_number
from .ondisk import DiskSource, add_tar_shard
from .rundates import date_requests, request_windows

# ASCII digits only (re.ASCII): influxd parses these numbers with Go's strconv (see tsm.naming).
LEGACY_META_RE = re.compile(r"^meta\.(\d+)$", re.ASCII)
#: The run record of a legacy backup run of this tool (archive/ops/onlinechain.py): when the run
#: started, for later ``--since`` increments. influxd's restore globs ``meta.*`` and ``<db>.*``
#: only, so it never sees it.
RUN_RECORD_PREFIX = ".influx-archive-run."
RUN_RECORD_RE = re.compile(rf"^{re.escape(RUN_RECORD_PREFIX)}(\d{{2,}})$", re.ASCII)
# The same shapes with anything where the numbers go: a match here that the ASCII parsing refuses,
# with a number written in non-ASCII digits, is reported, never taken for another file or shard.
_LOOSE_META_RE = re.compile(r"^meta\.([^.]+)$")
_LOOSE_SHARD_RE = re.compile(r"^(?P<prefix>.+)\.(?P<id>[^.]+)\.(?P<n>[^.]+)$")


def open_legacy(p: Path, names: list[str], salvage: bool = False, prescanned: dict | None = None) -> DiskSource:
    metas = sorted(
        (int(LEGACY_META_RE.match(n).group(1)), n) for n in names if LEGACY_META_RE.match(n)  # type: ignore[union-attr]
    )
    src = DiskSource("legacy", str(p), salvage=salvage, prescanned=prescanned or {})
    for n in names:
        loose_meta = _LOOSE_META_RE.match(n)
        if loose_meta and not LEGACY_META_RE.match(n) and naming.numeral_like(loose_meta.group(1)):
            src.findings.append(non_ascii_number(f"metastore snapshot number in {show(n)}", str(p / n)))
    # The newest metastore snapshot is the numerically highest meta.NN (influxd takes the lexically
    # last name, so meta.99 beats meta.100 and a stray meta.00.pending wins: docs/formats.md).
    meta_name = metas[-1][1]
    meta_path = p / meta_name
    src.meta = metafiles.parse_meta_nn(read_small(meta_path, MAX_META_FILE_SIZE), path=str(meta_path)).data
    src.meta_origin = str(meta_path)
    for n in names:
        if n.endswith(".pending"):
            src.findings.append(Finding(WARNING, "unfinished download left by influxd backup; ignored", path=str(p / n),
                                        code=PARTIAL_DOWNLOAD))
    shard_index = meta_shard_index(src.meta)
    increments: set[int] = set()
    run_starts = legacy_run_starts(p, [n for _, n in metas])
    dated: list[tuple[str, int | None]] = []  # (shard tar, its run's start)
    for n in names:
        if (
            LEGACY_META_RE.match(n)
            or RUN_RECORD_RE.match(n)
            or n.endswith(".pending")
            or (_LOOSE_META_RE.match(n) and naming.numeral_like(n[5:]))
        ):
            continue
        m = metafiles.parse_legacy_shard_file_name(n, as_written=False)
        loose = _LOOSE_SHARD_RE.match(n)
        fields = [naming.number_field(loose.group(g)) for g in ("id", "n")] if loose else []
        if not m and fields and all(f != (None, False) for f in fields) and any(bad for _, bad in fields):
            src.findings.append(non_ascii_number(f"shard id or increment number in {show(n)}", str(p / n)))
            continue
        if not m:
            src.findings.append(
                Finding(WARNING, "not a legacy backup file; ignored", path=str(p / n), code=NOT_A_BACKUP_FILE))
            continue
        _size, why = probe_regular(p / n, raise_os=not salvage)
        if why is not None:
            src.findings.append(
                Finding(ERROR, f"shard tar cannot be read: {why}", path=str(p / n), code=TAR_UNREADABLE))
            continue
        sid = m.shard_id
        inc = m.n
        increments.add(inc)
        fallback = None
        if sid in shard_index and f"{shard_index[sid][0]}.{shard_index[sid][1]}" == m.prefix:
            fallback = (shard_index[sid][0], shard_index[sid][1], sid)
        started = run_start(run_starts, p / n)
        dated.append((str(p / n), started))
        add_tar_shard(src, p / n, gz=False, increment=inc, fallback=fallback, set_time=started)
    src.increments = max(1, len(increments))
    date_requests(src.shards, request_windows(dated))
    fill_from_meta(src)
    mark_range_increments(src.shards)
    return src


def legacy_run_starts(p: Path, meta_names: list[str]) -> list[float]:
    """mtimes of the ``meta.NN`` files, ascending. ``influxd backup`` (legacy) writes the run's
    metastore first, then its shard tars (cmd/influxd/backup/backup.go ``Run``)."""
    out = []
    for n in meta_names:
        try:
            out.append(os.stat(p / n).st_mtime)
        except OSError:
            continue
    return sorted(out)


def run_start(run_starts: list[float], tar: Path) -> int | None:
    """When the run that wrote ``tar`` started, as well as the files tell (epoch s): the mtime of
    the newest ``meta.NN`` written before the tar. None when no ``meta.NN`` is older (the files
    were copied without their mtimes: then only same-named copies show a range backup)."""
    try:
        t = os.stat(tar).st_mtime
    except OSError:
        return None
    i = bisect.bisect_right(run_starts, t)
    return int(run_starts[i - 1]) if i else None
