"""The compiled tsi1 core (tsm/_tsispeed.c) against the Python reference, on hypothesis inputs:
XXH64, the series file form of line keys, whole series segments (valid, and damaged at any byte),
log files of series inserts. The core may decline (None) — then the Python path decides — but
whatever it returns equals the reference. Under CI the core must be built."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influx_archive.tsm.tsi1 import compiled, xxhash
from influx_archive.tsm.tsi1 import format as fmt
from influx_archive.tsm.tsi1 import index as ix
from influx_archive.tsm.tsi1 import seriesfile as sf
from influx_archive.tsm.tsi1 import serieskey as sk


def core():
    if compiled.core is None:
        pytest.fail("the compiled tsi1 core (tsm/_tsispeed.c) is not built: pip install -e . with a C compiler",
                    pytrace=False)
    return compiled.core


def test_core_is_used_when_built() -> None:
    if os.environ.get("CI") == "true" or compiled.core is not None:
        assert xxhash.sum64 is core().sum64


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_sum64(data: bytes) -> None:
    assert core().sum64(data) == xxhash.sum64_py(data)


def test_sum64_every_length_and_reference_vectors() -> None:
    data = bytes(range(256)) * 2
    for n in range(len(data)):
        assert core().sum64(data[:n]) == xxhash.sum64_py(data[:n]), n
    assert core().sum64(b"") == 0xEF46DB3751D8E999
    assert core().sum64(memoryview(b"abc")) == xxhash.sum64_py(b"abc")


PLAIN = st.binary(max_size=12).filter(lambda b: b"\\" not in b and b" " not in b)
PART = st.one_of(PLAIN, st.sampled_from([b"", b"=", b",", b"\\", b" ", b"\\ ", b"\\,", b"a=b", "ü".encode()]))


@st.composite
def line_keys(draw) -> bytes:
    name = draw(PART)
    tags = draw(st.lists(st.tuples(PART, PART), max_size=5))
    sep = draw(st.sampled_from([b"=", b"", b"=="]))
    return name + b"".join(b"," + k + sep + v for k, v in tags) + draw(st.sampled_from([b"", b",", b" "]))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line_keys())
def test_series_file_key(key: bytes) -> None:
    got = core().series_file_key(key)
    try:
        want = sk.encode(*sk.parse_key(key))
    except ValueError:
        assert got is None
        return
    if got is not None:
        assert got == want
    plain = b"\\" not in key and b" " not in key and key.split(b",")[0] and all(
        eq and v for _k, eq, v in (p.partition(b"=") for p in key.split(b",")[1:])
    )
    assert (got is not None) == bool(plain) or len(key) > fmt.MAX_KEY_LEN


def test_series_file_key_long_parts() -> None:
    for n in (0xFFFE, 0xFFFF, 0x10000):
        key = b"m,k=" + b"v" * n
        got = core().series_file_key(key)
        if len(key) > fmt.MAX_KEY_LEN:
            assert got is None
        else:
            assert got == sk.encode(*sk.parse_key(key))


def _python_entries(path: str, segment_id: int, partition: int | None, monkeypatch) -> list | Exception:
    with monkeypatch.context() as m:
        m.setattr(sf, "core", None)
        try:
            return [(e.flag, e.id, e.offset, e.key) for e in sf.iter_segment(path, segment_id, partition)]
        except Exception as exc:  # the reference's verdict
            return exc


@st.composite
def segments(draw) -> tuple[bytes, int]:
    keys = [sk.encode(n, t) for n, t in draw(st.lists(
        st.tuples(PLAIN.filter(bool), st.lists(st.tuples(PLAIN, PLAIN), max_size=3)), max_size=12))]
    partition = sf.key_partition(keys[0]) if keys else draw(st.integers(0, 7))
    body = bytearray(sf.segment_bytes_header())
    sid = partition + 1
    for key in keys:
        if sf.key_partition(key) != partition:
            continue
        body += sf.entry_bytes(fmt.ENTRY_INSERT, sid, key)
        if draw(st.integers(0, 3)) == 0:
            body += sf.entry_bytes(fmt.ENTRY_TOMBSTONE, sid)
        sid += 8
    body += b"\0" * draw(st.integers(0, 40))
    return bytes(body), partition


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(seg=segments(), data=st.data())
def test_scan_segment(seg, data, tmp_path, monkeypatch) -> None:
    raw, partition = seg
    mutated = bytearray(raw)
    if data.draw(st.booleans()) and len(raw) > fmt.SEGMENT_HEADER_SIZE:
        pos = data.draw(st.integers(fmt.SEGMENT_HEADER_SIZE, len(raw) - 1))
        how = data.draw(st.sampled_from(["flip", "set", "cut"]))
        if how == "cut":
            mutated = mutated[:pos]
        else:
            mutated[pos] = mutated[pos] ^ 0x41 if how == "flip" else data.draw(st.integers(0, 255))
    path = tmp_path / "0000"
    path.write_bytes(bytes(mutated))
    for part in (partition, None):
        want = _python_entries(str(path), 0, part, monkeypatch)
        got = core().scan_segment(bytes(mutated), min(len(mutated), fmt.segment_size(0)), 0,
                                  -1 if part is None else part)
        if isinstance(want, Exception):
            assert got is None, (want, got)
        elif got is not None:
            assert got == want
        if bytes(mutated) == raw:
            assert got is not None  # a valid segment is the core's to read


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 2**64 - 1), max_size=50))
def test_log_inserts(ids: list[int]) -> None:
    want = b"".join(ix.log_entry_bytes(fmt.LOG_SERIES_INSERT, i) for i in ids)
    assert core().log_inserts(ids) == want
    assert [e.series_id for e in ix.parse_log(want)] == ids


def test_log_inserts_declines_what_it_cannot_write() -> None:
    for bad in ([0], [1, 0], [2**64], [-1]):
        assert core().log_inserts(bad) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(segs=st.lists(segments(), min_size=1, max_size=3), dup=st.booleans())
def test_read_partition_bulk_path_equals_the_loop(segs, dup, tmp_path, monkeypatch) -> None:
    """read_partition's bulk path (a segment of distinct new inserts) leaves the state the
    entry-by-entry loop over the Python reader leaves."""
    import shutil

    part_dir = tmp_path / "p"
    shutil.rmtree(part_dir, ignore_errors=True)
    part_dir.mkdir()
    partition = segs[0][1]
    for i, (raw, _p) in enumerate(segs):
        if i and dup:
            raw = segs[0][0]  # the same keys again: the loop's path
        (part_dir / f"{i:04x}").write_bytes(raw)

    def state(p: sf.Partition):
        return (p.keys, p.offsets, p.tombstones, p.max_id, p.entries, p.inserts, p.last_insert,
                [(s.id, s.end) for s in p.segments])

    try:
        fast = state(sf.read_partition(str(part_dir), partition))
    except Exception as exc:
        fast = type(exc)
    with monkeypatch.context() as m:
        m.setattr(sf, "core", None)
        try:
            slow = state(sf.read_partition(str(part_dir), partition))
        except Exception as exc:
            slow = type(exc)
    assert fast == slow


# ---- build-tsi's per-key loops (archive/ops/buildtsi.py, archive/ops/tsiwrite.py) -----------

COMPOSITE = st.one_of(
    st.binary(max_size=16),
    st.tuples(st.binary(max_size=12), st.sampled_from([b"#!~#", b"#!~", b"#!~##!~#"]), st.binary(max_size=6)).map(
        b"".join
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(COMPOSITE, max_size=30), st.booleans())
def test_series_of_keys(keys: list[bytes], ordered: bool) -> None:
    """The series of each key (tsm/keys.py series_of), consecutive repeats once: the same set,
    and of sorted keys the same list as the reference's dedup."""
    from influx_archive.tsm.keys import series_of

    if ordered:
        keys = sorted(set(keys))
    got = core().series_of_keys(keys)
    want: list[bytes] = []
    for k in keys:
        s = series_of(k)
        if not want or want[-1] != s:
            want.append(s)
    assert got == want


