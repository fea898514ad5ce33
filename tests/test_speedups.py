"""The compiled codec core (tsm/_speedups.c: Gorilla floats, simple8b) against the pure Python
codecs it speeds up.

The compiled functions handle only valid input and decline everything else (returning None), so
that the Python codec raises its precise errors. These tests hold the two to the same bytes on
influxd's own encoder output and on hypothesis inputs, and check the compiled decoder never
accepts what the Python one refuses."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import ArchiveError
from influx_archive.tsm import block
from influx_archive.tsm.codec import floats, simple8b, varint
from test_block import GO_BLOCKS, _values

compiled = floats._compiled
needs_compiled = pytest.mark.skipif(
    compiled is None and os.environ.get("CI") != "true", reason="no C compiler where the package was installed"
)


def bits(values: list[float]) -> list[int]:
    return list(struct.unpack(">%dQ" % len(values), struct.pack(">%dd" % len(values), *values)))


def value_section(raw: bytes) -> tuple[bytes, int]:
    ts_len, pos = varint.decode(raw, 1, what="ts_len")
    return raw[pos + ts_len :], len(block.decode_timestamps(raw))


def test_compiled_codec_is_built_where_ci_installs() -> None:
    """CI installs with a C compiler: the fast path must be there (locally it may be absent)."""
    if os.environ.get("CI") == "true":
        assert compiled is not None


FLOAT_BLOCKS = [d for d in GO_BLOCKS if d["type"] == block.FLOAT]


@needs_compiled
def test_go_vectors_both_codecs() -> None:
    assert len(FLOAT_BLOCKS) > 50
    for d in FLOAT_BLOCKS:
        raw = bytes.fromhex(d["block"])
        section, count = value_section(raw)
        values = _values(block.FLOAT, d["v"])
        assert compiled.encode(values) == floats.py_encode(values) == section
        assert bits(compiled.decode(section, count)) == bits(floats.py_decode(section, count)) == bits(values)


finite_or_inf = st.floats(allow_nan=False)


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.lists(finite_or_inf, min_size=1, max_size=1200))
def test_same_bytes_and_values(values: list[float]) -> None:
    section = floats.py_encode(values)
    assert compiled.encode(values) == section
    assert bits(compiled.decode(section, len(values))) == bits(values)


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(st.lists(finite_or_inf, min_size=1, max_size=60), st.data())
def test_damaged_sections_never_accepted_by_the_compiled_decoder_alone(values: list[float], data) -> None:
    section = bytearray(floats.py_encode(values))
    how = data.draw(st.sampled_from(["flip", "cut", "append", "count"]))
    count = len(values)
    if how == "flip":
        i = data.draw(st.integers(0, len(section) - 1))
        section[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "cut":
        del section[data.draw(st.integers(1, len(section))) :]
    elif how == "append":
        section += bytes([data.draw(st.integers(0, 255))])
    else:
        count += data.draw(st.sampled_from([-1, 1]))
    fast = compiled.decode(bytes(section), count) if count >= 1 else None
    try:
        slow = floats.py_decode(bytes(section), count)
    except ArchiveError:
        assert fast is None  # declined: the Python codec raises its precise error
        with pytest.raises(ArchiveError):
            floats.decode(bytes(section), count)
        return
    assert fast is None or bits(fast) == bits(slow)


@needs_compiled
def test_declines_what_it_cannot_encode() -> None:
    assert compiled.encode([1.0, float("nan")]) is None
    assert compiled.encode([1, 2.0]) is None  # an int is not a float: the Python codec decides
    assert compiled.encode([]) is None
    with pytest.raises(ArchiveError):
        floats.encode([1.0, float("nan")])


# --- simple8b --------------------------------------------------------------------------------

s8_values = st.lists(
    st.one_of(st.just(1), st.integers(0, 1), st.integers(0, (1 << 60) - 1), st.integers(0, 255)), max_size=1300
)


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(s8_values)
def test_simple8b_same_words_both_drivers(values: list[int]) -> None:
    for fast, slow in ((compiled.s8b_encode_all, simple8b.py_encode_all),
                       (compiled.s8b_encode_windowed, simple8b.py_encode_windowed)):
        words = slow(values)
        assert fast(values) == words
        out: list[int] = []
        simple8b.py_decode(words, out)
        assert compiled.s8b_decode(words) == out == values


@needs_compiled
@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_simple8b_decode_any_words(data: bytes) -> None:
    got = compiled.s8b_decode(data)
    if len(data) % 8:
        assert got is None
    else:
        out: list[int] = []
        simple8b.py_decode(data, out)
        assert got == out


@needs_compiled
def test_simple8b_declines_out_of_range() -> None:
    for bad in ([1 << 60], [-1], [1.5]):
        assert compiled.s8b_encode_all(bad) is None and compiled.s8b_encode_windowed(bad) is None
    with pytest.raises(ValueError):
        simple8b.encode_all([1 << 60])
