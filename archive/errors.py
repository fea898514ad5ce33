"""The project's one error tree.

Every error the library raises on purpose is an :class:`ArchiveError`. Each class carries
the exit code the CLI maps it to (see ``cli/main.py``, the only place that turns errors into
messages and exit codes):

====  ==========================================================
code  meaning
====  ==========================================================
0     success
1     damaged input, or a check (``verify``) found errors
2     usage error: bad arguments, a path that is not a source, ...
3     any other failure (target not writable, already exists, out of space, ...)
4     ``--salvage`` finished but left damaged data out (listed on stderr / in ``--json``)
5     the target is busy: another influx-archive run holds its lock, or a running process
      (influxd) holds files in it open
====  ==========================================================

Messages name *where*: ``str(err)`` ends with ``[file F, member M, offset N]`` for the parts
that are known, so a one-line message is enough for an operator to find the damage.
"""

from __future__ import annotations

import os

EXIT_OK = 0
EXIT_DAMAGED = 1
EXIT_USAGE = 2
EXIT_FAILURE = 3
EXIT_SALVAGED = 4
EXIT_BUSY = 5


def format_where(
    path: str | None = None, member: str | None = None, offset: int | None = None, field: str | None = None
) -> str:
    """`` [file F, member M, offset N, field X]`` for the parts that are known ("" when none is)."""
    parts = []
    if path is not None:
        parts.append(f"file {path}")
    if member is not None:
        parts.append(f"member {member}")
    if offset is not None:
        parts.append(f"offset {offset}")
    if field is not None:
        parts.append(f"field {field}")
    return f" [{', '.join(parts)}]" if parts else ""


class ArchiveError(Exception):
    """Base of every error raised on purpose by influx-archive."""

    exit_code = EXIT_FAILURE

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        member: str | None = None,
        offset: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.member = member
        self.offset = offset
        self.field = field

    def where(self) -> str:
        return format_where(self.path, self.member, self.offset, self.field)

    def __str__(self) -> str:
        return f"{self.message}{self.where()}"

    def located(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        member: str | None = None,
        offset: int | None = None,
    ) -> "ArchiveError":
        """Fill in location parts that are still unknown (outer layers know the file name,
        inner parsers know the offset). Returns self so it can be re-raised.

        Readers of a tar member are named ``CONTAINER::MEMBER`` (``ShardFile.origin``); given the
        container and member here, that name is split back into the two parts."""
        if path is not None and member is not None and self.path == f"{os.fspath(path)}::{member}":
            self.path = None
        if self.path is None and path is not None:
            self.path = os.fspath(path)
        if self.member is None and member is not None:
            self.member = member
        if self.offset is None and offset is not None:
            self.offset = offset
        return self


class FormatError(ArchiveError):
    """Input bytes are damaged or are not the format they claim to be (exit 1)."""

    exit_code = EXIT_DAMAGED


class ChecksumError(FormatError):
    """A stored checksum (block CRC32, sha256 in a sealed archive, gzip CRC) does not match."""


class TruncatedError(FormatError):
    """Input ends before a structure that must be there (short read, torn tail, cut tar)."""


class UsageError(ArchiveError):
    """Bad arguments or a path that is not usable as asked (exit 2)."""

    exit_code = EXIT_USAGE


class SourceError(UsageError):
    """A path is missing, unreadable, or not a recognised backup / data directory kind."""


class TargetError(ArchiveError):
    """The destination cannot be written as asked: exists, not empty, conflicts (exit 3)."""

    exit_code = EXIT_FAILURE


class UnsupportedError(ArchiveError):
    """Valid input that this version cannot handle (e.g. a value NaN in a float block)."""

    exit_code = EXIT_FAILURE


class BusyError(TargetError):
    """Another run holds the target's lock, or a live process holds the target open (exit 5)."""

    exit_code = EXIT_BUSY


class SourceIOError(ArchiveError):
    """The operating system refused to read the source (EACCES, EIO, ...): not damage (exit 3).
    The message says ``source`` and names the path."""

    exit_code = EXIT_FAILURE


class TargetIOError(TargetError):
    """The operating system refused a write to the target (ENOSPC, EACCES, EROFS, ...) (exit 3).
    The message says ``target`` and names the path."""

    exit_code = EXIT_FAILURE
