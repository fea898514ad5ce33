"""``restore --index``: which index the restored shards get, and, for tsi1, the series file and
every restored shard's ``index/`` built inside the same staged, journaled restore.

The choice (:func:`choose_index`): ``inmem`` and ``tsi1`` are taken as said; ``auto`` (the
default) follows ``index-version`` of an ``influxdb.conf`` given with ``--config`` (influxd opens
every shard with that index), else what the target already uses: tsi1 as soon as one of its shard
directories holds ``index/``, else inmem.

tsi1 (:func:`build_indexes`, between staging the shards and moving them in):

* per target database, its series file ``<db>/_series`` is staged in the restore's staging
  directory: the target's own (when there is one) copied with its sealed segments hard-linked,
  then extended by every series the restored shards serve that it lacks — existing series keep
  their ids (the target's other shards' indexes stay valid), new ones get the ids influxd would
  give them (archive/ops/tsiwrite.py);
* each staged shard gets ``index/`` (buildtsi's layout: partitions ``0``..``7``, a MANIFEST and
  one L0 log file each) holding every series it serves: its TSM keys minus whole-series
  tombstones plus its WAL (archive/ops/buildtsi.py). With ``--merge`` into an existing shard the
  index covers the target shard's series too, and that shard's old ``index/`` and ``fields.idx``
  are moved aside (journaled) so influxd re-reads the fields of the restored files;
* after the shards are renamed in, the target's series file is moved aside (journaled) and the
  staged one renamed in. A failure or a kill before the metastore commit moves everything back
  (archive/ops/restore/journal.py); after it, what was moved aside goes with the staging area.

``--owner`` chowns everything staged here before it is moved in; modes are influxd's own
(directories 0777, files 0666, less the umask).
"""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ....tsm.tsi1 import format as tfmt
from ....tsm.tsi1 import seriesfile as sfmod
from ...errors import ArchiveError, FormatError, SourceIOError, TargetError, UsageError
from ...progress import ProgressCallback
from ...untrusted import open_regular
from .. import tsiwrite
from ..buildtsi import keyed_series, series_ids
from ..tsifd import Tree, fd_path, swapped
from .journal import STAGE_FDS, Transaction
from .plan import RestorePlan, ShardPlan

INDEX_CHOICES = ("auto", "inmem", "tsi1")
MAX_CONFIG_BYTES = 4 << 20  # an influxdb.conf is a few KB
MAX_SHARDS_LOOKED_AT = 100_000  # a target with more shard directories: the first ones decide

#: (shard plan, staged shard directory, staged WAL directory or None), as shards.stage_all gives them
Staged = list[tuple[ShardPlan, Path, Path | None]]
_T = TypeVar("_T")


def config_index_version(path: str | os.PathLike[str]) -> str:
    """``[data] index-version`` of an influxdb.conf (influxd's default, ``inmem``, when unset)."""
    p = os.fspath(path)
    try:
        with open_regular(p, "config file") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except SourceIOError as exc:
        why = exc.__cause__.strerror if isinstance(exc.__cause__, OSError) else exc.message
        raise UsageError(f"--config: cannot read the file: {why}", path=p) from exc
    except FormatError as exc:  # a FIFO or a device is refused, never waited on
        raise UsageError(f"--config: {exc.message}", path=p) from exc
    except OSError as exc:
        raise UsageError(f"--config: cannot read the file: {exc.strerror}", path=p) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"--config: more than {MAX_CONFIG_BYTES} bytes: not an influxdb.conf", path=p)
    try:
        conf = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"--config: not a TOML file: {str(exc).splitlines()[0]}", path=p) from None
    data = conf.get("data", {})
    value = data.get("index-version", "inmem") if isinstance(data, dict) else "inmem"
    if value not in ("inmem", "tsi1"):
        raise UsageError(f"--config: [data] index-version is {value!r}, neither \"inmem\" nor \"tsi1\"", path=p)
    return value


def target_tsi1_shard(datadir: Path) -> Path | None:
    """A shard directory ``<db>/<rp>/<id>`` of the target that holds ``index/``, if any."""
    looked = 0
    for db in _dirs(datadir):
        for rp in _dirs(datadir / db):
            if rp == tfmt.SERIES_FILE_DIR:
                continue
            for sh in _dirs(datadir / db / rp):
                looked += 1
                if looked > MAX_SHARDS_LOOKED_AT:
                    return None
                if sh.isdigit() and os.path.isdir(datadir / db / rp / sh / tfmt.INDEX_DIR):
                    return datadir / db / rp / sh
    return None


