"""CLI contract on hostile and broken input (issue 8), table-driven over (verb, case).

Cases come from ``tests/hostile_corpus.py`` (real fixtures, copied then damaged). For every case and
every verb in :data:`VERBS` that the installed CLI has, the contract is:

* the exit code is one the case allows (1 damaged input, 2 usage, 0 where the damage must be
  tolerated, e.g. a torn WAL tail);
* stderr is at most ONE line, never a traceback; a failure names the damaged file there (verbs that
  report damage as findings, like ``inspect``, may name it in an ``error:`` finding on stdout instead);
* the source tree is byte-identical afterwards, nothing is written outside the verb's targets, and
  on failure the targets are exactly as before (absent).

All pairs run in-process through ``cli.main.main`` (fast); a representative subset also runs as a
real subprocess of the installed ``influx-archive`` console script.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_corpus import Case, build_corpus

from influx_archive.cli.app import app
from influx_archive.cli.verbs import load_all

load_all()  # registers every verb (a run imports only its own verb's module)


@dataclass(frozen=True)
class Verb:
    """One CLI verb under contract: ``argv(src, targets_dir)``; ``targets`` are the names under
    ``targets_dir`` it may create; ``findings_on_stdout`` for report verbs (damage listed as findings)."""

    name: str
    command: str
    argv: Callable[[Path, Path], list[str]]
    targets: tuple[str, ...] = ()
    findings_on_stdout: bool = False


# One line per verb; a verb is exercised as soon as the CLI has its command.
VERBS: list[Verb] = [
    Verb("inspect", "inspect", lambda s, t: ["inspect", str(s)], findings_on_stdout=True),
    Verb("inspect --points", "inspect", lambda s, t: ["inspect", str(s), "--points"], findings_on_stdout=True),
    Verb("verify", "verify", lambda s, t: ["verify", str(s)], findings_on_stdout=True),
    Verb(
        "restore",
        "restore",
        lambda s, t: ["restore", str(s), "--metadir", str(t / "meta"), "--datadir", str(t / "data")],
        targets=("meta", "data"),
    ),
    Verb("convert", "convert", lambda s, t: ["convert", str(s), str(t / "out")], targets=("out",)),
    Verb("export", "export", lambda s, t: ["export", str(s), "--out", str(t / "out.lp")], targets=("out.lp",)),
    Verb("pack", "pack", lambda s, t: ["pack", str(s), str(t / "a.tar.zst")], targets=("a.tar.zst",)),
]


def _commands() -> set[str]:
    return set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


ACTIVE = [v for v in VERBS if v.command in _commands()]
# Subprocess subset: one case per family, run through the real console script.
SUBPROCESS_CASES = ("tar_dotdot", "gzip_bomb", "tsm_block_crc", "metann_trunc_frame", "manifest_not_json",
                    "wal_torn_tail", "missing_path", "fifo_in_dir")


# Built once at collection (parametrization needs the names); removed when the interpreter exits.
_CORPUS_DIR = tempfile.TemporaryDirectory(prefix="hostile-corpus-")
_CASES = {c.name: c for c in build_corpus(_CORPUS_DIR.name)}
CASE_NAMES = list(_CASES)


@pytest.fixture(scope="session")
def corpus() -> dict[str, Case]:
    return _CASES


def _tree(path: Path) -> dict[str, str]:
    """Relative path -> digest (or kind) of every entry under ``path``; FIFOs are never opened."""
    out: dict[str, str] = {}
    if not os.path.lexists(path):
        return out
    base = path if path.is_dir() else path.parent
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, base)
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
                out[rel] = h.hexdigest()
            else:
                out[rel] = f"mode {stat.S_IFMT(st.st_mode):o}"
    return out


def _run_subprocess(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    exe = Path(sys.executable).parent / "influx-archive"
    r = subprocess.run([str(exe), *argv], cwd=cwd, capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def _check(case: Case, verb: Verb, runner: str, tmp_path: Path, cli=None) -> None:
    targets = tmp_path / "targets"
    targets.mkdir()
    src_root = case.path if case.path.is_dir() else case.path.parent
    before_src = _tree(src_root)
    argv = verb.argv(case.path, targets)
    if runner == "inprocess":
        code, out, err = cli(*argv, cwd=tmp_path)
    else:
        code, out, err = _run_subprocess(argv, tmp_path)

    where = f"{verb.name} on {case.name}: exit {code}, stderr {err!r}"
    assert code in case.allowed(verb.name), where
    assert "Traceback" not in err and "Traceback" not in out, where
    # a failure is ONE error line; a verb that goes on may first print warnings (ignored members...)
    err_lines = [ln for ln in err.splitlines() if ln.startswith("influx-archive: error: ")]
    assert len(err_lines) <= 1, where
    if code != 0 and not verb.findings_on_stdout:
        assert err_lines and err.splitlines()[-1] == err_lines[0], where
        assert all(ln.startswith("influx-archive: warning: ") for ln in err.splitlines()[:-1]), where
    if code != 0 and case.mention is not None:
        lines = err_lines + (
            [ln for ln in out.splitlines() if ln.startswith("error:")] if verb.findings_on_stdout else []
        )
        assert any(case.mention in ln for ln in lines), where
    # Source untouched; nothing written outside the targets (cwd = tmp_path); targets absent on failure.
    assert _tree(src_root) == before_src, where
    extra = {p.name for p in tmp_path.iterdir()} - {"targets"}
    assert not extra, f"{where}: wrote {extra} outside the targets"
    created = {p.name for p in targets.iterdir()}
    assert created <= set(verb.targets), f"{where}: created {created}"
    if code != 0:
        assert not created, f"{where}: left {created} behind after failing"


@pytest.mark.slow
@pytest.mark.parametrize("verb", ACTIVE, ids=lambda v: v.name)
@pytest.mark.parametrize("name", CASE_NAMES)
def test_contract_inprocess(corpus: dict[str, Case], name: str, verb: Verb, tmp_path: Path, cli) -> None:
    _check(corpus[name], verb, "inprocess", tmp_path, cli)


@pytest.mark.slow
@pytest.mark.parametrize("verb", ACTIVE[:1], ids=lambda v: v.name)
@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_contract_subprocess(corpus: dict[str, Case], name: str, verb: Verb, tmp_path: Path) -> None:
    _check(corpus[name], verb, "subprocess", tmp_path)


@pytest.mark.slow
def test_corpus_is_deterministic(corpus: dict[str, Case], tmp_path: Path) -> None:
    """A second build is byte-identical to the session's (cases are reproducible from the fixtures alone)."""
    again = build_corpus(tmp_path / "again")
    assert [c.name for c in again] == list(corpus)
    first_root = next(iter(corpus.values())).path.parent
    assert _tree(tmp_path / "again") == _tree(first_root)


