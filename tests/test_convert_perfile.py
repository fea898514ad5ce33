"""convert / trim copy each TSM file that needs no change byte for byte, and store portable
members whose data does not compress (issue 15).

A generator builds legacy backups of shards holding 1..4 TSM files (overlapping or not), random
tombstones (whole keys, ranges inside, across and outside a file), random ``--start/--end`` cuts
at, inside and between files, and later increments (identical copies, grown tombstones, new
files, a compaction that replaces earlier files, a ``-start/-end`` copy of a file). The expected
answer is computed here from what was generated — per (key, time) the newest file holding the
point after its own tombstone, inside the range — never by the code under test. Then:

* the points served by the result equal that answer;
* every source file with no tombstone, one copy and its points inside the range is in the result
  byte for byte, under its own name; every other member keeps a source name (or, for the newest
  file, its generation).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import struct
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influx_archive.archive.ops.convert import convert
from influx_archive.archive.ops.tarwrite import GzipSink, TarWriter
from influx_archive.archive.sources import open_source
from influx_archive.archive.sources.shardview import open_shard_reader
from influx_archive.meta import files as metafiles
from influx_archive.meta.model import (
    Data,
    DatabaseInfo,
    RetentionPolicyInfo,
    ShardGroupInfo,
    ShardInfo,
    encode_data,
)
from influx_archive.tsm import naming
from influx_archive.tsm.block import FLOAT, INTEGER
from influx_archive.tsm.tombstone import Tombstone, write_tombstones
from influx_archive.tsm.writer import TSMWriter

HOUR = 3600 * 10**9
WEEK = 7 * 24 * HOUR
G0 = 1_700_000_000 * 10**9 // WEEK * WEEK  # a shard group boundary
MIN, MAX = -(1 << 63), (1 << 63) - 1
KEYS = {b"cpu,host=a#!~#usage": FLOAT, b"cpu,host=b#!~#usage": FLOAT, b"mem,host=a#!~#free": INTEGER}

Content = dict[bytes, dict[int, object]]  # key -> time -> value


def _tsm(content: Content, types: dict[bytes, int] = KEYS) -> bytes:
    buf = io.BytesIO()
    w = TSMWriter(buf)
    for key in sorted(content):
        pts = content[key]
        if pts:
            ts = sorted(pts)
            w.write_values(key, types[key], ts, [pts[t] for t in ts])
    w.close()
    return buf.getvalue()


def _tomb(entries: list[Tombstone]) -> bytes:
    buf = io.BytesIO()
    write_tombstones(buf, entries)
    return buf.getvalue()


def _minus(content: Content, tombs: list[Tombstone]) -> Content:
    """influxd's answer for one file: its points outside every deleted range of their key."""
    out: Content = {}
    for key, pts in content.items():
        ranges = [(t.min, t.max) for t in tombs if t.key == key]
        kept = {t: v for t, v in pts.items() if not any(lo <= t <= hi for lo, hi in ranges)}
        if kept:
            out[key] = kept
    return out


def _served(files: list[tuple[tuple[int, int], Content]], lo: int | None, hi: int | None) -> Content:
    """Newest file wins per (key, time); only ``lo <= t <= hi``."""
    out: Content = {}
    for _order, content in sorted(files, key=lambda f: f[0]):
        for key, pts in content.items():
            for t, v in pts.items():
                if (lo is None or t >= lo) and (hi is None or t <= hi):
                    out.setdefault(key, {})[t] = v
    return {k: v for k, v in out.items() if v}


