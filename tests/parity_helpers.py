"""Helpers of the influx_inspect parity tests (``test_parity_*.py``): the reference binary (found
ONLY through ``INFLUX_INSPECT``; missing, the tests fail, never skip), restored trees, and line
protocol read back as a set of ``(series, field, timestamp, value)`` so that influx_inspect's one
field per line and our one point per line compare (float spellings compared as numbers)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

_FIELD_EQ = re.compile(r"(?<!\\)=")


def influx_inspect() -> str:
    path = os.environ.get("INFLUX_INSPECT")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "INFLUX_INSPECT must name influx_inspect 1.6.7 (the CI builds it and exports the variable)", pytrace=False
        )
    return path


def run_inspect(*args: str | os.PathLike[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([influx_inspect(), *map(os.fspath, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def restored_tree(cli, fixture: Path, dest: Path) -> Path:
    """``dest`` with ``meta/ data/ wal/`` restored (offline, by us) from ``fixture``."""
    proc = cli("restore", fixture, "--metadir", dest / "meta", "--datadir", dest / "data", "--waldir", dest / "wal")
    assert proc.code == 0, proc.err
    (dest / "wal").mkdir(exist_ok=True)
    return dest


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double-quoted strings and not escaped by a backslash."""
    out, cur, quoted, i = [], [], False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _value(v: str) -> object:
    if v.startswith('"') or v in ("true", "false") or v.endswith(("i", "u")):
        return v
    return float(v)


def lp_values(path: Path) -> set[tuple[str, str, int, object]]:
    """Every (series, field, timestamp, value) of a line-protocol file (comments and DDL skipped)."""
    out: set[tuple[str, str, int, object]] = set()
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith(("#", "CREATE ")):
                continue
            parts = _split(line, " ")
            series, fields, ts = parts[0], " ".join(parts[1:-1]), int(parts[-1])
            for fv in _split(fields, ","):
                m = _FIELD_EQ.search(fv)
                assert m is not None, line
                out.add((series, fv[:m.start()], ts, _value(fv[m.end():])))
    return out


def header(path: Path) -> list[str]:
    """The comment and DDL lines of an export, in file order."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return [ln.rstrip("\n") for ln in f if ln.startswith(("#", "CREATE "))]
