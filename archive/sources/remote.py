"""A running influxd as a source, read over its snapshotter port (archive/snapshotter.py;
docs/formats.md#snapshotter-protocol).

:func:`open_remote` takes the metastore (request type 1) and the shard listing (type 3), then
lists every shard's files by fetching its tar (type 0) into a private spool, scanning it and
deleting it again: one shard on disk at a time, never a copy of the server. Opening a shard
(:meth:`RemoteSource.open_shard`) fetches its tar again (the server may have flushed its cache or
compacted meanwhile: the shard's file list is replaced by what this fetch holds) and reads it in
place while the context lasts; the spool file is removed when it ends. The server is only read:
type 0 makes influxd flush its cache to a new TSM file, which is what its own backup does.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...meta import files as metafiles
from ...tsm import naming
from ..errors import SourceError, show
from ..findings import SHARD_NOT_IN_META, WARNING, Finding
from ..snapshotter import Client, ProtocolError, TarEntry
from ..spools import make_spool, remove_spool
from .model import OpenShard, Shard, fill_from_meta
from .ondisk import DiskSource, add_tar_shard

KIND = "remote"


def check_shard_members(entries: list[TarEntry], key: tuple[str, str, int], where: str) -> None:
    """Every member of a shard tar from the server is ``<db>/<rp>/<id>/<TSM or tombstone file>``
    of that very shard (what influxd sends); anything else is a :class:`ProtocolError`, never a
    member skipped with a warning (a source would then read as holding less than it does)."""
    prefix = f"{key[0]}/{key[1]}/{key[2]}/"
    for e in entries:
        base = e.name[len(prefix):]
        if not e.name.startswith(prefix) or "/" in base or naming.classify(base) not in ("tsm", "tombstone"):
            raise ProtocolError(f"{where}: the tar of shard {key[2]} holds a member that is not a TSM or tombstone "
                                f"file of that shard: {show(e.name)}")


@dataclass
class RemoteSource(DiskSource):
    """A :class:`~.ondisk.DiskSource` whose shard tars are fetched from influxd when needed."""

    client: Client | None = None
    spool_dir: str | None = None
    _seq: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def display_path(self) -> str:
        return f"influxd at {self.client.address}" if self.client is not None else self.path

    @property
    def sequential(self) -> bool:
        return True  # one shard fetched at a time

    def reads_from(self) -> list[str]:
        return [self.spool_dir] if self.spool_dir else []

    def _fetch(self, shard: Shard) -> Path:
        """Fetch ``shard``'s tar into a new spool file and make it the shard's file list."""
        assert self.client is not None and self.spool_dir is not None
        with self._lock:
            self._seq += 1
            path = Path(self.spool_dir) / f"s{shard.id}-{self._seq}.tar"
        try:
            with open(path, "w+b") as f:
                entries = self.client.shard_backup(shard.id, f)
            check_shard_members(entries, shard.key, f"snapshotter {self.client.address}")
            with self._lock:
                shard.files.clear()
                shard.containers.clear()
                shard._resolved = None
                add_tar_shard(self, path, gz=False, increment=0, fallback=shard.key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        return path

    @contextlib.contextmanager
    def open_shard(self, shard: Shard, *, tmpdir: str | None = None, spool_gz: bool = True) -> Iterator[OpenShard]:
        path = self._fetch(shard)
        try:
            with DiskSource.open_shard(self, shard, tmpdir=tmpdir, spool_gz=spool_gz) as opened:
                yield opened
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def close(self) -> None:
        if self.spool_dir is not None:
            remove_spool(self.spool_dir)
            self.spool_dir = None


def open_remote(host: str | Client, *, salvage: bool = False, spool_base: str | None = None) -> RemoteSource:
    """The running influxd at ``host`` (``HOST:PORT`` of its snapshotter port) as a source."""
    client = host if isinstance(host, Client) else Client(host)
    blob = client.metastore()
    meta = metafiles.parse_meta_nn(blob, path=f"metastore of influxd at {client.address}")
    src = RemoteSource(kind=KIND, path=str(client.address), meta=meta.data,
                       meta_origin=f"influxd at {client.address}", salvage=salvage, client=client)
    src.spool_dir = make_spool("remote", spool_base)
    try:
        listed = client.shard_paths()
        fill_from_meta(src)
        known = {s.key for s in src.shards}
        for db, rp, sid in listed:
            if (db, rp, sid) not in known:
                src.findings.append(Finding(
                    WARNING, f"shard {show(db)}/{show(rp)}/{sid} is on the server but not in its metastore",
                    path=src.meta_origin, code=SHARD_NOT_IN_META))
        on_server = set(listed)
        src.shards = [s for s in src.shards if s.key in on_server]
        for shard in src.shards:
            path = src._fetch(shard)
            os.unlink(path)  # listed; fetched again when opened
        if not src.shards and (src.meta is None or not src.meta.databases):
            raise SourceError(f"influxd at {client.address} has no databases")
    except BaseException:
        src.close()
        raise
    return src
