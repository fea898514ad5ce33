"""Dump one TSM file or WAL segment (like ``influx_inspect dumptsm`` / ``dumpwal``), also one that
lives inside a backup: ``PATH::MEMBER`` names a member of a shard tar / ``.tar.gz`` or, for a
backup directory or server root, the file ``<db>/<rp>/<id>/<name>`` of a shard.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Iterator

from ...tsm.block import BLOCK_TYPE_NAMES, block_sections, count_values
from ...tsm.format import tsmfile as fmt
from ...tsm.reader import TSMReader
from ...tsm.wal import DeleteEntry, DeleteRangeEntry, WALCorruption, WriteEntry, iter_wal
from ..errors import ArchiveError, FormatError, SourceError, UsageError
from ..sources import ShardFile, open_source
from ..timefmt import rfc3339

_TS_ENC = {0: "raw", 1: "simple8b", 2: "rle"}
#: value encodings per block type (docs/formats.md)
_VALUE_ENC = {
    0: {1: "gorilla"},
    1: {0: "raw", 1: "simple8b", 2: "rle"},
    2: {1: "bitpacked"},
    3: {1: "snappy"},
    4: {0: "raw", 1: "simple8b", 2: "rle"},
}


@contextlib.contextmanager
def open_member(spec: str, kind: str) -> Iterator[tuple[object, ShardFile]]:
    """Yield ``(stream, ShardFile)`` for ``FILE`` or ``CONTAINER::MEMBER`` of the given kind."""
    path, sep, member = spec.partition("::")
    with open_source(path) as src, _member_of(src, path, sep, member, kind) as opened:
        yield opened


@contextlib.contextmanager
def _member_of(src, path: str, sep: str, member: str, kind: str) -> Iterator[tuple[object, ShardFile]]:
    candidates: list[tuple[object, ShardFile]] = []
    for shard in src.shards:
        for f in shard.files + shard.wal:
            if f.kind != kind:
                continue
            rel = f"{shard.database}/{shard.retention_policy}/{shard.id}/{f.name}"
            if not sep or f.member == member or rel == member:
                candidates.append((shard, f))
    if not candidates:
        raise SourceError(f"no {kind} file {member!r} in it" if sep else f"not a {kind} file", path=path)
    if len(candidates) > 1:
        names = ", ".join(f.member or f.name for _, f in candidates[:5])
        raise UsageError(f"{len(candidates)} {kind} files match; name one as PATH::MEMBER ({names}, ...)", path=path)
    shard, f = candidates[0]
    with src.open_shard(shard) as opened:  # type: ignore[arg-type]
        yield opened.stream(f), f


def dump_tsm(spec: str, *, blocks: bool = False, key_pattern: str | None = None) -> dict:
    with open_member(spec, "tsm") as (stream, f):
        reader = TSMReader(stream, name=f.origin, size=f.size)  # type: ignore[arg-type]
        keys = []
        total_blocks = 0
        for key, btype, entries in reader.iter_index():
            total_blocks += len(entries)
            text = key.decode("utf-8", "backslashreplace")
            if key_pattern is not None and not fnmatch.fnmatchcase(text, key_pattern):
                continue
            item = {
                "key": text,
                "type": BLOCK_TYPE_NAMES.get(btype, str(btype)),
                "blocks": len(entries),
                "min_time": rfc3339(entries[0].min_time),
                "max_time": rfc3339(entries[-1].max_time),
            }
            if blocks:
                item["block_list"] = [_block_info(reader, e) for e in entries]
            keys.append(item)
        return {
            "file": f.origin,
            "size": f.size,
            "version": fmt.VERSION,
            "keys": reader.key_count(),
            "blocks": total_blocks,
            "index": keys,
        }


def _block_info(reader: TSMReader, e) -> dict:
    info = {"offset": e.offset, "size": e.size, "min_time": rfc3339(e.min_time), "max_time": rfc3339(e.max_time)}
    try:
        data = reader.read_block(e)
        info["crc"] = "ok"
        btype, ts_enc, val_enc = block_sections(data)
        info["type"] = BLOCK_TYPE_NAMES[btype]
        info["encoding"] = {
            "timestamps": _TS_ENC.get(ts_enc, ts_enc),
            "values": _VALUE_ENC.get(btype, {}).get(val_enc, val_enc),
        }
        info["count"] = count_values(data)  # the header's claim, checked against the cap (no decoding)
    except ArchiveError as exc:
        info["crc"] = "bad" if "CRC" in exc.message else info.get("crc", "?")
        info["error"] = exc.message
    return info


def first_damage(doc: dict) -> FormatError | None:
    """The first damaged block (``dump_tsm(blocks=True)``) or WAL entry followed by valid ones
    (``dump_wal``) as an error naming the file and offset, after the listing is printed; None when
    all is well (a torn WAL tail, as influxd tolerates it, is not damage)."""
    for k in doc.get("index", ()):
        for b in k.get("block_list", ()):
            if "error" in b:
                return FormatError(f"block of key {k['key']}: {b['error']}", path=doc["file"], offset=b["offset"])
    for e in doc.get("entries", ()):
        if e["type"] == "damage" and e["resume"] is not None:
            return FormatError(f"WAL entry: {e['reason']}", path=doc["file"], offset=e["offset"])
    return None


def dump_wal(spec: str) -> dict:
    with open_member(spec, "wal") as (stream, f):
        entries = []
        for item in iter_wal(stream, name=f.origin, salvage=True):  # type: ignore[arg-type]
            if isinstance(item, WriteEntry):
                entries.append({
                    "type": "write", "offset": item.offset, "size": item.size, "keys": len(item.values),
                    "values": sum(len(v) for _, v in item.values.values()),
                    "key_list": [k.decode("utf-8", "backslashreplace") for k in item.values],
                })
            elif isinstance(item, DeleteRangeEntry):
                entries.append({"type": "delete-range", "offset": item.offset, "size": item.size,
                                "keys": [k.decode("utf-8", "backslashreplace") for k in item.keys],
                                "min_time": item.min, "max_time": item.max})
            elif isinstance(item, DeleteEntry):
                entries.append({"type": "delete", "offset": item.offset, "size": item.size,
                                "keys": [k.decode("utf-8", "backslashreplace") for k in item.keys]})
            elif isinstance(item, WALCorruption):
                entries.append({"type": "damage", "offset": item.offset, "reason": item.reason, "resume": item.resume})
        return {"file": f.origin, "size": f.size, "entries": entries}
