"""Start-up stays small: a run imports its own verb's command module and the libraries it uses,
nothing else (issue 15; bench/README.md#start-up says how it is measured).

No timings here: each case runs the console entry point in a fresh interpreter and looks at
``sys.modules`` afterwards, so an eager import re-added anywhere on the path (a command module
imported for every verb, ``construct`` at the top of a format module, ``zstandard`` for runs that
never see a sealed archive...) fails a test whatever the machine's load. Also: cli/verbs.py, the
table ``--help`` is drawn from without importing the verbs, says what the modules really register.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from influx_archive.cli import verbs
from influx_archive.cli.app import app

REPO = Path(__file__).resolve().parent.parent
LEGACY = REPO / "fixtures" / "legacy"
CLI = "influx_archive.cli."
OPS = "influx_archive.archive.ops."

#: never needed by --help, --version, a verb's --help or verify of a legacy backup directory
HEAVY = frozenset({
    "construct",  # only the Construct reference definitions (dumps, writers of tombstones, tsi1) use it
    "zstandard",  # sealed archives only
    "multiprocessing",
    "hashlib",  # sealed archives and spools only
    "secrets",
    "socket",  # --host only
    "tqdm",  # progress bars: only when stderr is a terminal
    "influx_archive.archive.snapshotter",
    "influx_archive.archive.sources.remote",
    "influx_archive.archive.snapshotter_upload",
})
#: not needed by --help / --version / a verb's --help, where nothing is read
READING = frozenset({"concurrent.futures", "tarfile", "importlib.metadata", "influx_archive.archive.sources"})
#: what verify of a small legacy backup (plain tars, TSM files and tombstones, no WAL, no --json)
#: never uses: each is imported where the kind of source, file or option that needs it is met
NOT_FOR_A_LEGACY_VERIFY = frozenset({
    "json",  # --json, portable manifests
    "concurrent.futures",  # a thread pool: not for a few MB of shards (SERIAL_BELOW)
    "logging",  # (concurrent.futures imports it)
    "cramjam",  # snappy: string blocks and WAL entries only
    "gzip", "isal.igzip", "tempfile",  # .tar.gz shards
    "influx_archive.tsm.wal",
    "influx_archive.archive.sources.sealed",
    "influx_archive.archive.sources.portable",
    "influx_archive.archive.timefmt",
    "influx_archive.archive.spools",
    "influx_archive.archive.output",  # writers only
})

_PROBE = """
import sys
from influx_archive.cli.main import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
modules = sorted(sys.modules)
import json  # after the list is taken: the run itself may not need it
with open(sys.argv[1], "w") as f:
    json.dump(modules, f)
"""


def _imported(tmp_path: Path, *args: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``influx-archive ARGS``."""
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(out), *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)
    assert out.exists(), proc.stderr
    return set(json.loads(out.read_text()))


def _command_modules(mods: set[str]) -> set[str]:
    return {m[len(CLI):] for m in mods if m.startswith(CLI) and m.endswith("_cmd")}


def test_root_help_and_version_import_no_verb(tmp_path: Path) -> None:
    for args in (["--help"], ["-h"], [], ["--version"], ["version"]):
        mods = _imported(tmp_path, *args)
        assert _command_modules(mods) == set(), args
        assert not {m for m in mods if m.startswith(OPS) or m == OPS[:-1]}, args
        assert not (HEAVY | READING) & mods, (args, (HEAVY | READING) & mods)
        assert not {"json", "dataclasses", "influx_archive.archive.progress"} & mods, args


def test_the_version_is_the_distributions() -> None:
    """--version reads a constant (no importlib.metadata at start-up): the one pyproject.toml
    gives the installed distribution."""
    from importlib.metadata import version

    from influx_archive.cli.app import tool_version

    assert tool_version() == version("influx-archive")


@pytest.mark.parametrize("verb", [v.name for v in verbs.VERBS if v.module != "app"])
def test_a_verbs_help_imports_its_module_only(tmp_path: Path, verb: str) -> None:
    mods = _imported(tmp_path, verb, "--help")
    module = verbs.BY_NAME[verb].module
    # backup reuses convert's options and runner (cli/backup_cmd.py imports cli/convert_cmd.py)
    allowed = {module} | ({"convert_cmd"} if module == "backup_cmd" else set())
    assert _command_modules(mods) == allowed
    assert not {m for m in mods if m.startswith(OPS)}, "operations are imported when the verb runs"
    assert not (HEAVY | READING) & mods, (HEAVY | READING) & mods


