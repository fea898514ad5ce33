"""What a restore writes where, decided without writing anything.

Two parts, kept apart so that an online restore (into a running server over its RPC port) can
reuse the first:

* :func:`plan_metastore`: from the source's metastore, the selection (``--db``/``--rp``/shard
  ids, ``--newdb``/``--newrp``), ``--merge`` and the target's decoded metastore: the metastore to
  write, every source shard's target database, retention policy and shard id (new ids above the
  target's; with ``--merge``, an existing shard of a matching shard group), and the databases
  restored. It reads no directory.
* :func:`build_plan`: the offline side: the shard directories, file names (generations renumbered
  above an existing shard's), WAL handling and the checks that nothing is overwritten, in a
  ``-datadir``/``--waldir`` on disk; the whole :class:`RestorePlan`.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ....meta.model import Data, DatabaseInfo
from ....tsm import naming
from ... import guard
from ...errors import TargetError, UsageError
from ...output import refuse_dirs_inside_source
from ...sources import Shard, ShardFile, Source
from ..select import Selection, name_problem, select_meta, shown_name
from .metastore import Placement, merge_meta, read_target


@dataclass
class FilePlan:
    source: ShardFile | None  # None: the flushed WAL cache
    target_name: str
    size: int  # bytes to copy (0 for the WAL flush, whose size is known only when written)


@dataclass
class ShardPlan:
    shard: Shard
    database: str  # target names
    retention_policy: str
    id: int  # target shard id
    into_existing: bool  # --merge into a shard that exists in the target
    target_dir: Path
    files: list[FilePlan] = field(default_factory=list)
    wal_dir: Path | None = None  # WAL segments copied raw into this directory
    wal_files: list[ShardFile] = field(default_factory=list)
    flush_wal: bool = False  # replay the WAL and write it as files[-1] (a new TSM)
    #: (generation, first sequence): the shard's increments do not reduce to whole files (copies
    #: of one file that differ, or files partly replaced by block-filtered copies), so its current
    #: state is written as new TSM files named from there, tombstones applied (files[0] the first)
    rewrite: tuple[int, int] | None = None

    @property
    def bytes(self) -> int:
        """Bytes read: the files copied, and the WAL segments copied or replayed (a flushed
        shard's segments are read too: progress counts them)."""
        replayed = sum(f.size for f in self.shard.wal) if self.flush_wal else 0
        return sum(f.size for f in self.files) + sum(f.size for f in self.wal_files) + replayed


@dataclass
class RestorePlan:
    source: Source
    metadir: Path
    datadir: Path
    waldir: Path | None
    meta: Data  # the metastore to write
    meta_exists: bool
    databases: list[tuple[str, str]]  # (source name, target name)
    shards: list[ShardPlan]
    warnings: list[str] = field(default_factory=list)
    meta_sha256: str | None = None  # of the target meta.db the plan read (None: there was none)
    index: str = "inmem"  # what the restored shards get: "inmem" (no index/) or "tsi1" (see .tsi)
    index_why: str = ""

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)

    def to_dict(self) -> dict:
        return {
            "source": {"kind": self.source.kind, "path": self.source.display_path},
            "metadir": str(self.metadir),
            "datadir": str(self.datadir),
            "waldir": str(self.waldir) if self.waldir else None,
            "meta_db": "add to existing" if self.meta_exists else "new",
            "databases": [{"source": a, "target": b} for a, b in self.databases],
            "users": [u.name for u in self.meta.users],
            "shards": [
                {
                    "database": s.database,
                    "retention_policy": s.retention_policy,
                    "source": f"{s.shard.database}/{s.shard.retention_policy}/{s.shard.id}",
                    "id": s.id,
                    "into_existing": s.into_existing,
                    "dir": str(s.target_dir),
                    "files": [
                        {
                            "name": f.target_name,
                            "from": f.source.origin if f.source else "merged increments" if s.rewrite else "WAL cache",
                            "bytes": f.size,
                        }
                        for f in s.files
                    ],
                    "wal_segments": [f.name for f in s.wal_files],
                    "wal_replayed_bytes": sum(f.size for f in s.shard.wal) if s.flush_wal else 0,
                    "bytes": s.bytes,  # read: files, WAL segments copied, WAL segments replayed
                }
                for s in self.shards
            ],
            "bytes": self.bytes,
            "index": {"type": self.index, "why": self.index_why},
            "warnings": list(self.warnings),
        }


