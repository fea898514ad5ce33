"""Hostile counts and lengths: generators of inputs whose numbers lie (memory bounded by the work).

Every structure this project reads carries counts and lengths: RLE and simple8b timestamp counts,
integer/unsigned/boolean value counts, snappy preambles and string lengths in TSM blocks; WAL entry
lengths, snappy preambles, write-group value counts and string lengths; tombstone record key
lengths and gzip content; ``meta.NN`` frame lengths, protobuf LEN fields, manifest sizes. The
generators below build, from the real fixtures in ``fixtures/``, small inputs whose numbers claim
far more than their bytes hold (or more than the documented caps), across the header variants
(every RLE scale nibble, simple8b selectors 0 and 1 that claim 240 / 120 values per 8-byte word,
raw bodies, each block type), and wrap them as a TSM file / WAL segment / tombstone / metastore /
manifest inside every source kind where practical: a single file, a server root (``live``), a
legacy backup (tar member) and a portable backup (``.tar.gz`` member, manifest kept true).

Each generator writes its cases under a directory and returns :class:`Case` objects: the source to
hand to the verbs, the exit code each verb must give, and the file name the one error line must
mention. ``tests/test_trust_bounds.py`` runs every (case, verb) through the CLI in a subprocess
limited to 1 GiB of address space (``RLIMIT_AS``) by :func:`run_jobs` (``python
tests/hostile_bounds.py --run JOBS.json``), so a count trusted anywhere shows up as a
``MemoryError`` instead of a passing test.

Expected codes follow the contract: 1 for damage (a count the bytes cannot hold, or above a
documented cap), 3 where a cap refuses a possible but unsupported input (a tombstone whose gzip
content inflates past 64 MiB), 0 where a verb copies a block unchanged without reading the lying
field (a value section whose count disagrees with its timestamps is only seen by decoding verbs).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import resource
import shutil
import struct
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PORTABLE_STEM = "20261125T064330Z"
TSM_NAME = "000000001-000000001.tsm"
TOMB_NAME = "000000001-000000001.tombstone"
WAL_NAME = "_00004.wal"

#: Address-space limit the CLI runs under in the tests (bytes).
RLIMIT_BYTES = 1 << 30

from influx_archive.meta.format import MAX_MANIFEST_SIZE  # noqa: E402
from influx_archive.tsm import block as tsm_block  # noqa: E402
from influx_archive.tsm.codec import booleans, floats, integers, strings  # noqa: E402
from influx_archive.tsm.reader import TSMReader  # noqa: E402
from influx_archive.tsm.wal import MAX_ENTRY_PAYLOAD  # noqa: E402

CAP = tsm_block.MAX_BLOCK_VALUES
HUGE_COUNTS = (CAP + 1, 1_000_000, 1 << 32, (1 << 64) - 1)


# ---------------------------------------------------------------------------------- verbs

#: verb name -> argv builder (source, targets directory). Targets are created under the latter.
VERBS: dict[str, Callable[[Path, Path], list[str]]] = {
    "verify": lambda s, t: ["verify", str(s)],
    "verify --deep": lambda s, t: ["verify", "--deep", str(s)],
    "inspect --points": lambda s, t: ["inspect", "--points", str(s)],
    "export": lambda s, t: ["export", str(s), "--out", str(t / "out.lp")],
    "convert": lambda s, t: ["convert", str(s), str(t / "out")],
    "restore": lambda s, t: ["restore", str(s), "--metadir", str(t / "meta"), "--datadir", str(t / "data"),
                             "--waldir", str(t / "wal")],
    "dump-tsm --blocks": lambda s, t: ["dump-tsm", "--blocks", str(s)],
    "dump-wal": lambda s, t: ["dump-wal", str(s)],
}
#: Verbs that report damage as findings on stdout (``error: ...`` lines) instead of one stderr line.
REPORT_VERBS = frozenset({"verify", "verify --deep", "inspect --points"})


@dataclass(frozen=True)
class Case:
    """One hostile source: ``expect`` maps each verb to run to its exit code; a failing run must
    name ``mention`` (a file name) and an offset in its one error line."""

    name: str
    path: Path
    expect: dict[str, int]
    mention: str
    family: str = ""
    offset: bool = True  # the error line must carry "offset N"
    notes: tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------- byte helpers


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


T0 = struct.pack(">q", 1_790_000_000_000_000_000)


def ts_rle(count: int, scale: int = 0, delta: int = 1) -> bytes:
    """Timestamp section, RLE (docs/formats.md#timestamp-encoding): header 0x2D, t0, uvarint delta, uvarint count."""
    return bytes((0x20 | scale,)) + T0 + uvarint(delta) + uvarint(count)


def ts_packed(selector: int, words: int, scale: int = 0) -> bytes:
    """Timestamp section, simple8b: ``words`` words of selector 0 (240 ones) or 1 (120 ones)."""
    return bytes((0x10 | scale,)) + T0 + struct.pack(">Q", selector << 60) * words


def ts_raw(count: int) -> bytes:
    """Timestamp section, raw: honest bytes (8 per timestamp), more timestamps than the cap."""
    return bytes((0x00,)) + T0 + struct.pack(">Q", 1) * (count - 1)


def block(block_type: int, ts: bytes, values: bytes) -> bytes:
    return bytes((block_type,)) + uvarint(len(ts)) + ts + values


#: One honest value of each block type (the section a lying timestamp section is paired with).
ONE_VALUE = {
    tsm_block.FLOAT: floats.encode([1.5]),
    tsm_block.INTEGER: integers.encode([7]),
    tsm_block.BOOLEAN: booleans.encode([True]),
    tsm_block.STRING: strings.encode([b"x"]),
    tsm_block.UNSIGNED: integers.encode_unsigned([7]),
}


def lying_timestamp_blocks() -> list[tuple[str, bytes]]:
    """Blocks whose timestamp section claims more values than the cap: every RLE scale nibble
    with several counts, simple8b selector 0/1 words, a raw body, paired with each block type."""
    sections: list[tuple[str, bytes]] = []
    for scale in (0, 1, 6, 12, 15):
        for n in HUGE_COUNTS:
            sections.append((f"ts-rle-s{scale}-n{n}", ts_rle(n, scale)))
    sections.append(("ts-rle-delta0", ts_rle(1 << 40, 0, 0)))
    sections.append(("ts-s8b-sel0", ts_packed(0, CAP // 240 + 1)))
    sections.append(("ts-s8b-sel1", ts_packed(1, CAP // 120 + 1, scale=3)))
    sections.append(("ts-s8b-sel0-many", ts_packed(0, 4096)))
    sections.append(("ts-raw", ts_raw(CAP + 1)))
    out = []
    for i, (label, ts) in enumerate(sections):
        # every block type gets every section variant over the whole list, cycling the pairing
        for btype in tsm_block.BLOCK_TYPE_NAMES if i % 4 == 0 else (i % 5,):
            out.append((f"{label}-{tsm_block.BLOCK_TYPE_NAMES[btype]}", block(btype, ts, ONE_VALUE[btype])))
    return out


def lying_value_blocks() -> list[tuple[str, bytes]]:
    """Blocks with 3 honest timestamps whose value section claims another, huge count."""
    ts = ts_rle(3)
    first = struct.pack(">Q", 2)
    out = []
    for n in HUGE_COUNTS:
        for btype, name in ((tsm_block.INTEGER, "integer"), (tsm_block.UNSIGNED, "unsigned")):
            out.append((f"val-{name}-rle-n{n}", block(btype, ts, b"\x20" + first + uvarint(2) + uvarint(n))))
        out.append((f"val-boolean-n{n}", block(tsm_block.BOOLEAN, ts, b"\x10" + uvarint(n) + b"\xe0")))
        # snappy preamble declaring n bytes (impossible for the few compressed bytes)
        out.append((f"val-string-snappy-n{n}", block(tsm_block.STRING, ts, b"\x10" + uvarint(n) + b"\x00\x01")))
    for name, btype in (("integer", tsm_block.INTEGER), ("unsigned", tsm_block.UNSIGNED)):
        out.append((f"val-{name}-s8b-sel0", block(btype, ts, b"\x10" + first + struct.pack(">Q", 0) * 64)))
    # a string payload whose first value length says 2^40 bytes (the payload is valid snappy)
    import cramjam

    payload = uvarint(1 << 40) + b"abc"
    out.append(("val-string-len", block(tsm_block.STRING, ts, b"\x10" + bytes(cramjam.snappy.compress_raw(payload)))))
    # a float stream holding 2000 values for 3 timestamps
    out.append(("val-float-extra", block(tsm_block.FLOAT, ts, floats.encode([float(i) for i in range(2000)]))))
    return out


def tsm_with_block(original: bytes, hostile: bytes) -> bytes:
    """``original`` (a real TSM file) with its first key's blocks replaced by the one ``hostile``
    block (index type set to the block's type), every other key and block kept as it was."""
    with TSMReader(io.BytesIO(original), name="orig") as r:
        index = list(r.iter_index())
        frames = {e.offset: r.read_frame(e) for _, _, entries in index for e in entries}
    out = bytearray(original[:5])
    records = []
    for k, (key, btype, entries) in enumerate(index):
        if k == 0:
            frame = struct.pack(">I", zlib.crc32(hostile)) + hostile
            e0 = entries[0]
            records.append((key, hostile[0], [(e0.min_time, entries[-1].max_time, len(out), len(frame))]))
            out += frame
            continue
        ents = []
        for e in entries:
            ents.append((e.min_time, e.max_time, len(out), e.size))
            out += frames[e.offset]
        records.append((key, btype, ents))
    index_offset = len(out)
    for key, btype, ents in records:
        out += struct.pack(">H", len(key)) + key + struct.pack(">BH", btype, len(ents))
        out += b"".join(struct.pack(">qqQI", *e) for e in ents)
    return bytes(out + struct.pack(">Q", index_offset))


# ---------------------------------------------------------------------------------- wrappers


def _tar_replace(data: bytes, gz: bool, replace: dict[str, bytes | None]) -> bytes:
    """A tar (gzip'd if ``gz``) with members whose name ends with a key of ``replace`` given new
    bytes (None: left out); everything else as it was."""
    src = tarfile.open(fileobj=io.BytesIO(gzip.decompress(data) if gz else data), mode="r:")
    buf = io.BytesIO()
    with src, tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        for m in src.getmembers():
            body = src.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            for suffix, new in replace.items():
                if m.name.endswith(suffix):
                    body = new
                    break
            else:
                suffix = None
            if suffix is not None and body is None:
                continue
            m.size = len(body) if body is not None else 0
            dst.addfile(m, io.BytesIO(body) if body is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def wrap_file(root: Path, name: str, filename: str, data: bytes) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / filename).write_bytes(data)
    return d / filename


def wrap_live(root: Path, name: str, files: dict[str, bytes | None]) -> Path:
    """fixtures/live with files under data/db1/autogen/2 (or wal/db1/autogen/4 for .wal) replaced
    (None: removed)."""
    d = root / name
    shutil.copytree(FIXTURES / "live", d)
    for fname, data in files.items():
        where = d / ("wal/db1/autogen/4" if fname.endswith(".wal") else "data/db1/autogen/2") / fname
        if fname == "meta.db":
            where = d / "meta" / "meta.db"
        if data is None:
            where.unlink(missing_ok=True)
        else:
            where.write_bytes(data)
    return d


def wrap_legacy(root: Path, name: str, files: dict[str, bytes | None]) -> Path:
    """fixtures/legacy with members of shard 2's tar replaced, or a top-level file (meta.01)."""
    d = root / name
    shutil.copytree(FIXTURES / "legacy", d)
    members = {k: v for k, v in files.items() if not k.startswith("meta.")}
    for k, v in files.items():
        if k.startswith("meta.") and v is not None:
            (d / k).write_bytes(v)
    if members:
        tar = d / "db1.autogen.00002.00"
        tar.write_bytes(_tar_replace(tar.read_bytes(), False, members))
    return d


def wrap_portable(root: Path, name: str, files: dict[str, bytes | None]) -> Path:
    """fixtures/portable with members of shard 2's .tar.gz replaced (its manifest size kept true),
    or a top-level file (``.meta`` / ``.manifest`` given by suffix)."""
    d = root / name
    shutil.copytree(FIXTURES / "portable", d)
    members = {k: v for k, v in files.items() if not k.startswith(".")}
    for k, v in files.items():
        if k.startswith(".") and v is not None:
            (d / f"{PORTABLE_STEM}{k}").write_bytes(v)
    if members:
        f = d / f"{PORTABLE_STEM}.s2.tar.gz"
        data = _tar_replace(f.read_bytes(), True, members)
        f.write_bytes(data)
        man = d / f"{PORTABLE_STEM}.manifest"
        doc = json.loads(man.read_bytes())
        for e in doc["files"]:
            if e["fileName"] == f.name:
                e["size"] = len(gzip.decompress(data))
        man.write_text(json.dumps(doc, indent=2))
    return d


def _fixture_tsm() -> bytes:
    return (FIXTURES / "live/data/db1/autogen/2" / TSM_NAME).read_bytes()


# ---------------------------------------------------------------------------------- generators

#: verbs that decode every block / only read counts, for a block whose *timestamp* count lies
TS_FILE_VERBS = {"verify": 1, "verify --deep": 1, "inspect --points": 1, "dump-tsm --blocks": 1}
TS_DIR_VERBS = {"verify": 1, "verify --deep": 1, "inspect --points": 1, "export": 1, "convert": 1, "restore": 1}
#: lying value blocks whose lie is inside the stream (no header states the count)
DECODE_ONLY = frozenset({"val-string-len", "val-float-extra"})
#: such a lie is seen by the verbs that decode values; copies pass the frame as is
VAL_FILE_VERBS = {"verify --deep": 1, "dump-tsm --blocks": 0}
VAL_DIR_VERBS = {"verify --deep": 1, "export": 1, "convert": 0}


def tsm_cases(root: Path) -> list[Case]:
    """Every lying block as a single .tsm file, and each one also inside one source kind (live,
    legacy, portable in turn), with the verbs that must refuse it."""
    root = Path(root)
    original = _fixture_tsm()
    cases = []
    kinds = (("live", wrap_live), ("legacy", wrap_legacy), ("portable", wrap_portable))
    blocks = [(n, b, TS_FILE_VERBS, TS_DIR_VERBS) for n, b in lying_timestamp_blocks()]
    # a value count stated in a section header is checked like the timestamp count; what only
    # decoding tells (inside the Gorilla stream or the string payload) is seen by decoding verbs
    blocks += [(n, b, VAL_FILE_VERBS, VAL_DIR_VERBS) if n in DECODE_ONLY else (n, b, TS_FILE_VERBS, TS_DIR_VERBS)
               for n, b in lying_value_blocks()]
    for i, (label, hostile, file_verbs, dir_verbs) in enumerate(blocks):
        data = tsm_with_block(original, hostile)
        path = wrap_file(root, f"tsm-file-{label}", TSM_NAME, data)
        cases.append(Case(f"tsm-file-{label}", path, dict(file_verbs), TSM_NAME, "tsm"))
        kind, wrap = kinds[i % len(kinds)]
        files: dict[str, bytes | None] = {TSM_NAME: data, TOMB_NAME: None}
        d = wrap(root, f"tsm-{kind}-{label}", files)
        cases.append(Case(f"tsm-{kind}-{label}", d, dict(dir_verbs), TSM_NAME, "tsm"))
    # a footer pointing into the blocks of a file whose "index" would then be large: refused
    # from its first record, the span is never read whole
    big = tsm_with_block(original, block(tsm_block.INTEGER, ts_raw(CAP - 1), integers.encode(list(range(CAP - 1)))))
    for at in (200, 1000, 50_000):
        data = big[:-8] + struct.pack(">Q", at)
        path = wrap_file(root, f"tsm-file-footer-{at}", TSM_NAME, data)
        cases.append(Case(f"tsm-file-footer-{at}", path, dict(TS_FILE_VERBS), TSM_NAME, "tsm"))
        d = wrap_live(root, f"tsm-live-footer-{at}", {TSM_NAME: data, TOMB_NAME: None})
        cases.append(Case(f"tsm-live-footer-{at}", d, dict(TS_DIR_VERBS), TSM_NAME, "tsm"))
    return cases


def _wal_entry(entry_type: int, compressed: bytes) -> bytes:
    return struct.pack(">BI", entry_type, len(compressed)) + compressed


def _snappy(payload: bytes) -> bytes:
    import cramjam

    return bytes(cramjam.snappy.compress_raw(payload))


def lying_wal_entries() -> list[tuple[str, bytes]]:
    """WAL entries whose lengths or counts lie (each is followed by the fixture's valid entries,
    so it is damage influxd would silently drop the rest after, not a torn tail)."""
    key = b"cpu,host=a#!~#v"
    out = [
        ("wal-length-past-end", struct.pack(">BI", 1, (1 << 32) - 1) + b"\x00" * 32),
        ("wal-length-zero-payload", struct.pack(">BI", 1, 0)),
    ]
    for n in ((1 << 31), (1 << 32) - 1, 1 << 40):
        out.append((f"wal-snappy-preamble-{n}", _wal_entry(1, uvarint(n) + b"\x00" * 16)))
    for n in ((1 << 32) - 1, 1 << 24, 70_000):
        group = struct.pack(">BH", 1, len(key)) + key + struct.pack(">I", n) + struct.pack(">qd", 1, 1.0)
        out.append((f"wal-value-count-{n}", _wal_entry(1, _snappy(group))))
    group = struct.pack(">BH", 4, len(key)) + key + struct.pack(">I", 1) + struct.pack(">qI", 1, (1 << 32) - 1) + b"ab"
    out.append(("wal-string-length", _wal_entry(1, _snappy(group))))
    group = struct.pack(">BH", 1, 0xFFFF) + key
    out.append(("wal-key-length", _wal_entry(1, _snappy(group))))
    rng = struct.pack(">qq", 0, 10) + struct.pack(">I", (1 << 32) - 1) + key
    out.append(("wal-delete-range-key-length", _wal_entry(3, _snappy(rng))))
    out.append(("wal-ones-4mb", b"\x01" * (4 << 20)))
    # declared payload within the snappy expansion bound but above MAX_ENTRY_PAYLOAD
    junk = MAX_ENTRY_PAYLOAD // 20 + 1024
    out.append(("wal-payload-cap", _wal_entry(1, uvarint(MAX_ENTRY_PAYLOAD + 1) + b"\x00" * junk)))
    return out


WAL_DIR_VERBS = {"verify": 1, "export": 1, "convert": 1, "inspect --points": 1, "restore": 1}
WAL_FILE_VERBS = {"verify": 1, "dump-wal": 1}


def wal_cases(root: Path) -> list[Case]:
    """Each lying entry before the fixture segment's valid entries, as a single .wal and inside a
    server root (the only source kind with a WAL)."""
    root = Path(root)
    good = (FIXTURES / "live/wal/db1/autogen/4" / WAL_NAME).read_bytes()
    cases = []
    for label, entry in lying_wal_entries():
        data = entry + good
        path = wrap_file(root, f"wal-file-{label}", WAL_NAME, data)
        cases.append(Case(f"wal-file-{label}", path, dict(WAL_FILE_VERBS), WAL_NAME, "wal"))
        d = wrap_live(root, f"wal-live-{label}", {WAL_NAME: data})
        cases.append(Case(f"wal-live-{label}", d, dict(WAL_DIR_VERBS), WAL_NAME, "wal"))
    return cases


def _record(key: bytes, klen: int | None = None, mn: int = 0, mx: int = 10) -> bytes:
    return struct.pack(">I", len(key) if klen is None else klen) + key + struct.pack(">qq", mn, mx)


def _gzip_member(content: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(content) + c.flush()


def lying_tombstones() -> list[tuple[str, bytes, int]]:
    """(label, tombstone file, exit code): record key lengths past the data and the 65535 limit in
    every version with records, and gzip content that inflates past the 64 MiB cap."""
    key = b"cpu,host=h1#!~#v"
    out = []
    for klen in (1 << 31, (1 << 32) - 1, 70_000):
        out.append((f"tomb-v2-klen-{klen}", b"\x00\x00\x15\x02" + _record(key, klen), 1))
        out.append((f"tomb-v3-klen-{klen}", b"\x00\x00\x15\x03" + _gzip_member(_record(key, klen)), 1))
        out.append((f"tomb-v4-klen-{klen}", b"\x00\x00\x15\x04" + _gzip_member(_record(key) + _record(key, klen)), 1))
    out.append(("tomb-v2-klen-past-end", b"\x00\x00\x15\x02" + _record(key, 60_000), 1))
    # 96 MiB of zeros: 5 million identical empty-key records; refused at the 64 MiB cap (exit 3)
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    bomb = b"".join(c.compress(zeros) for _ in range(96)) + c.flush()
    out.append(("tomb-v4-bomb", b"\x00\x00\x15\x04" + bomb, 3))
    return out


def tombstone_cases(root: Path) -> list[Case]:
    """Each lying tombstone beside shard 2's real TSM file, in every source kind: a server root
    (data dir), a legacy tar member and a portable .tar.gz member."""
    root = Path(root)
    cases = []
    kinds = (("live", wrap_live), ("legacy", wrap_legacy), ("portable", wrap_portable))
    for i, (label, data, code) in enumerate(lying_tombstones()):
        # the tar kinds need a TSM member to hang the tombstone on: shard 2 has one
        kind, wrap = kinds[i % len(kinds)]
        if kind == "live":
            d = wrap(root, f"{label}-{kind}", {TOMB_NAME: data})
        else:  # shard 2's tar has no tombstone member: add one beside its TSM member
            d = wrap(root, f"{label}-{kind}", {})
            _add_member(d, kind, TOMB_NAME, data)
        verbs = {"verify": 1, "export": code, "convert": code, "inspect --points": 1, "restore": code}
        cases.append(Case(f"{label}-{kind}", d, verbs, TOMB_NAME, "tombstone", offset=code == 1))
    return cases


def _add_member(d: Path, kind: str, name: str, data: bytes) -> None:
    """Add ``db1/autogen/2/<name>`` to shard 2's tar (legacy) or .tar.gz (portable)."""
    gz = kind == "portable"
    f = d / (f"{PORTABLE_STEM}.s2.tar.gz" if gz else "db1.autogen.00002.00")
    raw = gzip.decompress(f.read_bytes()) if gz else f.read_bytes()
    src = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    buf = io.BytesIO()
    with src, tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as dst:
        first = None
        for m in src.getmembers():
            if m.name.endswith(name):
                continue
            first = first or m
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        assert first is not None
        ti = tarfile.TarInfo(first.name.rsplit("/", 1)[0] + "/" + name)
        ti.size, ti.mode, ti.mtime = len(data), 0o644, first.mtime
        dst.addfile(ti, io.BytesIO(data))
    out = buf.getvalue()
    f.write_bytes(gzip.compress(out, mtime=0) if gz else out)
    if gz:
        man = d / f"{PORTABLE_STEM}.manifest"
        doc = json.loads(man.read_bytes())
        for e in doc["files"]:
            if e["fileName"] == f.name:
                e["size"] = len(out)
        man.write_text(json.dumps(doc, indent=2))


def _first_len_field(blob: bytes) -> int:
    """Offset of the length varint of the first LEN (wire type 2) field at the top of a protobuf."""
    pos = 0
    while pos < len(blob):
        k = 0
        shift = 0
        while True:
            b = blob[pos]
            pos += 1
            k |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        wt = k & 7
        if wt == 2:
            return pos
        if wt == 0:
            while blob[pos] & 0x80:
                pos += 1
            pos += 1
        elif wt == 1:
            pos += 8
        elif wt == 5:
            pos += 4
        else:
            raise ValueError("unexpected wire type")
    raise ValueError("no LEN field")


def _with_len(blob: bytes, at: int, new_len: int) -> bytes:
    end = at
    while blob[end] & 0x80:
        end += 1
    return blob[:at] + uvarint(new_len) + blob[end + 1 :]


META_VERBS = {"verify": 1, "export": 1, "convert": 1, "restore": 1, "inspect --points": 1}


def meta_cases(root: Path) -> list[Case]:
    """Metastores and manifests whose lengths lie: meta.NN frame lengths, protobuf LEN fields of
    meta.db / meta.NN / .meta claiming far more than the message holds, a manifest above its cap."""
    root = Path(root)
    cases = []
    legacy_meta = (FIXTURES / "legacy/meta.01").read_bytes()
    blob = legacy_meta[16 : 16 + struct.unpack(">Q", legacy_meta[8:16])[0]]
    for n in ((1 << 63), (1 << 40), len(blob) + 1):
        bad = legacy_meta[:8] + struct.pack(">Q", n) + legacy_meta[16:]
        d = wrap_legacy(root, f"metann-bloblen-{n}", {"meta.01": bad})
        cases.append(Case(f"metann-bloblen-{n}", d, dict(META_VERBS), "meta.01", "meta"))
    node_at = 16 + len(blob)
    for n in ((1 << 63), (1 << 32)):
        bad = legacy_meta[:node_at] + struct.pack(">Q", n) + legacy_meta[node_at + 8 :]
        d = wrap_legacy(root, f"metann-nodelen-{n}", {"meta.01": bad})
        cases.append(Case(f"metann-nodelen-{n}", d, dict(META_VERBS), "meta.01", "meta"))
    at = _first_len_field(blob)
    for n in ((1 << 62), (1 << 32), len(blob) * 2):
        bad_blob = _with_len(blob, at, n)
        nn = legacy_meta[:8] + struct.pack(">Q", len(bad_blob)) + bad_blob + legacy_meta[16 + len(blob) :]
        d = wrap_legacy(root, f"metann-protolen-{n}", {"meta.01": nn})
        cases.append(Case(f"metann-protolen-{n}", d, dict(META_VERBS), "meta.01", "meta"))
        live_db = (FIXTURES / "live/meta/meta.db").read_bytes()
        d = wrap_live(root, f"metadb-protolen-{n}", {"meta.db": _with_len(live_db, _first_len_field(live_db), n)})
        cases.append(Case(f"metadb-protolen-{n}", d, dict(META_VERBS), "meta.db", "meta"))
        pmeta = (FIXTURES / f"portable/{PORTABLE_STEM}.meta").read_bytes()
        d = wrap_portable(root, f"pmeta-protolen-{n}", {".meta": _with_len(pmeta, _first_len_field(pmeta), n)})
        cases.append(Case(f"pmeta-protolen-{n}", d, dict(META_VERBS), f"{PORTABLE_STEM}.meta", "meta"))
    # a manifest one byte above the cap: refused before it is parsed
    d = root / "manifest-over-cap"
    shutil.copytree(FIXTURES / "portable", d)
    man = d / f"{PORTABLE_STEM}.manifest"
    text = man.read_bytes()
    man.write_bytes(text[:-2] + b" " * (MAX_MANIFEST_SIZE + 1 - len(text)) + text[-2:])
    cases.append(Case("manifest-over-cap", d, dict(META_VERBS), f"{PORTABLE_STEM}.manifest", "manifest"))
    return cases


GENERATORS: tuple[Callable[[Path], list[Case]], ...] = (tsm_cases, wal_cases, tombstone_cases, meta_cases)


def build_all(root: Path) -> list[Case]:
    """Every generator's cases under ``root`` (one subdirectory per generator)."""
    cases: list[Case] = []
    for gen in GENERATORS:
        sub = Path(root) / gen.__name__
        sub.mkdir(parents=True, exist_ok=True)
        cases.extend(gen(sub))
    return cases


# ---------------------------------------------------------------------------------- the runner


def run_jobs(jobs: list[dict]) -> dict:
    """Run CLI invocations in this process, one after another, each ``{"argv": [...], "cwd": dir}``:
    stdout/stderr captured, the exit code taken from ``SystemExit``. Returns ``{"results": [...],
    "peak_rss_kib": ...}``. Meant to run under ``RLIMIT_AS`` (see :func:`main`)."""
    from influx_archive.cli.main import main as cli_main

    results = []
    for job in jobs:
        out, err = io.StringIO(), io.StringIO()
        code: object = 0
        before = os.getcwd()
        os.chdir(job["cwd"])
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    cli_main(job["argv"])
                except SystemExit as exc:
                    code = exc.code
                except BaseException as exc:
                    code = f"raised {type(exc).__name__}: {exc}"
        finally:
            os.chdir(before)
        if code is None:
            code = 0
        results.append({"code": code, "stdout": out.getvalue()[-20000:], "stderr": err.getvalue()})
    return {"results": results, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--run":
        resource.setrlimit(resource.RLIMIT_AS, (RLIMIT_BYTES, RLIMIT_BYTES))
        jobs = json.loads(Path(argv[2]).read_text())
        sys.stdout.write(json.dumps(run_jobs(jobs)))
        return 0
    if len(argv) == 2:
        for c in build_all(Path(argv[1])):
            print(c.name, c.path, c.expect)
        return 0
    print("usage: hostile_bounds.py OUTDIR | --run JOBS.json", file=sys.stderr)
    return 2


def iter_jobs(cases: Iterable[Case], work: Path) -> list[tuple[Case, str, Path, dict]]:
    """(case, verb, targets dir, job) for every verb of every case; targets under ``work``."""
    out = []
    for i, c in enumerate(cases):
        for verb in c.expect:
            run_dir = Path(work) / f"{i:04d}-{verb.replace(' ', '_')}"
            (run_dir / "targets").mkdir(parents=True)
            argv = VERBS[verb](c.path, run_dir / "targets")
            out.append((c, verb, run_dir, {"argv": argv, "cwd": str(run_dir)}))
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv))
