"""Red team: `restore --index tsi1 --merge` (archive/ops/restore/tsi.py) as a real process: killed
with SIGKILL at seeded random moments (not only at the steps the unit tests hook), and two merges
into one tsi1 target at once. The target is either as before or complete (equal to a merge that
was never interrupted), once the next run's recovery has run; the series files stay valid."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hostile_outputs import cli_argv
from test_restore import tree_state
from test_tsi1_restore import _verify_seriesfiles

from influx_archive.archive.ops.restore import recover_interrupted

pytestmark = pytest.mark.slow


def _target(cli, fixtures_dir: Path, root: Path) -> Path:
    r = cli("restore", str(fixtures_dir / "legacy"), "--metadir", str(root / "meta"), "--datadir",
            str(root / "data"), "--db", "db1", "--index", "tsi1")
    assert r.code == 0, r.err
    return root


def _merge_argv(fixtures_dir: Path, root: Path) -> list[str]:
    return cli_argv("restore", str(fixtures_dir / "legacy"), "--metadir", str(root / "meta"), "--datadir",
                    str(root / "data"), "--db", "db2", "--newdb", "db1", "--merge", "--index", "tsi1")


def _state(root: Path) -> dict:
    return {p: v for p, v in tree_state(root).items() if not p.endswith(".influx-archive.lock")}


def test_merge_killed_at_random_moments_is_before_or_complete(tmp_path, fixtures_dir, cli):
    ref = _target(cli, fixtures_dir, tmp_path / "ref")
    before = _state(ref)
    t = time.monotonic()
    assert subprocess.run(_merge_argv(fixtures_dir, ref), capture_output=True).returncode == 0
    span = time.monotonic() - t
    complete = _state(ref)
    assert complete != before
    rng = random.Random(17_2026)
    killed = tries = 0
    hi = span  # a run that ends before its kill is in no step: later kills come sooner
    while killed < 3 and tries < 12:
        delay = rng.uniform(0.3, 1.0) * hi  # from late in start-up to the end of the slowest run seen
        root = _target(cli, fixtures_dir, tmp_path / f"r{tries}")
        tries += 1
        assert _state(root) == before  # the targets are built alike
        p = subprocess.Popen(_merge_argv(fixtures_dir, root), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        code = p.wait(60)
        if code == -signal.SIGKILL:
            killed += 1
        else:
            assert code == 0, p.stderr.read() if p.stderr else code
            hi = delay
        # what the next run does first
        notes = recover_interrupted(metadir=root / "meta", datadir=root / "data")
        state = _state(root)
        assert not [n for n in state if Path(n).name.startswith(".influx-archive-restore-")], sorted(state)[:5]
        diff = (sorted(set(state) ^ set(before))[:5], sorted(set(state) ^ set(complete))[:5])
        assert state in (before, complete), (delay, code, notes, diff)
        if state == before:
            assert subprocess.run(_merge_argv(fixtures_dir, root), capture_output=True).returncode == 0
            assert _state(root) == complete
        _verify_seriesfiles(root / "data")
    assert killed >= 3, (killed, tries)


def test_two_merges_into_one_tsi1_target_at_once(tmp_path, fixtures_dir, cli):
    """One merge lands; the other is refused (busy, exit 5, or the database's shards exist, exit
    3) with one line, and the target equals one uninterrupted merge — or, on a loaded machine
    where the second took the lock only after the first one ended, both land and the target
    equals two merges run one after the other."""
    ref = _target(cli, fixtures_dir, tmp_path / "ref")
    assert subprocess.run(_merge_argv(fixtures_dir, ref), capture_output=True).returncode == 0
    complete = _state(ref)
    assert subprocess.run(_merge_argv(fixtures_dir, ref), capture_output=True).returncode == 0
    twice = _state(ref)
    for i in range(2):
        root = _target(cli, fixtures_dir, tmp_path / f"r{i}")
        procs = [subprocess.Popen(_merge_argv(fixtures_dir, root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [(p.wait(120), *p.communicate()) for p in procs]
        codes = sorted(o[0] for o in outs)
        assert codes[0] == 0 and codes[1] in (0, 3, 5), outs
        for code, _out, err in outs:
            assert "Traceback" not in err
            if code:
                assert len(err.strip().splitlines()) == 1, err
        assert _state(root) == (twice if codes == [0, 0] else complete)
    _verify_seriesfiles(root / "data")
