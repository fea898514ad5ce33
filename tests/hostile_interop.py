"""Case generators for increments (issue 15) and shard groups at the int64 edges (issue 16).

Every generator builds its cases into a directory and returns them as :class:`Case` (name, the
path to hand to a verb, the exit code expected, the name the one error line must mention, and for
successful cases the points a server would serve). Sources are derived from the real fixtures in
``fixtures/`` (metastores, manifests, tar layout of ``union_*`` and ``edge_1677``).

* :func:`build_chains` — increment chains (full, ``-start/-end``, ``-since`` backups; writes,
  DELETEs and compactions between them) of one shard, written as legacy and as portable backup
  directories exactly the way influxd 1.6.7 writes them (``engine.go`` ``Backup``/``Export``/
  ``filterFileToBackup``, ``compact.go`` naming). :class:`ServerModel` is the model of the server:
  its files, tombstones and the points it serves; ``Case.points`` is what it served at the end.
  Chains are kept only when their backups hold enough to know that state (every change after the
  first full backup reached a later backup); the rest are discarded by the generator, not tested.
* :func:`build_edge_windows` — time windows at the extremes for ``trim``/``convert``/``export`` over
  ``fixtures/edge_1677`` (shard groups whose stored start wrapped past their end), with the points
  the TRUTH holds inside each window.
* :func:`build_hostile_union` — damaged variants of the ``union_*`` fixtures: the range set's
  same-named copy with blocks of another type (influxd cannot serve or compact that key), and the
  range set's shard tar cut inside a member (what influxd's export leaves when it fails).
"""

from __future__ import annotations

import copy
import datetime as _dt
import gzip
import io
import os
import random
import shutil
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from influx_archive.meta import files as metafiles
from influx_archive.tsm.block import FLOAT, INTEGER
from influx_archive.tsm.tombstone import Tombstone, write_tombstones
from influx_archive.tsm.writer import TSMWriter

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

import influxd as harness  # noqa: E402

NS = 1_000_000_000
MINUTE = 60 * NS
DAY0 = harness.rfc3339_to_ns("2026-10-05T00:00:00Z")  # shard 1 of database u: [DAY0, DAY0 + 1d)
SET_TIME0 = 1_796_083_200  # 2026-12-01T00:00:00Z, epoch s: when the first backup set starts


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    code: int = 0
    mention: str | None = None
    #: key -> {t: value}: what the server served (successful cases)
    points: dict = field(default_factory=dict, compare=False, hash=False)
    #: extra CLI arguments (windows)
    args: tuple = ()


# ---------------------------------------------------------------------------------- the model


def key_of(host: str) -> bytes:
    return f"cpu,host={host}#!~#v".encode()


@dataclass
class TSMFileModel:
    gen: int
    seq: int
    blocks: dict  # key -> list of (timestamps, values), ascending, non-overlapping
    born: int  # clock (s) when written
    tomb: list = field(default_factory=list)  # (key, min, max) in file order
    tomb_time: int = 0

    @property
    def name(self) -> str:
        return f"{self.gen:09d}-{self.seq:09d}.tsm"

    @property
    def stem(self) -> str:
        return self.name[: -len(".tsm")]

    def span(self) -> tuple[int, int]:
        lo = min(b[0][0] for bl in self.blocks.values() for b in bl)
        hi = max(b[0][-1] for bl in self.blocks.values() for b in bl)
        return lo, hi

    def live_points(self) -> dict:
        out: dict = {}
        for key, bl in self.blocks.items():
            ranges = [(a, b) for k, a, b in self.tomb if k == key]
            pts = {t: v for ts, vs in bl for t, v in zip(ts, vs) if not any(a <= t <= b for a, b in ranges)}
            if pts:
                out[key] = pts
        return out


def tsm_bytes(blocks: dict) -> bytes:
    buf = io.BytesIO()
    w = TSMWriter(buf)
    for key in sorted(blocks):
        for ts, vs in blocks[key]:
            w.write_values(key, FLOAT, ts, vs)
    w.close()
    return buf.getvalue()


def tombstone_bytes(entries: list) -> bytes:
    buf = io.BytesIO()
    write_tombstones(buf, [Tombstone(k, a, b) for k, a, b in entries])
    return buf.getvalue()


