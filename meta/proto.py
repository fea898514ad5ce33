"""A minimal, bounds-checked proto2 wire codec, enough for influxd's metastore messages.

Implements the wire rules docs/formats.md#metastore-encoding relies on (gogo/protobuf as built into influxd
1.6.7): base-128 varints, LEN fields, fixed64/fixed32 and (deprecated) groups for *skipping*
unknown fields. On top of the wire layer sits a small schema-driven message codec: a message is a
slotted dataclass whose fields carry a :class:`FieldSpec` (made with :func:`required`,
:func:`optional` or :func:`repeated`) and whose last field is ``unknown: bytes``.

Decoding (:func:`decode_message`)
    * fields may come in any order; a repeated field collects every occurrence in file order; a
      non-repeated field that occurs twice keeps the last value (as Go does);
    * unknown fields are kept verbatim, in file order, in ``unknown`` (gogo's
      ``XXX_unrecognized``) and re-emitted after the known fields on encode;
    * strings are proto2 ``string`` = arbitrary bytes in Go: they are decoded as UTF-8 with
      ``surrogateescape``, so valid UTF-8 gives the ordinary ``str`` and every invalid byte
      becomes a lone surrogate U+DC80..U+DCFF that encodes back to the same byte;
    * rejected with :class:`~influx_archive.archive.errors.FormatError` (offset = absolute offset
      in the buffer plus ``base``): a missing required field, a truncated varint, key or length,
      a length past the end of its enclosing message, a wire type that does not match a known
      field (Go would silently treat that fragment as unknown), invalid wire types 6/7, field
      number 0, unbalanced groups, groups nested deeper than :data:`MAX_GROUP_DEPTH`, varints
      above 2**64-1 (longer than 10 bytes), and 32-bit values out of range (Go would truncate
      them silently).

    Nesting of known messages is bounded by the schema (6 levels for ``meta.Data``); unknown LEN
    fields are kept as opaque bytes and never parsed, so only groups can nest freely.

Encoding (:func:`encode_message`) mirrors gogo's marshaller: known fields in field-number order,
required fields always (even when zero), optional fields only when not ``None``, repeated fields
one entry per element in list order (repeated scalars unpacked), then ``unknown``. Input that Go
itself wrote therefore re-encodes byte-identically. Input that is valid but not canonical (overlong
varints, fields out of order, a duplicated scalar, a bool other than 0/1, packed repeated scalars)
is accepted like Go does and re-encoded canonically.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from influx_archive.archive.errors import FormatError, TruncatedError, UsageError

# Wire types (protobuf encoding spec).
WT_VARINT = 0
WT_I64 = 1
WT_LEN = 2
WT_SGROUP = 3
WT_EGROUP = 4
WT_I32 = 5

#: Largest field number protobuf allows.
MAX_FIELD_NUMBER = (1 << 29) - 1
#: Deepest nesting of (deprecated) groups accepted inside an unknown field.
MAX_GROUP_DEPTH = 64

_U64 = 1 << 64
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
_U32_MAX = (1 << 32) - 1


class Kind(enum.Enum):
    """Protobuf scalar type of a field (or MESSAGE)."""

    UINT64 = "uint64"
    INT64 = "int64"
    UINT32 = "uint32"
    INT32 = "int32"
    BOOL = "bool"
    STRING = "string"
    BYTES = "bytes"
    MESSAGE = "message"


class Label(enum.Enum):
    REQUIRED = "required"
    OPTIONAL = "optional"
    REPEATED = "repeated"


_VARINT_KINDS = frozenset({Kind.UINT64, Kind.INT64, Kind.UINT32, Kind.INT32, Kind.BOOL})


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one dataclass attribute maps to a protobuf field."""

    number: int
    name: str  # the .proto field name, used in error messages ("Term", "ShardGroups")
    kind: Kind
    label: Label
    message: type | None = None  # the message class for Kind.MESSAGE
    attr: str = ""  # the dataclass attribute; filled in by :func:`message`
    key: bytes = b""  # the encoded field key; filled in by :func:`message`


@dataclasses.dataclass(frozen=True, slots=True)
class MessageSpec:
    """A message's name and field specs (``_proto_spec`` of its class, made by :func:`message`)."""

    name: str  # e.g. "meta.Data"
    fields: tuple[FieldSpec, ...]  # sorted by field number
    by_number: dict[int, FieldSpec]


