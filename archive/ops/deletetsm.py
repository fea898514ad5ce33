"""``deletetsm``: remove a measurement's keys (or, ``sanitize``, keys with non-printable names)
from raw TSM files offline, as ``influx_inspect deletetsm`` does (docs/formats.md#deletetsm).

Per file, atomically: the kept keys' blocks are copied byte for byte (each block's CRC checked on
the way: a damaged block stops that file, which is then left as it was) into a new file beside it
(``.<name>.tmp-<pid>``), with the original's mode and owner; the new file is fsynced and renamed
over the original, and the directory fsynced. Like influx_inspect, no backup copy is kept. Unlike
influx_inspect:

* a file that holds no key to remove is not rewritten (influx_inspect rewrites every file);
* a file left with no key at all is removed (influx_inspect fails: a TSM file cannot be empty),
  with its tombstone;
* the file's ``.tombstone`` is kept consistent: entries for removed keys are dropped (the file is
  rewritten the same way, as v4), and removed when none is left (influx_inspect leaves it as is);
* influxd running on the directory is refused (it holds the files open and would keep serving the
  old file, then compact the removed data back in); so is a path that is a symbolic link, a FIFO,
  a device, or not named ``*.tsm``.

A measurement matches on its unescaped name (``cpu``, ``my measurement``), as influx_inspect
compares it. ``sanitize`` removes keys whose measurement, a tag key or a tag value is not valid
UTF-8 or holds a character that is not printable (Go's ``unicode.IsPrint``: letters, marks,
numbers, punctuation, symbols and the ASCII space) or U+FFFD.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ...tsm.keys import parse_series_key, series_of
from ...tsm.reader import TSMReader
from ...tsm.tombstone import read_tombstones, write_tombstones
from ...tsm.writer import TSMWriter
from ..cleanup import discard, track, uninterrupted, untrack
from ..errors import ArchiveError, SourceError, TargetIOError, UsageError
from ..guard import TargetLock, refuse_live
from ..progress import ProgressCallback, Reporter
from ..staging import fsync_dir, temp_sibling
from ..untrusted import open_regular


@dataclass
class FileResult:
    path: str
    keys: int = 0  # keys in the file before
    removed_keys: list[str] = field(default_factory=list)
    blocks_removed: int = 0
    tombstone_entries_removed: int = 0
    action: str = "unchanged"  # unchanged | rewritten | removed (no key left)

    def to_dict(self) -> dict:
        return {"path": self.path, "keys": self.keys, "removed_keys": len(self.removed_keys),
                "blocks_removed": self.blocks_removed, "tombstone_entries_removed": self.tombstone_entries_removed,
                "action": self.action}


def valid_token(b: bytes) -> bool:
    """Go's ``models.ValidKeyToken``: valid UTF-8, every character printable, no U+FFFD."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all((c == " " or c.isprintable()) and c != "\ufffd" for c in s)


def _doomed(key: bytes, measurement: bytes | None, sanitize: bool) -> bool:
    name, tags = parse_series_key(series_of(key))
    if measurement is not None and name == measurement:
        return True
    if sanitize:
        return not (valid_token(name) and all(valid_token(k) and valid_token(v) for k, v in tags))
    return False


def _check_path(path: str) -> None:
    if os.path.islink(path):
        raise UsageError("a symbolic link: give the TSM file itself (nothing is written through a link)", path=path)
    if not os.path.basename(path).endswith(".tsm"):
        raise UsageError("not a TSM file name (expected <generation>-<sequence>.tsm)", path=path)
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror}", path=path) from exc
    if not stat.S_ISREG(st.st_mode):
        raise UsageError("not a regular file", path=path)


