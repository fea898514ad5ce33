"""Leftovers of interrupted runs: every verb builds its output under a name carrying its PID and
renames it into place when complete, so a run killed with SIGKILL leaves only such a temporary
name behind. The next run removes the ones whose process is gone."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale(directory: Path, prefix: str) -> list[Path]:
    """Remove ``directory/<prefix><pid>`` files or directories whose process is gone."""
    removed = []
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = pattern.match(name)
        if not m or pid_alive(int(m.group(1))):
            continue
        p = directory / name
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def temp_sibling(target: Path) -> Path:
    """The temporary name ``target`` is built under (``.<name>.tmp-<pid>`` beside it, so the final
    rename stays on one file system), after removing those of runs that were killed."""
    remove_stale(target.parent, f".{target.name}.tmp-")
    return target.parent / f".{target.name}.tmp-{os.getpid()}"
