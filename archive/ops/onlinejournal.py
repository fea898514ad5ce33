"""The link journal of an online backup increment (``backup --host --since`` into an existing
backup): an increment's files are built in a temporary directory beside the destination and
hard-linked into it one by one, its metastore / manifest last. A run killed while linking
(SIGKILL, power loss) leaves some of them in the destination; the journal written before the
first link lets the next ``--since`` run remove exactly those (docs/formats.md#online-backup)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from pathlib import Path

from ..errors import ArchiveError
from ..staging import fsync_dir, pid_alive
from ..untrusted import open_regular

#: In an increment's temporary directory: the names (and inodes) about to be linked into the
#: destination, in order, so that a run killed while linking (SIGKILL, power loss) is undone by the
#: next ``--since`` run into the same destination (:func:`undo_killed_increments`).
JOURNAL = ".linking"
_JOURNAL_MAX = 1 << 22


def write_journal(tmp: Path, names: list[str]) -> None:
    rows = []
    for n in names:
        st = os.lstat(tmp / n)
        rows.append({"name": n, "dev": st.st_dev, "ino": st.st_ino})
    with open(tmp / JOURNAL, "x", encoding="utf-8") as fh:
        json.dump(rows, fh)
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(tmp, best_effort=True)


def undo_killed_increments(dest: Path) -> list[str]:
    """Remove from ``dest`` the files an increment run linked before it was killed part-way
    (its metastore / manifest not linked yet): those its journal names that are still the very
    inode it linked. A run killed after its last link is complete and left alone. Returns the
    names removed. The killed run's temporary directory is removed later by ``temp_sibling``."""
    removed: list[str] = []
    pattern = re.compile(re.escape(f".{dest.name}.tmp-") + r"([0-9]+)$")
    try:
        siblings = os.listdir(dest.parent)
    except OSError:
        return removed
    for sib in siblings:
        m = pattern.match(sib)
        if not m or pid_alive(int(m.group(1))):
            continue
        journal = dest.parent / sib / JOURNAL
        try:
            st = os.lstat(dest.parent / sib)
            if st.st_uid != os.geteuid() or not stat.S_ISDIR(st.st_mode):
                continue
            with open_regular(journal, "journal") as fh:
                raw = fh.read(_JOURNAL_MAX + 1)
            rows = json.loads(raw) if len(raw) <= _JOURNAL_MAX else None
        except (OSError, ValueError, ArchiveError):
            continue
        if not isinstance(rows, list) or not rows or not all(
                isinstance(r, dict) and isinstance(r.get("name"), str) and "/" not in r["name"]
                and isinstance(r.get("ino"), int) and isinstance(r.get("dev"), int) for r in rows):
            continue

        def ours(row: dict) -> bool:
            try:
                st = os.lstat(dest / row["name"])
            except OSError:
                return False
            return (st.st_dev, st.st_ino) == (row["dev"], row["ino"])

        if ours(rows[-1]):
            continue  # every file was linked: a complete increment
        for row in rows:
            if ours(row):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dest / row["name"])
                    removed.append(row["name"])
    if removed:
        fsync_dir(dest, best_effort=True)
    return removed
