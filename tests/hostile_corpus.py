"""Hostile and broken input corpus (issue 8).

Builds, deterministically, a directory of damaged sources from the real fixtures in ``fixtures/``
(copied, then damaged) and returns one :class:`Case` per source: its name, the path to hand to a
verb, and the expected outcome. Byte layouts damaged here are the ones in
influxd 1.6.7's own readers (``tsdb/engine/tsm1/reader.go``, ``wal.go``, ``tombstone.go``;
``services/meta/data.go``; ``cmd/influxd/backup_util``).

Use as a module (``build_corpus(root) -> list[Case]``, as ``tests/test_hostile.py`` does) or as a
script: ``python tests/hostile_corpus.py OUTDIR`` writes the corpus and prints one line per case.

The corpus has one generator module per class of failure, each building its cases from the
fixtures and run by its own test module (``tests/test_trust_<name>.py``):

=====================  ======================================================================
``hostile_restore``    planted journals / staging dirs, stale journals, two writers, symlink
                       swaps mid-run, running-server targets (lock, guard)
``hostile_outputs``    outputs onto devices, FIFOs, ``-``, symlinks, existing files, inside the
                       source; ENOSPC / EROFS / EFBIG / EACCES; ``--salvage`` exit 4; kill -9
                       spools; pipes
``hostile_bounds``     counts and lengths that lie (TSM blocks, WAL, tombstones, metastores,
                       manifests) under a 1 GiB address-space limit
``hostile_sources``    non-ASCII digits, sealed manifests, control characters in names, sealed
                       damage naming, non-regular files in live roots, manifest file names,
                       duplicate metastore entries, tar headers, sparse and unsafe members
``hostile_interop``    increment chains against a model of influxd, shard groups at the int64
                       edge, hostile unions
``hostile_tsi1``       series segments, index log files, MANIFESTs, build-tsi input
=====================  ======================================================================

Expected outcomes: ``codes`` is the set of exit codes the contract allows (1 damaged input,
2 usage, 0 clean success when the damage sits where it must be tolerated, e.g. a torn WAL tail).
``lenient`` lists verbs that do not read the damaged bytes at all (``inspect`` reads only tar
listings, meta and TSM indexes, never block data) and may therefore also succeed. ``mention`` is
a substring the one-line error message must contain (the damaged file's name).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import shutil
import struct
import sys
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from influx_archive.tsm.block import FLOAT, encode_block

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PORTABLE_STEM = "20261125T064330Z"

OK = frozenset({0})
DAMAGED = frozenset({1})
USAGE = frozenset({2})


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    codes: frozenset[int]
    mention: str | None = None
    lenient: frozenset[str] = field(default_factory=frozenset)

    def allowed(self, verb: str) -> frozenset[int]:
        """Exit codes allowed for ``verb`` (a lenient verb may also succeed). ``pack`` seals files
        unchanged (verify and unpack check them), so damage inside a file may also pack cleanly."""
        if verb in self.lenient or (verb == "pack" and 1 in self.codes):
            return self.codes | OK
        return self.codes


# Verbs that never read TSM block data or follow-on bytes of an otherwise valid file.
INDEX_ONLY = frozenset({"inspect"})


# ---------------------------------------------------------------------- byte helpers


def _index_offset(data: bytes) -> int:
    """Where the index starts: the footer, the file's last 8 bytes, big-endian
    (docs/formats.md#tsm-file, #tsm-footer)."""
    return struct.unpack(">Q", data[-8:])[0]


def _first_index_record(data: bytes) -> tuple[int, int, int, int, int]:
    """(key_len offset, key_len, type offset, count offset, first entry offset) of the first index
    record (docs/formats.md#tsm-index)."""
    io_ = _index_offset(data)
    klen = struct.unpack(">H", data[io_ : io_ + 2])[0]
    t = io_ + 2 + klen
    return io_, klen, t, t + 1, t + 3


def _first_entry(data: bytes) -> tuple[int, int, int]:
    """(entry offset, block offset, block size) of the first index entry
    (docs/formats.md#tsm-index: min,max,offset,size)."""
    *_, e = _first_index_record(data)
    off = struct.unpack(">Q", data[e + 16 : e + 24])[0]
    size = struct.unpack(">I", data[e + 24 : e + 28])[0]
    return e, off, size


def _raw_tsm(key: bytes, block_type: int, blocks: list[tuple[list[int], list]]) -> bytes:
    """A one-key TSM file laid out by hand (docs/formats.md#tsm-file) with index entries in the given order and no
    ordering or overlap checks (the project's writer refuses both)."""
    out = bytearray(b"\x16\xd1\x16\xd1\x01")
    entries = []
    for ts, vals in blocks:
        body = encode_block(block_type, ts, vals)
        frame = struct.pack(">I", zlib.crc32(body)) + body
        entries.append(struct.pack(">qqQI", min(ts), max(ts), len(out), len(frame)))
        out += frame
    index_offset = len(out)
    out += struct.pack(">H", len(key)) + key + struct.pack(">BH", block_type, len(entries)) + b"".join(entries)
    return bytes(out + struct.pack(">Q", index_offset))


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for info, data in members:
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def _info(name: str, *, size: int = 0, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = kind
    ti.linkname = link
    ti.mode = 0o644
    return ti


def _read_members(path: Path, gz: bool) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(path, "r:gz" if gz else "r:") as tf:
        return [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]  # type: ignore[union-attr]


def _renamed(info: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    info.name = name
    return info


def _flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


# ---------------------------------------------------------------------- builder


class _Builder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []

    def copy(self, name: str, fixture: str) -> Path:
        dst = self.root / name
        shutil.copytree(FIXTURES / fixture, dst, symlinks=True)
        return dst

    def add(self, name: str, path: Path, codes: frozenset[int], mention: str | None = None,
            lenient: frozenset[str] = frozenset()) -> None:
        self.cases.append(Case(name, path, codes, mention, lenient))

    def live_tsm(self, name: str, damage: Callable[[bytes], bytes], codes: frozenset[int] = DAMAGED,
                 lenient: frozenset[str] = frozenset()) -> None:
        """A copy of fixtures/live whose shard-2 TSM file is replaced by ``damage(original)``."""
        d = self.copy(name, "live")
        f = d / "data/db1/autogen/2/000000001-000000001.tsm"
        f.write_bytes(damage(f.read_bytes()))
        self.add(name, d, codes, f.name, lenient)

    def legacy_tar(self, name: str, members: Callable[[list], list], codes: frozenset[int],
                   mention: str | None = None, raw: Callable[[bytes], bytes] | None = None) -> None:
        """A copy of fixtures/legacy whose shard-2 tar is rebuilt from ``members(original members)``."""
        d = self.copy(name, "legacy")
        f = d / "db1.autogen.00002.00"
        data = raw(f.read_bytes()) if raw else _tar_bytes(members(_read_members(f, gz=False)))
        f.write_bytes(data)
        self.add(name, d, codes, mention)

    def portable_tar(self, name: str, members: Callable[[list], list] | None, codes: frozenset[int],
                     mention: str | None = None, raw: Callable[[bytes], bytes] | None = None) -> None:
        """A copy of fixtures/portable whose shard-2 .tar.gz is rebuilt or replaced."""
        d = self.copy(name, "portable")
        f = d / f"{PORTABLE_STEM}.s2.tar.gz"
        if raw is not None:
            data = raw(f.read_bytes())
        else:
            assert members is not None
            tar = _tar_bytes(members(_read_members(f, gz=True)))
            data = gzip.compress(tar, mtime=0)
            # keep the manifest true to the rebuilt tar: these cases are about its members
            man = d / f"{PORTABLE_STEM}.manifest"
            doc = json.loads(man.read_bytes())
            for e in doc["files"]:
                if e["fileName"] == f.name:
                    e["size"] = len(tar)
            man.write_text(json.dumps(doc, indent=2))
        f.write_bytes(data)
        self.add(name, d, codes, mention)


def _with(extra: list[tuple[tarfile.TarInfo, bytes | None]]) -> Callable[[list], list]:
    return lambda ms: ms + extra


def _zstd_bomb() -> bytes:
    """A .tar.zst of one TSM-named member claiming 1 GiB of zero bytes (~30000:1)."""
    header = _info("db1/autogen/2/000000002-000000001.tsm", size=1 << 30)
    head = _tar_bytes([(header, None)])[:512]
    cctx = zstandard.ZstdCompressor(level=19)
    chunks = cctx.compressobj()
    out = [chunks.compress(head)]
    zero = bytes(1 << 20)
    for _ in range(1024):
        out.append(chunks.compress(zero))
    out.append(chunks.flush())
    return b"".join(out)


def _gzip_bomb(size: int) -> bytes:
    """A .tar.gz of one TSM-named member of ``size`` zero bytes (~1000:1)."""
    header = _tar_bytes([(_info("db1/autogen/2/000000002-000000001.tsm", size=size), None)])[:512]
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(header)]
    zero = bytes(1 << 20)
    for _ in range(size >> 20):
        out.append(comp.compress(zero))
    out.append(comp.compress(bytes(1024)))  # end-of-archive blocks
    out.append(comp.flush())
    return b"".join(out)


# Nothing is skipped silently: a tar member refused as hostile (unsafe name, link, device, FIFO)
# is an ERROR for ``verify`` (exit 1); every other verb goes on without it and names it in a
# warning (exit 0).
HOSTILE_MEMBER_CASES = frozenset({"tar_dotdot", "tar_absolute", "tar_symlink", "tar_hardlink", "tar_device",
                                  "tar_fifo_member", "targz_dotdot", "targz_symlink"})
GOES_ON_WITHOUT_IT = frozenset({"inspect", "inspect --points", "restore", "convert", "export", "pack"})


def build_corpus(root: str | os.PathLike[str]) -> list[Case]:
    """Write every hostile case under ``root`` (created; must be empty or absent) and return them."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    b = _Builder(root)

    # --- tar members: untrusted kinds and names are left out with a warning (never followed or
    # created); verify calls them errors (HOSTILE_MEMBER_CASES)
    b.legacy_tar("tar_dotdot", _with([(_info("../../evil.tsm", size=3), b"bad")]), OK)
    b.legacy_tar("tar_absolute", _with([(_info("/tmp/db1/autogen/2/000000009-000000001.tsm", size=3), b"bad")]), OK)
    b.legacy_tar("tar_symlink", _with([(_info("db1/autogen/2/000000009-000000001.tsm", kind=tarfile.SYMTYPE,
                                              link="/etc/passwd"), None)]), OK)
    b.legacy_tar("tar_hardlink", _with([(_info("db1/autogen/2/000000009-000000001.tsm", kind=tarfile.LNKTYPE,
                                               link="../../../../etc/passwd"), None)]), OK)
    b.legacy_tar(
        "tar_device", _with([(_info("db1/autogen/2/000000009-000000001.tsm", kind=tarfile.CHRTYPE), None)]), OK
    )
    b.legacy_tar(
        "tar_fifo_member", _with([(_info("db1/autogen/2/000000009-000000001.tsm", kind=tarfile.FIFOTYPE), None)]), OK
    )
    b.legacy_tar("tar_duplicate", lambda ms: ms + ms, OK)
    # member names that are not UTF-8 (raw 0xff bytes): listed or ignored, never a crash on output
    b.legacy_tar("tar_name_not_utf8", lambda ms: [(_renamed(m, "db\udcff/autogen/2/" + m.name.rsplit("/", 1)[1]), d)
                                                  for m, d in ms], DAMAGED | OK, "db1.autogen.00002.00")
    b.legacy_tar(
        "tar_file_not_utf8",
        lambda ms: ms + [(_info("db1/autogen/2/0000\udcfe-000000001.tsm", size=3), b"bad")],
        DAMAGED | OK,
        "db1.autogen.00002.00",
    )
    b.portable_tar("targz_dotdot", _with([(_info("../evil.tsm", size=3), b"bad")]), OK)
    b.portable_tar("targz_symlink", _with([(_info("db1/autogen/2/000000009-000000001.tsm", kind=tarfile.SYMTYPE,
                                                 link="/etc/shadow"), None)]), OK)
    b.portable_tar("targz_duplicate", lambda ms: ms + ms, OK)

    # --- bombs and wrong containers
    b.portable_tar("gzip_bomb", None, DAMAGED, "s2.tar.gz", raw=lambda _: _gzip_bomb(64 << 20))
    zst = root / "zstd_bomb"
    zst.mkdir()
    (zst / "bomb.tar.zst").write_bytes(_zstd_bomb())
    b.add("zstd_bomb", zst / "bomb.tar.zst", DAMAGED | USAGE, "bomb.tar.zst")
    b.legacy_tar(
        "not_a_tar", lambda ms: ms, DAMAGED, "db1.autogen.00002.00", raw=lambda _: b"this is not a tar\n" * 100
    )
    b.portable_tar("targz_not_gzip", None, DAMAGED, "s2.tar.gz", raw=lambda _: b"plain text, not gzip\n" * 50)
    b.portable_tar("targz_plain_tar", None, DAMAGED, "s2.tar.gz",
                   raw=lambda data: gzip.decompress(data))
    b.portable_tar("targz_truncated", None, DAMAGED, "s2.tar.gz", raw=lambda data: data[: len(data) // 2])
    b.portable_tar("targz_bitflip_crc", None, DAMAGED, "s2.tar.gz", raw=lambda data: _flip(data, len(data) - 6))
    b.legacy_tar("tar_truncated_header", lambda ms: ms, DAMAGED, "db1.autogen.00002.00", raw=lambda data: data[:300])
    b.legacy_tar("tar_truncated_member", lambda ms: ms, DAMAGED, "db1.autogen.00002.00", raw=lambda data: data[:2000])

    # --- TSM (docs/formats.md#tsm-file): truncated at each section boundary, bit flips, bad lengths
    def cut(n: Callable[[bytes], int]) -> Callable[[bytes], bytes]:
        return lambda d: d[: n(d)]

    b.live_tsm("tsm_empty", cut(lambda d: 0))
    b.live_tsm("tsm_trunc_header", cut(lambda d: 3))
    b.live_tsm("tsm_header_only", cut(lambda d: 5))
    b.live_tsm("tsm_trunc_blocks", cut(lambda d: 5 + 20))
    b.live_tsm("tsm_trunc_index", cut(lambda d: _index_offset(d) + 5))
    b.live_tsm("tsm_trunc_footer", cut(lambda d: len(d) - 3))
    b.live_tsm("tsm_bad_magic", lambda d: _flip(d, 0))
    b.live_tsm("tsm_bad_version", lambda d: _flip(d, 4, 3))
    b.live_tsm("tsm_footer_past_end", lambda d: d[:-8] + struct.pack(">Q", len(d) + 10))
    b.live_tsm("tsm_footer_huge", lambda d: d[:-8] + struct.pack(">Q", 1 << 62))
    b.live_tsm("tsm_keylen_huge", lambda d: d[: _first_index_record(d)[0]] + b"\xff\xff"
               + d[_first_index_record(d)[0] + 2 :])
    b.live_tsm("tsm_count_huge", lambda d: d[: _first_index_record(d)[3]] + b"\xff\xff"
               + d[_first_index_record(d)[3] + 2 :])
    b.live_tsm("tsm_block_offset_past_end", lambda d: d[: _first_entry(d)[0] + 16] + struct.pack(">Q", 1 << 40)
               + d[_first_entry(d)[0] + 24 :], lenient=INDEX_ONLY)
    b.live_tsm("tsm_block_size_huge", lambda d: d[: _first_entry(d)[0] + 24] + struct.pack(">I", 0xFFFFFFF0)
               + d[_first_entry(d)[0] + 28 :], lenient=INDEX_ONLY)
    b.live_tsm("tsm_block_crc", lambda d: _flip(d, _first_entry(d)[1] + 10), lenient=INDEX_ONLY)
    b.live_tsm("tsm_block_wrong_type", _retype_first_block, lenient=INDEX_ONLY)
    # a high bit set in the first key: not UTF-8, and now sorts after the next key (index out of order)
    b.live_tsm("tsm_key_not_utf8_out_of_order", lambda d: _flip(d, _first_index_record(d)[0] + 2, 7))

    # Two blocks of one key overlapping in time (legal; influxd merges them, the later block wins
    # on equal timestamps), and two blocks whose index entries are not in time order.
    t0 = 1_793_664_000 * 10**9  # 2026-11-03T00:00:00Z, inside shard 2's group
    key = b"cpu,host=h9#!~#v"
    b.live_tsm("tsm_blocks_overlapping", lambda d: _raw_tsm(key, FLOAT, [([t0 + 1, t0 + 2, t0 + 3], [1.0, 2.0, 3.0]),
                                                                         ([t0 + 2, t0 + 4], [20.0, 40.0])]), codes=OK)
    b.live_tsm("tsm_entries_unordered", lambda d: _raw_tsm(key, FLOAT, [([t0 + 5, t0 + 6], [5.0, 6.0]),
                                                                        ([t0 + 1, t0 + 2], [1.0, 2.0])]),
               codes=OK | DAMAGED)  # influxd does not check the order; reporting it is also fine

    # --- WAL (docs/formats.md#wal): a torn tail is tolerated (warning); a damaged header is reported
    d = b.copy("wal_torn_tail", "live")
    w = d / "wal/db1/autogen/4/_00004.wal"
    w.write_bytes(w.read_bytes()[:-7])
    b.add("wal_torn_tail", d, OK)
    for nm, pos in (("wal_bitflip_type", 0), ("wal_bitflip_length", 2), ("wal_bitflip_body", 12)):
        d = b.copy(nm, "live")
        w = d / "wal/db1/autogen/4/_00004.wal"
        w.write_bytes(_flip(w.read_bytes(), pos, 6))
        b.add(nm, d, DAMAGED | OK, "_00004.wal", lenient=INDEX_ONLY)
    d = b.copy("wal_garbage", "live")
    w = d / "wal/db1/autogen/4/_00004.wal"
    w.write_bytes(b"\x01" + b"\xff\xff\xff\x7f" + b"x" * 40)
    b.add("wal_garbage", d, DAMAGED | OK, "_00004.wal", lenient=INDEX_ONLY)

    # --- tombstones (docs/formats.md#tombstones)
    # An unknown header is read as a v1 tombstone (v1 has no header: newline-separated keys,
    # docs/formats.md#tombstone-formats), exactly as influxd 1.6.7 does (tsdb/engine/tsm1/tombstone.go,
    # readTombstone falls back to readTombstoneV1), so it must succeed.
    for nm, dmg, codes in (("tombstone_truncated", lambda t: t[:6], DAMAGED),
                           ("tombstone_bad_header", lambda t: b"\xff" * 4 + t[4:], OK),
                           ("tombstone_bitflip", lambda t: _flip(t, len(t) // 2), DAMAGED)):
        d = b.copy(nm, "live")
        t = d / "data/db1/autogen/2/000000001-000000001.tombstone"
        t.write_bytes(dmg(t.read_bytes()))
        b.add(nm, d, codes, t.name, lenient=INDEX_ONLY)

    # v4 tombstone (docs/formats.md#tombstone-formats) whose gzip body inflates to 300 MiB: refused
    # past the decompression limit
    d = b.copy("tombstone_gzip_bomb", "live")
    t = d / "data/db1/autogen/2/000000001-000000001.tombstone"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zero = bytes(1 << 20)
    t.write_bytes(b"\x00\x00\x15\x04" + b"".join([*(comp.compress(zero) for _ in range(300)), comp.flush()]))
    b.add("tombstone_gzip_bomb", d, DAMAGED | frozenset({3}), t.name, lenient=INDEX_ONLY)

    # --- meta.NN frame and meta.db (docs/formats.md#meta-nn, #meta-db)
    for nm, dmg in (("metann_empty", lambda m: b""), ("metann_trunc_magic", lambda m: m[:5]),
                    ("metann_trunc_frame", lambda m: m[:12]), ("metann_trunc_data", lambda m: m[: len(m) // 2]),
                    ("metann_len_huge", lambda m: m[:8] + b"\x7f\xff\xff\xff\xff\xff\xff\xff" + m[16:]),
                    ("metann_bad_magic", lambda m: _flip(m, 0)), ("metann_bitflip_data", lambda m: _flip(m, 20, 7))):
        d = b.copy(nm, "legacy")
        for meta in sorted(d.glob("meta.*")):
            meta.write_bytes(dmg(meta.read_bytes()))
        b.add(nm, d, DAMAGED, "meta.0")
    d = b.copy("metadb_truncated", "live")
    m = d / "meta/meta.db"
    m.write_bytes(m.read_bytes()[:40])
    b.add("metadb_truncated", d, DAMAGED, "meta.db")

    # --- portable .meta (PortableData) and manifest
    meta_name = f"{PORTABLE_STEM}.meta"
    man_name = f"{PORTABLE_STEM}.manifest"
    for nm, dmg in (("portable_meta_trunc", lambda m: m[:10]), ("portable_meta_empty", lambda m: b""),
                    ("portable_meta_bad_magic", lambda m: _flip(m, 1)),
                    ("portable_meta_len_huge", lambda m: m[:8] + b"\x7f\xff\xff\xff\xff\xff\xff\xff" + m[16:])):
        d = b.copy(nm, "portable")
        f = d / meta_name
        f.write_bytes(dmg(f.read_bytes()))
        b.add(nm, d, DAMAGED, ".meta")

    def manifest_case(nm: str, edit: Callable[[dict], object], codes: frozenset[int] = DAMAGED) -> None:
        d = b.copy(nm, "portable")
        f = d / man_name
        doc = json.loads(f.read_text())
        new = edit(doc)
        f.write_bytes(new if isinstance(new, bytes) else json.dumps(new).encode())
        b.add(nm, d, codes, ".manifest")

    manifest_case("manifest_not_json", lambda doc: b"{not json")
    manifest_case("manifest_not_utf8", lambda doc: b"{\"meta\": \"\xff\xfe\"}")
    manifest_case("manifest_list", lambda doc: [doc])
    manifest_case("manifest_files_wrong_type", lambda doc: {**doc, "files": "x"})
    manifest_case("manifest_shardid_string", lambda doc: {**doc, "files": [{**doc["files"][0], "shardID": "one"}]})
    manifest_case("manifest_missing_meta", lambda doc: {k: v for k, v in doc.items() if k != "meta"})
    manifest_case("manifest_missing_file", lambda doc: {**doc, "files": doc["files"]
                                                        + [{**doc["files"][0], "fileName": "gone.s1.tar.gz"}]})
    manifest_case("manifest_duplicate_shard", lambda doc: {**doc, "files": doc["files"] + [doc["files"][0]]},
                  DAMAGED | OK)
    manifest_case("manifest_path_escape", lambda doc: {**doc, "files": [{**doc["files"][0],
                                                                         "fileName": "../../etc/passwd"}]})

    # --- meta lists shards whose files are absent: tolerated, a warning per shard
    d = b.copy("shard_files_absent", "legacy")
    (d / "db1.autogen.00002.00").unlink()
    b.add("shard_files_absent", d, OK)

    # --- paths: empty dir, missing, wrong kinds (a FIFO stands in for an unreadable file: we run as root)
    e = root / "empty_dir"
    e.mkdir()
    b.add("empty_dir", e, USAGE, "empty_dir")
    b.add("missing_path", root / "does-not-exist", USAGE, "does-not-exist")
    d = b.copy("file_where_dir", "live")
    shutil.rmtree(d / "data/db1/hourly")
    (d / "data/db1/hourly").write_bytes(b"not a dir")
    b.add("file_where_dir", d, DAMAGED | USAGE | OK)
    d = b.copy("dir_where_file", "legacy")
    (d / "db1.autogen.00002.00").unlink()
    (d / "db1.autogen.00002.00").mkdir()
    # not a regular file: skipped like an absent shard (warning) or reported
    b.add("dir_where_file", d, DAMAGED | USAGE | OK, "db1.autogen.00002.00")
    fifo_dir = root / "fifo_source"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "x.tsm")
    b.add("fifo_as_file", fifo_dir / "x.tsm", USAGE, "x.tsm")
    d = b.copy("fifo_in_dir", "legacy")
    (d / "db1.autogen.00002.00").unlink()
    os.mkfifo(d / "db1.autogen.00002.00")
    # must never block on open(): skipped (warning) or reported
    b.add("fifo_in_dir", d, DAMAGED | USAGE | OK, "db1.autogen.00002.00")
    return [dataclasses.replace(c, codes=DAMAGED, lenient=GOES_ON_WITHOUT_IT) if c.name in HOSTILE_MEMBER_CASES else c
            for c in b.cases]


def _retype_first_block(d: bytes) -> bytes:
    """Change the first block's type nibble (docs/formats.md#tsm-blocks) to a different type and fix
    its CRC, so only the type disagrees with the index record."""
    _, off, size = _first_entry(d)
    block = bytearray(d[off + 4 : off + size])
    old = block[0] >> 4
    block[0] = (((old + 1) % 5) << 4) | (block[0] & 0x0F)
    crc = struct.pack(">I", zlib.crc32(block))
    return d[:off] + crc + bytes(block) + d[off + size :]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: hostile_corpus.py OUTDIR\n")
        return 2
    for c in build_corpus(argv[0]):
        print(f"{c.name}\t{sorted(c.codes)}\t{c.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