def _dirs(p: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(p) if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def choose_index(requested: str, datadir: Path, config: str | os.PathLike[str] | None) -> tuple[str, str, list[str]]:
    """(index, why, warnings) for ``--index requested`` into ``datadir``."""
    if requested not in INDEX_CHOICES:
        raise UsageError(f"--index is one of {', '.join(INDEX_CHOICES)}, not {requested!r}")
    conf = config_index_version(config) if config is not None else None
    warnings = []
    if requested != "auto":
        if conf is not None and conf != requested:
            warnings.append(
                f"--index {requested}, but {os.fspath(config)} says index-version = \"{conf}\": influxd opens the "  # type: ignore[arg-type]
                f"restored shards with {conf}"
            )
        return requested, f"--index {requested}", warnings
    if conf is not None:
        return conf, f"index-version = \"{conf}\" in {os.fspath(config)}", warnings  # type: ignore[arg-type]
    shown = target_tsi1_shard(datadir)
    if shown is not None:
        return "tsi1", f"the target already uses tsi1 (shard {shown} has index/)", warnings
    return "inmem", "no shard of the target has a tsi1 index", warnings


def check_merge(plan: RestorePlan) -> None:
    """An inmem restore into an existing shard that has a tsi1 index would leave the restored
    series out of it (influxd reads the fields of a tsi1 shard from its fields.idx): refused."""
    if plan.index == "tsi1":
        return
    for sp in plan.shards:
        if sp.into_existing and os.path.isdir(sp.target_dir / tfmt.INDEX_DIR):
            raise UsageError(
                f"target shard {sp.id} has a tsi1 index; restoring into it needs --index tsi1 (or auto), "
                "which rebuilds that index with the restored series",
                path=str(sp.target_dir),
            )


@dataclass
class Built:
    """What :func:`build_indexes` staged: moved in by :func:`install`."""

    series: list[tuple[Path, Path]] = field(default_factory=list)  # (staged series file, target _series)
    asides: list[Path] = field(default_factory=list)  # target paths to move aside before the shards go in
    # (staging directory, name, (dev, ino)) of each directory staged here: checked before moving in
    made: list[tuple[Path, str, tuple[int, int]]] = field(default_factory=list)


def _staged_keys(sdir: Path, wdir: Path | None) -> list[tuple[bytes, bytes]]:
    """:func:`keyed_series` of a staged shard, read through the staging descriptors without
    following a link (one swapped in for a staged file is refused, never read through)."""
    sname = fd_path(STAGE_FDS[sdir])
    wname = fd_path(STAGE_FDS[wdir]) if wdir is not None else None
    try:
        return keyed_series(sname, wname, nofollow=True)
    except ArchiveError as exc:
        for name, real in ((sname, sdir), (wname, wdir)):
            if name is not None and exc.path is not None and (exc.path == name or exc.path.startswith(name + "/")):
                exc.path = str(real) + exc.path[len(name):]
        raise


def build_indexes(
    plan: RestorePlan, staged: Staged, owner: tuple[int, int] | None, progress: ProgressCallback | None
) -> Built:
    """Stage every restored database's series file and every staged shard's ``index/``."""
    built = Built()
    by_db: dict[str, list[tuple[ShardPlan, Path, Path | None]]] = {}
    for item in staged:
        by_db.setdefault(item[0].database, []).append(item)
    for n, (db, items) in enumerate(by_db.items()):
        live = plan.datadir / db / tfmt.SERIES_FILE_DIR
        existing = _read_target_series(live)
        keysets = []
        for sp, sdir, wdir in items:
            try:
                keys = _staged_keys(sdir, wdir)
            except ArchiveError:
                if wdir is None or not plan.source.salvage:
                    raise
                # --salvage copied a WAL segment damaged past where replay resumes: its TSM data is
                # indexed; influxd adds the series it replays when it opens the shard (a restored
                # shard has no fields.idx, so influxd walks every TSM and cache key)
                keys = _staged_keys(sdir, None)
            if sp.into_existing and sp.target_dir.is_dir():
                twal = _target_wal(plan, sp)
                try:
                    keys += keyed_series(str(sp.target_dir), str(twal) if twal.is_dir() else None)
                except ArchiveError as exc:
                    raise TargetError(
                        f"the target shard merged into cannot be indexed: {exc.message}; nothing was restored",
                        path=exc.path or str(sp.target_dir), offset=exc.offset,
                    ) from exc
                built.asides += [sp.target_dir / tfmt.INDEX_DIR, sp.target_dir / "fields.idx"]
            keysets.append(keys)
        have = series_ids(existing) if existing is not None else {}
        new = list(dict.fromkeys(sk for keys in keysets for _k, sk in keys if sk not in have))
        stage = items[0][1].parent / f"series-{n}"
        # every directory and file below the staging descriptors goes through descriptors (a Tree
        # per series file and per shard index: its directories are held open only while written)
        sfile = _staged(built, functools.partial(
            tsiwrite.write_series_stage, parent_fd=STAGE_FDS[stage.parent], name=stage.name, shown=str(stage),
            live=str(live), existing=existing, new_keys=new, progress=progress, label=f"series file {db}", owner=owner,
        ))
        ids = series_ids(sfile)
        for (_sp, sdir, _w), keys in zip(items, keysets):
            parts = tsiwrite.shard_partitions(keys, ids, str(sdir))
            _staged(built, functools.partial(
                tsiwrite.write_index_at, parent_fd=STAGE_FDS[sdir], name=tfmt.INDEX_DIR, partitions=parts,
                shown=str(sdir / tfmt.INDEX_DIR), owner=owner,
            ))
        built.series.append((stage, live))
    return built


def _staged(built: Built, write: Callable[[Tree], _T]) -> _T:
    """``write(tree)``, then every name of the tree checked (no link swapped in for one), the
    directories it made in a staging directory entered in ``built.made`` (checked again before
    they are moved in)."""
    tree = Tree()
    try:
        got = write(tree)
        tree.verify()
        held = set(STAGE_FDS.values())
        built.made += [(Path(shown).parent, name, ident) for fd, name, ident, shown in tree.entries if fd in held]
        return got
    finally:
        tree.close()


def _check_made(built: Built, only: list[Path] | None = None) -> None:
    """The directories staged here (or those of ``only``) still stand under their names: no
    link swapped in for them is moved into place."""
    for parent, name, ident in built.made:
        if only is not None and parent / name not in only:
            continue
        try:
            st = os.lstat(name, dir_fd=STAGE_FDS[parent])
        except FileNotFoundError:
            raise swapped(str(parent / name)) from None
        if (st.st_dev, st.st_ino) != ident:
            raise swapped(str(parent / name))


def _target_wal(plan: RestorePlan, sp: ShardPlan) -> Path:
    """The WAL directory of a target shard merged into: in --waldir, else in the data
    directory's sibling ``wal`` (influxd's layout), whose points influxd serves too."""
    waldir = plan.waldir if plan.waldir is not None else plan.datadir.parent / "wal"
    return waldir / sp.database / sp.retention_policy / str(sp.id)


def _read_target_series(live: Path) -> sfmod.SeriesFile | None:
    if os.path.islink(live):
        raise TargetError("is a symbolic link; refusing to restore through it", path=str(live))
    linked = tsiwrite.linked_partition(live)  # its files would be copied in and handed to --owner
    if linked is not None:
        raise TargetError("is a symbolic link; refusing to restore through it", path=linked)
    if not live.is_dir():
        return None
    try:
        return sfmod.SeriesFile(live)
    except ArchiveError as exc:
        raise TargetError(
            f"the target's series file cannot be extended: {exc.message}; nothing was restored "
            "(verify shows its damage)",
            path=exc.path or str(live),
        ) from exc


def move_aside(tx: Transaction, built: Built) -> None:
    """Before the shards go in: the old ``index/`` and ``fields.idx`` of shards merged into."""
    _check_made(built)
    for p in built.asides:
        tx.aside(p)


def install(tx: Transaction, built: Built) -> list[str]:
    """After the shards went in: each target series file replaced by its staged extension."""
    written = []
    _check_made(built, [stage for stage, _live in built.series])  # the shards' went in with them
    for stage, live in built.series:
        tx.aside(live)
        tx.move_in(stage, live)
        written.append(str(live))
    return written
