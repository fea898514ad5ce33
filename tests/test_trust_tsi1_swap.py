"""A symbolic link swapped in for a component of a tsi1 staging tree during the run is never
written through (README: "Never writes through a symbolic link below the data, WAL or meta
directory, also if one is swapped in during the run").

``restore --index tsi1`` stages each database's series file (``series-N``) and each staged
shard's ``index/`` in its staging directory; ``build-tsi`` stages the series file in
``<db>/.influx-archive-series-new-PID/s`` and each shard's index in ``<shard>/.index``. The
generator below takes every directory of those trees — the staging directory, the series stage,
a series partition, the staged shard, the index stage, an index partition — and, at the moment
the run creates the first entry inside it, renames it away and puts a link to an outside
directory (holding a root-owned victim file) in its place: for good (``kept``), or only for that
one step (``transient``). Deterministic: ``os.mkdir`` and ``os.open`` are wrapped in process, the
swap happens right before the call that creates the entry. Verbs: restore, restore ``--owner``,
build-tsi (fresh, ``--owner``, ``--force`` over the indexes and series file of one retention
policy: the series file is copied and extended, the old index swapped out).

Each case: the outside directory is unchanged (contents, modes, owners); the run either ends with
exit 3 and one line naming the swapped path, or completes with the same tree as a run without a
swap; after the swap is undone, a second run completes and gives that same tree.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from hostile_restore import snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
LEGACY = FIXTURES / "legacy"
OWNER = "nobody:nogroup"

# component -> pattern of its absolute path (its first entry created triggers the swap, or the
# first one matching what follows a ":" -- the staging directory and the staged shard are held by
# descriptors from the start: swapped when the tsi1 step begins writing in them)
RESTORE_PARTS = {
    "stage dir": r".*/\.influx-archive-restore-\d+-0:series-0",
    "series stage": r".*/\.influx-archive-restore-\d+-0/series-0",
    "series partition": r".*/\.influx-archive-restore-\d+-0/series-0/03",
    "staged shard": r".*/\.influx-archive-restore-\d+-0/0:index",
    "index stage": r".*/\.influx-archive-restore-\d+-0/0/index",
    "index partition": r".*/\.influx-archive-restore-\d+-0/0/index/5",
}
BUILD_PARTS = {
    "series stage dir": r".*/data/db1/\.influx-archive-series-new-\d+",
    "series stage": r".*/data/db1/\.influx-archive-series-new-\d+/s",
    "series partition": r".*/data/db1/\.influx-archive-series-new-\d+/s/03",
    "index stage": r".*/data/db1/hourly/5/\.index",
    "index partition": r".*/data/db1/hourly/5/\.index/5",
}
CASES = (
    [(verb, part, mode) for verb in ("restore", "restore-owner") for part in RESTORE_PARTS
     for mode in ("kept", "transient")]
    + [(verb, part, mode) for verb in ("build-tsi", "build-tsi-owner", "build-tsi-force") for part in BUILD_PARTS
       for mode in ("kept", "transient")]
)


def _parent_of(path, dir_fd) -> str | None:
    """The real directory an entry ``path`` (relative to ``dir_fd``) is created in."""
    try:
        base = os.readlink(f"/proc/self/fd/{dir_fd}") if dir_fd is not None else os.getcwd()
    except OSError:
        return None
    return os.path.realpath(os.path.dirname(os.path.join(base, os.fsdecode(path))))


class Swapper:
    """Wraps os.mkdir and os.open (creating): the first entry created in a directory matching
    ``pattern`` is preceded by the swap of that directory for a link to ``evil``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pattern: str, evil: Path, transient: bool) -> None:
        where, _, child = pattern.partition(":")
        self.pattern = re.compile(where)
        self.child = re.compile(child or ".*")
        self.evil = evil
        self.transient = transient
        self.swapped: str | None = None
        real_mkdir, real_open = os.mkdir, os.open

        def around(path, dir_fd, call):
            p = None
            if self.swapped is None:
                parent = _parent_of(path, dir_fd)
                name = os.path.basename(os.fsdecode(path))
                if parent is not None and self.pattern.fullmatch(parent) and self.child.fullmatch(name):
                    p = self.swapped = parent
                    os.rename(p, p + ".real")
                    os.symlink(evil, p)
            try:
                return call()
            finally:
                if p is not None and transient:
                    os.unlink(p)
                    os.rename(p + ".real", p)

        def mkdir(path, mode=0o777, *, dir_fd=None):
            return around(path, dir_fd, lambda: real_mkdir(path, mode, dir_fd=dir_fd))

        def open_(path, flags, mode=0o777, *, dir_fd=None):
            if not flags & os.O_CREAT:
                return real_open(path, flags, mode, dir_fd=dir_fd)
            return around(path, dir_fd, lambda: real_open(path, flags, mode, dir_fd=dir_fd))

        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "open", open_)

    def undo(self) -> None:
        """What the swap left: the link removed, the real directory put back where it still is."""
        p = self.swapped
        if p is None or self.transient:
            return
        if os.path.islink(p):
            os.unlink(p)
        if os.path.isdir(p + ".real") and not os.path.lexists(p):
            os.rename(p + ".real", p)
        elif os.path.lexists(p + ".real"):
            shutil.rmtree(p + ".real")


