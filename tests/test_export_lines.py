"""Export's line writer: the compiled core (``lp_window``, Ryu floats) against the Python reference,
and the window-at-a-time series merge against the whole-series merge, in bounded memory.

* ``lp_window`` writes exactly the bytes of :func:`py_window_lines` wherever it accepts the input,
  and accepts every valid window (so the fast path is what is tested); it declines (None, nothing
  changed) what the reference must decide: NaN/Inf, strings with a newline, unsorted or
  out-of-range timestamps, values of the wrong type.
* its float text is ``repr()``'s, over random bit patterns, random decimals and the edges.
* ``lp_decode`` (a whole stored block into packed arrays) returns exactly what
  ``tsm/block.py``'s ``decode_block`` does, on influxd's own blocks and generated ones, and never
  accepts a damaged block the Python decoder refuses; packed chunks write the same lines as lists.
* ``_export_shard`` (windowed) writes the same bytes as the whole series merged at once, for
  fields whose blocks are aligned, misaligned, sparse or disjoint, and overlapping files; its peak
  Python heap stays flat when the series grows eightfold.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import random
import struct
import sys
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_block import GO_BLOCKS
from test_shard_merge import MemTSM

from influx_archive.archive.errors import ArchiveError
from influx_archive.archive.ops import export as export_mod
from influx_archive.archive.ops import lineproto
from influx_archive.archive.ops.export import ExportResult, _export_shard, _Sink
from influx_archive.archive.ops.lineproto import (
    Skips,
    escape_field_key,
    escape_field_key_bytes,
    py_window_lines,
    unpack,
    window_lines,
)
from influx_archive.tsm.block import BOOLEAN, FLOAT, INTEGER, STRING, UNSIGNED, encode_block, py_decode_block
from influx_archive.tsm.compiled import core
from influx_archive.tsm.shard import ShardReader

needs_compiled = pytest.mark.skipif(
    core is None and os.environ.get("CI") != "true", reason="no C compiler where the package was installed"
)

I64 = (-(1 << 63), (1 << 63) - 1)
EDGE_FLOATS = [
    0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
    0.1, 0.2, 0.3, 1 / 3, 2 / 3, 1e15, 1e16, 1e17, 9007199254740992.0, 9007199254740993.0, 1e21, 1e22, 1e23,
    999999999999999.9, 9999999999999998.0, 1e-4, 1e-5, 0.0001, 0.00009999999999999999, 123456789.0, 1e300,
    2.0**63, 2.0**64, -(2.0**63), 4.35, 58.13, 100.0, 1.5, 0.5, 2.5e-3,
]


def _bits(rng: random.Random) -> float:
    return struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]


# ---- floats: compiled text == repr() -------------------------------------------------------------


@needs_compiled
def test_float_text_is_repr_on_edges_and_generated_doubles() -> None:
    rng = random.Random(20261202)
    values = list(EDGE_FLOATS)
    for v in list(values):
        values += [math.nextafter(v, math.inf), math.nextafter(v, -math.inf), -v]
    for _ in range(20000):
        values += [
            _bits(rng),  # every exponent, subnormals included
            rng.random() * 100,  # 17-digit values, the bench's shape
            round(rng.uniform(-1e4, 1e4), rng.randrange(0, 8)),  # short decimals
            float(rng.getrandbits(rng.randrange(1, 64))),  # integers, many beyond 2**53
            float(f"{rng.randrange(1, 10 ** rng.randrange(1, 18))}e{rng.randrange(-340, 300)}"),
            2.0 ** rng.randrange(-1074, 1024),
            10.0 ** rng.randrange(-307, 308),
        ]
    checked = 0
    for v in values:
        if not math.isfinite(v):
            continue
        got = core.lp_float_repr(v)
        if v == 0:
            assert got is None  # zero: PyOS_double_to_string writes it
            continue
        assert got == repr(v), (v.hex(), got)
        checked += 1
    assert checked > 100_000


@needs_compiled
@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != 0))
def test_float_text_is_repr_hypothesis(v: float) -> None:
    assert core.lp_float_repr(v) == repr(v)


# ---- one window: compiled == reference -----------------------------------------------------------

key_text = st.text(st.sampled_from(list('ab ,="\\=\n\t\x00é€😀') + ["x"]), min_size=1, max_size=12)
raw_key = st.one_of(key_text.map(lambda s: s.encode("utf-8")), st.binary(min_size=1, max_size=8))


def _values(btype: int, valid: bool) -> st.SearchStrategy:
    if btype == FLOAT:
        return st.one_of(st.floats(allow_nan=not valid, allow_infinity=not valid), st.sampled_from(EDGE_FLOATS))
    if btype == INTEGER:
        edge = st.sampled_from([I64[0], I64[1], 0, -1, 1, I64[0] + 1])
        return st.one_of(st.integers(*I64), edge) if valid else st.integers(-(1 << 65), 1 << 65)
    if btype == UNSIGNED:
        edge = st.sampled_from([0, (1 << 64) - 1, 1 << 63])
        return st.one_of(st.integers(0, (1 << 64) - 1), edge) if valid else st.integers(-5, 1 << 65)
    if btype == BOOLEAN:
        return st.booleans()
    text = st.text(st.sampled_from(list('ab"\\ ,=é😀') + (["\n"] if not valid else [])), max_size=10)
    raw = st.binary(max_size=6).filter(lambda b: not valid or b"\n" not in b)
    return st.one_of(text.map(lambda s: s.encode("utf-8")), raw)


@st.composite
def windows(draw, valid: bool):
    n_fields = draw(st.integers(1, 4))
    span = draw(st.sampled_from([8, 40, 1 << 62]))
    base = draw(st.sampled_from([0, -(1 << 62), I64[0], I64[1] - 50]))
    fields = []
    for _ in range(n_fields):
        btype = draw(st.sampled_from([FLOAT, INTEGER, UNSIGNED, BOOLEAN, STRING]))
        offsets = draw(st.lists(st.integers(0, min(span, 60)), max_size=30, unique=True))
        ts = [max(I64[0], min(I64[1], base + o)) for o in sorted(offsets)]
        ts = sorted(set(ts))
        if not valid and ts and draw(st.booleans()):
            ts = ts[::-1] if len(ts) > 1 else [ts[0], ts[0]]  # unsorted or duplicate
        vs = draw(st.lists(_values(btype, valid), min_size=len(ts), max_size=len(ts)))
        pos = draw(st.integers(0, len(ts)))
        name = escape_field_key_bytes(draw(raw_key)) + b"="
        fields.append([name, btype, ts, vs, pos])
    all_ts = [t for f in fields for t in f[2]] or [0]
    bound = draw(st.one_of(st.sampled_from([max(all_ts), I64[1]]), st.sampled_from(all_ts)))
    prefix = draw(raw_key) + b" "
    return prefix, fields, bound


def _valid(fields: list[list]) -> bool:
    for _name, btype, ts, vs, _pos in fields:
        if any(a >= b for a, b in itertools.pairwise(ts)):
            return False
        for v in vs:
            if btype == FLOAT and not math.isfinite(v):
                return False
            if btype == INTEGER and not I64[0] <= v <= I64[1]:
                return False
            if btype == UNSIGNED and not 0 <= v < 1 << 64:
                return False
            if btype == STRING and b"\n" in v:
                return False
    return True


def _both(prefix: bytes, fields: list[list], bound: int):
    ref_fields, c_fields = copy.deepcopy(fields), copy.deepcopy(fields)
    ref_skips = Skips()
    ref = py_window_lines(prefix, ref_fields, bound, ref_skips)
    got = core.lp_window(prefix, c_fields, bound)
    return ref, ref_fields, ref_skips, got, c_fields


@needs_compiled
@settings(max_examples=600, deadline=None)
@given(windows(valid=True))
def test_compiled_window_accepts_valid_and_equals_reference(case) -> None:
    prefix, fields, bound = case
    ref, ref_fields, skips, got, c_fields = _both(prefix, fields, bound)
    assert skips.values == 0
    assert got is not None  # a valid window is written by the compiled core
    assert tuple(got) == ref
    assert [f[4] for f in c_fields] == [f[4] for f in ref_fields]
    assert c_fields == ref_fields


@needs_compiled
@settings(max_examples=600, deadline=None)
@given(windows(valid=False))
def test_compiled_window_declines_or_equals_reference(case) -> None:
    prefix, fields, bound = case
    ref, ref_fields, skips, got, c_fields = _both(prefix, fields, bound)
    if got is None:
        assert c_fields == fields  # declined: nothing moved
        assert not _valid([[n, b, t[p:], v[p:], 0] for n, b, t, v, p in fields]) or skips.values
    else:
        assert tuple(got) == ref and c_fields == ref_fields and skips.values == 0
    # the dispatcher always ends at the reference's result
    d_fields, d_skips = copy.deepcopy(fields), Skips()
    assert window_lines(prefix, d_fields, bound, d_skips) == ref
    assert d_fields == ref_fields and d_skips.notes == skips.notes and d_skips.values == skips.values


@given(raw_key)
def test_field_key_escaping_bytes_equals_text(name: bytes) -> None:
    text = escape_field_key(name.decode("utf-8", "surrogateescape"))
    assert escape_field_key_bytes(name) == text.encode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    "btype,value,what",
    [
        (FLOAT, math.nan, "NaN/Inf float"),
        (FLOAT, -math.inf, "NaN/Inf float"),
        (STRING, b"a\nb", "string with a newline"),
    ],
)
def test_unwritable_values_are_skipped_and_counted(btype, value, what) -> None:
    fields = [[b"f=", btype, [1, 2], [value, value], 0], [b"g=", INTEGER, [2], [7], 0]]
    skips = Skips()
    text, lines, values = window_lines(b"m,t=1 ", fields, 10, skips)
    assert text == b"m,t=1 g=7i 2\n" and (lines, values) == (1, 1)
    assert skips.values == 2 and len(skips.notes) == 1 and what in skips.notes[0] and "m,t=1 field f" in skips.notes[0]


# ---- the windowed series merge == the whole series at once, bounded -------------------------------

SERIES = b"cpu,host=a"


def _blocks(ts: list[int], vs: list, size: int) -> list[tuple[list[int], list]]:
    return [(ts[i : i + size], vs[i : i + size]) for i in range(0, len(ts), size)]


def _shard_case(rng: random.Random, shape: str, n: int) -> list[MemTSM]:
    """One series with fields laid out as ``shape``, about ``n`` points per field."""
    fields: dict[bytes, tuple[int, list[tuple[list[int], list]]]] = {}
    if shape == "aligned":
        ts = list(range(0, 10 * n, 10))
        fields[b"a"] = (FLOAT, _blocks(ts, [rng.random() for _ in ts], 1000))
        fields[b"b"] = (INTEGER, _blocks(ts, [rng.getrandbits(62) for _ in ts], 1000))
    elif shape == "misaligned":
        ts = list(range(0, 10 * n, 10))
        fields[b"a"] = (FLOAT, _blocks(ts, [rng.random() for _ in ts], 1000))
        fields[b"b"] = (BOOLEAN, _blocks(ts, [rng.random() < 0.5 for _ in ts], 700))
        sparse = sorted(rng.sample(range(0, 10 * n, 5), n // 3))
        fields[b"c c"] = (STRING, _blocks(sparse, [rng.choice([b'q"', b"\\", b"x"]) for _ in sparse], 333))
    elif shape == "disjoint":
        a = list(range(0, 5 * n, 5))
        b = list(range(5 * n, 10 * n, 5))
        fields[b"a"] = (UNSIGNED, _blocks(a, [rng.getrandbits(64) for _ in a], 1000))
        fields[b"b"] = (FLOAT, _blocks(b, [rng.random() * 1e300 for _ in b], 1000))
    old = MemTSM("1-1", {SERIES + b"#!~#" + f: v for f, v in fields.items()})
    if shape != "overlapping":
        return [old]
    ts = list(range(0, 10 * n, 10))
    base = MemTSM("1-1", {SERIES + b"#!~#a": (FLOAT, _blocks(ts, [rng.random() for _ in ts], 1000))})
    over = list(range(5, 10 * n, 30))
    new = MemTSM("2-1", {SERIES + b"#!~#a": (FLOAT, _blocks(over, [-rng.random() for _ in over], 1000)),
                         SERIES + b"#!~#z": (INTEGER, _blocks(over, list(range(len(over))), 1000))})
    return [base, new]


def _whole(files: list[MemTSM]) -> bytes:
    """The reference stated directly: every field read whole, merged in one window."""
    reader = ShardReader([(f, None) for f in files])
    keys = sorted({k for f in files for k in f.keys()})
    fields = []
    for key in keys:
        btype, ts, vs = reader.read(key)
        fields.append([escape_field_key_bytes(key.split(b"#!~#")[1]) + b"=", btype, ts, vs, 0])
    return py_window_lines(SERIES + b" ", fields, I64[1], Skips())[0]


class _Collect:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)


def _windowed(files: list[MemTSM]) -> bytes:
    out = _Collect()
    sink = _Sink(out)  # type: ignore[arg-type]
    res = ExportResult()
    _export_shard(ShardReader([(f, None) for f in files]), sink, *I64, None, res)
    sink.flush()
    return b"".join(out.parts)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@pytest.mark.parametrize("shape", ["aligned", "misaligned", "disjoint", "overlapping"])
def test_windowed_series_equals_whole_series(shape: str, compiled: bool, monkeypatch) -> None:
    if not compiled:
        monkeypatch.setattr(lineproto, "core", None)
    for seed in range(3):
        rng = random.Random(seed)
        files = _shard_case(rng, shape, rng.choice([1, 999, 1000, 1001, 4321]))
        assert _windowed(files) == _whole(files)


class _Count:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)


def _peak(files: list[MemTSM]) -> tuple[int, int]:
    reader = ShardReader([(f, None) for f in files])
    out = _Count()
    tracemalloc.start()
    try:
        sink = _Sink(out)  # type: ignore[arg-type]
        _export_shard(reader, sink, *I64, None, ExportResult())
        sink.flush()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, out.size


def test_memory_is_bounded_by_a_window_not_the_series(monkeypatch) -> None:
    """Eight times the blocks per field, the same peak heap (the whole series of the large case
    would take tens of megabytes as Python objects; the output batch is 1 MiB)."""
    monkeypatch.setattr(export_mod, "_BATCH", 1 << 16)
    rng = random.Random(5)
    small = _shard_case(rng, "misaligned", 20_000)
    large = _shard_case(rng, "misaligned", 160_000)
    peak_small, size_small = _peak(small)
    peak_large, size_large = _peak(large)
    assert size_large > 7 * size_small
    assert peak_large < 1.5 * peak_small + (256 << 10), (peak_small, peak_large)
    assert peak_large < size_large / 20



# ---- whole blocks: lp_decode == decode_block --------------------------------------------------------

MAX = 1 << 20


def _py_decode(raw: bytes):
    try:
        return py_decode_block(raw, max_values=MAX)  # the Python codecs alone
    except ArchiveError:
        return None


def _same_as_python(raw: bytes) -> bool:
    """lp_decode declined, or returned exactly decode_block's values; True when it accepted."""
    got = core.lp_decode(raw, MAX)
    if got is None:
        return False
    want = _py_decode(raw)
    assert want is not None, raw.hex()  # never accepts what the Python decoder refuses
    btype, ts, vs = unpack_block(got)
    assert btype == want[0] and ts == want[1]
    if btype == FLOAT:
        assert [struct.pack("<d", v) for v in vs] == [struct.pack("<d", v) for v in want[2]]
    else:
        assert vs == want[2] and [type(v) for v in vs] == [type(v) for v in want[2]]
    return True


