"""Reading shard tars and gzip streams we did not write, without extracting them.

:func:`scan_shard_tar` lists the usable members of a shard tar (``<db>/<rp>/<id>/<file>``). Tar
members are never trusted: only regular-file members with a plain file name are used; anything
else is reported as a finding and ignored (links, devices, FIFOs and unsafe names as
:data:`REFUSED_MEMBER`, which ``verify`` counts as errors). Tar headers are read with bounds
(:mod:`~influx_archive.archive.untrusted`); sparse members are refused as unsupported.
:func:`gzip_open` opens a ``.gz`` (ISA-L when available; damage raises one of
:data:`GZIP_ERRORS`); :func:`spool_gzip` inflates one into an anonymous temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from ...tsm import naming
from ..errors import ArchiveError, FormatError, SourceIOError, TargetIOError, TruncatedError, UnsupportedError, show
from ..findings import MEMBER_IGNORED, MEMBER_REFUSED, WARNING, Finding
from ..untrusted import SparseMember, open_regular, open_tar
from .model import ShardFile, file_kind, non_ascii_number

#: Message prefix of a tar member refused as hostile (unsafe name, link, device, FIFO): a warning
#: for verbs that go on without it, an error for ``verify``.
REFUSED_MEMBER = "refused tar member"
#: Message prefix of a tar member that is simply not shard data (ignored, a warning everywhere).
IGNORED_MEMBER = "ignored tar member"


def tar_error(path: str, member: str | None, exc: BaseException, offset: int | None = None) -> ArchiveError:
    """The error for ``tarfile`` / gzip failing on ``path`` (``member`` being the last one read).
    An OS error is the source's (not damage); a sparse member is :class:`UnsupportedError`."""
    if isinstance(exc, OSError) and exc.errno is not None:  # EACCES, EIO, ...: the OS, not damage
        return SourceIOError(f"cannot read the source: {exc.strerror or exc}", path=path, member=member, offset=offset)
    if isinstance(exc, SparseMember):
        return UnsupportedError(
            "unsupported sparse tar member: valid tar, but this version does not read sparse members (shard files are "
            "never sparse; "
            "re-create the tar without --sparse)",
            path=path,
            member=exc.member,
        )
    msg = str(exc) or exc.__class__.__name__
    if isinstance(exc, (EOFError, tarfile.ReadError)) and ("unexpected end" in msg or isinstance(exc, EOFError)):
        return TruncatedError(f"tar archive is truncated ({msg})", path=path, member=member, offset=offset)
    return FormatError(f"damaged tar archive ({msg})", path=path, member=member, offset=offset)


@dataclass
class TarMember:
    """A usable member of a shard tar: its name, what it names, where its data is."""

    name: str  # full member name
    parts: tuple[str, str, int, str]  # db, rp, id, file
    size: int
    data_offset: int
    mtime: int | None = None


def scan_shard_tar(
    path: str, *, gz: bool, findings: list[Finding], salvage: bool = False, expected_size: int | None = None
) -> list[TarMember]:
    """List the usable members of a shard tar (``<db>/<rp>/<id>/<file>``) without extracting.

    Damage (truncation, bad gzip, bad headers) raises :class:`FormatError` naming the member that was
    being read; untrusted member kinds or names are reported in ``findings`` and skipped. With
    ``salvage`` the damage becomes an error finding instead, and the members read completely before
    it are kept (the damaged one is not).

    ``expected_size`` (a portable manifest's uncompressed tar size): decompression stops with an
    error once it passes that size (a gzip bomb never inflates further), and a different total is
    an error (the manifest and the file disagree).
    """
    out: list[TarMember] = []
    last: str | None = None
    size = os.path.getsize(path) if not gz else None
    try:
        if gz:
            fobj = _Limited(gzip_open(path), expected_size, path) if expected_size is not None else gzip_open(path)
            mode = "r|"
        else:
            fobj = open_regular(path)
            mode = "r:"
        with fobj, open_tar(cast(BinaryIO, fobj), mode, bufsize=1 << 20) as tf:
            for m in tf:
                # listed once, never looked up: memory stays one member's (members: not in the stub)
                tf.members.clear()  # type: ignore[attr-defined]
                last = m.name
                usable = _check_member(path, m, findings)
                if gz:
                    # Stream mode: the member's data must actually be read to detect truncation.
                    if m.isfile():
                        _drain(tf, m)
                elif size is not None and m.offset_data + m.size > size:
                    raise EOFError("unexpected end of data")
                if usable is not None:
                    out.append(TarMember(m.name, usable, m.size, m.offset_data, _member_mtime(m)))
            if isinstance(fobj, _Limited):
                fobj.finish()
    except (UnsupportedError, SourceIOError):
        raise  # not damage: salvage cannot work around it
    except ArchiveError as exc:
        if not salvage:
            raise
        findings.append(Finding.from_error(exc))
    except (tarfile.TarError, *GZIP_ERRORS) as exc:  # type: ignore[misc]  # mypy cannot type a starred except tuple
        err = tar_error(path, last, exc)
        if not salvage or isinstance(err, UnsupportedError):
            raise err from exc
        findings.append(Finding.from_error(err))
    return out


try:  # ISA-L's igzip inflates TSM data about 2.4x faster than zlib (same gzip, same errors)
    from isal.isal_zlib import error as _IsalError

    # isal's stub types its error as an instance; it is the exception class
    GZIP_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error,
                                                    cast(type[BaseException], _IsalError))
    _ISAL = True
