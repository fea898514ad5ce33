"""Memory bounded by the work: every lying count or length, through every verb, under RLIMIT_AS.

Cases come from ``tests/hostile_bounds.py`` (real fixtures, then a count or length made to lie).
All (case, verb) runs go through the CLI in subprocesses limited to 1 GiB of address space, so a
trusted count ends as MemoryError (exit 3, "unexpected MemoryError") and fails here. For every run:

* the exit code is exactly the one the case expects;
* no traceback and no MemoryError anywhere in the output;
* a failure is ONE error line that names the damaged file and an offset (report verbs —
  verify, inspect — list it as an ``error:`` finding on stdout instead);
* the source is byte-identical afterwards, nothing is written outside the verb's targets, and a
  failed run leaves no target behind;
* the peak RSS of each runner process stays under 500 MiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hostile_bounds as hb

HERE = Path(__file__).resolve().parent
TARGETS = {"export": {"out.lp"}, "convert": {"out"}, "restore": {"meta", "data", "wal"}}
PEAK_RSS_MIB = 500

_DIR = tempfile.TemporaryDirectory(prefix="hostile-bounds-")
_CASES = hb.build_all(Path(_DIR.name) / "cases")
_JOBS = hb.iter_jobs(_CASES, Path(_DIR.name) / "runs")
IDS = [f"{c.name}::{verb}" for c, verb, _, _ in _JOBS]


def _tree(path: Path) -> dict[str, str]:
    base = path if path.is_dir() else path.parent
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, base)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    out[rel] = hashlib.sha256(fh.read()).hexdigest()
            else:
                out[rel] = f"mode {stat.S_IFMT(st.st_mode):o}"
    return out


def _run_chunk(jobs: list[dict], tag: str) -> dict:
    job_file = Path(_DIR.name) / f"jobs-{tag}.json"
    job_file.write_text(json.dumps(jobs))
    r = subprocess.run(
        [sys.executable, str(HERE / "hostile_bounds.py"), "--run", str(job_file)],
        capture_output=True, text=True, timeout=1800,
    )
    assert r.returncode == 0, f"runner failed ({r.returncode}): {r.stderr[-3000:]}"
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def outcome() -> dict:
    """Run every job (two runner processes, one per core) and hash the sources around it."""
    sources = {str(c.path): _tree(c.path) for c in _CASES}
    jobs = [j for _, _, _, j in _JOBS]
    half = (len(jobs) + 1) // 2
    with ThreadPoolExecutor(2) as pool:
        parts = list(pool.map(lambda a: _run_chunk(*a), [(jobs[:half], "a"), (jobs[half:], "b")]))
    results = parts[0]["results"] + parts[1]["results"]
    after = {str(c.path): _tree(c.path) for c in _CASES}
    return {"results": results, "peaks": [p["peak_rss_kib"] for p in parts], "before": sources, "after": after}


def test_generators_cover_every_structure() -> None:
    families = {c.family for c in _CASES}
    assert families == {"tsm", "wal", "tombstone", "meta", "manifest"}
    kinds = {c.name.split("-")[1] for c in _CASES if c.family == "tsm"}
    assert kinds == {"file", "live", "legacy", "portable"}
    assert len(_CASES) >= 150 and len(_JOBS) >= 600


@pytest.mark.slow
def test_peak_memory_of_every_runner(outcome: dict) -> None:
    for kib in outcome["peaks"]:
        assert kib // 1024 <= PEAK_RSS_MIB, f"a runner peaked at {kib // 1024} MiB"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_JOBS)), ids=IDS)
def test_contract(outcome: dict, index: int) -> None:
    case, verb, run_dir, _job = _JOBS[index]
    res = outcome["results"][index]
    code, out, err = res["code"], res["stdout"], res["stderr"]
    where = f"{case.name} / {verb}: exit {code!r}, stderr {err[-600:]!r}"
    expected = case.expect[verb]
    assert code == expected, where
    for text in (out, err):
        assert "Traceback" not in text and "MemoryError" not in text, where
    err_lines = [ln for ln in err.splitlines() if ln.startswith("influx-archive: error: ")]
    if expected != 0:
        if verb in hb.REPORT_VERBS:
            lines = [ln for ln in out.splitlines() if ln.startswith("error:")] + err_lines
            assert len(err_lines) <= 1, where
        else:
            assert len(err_lines) == 1 and err.splitlines()[-1] == err_lines[0], where
            assert all(ln.startswith(("influx-archive: warning: ", "  ")) for ln in err.splitlines()[:-1]), where
            lines = err_lines
        named = [ln for ln in lines if case.mention in ln]
        assert named, where
        if case.offset:
            assert any("offset " in ln for ln in named), where
    else:
        assert not err_lines, where
    # the source untouched; nothing outside the targets; a failed run leaves no target
    assert outcome["after"][str(case.path)] == outcome["before"][str(case.path)], where
    assert {p.name for p in run_dir.iterdir()} == {"targets"}, where
    created = {p.name for p in (run_dir / "targets").iterdir()}
    assert created <= TARGETS.get(verb, set()), where
    if expected != 0:
        assert not created, where