@dataclass
class MetaPlan:
    """The metastore side of a restore (:func:`plan_metastore`)."""

    meta: Data  # the metastore to write
    placement: Placement  # every source shard restored -> where it goes in the target
    databases: list[tuple[str, str]]  # (source name, target name)


def check_target_args(
    src: Source, metadir: str | os.PathLike[str], datadir: str | os.PathLike[str], waldir: str | os.PathLike[str] | None
) -> tuple[Path, Path, Path | None]:
    """The target directories as absolute paths, refused (UsageError) when one is not a
    directory or lies inside the source. Checked before anything is created or locked."""
    metadir_p, datadir_p = Path(metadir).absolute(), Path(datadir).absolute()
    waldir_p = Path(waldir).absolute() if waldir is not None else None
    for name, p in (("--metadir", metadir_p), ("--datadir", datadir_p), ("--waldir", waldir_p)):
        st = _examine(p, follow=True) if p is not None else None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{name} is not a directory", path=str(p))
    refuse_dirs_inside_source(src, (("--datadir", datadir_p), ("--waldir", waldir_p), ("--metadir", metadir_p)))
    return metadir_p, datadir_p, waldir_p


def plan_metastore(
    src: Source,
    selected: Data,
    selection: Selection,
    target: Data | None,
    merge: bool,
    warnings: list[str],
    meta_path: Path,
) -> MetaPlan:
    """Place the source's shards in the target and make the metastore to write: ``selected``
    (the source's metastore, filtered and renamed by ``selection``) as is when the target has
    none (``target`` None), else merged into ``target``. Warnings are appended to ``warnings``;
    ``meta_path`` only names the target metastore in errors."""
    placement: Placement = {}
    assert src.meta is not None  # plan() refuses a source without a metastore before it gets here
    if target is None:
        result = selected
        for ref in src.meta.iter_shards():
            if selection.keeps(ref.db.name, ref.rp.name, ref.shard.id) and not ref.group.deleted:
                tdb, trp = selection.target_names(ref.db.name, ref.rp.name)
                placement[(ref.db.name, ref.rp.name, ref.shard.id)] = (tdb, trp, ref.shard.id, False)
    else:
        result = merge_meta(target, selected, src.meta, selection, merge, placement, warnings, meta_path)

    if selection.database is not None:
        databases = [(selection.database, selection.target_names(selection.database, "")[0])]
    else:
        databases = [(db.name, db.name) for db in selected.databases]
    return MetaPlan(result, placement, databases)


