// Throw-away generator of reference vectors for influx-archive tests/test_meta.py.
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/influxdata/influxdb/cmd/influxd/backup_util"
	"github.com/influxdata/influxdb/services/meta"
	internal "github.com/influxdata/influxdb/services/meta/internal"
)

func out(name string, b []byte) { fmt.Printf("%s %s\n", name, hex.EncodeToString(b)) }

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func main() {
	// 1. a full internal.Data exercising every field, edge values, invalid UTF-8
	d := &internal.Data{
		Term: proto.Uint64(3), Index: proto.Uint64(math.MaxUint64), ClusterID: proto.Uint64(1 << 62),
		Nodes: []*internal.NodeInfo{{ID: proto.Uint64(1), Host: proto.String("h1:8088")},
			{ID: proto.Uint64(2), Host: proto.String("h2"), TCPHost: proto.String("h2:8089")}},
		Databases: []*internal.DatabaseInfo{{
			Name: proto.String("wé<&>\xff"), DefaultRetentionPolicy: proto.String(""),
			RetentionPolicies: []*internal.RetentionPolicyInfo{{
				Name: proto.String("rp.1"), Duration: proto.Int64(-1), ShardGroupDuration: proto.Int64(math.MaxInt64),
				ReplicaN: proto.Uint32(math.MaxUint32),
				ShardGroups: []*internal.ShardGroupInfo{
					{ID: proto.Uint64(5), StartTime: proto.Int64(math.MinInt64), EndTime: proto.Int64(-1), DeletedAt: proto.Int64(0),
						Shards: []*internal.ShardInfo{{ID: proto.Uint64(7), OwnerIDs: []uint64{3, 300}, Owners: []*internal.ShardOwner{{NodeID: proto.Uint64(9)}}}}},
					{ID: proto.Uint64(6), StartTime: proto.Int64(0), EndTime: proto.Int64(10), DeletedAt: proto.Int64(1700000000000000000),
						TruncatedAt: proto.Int64(5)},
				},
				Subscriptions: []*internal.SubscriptionInfo{{Name: proto.String("s"), Mode: proto.String("ANY"),
					Destinations: []string{"udp://a:1", ""}}},
			}},
			ContinuousQueries: []*internal.ContinuousQueryInfo{{Name: proto.String("c"), Query: proto.String("CREATE CONTINUOUS QUERY c ON x BEGIN SELECT 1 END")}},
		}},
		Users: []*internal.UserInfo{{Name: proto.String("u"), Hash: proto.String("h"), Admin: proto.Bool(true),
			Privileges: []*internal.UserPrivilege{{Database: proto.String("d2"), Privilege: proto.Int32(3)},
				{Database: proto.String("d1"), Privilege: proto.Int32(-2)}}}},
		MaxNodeID: proto.Uint64(0), MaxShardGroupID: proto.Uint64(6), MaxShardID: proto.Uint64(7),
		DataNodes: []*internal.NodeInfo{{ID: proto.Uint64(4), Host: proto.String("d")}},
		MetaNodes: []*internal.NodeInfo{{ID: proto.Uint64(5), Host: proto.String("m")}},
	}
	full := must(proto.Marshal(d))
	out("full", full)

	// 2. unknown fields: Go keeps them (XXX_unrecognized) and re-emits them after the known fields
	in := []byte{}
	in = append(in, 0xa0, 0x06, 0x2a) // field 100 varint 42 (unknown, top level, first)
	in = append(in, 0x08, 0x00, 0x10, 0x02, 0x18, 0x03)
	// Databases{Name:"x", DefaultRP:"", field 9 fixed64, field 10 fixed32, field 11 group{field 1 varint 1}}
	db := []byte{0x0a, 0x01, 'x', 0x49, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 0x00, 0x55, 1, 2, 3, 4, 0x5b, 0x08, 0x01, 0x5c}
	in = append(in, 0x2a, byte(len(db)))
	in = append(in, db...)
	in = append(in, 0x38, 0x00, 0x40, 0x00, 0x48, 0x00)
	in = append(in, 0x62, 0x02, 'h', 'i') // field 12 LEN "hi" (unknown)
	out("unknown_in", in)
	var u internal.Data
	if err := proto.Unmarshal(in, &u); err != nil {
		panic(err)
	}
	out("unknown_out", must(proto.Marshal(&u)))

	// 3. through the public model: TruncateShardGroups and MarshalBinary
	md := &meta.Data{Index: 1, ClusterID: 42}
	if err := md.CreateDatabase("db1"); err != nil {
		panic(err)
	}
	if err := md.CreateRetentionPolicy("db1", &meta.RetentionPolicyInfo{Name: "autogen", ReplicaN: 1, ShardGroupDuration: 168 * time.Hour}, true); err != nil {
		panic(err)
	}
	t0 := time.Unix(0, 1792972800000000000).UTC()
	if err := md.CreateShardGroup("db1", "autogen", t0); err != nil {
		panic(err)
	}
	md.TruncateShardGroups(t0.Add(time.Hour))
	out("truncated", must(md.MarshalBinary()))

	// 4. PortableData around the 20-byte fresh metastore of docs/formats.md#meta-db
	fresh, _ := hex.DecodeString("0800100118" + "83fb9c97f5d2b2fe7a" + "380040004800")
	out("portable0", must(backup_util.PortablePacker{Data: fresh, MaxNodeID: 0}.MarshalBinary()))
	out("portable300", must(backup_util.PortablePacker{Data: fresh, MaxNodeID: 300}.MarshalBinary()))

	// 4b. manifests (the exact json.MarshalIndent call of Manifest.Save)
	mi := func(name string, m backup_util.Manifest) {
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			panic(err)
		}
		out(name, b)
	}
	mi("manifest_null", backup_util.Manifest{Meta: backup_util.MetaEntry{FileName: "20261125T015827Z.meta", Size: 996}})
	mi("manifest_empty", backup_util.Manifest{Meta: backup_util.MetaEntry{FileName: "m", Size: 0}, Files: []backup_util.Entry{}})
	mi("manifest_odd", backup_util.Manifest{
		Meta: backup_util.MetaEntry{FileName: "a<b>&c\"d\u2028\u2029\x01\x08\x0c\x1f\x7f\n\r\té€😀", Size: -5},
		Limited: true,
		Files: []backup_util.Entry{
			{Database: "wé<&>", Policy: "rp.1", ShardID: math.MaxUint64, FileName: "x.s18446744073709551615.tar.gz", Size: math.MaxInt64, LastModified: math.MinInt64},
			{Database: "", Policy: "", ShardID: 0, FileName: "", Size: 0, LastModified: 7},
		},
		Database: "db", Policy: "p", ShardID: 10,
	})
	mi("manifest_omit", backup_util.Manifest{Meta: backup_util.MetaEntry{FileName: "m", Size: 1}, Policy: "p"})

	// 5. errors influxd reports
	var e internal.Data
	fmt.Println("err_missing_term", proto.Unmarshal([]byte{0x10, 0x01}, &e))
	fmt.Println("err_truncated", proto.Unmarshal(full[:len(full)-1], &e))
	fmt.Println("err_wrongwire", proto.Unmarshal([]byte{0x0a, 0x00, 0x08, 0x00, 0x10, 0x00, 0x18, 0x00, 0x38, 0x00, 0x40, 0x00, 0x48, 0x00}, &e), e.XXX_unrecognized)
}
