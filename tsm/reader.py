"""TSM1 reader (docs/formats.md#tsm-file).

:class:`TSMReader` reads from any seekable binary stream. Opening validates the header, the footer
and the whole index once — every key length, entry count, offset and size is checked against the
file size before it is used — and keeps only the index bytes plus one offset per key (like
influxd's indirect index). Blocks are read on demand; their CRC-32 is verified (influxd never
does, docs/formats.md#tsm-blocks).

Errors are :class:`~influx_archive.archive.errors.FormatError` (``ChecksumError`` for a CRC
mismatch, ``TruncatedError`` for a file cut short) naming the file and the absolute offset.
"""

from __future__ import annotations

import bisect
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..archive.errors import ArchiveError, ChecksumError, FormatError, TruncatedError, show
from ..archive.untrusted import open_regular
from . import block as _block
from .compiled import core as _compiled  # same index scan; declines (None) whatever this scan refuses
from .format import tsmfile as fmt

_ENTRY = fmt.ENTRY
#: Indexes larger than this have their first record checked before the whole index is read.
_PROBE = fmt.MAX_FIRST_RECORD_SIZE
_KEY_LEN = fmt.KEY_LEN
_COUNT = fmt.COUNT
#: offsets inside a record, from its start (``+ klen`` past the key)
_KEY = fmt.KEY_OFFSET
_TYPE = fmt.KEY_OFFSET + fmt.TYPE_AFTER_KEY
_COUNT_AT = fmt.KEY_OFFSET + fmt.COUNT_AFTER_KEY
_ENTRIES = fmt.KEY_OFFSET + fmt.ENTRIES_AFTER_KEY


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One block of a key: inclusive time range, absolute frame offset, frame size (CRC included)."""

    min_time: int
    max_time: int
    offset: int
    size: int


class TSMReader:
    """A TSM1 file opened for reading. Use as a context manager, or :meth:`open` for a path."""

    def __init__(self, stream: BinaryIO, *, name: str | None = None, size: int | None = None) -> None:
        self._stream = stream
        self._owns = False
        self.name = name if name is not None else getattr(stream, "name", None)
        if size is None:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
        self.size = size
        self._keys: list[bytes] = []
        self._positions = array("q")  # offset of each key's record inside self._index
        self._index = b""
        self.index_offset = 0
        self.min_time: int | None = None
        self.max_time: int | None = None
        #: keys whose blocks overlap in time inside this file (legal, never written by influxd)
        self.overlapping_keys: list[bytes] = []
        self._load()

    # ------------------------------------------------------------------ open/close
    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TSMReader:
        fh = open_regular(path, "TSM file")
        try:
            reader = cls(fh, name=os.fspath(path))
        except BaseException:
            fh.close()
            raise
        reader._owns = True
        return reader

    def close(self) -> None:
        if self._owns:
            self._stream.close()

    def __enter__(self) -> TSMReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _err(self, cls: type[ArchiveError], message: str, offset: int | None) -> ArchiveError:
        return cls(message, path=self.name, offset=offset)

    def _read_at(self, offset: int, n: int) -> bytes:
        self._stream.seek(offset)
        data = self._stream.read(n)
        if len(data) != n:
            raise self._err(TruncatedError, f"short read: wanted {n} bytes, got {len(data)}", offset)
        return data

    def _load(self) -> None:
        size = self.size
        if size < fmt.MIN_FILE_SIZE:
            raise self._err(
                TruncatedError if size < fmt.HEADER_SIZE + fmt.FOOTER_SIZE else FormatError,
                f"file is {size} bytes, too small for a TSM file (minimum {fmt.MIN_FILE_SIZE})",
                0,
            )
        magic, version = fmt.HEADER.unpack(self._read_at(0, fmt.HEADER_SIZE))
        if magic != fmt.MAGIC:
            raise self._err(FormatError, "not a TSM file: bad magic (expected 16 D1 16 D1)", 0)
        if version != fmt.VERSION:
            raise self._err(
                FormatError, f"unsupported TSM version {version} (expected {fmt.VERSION})", fmt.VERSION_OFFSET
            )
        footer_at = size - fmt.FOOTER_SIZE
        (index_offset,) = fmt.FOOTER.unpack(self._read_at(footer_at, fmt.FOOTER_SIZE))
        if not fmt.MIN_INDEX_OFFSET <= index_offset < footer_at:
            raise self._err(
                FormatError,
                f"footer index offset {index_offset} is outside the file (blocks end before {footer_at})",
                footer_at,
            )
        self.index_offset = index_offset
        if footer_at - index_offset > _PROBE:
            self._probe_index(index_offset, footer_at)
        self._index = self._read_at(index_offset, footer_at - index_offset)
        self._scan_index()

    def _probe_index(self, index_offset: int, footer_at: int) -> None:
        """Before reading a large index whole (its size is only the footer's word), check that its
        first record looks like one: a damaged footer pointing into the blocks would otherwise
        make a multi-GB file's blocks be read into memory as "the index"."""
        head = self._read_at(index_offset, _PROBE)
        (klen,) = _KEY_LEN.unpack_from(head, 0)
        problem = None
        if klen == 0 or _ENTRIES + klen + fmt.ENTRY_SIZE > len(head):
            problem = f"a first key of {klen} bytes"
        else:
            btype = head[_TYPE + klen]
            (count,) = _COUNT.unpack_from(head, _COUNT_AT + klen)
            mn, mx, off, esize = _ENTRY.unpack_from(head, _ENTRIES + klen)
            if btype not in _block.BLOCK_TYPE_NAMES or count == 0:
                problem = f"block type {btype} and {count} entries in its first record"
            elif mn > mx or not off >= fmt.HEADER_SIZE or off + esize > index_offset or esize <= fmt.CRC_SIZE:
                problem = f"a first entry at offset {off} of {esize} bytes"
        if problem is not None:
            raise self._err(
                FormatError,
                f"footer index offset {index_offset} does not point at an index ({problem}); "
                f"the {footer_at - index_offset}-byte span is not read",
                footer_at,
            )

    def _scan_index(self) -> None:
        if _compiled is not None:
            got = _compiled.scan_index(self._index, self.index_offset)
            if got is not None:
                self._keys, positions, self.min_time, self.max_time, self.overlapping_keys = got
                self._positions.frombytes(positions)
                return
        self._scan_index_py()

    def _scan_index_py(self) -> None:
        idx = self._index
        base = self.index_offset
        end = len(idx)
        pos = 0
        prev_key: bytes | None = None
        lo: int | None = None
        hi: int | None = None
        keys = self._keys
        positions = self._positions
        blocks_end = self.index_offset
        unpack_entry = _ENTRY.unpack_from
        while pos < end:
            at = base + pos
            if pos + _KEY > end:
                raise self._err(TruncatedError, "index record cut short (key length)", at)
            (klen,) = _KEY_LEN.unpack_from(idx, pos)
            if klen == 0:
                raise self._err(FormatError, "index record with an empty key", at)
            if pos + _ENTRIES + klen > end:
                raise self._err(TruncatedError, f"index record of a {klen}-byte key runs past the index", at)
            key = idx[pos + _KEY : pos + _KEY + klen]
            btype = idx[pos + _TYPE + klen]
            if btype not in _block.BLOCK_TYPE_NAMES:
                raise self._err(FormatError, f"unknown block type {btype} for key {show(key)}", at + _TYPE + klen)
            (count,) = _COUNT.unpack_from(idx, pos + _COUNT_AT + klen)
            if count == 0:
                raise self._err(FormatError, f"key {show(key)} has 0 index entries", at + _COUNT_AT + klen)
            entries_at = pos + _ENTRIES + klen
            if entries_at + count * fmt.ENTRY_SIZE > end:
                raise self._err(TruncatedError, f"{count} index entries of key {show(key)} run past the index", at)
            if prev_key is not None and key <= prev_key:
                raise self._err(FormatError, f"index keys out of order: {show(key)} after {show(prev_key)}", at)
            prev_min = None
            prev_max = None
            overlap = False
            for i in range(count):
                e_at = entries_at + i * fmt.ENTRY_SIZE
                mn, mx, off, sz = unpack_entry(idx, e_at)
                if mn > mx:
                    raise self._err(FormatError, f"index entry of key {show(key)} has min_time > max_time", base + e_at)
                if sz < fmt.MIN_FRAME_SIZE or off < fmt.HEADER_SIZE or off + sz > blocks_end:
                    raise self._err(
                        FormatError,
                        f"index entry of key {show(key)} points outside the blocks area (offset {off}, size {sz})",
                        base + e_at,
                    )
                if prev_min is not None:
                    if mn < prev_min:
                        raise self._err(
                            FormatError, f"index entries of key {show(key)} are not sorted by time", base + e_at
                        )
                    if mn <= prev_max:
                        overlap = True
                prev_min, prev_max = mn, mx if prev_max is None else max(prev_max, mx)
                lo = mn if lo is None or mn < lo else lo
                hi = mx if hi is None or mx > hi else hi
            if overlap:
                self.overlapping_keys.append(key)
            keys.append(key)
            positions.append(pos)
            prev_key = key
            pos = entries_at + count * fmt.ENTRY_SIZE
        if not keys:
            raise self._err(FormatError, "TSM file has an empty index", self.index_offset)
        self.min_time = lo
        self.max_time = hi

    # ------------------------------------------------------------------ index access
    def keys(self) -> Iterator[bytes]:
        return iter(self._keys)

    def key_count(self) -> int:
        return len(self._keys)

    def _find(self, key: bytes) -> int:
        i = bisect.bisect_left(self._keys, key)
        if i == len(self._keys) or self._keys[i] != key:
            raise KeyError(key)
        return i

    def __contains__(self, key: object) -> bool:
        try:
            self._find(key)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return True

    def _record(self, i: int) -> tuple[int, list[IndexEntry]]:
        idx = self._index
        pos = self._positions[i]
        (klen,) = _KEY_LEN.unpack_from(idx, pos)
        btype = idx[pos + _TYPE + klen]
        (count,) = _COUNT.unpack_from(idx, pos + _COUNT_AT + klen)
        at = pos + _ENTRIES + klen
        return btype, [IndexEntry(*_ENTRY.unpack_from(idx, at + j * fmt.ENTRY_SIZE)) for j in range(count)]

    def entries(self, key: bytes) -> list[IndexEntry]:
        return self._record(self._find(key))[1]

    def block_type(self, key: bytes) -> int:
        return self._record(self._find(key))[0]

    def frames(self) -> list[tuple[int, int, bytes, int]]:
        """``(offset, size, key, block type)`` of every block, in file order: the cheap table for
        scans that visit every block (no :class:`IndexEntry` objects)."""
        if _compiled is not None:
            got = _compiled.index_frames(self._index, self._positions, self._keys)
            if got is not None:
                return got
        idx = memoryview(self._index)
        out: list[tuple[int, int, bytes, int]] = []
        append = out.append
        for key, pos in zip(self._keys, self._positions):
            klen = len(key)
            btype = idx[pos + _TYPE + klen]
            (count,) = _COUNT.unpack_from(idx, pos + _COUNT_AT + klen)
            at = pos + _ENTRIES + klen
            for _mn, _mx, off, size in _ENTRY.iter_unpack(idx[at : at + count * fmt.ENTRY_SIZE]):
                append((off, size, key, btype))
        out.sort()
        return out

    def iter_index(self) -> Iterator[tuple[bytes, int, list[IndexEntry]]]:
        for i, key in enumerate(self._keys):
            btype, entries = self._record(i)
            yield key, btype, entries

    # ------------------------------------------------------------------ blocks
    def read_frame(self, entry: IndexEntry) -> bytes:
        """CRC + block bytes exactly as stored (for copying a block without decoding it)."""
        return self._read_at(entry.offset, entry.size)

    def read_block(self, entry: IndexEntry, *, verify_crc: bool = True) -> bytes:
        """The block bytes (without the CRC); the CRC is checked unless ``verify_crc`` is False."""
        frame = self.read_frame(entry)
        block = frame[fmt.BLOCK_OFFSET :]
        if verify_crc:
            stored, actual = fmt.frame_crcs(frame)
            if stored != actual:
                raise self._err(
                    ChecksumError,
                    f"block CRC mismatch (stored {stored:08x}, computed {actual:08x})",
                    entry.offset,
                )
        return block

    def decode_block(self, key: bytes, entry: IndexEntry, *, verify_crc: bool = True) -> tuple[list[int], list[Any]]:
        """Decoded (timestamps, values) of one block of ``key``."""
        data = self.read_block(entry, verify_crc=verify_crc)
        try:
            btype, ts, values = _block.decode_block(data)
        except ArchiveError as exc:
            rel = exc.offset or 0
            raise FormatError(
                f"block of key {show(key)}: {exc.message}",
                path=self.name,
                offset=entry.offset + fmt.BLOCK_OFFSET + rel,
                field=exc.field,
            ) from exc
        expected = self.block_type(key)
        if btype != expected:
            raise self._err(
                FormatError,
                f"block of key {show(key)} is {_block.BLOCK_TYPE_NAMES.get(btype, btype)}, index says "
                f"{_block.BLOCK_TYPE_NAMES[expected]}",
                entry.offset + fmt.BLOCK_OFFSET,
            )
        return ts, values

    def read_key(self, key: bytes) -> tuple[list[int], list[Any]]:
        """Every block of ``key`` concatenated in index order (no tombstones, no dedup)."""
        ts: list[int] = []
        vs: list[Any] = []
        for e in self.entries(key):
            t, v = self.decode_block(key, e)
            ts.extend(t)
            vs.extend(v)
        return ts, vs