def build_plan(
    src: Source, metadir_p: Path, datadir_p: Path, waldir_p: Path | None, selection: Selection, merge: bool,
    recovered: list[str],
) -> RestorePlan:
    """The whole plan of an offline restore into these directories (``recovered``: the notes of
    the recovery run before, the first warnings)."""
    assert src.meta is not None  # plan() refuses a source without a metastore before it gets here
    selected = select_meta(src.meta, selection, origin=src.meta_origin or src.path)
    warnings = recovered + list(selected.warnings)
    meta_path = metadir_p / "meta.db"
    meta_exists, meta_blob, target = read_target(meta_path)
    meta = plan_metastore(src, selected.data, selection, target, merge, warnings, meta_path)
    placement, databases = meta.placement, meta.databases

    shards: list[ShardPlan] = []
    for sh in src.shards:
        key = (sh.database, sh.retention_policy, sh.id)
        if key not in placement:
            if (sh.files or sh.wal) and selection.keeps(*key):
                warnings.append(
                    f"shard {sh.database}/{sh.retention_policy}/{sh.id} has data but no live shard group in the "
                    "source metastore; influxd would never serve it: not restored"
                )
            continue
        tdb, trp, tid, into = placement[key]
        _check_dir_names(sh, tdb, trp)
        sp = _plan_shard(sh, tdb, trp, tid, into, datadir_p, waldir_p)
        if sp is not None:
            shards.append(sp)
    _check_targets(shards, datadir_p, waldir_p)
    for sp in shards:
        if sp.into_existing and waldir_p is not None:
            wal_here = waldir_p / sp.database / sp.retention_policy / str(sp.id)
            if any(n.endswith(".wal") and _size(wal_here / n) for n in _listdir_names(wal_here)):
                warnings.append(
                    f"shard {sp.id} of the target has points in its WAL ({wal_here}); influxd lets those win over "
                    "every TSM file, so on points present in both, the target's WAL values win over restored ones"
                )
    with_data = {s.shard.database for s in shards}
    for sdb, _tdb in databases:
        # sdb names a database of the source's metastore (select_meta checked the one named)
        if sdb not in with_data and any(
            g.shards for rp in cast(DatabaseInfo, src.meta.database(sdb)).retention_policies for g in rp.shard_groups
        ):
            warnings.append(
                f"database {sdb} is in the backup's metastore but the backup holds none of its shard data: restored "
                "empty"
            )
    if os.geteuid() == 0:
        for p in (datadir_p, metadir_p):
            owner = _existing_owner(p)
            if owner is not None and owner != 0:
                who = _user_name(owner)
                name = who.split(" ", 1)[0] if not who.startswith("uid ") else str(owner)
                warnings.append(
                    f"running as root without --owner, but {p} belongs to {who}: influxd running as that user "
                    f"cannot write root-owned files; pass --owner {name}"
                )
                break
    plan = RestorePlan(src, metadir_p, datadir_p, waldir_p, meta.meta, meta_exists, databases, shards, warnings)
    plan.meta_sha256 = hashlib.sha256(meta_blob).hexdigest() if meta_blob is not None else None
    return plan


def _user_name(uid: int) -> str:
    """``name (uid N)``, or ``uid N`` when the system has no name for it."""
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _existing_owner(p: Path) -> int | None:
    """Owner of ``p`` or of its nearest ancestor that this run did not create."""
    made = set(guard.created_dirs())
    while (not p.exists() or p in made) and p != p.parent:
        p = p.parent
    try:
        return p.stat().st_uid
    except OSError:
        return None


def _plan_shard(
    sh: Shard, tdb: str, trp: str, tid: int, into: bool, datadir: Path, waldir: Path | None
) -> ShardPlan | None:
    layers = sh.tsm_layers()
    if not layers and not sh.wal:
        return None
    target_dir = datadir / tdb / trp / str(tid)
    sp = ShardPlan(sh, tdb, trp, tid, into, target_dir)
    gen_map: dict[int, int] = {}
    if into:
        existing = _listdir_names(target_dir)
        base = naming.max_generation(existing)
        for i, g in enumerate(sorted({naming.order_key(t.name)[0] for t, _ in layers})):
            gen_map[g] = base + 1 + i

    def renamed(name: str) -> str:
        gen, seq, ext = naming.parse_name(name)  # type: ignore[misc]
        return naming.tsm_name(gen_map.get(gen, gen), seq, ext)

    if not sh.plain and not sh.wal:
        # the union of several increments that no set of whole files holds (Shard.layers)
        gen = max(gen_map.get(g, g) for g in (naming.order_key(t.name)[0] for t, _ in layers))
        seq = max(naming.order_key(t.name)[1] for t, _ in layers) + 1
        size = sum(f.size for f in sh.effective_files())
        sp.files.append(FilePlan(None, naming.tsm_name(gen, seq), size))
        sp.rewrite = (gen, seq)
        return sp
    for tsm, tomb in layers:
        sp.files.append(FilePlan(tsm, renamed(tsm.name), tsm.size))
        if tomb is not None:
            sp.files.append(FilePlan(tomb, renamed(tomb.name), tomb.size))
    if sh.wal:
        if waldir is not None and not into:
            sp.wal_dir = waldir / tdb / trp / str(tid)
            sp.wal_files = list(sh.wal)
        else:
            top = max((naming.order_key(f.target_name)[0] for f in sp.files), default=0)
            if into:
                top = max(top, naming.max_generation(_listdir_names(target_dir)))
            sp.files.append(FilePlan(None, naming.tsm_name(top + 1, 1), 0))
            sp.flush_wal = True
    return sp


