"""Where a ``--since`` increment added to an existing backup must start, shard by shard, so that
the chain it joins misses nothing (docs/formats.md#online-backup).

The server ships the files of a shard modified after ``Since``. A file written between the
chain's newest fetch of that shard and ``Since`` (a cache snapshot, a compaction output) is then
in no backup of the chain, and the restored union silently lacks it: new points lost, or a
tombstone of the increment naming a file nothing holds while the older file it replaced comes
back with points the server had deleted. So the ``Since`` asked for a shard is never later than a
moment known to precede the chain's newest fetch of it:

* portable: the ``<ts>`` of the newest manifest that lists the shard (influxd and this tool both
  take it when the run starts, before any shard is asked for);
* legacy: the run record ``.influx-archive-run.NN`` this tool writes with each run, or, for a run
  of ``influxd backup`` (which writes ``meta.NN`` first, then the shard tars), the mtime of its
  ``meta.NN`` when it is older than the run's tars.

Both are the client's clock and the server compares with its file mtimes: :data:`CLOCK_MARGIN_NS`
earlier covers a small skew. A shard the chain does not hold at all is fetched whole. A shard
whose fetch time nothing tells keeps the ``Since`` asked for (a warning says so)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...meta import files as metafiles
from ...meta.format import MAX_META_FILE_SIZE
from ..errors import ArchiveError, show
from ..sources.legacy import LEGACY_META_RE, RUN_RECORD_PREFIX, RUN_RECORD_RE
from ..sources.portable import PORTABLE_MANIFEST_RE
from ..timefmt import parse_backup_stamp
from ..untrusted import read_small

CLOCK_MARGIN_NS = 60 * 10**9
_RECORD_MAX = 4096


def run_record_name(increment: int) -> str:
    return f"{RUN_RECORD_PREFIX}{increment:02d}"


def write_run_record(directory: Path, increment: int, started_ns: int) -> str:
    """Write the run record of legacy increment ``increment`` into ``directory``; its name."""
    name = run_record_name(increment)
    with open(directory / name, "x", encoding="utf-8") as fh:
        json.dump({"started_ns": started_ns}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return name


def _read_record(path: Path) -> int | None:
    try:
        raw = read_small(path, _RECORD_MAX)
        value = json.loads(raw)["started_ns"]
    except (ArchiveError, OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def chain_bounds(dest: Path, to: str) -> tuple[dict[int, int | None], list[str]]:
    """Shard id -> the latest moment (epoch ns, margin taken off) known to precede the newest
    fetch of that shard in the backups of ``dest``, or None when nothing tells; shards absent
    from the chain are absent. Also warnings for files that could not be read."""
    names = os.listdir(dest)
    warnings: list[str] = []
    starts: dict[int, list[int | None]] = {}
    if to == "portable":
        for n in names:
            m = PORTABLE_MANIFEST_RE.match(n)
            if not m:
                continue
            stamp = parse_backup_stamp(m.group("ts"))
            try:
                manifest = metafiles.parse_manifest(read_small(dest / n, MAX_META_FILE_SIZE), path=str(dest / n))
            except ArchiveError as exc:
                warnings.append(f"{show(n)} cannot be read ({exc.message}): its shards are taken as not backed up")
                continue
            for e in manifest.files or []:
                starts.setdefault(e.shard_id, []).append(None if stamp is None else stamp * 10**9)
    else:
        records: dict[int, int | None] = {}
        metas: dict[int, float] = {}
        tars: dict[int, list[tuple[int, float]]] = {}
        for n in names:
            rec = RUN_RECORD_RE.match(n)
            if rec:
                records[int(rec.group(1))] = _read_record(dest / n)
                continue
            try:
                mtime = os.stat(dest / n).st_mtime
            except OSError:
                continue
            if LEGACY_META_RE.match(n):
                idx = metafiles.legacy_meta_index(n)
                if idx is not None:
                    metas[idx] = mtime
                continue
            parsed = metafiles.parse_legacy_shard_file_name(n, as_written=False)
            if parsed is not None and isinstance(parsed.n, int):
                tars.setdefault(parsed.n, []).append((parsed.shard_id, mtime))
        for inc, shards in tars.items():
            started = records.get(inc)
            if started is None and inc in metas and metas[inc] < min(t for _, t in shards):
                started = int(metas[inc] * 1e9)
            for sid, _t in shards:
                starts.setdefault(sid, []).append(started)
    out: dict[int, int | None] = {}
    for sid, values in starts.items():
        known = [v for v in values if v is not None]
        out[sid] = max(known) - CLOCK_MARGIN_NS if known else None
    return out, warnings


def since_for(since: int | None, bounds: dict[int, int | None] | None, shard_id: int) -> int | None:
    """The ``Since`` to ask for ``shard_id``: None (whole) for a shard the chain lacks, else the
    earlier of ``since`` and the chain's bound (``since`` when the bound is unknown)."""
    if since is None or bounds is None:
        return since
    if shard_id not in bounds:
        return None
    bound = bounds[shard_id]
    return since if bound is None else min(since, bound)