def test_series_of_keys_declines_what_is_not_a_list_of_bytes() -> None:
    assert core().series_of_keys((b"a",)) is None  # type: ignore[arg-type]
    assert core().series_of_keys([b"a", bytearray(b"b")]) is None  # type: ignore[list-item]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line_keys(), max_size=12))
def test_keyed_series(keys: list[bytes]) -> None:
    """All or nothing: every key's series_file_key, or None as soon as one is declined."""
    got = core().keyed_series(keys)
    each = [core().series_file_key(k) for k in keys]
    if any(s is None for s in each):
        assert got is None
    else:
        assert got == list(zip(keys, each))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=10), st.sampled_from([b"a", b"b", b"c", b"d"])), max_size=30),
       st.dictionaries(st.sampled_from([b"a", b"b", b"c", b"d"]), st.integers(0, 2**64 - 1), max_size=4))
def test_shard_partitions(keys: list[tuple[bytes, bytes]], ids: dict[bytes, int]) -> None:
    """The reference's partitions, or None where it raises (a key missing or with id 0)."""
    from influx_archive.archive.errors import FormatError
    from influx_archive.archive.ops import tsiwrite

    got = core().shard_partitions(keys, ids)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(tsiwrite, "core", None)
        try:
            want = tsiwrite.shard_partitions(keys, ids, "shard")
        except FormatError:
            assert got is None
            return
    assert got == want


