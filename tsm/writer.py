"""Streaming TSM1 writer (docs/formats.md#tsm-index, #tsm-footer, #tsm-limits, #tsm-writer).

Blocks are written as they come; the index is kept compactly in memory (per key: its block type
and the packed 28-byte entries) and written at :meth:`TSMWriter.close`, followed by the footer.
Keys must arrive in strictly ascending byte order, each key's blocks in ascending,
non-overlapping time order — the rules influxd's own writer follows (its readers misbehave
otherwise). Raw frames can be copied without decoding (:meth:`write_frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, BinaryIO

from ..archive.errors import UnsupportedError, UsageError
from . import block as _block
from .format import tsmfile as fmt

_ENTRY = fmt.ENTRY


class TSMWriter:
    def __init__(self, stream: BinaryIO) -> None:
        self._out = stream
        self._out.write(fmt.Header.build({"version": fmt.VERSION}))
        self._offset = fmt.HEADER_SIZE
        self._index: list[bytes] = []  # finished index records
        self._key: bytes | None = None
        self._type: int | None = None
        self._entries = bytearray()
        self._count = 0
        self._last_max: int | None = None
        self._closed = False
        self.keys_written = 0

    @property
    def bytes_written(self) -> int:
        return self._offset

    @property
    def index_size(self) -> int:
        head = len(self._key) + fmt.RECORD_HEAD_SIZE if self._key else 0
        return sum(len(r) for r in self._index) + len(self._entries) + head

    @property
    def entries_for_current_key(self) -> int:
        return self._count

    @property
    def current_key(self) -> bytes | None:
        return self._key

    def _start_key(self, key: bytes, block_type: int) -> None:
        if self._closed:
            raise UsageError("TSM writer is closed")
        if self._key is not None and key == self._key:
            if block_type != self._type:
                raise UnsupportedError(
                    f"key {key!r} mixes block types {self._type} and {block_type}; influxd fails on that"
                )
            return
        if self._key is not None and key <= self._key:
            raise UsageError(f"TSM keys must be written in ascending order: {key!r} after {self._key!r}")
        if not key or len(key) > fmt.MAX_KEY_LEN:
            raise UnsupportedError(f"key length {len(key)} is outside 1..{fmt.MAX_KEY_LEN}")
        if block_type not in _block.BLOCK_TYPE_NAMES:
            raise UnsupportedError(f"unknown block type {block_type}")
        self._finish_key()
        self._key = key
        self._type = block_type
        self._last_max = None

    def _finish_key(self) -> None:
        if self._key is None or self._type is None or self._count == 0:  # _type is set with _key
            return
        self._index.append(
            fmt.KEY_LEN.pack(len(self._key)) + self._key + bytes([self._type]) + fmt.COUNT.pack(self._count)
            + bytes(self._entries)
        )
        self.keys_written += 1
        self._entries = bytearray()
        self._count = 0

    def write_frame(self, key: bytes, block_type: int, min_time: int, max_time: int, frame: bytes) -> None:
        """Append a raw frame (CRC + block bytes) of ``key`` covering ``[min_time, max_time]``."""
        self._start_key(key, block_type)
        if len(frame) < fmt.MIN_FRAME_SIZE:
            raise UnsupportedError("refusing to write an empty block")
        if min_time > max_time:
            raise UsageError("block min_time > max_time")
        if self._last_max is not None and min_time <= self._last_max:
            raise UsageError(f"blocks of key {key!r} must be ascending and non-overlapping")
        if self._count >= fmt.MAX_ENTRIES_PER_KEY:
            raise UnsupportedError(
                f"key {key!r} reached {fmt.MAX_ENTRIES_PER_KEY} blocks in one file; start a new file"
            )
        self._out.write(frame)
        self._entries += _ENTRY.pack(min_time, max_time, self._offset, len(frame))
        self._count += 1
        self._offset += len(frame)
        self._last_max = max_time

    def write_block(self, key: bytes, block_type: int, min_time: int, max_time: int, block: bytes) -> None:
        """Append encoded block bytes (without CRC); the CRC is computed here."""
        self.write_frame(key, block_type, min_time, max_time, fmt.frame(block))

    def write_values(self, key: bytes, block_type: int, timestamps: Sequence[int], values: Sequence[Any]) -> None:
        """Encode sorted, unique ``timestamps``/``values`` into blocks of at most 1000 values."""
        n = len(timestamps)
        step = _block.MAX_POINTS_PER_BLOCK
        for i in range(0, n, step):
            ts = timestamps[i : i + step]
            vs = values[i : i + step]
            self.write_block(key, block_type, ts[0], ts[-1], _block.encode_block(block_type, ts, vs))

    def close(self) -> int:
        """Write the index and footer; returns the file size. A file with no key is refused."""
        if self._closed:
            return self._offset
        self._finish_key()
        if not self._index:
            raise UsageError("no values written: influxd rejects a TSM file without keys")
        index_offset = self._offset
        for rec in self._index:
            self._out.write(rec)
            self._offset += len(rec)
        self._out.write(fmt.Footer.build({"index_offset": index_offset}))
        self._offset += fmt.FOOTER_SIZE
        self._closed = True
        return self._offset
