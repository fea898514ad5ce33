"""The CLI explains itself: root help, --version, completion, an example in every verb's help,
influxd-only flags explained in one line wherever they appear, typos pointed at the verb's option.

Generators walk the registered commands, so a verb added later is covered without a new test.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
import typer

from influx_archive.cli.app import app
from influx_archive.cli.flags import OFFLINE_MEANING, VERB_MEANING, habit_for
from influx_archive.cli.verbs import load_all

load_all()  # registers every verb (a run imports only its own verb's module)

ROOT = typer.main.get_command(app)
VERBS = sorted(name for name, cmd in ROOT.commands.items() if not cmd.hidden)


def _long_options(verb: str) -> list[str]:
    out = []
    for p in ROOT.commands[verb].params:
        if getattr(p, "hidden", False) or getattr(p, "param_type_name", "") != "option":
            continue
        out.extend(o for o in p.opts if o.startswith("--") and o != "--help")
    return sorted(out)


def test_root_help_tells_exit_codes_quiet_debug_and_version(cli) -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for code in ("0 ok", "1 damaged", "2 usage", "3 any other failure", "4 --salvage", "5 target busy"):
        assert code in text, code
    for opt in ("--quiet", "-q", "--debug", "--version", "--install-completion", "--show-completion"):
        assert opt in text, opt
    assert "{" not in proc.stdout.split("\n", 1)[0]


def test_version_flag_and_verb_agree(cli) -> None:
    a, b = cli("--version"), cli("version")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and re.fullmatch(r"influx-archive \S+\n", a.stdout)


def test_show_completion_prints_a_script() -> None:
    # the shell named, never detected from the parent processes (detection failed once under a
    # detached test run: "Shell  not supported.")
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    proc = subprocess.run([sys.executable, "-m", "influx_archive.cli.main", "--show-completion", "bash"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "complete" in proc.stdout and "influx" in proc.stdout


@pytest.mark.parametrize("where", ["first", "after-verb", "last"])
def test_quiet_short_flag_anywhere(cli, fixtures_dir, where) -> None:
    args = ["inspect", str(fixtures_dir / "legacy")]
    args = {"first": ["-q", *args], "after-verb": [args[0], "-q", args[1]], "last": [*args, "-q"]}[where]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "database db1" in proc.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_an_example_and_plain_usage(cli, verb) -> None:
    proc = cli(verb, "--help")
    assert proc.returncode == 0, proc.stderr
    usage = proc.stdout.splitlines()[0]
    assert usage.startswith(f"Usage: influx-archive {verb}") and "{" not in usage, usage
    m = re.search(r"^ *Examples?:\n((?: {4}\S.*\n?)+)", proc.stdout, re.M)
    assert m, proc.stdout
    lines = [ln.strip() for ln in m.group(1).splitlines()]
    assert any(ln.startswith(f"influx-archive {verb}") or f"influx-archive {verb} " in ln for ln in lines), lines


def _habit_cases():
    for verb in VERBS:
        visible = set(_long_options(verb))
        for flag in OFFLINE_MEANING:
            if "--" + flag not in visible:
                yield verb, flag


@pytest.mark.parametrize("verb,flag", list(_habit_cases()))
def test_influxd_only_flags_explained_in_one_line(cli, verb, flag, tmp_path) -> None:
    """Whatever else is missing on the line, the habit is what is explained."""
    proc = cli(verb, f"-{flag}", "value" if flag in ("host", "config") else str(tmp_path / "nothing"))
    habit = habit_for(verb, flag)
    assert habit is not None
    line = f"-{flag}: {habit.text}"
    assert line in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    if habit.refuse:
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    else:
        assert f"warning: {line}; ignored" in proc.stderr


def test_restore_with_influxd_habits_names_each(cli, fixtures_dir) -> None:
    # influxd's own online restore line pastes as it is: -portable is noted and dropped, -host is our
    # --host (ports nothing listens on: the run ends at the refused connection, nothing contacted)
    with socket.socket() as s, socket.socket() as h:
        s.bind(("127.0.0.1", 0))
        h.bind(("127.0.0.1", 0))
        port, http = s.getsockname()[1], h.getsockname()[1]
    proc = cli("restore", "-portable", "-host", f"127.0.0.1:{port}", "-http", f"http://127.0.0.1:{http}",
               "-db", "db1", str(fixtures_dir / "portable"))
    assert "warning: -portable: not needed" in proc.stderr, proc.stderr
    assert proc.returncode == 3 and "refused" in proc.stderr.lower(), proc.stderr
    assert "Missing option" not in proc.stderr
    # offline, without --metadir/--datadir: each influxd-only flag named, on one line
    proc = cli("restore", "-online", "-newrp", "x", "-skip-errors", str(fixtures_dir / "portable"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "-online:" in proc.stderr and "-skip-errors:" in proc.stderr and "--host" in proc.stderr
    assert "Missing option" not in proc.stderr


def _typos(option: str):
    """Typos of ``--name``, one of each kind, in its middle: a letter dropped, two swapped, one
    doubled (tried with one dash and with two)."""
    name = option[2:]
    i = len(name) // 2
    variants = [name[:i] + name[i + 1:], name[:i - 1] + name[i] + name[i - 1] + name[i + 1:],
                name[:i] + name[i] + name[i:]]
    return [v for v in dict.fromkeys(variants) if v != name]


def _typo_cases():
    for verb in VERBS:
        longs = _long_options(verb)
        for opt in longs:
            if len(opt) < 7:  # --db, --rp, --to: a typo of two letters is another word
                continue
            for typo in _typos(opt):
                if "--" + typo in longs or typo in OFFLINE_MEANING:
                    continue
                yield verb, opt, typo


@pytest.mark.parametrize("verb,option,typo", list(_typo_cases()))
def test_typos_suggest_the_verbs_option(cli, verb, option, typo) -> None:
    for dashes in ("-", "--"):
        proc = cli(verb, dashes + typo)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert f"no such option {dashes}{typo} for {verb} (did you mean {option}?)" in proc.stderr, proc.stderr


def test_unknown_option_with_no_near_name_points_at_help(cli) -> None:
    proc = cli("inspect", "-zzzzzz", "x")
    assert proc.returncode == 2
    assert "no such option -zzzzzz for inspect (see influx-archive inspect --help)" in proc.stderr


def test_single_dash_influxd_spelling_still_maps(cli, fixtures_dir, tmp_path) -> None:
    """The typo explanation never fires for a spelling the mapping knows."""
    root = tmp_path / "r"
    proc = cli("restore", str(fixtures_dir / "legacy"), "-metadir", root / "meta", "-datadir", root / "data",
               "-database", "db1", "--dry-run")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("verb", VERBS)
def test_exit_codes_in_help_match_the_readme(cli, verb) -> None:
    """Where a verb's help lists exit codes, 3 means what the README says: any other failure."""
    text = " ".join(cli(verb, "--help").stdout.split())
    m = re.search(r"\b3 ([a-z][a-z ]+)", text[text.find("Exit 0"):]) if "Exit 0" in text else None
    if m is not None:
        assert m.group(1).startswith("any other failure"), (verb, m.group(1))


