"""The error contract: every error class has a stable, documented code; ``--json`` failures carry
it; ``--debug`` shows the chain of causes; findings carry a code in ``--json`` output."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from influx_archive.archive import errors, findings
from influx_archive.archive.errors import ArchiveError, FormatError
from influx_archive.archive.findings import Finding


def _error_classes() -> list[type[ArchiveError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, ArchiveError)]


def test_every_error_class_has_its_own_documented_code() -> None:
    classes = _error_classes()
    codes = [c.__dict__.get("code") for c in classes]
    assert None not in codes, [c.__name__ for c in classes if "code" not in c.__dict__]
    assert len(set(codes)) == len(codes), codes
    for c in classes:
        assert f"``{c.code}``" in errors.__doc__ and f":class:`{c.__name__}`" in errors.__doc__, c.__name__
    for code in (errors.CODE_USAGE, errors.CODE_UNEXPECTED, errors.CODE_INTERRUPTED, errors.CODE_TERMINATED):
        assert f"``{code}``" in errors.__doc__


def test_finding_codes_are_documented_and_distinct() -> None:
    assert findings.CODES and all(f"``{c}``" in findings.__doc__ for c in findings.CODES)
    error_codes = {c.code for c in _error_classes()}
    assert not (findings.CODES - {findings.UNEXPECTED}) & error_codes


def test_finding_code_is_in_its_dict_and_not_in_its_text() -> None:
    f = Finding("warning", "shard on disk only", path="/x", code=findings.SHARD_NOT_IN_META)
    assert f.to_dict()["code"] == "shard.not_in_meta"
    assert str(f) == "warning: shard on disk only [file /x]"
    g = Finding.from_error(FormatError("bad", path="/y", offset=3))
    assert (g.code, g.path, g.offset) == ("damaged", "/y", 3)
    assert Finding.from_error(ValueError("boom")).code == findings.UNEXPECTED


def test_json_failure_is_a_document_with_the_code(cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    r = cli("verify", str(missing), "--json")
    assert r.code == 2
    assert r.err == f"influx-archive: error: no such file or directory [file {missing}]\n"
    doc = json.loads(r.out)
    assert doc["error"]["code"] == "usage.source" and doc["error"]["exit_code"] == 2
    assert doc["error"]["path"] == str(missing) and doc["error"]["message"] == "no such file or directory"


def test_without_json_a_failure_prints_nothing_on_stdout(cli, tmp_path: Path) -> None:
    r = cli("verify", str(tmp_path / "nope"))
    assert r.code == 2 and r.out == ""


def test_json_usage_error_has_the_usage_code(cli) -> None:
    r = cli("inspect", "--json", "--no-such-flag", "x")
    assert r.code == 2 and json.loads(r.out)["error"]["code"] == "usage"
    assert r.err.startswith("influx-archive: error: ") and len(r.err.splitlines()) == 1


def test_json_damage_report_is_not_followed_by_an_error_document(cli, fixtures_dir: Path, tmp_path: Path) -> None:
    """A verb that printed its JSON document (damage in its findings) adds no second one; each
    finding has its code field."""
    import shutil

    src = tmp_path / "legacy"
    shutil.copytree(fixtures_dir / "legacy", src)
    tar = src / "db1.autogen.00001.00"
    tar.write_bytes(tar.read_bytes()[:-700])
    r = cli("verify", str(src), "--json")
    assert r.code == 1
    doc = json.loads(r.out)
    assert "error" not in doc and doc["findings"]
    assert all("code" in f for f in doc["findings"])


@pytest.mark.parametrize("debug", [False, True])
def test_debug_shows_the_chained_cause(cli, tmp_path: Path, monkeypatch, debug: bool) -> None:
    from influx_archive.archive.ops import verify as verify_mod

    def failing(*_a, **_kw):
        try:
            raise OSError(5, "Input/output error")
        except OSError as exc:
            raise errors.SourceIOError("cannot read the source", path="/src") from exc

    monkeypatch.setattr(verify_mod, "verify", failing)
    r = cli("verify", str(tmp_path), *(["--debug"] if debug else []))
    assert r.code == 3
    assert r.err.splitlines()[-1] == "influx-archive: error: cannot read the source [file /src]"
    if debug:
        assert "influx-archive: debug: caused by OSError: [Errno 5] Input/output error" in r.err
        assert "Traceback" in r.err
    else:
        assert r.err == "influx-archive: error: cannot read the source [file /src]\n"


# --- every finding has a documented code ------------------------------------------------------

_ROOT = Path(__file__).resolve().parent.parent
_DOCUMENTED = findings.CODES | {c.code for c in _error_classes()}


def _findings_in(doc: object) -> list[dict]:
    """Every finding-shaped dict (severity and message) anywhere in a ``--json`` document."""
    if isinstance(doc, list):
        return [f for d in doc for f in _findings_in(d)]
    if not isinstance(doc, dict):
        return []
    found = [doc] if "severity" in doc and "message" in doc else []
    return found + [f for v in doc.values() for f in _findings_in(v)]


def _damaged_inputs(root: Path, fixtures_dir: Path) -> list[tuple[str, Path]]:
    """The hostile corpus, a few cases of each family of hostile sources (those an unprivileged
    run can read), and the salvage tests' input (a flipped block CRC and a cut shard tar)."""
    import shutil
    import sys
    import tarfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import hostile_corpus
    import hostile_sources

    out = [(c.name, c.path) for c in hostile_corpus.build_corpus(root / "corpus")]
    per_family: dict[str, int] = {}
    for c in hostile_sources.build_all(root / "sources"):
        if c.as_user is None and per_family.get(c.family, 0) < 3:
            per_family[c.family] = per_family.get(c.family, 0) + 1
            out.append((f"{c.family}/{c.name}", c.path))
    src = root / "salvage"
    shutil.copytree(fixtures_dir / "legacy", src)
    tar4 = src / "db1.autogen.00004.00"
    with tarfile.open(tar4) as tf:
        m4 = next(m for m in tf.getmembers() if m.name.endswith(".tsm"))
    tar4.write_bytes(tar4.read_bytes()[: m4.offset_data + m4.size // 2])
    out.append(("salvage", src))
    return out


@pytest.mark.slow
def test_every_json_finding_has_a_documented_code(cli, fixtures_dir: Path, tmp_path: Path) -> None:
    """verify / inspect --json, and restore / convert --salvage --json, over every damaged input
    the corpus generators make: no finding without a code, none outside the documented list."""
    seen: set[str] = set()
    runs = 0
    for name, path in _damaged_inputs(tmp_path / "in", fixtures_dir):
        out = tmp_path / "out" / str(runs)
        for argv in (
            ["verify", str(path), "--json"],
            ["inspect", str(path), "--json"],
            ["restore", str(path), "--metadir", str(out / "meta"), "--datadir", str(out / "data"), "--salvage",
             "--json"],
            ["convert", str(path), str(out / "conv"), "--salvage", "--json"],
        ):
            runs += 1
            r = cli(*argv, cwd=tmp_path)
            if not r.out.strip():
                continue
            for f in _findings_in(json.loads(r.out)):
                where = f"{argv[0]} on {name}: {f}"
                assert f.get("code") in _DOCUMENTED, where
                seen.add(f["code"])
    # the inputs do reach the findings (a vacuous pass would prove nothing)
    assert {findings.MEMBER_REFUSED, findings.MEMBER_IGNORED, findings.FILE_LEFT_OUT, findings.BLOCK_LEFT_OUT,
            findings.WAL_TORN_TAIL, "damaged.truncated"} <= seen, sorted(seen)


def _finding_calls_without_code() -> list[str]:
    """``Finding(...)`` calls in archive/ and cli/ that name no code: fewer than 6 positional
    arguments, no ``code=`` and no ``**mapping``."""
    import ast

    bad = []
    for folder in ("archive", "cli"):
        for py in sorted((_ROOT / folder).rglob("*.py")):
            tree = ast.parse(py.read_text(encoding="utf-8"), str(py))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                fn = node.func
                name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
                if name != "Finding":
                    continue
                if len(node.args) >= 6 or any(k.arg in ("code", None) for k in node.keywords):
                    continue
                bad.append(f"{py.relative_to(_ROOT)}:{node.lineno}")
    return bad


def test_every_finding_call_names_a_code() -> None:
    assert _finding_calls_without_code() == []


def _cut_gzip_member(src: Path) -> str:
    """A portable backup whose first shard tar.gz is cut in half (the gzip stream ends early)."""
    tgz = sorted(src.glob("*.s*.tar.gz"))[0]
    tgz.write_bytes(tgz.read_bytes()[: tgz.stat().st_size // 2])
    return "EOFError: Compressed file ended before the end-of-stream marker was reached"


def _unreadable_file(src: Path, monkeypatch) -> str:
    """A legacy backup whose shard tar the OS refuses to open (EACCES; the tests may run as root,
    so the refusal is simulated at ``os.open``)."""
    import errno
    import os

    from influx_archive.archive import untrusted

    real_open = os.open
    target = str(src / "db1.autogen.00001.00")

    def refusing(path, *a, **kw):
        if os.fspath(path) == target:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), target)
        return real_open(path, *a, **kw)

    monkeypatch.setattr(untrusted.os, "open", refusing)
    return "PermissionError: [Errno 13] Permission denied"


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("case", ["truncated gzip member", "unreadable file"])
def test_debug_shows_the_os_and_library_causes(
    cli, fixtures_dir: Path, tmp_path: Path, monkeypatch, case: str, debug: bool
) -> None:
    """The library raises its errors ``from`` the OSError / decompressor error they come from:
    ``--debug`` names that cause; without it, stderr is the one error line it always was."""
    import shutil

    fixture = "portable" if case == "truncated gzip member" else "legacy"
    src = tmp_path / fixture
    shutil.copytree(fixtures_dir / fixture, src)
    cause = _cut_gzip_member(src) if case == "truncated gzip member" else _unreadable_file(src, monkeypatch)
    root = tmp_path / "root"
    r = cli("restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data"),
            *(["--debug"] if debug else []))
    assert r.code in (1, 3), r.err
    last = r.err.splitlines()[-1]
    assert last.startswith("influx-archive: error: "), r.err
    if debug:
        assert f"influx-archive: debug: caused by {cause}" in r.err
    else:
        assert r.err == last + "\n"
