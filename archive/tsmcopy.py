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
from typing import BinaryIO, Callable, Iterator, Optional

from ..tsm.reader import IndexEntry, TSMReader
from ..tsm.writer import TSMWriter
from .errors import ArchiveError, ChecksumError, FormatError, TruncatedError

CHUNK = 1 << 20
GROUP = 8 << 20  # bytes of consecutive block frames read and checked at once


def checked_chunks(
    stream: BinaryIO,
    reader: TSMReader,
    *,
    on_damage: Optional[Callable[[ArchiveError], None]] = None,
    frames: Optional[list[tuple[int, int, bytes, int]]] = None,
) -> Iterator[bytes]:
    """The bytes of the file behind ``reader`` (``stream`` at any position), in order, each block
    frame's CRC and type byte verified on the way. Consecutive frames are read and checked in
    groups of about :data:`GROUP` bytes (one read each, slices checked in place). A damaged block
    raises (:class:`ChecksumError` naming it), or with ``on_damage`` is reported there and the
    check goes on (the bytes are still yielded, as stored)."""
    if frames is None:
        frames = reader.frames()
    size = reader.size
    pos = 0

    def raw(upto: int) -> Iterator[bytes]:
        nonlocal pos
        stream.seek(pos)
        while pos < upto:
            data = stream.read(min(CHUNK, upto - pos))
            if not data:
                raise TruncatedError("file ended early while copying", path=reader.name, offset=pos)
            pos += len(data)
            yield data

    def damage(exc: ArchiveError) -> None:
        if on_damage is None:
            raise exc
        on_damage(exc)

    i, n = 0, len(frames)
    while i < n:
        offset = frames[i][0]
        if offset < pos:
            i += 1  # overlapping index entries (never written by influxd): bytes already passed
            continue
        if offset > pos:
            yield from raw(offset)
        j, end = i, offset
        while j < n and frames[j][0] == end and end - offset < GROUP:
            end += frames[j][1]
            j += 1
        stream.seek(offset)
        data = stream.read(end - offset)
        if len(data) != end - offset:
            raise TruncatedError("block runs past the end of the file", path=reader.name, offset=offset + len(data))
        view = memoryview(data)
        for off, fsize, key, btype in frames[i:j]:
            a = off - offset
            if int.from_bytes(view[a : a + 4], "big") != zlib.crc32(view[a + 4 : a + fsize]):
                damage(ChecksumError(f"block CRC mismatch for key {key!r}", path=reader.name, offset=off, field="crc"))
            elif fsize < 5 or view[a + 4] != btype:
                damage(FormatError(
                    f"block of key {key!r} has type {view[a + 4] if fsize > 4 else None}, its index entry says {btype}",
                    path=reader.name, offset=off + 4,
                ))
        pos = end
        i = j
        yield data
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
