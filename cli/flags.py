"""Flags typed from habit: influxd / influx_inspect flags that mean nothing offline, and typos.

:data:`OFFLINE_MEANING` is the one table of flags of ``influxd backup/restore``, ``influxd run``,
``influx`` and ``influx_inspect`` that have no meaning in an offline tool, each with the line that
explains what to do instead. :func:`check_habits` applies it before the command line is parsed
(so ``restore -portable -host h -db X BACKUP`` is told about ``-host``, not "Missing option
'--metadir'"); a flag the verb really has (``restore --host`` where online restore exists) is
never caught by the table. :func:`explain_unknown` turns click's "No such option" into the
nearest long option of the verb (``-datdir`` -> ``--datadir``, not ``-d``).

Both work on the command line as the single-dash mapping (:func:`~.app.normalize_argv` and any
verb's own influx_inspect spellings) left it: an argument it translated is a known option here.
"""

from __future__ import annotations

import difflib
from typing import Any, NamedTuple

from ..archive.errors import UsageError, escape


class Habit(NamedTuple):
    refuse: bool  # True: the flag changes what the operator expects (refused); False: ignored with a warning
    text: str


#: flag name (without dashes) -> what it means here. One line each.
OFFLINE_MEANING: dict[str, Habit] = {
    "portable": Habit(True, "not needed offline: every backup format (portable, legacy, server root, sealed "
                            "archive) is recognised by itself; drop it"),
    "online": Habit(True, "influxd's online restore of a legacy backup; here the source's format is recognised: "
                          "--host HOST:PORT restores into a running server, --metadir/--datadir into a stopped one"),
    "host": Habit(True, "names a running server (online restore / backup: --host HOST:PORT); offline, stop influxd "
                        "and give the directories (--metadir/--datadir, or a server root as SRC)"),
    "config": Habit(True, "only restore reads an influxdb.conf (--config, for --index auto): give the "
                          "directories it names ([meta] dir, "
                          "[data] dir, wal-dir) as --metadir/--datadir/--waldir"),
    "pidfile": Habit(False, "influxd's pid file: influx-archive starts no server"),
    "cpuprofile": Habit(False, "influxd's profiling: use --debug for tracebacks"),
    "memprofile": Habit(False, "influxd's profiling: use --debug for tracebacks"),
    "skip-errors": Habit(True, "to keep what is intact of a damaged source use --salvage (it lists what it left out)"),
    "concurrency": Habit(False, "influx_inspect's worker count: influx-archive sizes its pool itself"),
    "max-log-file-size": Habit(False, "influx_inspect buildtsi's compaction setting: influxd compacts the index "
                                      "log files itself"),
    "max-cache-size": Habit(False, "influx_inspect buildtsi's memory setting: build-tsi bounds its memory itself"),
    "batch-size": Habit(False, "influx_inspect buildtsi's batching: not needed"),
    "username": Habit(True, "no server is contacted offline: nothing to log in to"),
    "password": Habit(True, "no server is contacted offline: nothing to log in to"),
    "ssl": Habit(False, "no server is contacted offline"),
    "unsafeSsl": Habit(False, "no server is contacted offline"),
}


#: (verb, flag) -> a meaning that differs for that verb (influxd backup's -portable picks a format)
VERB_MEANING: dict[tuple[str, str], Habit] = {
    ("restore", "portable"): Habit(False, "not needed, offline or online: every backup format (portable, legacy, "
                                          "server root, sealed archive) is recognised by itself"),
    ("backup", "portable"): Habit(True, "the format is chosen with --to portable (the default) or --to legacy"),
    ("convert", "portable"): Habit(True, "the format is chosen with --to portable or --to legacy"),
    ("trim", "portable"): Habit(True, "trim keeps the source's format; use convert --to portable to change it"),
}


def habit_for(verb: str, flag: str) -> Habit | None:
    """What ``-flag`` means offline for ``verb`` (None: not an influxd-only flag)."""
    return VERB_MEANING.get((verb, flag)) or OFFLINE_MEANING.get(flag)


def _options(cmd: Any, *, visible_only: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in cmd.params:
        if visible_only and getattr(p, "hidden", False):
            continue
        for opt in list(getattr(p, "opts", [])) + list(getattr(p, "secondary_opts", [])):
            out[opt] = p
    return out


def find_verb(root: Any, args: list[str]) -> tuple[Any, int] | tuple[None, int]:
    """The subcommand ``args`` run and its position (the first argument naming a command)."""
    commands = getattr(root, "commands", {})
    for i, a in enumerate(args):
        if a == "--":
            break
        if a in commands:
            return commands[a], i
        if not a.startswith("-"):
            break
    return None, -1


def _name(arg: str) -> str:
    return arg.lstrip("-").partition("=")[0]


def check_habits(root: Any, args: list[str], warn: Any) -> list[str]:
    """Drop the ignorable flags of :data:`OFFLINE_MEANING` (``warn`` is called with the line for
    each, and a value following a flag that takes one goes too); raise UsageError naming every
    refused one on one line. Flags the verb has as visible options are left alone."""
    verb, at = find_verb(root, args)
    if verb is None:
        return args
    known = _options(verb, visible_only=True)
    out = args[: at + 1]
    refused: list[str] = []
    i = at + 1
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            out.extend(args[i - 1:])
            break
        if not a.startswith("-") or a == "-" or a.partition("=")[0] in known or "--" + _name(a) in known:
            out.append(a)
            continue
        habit = habit_for(verb.name, _name(a))
        if habit is None:
            out.append(a)
            continue
        takes_value = _name(a) in ("host", "config", "pidfile", "cpuprofile", "memprofile", "concurrency",
                                   "max-log-file-size", "max-cache-size", "batch-size", "username", "password")
        if takes_value and "=" not in a and i < len(args) and not args[i].startswith("-"):
            i += 1  # its value goes with it
        line = f"{a.partition('=')[0]}: {habit.text}"
        if habit.refuse:
            refused.append(line)
        else:
            warn(f"warning: {line}; ignored")
    if refused:
        raise UsageError("; ".join(refused))
    return out


def explain_unknown(root: Any, args: list[str], option_name: str | None) -> str | None:
    """For click's "No such option: X": which argument it was (``-datdir`` seen as ``-d``) and the
    verb's nearest long option, as one message; None when it cannot be told."""
    verb, at = find_verb(root, args)
    if verb is None or not option_name:
        return None
    known = _options(verb, visible_only=False)
    culprit = None
    for a in args[at + 1:]:
        if a == "--":
            break
        if not a.startswith("-") or a == "-":
            continue
        head = a.partition("=")[0]
        if head == option_name or (not option_name.startswith("--") and not a.startswith("--")
                                   and a.startswith(option_name) and len(a) > 2 and head not in known):
            culprit = head
            break
    if culprit is None:
        return None
    longs = sorted(o for o, p in _options(verb, visible_only=True).items() if o.startswith("--"))
    habit = habit_for(verb.name, _name(culprit))
    if habit is not None:
        return f"{escape(culprit)}: {habit.text}"
    guess = difflib.get_close_matches("--" + _name(culprit), longs, n=1, cutoff=0.75)
    if guess:
        return f"no such option {escape(culprit)} for {verb.name} (did you mean {guess[0]}?)"
    return f"no such option {escape(culprit)} for {verb.name} (see influx-archive {verb.name} --help)"
