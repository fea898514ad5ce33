"""Tests of the metastore package (``meta/``): docs/formats.md#metastore, #meta-nn, #portable-meta,
#manifest, #influxd-restore.

Where expected values come from:

* ``SPEC_*``: hex examples of files influxd 1.6.7 wrote (docs/formats.md#metastore, #meta-nn, #manifest).
* ``GO_*``: produced by influxd 1.6.7's own encoder, a throw-away Go program linking the
  installed packages (``services/meta/internal`` generated gogo code + ``github.com/gogo/protobuf
  /proto``, ``services/meta.Data.MarshalBinary``, ``backup_util.PortablePacker.MarshalBinary``,
  ``encoding/json.MarshalIndent`` of ``backup_util.Manifest`` exactly as ``Manifest.Save``), built
  with Go 1.19 in GOPATH mode. The values put in are restated in each test.
* ``interop`` tests: files made by the real influxd in this session, compared with what influxd
  reports through SHOW commands, and a meta.db written by us that influxd must start on.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import influxd  # the harness, on sys.path via conftest.py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import (
    ArchiveError,
    FormatError,
    SourceError,
    TargetError,
    TruncatedError,
    UsageError,
)
from influx_archive.meta import files, proto
from influx_archive.meta.model import (
    ContinuousQueryInfo,
    Data,
    DatabaseInfo,
    NodeInfo,
    Privilege,
    RetentionPolicyInfo,
    ShardGroupInfo,
    ShardInfo,
    ShardOwner,
    SubscriptionInfo,
    UserInfo,
    UserPrivilege,
    decode_data,
    encode_data,
    shard_group_sort_key,
)

H = bytes.fromhex

# --------------------------------------------------------------------------------------------
# reference bytes

#: docs/formats.md#meta-db: a fresh server's meta.db (20 bytes).
SPEC_FRESH = H("0800 1001 1883 fb9c 97f5 d2b2 fe7a 3800 4000 4800")
#: docs/formats.md#metastore-data: one ShardGroupInfo of a real meta.db.
SPEC_SHARD_GROUP = H(
    "08 01 10 80 80 c0 9f b1 e8 fa f0 18 18 80 80 e4 e8 b0 aa 84 f2 18 20 00 2a 02 08 01"
)
#: docs/formats.md#metastore-data: the head (Term, Index, ClusterID) and tail (MaxNodeID,
#: MaxShardGroupID, MaxShardID) of a real meta.Data.
SPEC_DATA_HEAD = H("08 00 10 1e 18 fc 93 97 d1 b2 d6 ce c8 43")
SPEC_DATA_TAIL = H("38 00 40 12 48 12")
#: docs/formats.md#meta-nn: first 16 bytes of a real meta.00 (magic, L = 966).
SPEC_META_NN_HEAD = H("0000 0000 5959 0101 0000 0000 0000 03c6")
#: docs/formats.md#manifest: a real manifest (one shard).
SPEC_MANIFEST = b"""{
  "meta": {
    "fileName": "20261125T015827Z.meta",
    "size": 996
  },
  "limited": false,
  "files": [
    {
      "database": "db1",
      "policy": "autogen",
      "shardID": 2,
      "fileName": "20261125T015827Z.s2.tar.gz",
      "size": 8192,
      "lastModified": 0
    }
  ]
}"""

#: Go: an internal.Data using every field, with edge values (see test_go_full_vector).
GO_FULL = H(
    "080310ffffffffffffffffff0118808080808080808040220b0801120768313a38303838220f0802120268321a07"
    "68323a383038392aba010a0777c3a93c263eff12001a750a0472702e3110ffffffffffffffffff0118ffffffffff"
    "ffffff7f20ffffffff0f2a270805108080808080808080800118ffffffffffffffffff0120002a0b0807100310ac"
    "021a0208092a1208061000180a208080a8b1e39fe7cb17300532150a01731203414e591a097564703a2f2f613a31"
    "1a0022360a0163123143524541544520434f4e54494e554f55532051554552592063204f4e207820424547494e20"
    "53454c454354203120454e4432210a0175120168180122060a0264321003220f0a02643110feffffffffffffffff"
    "01380040064807520508041201645a05080512016d"
)
#: Go: proto.Unmarshal of GO_UNKNOWN_IN then proto.Marshal. Unknown fields (top level: field 100
#: varint, field 12 LEN; in the database: field 9 fixed64, 10 fixed32, 11 group) are kept and
#: re-emitted after the known fields of their message, in input order.
GO_UNKNOWN_IN = H(
    "a0062a0800100218032a170a0178490102030405060708120055010203045b08015c38004000480062026869"
)
GO_UNKNOWN_OUT = H(
    "0800100218032a170a0178120049010203040506070855010203045b08015c380040004800a0062a62026869"
)
#: Go: meta.Data{Index: 1, ClusterID: 42}, CreateDatabase("db1"), CreateRetentionPolicy(autogen,
#: 7 d, default), CreateShardGroup at 1792972800 s, TruncateShardGroups(+1 h), MarshalBinary.
GO_TRUNCATED = H(
    "08001001182a2a4e0a0364623112076175746f67656e1a3e0a076175746f67656e1000188080a4c9ffc189012001"
    "2a260801108080c09fb1e8faf018188080e4e8b0aa84f21820002a0208013080c0a2a594d1fbf018380040014801"
)
#: Go: PortablePacker{Data: SPEC_FRESH, MaxNodeID: 0 / 300}.MarshalBinary().
GO_PORTABLE_0 = H("0a14") + SPEC_FRESH + H("1000")
GO_PORTABLE_300 = H("0a14") + SPEC_FRESH + H("10ac02")
#: Go: json.MarshalIndent(Manifest{Meta{"20261125T015827Z.meta", 996}}, "", "  ") (Files nil).
GO_MANIFEST_NULL = H(
    "7b0a2020226d657461223a207b0a202020202266696c654e616d65223a2022323032363131323554303135383237"
    "5a2e6d657461222c0a202020202273697a65223a203939360a20207d2c0a2020226c696d69746564223a2066616c"
    "73652c0a20202266696c6573223a206e756c6c0a7d"
)
#: Go: the same with Meta{"m", 0} and Files = []Entry{} (not nil).
GO_MANIFEST_EMPTY = H(
    "7b0a2020226d657461223a207b0a202020202266696c654e616d65223a20226d222c0a202020202273697a65223a"
    "20300a20207d2c0a2020226c696d69746564223a2066616c73652c0a20202266696c6573223a205b5d0a7d"
)
#: Go: Manifest{Meta{"a<b>&c\"d\u2028\u2029\x01\x08\x0c\x1f\x7f\n\r\té€😀", -5}, Limited: true,
#: Files: [{"wé<&>", "rp.1", MaxUint64, "x.s18446744073709551615.tar.gz", MaxInt64, MinInt64},
#: {"", "", 0, "", 0, 7}], Database: "db", Policy: "p", ShardID: 10}.
GO_MANIFEST_ODD = H(
    "7b0a2020226d657461223a207b0a202020202266696c654e616d65223a2022615c7530303363625c75303033655c"
    "7530303236635c22645c75323032385c75323032395c75303030315c75303030385c75303030635c75303031667f"
    "5c6e5c725c74c3a9e282acf09f9880222c0a202020202273697a65223a202d350a20207d2c0a2020226c696d6974"
    "6564223a20747275652c0a20202266696c6573223a205b0a202020207b0a20202020202022646174616261736522"
    "3a202277c3a95c75303033635c75303032365c7530303365222c0a20202020202022706f6c696379223a20227270"
    "2e31222c0a2020202020202273686172644944223a2031383434363734343037333730393535313631352c0a2020"
    "202020202266696c654e616d65223a2022782e7331383434363734343037333730393535313631352e7461722e67"
    "7a222c0a2020202020202273697a65223a20393232333337323033363835343737353830372c0a20202020202022"
    "6c6173744d6f646966696564223a202d393232333337323033363835343737353830380a202020207d2c0a202020"
    "207b0a202020202020226461746162617365223a2022222c0a20202020202022706f6c696379223a2022222c0a20"
    "20202020202273686172644944223a20302c0a2020202020202266696c654e616d65223a2022222c0a2020202020"
    "202273697a65223a20302c0a202020202020226c6173744d6f646966696564223a20370a202020207d0a20205d2c"
    "0a2020226461746162617365223a20226462222c0a202022706f6c696379223a202270222c0a2020227368617264"
    "5f6964223a2031300a7d"
)
#: Go: Manifest{Meta{"m", 1}, Policy: "p"} (only one omitempty field set).
GO_MANIFEST_OMIT = H(
    "7b0a2020226d657461223a207b0a202020202266696c654e616d65223a20226d222c0a202020202273697a65223a"
    "20310a20207d2c0a2020226c696d69746564223a2066616c73652c0a20202266696c6573223a206e756c6c2c0a20"
    "2022706f6c696379223a202270220a7d"
)

U64_MAX = 2**64 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


# --------------------------------------------------------------------------------------------
# spec examples


def test_fresh_meta_db_spec_1_1() -> None:
    d = decode_data(SPEC_FRESH)
    assert d == Data(term=0, index=1, cluster_id=8862180918038052227)
    assert (d.max_node_id, d.max_shard_group_id, d.max_shard_id) == (0, 0, 0)
    assert encode_data(d) == SPEC_FRESH
    # required zero fields are written, as influxd does: a default Data encodes to 12 bytes
    assert encode_data(Data()) == H("080010001800380040004800")


def test_shard_group_spec_1_4() -> None:
    g = proto.decode_message(ShardGroupInfo, SPEC_SHARD_GROUP, 0, len(SPEC_SHARD_GROUP))
    assert g == ShardGroupInfo(
        id=1,
        start_time=1792972800000000000,
        end_time=1793577600000000000,
        deleted_at=0,
        shards=[ShardInfo(id=1)],
    )
    assert g.truncated_at is None and not g.deleted and not g.truncated
    assert proto.encode_message(g) == SPEC_SHARD_GROUP


def test_user_spec_1_4_keeps_privilege_order() -> None:
    bcrypt = b"$2a$10$" + b"A" * 53  # docs/formats.md#metastore-data elides the 60-char hash; any 60 bytes do
    raw = (
        H("0a06") + b"reader" + H("123c") + bcrypt + H("1800")
        + H("22070a03") + b"db2" + H("1003") + H("22070a03") + b"db1" + H("1001")
    )
    u = proto.decode_message(UserInfo, raw, 0, len(raw))
    assert (u.name, u.hash, u.admin) == ("reader", bcrypt.decode(), False)
    assert [(p.database, p.privilege) for p in u.privileges] == [("db2", 3), ("db1", 1)]
    assert u.privileges[0].privilege == Privilege.ALL and u.privileges[1].privilege == Privilege.READ
    assert proto.encode_message(u) == raw


def test_data_head_and_tail_spec_1_4() -> None:
    blob = SPEC_DATA_HEAD + SPEC_DATA_TAIL
    d = decode_data(blob)
    assert (d.term, d.index) == (0, 30)
    assert (d.max_node_id, d.max_shard_group_id, d.max_shard_id) == (0, 18, 18)
    assert encode_data(d) == blob


def test_meta_nn_frame_spec_2_2() -> None:
    frame = files.build_meta_nn(SPEC_FRESH)
    # magic u64 BE, L u64 BE, blob, N u64 BE, "null\n": total L + 29
    assert frame == (
        H("0000000059590101") + (20).to_bytes(8, "big") + SPEC_FRESH
        + (5).to_bytes(8, "big") + b"null\n"
    )
    assert len(frame) == len(SPEC_FRESH) + 29
    parsed = files.parse_meta_nn(frame)
    assert parsed.blob == SPEC_FRESH and parsed.node_json == b"null\n"
    assert parsed.data == decode_data(SPEC_FRESH)
    # the real head of docs/formats.md#meta-nn (L = 966) on a file too short for it
    with pytest.raises(TruncatedError) as ei:
        files.parse_meta_nn(SPEC_META_NN_HEAD + bytes(100), path="meta.00")
    assert ei.value.offset == 8 and "966" in str(ei.value)
    assert str(ei.value).endswith("[file meta.00, offset 8, field blob_length]")


def test_meta_nn_other_node_section_is_accepted() -> None:
    node = b'{"ID":1}\n'
    frame = files.build_meta_nn(SPEC_FRESH, node)
    assert files.parse_meta_nn(frame).node_json == node
    assert len(frame) == len(SPEC_FRESH) + len(node) + 24


def _blob_of_size(size: int) -> bytes:
    """A valid meta.Data blob of exactly ``size`` bytes (a CQ query padded to fit)."""
    base = Data(databases=[DatabaseInfo(name="d", continuous_queries=[ContinuousQueryInfo("c", "")])])
    for pad in range(size):
        base.databases[0].continuous_queries[0].query = "x" * pad
        blob = encode_data(base)
        if len(blob) == size:
            return blob
    raise AssertionError(f"no blob of {size} bytes")


def test_portable_meta_spec_3_2() -> None:
    blob = _blob_of_size(996)
    meta = files.build_portable_meta(blob)
    # field 1 (LEN 996 = varint e4 07), blob, field 2 = 0; size 1 + 2 + 996 + 2 = 1001
    assert meta[:3] == H("0ae407") and meta[3:-2] == blob and meta[-2:] == H("1000")
    assert len(meta) == 1001
    assert files.parse_portable_meta(meta) == (blob, 0)


def test_manifest_spec_3_3() -> None:
    m = files.parse_manifest(SPEC_MANIFEST)
    assert m == files.Manifest(
        meta_file_name="20261125T015827Z.meta",
        meta_size=996,
        limited=False,
        files=[files.ManifestEntry("db1", "autogen", 2, "20261125T015827Z.s2.tar.gz", 8192, 0)],
    )
    assert files.dump_manifest(m) == SPEC_MANIFEST
    assert files.parse_manifest(SPEC_MANIFEST.decode()) == m


# --------------------------------------------------------------------------------------------
# Go encoder vectors


def _go_full_model() -> Data:
    """The values the Go program put into GO_FULL, restated by hand."""
    return Data(
        term=3,
        index=U64_MAX,
        cluster_id=1 << 62,
        nodes=[NodeInfo(1, "h1:8088"), NodeInfo(2, "h2", "h2:8089")],
        databases=[
            DatabaseInfo(
                name=b"w\xc3\xa9<&>\xff".decode("utf-8", "surrogateescape"),
                default_retention_policy="",
                retention_policies=[
                    RetentionPolicyInfo(
                        name="rp.1",
                        duration=-1,
                        shard_group_duration=I64_MAX,
                        replica_n=2**32 - 1,
                        shard_groups=[
                            ShardGroupInfo(
                                id=5, start_time=I64_MIN, end_time=-1, deleted_at=0,
                                shards=[ShardInfo(7, owner_ids=[3, 300], owners=[ShardOwner(9)])],
                            ),
                            ShardGroupInfo(
                                id=6, start_time=0, end_time=10,
                                deleted_at=1700000000000000000, truncated_at=5,
                            ),
                        ],
                        subscriptions=[SubscriptionInfo("s", "ANY", ["udp://a:1", ""])],
                    )
                ],
                continuous_queries=[
                    ContinuousQueryInfo("c", "CREATE CONTINUOUS QUERY c ON x BEGIN SELECT 1 END")
                ],
            )
        ],
        users=[UserInfo("u", "h", True, [UserPrivilege("d2", 3), UserPrivilege("d1", -2)])],
        max_node_id=0,
        max_shard_group_id=6,
        max_shard_id=7,
        data_nodes=[NodeInfo(4, "d")],
        meta_nodes=[NodeInfo(5, "m")],
    )


def test_go_full_vector_encode_and_decode() -> None:
    model = _go_full_model()
    assert encode_data(model) == GO_FULL  # our encoder == gogo's, field for field
    assert decode_data(GO_FULL) == model
    name = decode_data(GO_FULL).databases[0].name
    assert name.encode("utf-8", "surrogateescape") == b"w\xc3\xa9<&>\xff"


def test_go_unknown_fields_are_kept_like_gogo() -> None:
    d = decode_data(GO_UNKNOWN_IN)
    assert d.unknown == H("a0062a") + H("62026869")
    assert d.databases[0].unknown == H("490102030405060708") + H("5501020304") + H("5b08015c")
    assert encode_data(d) == GO_UNKNOWN_OUT
    assert encode_data(decode_data(GO_UNKNOWN_OUT)) == GO_UNKNOWN_OUT


def test_go_truncated_shard_group() -> None:
    t0 = 1792972800000000000
    model = Data(
        index=1,
        cluster_id=42,
        databases=[
            DatabaseInfo(
                "db1",
                "autogen",
                [
                    RetentionPolicyInfo(
                        "autogen", 0, 7 * 24 * 3600 * 10**9, 1,
                        [ShardGroupInfo(1, t0, t0 + 7 * 24 * 3600 * 10**9, 0, [ShardInfo(1)], t0 + 3600 * 10**9)],
                    )
                ],
            )
        ],
        max_shard_group_id=1,
        max_shard_id=1,
    )
    assert encode_data(model) == GO_TRUNCATED
    d = decode_data(GO_TRUNCATED)
    assert d == model and d.databases[0].retention_policies[0].shard_groups[0].truncated


def test_go_portable_data() -> None:
    assert files.build_portable_meta(SPEC_FRESH) == GO_PORTABLE_0
    assert files.build_portable_meta(SPEC_FRESH, 300) == GO_PORTABLE_300
    assert files.parse_portable_meta(GO_PORTABLE_0) == (SPEC_FRESH, 0)
    assert files.parse_portable_meta(GO_PORTABLE_300) == files.PortableMeta(SPEC_FRESH, 300)


@pytest.mark.parametrize(
    "raw", [GO_MANIFEST_NULL, GO_MANIFEST_EMPTY, GO_MANIFEST_ODD, GO_MANIFEST_OMIT, SPEC_MANIFEST]
)
def test_go_manifests_round_trip(raw: bytes) -> None:
    assert files.dump_manifest(files.parse_manifest(raw)) == raw


def test_go_manifest_values() -> None:
    assert files.parse_manifest(GO_MANIFEST_NULL).files is None
    assert files.parse_manifest(GO_MANIFEST_EMPTY).files == []
    odd = files.parse_manifest(GO_MANIFEST_ODD)
    assert odd.meta_file_name == "a<b>&c\"d\u2028\u2029\x01\x08\x0c\x1f\x7f\n\r\té€😀"
    assert (odd.meta_size, odd.limited, odd.database, odd.policy, odd.shard_id) == (-5, True, "db", "p", 10)
    assert odd.files == [
        files.ManifestEntry("wé<&>", "rp.1", U64_MAX, "x.s18446744073709551615.tar.gz", I64_MAX, I64_MIN),
        files.ManifestEntry("", "", 0, "", 0, 7),
    ]
    omit = files.Manifest("m", 1, policy="p")
    assert files.dump_manifest(omit) == GO_MANIFEST_OMIT
    # omitempty: empty strings and shard_id 0 are left out like None
    assert files.dump_manifest(files.Manifest("m", 1, database="", policy="p", shard_id=0)) == GO_MANIFEST_OMIT


# --------------------------------------------------------------------------------------------
# decoding errors


def _decode_err(blob: bytes) -> FormatError:
    with pytest.raises(FormatError) as ei:
        decode_data(blob, path="meta.db")
    return ei.value


def test_missing_required_field_is_named() -> None:
    err = _decode_err(SPEC_FRESH[2:])  # Term removed
    assert 'required field "Term" not set in meta.Data' in str(err)
    assert err.field == "Data.Term" and err.offset == 0
    assert str(err).endswith("[file meta.db, offset 0, field Data.Term]")
    err = _decode_err(b"")
    assert err.field == "Data.Term"
    # nested: a database without its Name; offset = start of the DatabaseInfo payload (16)
    blob = SPEC_FRESH[:14] + H("2a021200") + SPEC_FRESH[14:]
    err = _decode_err(blob)
    assert err.field == "Data.Databases[0].Name" and err.offset == 16


def test_nested_error_offsets_are_absolute() -> None:
    # second Privilege of the user has a truncated varint at the very end of its payload
    user = H("0a0175120168180122060a0264321003220a0a02643110ffffffffff")
    blob = SPEC_FRESH[:14] + H("32") + bytes([len(user)]) + user + SPEC_FRESH[14:]
    err = _decode_err(blob)
    assert isinstance(err, TruncatedError)
    assert err.field == "Data.Users[0].Privileges[1].Privilege"
    assert err.offset == 16 + len(user) - 5  # where the varint starts
    # in a meta.NN the offset is the file offset (blob at 16); build_meta_nn would refuse the blob
    frame = H("0000000059590101") + len(blob).to_bytes(8, "big") + blob + (5).to_bytes(8, "big") + b"null\n"
    with pytest.raises(TruncatedError) as ei:
        files.parse_meta_nn(frame, path="meta.07")
    assert ei.value.offset == 16 + err.offset and ei.value.path == "meta.07"


@pytest.mark.parametrize(
    "blob, message, field",
    [
        (H("0a00") + SPEC_FRESH, "wire type 2 for uint64 field Term", "Data.Term"),  # Go: unknown
        (SPEC_FRESH.replace(H("1001"), H("1201")), "wire type 2 for uint64 field Index", "Data.Index"),
        (H("2001") + SPEC_FRESH, "wire type 0 for message field Nodes", "Data.Nodes"),
        (H("2201") + SPEC_FRESH, "truncated varint", "Data.Nodes[0].ID"),
        (H("08ffffffffffffffffff02") + SPEC_FRESH[2:], "overflows 64 bits", "Data.Term"),
        (H("08ffffffffffffffffff8001") + SPEC_FRESH[2:], "overflows 64 bits", "Data.Term"),
        (H("00") + SPEC_FRESH, "invalid field number 0", None),
        (H("7f") + SPEC_FRESH, "invalid wire type 7", None),
        (H("6e") + SPEC_FRESH, "invalid wire type 6", None),
        (SPEC_FRESH + H("620a00"), "runs past the end", None),
        (SPEC_FRESH + H("6c"), "end-group key without a start", None),
        (SPEC_FRESH + H("6b080174"), "group 13 closed by end-group key of field 14", None),
        (SPEC_FRESH + H("69010203"), "truncated fixed64", None),
        (SPEC_FRESH + H("6d0102"), "truncated fixed32", None),
        (SPEC_FRESH + H("6b") * 65 + H("6c") * 65, "nested deeper than 64", None),
    ],
)
def test_damage_is_rejected(blob: bytes, message: str | None, field: str | None) -> None:
    err = _decode_err(blob)
    if message is not None:
        assert message in str(err)
    if field is not None:
        assert err.field == field


def test_groups_inside_the_limit_are_kept_as_unknown() -> None:
    blob = SPEC_FRESH + H("6b") * 64 + H("6c") * 64
    d = decode_data(blob)
    assert d.unknown == H("6b") * 64 + H("6c") * 64 and encode_data(d) == blob


def test_32_bit_fields_out_of_range_are_damage() -> None:
    rp = H("0a0172 1000 1800 20 8080808010")  # ReplicaN = 2**32 (Go would truncate it to 0)
    db = H("0a0164 1200") + H("1a") + bytes([len(rp)]) + rp
    blob = SPEC_FRESH[:14] + H("2a") + bytes([len(db)]) + db + SPEC_FRESH[14:]
    err = _decode_err(blob)
    assert "uint32 value 4294967296 out of range" in str(err)
    assert err.field == "Data.Databases[0].RetentionPolicies[0].ReplicaN"
    priv = H("0a0164 10 8080808008")  # Privilege = 2**31
    user = H("0a01751200180022") + bytes([len(priv)]) + priv
    blob = SPEC_FRESH[:14] + H("32") + bytes([len(user)]) + user + SPEC_FRESH[14:]
    assert "int32 value 2147483648 out of range" in str(_decode_err(blob))


def test_non_canonical_input_is_accepted_like_go() -> None:
    # overlong varint, bool 2, fields out of order, duplicated scalar (last wins), packed OwnerIDs
    shard = H("0801") + H("1203030405")  # ID 1, OwnerIDs packed [3, 4, 5]
    group = H("0801100018002000") + H("2a") + bytes([len(shard)]) + shard
    rp = H("0a0172100018002001") + H("2a") + bytes([len(group)]) + group
    db = H("0a01641200") + H("1a") + bytes([len(rp)]) + rp
    user = H("0a0175120018") + H("02")  # Admin = 2
    blob = (
        H("108100") + H("0800") + H("1801") + H("1805") + H("2a") + bytes([len(db)]) + db
        + H("32") + bytes([len(user)]) + user + H("380040004800")
    )
    d = decode_data(blob)
    assert (d.index, d.cluster_id, d.users[0].admin) == (1, 5, True)
    assert d.databases[0].retention_policies[0].shard_groups[0].shards[0].owner_ids == [3, 4, 5]
    again = encode_data(d)
    assert again != blob and decode_data(again) == d
    assert again.startswith(H("080010011805"))


def test_truncation_at_every_byte_gives_only_format_errors() -> None:
    for blob in (GO_FULL, GO_UNKNOWN_IN, GO_TRUNCATED):
        failures = 0
        for cut in range(len(blob)):
            try:
                decode_data(blob[:cut])
            except FormatError:
                failures += 1
        # a prefix can only decode when it ends between complete top-level fields after MaxShardID
        assert failures >= len(blob) - 30
    frame = files.build_meta_nn(GO_FULL)
    for cut in range(len(frame)):
        with pytest.raises(FormatError):
            files.parse_meta_nn(frame[:cut])
    meta = files.build_portable_meta(GO_FULL)
    for cut in range(len(meta)):
        with pytest.raises(FormatError):
            files.parse_portable_meta(meta[:cut])


def test_meta_nn_frame_errors() -> None:
    good = files.build_meta_nn(SPEC_FRESH)
    with pytest.raises(FormatError) as ei:
        files.parse_meta_nn(b"\x00" * 7 + b"\x02" + good[8:], path="m")
    assert ei.value.offset == 0 and ei.value.field == "magic" and "bad magic" in str(ei.value)
    with pytest.raises(FormatError) as ei:
        files.parse_meta_nn(good + b"\n")
    assert "trailing" in str(ei.value) and ei.value.offset == 16 + len(SPEC_FRESH)
    with pytest.raises(TruncatedError) as ei:
        files.parse_meta_nn(good[:-1])
    assert ei.value.field == "node_length"
    with pytest.raises(TruncatedError):
        files.parse_meta_nn(good[:10])
    huge = good[:8] + (2**64 - 1).to_bytes(8, "big") + good[16:]
    with pytest.raises(TruncatedError):
        files.parse_meta_nn(huge)
    # a valid frame whose blob is damaged: FormatError at the file offset
    bad = H("0000000059590101") + (2).to_bytes(8, "big") + H("1001") + (5).to_bytes(8, "big") + b"null\n"
    with pytest.raises(FormatError) as ei:
        files.parse_meta_nn(bad, path="meta.00")
    assert ei.value.field == "Data.Term" and ei.value.offset == 16 and ei.value.path == "meta.00"


def test_portable_meta_errors() -> None:
    with pytest.raises(FormatError) as ei:
        files.parse_portable_meta(H("0a02") + H("1001") + H("1000"), path="x.meta")
    # the damaged blob is reported at its offset in the .meta file
    assert ei.value.field == "Data.Term" and ei.value.offset == 2 and ei.value.path == "x.meta"
    with pytest.raises(FormatError) as ei:
        files.parse_portable_meta(H("1000"))
    assert ei.value.field == "PortableData.Data"
    with pytest.raises(FormatError):
        files.build_portable_meta(b"\x10\x01")
    with pytest.raises(FormatError):
        files.build_meta_nn(b"")


# --------------------------------------------------------------------------------------------
# encoding errors


def test_encode_rejects_values_the_schema_cannot_hold() -> None:
    cases = [
        (Data(term=-1), "Data.Term"),
        (Data(index=2**64), "Data.Index"),
        (Data(cluster_id="1"), "Data.ClusterID"),  # type: ignore[arg-type]
        (Data(term=True), "Data.Term"),
        (Data(databases=[DatabaseInfo(name=None)]), "Data.Databases[0].Name"),  # type: ignore[arg-type]
        (Data(databases=[DatabaseInfo("d", "", [RetentionPolicyInfo("r", replica_n=-1)])]),
         "Data.Databases[0].RetentionPolicies[0].ReplicaN"),
        (Data(users=[UserInfo("u", "h", 1)]), "Data.Users[0].Admin"),  # type: ignore[arg-type]
        (Data(users=[UserInfo("u", "h", False, [UserPrivilege("d", 2**31)])]), "Data.Users[0].Privileges[0].Privilege"),
        (Data(databases=[DatabaseInfo("\ud800")]), "Data.Databases[0].Name"),
        (Data(databases=[UserInfo()]), "Data.Databases[0]"),  # type: ignore[list-item]
        (Data(nodes=None), "Data.Nodes"),  # type: ignore[arg-type]
    ]
    for model, field in cases:
        with pytest.raises(UsageError) as ei:
            encode_data(model)
        assert ei.value.field == field, (model, ei.value)
    with pytest.raises(UsageError):
        encode_data(SPEC_FRESH)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# convenience


def test_accessors_and_copy() -> None:
    d = decode_data(GO_FULL)
    db = d.database("wé<&>\udcff")
    assert db is d.databases[0] and d.database("nope") is None
    assert db.retention_policy("rp.1") is db.retention_policies[0]
    assert db.retention_policy("autogen") is None
    refs = list(d.iter_shards())
    assert [(r.db.name, r.rp.name, r.group.id, r.shard.id) for r in refs] == [("wé<&>\udcff", "rp.1", 5, 7)]
    c = d.copy()
    assert c == d and c is not d
    c.databases[0].retention_policies[0].shard_groups[0].shards[0].owner_ids.append(1)
    c.users[0].privileges.pop()
    assert d == decode_data(GO_FULL)


def test_shard_group_sort_key_follows_influxd_less() -> None:
    def g(gid: int, start: int, end: int, truncated: int | None = None) -> ShardGroupInfo:
        return ShardGroupInfo(gid, start, end, 0, [], truncated)

    groups = [
        g(1, 100, 200),
        g(2, 50, 200),  # same end, earlier start first
        g(3, 0, 300, truncated=150),  # effective end 150
        g(4, 10, 120, truncated=0),  # TruncatedAt 0 reads as unset: end 120
        g(5, -500, -100),  # negative times are real times
        g(6, 5, 0),  # end 0 is Go's zero time (year 1): before everything
    ]
    order = [x.id for x in sorted(groups, key=shard_group_sort_key)]
    assert order == [6, 5, 4, 3, 2, 1]


# --------------------------------------------------------------------------------------------
# hypothesis: round trips and hostile bytes

_text = st.one_of(
    st.text(max_size=6),
    st.binary(max_size=6).map(lambda b: b.decode("utf-8", "surrogateescape")),
)
_u64 = st.integers(0, U64_MAX)
_i64 = st.integers(I64_MIN, I64_MAX)
# valid field encodings with numbers no message here knows (12..15, 100), kept as unknown
_unknown = st.lists(
    st.sampled_from([H("a0062a"), H("62026869"), H("6b08016c"), H("710102030405060708"), H("7d01020304")]),
    max_size=2,
).map(b"".join)


def _l(s: st.SearchStrategy, n: int = 2) -> st.SearchStrategy:
    return st.lists(s, max_size=n)


_node = st.builds(NodeInfo, _u64, _text, st.none() | _text, _unknown)
_owner = st.builds(ShardOwner, _u64, _unknown)
_shard = st.builds(ShardInfo, _u64, _l(_u64), _l(_owner), _unknown)
_group = st.builds(ShardGroupInfo, _u64, _i64, _i64, _i64, _l(_shard), st.none() | _i64, _unknown)
_sub = st.builds(SubscriptionInfo, _text, _text, _l(_text), _unknown)
_rp = st.builds(RetentionPolicyInfo, _text, _i64, _i64, st.integers(0, 2**32 - 1), _l(_group), _l(_sub), _unknown)
_cq = st.builds(ContinuousQueryInfo, _text, _text, _unknown)
_db = st.builds(DatabaseInfo, _text, _text, _l(_rp), _l(_cq), _unknown)
_priv = st.builds(UserPrivilege, _text, st.integers(-(2**31), 2**31 - 1), _unknown)
_user = st.builds(UserInfo, _text, _text, st.booleans(), _l(_priv), _unknown)
_data = st.builds(
    Data, _u64, _u64, _u64, _l(_node), _l(_db), _l(_user), _u64, _u64, _u64, _l(_node), _l(_node), _unknown
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_data)
def test_random_models_round_trip(d: Data) -> None:
    blob = encode_data(d)
    back = decode_data(blob)
    assert back == d
    assert encode_data(back) == blob
    assert files.parse_meta_nn(files.build_meta_nn(blob)).data == d
    assert files.parse_portable_meta(files.build_portable_meta(blob)).blob == blob


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_archive_errors(raw: bytes) -> None:
    expected = (Data, files.MetaNN, files.PortableMeta, files.Manifest)
    parsers = (decode_data, files.parse_meta_nn, files.parse_portable_meta, files.parse_manifest)
    for parse, kind in zip(parsers, expected):
        try:
            result = parse(raw)
        except ArchiveError:
            continue
        assert isinstance(result, kind)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GO_FULL) - 1), st.integers(0, 255), st.integers(0, len(GO_FULL)))
def test_mutated_real_blob_raises_only_format_errors(pos: int, value: int, cut: int) -> None:
    raw = bytearray(GO_FULL)
    raw[pos] = value
    try:
        d = decode_data(bytes(raw[:cut]))
    except FormatError:
        return
    assert decode_data(encode_data(d)) == d


@settings(max_examples=200, deadline=None)
@given(st.builds(
    files.Manifest,
    _text.filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    _i64,
    st.booleans(),
    st.none() | _l(st.builds(files.ManifestEntry, st.text(max_size=5), st.text(max_size=5), _u64,
                             st.text(max_size=5), _i64, _i64), 3),
    st.none() | st.text(min_size=1, max_size=4),
    st.none() | st.text(min_size=1, max_size=4),
    st.none() | st.integers(1, U64_MAX),
))
def test_random_manifests_round_trip(m: files.Manifest) -> None:
    raw = files.dump_manifest(m)
    assert files.parse_manifest(raw) == m
    assert files.dump_manifest(files.parse_manifest(raw)) == raw


# --------------------------------------------------------------------------------------------
# manifest validation


@pytest.mark.parametrize(
    "text, field, message",
    [
        (b"{", None, "not valid JSON"),
        (b"\xff", None, "not UTF-8"),
        (b"[]", None, "expected a JSON object"),
        (b'{"limited": false, "files": null}', None, 'missing key "meta"'),
        (b'{"meta": {"fileName": "m"}, "limited": false, "files": null}', "meta", 'missing key "size"'),
        (b'{"meta": {"fileName": "m", "size": 1}, "files": null}', None, 'missing key "limited"'),
        (b'{"meta": {"fileName": "m", "size": 1}, "limited": false}', None, 'missing key "files"'),
        (b'{"meta": {"fileName": 1, "size": 1}, "limited": false, "files": null}', "meta.fileName",
         "expected a string"),
        (b'{"meta": {"fileName": "m", "size": 1.0}, "limited": false, "files": null}', "meta.size",
         "expected an integer"),
        (b'{"meta": {"fileName": "m", "size": true}, "limited": false, "files": null}', "meta.size",
         "expected an integer"),
        (b'{"meta": {"fileName": "m", "size": 9223372036854775808}, "limited": false, "files": null}', "meta.size",
         "out of range"),
        (b'{"meta": {"fileName": "m", "size": 1}, "limited": 0, "files": null}', "limited", "expected true or false"),
        (b'{"meta": {"fileName": "m", "size": 1}, "limited": false, "files": {}}', "files",
         "expected an array or null"),
        (b'{"meta": {"fileName": "m", "size": 1}, "limited": false, "files": [1]}', "files[0]",
         "expected a JSON object"),
        (b'{"meta": {"fileName": "m", "size": 1}, "limited": false, "files": [{"database": "d", "policy": "p", '
         b'"shardID": -1, "fileName": "f", "size": 1, "lastModified": 0}]}', "files[0].shardID", "out of range"),
        (b'{"meta": {"fileName": "m", "size": 1}, "limited": false, "files": [{"database": "d"}]}', "files[0]",
         'missing key "policy"'),
        (b'{"meta": {"fileName": "m", "size": NaN}, "limited": false, "files": null}', None, "NaN"),
        (b'{"meta": {"fileName": "m", "size": 1}, "limited": false, "files": null} x', None, "not valid JSON"),
    ],
)
def test_manifest_validation(text: bytes, field: str | None, message: str) -> None:
    with pytest.raises(FormatError) as ei:
        files.parse_manifest(text, path="x.manifest")
    assert message in str(ei.value) and ei.value.field == field and ei.value.path == "x.manifest"


def test_manifest_unknown_keys_are_ignored_and_dump_checks_types() -> None:
    text = b'{"meta": {"fileName": "m", "size": 1, "x": 2}, "limited": false, "files": null, "y": []}'
    assert files.parse_manifest(text) == files.Manifest("m", 1)
    for bad in (files.Manifest("m", "1"), files.Manifest("\udcff", 1), files.Manifest("m", 1, files=[1]),  # type: ignore[arg-type, list-item]
                files.Manifest("m", 1, shard_id=-1)):
        with pytest.raises(UsageError):
            files.dump_manifest(bad)


# --------------------------------------------------------------------------------------------
# names


def test_legacy_names() -> None:
    assert files.legacy_shard_file_name("db1", "hourly", 10, 0) == "db1.hourly.00010.00"
    assert files.legacy_shard_file_name("db1", "hourly", 123456, 100) == "db1.hourly.123456.100"
    assert files.legacy_meta_file_name(3) == "meta.03"
    p = files.parse_legacy_shard_file_name("db1.hourly.00010.00")
    assert p is not None and (p.shard_id, p.n, p.db_rp) == (10, 0, ("db1", "hourly"))  # influxd: shard 1
    p = files.parse_legacy_shard_file_name("db1.hourly.00100.01")
    assert p is not None and (p.shard_id, p.n) == (100, 1)
    p = files.parse_legacy_shard_file_name("my.db.auto.gen.00004.00")
    assert p is not None and p.db_rp is None and p.shard_id == 4
    assert p.candidates == (("my", "db.auto.gen"), ("my.db", "auto.gen"), ("my.db.auto", "gen"))
    p = files.parse_legacy_shard_file_name("..00010.00")  # -shard alone (docs/formats.md#backup-selection)
    assert p is not None and p.db_rp == ("", "") and p.shard_id == 10
    for name in ("meta.00", "db1.hourly.00010.00.pending", "db1.00010.00", "db1.hourly.0010.00",
                 "db1.hourly.00010.0", "db1.hourly.00010.0a", "x"):
        assert files.parse_legacy_shard_file_name(name) is None, name
    assert files.legacy_meta_index("meta.100") == 100 > files.legacy_meta_index("meta.99")  # type: ignore[operator]
    for name in ("meta.00.pending", "meta.0", "meta.db", "meta.1a"):
        assert files.legacy_meta_index(name) is None
    with pytest.raises(UsageError):
        files.legacy_shard_file_name("d", "r", -1, 0)


def test_portable_names() -> None:
    when = dt.datetime(2026, 11, 25, 1, 58, 27, 999999, tzinfo=dt.UTC)
    assert files.portable_timestamp(when) == "20261125T015827Z"
    cet = dt.timezone(dt.timedelta(hours=1))
    assert files.portable_timestamp(dt.datetime(2026, 11, 25, 2, 58, 27, tzinfo=cet)) == "20261125T015827Z"
    assert files.portable_timestamp(dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC)) == "09990102T030405Z"
    with pytest.raises(UsageError):
        files.portable_timestamp(dt.datetime(2026, 11, 25))
    names = files.portable_names("20261125T015827Z", [2, "010"])
    assert names.meta == "20261125T015827Z.meta" and names.manifest == "20261125T015827Z.manifest"
    assert names.shards == {2: "20261125T015827Z.s2.tar.gz", "010": "20261125T015827Z.s010.tar.gz"}
    assert files.portable_names(when, []).meta == "20261125T015827Z.meta"


# --------------------------------------------------------------------------------------------
# meta.db files


def test_write_and_read_meta_db(tmp_path: Path) -> None:
    path = tmp_path / "meta.db"
    files.write_meta_db(path, decode_data(GO_FULL))
    assert path.read_bytes() == GO_FULL
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert files.read_meta_db(path) == decode_data(GO_FULL)
    assert files.read_meta_db_bytes(path) == GO_FULL
    with pytest.raises(TargetError):
        files.write_meta_db(path, SPEC_FRESH)
    assert path.read_bytes() == GO_FULL
    files.write_meta_db(path, SPEC_FRESH, overwrite=True, mode=0o600)
    assert path.read_bytes() == SPEC_FRESH and stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FormatError):
        files.write_meta_db(tmp_path / "bad.db", b"\x10\x01")
    assert sorted(os.listdir(tmp_path)) == ["meta.db"]  # no temp files, nothing half-written
    with pytest.raises(SourceError):
        files.read_meta_db(tmp_path / "missing.db")
    with pytest.raises(TargetError):
        files.write_meta_db(tmp_path / "no" / "dir" / "meta.db", SPEC_FRESH)
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(FormatError) as ei:
        files.read_meta_db(tmp_path / "empty.db")
    assert ei.value.path == str(tmp_path / "empty.db") and ei.value.field == "Data.Term"


# --------------------------------------------------------------------------------------------
# committed fixtures


def _fixture_meta_files(fixtures_dir: Path) -> list[Path]:
    found: set[str] = set()
    for pattern in ("**/meta.[0-9]*", "**/*.meta", "**/meta.db", "**/*.manifest"):
        found.update(glob.glob(str(fixtures_dir / pattern), recursive=True))
    return sorted(Path(p) for p in found if not p.endswith(".pending") and os.path.isfile(p))


def _assert_round_trip(path: Path) -> None:
    raw = path.read_bytes()
    if path.name == "meta.db":
        assert encode_data(decode_data(raw, path=str(path))) == raw
    elif path.suffix == ".manifest":
        assert files.dump_manifest(files.parse_manifest(raw, path=path)) == raw
    elif path.suffix == ".meta":
        blob, max_node_id = files.parse_portable_meta(raw, path=path)
        assert files.build_portable_meta(blob, max_node_id) == raw
        assert encode_data(decode_data(blob)) == blob
    else:
        nn = files.parse_meta_nn(raw, path=path)
        assert files.build_meta_nn(nn.blob, nn.node_json) == raw
        assert encode_data(nn.data) == nn.blob


def test_every_fixture_meta_file_round_trips(fixtures_dir: Path) -> None:
    paths = _fixture_meta_files(fixtures_dir)
    assert paths, f"no metastore files under {fixtures_dir} (fixtures not generated?)"
    for path in paths:
        _assert_round_trip(path)


# --------------------------------------------------------------------------------------------
# interop with the real influxd

EPOCH_2026_10_26 = 1792972800000000000  # a Monday
HOUR = 3600 * 10**9
WEEK = 7 * 24 * HOUR
ODD_DB = "wé<&>"
GRANT_NAMES = {1: "READ", 2: "WRITE", 3: "ALL PRIVILEGES"}


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String`` for whole seconds (how SHOW RETENTION POLICIES prints)."""
    if ns == 0:
        return "0s"
    assert ns % 10**9 == 0
    s = ns // 10**9
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    return f"{m}m{sec}s" if m else f"{sec}s"


