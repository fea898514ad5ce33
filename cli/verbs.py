"""Which module defines each verb, and its one-line help, so that a run imports one command module.

``influx-archive verify X`` imports ``cli/verify_cmd.py`` and nothing of the other verbs (their
modules, their operations, the libraries only they use): start-up is most of what a small run
costs. ``--help`` lists every verb from :data:`VERBS` without importing any command module.

:data:`VERBS` is in the order ``--help`` lists the verbs. ``help`` is the first paragraph of the
verb's docstring (what ``--help`` shows, shortened to the terminal's width) and ``hidden`` its
``hidden=`` flag: tests/test_startup.py holds both, and the list of verbs, equal to the commands
the modules really register, so a verb added, renamed or re-documented without its line here
fails a test. A new verb: add its module and a line here.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple


class Verb(NamedTuple):
    name: str
    module: str  # the command module (under influx_archive.cli) whose import registers the verb
    help: str  # the first paragraph of its docstring, on one line
    hidden: bool = False


VERBS: tuple[Verb, ...] = (
    Verb("version", "app", "Print the version of influx-archive."),
    Verb("convert", "convert_cmd", "Write SRC as a legacy or portable backup in DEST, offline."),
    Verb("trim", "convert_cmd", "Copy SRC keeping exactly the points with start <= t <= end, in SRC's format."),
    Verb("backup", "backup_cmd",
         "Back up a running influxd (--host) or a stopped server root, as influxd lays out backups."),
    Verb("dump-tsm", "dump_cmd",
         "Header, index and (with --blocks) blocks of one TSM file (.tsm), like influx_inspect dumptsm."),
    Verb("dump-wal", "dump_cmd",
         "Entries of one WAL segment (_NNNNN.wal): writes (keys, value counts), deletes, delete-ranges, damage."),
    Verb("export", "export_cmd", "Write SRC's points as line protocol with nanosecond timestamps."),
    Verb("inspect", "inspect_cmd", "Summarise databases, retention policies, shards, users and CQs of PATH."),
    Verb("pack", "pack_cmd",
         "Seal a backup into one zstd-compressed tar with a manifest of every file's size and sha256."),
    Verb("unpack", "pack_cmd",
         "Restore the backup directory from a sealed archive, checking every file's size and sha256."),
    Verb("report", "parity_cmd",
         "Per shard: files, series, time range; per database: series cardinality, like influx_inspect report."),
    Verb("deletetsm", "parity_cmd", "Remove a measurement (or keys with non-printable names) from TSM files "
         "offline, like influx_inspect deletetsm."),
    Verb("verify-seriesfile", "parity_cmd", "Check tsi1 series files (<db>/_series), like influx_inspect "
         "verify-seriesfile; exit 1 if one is damaged."),
    Verb("dumptsm", "parity_cmd",
         "Alias of dump-tsm (influx_inspect dumptsm's flags: -index -blocks -all -filter-key).", hidden=True),
    Verb("dumptsi", "parity_cmd",
         "Alias of dump-tsi (influx_inspect dumptsi's -series-file -series -measurements).", hidden=True),
    Verb("rebuild-meta", "rebuild_cmd",
         "Write a meta.db from a data directory alone, when the metastore is lost (influxd stopped)."),
    Verb("restore", "restore_cmd",
         "Restore SRC offline into --metadir/--datadir (influxd must be stopped), or online with --host."),
    Verb("build-tsi", "tsi_cmd",
         "Build the tsi1 index (index/ and _series) of shards offline; influxd must be stopped."),
    Verb("buildtsi", "tsi_cmd", "Alias of build-tsi (influx_inspect's spelling).", hidden=True),
    Verb("dump-tsi", "tsi_cmd", "Series file and tsi1 index summary, like influx_inspect dumptsi."),
    Verb("verify", "verify_cmd",
         "Check everything that can be checked without a server; list every problem found."),
)

BY_NAME: dict[str, Verb] = {v.name: v for v in VERBS}


def load_verb(name: str) -> bool:
    """Import the module that registers verb ``name`` on the app; False for a name that is no verb."""
    verb = BY_NAME.get(name)
    if verb is None:
        return False
    importlib.import_module(f"{__package__}.{verb.module}")
    return True


def load_all() -> None:
    """Register every verb (tests and tools that walk the whole command tree)."""
    for module in dict.fromkeys(v.module for v in VERBS):
        importlib.import_module(f"{__package__}.{module}")
