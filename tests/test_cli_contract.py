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
