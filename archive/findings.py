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
        return asdict(self)

    def __str__(self) -> str:
        from .errors import format_where

        return f"{self.severity}: {self.message}{format_where(self.path, self.member, self.offset)}"

    @classmethod
    def from_error(cls, err: Exception, severity: str = ERROR) -> "Finding":
        from .errors import ArchiveError

        if isinstance(err, ArchiveError):
            return cls(severity, err.message, err.path, err.member, err.offset)
        return cls(severity, str(err))
