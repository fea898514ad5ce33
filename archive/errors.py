"""The project's one error tree.

Every error the library raises on purpose is an :class:`ArchiveError`. Each class carries
the exit code the CLI maps it to (see ``cli/app.py``, the only place that turns errors into
messages and exit codes) and a stable ``code``, a short dotted identifier that ``--json`` error
output carries (scripts match on it, never on the message text):

====  ==========================================================
exit  meaning
====  ==========================================================
0     success
1     damaged input, or a check (``verify``) found errors
2     usage error: bad arguments, a path that is not a source, ...
3     any other failure (target not writable, already exists, out of space, ...)
4     ``--salvage`` finished but left damaged data out (listed on stderr / in ``--json``)
5     the target is busy: another influx-archive run holds its lock, or a running process
      (influxd) holds files in it open
130   interrupted (Ctrl-C)
143   terminated (SIGTERM); everything written so far was removed
====  ==========================================================

=====================  ====  =====================================================================
code                   exit  raised as / meaning
=====================  ====  =====================================================================
``failure``            3     :class:`ArchiveError` itself: a failure no subclass describes
``damaged``            1     :class:`FormatError`: damaged input, or not the format it claims
``damaged.checksum``   1     :class:`ChecksumError`: a stored checksum does not match
``damaged.truncated``  1     :class:`TruncatedError`: input ends before a structure that must be there
``usage``              2     :class:`UsageError`, and the command line's own errors (unknown option...)
``usage.source``       2     :class:`SourceError`: a path is missing or not a recognised source
``target``             3     :class:`TargetError`: the destination cannot be written as asked
``target.busy``        5     :class:`BusyError`: a lock or a live process holds the target
``target.io``          3     :class:`TargetIOError`: the OS refused a write to the target
``source.io``          3     :class:`SourceIOError`: the OS refused to read the source
``unsupported``        3     :class:`UnsupportedError`: valid input this version cannot handle
``unexpected``         3     not an ArchiveError: a bug (the message says which exception)
``interrupted``        130   Ctrl-C
``terminated``         143   SIGTERM
=====================  ====  =====================================================================

A subclass defined elsewhere inherits its parent's code unless it sets its own; a code, once
released, never changes meaning. Under ``--debug`` the CLI also prints the chain of causes of an
error, so a layer that turns an ``OSError`` (or any other) into an ArchiveError raises it
``from`` the original.

Messages name *where*: ``str(err)`` ends with ``[file F, member M, offset N]`` for the parts
that are known, so a one-line message is enough for an operator to find the damage.

Everything rendered for an operator goes through :func:`escape`: names read from files (databases,
RPs, tar members, series keys, file names that are not UTF-8) may hold newlines, ESC or bytes that
are not text, and must never forge a second ``influx-archive: error:`` line or drive the terminal.
Paths inside a private work directory (a sealed archive's spool) are shown by the name the user
knows, ``ARCHIVE.tar.zst::member`` (:func:`register_display_prefix`).
"""

from __future__ import annotations

import os
import threading

EXIT_OK = 0
EXIT_DAMAGED = 1
EXIT_USAGE = 2
EXIT_FAILURE = 3
EXIT_SALVAGED = 4
EXIT_BUSY = 5
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + 15

# Codes of the outcomes that are not an ArchiveError (see the table above).
CODE_USAGE = "usage"
CODE_UNEXPECTED = "unexpected"
CODE_INTERRUPTED = "interrupted"
CODE_TERMINATED = "terminated"


def escape(text: str) -> str:
    """``text`` with every character that is not printable replaced by a visible escape, so it
    stays on one line and cannot drive a terminal: ``\\n``, ``\\x1b`` (controls, DEL, C1),
    ``\\xff`` for an invalid UTF-8 byte kept as a lone surrogate (``surrogateescape``), ``\\u202e``
    for format characters (bidi overrides, zero-width) and line/paragraph separators. Idempotent
    on its own output; printable text (any script) is returned unchanged."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable():
            out.append(c)
            continue
        o = ord(c)
        if 0xDC80 <= o <= 0xDCFF:  # surrogateescape: the original byte
            out.append(f"\\x{o - 0xDC00:02x}")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


#: Names longer than this are shown cut, with their length (a 1 MiB tar member name is one line,
#: but not one an operator can read).
MAX_SHOWN = 4096


def clip(text: str) -> str:
    """``text`` cut to :data:`MAX_SHOWN` characters, saying how long it was."""
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}...({len(text)} characters)"


def show(value: object) -> str:
    """A name read from a file, for a message: bytes (series keys, raw names) as text (invalid
    UTF-8 as ``\\xNN``), never a Python ``b'...'`` repr; anything else through ``str``; escaped
    and clipped (:func:`clip`)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    return escape(clip(str(value)))


