"""One model for every kind of InfluxDB 1.x source: ``open_source(path)``.

Recognised (see BACKUP_META.md §2-§3 and TSM_WAL.md §0):

=========  ==================================================================================
kind       what
=========  ==================================================================================
legacy     a directory of ``meta.NN`` + ``<db>.<rp>.<id5>.NN`` shard tars (``influxd backup``)
portable   a directory of ``<ts>.manifest`` + ``<ts>.meta`` + ``<ts>.s<id>.tar.gz``
           (``influxd backup -portable``), one or several manifests (incremental sets)
live       a stopped server root holding ``meta/``, ``data/`` and usually ``wal/``
file       a single ``.tsm``, ``.tombstone``, ``.wal``, ``meta.NN``, ``.meta``, ``meta.db``,
           ``.manifest``, shard ``.tar`` or ``.tar.gz``
=========  ==================================================================================

The model exposes the metastore (``Source.meta``, a :class:`~influx_archive.meta.model.Data` or
``None``) and the shards (:class:`Shard`: database, RP, id, owning shard-group time range, data
files, WAL segments). Nothing is extracted: TSM files inside an uncompressed tar are read in place
through windows (:class:`~influx_archive.archive.streams.SubFile`); a ``.tar.gz`` is spooled to one
temporary file per shard while that shard is open (:meth:`Source.open_shard`).

Tar members are never trusted: only regular-file members named ``<db>/<rp>/<id>/<file>`` with a
plain file name are used; anything else is reported as a finding and ignored (links, devices,
FIFOs and unsafe names as :data:`REFUSED_MEMBER`, which ``verify`` counts as errors). Tar headers
are read with bounds (:mod:`.untrusted`); sparse members are refused as unsupported.

Nothing is skipped silently: in a server root a TSM / tombstone / WAL name that is not a regular
readable file (a dangling link, a FIFO, a directory, a device behind a link, unreadable) is an
error finding, and so is a number written with non-ASCII digits anywhere a number is read from a
name (``tsm.naming``). Names of files that a portable manifest lists must be plain names in the
backup directory. A metastore listing one database, retention policy or shard id twice is an error.
"""

from __future__ import annotations

import bisect
import calendar
import contextlib
import gzip
import os
import re
import stat
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from ...meta import files as metafiles
from ...meta.format import MAX_META_FILE_SIZE
from ...meta.model import Data, decode_data, shard_group_range
from ...tsm import naming
from ..errors import ArchiveError, FormatError, SourceError, SourceIOError, TargetIOError, TruncatedError, UnsupportedError, show
from ..findings import ERROR, WARNING, Finding
from ..streams import SubFile
from ..threads import map_on_cores
from ..untrusted import SparseMember, open_regular, open_tar, probe_regular

# ASCII digits only (re.ASCII): influxd parses these numbers with Go's strconv (see tsm.naming).
LEGACY_META_RE = re.compile(r"^meta\.(\d+)$", re.ASCII)
LEGACY_SHARD_RE = re.compile(r"^(?P<prefix>.+)\.(?P<id>\d+)\.(?P<n>\d+)$", re.ASCII)
PORTABLE_MANIFEST_RE = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)\.manifest$", re.ASCII)
TSM_NAME_RE = re.compile(r"^\d+-\d+\.tsm$", re.ASCII)
TOMBSTONE_NAME_RE = re.compile(r"^\d+-\d+\.tombstone$", re.ASCII)
WAL_NAME_RE = re.compile(r"^_\d+\.wal$", re.ASCII)
# The same shapes with anything where the numbers go: a match here that the ASCII pattern refuses
# is a name with non-ASCII digits (reported, never taken for another file or another shard).
_LOOSE_META_RE = re.compile(r"^meta\.([^.]+)$")
_LOOSE_SHARD_RE = re.compile(r"^(?P<prefix>.+)\.(?P<id>[^.]+)\.(?P<n>[^.]+)$")

#: Message prefix of a tar member refused as hostile (unsafe name, link, device, FIFO): a warning
#: for verbs that go on without it, an error for ``verify``.
REFUSED_MEMBER = "refused tar member"
#: Message prefix of a tar member that is simply not shard data (ignored, a warning everywhere).
IGNORED_MEMBER = "ignored tar member"

#: Upper bound for a spooled ``.tar.gz`` relative to the size the manifest records (bomb guard).
SPOOL_SLACK = 1 << 20


def file_kind(name: str) -> str:
    """Classify a shard file by its base name: ``tsm``, ``tombstone``, ``wal``, ``other``, or
    ``bad-number`` (shaped like one of the first three with non-ASCII digits; see tsm.naming)."""
    return naming.classify(name)


def tsm_order_key(name: str) -> tuple[int, int]:
    """(generation, sequence) of ``GGGGGGGGG-SSSSSSSSS.tsm`` / ``.tombstone`` (TSM_WAL.md §1.9).
    Only a single-file source (``inspect x.tsm``) can hold another name: it sorts as (0, 0)."""
    parsed = naming.parse_name(name)
    return (parsed[0], parsed[1]) if parsed is not None else (0, 0)


def non_ascii_number(what: str, path: str, member: Optional[str] = None) -> Finding:
    """The finding for a number in a name written with non-ASCII digits (``٢``, ``²``)."""
    return Finding(
        ERROR,
        f"{what} is written with non-ASCII digits: influxd cannot read it as a number, and it is not "
        "taken for the ASCII number it resembles",
        path=path,
        member=member,
    )