def _args(verb: str, root: Path) -> list[str]:
    data = str(root / "data")
    if verb.startswith("restore"):
        args = ["restore", str(LEGACY), "--metadir", str(root / "meta"), "--datadir", data, "--index", "tsi1"]
    else:
        args = ["build-tsi", "--datadir", data] + (["--force"] if verb == "build-tsi-force" else [])
    return args + (["--owner", OWNER] if verb.endswith("-owner") else [])


def _prepare(cli, verb: str, root: Path) -> None:
    if verb.startswith("build-tsi"):
        r = cli("-q", "restore", str(LEGACY), "--metadir", str(root / "meta"), "--datadir", str(root / "data"),
                "--index", "inmem")
        assert r.code == 0, r.err
        if verb == "build-tsi-force":  # one retention policy first: the run extends its series file
            r = cli("-q", "build-tsi", "--datadir", str(root / "data"), "--db", "db1", "--rp", "hourly")
            assert r.code == 0, r.err


def _result(root: Path) -> dict[str, tuple]:
    """The target as a run leaves it (the lock files aside)."""
    snap = {}
    for sub in ("data", "meta"):
        for k, v in snapshot(root / sub).items():
            if not k.endswith(".influx-archive.lock"):
                snap[f"{sub}/{k}"] = v
    return snap


_REFERENCE: dict[str, dict[str, tuple]] = {}


def _reference(cli, verb: str, tmp_path: Path) -> dict[str, tuple]:
    """The verb's result without a swap (once per verb)."""
    if verb not in _REFERENCE:
        root = (tmp_path / "ref").resolve()
        root.mkdir()
        _prepare(cli, verb, root)
        r = cli("-q", *_args(verb, root))
        assert r.code == 0, r.err
        _REFERENCE[verb] = _result(root)
    return _REFERENCE[verb]


@pytest.mark.skipif(os.geteuid() != 0, reason="--owner needs root; the swap cases run as root in CI")
@pytest.mark.parametrize(("verb", "part", "mode"), CASES)
def test_a_link_swapped_for_a_staging_component_is_never_written_through(
    verb, part, mode, tmp_path, monkeypatch, cli
) -> None:
    want = _reference(cli, verb, tmp_path)
    root = (tmp_path / "t").resolve()
    root.mkdir()
    _prepare(cli, verb, root)
    evil = tmp_path / "outside"
    evil.mkdir()
    (evil / "victim").write_text("secret\n")
    os.chmod(evil / "victim", 0o600)
    before = snapshot(evil)
    pattern = (RESTORE_PARTS if verb.startswith("restore") else BUILD_PARTS)[part]
    with monkeypatch.context() as m:
        swapper = Swapper(m, pattern, evil, transient=mode == "transient")
        r = cli("-q", *_args(verb, root))
    assert swapper.swapped is not None, "the component was never created: the case tests nothing"
    assert snapshot(evil) == before, f"written outside the target through the link: {r}"
    assert "Traceback" not in r.err and "unexpected" not in r.err, r.err
    if r.code != 0:
        lines = r.err.strip().splitlines()
        assert r.code == 3 and len(lines) == 1, r
        assert swapper.swapped in lines[0] and "swapped in during the run" in lines[0], r
    swapper.undo()
    if r.code != 0:  # recoverable: the same run again, the swap gone
        r2 = cli("-q", *_args(verb, root))
        assert r2.code == 0, r2.err
    for d in (root, root / "data"):
        for n in os.listdir(d):
            if n.endswith(".real"):  # what the swapper renamed away of the staging directory itself
                shutil.rmtree(d / n)
    got = _result(root)
    diff = [(k, got.get(k), want.get(k)) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
    assert not diff, diff[:6]