class Lab:
    """One real influxd with a varied metastore and its backups."""

    root: Path
    meta_db: bytes
    legacy: Path
    portable: Path
    portable_empty: Path
    truth: dict


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, influxd_bin: str) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("meta_lab")
    server = influxd.InfluxServer(root / "src")
    server.start()
    try:
        q = server.execute
        qi = influxd.quote_ident
        q("CREATE DATABASE db1")
        q("CREATE RETENTION POLICY hourly ON db1 DURATION INF REPLICATION 1 SHARD DURATION 1h")
        q("CREATE RETENTION POLICY short ON db1 DURATION 2h REPLICATION 1 SHARD DURATION 1h")
        q(f"CREATE DATABASE {qi(ODD_DB)} WITH NAME {qi('rp.dot')}")
        q("CREATE DATABASE empty")
        q("CREATE USER root WITH PASSWORD 'rootpw' WITH ALL PRIVILEGES")
        q("CREATE USER reader WITH PASSWORD 'readpw'")
        q("GRANT READ ON db1 TO reader")
        q(f"GRANT WRITE ON {qi(ODD_DB)} TO reader")
        q("CREATE USER nobody WITH PASSWORD 'x'")
        q(
            "CREATE CONTINUOUS QUERY cq1 ON db1 BEGIN SELECT mean(v) INTO db1.autogen.cpu_1h "
            "FROM db1.autogen.cpu GROUP BY time(1h), * END"
        )
        q("CREATE SUBSCRIPTION sub1 ON db1.autogen DESTINATIONS ALL 'http://127.0.0.1:1', 'udp://127.0.0.1:2'")
        q("CREATE SUBSCRIPTION sub2 ON db1.hourly DESTINATIONS ANY 'http://127.0.0.1:3'")
        t = EPOCH_2026_10_26
        server.write(f"cpu,host=a v=1 {t}\ncpu,host=a v=2 {t + WEEK}", db="db1")
        server.write(f"temp v=1 {t}\ntemp v=2 {t + HOUR}\ntemp v=3 {t + 2 * HOUR}", db="db1", rp="hourly")
        server.write(f"m v=1 {t}", db=ODD_DB, rp="rp.dot")
        hourly_ids = sorted(
            dict(zip(s["columns"], row))["id"]
            for s in server.series("SHOW SHARDS")
            for row in s.get("values") or []
            if dict(zip(s["columns"], row))["retention_policy"] == "hourly"
        )
        q(f"DROP SHARD {hourly_ids[1]}")  # leaves a deleted shard group (DeletedAt set)
        lab = Lab()
        lab.root = root
        lab.legacy = root / "bk_leg"
        lab.portable = root / "bk_port"
        lab.portable_empty = root / "bk_port_empty"
        server.backup(lab.legacy, "-database", "db1")
        server.backup(lab.legacy, "-database", ODD_DB)  # meta.01 in the same dir
        server.backup(lab.portable, "-portable")
        server.backup(lab.portable_empty, "-portable", "-database", "empty")
        lab.meta_db = (server.meta_dir / "meta.db").read_bytes()
        lab.truth = server.dump()
        yield lab
    finally:
        server.stop()


