"""A client of influxd's snapshotter port (``bind-address``, default ``127.0.0.1:8088``).

The wire protocol is described in docs/formats.md#snapshotter-protocol; this module is the only
place that speaks it. Every request is one TCP connection: the mux byte ``0x03``, the request
type, a JSON line, then (type 6) a payload; the server answers and closes, so a response ends at
the server's FIN. There is no error channel: the server closes, often with nothing sent, and the
log of influxd holds the reason. Here:

* every ``connect`` and every ``recv`` has a timeout (:data:`DEFAULT_TIMEOUT`); a server that
  stops sending is an error, never a hang;
* a response is read to EOF into memory only with a size bound (:func:`read_response`), or
  copied into a file the caller gives (:func:`copy_response`); no length read from the wire is
  ever used as an allocation size;
* failures are one-line :class:`~influx_archive.archive.errors.ArchiveError` subclasses
  (:class:`Unreachable`, :class:`ProtocolError`, :class:`EmptyResponse`, :class:`OldServer`);
* empty or short answers to the read requests (types 0, 1, 3, 4), which is what influxd sends for
  "snapshot in progress" and other transient refusals, are retried with a bounded backoff
  (:class:`Retry`).

The port has no authentication: anyone who reaches it can read every database and rewrite the
metastore. This client talks only to the address it is given.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import re
import socket
import struct
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from .errors import FormatError, SourceError, SourceIOError, TruncatedError, UnsupportedError, UsageError, show
from .untrusted import open_tar

DEFAULT_HOST = "127.0.0.1:8088"
DEFAULT_PORT = 8088
MUX_HEADER = 0x03

# Request numbers of influxd 1.5-1.8 (services/snapshotter/service.go; docs/formats.md#snapshotter-protocol).
SHARD_BACKUP = 0
METASTORE_BACKUP = 1
SERIES_FILE_BACKUP = 2  # a placeholder influxd never implemented
DATABASE_INFO = 3
RETENTION_POLICY_INFO = 4
SHARD_EXPORT = 5  # block-granular and broken by tombstones (B1, B5): never used for backups here
METASTORE_UPDATE = 6
SHARD_UPDATE = 7

BACKUP_MAGIC = 0x59590101

#: Seconds for a connect and for each ``recv`` (a server streaming a large shard sends
#: continuously; influxd flushes the cache to TSM before the first byte, which can take a while).
DEFAULT_TIMEOUT = 300.0
#: Largest metastore backup response read into memory (protobuf + node JSON): what a ``.meta``
#: file may hold (meta.format.MAX_META_FILE_SIZE), so whatever is fetched can be read back.
MAX_METASTORE = 128 << 20
#: Largest database / RP listing (``{"Paths":[...]}``) read into memory: some 250,000 shards
#: (influxd's answers hold ~30 bytes a shard); its parsed paths stay within ~100 MB.
MAX_LISTING = 8 << 20
#: Largest type-6 reply: 16 bytes + 16 per shard pair.
MAX_ID_MAP = 16 + 16 * (1 << 22)
#: Largest UploadSize ever sent (influxd 1.5-1.8.9 allocates it up front; docs/formats.md#snapshotter-protocol).
MAX_UPLOAD = 64 << 20
_CHUNK = 1 << 16
_ZERO_TIME = "0001-01-01T00:00:00Z"
#: influxd's lowest and highest representable times (for bounds that must not be the zero time).
MIN_TIME_NS = -9223372036854775806
MAX_TIME_NS = 9223372036854775806
#: A shard tar member's mtime (seconds) whose nanoseconds fit influxd's int64 (its ``lastModified``).
MIN_MTIME_S, MAX_MTIME_S = -(MAX_TIME_NS // 1_000_000_000), MAX_TIME_NS // 1_000_000_000


# ---- errors ----------------------------------------------------------------------------------


class Unreachable(SourceIOError):
    """The snapshotter port could not be reached or stopped answering (refused, timeout, reset)."""

    code = "source.unreachable"


class ProtocolError(FormatError):
    """The server's answer is not what the snapshotter protocol sends (wrong magic, bad JSON)."""

    code = "damaged.protocol"


