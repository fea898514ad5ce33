"""Opening what we did not write: source files and tar streams.

* :func:`open_regular` opens a source file only when it is a regular file. It opens with
  ``O_NONBLOCK`` (a FIFO would otherwise block the open forever) and checks ``fstat`` on the
  descriptor it got (a symbolic link to ``/dev/zero`` or a device is refused, and there is no
  window between a check and the open). :func:`probe_regular` is the same check as a verdict.
* :class:`BoundedTarInfo` is the ``tarinfo`` class every tar reader here passes to
  ``tarfile.open``. ``tarfile`` reads a PAX extended header or a GNU long-name member whole,
  however large its header claims it is (a 1 GiB claim inside a gzip bomb is 1 GiB of memory);
  here such headers are refused above :data:`MAX_EXTENDED_HEADER` bytes, chains of them above
  :data:`MAX_EXTENDED_CHAIN`, and any ``ValueError`` / ``KeyError`` ... its parser raises on a
  hostile header becomes ``tarfile.ReadError``. A damaged or cut header after the first member
  is an error too (``tarfile`` takes it for the end of the archive and drops what follows).
  Sparse members (GNU ``S``, PAX 0.0 / 0.1 / 1.0) raise :class:`SparseMember` before their
  maps are read: shard files are never sparse, and reading one's stored bytes as its content
  would be wrong.
* :func:`read_small` reads a whole small file (a metastore, a manifest) through
  :func:`open_regular`, refusing it above a size limit before anything is read.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tarfile
from typing import BinaryIO

from .errors import FormatError, SourceIOError

#: Largest PAX extended header / GNU long name or link accepted (bytes of header data). Names
#: influxd writes are a few dozen bytes; Linux paths stop at 4096.
MAX_EXTENDED_HEADER = 1 << 20
#: Extended headers that may precede one member (GNU tar writes at most a long name, a long link
#: and a PAX header).
MAX_EXTENDED_CHAIN = 8

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    for test, what in _KINDS:
        if test(mode):
            return what
    return "not a regular file"


def _not_regular(mode: int, what: str, path: str) -> FormatError:
    where = "a regular file" if what == "file" else f"a {what} (a regular file)"
    return FormatError(f"{kind_of(mode)} stands where {where} must be; never read", path=path)


def open_regular(path: str | os.PathLike[str], what: str = "file") -> BinaryIO:
    """``path`` opened for binary reading, refusing anything that is not a regular file (after
    symbolic links are followed) with :class:`FormatError`; an OS refusal (EACCES, ENOENT of a
    dangling link, EIO) is :class:`SourceIOError`. Never blocks on a FIFO. ``what`` names the
    kind of file in the messages ("series segment", "WAL segment")."""
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if os.path.islink(p) and not os.path.exists(p):
            raise FormatError(f"a symbolic link to nothing (dangling) stands where a {what} must be", path=p) from exc
        try:  # a socket refuses open() with ENXIO: say what stands there, not "no such device"
            mode = os.stat(p).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise _not_regular(mode, what, p) from exc
        raise SourceIOError(f"source {what} cannot be opened: {exc.strerror}", path=p) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(st.st_mode, what, p)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def probe_regular(path: str | os.PathLike[str], *, raise_os: bool = False) -> tuple[int | None, str | None]:
    """(size, None) when ``path`` opens as a regular file, else (None, why). With ``raise_os`` an
    operating-system refusal (EACCES, EIO) is raised as :class:`SourceIOError` instead: it is not
    damage, and a verb that does not salvage must say so with its own exit code."""
    try:
        with open_regular(path) as f:
            return os.fstat(f.fileno()).st_size, None
    except SourceIOError as exc:
        if raise_os:
            raise
        return None, exc.message
    except FormatError as exc:
        return None, exc.message


def read_small(path: str | os.PathLike[str], limit: int) -> bytes:
    """A whole small file (regular files only, see :func:`open_regular`), refused with
    :class:`FormatError` above ``limit`` bytes before it is read."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise FormatError(
                    f"file is {size} bytes, larger than the {limit}-byte limit for this kind", path=str(path)
                )
            return fh.read(size)
    except OSError as exc:
        raise SourceIOError(f"cannot read the source: {exc.strerror}", path=str(path)) from exc


