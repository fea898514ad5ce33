"""The README's runbooks, run as written against the fixtures, ending in a real influxd that must
serve exactly the fixture's recorded points.

Every fenced ``sh`` block of the README's "Runbooks" section is a runbook; the HTML comment just
before it says how to set up and check it::

    <!-- runbook: setup=empty-root|live-root|live-root-no-meta truth=FIXTURE [sections=a,b] [dead-fields=keep]
                  [index=tsi1] -->

Lines are run with bash after these substitutions (so a block added later is run too):

* ``/var/lib/influxdb`` -> a throw-away server root (``empty-root``: nothing there yet;
  ``live-root``: a copy of ``fixtures/live``; ``live-root-no-meta``: the same without ``meta/``);
* ``/backups/NAME`` -> a directory where every fixture is copied (new names are created there);
* ``/mnt/old/influxdb`` -> a copy of ``fixtures/live`` (a stopped server's disk);
* ``influx-archive`` -> this checkout's console script; ``--owner U:G`` -> the current user when
  not running as root;
* ``systemctl stop influxdb`` / ``systemctl start influxdb`` -> stop / start influxd 1.6.7 on the
  root (``fixtures/influxd.py``: loopback ports), ``localhost:8088`` -> that server's RPC address;
* ``/etc/influxdb/influxdb.conf`` -> that server's configuration file (``index=tsi1``: with
  ``index-version = "tsi1"``; then every shard directory must hold ``index/`` before influxd starts).

A runbook whose server is running at the end is compared with ``FIXTURE.truth.json``
(``sections``: which parts; all by default). A block without an annotation is an error, so every
runbook is tested.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import influxd as harness
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
_ANNOTATION = re.compile(r"<!--\s*runbook:\s*(.*?)\s*-->\s*\n```sh\n(.*?)```", re.S)


def runbooks() -> list[tuple[str, dict[str, str], str]]:
    text = README.read_text()
    start = text.index("\n## Runbooks")
    end = text.find("\n## ", start + 1)
    section = text[start: end if end != -1 else len(text)]
    blocks = re.findall(r"```sh\n", section)
    found = []
    for m in _ANNOTATION.finditer(section):
        opts = dict(kv.split("=", 1) for kv in m.group(1).split())
        title = section[: m.start()].rsplit("\n### ", 1)[-1].split("\n", 1)[0]
        found.append((title, opts, m.group(2)))
    assert len(found) == len(blocks), "every sh block in Runbooks needs a <!-- runbook: ... --> line before it"
    return found


RUNBOOKS = runbooks()


def test_the_six_runbooks_are_there() -> None:
    titles = " | ".join(t for t, _, _ in RUNBOOKS).lower()
    for word in ("chown", "legacy", "stopped server", "lost metastore", "tsi1", "nightly online"):
        assert word in titles, titles
    assert "runbook placeholder" not in README.read_text()


def _owner_spec() -> str | None:
    if os.geteuid() == 0:
        return None
    pw = pwd.getpwuid(os.geteuid())
    return f"{pw.pw_name}:{pw.pw_gid}"


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.parametrize("title,opts,script", RUNBOOKS, ids=[t for t, _, _ in RUNBOOKS])
def test_runbook(title, opts, script, tmp_path, fixtures_dir, truth) -> None:
    root = tmp_path / "root"
    backups = tmp_path / "backups"
    old = tmp_path / "old"
    setup = opts.get("setup", "empty-root")
    if setup.startswith("live-root"):
        shutil.copytree(fixtures_dir / "live", root, symlinks=True)
        if setup == "live-root-no-meta":
            shutil.rmtree(root / "meta")
    else:
        assert setup == "empty-root", setup
    backups.mkdir()
    for fx in fixtures_dir.iterdir():
        if fx.is_dir() and not fx.name.startswith(("_", ".")):
            shutil.copytree(fx, backups / fx.name, symlinks=True)
    shutil.copytree(fixtures_dir / "live", old, symlinks=True)
    exe = shutil.which("influx-archive", path=str(Path(sys.executable).parent))
    assert exe, "the influx-archive console script is not installed next to this Python"

    server: harness.InfluxServer | None = None
    index = opts.get("index", "inmem")
    conf = harness.InfluxServer(root, index=index).conf_path  # written now: a runbook may read it

    def subst(line: str) -> str:
        line = line.replace("/var/lib/influxdb", str(root)).replace("/backups", str(backups))
        line = line.replace("/mnt/old/influxdb", str(old)).replace("/etc/influxdb/influxdb.conf", str(conf))
        line = re.sub(r"^influx-archive\b", shlex.quote(exe), line)
        owner = _owner_spec()
        if owner is not None:
            line = re.sub(r"--owner \S+", f"--owner {owner}", line)
        if server is not None:
            line = line.replace("localhost:8088", server.host)
        return line

    lines = [ln for ln in script.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for line in lines:
        if line.strip() == "systemctl stop influxdb":
            if server is not None:
                server.stop()
                server = None
            continue
        if line.strip() == "systemctl start influxdb":
            if index == "tsi1":  # the index was built by the runbook, not by influxd on open
                shards = [d for d in root.glob("data/*/*/*")
                          if d.is_dir() and d.name.isdigit() and d.parent.name != "_series"]
                assert shards and all((d / "index").is_dir() for d in shards), f"{title}: shards without index/"
            server = harness.InfluxServer(root, index=index)
            server.start()
            continue
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", subst(line)], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "TMPDIR": str(tmp_path)})
        assert proc.returncode == 0, f"{title}: {line}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
    try:
        assert server is not None, f"{title}: the runbook does not end with a running server"
        want = truth(opts["truth"])
        if opts.get("dead-fields") != "keep":
            want = harness.without_dead_fields(want)
        sections = set(opts["sections"].split(",")) if "sections" in opts else None
        assert harness.compare_truth(want, server.dump(), sections=sections) == []
    finally:
        if server is not None:
            server.stop()
