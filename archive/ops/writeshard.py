"""Write one shard's final data (what influxd would serve) as new TSM files.

Input is a :class:`~influx_archive.tsm.shard.ShardReader` over the shard's files, tombstones and
WAL cache; output is one or more TSM files in a directory, with tombstones applied into the data
(no ``.tombstone`` files: influxd's online restore discards them, docs/formats.md#shard-upload) and the
optional time range cut point-exactly (``start <= t <= end``). Blocks that need no change are
copied as raw frames without decoding; only blocks touched by a tombstone, by the range or by an
overlap with another file are decoded and re-encoded (docs/formats.md#reading-across-files).

A new file is started when the current one passes influxd's 2 GiB compaction limit
(``maxTSMFileSize``) or when a key reaches 65,535 blocks in one file (the index count is 16 bits;
``maxIndexEntries``); files of one output share the generation and count up the sequence, and
never overlap on a (key, time), so their order does not matter to influxd.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ...tsm import naming
from ...tsm.format import tsmfile as fmt
from ...tsm.shard import RawFrame, ShardReader
from ...tsm.writer import TSMWriter

#: influxd starts a new compaction output above this size (compact.go ``maxTSMFileSize``).
MAX_FILE_BYTES = 2048 * 1024 * 1024


@dataclass
class WrittenFile:
    name: str
    path: Path
    size: int
    keys: int


class ShardFileWriter:
    """TSM output files for one shard, rolled over at the limits above."""

    def __init__(
        self, directory: Path, generation: int, first_sequence: int = 1, *, max_bytes: int = MAX_FILE_BYTES
    ) -> None:
        self.directory = directory
        self.generation = generation
        self.sequence = first_sequence
        self.max_bytes = max_bytes
        self.files: list[WrittenFile] = []
        self._fh: BinaryIO | None = None
        self._w: TSMWriter | None = None
        self._name = ""

    def _writer(self) -> TSMWriter:
        if self._w is None:
            self._name = naming.tsm_name(self.generation, self.sequence)
            self._fh = open(self.directory / self._name, "xb", buffering=1 << 20)
            self._w = TSMWriter(self._fh)
        return self._w

    def _roll(self) -> None:
        if self._w is None:
            return
        size = self._w.close()
        keys = self._w.keys_written
        assert self._fh is not None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self.files.append(WrittenFile(self._name, self.directory / self._name, size, keys))
        self._w = None
        self._fh = None
        self.sequence += 1

    def _room(self, key: bytes) -> TSMWriter:
        w = self._writer()
        if w.bytes_written >= self.max_bytes or (
            w.entries_for_current_key >= fmt.MAX_ENTRIES_PER_KEY and w.current_key == key
        ):
            self._roll()
            w = self._writer()
        return w

    def write_key(self, reader: ShardReader, key: bytes, start: int | None, end: int | None) -> int:
        """Copy ``key``'s final data in ``[start, end]``; returns the number of blocks written."""
        block_type, parts = reader.iter_key(key, start, end)
        n = 0
        for part in parts:
            if isinstance(part, RawFrame):
                self._room(key).write_frame(key, block_type, part.min_time, part.max_time, part.frame)
                n += 1
            else:
                ts, vs = part.timestamps, part.values
                if not ts:
                    continue
                self._room(key).write_values(key, block_type, ts, vs)
                n += 1
        return n

    def close(self) -> list[WrittenFile]:
        """Finish the last file (an output with no key at all writes no file)."""
        if self._w is not None:
            if self._w.keys_written == 0 and self._w.entries_for_current_key == 0:
                assert self._fh is not None
                self._fh.close()
                os.unlink(self.directory / self._name)
                self._w = None
            else:
                self._roll()
        return self.files

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            with_path = self.directory / self._name
            if with_path.exists():
                with_path.unlink()
        self._w = None
        self._fh = None


def write_shard(
    reader: ShardReader,
    directory: Path,
    generation: int,
    first_sequence: int = 1,
    *,
    start: int | None = None,
    end: int | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    keys: list[bytes] | None = None,
) -> list[WrittenFile]:
    """Write every key of ``reader`` (or only ``keys``; final data, ``[start, end]``) into new TSM
    files in ``directory``. Returns the files written (none when nothing is left)."""
    out = ShardFileWriter(directory, generation, first_sequence, max_bytes=max_bytes)
    try:
        for key in reader.keys() if keys is None else keys:
            out.write_key(reader, key, start, end)
        return out.close()
    except BaseException:
        out.abort()
        raise