def test_verify_of_a_legacy_backup_imports_what_it_uses(tmp_path: Path) -> None:
    mods = _imported(tmp_path, "verify", str(LEGACY))
    assert _command_modules(mods) == {"verify_cmd"}
    assert {m for m in mods if m.startswith(OPS)} <= {OPS + "verify", OPS + "tsmcopy"}
    assert not HEAVY & mods, HEAVY & mods
    assert not NOT_FOR_A_LEGACY_VERIFY & mods, NOT_FOR_A_LEGACY_VERIFY & mods
    assert "importlib.metadata" not in mods
    # the probe did run the verb (a verify that failed early would import less)
    assert {"influx_archive.tsm.reader", "influx_archive.meta.files", "influx_archive.archive.sources.legacy"} <= mods


def test_build_tsi_of_a_server_root_imports_what_it_uses(tmp_path: Path) -> None:
    """build-tsi writes its segments and log files with struct (tsm/tsi1/format.py's Construct
    definitions are made on first use), and the restore package only serves --owner."""
    root = tmp_path / "live"
    shutil.copytree(REPO / "fixtures" / "live", root)
    mods = _imported(tmp_path, "build-tsi", "--datadir", str(root / "data"), "--waldir", str(root / "wal"), "--force")
    assert _command_modules(mods) == {"tsi_cmd"}
    assert "influx_archive.tsm.tsi1.seriesfile" in mods  # it did run
    assert not HEAVY & mods, HEAVY & mods
    assert not {m for m in mods if m.startswith(OPS + "restore")}


def test_export_of_a_small_backup_forks_no_workers(tmp_path: Path) -> None:
    """Below SERIAL_BELOW bytes of shards export runs in-process: no multiprocessing, no pool, no spool."""
    out = tmp_path / "out.lp"
    mods = _imported(tmp_path, "export", str(LEGACY), "--out", str(out))
    assert out.stat().st_size > 0
    assert _command_modules(mods) == {"export_cmd"}
    assert not HEAVY & mods, HEAVY & mods
    assert not {"concurrent.futures", "influx_archive.archive.spools"} & mods


def test_verbs_table_is_what_the_modules_register() -> None:
    """Names (in --help order), modules, hidden flags and one-line helps of cli/verbs.py are the
    registered commands' own; a command module not in the table fails here too."""
    verbs.load_all()
    for path in sorted((REPO / "cli").glob("*_cmd.py")):  # every command module, listed or not
        __import__(CLI + path.stem)
    root = typer.main.get_command(app)
    commands = root.commands  # type: ignore[attr-defined]
    assert sorted(commands) == sorted(v.name for v in verbs.VERBS)
    # the order: in a fresh interpreter, as a run registers them (in this process another test may
    # have imported a command module first)
    script = ("import typer\nfrom influx_archive.cli import verbs\nfrom influx_archive.cli.app import app\n"
              "verbs.load_all()\nprint(' '.join(typer.main.get_command(app).commands))\n")
    fresh = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.split() == [v.name for v in verbs.VERBS]
    for v in verbs.VERBS:
        cmd = commands[v.name]
        assert cmd.callback.__module__ == CLI + v.module, v.name
        assert cmd.hidden == v.hidden, v.name
        first = " ".join((cmd.help or "").split("\n\n")[0].split())
        assert first == v.help, v.name


def test_root_help_is_the_same_with_every_verb_imported(tmp_path: Path) -> None:
    """The lazily drawn --help (from the table) is the one drawn from the real commands, at
    several terminal widths (click shortens the one-line helps to fit)."""
    script = ("import sys\nfrom influx_archive.cli import verbs\nfrom influx_archive.cli.main import main\n"
              "if sys.argv[1] == 'all': verbs.load_all()\nmain(sys.argv[2:])\n")
    for width in ("40", "80", "120", "250"):
        env = {**os.environ, "COLUMNS": width}
        lazy, full = (subprocess.run([sys.executable, "-c", script, mode, "--help"], capture_output=True,
                                     text=True, env=env, cwd=REPO, timeout=120) for mode in ("lazy", "all"))
        assert lazy.returncode == full.returncode == 0, (lazy.stderr, full.stderr)
        assert lazy.stdout == full.stdout, width
        for v in verbs.VERBS:
            assert (f"  {v.name} " in lazy.stdout) != v.hidden, v.name


