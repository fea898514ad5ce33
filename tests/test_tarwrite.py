"""The shard-tar write path (archive/ops/tarwrite.py): :class:`OutputFile` (unbuffered, gathered
writes, writeback handed over as it goes) writes exactly the bytes a plain buffered file gets,
through every member writer, at every write size, with short writes and write errors as the OS
reports them."""

from __future__ import annotations

import gzip
import io
import os
import random
import resource
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influx_archive.archive.ops import tarwrite
from influx_archive.archive.ops.tarwrite import GzipSink, OutputFile, StoredGzipWriter, TarWriter


def _members(seed: int, sizes: list[int]) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out = []
    for i, n in enumerate(sizes):
        noise = rng.randbytes(n)
        text = (b"cpu,host=h%d v=%d\n" % (i, seed) * (n // 16 + 1))[:n]
        out.append((f"db/rp/{seed % 7}/{i:09d}-000000001.tsm", noise if i % 2 == 0 else text))
    return out


def _write(raw, members, level: int | None, chunk: int) -> None:
    """The members as a tar (``level`` None) or a .tar.gz at ``level``, handed over in ``chunk``-byte
    writes the way a reader of any buffer size hands them (views of one reused buffer)."""
    sink = raw if level is None else GzipSink(raw, level=level, filename="x.tar")

    class Reused:  # a source yielding views of a buffer it overwrites on the next read
        def __init__(self, data: bytes) -> None:
            self._data, self._pos, self._buf = data, 0, bytearray(chunk)

        def read(self, n: int):
            k = min(n, chunk, len(self._data) - self._pos)
            self._buf[:k] = self._data[self._pos : self._pos + k]
            self._pos += k
            return memoryview(self._buf)[:k]

    tar = TarWriter(sink)
    for name, data in members:
        tar.add(name, len(data), Reused(data), mtime=0)  # type: ignore[arg-type]
    tar.close()
    if sink is not raw:
        sink.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 1 << 30), sizes=st.lists(st.integers(0, 600_000), min_size=1, max_size=4),
       level=st.sampled_from([None, 0, 1, 6]), chunk=st.sampled_from([1000, 65_535, 65_536, 200_001, 1 << 19]),
       step=st.sampled_from([4096, 100_000, 4 << 20]))
def test_output_file_writes_what_a_buffered_file_gets(tmp_path: Path, monkeypatch, seed, sizes, level, chunk,
                                                      step) -> None:
    monkeypatch.setattr(tarwrite, "WRITEBACK_STEP", step)
    members = _members(seed, sizes)
    ref, new = tmp_path / f"ref{seed}", tmp_path / f"new{seed}"
    for p in (ref, new):
        p.unlink(missing_ok=True)
    with open(ref, "xb") as f:
        _write(f, members, level, chunk)
    with open(new, "xb", buffering=0) as f:
        out = OutputFile(f)
        _write(out, members, level, chunk)
        assert out.tell() == f.tell() == ref.stat().st_size
    assert new.read_bytes() == ref.read_bytes()
    data = new.read_bytes() if level is None else gzip.decompress(new.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        assert [(m.name, t.extractfile(m).read()) for m in t.getmembers()] == members  # type: ignore[union-attr]


@pytest.mark.parametrize("seed", range(12))
def test_short_writes_are_continued(tmp_path: Path, monkeypatch, seed: int) -> None:
    """writev and write returning fewer bytes than asked (any count, at any buffer boundary or
    inside one): the rest is written, nothing twice."""
    rng = random.Random(seed)
    real_writev, real_write = os.writev, os.write

    def short_writev(fd, bufs):
        total = sum(len(memoryview(b).cast("B")) for b in bufs)
        want = rng.randint(1, total) if total else 0
        joined = b"".join(bytes(b) for b in bufs)[:want]
        return real_writev(fd, [joined])

    def short_write(fd, data):
        mv = memoryview(data).cast("B")
        return real_write(fd, mv[: rng.randint(1, len(mv))] if len(mv) else mv)

    monkeypatch.setattr(os, "writev", short_writev)
    monkeypatch.setattr(os, "write", short_write)
    members = _members(seed, [rng.randint(0, 300_000) for _ in range(3)])
    ref = io.BytesIO()
    _write(ref, members, 0 if seed % 2 else None, 70_000)
    path = tmp_path / "o"
    with open(path, "xb", buffering=0) as f:
        _write(OutputFile(f), members, 0 if seed % 2 else None, 70_000)
    assert path.read_bytes() == ref.getvalue()


def test_stored_member_is_valid_for_every_reader(tmp_path: Path) -> None:
    """Gathered stored blocks make one gzip member: gzip -t, tar -tzf and Python's gzip agree."""
    members = _members(3, [0, 1, 65_535, 65_536, 1 << 20, 333_333])
    path = tmp_path / "m.tar.gz"
    with open(path, "xb", buffering=0) as f:
        raw = OutputFile(f)
        w = StoredGzipWriter(raw, filename="m.tar")
        _write(w, members, None, 65_536 + 17)
        w.close()
    assert subprocess.run(["gzip", "-t", str(path)], capture_output=True).returncode == 0
    listed = subprocess.run(["tar", "-tzf", str(path)], capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.split() == [n for n, _ in members]
    plain = io.BytesIO()
    _write(plain, members, None, 1 << 20)
    assert gzip.decompress(path.read_bytes()) == plain.getvalue()


@pytest.mark.parametrize("limit", [1, 5_000, 65_540, 70_000, 200_000])
def test_a_write_error_is_raised_as_the_os_reports_it(tmp_path: Path, limit: int) -> None:
    """A file size limit (the error path of a full disk) hit by a gathered write: OSError, never a
    silent short file."""
    path = tmp_path / "o"
    members = _members(limit, [300_000])
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as got, open(path, "xb", buffering=0) as f:
            _write(OutputFile(f), members, 0, 1 << 19)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert got.value.errno == 27  # EFBIG
    assert path.stat().st_size <= limit
