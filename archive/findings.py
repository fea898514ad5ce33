"""Findings: problems noticed while reading a source, as data (the CLI decides how to print them).

``verify`` yields them; other verbs collect them (e.g. a shard directory the metastore does not know)
and show them as warnings.

Every finding has a ``code``: a stable dotted identifier, ``AREA.WHAT``, that ``--json`` output
carries (scripts match on it, never on the message, which may be reworded). The text output does
not show it. A finding made from an error (:meth:`Finding.from_error`) takes the error's own code
(``damaged``, ``damaged.checksum``, ``damaged.truncated``, ``source.io``, ... : the table in
:mod:`influx_archive.archive.errors`); every other finding is given one of the constants below at
the place that makes it (``Finding(WARNING, msg, path=p, code=SHARD_NOT_IN_META)``). A code, once
released, never changes meaning; a new kind of finding gets a new constant here.

==============================  ==========================================================
code                            the finding
==============================  ==========================================================
``salvage.file_left_out``       ``--salvage``: a damaged / unreadable file was left out
``salvage.block_left_out``      ``--salvage``: a TSM block whose CRC fails was left out
``tar.member_ignored``          a tar member that is not part of a backup, ignored
``tar.member_refused``          a tar member never extracted (unsafe path, link, device...)
``tar.member_wrong_shard``      a member belongs to another shard than its tar file names
``tar.unreadable``              a shard tar cannot be read
``backup.partial_download``     an unfinished download left by ``influxd backup``, ignored
``backup.not_a_backup_file``    a file in a legacy backup directory that is not one, ignored
``manifest.file_missing``       a file the manifest lists is missing
``manifest.file_unreadable``    a file the manifest lists cannot be read
``manifest.duplicate_entry``    the manifest lists a file twice; the second entry is ignored
``manifest.meta_size``          the metastore blob's size differs from the manifest's
``meta.missing``                no metastore (a server root without ``meta/meta.db``)
``meta.duplicate``              a database, RP, shard group or shard listed twice
``meta.group_start_after_end``  a shard group stored with its start after its end
``shard.not_in_meta``           a shard on disk that the metastore does not list
``shard.dir_not_a_number``      a directory under a retention policy that is not a shard id
``name.non_ascii_digits``       a number in a name written with non-ASCII digits
``file.unreadable``             a data file the operating system refused to read
``wal.torn_tail``               a WAL segment's torn tail (influxd truncates it there)
``wal.damaged_entry``           a damaged WAL entry that reading resumed after
``wal.not_given``               a bare data directory read without its WAL directory
``tsi1.series_file_damaged``    a series file partition cannot be read (file and offset)
``tsi1.series_file_missing``    shards of a database have ``index/`` but it has no ``_series``
``tsi1.index_damaged``          a shard's ``index/`` (MANIFEST, log or index file) is damaged
``tsi1.series_not_in_file``     series of a shard's data missing from the series file
``tsi1.series_not_in_index``    series of a shard's data missing from the shard's ``index/``
``tsi1.index_id_unknown``       an index lists series ids the series file does not hold
``tsi1.shard_without_index``    a shard without ``index/`` in a database using tsi1
``unexpected``                  made from an exception that is not an ArchiveError
==============================  ==========================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"
INFO = "info"

# Codes (see the table above).
FILE_LEFT_OUT = "salvage.file_left_out"
BLOCK_LEFT_OUT = "salvage.block_left_out"
MEMBER_IGNORED = "tar.member_ignored"
MEMBER_REFUSED = "tar.member_refused"
MEMBER_WRONG_SHARD = "tar.member_wrong_shard"
TAR_UNREADABLE = "tar.unreadable"
PARTIAL_DOWNLOAD = "backup.partial_download"
NOT_A_BACKUP_FILE = "backup.not_a_backup_file"
MANIFEST_FILE_MISSING = "manifest.file_missing"
MANIFEST_FILE_UNREADABLE = "manifest.file_unreadable"
MANIFEST_DUPLICATE_ENTRY = "manifest.duplicate_entry"
MANIFEST_META_SIZE = "manifest.meta_size"
META_MISSING = "meta.missing"
META_DUPLICATE = "meta.duplicate"
META_GROUP_START_AFTER_END = "meta.group_start_after_end"
SHARD_NOT_IN_META = "shard.not_in_meta"
SHARD_DIR_NOT_A_NUMBER = "shard.dir_not_a_number"
NON_ASCII_DIGITS = "name.non_ascii_digits"
FILE_UNREADABLE = "file.unreadable"
WAL_TORN_TAIL = "wal.torn_tail"
WAL_DAMAGED_ENTRY = "wal.damaged_entry"
WAL_NOT_GIVEN = "wal.not_given"
TSI1_SERIES_FILE_DAMAGED = "tsi1.series_file_damaged"
TSI1_SERIES_FILE_MISSING = "tsi1.series_file_missing"
TSI1_INDEX_DAMAGED = "tsi1.index_damaged"
TSI1_SERIES_NOT_IN_FILE = "tsi1.series_not_in_file"
TSI1_SERIES_NOT_IN_INDEX = "tsi1.series_not_in_index"
TSI1_INDEX_ID_UNKNOWN = "tsi1.index_id_unknown"
TSI1_SHARD_WITHOUT_INDEX = "tsi1.shard_without_index"
UNEXPECTED = "unexpected"

CODES = frozenset({
    FILE_LEFT_OUT, BLOCK_LEFT_OUT, MEMBER_IGNORED, MEMBER_REFUSED, MEMBER_WRONG_SHARD, TAR_UNREADABLE,
    PARTIAL_DOWNLOAD, NOT_A_BACKUP_FILE, MANIFEST_FILE_MISSING, MANIFEST_FILE_UNREADABLE,
    MANIFEST_DUPLICATE_ENTRY, MANIFEST_META_SIZE, META_MISSING, META_DUPLICATE, META_GROUP_START_AFTER_END,
    SHARD_NOT_IN_META, SHARD_DIR_NOT_A_NUMBER, NON_ASCII_DIGITS, FILE_UNREADABLE, WAL_TORN_TAIL,
    WAL_DAMAGED_ENTRY, WAL_NOT_GIVEN, UNEXPECTED,
    TSI1_SERIES_FILE_DAMAGED, TSI1_SERIES_FILE_MISSING, TSI1_INDEX_DAMAGED, TSI1_SERIES_NOT_IN_FILE,
    TSI1_SERIES_NOT_IN_INDEX, TSI1_INDEX_ID_UNKNOWN, TSI1_SHARD_WITHOUT_INDEX,
})
"""Every code defined here (an error's own codes come on top: :mod:`influx_archive.archive.errors`)."""


@dataclass(frozen=True)
class Finding:
    """One problem found (or left out by ``--salvage``): severity, message, where, stable code."""

    severity: str
    message: str
    path: str | None = None
    member: str | None = None
    offset: int | None = None
    code: str | None = None  # stable identifier (see above); every call site names one

    def to_dict(self) -> dict:
        """As data, paths shown as the user knows them (a sealed archive, not its spool)."""
        from .errors import display_path, display_text

        d = asdict(self)
        d["message"] = display_text(self.message)
        d["path"] = display_path(self.path)
        return d

    def __str__(self) -> str:
        """One line, escaped (names read from files cannot start a second line); the code is not
        shown (the text output is what it always was)."""
        from .errors import display_text, escape, format_where

        return (
            f"{self.severity}: {escape(display_text(self.message))}{format_where(self.path, self.member, self.offset)}"
        )

    @classmethod
    def from_error(cls, err: Exception, severity: str = ERROR) -> Finding:
        """The finding for ``err``: its message and location, and the error's code."""
        from .errors import ArchiveError

        if isinstance(err, ArchiveError):
            return cls(severity, err.message, err.path, err.member, err.offset, code=err.code)
        return cls(severity, str(err), code=UNEXPECTED)