@dataclass
class ShardFile:
    """One data file of a shard, wherever it lives."""

    name: str  # base name in the shard directory
    kind: str  # tsm | tombstone | wal | other
    size: int
    container: str  # path on disk: the file itself, or the tar / tar.gz holding it
    member: Optional[str] = None  # member name inside the container tar
    increment: int = 0  # which backup set of an incremental source provided it (0 = first)
    gz: bool = False  # container is a .tar.gz (must be spooled to seek)
    data_offset: Optional[int] = None  # offset of the member data inside an uncompressed tar
    mtime: Optional[int] = None  # tar member mtime (s): a block-filtered export copy gets the export time
    #: when its backup run started (epoch s): a portable manifest's ``<ts>``; for legacy tars the
    #: mtime of the newest ``meta.NN`` older than the tar (the run writes its metastore first)
    set_time: Optional[int] = None

    @property
    def maybe_filtered(self) -> bool:
        """Written during its backup run: what ``influxd backup -start/-end`` does to the block-
        filtered copy of a file it cuts (``filterFileToBackup`` streams a fresh temp file). A file
        already on disk when the run started has an older mtime."""
        return self.mtime is not None and self.set_time is not None and self.mtime >= self.set_time

    @property
    def origin(self) -> str:
        return f"{self.container}::{self.member}" if self.member else self.container

    @property
    def stem(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass
class Shard:
    database: str
    retention_policy: str
    id: int
    group_id: Optional[int] = None
    group_start: Optional[int] = None  # ns, inclusive (a start stored after the end reads as the lowest time)
    group_end: Optional[int] = None  # ns, exclusive
    in_meta: bool = False
    files: list[ShardFile] = field(default_factory=list)  # tsm + tombstone (+ other) from every increment
    wal: list[ShardFile] = field(default_factory=list)  # live sources only, influxd's replay order
    containers: list[str] = field(default_factory=list)  # shard tars / dirs that provided files
    #: increments known to be ``-start/-end`` backups (a copy smaller than a same-named one)
    range_increments: frozenset = frozenset()
    _resolved: Optional[tuple] = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.database, self.retention_policy, self.id)

    def data_files(self) -> list[ShardFile]:
        return [f for f in self.files if f.kind in ("tsm", "tombstone")]

    def layers(self) -> list["Layer"]:
        """The shard's current state across every increment, as :class:`Layer` s oldest to newest
        by (generation, sequence). The rules (TSM files are immutable in influxd):

        * **A name is one file.** Copies of one TSM name from several increments are the same
          file; a ``-start/-end`` backup's copy holds a subset of its blocks. The largest copy is
          used; copies of another size are its ``twins`` and their blocks are kept too (the reader
          drops a twin whose index is a subset of the largest copy's).
        * **Tombstones grow.** The tombstone of a name from the latest increment that has one
          applies to every copy of that name.
        * **Compactions replace.** influxd names a compaction output after the highest generation
          of its inputs with a higher sequence (TSM_WAL.md §1.9), so a file (g, s) of an earlier
          increment is replaced by a later increment's (G, S) with G >= g and S > s. When one such
          later copy is whole, the earlier file is dropped (data deleted before the compaction
          stays deleted; influxd's own restore of several increments resurrects it). When every
          such copy may be block-filtered (:meth:`ShardFile.maybe_filtered`, or its increment is
          a range backup: see :func:`mark_range_increments`), the earlier file stays, masked by
          its descendant: the copy of the nearest later increment with the smallest G >= g (live
          files cover contiguous generation ranges named after their highest). Per key, its
          points inside the span that copy covers are replaced by the copy's (a filtered copy
          holds every block of the key inside that span), its points outside are kept (filtered
          out, not deleted), and the copy's tombstones apply to it too (it stands in for the
          copy's missing blocks). The copy's own mask (the next backup's descendant) applies in
          turn, so a chain of range backups masks as a whole.

        Resolution is O(n log n) in the number of files (Fenwick trees over generations), with
        at most one mask per file.
        """
        stamp = (len(self.files), self.range_increments)
        if self._resolved is not None and self._resolved[0] == stamp:
            return self._resolved[1]
        out = resolve_layers(self.files, self.range_increments)
        self._resolved = (stamp, out)
        return out

    def effective_files(self) -> list[ShardFile]:
        """Every TSM and tombstone file the current state reads (twins included), sorted by
        (generation, sequence, kind)."""
        out: list[ShardFile] = []
        for layer in self.layers():
            out.extend(layer.twins)
            out.append(layer.tsm)
            if layer.tomb is not None:
                out.append(layer.tomb)
        return sorted(out, key=lambda f: (tsm_order_key(f.name), f.kind, f.increment))

    def tsm_layers(self) -> list[tuple[ShardFile, Optional[ShardFile]]]:
        """(tsm, tombstone-or-None) pairs, oldest to newest by (generation, sequence): the largest
        copy of each file (see :meth:`layers`; :attr:`plain` says whether that is everything)."""
        return [(layer.tsm, layer.tomb) for layer in self.layers()]

    @property
    def plain(self) -> bool:
        """Whether the current state is exactly the files of :meth:`tsm_layers` (no twin copies,
        no masked file): then they can be copied as they are."""
        return all(layer.plain for layer in self.layers())

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.data_files())


@dataclass
class Layer:
    """One TSM file of a shard's current state (see :meth:`Shard.layers`)."""

    tsm: ShardFile  # the largest copy of the file
    tomb: Optional[ShardFile] = None  # its tombstone (latest increment that has one)
    twins: list[ShardFile] = field(default_factory=list)  # other copies of the same name, other sizes
    #: the later, maybe block-filtered compaction output that holds this file's data (at most one:
    #: its own mask covers the backups after it)
    masks: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.tsm.name

    @property
    def plain(self) -> bool:
        return not self.twins and not self.masks


class _MaxTree:
    """Fenwick tree over ranks 1..n: raise a rank's value, ask the maximum over ranks 1..i."""

    def __init__(self, n: int) -> None:
        self._t = [-1] * (n + 1)

    def raise_to(self, i: int, value: int) -> None:
        t = self._t
        while i < len(t):
            if t[i] < value:
                t[i] = value
            i += i & -i

    def max_upto(self, i: int) -> int:
        best = -1
        t = self._t
        while i > 0:
            if t[i] > best:
                best = t[i]
            i -= i & -i
        return best


