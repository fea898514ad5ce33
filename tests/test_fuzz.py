"""Hypothesis fuzzing of every reader and codec on hostile bytes (issue 8).

Inputs are random bytes and mutated real bytes (bit flips, truncations, splices, insertions)
taken from the committed fixtures in ``fixtures/`` (real influxd 1.6.7 output). For every target
the only exceptions allowed to escape are the project's own (:class:`ArchiveError` subclasses);
each example has a deadline, so a hang or runaway loop fails the test, and peak Python
allocation per example is bounded (tracemalloc), so a length field claiming gigabytes must be
rejected before allocating.

Bounded in CI (~150 examples per target); ``INFLUX_ARCHIVE_FUZZ=long`` runs 5000 per target.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import tarfile
import tempfile
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import ArchiveError
from influx_archive.archive.ops.inspect import inspect_source
from influx_archive.archive.sources import open_source
from influx_archive.meta.files import parse_manifest, parse_meta_nn, parse_portable_meta
from influx_archive.meta.model import decode_data
from influx_archive.tsm import block as tsm_block
from influx_archive.tsm.codec import booleans, floats, integers, simple8b, strings, timestamps
from influx_archive.tsm.reader import TSMReader
from influx_archive.tsm.tombstone import parse_tombstones, read_tombstones
from influx_archive.tsm.wal import iter_wal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STEM = "20261125T064330Z"

settings.register_profile(
    "fuzz-ci", max_examples=150, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile(
    "fuzz-long", max_examples=5000, deadline=timedelta(seconds=20), suppress_health_check=[HealthCheck.too_slow],
)
FUZZ = settings.get_profile("fuzz-long" if os.environ.get("INFLUX_ARCHIVE_FUZZ") == "long" else "fuzz-ci")


# ---------------------------------------------------------------------- seeds (real bytes)


def _live(rel: str) -> bytes:
    return (FIXTURES / "live" / rel).read_bytes()


TSM_SEEDS = [
    _live("data/db1/autogen/2/000000001-000000001.tsm"),
    _live("data/db1/autogen/1/000000001-000000001.tsm"),
    *(p.read_bytes() for p in sorted((FIXTURES / "live/data/db2").rglob("*.tsm"))[:2]),
]
TOMBSTONE_SEEDS = [p.read_bytes() for p in sorted((FIXTURES / "live/data").rglob("*.tombstone"))[:3]]
WAL_SEEDS = [p.read_bytes() for p in sorted((FIXTURES / "live/wal").rglob("*.wal")) if p.stat().st_size][:3]
META_NN_SEEDS = [(FIXTURES / "legacy/meta.00").read_bytes()]
PORTABLE_META_SEEDS = [(FIXTURES / "portable" / f"{STEM}.meta").read_bytes()]
MANIFEST_SEEDS = [(FIXTURES / "portable" / f"{STEM}.manifest").read_bytes()]
META_DB_SEEDS = [_live("meta/meta.db")]


def _blocks() -> list[bytes]:
    """Every real block (bytes after the CRC) of the seed TSM files, one per block type present."""
    out: list[bytes] = []
    for data in TSM_SEEDS:
        with TSMReader(io.BytesIO(data), name="seed.tsm") as r:
            for _key, _t, entries in r.iter_index():
                out.extend(r.read_block(e) for e in entries[:1])
    return out


BLOCK_SEEDS = _blocks()


# ---------------------------------------------------------------------- mutation strategy


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """Random bytes, or a real seed with a few bit flips / a truncation / a splice / an insertion."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=512))
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("flip", "flip", "truncate", "splice", "insert", "overwrite")))
        n = len(data)
        if op == "flip" and n:
            pos = draw(st.integers(0, n - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[draw(st.integers(0, n)) :]
        elif op == "splice" and n:
            other = draw(st.sampled_from(seeds + TSM_SEEDS))
            a = draw(st.integers(0, n))
            b = draw(st.integers(0, len(other)))
            data[a:] = other[b : b + draw(st.integers(0, 256))]
        elif op == "insert":
            pos = draw(st.integers(0, n))
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "overwrite" and n:
            pos = draw(st.integers(0, n - 1))
            # lengths and counts: 0xff.. claims gigabytes, 0x00.. claims nothing
            data[pos : pos + 8] = draw(st.sampled_from((b"\xff" * 8, b"\x00" * 8, b"\x7f\xff\xff\xff", b"\x80")))
    return bytes(data)


# Inputs are at most a few tens of KiB: no reader may allocate anything near this on their behalf,
# whatever a length or count field claims.
PEAK_LIMIT = 64 << 20
# A hang (infinite loop) fails the example instead of blocking the run.
HANG_SECONDS = 30


def _only_project_errors(fn, *args, **kwargs) -> None:
    """Run ``fn``: only ArchiveError may escape, and Python allocations stay under PEAK_LIMIT."""
    def hung(signum: int, frame: object) -> None:
        raise TimeoutError(f"no result after {HANG_SECONDS} s: unbounded work on hostile input")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_SECONDS)
    tracemalloc.start()
    try:
        fn(*args, **kwargs)
    except ArchiveError:
        pass
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < PEAK_LIMIT, f"peak allocation {peak} bytes"


# ---------------------------------------------------------------------- codecs and blocks


@pytest.mark.slow
@FUZZ
@given(mutated(BLOCK_SEEDS))
def test_decode_block(data: bytes) -> None:
    _only_project_errors(tsm_block.decode_block, data)


CODECS = [
    lambda s, n: floats.decode(s, n),
    lambda s, n: integers.decode(s, n),
    lambda s, n: integers.decode_unsigned(s, n),
    lambda s, n: booleans.decode(s, n),
    lambda s, n: strings.decode(s, n),
    lambda s, n: timestamps.decode(s, max_count=max(n, 1)),
]


@FUZZ
@given(st.sampled_from(range(len(CODECS))), st.one_of(st.binary(max_size=300), mutated(BLOCK_SEEDS)),
       st.integers(0, 1000))
def test_codecs(which: int, section: bytes, count: int) -> None:
    _only_project_errors(CODECS[which], section, count)


@FUZZ
@given(st.binary(max_size=400))
def test_simple8b(words: bytes) -> None:
    def run() -> None:
        simple8b.count(words)
        out: list[int] = []
        simple8b.decode(words, out)

    _only_project_errors(run)


# ---------------------------------------------------------------------- TSM reader


def _read_tsm(data: bytes) -> None:
    with TSMReader(io.BytesIO(data), name="fuzz.tsm") as r:
        for key, _btype, entries in r.iter_index():
            for e in entries:
                r.decode_block(key, e)


@pytest.mark.slow
@FUZZ
@given(mutated(TSM_SEEDS))
def test_tsm_reader(data: bytes) -> None:
    _only_project_errors(_read_tsm, data)


# ---------------------------------------------------------------------- tombstones, WAL


@FUZZ
@given(mutated(TOMBSTONE_SEEDS))
def test_tombstones(data: bytes) -> None:
    _only_project_errors(parse_tombstones, data, name="fuzz.tombstone")
    _only_project_errors(read_tombstones, data, name="fuzz.tombstone", strict=True)


@pytest.mark.slow
@FUZZ
@given(mutated(WAL_SEEDS), st.sampled_from(((False, False), (True, False), (False, True))))
def test_wal(data: bytes, mode: tuple[bool, bool]) -> None:
    strict, salvage = mode
    _only_project_errors(lambda: list(iter_wal(data, name="_00001.wal", strict=strict, salvage=salvage)))


# ---------------------------------------------------------------------- metadata


@FUZZ
@given(mutated(META_NN_SEEDS))
def test_meta_nn(data: bytes) -> None:
    _only_project_errors(parse_meta_nn, data, path="meta.00")


@FUZZ
@given(mutated(PORTABLE_META_SEEDS))
def test_portable_meta(data: bytes) -> None:
    _only_project_errors(parse_portable_meta, data, path="x.meta")


@FUZZ
@given(mutated(MANIFEST_SEEDS))
def test_manifest(data: bytes) -> None:
    _only_project_errors(parse_manifest, data, path="x.manifest")


@pytest.mark.slow
@FUZZ
@given(mutated(META_DB_SEEDS))
def test_meta_db(data: bytes) -> None:
    _only_project_errors(decode_data, data, path="meta.db")


# ---------------------------------------------------------------------- source model (tar scanning)


LEGACY_TAR = (FIXTURES / "legacy/db1.autogen.00002.00").read_bytes()
PORTABLE_TGZ = (FIXTURES / "portable" / f"{STEM}.s2.tar.gz").read_bytes()


def _open_and_read(path: Path) -> None:
    src = open_source(path)
    inspect_source(src, points=True)


@pytest.mark.slow
@FUZZ
@given(mutated([LEGACY_TAR]))
def test_source_legacy_tar(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-legacy-") as d:
        root = Path(d)
        shutil.copy(FIXTURES / "legacy/meta.00", root / "meta.00")
        (root / "db1.autogen.00002.00").write_bytes(data)
        _only_project_errors(_open_and_read, root)


@pytest.mark.slow
@FUZZ
@given(mutated([PORTABLE_TGZ]))
def test_source_portable_targz(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-portable-") as d:
        p = Path(d) / f"{STEM}.s2.tar.gz"
        p.write_bytes(data)
        _only_project_errors(_open_and_read, p)


@pytest.mark.slow
@FUZZ
@given(mutated(MANIFEST_SEEDS))
def test_source_portable_manifest(data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-manifest-") as d:
        root = Path(d)
        for name in (f"{STEM}.meta", f"{STEM}.s2.tar.gz", f"{STEM}.s1.tar.gz"):
            shutil.copy(FIXTURES / "portable" / name, root / name)
        (root / f"{STEM}.manifest").write_bytes(data)
        _only_project_errors(_open_and_read, root)


SINGLE_FILE_SEEDS = {
    "000000001-000000001.tsm": TSM_SEEDS,
    "000000001-000000001.tombstone": TOMBSTONE_SEEDS,
    "_00001.wal": WAL_SEEDS,
    "meta.00": META_NN_SEEDS,
    "meta.db": META_DB_SEEDS,
    f"{STEM}.meta": PORTABLE_META_SEEDS,
}


@pytest.mark.slow
@FUZZ
@given(
    st.sampled_from(sorted(SINGLE_FILE_SEEDS)).flatmap(lambda n: st.tuples(st.just(n), mutated(SINGLE_FILE_SEEDS[n])))
)
def test_source_single_file(named: tuple[str, bytes]) -> None:
    """``open_source`` on one damaged file of each kind, then read it all as ``inspect --points`` does."""
    name, data = named
    with tempfile.TemporaryDirectory(prefix="fuzz-file-") as d:
        p = Path(d) / name
        p.write_bytes(data)
        _only_project_errors(_open_and_read, p)


def test_seeds_are_real() -> None:
    """The seeds parse cleanly unmutated, so mutations start from valid influxd output."""
    assert len(BLOCK_SEEDS) >= 3
    for data in TSM_SEEDS:
        _read_tsm(data)
    for data in TOMBSTONE_SEEDS:
        parse_tombstones(data)
    for data in WAL_SEEDS:
        assert list(iter_wal(data, strict=True))
    parse_meta_nn(META_NN_SEEDS[0])
    parse_portable_meta(PORTABLE_META_SEEDS[0])
    parse_manifest(MANIFEST_SEEDS[0])
    decode_data(META_DB_SEEDS[0])
    with tarfile.open(fileobj=io.BytesIO(LEGACY_TAR)) as tf:
        assert tf.getnames()
