"""The fast paths of a byte copy (archive/ops/tsmcopy.py ``checked_chunks``, tsm/_speedups.c
``crc32`` / ``check_frames``) decide exactly what the Python checks decide: the same bytes, the
same damage found and named, on intact files and on every kind of damaged frame."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import ArchiveError
from influx_archive.archive.ops import tsmcopy
from influx_archive.tsm.block import BOOLEAN, FLOAT, INTEGER, STRING, UNSIGNED
from influx_archive.tsm.compiled import core
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.writer import TSMWriter

# the Python checks are the reference; the compiled core must be built (pip install -e . builds it)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=5000), skip=st.integers(0, 15))
def test_crc32_is_zlibs(data: bytes, skip: int) -> None:
    assert core is not None
    view = memoryview(data)[min(skip, len(data)):]  # unaligned starts
    assert core.crc32(view) == zlib.crc32(view)
    assert core.crc32(view, True) == zlib.crc32(view)  # the table path the folding falls back to


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 63, 64, 65, 127, 128, 129, 4096, 65_535, 1 << 20, (1 << 20) + 13])
def test_crc32_at_fold_boundaries(n: int) -> None:
    assert core is not None
    data = random.Random(n).randbytes(n)
    assert core.crc32(data) == zlib.crc32(data)


_TYPES = [FLOAT, INTEGER, BOOLEAN, STRING, UNSIGNED]


def _value(rng: random.Random, typ: int, i: int):
    return {FLOAT: rng.random() * 1e6, INTEGER: rng.randint(-(1 << 40), 1 << 40), BOOLEAN: rng.random() < 0.5,
            STRING: b"s%d" % rng.randint(0, 1 << 30), UNSIGNED: rng.randint(0, 1 << 50)}[typ]


def _tsm(seed: int) -> bytes:
    rng = random.Random(seed)
    buf = io.BytesIO()
    w = TSMWriter(buf)
    for k in range(rng.randint(1, 12)):
        typ = rng.choice(_TYPES)
        n = rng.randint(1, 3000)
        ts = sorted(rng.sample(range(1, 1 << 40), n)) if rng.random() < 0.5 else list(range(1000, 1000 + n * 10, 10))
        w.write_values(b"m%03d,host=h#!~#f" % k, typ, ts, [_value(rng, typ, i) for i in range(n)])
    w.close()
    return buf.getvalue()


def _damage(data: bytes, rng: random.Random, how: str, frames) -> bytes:
    """One frame damaged ``how``: a flipped byte (CRC mismatch), a wrong type byte or a broken
    count header with the CRC made to match (only the deeper checks see it)."""
    b = bytearray(data)
    off, size, _key, btype = rng.choice(frames)
    if how == "flip":
        b[off + rng.randrange(size)] ^= 1 << rng.randrange(8)
        return bytes(b)
    if how == "type":
        b[off + 4] = rng.choice([t for t in range(8) if t != btype])
    elif how == "count":  # the timestamp section's varint length: too long or cut
        b[off + 5] = rng.choice([0x00, 0x01, 0x7F, 0xFF])
    struct.pack_into(">I", b, off, zlib.crc32(bytes(b[off + 4 : off + size])))
    return bytes(b)


def _run(data: bytes, monkeypatch, compiled: bool, collect: bool):
    assert core is not None, "the compiled core (tsm/_speedups.c) is not built"
    monkeypatch.setattr(tsmcopy, "_compiled", core if compiled else None)
    reader = TSMReader(io.BytesIO(data), name="f.tsm")
    found: list[tuple[str, str, int | None]] = []
    out = bytearray()
    try:
        for chunk in tsmcopy.checked_chunks(io.BytesIO(data), reader,
                                            on_damage=(lambda e: found.append((type(e).__name__, e.message, e.offset)))
                                            if collect else None):
            out += chunk
    except ArchiveError as exc:
        found.append(("raised " + type(exc).__name__, exc.message, exc.offset))
    return bytes(out), found


@pytest.mark.parametrize("seed", range(40))
def test_checked_chunks_compiled_and_python_agree(seed: int, monkeypatch) -> None:
    rng = random.Random(seed)
    data = _tsm(seed)
    frames = TSMReader(io.BytesIO(data), name="f.tsm").frames()
    how = ["none", "flip", "type", "count"][seed % 4]
    if how != "none":
        for _ in range(1 + seed % 3):
            data = _damage(data, rng, how, frames)
    for collect in (False, True):
        fast = _run(data, monkeypatch, True, collect)
        slow = _run(data, monkeypatch, False, collect)
        assert fast == slow
        if collect:
            assert fast[0] == data  # every byte passed on, as stored
        if how == "none":
            assert fast == (data, [])
        else:
            assert slow[1]  # a flipped bit, a wrong type or a broken count header is caught


@pytest.mark.parametrize("group", [64, 5_000, 70_000, 512 << 10])
def test_windows_cutting_frames_anywhere(group: int, monkeypatch) -> None:
    """Windows of any size cut frames at every place: the bytes and the findings do not move."""
    monkeypatch.setattr(tsmcopy, "GROUP", group)
    rng = random.Random(group)
    data = _tsm(group)
    frames = TSMReader(io.BytesIO(data), name="f.tsm").frames()
    data = _damage(data, rng, "flip", frames)
    fast = _run(data, monkeypatch, True, True)
    assert fast == _run(data, monkeypatch, False, True)
    assert fast[0] == data and fast[1]


# ---- read_ahead (archive/threads.py): the copy's reader thread ------------------------------------


@pytest.mark.parametrize("depth", [1, 2, 4])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 50])
def test_read_ahead_keeps_order_errors_and_stops(depth: int, n: int) -> None:
    import threading

    from influx_archive.archive.threads import read_ahead

    before = threading.active_count()
    assert list(read_ahead(iter(range(n)), depth)) == list(range(n))
    for fail_at in range(n + 1):  # the producer's error arrives at its place in the sequence

        def items(fail_at=fail_at):
            yield from range(fail_at)
            raise ValueError(f"at {fail_at}")

        got: list[int] = []
        with pytest.raises(ValueError, match=f"at {fail_at}"):
            for x in read_ahead(items(), depth):
                got.append(x)
        assert got == list(range(fail_at))
    for stop_at in range(n):  # the consumer stops early: the producer stops, never reads on
        produced: list[int] = []

        def counted(produced=produced):
            for i in range(n):
                produced.append(i)
                yield i

        it = read_ahead(counted(), depth)
        for x in it:
            if x == stop_at:
                break
        it.close()
        assert len(produced) <= stop_at + 1 + depth + 1
    assert threading.active_count() == before  # no thread outlives its iteration


def test_reused_buffers_are_never_overwritten_while_held(monkeypatch) -> None:
    """checked_chunks with depth + 2 buffers behind read_ahead(depth): every chunk the consumer
    holds still holds the file's bytes when it is written, however slow the consumer is."""
    import time

    from influx_archive.archive.threads import read_ahead

    monkeypatch.setattr(tsmcopy, "GROUP", 4096)
    data = _tsm(7)
    reader = TSMReader(io.BytesIO(data), name="f.tsm")
    for depth in (1, 2, 3):
        out = bytearray()
        for i, chunk in enumerate(read_ahead(tsmcopy.checked_chunks(io.BytesIO(data), reader, buffers=depth + 2),
                                             depth)):
            if i % 7 == 0:
                time.sleep(0.002)  # let the producer run ahead as far as it may
            out += chunk
        assert bytes(out) == data
