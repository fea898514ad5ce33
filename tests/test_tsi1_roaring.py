"""The Roaring series id set reader (tsm/tsi1/roaring.py): sets of every container kind read back
as written (the array/bitmap form the Go library writes, and hand-built run containers); any
damage — every truncation, every byte changed — is a FormatError or a set that still reads as a
well-formed one, never another exception; stated sizes above the caller's bound are refused
before anything is decoded."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import FormatError
from influx_archive.tsm.tsi1 import roaring

IDS = st.lists(st.one_of(st.integers(0, 70000), st.integers(0, 2**32 - 1)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(IDS)
def test_round_trip(ids: list[int]) -> None:
    data = roaring.encode(ids)
    assert roaring.decode(data, 0, len(data), path="f", max_ids=10**6) == sorted(set(ids))


def test_dense_container_is_a_bitmap_and_reads_back() -> None:
    ids = list(range(0, 65536, 3)) + [1 << 20]
    data = roaring.encode(ids)
    assert len(data) > roaring.BITMAP_BYTES
    assert roaring.decode(data, 0, len(data), path="f", max_ids=10**6) == ids


def _run_set(runs_by_key: dict[int, list[tuple[int, int]]]) -> bytes:
    keys = sorted(runs_by_key)
    n = len(keys)
    head = struct.pack("<I", roaring.COOKIE_RUN | ((n - 1) << 16)) + bytes([0xFF] * ((n + 7) // 8))
    desc = b"".join(struct.pack("<HH", k, sum(ln + 1 for _s, ln in runs_by_key[k]) - 1) for k in keys)
    bodies = [struct.pack("<H", len(runs_by_key[k])) + b"".join(struct.pack("<HH", s, ln) for s, ln in runs_by_key[k])
              for k in keys]
    offsets = b""
    if n >= roaring.NO_OFFSET_THRESHOLD:
        off = len(head) + len(desc) + 4 * n
        for b in bodies:
            offsets += struct.pack("<I", off)
            off += len(b)
    return head + desc + offsets + b"".join(bodies)


@pytest.mark.parametrize("nkeys", [1, 3, 4, 6])
def test_run_containers(nkeys: int) -> None:
    runs = {k * 2: [(1, 4), (10, 0), (100, 50)] for k in range(nkeys)}
    data = _run_set(runs)
    want = [(k << 16) + v for k in sorted(runs) for s, ln in runs[k] for v in range(s, s + ln + 1)]
    assert roaring.decode(data, 0, len(data), path="f", max_ids=10**6) == want
    with pytest.raises(FormatError, match="more than"):
        roaring.decode(data, 0, len(data), path="f", max_ids=len(want) - 1)


@settings(max_examples=200, deadline=None)
@given(IDS.filter(bool), st.data())
def test_damage_is_a_format_error(ids: list[int], data) -> None:
    good = roaring.encode(ids)
    variants = [good[:i] for i in range(0, len(good), max(1, len(good) // 40))]
    pos = data.draw(st.integers(0, len(good) - 1))
    b = bytearray(good)
    b[pos] ^= data.draw(st.integers(1, 255))
    variants.append(bytes(b))
    for v in variants:
        try:
            got = roaring.decode(v, 0, len(v), path="f", max_ids=10**6)
        except FormatError as exc:
            assert exc.path == "f" and exc.offset is not None and 0 <= exc.offset <= len(v)
        else:
            assert got == sorted(set(got)) and all(0 <= x < 2**32 for x in got)
