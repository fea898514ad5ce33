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
import random
import struct
import subprocess
import tarfile
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


def _tsm(content: Content) -> bytes:
    buf = io.BytesIO()
    w = TSMWriter(buf)
    for key in sorted(content):
        pts = content[key]
        if pts:
            ts = sorted(pts)
            w.write_values(key, KEYS[key], ts, [pts[t] for t in ts])
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
        for name in names:
            if name in compact:
                continue
            if rng.random() < 0.6 and name != cut:
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
                a = G0 + rng.randrange(0, WEEK)
                b = a + rng.randrange(HOUR, WEEK)
                merged = {k: {t: v for t, v in pts.items() if a <= t <= b} for k, pts in merged.items()
                          if rng.random() < 0.7}
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
        if cut is not None:
            key = sorted(self.files[cut])[0]
            self.tars[inc].append((cut, _tsm({key: self.files[cut][key]})))
        for _ in range(rng.randint(0, 2)):
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


@pytest.mark.parametrize("seed", range(100))
def test_untouched_files_are_copied_and_answers_kept(tmp_path: Path, seed: int) -> None:
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


# ---- incompressible data stored -------------------------------------------------------------------

_KINDS = st.sampled_from(["random", "text", "zeros", "random-then-text", "text-then-random"])


def _data(kind: str, seed: int, n: int) -> bytes:
    rng = random.Random(seed)
    noise = rng.randbytes(n)
    text = (b"cpu,host=server%d usage=%d\n" % (seed, seed) * (n // 20 + 1))[:n]
    return {"random": noise, "text": text, "zeros": bytes(n), "random-then-text": noise[: n // 2] + text[n // 2 :],
            "text-then-random": text[: n // 2] + noise[n // 2 :]}[kind]


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
    first = _data(kinds[0][0], seed, kinds[0][1])
    if level == 0:
        assert c.method == "stored"
    elif len(plain.getvalue()) >= 64 << 10 and kinds[0][0] == "random" and kinds[0][1] >= 1 << 20:
        assert c.method == "stored" and c.ratio is not None and c.ratio > 0.9  # the sample is noise
    elif kinds[0][0] in ("text", "zeros") and kinds[0][1] >= 1 << 20:
        assert c.method != "stored" and len(blob) < len(plain.getvalue()) // 2
    if c.method == "stored":  # stored blocks: the tar plus a few bytes per 64 KiB
        assert len(blob) <= len(plain.getvalue()) + 5 * (len(plain.getvalue()) // 65535 + 2) + 64
    del first


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