class EmptyResponse(SourceIOError):
    """The server closed without an answer (after the retries): influxd refused the request and
    logged why (unknown shard or database, snapshot in progress, ...)."""

    code = "source.refused"


class OldServer(UnsupportedError):
    """The server speaks the request numbers of influxd 1.4 or older."""

    code = "unsupported.server"


# ---- addresses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host(text: str | None) -> Address:
    """``HOST:PORT`` as influxd's ``-host`` takes it (``[v6]:PORT`` for IPv6; an empty host is
    127.0.0.1; a bare host gets port 8088). Anything else is a :class:`UsageError`."""
    if text is None or text == "":
        text = DEFAULT_HOST
    t = text.strip()
    if "://" in t:
        raise UsageError(
            f"--host takes HOST:PORT of influxd's snapshotter port (bind-address, default {DEFAULT_HOST}), "
            f"not a URL: {show(text)}"
        )
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z]+)\](?::(\d{1,5}))?", t)
    if m:
        host, port_s = m.group(1), m.group(2)
    elif t.count(":") == 1:
        host, port_s = t.split(":")
    elif ":" not in t:
        host, port_s = t, None
    else:
        raise UsageError(f"--host: write an IPv6 address as [ADDRESS]:PORT: {show(text)}")
    if port_s is None:
        port = DEFAULT_PORT
    elif not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise UsageError(f"--host: port must be 1-65535: {show(text)}")
    else:
        port = int(port_s)
    host = host or "127.0.0.1"
    if not re.fullmatch(r"[A-Za-z0-9._%:-]{1,253}", host):
        raise UsageError(f"--host: not a host name or address: {show(text)}")
    return Address(host, port)


# ---- requests --------------------------------------------------------------------------------


def go_time(ns: int | None) -> str:
    """ns since the epoch as Go's RFC3339Nano in UTC (``None``: Go's zero time)."""
    if ns is None:
        return _ZERO_TIME
    secs, frac = divmod(ns, 1_000_000_000)
    base = _dt.datetime(1970, 1, 1) + _dt.timedelta(seconds=secs)
    text = f"{base.year:04d}-{base.month:02d}-{base.day:02d}T{base.hour:02d}:{base.minute:02d}:{base.second:02d}"
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def envelope(
    rtype: int,
    *,
    database: str = "",
    restore_database: str = "",
    rp: str = "",
    restore_rp: str = "",
    shard_id: int = 0,
    since_ns: int | None = None,
    upload_size: int = 0,
) -> bytes:
    """The bytes of a type 0-6 request: mux byte, type byte, the JSON of ``snapshotter.Request``
    in Go's key order, and the one byte influxd discards after it (docs/formats.md#snapshotter-protocol)."""
    if not 0 <= rtype <= METASTORE_UPDATE:
        raise ValueError(f"request type {rtype} has no JSON envelope")
    if not 0 <= upload_size <= MAX_UPLOAD:  # a negative size crashes influxd 1.5-1.8.9 (B8)
        raise ValueError(f"upload size {upload_size} out of range")
    if not 0 <= shard_id < 1 << 64:
        raise ValueError(f"shard id {shard_id} out of range")
    body = {
        "Type": rtype,
        "BackupDatabase": database,
        "RestoreDatabase": restore_database,
        "BackupRetentionPolicy": rp,
        "RestoreRetentionPolicy": restore_rp,
        "ShardID": shard_id,
        "Since": go_time(since_ns),
        "ExportStart": _ZERO_TIME,
        "ExportEnd": _ZERO_TIME,
        "UploadSize": upload_size,
    }
    return bytes([MUX_HEADER, rtype]) + json.dumps(body, separators=(",", ":")).encode() + b"\n"


def _net_error(addr: Address, exc: OSError, what: str) -> Unreachable:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        why = "timed out"
    elif exc.errno == errno.ECONNREFUSED:
        why = "connection refused (is influxd running, and is this its bind-address?)"
    elif exc.errno in (errno.ECONNRESET, errno.EPIPE):
        why = "connection reset by the server"
    elif isinstance(exc, socket.gaierror):
        why = f"cannot resolve the host ({exc.strerror or exc})"
    else:
        why = exc.strerror or str(exc)
    return Unreachable(f"snapshotter {addr}: {what}: {why}")


