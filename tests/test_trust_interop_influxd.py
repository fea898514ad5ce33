"""Interop proof with the real influxd 1.6.7 for issues 15 and 16.

* ``fixtures/union_portable`` and ``fixtures/union_legacy`` hold a full backup, a later
  ``-start/-end`` backup and a ``-since`` backup of one server, with a DELETE + compaction and a
  DELETE without compaction between them (``fixtures/README.md``). Restored by us, or converted
  by us and restored by influxd's own ``restore -portable``, a fresh influxd must serve every point
  the source server served at the last backup (``union.truth.json``) — and, from the first two sets
  alone, what it served at the second (``union_t2.truth.json``).
* ``fixtures/edge_1677`` holds shard groups whose stored start wrapped past their end; ``trim``,
  ``convert --start/--end`` and ``export`` at windows at the int64 extremes keep every point that
  influxd served inside the window.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostile_interop as gen
import influxd as harness


def chain(fixtures_dir: Path, fmt: str, sets: int, dest: Path) -> Path:
    """A copy of ``union_<fmt>`` holding only its first ``sets`` backup sets."""
    src = fixtures_dir / f"union_{fmt}"
    dest.mkdir()
    if fmt == "portable":
        stems = sorted(p.name[:16] for p in src.glob("*.manifest"))[:sets]
        keep = lambda n: n[:16] in stems  # noqa: E731
    else:
        keep = lambda n: int(n.rsplit(".", 1)[1]) < sets  # noqa: E731
    for p in src.iterdir():
        if keep(p.name):
            shutil.copy2(p, dest / p.name)
    return dest


CHAINS = [("portable", 2, "union_t2"), ("portable", 3, "union"), ("legacy", 2, "union_t2"), ("legacy", 3, "union")]


@pytest.mark.interop
@pytest.mark.parametrize("fmt,sets,truth_name", CHAINS, ids=[f"{f}-{n}sets" for f, n, _ in CHAINS])
def test_union_restored_serves_every_point(
    fmt, sets, truth_name, tmp_path, fixtures_dir, influxd_factory, truth, cli
) -> None:
    src = chain(fixtures_dir, fmt, sets, tmp_path / "src")
    root = tmp_path / "root"
    code, _out, err = cli(
        "restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), cwd=tmp_path
    )
    assert code == 0, err
    server = influxd_factory(root)
    assert harness.compare_truth(truth(truth_name), server.dump(), sections={"points"}) == []


@pytest.mark.interop
@pytest.mark.parametrize("fmt,sets,truth_name", CHAINS, ids=[f"{f}-{n}sets" for f, n, _ in CHAINS])
def test_union_converted_serves_every_point(
    fmt, sets, truth_name, tmp_path, fixtures_dir, influxd_factory, truth, cli
) -> None:
    src = chain(fixtures_dir, fmt, sets, tmp_path / "src")
    out = tmp_path / "out"
    code, _out, err = cli("convert", str(src), str(out), "--to", "portable", cwd=tmp_path)
    assert code == 0, err
    server = influxd_factory()
    proc = server.restore_portable(out)
    assert proc.returncode == 0, proc.stderr
    assert harness.compare_when_settled(server, truth(truth_name), sections={"points"}) == []


def restrict(t: dict, lo: int, hi: int) -> dict:
    """The TRUTH of a server holding only the points with lo <= t <= hi."""
    out = copy.deepcopy(t)
    for db in out["databases"].values():
        for measurements in db["data"].values():
            for name in list(measurements):
                m = measurements[name]
                for s in m["series"]:
                    s["points"] = [p for p in s["points"] if lo <= p[0] <= hi]
                m["series"] = [s for s in m["series"] if s["points"]]
                if not m["series"]:
                    del measurements[name]
    return harness.without_dead_fields(out)


WINDOWS = ["lowest-to-epoch", "first-week", "influxd-min-to-epoch", "all-int64"]


def _window(t: dict, label: str) -> tuple[int, int]:
    return next((lo, hi) for name, lo, hi in gen.edge_windows(t) if name == label)


@pytest.mark.interop
@pytest.mark.parametrize("label", WINDOWS)
def test_edge_trim_restored_serves_the_window(label, tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    t = truth("edge_1677")
    lo, hi = _window(t, label)
    out, root = tmp_path / "trimmed", tmp_path / "root"
    code, _o, err = cli(
        "trim", str(fixtures_dir / "edge_1677"), str(out), "--start", str(lo), "--end", str(hi), cwd=tmp_path
    )
    assert code == 0, err
    code, _o, err = cli(
        "restore", str(out), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), cwd=tmp_path
    )
    assert code == 0, err
    server = influxd_factory(root)
    assert harness.compare_truth(restrict(t, lo, hi), server.dump(), sections={"points"}) == []


@pytest.mark.interop
@pytest.mark.parametrize("label", WINDOWS[:2])
def test_edge_convert_window_restored_by_influxd(label, tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    t = truth("edge_1677")
    lo, hi = _window(t, label)
    out = tmp_path / "out"
    code, _o, err = cli(
        "convert", str(fixtures_dir / "edge_1677"), str(out), "--start", str(lo), "--end", str(hi), cwd=tmp_path
    )
    assert code == 0, err
    server = influxd_factory()
    proc = server.restore_portable(out)
    assert proc.returncode == 0, proc.stderr
    assert harness.compare_when_settled(server, restrict(t, lo, hi), sections={"points"}) == []


@pytest.mark.interop
def test_edge_export_imported_by_influx(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    t = truth("edge_1677")
    lo, hi = _window(t, "lowest-to-epoch")
    lp = tmp_path / "edge.lp"
    code, _o, err = cli(
        "export", str(fixtures_dir / "edge_1677"), "--out", str(lp), "--start", str(lo), "--end", str(hi), cwd=tmp_path
    )
    assert code == 0, err
    server = influxd_factory()
    proc = subprocess.run(
        [
            "influx",
            "-host",
            "127.0.0.1",
            "-port",
            str(server.http_port),
            "-import",
            "-path",
            str(lp),
            "-precision",
            "ns",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert harness.compare_truth(restrict(t, lo, hi), server.dump(), sections={"points"}) == []
