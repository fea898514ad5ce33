"""archive/tsmcopy.checked_chunks: a TSM file's bytes passed on unchanged, every block checked once.

The reader goes through the file in windows (tsmcopy.GROUP bytes); these tests use windows from a
few bytes (every frame cut by a window edge, frames bigger than a window) to the default size."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tsm_file import fixture_tsm_files

from influx_archive.archive.errors import ArchiveError, ChecksumError
from influx_archive.archive.ops import tsmcopy
from influx_archive.tsm import block
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.writer import TSMWriter


def copy(data: bytes, *, on_damage=None) -> bytes:
    r = TSMReader(io.BytesIO(data), name="t.tsm")
    return b"".join(bytes(c) for c in tsmcopy.checked_chunks(io.BytesIO(data), r, on_damage=on_damage))


@pytest.mark.parametrize("group", [7, 4096, tsmcopy.GROUP])
def test_influxd_files_pass_unchanged(fixtures_dir, monkeypatch, group: int) -> None:
    monkeypatch.setattr(tsmcopy, "GROUP", group)
    for name, data in fixture_tsm_files(fixtures_dir):
        assert copy(data) == data, name


def string_tsm(blocks: list[list[bytes]]) -> tuple[bytes, list[int]]:
    """A TSM file with one key whose blocks hold these strings; and each block's offset."""
    out = io.BytesIO()
    w = TSMWriter(out)
    t = 0
    for values in blocks:
        ts = list(range(t, t + len(values)))
        t += len(values)
        w.write_values(b"m#!~#s", block.STRING, ts, values)
    w.close()
    data = out.getvalue()
    r = TSMReader(io.BytesIO(data), name="t.tsm")
    return data, [e.offset for e in r.entries(b"m#!~#s")]


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=8), min_size=1, max_size=6),
    st.integers(1, 200),
    st.data(),
)
def test_a_damaged_block_is_found_whatever_the_windows(blocks, group: int, data) -> None:
    raw, offsets = string_tsm(blocks)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(tsmcopy, "GROUP", group)
        assert copy(raw) == raw
        hit = data.draw(st.sampled_from(offsets))
        index_offset = int.from_bytes(raw[-8:], "big")
        frame_end = min([o for o in offsets if o > hit] + [index_offset])
        at = data.draw(st.integers(hit, frame_end - 1))
        damaged = bytearray(raw)
        damaged[at] ^= 1 << data.draw(st.integers(0, 7))
        found: list[ArchiveError] = []
        assert copy(bytes(damaged), on_damage=found.append) == bytes(damaged)  # passed on as stored
        assert [(type(e), e.offset) for e in found] == [(ChecksumError, hit)]
        with pytest.raises(ChecksumError) as exc:
            copy(bytes(damaged))
        assert exc.value.offset == hit



# --- restore's checked copy of one file (archive/ops/restore/shards._copy_validated) ----------------------


def _copy_one(tmp_path, data: bytes, salvage: bool):
    from influx_archive.archive.ops.restore import shards as restore_shards
    from influx_archive.archive.sources import ShardFile

    f = ShardFile(
        kind="tsm", name="000000001-000000001.tsm", size=len(data), container="backup.tar", member="db/rp/1/x.tsm"
    )
    findings: list = [] if salvage else None  # type: ignore[assignment]
    dest = tmp_path / "out.tsm"
    dest.unlink(missing_ok=True)
    wrote = restore_shards._copy_validated(io.BytesIO(data), f, dest, lambda n: None, findings)
    return wrote, (dest.read_bytes() if dest.exists() else None), findings


def _with_type(raw: bytes, offset: int, btype: int) -> bytes:
    """The file with the block at ``offset`` given another type byte, its CRC made to match."""
    import zlib

    r = TSMReader(io.BytesIO(raw), name="t.tsm")
    size = next(e.size for k in r.keys() for e in r.entries(k) if e.offset == offset)
    out = bytearray(raw)
    out[offset + 4] = btype
    out[offset : offset + 4] = zlib.crc32(out[offset + 4 : offset + size]).to_bytes(4, "big")
    return bytes(out)


def test_salvage_copy_keeps_intact_blocks_and_leaves_out_mislabelled_files(tmp_path) -> None:
    raw, offsets = string_tsm([[b"a"] * 3, [b"b"] * 3, [b"c"] * 3])
    assert _copy_one(tmp_path, raw, salvage=True) == (len(raw), raw, [])
    assert _copy_one(tmp_path, raw, salvage=False)[:2] == (len(raw), raw)

    crc_damaged = bytearray(raw)
    crc_damaged[offsets[1] + 6] ^= 0x40
    wrote, out, findings = _copy_one(tmp_path, bytes(crc_damaged), salvage=True)
    kept = TSMReader(io.BytesIO(out), name="out.tsm")
    assert len(kept.entries(b"m#!~#s")) == 2
    assert wrote == len(out) and [f.offset for f in findings] == [offsets[1]]
    with pytest.raises(ChecksumError):
        _copy_one(tmp_path, bytes(crc_damaged), salvage=False)

    # CRC intact, type byte not what the index says: never copied, the whole file left out
    mislabelled = _with_type(raw, offsets[2], block.INTEGER)
    wrote, out, findings = _copy_one(tmp_path, mislabelled, salvage=True)
    assert (wrote, out) == (0, None)
    assert len(findings) == 1 and "file left out" in findings[0].message and "type" in findings[0].message
