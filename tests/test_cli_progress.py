"""Progress: every long phase of every verb reports a total and reaches it, under the verb's name."""

from __future__ import annotations

import shutil
from typing import ClassVar

import pytest

from influx_archive.cli import app as cli_app
from influx_archive.cli.progress import ProgressBars


class _Recorder(ProgressBars):
    runs: ClassVar[list[_Recorder]] = []

    def __init__(self, *, enabled: bool, verb: str | None = None) -> None:
        super().__init__(enabled=False, verb=verb)
        self.events: list = []
        _Recorder.runs.append(self)

    def __call__(self, ev) -> None:
        self.events.append(ev)


def _cases(tmp):
    return {
        "convert": ["convert", "SRC", f"{tmp}/c"],
        "trim": ["trim", "SRC", f"{tmp}/t", "--start", "2026-11-01T00:00:00Z", "--end", "2026-11-30T00:00:00Z"],
        "export": ["export", "SRC", "--out", f"{tmp}/e.lp"],
        "inspect": ["inspect", "SRC", "--points"],
        "verify": ["verify", "SRC", "--deep"],
        "pack": ["pack", "SRC", f"{tmp}/p.tar.zst"],
        "restore": ["restore", "SRC", "--metadir", f"{tmp}/m", "--datadir", f"{tmp}/d"],
    }


@pytest.mark.parametrize("source", ["legacy", "portable", "live"])
@pytest.mark.parametrize("verb", sorted(_cases("x")))
def test_every_phase_has_a_total_it_reaches(cli, fixtures_dir, tmp_path, monkeypatch, source, verb) -> None:
    monkeypatch.setattr(cli_app, "ProgressBars", _Recorder)
    _Recorder.runs.clear()
    args = [str(fixtures_dir / source) if a == "SRC" else a for a in _cases(tmp_path)[verb]]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    events = [e for r in _Recorder.runs for e in r.events]
    starts = [e for e in events if e.kind == "start"]
    assert starts, "no progress reported"
    for s in starts:
        assert isinstance(s.total, int) and s.total > 0, s
        done = sum(e.advance for e in events if e.kind == "advance" and e.label == s.label)
        assert done == s.total, (s.label, done, s.total)
    labels = {r.label(e.label) for r in _Recorder.runs for e in r.events}
    assert any(lbl == verb or lbl.startswith(f"{verb}:") for lbl in labels), labels


def test_unpack_bar_moves_to_the_listed_total(cli, fixtures_dir, tmp_path, monkeypatch) -> None:
    assert cli("pack", fixtures_dir / "live", tmp_path / "p.tar.zst").returncode == 0
    monkeypatch.setattr(cli_app, "ProgressBars", _Recorder)
    _Recorder.runs.clear()
    assert cli("unpack", tmp_path / "p.tar.zst", tmp_path / "u").returncode == 0
    events = [e for r in _Recorder.runs for e in r.events]
    total = sum(p.stat().st_size for p in (tmp_path / "u").rglob("*") if p.is_file())
    assert [e.total for e in events if e.kind == "start"] == [total]
    assert sum(e.advance for e in events if e.kind == "advance") == total


@pytest.mark.parametrize("verb,want", [("backup", "backup"), ("trim", "trim"), ("convert", "convert"),
                                       ("pack", "pack: backing up"), (None, "convert")])
def test_library_convert_phase_is_named_after_the_verb(verb, want) -> None:
    assert ProgressBars(enabled=False, verb=verb).label("convert") == want
    assert ProgressBars(enabled=False, verb=verb).label("export") == "export"


def test_backup_of_a_root_is_labelled_backup(cli, fixtures_dir, tmp_path, monkeypatch) -> None:
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root)
    monkeypatch.setattr(cli_app, "ProgressBars", _Recorder)
    _Recorder.runs.clear()
    proc = cli("backup", root, tmp_path / "b")
    assert proc.returncode == 0, proc.stderr
    labels = {r.label(e.label) for r in _Recorder.runs for e in r.events}
    assert labels == {"backup"}


@pytest.mark.parametrize("waldir", [False, True])
def test_wal_replay_of_a_wal_only_root_has_a_total(cli, fixtures_dir, tmp_path, monkeypatch, waldir) -> None:
    """A root whose points are all in the WAL: restore (replaying it, or copying it to --waldir)
    reports the segments' bytes and reaches them (the bar used to stay at 0 B)."""
    root = tmp_path / "live"
    shutil.copytree(fixtures_dir / "live", root)
    for p in list(root.glob("data/*/*/*/*.tsm")) + list(root.glob("data/*/*/*/*.tombstone")):
        p.unlink()
    wal_bytes = sum(p.stat().st_size for p in root.glob("wal/*/*/*/*.wal"))
    monkeypatch.setattr(cli_app, "ProgressBars", _Recorder)
    _Recorder.runs.clear()
    args = ["restore", root, "--metadir", tmp_path / "m", "--datadir", tmp_path / "d"]
    if waldir:
        args += ["--waldir", tmp_path / "w"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    events = [e for r in _Recorder.runs for e in r.events]
    assert [e.total for e in events if e.kind == "start"] == [wal_bytes]
    assert sum(e.advance for e in events if e.kind == "advance") == wal_bytes > 0