def _check_dir_names(sh: Shard, tdb: str, trp: str) -> None:
    """Refuse (UsageError) a database or retention policy name from the source that cannot be a
    directory name (too long for NAME_MAX, ``..``, a ``/`` in it): say how to rename it."""
    db, rp = shown_name(sh.database), shown_name(sh.retention_policy)
    for what, name, how in (
        ("database", tdb, f"--db {db} --newdb NAME"),
        ("retention policy", trp, f"--db {db} --rp {rp} --newrp NAME"),
    ):
        why = name_problem(name)
        if why is not None:
            raise UsageError(f"{what} {shown_name(name)} of the source {why}; restore it under another name ({how})")


def _examine(p: Path, *, follow: bool = False) -> os.stat_result | None:
    """``lstat`` (``stat`` with ``follow``) of a target path; None when nothing is there (or a
    component on the way is not a directory); any other OS refusal is a TargetError naming it."""
    try:
        return os.stat(p) if follow else os.lstat(p)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) or (follow and exc.errno == errno.ELOOP):
            return None
        raise TargetError(f"target: cannot examine: {exc.strerror or exc}", path=str(p)) from exc


def _size(p: Path) -> int:
    st = _examine(p, follow=True)
    return st.st_size if st is not None else 0


def _listdir_names(p: Path) -> list[str]:
    try:
        return os.listdir(p)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TargetError(f"target: cannot list directory: {exc.strerror}", path=str(p)) from exc


def _no_symlinks_below(root: Path, target: Path) -> None:
    """Refuse to write through a symbolic link below ``root`` (the directory the user named may
    itself be a link, e.g. to another disk; nothing inside it may lead out of it)."""
    p = root
    for part in target.relative_to(root).parts:
        p = p / part
        st = _examine(p)
        if st is None:
            return
        if stat.S_ISLNK(st.st_mode):
            raise TargetError("is a symbolic link; refusing to restore through it", path=str(p))


def _check_targets(shards: list[ShardPlan], datadir: Path, waldir: Path | None) -> None:
    """Never overwrite: a new shard's directory must be absent or empty; files added to an
    existing shard must have free names; no symbolic link below the target roots."""
    for sp in shards:
        _no_symlinks_below(datadir, sp.target_dir)
        if sp.wal_dir is not None and waldir is not None:
            _no_symlinks_below(waldir, sp.wal_dir)
        present = _listdir_names(sp.target_dir)
        if sp.into_existing:
            clash = sorted(set(present) & {f.target_name for f in sp.files})
            if clash:
                raise TargetError(
                    f"shard directory already holds {clash[0]}; refusing to overwrite", path=str(sp.target_dir)
                )
        elif present:
            raise TargetError(
                "shard directory already holds files; refusing to overwrite (use --merge with an existing database, "
                "or restore into an empty data directory)",
                path=str(sp.target_dir),
            )
        if sp.wal_dir is not None and _listdir_names(sp.wal_dir):
            raise TargetError("WAL directory already holds files; refusing to overwrite", path=str(sp.wal_dir))
