"""The write side of influxd's snapshotter protocol (docs/formats.md#snapshotter-protocol-restore):
type 6 (import one database's metadata, answered with the shard id map), type 7 (upload one
shard's TSM files as a tar stream, answered by the server's EOF once the shard is restored), and
the type 0 listing that confirms an upload (every member's name, size and SHA-256; the data is
hashed as it passes, never held).

What influxd 1.5-1.8 gets wrong is avoided here, not left to the caller:

* ``UploadSize`` is the payload's length, checked non-negative and under :data:`MAX_META_UPLOAD`
  before anything is sent (a negative one panics the server, a huge one makes it allocate that
  much: B8);
* the header bytes of every request go out in one ``sendall`` with the start of the payload
  (the server reads the type byte and the shard id with single ``Read`` calls: B7);
* a type-7 tar ends with exactly 1024 zero bytes (bytes after it are left unread and make the
  server reset the connection) and names every member ``<db>/<rp>/<id>/<file>`` exactly (the
  server's prefix test would let ``db/rp/1`` match ``db/rp/12/...``);
* after a type 7 the connection is half-closed and the server's EOF awaited: only then is the
  shard restored and enabled again.

Every socket read has a timeout. The transport (host parsing, connecting, the envelope, one-line
errors) is :mod:`.snapshotter`'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import TargetError, UsageError
from .untrusted import open_tar

MAGIC = 0x59590101
REQ_SHARD_BACKUP = 0
REQ_METASTORE_BACKUP = 1
REQ_DATABASE_INFO = 3
REQ_META_UPDATE = 6
REQ_SHARD_UPDATE = 7
MUX_HEADER = 3

#: The largest type-6 payload sent. influxd 1.5-1.8.9 allocates UploadSize bytes up front; one
#: database's metastore without users and CQs is far smaller (about 40 bytes per shard group).
MAX_META_UPLOAD = 64 << 20
#: The payload size above which influxd before 1.8.8 may drop part of it (it reads the payload
#: with one ``Read``; about 110 KB got through on a default Linux receive buffer: B3).
B3_RISK_BYTES = 100 << 10
#: Bytes of a type-1 answer accepted (the metastore itself, then its node JSON).
MAX_META_ANSWER = 512 << 20
MAX_NODE_JSON = 1 << 20
#: Members of a type-0 listing accepted (a shard holds a few TSM files and their tombstones).
MAX_LISTED_MEMBERS = 100_000
CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0  # s, every read and write
DEFAULT_WORK_TIMEOUT = 900.0  # s, waiting for the server to finish a restore or an import

_ZERO_TIME = "0001-01-01T00:00:00Z"


# ---------------------------------------------------------------------------------------------
# Transport. TODO(onlineb): replace by archive/snapshotter.py once merged.


def parse_host(host: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) as influxd's ``-host`` takes it; a bare host gets 8088."""
    text = host.strip()
    if not text:
        raise UsageError("--host is empty (expected HOST:PORT, e.g. 127.0.0.1:8088)")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"--host {host!r}: unclosed '[' (expected [ADDRESS]:PORT)")
        name, rest = text[1:end], text[end + 1:]
        port_text = rest[1:] if rest.startswith(":") else ("8088" if not rest else None)
    elif text.count(":") == 1:
        name, port_text = text.split(":")
    elif ":" in text:
        raise UsageError(f"--host {host!r}: write an IPv6 address as [ADDRESS]:PORT")
    else:
        name, port_text = text, "8088"
    if not name or port_text is None or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--host {host!r} is not HOST:PORT (e.g. 127.0.0.1:8088)")
    return name, int(port_text)