def chunk(points: dict, size: int) -> list:
    ts = sorted(points)
    return [(ts[i : i + size], [points[t] for t in ts[i : i + size]]) for i in range(0, len(ts), size)]


class Unknowable(Exception):
    """The chain cannot be captured by influxd's backups as generated (retry another one)."""


class ServerModel:
    """One shard of influxd 1.6.7 with a flushed cache: immutable TSM files, tombstones that
    apply to their own file, compactions named after their inputs (highest generation, highest
    sequence + 1), and the backups it writes (``engine.go``: Backup = whole files, ``-since`` =
    files and tombstones changed after T, Export = files inside the range whole, files cut by it
    rewritten with the blocks that overlap it, tombstones as they are)."""

    def __init__(self, rng: random.Random, block: int, shard_id: int = 1) -> None:
        self.rng = rng
        self.block = block
        self.shard_id = shard_id
        #: other shards of the same database: every backup run backs them up too, same options
        self.peers: list[ServerModel] = []
        self.files: dict[str, TSMFileModel] = {}
        self.clock = 1000
        self.top_gen = 0
        self.sets: list[dict] = []  # {"kind", "time", "files": [(name, bytes, mtime)]}
        #: (key, t) pairs whose deletion a later backup must show, and what shows it
        self.changes: list[tuple] = []

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    # ---- what the server does
    def write(self, points: dict) -> None:
        self.top_gen += 1
        blocks = {k: chunk(p, self.block) for k, p in points.items() if p}
        f = TSMFileModel(self.top_gen, 1, blocks, self.tick())
        self.files[f.name] = f

    def delete(self, key: bytes, lo: int, hi: int) -> None:
        now = self.tick()
        for f in self.files.values():
            if key in f.blocks:
                kmin = f.blocks[key][0][0][0]
                kmax = f.blocks[key][-1][0][-1]
                if lo <= kmax and hi >= kmin:
                    f.tomb.append((key, lo, hi))
                    f.tomb_time = now

    def compact(self, names: list[str]) -> None:
        inputs = sorted((self.files[n] for n in names), key=lambda f: (f.gen, f.seq))
        merged: dict = {}
        for f in inputs:
            for key, pts in f.live_points().items():
                merged.setdefault(key, {}).update(pts)
        gen = max(f.gen for f in inputs)
        seq = max(f.seq for f in inputs) + 1
        while f"{gen:09d}-{seq:09d}.tsm" in self.files:
            seq += 1
        for f in inputs:
            del self.files[f.name]
        if merged:
            out = TSMFileModel(gen, seq, {k: chunk(p, self.block) for k, p in merged.items()}, self.tick())
            self.files[out.name] = out

    def served(self) -> dict:
        out: dict = {}
        for m in [self] + self.peers:
            for f in sorted(m.files.values(), key=lambda f: (f.gen, f.seq)):
                for key, pts in f.live_points().items():
                    out.setdefault(key, {}).update(pts)
        return out

    # ---- its backups (one run covers this shard and its peers)
    def backup_full(self) -> None:
        t = self.tick()
        for m in [self] + self.peers:
            m._full(t)

    def backup_since(self, since: int) -> None:
        t = self.tick()
        for m in [self] + self.peers:
            m._since(t, since)

    def backup_range(self, s: int, e: int) -> None:
        t = self.tick()
        for m in [self] + self.peers:
            m._range(t, s, e)

    def _full(self, t: int) -> None:
        files = []
        for f in self.files.values():
            files.append((f.name, tsm_bytes(f.blocks), f.born))
            if f.tomb:
                files.append((f.stem + ".tombstone", tombstone_bytes(f.tomb), f.tomb_time))
        self.sets.append({"kind": "full", "time": t, "files": files})

    def _since(self, t: int, since: int) -> None:
        files = []
        for f in self.files.values():
            if f.born > since:
                files.append((f.name, tsm_bytes(f.blocks), f.born))
            if f.tomb and f.tomb_time > since:
                files.append((f.stem + ".tombstone", tombstone_bytes(f.tomb), f.tomb_time))
        self.sets.append({"kind": "since", "time": t, "files": files})

    def _range(self, t: int, s: int, e: int) -> None:
        files = []
        for f in self.files.values():
            if f.tomb:
                raise Unknowable("influxd's export of a TSM file with a tombstone is a truncated tar")
            fmin, fmax = f.span()
            inside = fmin >= s and fmax <= e
            cut = (s <= fmin <= e and fmax > e) or (s <= fmax <= e and fmin < s) or (fmin <= s and fmax >= e)
            if inside and cut:
                raise Unknowable("influxd emits a file spanning exactly the range twice")
            if inside:
                files.append((f.name, tsm_bytes(f.blocks), f.born))
            elif cut:
                kept = {
                    k: [b for b in bl if s <= b[0][0] <= e or s <= b[0][-1] <= e or (b[0][0] <= s and b[0][-1] >= e)]
                    for k, bl in f.blocks.items()
                }
                kept = {k: bl for k, bl in kept.items() if bl}
                if not kept:
                    raise Unknowable("influxd's export stops at a cut file with no block in the range")
                files.append((f.name, tsm_bytes(kept), t))  # filterFileToBackup: a fresh temp file
        self.sets.append({"kind": "range", "time": t, "files": files, "range": (s, e)})