class _MinTree:
    """Fenwick tree over ranks 1..n: lower a rank's value, ask the minimum over ranks 1..i."""

    def __init__(self, n: int) -> None:
        self._t: list = [None] * (n + 1)

    def lower_to(self, i: int, value) -> None:
        t = self._t
        while i < len(t):
            if t[i] is None or value < t[i]:
                t[i] = value
            i += i & -i

    def min_upto(self, i: int):
        best = None
        t = self._t
        while i > 0:
            if t[i] is not None and (best is None or t[i] < best):
                best = t[i]
            i -= i & -i
        return best


def resolve_layers(files: list[ShardFile], range_increments: frozenset = frozenset()) -> list[Layer]:
    """:meth:`Shard.layers` of these files (any order). O(n log n)."""
    copies: dict[str, list[ShardFile]] = {}
    tombs: dict[str, ShardFile] = {}
    for f in files:
        if f.kind == "tsm":
            copies.setdefault(f.name, []).append(f)
        elif f.kind == "tombstone":
            cur = tombs.get(f.stem)
            if cur is None or f.increment >= cur.increment:
                tombs[f.stem] = f
    layers: dict[str, Layer] = {}
    newest: dict[str, int] = {}  # name -> latest increment holding a copy
    for name, group in copies.items():
        # largest copy first; among equal sizes the latest increment (identical bytes expected)
        group.sort(key=lambda f: (-f.size, -f.increment))
        base = group[0]
        twins: list[ShardFile] = []
        sizes = {base.size}
        for f in group[1:]:
            if f.size not in sizes:
                sizes.add(f.size)
                twins.append(f)
        twins.sort(key=lambda f: f.increment)
        layers[name] = Layer(base, tombs.get(base.stem), twins)
        newest[name] = max(f.increment for f in group)

    def filtered(f: ShardFile) -> bool:
        return f.increment in range_increments or f.maybe_filtered

    # Supersession: file A (g, s), newest increment a, is replaced by a copy of B (G, S) with
    # increment > a, G >= g, S > s. Walk copies from the newest increment down; before asking
    # about the files whose newest increment is a, every copy of a later increment is in the trees
    # (keyed by generation rank, descending, holding the highest sequence seen).
    gens = sorted({tsm_order_key(n)[0] for n in layers}, reverse=True)
    rank = {g: i + 1 for i, g in enumerate(gens)}
    whole_tree = _MaxTree(len(gens))
    # for masks: the nearest later maybe-filtered copy with G >= g, i.e. the smallest
    # (increment, G, -S): A's descendant in the next backup that shows one (live files cover
    # contiguous generation ranges, named after their highest, so the file holding A's data
    # is the one with the smallest G >= g). Its own mask covers the backups after it.
    part_tree = _MinTree(len(gens))
    all_copies = sorted((f for group in copies.values() for f in group), key=lambda f: -f.increment)
    by_newest: dict[int, list[str]] = {}
    for name, inc in newest.items():
        by_newest.setdefault(inc, []).append(name)
    superseded: set[str] = set()
    k = 0
    for inc in sorted(by_newest, reverse=True):
        while k < len(all_copies) and all_copies[k].increment > inc:
            f = all_copies[k]
            g, sq = tsm_order_key(f.name)
            if filtered(f):
                part_tree.lower_to(rank[g], (f.increment, g, -sq, f.name))
            else:
                whole_tree.raise_to(rank[g], sq)
            k += 1
        for name in by_newest[inc]:
            g, sq = tsm_order_key(name)
            if whole_tree.max_upto(rank[g]) > sq:
                superseded.add(name)
                continue
            best = part_tree.min_upto(rank[g])
            if best is not None and -best[2] > sq and best[3] != name:
                layers[name].masks = [best[3]]
    kept = [layer for name, layer in layers.items() if name not in superseded]
    kept.sort(key=lambda layer: tsm_order_key(layer.name))
    return kept


def mark_range_increments(shards: list[Shard]) -> frozenset:
    """Increments that are ``-start/-end`` backups: they hold a copy of a TSM file smaller than a
    copy of the same name in another increment (the same immutable file, block-filtered). One
    backup run uses one time range for every shard, so the evidence of one shard marks the
    increment for all of them. Sets :attr:`Shard.range_increments`; returns the set."""
    found: set[int] = set()
    for sh in shards:
        sizes: dict[str, dict[int, int]] = {}
        for f in sh.files:
            if f.kind == "tsm":
                per = sizes.setdefault(f.name, {})
                per[f.increment] = max(per.get(f.increment, 0), f.size)
        for per in sizes.values():
            if len(set(per.values())) > 1:
                top = max(per.values())
                found.update(inc for inc, size in per.items() if size < top)
    out = frozenset(found)
    for sh in shards:
        sh.range_increments = out
    return out


