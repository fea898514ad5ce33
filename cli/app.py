"""The ``influx-archive`` Typer app, its run state and what every verb shares: rendering
(:func:`say`, :func:`emit_json`, :func:`report_findings`, :func:`run_plan`) and :func:`run`,
the one place that turns errors into messages and exit codes.

Every ``*_cmd.py`` imports this module and adds its commands to :data:`app`; ``cli/main.py``
only registers them and calls :func:`run`. This module imports no command module (no cycle).

Conventions every verb follows:

* exit codes: 0 ok, 1 damaged input / failed check, 2 usage error, 3 any other failure,
  4 ``--salvage`` finished but left data out, 5 target busy, 143 SIGTERM (everything written so
  far removed on the way out), 130 Ctrl-C (see :mod:`influx_archive.archive.errors`).
* standard output closed by its reader (``| head``) ends the run quietly with exit 0. Messages are
  one line naming the file (and offset); ``--debug`` shows the traceback and the chain of causes
  (``raise ... from exc``) as well.
* with ``--json`` a failure also prints ``{"error": {"code": ..., "exit_code": ..., "message": ...,
  "path": ..., "member": ..., "offset": ..., "field": ...}}`` on standard output (unless the verb
  already printed its JSON document, which then describes the damage itself); ``code`` is the
  error's stable identifier (the list is in :mod:`influx_archive.archive.errors`). The one-line
  message on stderr is printed either way.
* influxd's single-dash long flags are accepted verbatim (``-database telegraf``, ``-metadir /x``,
  ``-db``, ``-rp``), so runbook lines paste as they are.
* ``--quiet`` / ``--debug`` may appear anywhere on the line. Progress bars go to stderr, only when
  stderr is a terminal.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import traceback
from typing import Optional

import typer
from typer.core import TyperCommand, TyperGroup

try:  # typer >= 0.20 vendors its own click; older releases use the click package
    from typer import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the installed typer
    import click  # type: ignore[no-redef,import-not-found]

from ..archive.errors import (
    CODE_INTERRUPTED,
    CODE_TERMINATED,
    CODE_UNEXPECTED,
    CODE_USAGE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_SALVAGED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    ArchiveError,
    display_path,
    display_text,
    escape,
)
from .collector import paused_collector
from .flags import check_habits, explain_unknown
from .inspect_flags import map_inspect_flags
from .progress import ProgressBars
from .verbs import BY_NAME, VERBS, load_all, load_verb

ROOT_HELP = """Offline toolkit for InfluxDB 1.x backups and data directories (daemon stopped, no influxd needed).

Exit codes: 0 ok; 1 damaged input or a failed check; 2 usage error; 3 any other failure
(unsupported input, a full disk, a permission problem, a target that exists); 4 --salvage finished
but left damaged data out; 5 target busy (another run, or a running influxd); 130 Ctrl-C; 143 SIGTERM.

--quiet/-q hides progress bars and --debug adds tracebacks; both may appear anywhere on the line.
influxd's and influx_inspect's single-dash flags work (-database, -datadir, ...).
Run 'influx-archive VERB --help' for a verb's options and an example.
"""

class _VerbGroup(TyperGroup):
    """The root command: a verb's module is imported when the verb is looked up (see
    :mod:`.verbs`), and ``--help`` describes the verbs not imported from their :data:`~.verbs.VERBS`
    line, so a run imports only its own verb's module."""

    _describing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [v.name for v in VERBS] + [n for n in self.commands if n not in BY_NAME]

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        cmd = self.commands.get(cmd_name)
        verb = BY_NAME.get(cmd_name)
        if cmd is not None or verb is None:
            return cmd
        if self._describing:  # the root --help: the verb's line, without importing its module
            return TyperCommand(verb.name, help=verb.help, hidden=verb.hidden)
        load_verb(cmd_name)
        registered = typer.main.get_command(app)
        for name, c in getattr(registered, "commands", {}).items():
            self.commands.setdefault(name, c)
        _guard_commands(self)
        _plain_metavars(self)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._describing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._describing = False

    def resolve_command(self, ctx: click.Context, args: list[str]):
        # typer suggests among the commands built; suggest among every verb instead
        suggest, self.suggest_commands = self.suggest_commands, False
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.UsageError as exc:
            if suggest and args:
                import difflib

                matches = difflib.get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    exc.message = exc.message.rstrip(".") + ". Did you mean " + ", ".join(map(repr, matches)) + "?"
            raise
        finally:
            self.suggest_commands = suggest


app = typer.Typer(
    name="influx-archive",
    cls=_VerbGroup,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def tool_version() -> str:
    """The version of influx-archive (the distribution's: pyproject.toml reads the same constant)."""
    from ..archive import __version__

    return __version__


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"influx-archive {tool_version()}\n")
        raise typer.Exit(0)


