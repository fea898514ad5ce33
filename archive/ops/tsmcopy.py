"""Copy a TSM file byte for byte while checking every block's CRC32 on the way, and salvage the
intact blocks of a damaged one.

A TSM file is its 5-byte header, the block frames back to back, the index and the footer
(docs/formats.md#tsm-file). :func:`checked_chunks` yields the file's bytes in order and checks each frame as
it passes, so a copy costs one read and a damaged block stops it before the copy is used (the
caller writes to a staging name). :func:`write_intact_blocks` writes a new TSM file holding only
the blocks whose CRC holds, frames copied unchanged — the ``--salvage`` path.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import BinaryIO, cast

from ...tsm.block import DEFAULT_MAX_VALUES, count_values_at
from ...tsm.compiled import core as _compiled
from ...tsm.format import tsmfile as fmt
from ...tsm.reader import IndexEntry, TSMReader
from ...tsm.writer import TSMWriter
from ..errors import ArchiveError, ChecksumError, FormatError, TruncatedError, show

GROUP = 512 << 10  # bytes of consecutive block frames read and checked at once (stays in cache)


def checked_chunks(
    stream: BinaryIO,
    reader: TSMReader,
    *,
    on_damage: Callable[[ArchiveError], None] | None = None,
    frames: list[tuple[int, int, bytes, int]] | None = None,
    buffers: int = 1,
) -> Iterator[memoryview]:
    """The bytes of the file behind ``reader`` (``stream`` at any position), in order, each block
    frame's CRC and type byte verified on the way. The file is read in windows of about
    :data:`GROUP` bytes; every frame that lies inside a window is checked there, in place, and the
    window is passed on up to where the first frame it cuts begins. A damaged block raises
    (:class:`ChecksumError` naming it), or with ``on_damage`` is reported there and the check goes
    on (the bytes are still yielded, as stored). Bytes outside every frame (header, index,
    footer) are passed on unchecked.

    Each chunk is a view of a buffer that the next chunk reuses (with ``buffers`` = k, the k-th
    next one: a consumer :func:`~..threads.read_ahead` keeps depth + 2): write or copy it before
    asking for the next one."""
    if frames is None:
        frames = reader.frames()
    size = reader.size
    bufs = [bytearray(GROUP) for _ in range(max(1, buffers))]
    turn = 0
    frame_crcs = fmt.frame_crcs
    # the compiled core checks the frames a window holds in one call; any frame it does not pass
    # (damaged, or one it declines) is checked below, which names the error or passes it
    fast = _compiled.check_frames if _compiled is not None and type(frames) is list else None
    block_at = fmt.BLOCK_OFFSET
    pos = i = 0
    n = len(frames)
    while pos < size:
        while i < n and frames[i][0] < pos:
            i += 1  # starts inside a frame already passed (index entries never written by influxd)
        want = GROUP
        if i < n and frames[i][0] - pos < GROUP:
            want = max(GROUP, frames[i][0] + frames[i][1] - pos)  # the first frame always fits
        want = min(want, size - pos)
        buf = bufs[turn]
        turn = (turn + 1) % len(bufs)
        data = buf if want <= len(buf) else bytearray(want)
        view = memoryview(data)[:want]
        stream.seek(pos)
        got = 0
        while got < want:
            k = cast(io.BufferedIOBase, stream).readinto(view[got:])  # BinaryIO's type lacks readinto
            if not k:
                raise TruncatedError("file ended early while copying", path=reader.name, offset=pos + got)
            got += k
        limit = pos + want
        while i < n:
            if fast is not None:  # skips the clean frames; the first other one is decided below
                i = fast(view, pos, frames, i, DEFAULT_MAX_VALUES)
                if i >= n:
                    break
            off, fsize, key, btype = frames[i]
            if off + fsize > limit:
                break
            a = off - pos
            stored, computed = frame_crcs(view, a, fsize)
            if stored != computed or data[a + block_at] != btype:
                exc: ArchiveError
                if stored != computed:
                    exc = ChecksumError(
                        f"block CRC mismatch for key {show(key)}", path=reader.name, offset=off, field="crc"
                    )
                else:
                    exc = FormatError(
                        f"block of key {show(key)} has type {view[a + block_at]}, its index entry says {btype}",
                        path=reader.name, offset=off + block_at,
                    )
                if on_damage is None:
                    raise exc
                on_damage(exc)
            else:
                # A block copied unchanged must still not claim more values than a reader should
                # allocate (influxd trusts such counts); header and lengths only, in place.
                try:
                    count_values_at(data, a + block_at, fsize - block_at)
                except FormatError as bad:
                    exc = FormatError(
                        f"block of key {key!r}: {bad.message}", path=reader.name,
                        offset=off + block_at + (bad.offset or 0), field=bad.field,
                    )
                    if on_damage is None:
                        raise exc from None
                    on_damage(exc)
            i += 1
        cut = frames[i][0] if i < n and frames[i][0] < limit else limit
        yield view[: cut - pos]
        pos = cut


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


def write_intact_blocks(reader: TSMReader, out: BinaryIO) -> int | None:
    """Write a TSM file of every block of ``reader`` whose CRC holds (frames copied unchanged).
    Returns its size, or None when no block is intact (nothing worth writing)."""
    w = TSMWriter(out)
    wrote = False
    for key, btype, entries in reader.iter_index():
        last_max: int | None = None
        for e in entries:
            if last_max is not None and e.min_time <= last_max:
                continue  # overlaps the previous block: not a layout a TSM writer may produce
            try:
                frame = reader.read_frame(e)
            except TruncatedError:
                continue
            if not fmt.frame_crc_ok(frame):
                continue
            w.write_frame(key, btype, e.min_time, e.max_time, frame)
            last_max = e.max_time
            wrote = True
    if not wrote:
        return None
    return w.close()


def check_stored_files(stream: BinaryIO, files: list[tuple[str, int, int]], *, where: str) -> None:
    """Check the TSM and tombstone files stored in ``stream`` at ``(name, offset, size)`` as every
    copy here is checked (each block's CRC, type and value count; a tombstone file read whole);
    raises the first damage, located at ``where`` and the member. For a file copied as it is
    without being read through :func:`checked_chunks` (an online backup keeps the server's tar)."""
    from ...tsm.tombstone import read_tombstones
    from ..streams import SubFile

    for name, offset, size in files:
        base = name.rsplit("/", 1)[-1]
        part = cast(BinaryIO, SubFile(stream, offset, size))
        origin = f"{where}::{name}"  # split back into file and member by located()
        try:
            if base.endswith(".tombstone"):
                read_tombstones(part, name=origin)
            elif base.endswith(".tsm"):
                for _ in checked_chunks(part, TSMReader(part, name=origin, size=size)):
                    pass
        except ArchiveError as exc:
            raise exc.located(path=where, member=name) from None
