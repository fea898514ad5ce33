"""The write side of influxd's snapshotter protocol (docs/formats.md#snapshotter-protocol-restore):
type 6 (import one database's metadata, answered with the shard id map), type 7 (upload one
shard's TSM files as a tar stream, answered by the server's EOF once the shard is restored), and
the type 0 listing that confirms an upload (every member's name, size and SHA-256; the data is
hashed as it passes, never held).

What influxd 1.5-1.8 gets wrong is avoided here, not left to the caller:

* ``UploadSize`` is the payload's length, checked non-negative and under :data:`MAX_META_UPLOAD`
  before anything is sent (a negative one panics the server, a huge one makes it allocate that
  much);
* the header bytes of every request go out in one ``sendall`` with the start of the payload
  (the server reads the type byte and the shard id with single ``Read`` calls);
* a type-7 tar ends with exactly 1024 zero bytes (bytes after it are left unread and make the
  server reset the connection) and names every member ``<db>/<rp>/<id>/<file>`` exactly (the
  server's prefix test would let ``db/rp/1`` match ``db/rp/12/...``);
* after a type 7 the connection is half-closed and the server's EOF awaited: only then is the
  shard restored and enabled again.

Every socket read has a timeout. The transport (host parsing, connecting, the envelope, the
type 0/1/3 requests, one-line errors) is :mod:`.snapshotter`'s.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from . import snapshotter
from .errors import SourceError, TargetError, UsageError, show
from .snapshotter import NO_RETRY, Address, Client, ProtocolError, Retry, Unreachable

#: The largest type-6 payload sent. influxd 1.5-1.8.9 allocates UploadSize bytes up front; one
#: database's metastore without users and CQs is far smaller (about 40 bytes per shard group).
MAX_META_UPLOAD = snapshotter.MAX_UPLOAD
#: The payload size above which influxd before 1.8.8 may drop part of it (it reads the payload
#: with one ``Read``; about 110 KB got through on a default Linux receive buffer).
B3_RISK_BYTES = 100 << 10
#: Members of a type-0 listing accepted (a shard holds a few TSM files and their tombstones).
MAX_LISTED_MEMBERS = 100_000
CHUNK = 1 << 20
DEFAULT_TIMEOUT = snapshotter.DEFAULT_TIMEOUT  # s, every read and write
DEFAULT_WORK_TIMEOUT = 900.0  # s, waiting for the server to finish a restore or an import


def parse_host(host: str) -> Address:
    return snapshotter.parse_host(host)


def _client(addr: Address, timeout: float, retry: Retry | None = None) -> Client:
    return Client(addr, timeout=timeout, retry=retry)


def _read_to_eof(sock: socket.socket, addr: Address, limit: int, what: str) -> bytes:
    """What the server sends until its EOF, at most ``limit`` bytes (more: protocol violation)."""
    buf = bytearray()
    while True:
        try:
            got = sock.recv(CHUNK)
        except TimeoutError:
            raise Unreachable(f"snapshotter {addr}: {what}: no answer for {sock.gettimeout():g} s") from None
        except OSError as exc:
            raise Unreachable(f"snapshotter {addr}: {what}: {exc.strerror or exc}") from None
        if not got:
            return bytes(buf)
        buf += got
        if len(buf) > limit:
            raise ProtocolError(f"snapshotter {addr}: {what}: answer longer than {limit} bytes")


# ---------------------------------------------------------------------------------------------
# Requests


def fetch_metastore(addr: Address, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Type 1: the server's whole metastore (the ``meta.Data`` blob)."""
    data = _client(addr, timeout).metastore()
    offset, length = snapshotter.check_metastore_backup(data, f"snapshotter {addr}: metastore backup")
    return data[offset:offset + length]


def import_database(
    addr: Address, payload: bytes, database: str, *, max_pairs: int,
    timeout: float = DEFAULT_TIMEOUT, work_timeout: float = DEFAULT_WORK_TIMEOUT,
) -> dict[int, int]:
    """Type 6: import ``database`` (named so in ``payload``, a ``meta.Data`` blob holding it) under
    the same name; the server's map old shard id -> new shard id. ``max_pairs``: the shards the
    payload holds (an answer with more is a protocol violation)."""
    if not 0 <= len(payload) <= MAX_META_UPLOAD:
        raise UsageError(
            f"metastore payload of {len(payload)} bytes for database {database!r} is over {MAX_META_UPLOAD}"
        )
    what = f"metadata import of {show(database)}"
    head = snapshotter.envelope(
        snapshotter.METASTORE_UPDATE, database=database, restore_database=database, upload_size=len(payload)
    )
    sock = _client(addr, timeout).connect(head + payload, what)
    with sock:
        sock.settimeout(work_timeout)
        try:
            answer = _read_to_eof(sock, addr, 16 + 16 * max_pairs, what)
        except Unreachable as exc:
            if len(payload) > B3_RISK_BYTES:
                exc.message += (
                    f"; the metadata of this database is {len(payload)} bytes, and influxd before 1.8.8 reads only "
                    "what its socket buffer holds (restore offline, or upgrade the server)"
                )
            raise
    if not answer:
        raise TargetError(f"snapshotter {addr}: {what}: the server closed without answering (see its log)")
    out = snapshotter.decode_id_map(answer, f"snapshotter {addr}: {what}")
    if 0 in out.values() or len(set(out.values())) != len(out):
        raise ProtocolError(f"snapshotter {addr}: {what}: the shard id map is not one-to-one")
    return out


