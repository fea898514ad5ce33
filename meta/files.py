"""Metastore files: ``meta.db``, legacy ``meta.NN``, portable ``.meta`` and ``.manifest``,
and the file names of both backup formats (docs/formats.md#meta-db, #legacy-files, #meta-nn, #portable-files,
#portable-meta, #manifest, #influxd-restore).

Parsers take the file's bytes (these files are small and read whole; the ``read_*`` helpers
check the size before reading) and raise :class:`~influx_archive.archive.errors.FormatError`
with the file and offset on damage. Builders return the bytes influxd 1.6.7 itself would write,
so a parse -> build round trip of a real file is byte-identical.

Where influxd is lossy this module is not: the legacy shard-name parser reads the ID as an
integer (influxd strips trailing zeros too, docs/formats.md#offline-restore) and reports ``db.rp`` prefixes that
contain more than one dot as ambiguous instead of guessing (docs/formats.md#offline-restore); :func:`legacy_meta_index`
orders ``meta.NN`` numerically and ignores ``.pending`` files (docs/formats.md#incremental-sets).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from influx_archive.archive.errors import (
    FormatError,
    SourceError,
    TruncatedError,
    UsageError,
)
from influx_archive.archive.untrusted import read_small

from . import format as fmt
from .model import Data, decode_data, encode_data
from .proto import (
    Kind,
    decode_message,
    encode_message,
    message,
    read_key,
    read_len,
    required,
    skip_field,
)

PathLike = str | os.PathLike[str]

# --------------------------------------------------------------------------------------------
# reading and writing whole files


def read_meta_db_bytes(path: PathLike) -> bytes:
    """The raw bytes of a ``meta.db`` (one serialized ``meta.Data``, docs/formats.md#meta-db), unvalidated."""
    if not os.path.lexists(path):
        raise SourceError("file not found", path=path)
    return read_small(path, fmt.MAX_META_FILE_SIZE)


def read_meta_db(path: PathLike) -> Data:
    """Read and decode a ``meta.db``. An empty file is damage (influxd fails with
    ``required field "Term" not set``)."""
    return decode_data(read_meta_db_bytes(path), path=os.fspath(path))


def write_meta_db(
    path: PathLike, data: Data | bytes, *, mode: int = 0o644, overwrite: bool = False
) -> None:
    """Write a ``meta.db`` atomically (:func:`~influx_archive.archive.output.write_file_atomically`).

    ``data`` is a :class:`Data` (encoded here) or an already serialized blob, which is decoded
    first so that a blob influxd would refuse at start-up is never written (FormatError)."""
    if isinstance(data, Data):
        blob = encode_data(data)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        blob = bytes(data)
        decode_data(blob)
    else:
        raise UsageError(f"write_meta_db: expected Data or bytes, got {type(data).__name__}")
    from influx_archive.archive.output import write_file_atomically  # writers only (start-up of the readers)

    write_file_atomically(path, blob, mode=mode, replace=overwrite)


# --------------------------------------------------------------------------------------------
# legacy meta.NN (docs/formats.md#meta-nn)


class MetaNN(NamedTuple):
    blob: bytes  # the serialized meta.Data (what meta.db would hold)
    data: Data  # the blob decoded
    node_json: bytes  # node section; b"null\n" from OSS


def _unpack_at(layout: struct.Struct, data: bytes, offset: int, what: str, path: PathLike | None) -> tuple[int, ...]:
    """Unpack the big-endian ``layout`` at ``offset``; a short read becomes TruncatedError there."""
    if len(data) - offset < layout.size:
        left = max(len(data) - offset, 0)
        raise TruncatedError(f"file ends inside the {what} ({left} bytes left)", path=path, offset=offset)
    return layout.unpack_from(data, offset)


def parse_meta_nn(data: bytes, *, path: PathLike | None = None) -> MetaNN:
    """Parse a legacy ``meta.NN`` file (docs/formats.md#meta-nn) and decode its metastore.

    Checks the magic, then L and N against the file size (total must be exactly L + N + 24;
    OSS always has N = 5, other N are accepted). Offsets in errors are file offsets."""
    size = len(data)
    magic, blob_len = _unpack_at(fmt.META_NN_HEAD, data, 0, "magic and length header", path)
    if magic != fmt.META_NN_MAGIC:
        raise FormatError(
            f"bad magic 0x{magic:016x}, expected 0x{fmt.META_NN_MAGIC:016x} (not a meta.NN file)",
            path=path,
            offset=0,
            field="magic",
        )
    if blob_len > size - fmt.META_NN_OVERHEAD:
        raise TruncatedError(
            f"metastore length {blob_len} does not fit in the {size}-byte file",
            path=path,
            offset=8,
            field="blob_length",
        )
    node_at = fmt.META_NN_BLOB_OFFSET + blob_len
    (node_len,) = _unpack_at(fmt.META_NN_NODE_LENGTH, data, node_at, "node-section length", path)
    expected = fmt.META_NN_OVERHEAD + blob_len + node_len
    if expected != size:
        problem = "does not fit in" if expected > size else "leaves trailing bytes in"
        raise (TruncatedError if expected > size else FormatError)(
            f"node-section length {node_len} {problem} the {size}-byte file "
            f"(metastore length {blob_len})",
            path=path,
            offset=node_at,
            field="node_length",
        )
    blob = bytes(data[fmt.META_NN_BLOB_OFFSET:node_at])
    decoded = decode_data(blob, path=None if path is None else os.fspath(path), offset=fmt.META_NN_BLOB_OFFSET)
    return MetaNN(blob, decoded, bytes(data[node_at + fmt.META_NN_NODE_LENGTH.size:]))


def build_meta_nn(blob: bytes, node_json: bytes = fmt.OSS_NODE_JSON) -> bytes:
    """The bytes of a ``meta.NN`` file holding ``blob`` (validated by decoding it first)."""
    decode_data(blob)
    return (fmt.META_NN_HEAD.pack(fmt.META_NN_MAGIC, len(blob)) + bytes(blob)
            + fmt.META_NN_NODE_LENGTH.pack(len(node_json)) + bytes(node_json))


# --------------------------------------------------------------------------------------------
# portable .meta (docs/formats.md#portable-meta)


@message("backup_util.PortableData")
@dataclass(slots=True)
class _PortableData:
    """``backup_util.PortableData``: the metastore blob of a portable ``.meta`` file."""

    data: bytes = required(1, "Data", Kind.BYTES, b"")
    max_node_id: int = required(2, "MaxNodeID", Kind.UINT64, 0)
    unknown: bytes = b""


class PortableMeta(NamedTuple):
    blob: bytes  # the serialized meta.Data
    max_node_id: int  # always 0 from OSS


def parse_portable_meta(data: bytes, *, path: PathLike | None = None) -> PortableMeta:
    """Parse a portable ``<ts>.meta`` file (a ``PortableData`` protobuf, docs/formats.md#portable-meta).

    The metastore blob is also decoded once, so damage inside it is reported here with its
    offset in the ``.meta`` file (decode the returned blob with :func:`decode_data`).
    Unknown ``PortableData`` fields are accepted and dropped."""
    where = None if path is None else os.fspath(path)
    try:
        pd = decode_message(_PortableData, data, 0, len(data))
    except FormatError as exc:
        exc.field = f"PortableData.{exc.field}" if exc.field else "PortableData"
        raise exc.located(path=where) from None
    blob_start = _last_len_field_payload(data, 1)
    decode_data(pd.data, path=where, offset=blob_start)
    return PortableMeta(pd.data, pd.max_node_id)


def _last_len_field_payload(data: bytes, number: int) -> int:
    """Offset of the payload of the last LEN field ``number`` in an already validated message
    (the occurrence a decoder keeps)."""
    pos, end, found = 0, len(data), 0
    while pos < end:
        field_number, wire_type, pos = read_key(data, pos, end)
        if field_number == number:
            found, pos = read_len(data, pos, end)
        else:
            pos = skip_field(data, pos, end, field_number, wire_type)
    return found


def build_portable_meta(blob: bytes, max_node_id: int = 0) -> bytes:
    """The bytes of a portable ``.meta`` file holding ``blob`` (validated by decoding it)."""
    decode_data(blob)
    return encode_message(_PortableData(bytes(blob), max_node_id))


# --------------------------------------------------------------------------------------------
# .manifest (docs/formats.md#manifest)


@dataclass(slots=True)
class ManifestEntry:
    """One shard of a portable backup (Go ``backup_util.Entry``)."""

    database: str
    policy: str
    shard_id: int
    file_name: str
    size: int  # bytes of the *uncompressed* tar
    last_modified: int = 0  # always 0 from OSS


@dataclass(slots=True)
class Manifest:
    """A portable backup manifest (Go ``backup_util.Manifest``).

    ``files`` is None when the JSON has ``null`` (no shard backed up), which OSS writes instead
    of ``[]``. ``database`` / ``policy`` / ``shard_id`` are Go ``omitempty`` fields that OSS
    never writes: None (or empty / 0) means absent."""

    meta_file_name: str
    meta_size: int  # length of the meta.Data blob, not of the .meta file
    limited: bool = False
    files: list[ManifestEntry] | None = None
    database: str | None = None
    policy: str | None = None
    shard_id: int | None = None


_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT64 = (0, (1 << 64) - 1)


class _ManifestReader:
    """Type-checked access to the decoded JSON, with the JSON path in errors."""

    def __init__(self, path: PathLike | None) -> None:
        self.path = path

    def fail(self, message: str, where: str) -> FormatError:
        return FormatError(message, path=self.path, field=where or None)

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"expected a JSON object, got {_json_type(value)}", where)
        return value

    def raw(self, obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise self.fail(f'missing key "{key}"', where)
        return obj[key]

    def get(self, obj: dict[str, Any], key: str, where: str, kind: str, *, need: bool = True) -> Any:
        """``obj[key]`` checked to be ``kind`` (str, bool, int64, uint64); None if absent and
        not ``need``."""
        if key not in obj and not need:
            return None
        value = self.raw(obj, key, where)
        at = f"{where}.{key}" if where else key
        if kind == "str":
            if not isinstance(value, str):
                raise self.fail(f"expected a string, got {_json_type(value)}", at)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(f"expected true or false, got {_json_type(value)}", at)
        else:
            lo, hi = _INT64 if kind == "int64" else _UINT64
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.fail(f"expected an integer, got {_json_type(value)}", at)
            if not lo <= value <= hi:
                raise self.fail(f"integer {value} out of range for {kind}", at)
        return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_manifest(text: str | bytes, *, path: PathLike | None = None) -> Manifest:
    """Parse a portable ``.manifest`` (docs/formats.md#manifest).

    Every key OSS writes must be present with its JSON type (``files`` may be ``null``);
    integers must fit their Go types. Unknown keys are ignored (as Go does). Raises
    :class:`~influx_archive.archive.errors.FormatError` naming the JSON path."""
    if len(text) > fmt.MAX_MANIFEST_SIZE:  # characters of a str are at least as many bytes
        raise FormatError(
            f"manifest of {len(text)} bytes is larger than the limit of {fmt.MAX_MANIFEST_SIZE} (MAX_MANIFEST_SIZE)",
            path=path,
            offset=fmt.MAX_MANIFEST_SIZE,
        )
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"manifest is not UTF-8: {exc.reason}", path=path, offset=exc.start) from None
    import json  # portable manifests only (start-up of every other run)

    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise FormatError(
            f"manifest is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            path=path,
            offset=len(text[: exc.pos].encode("utf-8")),
        ) from None
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"manifest is not valid JSON: {exc}", path=path) from None
    r = _ManifestReader(path)
    top = r.obj(doc, "")
    meta = r.obj(r.raw(top, "meta", ""), "meta")
    files_raw = r.raw(top, "files", "")
    files: list[ManifestEntry] | None
    if files_raw is None:
        files = None
    elif isinstance(files_raw, list):
        files = []
        for i, raw in enumerate(files_raw):
            where = f"files[{i}]"
            e = r.obj(raw, where)
            files.append(
                ManifestEntry(
                    database=r.get(e, "database", where, "str"),
                    policy=r.get(e, "policy", where, "str"),
                    shard_id=r.get(e, "shardID", where, "uint64"),
                    file_name=r.get(e, "fileName", where, "str"),
                    size=r.get(e, "size", where, "int64"),
                    last_modified=r.get(e, "lastModified", where, "int64"),
                )
            )
    else:
        raise r.fail(f"expected an array or null, got {_json_type(files_raw)}", "files")
    return Manifest(
        meta_file_name=r.get(meta, "fileName", "meta", "str"),
        meta_size=r.get(meta, "size", "meta", "int64"),
        limited=r.get(top, "limited", "", "bool"),
        files=files,
        database=r.get(top, "database", "", "str", need=False),
        policy=r.get(top, "policy", "", "str", need=False),
        shard_id=r.get(top, "shard_id", "", "uint64", need=False),
    )


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GO_NEEDS_ESCAPE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029]')


