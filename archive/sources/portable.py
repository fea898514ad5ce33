"""A portable backup (``influxd backup -portable``): ``<ts>.manifest`` + ``<ts>.meta`` +
``<ts>.s<id>.tar.gz``, one or several manifests (incremental sets, layered oldest first). See
docs/formats.md. Names of files that a manifest lists must be plain names in the backup directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from ...meta import files as metafiles
from ...meta.format import MAX_META_FILE_SIZE
from ...meta.model import Data, decode_data
from ..errors import ArchiveError, FormatError, show
from ..findings import (
    ERROR,
    MANIFEST_DUPLICATE_ENTRY,
    MANIFEST_FILE_MISSING,
    MANIFEST_FILE_UNREADABLE,
    MANIFEST_META_SIZE,
    WARNING,
    Finding,
)
from ..threads import map_on_cores
from ..timefmt import parse_backup_stamp
from ..untrusted import probe_regular, read_small
from .model import Shard, fill_from_meta, mark_range_increments
from .ondisk import DiskSource, add_tar_shard
from .rundates import date_requests, request_windows
from .tarscan import scan_shard_tar

PORTABLE_MANIFEST_RE = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)\.manifest$", re.ASCII)


def meta_size_lie(said: int, meta_name: str, held: int) -> str | None:
    """What is wrong when a manifest's metastore size (``said``) is not the blob's (``held``)."""
    if said == held:
        return None
    return f"manifest says the metastore blob is {said} bytes, {show(meta_name)} holds {held}"


def open_portable(
    p: Path, manifest_paths: list[Path], salvage: bool = False, prescanned: dict | None = None,
    unread: Callable[[Data], set[tuple[str, str, int]]] | None = None,
) -> DiskSource:
    """``unread``: given the metastore, the shards the caller will not read (a convert's filters
    and time window leave them out). With a single manifest their ``.tar.gz`` files are not
    inflated and the shards are left out of the model; with increments every file is read (a
    range increment is recognised across shards, see :func:`.model.mark_range_increments`)."""
    src = DiskSource("portable", str(p), salvage=salvage, prescanned=prescanned or {})
    # Oldest first, so later manifests layer on top (docs/formats.md; we take the union).
    manifest_paths = sorted(manifest_paths, key=lambda q: q.name)
    parsed = []
    for mp in manifest_paths:
        parsed.append((mp, metafiles.parse_manifest(read_small(mp, MAX_META_FILE_SIZE), path=str(mp))))
    src.manifests = [str(mp) for mp, _ in parsed]
    src.increments = len(parsed)
    newest_path, newest = parsed[-1]
    meta_path = p / manifest_file_name(newest.meta_file_name, str(newest_path), "meta.fileName")
    if not meta_path.is_file():
        raise FormatError(
            f"metastore file {newest.meta_file_name} listed by the manifest is missing", path=str(newest_path)
        )
    blob, _max_node = metafiles.parse_portable_meta(read_small(meta_path, MAX_META_FILE_SIZE), path=str(meta_path))
    src.meta = decode_data(blob, path=str(meta_path))
    lie = meta_size_lie(newest.meta_size, meta_path.name, len(blob))
    if lie is not None:  # as verify reports it (MANIFEST_META_SIZE): the set is not as written
        err = FormatError(lie, path=str(newest_path))
        if not salvage:
            raise err
        src.findings.append(Finding(WARNING, err.message + "; the metastore is used as it is", path=str(newest_path),
                                    code=MANIFEST_META_SIZE))
    src.meta_origin = str(meta_path)
    skipped = unread(src.meta) if unread is not None and len(parsed) == 1 else set()
    # What each manifest entry asks for, in order; the .tar.gz files are then inflated and listed
    # on every core (zlib and ISA-L release the GIL) and registered in this same order.
    steps: list[tuple] = []
    for inc, (mp, man) in enumerate(parsed):
        seen_ids: set[int] = set()
        for i, e in enumerate(man.files or []):
            fp = p / manifest_file_name(e.file_name, str(mp), f"files[{i}].fileName")
            key = (e.database, e.policy, e.shard_id)
            if e.shard_id in seen_ids:
                err = FormatError(f"shard {e.shard_id} is listed twice; which file holds it is unknown", path=str(mp))
                if not salvage:
                    raise err
                steps.append(("finding", Finding(ERROR, err.message + "; the second entry is ignored", path=str(mp),
                                                 code=MANIFEST_DUPLICATE_ENTRY)))
                continue
            seen_ids.add(e.shard_id)
            if not os.path.lexists(fp):
                steps.append(("missing", Finding(
                    ERROR, f"shard file {show(e.file_name)} listed by the manifest is missing", path=str(mp),
                    code=MANIFEST_FILE_MISSING), key))
                continue
            _size, why = probe_regular(fp, raise_os=not salvage)
            if why is not None:
                steps.append(("missing", Finding(
                    ERROR, f"shard file listed by the manifest cannot be read: {why}", path=str(fp),
                    code=MANIFEST_FILE_UNREADABLE), key))
                continue
            steps.append(("skip" if key in skipped else "tar", fp, inc, key, e.size, _manifest_time(mp)))
    scans = _scan_gz_tars(
        [(st[1], st[4]) for st in steps if st[0] == "tar" and str(st[1]) not in src.prescanned], salvage
    )
    for st in steps:
        if st[0] == "finding":
            src.findings.append(st[1])
        elif st[0] == "skip":
            continue
        elif st[0] == "missing":
            src.findings.append(st[1])
            if st[2] not in src._index():
                src.shards.append(Shard(*st[2]))
        else:
            _, fp, inc, key, size, set_time = st
            scanned = scans.get((str(fp), size))
            if isinstance(scanned, BaseException):
                raise scanned
            if scanned is not None:
                members, found = scanned
                src.findings.extend(found)
                src.prescanned[str(fp)] = members
            add_tar_shard(src, fp, gz=True, increment=inc, fallback=key, expected_size=size, set_time=set_time)
    # each shard of a run was asked for after the run's other shard files finished before it
    date_requests(src.shards, request_windows([(str(st[1]), st[5]) for st in steps if st[0] in ("tar", "skip")]))
    fill_from_meta(src)
    mark_range_increments(src.shards)
    return src


def _manifest_time(mp: Path) -> int | None:
    """When the backup run of a ``<ts>.manifest`` started (epoch s; influxd's Go layout
    ``20060102T150405Z``, UTC), or None for another name."""
    m = PORTABLE_MANIFEST_RE.match(mp.name)
    if not m:
        return None
    return parse_backup_stamp(m.group("ts"))


def manifest_file_name(name: str, manifest: str, field: str) -> str:
    """A file name a portable manifest lists, refused unless it is a plain name in the backup
    directory (influxd writes base names; an absolute name or one with ``/`` or ``..`` would make
    every verb read, and restore, a file from outside the backup)."""
    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise FormatError(
            f"manifest names {show(name)!s} as a file of the backup: only a plain file name in the "
            "backup directory is accepted",
            path=manifest,
            field=field,
        )
    return name


def _scan_gz_tars(jobs: list[tuple[Path, int]], salvage: bool) -> dict:
    """``scan_shard_tar`` of each (.tar.gz, manifest size), on up to one thread per core:
    {(path, size): (members, findings) or the error it raised}."""

    def scan(job: tuple[Path, int]):
        found: list[Finding] = []
        try:
            return scan_shard_tar(str(job[0]), gz=True, findings=found, salvage=salvage, expected_size=job[1]), found
        except ArchiveError as exc:
            return exc

    jobs = list(dict.fromkeys((j[0], j[1]) for j in jobs))
    results = map_on_cores(scan, jobs)
    return {(str(fp), size): r for (fp, size), r in zip(jobs, results)}