def _spec_field(spec: FieldSpec, **kw: Any) -> Any:
    return dataclasses.field(metadata={"proto": spec}, **kw)


def _scalar_only(kind: Kind) -> None:
    if kind is Kind.MESSAGE:  # the metastore schema nests messages only as repeated fields
        raise TypeError("message fields must be repeated()")


def required(number: int, name: str, kind: Kind, default: Any) -> Any:
    """A proto2 ``required`` scalar field (always emitted, must be present on decode)."""
    _scalar_only(kind)
    return _spec_field(FieldSpec(number, name, kind, Label.REQUIRED), default=default)


def optional(number: int, name: str, kind: Kind) -> Any:
    """A proto2 ``optional`` scalar field: ``None`` when absent, emitted only when not None."""
    _scalar_only(kind)
    return _spec_field(FieldSpec(number, name, kind, Label.OPTIONAL), default=None)


def repeated(number: int, name: str, kind: Kind, message: type | None = None) -> Any:
    """A proto2 ``repeated`` field (a list; messages need their class)."""
    if (kind is Kind.MESSAGE) != (message is not None):
        raise TypeError("repeated(): pass a message class exactly for Kind.MESSAGE")
    return _spec_field(FieldSpec(number, name, kind, Label.REPEATED, message), default_factory=list)


def message(name: str) -> Callable[[type], type]:
    """Class decorator (apply above ``@dataclass``): collect the field specs into ``_proto_spec``."""

    def wrap(cls: type) -> type:
        specs = []
        for f in dataclasses.fields(cls):
            spec = f.metadata.get("proto")
            if spec is not None:
                wire_type = WT_VARINT if spec.kind in _VARINT_KINDS else WT_LEN
                key = encode_varint(spec.number << 3 | wire_type)
                specs.append(FieldSpec(spec.number, spec.name, spec.kind, spec.label, spec.message, f.name, key))
            elif f.name != "unknown":
                raise TypeError(f"{cls.__name__}.{f.name} has no protobuf field spec")
        specs.sort(key=lambda s: s.number)
        cls._proto_spec = MessageSpec(name, tuple(specs), {s.number: s for s in specs})  # type: ignore[attr-defined]
        return cls

    return wrap


# --------------------------------------------------------------------------------------------
# wire layer


