"""``influx-archive`` console entry point: register every verb on the app and run it.

The app, its state, the shared rendering helpers and the mapping of errors to messages and exit
codes are in :mod:`influx_archive.cli.app`; each ``*_cmd.py`` adds its commands to that app.
"""

from __future__ import annotations

from typing import Optional

# Importing a command module registers its commands on ``app.app``.
# (in this order: it is the order ``--help`` lists them in).
from . import (  # noqa: F401
    backup_cmd,
    convert_cmd,
    dump_cmd,
    export_cmd,
    inspect_cmd,
    pack_cmd,
    parity_cmd,
    rebuild_cmd,
    restore_cmd,
    tsi_cmd,
    verify_cmd,
)
from .app import run


def main(argv: Optional[list[str]] = None) -> None:
    """Console entry point: run the app on ``argv`` (default ``sys.argv[1:]``) and exit with its
    code (see :mod:`influx_archive.cli.app`)."""
    run(argv, leaving=argv is None)


if __name__ == "__main__":
    main()
