"""Everything a tsi1 write puts into place is durable before the rename that puts it there.

A file renamed into place before its bytes reach the disk can come back empty after a power cut
(ext4's delayed allocation; its rename heuristic covers files renamed over files, not the
directories swapped in here): a series file partition whose last segment is empty loses every
series influxd had, an index log file cut short loses the shard's index. The auditor below wraps
``os.fsync`` and ``os.rename`` for the run: when a directory or file is renamed, every inode in it
that this run created or wrote (changed since the run began, and not a hard link to a file the
tree already had) must have been fsynced since it was last changed, and the directories the
renames changed must be fsynced before the run ends. Runs: build-tsi with no series file, one
extending an existing series file in some partitions only (the others copied untouched: the copy
must be synced too), ``--force``, and restores with ``--index tsi1``, fresh and ``--merge``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from influx_archive.archive import staging
from influx_archive.archive.ops import buildtsi
from influx_archive.archive.ops.restore import execute_restore, plan_restore
from influx_archive.archive.ops.select import Selection
from influx_archive.archive.sources import open_source

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _at(path, dir_fd: int | None) -> str:
    """The absolute path ``path`` names (relative to ``dir_fd`` when given)."""
    base = os.readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else os.getcwd()
    return os.path.normpath(os.path.join(base, os.fspath(path)))


class Auditor:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        time.sleep(0.05)  # what was written before has older times (the kernel's clock is coarse)
        self.t0 = time.time_ns() - 20_000_000
        self.synced: dict[tuple[int, int], int] = {}  # inode -> when (step) it was last fsynced
        self.step = 0
        self.renamed_into: dict[str, int] = {}  # directory a rename changed -> its step
        self.problems: list[str] = []
        self.renames = 0
        real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

        def fsync(fd: int) -> None:
            real_fsync(fd)
            st = os.fstat(fd)
            self.step += 1
            self.synced[(st.st_dev, st.st_ino)] = self.step

        def rename(src, dst, *a, **kw) -> None:
            s_at, d_at = _at(src, kw.get("src_dir_fd")), _at(dst, kw.get("dst_dir_fd"))
            self._check(s_at, d_at)
            (real_replace if rename.replace else real_rename)(src, dst, *a, **kw)  # type: ignore[attr-defined]
            self.step += 1
            for p in (s_at, d_at):
                self.renamed_into[os.path.dirname(p)] = self.step

        def make(replace: bool):
            def f(src, dst, *a, **kw) -> None:
                rename.replace = replace  # type: ignore[attr-defined]
                rename(src, dst, *a, **kw)
            return f

        real_noreplace = staging.rename_noreplace

        def noreplace(src, dst, *, src_dir_fd: int, dst_dir_fd: int) -> None:  # restore's renames
            s_at, d_at = _at(src, src_dir_fd), _at(dst, dst_dir_fd)
            self._check(s_at, d_at)
            real_noreplace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
            self.step += 1
            for p in (s_at, d_at):
                self.renamed_into[os.path.dirname(p)] = self.step

        monkeypatch.setattr(staging, "rename_noreplace", noreplace)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", make(False))
        monkeypatch.setattr(os, "replace", make(True))

    def _check(self, src: str, dst: str) -> None:
        if "-old-" in os.path.basename(dst):
            return  # the live tree moved aside (swap_in), not put into place
        self.renames += 1
        todo = [src]
        while todo:
            p = todo.pop()
            st = os.lstat(p)
            if os.path.isdir(p) and not os.path.islink(p):
                todo += [os.path.join(p, n) for n in os.listdir(p)]
            elif not os.path.isfile(p) or os.path.islink(p) or st.st_nlink > 1:
                continue  # a link to a file the tree had (its bytes were durable already)
            if max(st.st_mtime_ns, st.st_ctime_ns) < self.t0:
                continue  # not made or changed by this run
            if (st.st_dev, st.st_ino) not in self.synced:
                self.problems.append(f"renamed into place, never fsynced: {p}")

    def finish(self) -> None:
        """Every directory a rename changed was fsynced after that rename."""
        for d, step in self.renamed_into.items():
            if not os.path.isdir(d):
                continue  # a staging directory removed since
            st = os.stat(d)
            if self.synced.get((st.st_dev, st.st_ino), -1) < step:
                self.problems.append(f"directory changed by a rename, not fsynced after it: {d}")


def _restored(tmp_path: Path, *, db: str | None = None, index: str = "inmem") -> Path:
    root = tmp_path / "root"
    plan = plan_restore(open_source(FIXTURES / "live"), metadir=root / "meta", datadir=root / "data",
                        waldir=root / "wal", selection=Selection(database=db), index=index)
    execute_restore(plan)
    return root


def _audited(monkeypatch, fn) -> None:
    with monkeypatch.context() as m:
        a = Auditor(m)
        fn()
        a.finish()
    assert a.renames > 0  # the run did put something into place
    assert not a.problems, "\n".join(a.problems)


@pytest.mark.parametrize("how", ["fresh", "extend", "force"])
def test_build_tsi_syncs_what_it_renames_into_place(how, tmp_path, monkeypatch) -> None:
    root = _restored(tmp_path)
    data, wal = str(root / "data"), str(root / "wal")
    if how == "extend":  # one retention policy first: the second run extends db1's series file
        buildtsi.build_tsi(data, wal, database="db1", retention_policy="hourly")
        parts = list((root / "data" / "db1" / "_series").iterdir())
        assert len(parts) == 8
    if how == "force":
        buildtsi.build_tsi(data, wal)
    _audited(monkeypatch, lambda: buildtsi.build_tsi(data, wal, force=how == "force"))


@pytest.mark.parametrize("how", ["fresh", "merge"])
def test_restore_index_tsi1_syncs_what_it_renames_into_place(how, tmp_path, monkeypatch) -> None:
    root = tmp_path / "root"
    if how == "merge":
        execute_restore(plan_restore(open_source(FIXTURES / "legacy"), metadir=root / "meta",
                                     datadir=root / "data", selection=Selection(database="db1"), index="tsi1"))
        plan = plan_restore(open_source(FIXTURES / "legacy"), metadir=root / "meta", datadir=root / "data",
                            selection=Selection(database="db2", newdb="db1"), merge=True)
    else:
        plan = plan_restore(open_source(FIXTURES / "legacy"), metadir=root / "meta", datadir=root / "data",
                            index="tsi1")
    _audited(monkeypatch, lambda: execute_restore(plan))