def _go_escape_char(m: re.Match[str]) -> str:
    ch = m.group()
    return _GO_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"


def go_json_string(value: str) -> str:
    """A JSON string exactly as Go 1.19 ``encoding/json`` writes it (HTML-safe escaping):
    ``"`` ``\\`` and ``\\n \\r \\t`` as short escapes, other control characters and ``< > &``
    U+2028 U+2029 as ``\\u00XX`` (lower-case hex), everything else raw UTF-8.

    Raises :class:`~influx_archive.archive.errors.UsageError` for text that is not valid
    Unicode (lone surrogates), which a manifest read from a file cannot contain."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"string is not valid Unicode: {exc.reason}") from None
    return '"' + _GO_NEEDS_ESCAPE.sub(_go_escape_char, value) + '"'


def _check(value: Any, kind: str, name: str) -> Any:
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int64": isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1],
        "uint64": isinstance(value, int) and not isinstance(value, bool) and _UINT64[0] <= value <= _UINT64[1],
    }[kind]
    if not ok:
        raise UsageError(f"manifest {name}: expected {kind}, got {value!r}")
    return value


def dump_manifest(m: Manifest) -> bytes:
    """The manifest exactly as influxd writes it: Go ``json.MarshalIndent(m, "", "  ")``, no
    trailing newline, keys in struct order, ``"files": null`` when ``files`` is None,
    ``database`` / ``policy`` / ``shard_id`` omitted when empty (``omitempty``)."""

    def s(value: Any, name: str) -> str:
        return go_json_string(_check(value, "str", name))

    def n(value: Any, kind: str, name: str) -> str:
        return str(_check(value, kind, name))

    lines = [
        "{",
        '  "meta": {',
        f'    "fileName": {s(m.meta_file_name, "meta.fileName")},',
        f'    "size": {n(m.meta_size, "int64", "meta.size")}',
        "  },",
        f'  "limited": {"true" if _check(m.limited, "bool", "limited") else "false"},',
    ]
    if m.files is None:
        lines.append('  "files": null')
    elif not m.files:
        lines.append('  "files": []')
    else:
        lines.append('  "files": [')
        for i, e in enumerate(m.files):
            if not isinstance(e, ManifestEntry):
                raise UsageError(f"manifest files[{i}]: expected ManifestEntry, got {type(e).__name__}")
            at = f"files[{i}]"
            lines += [
                "    {",
                f'      "database": {s(e.database, at + ".database")},',
                f'      "policy": {s(e.policy, at + ".policy")},',
                f'      "shardID": {n(e.shard_id, "uint64", at + ".shardID")},',
                f'      "fileName": {s(e.file_name, at + ".fileName")},',
                f'      "size": {n(e.size, "int64", at + ".size")},',
                f'      "lastModified": {n(e.last_modified, "int64", at + ".lastModified")}',
                "    }," if i < len(m.files) - 1 else "    }",
            ]
        lines.append("  ]")
    extra = []
    if m.database:
        extra.append(f'  "database": {s(m.database, "database")}')
    if m.policy:
        extra.append(f'  "policy": {s(m.policy, "policy")}')
    if m.shard_id:
        extra.append(f'  "shard_id": {n(m.shard_id, "uint64", "shard_id")}')
    if extra:
        lines[-1] += ","
        lines += [line + "," for line in extra[:-1]] + [extra[-1]]
    lines.append("}")
    return "\n".join(lines).encode("utf-8")


# --------------------------------------------------------------------------------------------
# file names (docs/formats.md#legacy-files, #portable-files)


def portable_timestamp(when: _dt.datetime) -> str:
    """The ``<ts>`` of portable backup names: UTC, Go layout ``20060102T150405Z``
    (``20261125T015827Z``). ``when`` must be timezone-aware."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise UsageError("portable_timestamp needs a timezone-aware datetime")
    u = when.astimezone(_dt.UTC)
    return f"{u.year:04d}{u.month:02d}{u.day:02d}T{u.hour:02d}{u.minute:02d}{u.second:02d}Z"