@app.callback(help=ROOT_HELP)
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars (anywhere on the line)."),
    debug: bool = typer.Option(False, "--debug", help="Tracebacks and the chain of causes on failure (anywhere)."),
) -> None:
    """(the root help is ROOT_HELP; --quiet and --debug are taken off the line before parsing)"""


def example(*lines: str) -> str:
    """A verb's epilog: its example command lines, kept as written (click's ``\\b``: no rewrap)."""
    return "\b\nExample" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {ln}" for ln in lines)


@app.command(epilog=example("influx-archive version", "influx-archive --version"))
def version() -> None:
    """Print the version of influx-archive."""
    sys.stdout.write(f"influx-archive {tool_version()}\n")


class State:
    debug = False
    quiet = False
    json = False  # the verb was asked for --json: a failure is also reported as a JSON document
    json_written = False  # the verb printed its JSON document already
    left_out = False  # a verb went on past damage (--salvage) and left data out: exit 4
    terminated = False  # SIGTERM arrived: the run is unwinding
    verb: Optional[str] = None  # the command running (progress bars are labelled by it)


def note_left_out(findings) -> None:
    """Record that what was written lacks data (error findings of a --salvage run): the process
    then exits with EXIT_SALVAGED instead of 0, so scripts notice."""
    for f in findings:
        severity = f.get("severity") if isinstance(f, dict) else getattr(f, "severity", None)
        if severity == "error":
            State.left_out = True


def progress_bars() -> ProgressBars:
    """A progress callback that draws tqdm bars on stderr (or nothing when quiet / not a TTY);
    use it as a context manager so the bars are closed whatever happens."""
    return ProgressBars(enabled=not State.quiet and sys.stderr.isatty(), verb=State.verb)


def emit_json(obj) -> None:
    if isinstance(obj, dict) and isinstance(obj.get("findings"), list):
        note_left_out(obj["findings"])
    State.json_written = True
    import json  # --json runs only (start-up)

    text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        # a name that is not UTF-8 (kept as lone surrogates): JSON's own \\udcXX escapes
        sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=True) + "\n")


def say(text: str) -> None:
    """One line on stderr: ``text`` escaped (names read from files cannot add lines)."""
    sys.stderr.write(f"influx-archive: {escape(display_text(text))}\n")


def report_findings(findings) -> None:
    """Findings of a verb that went on (warnings; with --salvage, what was left out) on stderr."""
    note_left_out(findings)
    for f in findings:
        say(finding_line(f))
        if getattr(f, "severity", None) == "error":
            State.left_out = True


def finding_line(f) -> str:
    """A finding of a run that went on: damage it left out (--salvage) is a ``warning:`` (the run
    did not fail; exit 4 says data was left out), never an ``error:``."""
    text = str(f)
    if getattr(f, "severity", None) == "error":
        return "warning: " + text[len("error: "):]
    return text


def run_plan(plan, execute, *, dry_run: bool, json_out: bool, plan_text):
    """The planned verbs' common flow: print the plan's warnings; with ``dry_run`` render the plan
    (text or JSON) and return None; otherwise run ``execute(plan, progress=bars)`` and return its
    result."""
    for w in plan.warnings:
        say(f"warning: {w}")
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


# ---------------------------------------------------------------------------------------------
# Running the app: argv as influxd spells it, closed pipes, signals, errors -> messages and codes.


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


def _other_verbs_spelling(argv: list[str], long_options: set[str]) -> bool:
    """Whether ``argv`` has a single-dash ``-name`` (before ``--``) that :func:`normalize_argv`
    leaves alone because no option imported so far is ``--name``."""
    for arg in argv:
        if arg == "--":
            return False
        if (arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and arg[1].isalpha()
                and "--" + arg[1:].partition("=")[0] not in long_options):
            return True
    return False


class _StdoutClosed(Exception):
    """Standard output's reader went away (``| head``): not an error of ours. Raised in place of
    BrokenPipeError inside the command, before click's own EPIPE handler (which exits 1) sees it."""


def _guard_commands(command: click.Command) -> None:
    """Wrap every command's callback once: a closed stdout becomes :class:`_StdoutClosed`, and a
    ``--json`` run is noted in :class:`State` (its failure is then reported as JSON too)."""
    stack = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        cb = cmd.callback
        if cb is None or getattr(cb, "_pipe_guarded", False):
            continue

        @functools.wraps(cb)
        def guarded(*a, __cb=cb, __name=cmd.name, **kw):
            State.verb = __name
            if kw.get("json_out"):
                State.json = True
            try:
                return __cb(*a, **kw)
            except BrokenPipeError:
                raise _StdoutClosed() from None

        guarded._pipe_guarded = True  # type: ignore[attr-defined]
        cmd.callback = guarded


