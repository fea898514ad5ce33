"""verify's compiled frame check (tsm/_speedups.c ``check_frames`` and its ``crc32``) against the
Python reference it speeds up (archive/ops/tsmcopy.py ``checked_chunks``' per-frame loop).

``check_frames`` may only skip frames the Python loop finds clean; every other frame it hands
back, and the Python code names the finding. These tests hold the two to the same findings (type,
offset, message, in order) on influxd's own files and on generated files of every block type with
every kind of damage a frame can carry, for windows from a few bytes to the default size."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tsm_file import fixture_tsm_files

from influx_archive.archive.errors import ArchiveError
from influx_archive.archive.ops import tsmcopy
from influx_archive.tsm import block
from influx_archive.tsm.compiled import core
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.writer import TSMWriter

needs_compiled = pytest.mark.skipif(
    core is None and os.environ.get("CI") != "true", reason="no C compiler where the package was installed"
)


def test_compiled_frame_check_is_built_where_ci_installs() -> None:
    if os.environ.get("CI") == "true":
        assert core is not None and hasattr(core, "check_frames")


# --- the CRC ----------------------------------------------------------------------------------------


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.integers(0, 15), st.booleans())
def test_crc32_is_zlibs_at_every_length_and_alignment(data: bytes, shift: int, table_only: bool) -> None:
    assert core is not None
    buf = bytearray(shift) + data
    view = memoryview(buf)[shift:]  # every alignment of the start: the folding loads are unaligned
    assert core.crc32(view, table_only) == zlib.crc32(data)


@needs_compiled
def test_crc32_lengths_around_the_folding_thresholds() -> None:
    assert core is not None
    seed = os.urandom(1 << 17)
    for n in [*range(200), 1023, 1024, 1025, 4095, 4096, 4097, (1 << 17) - 1, 1 << 17]:
        for table_only in (False, True):
            assert core.crc32(seed[:n], table_only) == zlib.crc32(seed[:n]), (n, table_only)


# --- files of every block type, damaged -------------------------------------------------------------

values_of = {
    block.FLOAT: st.floats(allow_nan=False, width=64),
    block.INTEGER: st.integers(-(2**63), 2**63 - 1),
    block.UNSIGNED: st.integers(0, 2**64 - 1),
    block.BOOLEAN: st.booleans(),
    block.STRING: st.binary(max_size=30),
}


@st.composite
def tsm_files(draw) -> bytes:
    """A TSM file of 1-4 keys of any block types, 1-5 blocks each, raw, packed and RLE integers and
    timestamps (regular steps RLE-encode, irregular ones pack)."""
    out = io.BytesIO()
    w = TSMWriter(out)
    nkeys = draw(st.integers(1, 4))
    for k in range(nkeys):
        btype = draw(st.sampled_from(sorted(values_of)))
        t = draw(st.integers(0, 10**12))
        for _ in range(draw(st.integers(1, 5))):
            n = draw(st.integers(1, 40))
            step = draw(st.sampled_from([1, 10, 10**9, None]))
            ts = []
            for _ in range(n):
                t += step if step is not None else draw(st.integers(1, 10**6))
                ts.append(t)
            if btype == block.INTEGER and draw(st.booleans()):
                vs: list = [draw(st.integers(-5, 5))] * n  # RLE / packed integers
            else:
                vs = [draw(values_of[btype]) for _ in range(n)]
            w.write_values(b"m,k=%d#!~#f" % k, btype, ts, vs)
            t += 1
    w.close()
    return out.getvalue()


def frames_of(data: bytes) -> list[tuple[int, int, bytes, int]]:
    return TSMReader(io.BytesIO(data), name="t.tsm").frames()


def recrc(buf: bytearray, off: int, size: int) -> None:
    buf[off : off + 4] = struct.pack(">I", zlib.crc32(buf[off + 4 : off + size]))


def damage(data: bytes, draw) -> bytes:
    """One damage inside the frames: a flipped bit (CRC mismatch), or a changed byte with the CRC
    made to match (another type byte, a timestamp or value header stating another count, ...)."""
    frames = frames_of(data)
    off, size, _key, _t = draw(st.sampled_from(frames))
    buf = bytearray(data)
    kind = draw(st.sampled_from(["bit", "type", "byte", "bytes"]))
    if kind == "bit":
        at = draw(st.integers(off, off + size - 1))
        buf[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "type":
        buf[off + 4] = draw(st.integers(0, 255).filter(lambda b: b != buf[off + 4]))
        recrc(buf, off, size)
    elif kind == "byte":
        at = draw(st.integers(off + 4, min(off + size - 1, off + 24)))  # the headers and first words
        buf[at] = draw(st.integers(0, 255))
        recrc(buf, off, size)
    else:
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(off + 4, off + size - 1))
            buf[at] = draw(st.integers(0, 255))
        recrc(buf, off, size)
    return bytes(buf)


def findings(data: bytes, *, compiled: bool) -> list[tuple[type, int | None, str]]:
    found: list[ArchiveError] = []
    with pytest.MonkeyPatch.context() as m:
        if not compiled:
            m.setattr(tsmcopy, "_compiled", None)
        r = TSMReader(io.BytesIO(data), name="t.tsm")
        out = b"".join(bytes(c) for c in tsmcopy.checked_chunks(io.BytesIO(data), r, on_damage=found.append))
    assert out == data  # passed on as stored either way
    return [(type(e), e.offset, e.message) for e in found]


@needs_compiled
@pytest.mark.parametrize("group", [7, 301, 4096, tsmcopy.GROUP])
def test_influxd_files_same_verdict_and_no_frame_declined(fixtures_dir, monkeypatch, group: int) -> None:
    """On influxd's files both find nothing, and the compiled check vouches for every frame by itself
    (none handed back to the Python loop: the speed depends on it)."""
    assert core is not None
    monkeypatch.setattr(tsmcopy, "GROUP", group)
    for name, data in fixture_tsm_files(fixtures_dir):
        assert findings(data, compiled=True) == findings(data, compiled=False) == [], name
        frames = frames_of(data)
        assert core.check_frames(data, 0, frames, 0, block.DEFAULT_MAX_VALUES) == len(frames), name


@needs_compiled
@settings(max_examples=250, deadline=None)
@given(tsm_files(), st.sampled_from([5, 64, 700, tsmcopy.GROUP]), st.data())
def test_damaged_frames_same_findings_with_and_without_the_compiled_check(data: bytes, group: int, draw) -> None:
    damaged = damage(data, draw.draw)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(tsmcopy, "GROUP", group)
        assert findings(data, compiled=True) == findings(data, compiled=False) == []
        assert findings(damaged, compiled=True) == findings(damaged, compiled=False)


@needs_compiled
@settings(max_examples=250, deadline=None)
@given(tsm_files(), st.data())
def test_check_frames_skips_only_frames_the_python_loop_finds_clean(data: bytes, draw) -> None:
    """Any window, any start index: every frame skipped lies wholly in the window and passes the
    reference checks (CRC, type byte, count_values_at); on intact files it stops only at the
    window's edge."""
    assert core is not None
    damaged = damage(data, draw.draw) if draw.draw(st.booleans()) else data
    frames = frames_of(data)
    pos = draw.draw(st.integers(0, len(data) - 1))
    end = draw.draw(st.integers(pos, len(data)))
    i = draw.draw(st.integers(0, len(frames)))
    window = memoryview(damaged)[pos:end]
    j = core.check_frames(window, pos, frames, i, block.DEFAULT_MAX_VALUES)
    assert i <= j <= len(frames)
    for off, size, _key, btype in frames[i:j]:
        assert pos <= off and off + size <= end
        frame = damaged[off : off + size]
        assert struct.unpack(">I", frame[:4])[0] == zlib.crc32(frame[4:]) and frame[4] == btype
        block.count_values(frame[4:])  # raises on what the reference refuses
    if damaged is data and j < len(frames):
        off, size, _key, _t = frames[j]
        assert not (pos <= off and off + size <= end)  # a clean frame in the window is never declined