def encode_varint(value: int) -> bytes:
    """Base-128 varint of an unsigned 64-bit value."""
    if value < 0 or value >= _U64:
        raise ValueError(f"varint value out of range: {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(buf: bytes, pos: int, end: int, base: int = 0) -> tuple[int, int]:
    """Decode the varint at ``buf[pos:end]``; returns ``(value, next_pos)``.

    ``base`` is added to offsets in errors (the buffer's offset in its file)."""
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise TruncatedError("truncated varint", offset=base + start)
        b = buf[pos]
        pos += 1
        if shift == 63 and b > 1:  # 10th byte: one value bit left and no continuation allowed
            raise FormatError("varint overflows 64 bits", offset=base + start)
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def read_key(buf: bytes, pos: int, end: int, base: int = 0) -> tuple[int, int, int]:
    """Decode a field key; returns ``(field_number, wire_type, next_pos)``."""
    key, nxt = read_varint(buf, pos, end, base)
    number, wire_type = key >> 3, key & 7
    if number == 0 or number > MAX_FIELD_NUMBER:
        raise FormatError(f"invalid field number {number}", offset=base + pos)
    if wire_type > WT_I32:
        raise FormatError(f"invalid wire type {wire_type} (field {number})", offset=base + pos)
    return number, wire_type, nxt


def read_len(buf: bytes, pos: int, end: int, base: int = 0) -> tuple[int, int]:
    """Decode the length prefix of a LEN field; returns ``(payload_start, payload_end)``."""
    length, start = read_varint(buf, pos, end, base)
    if length > end - start:
        raise TruncatedError(
            f"length {length} runs past the end of the enclosing message "
            f"({end - start} bytes left)",
            offset=base + pos,
        )
    return start, start + length


def skip_field(
    buf: bytes, pos: int, end: int, number: int, wire_type: int, base: int = 0, depth: int = 0
) -> int:
    """Skip the value of a field whose key was just read; returns the position after it.

    A start-group value runs to the matching end-group key; groups nest at most
    :data:`MAX_GROUP_DEPTH` deep."""
    if wire_type == WT_VARINT:
        return read_varint(buf, pos, end, base)[1]
    if wire_type in (WT_I64, WT_I32):
        size = 8 if wire_type == WT_I64 else 4
        if end - pos < size:
            raise TruncatedError(f"truncated fixed{size * 8} value (field {number})", offset=base + pos)
        return pos + size
    if wire_type == WT_LEN:
        return read_len(buf, pos, end, base)[1]
    if wire_type == WT_EGROUP:
        raise FormatError(f"end-group key without a start (field {number})", offset=base + pos)
    # WT_SGROUP
    if depth >= MAX_GROUP_DEPTH:
        raise FormatError(f"groups nested deeper than {MAX_GROUP_DEPTH}", offset=base + pos)
    while True:
        key_pos = pos
        inner, inner_wt, pos = read_key(buf, pos, end, base)
        if inner_wt == WT_EGROUP:
            if inner != number:
                raise FormatError(
                    f"group {number} closed by end-group key of field {inner}", offset=base + key_pos
                )
            return pos
        pos = skip_field(buf, pos, end, inner, inner_wt, base, depth + 1)


# --------------------------------------------------------------------------------------------
# message layer


def _within(exc: FormatError | UsageError, prefix: str) -> FormatError | UsageError:
    """Prefix the field path of an error raised inside a nested message (``Databases[0].Name``)."""
    exc.field = f"{prefix}.{exc.field}" if exc.field else prefix
    return exc


def _scalar(kind: Kind, raw: int, name: str, offset: int) -> int | bool:
    """Interpret a decoded varint as ``kind`` (Go's conversions, but out-of-range 32-bit values
    are damage instead of being truncated)."""
    if kind is Kind.UINT64:
        return raw
    if kind is Kind.INT64:
        return raw - _U64 if raw > _I64_MAX else raw
    if kind is Kind.BOOL:
        return raw != 0
    if kind is Kind.UINT32:
        if raw > _U32_MAX:
            raise FormatError(f"uint32 value {raw} out of range", offset=offset, field=name)
        return raw
    # INT32: negative values are sign-extended to 64 bits on the wire
    value = raw - _U64 if raw > _I64_MAX else raw
    if not _I32_MIN <= value <= _I32_MAX:
        raise FormatError(f"int32 value {value} out of range", offset=offset, field=name)
    return value


def decode_message(cls: type, buf: bytes, start: int, end: int, base: int = 0) -> Any:
    """Decode the message ``cls`` from ``buf[start:end]``.

    Offsets in errors are ``base`` + the position in ``buf``; ``err.field`` is the path of the
    failing field relative to this message (``RetentionPolicies[1].ShardGroups[0].ID``)."""
    spec: MessageSpec = cls._proto_spec  # type: ignore[attr-defined]
    by_number = spec.by_number
    values: dict[str, Any] = {}
    unknown = bytearray()
    pos = start
    while pos < end:
        key_pos = pos
        number, wire_type, pos = read_key(buf, pos, end, base)
        f = by_number.get(number)
        if f is None:
            pos = skip_field(buf, pos, end, number, wire_type, base)
            unknown += buf[key_pos:pos]
            continue
        kind = f.kind
        value: Any
        repeated_list: list[Any] | None = None
        if f.label is Label.REPEATED:
            repeated_list = values.setdefault(f.attr, [])
        try:
            if kind in _VARINT_KINDS:
                if wire_type == WT_VARINT:
                    raw, nxt = read_varint(buf, pos, end, base)
                    value = _scalar(kind, raw, f.name, base + pos)
                    pos = nxt
                elif wire_type == WT_LEN and repeated_list is not None:  # packed repeated scalar
                    p, pos = read_len(buf, pos, end, base)
                    while p < pos:
                        raw, nxt = read_varint(buf, p, pos, base)
                        repeated_list.append(_scalar(kind, raw, f.name, base + p))
                        p = nxt
                    continue
                else:
                    raise FormatError(
                        f"wire type {wire_type} for {kind.value} field {f.name} of {spec.name}",
                        offset=base + key_pos,
                    )
            else:
                if wire_type != WT_LEN:
                    raise FormatError(
                        f"wire type {wire_type} for {kind.value} field {f.name} of {spec.name}",
                        offset=base + key_pos,
                    )
                s, pos = read_len(buf, pos, end, base)
                if kind is Kind.MESSAGE:
                    assert repeated_list is not None  # guaranteed by _scalar_only()
                    assert f.message is not None  # every MESSAGE field names its class
                    try:
                        repeated_list.append(decode_message(f.message, buf, s, pos, base))
                    except FormatError as exc:
                        raise _within(exc, f"{f.name}[{len(repeated_list)}]") from None
                    continue
                if kind is Kind.STRING:
                    value = bytes(buf[s:pos]).decode("utf-8", "surrogateescape")
                else:
                    value = bytes(buf[s:pos])
        except FormatError as exc:
            if exc.field is None:
                exc.field = f.name
            raise
        if repeated_list is not None:
            repeated_list.append(value)
        else:
            values[f.attr] = value
    for f in spec.fields:
        if f.label is Label.REQUIRED and f.attr not in values:
            raise FormatError(
                f'required field "{f.name}" not set in {spec.name}',
                offset=base + start,
                field=f.name,
            )
    return cls(**values, unknown=bytes(unknown))


def _encode_value(f: FieldSpec, value: Any, out: bytearray) -> None:
    kind = f.kind
    if kind is Kind.MESSAGE:
        assert f.message is not None  # every MESSAGE field names its class
        if not isinstance(value, f.message):
            raise UsageError(f"expected {f.message.__name__}, got {type(value).__name__}")
        body = encode_message(value)
        out += f.key
        out += encode_varint(len(body))
        out += body
        return
    if kind is Kind.STRING or kind is Kind.BYTES:
        if kind is Kind.STRING:
            if not isinstance(value, str):
                raise UsageError(f"expected str, got {type(value).__name__}")
            try:
                data = value.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as exc:
                raise UsageError(f"string not encodable as UTF-8: {exc.reason}") from None
        else:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise UsageError(f"expected bytes, got {type(value).__name__}")
            data = bytes(value)
        out += f.key
        out += encode_varint(len(data))
        out += data
        return
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise UsageError(f"expected bool, got {type(value).__name__}")
        out += f.key
        out.append(1 if value else 0)
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"expected int, got {type(value).__name__}")
    lo, hi = _RANGES[kind]
    if not lo <= value <= hi:
        raise UsageError(f"{kind.value} value {value} out of range")
    out += f.key
    out += encode_varint(value & (_U64 - 1))  # negative ints: 64-bit two's complement (10 bytes)


