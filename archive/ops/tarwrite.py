"""Shard tars as influxd writes them (docs/formats.md#shard-tar, #portable-tar-gz).

Go ``archive/tar`` layout: a USTAR header per member (PAX extended header only when a name does not
fit USTAR), data padded to 512 bytes, and the archive ends with exactly 1024 zero bytes — no
padding to a 10 KiB record as Python's ``tarfile`` adds. Members are regular files, mode 0644,
owner 0/0 (``root``). :class:`TarWriter` counts the uncompressed bytes, which is what a portable
manifest records as an entry's ``size``.

Portable shard files are gzip streams of that tar. Levels 1-3 use ISA-L's igzip (python-isal;
about 7x zlib's speed at level 1 on TSM data, same ratio); levels 4-9 use zlib. Level 0 and
data that does not compress are written as *stored* deflate blocks (:class:`StoredGzipWriter`):
still one valid gzip member (RFC 1951 §3.2.4 block type 00; docs/formats.md#portable-tar-gz) that
every reader accepts, written at memory speed. :class:`GzipSink` decides per member: it holds
the first :data:`SAMPLE_BYTES` of the stream, compresses that sample once and stores the member
when the sample shrinks to no less than :data:`STORE_RATIO` of its size (members under
:data:`MIN_SAMPLE` are always compressed) (TSM blocks of random
floats and integers are already packed: compressing them costs CPU and saves nothing).
"""

from __future__ import annotations

import errno
import gzip
import os
import struct
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, cast

try:  # ISA-L igzip: optional at runtime, zlib otherwise
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - exercised only where isal is missing
    _igzip = None  # type: ignore[assignment]
    _isal_zlib = None  # type: ignore[assignment]

_crc32 = _isal_zlib.crc32 if _isal_zlib is not None else zlib.crc32

BLOCK = 512
END = b"\0" * (2 * BLOCK)
COPY_CHUNK = 1 << 20
MAX_ISAL_LEVEL = 3


#: bytes written to an :class:`OutputFile` between two hand-overs to the kernel's writeback
WRITEBACK_STEP = 4 << 20
#: buffers per ``writev`` call (POSIX guarantees 16; Linux takes 1,024)
_IOV_BATCH = 512


class OutputFile:
    """The raw file a backup member is written to (an unbuffered ``FileIO`` it does not close).

    * Every write goes straight to the kernel (no user-space copy); :meth:`writev` gathers
      several buffers (a stored block's header and its payload) into one call; a short write is
      continued until all bytes are written, and an error (ENOSPC, EFBIG) is raised as the OS
      reports it.
    * Every :data:`WRITEBACK_STEP` bytes the range written since the last step is handed to the
      kernel's writeback (``posix_fadvise(POSIX_FADV_DONTNEED)``: Linux queues the dirty pages
      for writing without waiting, then drops the pages already clean). The disk writes while
      the next bytes are produced, so the ``fsync`` that ends the member (the caller's, as
      before: durability is unchanged) waits for the last few MiB only, and a large backup does
      not push a running influxd's data out of the page cache. Where ``posix_fadvise`` is
      missing nothing is handed over early.
    """

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._fd = f.fileno()
        self._pos = f.tell()
        self._handed = self._pos  # written before this offset: already handed to the writeback
        self._prev = self._pos  # start of the previous hand-over (its clean pages are dropped next time)

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        """Nothing is buffered here."""

    def write(self, data) -> int:
        mv = memoryview(data).cast("B")
        n = len(mv)
        done = 0
        while done < n:
            k = os.write(self._fd, mv[done:])
            if k <= 0:  # pragma: no cover - a regular file writes something or raises
                raise OSError(errno.EIO, "write made no progress", getattr(self._f, "name", None))
            done += k
        self._advance(n)
        return n

    def writev(self, bufs: list) -> int:
        """Write ``bufs`` (bytes-like objects) in order, in as few calls as the OS allows."""
        if not hasattr(os, "writev"):  # pragma: no cover - every POSIX system has it
            return sum(self.write(b) for b in bufs)
        views = [memoryview(b).cast("B") for b in bufs]
        total = 0
        for i in range(0, len(views), _IOV_BATCH):
            batch = views[i : i + _IOV_BATCH]
            want = sum(len(v) for v in batch)
            done = os.writev(self._fd, batch)
            while done < want:  # a short write: go on from the first byte not written
                if done <= 0:  # pragma: no cover - a regular file writes something or raises
                    raise OSError(errno.EIO, "write made no progress", getattr(self._f, "name", None))
                skip = done
                while skip >= len(batch[0]):
                    skip -= len(batch[0])
                    batch = batch[1:]
                batch[0] = batch[0][skip:]
                want -= done
                done = os.writev(self._fd, batch)
            total += sum(len(v) for v in views[i : i + _IOV_BATCH])
        self._advance(total)
        return total

    def _advance(self, n: int) -> None:
        self._pos += n
        if self._pos - self._handed >= WRITEBACK_STEP and _fadvise is not None:
            _fadvise(self._fd, self._prev, self._pos - self._prev, _DONTNEED)
            self._prev, self._handed = self._handed, self._pos


