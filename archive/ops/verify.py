"""Check a backup (or server root, or single file) without a server, reporting every problem.

Checks (each damage is a :class:`~influx_archive.archive.findings.Finding`; checking goes on
after it wherever the format allows):

* the source is recognised; every metastore file decodes (every ``meta.NN`` of a legacy set, the
  ``.meta`` of every manifest, ``meta.db``);
* portable manifests: every listed file present, no shard listed twice, ``size`` equal to the
  uncompressed tar bytes (the meaning influxd gives it, docs/formats.md; checked by the source
  model while it lists each tar);
* tar and gzip integrity: truncated members (influxd 1.6.7 writes them for ``-start/-end``
  backups of shards with tombstones, §3.5), bad headers, unsafe members;
* every TSM file: header, footer, index bounds and key order, and every block's CRC32; with
  ``deep`` also every block decoded: value count, timestamps ascending, index min/max equal to the
  block's first/last timestamp, block type equal to the index's;
* a server root's tsi1 series files and shard indexes, and every series of its data in both
  (:mod:`.verifytsi`);
* tombstone files parse; WAL segments parse (a torn tail is a warning: influxd truncates it and
  starts);
* metastore against data: shard data the metastore does not list (influxd never serves it);
  a database, retention policy, shard group or shard id listed twice;
* nothing is skipped silently: a tar member refused as hostile (unsafe name, link, device, FIFO)
  is an error here (other verbs go on without it, with a warning naming it), and so is a shard file
  of a server root that is not a readable regular file.

A source this version cannot read (a sparse tar member) is not a finding: :class:`UnsupportedError`
is raised (exit 3), as every other verb does.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ...meta import files as metafiles
from ...meta.format import MAX_META_FILE_SIZE
from ...meta.model import decode_data
from ...tsm.block import check_block_order, decode_block
from ...tsm.reader import TSMReader
from ...tsm.tombstone import read_tombstones
from ..errors import ArchiveError, FormatError, UnsupportedError, UsageError
from ..findings import (
    ERROR,
    INFO,
    MANIFEST_FILE_MISSING,
    MANIFEST_META_SIZE,
    WAL_DAMAGED_ENTRY,
    WAL_TORN_TAIL,
    WARNING,
    Finding,
)
from ..progress import ProgressCallback, Reporter
from ..sources import ShardFile, Source, open_source
from ..sources.legacy import LEGACY_META_RE
from ..sources.tarscan import REFUSED_MEMBER
from ..threads import map_on_cores
from ..untrusted import read_small
from .tsmcopy import checked_chunks

#: Below this many bytes of shard files the shards are checked one after the other in this thread:
#: a thread pool (its import and start, ~5 ms) costs more than the cores save on so little.
SERIAL_BELOW = 4 << 20


@dataclass
class VerifyReport:
    """What :func:`verify` checked (files, blocks, bytes; ``--deep``: values) and found."""

    source: Source | None
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    blocks: int = 0
    bytes: int = 0
    values: int = 0  # --deep: values decoded from TSM blocks
    wal_values: int = 0  # --deep: values in WAL write entries
    #: --deep: per shard, {database, retention_policy, id, files, blocks, values, wal_values}
    shards: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "source": {"kind": self.source.kind, "path": self.source.display_path} if self.source else None,
            "files": self.files,
            "blocks": self.blocks,
            "bytes": self.bytes,
            "values": self.values,
            "wal_values": self.wal_values,
            "shards": list(self.shards),
            "findings": [f.to_dict() for f in self.findings],
        }


def verify(
    path: str | os.PathLike[str] | None, *, deep: bool = False, progress: ProgressCallback | None = None,
    host: str | None = None,
) -> VerifyReport:
    """Check ``path`` (or the running influxd at ``host``, HOST:PORT of its snapshotter port)."""
    sealed_findings: list[Finding] = []
    if path is not None and _is_sealed(path):
        from ..sources.sealed import verify_sealed

        # a sealed archive: every member against its manifest first (sizes, sha256, zstd frames);
        # the backup inside is then checked like a directory, shard by shard, without extracting
        sealed_findings, nfiles, nbytes = verify_sealed(path)
        if any(f.severity == ERROR for f in sealed_findings):
            return VerifyReport(None, sealed_findings, nfiles, 0, nbytes)
    try:
        src = open_source(path, salvage=True, host=host)
    except (UsageError, UnsupportedError):
        raise  # not a source at all (exit 2), or one this version cannot read (exit 3): not a finding
    except ArchiveError as exc:
        if host is not None and not isinstance(exc, FormatError):
            raise  # an unreachable or refusing server is not damage
        return VerifyReport(None, sealed_findings + [Finding.from_error(exc)])
    with src:  # a sealed archive's private spool is removed when the check ends
        # a manifest's metastore size is checked below, for every manifest (as an error)
        report = VerifyReport(src, sealed_findings + [_as_verify_finding(f) for f in src.findings
                                                      if f.code != MANIFEST_META_SIZE])
        _check_metastores(src, report)
        rep = Reporter(progress, label="verify")
        total = sum(f.size for s in src.shards for f in s.files + s.wal)
        rep.start(total)
        lock = threading.Lock()

        def advance(n: int) -> None:
            with lock:
                rep.advance(n)

        def check_shard(shard) -> VerifyReport:
            part = VerifyReport(None)  # merged in shard order: the report does not depend on timing
            try:
                with src.open_shard(shard) as opened:
                    for f in shard.files:
                        _check_file(opened.stream(f), f, part, deep)
                        advance(f.size)
                    for f in shard.wal:
                        _check_wal(opened.stream(f), f, part, deep)
                        advance(f.size)
            except ArchiveError as exc:
                part.findings.append(Finding.from_error(exc))
            return part

        shards = [s for s in src.shards if s.files or s.wal]
        src.expect(shards)
        try:
            parts = [check_shard(s) for s in shards] if total < SERIAL_BELOW else map_on_cores(check_shard, shards)
        finally:
            rep.end()
        for shard, part in zip(shards, parts):
            report.findings.extend(part.findings)
            report.files += part.files
            report.blocks += part.blocks
            report.bytes += part.bytes
            report.values += part.values
            report.wal_values += part.wal_values
            if deep:
                report.shards.append({
                    "database": shard.database, "retention_policy": shard.retention_policy, "id": shard.id,
                    "files": part.files, "blocks": part.blocks, "values": part.values, "wal_values": part.wal_values,
                })
        if src.kind == "live":  # a server root: its tsi1 series files and indexes (archive/ops/verifytsi.py)
            from .verifytsi import check_tsi1  # tsi1 readers: only a server root has them (start-up)

            root = Path(src.path)
            found, nfiles = check_tsi1(root / "data", root / "wal" if (root / "wal").is_dir() else None)
            report.findings.extend(found)
            report.files += nfiles
        return report


def _is_sealed(path: str | os.PathLike[str]) -> bool:
    """:func:`~..sources.sealed.is_zstd_file`, whose module (and what it imports) is only loaded
    for a regular file: a directory, the usual source, is never one."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    from ..sources.sealed import is_zstd_file

    return is_zstd_file(path)