@dataclass
class Retry:
    """Bounded retries of an empty or short answer: ``attempts`` tries in all, sleeping
    ``min(cap, base * factor**i)`` seconds between them (influxd's own client: 10 tries)."""

    attempts: int = 6
    base: float = 0.25
    factor: float = 2.0
    cap: float = 4.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, i: int) -> float:
        return min(self.cap, self.base * self.factor**i)


NO_RETRY = Retry(attempts=1)


class Client:
    """Requests to one snapshotter address (one TCP connection each)."""

    def __init__(
        self, host: str | Address | None = None, *, timeout: float = DEFAULT_TIMEOUT, retry: Retry | None = None
    ) -> None:
        self.address = host if isinstance(host, Address) else parse_host(host)
        self.timeout = timeout
        self.retry = retry if retry is not None else Retry()

    def __repr__(self) -> str:
        return f"Client({str(self.address)!r})"

    # -- transport --
    def connect(self, request: bytes, what: str) -> socket.socket:
        """A connected socket with ``request`` sent (one ``sendall``: influxd 1.5-1.8.7 reads the
        header with single reads, B7)."""
        addr = self.address
        try:
            sock = socket.create_connection((addr.host, addr.port), timeout=self.timeout)
        except OSError as exc:
            raise _net_error(addr, exc, what) from exc
        try:
            sock.settimeout(self.timeout)
            sock.sendall(request)
        except OSError as exc:
            sock.close()
            raise _net_error(addr, exc, what) from exc
        return sock

    def _recv(self, sock: socket.socket, what: str, n: int = _CHUNK) -> bytes:
        try:
            return sock.recv(n)
        except OSError as exc:
            raise _net_error(self.address, exc, what) from exc

    def read_response(self, request: bytes, what: str, limit: int) -> bytes:
        """The whole answer to ``request`` (to the server's EOF); more than ``limit`` bytes is a
        :class:`ProtocolError`. Never retries."""
        sock = self.connect(request, what)
        with sock:
            chunks: list[bytes] = []
            total = 0
            while True:
                data = self._recv(sock, what)
                if not data:
                    return b"".join(chunks)
                total += len(data)
                if total > limit:
                    raise ProtocolError(f"snapshotter {self.address}: {what}: answer longer than {limit} bytes")
                chunks.append(data)

    def copy_response(
        self, request: bytes, what: str, out: BinaryIO, *, limit: int | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> int:
        """Copy the answer to ``request`` into ``out`` (to EOF); returns the byte count."""
        sock = self.connect(request, what)
        total = 0
        with sock:
            while True:
                data = self._recv(sock, what)
                if not data:
                    return total
                total += len(data)
                if limit is not None and total > limit:
                    raise ProtocolError(f"snapshotter {self.address}: {what}: answer longer than {limit} bytes")
                out.write(data)
                if advance is not None:
                    advance(len(data))

    def _with_retries(self, attempt: Callable[[], object], what: str) -> object:
        last: Exception | None = None
        for i in range(max(1, self.retry.attempts)):
            if i:
                self.retry.sleep(self.retry.delay(i - 1))
            try:
                return attempt()
            except (EmptyResponse, TruncatedError) as exc:
                last = exc
        assert last is not None
        if self.retry.attempts > 1 and isinstance(last, EmptyResponse):
            last.message += f" (tried {self.retry.attempts} times)"
        raise last

    # -- type 1 --
    def metastore(self) -> bytes:
        """The metastore backup (type 1): exactly the bytes of a legacy ``meta.NN`` file, with the
        magic and both lengths checked against the bytes received."""
        what = "metastore backup"

        def once() -> bytes:
            data = self.read_response(envelope(METASTORE_BACKUP), what, MAX_METASTORE)
            check_metastore_backup(data, f"snapshotter {self.address}: {what}")
            return data

        return self._with_retries(once, what)  # type: ignore[return-value]

    # -- types 3, 4 --
    def shard_paths(self, database: str = "", rp: str = "") -> list[tuple[str, str, int]]:
        """``(db, rp, shard id)`` of every shard the server holds for ``database`` ("" = all,
        including ``_internal``), limited to ``rp`` when given (type 4, else type 3). An unknown
        database or RP is a :class:`SourceError` (influxd answers nothing for those)."""
        if rp and not database:
            raise ValueError("a retention policy needs its database")
        rtype = RETENTION_POLICY_INFO if rp else DATABASE_INFO
        what = f"shard listing of {show(database)}{'.' + show(rp) if rp else ''}" if database else "shard listing"
        request = envelope(rtype, database=database, rp=rp)
        try:
            data = self._with_retries(lambda: self._listing(request, what), what)
        except EmptyResponse:
            if database:
                raise SourceError(
                    f"snapshotter {self.address}: no database {show(database)}"
                    + (f" with retention policy {show(rp)}" if rp else "")
                    + " on the server (influxd answered nothing to the listing)"
                ) from None
            raise OldServer(
                f"snapshotter {self.address}: the server answers nothing to a listing of all databases: it is "
                "influxd 1.4 or older (its snapshotter numbers requests differently; influx-archive speaks "
                "influxd 1.5-1.8), or not an influxd snapshotter port"
            ) from None
        return parse_paths(data, f"snapshotter {self.address}: {what}")  # type: ignore[arg-type]

    def _listing(self, request: bytes, what: str) -> bytes:
        data = self.read_response(request, what, MAX_LISTING)
        if not data:
            raise EmptyResponse(f"snapshotter {self.address}: {what}: the server closed without an answer")
        return data

    # -- type 0 --
    def shard_backup(
        self, shard_id: int, out: BinaryIO, *, since_ns: int | None = None,
        advance: Callable[[int], None] | None = None,
    ) -> list[TarEntry]:
        """Stream shard ``shard_id``'s tar (type 0: its TSM and tombstone files modified after
        ``since_ns``) into ``out`` (a seekable file, truncated before each attempt), check it is
        a complete tar, and return its members. Empty or cut answers are retried."""
        what = f"backup of shard {shard_id}"
        request = envelope(SHARD_BACKUP, shard_id=shard_id, since_ns=since_ns)

        def once() -> list[TarEntry]:
            out.seek(0)
            out.truncate()
            n = self.copy_response(request, what, out, advance=advance)
            if n == 0:
                raise EmptyResponse(
                    f"snapshotter {self.address}: {what}: the server closed without an answer (no such shard, "
                    "shard disabled, or a snapshot kept in progress; influxd's log says which)"
                )
            out.flush()
            out.seek(0)
            return check_tar(out, n, f"snapshotter {self.address}: {what}")

        return self._with_retries(once, what)  # type: ignore[return-value]


# ---- answers ---------------------------------------------------------------------------------


def check_metastore_backup(data: bytes, where: str) -> tuple[int, int]:
    """Check a type-1 answer (= a ``meta.NN`` file): magic, blob length, node JSON length, and
    nothing after. Returns ``(offset, length)`` of the metastore protobuf."""
    if not data:
        raise EmptyResponse(f"{where}: the server closed without an answer")
    if len(data) < 8:
        raise TruncatedError(f"{where}: answer cut after {len(data)} bytes")
    (magic,) = struct.unpack_from(">Q", data, 0)
    if magic != BACKUP_MAGIC:
        hint = " (it looks like HTTP: this is the HTTP port, not the snapshotter's)" if data[:5] == b"HTTP/" else ""
        raise ProtocolError(f"{where}: answer does not start with the backup magic 0x59590101{hint}")
    if len(data) < 16:
        raise TruncatedError(f"{where}: answer cut after {len(data)} bytes")
    (length,) = struct.unpack_from(">Q", data, 8)
    if 16 + length + 8 > len(data):
        raise TruncatedError(f"{where}: metastore of {length} bytes announced, {len(data)} bytes received")
    (nlen,) = struct.unpack_from(">Q", data, 16 + length)
    end = 16 + length + 8 + nlen
    if end != len(data):
        if end > len(data):
            raise TruncatedError(f"{where}: node section of {nlen} bytes announced, answer cut")
        raise ProtocolError(f"{where}: {len(data) - end} bytes after the node section")
    return 16, length


def parse_paths(data: bytes, where: str) -> list[tuple[str, str, int]]:
    """``{"Paths":[...]}`` (types 3, 4) as ``(db, rp, id)``; paths split on ``/`` and ``\\``."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise ProtocolError(f"{where}: answer is not JSON") from None
    if not isinstance(doc, dict) or "Paths" not in doc:
        raise ProtocolError(f"{where}: answer has no Paths")
    paths = doc["Paths"] or []
    if not isinstance(paths, list):
        raise ProtocolError(f"{where}: Paths is not a list")
    out = []
    for p in paths:
        parts = re.split(r"[/\\]", p) if isinstance(p, str) else []
        if (
            len(parts) != 3 or not re.fullmatch(r"[0-9]{1,20}", parts[2]) or int(parts[2]) >= 1 << 64
            or any(not n or n in (".", "..") or "\0" in n for n in parts[:2])
        ):
            raise ProtocolError(f"{where}: not a db/rp/id path: {show(p)}")
        out.append((parts[0], parts[1], int(parts[2])))
    return out


@dataclass(frozen=True)
class TarEntry:
    name: str
    size: int
    mtime: int  # seconds
    data_offset: int


def check_tar(fh: BinaryIO, size: int, where: str) -> list[TarEntry]:
    """The regular members of the tar in ``fh`` (``size`` bytes), after checking it is complete:
    every member's data is present and the archive ends with its end-of-archive blocks.
    A cut answer is a :class:`TruncatedError` (retried by the caller)."""
    if size < 1024:
        raise TruncatedError(f"{where}: tar cut after {size} bytes (no end-of-archive blocks)")
    entries: list[TarEntry] = []
    names: set[str] = set()
    end = 0
    try:
        tf = open_tar(fh, "r:")
        for ti in tf:
            # influxd's shard tar holds only regular files (its snapshot directory of TSM and
            # tombstone hard links), each once: anything else would be copied as it is into a
            # legacy backup and extracted by a restore
            if not ti.isreg():
                raise ProtocolError(f"{where}: tar member {show(ti.name)} is {_tar_kind(ti)}, not a regular file "
                                    "(influxd sends only regular files)", offset=ti.offset)
            if ti.name in names:
                raise ProtocolError(f"{where}: tar holds member {show(ti.name)} twice", offset=ti.offset)
            names.add(ti.name)
            if not MIN_MTIME_S <= ti.mtime <= MAX_MTIME_S:  # a manifest's lastModified is int64 nanoseconds
                raise ProtocolError(f"{where}: tar member {show(ti.name)} has mtime {int(ti.mtime)}, past what "
                                    "influxd represents (a file's modification time)", offset=ti.offset)
            entries.append(TarEntry(ti.name, ti.size, int(ti.mtime), ti.offset_data))
            end = ti.offset_data + ((ti.size + 511) // 512) * 512
            if end > size:
                raise TruncatedError(f"{where}: tar cut inside member {show(ti.name)}", offset=size)
    except tarfile.TarError as exc:
        raise TruncatedError(f"{where}: tar damaged or cut ({exc})") from None
    fh.seek(end)
    trailer = fh.read(size - end)
    if len(trailer) < 1024 or trailer.strip(b"\0"):
        raise TruncatedError(f"{where}: tar has no complete end-of-archive blocks", offset=end)
    fh.seek(0)
    return entries


def _tar_kind(ti: tarfile.TarInfo) -> str:
    kinds = {tarfile.SYMTYPE: "a symbolic link", tarfile.LNKTYPE: "a hard link", tarfile.DIRTYPE: "a directory",
             tarfile.FIFOTYPE: "a FIFO", tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device"}
    return kinds.get(ti.type, f"of tar type {show(ti.type.decode('latin-1'))}")


def decode_id_map(data: bytes, where: str) -> dict[int, int]:
    """A type-6 answer: magic, count, then (old, new) shard id pairs."""
    if not data:
        raise EmptyResponse(f"{where}: the server closed without an answer")
    if len(data) < 16:
        raise TruncatedError(f"{where}: answer cut after {len(data)} bytes")
    magic, n = struct.unpack_from(">QQ", data, 0)
    if magic != BACKUP_MAGIC:
        raise ProtocolError(f"{where}: answer does not start with the backup magic 0x59590101")
    if len(data) != 16 + 16 * n:
        raise ProtocolError(f"{where}: {n} shard pairs announced, {len(data) - 16} bytes of pairs received")
    return dict(struct.iter_unpack(">QQ", data[16:]))
