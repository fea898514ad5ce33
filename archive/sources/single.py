"""A single file: ``.tsm``, ``.tombstone``, ``.wal``, ``meta.NN``, ``.meta``, ``meta.db``,
``.manifest`` (its portable backup set), shard ``.tar`` or ``.tar.gz``."""

from __future__ import annotations

from pathlib import Path

from ...meta import files as metafiles
from ...meta.format import MAX_META_FILE_SIZE
from ...meta.model import decode_data
from ..errors import SourceError
from ..untrusted import read_small
from .legacy import LEGACY_META_RE
from .model import Shard, ShardFile, fill_from_meta
from .ondisk import DiskSource, add_tar_shard


def open_file(p: Path, salvage: bool = False) -> DiskSource:
    name = p.name
    src = DiskSource("file", str(p), salvage=salvage)
    if name.endswith(".tsm"):
        src.file_kind = "tsm"
        src.shards.append(_single_file_shard(p, "tsm"))
    elif name.endswith(".tombstone"):
        src.file_kind = "tombstone"
        src.shards.append(_single_file_shard(p, "tombstone"))
    elif name.endswith(".wal"):
        src.file_kind = "wal"
        sh = Shard("", "", 0)
        sh.wal.append(ShardFile(name=name, kind="wal", size=p.stat().st_size, container=str(p)))
        src.shards.append(sh)
    elif LEGACY_META_RE.match(name):
        src.file_kind = "meta.NN"
        src.meta = metafiles.parse_meta_nn(read_small(p, MAX_META_FILE_SIZE), path=str(p)).data
        src.meta_origin = str(p)
        fill_from_meta(src)
    elif name == "meta.db":
        src.file_kind = "meta.db"
        src.meta = metafiles.read_meta_db(p)
        src.meta_origin = str(p)
        fill_from_meta(src)
    elif name.endswith(".meta"):
        src.file_kind = "meta"
        blob, _ = metafiles.parse_portable_meta(read_small(p, MAX_META_FILE_SIZE), path=str(p))
        src.meta = decode_data(blob, path=str(p))
        src.meta_origin = str(p)
        fill_from_meta(src)
    elif name.endswith(".manifest"):
        from .portable import open_portable

        portable = open_portable(p.parent, [p], salvage)
        portable.kind = "file"
        portable.file_kind = "manifest"
        portable.path = str(p)
        return portable
    elif name.endswith((".tar.gz", ".tgz")):
        src.file_kind = "tar.gz"
        add_tar_shard(src, p, gz=True, increment=0, fallback=None)
    elif name.endswith(".tar") or metafiles.parse_legacy_shard_file_name(name, as_written=False):
        src.file_kind = "tar"
        add_tar_shard(src, p, gz=False, increment=0, fallback=None)
    else:
        raise SourceError(
            "unrecognised file: expected .tsm, .tombstone, .wal, meta.NN, .meta, meta.db, .manifest, .tar or .tar.gz",
            path=str(p),
        )
    return src


def _single_file_shard(p: Path, kind: str) -> Shard:
    sh = Shard("", "", 0)
    sh.files.append(ShardFile(name=p.name, kind=kind, size=p.stat().st_size, container=str(p)))
    return sh