@pytest.mark.parametrize("typo", ["verfy", "buildts", "restor", "dumptsn", "xyz"])
def test_unknown_verb_suggests_among_every_verb(tmp_path: Path, typo: str) -> None:
    """"No such command" and its "Did you mean" are over every verb, imported or not: the same
    line as when every module is imported."""
    script = ("import sys\nfrom influx_archive.cli import verbs\nfrom influx_archive.cli.main import main\n"
              "if sys.argv[1] == 'all': verbs.load_all()\nmain(sys.argv[2:])\n")
    lazy, full = (subprocess.run([sys.executable, "-c", script, mode, typo, "x"], capture_output=True, text=True,
                                 cwd=REPO, timeout=120) for mode in ("lazy", "all"))
    assert lazy.returncode == full.returncode == 2
    assert lazy.stderr == full.stderr and f"No such command '{typo}'" in lazy.stderr


_ALL_LINES = """
import contextlib, io, json, sys
from influx_archive.cli import verbs
from influx_archive.cli.main import main
verbs.load_all()
out = []
for line in json.loads(sys.argv[1]):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            main(line)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    out.append([code, o.getvalue(), e.getvalue()])
print(json.dumps(out))
"""


def _other_verbs_options() -> dict[str, list[str]]:
    """verb -> long options other verbs have and it lacks (what an operator may type by habit)."""
    verbs.load_all()
    root = typer.main.get_command(app)
    commands = root.commands  # type: ignore[attr-defined]
    longs = {n: sorted({o for p in c.params for o in getattr(p, "opts", []) if o.startswith("--")})
             for n, c in commands.items()}
    every = sorted({o for opts in longs.values() for o in opts})
    return {n: [o for o in every if o not in longs[n]] for n in commands}


@pytest.mark.parametrize("verb", [v.name for v in verbs.VERBS])
def test_another_verbs_flag_is_refused_as_when_every_verb_is_imported(verb: str) -> None:
    """``VERB -name`` where only another verb has ``--name`` (influxd's single-dash habit): the
    same exit code and line whether the verbs were imported lazily or all up front."""
    others = _other_verbs_options()[verb]
    picks = [others[i * len(others) // 3] for i in range(3)] if others else []
    lines = [[verb, "-" + o[2:], "x"] for o in picks] + [[verb, "-" + picks[0][2:] + "=1", "x"]] if picks else []
    lines.append([verb, "-nosuchflag", "x"])
    full = json.loads(subprocess.run([sys.executable, "-c", _ALL_LINES, json.dumps(lines)], capture_output=True,
                                     text=True, cwd=REPO, timeout=120, check=True).stdout)
    for line, (code, out, err) in zip(lines, full):
        lazy = subprocess.run([sys.executable, "-c", "from influx_archive.cli.main import main; main()", *line],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert (lazy.returncode, lazy.stdout, lazy.stderr) == (code, out, err), line
        assert code == 2, line


@pytest.mark.parametrize("before", ["enabled", "disabled"])
def test_the_cycle_collector_is_as_it_was_after_the_import(before: str) -> None:
    """cli/main.py pauses the cycle collector while it imports the app, and a run while it imports
    the verb's modules (start-up); each leaves it as it found it: on for every run, off for a
    caller that had turned it off."""
    script = ("import contextlib, gc, io, sys\nif sys.argv[1] == 'disabled': gc.disable()\n"
              "from influx_archive.cli.main import main\nprint(gc.isenabled())\n"
              "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
              "    main(['verify', sys.argv[2]])\nprint(gc.isenabled())\n")
    proc = subprocess.run([sys.executable, "-c", script, before, str(LEGACY)], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=True)
    assert proc.stdout.split() == [str(before == "enabled")] * 2