def verify_files(
    paths: list[str], *, deep: bool = False, progress: ProgressCallback | None = None
) -> list[VerifyReport]:
    """:func:`verify` of each path (``verify --dir``: every TSM file of a data directory), files on
    one thread per core, the reports in the order of ``paths``; progress moves by each file's size
    as it is done."""
    rep = Reporter(progress, label="verify")
    sizes = {}
    for p in paths:
        try:
            sizes[p] = os.stat(p).st_size
        except OSError:
            sizes[p] = 0  # verify names what is wrong with it
    rep.start(sum(sizes.values()))
    lock = threading.Lock()

    def one(path: str) -> VerifyReport:
        report = verify(path, deep=deep)
        with lock:
            rep.advance(sizes[path])
        return report

    try:
        return map_on_cores(one, paths)
    finally:
        rep.end()


def _as_verify_finding(f: Finding) -> Finding:
    """A tar member other verbs go on without (warning) is an error of the backup here."""
    if f.severity == WARNING and f.message.startswith(REFUSED_MEMBER):
        return Finding(ERROR, f.message, f.path, f.member, f.offset, code=f.code)
    return f


def _check_metastores(src: Source, report: VerifyReport) -> None:
    root = Path(src.path)
    if src.kind == "legacy":
        for name in sorted(os.listdir(root)):
            if LEGACY_META_RE.match(name):
                p = root / name
                try:
                    metafiles.parse_meta_nn(read_small(p, MAX_META_FILE_SIZE), path=str(p))
                    report.files += 1
                except ArchiveError as exc:
                    report.findings.append(Finding.from_error(exc))
    elif src.kind == "portable":
        from ..sources.portable import manifest_file_name, meta_size_lie

        for mpath in src.manifests:
            try:
                man = metafiles.parse_manifest(read_small(Path(mpath), MAX_META_FILE_SIZE), path=mpath)
                meta = root / manifest_file_name(man.meta_file_name, mpath, "meta.fileName")
            except ArchiveError as exc:
                report.findings.append(Finding.from_error(exc))
                continue
            if not meta.is_file():
                report.findings.append(Finding(
                    ERROR, f"metastore file {man.meta_file_name} listed by the manifest is missing", path=mpath,
                    code=MANIFEST_FILE_MISSING))
                continue
            try:
                blob, _ = metafiles.parse_portable_meta(read_small(meta, MAX_META_FILE_SIZE), path=str(meta))
                decode_data(blob, path=str(meta))
                report.files += 1
                lie = meta_size_lie(man.meta_size, meta.name, len(blob))
                if lie is not None:
                    report.findings.append(Finding(ERROR, lie, path=mpath, code=MANIFEST_META_SIZE))
            except ArchiveError as exc:
                report.findings.append(Finding.from_error(exc))


