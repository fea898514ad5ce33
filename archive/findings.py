"""Findings: problems noticed while reading a source, as data (the CLI decides how to print them).

``verify`` yields them; other verbs collect them (e.g. a shard directory the metastore does not know)
and show them as warnings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: str
    message: str
    path: Optional[str] = None
    member: Optional[str] = None
    offset: Optional[int] = None

    def to_dict(self) -> dict:
        """As data, paths shown as the user knows them (a sealed archive, not its spool)."""
        from .errors import display_path, display_text

        d = asdict(self)
        d["message"] = display_text(self.message)
        d["path"] = display_path(self.path)
        return d

    def __str__(self) -> str:
        """One line, escaped (names read from files cannot start a second line)."""
        from .errors import display_text, escape, format_where

        return f"{self.severity}: {escape(display_text(self.message))}{format_where(self.path, self.member, self.offset)}"

    @classmethod
    def from_error(cls, err: Exception, severity: str = ERROR) -> "Finding":
        from .errors import ArchiveError

        if isinstance(err, ArchiveError):
            return cls(severity, err.message, err.path, err.member, err.offset)
        return cls(severity, str(err))