class PortableNames(NamedTuple):
    meta: str  # <ts>.meta
    manifest: str  # <ts>.manifest
    shards: dict[int | str, str]  # shard id (as given) -> <ts>.s<id>.tar.gz


def portable_names(ts: str | _dt.datetime, shard_ids: Iterable[int | str]) -> PortableNames:
    """The file names of one portable backup run. A shard id given as text is used verbatim,
    as influxd does with ``-shard 010`` (``<ts>.s010.tar.gz``, docs/formats.md#portable-files)."""
    base = portable_timestamp(ts) if isinstance(ts, _dt.datetime) else ts
    shards: dict[int | str, str] = {}
    for sid in shard_ids:
        if isinstance(sid, bool) or not isinstance(sid, (int, str)) or (isinstance(sid, int) and sid < 0):
            raise UsageError(f"bad shard id {sid!r}")
        shards[sid] = f"{base}{fmt.PORTABLE_SHARD_INFIX}{sid}{fmt.PORTABLE_SHARD_SUFFIX}"
    return PortableNames(
        base + fmt.PORTABLE_META_SUFFIX, base + fmt.PORTABLE_MANIFEST_SUFFIX, shards
    )


def legacy_meta_file_name(n: int) -> str:
    """``meta.%02d`` (docs/formats.md#legacy-files)."""
    if n < 0:
        raise UsageError(f"bad increment number {n}")
    return f"{fmt.LEGACY_META_PREFIX}{n:0{fmt.LEGACY_INCREMENT_WIDTH}d}"


