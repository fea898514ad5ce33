"""Which kind of source a directory is: a legacy backup, a portable backup or a server root."""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from .legacy import LEGACY_META_RE, open_legacy
from .live import open_live
from .ondisk import DiskSource, listdir


def _is_manifest(name: str) -> bool:
    """``*.manifest``, or what :data:`~.portable.PORTABLE_MANIFEST_RE` matches (a name with a
    ``.manifest`` in it: the portable module is only imported for such a directory)."""
    if name.endswith(".manifest"):
        return True
    if ".manifest" not in name:
        return False
    from .portable import PORTABLE_MANIFEST_RE

    return PORTABLE_MANIFEST_RE.match(name) is not None


def open_dir(p: Path, salvage: bool = False, prescanned: dict | None = None, unread=None) -> DiskSource:
    """``unread``: see :func:`.portable.open_portable` (portable backups only)."""
    names = listdir(p)
    manifests = [n for n in names if _is_manifest(n)]
    metas = [n for n in names if LEGACY_META_RE.match(n)]
    has_live = (p / "meta").is_dir() and (p / "data").is_dir()
    kinds = [k for k, present in (("portable", manifests), ("legacy", metas), ("live", has_live)) if present]
    if len(kinds) > 1:
        raise SourceError(
            "directory mixes several source kinds (" + ", ".join(kinds) + "); point at one of them", path=str(p)
        )
    if manifests:
        from .portable import open_portable  # its manifest and timestamp parsing: portable backups only

        return open_portable(p, [p / n for n in manifests], salvage, prescanned, unread)
    if metas:
        return open_legacy(p, names, salvage, prescanned)
    if has_live:
        return open_live(p, salvage)
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "nothing"
    raise SourceError(
        "not a backup or server root: expected meta.NN files (legacy backup), *.manifest "
        f"(portable backup) or meta/ + data/ (server root); found {shown}",
        path=str(p),
    )
