"""rebuild-meta's shard groups against influxd's own ``meta.Data.CreateShardGroup`` (Go, built from
influxd 1.6.7's source): for every (duration, time), the group influxd would create for a point at
that time is the group rebuild-meta assigns a shard whose data is that one time."""

from __future__ import annotations

import random
import subprocess

import pytest
from goprog import build_go_program

from influx_archive.archive.ops.rebuildmeta import HOUR, ShardRange, _group
from influx_archive.meta.model import MIN_TIME

GO = r'''
package main

import (
	"bufio"
	"fmt"
	"os"
	"time"

	"github.com/influxdata/influxdb/services/meta"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var d, t int64
		fmt.Sscan(in.Text(), &d, &t)
		data := &meta.Data{}
		data.CreateDatabase("db")
		if err := data.CreateRetentionPolicy("db", &meta.RetentionPolicyInfo{Name: "rp", ReplicaN: 1,
			ShardGroupDuration: time.Duration(d)}, true); err != nil {
			fmt.Println("error", err)
			continue
		}
		if err := data.CreateShardGroup("db", "rp", time.Unix(0, t)); err != nil {
			fmt.Println("error", err)
			continue
		}
		g := data.Databases[0].RetentionPolicies[0].ShardGroups[0]
		fmt.Println(g.StartTime.UnixNano(), g.EndTime.UnixNano())
	}
}
'''


def _cases() -> list[tuple[int, int]]:
    rng = random.Random(1867)
    durations = [HOUR, 24 * HOUR, 7 * 24 * HOUR, 2 * HOUR, 6 * HOUR, 30 * 24 * HOUR]
    durations += [rng.randrange(1, 24 * 60) * HOUR for _ in range(6)]
    times = [0, 1, -1, 1_600_000_000 * 10**9, (1 << 63) - 2, (1 << 63) - 10**15, -(1 << 63) + 2 + 10**18]
    times += [rng.randrange(-(1 << 62), 1 << 62) for _ in range(40)]
    return [(d, t) for d in durations for t in times]


@pytest.mark.interop
def test_groups_match_influxds_create_shard_group(tmp_path) -> None:
    tool = build_go_program(GO, tmp_path, "the CreateShardGroup differential test")
    cases = _cases()
    out = subprocess.run([str(tool)], input="\n".join(f"{d} {t}" for d, t in cases) + "\n",
                         capture_output=True, text=True, timeout=300, check=True).stdout.splitlines()
    assert len(out) == len(cases)
    for (d, t), line in zip(cases, out):
        assert not line.startswith("error"), (d, t, line)
        start, end = map(int, line.split())
        if start > end:  # influxd's wrapped start near the lowest time: it holds from the lowest time
            start = MIN_TIME
        got = _group(ShardRange("db", "rp", 1, t, t, 1), d)
        assert got == (start, end), (d, t, got, (start, end))