# ---------------------------------------------------------------------------------- chains


#: chains live in the last 210 minutes of shard 1's day (2026-10-05T20:30Z ..), so a range that
#: ends after midnight also cuts shard 2's file (the evidence of a legacy range backup)
CHAIN_BASE = DAY0 + (24 * 60 - 210) * MINUTE
MIDNIGHT = 210


def minute(m: int) -> int:
    return CHAIN_BASE + m * MINUTE


def _series(rng: random.Random, lo: int, hi: int, step: int, tag: float) -> dict:
    return {minute(m): float(f"{tag + rng.randrange(1000)}.5") for m in range(lo, hi, step)}


TEMPLATES = (
    "range_after_writes",  # full; writes inside W; range(W): same names, fewer blocks
    "range_after_compacted_delete",  # full; writes in W; DELETE in W; compaction; range(W)
    "since_after_delete",  # full; DELETE; since: the tombstone alone
    "since_after_compaction",  # full; writes; compaction; since: the whole output
    "full_after_compacted_delete",  # full; writes; DELETE; compaction; full again
    "range_since_range",  # full; writes in W; range(W); writes in W2; since; range(W2)
    "partial_compaction_range_delete_since",  # full; writes in W; compact two; range(W); DELETE; since
    "ranges_only",  # full; range(W); range(W2): several sizes of one name
    "two_compacted_ranges",  # full; writes+DELETE in W; compaction; range(W); again in W2; range(W2)
)


