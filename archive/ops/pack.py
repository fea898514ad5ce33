"""``pack`` / ``unpack``: the operations that write sealed archives.

``pack`` writes one checksummed ``.tar.zst`` per backup for long-term storage (the layout is
described in :mod:`~influx_archive.archive.sources.sealed`, which reads it): a single zstd stream
(frame checksums on, multi-threaded compression) of a POSIX tar whose first member is
``INFLUX-ARCHIVE.json``, followed by the backup's files unchanged. A live server root is backed up
(``convert`` to portable) before packing, a sealed archive unpacked first. ``unpack`` restores the
backup directory, every file checked against the manifest
(:func:`~influx_archive.archive.sources.sealed.verify_sealed`, on the reading side, checks every
member without writing anything).

zstandard defaults that bite, set explicitly here: ``write_checksum=True`` (frame content
checksums are off by default), ``threads`` (0 = none by default; we pass the core count),
``closefd=False`` (we own the file objects).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import zstandard

from ..errors import ArchiveError, SourceError, SourceIOError, TargetIOError, UsageError
from ..output import Output, building_dir, open_output, os_error, plan_dir_output, plan_file_output, source_roots
from ..progress import ProgressCallback, Reporter
from ..sources import Source, open_source
from ..sources.sealed import CHUNK, FORMAT, FORMAT_VERSION, MANIFEST_NAME, SealedSource, copy_checked, iter_members
from ..spools import spool
from ..timefmt import rfc3339, utc_now_seconds
from .convert import convert
from .tarwrite import TarWriter


def tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("influx-archive")
    except Exception:
        return "unknown"


@dataclass
class PackResult:
    archive: str
    files: int
    bytes_in: int
    bytes_out: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


# --------------------------------------------------------------------------------------------
# pack


def _backup_files(src: Source) -> list[str]:
    """Relative names of the backup's files: metadata first, then shard files in shard order."""
    root = Path(src.path)
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(filenames):
            p = Path(dirpath) / n
            st = p.lstat()
            if not stat.S_ISREG(st.st_mode):
                raise UsageError("not a regular file; a backup directory holds only regular files", path=str(p))
            names.append(str(p.relative_to(root).as_posix()))
    order: dict[str, int] = {}
    for i, shard in enumerate(src.shards):
        for f in shard.files:
            order.setdefault(os.path.relpath(f.container, root), i)
    return sorted(names, key=lambda n: (n in order, order.get(n, -1), n))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def pack(
    src_path: str | os.PathLike[str],
    archive: str | os.PathLike[str],
    *,
    level: int = 3,
    threads: int = 0,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> PackResult:
    """Write the backup at ``src_path`` (a live root is backed up first, a sealed archive unpacked
    first, both into a private spool) as a sealed archive. ``archive`` goes through
    :mod:`~influx_archive.archive.output`: ``-``, a device or a FIFO is a stream; an existing file
    is refused unless ``force``; a path equal to or inside the source is refused."""
    if not 1 <= level <= 22:
        raise UsageError("--level must be 1..22")
    with open_source(src_path) as src:
        roots = source_roots(src)
        out = plan_file_output(archive, sources=roots, force=force)
        if src.kind == "file":
            raise UsageError("pack takes a backup directory or a server root, not a single file", path=src.path)
        with contextlib.ExitStack() as stack:
            if src.kind == "live" or isinstance(src, SealedSource):
                base = None if out.stream else os.path.dirname(out.path)  # big: beside the archive
                try:
                    work = Path(stack.enter_context(spool("pack", base)))
                    if isinstance(src, SealedSource):
                        unpack(src.archive, work / "backup")
                    else:
                        convert(src, work / "backup", to="portable")
                except TargetIOError as exc:  # the intermediate backup is the target's business
                    raise TargetIOError(f"cannot write the target (the backup to pack, in {exc.path}): {exc.message}",
                                        path=out.display) from None
                with open_source(work / "backup") as inner:
                    return _pack_dir(inner, out, level=level, threads=threads, progress=progress, roots=roots)
            return _pack_dir(src, out, level=level, threads=threads, progress=progress, roots=roots)


def _pack_dir(src: Source, out: Output, *, level: int, threads: int, progress: ProgressCallback | None,
              roots: list[str]) -> PackResult:
    root = Path(src.path)
    names = _backup_files(src)
    entries: list[dict[str, Any]] = []
    try:
        for n in names:
            p = root / n
            st = p.stat()
            entries.append({"name": n, "size": st.st_size, "mode": stat.S_IMODE(st.st_mode), "sha256": _sha256(p)})
    except OSError as exc:
        raise os_error(exc, target=out.display, sources=roots + [str(root)]) from exc
    starts = [s.group_start for s in src.shards if s.group_start is not None and (s.files or s.wal)]
    ends = [s.group_end for s in src.shards if s.group_end is not None and (s.files or s.wal)]
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool": "influx-archive",
        "tool_version": tool_version(),
        "created": utc_now_seconds(),
        "source": {"kind": src.kind, "path": str(root)},
        "databases": [db.name for db in src.meta.databases] if src.meta else [],
        "time_range": {"start": rfc3339(min(starts)), "end": rfc3339(max(ends))} if starts else None,
        "files": entries,
    }
    blob = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
    total = sum(e["size"] for e in entries)
    rep = Reporter(progress, label="pack")
    rep.start(total)
    cctx = zstandard.ZstdCompressor(level=level, threads=threads or os.cpu_count() or 1, write_checksum=True)
    try:
        with open_output(out, mode=0o600) as raw:  # the metastore holds password hashes
            with cctx.stream_writer(raw, closefd=False) as zw:
                tar = TarWriter(zw)
                tar.add(MANIFEST_NAME, len(blob), io.BytesIO(blob), mode=0o644)
                for e in entries:
                    h = hashlib.sha256()
                    with open(root / e["name"], "rb") as f:
                        reader = cast(BinaryIO, _HashingReader(f, h))  # reads like one: TarWriter only reads
                        tar.add(e["name"], e["size"], reader, mode=e["mode"], on_bytes=rep.advance)
                    if h.hexdigest() != e["sha256"]:
                        raise SourceError("file changed while it was packed", path=str(root / e["name"]))
                tar.close()
            raw.flush()
            out_size = raw.written
    except BrokenPipeError:
        raise
    except OSError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise os_error(exc, target=out.display, sources=roots + [str(root)]) from exc
    finally:
        rep.end()
    return PackResult(out.display, len(entries), total, out_size)


