"""Generators of hostile inputs for the series file / tsi1 readers and build-tsi.

Every generator takes a *base* tree (a restored fixture that ``build-tsi`` already indexed, so
its ``_series`` and ``index/`` are the bytes influxd itself writes — see test_tsi1_format.py) and a
directory to build cases in, and returns :class:`Case` objects: the command line to run, the exit
code it must end with, the file its one error line must name, and the tree it must leave
unchanged. Cases are derived from the real files: every entry of every segment / log file is cut,
flipped and lied about in turn, not one hand-picked byte.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from influx_archive.tsm.tsi1 import format as fmt
from influx_archive.tsm.tsi1 import index as ix
from influx_archive.tsm.tsi1 import seriesfile as sf


@dataclass
class Case:
    name: str
    argv: list[str]
    exit_code: int
    mentions: str  # path the single error line must name
    tree: Path  # must be byte-identical after the run


def _sparse_copy(src: str, dst: str) -> None:
    """Copy keeping trailing zeros as a hole (series segments are 4 MiB+ of mostly zeros)."""
    data = Path(src).read_bytes()
    body = data.rstrip(b"\0")
    with open(dst, "wb") as f:
        f.write(body)
        f.truncate(len(data))
    shutil.copymode(src, dst)


def _copy(base: Path, out: Path, name: str) -> Path:
    dst = out / name
    shutil.copytree(base, dst, symlinks=True, copy_function=_sparse_copy)
    return dst


def _segments(tree: Path) -> list[tuple[Path, int, int]]:
    """(path, partition, segment id) of every segment holding entries."""
    out = []
    for db in sorted((tree / "data").iterdir()):
        for p in range(fmt.SERIES_PARTITION_N):
            pdir = db / fmt.SERIES_FILE_DIR / fmt.partition_dir_name(p)
            for seg in sorted(pdir.glob("[0-9a-f][0-9a-f][0-9a-f][0-9a-f]")):
                if any(True for _ in sf.iter_segment(str(seg), int(seg.name, 16), p)):
                    out.append((seg, p, int(seg.name, 16)))
    return out


def _entries(seg: Path, sid: int) -> list[sf.SeriesEntry]:
    return list(sf.iter_segment(str(seg), sid))


def _mutate(path: Path, fn: Callable[[bytearray], bytes | bytearray]) -> None:
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(fn(data)))


def _db_of(seg: Path) -> Path:
    return seg.parents[2]


def series_segment_cases(base: Path, out: Path, *, limit_per_kind: int = 6) -> list[Case]:
    """Damage in series segments, read by ``dump-tsi <db>`` (exit 1 naming the segment):
    entries cut by the end of the file (at every byte inside the first entries), a zeroed flag
    or an unknown flag with entries after it, a key size that lies (huge, past the end, 10-byte
    overflow), id 0, an id of another partition, a key that hashes to another partition, a tag
    count that lies, bad magic / version / a cut header."""
    cases: list[Case] = []
    n = 0

    def add(kind: str, seg_rel: Path, fn) -> None:
        nonlocal n
        n += 1
        tree = _copy(base, out, f"seg{n:03d}-{kind}")
        seg = tree / seg_rel
        _mutate(seg, fn)
        cases.append(Case(f"{kind}:{seg_rel}", ["dump-tsi", str(_db_of(seg))], 1, str(seg), tree))

    for seg, p, sid in _segments(base)[:limit_per_kind]:
        rel = seg.relative_to(base)
        ents = _entries(seg, sid)
        first = ents[0]
        pos0 = first.offset & 0xFFFFFFFF
        size0 = fmt.ENTRY_HEADER_SIZE + len(first.key or b"")
        # cut inside the first entry (header, key size, key body)
        for cut in sorted({1, 2, 8, 9, 10, size0 // 2, size0 - 1}):
            if 0 < cut < size0:
                add("cut", rel, lambda d, c=pos0 + cut: d[:c])
        last = ents[-1]
        lp = last.offset & 0xFFFFFFFF
        add("cut-last", rel, lambda d, c=lp + fmt.ENTRY_HEADER_SIZE + 1: d[:c])
        # a flag that ends the data early, with entries after it
        if len(ents) > 1:
            add("zero-flag", rel, lambda d, q=pos0: d[:q] + b"\x00" + d[q + 1 :])
        else:
            # no later entry: put garbage after the end instead
            end = lp + fmt.ENTRY_HEADER_SIZE + len(last.key or b"")
            add("garbage-after-end", rel, lambda d, q=end + 7: d[:q] + b"\x5a" + d[q + 1 :])
        add("unknown-flag", rel, lambda d, q=pos0: d[:q] + b"\x07" + d[q + 1 :])
        # key size lies
        kp = pos0 + fmt.ENTRY_HEADER_SIZE
        add("keysize-huge", rel, lambda d, q=kp: d[:q] + b"\xff\xff\xff\xff\x0f" + d[q + 1 :])
        add("keysize-overflow", rel, lambda d, q=kp: d[:q] + b"\xff" * 10 + b"\x01" + d[q + 1 :])
        add("keysize-past-end", rel, lambda d, q=kp: d[: q] + b"\xf0\xff\x03" + d[q + 1 : q + 40])
        # ids
        add("id-zero", rel, lambda d, q=pos0: d[: q + 1] + bytes(8) + d[q + 9 :])
        add("id-other-partition", rel, lambda d, q=pos0, i=first.id: d[: q + 1] + struct.pack(">Q", i + 1) + d[q + 9 :])
        # a key (same length) that hashes to another partition
        key = first.key or b""
        for b in range(1, 256):
            k2 = key[:-1] + bytes([b])
            if sf.key_partition(k2) != p:
                add("key-other-partition", rel, lambda d, q=kp, k=k2: d[:q] + k + d[q + len(k) :])
                break
        # tag count lies (the byte after the name)
        name_len = int.from_bytes(key[1:3], "big")
        tc = kp + 1 + 2 + name_len
        add("tagcount-lies", rel, lambda d, q=tc: d[:q] + b"\x7f" + d[q + 1 :])
        # header
        add("magic", rel, lambda d: b"XSEG" + d[4:])
        add("version", rel, lambda d: d[:4] + b"\x02" + d[5:])
        add("header-cut", rel, lambda d: d[:3])
    return cases


def _log_files(tree: Path) -> list[Path]:
    return sorted(p for p in (tree / "data").glob("*/*/*/index/*/L0-*.tsl") if p.stat().st_size > 0)


def log_file_cases(base: Path, out: Path, *, limit_files: int = 3) -> list[Case]:
    """Damage in tsi1 log files, read by ``dump-tsi <shard>`` (exit 1 naming the log file): cut at
    every byte that is not an entry boundary, each entry's checksum wrong, an unknown flag, a name
    length that lies (huge, past the end, overflowing), series id 0."""
    cases: list[Case] = []
    n = 0

    def add(kind: str, rel: Path, fn) -> None:
        nonlocal n
        n += 1
        tree = _copy(base, out, f"log{n:03d}-{kind}")
        path = tree / rel
        _mutate(path, fn)
        shard = path.parents[2]
        cases.append(Case(f"{kind}:{rel}", ["dump-tsi", str(shard)], 1, str(path), tree))

    for path in _log_files(base)[:limit_files]:
        rel = path.relative_to(base)
        entries = list(ix.iter_log_file(str(path)))
        bounds = {0} | {e.offset + e.size for e in entries}
        # every byte inside the first two entries and the last one
        spans = [(e.offset, e.offset + e.size) for e in entries[:2] + entries[-1:]]
        for cut in sorted({c for a, b in spans for c in range(a + 1, b)}):
            if cut not in bounds:
                add("cut", rel, lambda d, c=cut: d[:c])
        for e in entries:
            add("checksum", rel, lambda d, q=e.offset + e.size - 1: d[:q] + bytes([d[q] ^ 0x55]) + d[q + 1 :])
        e = entries[0]
        add("flag", rel, lambda d: b"\x03" + d[1:])
        # the name length follows flag + uvarint id; rebuild the entry with a lying length
        body = ix.log_entry_bytes(e.flag, e.series_id)
        id_len = len(body) - 1 - 3 - 4
        np_ = 1 + id_len
        add("namelen-huge", rel, lambda d, q=np_: d[:q] + b"\xff\xff\xff\xff\x0f" + d[q + 1 :])
        add("namelen-past-end", rel, lambda d, q=np_: d[:q] + b"\x40" + d[q + 1 :])
        add("namelen-overflow", rel, lambda d, q=np_: d[:q] + b"\xff" * 10 + b"\x01" + d[q + 1 :])
        zero = ix.log_entry_bytes(fmt.LOG_SERIES_INSERT, 0)
        add("id-zero", rel, lambda d, z=zero: z + d)
    return cases


def manifest_cases(base: Path, out: Path) -> list[Case]:
    """MANIFEST damage, read by ``dump-tsi <shard>`` (exit 1 naming the MANIFEST or partition)."""
    manifests = sorted((base / "data").glob("*/*/*/index/0/MANIFEST"))[:2]
    variants: list[tuple[str, Callable[[bytes], bytes]]] = [
        ("not-json", lambda d: d[: len(d) // 2]),
        ("empty", lambda d: b""),
        ("not-object", lambda d: b"[1, 2]\n"),
        ("version-2", lambda d: d.replace(b'"version": 1', b'"version": 2')),
        ("no-version", lambda d: d.replace(b',\n  "version": 1', b"")),
        ("files-not-list", lambda d: json.dumps({**json.loads(d), "files": "L0-00000001.tsl"}).encode()),
        ("file-missing", lambda d: json.dumps({**json.loads(d), "files": ["L0-00000007.tsl"]}).encode()),
        ("file-bad-name", lambda d: json.dumps({**json.loads(d), "files": ["../../../etc/passwd"]}).encode()),
        ("levels-bad", lambda d: json.dumps({**json.loads(d), "levels": [{"m": -1}]}).encode()),
        ("huge", lambda d: d + b" " * (1 << 20)),
        ("binary", lambda d: b"\xff\xfe" + d),
    ]
    cases = []
    for i, m in enumerate(manifests):
        rel = m.relative_to(base)
        for kind, fn in variants:
            tree = _copy(base, out, f"man{i}-{kind}")
            path = tree / rel
            path.write_bytes(fn(path.read_bytes()))
            shard = path.parents[2]
            cases.append(Case(f"{kind}:{rel}", ["dump-tsi", str(shard)], 1, str(path), tree))
        tree = _copy(base, out, f"man{i}-absent")
        (tree / rel).unlink()
        cases.append(
            Case(f"absent:{rel}", ["dump-tsi", str((tree / rel).parents[2])], 1, str((tree / rel).parent), tree)
        )
    return cases


def build_input_cases(unindexed: Path, indexed: Path, out: Path) -> list[Case]:
    """build-tsi over damaged input must refuse (exit 1 naming the file) and write nothing, in any
    database: a TSM file cut at several points, a tombstone file cut, a WAL segment damaged in the
    middle (valid entries after it), and an existing series file damaged (each segment-damage kind
    on the first segment) — the tree, including every other database, stays byte-identical."""
    cases: list[Case] = []
    tsms = sorted((unindexed / "data").glob("*/*/*/*.tsm"))
    for i, tsm in enumerate(tsms[:3]):
        size = tsm.stat().st_size
        for j, cut in enumerate((5, size // 2, size - 3)):
            tree = _copy(unindexed, out, f"build-tsm{i}-{j}")
            path = tree / tsm.relative_to(unindexed)
            _mutate(path, lambda d, c=cut: d[:c])
            cases.append(Case(f"tsm-cut:{tsm.name}@{cut}", _build_argv(tree), 1, str(path), tree))
    tombs = sorted((unindexed / "data").glob("*/*/*/*.tombstone"))
    for i, t in enumerate(tombs[:2]):
        tree = _copy(unindexed, out, f"build-tomb{i}")
        path = tree / t.relative_to(unindexed)
        _mutate(path, lambda d: d[: len(d) // 2] + bytes([d[len(d) // 2] ^ 0xFF]) + d[len(d) // 2 + 1 :])
        cases.append(Case(f"tombstone-flipped:{t.name}", _build_argv(tree), 1, str(path), tree))
    wals = sorted(p for p in (unindexed / "wal").glob("*/*/*/*.wal")) if (unindexed / "wal").exists() else []
    for i, w in enumerate(wals[:2]):
        size = w.stat().st_size
        if size < 64:
            continue
        tree = _copy(unindexed, out, f"build-wal{i}")
        path = tree / w.relative_to(unindexed)
        # flip a byte in the first entry's type: damage followed by valid entries
        _mutate(path, lambda d: bytes([0x7F]) + d[1:])
        cases.append(Case(f"wal-damaged:{w.name}", _build_argv(tree), 1, str(path), tree))
    # an existing series file that is damaged: derive from the segment generator, then drop the
    # index/ directories so build-tsi has work to do in that database
    for c in series_segment_cases(indexed, out / "sfile-src", limit_per_kind=1):
        tree = c.tree
        for idx in (tree / "data").glob("*/*/*/index"):
            shutil.rmtree(idx)
        cases.append(Case(f"series-file-{c.name}", _build_argv(tree), 1, c.mentions, tree))
    return cases


def _build_argv(tree: Path) -> list[str]:
    argv = ["build-tsi", "-datadir", str(tree / "data")]
    if (tree / "wal").exists():
        argv += ["-waldir", str(tree / "wal")]
    return argv


def all_case_generators() -> dict[str, Callable[..., list[Case]]]:
    return {
        "series-segment": series_segment_cases,
        "log-file": log_file_cases,
        "manifest": manifest_cases,
    }


def iter_files(tree: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(tree):
        for f in files:
            yield Path(dirpath) / f


# ---- for verify: the same damage read by ``verify <root>``, and indexes that lie by omission ----


def as_verify(case: Case) -> Case:
    """The case read by ``verify <root>`` instead: exit 1, a tsi1 finding naming the file."""
    return Case(case.name, ["verify", "--json", str(case.tree)], 1, case.mentions, case.tree)


def missing_series_cases(base: Path, out: Path, *, limit: int = 24) -> list[tuple[Case, str]]:
    """(case, finding code): a series of a shard's data left out of its index (one entry of a log
    file dropped, for each of the first entries of every log file), and a series file holding only
    one shard's series (what a build-tsi run on one shard into an emptied ``_series`` gives).
    The case's ``mentions`` is the directory the finding must name."""
    cases: list[tuple[Case, str]] = []
    n = 0
    for path in _log_files(base):
        entries = [e for e in ix.iter_log_file(str(path)) if e.flag == fmt.LOG_SERIES_INSERT]
        for e in entries[:2]:
            n += 1
            if n > limit:
                break
            tree = _copy(base, out, f"drop{n:03d}")
            p = tree / path.relative_to(base)
            _mutate(p, lambda d, e=e: d[: e.offset] + d[e.offset + e.size :])
            index_dir = p.parents[1]
            cases.append((Case(f"drop:{path.relative_to(base)}@{e.offset}", ["verify", "--json", str(tree)], 1,
                               str(index_dir), tree), "tsi1.series_not_in_index"))
    return cases
