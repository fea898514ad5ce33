"""Sealed archives, the reading side: one checksummed ``.tar.zst`` per backup, read as a Source.

Layout (written by :mod:`~influx_archive.archive.ops.pack`): a single zstd stream (frame checksums
on) of a POSIX tar whose first member is ``INFLUX-ARCHIVE.json`` — format, tool version, creation
time, source kind, databases, time range and, for every file of the backup, its name, size, mode
and sha256 — followed by the backup's files unchanged (metadata first, then the shard files in the
metastore's order, so that readers visiting shards in that order decompress the stream once).

Reading never trusts the archive: members must be regular files with safe relative names, listed
in the manifest, of exactly the listed size (a member larger than announced is refused before it is
read: no decompression bomb), with the listed sha256; every listed file must be present. The
manifest itself is checked field by field (:func:`_check_manifest`: JSON types, name bounds, a name
that is both a file and a directory); tar headers are read with bounds (:mod:`~influx_archive.archive.untrusted`).
Damage names the archive and the member as ``ARCHIVE.tar.zst::member`` — never the private spool,
whose paths are shown that way too (:func:`~influx_archive.archive.errors.register_display_prefix`).

:func:`open_sealed` exposes an archive as a :class:`SealedSource` of its inner kind without
extracting it: metadata files are kept in a private temporary directory, shard files are spooled
one container at a time while a shard is open and deleted afterwards. The source is a context
manager; :meth:`SealedSource.close` removes the spool. A source left open is
the last resort's: the spool is registered when it is made, and the CLI removes every registered
temporary when a verb ends (:func:`~influx_archive.archive.cleanup.remove_temporaries`).

zstandard defaults that bite, set explicitly here: ``read_across_frames=True`` (a stream may hold
several frames; the default stops after the first), ``closefd=False`` (we own the file objects),
and nothing is decompressed in one call without a size bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, cast

from ..errors import (
    ArchiveError,
    ChecksumError,
    FormatError,
    SourceIOError,
    TargetIOError,
    TruncatedError,
    UnsupportedError,
    register_display_prefix,
    show,
)
from ..findings import Finding
from ..output import os_error
from ..progress import Reporter
from ..spools import make_spool, remove_spool
from ..untrusted import SparseMember, open_regular, open_tar
from .directory import open_dir
from .model import Shard, raise_first_error
from .ondisk import DiskSource
from .tarscan import scan_shard_tar

MANIFEST_NAME = "INFLUX-ARCHIVE.json"
FORMAT = "influx-archive-sealed"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 16 << 20  # json.loads of 16 MiB of tiny objects peaks near 440 MB; ~100k files fit
MAX_TRAILER = 1 << 20  # zero padding accepted after the tar's end-of-archive blocks
CHUNK = 1 << 20
MAX_TRAILING = 1 << 20  # zeros a tar writer may pad its last record with (GNU tar: 10 KiB)



#: Bounds on a listed name (Linux: PATH_MAX 4096, NAME_MAX 255 bytes).
MAX_NAME_BYTES = 4096
MAX_COMPONENT_BYTES = 255
SOURCE_KINDS = ("legacy", "portable")


def _safe_name(name: str) -> bool:
    p = PurePosixPath(name)
    return (bool(name) and not p.is_absolute() and ".." not in p.parts and "." not in name.split("/")
            and "" not in name.split("/") and "\0" not in name)


def _where(path: Path, member: str) -> str:
    """How damage inside a sealed archive is named: ``ARCHIVE.tar.zst::member``."""
    return f"{path}::{member}"


@contextlib.contextmanager
def _tar_stream(path: Path) -> Iterator[tarfile.TarFile]:
    import zstandard  # only sealed archives need it (start-up of every other run)

    dctx = zstandard.ZstdDecompressor()
    with open_regular(path) as raw:
        with dctx.stream_reader(raw, read_across_frames=True, closefd=False) as zr:
            tail = _TailReader(zr)
            with open_tar(cast(BinaryIO, tail), "r|") as tf:
                yield tf
                end = tf.offset  # where the end-of-archive blocks start
            # the tar ended: what the tar reader buffered past its end, and the rest of the
            # stream read to its end (so that zstd checks the frame checksum there), may only be
            # tar padding: zeros, at most MAX_TRAILING bytes
            seen = tail.kept[max(0, end - tail.kept_from):]
            left = MAX_TRAILING - len(seen)
            if seen.count(0) != len(seen):
                raise _TrailingData("data after the end of the archive's tar", path=str(path), offset=end)
            while chunk := zr.read(CHUNK):
                left -= len(chunk)
                if left < 0 or chunk.count(0) != len(chunk):
                    raise _TrailingData("data after the end of the archive's tar", path=str(path), offset=end)
        # python-zstandard ends a stream cut inside its last frame's checksum silently: walk the
        # frames' block headers (no decompression) to see that every frame is whole
        check_zstd_frames(raw, path)


ZSTD_MAGIC = 0xFD2FB528
ZSTD_SKIPPABLE_MASK, ZSTD_SKIPPABLE = 0xFFFFFFF0, 0x184D2A50
_FCS_BYTES = (0, 2, 4, 8)  # Frame_Content_Size_flag -> bytes (flag 0 with Single_Segment: 1)
_DID_BYTES = (0, 1, 2, 4)


def check_zstd_frames(f: BinaryIO, path: Path) -> None:
    """Every zstd frame of ``f`` (RFC 8878 §3.1) is complete: header, blocks up to the one
    marked last, and the 4-byte content checksum when the header announces it; nothing but whole
    frames up to the end. Reads only frame and block headers (seeks over block contents)."""
    size = os.fstat(f.fileno()).st_size
    pos = 0

    def cut(what: str) -> TruncatedError:
        return _CutStream(f"zstd stream ends inside {what}: the archive is cut", path=str(path), offset=pos)

    def read(n: int, what: str) -> bytes:
        if pos + n > size:
            raise cut(what)
        f.seek(pos)
        data = f.read(n)
        if len(data) != n:
            raise cut(what)
        return data

    while pos < size:
        magic = int.from_bytes(read(4, "a frame header"), "little")
        if magic & ZSTD_SKIPPABLE_MASK == ZSTD_SKIPPABLE:
            length = int.from_bytes(read(8, "a skippable frame")[4:], "little")
            if pos + 8 + length > size:
                raise cut("a skippable frame")
            pos += 8 + length
            continue
        if magic != ZSTD_MAGIC:
            raise FormatError("not a zstd frame", path=str(path), offset=pos)
        fhd = read(5, "a frame header")[4]
        single = bool(fhd & 0x20)
        fcs = _FCS_BYTES[fhd >> 6] if (fhd >> 6) or not single else 1
        header = 1 + (0 if single else 1) + _DID_BYTES[fhd & 3] + fcs
        pos += 4 + header
        while True:
            bh = int.from_bytes(read(3, "a block header"), "little")
            last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
            if btype == 3:
                raise FormatError("reserved zstd block type", path=str(path), offset=pos)
            pos += 3 + (1 if btype == 1 else bsize)
            if pos > size:
                raise cut("a block")
            if last:
                break
        if fhd & 0x04:  # Content_Checksum_flag
            read(4, "the frame checksum")
            pos += 4


class _TrailingData(FormatError):
    """Bytes other than tar padding after the end of a sealed archive's tar."""


