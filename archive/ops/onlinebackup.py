"""Online backup: a running influxd read over its snapshotter port, written as influxd lays out
its own backups (legacy ``meta.NN`` + ``<db>.<rp>.<id5>.NN``; portable ``<ts>.meta``,
``<ts>.s<id>.tar.gz``, ``<ts>.manifest``; docs/formats.md#snapshotter-protocol, #legacy-backups,
#portable-backups). Where influxd's own ``backup`` is wrong, this one is right:

* ``start``/``end`` are exact to the point: every shard is fetched whole (request type 0, its TSM
  and tombstone files) and trimmed here by the convert writers (:mod:`.convert`); the
  block-granular export request (type 5), which a tombstone truncates, is never sent;
* legacy output keeps the server's shard tars as they are, tombstones included (an offline
  restore copies them); portable output has the tombstones applied into the data (influxd's
  restores of portable backups ignore ``.tombstone`` files), except increments (``since``),
  whose tombstones may name files of the earlier backups and are kept as they are;
* the metastore is taken again after the shards; shards of groups created meanwhile are fetched
  too (a few rounds, bounded), and that last metastore is the one written, so users, grants,
  CQs and every shard of the backup are in it;
* every tar is checked complete before it is used; empty and short answers are retried with
  backoff (archive/snapshotter.py);
* ``since`` writes real ``lastModified`` values (the newest member's mtime) and, given an
  existing backup directory of the same format, adds the increment to it under the next free
  names (legacy ``.NN``, portable ``<ts>``), so the chain restores to the union;
* one shard at a time goes through a private spool beside the destination (memory and disk are
  bounded by the largest shard); progress is reported in bytes received.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from ...meta import files as metafiles
from ...meta.model import Data, encode_data, shard_group_range
from ...tsm import naming
from ..cleanup import discard, track, uninterrupted, untrack
from ..errors import ArchiveError, TargetError, UsageError, show
from ..output import building_dir, link_into_place, os_error, plan_dir_output
from ..progress import ProgressCallback, Reporter
from ..snapshotter import Client, EmptyResponse, TarEntry
from ..sources.legacy import LEGACY_META_RE
from ..sources.model import Shard, ShardFile
from ..sources.ondisk import DiskSource, add_tar_shard
from ..sources.portable import PORTABLE_MANIFEST_RE
from ..sources.remote import check_shard_members
from ..sources.shardview import open_shard_reader
from ..sources.tarscan import member_offset
from ..spools import spool
from ..staging import fsync_dir, temp_sibling
from ..streams import SubFile
from ..timefmt import parse_backup_stamp
from .convert import FORMATS, write_backup_meta
from .convertshard import ShardJob, ShardOutput, ShardSettings, convert_shard, plan_steps
from .onlinechain import chain_bounds, since_for, write_run_record
from .onlinejournal import undo_killed_increments, write_journal
from .select import Selection, select_meta, window_overlaps
from .tarwrite import TarWriter, gzip_writer
from .tsmcopy import check_stored_files
from .writeshard import write_shard

#: Rounds of "metastore again, fetch the shards it added" after the first pass.
MAX_ROUNDS = 3


@dataclass
class OnlineShard:
    database: str
    retention_policy: str
    id: int
    group_start: int | None
    group_end: int | None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.database, self.retention_policy, self.id)

    def to_dict(self) -> dict:
        return {"database": self.database, "retention_policy": self.retention_policy, "id": self.id,
                "group_start": self.group_start, "group_end": self.group_end}


@dataclass
class OnlinePlan:
    client: Client
    dest: Path
    to: str
    selection: Selection
    start: int | None
    end: int | None
    since: int | None
    shards: list[OnlineShard]
    increment: int = 0  # legacy .NN of this run (0 = a new backup)
    append: bool = False  # adding an increment to an existing backup directory
    compress_level: int = 1
    warnings: list[str] = field(default_factory=list)
    #: appending: shard id -> the chain's bound for ``since`` (archive/ops/onlinechain.py)
    bounds: dict[int, int | None] | None = None

    def to_dict(self) -> dict:
        return {
            "host": str(self.client.address),
            "dest": str(self.dest),
            "to": self.to,
            "start": self.start,
            "end": self.end,
            "since": self.since,
            "append": self.append,
            "increment": self.increment,
            "shards": [s.to_dict() for s in self.shards],
            "warnings": list(self.warnings),
        }


@dataclass
class OnlineShardResult:
    database: str
    retention_policy: str
    id: int
    file_name: str | None  # None: nothing left in the range
    how: str  # copy (the server's tar as is) | rewrite (tombstones applied / trimmed) | dropped
    received: int  # bytes of the server's tar
    tar_size: int
    file_size: int
    tombstones: int  # .tombstone members in the server's tar
    last_modified: int  # ns: the newest member's mtime (0 when the tar is empty)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class OnlineResult:
    plan: OnlinePlan
    files: list[str]
    shards: list[OnlineShardResult]
    late_shards: list[str]  # fetched because the final metastore listed them
    bytes_received: int
    findings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "host": str(self.plan.client.address),
            "dest": str(self.plan.dest),
            "to": self.plan.to,
            "append": self.plan.append,
            "increment": self.plan.increment,
            "files": self.files,
            "shards": [s.to_dict() for s in self.shards],
            "late_shards": self.late_shards,
            "bytes_received": self.bytes_received,
            "warnings": list(self.plan.warnings),
            "findings": [f.to_dict() for f in self.findings],
        }


def _decode(blob: bytes) -> Data:
    return metafiles.parse_meta_nn(blob, path="metastore backup").data


def _wanted(meta: Data, listed: list[tuple[str, str, int]], sel: Selection, start: int | None,
            end: int | None) -> tuple[list[OnlineShard], list[str]]:
    """The listed shards the selection and range keep, in meta order, with their group ranges."""
    on_server = set(listed)
    out: list[OnlineShard] = []
    seen: set[tuple[str, str, int]] = set()
    for ref in meta.iter_shards():
        key = (ref.db.name, ref.rp.name, ref.shard.id)
        if ref.group.deleted or key not in on_server or not sel.keeps(*key):
            continue
        lo, hi = shard_group_range(ref.group)
        if not window_overlaps((lo, hi), start, end):
            continue
        seen.add(key)
        out.append(OnlineShard(key[0], key[1], key[2], lo, hi))
    live = {(ref.db.name, ref.rp.name, ref.shard.id) for ref in meta.iter_shards() if not ref.group.deleted}
    notes = [
        f"shard {show(d)}/{show(r)}/{i} is on the server but in no live shard group of its metastore: left out"
        for d, r, i in sorted(on_server - live)
        if sel.keeps(d, r, i)
    ]
    return out, notes


def _listing(client: Client, sel: Selection) -> list[tuple[str, str, int]]:
    if sel.database is None:
        return client.shard_paths()  # every database, _internal too (the metastore lists its groups)
    return client.shard_paths(sel.database, sel.retention or "")


def _existing_increment(dest: Path, to: str) -> tuple[bool, int]:
    """(append?, next legacy .NN) for ``dest``: a new or empty directory is a new backup; an
    existing backup of format ``to`` gets the next increment; anything else is refused."""
    try:
        names = os.listdir(dest)
    except FileNotFoundError:
        return False, 0
    except NotADirectoryError:
        raise TargetError("destination exists and is not a directory", path=str(dest)) from None
    except OSError as exc:
        raise TargetError(f"cannot list the destination: {exc.strerror}", path=str(dest)) from exc
    if not names:
        return False, 0
    if to == "legacy":
        if not any(LEGACY_META_RE.match(n) for n in names):
            raise TargetError("--since adds to an existing legacy backup (meta.NN files); this directory is not one",
                              path=str(dest))
        top = -1
        for n in names:
            idx = metafiles.legacy_meta_index(n)
            if idx is None:
                parsed = metafiles.parse_legacy_shard_file_name(n)
                idx = parsed.n if parsed is not None else None
            if isinstance(idx, int):
                top = max(top, idx)
        if top >= 99:
            raise TargetError("the legacy backup already holds increments up to .99", path=str(dest))
        return True, top + 1
    if not any(PORTABLE_MANIFEST_RE.match(n) for n in names):
        raise TargetError("--since adds to an existing portable backup (*.manifest files); this directory is not one",
                          path=str(dest))
    return True, 0


def plan_online_backup(
    host: str | Client | None,
    dest: str | os.PathLike[str],
    *,
    to: str = "portable",
    selection: Selection = Selection(),
    start: int | None = None,
    end: int | None = None,
    since: int | None = None,
    compress_level: int = 1,
) -> OnlinePlan:
    """Ask the server what :func:`execute_online_backup` would fetch (metastore and shard
    listings only; no shard data). Checks the destination; writes nothing."""
    if to not in FORMATS:
        raise UsageError(f"--to must be legacy or portable, not {to!r}")
    if not 0 <= compress_level <= 9:
        raise UsageError("--compress-level must be 0..9")
    if start is not None and end is not None and start > end:
        raise UsageError("--start is after --end")
    if since is not None and (start is not None or end is not None):
        raise UsageError("--since cannot be combined with --start/--end (an increment holds whole files)")
    if selection.newdb is not None or selection.newrp is not None:
        raise UsageError("an online backup keeps the server's names (rename on restore with --newdb/--newrp)")
    client = host if isinstance(host, Client) else Client(host)
    dest_p = Path(dest)
    append, increment = (False, 0)
    if since is not None:
        append, increment = _existing_increment(dest_p, to)
    if not append:
        out = plan_dir_output(dest_p)
        dest_p = Path(out.path)
    meta = _decode(client.metastore())
    selected = select_meta(meta, selection, origin=f"the metastore of {client.address}")
    listed = _listing(client, selection)
    if selection.shard is not None:
        listed = [p for p in listed if p[2] == selection.shard]
        if not listed:
            raise UsageError(f"shard {selection.shard} is not on the server" + (
                f" in {show(selection.database)}" if selection.database else ""))
    shards, notes = _wanted(meta, listed, selection, start, end)
    bounds = None
    if append and since is not None:
        bounds, chain_notes = chain_bounds(dest_p, to)
        notes += chain_notes + _since_notes(since, bounds, shards)
    return OnlinePlan(client, dest_p, to, selection, start, end, since, shards, increment, append, compress_level,
                      list(selected.warnings) + notes, bounds)


def _since_notes(since: int, bounds: dict[int, int | None], shards: list[OnlineShard]) -> list[str]:
    earlier = [s for s in shards if (b := bounds.get(s.id)) is not None and b < since]
    unknown = [s for s in shards if s.id in bounds and bounds[s.id] is None]
    whole = [s for s in shards if s.id not in bounds]
    out = []
    if earlier:
        out.append(f"--since is later than the destination's newest backup of {len(earlier)} shards: those are "
                   "asked for from that backup's start instead, so nothing the server wrote in between is missing")
    if whole:
        out.append(f"{len(whole)} shards are in no backup of the destination: they are fetched whole")
    if unknown:
        out.append(f"when the destination's backups of {len(unknown)} shards were taken is unknown (no run record, "
                   "copied mtimes): they are asked for from --since as given; files the server wrote between those "
                   "backups and --since are not in this increment")
    return out


def _portable_stamp(dest: Path, append: bool) -> str:
    """A ``<ts>`` no file of ``dest`` uses yet (an increment run within the same second waits)."""
    for _ in range(30):
        ts = metafiles.portable_timestamp(_dt.datetime.now(_dt.UTC))
        if not append or not any(n.startswith(ts + ".") for n in os.listdir(dest)):
            return ts
        time.sleep(0.1)
    raise TargetError("cannot find an unused portable timestamp in the destination", path=str(dest))


@contextlib.contextmanager
def _building(plan: OnlinePlan) -> Iterator[Path]:
    """Where the run's files are made: a new backup is built beside ``dest`` and renamed into
    place; an increment is built beside it and its files linked in (never replacing one) when
    complete, the metastore / manifest last, so an interrupted run adds nothing."""
    if not plan.append:
        with building_dir(plan_dir_output(plan.dest)) as tmp:
            yield tmp
        return
    tmp = temp_sibling(plan.dest)
    try:
        with uninterrupted():
            os.mkdir(tmp, 0o700)
            track(tmp, True)
    except OSError as exc:
        raise os_error(exc, target=str(plan.dest)) from exc
    try:
        yield tmp
        # shard files, then the metastore, then (portable) the manifest: the file that makes the
        # increment visible to readers goes last
        names = sorted(os.listdir(tmp), key=lambda n: (
            2 if n.endswith(".manifest") else 1 if n.endswith(".meta") or n.startswith("meta.") else 0, n))
        write_journal(tmp, names)
        linked: list[Path] = []
        with uninterrupted():  # all of the increment or none of it
            try:
                for n in names:
                    try:
                        link_into_place(tmp / n, plan.dest / n, replace=False)
                    except FileExistsError:
                        raise TargetError("a file of this increment appeared in the destination meanwhile",
                                          path=str(plan.dest / n)) from None
                    linked.append(plan.dest / n)
            except BaseException:
                for p in linked:
                    with contextlib.suppress(OSError):
                        os.unlink(p)
                raise
        fsync_dir(plan.dest, best_effort=True)
    except OSError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise os_error(exc, target=str(plan.dest)) from exc
    finally:
        discard(tmp, is_dir=True)
        untrack(tmp)


def execute_online_backup(plan: OnlinePlan, *, progress: ProgressCallback | None = None) -> OnlineResult:
    """Fetch and write the backup of ``plan`` (all of it or nothing)."""
    client = plan.client
    if plan.append:
        removed = undo_killed_increments(plan.dest)
        if removed:
            plan.warnings.append(f"removed {len(removed)} files of an increment a killed run left part-way: "
                                 + ", ".join(show(n) for n in removed[:5]) + (" ..." if len(removed) > 5 else ""))
            _, plan.increment = _existing_increment(plan.dest, plan.to)
    rep = Reporter(progress, label="backup")
    rep.start(None)
    results: list[OnlineShardResult] = []
    late: list[str] = []
    findings: list = []
    received = 0
    done: set[tuple[str, str, int]] = set()
    started_ns = time.time_ns()  # before any shard is asked for (the run record of a legacy run)
    try:
        with _building(plan) as tmp, spool("online", base=str(tmp.parent)) as sp:
            ts = _portable_stamp(plan.dest, plan.append) if plan.to == "portable" else ""
            pending = list(plan.shards)
            blob = client.metastore()
            meta = _decode(blob)
            for rnd in range(MAX_ROUNDS + 1):
                if rnd and not pending:
                    break
                # after each round the metastore is taken again: the one written is taken after
                # every shard it lists was fetched (a later one only adds groups)
                for sh in pending:
                    try:
                        res, fnd = _fetch_shard(plan, sh, meta, tmp, Path(sp), ts, rep.advance)
                    except EmptyResponse:
                        if sh.key in _listing(client, plan.selection):
                            raise
                        plan.warnings.append(f"shard {show(sh.database)}/{show(sh.retention_policy)}/{sh.id} was "
                                             "dropped from the server during the backup (retention or DROP): left out")
                        continue
                    results.append(res)
                    findings.extend(fnd)
                    received += res.received
                    done.add(sh.key)
                    if rnd:
                        late.append(f"{sh.database}/{sh.retention_policy}/{sh.id}")
                blob = client.metastore()
                meta = _decode(blob)
                again, _ = _wanted(meta, _listing(client, plan.selection), plan.selection, plan.start, plan.end)
                pending = [s for s in again if s.key not in done and plan.selection.shard is None]
            if pending:
                plan.warnings.append(
                    f"the server kept creating shard groups during the backup: {len(pending)} shards created after "
                    f"{MAX_ROUNDS} rounds are not in it")
            files = [r.file_name for r in results if r.file_name]
            _write_meta(plan, tmp, ts, blob, meta, results, files)
            if plan.to == "legacy" and plan.start is None and plan.end is None:
                _date_legacy_run(plan, tmp, files, results)
            if plan.to == "legacy":
                write_run_record(tmp, plan.increment, started_ns)
    except OSError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise os_error(exc, target=str(plan.dest)) from exc
    finally:
        rep.end()
    return OnlineResult(plan, files, results, late, received, findings)


def _write_meta(plan: OnlinePlan, tmp: Path, ts: str, blob: bytes, meta: Data, results: list[OnlineShardResult],
                files: list[str]) -> None:
    if plan.selection.filtered:
        inner = encode_data(select_meta(meta, plan.selection, origin="the final metastore").data)
    else:
        inner = metafiles.parse_meta_nn(blob).blob  # the server's own bytes
    entries = [(r.database, r.retention_policy, r.id, r.file_name, r.tar_size, r.last_modified)
               for r in results if r.file_name]
    files[:] = write_backup_meta(tmp, plan.to, inner, ts, entries, files, increment=plan.increment)


def _date_legacy_run(plan: OnlinePlan, tmp: Path, files: list[str], results: list[OnlineShardResult]) -> None:
    """Date this run's ``meta.NN`` and tars after the newest member they hold (and after the
    earlier runs' files). Readers take the newest ``meta.NN`` older than a tar for the start of
    its run, and members dated after that for influxd's block-filtered ``-start/-end`` copies
    (archive/sources/legacy.py ``run_start``); every file fetched here is whole, including those
    the server created during the run."""
    when = max([r.last_modified // 1_000_000_000 + 1 for r in results] + [int(time.time())])
    if plan.append:
        for n in os.listdir(plan.dest):
            with contextlib.suppress(OSError):
                when = max(when, int(os.stat(plan.dest / n).st_mtime) + 1)
    for n in files:
        os.utime(tmp / n, (when, when))


def _fetch_shard(plan: OnlinePlan, sh: OnlineShard, meta: Data, tmp: Path, sp: Path, ts: str,
                 advance) -> tuple[OnlineShardResult, list]:
    """Fetch one shard (type 0) into the spool, check it, and write its backup file."""
    spooled = sp / f"s{sh.id}.tar"
    try:
        with open(spooled, "w+b") as f:
            entries = plan.client.shard_backup(sh.id, f, since_ns=since_for(plan.since, plan.bounds, sh.id),
                                               advance=advance)
            size = f.seek(0, os.SEEK_END)
        stones = sum(1 for e in entries if e.name.endswith(".tombstone"))
        last = max((e.mtime for e in entries), default=0) * 1_000_000_000
        check_shard_members(entries, sh.key, f"snapshotter {plan.client.address}")
        with open(spooled, "rb") as f:  # every file, also those kept as the server sent them
            check_stored_files(f, [(e.name, e.data_offset, e.size) for e in entries],
                               where=f"influxd at {plan.client.address}: shard {sh.id}")
        ranged = plan.start is not None or plan.end is not None
        keep_raw = not ranged and (plan.to == "legacy" or plan.since is not None or stones == 0)
        if keep_raw:
            return _write_raw(plan, sh, spooled, tmp, ts, size, stones, last, entries), []
        src = DiskSource(kind="legacy", path=str(sp), meta=meta, meta_origin=None)
        add_tar_shard(src, spooled, gz=False, increment=0, fallback=sh.key)
        shard = src.shard(*sh.key)
        job_out = None
        if shard is not None:
            shard.in_meta = True
            shard.group_start, shard.group_end = sh.group_start, sh.group_end
            if ranged:
                # each file of the fetched shard on its own (convert's per-file rule): copied
                # when wholly inside the range, cut or dropped otherwise
                job = ShardJob(shard, sh.database, sh.retention_policy, plan_steps(shard, False))
                cfg = ShardSettings(src, plan.to, plan.start, plan.end, plan.compress_level, ts)
                job_out = convert_shard(cfg, job, tmp, lambda n: None)
            else:
                job_out = _write_applied(plan, src, shard, tmp, ts)
        if job_out is None:
            return OnlineShardResult(sh.database, sh.retention_policy, sh.id, None, "dropped", size, 0, 0, stones,
                                     last), list(src.findings)
        return OnlineShardResult(sh.database, sh.retention_policy, sh.id, job_out.file_name, "rewrite", size,
                                 job_out.tar_size, job_out.file_size, stones, last), list(src.findings)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spooled)


def _write_applied(plan: OnlinePlan, src: DiskSource, shard: Shard, tmp: Path, ts: str) -> ShardOutput | None:
    """A portable shard file with every tombstone applied into the TSM file it belongs to, each
    file keeping its name (files without a tombstone copied as they are). Keeping influxd's names
    keeps a later increment right: a tombstone it brings for a file applies to this copy, and a
    compaction output supersedes it (docs/formats.md#snapshotter-protocol)."""
    name = metafiles.portable_names(ts, [shard.id]).shards[shard.id]
    prefix = f"{shard.database}/{shard.retention_policy}/{shard.id}/"
    work = tmp / f".work-{shard.id}"
    os.mkdir(work)
    try:
        members: list[tuple[str, int, Path | ShardFile]] = []
        for layer in shard.layers():
            if layer.tomb is None:
                members.append((layer.tsm.name, layer.tsm.size, layer.tsm))
                continue
            one = Shard(shard.database, shard.retention_policy, shard.id, files=[layer.tsm, layer.tomb])
            gen, seq = naming.order_key(layer.tsm.name)
            with open_shard_reader(src, one, tmpdir=str(work)) as reader:
                written = write_shard(reader, work, gen, seq, max_bytes=1 << 62)
            if len(written) > 1:  # cannot happen: the input file fit influxd's limits
                raise ArchiveError(f"applying the tombstone of {show(layer.tsm.name)} gave {len(written)} files")
            members.extend((w.name, w.size, w.path) for w in written)
        if not members:
            return None
        with open(tmp / name, "xb") as raw, open(src.shards[0].files[0].container, "rb") as tar_in:
            sink = gzip_writer(raw, level=plan.compress_level, filename=name[: -len(".gz")])
            tar = TarWriter(sink)
            for mname, size, what in sorted(members, key=lambda m: m[0]):
                if isinstance(what, Path):
                    with open(what, "rb") as fh:
                        tar.add(prefix + mname, size, fh, mtime=(parse_backup_stamp(ts) or 1) - 1)
                else:
                    offset = what.data_offset if what.data_offset is not None else member_offset(tar_in, what)
                    tar.add(prefix + mname, size, cast(BinaryIO, SubFile(tar_in, offset, size)),
                            mtime=_whole(what.mtime or 0, ts))
            tar.close()
            sink.close()
            raw.flush()
            os.fchmod(raw.fileno(), 0o600)
            os.fsync(raw.fileno())
            file_size = raw.tell()
        return ShardOutput(shard.database, shard.retention_policy, shard.id, name, tar.size, file_size, len(members))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _whole(mtime: int, ts: str) -> int:
    """A member mtime as written in a portable tar of run ``ts``: a file the server created during
    the run (a cache snapshot forced by the request, a compaction) is dated just before the run
    started. Readers take members dated after their run's start for influxd's block-filtered
    ``-start/-end`` copies (archive/sources/model.py ``maybe_filtered``); every file fetched here is
    whole."""
    start = parse_backup_stamp(ts)
    return mtime if start is None or mtime < start else start - 1


def _write_raw(plan: OnlinePlan, sh: OnlineShard, spooled: Path, tmp: Path, ts: str, size: int, stones: int,
               last: int, entries: list[TarEntry]) -> OnlineShardResult:
    """The server's tar as it is (legacy), or its members as they are in a gzipped tar (portable)."""
    if plan.to == "legacy":
        name = metafiles.legacy_shard_file_name(sh.database, sh.retention_policy, sh.id, plan.increment)
    else:
        name = metafiles.portable_names(ts, [sh.id]).shards[sh.id]
    with open(spooled, "rb") as src, open(tmp / name, "xb") as raw:
        tar_size = size
        if plan.to == "portable":
            sink = gzip_writer(raw, level=plan.compress_level, filename=name[: -len(".gz")])
            tar = TarWriter(sink)
            for e in entries:
                tar.add(e.name, e.size, cast(BinaryIO, SubFile(src, e.data_offset, e.size)), mtime=_whole(e.mtime, ts))
            tar.close()
            sink.close()
            tar_size = tar.size
        else:
            shutil.copyfileobj(src, raw, 1 << 20)
        raw.flush()
        os.fchmod(raw.fileno(), 0o600 if plan.to == "portable" else 0o644)
        os.fsync(raw.fileno())
        file_size = raw.tell()
    return OnlineShardResult(sh.database, sh.retention_policy, sh.id, name, "copy", size, tar_size, file_size, stones,
                             last)