_DISPLAY_LOCK = threading.Lock()
_DISPLAY: dict[str, str] = {}  # private directory -> the name the user knows it by


def register_display_prefix(private_dir: str | os.PathLike[str], shown_as: str | os.PathLike[str]) -> None:
    """Show paths under ``private_dir`` as ``SHOWN_AS::relative/path`` in every message (a sealed
    archive's spool directory is deleted when the run ends; its archive is what the user has).
    Kept for the life of the process: errors are printed after the directory is gone."""
    with _DISPLAY_LOCK:
        _DISPLAY[os.fspath(private_dir).rstrip(os.sep)] = os.fspath(shown_as)


def display_path(path: str | None) -> str | None:
    """``path`` as the user should see it (see :func:`register_display_prefix`); unescaped."""
    if path is None or not _DISPLAY:
        return path
    for prefix, shown in _DISPLAY.items():
        if path == prefix:
            return shown
        if path.startswith(prefix + os.sep):
            return f"{shown}::{path[len(prefix) + 1:]}"
    return path


def display_text(text: str) -> str:
    """``text`` with every private directory it mentions shown as its public name; unescaped."""
    if not _DISPLAY:
        return text
    for prefix, shown in _DISPLAY.items():
        if prefix in text:
            text = text.replace(prefix + os.sep, shown + "::").replace(prefix, shown)
    return text


def format_where(
    path: str | None = None, member: str | None = None, offset: int | None = None, field: str | None = None
) -> str:
    """`` [file F, member M, offset N, field X]`` for the parts that are known ("" when none is)."""
    parts = []
    if path is not None:
        parts.append(f"file {escape(clip(display_path(path)))}")  # type: ignore[arg-type]
    if member is not None:
        parts.append(f"member {escape(clip(member))}")
    if offset is not None:
        parts.append(f"offset {offset}")
    if field is not None:
        parts.append(f"field {escape(field)}")
    return f" [{', '.join(parts)}]" if parts else ""


class ArchiveError(Exception):
    """Base of every error raised on purpose by influx-archive."""

    exit_code = EXIT_FAILURE
    code = "failure"

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
        """One line: the escaped message and where (see :func:`escape`)."""
        return f"{escape(display_text(self.message))}{self.where()}"

    def located(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        member: str | None = None,
        offset: int | None = None,
    ) -> ArchiveError:
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
    code = "damaged"


class ChecksumError(FormatError):
    """A stored checksum (block CRC32, sha256 in a sealed archive, gzip CRC) does not match."""

    code = "damaged.checksum"


class TruncatedError(FormatError):
    """Input ends before a structure that must be there (short read, torn tail, cut tar)."""

    code = "damaged.truncated"


class UsageError(ArchiveError):
    """Bad arguments or a path that is not usable as asked (exit 2)."""

    exit_code = EXIT_USAGE
    code = "usage"


class SourceError(UsageError):
    """A path is missing, unreadable, or not a recognised backup / data directory kind."""

    code = "usage.source"


class TargetError(ArchiveError):
    """The destination cannot be written as asked: exists, not empty, conflicts (exit 3)."""

    exit_code = EXIT_FAILURE
    code = "target"


class UnsupportedError(ArchiveError):
    """Valid input that this version cannot handle (e.g. a value NaN in a float block)."""

    exit_code = EXIT_FAILURE
    code = "unsupported"


class BusyError(TargetError):
    """Another run holds the target's lock, or a live process holds the target open (exit 5)."""

    exit_code = EXIT_BUSY
    code = "target.busy"


class SourceIOError(ArchiveError):
    """The operating system refused to read the source (EACCES, EIO, ...): not damage (exit 3).
    The message says ``source`` and names the path."""

    exit_code = EXIT_FAILURE
    code = "source.io"


class TargetIOError(TargetError):
    """The operating system refused a write to the target (ENOSPC, EACCES, EROFS, ...) (exit 3).
    The message says ``target`` and names the path."""

    exit_code = EXIT_FAILURE
    code = "target.io"
