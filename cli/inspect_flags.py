"""influx_inspect's single-dash flags, per verb, rewritten to ours before Typer parses the line.

``influx_inspect export -datadir D -waldir W -out F`` and the other verbs' lines paste as they
are: :data:`FLAGS` says, for each influx_inspect verb, what each of its flags (Go's ``flag``
package: ``-name``, ``--name``, ``-name=value``; a boolean also as ``-name=true|false``) becomes
here — one of our options, a positional argument (``verify -dir D``), or nothing, with a note,
when it has no meaning offline (``-concurrency``: every core is used anyway). Flags not in the
table are left to the generic ``-name`` -> ``--name`` rewriting of :mod:`.app`. Everything after
``--`` is left alone. This module prints nothing: notes are returned to the caller.
"""

from __future__ import annotations

from typing import NamedTuple


class Flag(NamedTuple):
    target: str  # our option ("--out"), "" for a positional argument, or the note for an ignored flag
    kind: str  # "value" | "bool" | "positional" | "ignore-value" | "ignore-bool"


def _v(opt: str) -> Flag:
    return Flag(opt, "value")


def _b(opt: str) -> Flag:
    return Flag(opt, "bool")


_CORES = "has no effect here: the work is spread over every core"
_VERBOSE = "has no effect here: progress goes to stderr (on a terminal), findings are always listed"

#: influx_inspect verb -> {its flag name (no dash): what it becomes}
FLAGS: dict[str, dict[str, Flag]] = {
    "export": {
        "datadir": _v("--datadir"), "waldir": _v("--waldir"), "out": _v("--out"), "database": _v("--database"),
        "retention": _v("--retention"), "start": _v("--start"), "end": _v("--end"), "lponly": _b("--lponly"),
        "compress": _b("--compress"),
    },
    "report": {"pattern": _v("--pattern"), "exact": _b("--exact"), "detailed": _b("--detailed")},
    "dumptsm": {"index": _b("--index"), "blocks": _b("--blocks"), "all": _b("--all"), "filter-key": _v("--filter-key")},
    "dumptsi": {
        "series-file": _v("--series-file"), "series": _b("--series"), "measurements": _b("--measurements"),
    },
    "buildtsi": {
        "datadir": _v("--datadir"), "waldir": _v("--waldir"), "database": _v("--database"),
        "retention": _v("--retention"), "shard": _v("--shard"), "concurrency": Flag(_CORES, "ignore-value"),
        "batch-size": Flag("has no effect here: series are written in one pass per shard", "ignore-value"),
        "max-log-file-size": Flag("has no effect here: indexes are written as one L0 log file per partition "
                                  "(influxd compacts them itself)", "ignore-value"),
        "max-cache-size": Flag("has no effect here: the WAL is read one segment at a time", "ignore-value"),
        "v": Flag(_VERBOSE, "ignore-bool"),
    },
    "verify": {"dir": _v("--dir")},
    "verify-seriesfile": {
        "dir": _v("--dir"), "db": _v("--db"), "series-file": _v("--series-file"), "v": _b("--verbose"),
        "c": Flag(_CORES, "ignore-value"),
    },
    "deletetsm": {"measurement": _v("--measurement"), "sanitize": _b("--sanitize"), "v": _b("--verbose")},
}


def _verb_index(argv: list[str]) -> int | None:
    for i, a in enumerate(argv):
        if a == "--":
            return None
        if not a.startswith("-"):
            return i
    return None


def map_inspect_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` with the verb's influx_inspect flags rewritten (see :data:`FLAGS`), and the notes
    to show for flags that have no effect. A flag missing its value is left as it is (the parser
    then says what is missing)."""
    i = _verb_index(argv)
    if i is None or argv[i] not in FLAGS:
        return list(argv), []
    table = FLAGS[argv[i]]
    out = argv[: i + 1]
    notes: list[str] = []
    rest = argv[i + 1:]
    j = 0
    while j < len(rest):
        arg = rest[j]
        j += 1
        if arg == "--":
            out.extend(rest[j - 1:])
            break
        if not arg.startswith("-") or arg == "-":
            out.append(arg)
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        flag = table.get(name)
        # our own spelling of an option that has the same name (--out, --exact) is left as typed
        if flag is None or (arg.startswith("--") and flag.kind in ("value", "bool") and flag.target == "--" + name):
            out.append(arg)
            continue
        if flag.kind in ("bool", "ignore-bool"):
            on = not eq or value.lower() in ("1", "t", "true")
            if flag.kind == "bool":
                if on:
                    out.append(flag.target)
            else:
                notes.append(f"-{name} {flag.target}")
            continue
        if not eq:
            if j >= len(rest):  # no value: leave it for the parser to name
                out.append(flag.target if flag.kind == "value" else arg)
                continue
            value = rest[j]
            j += 1
        if flag.kind == "value":
            out.extend([flag.target, value])
        elif flag.kind == "positional":
            out.append(value)
        else:
            notes.append(f"-{name} {flag.target}")
    return out, notes


__all__ = ["FLAGS", "Flag", "map_inspect_flags"]