def _plain_metavars(command: click.Command) -> None:
    """Usage lines say ``SRC DEST`` (``[W]`` when optional, ``SRC...`` for several), not typer's
    ``{src} {dest}``."""
    stack = [command]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for p in cmd.params:
            if getattr(p, "param_type_name", "") != "argument" or getattr(p, "_plain_metavar", False):
                continue
            var = (p.metavar or p.name or "").upper() + ("..." if p.nargs != 1 else "")
            shown = var if p.required else f"[{var}]"
            p.metavar = (p.metavar or p.name or "").upper()  # "Missing argument 'SRC'"
            p.make_metavar = lambda ctx=None, usage=False, __v=shown: __v  # type: ignore[method-assign,misc]
            p._plain_metavar = True  # type: ignore[attr-defined]


def _quiet_exit_closed_stdout() -> None:
    """Point fd 1 at /dev/null (so the interpreter's final flush cannot fail) and exit 0."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.close(fd)
    except OSError:
        pass
    sys.exit(0)


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` runs on the way out: the
    temporaries beside the target and the private spools go with it (a BaseException, so no
    ``except Exception`` swallows it)."""


_MAIN_PID = os.getpid()


def _raise_terminated() -> None:
    raise _Terminated()


def _on_sigterm(signum, frame) -> None:
    if os.getpid() != _MAIN_PID:  # a forked worker: the parent does the cleaning up
        os._exit(EXIT_TERMINATED)
    State.terminated = True  # whatever error the unwinding meets (a closed spool...), this is why
    from ..archive.cleanup import defer_if_cleaning

    if not defer_if_cleaning(_raise_terminated):  # never in the middle of a rename or a cleanup
        raise _Terminated()


def _unraisable(hook):
    """``sys.unraisablehook`` for the run: a SIGTERM whose handler ran inside a weakref callback
    or a ``__del__`` (an import lock's, say) raised where Python can only print it ("Exception
    ignored in ...", a traceback) and drops it, and the run went on. It is sent again instead, to
    be acted on at the next step of the run; anything else goes to ``hook``."""
    def handle(unraisable) -> None:
        if isinstance(unraisable.exc_value, _Terminated) and os.getpid() == _MAIN_PID:
            # from another thread, so the handler runs when the main thread next can, outside this
            # hook (signal.raise_signal would run it here, where raising is printed again)
            threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM), daemon=True).start()
            return
        hook(unraisable)
    return handle


def _exit_if_terminated() -> None:
    """An error met while unwinding from SIGTERM (a spool closed under a worker's read, ...) is
    not the outcome: the run was terminated, and everything written so far was removed."""
    if State.terminated:
        sys.stderr.write("influx-archive: terminated (SIGTERM); nothing was left half-written\n")
        sys.exit(EXIT_TERMINATED)


def _show_debug(exc: BaseException) -> None:
    """``--debug``: the traceback (Python prints the chained causes in it), then one line per
    cause, outermost first, so the chain is readable without the frames."""
    traceback.print_exc()
    seen = {id(exc)}
    cause = exc.__cause__ if exc.__cause__ is not None else (None if exc.__suppress_context__ else exc.__context__)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        say(f"debug: caused by {cause.__class__.__name__}: {cause}")
        cause = cause.__cause__ if cause.__cause__ is not None else (
            None if cause.__suppress_context__ else cause.__context__)


def _json_error(code: str, exit_code: int, message: str, exc: Optional[BaseException] = None) -> None:
    """With ``--json`` (and no JSON document printed yet) the failure as a JSON document on stdout;
    ASCII only, so nothing read from a file can reach the terminal raw."""
    if not State.json or State.json_written:
        return
    err: dict = {"code": code, "exit_code": exit_code, "message": display_text(message)}
    if isinstance(exc, ArchiveError):  # the message without its location, which gets fields of its own
        err.update(message=display_text(exc.message), path=display_path(exc.path), member=exc.member,
                   offset=exc.offset, field=exc.field)
    import json

    try:
        sys.stdout.write(json.dumps({"error": err}, indent=2, ensure_ascii=True) + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):  # stdout gone: the stderr line still says it
        pass


def _fail(code: str, exit_code: int, message: str, exc: Optional[BaseException] = None) -> None:
    """The one way a failed run ends: (``--debug``: the chain,) the JSON error, one stderr line."""
    if exc is not None and State.debug:
        _show_debug(exc)
    _json_error(code, exit_code, message, exc)
    say(f"error: {message}")
    sys.exit(exit_code)


