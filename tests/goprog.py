"""Build throw-away Go programs against influxd's installed source, for differential tests that
ask influxd's own code (its tombstone and WAL readers) for a verdict. Needs golang-go and
golang-github-influxdb-influxdb-dev (installed by .ci/run); missing tools fail, never skip."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

GOCODE = "/usr/share/gocode"


def build_go_program(source: str, work: Path, what: str) -> Path:
    """Compile ``source`` (a main package) in GOPATH mode; returns the binary's path."""
    go = shutil.which("go")
    if go is None or not Path(GOCODE, "src/github.com/influxdata/influxdb").is_dir():
        pytest.fail(
            f"the Go toolchain and influxd's source are needed to run {what}: "
            "apt-get install golang-go golang-github-influxdb-influxdb-dev",
            pytrace=False,
        )
    (work / "main.go").write_text(source)
    env = dict(os.environ, GO111MODULE="off", GOPATH=f"{GOCODE}:{work / 'gopath'}", GOFLAGS="")
    subprocess.run([go, "build", "-o", str(work / "tool"), "main.go"], cwd=work, env=env, check=True, timeout=900)
    return work / "tool"