_LEGACY_META_RE = re.compile(r"meta\.([0-9]{2,})")


def legacy_meta_index(name: str) -> int | None:
    """The increment number of a ``meta.NN`` file name, or None for any other name (including
    ``meta.00.pending``). Pick the newest metastore by this number, not lexically (docs/formats.md#incremental-sets:
    ``meta.100`` is newer than ``meta.99``)."""
    m = _LEGACY_META_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def legacy_shard_file_name(db: str, rp: str, shard_id: int, n: int) -> str:
    """``<db>.<rp>.<id %05d>.<n %02d>`` (docs/formats.md#legacy-files), e.g. ``db1.hourly.00010.00``."""
    if shard_id < 0 or n < 0:
        raise UsageError(f"bad shard id {shard_id} or increment {n}")
    return (
        f"{db}.{rp}.{shard_id:0{fmt.LEGACY_SHARD_ID_WIDTH}d}.{n:0{fmt.LEGACY_INCREMENT_WIDTH}d}"
    )


@dataclass(frozen=True, slots=True)
class LegacyShardName:
    """A parsed legacy shard file name. ``shard_id`` and ``n`` are exact; the ``db.rp`` prefix
    can only be split when it holds exactly one dot (names are not escaped, docs/formats.md#legacy-files)."""

    prefix: str  # "<db>.<rp>" as in the name
    shard_id: int
    n: int

    @property
    def candidates(self) -> tuple[tuple[str, str], ...]:
        """Every (db, rp) split of the prefix: one for an unambiguous name, several when the
        database or retention policy name contains dots. The tar member paths
        (``<db>/<rp>/<id>/<file>``) or the metastore tell which one is right."""
        parts = self.prefix.split(".")
        return tuple((".".join(parts[:i]), ".".join(parts[i:])) for i in range(1, len(parts)))

    @property
    def db_rp(self) -> tuple[str, str] | None:
        """The (db, rp) pair, or None when the name is ambiguous."""
        c = self.candidates
        return c[0] if len(c) == 1 else None


