"""Seekable views over parts of files, so tar members are read in place, never extracted.

A legacy shard tar is uncompressed: a member is a window ``[offset, offset+size)`` of the tar file,
read through :class:`SubFile`. A portable ``.tar.gz`` cannot be seeked, so its tar is spooled once
(one shard at a time) to a temporary file and windowed the same way.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO


class SubFile(io.RawIOBase):
    """Read-only, seekable window of another seekable binary stream.

    The underlying stream is shared; every read seeks it first, so several SubFiles over one
    tar file may be used alternately (not concurrently from several threads).
    """

    def __init__(self, base: BinaryIO, offset: int, size: int, *, name: str | None = None) -> None:
        super().__init__()
        if offset < 0 or size < 0:
            raise ValueError("negative window")
        self._base = base
        self._offset = offset
        self._size = size
        self._pos = 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            new = pos
        elif whence == os.SEEK_CUR:
            new = self._pos + pos
        elif whence == os.SEEK_END:
            new = self._size + pos
        else:
            raise ValueError(f"bad whence {whence}")
        if new < 0:
            raise ValueError("negative seek position")
        self._pos = new
        return new

    def readinto(self, b) -> int:  # type: ignore[override]
        remaining = self._size - self._pos
        if remaining <= 0:
            return 0
        n = min(len(b), remaining)
        self._base.seek(self._offset + self._pos)
        view = memoryview(b)[:n]
        got = self._base.readinto(view)  # type: ignore[attr-defined]  # BinaryIO's stub has no readinto
        if got is None:
            got = 0
        self._pos += got
        return got

    def read(self, n: int = -1) -> bytes:
        remaining = self._size - self._pos
        if remaining <= 0:
            return b""
        if n is None or n < 0 or n > remaining:
            n = remaining
        self._base.seek(self._offset + self._pos)
        data = self._base.read(n)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    @property
    def size(self) -> int:
        return self._size
