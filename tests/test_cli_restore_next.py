"""``restore`` tells the operator what to do next, on stderr: the influxdb.conf lines, --owner when
root wrote files influxd's user must own, and the tsi1 note only when the target uses tsi1."""

from __future__ import annotations

import os
import pwd

import pytest

from influx_archive.cli.nextstep import next_steps, uses_tsi1


def _has_service_user() -> bool:
    try:
        pwd.getpwnam("influxdb")
        return True
    except KeyError:
        return False


@pytest.mark.parametrize("with_wal", [False, True])
@pytest.mark.parametrize("tsi1", [None, "series", "index"])
def test_next_steps_on_stderr(cli, fixtures_dir, tmp_path, with_wal, tsi1) -> None:
    root = tmp_path / "t"
    data = root / "data"
    if tsi1 == "series":
        (data / "other" / "_series").mkdir(parents=True)
    elif tsi1 == "index":
        (data / "other" / "autogen" / "99" / "index").mkdir(parents=True)
    args = ["restore", fixtures_dir / "live", "--metadir", root / "meta", "--datadir", data]
    if with_wal:
        args += ["--waldir", root / "wal"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.splitlines()
    assert all(ln.startswith("influx-archive: ") for ln in err), err
    assert f'influx-archive:   [meta] dir = "{root / "meta"}"' in err
    assert f'influx-archive:   [data] dir = "{data}"' in err
    assert any("wal-dir" in ln for ln in err) == with_wal
    tsi_notes = [ln for ln in err if "uses tsi1" in ln]
    if tsi1 == "index":  # --index auto follows the target's shards: the index is built, no note
        assert not tsi_notes
        assert all((d / "index").is_dir() for d in (data / "db1" / "autogen").iterdir()), proc.stdout
    elif tsi1 is None:
        assert not tsi_notes
    else:  # a series file but no shard index: auto stays inmem, and the note says how to build it
        assert len(tsi_notes) == 1 and f"build-tsi --datadir {data}" in tsi_notes[0], err
    assert "build-tsi" not in proc.stdout and "next:" not in proc.stdout


@pytest.mark.parametrize("owner", [None, "influxdb:influxdb"])
def test_owner_note_only_as_root_without_owner(cli, fixtures_dir, tmp_path, owner) -> None:
    """As root, without --owner, on a system with influxd's user: one note naming it. Otherwise none
    (a run as another user writes files it owns; there is nothing to hand over)."""
    root = tmp_path / "t"
    args = ["restore", fixtures_dir / "legacy", "--metadir", root / "meta", "--datadir", root / "data"]
    if owner and (os.geteuid() != 0 or not _has_service_user()):
        owner = f"{os.geteuid()}:{os.getegid()}"
    if owner:
        args += ["--owner", owner]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if "--owner" in ln]
    if owner is None and os.geteuid() == 0 and _has_service_user():
        assert len(notes) == 1 and "--owner influxdb" in notes[0] and "root" in notes[0]
    else:
        assert notes == []


def test_next_steps_escape_names(tmp_path) -> None:
    weird = tmp_path / 'a"b\nc'
    lines = next_steps(weird / "meta", weird / "data", None, None)
    assert all("\n" not in ln for ln in lines)
    assert any(ln.endswith('a\\"b\\nc/meta"') and "[meta] dir" in ln for ln in lines), lines


def test_uses_tsi1_reads_only_the_tree(tmp_path) -> None:
    assert uses_tsi1(tmp_path / "missing") is None
    (tmp_path / "db" / "rp" / "1").mkdir(parents=True)
    assert uses_tsi1(tmp_path) is None
    (tmp_path / "db" / "rp" / "1" / "index").mkdir()
    assert uses_tsi1(tmp_path) == tmp_path / "db" / "rp" / "1" / "index"


def test_no_tsi1_note_when_the_restore_indexed(tmp_path) -> None:
    (tmp_path / "data" / "db" / "_series").mkdir(parents=True)
    plain = next_steps(tmp_path / "meta", tmp_path / "data", None, "influxdb")
    indexed = next_steps(tmp_path / "meta", tmp_path / "data", None, "influxdb", indexed=True)
    assert any("uses tsi1" in ln for ln in plain) and not any("uses tsi1" in ln for ln in indexed)