@dataclass
class Source:
    kind: str  # legacy | portable | live | file
    path: str
    meta: Optional[Data] = None
    meta_origin: Optional[str] = None
    file_kind: Optional[str] = None  # for kind == "file": tsm, tombstone, wal, meta.NN, meta, meta.db, manifest, tar, tar.gz
    shards: list[Shard] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    increments: int = 1
    salvage: bool = False  # damaged tars became findings; what was intact before the damage is used
    #: tar listings made elsewhere (a sealed archive scans each shard tar while streaming it)
    prescanned: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ access
    @property
    def display_path(self) -> str:
        """The path the user gave (a sealed archive's own path, not its private work dir)."""
        return self.path

    def _index(self) -> dict[tuple[str, str, int], Shard]:
        """key -> shard, kept in step with ``shards`` (rebuilt when the list changed under it)."""
        idx = self.__dict__.get("_by_key")
        if idx is None or len(idx) != len(self.shards):
            idx = {s.key: s for s in self.shards}
            self.__dict__["_by_key"] = idx
        return idx

    def shard(self, database: str, retention_policy: str, shard_id: int) -> Optional[Shard]:
        for s in self.shards:
            if s.key == (database, retention_policy, shard_id):
                return s
        return None

    def expect(self, shards: list[Shard]) -> None:
        """A hint: these shards are about to be opened by parallel workers (see SealedSource)."""

    @contextlib.contextmanager
    def open_shard(self, shard: Shard, *, tmpdir: Optional[str] = None, spool_gz: bool = True) -> Iterator["OpenShard"]:
        """Open every file of ``shard`` as a seekable binary stream.

        Uncompressed tars are read in place; each ``.tar.gz`` is decompressed once into a
        temporary file that lives until the context ends (one shard's working set). With
        ``spool_gz=False`` files inside a ``.tar.gz`` get no stream: the caller reads their
        container itself while the context holds it (a sealed archive's containers exist only then).
        """
        with contextlib.ExitStack() as stack:
            handles: dict[str, BinaryIO] = {}  # container path -> open base stream
            spooled: dict[str, BinaryIO] = {}
            opened = OpenShard(shard)

            def base_for(f: ShardFile) -> BinaryIO:
                if f.member is None:
                    return stack.enter_context(open_regular(f.container))
                if f.gz:
                    if f.container not in spooled:
                        spooled[f.container] = stack.enter_context(_spool_gz(f.container, tmpdir, self.salvage))
                    return spooled[f.container]
                if f.container not in handles:
                    handles[f.container] = stack.enter_context(open_regular(f.container))
                return handles[f.container]

            for f in shard.files + shard.wal:
                if f.gz and not spool_gz:
                    continue
                base = base_for(f)
                if f.member is None:
                    opened.streams[id(f)] = base
                    continue
                if f.gz:
                    offset = _member_offset(base, f)
                else:
                    offset = f.data_offset if f.data_offset is not None else _member_offset(base, f)
                opened.streams[id(f)] = SubFile(base, offset, f.size, name=f.origin)
            yield opened


