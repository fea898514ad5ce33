"""Layouts and constants of the metastore files (docs/formats.md#meta-db, #legacy-files, #meta-nn, #portable-files).

No I/O here. The protobuf messages (``meta.Data``, ``PortableData``) are handled by
:mod:`influx_archive.meta.proto` / :mod:`influx_archive.meta.model`; this module holds the
binary frame of a legacy ``meta.NN`` file (docs/formats.md#meta-nn) and the names influxd gives its files.

``meta.NN`` (all integers big-endian, no checksum)::

    offset   size  field
    0        8     magic 0x0000000059590101
    8        8     L, length of the meta.Data blob
    16       L     meta.Data blob (exactly what meta.db holds)
    16+L     8     N, length of the node section
    24+L     N     node JSON; always b"null\\n" (N = 5) from OSS 1.6, so total = L + 29
"""

from __future__ import annotations

import struct
from typing import Any

#: Magic of a ``meta.NN`` file (``snapshotter.BackupMagicHeader``), u64 big-endian.
META_NN_MAGIC = 0x0000000059590101
#: Node section OSS 1.6 writes (JSON of a nil node, with the encoder's newline).
OSS_NODE_JSON = b"null\n"
#: Offset of the meta.Data blob in ``meta.NN``.
META_NN_BLOB_OFFSET = 16
#: Bytes of ``meta.NN`` that are not blob or node section (magic, L, N).
META_NN_OVERHEAD = 24

#: Magic and blob length (u64 BE each): what a reader checks before trusting L (``MetaNNHead``).
META_NN_HEAD = struct.Struct(">QQ")
#: The node-section length (u64 BE) at offset 16 + L (``MetaNNNodeLength``).
META_NN_NODE_LENGTH = struct.Struct(">Q")

#: Largest metastore file read into memory (meta.db, meta.NN, .meta). A shard group with one
#: shard takes ~40 bytes of protobuf and decodes to ~15 times that in memory, so 128 MiB is
#: about 3 million shard groups (influxd itself slows to a crawl long before) and ~2 GB decoded
#: at most; anything larger is refused before a byte of it is allocated.
MAX_META_FILE_SIZE = 128 << 20

#: Largest ``.manifest`` accepted: ~190 bytes of JSON per shard entry, so about 350,000 shards;
#: parsing peaks at ~4.2 times the text (~270 MB at the cap).
MAX_MANIFEST_SIZE = 64 << 20

#: Legacy backup names (docs/formats.md#legacy-files): ``meta.%02d`` and ``<db>.<rp>.%05d.%02d``.
LEGACY_META_PREFIX = "meta."
LEGACY_SHARD_ID_WIDTH = 5
LEGACY_INCREMENT_WIDTH = 2

#: Portable backup names (docs/formats.md#portable-files): ``<ts>.meta``, ``<ts>.manifest``, ``<ts>.s<sid>.tar.gz``,
#: ``<ts>`` being UTC wall time in Go layout ``20060102T150405Z``.
PORTABLE_META_SUFFIX = ".meta"
PORTABLE_MANIFEST_SUFFIX = ".manifest"
PORTABLE_SHARD_INFIX = ".s"
PORTABLE_SHARD_SUFFIX = ".tar.gz"


# --- the Construct definitions (the reference: tests, building): made on first use, importing
# construct is ~40 ms of start-up that the readers, which use the struct formats, do not need ----
MetaNNHead: Any  # magic, blob_length
MetaNNNodeLength: Any
MetaNNFrame: Any  # the whole frame; lengths are implied by ``blob`` and ``node`` on build
_CONSTRUCT_NAMES = frozenset({"MetaNNHead", "MetaNNNodeLength", "MetaNNFrame"})


def _construct_definitions() -> dict[str, Any]:
    from construct import Const, GreedyBytes, Int64ub, Prefixed, Struct, Terminated

    return {
        "MetaNNHead": Struct(
            "magic" / Int64ub,
            "blob_length" / Int64ub,
        ),
        "MetaNNNodeLength": Int64ub,
        "MetaNNFrame": Struct(
            "magic" / Const(META_NN_MAGIC, Int64ub),
            "blob" / Prefixed(Int64ub, GreedyBytes),
            "node" / Prefixed(Int64ub, GreedyBytes),
            Terminated,
        ),
    }


def __getattr__(name: str) -> Any:
    """``MetaNNHead``, ``MetaNNNodeLength``, ``MetaNNFrame`` (PEP 562)."""
    if name in _CONSTRUCT_NAMES:
        globals().update(_construct_definitions())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