# as influxd backup writes them: <db>.<rp>.%05d.%02d
_LEGACY_SHARD_RE = re.compile(r"(.*\..*)\.([0-9]{5,})\.([0-9]{2,})", re.DOTALL)
# as influxd restore finds them: any name of the database's glob whose third dot-field parses as
# a number, padded or not (ASCII digits only, as Go's strconv reads them)
_LEGACY_SHARD_ANY_RE = re.compile(r"(.+)\.([0-9]+)\.([0-9]+)\n?", re.ASCII)


def parse_legacy_shard_file_name(name: str, *, as_written: bool = True) -> LegacyShardName | None:
    """Parse ``<db>.<rp>.<id>.<NN>`` from the right; None if ``name`` is not such a name
    (``meta.00``, ``*.pending``, anything else). ``as_written``: only the shape ``influxd backup``
    writes (an id of 5 digits or more, an increment of 2 or more); otherwise any digits, as
    ``influxd restore`` accepts them when it globs a backup directory (a source is read that way).

    Unlike influxd (docs/formats.md#offline-restore), the ID is read as a whole integer (``00010`` is 10)."""
    m = (_LEGACY_SHARD_RE if as_written else _LEGACY_SHARD_ANY_RE).fullmatch(name)
    if m is None:
        return None
    return LegacyShardName(m.group(1), int(m.group(2)), int(m.group(3)))
