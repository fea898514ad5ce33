"""Online restore: any source into a RUNNING influxd, over its snapshotter port (``--host``) and
its HTTP API (``--http``).

The selection, renames and shard placement are the offline restore's
(:func:`~.plan.plan_metastore` with no target metastore); the shard rewrite is the offline
convert's (:func:`~..writeshard.write_shard`). Where influxd's own ``restore -portable/-online``
goes wrong (docs/formats.md#snapshotter-protocol-restore), this does instead:

* the metadata is imported ONE DATABASE AT A TIME with a trimmed payload (that database only, no
  users, no CQs, no deleted shard groups), so it stays far below the ~110 KB that influxd before
  1.8.8 can read in one go, and one existing database does not fail all of them;
* every target database is checked absent on the server before anything is sent;
* each shard is uploaded once, as new TSM files holding its final data: every increment merged,
  tombstones and the WAL applied (the server ignores ``.tombstone`` members, so deleted data would
  come back; colliding file names of several increments would overwrite each other);
* the new shard must be empty before its upload (type-0 listing) and, after the server's EOF, must
  hold exactly the files sent (names, sizes, SHA-256 of a second listing);
* continuous queries (with the database renamed in their text for ``--newdb``) and grants are
  recreated over HTTP; users cannot be (only password hashes exist, and InfluxQL wants the
  password), so they are listed with what to do.

Each database's shards are rewritten into a private spool before its metadata is sent, so a
damaged source stops before that database exists on the server. A failure part-way raises
:class:`OnlineRestoreError`, whose ``report`` says exactly what landed and what did not.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from ....meta.model import Data, DatabaseInfo, Privilege, decode_data, encode_data
from ... import snapshotter_upload as snap
from ...errors import ArchiveError, TargetError, UsageError
from ...progress import ProgressCallback, Reporter
from ...snapshotter import Address
from ...sources import Shard, Source
from ...sources.shardview import open_shard_reader
from ...spools import spool
from ..select import Selection, select_meta
from ..writeshard import write_shard
from .online_cq import quote_ident, rewrite_cq_database
from .online_http import HttpApi, check_version, default_http_url
from .plan import plan_metastore

USER_GUIDANCE = (
    "users cannot be restored online (only their password hashes are stored, and InfluxQL needs the password): "
    "create them with CREATE USER <name> WITH PASSWORD '<password>' (then re-run the GRANTs listed), or restore the "
    "metastore offline (influx-archive restore --metadir/--datadir with influxd stopped), which keeps the hashes"
)

_PRIVILEGE: dict[int, str] = {Privilege.READ: "READ", Privilege.WRITE: "WRITE", Privilege.ALL: "ALL PRIVILEGES"}


class OnlineRestoreError(TargetError):
    """An online restore stopped part-way; ``report`` is what landed and what did not."""

    code = "target.partial"

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class OnlineShard:
    shard: Shard
    retention_policy: str  # target RP
    new_id: int | None = None
    files: int = 0
    bytes: int = 0
    status: str = "planned"  # planned, staged, empty, uploaded, confirmed, failed, not sent
    error: str | None = None

    def to_dict(self) -> dict:
        s = self.shard
        return {
            "source": f"{s.database}/{s.retention_policy}/{s.id}", "retention_policy": self.retention_policy,
            "new_id": self.new_id, "files": self.files, "bytes": self.bytes, "status": self.status,
            "error": self.error,
        }


@dataclass
class Statement:
    what: str  # "continuous query cq1", "grant READ to reader"
    text: str
    status: str = "planned"  # planned, done, failed, not sent
    error: str | None = None

    def to_dict(self) -> dict:
        return {"what": self.what, "statement": self.text, "status": self.status, "error": self.error}


@dataclass
class OnlineDatabase:
    source: str
    target: str
    payload: bytes  # the trimmed metastore sent with type 6
    shard_count: int  # shards in the payload (the id map holds at most this many)
    shards: list[OnlineShard] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)
    status: str = "planned"  # planned, imported, restored, failed, not sent

    def to_dict(self) -> dict:
        return {
            "source": self.source, "target": self.target, "metadata_bytes": len(self.payload),
            "status": self.status, "shards": [s.to_dict() for s in self.shards],
            "statements": [s.to_dict() for s in self.statements],
        }


@dataclass
class OnlinePlan:
    source: Source
    host: str
    addr: Address
    http: str
    server_version: str
    databases: list[OnlineDatabase]
    users: list[dict]  # users of the source not on the server: name, admin, grants
    warnings: list[str] = field(default_factory=list)
    timeout: float = snap.DEFAULT_TIMEOUT

    @property
    def bytes(self) -> int:
        return sum(f.size for d in self.databases for s in d.shards for f in s.shard.effective_files())

    def to_dict(self) -> dict:
        return {
            "source": {"kind": self.source.kind, "path": self.source.display_path},
            "host": self.host, "http": self.http, "server_version": self.server_version,
            "databases": [d.to_dict() for d in self.databases],
            "users_not_restored": self.users,
            "users_guidance": USER_GUIDANCE if self.users else None,
            "warnings": list(self.warnings),
        }


def _trimmed(src_meta: Data, db: DatabaseInfo) -> tuple[bytes, int]:
    """The type-6 payload for ``db`` (already selected and renamed): that database alone, no CQs,
    no deleted shard groups, no users; and the number of shards it holds."""
    one = DatabaseInfo(
        name=db.name, default_retention_policy=db.default_retention_policy, retention_policies=[],
        continuous_queries=[], unknown=b"",
    )
    shards = 0
    for rp in db.retention_policies:
        r = type(rp)(
            name=rp.name, duration=rp.duration, shard_group_duration=rp.shard_group_duration,
            replica_n=rp.replica_n, shard_groups=[g for g in rp.shard_groups if not g.deleted],
            subscriptions=list(rp.subscriptions), unknown=b"",
        )
        shards += sum(len(g.shards) for g in r.shard_groups)
        one.retention_policies.append(r)
    data = Data(
        term=src_meta.term, index=src_meta.index, cluster_id=src_meta.cluster_id, databases=[one], users=[],
        max_node_id=src_meta.max_node_id, max_shard_group_id=src_meta.max_shard_group_id,
        max_shard_id=src_meta.max_shard_id,
    )
    return encode_data(data), shards


def plan_online(
    src: Source, host: str, *, http: str | None = None, selection: Selection = Selection(),
    timeout: float = snap.DEFAULT_TIMEOUT,
) -> OnlinePlan:
    """Decide what an online restore of ``src`` into the server at ``host`` sends. Reads the
    server's metastore (type 1) and asks its HTTP API for its version, databases and users; sends
    nothing that changes the server. Refuses a target database that exists."""
    if src.meta is None:
        raise UsageError(
            "the source has no metastore to restore (expected a legacy or portable backup, or a server root with "
            "meta/meta.db)",
            path=src.path,
        )
    addr = snap.parse_host(host)

    selected = select_meta(src.meta, selection, origin=src.meta_origin or src.path)
    # select_meta warns that CQ texts keep the old name: here they are rewritten
    warnings = [w for w in selected.warnings if not w.startswith("continuous queries of ")]
    if selection.database is None and selected.data.database("_internal") is not None:
        selected.data.databases = [d for d in selected.data.databases if d.name != "_internal"]
        warnings.append(
            "database _internal (influxd's own monitoring) is not restored; name it with --db to restore it"
        )
    for db in selected.data.databases:
        for name in [db.name] + [rp.name for rp in db.retention_policies]:
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(
                    f"database {db.name!r}: the name {name!r} is not valid UTF-8 and cannot be sent over the "
                    "snapshotter's JSON (the server would create another name); restore offline"
                ) from None
            # influxd's ValidName, which its metadata import does not check: such a name would
            # lead the server's shard paths out of its data directory
            if not name.isprintable() or name in ("", ".", "..") or "/" in name or "\\" in name:
                raise UsageError(
                    f"database {db.name!r}: {name!r} is not a name influxd accepts (empty, '.', '..', a slash, a "
                    "backslash or an unprintable character); rename it with --newdb/--newrp"
                )
    meta = plan_metastore(src, selected.data, selection, None, False, warnings, Path(f"{host} (online)"))

    api = HttpApi(http or default_http_url(addr.host), timeout=timeout)
    version = api.version()
    check_version(version, api.url)
    # The snapshotter's databases and HTTP's must be the same set (the same server). Another client
    # creating or dropping a database between the two reads changes the metastore too: read again.
    target = decode_data(snap.fetch_metastore(addr, timeout=timeout), path=f"metastore of {host}")
    for _attempt in range(5):
        on_server = {d.name for d in target.databases}
        http_dbs = set(api.column("SHOW DATABASES"))
        if on_server == http_dbs:
            break
        target = decode_data(snap.fetch_metastore(addr, timeout=timeout), path=f"metastore of {host}")
        if {d.name for d in target.databases} == on_server:
            break  # the metastore did not change meanwhile: HTTP is another server
    if on_server != http_dbs:
        raise UsageError(
            f"{api.url} does not serve the databases the snapshotter at {host} has (HTTP lists "
            f"{len(http_dbs)}, the snapshotter {len(on_server)}): pass the --http URL of the same server, with "
            "INFLUX_USERNAME/INFLUX_PASSWORD of an admin user when authentication is on"
        )
    clash = sorted(d.name for d in selected.data.databases if d.name in on_server)
    if clash:
        raise TargetError(
            f"database {clash[0]!r} already exists on the server at {host}; nothing was sent (restore it under another "
            "name with --db/--newdb, or drop it first)"
        )
    server_users = {u.name for u in target.users}
    renamed = {tdb: sdb for sdb, tdb in meta.databases}
    targets = {d.name for d in selected.data.databases}
    by_db: dict[str, list[OnlineShard]] = {d.name: [] for d in selected.data.databases}
    for sh in src.shards:
        placed = meta.placement.get(sh.key)
        if placed is None:
            if (sh.files or sh.wal) and selection.keeps(*sh.key):
                warnings.append(
                    f"shard {sh.database}/{sh.retention_policy}/{sh.id} has data but no live shard group in the source "
                    "metastore; influxd would never serve it: not restored"
                )
            continue
        tdb, trp, _tid, _into = placed
        if tdb in by_db:
            by_db[tdb].append(OnlineShard(sh, trp))
    now = time.time_ns()
    databases: list[OnlineDatabase] = []
    for db in selected.data.databases:
        payload, count = _trimmed(src.meta, db)
        od = OnlineDatabase(renamed.get(db.name, db.name), db.name, payload, count, by_db[db.name])
        if db.continuous_queries and (selection.retention is not None or selection.shard is not None):
            warnings.append(
                f"continuous queries of {od.source} ({', '.join(cq.name for cq in db.continuous_queries)}) are not "
                "recreated when only part of the database is restored (they may name retention policies left out): "
                "create them by hand if wanted"
            )
        for cq in db.continuous_queries if selection.retention is None and selection.shard is None else []:
            try:
                text = rewrite_cq_database(cq.query, od.source, od.target)
            except ValueError as exc:
                raise UsageError(f"continuous query {cq.name} of {od.source} cannot be read ({exc})") from None
            od.statements.append(Statement(f"continuous query {cq.name}", text))
        for rp in db.retention_policies:
            if rp.duration and any(not g.deleted and g.end_time < now - rp.duration for g in rp.shard_groups):
                warnings.append(
                    f"retention policy {db.name}.{rp.name} keeps {rp.duration // 10**9} s: shard groups older than "
                    "that are dropped by the server's retention service at its next check"
                )
        if count and not any(sh.shard.tsm_layers() or sh.shard.wal for sh in od.shards):
            warnings.append(
                f"database {od.source} is in the backup's metastore but the backup holds none of its shard data: "
                "restored empty"
            )
        databases.append(od)
    users: list[dict] = []
    for u in selected.data.users:
        grants = {p.database: _PRIVILEGE.get(p.privilege, "") for p in u.privileges if p.database in targets}
        grants = {d: p for d, p in grants.items() if p}
        if u.name in server_users:
            for d in databases:
                if d.target in grants:
                    d.statements.append(Statement(
                        f"grant {grants[d.target]} to {u.name}",
                        f"GRANT {grants[d.target]} ON {quote_ident(d.target)} TO {quote_ident(u.name)}",
                    ))
        else:
            users.append({
                "name": u.name, "admin": u.admin, "grants": grants,
                "statements": [f"GRANT {p} ON {quote_ident(d)} TO {quote_ident(u.name)}" for d, p in grants.items()]
                + ([f"GRANT ALL PRIVILEGES TO {quote_ident(u.name)}"] if u.admin else []),
            })
    for d in databases:
        if len(d.payload) > snap.B3_RISK_BYTES:
            warnings.append(
                f"the metadata of database {d.target} is {len(d.payload)} bytes: influxd before 1.8.8 may fail to read "
                "it; if it does, restore offline"
            )
    return OnlinePlan(src, host, addr, api.url, version, databases, users, warnings, timeout)


def execute_online(plan: OnlinePlan, *, progress: ProgressCallback | None = None) -> OnlinePlan:
    """Carry out ``plan``, database by database; the plan comes back with every status filled
    in. Raises :class:`OnlineRestoreError` (with the report) when something did not land."""
    api = HttpApi(plan.http, timeout=plan.timeout)
    rep = Reporter(progress, label="restore")
    rep.start(plan.bytes)
    failed: str | None = None
    first: ArchiveError | None = None
    try:
        for od in plan.databases:
            if failed is not None:
                _mark_not_sent(od)
                continue
            try:
                with spool("online") as work:
                    _restore_database(plan, api, od, Path(work), rep)
            except BaseException as exc:  # an error, or an interruption: the statuses say what landed
                failed = f"database {od.target}: {exc}"
                first = exc if isinstance(exc, ArchiveError) else None
                if od.status == "planned":
                    od.status = "not sent"
                elif od.status not in ("failed", "not sent"):
                    od.status = "failed"
                for s in od.shards:
                    if s.status in ("planned", "staged") or (od.status == "not sent" and s.status == "empty"):
                        s.status = "not sent"
                for st in od.statements:
                    if st.status == "planned":
                        st.status = "not sent"
                if not isinstance(exc, ArchiveError):
                    for later in plan.databases[plan.databases.index(od) + 1:]:
                        _mark_not_sent(later)
                    raise
        if failed is None:
            bad = [(od, st) for od in plan.databases for st in od.statements if st.status == "failed"]
            if bad:
                od, st = bad[0]
                failed = f"database {od.target}: {st.what}: {st.error}" + (
                    f" ({len(bad) - 1} more statements failed)" if len(bad) > 1 else ""
                )
    finally:
        rep.end()
    if failed is not None:
        if first is not None and all(d.status == "not sent" for d in plan.databases):
            raise first  # nothing reached the server: the error as it is (a damaged source exits 1)
        raise OnlineRestoreError(f"online restore incomplete: {failed}", plan.to_dict())
    return plan


def _mark_not_sent(od: OnlineDatabase) -> None:
    od.status = "not sent"
    for s in od.shards:
        s.status = "not sent"
    for st in od.statements:
        st.status = "not sent"


def _restore_database(plan: OnlinePlan, api: HttpApi, od: OnlineDatabase, work: Path, rep: Reporter) -> None:
    src, addr, timeout = plan.source, plan.addr, plan.timeout
    # 1. Every shard's final data as new TSM files, before the server is touched.
    staged: dict[int, list[snap.UploadFile]] = {}
    for i, s in enumerate(od.shards):
        if not s.shard.tsm_layers() and not s.shard.wal:
            s.status = "empty"
            continue
        out = work / str(i)
        out.mkdir()
        with open_shard_reader(src, s.shard, tmpdir=str(work)) as reader:
            written = write_shard(reader, out, 1, 1)
        staged[i] = [snap.UploadFile(w.name, w.path) for w in written]
        s.files, s.bytes = len(written), sum(w.size for w in written)
        s.status = "staged" if written else "empty"
    # 2. The metadata; the id map.
    if snap.database_exists(addr, od.target, timeout=timeout):
        raise TargetError(f"database {od.target!r} appeared on the server meanwhile; not sent")
    try:
        mapping = snap.import_database(addr, od.payload, od.target, max_pairs=od.shard_count, timeout=timeout)
    except BaseException:  # did the database land anyway? (the import may have got through)
        od.status = "failed"
        with contextlib.suppress(ArchiveError):
            if not snap.database_exists(addr, od.target, timeout=timeout):
                od.status = "not sent"
        raise
    created = snap.database_exists(addr, od.target, timeout=timeout)
    if not created:
        od.status = "not sent"
        raise TargetError(f"the server did not import database {od.target!r} (see its log)")
    od.status = "imported"
    if od.target not in api.column("SHOW DATABASES"):
        raise TargetError(f"{api.url} does not list database {od.target!r} just imported: not the same server")
    # 3. One upload per shard, confirmed. (Every shard of the database exists on the server, empty,
    # from the import on: the report names them all.)
    for s in od.shards:
        s.new_id = mapping.get(s.shard.id)
    for i, s in enumerate(od.shards):
        new = s.new_id
        if s.status == "empty":
            continue
        if new is None:
            s.status = "failed"
            s.error = "the server's id map does not name this shard"
            raise TargetError(f"shard {s.shard.id}: {s.error}")
        try:
            _upload_one(addr, od.target, s, new, staged[i], timeout, rep, str(work))
        except BaseException as exc:  # also an interruption: this shard may hold part of its data
            s.status = "failed"
            s.error = exc.message if isinstance(exc, ArchiveError) else f"interrupted ({type(exc).__name__})"
            raise
    od.status = "restored"
    # 4. CQs and grants over HTTP (a failure is recorded; the others are still tried).
    for st in od.statements:
        try:
            res = api.query(st.text)
        except TargetError as exc:
            st.status, st.error = "failed", exc.message
            continue
        err = next((r["error"] for r in res if isinstance(r, dict) and "error" in r), None)
        st.status, st.error = ("failed", str(err)) if err else ("done", None)


def _upload_one(
    addr: Address, db: str, s: OnlineShard, new: int, files: list[snap.UploadFile], timeout: float,
    rep: Reporter, work: str,
) -> None:
    before = snap.list_shard(addr, new, work, timeout=timeout)
    if before:
        raise TargetError(f"shard {new} on the server already holds {len(before)} files; refusing to upload into it")
    sent = snap.upload_shard(addr, f"{db}/{s.retention_policy}", new, files, timeout=timeout, advance=rep.advance)
    s.status = "uploaded"
    after = snap.list_shard(addr, new, work, timeout=timeout)
    if sorted(after, key=lambda m: m.name) != sorted(sent, key=lambda m: m.name):
        have = "nothing" if not after else ", ".join(f"{m.name} ({m.size} bytes)" for m in after)
        raise TargetError(f"shard {new} does not hold what was uploaded after the server finished (it holds {have})")
    s.status = "confirmed"