class SparseMember(tarfile.ReadError):
    """A sparse tar member (GNU or PAX 0.0 / 0.1 / 1.0): valid tar, not supported here."""

    def __init__(self, name: str) -> None:
        super().__init__(f"sparse member {name}")
        self.member = name


class BoundedTarInfo(tarfile.TarInfo):
    """``tarfile.TarInfo`` that does not trust header sizes (see the module docstring)."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):  # type: ignore[override]
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.TruncatedHeaderError:
            raise tarfile.ReadError("unexpected end of data inside a tar header") from None
        except tarfile.InvalidHeaderError as exc:
            raise tarfile.ReadError(f"damaged tar header ({exc})") from None

    @classmethod
    def fromtarfile(cls, tf):  # type: ignore[override]
        depth = getattr(tf, "_influx_archive_depth", 0)
        if depth >= MAX_EXTENDED_CHAIN:
            raise tarfile.ReadError(f"more than {MAX_EXTENDED_CHAIN} extended headers before one member")
        tf._influx_archive_depth = depth + 1
        try:
            member = super().fromtarfile(tf)
        except tarfile.TarError:
            raise
        except (ValueError, KeyError, IndexError, OverflowError, UnicodeError, RecursionError, TypeError) as exc:
            raise tarfile.ReadError(f"damaged extended tar header ({exc.__class__.__name__}: {exc})") from None
        finally:
            tf._influx_archive_depth = depth
        if member.size < 0:  # base-256 or PAX sizes can be negative: the data would start before the header
            raise tarfile.ReadError(f"damaged tar header (a member claims {member.size} bytes)")
        return member

    def _bounded(self) -> None:
        if self.size > MAX_EXTENDED_HEADER:
            what = "PAX extended header" if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, b"X") else "GNU long name"
            raise tarfile.ReadError(
                f"{what} claims {self.size} bytes, more than the {MAX_EXTENDED_HEADER} a name or attribute list needs"
            )

    def _proc_gnulong(self, tf):  # type: ignore[override]
        self._bounded()
        return super()._proc_gnulong(tf)

    def _proc_pax(self, tf):  # type: ignore[override]
        self._bounded()
        out = super()._proc_pax(tf)
        if sum(len(k) + len(v) for k, v in tf.pax_headers.items()) > MAX_EXTENDED_HEADER:
            raise tarfile.ReadError(f"global PAX headers hold more than {MAX_EXTENDED_HEADER} bytes")
        return out

    def _proc_sparse(self, tf):  # type: ignore[override]
        raise SparseMember(self.name)

    def _proc_gnusparse_00(self, next, pax_headers, buf):  # type: ignore[override]
        raise SparseMember(pax_headers.get("GNU.sparse.name", next.name))

    def _proc_gnusparse_01(self, next, pax_headers):  # type: ignore[override]
        raise SparseMember(pax_headers.get("GNU.sparse.name", next.name))

    def _proc_gnusparse_10(self, next, pax_headers, tf):  # type: ignore[override]
        raise SparseMember(pax_headers.get("GNU.sparse.name", next.name))


def open_tar(fileobj: BinaryIO, mode: str, **kw) -> tarfile.TarFile:
    """``tarfile.open(fileobj=..., mode=...)`` with :class:`BoundedTarInfo`."""
    # mode is one of tarfile's literal modes, as every caller passes it
    return tarfile.open(fileobj=fileobj, mode=mode, tarinfo=BoundedTarInfo, **kw)  # type: ignore[call-overload]
