"""The metastore model: ``meta.Data`` and its nested messages (docs/formats.md#metastore-data).

One slotted dataclass per message of influxd's ``services/meta/internal/meta.proto`` (1.6.7),
field for field, with the wire codec of :mod:`influx_archive.meta.proto`:

* attribute names are the snake_case of the ``.proto`` names; times are ``int`` nanoseconds since
  the epoch exactly as stored (no conversion), 0 meaning "unset" the way influxd reads it;
* every message has ``unknown: bytes``: fields this schema does not know, kept verbatim and
  re-emitted after the known fields (gogo's ``XXX_unrecognized``), so that
  ``encode_data(decode_data(blob)) == blob`` for every blob influxd wrote;
* ``UserInfo.privileges`` is a list in file order (influxd keeps a Go map and writes it in random
  order; keeping the file order is what makes the round trip byte-identical);
* ``ShardInfo.owner_ids`` is the deprecated field 2, kept as found (influxd turns it into
  ``owners`` on read); ``ShardGroupInfo.truncated_at`` is ``None`` when field 6 is absent;
* strings are ``str``; proto2 strings are raw bytes to Go and influxd accepts any bytes, so bytes
  that are not valid UTF-8 are kept as lone surrogates (``surrogateescape``) and written back
  unchanged. ``name.encode("utf-8", "surrogateescape")`` gives the stored bytes.

Use :func:`decode_data` / :func:`encode_data`; the convenience accessors are pure (no I/O).
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, cast

from influx_archive.archive.errors import FormatError, UsageError

from .format import MAX_META_FILE_SIZE
from .proto import Kind, decode_message, encode_message, message, optional, repeated, required

_U64 = Kind.UINT64
_I64 = Kind.INT64
_STR = Kind.STRING
_MSG = Kind.MESSAGE


class Privilege(enum.IntEnum):
    """``UserPrivilege.privilege`` values (influxql ``Privilege``, docs/formats.md#metastore-data)."""

    NONE = 0
    READ = 1
    WRITE = 2
    ALL = 3


@message("meta.NodeInfo")
@dataclass(slots=True)
class NodeInfo:
    """Unused by OSS 1.x (``Data.nodes``, ``data_nodes``, ``meta_nodes``)."""

    id: int = required(1, "ID", _U64, 0)
    host: str = required(2, "Host", _STR, "")
    tcp_host: str | None = optional(3, "TCPHost", _STR)
    unknown: bytes = b""


@message("meta.ShardOwner")
@dataclass(slots=True)
class ShardOwner:
    """``meta.ShardOwner``: a node holding a copy of the shard (OSS: the one node)."""

    node_id: int = required(1, "NodeID", _U64, 0)
    unknown: bytes = b""


@message("meta.ShardInfo")
@dataclass(slots=True)
class ShardInfo:
    """``meta.ShardInfo``: one shard of a shard group (``owner_ids``: deprecated field 2, as found)."""

    id: int = required(1, "ID", _U64, 0)
    owner_ids: list[int] = repeated(2, "OwnerIDs", _U64)
    owners: list[ShardOwner] = repeated(3, "Owners", _MSG, ShardOwner)
    unknown: bytes = b""


@message("meta.ShardGroupInfo")
@dataclass(slots=True)
class ShardGroupInfo:
    """``meta.ShardGroupInfo``: the shards of one time range of a retention policy."""

    id: int = required(1, "ID", _U64, 0)
    start_time: int = required(2, "StartTime", _I64, 0)
    end_time: int = required(3, "EndTime", _I64, 0)
    deleted_at: int = required(4, "DeletedAt", _I64, 0)
    shards: list[ShardInfo] = repeated(5, "Shards", _MSG, ShardInfo)
    truncated_at: int | None = optional(6, "TruncatedAt", _I64)
    unknown: bytes = b""

    @property
    def deleted(self) -> bool:
        """influxd's ``Deleted()``: DeletedAt is non-zero."""
        return self.deleted_at != 0

    @property
    def truncated(self) -> bool:
        """influxd's ``Truncated()``: TruncatedAt present and non-zero (0 reads as unset)."""
        return bool(self.truncated_at)

    @property
    def effective_start(self) -> int:
        """StartTime, or the lowest int64 time when it lies after EndTime. influxd computes a
        group's start by truncating the first point's time to the group duration; for points in
        the first group duration after 1677-09-21T00:12:43.145224192Z (the lowest int64 time)
        that start lies before it, and Go's ``UnixNano`` wraps it to a time near 2262 when the
        metastore is saved (services/meta/data.go ``CreateShardGroup``, ``MarshalTime``). Such a
        group still holds points from the lowest time on, which influxd serves."""
        return shard_group_range(self)[0]


MIN_TIME = -(1 << 63)


def shard_group_range(group: ShardGroupInfo) -> tuple[int, int]:
    """``(start, end)`` (start inclusive, end exclusive, ns) of the times ``group`` holds, with a
    start after the end read as :data:`MIN_TIME` (see :attr:`ShardGroupInfo.effective_start`)."""
    start, end = group.start_time, group.end_time
    if start > end:
        start = MIN_TIME
    return start, end


def shard_group_sort_key(group: ShardGroupInfo) -> tuple[int, int, int, int]:
    """Sort key of influxd's ``ShardGroupInfos.Less`` (docs/formats.md#metastore-data): effective end (TruncatedAt when
    truncated, else EndTime), then StartTime.

    influxd reads a stored 0 as Go's zero time (year 1), which sorts before every int64
    nanosecond time, so 0 sorts first here too."""
    end = group.truncated_at or group.end_time  # truncated: TruncatedAt present and non-zero
    start = group.start_time
    return (end != 0, end, start != 0, start)


@message("meta.SubscriptionInfo")
@dataclass(slots=True)
class SubscriptionInfo:
    """``meta.SubscriptionInfo``: where influxd copies a retention policy's writes."""

    name: str = required(1, "Name", _STR, "")
    mode: str = required(2, "Mode", _STR, "")  # "ALL" or "ANY"
    destinations: list[str] = repeated(3, "Destinations", _STR)
    unknown: bytes = b""


@message("meta.RetentionPolicyInfo")
@dataclass(slots=True)
class RetentionPolicyInfo:
    """``meta.RetentionPolicyInfo``: a retention policy, its shard groups and subscriptions."""

    name: str = required(1, "Name", _STR, "")
    duration: int = required(2, "Duration", _I64, 0)  # ns, 0 = infinite
    shard_group_duration: int = required(3, "ShardGroupDuration", _I64, 0)  # ns
    replica_n: int = required(4, "ReplicaN", Kind.UINT32, 0)
    shard_groups: list[ShardGroupInfo] = repeated(5, "ShardGroups", _MSG, ShardGroupInfo)
    subscriptions: list[SubscriptionInfo] = repeated(6, "Subscriptions", _MSG, SubscriptionInfo)
    unknown: bytes = b""


@message("meta.ContinuousQueryInfo")
@dataclass(slots=True)
class ContinuousQueryInfo:
    """``meta.ContinuousQueryInfo``: a continuous query, as its ``CREATE`` statement."""

    name: str = required(1, "Name", _STR, "")
    query: str = required(2, "Query", _STR, "")
    unknown: bytes = b""


@message("meta.DatabaseInfo")
@dataclass(slots=True)
class DatabaseInfo:
    """``meta.DatabaseInfo``: a database, its retention policies and continuous queries."""

    name: str = required(1, "Name", _STR, "")
    default_retention_policy: str = required(2, "DefaultRetentionPolicy", _STR, "")
    retention_policies: list[RetentionPolicyInfo] = repeated(
        3, "RetentionPolicies", _MSG, RetentionPolicyInfo
    )
    continuous_queries: list[ContinuousQueryInfo] = repeated(
        4, "ContinuousQueries", _MSG, ContinuousQueryInfo
    )
    unknown: bytes = b""

    def retention_policy(self, name: str) -> RetentionPolicyInfo | None:
        """The retention policy called ``name`` (first match, as influxd), or None."""
        for rp in self.retention_policies:
            if rp.name == name:
                return rp
        return None


@message("meta.UserPrivilege")
@dataclass(slots=True)
class UserPrivilege:
    """``meta.UserPrivilege``: a user's :class:`Privilege` on one database."""

    database: str = required(1, "Database", _STR, "")
    privilege: int = required(2, "Privilege", Kind.INT32, 0)  # see Privilege
    unknown: bytes = b""


@message("meta.UserInfo")
@dataclass(slots=True)
class UserInfo:
    """``meta.UserInfo``: a user (bcrypt hash, admin flag, privileges in file order)."""

    name: str = required(1, "Name", _STR, "")
    hash: str = required(2, "Hash", _STR, "")  # bcrypt text, "$2a$10$..."
    admin: bool = required(3, "Admin", Kind.BOOL, False)
    privileges: list[UserPrivilege] = repeated(4, "Privileges", _MSG, UserPrivilege)
    unknown: bytes = b""


class ShardRef(NamedTuple):
    """A shard with the database, retention policy and shard group that hold it."""

    db: DatabaseInfo
    rp: RetentionPolicyInfo
    group: ShardGroupInfo
    shard: ShardInfo


@message("meta.Data")
@dataclass(slots=True)
class Data:
    """The whole metastore (docs/formats.md#metastore-data)."""

    term: int = required(1, "Term", _U64, 0)
    index: int = required(2, "Index", _U64, 0)
    cluster_id: int = required(3, "ClusterID", _U64, 0)
    nodes: list[NodeInfo] = repeated(4, "Nodes", _MSG, NodeInfo)
    databases: list[DatabaseInfo] = repeated(5, "Databases", _MSG, DatabaseInfo)
    users: list[UserInfo] = repeated(6, "Users", _MSG, UserInfo)
    max_node_id: int = required(7, "MaxNodeID", _U64, 0)
    max_shard_group_id: int = required(8, "MaxShardGroupID", _U64, 0)
    max_shard_id: int = required(9, "MaxShardID", _U64, 0)
    data_nodes: list[NodeInfo] = repeated(10, "DataNodes", _MSG, NodeInfo)
    meta_nodes: list[NodeInfo] = repeated(11, "MetaNodes", _MSG, NodeInfo)
    unknown: bytes = b""

    def database(self, name: str) -> DatabaseInfo | None:
        """The database called ``name`` (first match, as influxd), or None."""
        for db in self.databases:
            if db.name == name:
                return db
        return None

    def iter_shards(self) -> Iterator[ShardRef]:
        """Every shard in meta order: database, retention policy, shard group, shard.

        Deleted shard groups are included (check ``ref.group.deleted``)."""
        for db in self.databases:
            for rp in db.retention_policies:
                for group in rp.shard_groups:
                    for shard in group.shards:
                        yield ShardRef(db, rp, group, shard)

    def copy(self) -> Data:
        """A deep copy (nothing shared with this object)."""
        return copy.deepcopy(self)


def decode_data(blob: bytes, *, path: str | None = None, offset: int = 0) -> Data:
    """Decode a serialized ``meta.Data`` (a whole ``meta.db``, the blob of a ``meta.NN`` or of
    a ``.meta``).

    Raises :class:`~influx_archive.archive.errors.FormatError` (or its subclass
    ``TruncatedError``) naming the field path (``Data.Databases[0].Name``) and the absolute
    offset: ``offset`` is where ``blob`` starts in the file ``path``. A blob above
    ``MAX_META_FILE_SIZE`` is refused before decoding (it would take ~15 times its size)."""
    if len(blob) > MAX_META_FILE_SIZE:
        raise FormatError(
            f"metastore of {len(blob)} bytes is larger than the limit of {MAX_META_FILE_SIZE} (MAX_META_FILE_SIZE)",
            path=path, offset=offset, field="Data",
        )
    try:
        return cast(Data, decode_message(Data, blob, 0, len(blob), offset))
    except FormatError as exc:
        exc.field = f"Data.{exc.field}" if exc.field else "Data"
        raise exc.located(path=path) from None


def encode_data(data: Data) -> bytes:
    """Serialize ``data`` exactly as influxd's gogo marshaller would (see
    :mod:`influx_archive.meta.proto`). Raises
    :class:`~influx_archive.archive.errors.UsageError` for values the schema cannot hold."""
    if not isinstance(data, Data):
        raise UsageError(f"encode_data: expected Data, got {type(data).__name__}")
    try:
        return encode_message(data)
    except UsageError as exc:
        exc.field = f"Data.{exc.field}" if exc.field else "Data"
        raise
