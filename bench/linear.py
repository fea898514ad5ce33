"""Linearity benchmark: the code paths that used to be quadratic, at n = 10k / 40k / 160k.

    python bench/linear.py             # the table; paste it into bench/RESULTS.md
    python bench/linear.py --sizes 1000,4000   # quicker

Each row times one library call on a generated input of size n (seconds, best of ``--runs``) and
prints the ratio to the previous size. With 4x more input a linear path takes ~4x the time, an
O(n log n) one a little more, a quadratic one ~16x. Nothing here asserts a time.

Rows:

* ``wal resync, no entry``: salvage-reading a segment of n x 100 bytes of 0x01 (every offset looks
  like a write entry whose length runs to the end; it used to re-read the rest at every offset).
* ``wal resync, every third entry damaged``: n entries, every third one with a broken snappy
  stream, read with ``salvage=True`` (one resynchronisation per damaged entry).
* ``manifest parse``: a portable ``.manifest`` with n shard entries.
* ``portable open, n entries``: ``open_source`` of a portable backup whose manifest lists n shards
  whose files are missing (each becomes a finding and an empty shard).
* ``metastore merge``: restore's metastore merge (``--merge``) of a backup metastore with n shard
  groups into a target with n shard groups, half of them at the same times.
* ``metastore decode + encode``: ``meta.db`` with n shard groups, decoded and encoded again.
* ``tsm index scan``: opening a TSM file with n keys (one block each).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from influx_archive.archive.ops.restore.metastore import merge_meta
from influx_archive.archive.ops.select import Selection
from influx_archive.archive.sources import open_source
from influx_archive.meta import files as metafiles
from influx_archive.meta.model import (
    Data,
    DatabaseInfo,
    RetentionPolicyInfo,
    ShardGroupInfo,
    ShardInfo,
    ShardOwner,
    decode_data,
    encode_data,
)
from influx_archive.tsm.block import FLOAT, encode_block
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.wal import WALWriter, iter_wal

HOUR = 3600 * 10**9


def _wal_ones(n: int, tmp: Path) -> Callable[[], object]:
    data = b"\x01" * (100 * n)
    return lambda: list(iter_wal(data, salvage=True))


def _wal_every_other(n: int, tmp: Path) -> Callable[[], object]:
    import io

    buf = io.BytesIO()
    w = WALWriter(buf)
    spans = []
    for i in range(n):
        start = buf.tell()
        w.write({b"cpu,host=a#!~#v": (1, [(i * 10**9 + j, float(j)) for j in range(4)])})
        spans.append((start, buf.tell()))
    data = bytearray(buf.getvalue())
    for i in range(0, n, 3):
        a, _ = spans[i]
        data[a + 5 : a + 7] = b"\xff\xff"  # snappy preamble overflows: damaged entry
    data = bytes(data)
    return lambda: list(iter_wal(data, salvage=True))


def _manifest_doc(n: int) -> dict:
    return {
        "meta": {"fileName": "20260101T000000Z.meta", "size": 0},
        "limited": False,
        "files": [
            {"database": "db", "policy": "autogen", "shardID": i + 1, "fileName": f"20260101T000000Z.s{i + 1}.tar.gz",
             "size": 10, "lastModified": 0}
            for i in range(n)
        ],
    }


def _manifest_parse(n: int, tmp: Path) -> Callable[[], object]:
    text = json.dumps(_manifest_doc(n), indent=2).encode()
    return lambda: metafiles.parse_manifest(text)


def _groups(n: int, first_id: int, offset: int) -> list[ShardGroupInfo]:
    return [
        ShardGroupInfo(id=first_id + i, start_time=(i + offset) * HOUR, end_time=(i + offset + 1) * HOUR,
                       shards=[ShardInfo(id=first_id + i, owners=[ShardOwner(node_id=0)])])
        for i in range(n)
    ]


def _meta(n: int, offset: int) -> Data:
    rp = RetentionPolicyInfo(name="autogen", duration=0, shard_group_duration=HOUR, replica_n=1,
                             shard_groups=_groups(n, 1, offset))
    db = DatabaseInfo(name="db", default_retention_policy="autogen", retention_policies=[rp])
    return Data(term=1, index=1, cluster_id=1, databases=[db], max_shard_group_id=n, max_shard_id=n)


def _portable_open(n: int, tmp: Path) -> Callable[[], object]:
    d = tmp / f"portable-{n}"
    d.mkdir()
    blob = encode_data(_meta(n, 0))
    meta = metafiles.build_portable_meta(blob)
    (d / "20260101T000000Z.meta").write_bytes(meta)
    doc = _manifest_doc(n)
    doc["meta"]["size"] = len(blob)
    (d / "20260101T000000Z.manifest").write_text(json.dumps(doc, indent=2))
    return lambda: open_source(d, salvage=True)


def _merge(n: int, tmp: Path) -> Callable[[], object]:
    target = _meta(n, 0)
    source = _meta(n, n // 2)  # half of the groups at the target's times, half new
    return lambda: merge_meta(target, source, source, Selection(), True, {}, [], tmp / "meta.db")


def _meta_codec(n: int, tmp: Path) -> Callable[[], object]:
    blob = encode_data(_meta(n, 0))
    return lambda: encode_data(decode_data(blob))


def _tsm_index(n: int, tmp: Path) -> Callable[[], object]:
    out = bytearray(b"\x16\xd1\x16\xd1\x01")
    index = []
    body = encode_block(FLOAT, [0, 1], [1.0, 2.0])
    frame = struct.pack(">I", zlib.crc32(body)) + body
    for i in range(n):
        key = b"cpu,host=h%07d#!~#v" % i
        index.append(struct.pack(">H", len(key)) + key + struct.pack(">BH", FLOAT, 1)
                     + struct.pack(">qqQI", 0, 1, len(out), len(frame)))
        out += frame
    io_ = len(out)
    out += b"".join(index) + struct.pack(">Q", io_)
    p = tmp / f"index-{n}.tsm"
    p.write_bytes(out)

    def run() -> None:
        with TSMReader.open(p) as r:
            r.keys()

    return run


CASES: list[tuple[str, Callable[[int, Path], Callable[[], object]]]] = [
    ("wal resync, no entry (n x 100 B of 0x01)", _wal_ones),
    ("wal resync, every third entry damaged", _wal_every_other),
    ("manifest parse", _manifest_parse),
    ("portable open, n missing shard files", _portable_open),
    ("metastore merge (n groups into n)", _merge),
    ("metastore decode + encode", _meta_codec),
    ("tsm index scan (n keys)", _tsm_index),
]


def _time(fn: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,40000,160000")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    head = ["path"] + [f"n={n:,}" for n in sizes] + [f"x{sizes[i] // sizes[i - 1]} ratio" for i in range(1, len(sizes))]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    with tempfile.TemporaryDirectory(prefix="bench-linear-") as tmp:
        for name, build in CASES:
            times = []
            for n in sizes:
                case_dir = Path(tmp) / f"{len(times)}-{abs(hash(name))}"
                case_dir.mkdir()
                times.append(_time(build(n, case_dir), args.runs))
            ratios = [f"{times[i] / times[i - 1]:.1f}" if times[i - 1] > 0 else "-" for i in range(1, len(times))]
            print("| " + " | ".join([name] + [f"{t:.3f} s" for t in times] + ratios) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