@pytest.mark.interop
def test_real_meta_db_round_trips(lab: Lab) -> None:
    d = decode_data(lab.meta_db)
    assert encode_data(d) == lab.meta_db
    assert d.max_node_id == 0 and not d.nodes and not d.data_nodes and not d.meta_nodes


@pytest.mark.interop
def test_real_meta_nn_round_trips(lab: Lab) -> None:
    names = sorted(p.name for p in lab.legacy.glob("meta.*"))
    assert names == ["meta.00", "meta.01"]
    for name in names:
        raw = (lab.legacy / name).read_bytes()
        nn = files.parse_meta_nn(raw, path=lab.legacy / name)
        assert nn.node_json == b"null\n" and len(raw) == len(nn.blob) + 29
        assert files.build_meta_nn(nn.blob, nn.node_json) == raw
        assert encode_data(nn.data) == nn.blob
        # the backup holds the whole metastore, whatever -database said
        assert {db.name for db in nn.data.databases} == {"db1", ODD_DB, "empty"}


@pytest.mark.interop
def test_real_portable_meta_and_manifests_round_trip(lab: Lab) -> None:
    for folder in (lab.portable, lab.portable_empty):
        (manifest_path,) = folder.glob("*.manifest")
        raw = manifest_path.read_bytes()
        m = files.parse_manifest(raw, path=manifest_path)
        assert files.dump_manifest(m) == raw
        meta_raw = (folder / m.meta_file_name).read_bytes()
        blob, max_node_id = files.parse_portable_meta(meta_raw, path=folder / m.meta_file_name)
        assert max_node_id == 0 and m.meta_size == len(blob) and not m.limited
        assert files.build_portable_meta(blob, max_node_id) == meta_raw
        d = decode_data(blob)
        assert encode_data(d) == blob
        # the names influxd used are the ones portable_names gives
        ts = manifest_path.name[: -len(".manifest")]
        names = files.portable_names(ts, [e.shard_id for e in m.files or []])
        assert {p.name for p in folder.iterdir()} == {names.meta, names.manifest, *names.shards.values()}
        if folder == lab.portable_empty:
            assert m.files is None and b'"files": null' in raw
        else:
            assert m.files is not None
            live = {r.shard.id: (r.db.name, r.rp.name) for r in d.iter_shards() if not r.group.deleted}
            assert {e.shard_id: (e.database, e.policy) for e in m.files} == live
            assert "wé\\u003c\\u0026\\u003e".encode() in raw  # Go's HTML-safe escaping


