"""The Source model: what every kind of InfluxDB 1.x input looks like once opened.

A :class:`Source` exposes the metastore (``Source.meta``, a :class:`~influx_archive.meta.model.Data`
or ``None``) and the shards (:class:`Shard`: database, RP, id, owning shard-group time range, data
files, WAL segments). :meth:`Source.open_shard` opens one shard's files as seekable streams
(:class:`OpenShard`); how is the business of each kind (files on disk: :mod:`.ondisk`; a sealed
archive: :mod:`.sealed`). A source is a context manager: :meth:`Source.close` releases whatever
it holds (a sealed archive's private spool).

:meth:`Shard.layers` resolves a shard's current state across the increments of a backup set
(see docs/architecture.md); :func:`fill_from_meta` creates the shards the metastore lists, and
:func:`metastore_findings` reports a metastore that lists something twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ...meta.model import Data, shard_group_range
from ...tsm import naming
from ..errors import FormatError, show
from ..findings import ERROR, META_DUPLICATE, META_GROUP_START_AFTER_END, NON_ASCII_DIGITS, WARNING, Finding


def _order_key(name: str) -> tuple[int, int]:
    """(generation, sequence) of a TSM / tombstone name; only a single-file source
    (``inspect x.tsm``) can hold another name: it sorts as (0, 0)."""
    return naming.order_key(name, default=(0, 0))


def file_kind(name: str) -> str:
    """Classify a shard file by its base name: ``tsm``, ``tombstone``, ``wal``, ``other``, or
    ``bad-number`` (shaped like one of the first three with non-ASCII digits; see tsm.naming)."""
    return naming.classify(name)


def non_ascii_number(what: str, path: str, member: str | None = None) -> Finding:
    """The finding for a number in a name written with non-ASCII digits (``٢``, ``²``)."""
    return Finding(
        ERROR,
        f"{what} is written with non-ASCII digits: influxd cannot read it as a number, and it is not "
        "taken for the ASCII number it resembles",
        path=path,
        member=member,
        code=NON_ASCII_DIGITS,
    )


@dataclass
class ShardFile:
    """One data file of a shard, wherever it lives."""

    name: str  # base name in the shard directory
    kind: str  # tsm | tombstone | wal | other
    size: int
    container: str  # path on disk: the file itself, or the tar / tar.gz holding it
    member: str | None = None  # member name inside the container tar
    increment: int = 0  # which backup set of an incremental source provided it (0 = first)
    gz: bool = False  # container is a .tar.gz (must be spooled to seek)
    data_offset: int | None = None  # offset of the member data inside an uncompressed tar
    mtime: int | None = None  # tar member mtime (s): a block-filtered export copy gets the export time
    #: when its backup run started (epoch s): a portable manifest's ``<ts>``; for legacy tars the
    #: mtime of the newest ``meta.NN`` older than the tar (the run writes its metastore first);
    #: moved on to when its shard was asked for where the files show it (see :mod:`.rundates`)
    set_time: int | None = None

    @property
    def maybe_filtered(self) -> bool:
        """Written during its backup run: what ``influxd backup -start/-end`` does to the block-
        filtered copy of a file it cuts (``filterFileToBackup`` streams a fresh temp file). A file
        already on disk when the run started (or when its shard was asked for) has an older mtime.
        influxd also writes whole files then (docs/formats.md#files-written-during-a-run): see
        the proven range in :meth:`Shard.layers`."""
        return self.mtime is not None and self.set_time is not None and self.mtime >= self.set_time

    @property
    def origin(self) -> str:
        return f"{self.container}::{self.member}" if self.member else self.container

    @property
    def stem(self) -> str:
        return self.name.split(".", 1)[0]


@dataclass
class Shard:
    """One shard of a source: where it belongs (database, retention policy, shard group) and its files."""

    database: str
    retention_policy: str
    id: int
    group_id: int | None = None
    group_start: int | None = None  # ns, inclusive (a start stored after the end reads as the lowest time)
    group_end: int | None = None  # ns, exclusive
    in_meta: bool = False
    files: list[ShardFile] = field(default_factory=list)  # tsm + tombstone (+ other) from every increment
    wal: list[ShardFile] = field(default_factory=list)  # live sources only, influxd's replay order
    containers: list[str] = field(default_factory=list)  # shard tars / dirs that provided files
    #: increments known to be ``-start/-end`` backups (a copy smaller than a same-named one)
    range_increments: frozenset = frozenset()
    _resolved: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.database, self.retention_policy, self.id)

    def data_files(self) -> list[ShardFile]:
        return [f for f in self.files if f.kind in ("tsm", "tombstone")]

    def layers(self) -> list[Layer]:
        """The shard's current state across every increment, as :class:`Layer` s oldest to newest
        by (generation, sequence). The rules (TSM files are immutable in influxd):

        * **A name is one file.** Copies of one TSM name from several increments are the same
          file; a ``-start/-end`` backup's copy holds a subset of its blocks. The largest copy is
          used; copies of another size are its ``twins`` and their blocks are kept too (the reader
          drops a twin whose index is a subset of the largest copy's).
        * **Tombstones grow.** The tombstone of a name from the latest increment that has one
          applies to every copy of that name.
        * **Compactions replace.** influxd names a compaction output after the highest generation
          of its inputs with a higher sequence (docs/formats.md), so a file (g, s) of an earlier
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
        * **A mask cannot hide a deletion inside its run's range.** A copy written during its
          run is not always block-filtered: influxd itself writes files during every run (the
          cache snapshot the backup request forces; a compaction that finishes between the run's
          start and the shard's snapshot, or in the same second: member mtimes are whole
          seconds). Such a whole compaction output masks the files it absorbed, and their points
          outside its per-key spans would be served again although influxd had deleted them.
          So a masked file also loses its points, for every key, inside the *proven range* of
          each masking copy's increment (in this shard): from the lowest block end to the
          highest block start over that increment's copies, widened to the whole time span of
          its copies older than the run. A ``-start/-end`` run keeps exactly the blocks that
          meet its range and whole files inside it, so that span lies inside the range, where
          a filtered copy holds every point of its file: a point of the masked file there that
          the copy lacks was deleted, whichever kind the copy is (applied by
          :func:`~.shardview.load_shard_files`).

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
        return sorted(out, key=lambda f: (_order_key(f.name), f.kind, f.increment))

    def tsm_layers(self) -> list[tuple[ShardFile, ShardFile | None]]:
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
    tomb: ShardFile | None = None  # its tombstone (latest increment that has one)
    twins: list[ShardFile] = field(default_factory=list)  # other copies of the same name, other sizes
    #: the later, maybe block-filtered compaction output that holds this file's data (at most one:
    #: its own mask covers the backups after it)
    masks: list[str] = field(default_factory=list)
    #: the increment of that masking copy: its run's proven time range (see :meth:`Shard.layers`)
    mask_increments: list[int] = field(default_factory=list)

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
    gens = sorted({_order_key(n)[0] for n in layers}, reverse=True)
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
            g, sq = _order_key(f.name)
            if filtered(f):
                part_tree.lower_to(rank[g], (f.increment, g, -sq, f.name))
            else:
                whole_tree.raise_to(rank[g], sq)
            k += 1
        for name in by_newest[inc]:
            g, sq = _order_key(name)
            if whole_tree.max_upto(rank[g]) > sq:
                superseded.add(name)
                continue
            best = part_tree.min_upto(rank[g])
            if best is not None and -best[2] > sq and best[3] != name:
                layers[name].masks = [best[3]]
                layers[name].mask_increments = [best[0]]
    kept = [layer for name, layer in layers.items() if name not in superseded]
    kept.sort(key=lambda layer: _order_key(layer.name))
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
    """An opened input (see the module docstring). Use it as a context manager, or call
    :meth:`close` when done: a sealed archive keeps a private spool until then."""

    kind: str  # legacy | portable | live | file
    path: str
    meta: Data | None = None
    meta_origin: str | None = None
    file_kind: str | None = (
        None  # for kind == "file": tsm, tombstone, wal, meta.NN, meta, meta.db, manifest, tar, tar.gz
    )
    shards: list[Shard] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    increments: int = 1
    salvage: bool = False  # damaged tars became findings; what was intact before the damage is used

    # ------------------------------------------------------------------ access
    @property
    def display_path(self) -> str:
        """The path the user gave (a sealed archive's own path, not its private work dir)."""
        return self.path

    @property
    def sequential(self) -> bool:
        """Whether the shards come out of one stream read front to back (a sealed archive):
        opening shards out of that order reads the stream again, so a verb does not split the
        reading of one shard across workers."""
        return False

    def reads_from(self) -> list[str]:
        """Paths this source reads or keeps private (no output may equal one or lie inside one)."""
        return []

    def _index(self) -> dict[tuple[str, str, int], Shard]:
        """key -> shard, kept in step with ``shards`` (rebuilt when the list changed under it)."""
        idx = self.__dict__.get("_by_key")
        if idx is None or len(idx) != len(self.shards):
            idx = {s.key: s for s in self.shards}
            self.__dict__["_by_key"] = idx
        return idx

    def shard(self, database: str, retention_policy: str, shard_id: int) -> Shard | None:
        for s in self.shards:
            if s.key == (database, retention_policy, shard_id):
                return s
        return None

    def expect(self, shards: list[Shard]) -> None:
        """A hint: these shards are about to be opened by parallel workers (see SealedSource)."""

    @contextlib.contextmanager
    def open_shard(self, shard: Shard, *, tmpdir: str | None = None, spool_gz: bool = True) -> Iterator[OpenShard]:
        """Open every file of ``shard`` as a seekable binary stream, for as long as the context
        lasts. ``tmpdir``: where temporary copies may go; ``spool_gz=False``: files inside a
        ``.tar.gz`` get no stream (the caller reads their container while the context holds it).
        Each kind of source says how (:class:`~.ondisk.DiskSource`, :class:`~.sealed.SealedSource`)."""
        raise NotImplementedError(f"{type(self).__name__} cannot open shards")
        yield  # pragma: no cover - a generator, for the context manager

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Release what the source holds (temporary spools). Safe to call more than once."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OpenShard:
    """Streams of an opened shard; ``stream(f)`` for a :class:`ShardFile` of that shard."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.streams: dict[int, BinaryIO] = {}

    def stream(self, f: ShardFile) -> BinaryIO:
        s = self.streams[id(f)]
        s.seek(0)
        return s


def metastore_findings(meta: Data | None, origin: str | None) -> list[Finding]:
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
            out.append(Finding(ERROR, f"database {show(db.name)} is listed twice in the metastore", path=origin,
                               code=META_DUPLICATE))
        dbs.add(db.name)
        rps: set[str] = set()
        for rp in db.retention_policies:
            if rp.name in rps:
                out.append(Finding(
                    ERROR, f"retention policy {show(db.name)}.{show(rp.name)} is listed twice in the metastore",
                    path=origin, code=META_DUPLICATE))
            rps.add(rp.name)
            where = f"{show(db.name)}/{show(rp.name)}"
            for g in rp.shard_groups:
                if g.id in groups:
                    out.append(Finding(
                        ERROR, f"shard group {g.id} is listed twice in the metastore ({groups[g.id]} and {where})",
                        path=origin, code=META_DUPLICATE))
                groups.setdefault(g.id, where)
                for sh in g.shards:
                    if sh.id in shards:
                        out.append(Finding(
                            ERROR, f"shard {sh.id} is listed twice in the metastore ({shards[sh.id]} and {where})",
                            path=origin, code=META_DUPLICATE))
                    shards.setdefault(sh.id, where)
    return out


def fill_from_meta(src: Source) -> None:
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
                            code=META_GROUP_START_AFTER_END,
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


def meta_shard_index(meta: Data | None) -> dict[int, tuple[str, str]]:
    out: dict[int, tuple[str, str]] = {}
    if meta is None:
        return out
    for db in meta.databases:
        for rp in db.retention_policies:
            for g in rp.shard_groups:
                for sh in g.shards:
                    out[sh.id] = (db.name, rp.name)
    return out


def raise_first_error(src: Source, salvage: bool) -> None:
    """Unless ``salvage``: the first error finding raised as :class:`FormatError` (how many
    more there are said in the message)."""
    errors = [f for f in src.findings if f.severity == ERROR]
    if errors and not salvage:
        first = errors[0]
        more = (
            f" ({len(errors) - 1} more problems: run verify; --salvage keeps what is intact)" if len(errors) > 1 else ""
        )
        raise FormatError(first.message + more, path=first.path, member=first.member, offset=first.offset)