def test_corpus_covers_every_family(corpus: dict[str, Case]) -> None:
    """Every family from issue 8 is present, each with at least one damaging and one tolerated case overall."""
    prefixes = ("tar_", "targz_", "gzip_bomb", "zstd_bomb", "not_a_tar", "tsm_", "wal_", "tombstone_", "metann_",
                "metadb_", "portable_meta_", "manifest_", "shard_files_absent", "empty_dir", "missing_path",
                "file_where_dir", "dir_where_file", "fifo_")
    for p in prefixes:
        assert any(n.startswith(p) for n in corpus), p
    assert any(c.codes == frozenset({0}) for c in corpus.values())
    assert sum(c.codes == frozenset({1}) for c in corpus.values()) >= 30


def test_meta_nn_cut_in_header_is_one_line(corpus: dict[str, Case], cli) -> None:
    """Regression: a meta.NN cut inside its 16-byte magic+length header (docs/formats.md#meta-nn)
    used to put Construct's multi-line message into the error. Cut at byte 12: 12 bytes left at offset 0."""
    case = corpus["metann_trunc_frame"]
    code, _out, err = cli("inspect", str(case.path))
    assert code == 1
    assert err == (
        "influx-archive: error: file ends inside the magic and length header (12 bytes left) "
        f"[file {case.path / 'meta.01'}, offset 0]\n"
    )


def test_gzip_bomb_names_the_member(corpus: dict[str, Case], cli) -> None:
    """The bomb's .tar.gz inflates past the uncompressed size its manifest records: decompression
    stops there (never the 64 MiB) and the finding names the file."""
    case = corpus["gzip_bomb"]
    code, out, err = cli("inspect", str(case.path))
    assert code == 1 and err == ""
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: decompresses to more than the ")
    assert errors[0].endswith(
        f"[file {case.path / 'PORTABLE_STEM.s2.tar.gz'}]".replace(
            "PORTABLE_STEM", next(case.path.glob("*.s2.tar.gz")).name[: -len(".s2.tar.gz")]
        )
    )