_fadvise = getattr(os, "posix_fadvise", None)
_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 4)


class TarWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.size = 0  # uncompressed bytes written

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self.size += len(data)

    def add(
        self,
        name: str,
        size: int,
        stream: BinaryIO,
        *,
        mtime: int | None = None,
        mode: int = 0o644,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """Add a regular file ``name`` of ``size`` bytes read from ``stream``."""
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = mode
        info.mtime = int(time.time()) if mtime is None else int(mtime)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.type = tarfile.REGTYPE
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        left = size
        while left > 0:
            chunk = stream.read(min(COPY_CHUNK, left))
            if not chunk:
                raise EOFError(f"{name}: source ended {left} bytes early")
            self._write(chunk)
            left -= len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
        pad = -size % BLOCK
        if pad:
            self._write(b"\0" * pad)

    def close(self) -> None:
        self._write(END)


#: bytes at the start of a member compressed once to decide whether it compresses at all
SAMPLE_BYTES = 1 << 20
#: a sample that compresses to no less than this fraction of its size is stored
STORE_RATIO = 0.9
#: a member smaller than this is compressed whatever its ratio (nothing to win by storing it)
MIN_SAMPLE = 64 << 10
#: payload of one stored deflate block (its LEN field is 16 bits)
STORED_BLOCK = 0xFFFF
#: the header of a full stored block: BFINAL=0 BTYPE=00 (byte-aligned), LEN, NLEN
_FULL_HEADER = struct.pack("<BHH", 0, STORED_BLOCK, 0)


@dataclass(frozen=True)
class Compression:
    """How one gzip member is (or is to be) written."""

    method: str  # "isal" | "zlib" | "stored"
    level: int  # the requested --compress-level
    ratio: float | None = None  # compressed / original size of the sample that decided, if any

    def describe(self) -> str:
        if self.method == "stored":
            if self.ratio is None:
                return "stored (level 0)"
            return f"stored (incompressible: sample ratio {self.ratio:.2f})"
        text = f"{self.method} level {self.level}"
        return text if self.ratio is None else f"{text} (sample ratio {self.ratio:.2f})"

    def to_dict(self) -> dict:
        return {"method": self.method, "level": self.level, "sample_ratio": self.ratio, "text": self.describe()}


def _compressor(level: int) -> str:
    return "isal" if _igzip is not None and level <= MAX_ISAL_LEVEL else "zlib"


def choose_compression(level: int, sample: bytes | bytearray | memoryview | None) -> Compression:
    """The strategy for a member at ``level`` whose first bytes are ``sample`` (``None``: not
    sampled, the compressor of that level). Level 0 is always stored; a sample under
    :data:`MIN_SAMPLE` bytes (a whole small member) compresses."""
    if not 0 <= level <= 9:
        raise ValueError("gzip level must be 0..9")
    if level == 0:
        return Compression("stored", 0)
    method = _compressor(level)
    if sample is None or len(sample) < MIN_SAMPLE:
        return Compression(method, level)
    part = memoryview(sample)[:SAMPLE_BYTES]
    packer = _isal_zlib.compress if method == "isal" else zlib.compress
    packed = len(packer(part, level, -15))
    ratio = packed / len(part)
    if ratio >= STORE_RATIO:
        return Compression("stored", level, ratio)
    return Compression(method, level, ratio)


class StoredGzipWriter:
    """A gzip member of stored deflate blocks over ``raw`` (not closing it): header with FNAME and
    mtime 0, blocks of up to 65,535 bytes, an empty final block, CRC-32 and size. Write-only."""

    def __init__(self, raw: BinaryIO, *, filename: str) -> None:
        self._raw = raw
        name = filename.encode("latin-1", "replace").replace(b"\0", b"_")
        # ID1 ID2 CM=8 FLG=FNAME MTIME=0 XFL=0 OS=255 (unknown), then the NUL-terminated name
        raw.write(b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\xff" + name + b"\x00")
        self._crc = 0
        self._size = 0
        self._pending = bytearray()
        self.closed = False

    def _block(self, data) -> None:
        n = len(data)
        self._raw.write(struct.pack("<BHH", 0, n, n ^ 0xFFFF))
        self._raw.write(data)

    def _blocks(self, bufs: list) -> None:
        """Full blocks, each payload preceded by its header (one gathered write where ``raw``
        takes one: :class:`OutputFile`)."""
        writev = getattr(self._raw, "writev", None)
        if writev is not None:
            iov = []
            for b in bufs:
                iov.append(_FULL_HEADER)
                iov.append(b)
            writev(iov)
        else:
            for b in bufs:
                self._block(b)

    def write(self, data) -> int:
        if self.closed:
            raise ValueError("write to a closed gzip member")
        mv = memoryview(data).cast("B")
        n = len(mv)
        if not n:
            return 0
        self._crc = _crc32(mv, self._crc)
        self._size += n
        pos = 0
        full: list[bytearray | memoryview] = []
        if self._pending:
            take = min(STORED_BLOCK - len(self._pending), n)
            self._pending += mv[:take]
            pos = take
            if len(self._pending) == STORED_BLOCK:
                full.append(self._pending)
                self._pending = bytearray()
        while n - pos >= STORED_BLOCK:
            full.append(mv[pos : pos + STORED_BLOCK])
            pos += STORED_BLOCK
        if full:
            self._blocks(full)  # before anything is kept: ``data`` may be a buffer reused after
        if pos < n:
            self._pending += mv[pos:]
        return n

    def flush(self) -> None:
        self._raw.flush()

    def close(self) -> None:
        if self.closed:
            return
        if self._pending:
            self._block(self._pending)
            self._pending = bytearray()
        # final block: BFINAL=1, BTYPE=00, LEN=0
        self._raw.write(b"\x01\x00\x00\xff\xff" + struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        self.closed = True

    def __enter__(self) -> StoredGzipWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GzipSink:
    """A gzip member over ``raw`` whose strategy is ``compression`` or, when that is ``None``,
    decided from its first :data:`SAMPLE_BYTES` (held until then: memory bounded by that).
    :attr:`compression` says what was used once the first bytes are through (or at close)."""

    def __init__(self, raw: BinaryIO, *, level: int, filename: str, compression: Compression | None = None) -> None:
        self._raw = raw
        self._level = level
        self._filename = filename
        self._held = bytearray()
        self._inner: BinaryIO | None = None
        self.compression = compression
        if compression is not None:
            self._open(compression)

    def _open(self, c: Compression) -> None:
        self.compression = c
        self._inner = gzip_writer(self._raw, level=c.level, filename=self._filename, stored=c.method == "stored")

    def write(self, data) -> int:
        if self._inner is None:
            self._held += data
            if len(self._held) < SAMPLE_BYTES:
                return len(data)
            self._open(choose_compression(self._level, self._held))
            held, self._held = self._held, bytearray()
            assert self._inner is not None
            self._inner.write(held)
            return len(data)
        return self._inner.write(data)

    def close(self) -> None:
        if self._inner is None:
            self._open(choose_compression(self._level, self._held))
            assert self._inner is not None
            self._inner.write(self._held)
            self._held = bytearray()
        self._inner.close()


def gzip_writer(raw: BinaryIO, *, level: int, filename: str, stored: bool = False) -> BinaryIO:
    """A gzip stream over ``raw`` (not closing it). ``filename`` goes into the FNAME field, as
    influxd's pgzip writes ``<ts>.s<id>.tar``. Level 0 or ``stored``: stored deflate blocks."""
    if not 0 <= level <= 9:
        raise ValueError("gzip level must be 0..9")
    if stored or level == 0:
        return cast(BinaryIO, StoredGzipWriter(raw, filename=filename))
    if _igzip is not None and level <= MAX_ISAL_LEVEL:
        return cast(BinaryIO, _igzip.IGzipFile(filename=filename, mode="wb", compresslevel=level, fileobj=raw, mtime=0))
    return cast(BinaryIO, gzip.GzipFile(filename=filename, mode="wb", compresslevel=level, fileobj=raw, mtime=0))
