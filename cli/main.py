"""``influx-archive`` console entry point: run the app.

The app, its state, the shared rendering helpers and the mapping of errors to messages and exit
codes are in :mod:`influx_archive.cli.app`; each ``*_cmd.py`` adds its commands to that app when
it is imported, which happens when its verb is run (:mod:`influx_archive.cli.verbs` says which
module has which verb; ``verbs.load_all()`` registers them all).
"""

from __future__ import annotations

import gc
from typing import Optional

# Start-up: importing typer and the app creates ~17k tracked objects and no cyclic garbage, which
# the cycle collector would only walk again and again (~2 ms of every run); on again before any run.
_collecting = gc.isenabled()
gc.disable()
try:
    from .app import run
finally:
    if _collecting:
        gc.enable()


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: run the app on ``argv`` (default ``sys.argv[1:]``) and exit with its
    code (see :mod:`influx_archive.cli.app`)."""
    run(argv, leaving=argv is None)


if __name__ == "__main__":
    main()