def _chain(template: str, rng: random.Random, evidence: bool) -> ServerModel:
    """One chain of ``template``. ``evidence``: shard 2 holds a file from midnight on and every
    range ends after midnight, so each range backup cuts that file under its name (what shows a
    ``.NN`` set to be a range backup when, as in legacy backups, no start time is recorded).
    Compactions take contiguous generations, as influxd's planner does."""
    block = rng.choice([3, 5, 8, 13])
    srv = ServerModel(rng, block)
    hosts = [f"h{i}" for i in range(rng.randint(1, 3))]
    n = rng.randint(90, 200)
    w0 = rng.randint(20, n - 50)
    w1 = w0 + rng.randint(24, 40)
    if evidence:
        peer = ServerModel(rng, block, shard_id=2)
        peer.write({key_of("ev"): _series(rng, MIDNIGHT, MIDNIGHT + 60, 1, 9000)})
        srv.peers.append(peer)
    evidence_names: set = set()
    # dense series (one point a minute) so a DELETE inside the range has points on both sides
    srv.write({key_of(h): _series(rng, 0, n, 1, i * 1000) for i, h in enumerate(hosts)})
    S, E = minute(w0), minute(w1)
    past = minute(MIDNIGHT + rng.randint(5, 40))  # where ranges end in the evidence variant

    def end(e: int) -> int:
        return past if evidence else e

    def compact_all() -> None:
        srv.compact(sorted(set(srv.files) - evidence_names))

    def writes_in(lo: int, hi: int) -> None:
        pts = {key_of("new"): _series(rng, lo, hi, rng.choice([1, 2]), 5000)}
        h = rng.choice(hosts)
        pts[key_of(h)] = {minute(m): -float(m) for m in range(lo + 1, hi - 1, 3)}  # overwrites
        srv.write(pts)

    def delete_in(lo: int, hi: int) -> None:
        a = rng.randint(lo + 3, hi - 6)
        b = rng.randint(a, hi - 3)
        srv.delete(key_of(rng.choice(hosts)), minute(a), minute(b) + rng.randrange(MINUTE))

    srv.backup_full()
    if template == "range_after_writes":
        writes_in(w0 + 2, w1 - 2)
        srv.backup_range(S, end(E))
    elif template == "range_after_compacted_delete":
        writes_in(w0 + 2, w1 - 2)
        delete_in(w0, w1)
        compact_all()
        srv.backup_range(S, end(E))
    elif template == "since_after_delete":
        srv.delete(key_of(rng.choice(hosts)), minute(rng.randint(0, n // 2)), minute(rng.randint(n // 2, n + 5)))
        srv.backup_since(srv.sets[-1]["time"])
    elif template == "since_after_compaction":
        writes_in(rng.randint(0, n // 2), n + 5)
        compact_all()
        srv.backup_since(srv.sets[-1]["time"])
    elif template == "full_after_compacted_delete":
        writes_in(0, n)
        srv.delete(key_of(rng.choice(hosts)), minute(rng.randint(-5, n // 2)), minute(rng.randint(n // 2, n + 5)))
        compact_all()
        srv.backup_full()
    elif template == "range_since_range":
        writes_in(w0 + 2, w1 - 2)
        srv.backup_range(S, end(E))
        w2 = rng.randint(5, n - 30)
        writes_in(w2 + 2, w2 + 20)
        srv.backup_since(srv.sets[-1]["time"])
        srv.backup_range(minute(w2), end(minute(w2 + 22)))
    elif template == "partial_compaction_range_delete_since":
        writes_in(w0 + 2, w1 - 2)
        names = sorted(set(srv.files) - evidence_names)
        srv.compact(names[-2:] if len(names) >= 2 else names)
        srv.backup_range(S, end(E))
        delete_in(0, n)
        srv.backup_since(srv.sets[-1]["time"])
    elif template == "ranges_only":
        srv.backup_range(S, end(E))
        w2 = rng.randint(5, n - 30)
        srv.backup_range(minute(w2), end(minute(w2 + rng.randint(10, 25))))
    elif template == "two_compacted_ranges":
        writes_in(w0 + 2, w1 - 2)
        delete_in(w0, w1)
        compact_all()
        srv.backup_range(S, end(E))
        w2 = rng.randint(5, n - 45)
        writes_in(w2 + 2, w2 + 30)
        delete_in(w2, w2 + 32)
        compact_all()
        srv.backup_range(minute(w2), end(minute(w2 + 32)))
    else:  # pragma: no cover - a template name without a body
        raise ValueError(template)
    return srv


def _tar(sid: int, st: dict, mtime_of) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data, mtime in sorted(st["files"], key=lambda x: x[0]):
            info = tarfile.TarInfo(f"u/autogen/{sid}/{name}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = mtime_of(mtime)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _write_legacy(srv: ServerModel, dest: Path, *, times: bool = False) -> None:
    """``times``: the files keep the mtimes influxd's run gave them (``meta.NN`` at the run's
    start, then its shard tars; members as in the portable writer). Without it every file is
    as if copied without its mtime (younger than every member): only same-named copies show a
    range backup."""
    dest.mkdir(parents=True)
    meta = (FIXTURES / "union_legacy" / "meta.00").read_bytes()
    for i in range(len(srv.sets)):
        set_time = SET_TIME0 + 60 * i
        meta_path = dest / metafiles.legacy_meta_file_name(i)
        meta_path.write_bytes(meta)
        for m in [srv] + srv.peers:
            mst = m.sets[i]
            if times:
                stamp = lambda mtime, t=mst["time"], set_time=set_time: (  # noqa: E731
                    set_time if mtime == t else set_time - 3600 + (mtime - t))
            else:
                stamp = lambda mtime: SET_TIME0 - 10_000 + mtime  # noqa: E731
            tar_path = dest / metafiles.legacy_shard_file_name("u", "autogen", m.shard_id, i)
            tar_path.write_bytes(_tar(m.shard_id, mst, stamp))
            if times:
                os.utime(tar_path, (set_time + 2, set_time + 2))
        if times:
            os.utime(meta_path, (set_time, set_time))


def _write_portable(srv: ServerModel, dest: Path) -> None:
    dest.mkdir(parents=True)
    src_meta = next((FIXTURES / "union_portable").glob("*.meta")).read_bytes()
    blob, _ = metafiles.parse_portable_meta(src_meta)
    models = [srv] + srv.peers
    for i, _st in enumerate(srv.sets):
        set_time = SET_TIME0 + 60 * i
        ts = metafiles.portable_timestamp(_dt.datetime.fromtimestamp(set_time, _dt.UTC))
        names = metafiles.portable_names(ts, [m.shard_id for m in models])
        entries = []
        for m in models:
            mst = m.sets[i]
            # files on disk before the run are older than its start; a filtered copy is made during it
            raw = _tar(m.shard_id, mst, lambda mtime, t=mst["time"], set_time=set_time: (
                set_time if mtime == t else set_time - 3600 + (mtime - t)))
            (dest / names.shards[m.shard_id]).write_bytes(gzip.compress(raw, mtime=0))
            entries.append(metafiles.ManifestEntry("u", "autogen", m.shard_id, names.shards[m.shard_id], len(raw), 0))
        (dest / names.meta).write_bytes(src_meta)
        man = metafiles.Manifest(meta_file_name=names.meta, meta_size=len(blob), limited=False, files=entries)
        (dest / names.manifest).write_bytes(metafiles.dump_manifest(man))


def build_chains(root: str | Path, per_template: int = 6, seed: int = 15) -> list[Case]:
    """``per_template`` chains of every template, each as a portable directory, a legacy one
    (range backups shown by a second shard's cut file) and a legacy one whose files keep the
    mtimes of the runs that wrote them (range backups shown by those)."""
    root = Path(root)
    cases: list[Case] = []
    rng = random.Random(seed)
    for template in TEMPLATES:
        made = 0
        tries = 0
        while made < per_template:
            tries += 1
            assert tries < per_template * 50, f"{template}: no capturable chain"
            state = rng.getstate()
            try:
                srv = _chain(template, random.Random(rng.random()), evidence=False)
                srv_ev = None
                if any(st["kind"] == "range" for st in srv.sets):
                    rng.setstate(state)
                    srv_ev = _chain(template, random.Random(rng.random()), evidence=True)
            except Unknowable:
                continue
            for fmt, model in (("portable", srv), ("legacy", srv_ev or srv), ("legacymtime", srv)):
                name = f"{template}-{made}-{fmt}"
                path = root / name
                if fmt == "portable":
                    _write_portable(model, path)
                else:
                    _write_legacy(model, path, times=fmt == "legacymtime")
                cases.append(Case(name, path, 0, None, model.served()))
            made += 1
    return cases


# ---------------------------------------------------------------------------------- edge windows


LOWEST = -(1 << 63)
HIGHEST = (1 << 63) - 1


def truth_points(truth: dict, lo: int = LOWEST, hi: int = HIGHEST) -> dict:
    """(db, rp, series, field) -> {t: value} of a TRUTH, only lo <= t <= hi."""
    out: dict = {}
    for db, d in truth["databases"].items():
        for rp, measurements in d["data"].items():
            for m, md in measurements.items():
                for s in md["series"]:
                    tags = ",".join(f"{k}={v}" for k, v in sorted(s["tags"].items()))
                    for t, fields in s["points"]:
                        if lo <= t <= hi:
                            for f, v in fields.items():
                                out.setdefault((db, rp, f"{m},{tags}", f), {})[t] = v
    return out


def edge_windows(truth: dict) -> list[tuple[str, int, int]]:
    """Windows at the extremes: the lowest and highest int64 times, influxd's own bounds, the
    first and last point, one ns inside and outside each, the epoch."""
    times = sorted({t for pts in truth_points(truth).values() for t in pts})
    first, last = times[0], times[-1]
    return [
        ("all-int64", LOWEST, HIGHEST),
        ("lowest-to-epoch", LOWEST, 0),
        ("influxd-min-to-epoch", LOWEST + 2, 0),
        ("first-point-only", first, first),
        ("from-first-point", first, HIGHEST),
        ("after-first-point", first + 1, HIGHEST),
        ("before-first-point", LOWEST, first - 1),
        ("first-hour", LOWEST, first + 3600 * NS),
        ("first-week", LOWEST, first + 7 * 86400 * NS),
        ("to-last-point", LOWEST, last),
        ("last-point-only", last, last),
        ("epoch-to-highest", 0, HIGHEST),
        ("lowest-to-1700", LOWEST, harness.rfc3339_to_ns("1700-01-01T00:00:00Z")),
    ]


def build_edge_windows(root: str | Path) -> list[Case]:
    """One case per window over a copy of ``fixtures/edge_1677`` (the copy is the source)."""
    root = Path(root)
    src = root / "edge_1677"
    if not src.exists():
        shutil.copytree(FIXTURES / "edge_1677", src)
    truth = harness.load_truth(FIXTURES / "edge_1677.truth.json")
    return [
        Case(f"edge-{label}", src, 0, None, truth_points(truth, lo, hi), ("--start", str(lo), "--end", str(hi)))
        for label, lo, hi in edge_windows(truth)
    ]


# ---------------------------------------------------------------------------------- hostile unions


def _rewrite_tar(path: Path, gz: bool, fn) -> None:
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        members = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]  # type: ignore[union-attr]
    members = fn(members)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for info, data in members:
            info = copy.copy(info)
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    out = buf.getvalue()
    path.write_bytes(gzip.compress(out, mtime=0) if gz else out)
    if gz:  # keep the manifest's uncompressed size right
        for mp in path.parent.glob("*.manifest"):
            man = metafiles.parse_manifest(mp.read_bytes())
            for e in man.files or []:
                if e.file_name == path.name:
                    e.size = len(out)
            mp.write_bytes(metafiles.dump_manifest(man))


def _retyped(data: bytes) -> bytes:
    """The same keys and times, every block an integer block (another type than the original)."""
    from influx_archive.tsm.reader import TSMReader

    r = TSMReader(io.BytesIO(data), name="x", size=len(data))
    buf = io.BytesIO()
    w = TSMWriter(buf)
    for key, _bt, entries in r.iter_index():
        for e in entries:
            ts, vs = r.decode_block(key, e)
            w.write_values(key, INTEGER, list(ts), [int(v) for v in vs])
    w.close()
    return buf.getvalue()


def build_hostile_union(root: str | Path) -> list[Case]:
    """Damaged union sets (each a copy of a union fixture; ``mention`` = the damaged file)."""
    root = Path(root)
    cases: list[Case] = []
    for fmt in ("portable", "legacy"):
        base = FIXTURES / f"union_{fmt}"
        if fmt == "portable":
            sets = sorted(p.name[:16] for p in base.glob("*.manifest"))
            shard_file = lambda i, sid, sets=sets: f"{sets[i]}.s{sid}.tar.gz"  # noqa: E731
        else:
            shard_file = lambda i, sid: f"u.autogen.{sid:05d}.{i:02d}"  # noqa: E731
        gz = fmt == "portable"
        for sid in (1, 2):
            # 1. the range set's copy of a file has integer blocks where the full set has floats
            name = f"union-{fmt}-retyped-twin-s{sid}"
            d = root / name
            shutil.copytree(base, d)
            target = d / shard_file(1, sid)

            def retype(members):
                return [(i, _retyped(b) if b is not None and i.name.endswith(".tsm") else b) for i, b in members]

            _rewrite_tar(target, gz, retype)
            cases.append(Case(name, d, 1, target.name))
            # 2. the range tar cut the way influxd cuts it (tar header, no data)
            name = f"union-{fmt}-cut-range-tar-s{sid}"
            d = root / name
            shutil.copytree(base, d)
            target = d / shard_file(1, sid)
            raw = gzip.decompress(target.read_bytes()) if gz else target.read_bytes()
            cut = raw[: 512 + 100]  # a header and a little data: the member ends early
            target.write_bytes(gzip.compress(cut, mtime=0) if gz else cut)
            if gz:
                for mp in d.glob("*.manifest"):
                    man = metafiles.parse_manifest(mp.read_bytes())
                    for e in man.files or []:
                        if e.file_name == target.name:
                            e.size = len(cut)
                    mp.write_bytes(metafiles.dump_manifest(man))
            cases.append(Case(name, d, 1, target.name))
    return cases


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    for c in build_chains(out / "chains") + build_edge_windows(out / "edge") + build_hostile_union(out / "hostile"):
        print(f"{c.code}  {c.name}  {c.path}  {c.mention or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
