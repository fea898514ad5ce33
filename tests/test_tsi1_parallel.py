"""build-tsi writes shard indexes on a few threads: the tree it leaves is byte for byte (and mode for
mode) the one the single-threaded run leaves, whatever the thread count; a shard whose install
fails stops the run with that error while every other shard holds either its complete index or
none, and no staging directory is left anywhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_trust_tsi1 import tree_hash

from influx_archive.archive.errors import TargetIOError
from influx_archive.archive.ops import buildtsi
from influx_archive.tsm.tsi1 import format as fmt
from influx_archive.tsm.tsi1 import index as ix

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@pytest.fixture(scope="module")
def restored(tmp_path_factory) -> Path:
    from conftest import run_cli

    root = tmp_path_factory.mktemp("par") / "root"
    r = run_cli("restore", str(FIXTURES / "live"), "--metadir", str(root / "meta"),
                "--datadir", str(root / "data"), "--waldir", str(root / "wal"))
    assert r.code == 0, r.err
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _shards(data: Path) -> list[Path]:
    return sorted(p for p in data.glob("*/*/*") if p.name.isdigit() and p.parent.name != fmt.SERIES_FILE_DIR)


def test_parallel_output_equals_the_sequential_one(restored, tmp_path) -> None:
    one = _copy(restored, tmp_path / "one")
    buildtsi.build_tsi(one / "data", one / "wal", jobs=1)
    want = tree_hash(one / "data")
    assert any(k.endswith(".tsl") for k in want)
    for jobs in (2, 3, 8, 32):
        t = _copy(restored, tmp_path / f"j{jobs}")
        res = buildtsi.build_tsi(t / "data", t / "wal", jobs=jobs)
        assert len(res.built) == len(_shards(t / "data"))
        assert tree_hash(t / "data") == want, jobs


@pytest.mark.parametrize("jobs", [1, 4])
def test_a_failing_install_leaves_every_shard_whole_or_untouched(restored, tmp_path, monkeypatch, jobs) -> None:
    shards = _shards(restored / "data")
    assert len(shards) > 3
    real = buildtsi.install_index
    for victim in (0, len(shards) // 2, len(shards) - 1):
        t = _copy(restored, tmp_path / f"v{victim}-{jobs}")
        bad = t / "data" / shards[victim].relative_to(restored / "data")

        def install(shard_dir, parts, owner, replace, _bad=str(bad)):
            if os.path.realpath(shard_dir) == os.path.realpath(_bad):  # named via /proc/self/fd
                raise TargetIOError("cannot write target index: injected", path=shard_dir)
            return real(shard_dir, parts, owner, replace)

        monkeypatch.setattr(buildtsi, "install_index", install)
        with pytest.raises(TargetIOError, match="injected"):
            buildtsi.build_tsi(t / "data", t / "wal", jobs=jobs)
        assert not (bad / fmt.INDEX_DIR).exists()
        for sh in _shards(t / "data"):
            names = os.listdir(sh)
            assert not [n for n in names if n.startswith(".")], (sh, names)
            if (sh / fmt.INDEX_DIR).exists():  # complete: every partition opens with its log
                idx = ix.ShardIndex(sh / fmt.INDEX_DIR)
                assert len(idx.partitions) == fmt.INDEX_PARTITION_N
        monkeypatch.setattr(buildtsi, "install_index", real)
        # the next run finishes the job: same tree as a clean run
        buildtsi.build_tsi(t / "data", t / "wal", jobs=jobs)
        clean = _copy(restored, tmp_path / f"c{victim}-{jobs}")
        buildtsi.build_tsi(clean / "data", clean / "wal", jobs=1)
        assert tree_hash(t / "data") == tree_hash(clean / "data")