class _HashingReader:
    def __init__(self, f: IO[bytes], h) -> None:
        self._f = f
        self._h = h

    def read(self, n: int) -> bytes:
        data = self._f.read(n)
        self._h.update(data)
        return data


def unpack(
    archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, progress: ProgressCallback | None = None
) -> PackResult:
    """Restore the backup directory from ``archive`` into ``dest`` (new or empty), every file
    checked against the manifest; all or nothing (built beside ``dest``, renamed when complete)."""
    path = Path(archive).absolute()
    if not path.is_file():
        raise SourceError("no such archive", path=str(path))
    out = plan_dir_output(dest, sources=[os.path.realpath(path)])
    rep = Reporter(progress, label="unpack")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SourceIOError(f"cannot read the source: {exc.strerror}", path=str(path)) from exc
    n = total = 0
    started = False
    try:
        with building_dir(out, sources=[os.path.realpath(path)]) as tmp:
            for doc, entry, _m, reader in iter_members(path):
                if not started:  # the total is what the manifest lists (the archive's size is compressed)
                    rep.start(sum(int(e.get("size", 0)) for e in doc.get("files", [])))
                    started = True
                target = tmp / entry["name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "xb") as f:
                    copy_checked(reader, entry, f, path)  # type: ignore[arg-type]
                    f.flush()
                    os.fchmod(f.fileno(), int(entry.get("mode", 0o644)) & 0o777)
                    os.fsync(f.fileno())
                n += 1
                total += entry["size"]
                rep.advance(entry["size"])
    except OSError as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise os_error(exc, target=out.path, sources=[os.path.realpath(path)]) from exc
    finally:
        rep.end()
    return PackResult(str(path), n, size, total)