def _check_file(stream, f: ShardFile, report: VerifyReport, deep: bool) -> None:
    report.files += 1
    report.bytes += f.size
    try:
        if f.kind == "tombstone":
            read_tombstones(stream, name=f.origin)
            return
        if f.kind != "tsm":
            return
        reader = TSMReader(stream, name=f.origin, size=f.size)
    except ArchiveError as exc:
        report.findings.append(Finding.from_error(exc.located(path=f.container, member=f.member)))
        return
    def damaged(exc: ArchiveError) -> None:
        exc.located(path=f.container, member=f.member)
        report.findings.append(Finding(ERROR, exc.message, exc.path, exc.member, exc.offset, code=exc.code))

    frames = reader.frames()
    report.blocks += len(frames)
    try:
        for _ in checked_chunks(stream, reader, on_damage=damaged, frames=frames):
            pass
    except ArchiveError as exc:  # the file ends early: nothing after it can be checked
        damaged(exc)
        return
    if deep:
        for key, btype, entries in reader.iter_index():
            for e in entries:
                try:
                    report.values += _deep_block(key, btype, e, reader.read_block(e, verify_crc=False))
                except ArchiveError as exc:
                    damaged(exc)


def _deep_block(key: bytes, btype: int, e, data: bytes) -> int:
    """Decode one block and check it against its index entry; returns its value count."""
    try:
        t, ts, vs = decode_block(data)
    except ArchiveError as exc:
        raise FormatError(f"block does not decode: {exc.message}", offset=e.offset) from None
    if t != btype:
        raise FormatError(f"block type {t} differs from the index's {btype}", offset=e.offset)
    bad = check_block_order(ts)
    if bad is not None:
        raise FormatError(f"timestamps not ascending at value {bad}", offset=e.offset)
    if ts and (ts[0] != e.min_time or ts[-1] != e.max_time):
        raise FormatError(
            f"index says {e.min_time}..{e.max_time}, block holds {ts[0]}..{ts[-1]}", offset=e.offset
        )
    if len(vs) != len(ts):
        raise FormatError(f"{len(ts)} timestamps but {len(vs)} values", offset=e.offset)
    return len(ts)


def _check_wal(stream, f: ShardFile, report: VerifyReport, deep: bool = False) -> None:
    from ...tsm.wal import WALCorruption, WriteEntry, iter_wal  # only sources with a WAL (start-up)

    report.files += 1
    report.bytes += f.size
    try:
        for item in iter_wal(stream, name=f.origin, salvage=True):
            if deep and isinstance(item, WriteEntry):
                report.wal_values += sum(len(v[1]) for v in item.values.values())
            if isinstance(item, WALCorruption):
                sev = WARNING if item.resume is None else ERROR
                torn = "torn tail: influxd truncates the segment here and starts"
                what = torn if item.resume is None else "damaged entry"
                code = WAL_TORN_TAIL if item.resume is None else WAL_DAMAGED_ENTRY
                report.findings.append(
                    Finding(sev, f"{what} ({item.reason})", f.container, f.member, item.offset, code=code))
    except ArchiveError as exc:
        report.findings.append(Finding.from_error(exc.located(path=f.container, member=f.member)))


__all__ = ["INFO", "VerifyReport", "verify", "verify_files"]
