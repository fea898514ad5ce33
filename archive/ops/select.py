"""Which part of a backup a verb works on: ``--database/--retention/--shard`` filters and the
``--newdb/--newrp`` renames, applied to the metastore and to shard placement.

influxd's own rules differ per restore mode (docs/formats.md): its offline restore
replaces the whole metastore whatever the filters say, its portable restore drops users, grants
and continuous queries. Here one rule serves every verb:

* no filter: the whole metastore (every database, user, CQ, subscription);
* ``--database D``: only D, with its RPs, shard groups, CQs and subscriptions; users that are
  admins or hold a privilege on D, their privileges reduced to D;
* ``--retention R`` (needs ``--database``): only R of D; R becomes D's default RP when D's default
  is not restored (as influxd's ``-rp`` import does);
* ``--shard N``: only the shard group holding shard N (and only that shard);
* ``--newdb`` / ``--newrp`` rename D / R everywhere (metastore, grants, directories). Continuous
  query texts are kept verbatim: they name their databases inside the statement, so a renamed
  database's CQs still read and write the old name (reported as a warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...meta.model import Data, DatabaseInfo, UserInfo
from ..errors import UsageError

#: NAME_MAX: the longest directory name (in bytes) Linux file systems take; a database or
#: retention policy name becomes one (``<datadir>/<db>/<rp>/<shard>``)
MAX_NAME_BYTES = 255


def name_problem(value: str) -> str | None:
    """Why ``value`` (a database or retention policy name) cannot be a directory name, or None."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        return "is not a usable name"
    try:
        size = len(value.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        return "is not a usable name (not valid UTF-8)"
    if size > MAX_NAME_BYTES:
        return f"is {size} bytes long (UTF-8); a directory name holds at most {MAX_NAME_BYTES} bytes"
    return None


def shown_name(value: str) -> str:
    """A database or retention policy name in a usage message: quoted and escaped, cut at 40
    characters (a refused name may be thousands long)."""
    return f"{value[:40]!r}..." if len(value) > 40 else repr(value)


@dataclass(frozen=True)
class Selection:
    database: str | None = None
    retention: str | None = None
    shard: int | None = None
    newdb: str | None = None
    newrp: str | None = None

    def __post_init__(self) -> None:
        if self.newdb is not None and self.database is None:
            raise UsageError("--newdb needs --database (the database to rename)")
        if self.newrp is not None and self.retention is None:
            raise UsageError("--newrp needs --retention (the retention policy to rename)")
        if self.retention is not None and self.database is None:
            raise UsageError("--retention needs --database")
        for name, value in (("--newdb", self.newdb), ("--newrp", self.newrp)):
            why = None if value is None else name_problem(value)
            if value is not None and why is not None:
                raise UsageError(f"{name} {shown_name(value)} {why}")

    @property
    def filtered(self) -> bool:
        return self.database is not None or self.shard is not None

    def target_names(self, database: str, retention_policy: str) -> tuple[str, str]:
        """Where (database, RP) of the source lands after the renames."""
        db = self.newdb if self.newdb is not None and database == self.database else database
        rp = retention_policy
        if self.newrp is not None and database == self.database and retention_policy == self.retention:
            rp = self.newrp
        return db, rp

    def keeps(self, database: str, retention_policy: str, shard_id: int | None = None) -> bool:
        if self.database is not None and database != self.database:
            return False
        if self.retention is not None and retention_policy != self.retention:
            return False
        return not (self.shard is not None and shard_id is not None and shard_id != self.shard)


@dataclass
class SelectedMeta:
    data: Data
    warnings: list[str] = field(default_factory=list)


def select_meta(meta: Data, sel: Selection, *, origin: str = "the backup") -> SelectedMeta:
    """The metastore reduced to ``sel`` and renamed, as a new :class:`Data` (``meta`` untouched).

    Raises :class:`UsageError` when a named database, RP or shard is not in ``meta``."""
    out = meta.copy()
    warnings: list[str] = []
    if sel.database is not None and out.database(sel.database) is None:
        have = ", ".join(db.name for db in out.databases) or "none"
        raise UsageError(f"database {sel.database!r} is not in {origin} (it has: {have})")
    if sel.shard is not None and not any(
        ref.shard.id == sel.shard and sel.keeps(ref.db.name, ref.rp.name) for ref in out.iter_shards()
    ):
        raise UsageError(f"shard {sel.shard} is not in {origin}" + (f" under {sel.database}" if sel.database else ""))

    kept: list[DatabaseInfo] = []
    for db in out.databases:
        if sel.database is not None and db.name != sel.database:
            continue
        if sel.retention is not None:
            if db.retention_policy(sel.retention) is None:
                have = ", ".join(rp.name for rp in db.retention_policies) or "none"
                raise UsageError(
                    f"retention policy {sel.retention!r} is not in database {db.name!r} of {origin} (it has: {have})"
                )
            db.retention_policies = [rp for rp in db.retention_policies if rp.name == sel.retention]
        if sel.shard is not None:
            for rp in db.retention_policies:
                rp.shard_groups = [g for g in rp.shard_groups if any(s.id == sel.shard for s in g.shards)]
                for g in rp.shard_groups:
                    g.shards = [s for s in g.shards if s.id == sel.shard]
            db.retention_policies = [rp for rp in db.retention_policies if rp.shard_groups]
            if not db.retention_policies:
                continue
        names = {rp.name for rp in db.retention_policies}
        if db.default_retention_policy not in names and db.retention_policies:
            db.default_retention_policy = db.retention_policies[0].name
        new_db = sel.target_names(db.name, "")[0]
        for rp in db.retention_policies:
            new_rp = sel.target_names(db.name, rp.name)[1]
            if db.default_retention_policy == rp.name:
                db.default_retention_policy = new_rp
            rp.name = new_rp
        if new_db != db.name and db.continuous_queries:
            warnings.append(
                f"continuous queries of {db.name} ({', '.join(cq.name for cq in db.continuous_queries)}) are kept "
                f"under {new_db} with their text unchanged: they still name database {db.name}; recreate them if needed"
            )
        db.name = new_db
        kept.append(db)
    out.databases = kept

    if sel.filtered:
        src_db = sel.database
        users: list[UserInfo] = []
        for u in out.users:
            privs = [p for p in u.privileges if src_db is None or p.database == src_db]
            if not u.admin and not privs:
                continue
            for p in privs:
                p.database = sel.target_names(p.database, "")[0]
            u.privileges = privs
            users.append(u)
        out.users = users
    return SelectedMeta(out, warnings)


def max_ids(data: Data) -> tuple[int, int]:
    """(highest shard-group id, highest shard id) used or recorded in ``data``."""
    sg = data.max_shard_group_id
    sh = data.max_shard_id
    for ref in data.iter_shards():
        sg = max(sg, ref.group.id)
        sh = max(sh, ref.shard.id)
    for db in data.databases:
        for rp in db.retention_policies:
            for g in rp.shard_groups:
                sg = max(sg, g.id)
    return sg, sh


def window_overlaps(group: tuple[int | None, int | None], start: int | None, end: int | None) -> bool:
    """Whether a shard group ``(start, end)`` (start inclusive, end exclusive, as
    :func:`~influx_archive.meta.model.shard_group_range` gives it; ``None`` = unknown) may hold
    points with ``start <= t <= end`` (inclusive; ``None`` = unbounded). Unknown ranges overlap."""
    g_start, g_end = group
    if g_start is None or g_end is None:
        return True
    if start is not None and g_end - 1 < start:
        return False
    return not (end is not None and g_start > end)


def window_inside(group: tuple[int | None, int | None], start: int | None, end: int | None) -> bool:
    """Whether every time a shard group can hold lies in ``[start, end]`` (so nothing of it is cut);
    an unknown range is inside only an unbounded window."""
    if start is None and end is None:
        return True
    g_start, g_end = group
    if g_start is None or g_end is None:
        return False
    return (start is None or g_start >= start) and (end is None or g_end - 1 <= end)
