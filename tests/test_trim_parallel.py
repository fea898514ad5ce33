"""Shards converted in forked processes (several shards to rewrite: a trim across databases,
tombstones to apply) write exactly what one thread writes: the same shards, the same tar members
byte for byte, the same findings. Windows vary over every shard edge of the fixture backup."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from influx_archive.archive.ops import convert as convert_mod
from influx_archive.archive.ops.convert import execute_convert, plan_convert
from influx_archive.archive.sources import open_source


def _members(dest) -> dict[str, bytes]:
    """Every tar member of a portable backup (file name without its timestamp / member -> bytes)."""
    out: dict[str, bytes] = {}
    for p in sorted(dest.iterdir()):
        if not p.name.endswith(".tar.gz"):
            continue
        shard = p.name.split(".", 1)[1]
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(p.read_bytes()))) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m)
                assert f is not None
                out[f"{shard}:{m.name}"] = f.read()
    return out


def _run(src_dir, dest, lo, hi, workers: int) -> tuple[dict[str, bytes], list, list]:
    with open_source(src_dir) as src:
        plan = plan_convert(src, dest, to="portable", start=lo, end=hi)
        result = execute_convert(plan, workers=workers)
        return _members(dest), result.dropped, [f.to_dict() for f in result.findings]


def _windows(fixtures_dir) -> list[tuple[int | None, int | None]]:
    """Windows cutting shards at their edges and inside, several shards at once."""
    with open_source(fixtures_dir / "portable") as src:
        groups = sorted({(s.group_start, s.group_end) for s in src.shards})
    out: list[tuple[int | None, int | None]] = [(None, None)]
    for (a, b), (c, d) in zip(groups, groups[3:]):
        out.append((a + (b - a) // 3, c + (d - c) // 2))
        out.append((a, d - 1))
        out.append((b - 1, c))
    return out


@pytest.mark.slow
def test_forked_shards_write_what_one_thread_writes(tmp_path, fixtures_dir, monkeypatch) -> None:
    forked = []
    real = convert_mod.convert_shards_in_processes

    def spy(*args, **kwargs):
        forked.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(convert_mod, "convert_shards_in_processes", spy)
    windows = _windows(fixtures_dir)
    assert len(windows) > 5
    used = 0
    for k, (lo, hi) in enumerate(windows):
        one = _run(fixtures_dir / "portable", tmp_path / f"one{k}", lo, hi, workers=1)
        before = len(forked)
        two = _run(fixtures_dir / "portable", tmp_path / f"two{k}", lo, hi, workers=2)
        used += len(forked) > before
        assert one == two, (lo, hi)
        assert one[0], (lo, hi)  # something of the backup is in every window
    if convert_mod.process_pool_available():
        assert used >= len(windows) // 2, (used, len(windows))  # most windows leave several shards to rewrite