def _write_layout(path, raw: bytes, size: int, planted: list[tuple[int, int]], dense: bool) -> bytes:
    """``raw`` then zeros to ``size`` with ``planted`` (offset, byte) written over them; ``dense``
    writes every byte, otherwise the zeros are left as holes (influxd's ``Truncate``) with only
    the planted bytes written, each in its own block. Returns the file's bytes."""
    want = bytearray(raw.ljust(size, b"\0"))
    for off, b in planted:
        want[off] = b
    with open(path, "wb") as f:
        if dense:
            f.write(want)
        else:
            f.write(raw)
            for off, b in planted:
                f.seek(off)
                f.write(bytes((b,)))
            f.truncate(size)
    return bytes(want)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(seg=segments(), data=st.data())
def test_sparse_segment_reads_as_its_bytes(seg, data, tmp_path, monkeypatch) -> None:
    """The zeros after a segment's entries are skipped when they are a hole (``_hole_tail``): a
    sparse segment, with or without non-zero bytes planted anywhere after its entries (the
    hole-aware check must still find those), reads exactly like the same bytes written densely,
    in the compiled core and in the Python reference."""
    raw, partition = seg
    size = data.draw(st.sampled_from([len(raw), 8192, 3 * 4096 + 17, fmt.segment_size(0)]))
    size = max(size, len(raw))
    planted = data.draw(st.lists(st.tuples(st.integers(len(raw), max(len(raw), size - 1)), st.integers(0, 255)),
                                 max_size=2)) if size > len(raw) else []
    sparse, dense = tmp_path / "0000", tmp_path / "dense" / "0000"
    dense.parent.mkdir(exist_ok=True)
    got_bytes = _write_layout(sparse, raw, size, planted, dense=False)
    assert _write_layout(dense, raw, size, planted, dense=True) == got_bytes == sparse.read_bytes()
    for part in (partition, None):
        ref = _python_entries(str(dense), 0, part, monkeypatch)
        for path in (sparse, dense):
            got = _python_entries(str(path), 0, part, monkeypatch)
            assert str(got).replace(str(path), "P") == str(ref).replace(str(dense), "P")  # same error, offset
            try:
                fast = sf.segment_entries(str(path), 0, part)
            except Exception as exc:
                assert isinstance(ref, Exception)
                assert str(exc).replace(str(path), "P") == str(ref).replace(str(dense), "P")
            else:
                assert fast == ref


def test_hole_tail_finds_the_trailing_hole(tmp_path) -> None:
    p = tmp_path / "f"
    with open(p, "wb") as f:
        f.write(b"x" * 10)
        f.truncate(4 << 20)
    fd = os.open(p, os.O_RDONLY)
    try:
        tail = sf._hole_tail(fd, 4 << 20)
    finally:
        os.close(fd)
    assert 10 <= tail < 4 << 20  # ext4, tmpfs, xfs, btrfs: the 4 MiB of zeros are a hole
    with open(p, "r+b") as f:
        f.seek((4 << 20) - 1)
        f.write(b"y")
    fd = os.open(p, os.O_RDONLY)
    try:
        assert sf._hole_tail(fd, 4 << 20) == 4 << 20  # data after the hole: everything is read
    finally:
        os.close(fd)