def database_exists(addr: Address, database: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Type 3: whether ``database`` exists (an unknown one is answered with nothing at all)."""
    try:
        _client(addr, timeout, NO_RETRY).shard_paths(database)
    except SourceError:
        return False
    return True


@dataclass(frozen=True)
class Member:
    name: str  # the file's name in the shard directory
    size: int
    sha256: str


@dataclass(frozen=True)
class UploadFile:
    name: str  # base name in the shard: NNNNNNNNN-NNNNNNNNN.tsm
    path: Path  # local file


def _tar_header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = mtime
    info.type = tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def upload_shard(
    addr: Address, prefix: str, shard_id: int, files: Iterable[UploadFile], *,
    timeout: float = DEFAULT_TIMEOUT, work_timeout: float = DEFAULT_WORK_TIMEOUT,
    advance: Callable[[int], None] | None = None,
) -> list[Member]:
    """Type 7: stream ``files`` as ``<prefix>/<shard_id>/<name>`` tar members (``prefix`` is the
    target ``db/rp``) into shard ``shard_id``, then wait for the server's EOF (the shard restored
    and enabled again). Returns what was sent (name, size, SHA-256) to compare with a listing."""
    if not 0 < shard_id < 1 << 63:
        raise UsageError(f"shard id {shard_id} cannot be uploaded to")
    sent: list[Member] = []
    what = f"upload of shard {shard_id}"
    head = bytes([snapshotter.MUX_HEADER, snapshotter.SHARD_UPDATE]) + struct.pack(">Q", shard_id)
    sock: socket.socket | None = None
    try:
        for f in files:
            with open(f.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                header = _tar_header(f"{prefix}/{shard_id}/{f.name}", st.st_size, int(st.st_mtime))
                if sock is None:  # the id and the first header in one segment
                    sock = _client(addr, timeout).connect(head + header, what)
                else:
                    sock.sendall(header)
                digest = hashlib.sha256()
                left = st.st_size
                while left:
                    chunk = fh.read(min(CHUNK, left))
                    if not chunk:
                        raise TargetError(f"{f.path} shrank while it was uploaded")
                    digest.update(chunk)
                    sock.sendall(chunk)
                    left -= len(chunk)
                    if advance is not None:
                        advance(len(chunk))
                sock.sendall(b"\0" * (-st.st_size % 512))
            sent.append(Member(f.name, st.st_size, digest.hexdigest()))
        if sock is None:
            sock = _client(addr, timeout).connect(head + b"\0" * 1024, what)
        else:
            sock.sendall(b"\0" * 1024)  # exactly the end-of-archive blocks: nothing after them
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(work_timeout)
        extra = _read_to_eof(sock, addr, 0, what + ", waiting for the server to finish")
        if extra:
            raise ProtocolError(f"snapshotter {addr}: {what}: the server answered with data")
    except TimeoutError:
        raise Unreachable(f"snapshotter {addr}: {what}: the server took no data for {timeout:g} s") from None
    except OSError as exc:
        raise Unreachable(
            f"snapshotter {addr}: {what}: {exc.strerror or exc} (unknown shard id, or the server refused the tar; "
            "see its log)"
        ) from None
    finally:
        if sock is not None:
            sock.close()
    return sent


def list_shard(addr: Address, shard_id: int, spool_dir: str, *, timeout: float = DEFAULT_TIMEOUT) -> list[Member]:
    """Type 0 with no ``Since``: every file of shard ``shard_id`` (base name, size, SHA-256). The
    tar is checked complete (the transport's :meth:`~.snapshotter.Client.shard_backup`) in a
    temporary file in ``spool_dir``, then hashed from there."""
    out: list[Member] = []
    with tempfile.TemporaryFile(dir=spool_dir) as fh:
        entries = _client(addr, timeout).shard_backup(shard_id, fh)
        if len(entries) > MAX_LISTED_MEMBERS:
            raise ProtocolError(
                f"snapshotter {addr}: shard {shard_id}: the listing holds over {MAX_LISTED_MEMBERS} files"
            )
        for e in entries:
            fh.seek(e.data_offset)
            digest = hashlib.sha256()
            left = e.size
            while left:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    raise ProtocolError(f"snapshotter {addr}: shard {shard_id}: listing cut inside {show(e.name)}")
                digest.update(chunk)
                left -= len(chunk)
            out.append(Member(e.name.replace("\\", "/").rsplit("/", 1)[-1], e.size, digest.hexdigest()))
    return out