def run(argv: Optional[list[str]] = None, *, leaving: bool = False) -> None:
    """Run the app on ``argv`` (default ``sys.argv[1:]``) and exit: every error becomes a
    one-line message and its exit code. Whatever happens, no sealed archive's spool directory is
    left behind. The commands must be registered first (``cli/main.py`` does). ``leaving``: the
    process exits after this (the console script), so a SIGTERM from here on is ignored."""
    from ..archive.cleanup import remove_temporaries

    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main_thread else None
    hook = sys.unraisablehook
    sys.unraisablehook = _unraisable(hook)
    try:
        try:
            _run(argv)
        except _Terminated:  # after the verb's own handling: while its outcome was being reported
            sys.stderr.write("influx-archive: terminated (SIGTERM); nothing was left half-written\n")
            sys.exit(EXIT_TERMINATED)
    finally:
        if main_thread:  # the outcome is decided: a SIGTERM now (at exit) has nothing left to stop
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            remove_temporaries()
        finally:
            sys.unraisablehook = hook
            if main_thread and not leaving and before is not None:  # in-process (tests): the caller's handler
                signal.signal(signal.SIGTERM, before)


def _verb_named(args: list[str]) -> Optional[str]:
    """The verb the line runs: its first argument that is not an option (the root's options take
    no value), None when there is none before ``--``."""
    for a in args:
        if a == "--":
            return None
        if not a.startswith("-"):
            return a
    return None


def _run(argv: Optional[list[str]]) -> None:
    global _MAIN_PID
    args = list(sys.argv[1:] if argv is None else argv)
    State.left_out = False
    State.terminated = False
    State.json_written = False
    State.debug = "--debug" in args
    State.quiet = "--quiet" in args or "-q" in args
    args = [a for a in args if a not in ("--debug", "--quiet", "-q")]
    args, notes = map_inspect_flags(args)  # influx_inspect's per-verb flags, before the generic rewrite
    for note in notes:
        say(f"note: {note}")
    verb = _verb_named(args)
    with paused_collector():
        if verb is not None:
            load_verb(verb)  # this verb's module only (see .verbs); any other name: click says "No such command"
        command = typer.main.get_command(app)
    try:
        args = check_habits(command, args, say)
    except ArchiveError as exc:
        _fail(exc.code, exc.exit_code, str(exc), exc)
    long_options = _long_options(command)
    if _other_verbs_spelling(args, long_options):
        # a -name this verb lacks: rewritten (then refused) as --name when another verb has --name,
        # as when every verb was imported, so the message is the same (a line that works never gets here)
        load_all()
        command = typer.main.get_command(app)
        long_options = _long_options(command)
    args = normalize_argv(args, long_options)
    # before parsing, a --json on the line is enough; once parsed, the verb's own option says
    State.json = "--json" in (args[: args.index("--")] if "--" in args else args)
    _guard_commands(command)
    _plain_metavars(command)
    _MAIN_PID = os.getpid()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rc = command.main(args=args, prog_name="influx-archive", standalone_mode=False)
        sys.stdout.flush()
    except (_StdoutClosed, BrokenPipeError):
        _quiet_exit_closed_stdout()
    except _Terminated:
        _json_error(CODE_TERMINATED, EXIT_TERMINATED, "terminated (SIGTERM); nothing was left half-written")
        sys.stderr.write("influx-archive: terminated (SIGTERM); nothing was left half-written\n")
        sys.exit(EXIT_TERMINATED)
    except typer.Abort:
        _json_error(CODE_INTERRUPTED, EXIT_INTERRUPTED, "interrupted")
        sys.stderr.write("influx-archive: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    except typer.Exit as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except click.ClickException as exc:  # usage errors: one line, like every other error
        message = exc.format_message()
        if type(exc).__name__ == "NoSuchOption":  # -datdir: name it and the verb's nearest option
            message = explain_unknown(command, args, getattr(exc, "option_name", None)) or message
        _fail(CODE_USAGE, EXIT_USAGE if exc.exit_code == 2 else exc.exit_code, message)
    except ArchiveError as exc:
        _exit_if_terminated()
        _fail(exc.code, exc.exit_code, str(exc), exc)
    except KeyboardInterrupt:
        _json_error(CODE_INTERRUPTED, EXIT_INTERRUPTED, "interrupted")
        sys.stderr.write("influx-archive: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        _exit_if_terminated()
        _fail(CODE_UNEXPECTED, EXIT_FAILURE,
              f"unexpected {exc.__class__.__name__}: {exc} (re-run with --debug for details)", exc)
    if rc == EXIT_INTERRUPTED:  # typer turns Ctrl-C (KeyboardInterrupt) into a silent return code 130
        _json_error(CODE_INTERRUPTED, EXIT_INTERRUPTED, "interrupted")
        sys.stderr.write("influx-archive: interrupted\n")
    rc = rc if isinstance(rc, int) else 0
    if rc == 0 and State.left_out:
        say(f"--salvage left damaged data out (see the findings listed); exit {EXIT_SALVAGED}")
        rc = EXIT_SALVAGED
    sys.exit(rc)
