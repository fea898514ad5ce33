"""``influx-archive`` console entry point: run the app.

The app, its state, the shared rendering helpers and the mapping of errors to messages and exit
codes are in :mod:`influx_archive.cli.app`; each ``*_cmd.py`` adds its commands to that app when
it is imported, which happens when its verb is run (:mod:`influx_archive.cli.verbs` says which
module has which verb; ``verbs.load_all()`` registers them all).
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def _terminated_at_start_up(signum, frame) -> None:
    """SIGTERM while the app is still being imported: nothing is open or written yet. Say so and
    exit 143 as a SIGTERM later in the run does (the default action would end the process
    without a word, by the signal); ``app.run`` installs the run's own handler."""
    os.write(2, b"influx-archive: terminated (SIGTERM); nothing was left half-written\n")
    os._exit(143)


# only where this process is the command (the console script, ``python -c``/``-m`` running it):
# a program importing the package, a test runner say, keeps its own SIGTERM behaviour
if (
    os.path.basename(sys.argv[0] if sys.argv else "") in ("influx-archive", "-c", "main.py")
    and threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
):
    signal.signal(signal.SIGTERM, _terminated_at_start_up)

from .collector import paused_collector  # noqa: E402  (after the handler: it covers the imports)

# Start-up: importing typer and the app creates ~17k tracked objects (modules, classes, functions:
# they live as long as the process) and no cyclic garbage worth collecting. The cycle collector
# would walk them again and again, then once more on its first pass after the import (~5 ms of
# every run, more than the import itself spends elsewhere on some verbs): it is paused meanwhile,
# and what the import made is frozen (gc.freeze: left out of every later pass) before the collector
# is restored as found. app.run pauses it again while the verb's own modules are imported.
with paused_collector(freeze=True):
    from typing import Optional

    from .app import run


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: run the app on ``argv`` (default ``sys.argv[1:]``) and exit with its
    code (see :mod:`influx_archive.cli.app`)."""
    run(argv, leaving=argv is None)


if __name__ == "__main__":
    main()
