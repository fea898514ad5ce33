"""``influx-archive`` command line: thin Typer commands over the library.

Conventions every verb follows:

* exit codes: 0 ok, 1 damaged input / failed check, 2 usage error, 3 any other failure
  (see :mod:`influx_archive.archive.errors`); :func:`main` is the one place that maps errors to
  messages and codes. Messages are one line naming the file (and offset); ``--debug`` shows the
  traceback as well.
* influxd's single-dash long flags are accepted verbatim (``-database telegraf``, ``-metadir /x``,
  ``-db``, ``-rp``), so runbook lines paste as they are.
* ``--quiet`` / ``--debug`` may appear anywhere on the line. Progress bars go to stderr, only when
  stderr is a terminal.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

import typer

try:  # typer >= 0.20 vendors its own click; older releases use the click package
    from typer import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the installed typer
    import click  # type: ignore[no-redef]

from ..archive.errors import EXIT_FAILURE, EXIT_USAGE, ArchiveError
from .progress import ProgressBars

app = typer.Typer(
    name="influx-archive",
    help="Offline toolkit for InfluxDB 1.x backups and data directories (daemon stopped, no influxd needed).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Offline toolkit for InfluxDB 1.x backups and data directories (daemon stopped, no influxd needed).

    Exit codes: 0 ok, 1 damaged input or failed check, 2 usage error, 3 other failure.
    --quiet hides progress bars, --debug shows tracebacks; both may appear anywhere.
    """


class State:
    debug = False
    quiet = False


def progress_bars() -> ProgressBars:
    """A progress callback that draws tqdm bars on stderr (or nothing when quiet / not a TTY);
    use it as a context manager so the bars are closed whatever happens."""
    return ProgressBars(enabled=not State.quiet and sys.stderr.isatty())


def emit_json(obj) -> None:
    import json

    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def report_findings(findings) -> None:
    """Findings of a verb that went on (warnings; with --salvage, what was left out) on stderr."""
    for f in findings:
        sys.stderr.write(f"influx-archive: {f}\n")


def run_plan(plan, execute, *, dry_run: bool, json_out: bool, plan_text):
    """The planned verbs' common flow: print the plan's warnings; with ``dry_run`` render the plan
    (text or JSON) and return None; otherwise run ``execute(plan, progress=bars)`` and return its
    result."""
    for w in plan.warnings:
        sys.stderr.write(f"influx-archive: warning: {w}\n")
    if dry_run:
        if json_out:
            emit_json({"dry_run": True, "plan": plan.to_dict()})
        else:
            sys.stdout.write(plan_text(plan) + "\n(dry run: nothing written)\n")
        return None
    with progress_bars() as bars:
        return execute(plan, progress=bars)


SALVAGE_HELP = (
    "Keep every intact point of a damaged source: skip truncated tar members, unreadable files and "
    "blocks whose CRC fails, keep the rest, and list exactly what was left out. Without it a damaged "
    "source is refused."
)


# Register the verbs (each module adds its commands to ``app``).
from . import convert_cmd, dump_cmd, export_cmd, inspect_cmd, pack_cmd, restore_cmd, verify_cmd  # noqa: E402,F401
from . import tsi_cmd  # noqa: E402,F401


def _long_options(command: click.Command) -> set[str]:
    names: set[str] = set()
    stack = [command]
    while stack:
        cmd = stack.pop()
        for p in cmd.params:
            for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", []):
                if opt.startswith("--"):
                    names.add(opt)
        stack.extend(getattr(cmd, "commands", {}).values())
    return names


def normalize_argv(argv: list[str], long_options: set[str]) -> list[str]:
    """Rewrite influxd-style ``-name`` into ``--name`` when ``--name`` is an option we have.

    Also accepts influxd's ``-flag=value`` form. Everything after ``--`` is left alone.
    """
    out: list[str] = []
    passthrough = False
    for arg in argv:
        if passthrough or arg == "--":
            passthrough = True
            out.append(arg)
            continue
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and arg[1].isalpha():
            name, eq, value = arg.partition("=")
            if "--" + name[1:] in long_options:
                out.append("--" + name[1:] + eq + value)
                continue
        out.append(arg)
    return out


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: run the app, map every error to a one-line message and exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    State.debug = "--debug" in args
    State.quiet = "--quiet" in args or "-q" in args
    args = [a for a in args if a not in ("--debug", "--quiet")]
    command = typer.main.get_command(app)
    args = normalize_argv(args, _long_options(command))
    try:
        rc = command.main(args=args, prog_name="influx-archive", standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("influx-archive: interrupted\n")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except click.ClickException as exc:  # usage errors: one line, like every other error
        sys.stderr.write(f"influx-archive: error: {exc.format_message()}\n")
        sys.exit(EXIT_USAGE if exc.exit_code == 2 else exc.exit_code)
    except ArchiveError as exc:
        if State.debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"influx-archive: error: {exc}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("influx-archive: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error of ours.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - last resort: still one line, code 3
        if State.debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(
            f"influx-archive: error: unexpected {exc.__class__.__name__}: {exc} (re-run with --debug for details)\n"
        )
        sys.exit(EXIT_FAILURE)
    if rc == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into a silent return code 130
        sys.stderr.write("influx-archive: interrupted\n")
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