class Case:
    """One generated legacy backup with one shard, and what it must serve."""

    def __init__(self, rng: random.Random, root: Path) -> None:
        self.rng = rng
        self.root = root
        self.sid = 1
        self.tars: list[list[tuple[str, bytes]]] = [[]]  # per increment: (member name, bytes)
        self.files: dict[str, Content] = {}  # live TSM name -> content (final state)
        self.tombs: dict[str, list[Tombstone]] = {}  # TSM name -> tombstone entries (latest increment)
        self.untouched: set[str] = set()  # names that must come out byte for byte (before the range)
        self.raw: dict[str, bytes] = {}
        self.masked: set[str] = set()  # files a later cut compaction output masks
        self.gen = 0

    def _content(self) -> tuple[Content, int, int]:
        rng = self.rng
        start = G0 + rng.randrange(0, WEEK - 10 * HOUR)
        span = rng.choice([HOUR // 10, HOUR, 5 * HOUR])
        content: Content = {}
        for key, typ in KEYS.items():
            if rng.random() < 0.25:
                continue
            n = rng.choice([1, 7, 300, 1500])
            ts = sorted(rng.sample(range(start, start + span), n))
            content[key] = {t: (rng.random() * 1e6 if typ == FLOAT else rng.randrange(-(1 << 40), 1 << 40)) for t in ts}
        if not content:
            content[b"cpu,host=a#!~#usage"] = {start: 1.5}
        lo = min(min(p) for p in content.values())
        hi = max(max(p) for p in content.values())
        return content, lo, hi

    def _tomb_entries(self, content: Content, lo: int, hi: int) -> list[Tombstone]:
        rng = self.rng
        out = []
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(list(KEYS))
            kind = rng.choice(["full", "inside", "across", "outside", "all"])
            if kind == "full":
                out.append(Tombstone(key, MIN, MAX))
            elif kind == "inside":
                a = rng.randrange(lo, hi + 1)
                out.append(Tombstone(key, a, min(hi, a + rng.randrange(0, HOUR))))
            elif kind == "across":
                out.append(Tombstone(key, lo - HOUR, rng.randrange(lo, hi + 1)))
            elif kind == "outside":
                out.append(Tombstone(key, hi + 1, hi + HOUR))  # deletes nothing of this file
            else:
                out.append(Tombstone(key, lo, hi))
        return out

    def add_file(self, inc: int, tombstone: bool) -> str:
        self.gen += 1
        name = naming.tsm_name(self.gen, 1)
        content, lo, hi = self._content()
        data = _tsm(content)
        self.tars[inc].append((name, data))
        self.files[name] = content
        self.raw[name] = data
        if tombstone:
            self.set_tomb(inc, name, self._tomb_entries(content, lo, hi))
        return name

    def set_tomb(self, inc: int, name: str, entries: list[Tombstone]) -> None:
        self.tombs[name] = entries
        self.tars[inc].append((name[: -len(".tsm")] + ".tombstone", _tomb(entries)))

    def increment(self) -> None:
        """A later backup run: copies of some files, a grown tombstone, new files, maybe a
        compaction of the two oldest files, maybe a -start/-end copy (subset) of one file."""
        rng = self.rng
        self.tars.append([])
        inc = len(self.tars) - 1
        names = sorted(self.files)
        compact = names[:2] if len(names) >= 3 and rng.random() < 0.5 else []
        others = [n for n in names if len(self.files[n]) > 1 and n not in compact]
        # a -start/-end run: the compaction output is cut, and a smaller copy of another file shows it
        ranged = bool(compact) and bool(others) and rng.random() < 0.5
        cut = rng.choice(others) if ranged else None
        # a -start/-end run as influxd makes one: every file it copies is block-filtered to the
        # window (no whole copy of a file reaching outside it, no new file written whole)
        for name in names:
            if name in compact:
                continue
            if rng.random() < 0.6 and name != cut and not ranged:
                self.tars[inc].append((name, self.raw[name]))
            if rng.random() < 0.3:
                content = self.files[name]
                lo = min(min(p) for p in content.values())
                hi = max(max(p) for p in content.values())
                self.set_tomb(inc, name, self.tombs.get(name, []) + self._tomb_entries(content, lo, hi))
        if compact:
            merged = _served([(naming.order_key(n), _minus(self.files[n], self.tombs.get(n, []))) for n in compact],
                             None, None)
            if ranged:  # its copy holds some keys' blocks inside a window: the inputs stay, masked
                # the window holds a point of the other file the run copies (its smaller copy below
                # shows the run was ranged: influxd copies the blocks of every file that meet it)
                assert cut is not None
                t0 = rng.choice(sorted(self.files[cut][sorted(self.files[cut])[0]]))
                a = t0 - rng.randrange(0, WEEK)
                b = max(t0, a + rng.randrange(HOUR, WEEK))
                merged = {k: {t: v for t, v in pts.items() if a <= t <= b} for k, pts in merged.items()}
                merged = {k: pts for k, pts in merged.items() if pts}
                self.masked.update(compact)
            else:
                for n in compact:
                    del self.files[n]
                    self.tombs.pop(n, None)
            if merged:
                g = naming.order_key(compact[-1])[0]
                name = naming.tsm_name(g, max(naming.order_key(n)[1] for n in compact) + 1)
                self.files[name] = merged
                self.raw[name] = _tsm(merged)
                self.tars[inc].append((name, self.raw[name]))
        if cut is not None:  # the run's smaller copy of another file (what shows the run was ranged):
            key = sorted(self.files[cut])[0]  # one key's points inside the window
            inside = {t: v for t, v in self.files[cut][key].items() if a <= t <= b}
            self.tars[inc].append((cut, _tsm({key: inside})))
        for _ in range(0 if ranged else rng.randint(0, 2)):
            self.add_file(inc, tombstone=rng.random() < 0.4)
        whole = [n for n in sorted(self.files) if len(self.files[n]) > 1 and n not in compact]
        if whole and not compact and rng.random() < 0.5:  # a range backup's copy: the blocks of one key
            name = rng.choice(whole)
            key = sorted(self.files[name])[0]
            self.tars[inc].append((name, _tsm({key: self.files[name][key]})))

    def write(self) -> Path:
        d = self.root / "src"
        d.mkdir()
        group = ShardGroupInfo(id=1, start_time=G0, end_time=G0 + WEEK, shards=[ShardInfo(id=self.sid)])
        rp = RetentionPolicyInfo(name="rp", duration=0, shard_group_duration=WEEK, replica_n=1, shard_groups=[group])
        meta = Data(index=1, databases=[DatabaseInfo(name="db", default_retention_policy="rp",
                                                     retention_policies=[rp])],
                    max_shard_group_id=1, max_shard_id=self.sid)
        (d / metafiles.legacy_meta_file_name(0)).write_bytes(metafiles.build_meta_nn(encode_data(meta)))
        for inc, members in enumerate(self.tars):
            buf = io.BytesIO()
            tar = TarWriter(buf)
            for name, data in members:
                tar.add(f"db/rp/{self.sid}/{name}", len(data), io.BytesIO(data), mtime=1)
            tar.close()
            (d / metafiles.legacy_shard_file_name("db", "rp", self.sid, inc)).write_bytes(buf.getvalue())
        return d

    def expected(self, lo: int | None, hi: int | None) -> Content:
        return _served([(naming.order_key(n), _minus(c, self.tombs.get(n, []))) for n, c in self.files.items()],
                       lo, hi)

    def must_copy(self, lo: int | None, hi: int | None) -> set[str]:
        """Files that need no change: one copy, no tombstone entry reaching into a key's span in
        the file, every point in the range."""
        copied = {n for inc in self.tars[1:] for n, data in inc if n.endswith(".tsm") and data != self.raw[n]}
        out = set()
        for n, c in self.files.items():
            reach = [t for t in self.tombs.get(n, [])
                     if t.key in c and t.min <= max(c[t.key]) and t.max >= min(c[t.key])]
            if n in copied or reach or n in self.masked:
                continue
            a = min(min(p) for p in c.values())
            b = max(max(p) for p in c.values())
            if (lo is None or a >= lo) and (hi is None or b <= hi):
                out.add(n)
        return out


def _members(out: Path) -> dict[str, bytes]:
    got = {}
    for p in out.iterdir():
        if p.name.endswith(".tar.gz") or (p.name.startswith("db.") and not p.name.startswith("meta")):
            data = p.read_bytes()
            if p.name.endswith(".gz"):
                data = gzip.decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                for m in tf.getmembers():
                    f = tf.extractfile(m)
                    assert f is not None
                    got[m.name.rsplit("/", 1)[1]] = f.read()
    return got


def _read_back(out: Path) -> Content:
    served: Content = {}
    with open_source(out) as src:
        for shard in src.shards:
            if not shard.files:
                continue
            with open_shard_reader(src, shard) as reader:
                for key in reader.keys():
                    _bt, ts, vs = reader.read(key)
                    if ts:
                        served.setdefault(key, {}).update(zip(ts, vs))
    return served


def _cut(rng: random.Random, case: Case) -> tuple[int | None, int | None]:
    """A range at a file's edge, inside a file, between files, or none."""
    edges = sorted({t for c in case.files.values() for pts in c.values() for t in (min(pts), max(pts))})
    kind = rng.choice(["none", "edge", "inside", "between", "open"])
    if kind == "none" or not edges:
        return None, None
    if kind == "edge":
        a, b = sorted(rng.sample(edges, 2)) if len(edges) > 1 else (edges[0], edges[0])
        return a, b
    if kind == "inside":
        a = rng.randrange(edges[0], edges[-1] + 1)
        return a, a + rng.randrange(0, 3 * HOUR)
    if kind == "between":
        i = rng.randrange(len(edges))
        return edges[i] + 1, None
    return None, rng.randrange(edges[0], edges[-1] + 1)


@pytest.mark.parametrize("seed", [*range(100), *(f"split-{i}" for i in range(20))])
def test_untouched_files_are_copied_and_answers_kept(tmp_path: Path, seed, monkeypatch) -> None:
    """(``split-N``: the rewrites of the one shard shared out to forked processes, as for a large
    shard on a machine with several cores.)"""
    if isinstance(seed, str):
        from influx_archive.archive.ops import convertshard

        monkeypatch.setattr(convertshard, "SPLIT_MIN_BYTES", 0)
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
    rng = random.Random(seed)
    case = Case(rng, tmp_path)
    for _ in range(rng.randint(1, 4)):
        case.add_file(0, tombstone=rng.random() < 0.4)
    for _ in range(rng.choice([0, 1, 1, 2])):
        case.increment()
    src = case.write()
    lo, hi = _cut(rng, case)
    to = rng.choice(["legacy", "portable"])
    out = tmp_path / "out"
    result = convert(src, out, to=to, start=lo, end=hi)
    expected = case.expected(lo, hi)
    assert _read_back(out) == expected
    members = _members(out)
    for name in case.must_copy(lo, hi):
        assert members.get(name) == case.raw[name], f"{name} not copied byte for byte (seed {seed})"
    top = max(naming.order_key(n) for n in case.files)
    for name in members:  # rewritten files keep their names; only the newest may roll over
        assert name in case.files or naming.order_key(name)[0] == top[0], name
    copied = sum(s.copied for s in result.shards)
    assert copied >= len(case.must_copy(lo, hi) & set(members))
    if not expected:
        assert result.shards == []


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("how", ["copied", "rewritten"])
def test_salvage_leaves_out_a_damaged_block(tmp_path: Path, seed: int, how: str) -> None:
    """A flipped byte in one block of a file copied as it is, or rewritten for a tombstone on
    another key: without --salvage the run stops naming the file (container and member); with it
    that block's points are left out (a finding says so) and every other file and block is kept,
    the untouched files still byte for byte."""
    from influx_archive.archive.errors import ChecksumError
    from influx_archive.archive.findings import BLOCK_LEFT_OUT
    from influx_archive.tsm.reader import TSMReader

    rng = random.Random(seed)
    case = Case(rng, tmp_path)
    names = [case.add_file(0, tombstone=rng.random() < 0.3) for _ in range(rng.randint(1, 4))]
    while not any(len(case.files[n]) > 1 for n in names):
        names.append(case.add_file(0, tombstone=False))
    multi = [n for n in names if len(case.files[n]) > 1]
    victim = rng.choice([n for n in multi if n not in case.tombs] or multi)
    case.tombs.pop(victim, None)
    case.tars[0] = [(n, d) for n, d in case.tars[0] if n != victim[: -len(".tsm")] + ".tombstone"]
    raw = bytearray(case.raw[victim])
    reader = TSMReader(io.BytesIO(bytes(raw)), name=victim, size=len(raw))
    key, _bt, entries = rng.choice(list(reader.iter_index()))
    entry = rng.choice(entries)
    lost = set(reader.decode_block(key, entry)[0])
    if how == "rewritten":  # a tombstone removing another key of the file: it is rewritten
        case.set_tomb(0, victim, [Tombstone(next(k for k in case.files[victim] if k != key), MIN, MAX)])
    raw[entry.offset + 4 + rng.randrange(entry.size - 4)] ^= 0x40  # inside the block, past its CRC
    case.tars[0] = [(n, bytes(raw) if n == victim else d) for n, d in case.tars[0]]
    src = case.write()
    with pytest.raises(ChecksumError) as err, open_source(src) as source:
        convert(source, tmp_path / "refused", to="legacy")
    assert err.value.member is not None and err.value.member.endswith(victim)
    assert not (tmp_path / "refused").exists()
    kept = {k: {t: v for t, v in pts.items() if not (k == key and t in lost)} for k, pts in case.files[victim].items()}
    case.files[victim] = {k: pts for k, pts in kept.items() if pts}
    if not case.files[victim]:
        del case.files[victim]
    with open_source(src, salvage=True) as source:
        result = convert(source, tmp_path / "o", to=rng.choice(["legacy", "portable"]))
    assert [f.code for f in result.findings] == [BLOCK_LEFT_OUT]
    assert result.findings[0].member is not None and result.findings[0].member.endswith(victim)
    assert _read_back(tmp_path / "o") == case.expected(None, None)
    members = _members(tmp_path / "o")
    for n in case.must_copy(None, None) - {victim}:
        assert members[n] == case.raw[n]


@pytest.mark.parametrize("files", [2, 3, 4])
@pytest.mark.parametrize("variant", ["conflict", "conflict-cut-away", "earlier-dropped"])
def test_a_key_typed_differently_in_two_files_is_refused(tmp_path: Path, cli, files: int, variant: str) -> None:
    """Each file handled alone must still refuse what reading them together refuses: one key
    float in one file and integer in another (influxd can neither serve nor compact it) — also
    when the range leaves only one of them. A key the earlier file's tombstone removes wholly
    (DROP SERIES, then written again with another type) is no conflict."""
    rng = random.Random(files * 10 + len(variant))
    case = Case(rng, tmp_path)
    key = b"cpu,host=a#!~#usage"
    names = [case.add_file(0, tombstone=False) for _ in range(files)]
    retyped = names[-1] if variant == "earlier-dropped" else names[rng.randrange(1, files)]
    content = {key: {t: rng.getrandbits(40) for t in (G0 + WEEK - HOUR + i for i in range(5))}}
    case.tars[0] = [(n, d) for n, d in case.tars[0] if n != retyped]
    case.tars[0].append((retyped, _tsm(content, {key: INTEGER})))
    if variant == "earlier-dropped":
        for n in names:
            if n < retyped and key in case.files[n]:
                case.set_tomb(0, n, [Tombstone(key, MIN, MAX)])
    src = case.write()
    args = ["--start", str(G0 + WEEK - HOUR)] if variant == "conflict-cut-away" else []
    proc = cli("convert", str(src), str(tmp_path / "o"), "--to", "legacy", *args)
    earlier = any(key in case.files[n] for n in names if n != retyped)
    if variant == "earlier-dropped" or not earlier:
        assert proc.returncode == 0, proc.stderr
        got = _read_back(tmp_path / "o")
        assert got.get(key, {}) == content[key]
    else:
        assert proc.returncode == 1 and "influxd cannot serve or compact it" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
        assert not (tmp_path / "o").exists()


# ---- incompressible data stored -------------------------------------------------------------------

_KINDS = st.sampled_from(["random", "text", "zeros", "random-then-text", "text-then-random"])


def _data(kind: str, seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    noise = rng.randbytes(n)
    text = (b"cpu,host=server%d usage=%d\n" % (seed, seed) * (n // 20 + 1))[:n]
    return {"random": noise, "text": text, "zeros": bytes(n), "random-then-text": noise[: n // 2] + text[n // 2 :],
            "text-then-random": text[: n // 2] + noise[n // 2 :]}[kind]


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.tuples(_KINDS, st.integers(0, 3 << 20)), min_size=1, max_size=3),
       level=st.integers(0, 9), seed=st.integers(0, 1 << 30), chunk=st.sampled_from([1, 511, 4096, 70_000, 1 << 20]))
def test_gzip_members_every_reader_accepts(tmp_path: Path, kinds, level: int, seed: int, chunk: int) -> None:
    """Random, compressible and mixed members, at every level and write size: the .tar.gz holds
    the exact tar for Python's gzip, ``gzip -t`` and ``tar -tzf``; what does not compress is stored."""
    plain = io.BytesIO()
    ref = TarWriter(plain)
    path = tmp_path / f"m{seed}.tar.gz"
    path.unlink(missing_ok=True)
    names = []
    with open(path, "xb") as raw:
        sink = GzipSink(raw, level=level, filename=path.name[:-3])

        class Split:  # hands the sink writes of ``chunk`` bytes, as readers of any size do
            def write(self, data) -> None:
                mv = memoryview(data)
                for i in range(0, len(mv), chunk):
                    sink.write(mv[i : i + chunk])

        tar = TarWriter(Split())  # type: ignore[arg-type]
        for i, (kind, n) in enumerate(kinds):
            data = _data(kind, seed + i, n)
            names.append(f"db/rp/1/{i:09d}-000000001.tsm")
            tar.add(names[-1], n, io.BytesIO(data), mtime=0)
            ref.add(names[-1], n, io.BytesIO(data), mtime=0)
        tar.close()
        ref.close()
        sink.close()
    blob = path.read_bytes()
    assert gzip.decompress(blob) == plain.getvalue()
    assert subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0
    listed = subprocess.run(["tar", "-tzf", str(path)], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.split() == names
    c = sink.compression
    assert c is not None
    if level == 0:
        assert c.method == "stored"
    elif len(plain.getvalue()) >= 64 << 10 and kinds[0][0] == "random" and kinds[0][1] >= 1 << 20:
        assert c.method == "stored" and c.ratio is not None and c.ratio > 0.9  # the sample is noise
    elif kinds[0][0] in ("text", "zeros") and kinds[0][1] >= 1 << 20:
        assert c.method != "stored"
        if len(kinds) == 1:
            assert len(blob) < len(plain.getvalue()) // 2
    if c.method == "stored":  # stored blocks: the tar plus a few bytes per 64 KiB
        assert len(blob) <= len(plain.getvalue()) + 5 * (len(plain.getvalue()) // 65535 + 2) + 64


def test_portable_dry_run_names_the_compression(tmp_path: Path, cli) -> None:
    """A shard of random values is planned and written stored, a compressible one compressed;
    ``--dry-run`` says so in text and JSON, and ``--compress-level 0`` stores everything."""
    rng = random.Random(7)
    case = Case(rng, tmp_path)
    def noise(typ: int):  # every bit random (NaN aside): nothing a compressor can find
        while typ == FLOAT:
            v = struct.unpack("<d", rng.randbytes(8))[0]
            if v == v:
                return v
        return rng.getrandbits(63) - (1 << 62)

    noisy = {key: {G0 + i * 10**9: noise(typ) for i in range(60_000)}
             for key, typ in KEYS.items()}
    case.tars[0].append(("000000001-000000001.tsm", _tsm(noisy)))
    src = case.write()
    proc = cli("convert", str(src), str(tmp_path / "o"), "--to", "portable", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "compression: stored (incompressible: sample ratio" in proc.stdout
    proc = cli("convert", str(src), str(tmp_path / "o"), "--to", "portable", "--json")
    assert proc.returncode == 0, proc.stderr
    shard = json.loads(proc.stdout)["shards"][0]
    assert shard["compression"]["method"] == "stored" and shard["copied"] == 1
    blob = (tmp_path / "o" / shard["file_name"]).read_bytes()
    assert len(gzip.decompress(blob)) == shard["tar_size"]
    proc = cli("convert", str(src), str(tmp_path / "z"), "--to", "portable", "--compress-level", "0", "--dry-run",
               "--json")
    plan = json.loads(proc.stdout)["plan"]
    assert plan["shards"][0]["compression"]["text"] == "stored (level 0)"


# ---- interop: a real influxd's level-1 files, tombstones, its own restore -------------------------

DAY = 24 * HOUR


def _shard_dirs(server) -> list[Path]:
    return sorted(p for p in (server.data_dir / "pf" / "autogen").iterdir() if p.is_dir())


def _wait_files(server, n: int, timeout: float = 60) -> None:
    """Until every shard holds ``n`` TSM files and the WAL is empty (each batch snapshotted)."""
    deadline = time.monotonic() + timeout
    while True:
        dirs = _shard_dirs(server) if (server.data_dir / "pf" / "autogen").exists() else []
        if dirs and all(len(list(d.glob("*.tsm"))) == n for d in dirs) and all(
                w.stat().st_size == 0 for w in server.wal_dir.rglob("*.wal")):
            return
        assert time.monotonic() < deadline, f"no {n} level-1 files per shard: {[sorted(os.listdir(d)) for d in dirs]}"
        time.sleep(0.2)


def _block_compactions(server) -> None:
    """influxd compacts a file with a tombstone within a second; an empty ``<gen>-<seq>.tsm.tmp``
    for every output name it could use makes each attempt abort (influxd opens it O_EXCL)."""
    for d in _shard_dirs(server):
        for tsm in d.glob("*.tsm"):
            g, s = naming.order_key(tsm.name)
            for seq in range(s + 1, s + 6):
                (d / f"{naming.tsm_name(g, seq)}.tmp").touch()


def _lines(rng: random.Random, base: int, batch: int, step: int = 10 * 10**9) -> str:
    out = []
    lo = base + batch * 2 * HOUR
    times = range(lo, lo + 2 * HOUR, step)
    if batch == 2:  # overwrite part of batch 0: the newest file must win
        times = list(times) + list(range(base, base + 20 * step, step))
    for host in range(5):
        for t in times:
            out.append(f"m,host=h{host} f={rng.random() * 1e6!r},i={rng.getrandbits(40)}i,"
                       f"s=\"{rng.getrandbits(64):x}\",b={'true' if rng.random() < .5 else 'false'} {t}")
    return "\n".join(out)


@pytest.mark.interop
@pytest.mark.slow
def test_level1_files_and_tombstones_round_trip_through_influxd(tmp_path, influxd_factory, cli) -> None:
    """Two shards of three level-1 TSM files each (one snapshot per batch), a range delete in
    one file of each: influxd's backup -portable and our offline backup, converted to legacy and
    portable (stored deflate too) and trimmed, restored by influxd's own restore: every point,
    and the untouched files byte for byte."""
    import influxd as harness
    from test_convert import RESTORED, restrict

    rng = random.Random(15)
    base_a = G0 - 10 * WEEK + DAY  # inside one shard group; base_b one group later
    base_b = base_a + WEEK
    server = influxd_factory(extra={"data.cache-snapshot-memory-size": "1k",
                                    "data.compact-full-write-cold-duration": "24h"})
    server.execute("CREATE DATABASE pf")
    for batch in range(3):
        server.write(_lines(rng, base_a, batch) + "\n" + _lines(rng, base_b, batch), db="pf")
        _wait_files(server, batch + 1)
    _block_compactions(server)
    a_mid = base_a + 2 * HOUR  # batch 1 of shard A
    server.execute(f"DELETE FROM m WHERE host = 'h1' AND time >= {a_mid + 10 * 60 * 10**9} "
                   f"AND time <= {a_mid + 40 * 60 * 10**9}", db="pf")
    server.execute(f"DELETE FROM m WHERE host = 'h4' AND time >= {base_b + 4 * HOUR + HOUR}", db="pf")
    # influxd writes the tombstone to every file whose time range meets the delete's
    tombed = {(d.name, p.name[: -len("tombstone")] + "tsm") for d in _shard_dirs(server) for p in d.glob("*.tombstone")}
    assert {d for d, _ in tombed} == {d.name for d in _shard_dirs(server)}, tombed
    truth = harness.without_dead_fields(server.dump())
    portable = tmp_path / "influxd-portable"
    proc = server.backup(portable, "-portable")
    assert proc.returncode == 0, proc.stderr
    server.stop()
    originals = {}
    for d in _shard_dirs(server):
        for p in d.glob("*.tsm.tmp"):
            p.unlink()
        originals.update({(d.name, p.name): p.read_bytes() for p in d.glob("*.tsm")})
    assert len(originals) == 6
    untouched = {k: v for k, v in originals.items() if k not in tombed}
    assert untouched
    ours = tmp_path / "ours"
    proc = cli("backup", str(server.root), str(ours), "--json")
    assert proc.returncode == 0, proc.stderr
    assert sum(s["copied"] for s in json.loads(proc.stdout)["shards"]) >= len(untouched)

    # influxd's portable backup -> legacy, restored offline by influxd
    legacy = tmp_path / "legacy"
    proc = cli("convert", str(portable), str(legacy), "--to", "legacy", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    written: dict[tuple[str, str], bytes] = {}
    for s in result["shards"]:
        assert s["rewritten"] >= 1 and s["copied"] >= 1
        with tarfile.open(legacy / s["file_name"]) as tf:
            for m in tf.getmembers():
                f = tf.extractfile(m)
                assert f is not None
                _db, _rp, sid, name = m.name.split("/")
                written[(sid, name)] = f.read()
    assert set(written) == set(originals)  # every file keeps its name (the source's shard ids)
    for k, data in untouched.items():
        assert written[k] == data, k  # the untouched level-1 files, byte for byte
    assert sum(s["copied"] for s in result["shards"]) == len(untouched)
    root = tmp_path / "restored-legacy"
    proc = harness.restore_offline(legacy, root / "meta", root / "data", "-database", "pf")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    restored = influxd_factory(root)
    assert harness.compare_when_settled(restored, truth, databases=["pf"], sections=RESTORED) == []

    # trim: starts inside shard A's middle file, ends inside shard B's first file
    lo, hi = a_mid + HOUR, base_b + HOUR
    trimmed = tmp_path / "trimmed"
    proc = cli("trim", str(portable), str(trimmed), "--start", str(lo), "--end", str(hi), "--json")
    assert proc.returncode == 0, proc.stderr
    shards = json.loads(proc.stdout)["shards"]
    assert all(s["dropped_files"] >= 1 and s["copied"] + s["rewritten"] + s["dropped_files"] == 3 for s in shards)
    restored = influxd_factory()
    proc = restored.restore_portable(trimmed)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert harness.compare_when_settled(restored, restrict(truth, lo, hi), databases=["pf"], sections=RESTORED) == []

    # our offline backup -> portable of stored deflate blocks, restored by influxd restore -portable
    stored = tmp_path / "stored"
    proc = cli("convert", str(ours), str(stored), "--to", "portable", "--compress-level", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    for s in json.loads(proc.stdout)["shards"]:
        assert s["compression"]["method"] == "stored" and s["copied"] == 3
        blob = (stored / s["file_name"]).read_bytes()
        head = blob.index(b"\0", 10) + 1  # after the FNAME field
        assert blob[3] & 0x08 and blob[head] & 0x06 == 0  # a stored deflate block first
    restored = influxd_factory()
    proc = restored.restore_portable(stored)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert harness.compare_when_settled(restored, truth, databases=["pf"], sections=RESTORED) == []
