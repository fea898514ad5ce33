"""``influx-archive`` console entry point: run the app.

The app, its state, the shared rendering helpers and the mapping of errors to messages and exit
codes are in :mod:`influx_archive.cli.app`; each ``*_cmd.py`` adds its commands to that app when
it is imported, which happens when its verb is run (:mod:`influx_archive.cli.verbs` says which
module has which verb; ``verbs.load_all()`` registers them all).
"""

from __future__ import annotations

from .collector import paused_collector

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
