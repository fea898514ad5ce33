"""`backup --host --since T` added to an existing backup must leave a chain that holds every file
the server has, whatever T the operator gives. Bug found (CI, test_online_backup_live): with T
later than the previous backup's start, a compaction output or cache snapshot the server wrote
in between was in no backup, and the restored union brought back points the server had deleted.

A model server (files with mtimes on a virtual clock, answering request 0 with the files
modified after ``Since``, as influxd's Engine.Backup does) goes through seeded random histories
of writes, level compactions and deletes, with backups at random moments and random ``--since``
choices; after every increment the chain, read back as every verb reads it, must hold exactly
the server's live files with their current contents."""

from __future__ import annotations

import datetime as dt
import io
import json
import random
import tarfile
import types
from pathlib import Path

import pytest
from test_redteam_online_hostile import NO_WAIT, TypedFake, listing, meta_answer

from influx_archive.archive import snapshotter as sn
from influx_archive.archive.ops import onlinebackup as ob
from influx_archive.archive.ops import onlinechain
from influx_archive.archive.sources import open_source

# influxd's own TSM files, of many sizes (the chain is checked by file names and sizes)
REAL_TSMS = sorted({p.read_bytes() for p in (Path(__file__).resolve().parent.parent / "fixtures" / "live" / "data")
                    .rglob("*.tsm")}, key=len)

LAYOUT = [("db", "rp", [3, 4])]
PATHS = {3: "db/rp/3", 4: "db/rp/4"}


class Clock:
    def __init__(self) -> None:
        self.ns = 1_800_000_000 * 10**9

    def tick(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)

    def time_ns(self) -> int:
        return self.ns

    def time(self) -> float:
        return self.ns / 1e9

    def sleep(self, seconds: float) -> None:
        self.tick(seconds)


def parse_go_time(text: str) -> int | None:
    if text.startswith("0001-01-01"):
        return None
    base, _, frac = text.rstrip("Z").partition(".")
    secs = int(dt.datetime.fromisoformat(base).replace(tzinfo=dt.UTC).timestamp())
    return secs * 10**9 + int((frac or "0").ljust(9, "0"))


class ModelServer:
    """Shards of TSM/tombstone files (name -> (bytes, mtime ns)), changed the way influxd does."""

    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self.clock, self.rng = clock, rng
        self.files: dict[int, dict[str, tuple[bytes, int]]] = {3: {}, 4: {}}
        self.gen = {3: 0, 4: 0}

    def _blob(self) -> bytes:  # a real TSM file: a backup checks every file it is sent block by block
        return self.rng.choice(REAL_TSMS)

    def write(self, sid: int) -> None:  # a cache snapshot: a new generation, level 1
        self.gen[sid] += 1
        self.files[sid][f"{self.gen[sid]:09d}-000000001.tsm"] = (self._blob(), self.clock.ns)

    def compact(self, sid: int) -> None:
        """influxd's level compaction: adjacent generations of one level -> (highest gen, seq + 1),
        their tombstones applied (gone). (A group that leaves an older file of its own level
        behind is not modelled: a chain cannot tell it from one that took it, see
        docs/formats.md#incremental-sets.)"""
        tsm = sorted(n for n in self.files[sid] if n.endswith(".tsm"))
        # influxd compacts the oldest files of a level first: every older file is of a higher level
        starts = [i for i in range(len(tsm) - 1) if all(int(o[10:19]) > int(tsm[i][10:19]) for o in tsm[:i])]
        if not starts:
            return
        i = self.rng.choice(starts)
        seq = int(tsm[i][10:19])
        group = [tsm[i]]
        for n in tsm[i + 1:]:
            if int(n[10:19]) != seq:
                break
            group.append(n)
        if len(group) < 2:
            return
        for n in group:
            del self.files[sid][n]
            self.files[sid].pop(n[:-4] + ".tombstone", None)
        self.files[sid][f"{group[-1][:9]}-{seq + 1:09d}.tsm"] = (self._blob(), self.clock.ns)

    def delete(self, sid: int) -> None:  # a DELETE: tombstones grow
        tsm = [n for n in self.files[sid] if n.endswith(".tsm")]
        if not tsm:
            return
        n = self.rng.choice(tsm)[:-4] + ".tombstone"
        old = self.files[sid].get(n, (b"", 0))[0]
        key = b"cpu,host=h%d#!~#v\n" % self.rng.randrange(1000)  # a v1 tombstone: one key a line
        self.files[sid][n] = (old + key * self.rng.randrange(1, 12), self.clock.ns)

    def answer(self, conn, req) -> None:
        since = parse_go_time(req["Since"])
        sid = req["ShardID"]
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for name, (data, mtime) in sorted(self.files[sid].items()):
                if since is not None and mtime <= since:
                    continue
                ti = tarfile.TarInfo(f"{PATHS[sid]}/{name}")
                ti.size, ti.mtime = len(data), mtime // 10**9  # whole seconds, as influxd's ustar
                tf.addfile(ti, io.BytesIO(data))
        conn.sendall(out.getvalue())


