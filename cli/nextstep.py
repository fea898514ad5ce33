"""What the operator does after a restore: the influxdb.conf lines, the owner, the tsi1 note.

Printed on stderr (stdout stays the plan and the result, for scripts)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from ..archive.errors import escape

PREFIX = "influx-archive: "


def _toml(p: Path) -> str:
    return '"' + str(p.absolute()).replace("\\", "\\\\").replace('"', '\\"') + '"'


def uses_tsi1(datadir: Path) -> Path | None:
    """A sign on disk that the target server runs with ``index-version = "tsi1"``: a database's
    ``_series`` directory or a shard's ``index/`` (None when there is none)."""
    try:
        for db in sorted(os.listdir(datadir)):
            dbp = datadir / db
            if (dbp / "_series").is_dir():
                return dbp / "_series"
            if not dbp.is_dir():
                continue
            for rp in sorted(os.listdir(dbp)):
                rpp = dbp / rp
                if rp == "_series" or not rpp.is_dir():
                    continue
                for sid in sorted(os.listdir(rpp)):
                    if (rpp / sid / "index").is_dir():
                        return rpp / sid / "index"
    except OSError:
        return None
    return None


def _service_user() -> str | None:
    """The Debian package's service user, when this system has it."""
    try:
        return pwd.getpwnam("influxdb").pw_name
    except KeyError:
        return None


def next_steps(metadir: Path, datadir: Path, waldir: Path | None, owner: str | None, *,
               indexed: bool = False) -> list[str]:
    """The lines to print after a restore; ``indexed``: the restore built the tsi1 index itself
    (then there is no tsi1 note)."""
    lines = [PREFIX + "next: in influxdb.conf set these, then start influxd:",
             PREFIX + f"  [meta] dir = {_toml(metadir)}",
             PREFIX + f"  [data] dir = {_toml(datadir)}"]
    if waldir is not None:
        lines.append(PREFIX + f"  [data] wal-dir = {_toml(waldir)}")
    user = _service_user()
    if owner is None and os.geteuid() == 0 and user is not None:
        who = user
        lines.append(PREFIX + f"note: the files were written as root; if influxd runs as {who}, restore with "
                     f"--owner {who} (or chown -R {who}: the directories above)")
    found = None if indexed else uses_tsi1(datadir)
    if found is not None:
        wal = f" --waldir {waldir}" if waldir is not None else ""
        own = f" --owner {owner}" if owner else ""
        lines.append(PREFIX + f"note: this server uses tsi1 ({found} exists): restored shards open with the inmem "
                     f"index until you run (influxd stopped): influx-archive build-tsi --datadir {datadir}{wal}{own}")
    return [escape(ln) for ln in lines]