def unpack_block(got):
    btype, ts, vs = got
    return (btype, *unpack(btype, ts, vs))


@needs_compiled
def test_lp_decode_on_influxd_blocks() -> None:
    accepted = 0
    for d in GO_BLOCKS:
        raw = bytes.fromhex(d["block"])
        ok = _same_as_python(raw)
        want = _py_decode(raw)
        strictly_ascending = want is not None and all(a < b for a, b in itertools.pairwise(want[1]))
        if d["type"] != STRING and strictly_ascending:
            assert ok, d  # every valid non-string block takes the fast path
        accepted += ok
    assert accepted > 50


block_values = {
    FLOAT: st.floats(allow_nan=False),
    INTEGER: st.integers(*I64),
    UNSIGNED: st.integers(0, (1 << 64) - 1),
    BOOLEAN: st.booleans(),
}


@st.composite
def blocks(draw):
    btype = draw(st.sampled_from(sorted(block_values)))
    shape = draw(st.sampled_from(["regular", "random", "scaled", "wide"]))
    n = draw(st.integers(1, 1200))
    start = draw(st.integers(I64[0], I64[1] - 10**15 * 1300))
    if shape == "regular":
        step = draw(st.integers(1, 10**12))
        ts = [start + i * step for i in range(n)]
    elif shape == "scaled":
        ts = [start + i * 10**9 for i in range(n)]
        if n > 2:
            ts[n // 2] += 1000
    elif shape == "wide":
        ts = sorted(set(draw(st.lists(st.integers(*I64), min_size=1, max_size=50))))
    else:
        ts = sorted(set(draw(st.lists(st.integers(start, start + 10**6), min_size=1, max_size=300))))
    kind = draw(st.sampled_from(["random", "constant", "steps"]))
    if kind == "constant":
        vs = [draw(block_values[btype])] * len(ts)
    elif kind == "steps" and btype in (INTEGER, UNSIGNED):
        v0, d = draw(st.integers(-1000, 1000)), draw(st.integers(-50, 50))
        vs = [(v0 + i * d) % (1 << 64) if btype == UNSIGNED else max(I64[0], min(I64[1], v0 + i * d))
              for i in range(len(ts))]
    else:
        vs = draw(st.lists(block_values[btype], min_size=len(ts), max_size=len(ts)))
    return btype, ts, vs


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(blocks())
def test_lp_decode_equals_decode_block_on_generated_blocks(case) -> None:
    btype, ts, vs = case
    raw = encode_block(btype, ts, vs)
    assert _same_as_python(raw)  # valid: accepted


@needs_compiled
@settings(max_examples=600, deadline=None)
@given(blocks(), st.data())
def test_lp_decode_never_accepts_what_python_refuses(case, data) -> None:
    btype, ts, vs = case
    raw = bytearray(encode_block(btype, ts, vs))
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "byte"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "extend":
        raw += bytes(data.draw(st.binary(min_size=1, max_size=9)))
    else:
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _same_as_python(bytes(raw))


@needs_compiled
@settings(max_examples=100, deadline=None)
@given(st.lists(blocks(), min_size=1, max_size=3), st.data())
def test_packed_chunks_write_the_lines_lists_write(cases, data) -> None:
    packed, listed = [], []
    for k, (btype, ts, vs) in enumerate(cases):
        got = core.lp_decode(encode_block(btype, ts, vs), MAX)
        assert got is not None
        name = f"f{k}=".encode()
        pos = data.draw(st.integers(0, len(ts)))
        packed.append([name, btype, got[1], got[2], pos])
        listed.append([name, btype, *unpack(btype, got[1], got[2]), pos])
    bound = data.draw(st.sampled_from([I64[1]] + [t for _b, ts, _v in cases for t in ts]))
    ref = py_window_lines(b"m ", copy.deepcopy(listed), bound, Skips())
    a = core.lp_window(b"m ", packed, bound)
    b = core.lp_window(b"m ", listed, bound)
    if any(btype == FLOAT and not all(map(math.isfinite, vs)) for btype, _ts, vs in cases):
        assert a is None or a == ref  # declined unless the infinities lie past the window
        assert b == a
        return
    assert a is not None and a == b and a == ref
    assert [f[4] for f in packed] == [f[4] for f in listed]


@needs_compiled
@pytest.mark.parametrize("name", ["legacy", "portable", "live", "edge_1677"])
def test_whole_export_compiled_equals_python(name: str, fixtures_dir, monkeypatch) -> None:
    """Every fixture (tombstones, WAL, strings, booleans, extremes) exported with the compiled
    core and with the Python code alone: the same bytes and the same counts."""
    import io

    from influx_archive.archive.ops.export import export
    from influx_archive.archive.sources import open_source

    def run() -> tuple[bytes, dict]:
        buf = io.BytesIO()
        with open_source(fixtures_dir / name) as src:
            res = export(src, buf, workers=1)
        return buf.getvalue(), res.to_dict()

    fast = run()
    monkeypatch.setattr(lineproto, "core", None)
    monkeypatch.setattr(export_mod, "core", None)
    slow = run()
    assert fast[1]["lines"] > 0
    assert fast == slow


@pytest.mark.parametrize("how", ["partial", "unsupported", "disk full"])
def test_parts_appended_in_the_kernel_or_not(how: str, fixtures_dir, tmp_path, monkeypatch) -> None:
    """The parallel export's part files appended with sendfile: partial sends, a file system
    without sendfile (Python copies the rest) and a full disk (a clear error, no file left)."""
    import errno as errno_mod

    from influx_archive.archive.errors import TargetIOError
    from influx_archive.archive.ops.export import export_to_path
    from influx_archive.archive.sources import open_source

    src_dir = fixtures_dir / "live"
    with open_source(src_dir) as src:
        export_to_path(src, str(tmp_path / "plain.lp"), workers=2)
    real = os.sendfile
    calls = []

    def fake(out_fd, in_fd, offset, count):
        calls.append(count)
        if how == "partial":
            return real(out_fd, in_fd, offset, min(count, 777))
        if how == "unsupported":
            raise OSError(errno_mod.EINVAL, "Invalid argument")
        raise OSError(errno_mod.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "sendfile", fake)
    target = tmp_path / "out.lp"
    with open_source(src_dir) as src:
        if how == "disk full":
            with pytest.raises(TargetIOError):
                export_to_path(src, str(target), workers=2)
            assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["plain.lp"]
        else:
            export_to_path(src, str(target), workers=2)
            assert target.read_bytes() == (tmp_path / "plain.lp").read_bytes()
    assert calls  # the kernel path was taken