def _write_atomically(final: Path, like: os.stat_result, write) -> None:
    """``write(stream)`` into a temporary sibling of ``final``, then fsync and rename over it."""
    tmp = temp_sibling(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    track(tmp, False)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fchmod(out.fileno(), stat.S_IMODE(like.st_mode))
            with contextlib.suppress(PermissionError):
                os.fchown(out.fileno(), like.st_uid, like.st_gid)
            os.fsync(out.fileno())
        with uninterrupted():
            os.replace(tmp, final)
            untrack(tmp)
    except BaseException:
        discard(tmp, is_dir=False)
        raise


def _process(path: str, measurement: bytes | None, sanitize: bool, dry_run: bool) -> FileResult:
    res = FileResult(path)
    final = Path(path)
    like = os.stat(path)
    with open_regular(path) as stream:
        reader = TSMReader(stream, name=path, size=like.st_size)
        doomed: set[bytes] = set()
        for key, _btype, entries in reader.iter_index():
            res.keys += 1
            if _doomed(key, measurement, sanitize):
                doomed.add(key)
                res.blocks_removed += len(entries)
        res.removed_keys = sorted(k.decode("utf-8", "backslashreplace") for k in doomed)
        if not doomed:
            return res
        tomb_path = final.with_suffix(".tombstone")
        tomb_entries = None
        if os.path.lexists(tomb_path):
            with open_regular(tomb_path) as ts:
                tomb_entries = list(read_tombstones(ts, name=str(tomb_path)))
        kept_tomb = [t for t in tomb_entries or [] if bytes(t.key) not in doomed]
        res.tombstone_entries_removed = len(tomb_entries or []) - len(kept_tomb)
        res.action = "removed" if len(doomed) == res.keys else "rewritten"
        if dry_run:
            return res
        if res.action == "rewritten":
            def copy(out) -> None:
                w = TSMWriter(out)
                for key, btype, entries in reader.iter_index():
                    if key in doomed:
                        continue
                    for e in entries:
                        w.write_block(key, btype, e.min_time, e.max_time, reader.read_block(e, verify_crc=True))
                w.close()

            _write_atomically(final, like, copy)
    try:
        if res.action == "removed":
            with uninterrupted():
                os.unlink(final)
        if tomb_entries is not None and res.tombstone_entries_removed:
            if kept_tomb and res.action == "rewritten":
                _write_atomically(tomb_path, os.stat(tomb_path), lambda out: write_tombstones(out, kept_tomb))
            else:
                with uninterrupted():
                    os.unlink(tomb_path)
        elif tomb_entries is not None and res.action == "removed":
            with uninterrupted():
                os.unlink(tomb_path)
        fsync_dir(final.parent)
    except OSError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise TargetIOError(f"cannot replace: {exc.strerror}", path=path) from exc
    return res


def delete_tsm(
    paths: list[str],
    *,
    measurement: str | None = None,
    sanitize: bool = False,
    dry_run: bool = False,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> list[FileResult]:
    """Remove ``measurement``'s keys (and/or, ``sanitize``, keys with non-printable names) from
    each TSM file of ``paths``, one file at a time (see the module docstring). Every path is checked
    before the first is touched; a damaged file stops the run with that file as it was and the
    files before it done (each is complete on its own)."""
    if not measurement and not sanitize:
        raise UsageError("give --measurement NAME or --sanitize (or both)")
    if not paths:
        raise UsageError("give at least one TSM file")
    for p in paths:
        _check_path(p)
    dirs = sorted({os.path.dirname(os.path.abspath(p)) for p in paths})
    refuse_live(dirs, what="rewrite TSM files in", force=force)
    want = measurement.encode("utf-8", "surrogateescape") if measurement else None
    rep = Reporter(progress, unit="B", label="deletetsm")
    sizes = [os.path.getsize(p) for p in paths]
    rep.start(sum(sizes))
    out = []
    try:
        with TargetLock([(d, 0o755) for d in dirs]) if not dry_run else contextlib.nullcontext():
            for p, size in zip(paths, sizes, strict=True):
                out.append(_process(p, want, sanitize, dry_run))
                rep.advance(size)
    finally:
        rep.end()
    return out


__all__ = ["FileResult", "delete_tsm", "valid_token"]
