"""When each shard of a backup run was asked for: the dating behind
:attr:`~.model.ShardFile.maybe_filtered` (docs/formats.md#files-written-during-a-run).

``influxd backup`` asks for the shards of a run one after another, and writes each shard's file
completely before it asks for the next. So a shard's request came after every other shard file
of the same run that was finished before its own: a file the server wrote before that moment
(a compaction output finished after the run's start, while earlier shards were being sent)
cannot be a ``-start/-end`` copy cut for this shard, which is written after the request.
"""

from __future__ import annotations

import os
from collections import Counter

from .model import Shard


def request_windows(tars: list[tuple[str, int | None]]) -> dict[str, float]:
    """(shard file path, its run's start in epoch s or None) -> the latest moment known to
    precede that shard's request (epoch s): the run's start, or the mtime of the newest other
    shard file of the same run finished strictly before this one. Files whose mtime cannot be
    read, without a run start, or listed twice, are left out."""
    stamped: list[tuple[str, int, float]] = []
    seen = Counter(path for path, _start in tars)
    for path, start in tars:
        if start is None or seen[path] > 1:  # one file listed by two runs: left alone
            continue
        try:
            stamped.append((path, start, os.stat(path).st_mtime))
        except OSError:
            continue
    out: dict[str, float] = {}
    by_run: dict[int, list[tuple[float, str]]] = {}
    for path, start, mtime in stamped:
        by_run.setdefault(start, []).append((mtime, path))
    for start, files in by_run.items():
        files.sort()
        before = float(start)
        for i, (mtime, path) in enumerate(files):
            if i and files[i - 1][0] < mtime:
                before = max(before, files[i - 1][0])
            out[path] = before
    return out


def date_requests(shards: list[Shard], windows: dict[str, float]) -> None:
    """Move each member's :attr:`~.model.ShardFile.set_time` from its run's start to its shard's
    request (:func:`request_windows`), for the shard files that show their mtimes are the run's
    own: one of their members was written at or after that moment (member mtimes are whole
    seconds, rounded). A shard file copied without its mtime is younger than all of its members
    and keeps the run's start."""
    members: dict[str, list] = {}
    for sh in shards:
        for f in sh.files:
            if f.container in windows:
                members.setdefault(f.container, []).append(f)
    for container, files in members.items():
        at = int(windows[container])
        if any(f.set_time is not None and at > f.set_time for f in files) and any(
            f.mtime is not None and f.mtime >= at for f in files
        ):
            for f in files:
                if f.set_time is not None:
                    f.set_time = max(f.set_time, at)