@needs_compiled
def test_check_frames_declines_malformed_tables() -> None:
    """Tuples that are not frames (wrong shapes, types, out-of-range numbers) are handed back."""
    assert core is not None
    data = bytes(100)
    for bad in [(0,), (0, 10, b"k"), ("0", 10, b"k", 1), (0, 2**70, b"k", 1), (-5, 10, b"k", 1), (0, 4, b"k", 1),
                (95, 10, b"k", 1)]:
        assert core.check_frames(data, 0, [bad], 0, block.DEFAULT_MAX_VALUES) == 0, bad
    assert core.check_frames(data, 0, [], 0, block.DEFAULT_MAX_VALUES) == 0
    assert core.check_frames(data, 0, [(0, 10, b"k", 1)], 5, block.DEFAULT_MAX_VALUES) == 1


# --- verify itself: the same report with and without the compiled check ------------------------------


def _report(path, *, compiled: bool) -> tuple:
    from influx_archive.archive.ops.verify import verify

    with pytest.MonkeyPatch.context() as m:
        if not compiled:
            m.setattr(tsmcopy, "_compiled", None)
        r = verify(path)
    return r.files, r.blocks, r.bytes, [(f.severity, f.message, f.path, f.member, f.offset, f.code) for f in r.findings]


@needs_compiled
def test_verify_reports_the_same_findings_on_damaged_legacy_backups(tmp_path, fixtures_dir) -> None:
    """Damage in the TSM members of every shard tar of a legacy backup (flipped bits, a type byte or
    a count header with a matching CRC, several damaged shards at once): verify's findings (file,
    member, offset, code, message, in order), counts and bytes equal the Python path's."""
    import random
    import shutil
    import tarfile

    rng = random.Random(15)
    tars = sorted(p for p in (fixtures_dir / "legacy").iterdir() if tarfile.is_tarfile(p))
    members = []
    for tar in tars:
        with tarfile.open(tar) as tf:
            members += [(tar.name, m.offset_data, m.size) for m in tf if m.name.endswith(".tsm")]
    assert len(members) >= 3
    for case in range(12):
        src = tmp_path / f"case{case}"
        shutil.copytree(fixtures_dir / "legacy", src)
        detectable = False  # a bit flip or a type byte always is; a header byte may still state a valid count
        for name, at, size in rng.sample(members, rng.randint(1, 3)):
            raw = bytearray((src / name).read_bytes())
            tsm = bytearray(raw[at : at + size])
            off, fsize, _k, _t = rng.choice(frames_of(bytes(tsm)))
            kind = rng.choice(["bit", "type", "count"])
            detectable |= kind != "count"
            if kind == "bit":
                tsm[rng.randrange(off, off + fsize)] ^= 1 << rng.randrange(8)
            else:
                tsm[off + 4 if kind == "type" else rng.randrange(off + 5, min(off + fsize, off + 16))] ^= 0x40
                recrc(tsm, off, fsize)
            raw[at : at + size] = tsm
            (src / name).write_bytes(bytes(raw))
        fast, reference = _report(src, compiled=True), _report(src, compiled=False)
        assert fast == reference, case
        assert any(f[0] == "error" for f in fast[3]) or not detectable, case
        shutil.rmtree(src)