def test_help_says_which_file_dump_verbs_take(cli) -> None:
    tsm = " ".join(cli("dump-tsm", "--help").stdout.split())
    wal = " ".join(cli("dump-wal", "--help").stdout.split())
    assert "TSM_FILE" in tsm and ".tsm" in tsm and "use dump-wal" in tsm
    assert "WAL_FILE" in wal and "_NNNNN.wal" in wal and "use dump-tsm" in wal
    assert ".tar.zst" in " ".join(cli("restore", "--help").stdout.split())


@pytest.mark.parametrize("verb", ["restore", "build-tsi", "rebuild-meta"])
def test_verbs_that_write_a_server_tree_list_their_exit_codes(cli, verb) -> None:
    text = " ".join(cli(verb, "--help").stdout.split())
    assert "Exit 0 ok" in text and "3 any other failure" in text and "5 " in text


@pytest.mark.parametrize("verb,flag", sorted(VERB_MEANING))
def test_verb_specific_meanings(cli, verb, flag) -> None:
    proc = cli(verb, f"-{flag}", "a", "b")
    habit = VERB_MEANING[(verb, flag)]
    if habit.refuse:
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    else:  # noted and dropped; the verb then runs on (here: into a usage error of its own)
        assert f"warning: -{flag}: {habit.text}; ignored" in proc.stderr, proc.stderr
    assert VERB_MEANING[(verb, flag)].text in proc.stderr
