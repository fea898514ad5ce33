"""Online backup of a server that changes: a writer keeps writing during the backup (the result lies
between the truth before and after), and --since increments added to a backup restore to the union."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import Counter
from pathlib import Path

import influxd as harness
import pytest
from live_server import DAY, MIN, T0, live_server
from make_fixtures import block_compactions

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def series_points(truth: dict) -> dict[tuple, set[int]]:
    out: dict[tuple, set[int]] = {}
    for db, d in truth["databases"].items():
        for rp, ms in d["data"].items():
            for m, e in ms.items():
                for s in e["series"]:
                    out[(db, rp, m, tuple(sorted(s["tags"].items())))] = {t for t, _ in s["points"]}
    return out


def restore_and_serve(cli, backup: Path, root: Path, factory):
    r = cli("restore", str(backup), "--metadir", str(root / "meta"), "--datadir", str(root / "data"))
    assert r.code == 0, r.err
    return factory(root)


@pytest.mark.parametrize("to", ["portable", "legacy"])
def test_backup_while_a_writer_writes(to, tmp_path, cli, influxd_factory):
    with live_server(tmp_path / "live") as live:
        s = live.server
        stop = threading.Event()
        written = Counter()

        def writer() -> None:
            n = 0
            while not stop.is_set():
                base = T0 + 20 * DAY + n * 10 * MIN  # a new 1-hour shard group every 6 batches
                s.write("".join(f"w,k=k{j} v={n}i {base + j}\n" for j in range(50)), db="db1", rp="hourly")
                s.write(f"cpu,host=h0 v={n}.5 {T0 + 4000 * MIN + n}\n", db="db1")
                written["batches"] += 1
                n += 1
                time.sleep(0.01)

        before = s.dump()
        th = threading.Thread(target=writer, daemon=True)
        th.start()
        try:
            while written["batches"] < 5:
                time.sleep(0.05)
            r = cli("backup", "--host", live.host, str(tmp_path / "b"), "--to", to, "--json")
        finally:
            stop.set()
            th.join(30)
        assert r.code == 0, r.err
        after = s.dump()
    got = restore_and_serve(cli, tmp_path / "b", tmp_path / "root", influxd_factory).dump()
    lo, hi, mid = series_points(before), series_points(after), series_points(got)
    assert set(lo) <= set(mid) <= set(hi)
    for key, pts in mid.items():
        assert lo.get(key, set()) <= pts <= hi[key], key
    assert sum(map(len, mid.values())) > sum(map(len, lo.values())), "the backup caught some of the writes"
    result = json.loads(r.out)
    assert {sh["id"] for sh in result["shards"]} >= {sh["id"] for sh in before["shards"]}
    # every shard the restored metastore lists was backed up (the metastore was taken last)
    assert {(x["database"], x["retention_policy"]) for x in got["shards"]} <= {
        (x["database"], x["retention_policy"]) for x in after["shards"]}
    assert harness.compare_truth(before, got, sections={"users", "continuous_queries", "retention_policies"}) == []


def _barrier() -> str:
    """A time T with every file written before it older than T and every file written after newer."""
    time.sleep(1.1)
    t = dt.datetime.now(dt.UTC).replace(microsecond=0)
    time.sleep(1.1)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("to", ["portable", "legacy"])
def test_since_chain_restores_to_the_union(to, tmp_path, cli, influxd_factory):
    dest = tmp_path / "b"
    with live_server(tmp_path / "live") as live:
        s = live.server
        r = cli("backup", "--host", live.host, str(dest), "--to", to)
        assert r.code == 0, r.err
        for step in range(2):
            since = _barrier()
            s.write("".join(f"inc,step={step} v={k}i {T0 + 3 * DAY + k * MIN}\n" for k in range(30)), db="db1")
            s.write(f"cpu,host=h2 v=-{step}.25 {T0 + 10 * MIN + 2}\n", db="db1")  # overwrite a point
            block_compactions(s.data_dir)
            # a delete of data that is in the first backup, in a file the increment does not ship
            s.execute(f"DELETE FROM cpu WHERE host='h0' AND time >= {T0 + (200 + 100 * step) * MIN} "
                      f"AND time < {T0 + (250 + 100 * step) * MIN}", "db1")
            s.execute(f"DELETE FROM m WHERE time = {T0 + 2 * DAY + (3 + step) * 3600 * 10**9}", "db2")
            r = cli("backup", "--host", live.host, str(dest), "--to", to, "--since", since, "--json")
            assert r.code == 0, r.err
            res = json.loads(r.out)
            assert res["plan"]["append"] if "plan" in res else True
        truth = s.dump()
    names = sorted(p.name for p in dest.iterdir())
    if to == "legacy":
        assert {"meta.00", "meta.01", "meta.02"} <= set(names)
    else:
        assert len([n for n in names if n.endswith(".manifest")]) == 3
        manifests = [json.loads((dest / n).read_text()) for n in names if n.endswith(".manifest")]
        assert all(f["lastModified"] >= 0 for m in manifests for f in m["files"])
    got = restore_and_serve(cli, dest, tmp_path / "root", influxd_factory).dump()
    assert harness.compare_truth(harness.without_dead_fields(truth), got, sections={
        "points", "users", "continuous_queries", "retention_policies", "databases"}) == []


def test_shard_groups_created_during_the_backup_are_in_it(tmp_path, cli, influxd_factory):
    """A write that creates a new shard group while the first shard is being fetched: the
    metastore is taken again after the shards, so the new shard is fetched and its point kept."""
    from influx_archive.archive.ops.onlinebackup import execute_online_backup, plan_online_backup
    from influx_archive.archive.snapshotter import Client

    late_t = T0 + 40 * DAY + 5 * MIN
    with live_server(tmp_path / "live") as live:
        client = Client(live.host)
        plan = plan_online_backup(client, tmp_path / "b", to="portable")
        real = client.shard_backup
        fired = []

        def fetch(shard_id, out, **kw):
            if not fired:
                fired.append(shard_id)
                live.server.write(f"late,k=v v=1i {late_t}", db="db1", rp="hourly")
            return real(shard_id, out, **kw)

        client.shard_backup = fetch  # type: ignore[method-assign]
        result = execute_online_backup(plan)
        truth = live.server.dump()
    assert fired and result.late_shards, "a shard created during the backup was fetched after the first pass"
    got = restore_and_serve(cli, tmp_path / "b", tmp_path / "root", influxd_factory).dump()
    assert got["databases"]["db1"]["data"]["hourly"]["late"]["series"][0]["points"] == [[late_t, {"v": 1}]]
    assert harness.compare_truth(harness.without_dead_fields(truth), got, sections={"points"}) == []