class OpenShard:
    """Streams of an opened shard; ``stream(f)`` for a :class:`ShardFile` of that shard."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.streams: dict[int, BinaryIO] = {}

    def stream(self, f: ShardFile) -> BinaryIO:
        s = self.streams[id(f)]
        s.seek(0)
        return s


# ---------------------------------------------------------------------- tar handling


def tar_error(path: str, member: Optional[str], exc: BaseException, offset: Optional[int] = None) -> ArchiveError:
    """The error for ``tarfile`` / gzip failing on ``path`` (``member`` being the last one read).
    An OS error is the source's (not damage); a sparse member is :class:`UnsupportedError`."""
    if isinstance(exc, OSError) and exc.errno is not None:  # EACCES, EIO, ...: the OS, not damage
        return SourceIOError(f"cannot read the source: {exc.strerror or exc}", path=path, member=member, offset=offset)
    if isinstance(exc, SparseMember):
        return UnsupportedError(
            "unsupported sparse tar member: valid tar, but this version does not read sparse members (shard files are never sparse; "
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
    name: str  # full member name
    parts: tuple[str, str, int, str]  # db, rp, id, file
    size: int
    data_offset: int
    mtime: Optional[int] = None


def scan_shard_tar(
    path: str, *, gz: bool, findings: list[Finding], salvage: bool = False, expected_size: Optional[int] = None
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
    last: Optional[str] = None
    size = os.path.getsize(path) if not gz else None
    try:
        if gz:
            fobj = _Limited(gzip_open(path), expected_size, path) if expected_size is not None else gzip_open(path)
            mode = "r|"
        else:
            fobj = open_regular(path)
            mode = "r:"
        with fobj, open_tar(fobj, mode, bufsize=1 << 20) as tf:
            for m in tf:
                tf.members.clear()  # listed once, never looked up: memory stays one member's
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
    except (tarfile.TarError, *GZIP_ERRORS) as exc:
        err = tar_error(path, last, exc)
        if not salvage or isinstance(err, UnsupportedError):
            raise err from None
        findings.append(Finding.from_error(err))
    return out


try:  # ISA-L's igzip inflates TSM data about 2.4x faster than zlib (same gzip, same errors)
    from isal import igzip as _gzip_impl
    from isal.isal_zlib import error as _IsalError

    GZIP_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, _IsalError)
except ImportError:  # pragma: no cover - exercised only where isal is missing
    _gzip_impl = gzip  # type: ignore[assignment]
    GZIP_ERRORS = (OSError, EOFError, zlib.error)


def gzip_open(path: str) -> BinaryIO:
    """A .gz file opened for reading (ISA-L when available); damage raises one of GZIP_ERRORS.
    Anything but a regular file is refused first (see :func:`.untrusted.open_regular`)."""
    open_regular(path).close()
    return _gzip_impl.open(path, "rb")  # type: ignore[return-value]


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
            raise FormatError(f"the manifest records {self.limit} uncompressed bytes, the file holds {self.count}", path=self._path)

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> "_Limited":
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


def _check_member(path: str, m: tarfile.TarInfo, findings: list[Finding]) -> Optional[tuple[str, str, int, str]]:
    def reject(why: str, prefix: str = IGNORED_MEMBER) -> None:
        findings.append(Finding(WARNING, f"{prefix}: {why}", path=path, member=m.name))

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


def _member_mtime(m: tarfile.TarInfo) -> Optional[int]:
    try:
        return int(m.mtime)
    except (TypeError, ValueError, OverflowError):
        return None


def _member_offset(base: BinaryIO, f: ShardFile) -> int:
    """Find a member's data offset in an uncompressed tar stream (used for spooled tars)."""
    base.seek(0)
    with open_tar(base, "r:") as tf:
        for m in tf:
            if m.name == f.member:
                return m.offset_data
    raise FormatError("member vanished from tar", path=f.container, member=f.member)


@contextlib.contextmanager
def _spool_gz(path: str, tmpdir: Optional[str], salvage: bool = False) -> Iterator[BinaryIO]:
    """Decompress a .tar.gz into an anonymous temporary file; yields it open for reading.
    With ``salvage`` a damaged stream keeps what decompressed before the damage."""
    with tempfile.TemporaryFile(dir=tmpdir, prefix="influx-archive-spool-") as tmp:
        try:
            with gzip_open(path) as src:
                while chunk := src.read(1 << 20):
                    try:
                        tmp.write(chunk)
                    except OSError as exc:  # ENOSPC, EDQUOT: where we write, not the source
                        raise TargetIOError(f"cannot write the target's temporary file: {exc.strerror}",
                                            path=tmpdir or tempfile.gettempdir()) from None
        except GZIP_ERRORS as exc:
            if isinstance(exc, OSError) and exc.errno is not None:  # EACCES, EIO: the OS, not damage
                raise SourceIOError(f"cannot read the source: {exc.strerror}", path=path) from None
            if not salvage:
                raise FormatError(f"damaged gzip stream ({exc})", path=path) from exc
        tmp.seek(0)
        yield tmp


# ---------------------------------------------------------------------- detection


def open_source(path: str | os.PathLike[str], *, salvage: bool = False, prescanned: Optional[dict] = None) -> Source:
    """Recognise ``path`` and build its :class:`Source` model (reads metadata and tar listings only).

    ``salvage``: a damaged shard tar is recorded as an error finding (``Source.findings``) and the
    members read intact before the damage are used, instead of failing."""
    p = Path(path)
    if not p.exists():
        raise SourceError("no such file or directory", path=str(p))
    if p.is_dir():
        src = _open_dir(p, salvage, prescanned or {})
    elif p.is_file():
        if p.name.endswith((".tar.zst", ".tzst")) or is_zstd_file(p):
            from .sealed import open_sealed

            src = open_sealed(p, salvage=salvage)
        else:
            src = _open_file(p, salvage)
    else:
        raise SourceError("not a regular file or directory", path=str(p))
    errors = [f for f in src.findings if f.severity == ERROR]
    if errors and not salvage:
        first = errors[0]
        more = f" ({len(errors) - 1} more problems: run verify; --salvage keeps what is intact)" if len(errors) > 1 else ""
        raise FormatError(first.message + more, path=first.path, member=first.member, offset=first.offset)
    return src


def metastore_findings(meta: Optional[Data], origin: Optional[str]) -> list[Finding]:
    """A database, a retention policy of one database, a shard group or a shard id listed twice:
    which entry holds the data is unknown (influxd keeps the first it finds, so data of the
    other is lost or served under the wrong range)."""
    out: list[Finding] = []
    if meta is None:
        return out
    dbs: set[str] = set()
    groups: dict[int, str] = {}
    shards: dict[int, str] = {}
    for db in meta.databases:
        if db.name in dbs:
            out.append(Finding(ERROR, f"database {show(db.name)} is listed twice in the metastore", path=origin))
        dbs.add(db.name)
        rps: set[str] = set()
        for rp in db.retention_policies:
            if rp.name in rps:
                out.append(Finding(ERROR, f"retention policy {show(db.name)}.{show(rp.name)} is listed twice in the metastore", path=origin))
            rps.add(rp.name)
            where = f"{show(db.name)}/{show(rp.name)}"
            for g in rp.shard_groups:
                if g.id in groups:
                    out.append(Finding(ERROR, f"shard group {g.id} is listed twice in the metastore ({groups[g.id]} and {where})", path=origin))
                groups.setdefault(g.id, where)
                for sh in g.shards:
                    if sh.id in shards:
                        out.append(Finding(ERROR, f"shard {sh.id} is listed twice in the metastore ({shards[sh.id]} and {where})", path=origin))
                    shards.setdefault(sh.id, where)
    return out


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def is_zstd_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file starting with the zstd magic (a sealed archive). Never
    opens anything else: a FIFO would block."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open_regular(path) as f:
            return f.read(4) == ZSTD_MAGIC
    except (OSError, ArchiveError):
        return False


def _listdir(p: Path) -> list[str]:
    try:
        return sorted(os.listdir(p))
    except OSError as exc:
        raise SourceIOError(f"cannot read the source directory: {exc.strerror}", path=str(p)) from exc


def _open_dir(p: Path, salvage: bool = False, prescanned: Optional[dict] = None) -> Source:
    names = _listdir(p)
    manifests = [n for n in names if PORTABLE_MANIFEST_RE.match(n) or n.endswith(".manifest")]
    metas = [n for n in names if LEGACY_META_RE.match(n)]
    has_live = (p / "meta").is_dir() and (p / "data").is_dir()
    kinds = [k for k, present in (("portable", manifests), ("legacy", metas), ("live", has_live)) if present]
    if len(kinds) > 1:
        raise SourceError(
            "directory mixes several source kinds (" + ", ".join(kinds) + "); point at one of them", path=str(p)
        )
    if manifests:
        return _open_portable(p, [p / n for n in manifests], salvage, prescanned)
    if metas:
        return _open_legacy(p, names, salvage, prescanned)
    if has_live:
        return _open_live(p, salvage)
    shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "nothing"
    raise SourceError(
        "not a backup or server root: expected meta.NN files (legacy backup), *.manifest "
        f"(portable backup) or meta/ + data/ (server root); found {shown}",
        path=str(p),
    )


def _fill_from_meta(src: Source) -> None:
    """Create (empty) shards for every shard the metastore lists, with group time ranges; a
    metastore that lists something twice is an error finding (:func:`metastore_findings`)."""
    if src.meta is None:
        return
    src.findings.extend(metastore_findings(src.meta, src.meta_origin))
    known = {s.key: s for s in src.shards}
    for db in src.meta.databases:
        for rp in db.retention_policies:
            for g in rp.shard_groups:
                if g.start_time > g.end_time and not g.deleted:
                    src.findings.append(
                        Finding(
                            WARNING,
                            f"shard group {g.id} of {db.name}.{rp.name} has its stored start {g.start_time} after its "
                            f"end {g.end_time} (influxd wraps a start before 1677-09-21T00:12:43Z); read as starting "
                            "at the lowest time",
                            path=src.meta_origin,
                        )
                    )
                for sh in g.shards:
                    key = (db.name, rp.name, sh.id)
                    s = known.get(key)
                    if s is None:
                        s = Shard(db.name, rp.name, sh.id)
                        known[key] = s
                        src.shards.append(s)
                    s.in_meta = True
                    s.group_id = g.id
                    s.group_start, s.group_end = shard_group_range(g)
    src.shards.sort(key=lambda s: (s.database, s.retention_policy, s.id))


def _meta_shard_index(meta: Optional[Data]) -> dict[int, tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}
    if meta is None:
        return out
    for db in meta.databases:
        for rp in db.retention_policies:
            for g in rp.shard_groups:
                for sh in g.shards:
                    out[sh.id] = (db.name, rp.name)
    return out


def _add_tar_shard(
    src: Source,
    tar_path: Path,
    *,
    gz: bool,
    increment: int,
    fallback: Optional[tuple[str, str, int]],
    expected_size: Optional[int] = None,
    set_time: Optional[int] = None,
) -> None:
    """Register the members of one shard tar with the shard(s) they name. ``set_time``: when the
    backup run that wrote the tar started (epoch s), if known."""
    members = src.prescanned.get(str(tar_path))
    if members is None:
        members = scan_shard_tar(
            str(tar_path), gz=gz, findings=src.findings, salvage=src.salvage, expected_size=expected_size
        )
    shards = src._index()
    seen: set[tuple[str, str, int]] = set()
    for m in members:
        db, rp, sid, name = m.parts
        key = (db, rp, sid)
        if fallback is not None and key != fallback:
            src.findings.append(
                Finding(
                    WARNING,
                    f"member belongs to {db}/{rp}/{sid}, not to the shard named by the file ({fallback[0]}/{fallback[1]}/{fallback[2]})",
                    path=str(tar_path),
                    member=m.name,
                )
            )
        s = shards.get(key)
        if s is None:
            s = Shard(db, rp, sid)
            shards[key] = s
            src.shards.append(s)
        seen.add(key)
        s.files.append(
            ShardFile(
                name=name,
                kind=file_kind(name),
                size=m.size,
                container=str(tar_path),
                member=m.name,
                increment=increment,
                gz=gz,
                data_offset=None if gz else m.data_offset,
                mtime=getattr(m, "mtime", None),
                set_time=set_time,
            )
        )
    for key in seen:
        if not shards[key].containers or shards[key].containers[-1] != str(tar_path):
            shards[key].containers.append(str(tar_path))
    if not seen and fallback is not None:
        s = shards.get(fallback)
        if s is None:
            s = Shard(*fallback)
            shards[fallback] = s
            src.shards.append(s)
        s.containers.append(str(tar_path))


def _open_legacy(p: Path, names: list[str], salvage: bool = False, prescanned: Optional[dict] = None) -> Source:
    metas = sorted(
        (int(LEGACY_META_RE.match(n).group(1)), n) for n in names if LEGACY_META_RE.match(n)  # type: ignore[union-attr]
    )
    src = Source("legacy", str(p), salvage=salvage, prescanned=prescanned or {})
    for n in names:
        m = _LOOSE_META_RE.match(n)
        if m and not LEGACY_META_RE.match(n) and naming.numeral_like(m.group(1)):
            src.findings.append(non_ascii_number(f"metastore snapshot number in {show(n)}", str(p / n)))
    # The newest metastore snapshot is the numerically highest meta.NN (influxd takes the lexically
    # last name, so meta.99 beats meta.100 and a stray meta.00.pending wins: BACKUP_META.md §9 #11).
    meta_name = metas[-1][1]
    meta_path = p / meta_name
    src.meta = metafiles.parse_meta_nn(_read_file(meta_path), path=str(meta_path)).data
    src.meta_origin = str(meta_path)
    for n in names:
        if n.endswith(".pending"):
            src.findings.append(Finding(WARNING, "unfinished download left by influxd backup; ignored", path=str(p / n)))
    shard_index = _meta_shard_index(src.meta)
    increments: set[int] = set()
    run_starts = _legacy_run_starts(p, [n for _, n in metas])
    for n in names:
        if LEGACY_META_RE.match(n) or n.endswith(".pending") or _LOOSE_META_RE.match(n) and naming.numeral_like(n[5:]):
            continue
        m = LEGACY_SHARD_RE.match(n)
        loose = _LOOSE_SHARD_RE.match(n)
        if not m and loose and all(naming.number_field(loose.group(g)) != (None, False) for g in ("id", "n")):
            src.findings.append(non_ascii_number(f"shard id or increment number in {show(n)}", str(p / n)))
            continue
        if not m:
            src.findings.append(Finding(WARNING, "not a legacy backup file; ignored", path=str(p / n)))
            continue
        _size, why = probe_regular(p / n, raise_os=not salvage)
        if why is not None:
            src.findings.append(Finding(ERROR, f"shard tar cannot be read: {why}", path=str(p / n)))
            continue
        sid = int(m.group("id"))
        inc = int(m.group("n"))
        increments.add(inc)
        fallback = None
        if sid in shard_index and f"{shard_index[sid][0]}.{shard_index[sid][1]}" == m.group("prefix"):
            fallback = (shard_index[sid][0], shard_index[sid][1], sid)
        _add_tar_shard(src, p / n, gz=False, increment=inc, fallback=fallback, set_time=_run_start(run_starts, p / n))
    src.increments = max(1, len(increments))
    _fill_from_meta(src)
    mark_range_increments(src.shards)
    return src


def _legacy_run_starts(p: Path, meta_names: list[str]) -> list[float]:
    """mtimes of the ``meta.NN`` files, ascending. ``influxd backup`` (legacy) writes the run's
    metastore first, then its shard tars (cmd/influxd/backup/backup.go ``Run``)."""
    out = []
    for n in meta_names:
        try:
            out.append(os.stat(p / n).st_mtime)
        except OSError:
            continue
    return sorted(out)


def _run_start(run_starts: list[float], tar: Path) -> Optional[int]:
    """When the run that wrote ``tar`` started, as well as the files tell (epoch s): the mtime of
    the newest ``meta.NN`` written before the tar. None when no ``meta.NN`` is older (the files
    were copied without their mtimes: then only same-named copies show a range backup)."""
    try:
        t = os.stat(tar).st_mtime
    except OSError:
        return None
    i = bisect.bisect_right(run_starts, t)
    return int(run_starts[i - 1]) if i else None


def _open_portable(p: Path, manifest_paths: list[Path], salvage: bool = False, prescanned: Optional[dict] = None) -> Source:
    src = Source("portable", str(p), salvage=salvage, prescanned=prescanned or {})
    # Oldest first, so later manifests layer on top (BACKUP_META.md §3.6; we take the union).
    manifest_paths = sorted(manifest_paths, key=lambda q: q.name)
    parsed = []
    for mp in manifest_paths:
        parsed.append((mp, metafiles.parse_manifest(_read_file(mp), path=str(mp))))
    src.manifests = [str(mp) for mp, _ in parsed]
    src.increments = len(parsed)
    newest_path, newest = parsed[-1]
    meta_path = p / manifest_file_name(newest.meta_file_name, str(newest_path), "meta.fileName")
    if not meta_path.is_file():
        raise FormatError(f"metastore file {newest.meta_file_name} listed by the manifest is missing", path=str(newest_path))
    blob, _max_node = metafiles.parse_portable_meta(_read_file(meta_path), path=str(meta_path))
    src.meta = decode_data(blob, path=str(meta_path))
    src.meta_origin = str(meta_path)
    # What each manifest entry asks for, in order; the .tar.gz files are then inflated and listed
    # on every core (zlib and ISA-L release the GIL) and registered in this same order.
    steps: list[tuple] = []
    for inc, (mp, man) in enumerate(parsed):
        seen_ids: set[int] = set()
        for i, e in enumerate(man.files or []):
            fp = p / manifest_file_name(e.file_name, str(mp), f"files[{i}].fileName")
            key = (e.database, e.policy, e.shard_id)
            if e.shard_id in seen_ids:
                err = FormatError(f"shard {e.shard_id} is listed twice; which file holds it is unknown", path=str(mp))
                if not salvage:
                    raise err
                steps.append(("finding", Finding(ERROR, err.message + "; the second entry is ignored", path=str(mp))))
                continue
            seen_ids.add(e.shard_id)
            if not os.path.lexists(fp):
                steps.append(("missing", Finding(ERROR, f"shard file {show(e.file_name)} listed by the manifest is missing", path=str(mp)), key))
                continue
            _size, why = probe_regular(fp, raise_os=not salvage)
            if why is not None:
                steps.append(("missing", Finding(ERROR, f"shard file listed by the manifest cannot be read: {why}", path=str(fp)), key))
                continue
            steps.append(("tar", fp, inc, key, e.size, _manifest_time(mp)))
    scans = _scan_gz_tars([(st[1], st[4]) for st in steps if st[0] == "tar" and str(st[1]) not in src.prescanned], salvage)
    for st in steps:
        if st[0] == "finding":
            src.findings.append(st[1])
        elif st[0] == "missing":
            src.findings.append(st[1])
            if st[2] not in src._index():
                src.shards.append(Shard(*st[2]))
        else:
            _, fp, inc, key, size, set_time = st
            scanned = scans.get((str(fp), size))
            if isinstance(scanned, BaseException):
                raise scanned
            if scanned is not None:
                members, found = scanned
                src.findings.extend(found)
                src.prescanned[str(fp)] = members
            _add_tar_shard(src, fp, gz=True, increment=inc, fallback=key, expected_size=size, set_time=set_time)
    _fill_from_meta(src)
    mark_range_increments(src.shards)
    return src


def _manifest_time(mp: Path) -> Optional[int]:
    """When the backup run of a ``<ts>.manifest`` started (epoch s; influxd's Go layout
    ``20060102T150405Z``, UTC), or None for another name."""
    m = PORTABLE_MANIFEST_RE.match(mp.name)
    if not m:
        return None
    try:
        return calendar.timegm(time.strptime(m.group("ts"), "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None
def manifest_file_name(name: str, manifest: str, field: str) -> str:
    """A file name a portable manifest lists, refused unless it is a plain name in the backup
    directory (influxd writes base names; an absolute name or one with ``/`` or ``..`` would make
    every verb read, and restore, a file from outside the backup)."""
    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise FormatError(
            f"manifest names {show(name)!s} as a file of the backup: only a plain file name in the "
            "backup directory is accepted",
            path=manifest,
            field=field,
        )
    return name


def _scan_gz_tars(jobs: list[tuple[Path, int]], salvage: bool) -> dict:
    """``scan_shard_tar`` of each (.tar.gz, manifest size), on up to one thread per core:
    {(path, size): (members, findings) or the error it raised}."""

    def scan(job: tuple[Path, int]):
        found: list[Finding] = []
        try:
            return scan_shard_tar(str(job[0]), gz=True, findings=found, salvage=salvage, expected_size=job[1]), found
        except ArchiveError as exc:
            return exc

    jobs = list(dict.fromkeys((j[0], j[1]) for j in jobs))
    results = map_on_cores(scan, jobs)
    return {(str(fp), size): r for (fp, size), r in zip(jobs, results)}


def _open_live(p: Path, salvage: bool = False) -> Source:
    src = Source("live", str(p), salvage=salvage)
    meta_db = p / "meta" / "meta.db"
    if meta_db.is_file():
        src.meta = metafiles.read_meta_db(meta_db)
        src.meta_origin = str(meta_db)
    elif os.path.lexists(meta_db):
        raise FormatError(f"the metastore cannot be read: {probe_regular(meta_db)[1]}", path=str(meta_db))
    else:
        src.findings.append(Finding(WARNING, "server root has no meta/meta.db: shards are listed without metastore", path=str(p / "meta")))
    shards: dict[tuple[str, str, int], Shard] = {}

    def walk(base: Path, is_wal: bool) -> None:
        if not base.is_dir():
            return
        for db in _listdir(base):
            dbp = base / db
            if not dbp.is_dir() or db.startswith("_"):
                continue
            for rp in _listdir(dbp):
                rpp = dbp / rp
                if not rpp.is_dir() or rp == "_series":
                    continue
                for sid_text in _listdir(rpp):
                    sp = rpp / sid_text
                    if not sp.is_dir():
                        continue
                    sid, bad = naming.number_field(sid_text)
                    if bad:
                        src.findings.append(non_ascii_number(f"shard directory name {show(sid_text)}", str(sp)))
                        continue
                    if sid is None:
                        src.findings.append(Finding(WARNING, "not a shard directory (name is not a number); ignored", path=str(sp)))
                        continue
                    key = (db, rp, sid)
                    s = shards.get(key)
                    if s is None:
                        s = shards[key] = Shard(*key)
                        src.shards.append(s)
                    s.containers.append(str(sp))
                    for name in _listdir(sp):
                        fp = sp / name
                        kind = file_kind(name)
                        if kind == naming.BAD_NUMBER:
                            src.findings.append(non_ascii_number(f"file name {show(name)}", str(fp)))
                            continue
                        if kind not in (("wal",) if is_wal else ("tsm", "tombstone")):
                            continue  # fields.idx, index/, a WAL's neighbours: not shard data
                        size, why = probe_regular(fp, raise_os=not salvage)
                        if why is not None:  # never skipped silently: influxd would fail on it
                            src.findings.append(Finding(ERROR, f"{kind} file cannot be read: {why}", path=str(fp)))
                            continue
                        sf = ShardFile(name=name, kind=kind, size=size, container=str(fp))  # type: ignore[arg-type]
                        (s.wal if is_wal else s.files).append(sf)
                    # influxd replays segments in lexical name order (TSM_WAL.md §4.1)
                    s.wal.sort(key=lambda f: f.name)

    walk(p / "data", False)
    walk(p / "wal", True)
    _fill_from_meta(src)
    for s in src.shards:
        if src.meta is not None and not s.in_meta and (s.files or s.wal):
            src.findings.append(
                Finding(WARNING, f"shard {s.database}/{s.retention_policy}/{s.id} is on disk but not in the metastore: influxd opens it but never serves it", path=str(p))
            )
    return src


def _read_file(path: Path, limit: int = MAX_META_FILE_SIZE) -> bytes:
    """A whole metadata file (regular files only), refused above ``limit`` before it is read."""
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > limit:
                raise FormatError(f"file is {size} bytes, larger than the {limit}-byte limit for this kind", path=str(path))
            return fh.read(size)
    except OSError as exc:
        raise SourceIOError(f"cannot read the source: {exc.strerror}", path=str(path)) from exc


def _open_file(p: Path, salvage: bool = False) -> Source:
    name = p.name
    src = Source("file", str(p), salvage=salvage)
    if name.endswith(".tsm"):
        src.file_kind = "tsm"
        src.shards.append(_single_file_shard(p, "tsm"))
    elif name.endswith(".tombstone"):
        src.file_kind = "tombstone"
        src.shards.append(_single_file_shard(p, "tombstone"))
    elif name.endswith(".wal"):
        src.file_kind = "wal"
        sh = Shard("", "", 0)
        sh.wal.append(ShardFile(name=name, kind="wal", size=p.stat().st_size, container=str(p)))
        src.shards.append(sh)
    elif LEGACY_META_RE.match(name):
        src.file_kind = "meta.NN"
        src.meta = metafiles.parse_meta_nn(_read_file(p), path=str(p)).data
        src.meta_origin = str(p)
        _fill_from_meta(src)
    elif name == "meta.db":
        src.file_kind = "meta.db"
        src.meta = metafiles.read_meta_db(p)
        src.meta_origin = str(p)
        _fill_from_meta(src)
    elif name.endswith(".meta"):
        src.file_kind = "meta"
        blob, _ = metafiles.parse_portable_meta(_read_file(p), path=str(p))
        src.meta = decode_data(blob, path=str(p))
        src.meta_origin = str(p)
        _fill_from_meta(src)
    elif name.endswith(".manifest"):
        portable = _open_portable(p.parent, [p], salvage)
        portable.kind = "file"
        portable.file_kind = "manifest"
        portable.path = str(p)
        return portable
    elif name.endswith(".tar.gz") or name.endswith(".tgz"):
        src.file_kind = "tar.gz"
        _add_tar_shard(src, p, gz=True, increment=0, fallback=None)
    elif name.endswith(".tar") or LEGACY_SHARD_RE.match(name):
        src.file_kind = "tar"
        _add_tar_shard(src, p, gz=False, increment=0, fallback=None)
    else:
        raise SourceError(
            "unrecognised file: expected .tsm, .tombstone, .wal, meta.NN, .meta, meta.db, .manifest, .tar or .tar.gz",
            path=str(p),
        )
    return src


def _single_file_shard(p: Path, kind: str) -> Shard:
    sh = Shard("", "", 0)
    sh.files.append(ShardFile(name=p.name, kind=kind, size=p.stat().st_size, container=str(p)))
    return sh