@pytest.mark.interop
def test_real_legacy_shard_names(lab: Lab) -> None:
    d = files.parse_meta_nn((lab.legacy / "meta.01").read_bytes()).data
    where = {r.shard.id: (r.db.name, r.rp.name) for r in d.iter_shards()}
    shard_files = sorted(p.name for p in lab.legacy.iterdir() if not p.name.startswith("meta."))
    assert shard_files
    for name in shard_files:
        parsed = files.parse_legacy_shard_file_name(name)
        assert parsed is not None, name
        db, rp = where[parsed.shard_id]
        assert (db, rp) in parsed.candidates
        assert parsed.db_rp == ((db, rp) if db != ODD_DB else None)  # "wé<&>.rp.dot" is ambiguous
        assert files.legacy_shard_file_name(db, rp, parsed.shard_id, parsed.n) == name


@pytest.mark.interop
def test_real_meta_matches_show_commands(lab: Lab) -> None:
    d = decode_data(lab.meta_db)
    truth = lab.truth
    assert {db.name for db in d.databases} == set(truth["databases"])
    for db in d.databases:
        tdb = truth["databases"][db.name]
        assert {
            rp.name: {
                "duration": go_duration(rp.duration),
                "shard_group_duration": go_duration(rp.shard_group_duration),
                "replication": rp.replica_n,
                "default": rp.name == db.default_retention_policy,
            }
            for rp in db.retention_policies
        } == tdb["retention_policies"]
        assert {cq.name: cq.query for cq in db.continuous_queries} == tdb["continuous_queries"]
        subs = {
            rp.name: {s.name: {"mode": s.mode, "destinations": s.destinations} for s in rp.subscriptions}
            for rp in db.retention_policies
            if rp.subscriptions
        }
        assert subs == tdb["subscriptions"]
        for rp in db.retention_policies:  # influxd keeps groups sorted (docs/formats.md#metastore-data)
            assert rp.shard_groups == sorted(rp.shard_groups, key=shard_group_sort_key)
    assert {
        u.name: {"admin": u.admin, "grants": {p.database: GRANT_NAMES[p.privilege] for p in u.privileges}}
        for u in d.users
    } == {
        name: {"admin": u["admin"], "grants": {k: v for k, v in u["grants"].items() if v != "NO PRIVILEGES"}}
        for name, u in truth["users"].items()
    }
    live = [r for r in d.iter_shards() if not r.group.deleted]  # SHOW SHARDS skips deleted groups
    assert [
        {
            "id": r.shard.id,
            "database": r.db.name,
            "retention_policy": r.rp.name,
            "shard_group": r.group.id,
            "start": influxd.ns_to_rfc3339(r.group.start_time),
            "end": influxd.ns_to_rfc3339(r.group.end_time),
        }
        for r in sorted(live, key=lambda r: r.shard.id)
    ] == truth["shards"]
    deleted = [g for db in d.databases for rp in db.retention_policies for g in rp.shard_groups if g.deleted]
    assert len(deleted) == 1 and deleted[0].shards == []  # the DROP SHARD
    assert d.max_shard_id >= max(r.shard.id for r in d.iter_shards())
    assert d.max_shard_group_id >= max(
        g.id for db in d.databases for rp in db.retention_policies for g in rp.shard_groups
    )


