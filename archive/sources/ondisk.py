"""Sources made of files on disk: backup directories, server roots, single files.

Nothing is extracted: TSM files inside an uncompressed tar are read in place through windows
(:class:`~influx_archive.archive.streams.SubFile`); a ``.tar.gz`` is spooled to one temporary file
per shard while that shard is open (:meth:`DiskSource.open_shard`). :func:`add_tar_shard`
registers the members of one shard tar with the shards they name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from ..errors import SourceIOError
from ..findings import MEMBER_WRONG_SHARD, WARNING, Finding
from ..streams import SubFile
from ..untrusted import open_regular
from .model import OpenShard, Shard, ShardFile, Source, file_kind
from .tarscan import member_offset, scan_shard_tar, spool_gzip


@dataclass
class DiskSource(Source):
    """A :class:`Source` whose shard files are files on disk, loose or inside tars."""

    #: tar listings made elsewhere (a sealed archive scans each shard tar while streaming it)
    prescanned: dict = field(default_factory=dict, repr=False)
    #: other directories the source is read from (a bare data directory's --waldir)
    also_reads: list[str] = field(default_factory=list)

    def reads_from(self) -> list[str]:
        """The source itself (a single file), or its directory and every directory its files
        live in (a server root's ``data/`` may be a symlink to another disk)."""
        if self.kind == "file":
            return [self.path]
        out = [self.path, *self.also_reads]
        for sub in ("meta", "data", "wal"):
            p = os.path.join(self.path, sub)
            if self.kind == "live" and os.path.isdir(p):
                out.append(p)
        for shard in self.shards:
            for f in shard.files + shard.wal:
                out.append(os.path.dirname(f.container))
        if self.meta_origin:
            out.append(os.path.dirname(self.meta_origin))
        return out

    @contextlib.contextmanager
    def open_shard(self, shard: Shard, *, tmpdir: str | None = None, spool_gz: bool = True) -> Iterator[OpenShard]:
        """Open every file of ``shard`` as a seekable binary stream.

        Loose files are opened as they are; uncompressed tars are read in place; each
        ``.tar.gz`` is decompressed once into a temporary file that lives until the context ends
        (one shard's working set). With
        ``spool_gz=False`` files inside a ``.tar.gz`` get no stream: the caller reads their
        container itself while the context holds it (a sealed archive's containers exist only then).
        """
        with contextlib.ExitStack() as stack:
            handles: dict[str, BinaryIO] = {}  # container path -> open base stream
            spooled: dict[str, BinaryIO] = {}
            opened = OpenShard(shard)

            def base_for(f: ShardFile) -> BinaryIO:
                if f.member is None:
                    return stack.enter_context(open_regular(f.container))
                if f.gz:
                    if f.container not in spooled:
                        spooled[f.container] = stack.enter_context(spool_gzip(f.container, tmpdir, self.salvage))
                    return spooled[f.container]
                if f.container not in handles:
                    handles[f.container] = stack.enter_context(open_regular(f.container))
                return handles[f.container]

            for f in shard.files + shard.wal:
                if f.gz and not spool_gz:
                    continue
                base = base_for(f)
                if f.member is None:
                    opened.streams[id(f)] = base
                    continue
                if f.gz:
                    offset = member_offset(base, f)
                else:
                    offset = f.data_offset if f.data_offset is not None else member_offset(base, f)
                opened.streams[id(f)] = cast(BinaryIO, SubFile(base, offset, f.size, name=f.origin))
            yield opened


def listdir(p: Path) -> list[str]:
    try:
        return sorted(os.listdir(p))
    except OSError as exc:
        raise SourceIOError(f"cannot read the source directory: {exc.strerror}", path=str(p)) from exc


def add_tar_shard(
    src: DiskSource,
    tar_path: Path,
    *,
    gz: bool,
    increment: int,
    fallback: tuple[str, str, int] | None,
    expected_size: int | None = None,
    set_time: int | None = None,
) -> None:
    """Register the members of one shard tar with the shard(s) they name. ``set_time``: when the
    backup run that wrote the tar started (epoch s), if known."""
    members = src.prescanned.get(str(tar_path))
    if members is None:
        members = scan_shard_tar(
            str(tar_path), gz=gz, findings=src.findings, salvage=src.salvage, expected_size=expected_size
        )
    shards = src._index()
    seen: set[tuple[str, str, int]] = set()
    for m in members:
        db, rp, sid, name = m.parts
        key = (db, rp, sid)
        if fallback is not None and key != fallback:
            src.findings.append(
                Finding(
                    WARNING,
                    f"member belongs to {db}/{rp}/{sid}, not to the shard named by the file "
                f"({fallback[0]}/{fallback[1]}/{fallback[2]})",
                    path=str(tar_path),
                    member=m.name,
                    code=MEMBER_WRONG_SHARD,
                )
            )
        s = shards.get(key)
        if s is None:
            s = Shard(db, rp, sid)
            shards[key] = s
            src.shards.append(s)
        seen.add(key)
        s.files.append(
            ShardFile(
                name=name,
                kind=file_kind(name),
                size=m.size,
                container=str(tar_path),
                member=m.name,
                increment=increment,
                gz=gz,
                data_offset=None if gz else m.data_offset,
                mtime=getattr(m, "mtime", None),
                set_time=set_time,
            )
        )
    for key in seen:
        if not shards[key].containers or shards[key].containers[-1] != str(tar_path):
            shards[key].containers.append(str(tar_path))
    if not seen and fallback is not None:
        s = shards.get(fallback)
        if s is None:
            s = Shard(*fallback)
            shards[fallback] = s
            src.shards.append(s)
        s.containers.append(str(tar_path))