class _CutStream(TruncatedError):
    """The zstd stream ends inside a frame (found after the tar was read: verify lists it)."""


class _TailReader:
    """What the tar reader reads, with the last two chunks kept (the end-of-archive blocks and
    whatever it buffered past them)."""

    def __init__(self, f) -> None:
        self._f = f
        self.pos = 0
        self.kept = b""
        self.kept_from = 0
        self._prev = b""

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.kept_from = self.pos - len(self._prev)
        self.kept = self._prev + data
        self._prev = data
        self.pos += len(data)
        return data

class _Bad(ValueError):
    """A manifest field that is not what pack writes (``where`` is its JSON path)."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")


def _jtype(v: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
            type(None): "null"}.get(type(v), type(v).__name__)


def _want(v: object, kinds: tuple[type, ...], where: str, what: str) -> None:
    if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
        raise _Bad(where, f"expected {what}, got {_jtype(v)}")


def _check_name(name: object, where: str) -> str:
    _want(name, (str,), where, "a string")
    assert isinstance(name, str)
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise _Bad(where, "name is not encodable as a file name (lone surrogate)") from None
    if len(raw) > MAX_NAME_BYTES:
        raise _Bad(where, f"name of {len(raw)} bytes (more than {MAX_NAME_BYTES})")
    if not _safe_name(name):
        raise _Bad(where, f"unsafe name {show(name)} (absolute, empty, '.' or '..' component)")
    for part in name.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise _Bad(where, f"a component of {show(name[:64])}... is longer than {MAX_COMPONENT_BYTES} bytes")
    return name


def _check_manifest(doc: object) -> dict[str, dict]:
    """Every field readers use, with the JSON type pack writes; {name: entry}. Raises _Bad."""
    _want(doc, (dict,), "manifest", "an object")
    assert isinstance(doc, dict)
    if doc.get("format") != FORMAT:
        raise _Bad("format", f"not {FORMAT!r}: not an influx-archive sealed archive")
    version = doc.get("format_version", FORMAT_VERSION)
    _want(version, (int,), "format_version", "an integer")
    if version != FORMAT_VERSION:
        raise UnsupportedError(f"sealed archive format version {version}: this version reads version {FORMAT_VERSION}")
    for key in ("tool", "tool_version", "created"):
        if key in doc:
            _want(doc[key], (str,), key, "a string")
    source = doc.get("source")
    _want(source, (dict,), "source", "an object")
    kind = source.get("kind")  # type: ignore[union-attr]
    _want(kind, (str,), "source.kind", "a string")
    if kind not in SOURCE_KINDS:
        raise _Bad("source.kind", f"{show(kind)} is not one of {', '.join(SOURCE_KINDS)}")
    if "databases" in doc:
        _want(doc["databases"], (list,), "databases", "an array")
        for i, d in enumerate(doc["databases"]):
            _want(d, (str,), f"databases[{i}]", "a string")
    if doc.get("time_range") is not None:
        _want(doc["time_range"], (dict,), "time_range", "an object or null")
        for key in ("start", "end"):
            _want(doc["time_range"].get(key), (str,), f"time_range.{key}", "a string")
    entries = doc.get("files")
    _want(entries, (list,), "files", "an array")
    files: dict[str, dict] = {}
    for i, e in enumerate(entries):  # type: ignore[arg-type]
        where = f"files[{i}]"
        _want(e, (dict,), where, "an object")
        name = _check_name(e.get("name"), f"{where}.name")
        size = e.get("size")
        _want(size, (int,), f"{where}.size", "an integer")
        if not 0 <= size < 1 << 63:
            raise _Bad(f"{where}.size", f"{size} is outside 0..2^63-1")
        sha = e.get("sha256")
        _want(sha, (str,), f"{where}.sha256", "a string")
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise _Bad(f"{where}.sha256", "not 64 lowercase hex digits")
        if "mode" in e:
            _want(e["mode"], (int,), f"{where}.mode", "an integer")
            if not 0 <= e["mode"] <= 0o7777:
                raise _Bad(f"{where}.mode", f"{e['mode']} is not a file mode (0..0o7777)")
        if name in files:
            raise _Bad(where, f"{show(name)} is listed twice")
        files[name] = e
    for name in files:  # a name that is also a directory of another: unpack could not create both
        parts = name.split("/")
        for k in range(1, len(parts)):
            if "/".join(parts[:k]) in files:
                raise _Bad(
                    "files", f"{show('/'.join(parts[:k]))} is listed as a file and as the directory of {show(name)}"
                )
    return files


def _read_manifest(tf: tarfile.TarFile, path: Path) -> tuple[dict, dict[str, dict]]:
    first = tf.next()
    if first is None or first.name != MANIFEST_NAME or not first.isfile():
        raise FormatError(f"not a sealed archive: the first member is not {MANIFEST_NAME}", path=str(path))
    if first.size > MAX_MANIFEST_BYTES:
        raise FormatError(f"{MANIFEST_NAME} claims {first.size} bytes", path=_where(path, MANIFEST_NAME))
    data = tf.extractfile(first).read(first.size)  # type: ignore[union-attr]
    try:
        doc = json.loads(data)
        files = _check_manifest(doc)
    except UnsupportedError as exc:
        raise exc.located(path=_where(path, MANIFEST_NAME)) from None
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise FormatError(f"damaged archive manifest: {why}", path=_where(path, MANIFEST_NAME)) from None
    return doc, files


def iter_members(
    path: Path, *, findings: list[Finding] | None = None
) -> Iterator[tuple[dict, dict, tarfile.TarInfo | None, BinaryIO | None]]:
    """Stream the archive: yields (manifest doc, entry, member, reader) per listed file; member is
    None for listed files that never appeared. Damage raises (or, with ``findings``, is recorded and
    the member skipped where the stream allows)."""
    import zstandard

    def bad(exc: ArchiveError) -> None:
        if findings is None:
            raise exc
        findings.append(Finding.from_error(exc))

    try:
        with _tar_stream(path) as tf:
            doc, files = _read_manifest(tf, path)
            seen: set[str] = set()
            for m in tf:
                # streamed once: memory stays one member's, however many there are (members: not in the stub)
                tf.members.clear()  # type: ignore[attr-defined]
                if m.offset == 0:
                    continue  # the manifest itself (TarFile iteration starts over its members)
                if m.name in seen:
                    bad(FormatError("duplicate member", path=_where(path, m.name)))
                    continue
                if not m.isfile():
                    bad(FormatError("not a regular file (links and devices are refused)", path=_where(path, m.name)))
                    continue
                if not _safe_name(m.name):
                    bad(FormatError("unsafe member name", path=_where(path, m.name)))
                    continue
                entry = files.get(m.name)
                if entry is None:
                    bad(FormatError("member not listed in the archive manifest", path=_where(path, m.name)))
                    continue
                if m.size != entry["size"]:
                    bad(
                        FormatError(
                            f"member is {m.size} bytes, the manifest says {entry['size']}", path=_where(path, m.name)
                        )
                    )
                    continue
                seen.add(m.name)
                yield doc, entry, m, cast("BinaryIO | None", tf.extractfile(m))
            for name, _entry in files.items():
                if name not in seen:
                    bad(FormatError("listed file missing from the archive", path=_where(path, name)))
    except (_TrailingData, _CutStream) as exc:
        if findings is None:
            raise
        findings.append(Finding.from_error(exc))
    except SparseMember as exc:
        raise UnsupportedError("unsupported sparse tar member in a sealed archive (pack never writes one)",
                               path=_where(path, exc.member)) from None
    except (zstandard.ZstdError, tarfile.TarError, EOFError, OSError) as exc:
        err = (
            TruncatedError
            if isinstance(exc, EOFError) or "unexpected end" in str(exc) or "truncated" in str(exc).lower()
            else FormatError
        )
        e: ArchiveError = err(f"damaged archive stream ({exc})", path=str(path))
        if isinstance(exc, OSError) and exc.errno is not None:  # EACCES, EIO: the OS, not damage
            e = SourceIOError(f"cannot read the source: {exc.strerror}", path=str(path))
        if findings is None:
            raise e from exc
        findings.append(Finding.from_error(e))


def copy_checked(reader: BinaryIO, entry: dict, out: BinaryIO | None, path: Path, rep: Reporter | None = None) -> None:
    import hashlib

    import zstandard

    h = hashlib.sha256()
    left = entry["size"]
    while left > 0:
        try:
            chunk = reader.read(min(CHUNK, left))
        except (zstandard.ZstdError, tarfile.TarError, EOFError, OSError) as exc:
            raise FormatError(f"damaged archive stream ({exc})", path=_where(path, entry["name"])) from exc
        if not chunk:
            raise TruncatedError("member ends early", path=_where(path, entry["name"]))
        h.update(chunk)
        if out is not None:
            out.write(chunk)
        left -= len(chunk)
        if rep is not None:
            rep.advance(len(chunk))
    if h.hexdigest() != entry["sha256"]:
        raise ChecksumError("sha256 differs from the archive manifest", path=_where(path, entry["name"]))


# --------------------------------------------------------------------------------------------
# a sealed archive as a Source


@dataclass
class SealedSource(DiskSource):
    """A :class:`Source` read from a sealed archive (see the module docstring). Shard tars are
    empty placeholders in ``workdir`` until their shard is opened."""

    archive: str = ""
    workdir: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cursor: Iterator | None = field(default=None, repr=False)
    _users: dict = field(default_factory=dict, repr=False)  # spooled container -> open count
    _expected: set = field(default_factory=set, repr=False)  # containers to keep when passed (expect())
    _ahead: set = field(default_factory=set, repr=False)  # containers spooled ahead of their open_shard

    def expect(self, shards: list[Shard]) -> None:
        """These shards will be opened, roughly in archive order but by parallel workers: a
        container passed while decompressing forward to a later one is spooled on the way (at
        most a worker's lead), instead of the archive being read again from its start."""
        with self._lock:
            self._expected = {f.container for s in shards for f in s.files + s.wal}

    @contextlib.contextmanager
    def open_shard(self, shard: Shard, *, tmpdir: str | None = None, spool_gz: bool = True):
        needed = sorted({f.container for f in shard.files + shard.wal})
        with self._lock:
            for c in needed:
                if self._users.get(c, 0) == 0 and c not in self._ahead:
                    self._spool(os.path.relpath(c, self.workdir))
                self._ahead.discard(c)
                self._expected.discard(c)
                self._users[c] = self._users.get(c, 0) + 1
        try:
            with DiskSource.open_shard(self, shard, tmpdir=tmpdir, spool_gz=spool_gz) as opened:
                yield opened
        finally:
            with self._lock:
                for c in needed:
                    self._users[c] -= 1
                    if self._users[c] == 0:
                        os.truncate(c, 0)  # back to a placeholder: one container on disk at a time

    def _spool(self, name: str) -> None:
        """Decompress forward to member ``name`` (restarting when it lies behind) and spool it."""
        for _attempt in range(2):
            if self._cursor is None:
                self._cursor = iter_members(Path(self.archive))
            for _doc, entry, _m, reader in self._cursor:
                path = str(Path(self.workdir) / entry["name"])
                if entry["name"] == name or (
                    path in self._expected and path not in self._ahead and not self._users.get(path)
                ):
                    with _spool_file(path) as out:
                        copy_checked(reader, entry, out, Path(self.archive))  # type: ignore[arg-type]
                    if entry["name"] == name:
                        return
                    self._ahead.add(path)
            self._cursor = None
        raise FormatError("member vanished from the archive", path=_where(Path(self.archive), name))

    @property
    def display_path(self) -> str:
        return self.archive

    @property
    def sequential(self) -> bool:
        return True

    def reads_from(self) -> list[str]:
        """The archive, and its private spool."""
        return [self.archive] + ([self.workdir] if self.workdir else [])

    def close(self) -> None:
        """Remove the private spool (idempotent)."""
        if self.workdir:
            remove_spool(self.workdir)


class _SpoolWriter:
    """Writes into a spool file; an OS error (ENOSPC, EDQUOT, EFBIG in TMPDIR) names the spool
    and says it is a temporary file, not damage of the archive."""

    def __init__(self, f: BinaryIO, path: str) -> None:
        self._f = f
        self._path = path

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            raise TargetIOError(
                f"cannot write the temporary spool of the archive (a target-side write): {exc.strerror} "
                f"(the spool is under TMPDIR={tempfile.gettempdir()})", path=self._path) from exc


@contextlib.contextmanager
def _spool_file(path: str | os.PathLike[str]) -> Iterator[_SpoolWriter]:
    try:
        f = open(path, "wb")
    except OSError as exc:
        raise TargetIOError(f"cannot create the temporary spool of the archive (a target-side write): {exc.strerror}",
                            path=os.fspath(path)) from exc
    try:
        with f:
            yield _SpoolWriter(f, os.fspath(path))
    except OSError as exc:  # the flush on close
        if isinstance(exc, ArchiveError):
            raise
        raise TargetIOError(
            f"cannot write the temporary spool of the archive (a target-side write): {exc.strerror} "
            f"(the spool is under TMPDIR={tempfile.gettempdir()})", path=os.fspath(path)) from exc


def _is_metadata(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.endswith((".manifest", ".meta")) or base.startswith("meta.") or base == "meta.db"


def open_sealed(path: str | os.PathLike[str], *, salvage: bool = False) -> SealedSource:
    """Open a sealed archive as a Source in one streaming pass, without extracting it: metadata
    files are kept in a private temporary directory; each shard tar is spooled, listed, and
    replaced by an empty placeholder (spooled again while its shard is open)."""
    p = Path(path).absolute()
    # private; registered for removal as it is made (archive/cleanup.py), and removed by the next
    # run if this one is killed
    workdir = make_spool("sealed")
    register_display_prefix(workdir, p)  # damage in a spooled file names ARCHIVE::member
    findings: list[Finding] = []
    scans: dict[str, list] = {}
    try:
        doc = None
        for doc, entry, _m, reader in iter_members(p):
            target = Path(workdir) / entry["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with _spool_file(target) as out:
                copy_checked(reader, entry, out, p)  # type: ignore[arg-type]
            if not _is_metadata(entry["name"]) and doc["source"]["kind"] in ("legacy", "portable"):
                gz = entry["name"].endswith(".gz")
                scans[str(target)] = scan_shard_tar(str(target), gz=gz, findings=findings, salvage=salvage)
                os.truncate(target, 0)
        if doc is None:
            raise FormatError("sealed archive holds no backup files", path=str(p))
        inner = open_dir(Path(workdir), salvage, scans)
        raise_first_error(inner, salvage)
        sealed = SealedSource(**{k: getattr(inner, k) for k in (
            "kind", "path", "meta", "meta_origin", "file_kind", "shards", "manifests", "increments", "salvage")})
        sealed.findings = findings + inner.findings
        sealed.archive = str(p)
        sealed.workdir = workdir
        return sealed
    except OSError as exc:
        remove_spool(workdir)
        if isinstance(exc, ArchiveError):
            raise
        raise os_error(exc, target=workdir, sources=[os.path.realpath(p)], spools=[workdir]) from exc
    except BaseException:
        remove_spool(workdir)
        raise


def is_zstd_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file starting with the zstd magic (a sealed archive). Never
    opens anything else: a FIFO would block."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open_regular(path) as f:
            return f.read(4) == ZSTD_MAGIC.to_bytes(4, "little")
    except (OSError, ArchiveError):
        return False


def verify_sealed(path: str | os.PathLike[str]) -> tuple[list[Finding], int, int]:
    """(findings, files, bytes): zstd frames, manifest, every member's size and sha256."""
    p = Path(path)
    findings: list[Finding] = []
    files = total = 0
    for _doc, entry, _m, reader in iter_members(p, findings=findings):
        try:
            copy_checked(reader, entry, None, p)  # type: ignore[arg-type]
        except ArchiveError as exc:
            findings.append(Finding.from_error(exc))
        files += 1
        total += entry["size"]
    return findings, files, total
