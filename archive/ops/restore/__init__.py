"""Offline restore of any source into a stopped server's ``-metadir`` / ``-datadir`` (``--waldir``).

:func:`plan_restore` decides everything without writing (metastore result, shard id mapping,
target directories and file names, bytes); :func:`execute_restore` carries a plan out.

Where influxd 1.6.7 gets it wrong (docs/formats.md), we do this instead:

* shard ids are used as integers: shard 10 lands in ``<db>/<rp>/10`` (influxd strips zeros from
  both ends of ``00010`` and writes it to ``1``);
* the metastore keeps users (password hashes), grants, continuous queries and subscriptions (the
  portable restore drops users, grants and CQs);
* TSM files are copied with their tombstones, so deleted data stays deleted (influxd's portable
  restore discards ``.tombstone`` files), and of several increments their union is written
  (:meth:`Shard.layers`: every block of every increment, data deleted before a later compaction
  left out; influxd unpacks every increment on top of each other). When that union is not a set of
  whole files (a ``-start/-end`` copy beside the full one, files partly replaced by a filtered
  copy), the shard is written as new TSM files with the tombstones applied;
* WAL segments of a live source go to ``--waldir`` unchanged, or, without it, the replayed cache
  is written as one new TSM file above every other generation of the shard (the cache wins over
  TSM files in influxd, and so does the newest file: the same points are served);
* ``--newdb`` / ``--newrp`` work offline;
* an existing ``meta.db`` is added to, never replaced: new shard-group and shard ids are allocated
  above the target's, a database that exists is refused unless ``--merge``; with ``--merge`` a
  restored shard whose shard group matches an existing group of the target RP (same start and
  end) is added into that shard with generations above its own, so on a point present in both
  the restored value wins. A shard directory that already holds files is never overwritten.

Modes are influxd's own (:mod:`.modes`). ``owner`` chowns everything written. Nothing is
half-written: shard directories are staged next to the data directory (same file system) and
renamed into place, ``meta.db`` is written last through a temporary file, and on any failure
everything renamed in so far is moved out again, so the target is as before. Execution refuses a
plan whose ``meta.db`` changed since it was made; the trust rules of the target directories are
:mod:`.journal`'s.

The modules, each step in one (each imports only modules below it in this list):

* :mod:`.shards` — staging each shard's files (checked copies, rewrites, WAL), in parallel,
  renaming them into place, chown;
* :mod:`.plan` — what to restore: selection, renames, ``--merge`` placement and id remapping
  (:func:`~.plan.plan_metastore`), then the shard directories and files (:func:`~.plan.build_plan`);
* :mod:`.recovery` — recovery of a killed run's leftovers (its staging directories and journal);
* :mod:`.journal` — the transaction: target directories held open, staging directories, journal,
  commit, rollback, the targets' lock;
* :mod:`.metastore` — reading, merging and writing the target metastore;
* :mod:`.modes` — influxd's file and directory modes.

The ONLINE restore (into a running server over its snapshotter port) is :mod:`.online`: it
reuses the selection and the metastore side of the plan (:func:`~.plan.plan_metastore`, with the
server's metastore read over the wire) and the shard rewrite of the offline convert, and sends
instead of writing. Planning shard directories and file names in a ``--datadir``
(:func:`~.plan.build_plan`), the target directories held open, the journal and its recovery, and
the lock are the offline side only.

The index (:mod:`.tsi`): with ``index="tsi1"`` (or ``"auto"`` on a target that uses tsi1) the
series file and every restored shard's ``index/`` are built in the staging area and moved in by
the same transaction; otherwise restored shards carry no index — influxd opens a shard without
``index/`` as ``inmem`` even under ``index-version = "tsi1"`` (docs/formats.md) — and
:data:`INDEX_GUIDANCE` says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ....meta.model import encode_data
from ...errors import ArchiveError, TargetError, UsageError
from ...findings import Finding
from ...progress import ProgressCallback, Reporter
from ...sources import Source
from ..select import Selection
from .journal import Roots, Transaction, target_lock
from .metastore import put_back_meta, read_meta_at, write_meta_at
from .plan import FilePlan, RestorePlan, ShardPlan, build_plan, check_target_args
from .recovery import recover_interrupted
from .shards import chown_all, move_in_all, parse_owner, stage_all
from .tsi import build_indexes, check_merge, choose_index, install, move_aside

__all__ = [
    "INDEX_GUIDANCE",
    "FilePlan",
    "RestorePlan",
    "RestoreResult",
    "ShardPlan",
    "check_target_args",
    "execute_restore",
    "parse_owner",
    "plan_restore",
    "recover_interrupted",
    "target_lock",
]

INDEX_GUIDANCE = (
    "Restored shards carry no TSI index: influxd opens them with the in-memory (inmem) index, even "
    'under index-version = "tsi1". For a tsi1 index restore with --index tsi1, or stop influxd and run: '
    "influx-archive build-tsi --datadir DATADIR --waldir WALDIR --owner influxdb:influxdb"
)


@dataclass
class RestoreResult:
    plan: RestorePlan
    shards: int
    files: int
    bytes: int
    written: list[str]  # every path created, in creation order
    skipped: list[Finding] = field(default_factory=list)  # damage left out (salvage) and other findings

    def to_dict(self) -> dict:
        return {
            "restored": {"shards": self.shards, "files": self.files, "bytes": self.bytes},
            "findings": [f.to_dict() for f in self.skipped],
            "meta_db": str(self.plan.metadir / "meta.db"),
            "plan": self.plan.to_dict(),
            "index": {"type": self.plan.index, "why": self.plan.index_why}
            | ({"guidance": INDEX_GUIDANCE} if self.plan.index != "tsi1" else {}),
        }


def plan_restore(
    src: Source,
    *,
    metadir: str | os.PathLike[str],
    datadir: str | os.PathLike[str],
    waldir: str | os.PathLike[str] | None = None,
    selection: Selection = Selection(),
    merge: bool = False,
    recover: bool = True,
    index: str = "auto",
    config: str | os.PathLike[str] | None = None,
) -> RestorePlan:
    """Decide what a restore of ``src`` writes where. Reads the target ``meta.db`` if present.
    ``index`` (``auto``, ``inmem``, ``tsi1``) and ``config`` (an influxdb.conf): see :mod:`.tsi`.

    First undoes what an interrupted earlier restore left in the target (see
    :func:`recover_interrupted`); with ``recover`` false (a dry run) only reports it."""
    if src.meta is None:
        raise UsageError(
            "the source has no metastore to restore (expected a legacy or portable backup, or a server root with "
            "meta/meta.db)",
            path=src.path,
        )
    metadir_p, datadir_p, waldir_p = check_target_args(src, metadir, datadir, waldir)
    # Under the targets' lock (re-entrant: the CLI holds it for the whole run): the recovery
    # writes, and what the plan reads of the target must not change before it is carried out.
    with target_lock(metadir_p, datadir_p, waldir_p) if recover else contextlib.nullcontext():
        plan = _plan_locked(src, metadir_p, datadir_p, waldir_p, selection, merge, recover)
    plan.index, plan.index_why, warnings = choose_index(index, datadir_p, config)
    plan.warnings += warnings
    check_merge(plan)
    return plan


def _plan_locked(
    src: Source,
    metadir_p: Path,
    datadir_p: Path,
    waldir_p: Path | None,
    selection: Selection,
    merge: bool,
    recover: bool,
) -> RestorePlan:
    recovered = recover_interrupted(metadir=metadir_p, datadir=datadir_p, waldir=waldir_p, apply=recover)
    try:
        return build_plan(src, metadir_p, datadir_p, waldir_p, selection, merge, recovered)
    except ArchiveError as exc:
        exc.notes = recovered  # type: ignore[attr-defined]  # what was done before the refusal
        raise


def execute_restore(
    plan: RestorePlan, *, owner: str | None = None, progress: ProgressCallback | None = None
) -> RestoreResult:
    """Carry out ``plan``. On any error the target is left exactly as it was.

    Holds the targets' lock for the whole run (re-entrant: the CLI takes it before planning) and
    refuses a plan whose target ``meta.db`` changed since it was made."""
    ids = parse_owner(owner) if owner else None
    with target_lock(plan.metadir, plan.datadir, plan.waldir):
        roots = Roots({"meta": plan.metadir, "data": plan.datadir, "wal": plan.waldir})
        try:
            current = read_meta_at(roots.fds["meta"], plan.metadir / "meta.db")
            if (hashlib.sha256(current).hexdigest() if current is not None else None) != plan.meta_sha256:
                raise TargetError(
                    "the target metastore changed since the restore was planned (another writer?); plan again",
                    path=str(plan.metadir / "meta.db"),
                )
            return _execute_locked(plan, roots, ids, current, progress)
        finally:
            roots.close()


def _execute_locked(
    plan: RestorePlan,
    roots: Roots,
    ids: tuple[int, int] | None,
    old_meta: bytes | None,
    progress: ProgressCallback | None,
) -> RestoreResult:
    rep = Reporter(progress, label="restore")
    rep.start(plan.bytes)
    tx = Transaction(roots)
    salvaged: list | None = [] if plan.source.salvage else None
    try:
        # 1. Stage every shard's files, checked, beside the target.
        staged, nfiles, nbytes = stage_all(plan, tx, rep, salvaged)
        built = build_indexes(plan, staged, ids, progress) if plan.index == "tsi1" else None
        # 2. Move into place (a tsi1 series file after the shards whose series it holds).
        if built is not None:
            move_aside(tx, built)
        written = move_in_all(tx, staged)
        if built is not None:
            written += install(tx, built)
        # 3. The metastore, last.
        meta_path = plan.metadir / "meta.db"
        blob = encode_data(plan.meta)
        roots.check_unmoved()
        tx.will_write_meta(meta_path, blob)
        write_meta_at(roots.fds["meta"], meta_path, blob, overwrite=old_meta is not None)
        tx.commit()
        written.append(str(meta_path))
        try:
            if ids is not None:
                chown_all(tx, written, plan, ids)
        except BaseException:
            put_back_meta(roots.fds["meta"], old_meta)
            raise
    except BaseException as exc:
        tx.rollback()
        if isinstance(exc, OSError) and not isinstance(exc, ArchiveError):
            # as before, a bytes file name is passed on as is (the OS gave it)
            where = cast("str | os.PathLike[str] | None",
                         exc.filename if isinstance(exc.filename, (str, bytes, os.PathLike)) else None)
            what = ""
            if where is None:  # a write(): no file name in the error; what is written goes to the data directory
                where, what = str(plan.datadir), "cannot write the target: "
            why = "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror or exc
            raise TargetError(f"{what}{why}; nothing was restored", path=where) from exc
        raise
    finally:
        tx.cleanup()
        rep.end()
    return RestoreResult(plan, len(plan.shards), nfiles, nbytes, written, list(plan.source.findings) + (salvaged or []))