_RANGES = {
    Kind.UINT64: (0, _U64 - 1),
    Kind.INT64: (_I64_MIN, _I64_MAX),
    Kind.UINT32: (0, _U32_MAX),
    Kind.INT32: (_I32_MIN, _I32_MAX),
}


def encode_message(obj: Any) -> bytes:
    """Serialize a message the way gogo does (see the module docstring); raises
    :class:`~influx_archive.archive.errors.UsageError` naming the field for a value the schema
    cannot hold (wrong type, out of range, ``None`` in a required field)."""
    spec: MessageSpec = type(obj)._proto_spec
    out = bytearray()
    for f in spec.fields:
        value = getattr(obj, f.attr)
        try:
            if f.label is Label.REPEATED:
                if not isinstance(value, list):
                    raise UsageError(f"expected list, got {type(value).__name__}")
                for i, item in enumerate(value):
                    try:
                        _encode_value(f, item, out)
                    except UsageError as exc:
                        if f.kind is Kind.MESSAGE:
                            raise _within(exc, f"{f.name}[{i}]") from None
                        raise
            elif value is not None:
                _encode_value(f, value, out)
            elif f.label is Label.REQUIRED:
                raise UsageError(f'required field "{f.name}" of {spec.name} is None')
        except UsageError as exc:
            if exc.field is None:
                exc.field = f.name
            raise
    unknown = obj.unknown
    if not isinstance(unknown, (bytes, bytearray)):
        raise UsageError(f"{spec.name}.unknown: expected bytes, got {type(unknown).__name__}")
    out += unknown
    return bytes(out)