except ImportError:  # pragma: no cover - exercised only where isal is missing
    GZIP_ERRORS = (OSError, EOFError, zlib.error)
    _ISAL = False


def gzip_open(path: str) -> BinaryIO:
    """A .gz file opened for reading (ISA-L when available); damage raises one of GZIP_ERRORS.
    Anything but a regular file is refused first (see :func:`.untrusted.open_regular`)."""
    open_regular(path).close()
    # imported here: a legacy backup's plain tars need neither (start-up)
    if _ISAL:
        from isal import igzip as impl
    else:  # pragma: no cover - exercised only where isal is missing
        import gzip as impl  # type: ignore[no-redef]
    return impl.open(path, "rb")  # type: ignore[return-value]


class _Limited:
    """A decompressed stream that must hold exactly ``limit`` bytes: reading past it raises at
    once (so a gzip bomb is never inflated further), :meth:`finish` checks the total."""

    def __init__(self, raw: BinaryIO, limit: int, path: str) -> None:
        self._raw = raw
        self.limit = limit
        self.count = 0
        self._path = path

    def read(self, n: int = -1) -> bytes:
        want = self.limit + 1 - self.count if n is None or n < 0 else min(n, self.limit + 1 - self.count)
        data = self._raw.read(max(want, 0)) if want > 0 else b""
        self.count += len(data)
        if self.count > self.limit:
            raise FormatError(
                f"decompresses to more than the {self.limit} bytes the manifest records (damaged or a gzip bomb)",
                path=self._path,
            )
        return data

    def finish(self) -> None:
        while self.read(1 << 20):
            pass
        if self.count != self.limit:
            raise FormatError(
                f"the manifest records {self.limit} uncompressed bytes, the file holds {self.count}", path=self._path
            )

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _Limited:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
    src = tf.extractfile(m)
    if src is None:
        return
    remaining = m.size
    while remaining > 0:
        chunk = src.read(min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("unexpected end of data")
        remaining -= len(chunk)


def _check_member(path: str, m: tarfile.TarInfo, findings: list[Finding]) -> tuple[str, str, int, str] | None:
    def reject(why: str, prefix: str = IGNORED_MEMBER) -> None:
        code = MEMBER_REFUSED if prefix == REFUSED_MEMBER else MEMBER_IGNORED
        findings.append(Finding(WARNING, f"{prefix}: {why}", path=path, member=m.name, code=code))

    parts = m.name.split("/")
    if m.name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in m.name:
        reject("unsafe path (absolute, empty or '..' component); never extracted", REFUSED_MEMBER)
        return None
    if m.isdir():
        return None
    if not m.isfile():
        what = ("symbolic link" if m.issym() else "hard link" if m.islnk() else "FIFO" if m.isfifo()
                else "device" if m.isdev() else "not a regular file")
        reject(f"{what} (links and devices are never followed or created)", REFUSED_MEMBER)
        return None
    if len(parts) != 4:
        reject("not <db>/<rp>/<shard id>/<file>")
        return None
    db, rp, sid_text, name = parts
    sid, bad = naming.number_field(sid_text)
    if bad:
        findings.append(non_ascii_number(f"shard id {show(sid_text)}", path, m.name))
        return None
    if sid is None:
        reject("shard id is not a number")
        return None
    kind = file_kind(name)
    if kind == naming.BAD_NUMBER:
        findings.append(non_ascii_number(f"file name {show(name)}", path, m.name))
        return None
    if kind not in ("tsm", "tombstone"):
        reject("not a TSM or tombstone file")
        return None
    return db, rp, sid, name


def _member_mtime(m: tarfile.TarInfo) -> int | None:
    try:
        return int(m.mtime)
    except (TypeError, ValueError, OverflowError):
        return None


def member_offset(base: BinaryIO, f: ShardFile) -> int:
    """Find a member's data offset in an uncompressed tar stream (used for spooled tars)."""
    base.seek(0)
    with open_tar(base, "r:") as tf:
        for m in tf:
            if m.name == f.member:
                return m.offset_data
    raise FormatError("member vanished from tar", path=f.container, member=f.member)


@contextlib.contextmanager
def spool_gzip(path: str, tmpdir: str | None, salvage: bool = False) -> Iterator[BinaryIO]:
    """Decompress a .tar.gz into an anonymous temporary file; yields it open for reading.
    With ``salvage`` a damaged stream keeps what decompressed before the damage."""
    import tempfile

    with tempfile.TemporaryFile(dir=tmpdir, prefix="influx-archive-spool-") as tmp:
        try:
            with gzip_open(path) as src:
                while chunk := src.read(1 << 20):
                    try:
                        tmp.write(chunk)
                    except OSError as exc:  # ENOSPC, EDQUOT: where we write, not the source
                        raise TargetIOError(f"cannot write the target's temporary file: {exc.strerror}",
                                            path=tmpdir or tempfile.gettempdir()) from exc
        except GZIP_ERRORS as exc:
            if isinstance(exc, OSError) and exc.errno is not None:  # EACCES, EIO: the OS, not damage
                raise SourceIOError(f"cannot read the source: {exc.strerror}", path=path) from exc
            if not salvage:
                raise FormatError(f"damaged gzip stream ({exc})", path=path) from exc
        tmp.seek(0)
        yield tmp
