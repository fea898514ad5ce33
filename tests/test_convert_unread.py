"""convert/trim of a single portable backup never inflates the shards its filters and time window
leave out (`unread_shards`), and writes exactly what reading every shard writes. Windows and
filters are drawn from the fixture's own shard groups: inside one group, across a boundary, on
an edge, outside everything; with and without --db/--rp/--shard."""

from __future__ import annotations

import gzip
import random
import shutil
import tarfile
from pathlib import Path

import pytest

from influx_archive.archive.errors import ArchiveError
from influx_archive.archive.ops.convert import execute_convert, plan_convert, unread_shards
from influx_archive.archive.ops.select import Selection
from influx_archive.archive.sources import open_source
from influx_archive.meta.model import shard_group_range


def _written(dest: Path) -> dict:
    """The output with its run stamp taken out: per file, the tar members (name, bytes) or bytes."""
    out = {}
    for p in sorted(dest.iterdir()):
        name = p.name.split(".", 1)[1] if p.name[:1].isdigit() else p.name
        if p.name.endswith(".tar.gz"):
            with tarfile.open(fileobj=gzip.open(p)) as tf:
                out[name] = [(m.name, tf.extractfile(m).read()) for m in tf]  # type: ignore[union-attr]
        elif p.name.endswith(".manifest"):
            out[name] = None  # names the stamp; its entries follow from the files
        else:
            out[name] = p.read_bytes()
    return out


def _convert(src_dir: Path, dest: Path, sel: Selection, lo, hi, unread: bool):
    with open_source(src_dir, unread=unread_shards(sel, lo, hi) if unread else None) as src:
        plan = plan_convert(src, dest, selection=sel, start=lo, end=hi)
        execute_convert(plan)
        return {s.key for s in src.shards if s.files}  # the shards whose files were listed


def _cases(fixtures_dir: Path, n: int):
    with open_source(fixtures_dir / "portable") as src:
        refs = [r for r in src.meta.iter_shards() if not r.group.deleted]
    rng = random.Random(7)
    for _ in range(n):
        r = rng.choice(refs)
        g0, g1 = shard_group_range(r.group)
        span = g1 - g0
        lo, hi = rng.choice([
            (g0 + span // 4, g0 + span // 2),  # inside one group
            (g1 - span // 3, g1 + span // 3),  # across a boundary
            (g1 - 1, g1),  # the last ns of a group and the first of the next
            (None, g0),
            (g1, None),
            (0, 1),  # outside everything
        ])
        sel = rng.choice([Selection(), Selection(database=r.db.name), Selection(database=r.db.name,
                          retention=r.rp.name), Selection(shard=r.shard.id)])
        yield lo, hi, sel


@pytest.mark.parametrize("case", range(16))
def test_unread_shards_change_nothing_written(case, tmp_path, fixtures_dir) -> None:
    lo, hi, sel = list(_cases(fixtures_dir, 16))[case]
    outs = []
    for unread in (False, True):
        dest = tmp_path / f"out{unread}"
        try:
            keys = _convert(fixtures_dir / "portable", dest, sel, lo, hi, unread)
        except ArchiveError as exc:  # nothing left to write: the same refusal both ways
            outs.append(("error", exc.code, exc.exit_code))
            continue
        outs.append(_written(dest))
        if unread:
            with open_source(fixtures_dir / "portable") as src:
                assert keys <= {s.key for s in src.shards if s.files}
    assert outs[0] == outs[1], (lo, hi, sel)


def test_left_out_shards_are_not_inflated(tmp_path, fixtures_dir) -> None:
    """A damaged .tar.gz of a database the run leaves out is never read; read, it is refused."""
    src_dir = tmp_path / "src"
    shutil.copytree(fixtures_dir / "portable", src_dir)
    with open_source(src_dir) as src:
        live = {r.shard.id for r in src.meta.iter_shards() if not r.group.deleted}
        other = next(s for s in src.shards if s.database == "db2" and s.files and s.id in live)
        container = Path(other.files[0].container)
    raw = bytearray(container.read_bytes())
    raw[len(raw) // 2:] = b"\xff" * (len(raw) - len(raw) // 2)
    container.write_bytes(bytes(raw))
    sel = Selection(database="db1")
    keys = _convert(src_dir, tmp_path / "a", sel, None, None, unread=True)
    assert other.key not in keys
    with pytest.raises(ArchiveError):
        _convert(src_dir, tmp_path / "b", sel, None, None, unread=False)
