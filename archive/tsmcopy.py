"""Copy a TSM file byte for byte while checking every block's CRC32 on the way, and salvage the
intact blocks of a damaged one.

A TSM file is its 5-byte header, the block frames back to back, the index and the footer
(TSM_WAL.md §1). :func:`checked_chunks` yields the file's bytes in order and checks each frame as
it passes, so a copy costs one read and a damaged block stops it before the copy is used (the
caller writes to a staging name). :func:`write_intact_blocks` writes a new TSM file holding only
the blocks whose CRC holds, frames copied unchanged — the ``--salvage`` path.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, Iterator, Optional

from ..tsm.reader import IndexEntry, TSMReader
from ..tsm.writer import TSMWriter
from .errors import ChecksumError, FormatError, TruncatedError

CHUNK = 1 << 20


def _frames(reader: TSMReader) -> list[tuple[int, int, bytes, int]]:
    """(offset, size, key, block type) of every block, in file order."""
    out = []
    for key, btype, entries in reader.iter_index():
        for e in entries:
            out.append((e.offset, e.size, key, btype))
    out.sort()
    return out


def checked_chunks(stream: BinaryIO, reader: TSMReader) -> Iterator[bytes]:
    """The bytes of the file behind ``reader`` (``stream`` at any position), in order, each block
    frame's CRC verified; :class:`ChecksumError` names the first damaged block."""
    pos = 0
    size = reader.size

    def raw(upto: int) -> Iterator[bytes]:
        nonlocal pos
        stream.seek(pos)
        while pos < upto:
            data = stream.read(min(CHUNK, upto - pos))
            if not data:
                raise TruncatedError("file ended early while copying", path=reader.name, offset=pos)
            pos += len(data)
            yield data

    batch: list[bytes] = []
    batched = 0
    for offset, fsize, key, btype in _frames(reader):
        if offset < pos:
            continue  # overlapping index entries (never written by influxd): bytes already copied
        if offset > pos:
            if batch:
                yield b"".join(batch)
                batch, batched = [], 0
            yield from raw(offset)
        stream.seek(offset)
        frame = stream.read(fsize)
        if len(frame) != fsize:
            raise TruncatedError("block runs past the end of the file", path=reader.name, offset=offset)
        if int.from_bytes(frame[:4], "big") != zlib.crc32(frame[4:]):
            raise ChecksumError(f"block CRC mismatch for key {key!r}", path=reader.name, offset=offset, field="crc")
        if frame[4] != btype:
            raise FormatError(
                f"block of key {key!r} has type {frame[4]}, its index entry says {btype}", path=reader.name, offset=offset + 4
            )
        pos = offset + fsize
        batch.append(frame)
        batched += fsize
        if batched >= CHUNK:
            yield b"".join(batch)
            batch, batched = [], 0
    if batch:
        yield b"".join(batch)
    yield from raw(size)


def damaged_blocks(reader: TSMReader) -> list[tuple[bytes, IndexEntry]]:
    """Blocks whose CRC does not hold (or which cannot be read), as (key, entry)."""
    bad = []
    for key, _, entries in reader.iter_index():
        for e in entries:
            try:
                reader.read_block(e)
            except (ChecksumError, TruncatedError):
                bad.append((key, e))
    return bad


def write_intact_blocks(reader: TSMReader, out: BinaryIO) -> Optional[int]:
    """Write a TSM file of every block of ``reader`` whose CRC holds (frames copied unchanged).
    Returns its size, or None when no block is intact (nothing worth writing)."""
    w = TSMWriter(out)
    wrote = False
    for key, btype, entries in reader.iter_index():
        last_max: Optional[int] = None
        for e in entries:
            if last_max is not None and e.min_time <= last_max:
                continue  # overlaps the previous block: not a layout a TSM writer may produce
            try:
                frame = reader.read_frame(e)
            except TruncatedError:
                continue
            if int.from_bytes(frame[:4], "big") != zlib.crc32(frame[4:]):
                continue
            w.write_frame(key, btype, e.min_time, e.max_time, frame)
            last_max = e.max_time
            wrote = True
    if not wrote:
        return None
    return w.close()