def _show(addr: tuple[str, int]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


def connect(addr: tuple[str, int], timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection(addr, timeout=timeout)
    except ConnectionRefusedError:
        raise TargetError(
            f"connection refused by {_show(addr)}: is influxd running with its bind-address (the snapshotter) there?"
        ) from None
    except TimeoutError:
        raise TargetError(f"no answer from {_show(addr)} within {timeout:g} s (connecting)") from None
    except OSError as exc:
        raise TargetError(f"cannot connect to {_show(addr)}: {exc.strerror or exc}") from exc
    sock.settimeout(timeout)
    return sock


def envelope(typ: int, **fields: object) -> bytes:
    """Mux byte, type byte, the request JSON (Go's field order) and the one byte the server
    throws away after it."""
    req = {
        "Type": typ,
        "BackupDatabase": fields.get("BackupDatabase", ""),
        "RestoreDatabase": fields.get("RestoreDatabase", ""),
        "BackupRetentionPolicy": fields.get("BackupRetentionPolicy", ""),
        "RestoreRetentionPolicy": fields.get("RestoreRetentionPolicy", ""),
        "ShardID": int(fields.get("ShardID", 0)),  # type: ignore[call-overload]
        "Since": _ZERO_TIME,
        "ExportStart": _ZERO_TIME,
        "ExportEnd": _ZERO_TIME,
        "UploadSize": int(fields.get("UploadSize", 0)),  # type: ignore[call-overload]
    }
    return bytes([MUX_HEADER, typ]) + json.dumps(req, ensure_ascii=False).encode() + b"\n"


def _recv(sock: socket.socket, n: int, addr: tuple[str, int], what: str) -> bytes:
    try:
        return sock.recv(n)
    except TimeoutError:
        raise TargetError(f"{_show(addr)} sent nothing for {sock.gettimeout():g} s ({what})") from None
    except ConnectionResetError:
        raise TargetError(f"{_show(addr)} reset the connection ({what})") from None


def read_exact(sock: socket.socket, n: int, addr: tuple[str, int], what: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        got = _recv(sock, min(n - len(buf), CHUNK), addr, what)
        if not got:
            break
        buf += got
    return bytes(buf)


# ---------------------------------------------------------------------------------------------
# Requests


def fetch_metastore(addr: tuple[str, int], *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Type 1: the server's whole metastore (the ``meta.Data`` blob)."""
    with connect(addr, timeout) as sock:
        sock.sendall(envelope(REQ_METASTORE_BACKUP))
        head = read_exact(sock, 16, addr, "metastore backup")
        if len(head) < 16:
            raise TargetError(
                f"{_show(addr)} closed the connection after {len(head)} bytes of a metastore backup (type 1); "
                "is it influxd 1.5 or later?"
            )
        magic, size = struct.unpack(">QQ", head)
        if magic != MAGIC:
            raise TargetError(f"{_show(addr)} answered a metastore backup without influxd's magic: not a snapshotter")
        if size > MAX_META_ANSWER:
            raise TargetError(f"{_show(addr)} announces a metastore of {size} bytes, over {MAX_META_ANSWER}")
        blob = read_exact(sock, size, addr, "metastore backup")
        if len(blob) < size:
            raise TargetError(f"{_show(addr)}: metastore backup ended after {len(blob)} of {size} bytes")
        return blob


def import_database(
    addr: tuple[str, int], payload: bytes, database: str, *, max_pairs: int,
    timeout: float = DEFAULT_TIMEOUT, work_timeout: float = DEFAULT_WORK_TIMEOUT,
) -> dict[int, int]:
    """Type 6: import ``database`` (named so in ``payload``, a ``meta.Data`` blob holding it) under
    the same name; the server's map old shard id -> new shard id. ``max_pairs``: the shards the
    payload holds (an answer with more is a protocol violation)."""
    if not 0 <= len(payload) <= MAX_META_UPLOAD:
        raise UsageError(
            f"metastore payload of {len(payload)} bytes for database {database!r} is over {MAX_META_UPLOAD}"
        )
    head = envelope(REQ_META_UPDATE, BackupDatabase=database, RestoreDatabase=database, UploadSize=len(payload))
    with connect(addr, timeout) as sock:
        try:
            sock.sendall(head + payload)
        except (BrokenPipeError, ConnectionResetError):
            raise TargetError(
                f"{_show(addr)} closed the connection while the metadata of {database!r} was sent"
            ) from None
        sock.settimeout(work_timeout)
        try:
            answer = read_exact(sock, 16, addr, f"metadata import of {database!r}")
        except TargetError as exc:
            if "reset" in exc.message and len(payload) > B3_RISK_BYTES:
                exc.message += (
                    f"; the metadata of this database is {len(payload)} bytes, and influxd before 1.8.8 reads only "
                    "what its socket buffer holds (restore offline, or upgrade the server)"
                )
            raise
        if len(answer) < 16:
            raise TargetError(
                f"{_show(addr)} closed the connection without answering the metadata import of {database!r} "
                "(see the server's log)"
            )
        magic, npairs = struct.unpack(">QQ", answer)
        if magic != MAGIC:
            raise TargetError(
                f"{_show(addr)} answered the metadata import without influxd's magic (protocol violation)"
            )
        if npairs > max_pairs:
            raise TargetError(
                f"{_show(addr)} answered the import of {database!r} with {npairs} shard ids for {max_pairs} shards "
                "(protocol violation)"
            )
        body = read_exact(sock, 16 * npairs, addr, f"metadata import of {database!r}")
        if len(body) < 16 * npairs:
            raise TargetError(f"{_show(addr)}: the shard id map of {database!r} ended early (protocol violation)")
    out: dict[int, int] = {}
    for i in range(npairs):
        old, new = struct.unpack_from(">QQ", body, 16 * i)
        if old in out or new == 0:
            raise TargetError(f"{_show(addr)}: the shard id map of {database!r} is not one-to-one (protocol violation)")
        out[old] = new
    if len(set(out.values())) != len(out):
        raise TargetError(f"{_show(addr)}: the shard id map of {database!r} is not one-to-one (protocol violation)")
    return out


def database_exists(addr: tuple[str, int], database: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Type 3: whether ``database`` exists (an unknown one is answered with nothing at all)."""
    with connect(addr, timeout) as sock:
        sock.sendall(envelope(REQ_DATABASE_INFO, BackupDatabase=database))
        got = read_exact(sock, 1 << 20, addr, "database listing")
    return got.startswith(b"{")


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
    addr: tuple[str, int], prefix: str, shard_id: int, files: Iterable[UploadFile], *,
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
    with connect(addr, timeout) as sock:
        pending = bytes([MUX_HEADER, REQ_SHARD_UPDATE]) + struct.pack(">Q", shard_id)
        try:
            for f in files:
                with open(f.path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    digest = hashlib.sha256()
                    mtime = int(os.fstat(fh.fileno()).st_mtime)
                    sock.sendall(pending + _tar_header(f"{prefix}/{shard_id}/{f.name}", size, mtime))
                    pending = b""
                    left = size
                    while left:
                        chunk = fh.read(min(CHUNK, left))
                        if not chunk:
                            raise TargetError(f"{f.path} shrank while it was uploaded")
                        digest.update(chunk)
                        sock.sendall(chunk)
                        left -= len(chunk)
                        if advance is not None:
                            advance(len(chunk))
                    sock.sendall(b"\0" * (-size % 512))
                sent.append(Member(f.name, size, digest.hexdigest()))
            sock.sendall(pending + b"\0" * 1024)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            raise TargetError(
                f"{_show(addr)} closed the connection during the {what} (unknown shard id, or it refused the tar; "
                "see the server's log)"
            ) from None
        except TimeoutError:
            raise TargetError(f"{_show(addr)} took no data for {timeout:g} s ({what})") from None
        sock.settimeout(work_timeout)
        extra = _recv(sock, 1, addr, what + ", waiting for the server to finish")
        if extra:
            raise TargetError(f"{_show(addr)} answered the {what} with data (protocol violation)")
    return sent


def list_shard(
    addr: tuple[str, int], shard_id: int, *, timeout: float = DEFAULT_TIMEOUT
) -> list[Member] | None:
    """Type 0 with no ``Since``: every file of shard ``shard_id`` (base name, size, SHA-256), or
    None when the server closes without a tar (no such shard on it)."""
    with connect(addr, timeout) as sock:
        sock.sendall(envelope(REQ_SHARD_BACKUP, ShardID=shard_id))
        stream = sock.makefile("rb")
        try:
            first = stream.peek(1) if hasattr(stream, "peek") else b"?"
            if not first:
                return None
            out: list[Member] = []
            try:
                with open_tar(stream, "r|") as tf:  # type: ignore[arg-type]
                    for info in tf:
                        if len(out) >= MAX_LISTED_MEMBERS:
                            raise TargetError(f"shard {shard_id}: the listing holds over {MAX_LISTED_MEMBERS} members")
                        if not info.isfile():
                            continue
                        digest = hashlib.sha256()
                        fh = tf.extractfile(info)
                        assert fh is not None
                        while chunk := fh.read(CHUNK):
                            digest.update(chunk)
                        if fh.tell() != info.size:
                            raise TargetError(f"shard {shard_id}: the listing ended inside {info.name}")
                        base = info.name.replace("\\", "/").rsplit("/", 1)[-1]
                        out.append(Member(base, info.size, digest.hexdigest()))
            except (tarfile.TarError, EOFError) as exc:
                raise TargetError(
                    f"{_show(addr)}: the listing of shard {shard_id} is not a complete tar ({exc})"
                ) from None
            except TimeoutError:
                raise TargetError(
                    f"{_show(addr)} sent nothing for {timeout:g} s (listing of shard {shard_id})"
                ) from None
            except ConnectionResetError:
                raise TargetError(f"{_show(addr)} reset the connection (listing of shard {shard_id})") from None
            return out
        finally:
            stream.close()