@pytest.mark.interop
def test_influxd_starts_on_a_meta_db_we_wrote(lab: Lab, influxd_factory, tmp_path: Path) -> None:
    d = decode_data(lab.meta_db)
    d.databases.append(
        DatabaseInfo(
            "made_by_us",
            "r1",
            [
                RetentionPolicyInfo(
                    "r1", 3 * HOUR, HOUR, 1, subscriptions=[SubscriptionInfo("s9", "ANY", ["udp://127.0.0.1:9"])]
                )
            ],
            [
                ContinuousQueryInfo(
                    "cq9",
                    "CREATE CONTINUOUS QUERY cq9 ON made_by_us BEGIN SELECT count(v) INTO x FROM y GROUP BY time(1h) "
                    "END",
                )
            ],
        )
    )
    d.users[-1].privileges.append(UserPrivilege("made_by_us", Privilege.WRITE))
    d.index += 1
    root = tmp_path / "ours"
    (root / "meta").mkdir(parents=True)
    files.write_meta_db(root / "meta" / "meta.db", d)
    server = influxd_factory(root)
    truth = server.dump()
    ours = truth["databases"].pop("made_by_us")
    assert ours["retention_policies"] == {
        "r1": {"duration": "3h0m0s", "shard_group_duration": "1h0m0s", "replication": 1, "default": True}
    }
    assert ours["continuous_queries"] == {"cq9": d.databases[-1].continuous_queries[0].query}
    assert ours["subscriptions"] == {"r1": {"s9": {"mode": "ANY", "destinations": ["udp://127.0.0.1:9"]}}}
    expected_users = {k: dict(v, grants=dict(v["grants"])) for k, v in lab.truth["users"].items()}
    expected_users[d.users[-1].name]["grants"]["made_by_us"] = "WRITE"
    assert truth["users"] == expected_users
    for db in lab.truth["databases"]:
        for key in ("retention_policies", "continuous_queries", "subscriptions"):
            assert truth["databases"][db][key] == lab.truth["databases"][db][key]
    assert truth["shards"] == lab.truth["shards"]