def chain_state(dest: Path) -> dict[int, dict[str, int]]:
    """The shard files a restore of ``dest`` uses (supersession applied): name -> size."""
    with open_source(str(dest)) as src:
        assert not [f for f in src.findings if getattr(f, "severity", "") == "error"], src.findings
        out: dict[int, dict[str, int]] = {}
        for s in src.shards:
            files: dict[str, int] = {}
            for layer in s.layers():
                files[layer.tsm.name] = layer.tsm.size
                if layer.tomb is not None:
                    files[layer.tomb.name] = layer.tomb.size
            out[s.id] = files
        return out


def live_state(server: ModelServer) -> dict[int, dict[str, int]]:
    return {sid: {n: len(d) for n, (d, _m) in files.items()} for sid, files in server.files.items() if files}


@pytest.mark.parametrize("to", ["legacy", "portable"])
@pytest.mark.parametrize("seed", range(12))
def test_since_increments_never_leave_a_gap(to, seed, tmp_path, monkeypatch):
    rng = random.Random(seed)
    clock = Clock()
    monkeypatch.setattr(ob, "time", types.SimpleNamespace(time=clock.time, time_ns=clock.time_ns, sleep=clock.sleep))
    fake_dt = types.SimpleNamespace(UTC=dt.UTC, datetime=types.SimpleNamespace(
        now=lambda tz=None: dt.datetime.fromtimestamp(clock.ns / 1e9, tz)))
    monkeypatch.setattr(ob, "_dt", fake_dt)
    monkeypatch.setattr(onlinechain, "CLOCK_MARGIN_NS", 0)  # the virtual clocks agree
    server = ModelServer(clock, rng)
    for sid in (3, 4):
        for _ in range(rng.randrange(1, 4)):
            server.write(sid)
            clock.tick(rng.uniform(0.1, 3))
    dest = tmp_path / "b"
    with TypedFake({1: meta_answer(LAYOUT), 3: listing(LAYOUT), 0: server.answer}) as f:
        client = sn.Client(f.host, retry=NO_WAIT, timeout=5)
        ob.execute_online_backup(ob.plan_online_backup(client, dest, to=to))
        last_start = clock.ns
        for step in range(6):
            for _ in range(rng.randrange(1, 6)):
                clock.tick(rng.uniform(0.2, 2.5))
                rng.choice([server.write, server.compact, server.compact, server.delete])(rng.choice([3, 4]))
            clock.tick(rng.uniform(0.2, 2.5))
            # the operator's --since: before the last backup, at its start, or later (the gap)
            since = rng.choice([last_start - 5 * 10**9, last_start, last_start + 2 * 10**9, clock.ns - 10**9])
            clock.tick(1.1)
            last_start = clock.ns
            r = ob.execute_online_backup(ob.plan_online_backup(client, dest, to=to, since=since))
            assert r.plan.append
            assert chain_state(dest) == live_state(server), (seed, step, sorted(p.name for p in dest.iterdir()))


def test_a_legacy_run_records_its_start(tmp_path, monkeypatch):
    """The record is what bounds the next --since; influxd's restore never looks at it."""
    clock = Clock()
    rng = random.Random(0)
    monkeypatch.setattr(ob, "time", types.SimpleNamespace(time=clock.time, time_ns=clock.time_ns, sleep=clock.sleep))
    server = ModelServer(clock, rng)
    server.write(3)
    with TypedFake({1: meta_answer(LAYOUT), 3: listing(LAYOUT), 0: server.answer}) as f:
        client = sn.Client(f.host, retry=NO_WAIT, timeout=5)
        start = clock.ns
        ob.execute_online_backup(ob.plan_online_backup(client, tmp_path / "b", to="legacy"))
    rec = json.loads((tmp_path / "b" / ".influx-archive-run.00").read_text())
    assert rec == {"started_ns": start}
    bounds, notes = onlinechain.chain_bounds(tmp_path / "b", "legacy")
    assert bounds == {3: start - onlinechain.CLOCK_MARGIN_NS, 4: start - onlinechain.CLOCK_MARGIN_NS}
    assert notes == []
    with open_source(str(tmp_path / "b")) as src:  # the reader takes it silently
        assert not src.findings
