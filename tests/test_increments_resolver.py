"""The increment resolver (Shard.layers + the masks of archive/sources/shardview.py) on chains
where influxd itself wrote a file DURING a backup run (docs/formats.md#incremental-sets).

influxd dates nothing for us: a ``-since`` run's tar holds the cache snapshot the backup request
forces and any compaction output that finished after the run's ``meta.NN`` (or in the same
second: member mtimes are whole seconds). Such a whole file has the mtime a ``-start/-end``
run gives a block-filtered copy, so it masks the files it absorbed instead of replacing them.
The generators build both kinds of run from one model of a shard and check the union read
offline against the model's live state:

* a ``-since`` run whose compaction output is written during the run, after deletions: every
  deleted point inside the run's proven range (docs/formats.md) stays deleted, nothing live is
  lost, and where every deleted point lies inside that range the union is exactly the state;
* a ``-start/-end`` run cutting that compaction output: the union is exactly the state
  (the proven range never drops a point the filtered copy left out).
"""

from __future__ import annotations

import io
import os
import random
import tarfile
from pathlib import Path

import hostile_interop as gen
import pytest

from influx_archive.archive.sources import open_source
from influx_archive.archive.sources.shardview import open_shard_reader
from influx_archive.meta import files as metafiles

NS = 10**9
T0 = 1_796_083_200  # epoch s: run 0 starts
T1 = T0 + 3600  # run 1 starts
BASE = gen.DAY0 + 3600 * NS  # inside shard 1's day
META = (gen.FIXTURES / "union_legacy" / "meta.00").read_bytes()


def _blocks(points: dict[bytes, dict[int, float]], size: int) -> dict:
    return {k: gen.chunk(p, size) for k, p in points.items() if p}


def _write_run(dest: Path, n: int, start: int, files: list[tuple[str, dict, int, int]], *,
               shards: list[tuple[int, list, float]] | None = None) -> None:
    """Run ``n`` of a legacy directory, dated as influxd dates it: ``meta.NN`` at the run's start
    (epoch s), then the shard tars; ``files``: shard 1's (name, points, block size, member mtime);
    ``shards``: instead, (shard id, files, when its tar was finished) each."""
    meta = dest / metafiles.legacy_meta_file_name(n)
    meta.write_bytes(META)
    os.utime(meta, (start, start))
    for sid, members, finished in shards or [(1, files, start + 5)]:
        tar_path = dest / metafiles.legacy_shard_file_name("u", "autogen", sid, n)
        with tarfile.open(tar_path, "w", format=tarfile.USTAR_FORMAT) as tf:
            for name, points, size, mtime in sorted(members, key=lambda f: f[0]):
                data = gen.tsm_bytes(_blocks(points, size))
                info = tarfile.TarInfo(f"u/autogen/{sid}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o644, mtime
                tf.addfile(info, io.BytesIO(data))
        os.utime(tar_path, (finished, finished))


def _write_portable_run(dest: Path, start: int, shards: list[tuple[int, list, float]]) -> None:
    """A portable run started at ``start`` (its ``<ts>``): ``shards`` as in :func:`_write_run`."""
    import datetime as dt
    import gzip

    src_meta = next((gen.FIXTURES / "union_portable").glob("*.meta")).read_bytes()
    blob, _ = metafiles.parse_portable_meta(src_meta)
    names = metafiles.portable_names(dt.datetime.fromtimestamp(start, dt.UTC), [sid for sid, _f, _t in shards])
    entries = []
    for sid, members, finished in shards:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for name, points, size, mtime in sorted(members, key=lambda f: f[0]):
                data = gen.tsm_bytes(_blocks(points, size))
                info = tarfile.TarInfo(f"u/autogen/{sid}/{name}")
                info.size, info.mode, info.mtime = len(data), 0o644, mtime
                tf.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        path = dest / names.shards[sid]
        path.write_bytes(gzip.compress(raw, mtime=0))
        os.utime(path, (finished, finished))
        entries.append(metafiles.ManifestEntry("u", "autogen", sid, names.shards[sid], len(raw), 0))
    (dest / names.meta).write_bytes(src_meta)
    man = metafiles.Manifest(meta_file_name=names.meta, meta_size=len(blob), limited=False, files=entries)
    (dest / names.manifest).write_bytes(metafiles.dump_manifest(man))


def _write_kind(kind: str, dest: Path, n: int, start: int, shards: list[tuple[int, list, float]]) -> None:
    if kind == "portable":
        _write_portable_run(dest, start, shards)
    else:
        _write_run(dest, n, start, [], shards=shards)


def _read(dest: Path) -> dict[tuple[bytes, int], float]:
    out: dict[tuple[bytes, int], float] = {}
    with open_source(dest) as src:
        for shard in src.shards:
            with open_shard_reader(src, shard) as reader:
                for key in reader.keys():
                    _bt, ts, vs = reader.read(key)
                    out.update(((key, t), v) for t, v in zip(ts, vs))
    return out


def _flat(points: dict[bytes, dict[int, float]]) -> dict[tuple[bytes, int], float]:
    return {(k, t): v for k, p in points.items() for t, v in p.items()}


def _history(rng: random.Random, base: int = BASE):
    """A shard: run-0 file A (g, s), then new writes, deletions, and a compaction (G, S) with
    G >= g and S > s of A and the new files (deletions applied), plus a later cache snapshot."""
    keys = [f"cpu,host=h{i}#!~#v".encode() for i in range(rng.randint(1, 4))]
    doomed = list(keys)
    keys.append(b"mem,host=kept#!~#v")  # never deleted: the compaction output has a key
    n = rng.randint(20, 120)
    step = 60 * NS
    a_pts = {k: {base + m * step: float(rng.randint(0, 999)) for m in range(n)} for k in keys}
    new_pts = {k: {base + m * step: float(rng.randint(0, 999)) for m in range(n, n + rng.randint(5, 40))} for k in keys}
    deletions: list[tuple[bytes, int, int]] = []
    for _ in range(rng.randint(1, 3)):
        k = rng.choice(doomed)
        kind = rng.choice(["drop", "middle", "oldest", "newest"])
        if kind == "drop":
            deletions.append((k, -(2**63), 2**63 - 1))
        elif kind == "middle":
            a = rng.randint(1, n - 2)
            deletions.append((k, base + a * step, base + rng.randint(a, n - 1) * step))
        elif kind == "oldest":
            deletions.append((k, -(2**63), base + rng.randint(0, n // 2) * step))
        else:
            deletions.append((k, base + rng.randint(n // 2, n) * step, 2**63 - 1))
    merged: dict[bytes, dict[int, float]] = {k: {**a_pts[k], **new_pts[k]} for k in keys}
    for k, lo, hi in deletions:
        merged[k] = {t: v for t, v in merged[k].items() if not lo <= t <= hi}
    snap_t = base + (n + 50) * step
    snap = {k: {snap_t + i * NS: float(i) for i in range(rng.randint(1, 5))} for k in keys}
    g, s = 2, rng.randint(1, 3)
    G, S = g + rng.randint(0, 6), s + rng.randint(1, 3)
    return {
        "keys": keys, "a": a_pts, "merged": merged, "snap": snap, "deleted": _flat(a_pts).keys() - _flat(merged).keys(),
        "names": (f"{g:09d}-{s:09d}.tsm", f"{G:09d}-{S:09d}.tsm", f"{G + 1:09d}-{1:09d}.tsm"),
        "size": rng.choice([3, 5, 8, 13, 1000]),
    }


def _proven(files: list[tuple[str, dict, int, int]], start: int) -> tuple[int, int]:
    """The proven range of a run (docs/formats.md#incremental-sets), from the model's own
    blocks: lowest block end .. highest block start, widened to every copy older than the run."""
    lo, hi = 2**63, -(2**63)
    for _name, points, size, mtime in files:
        for bl in _blocks(points, size).values():
            for ts, _vs in bl:
                lo, hi = min(lo, ts[-1]), max(hi, ts[0])
                if mtime < start:
                    lo, hi = min(lo, ts[0]), max(hi, ts[-1])
    return lo, hi


@pytest.mark.parametrize("seed", range(40))
def test_since_run_with_a_compaction_written_during_the_run(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    h = _history(rng)
    a_name, c_name, f_name = h["names"]
    _write_run(tmp_path, 0, T0, [(a_name, h["a"], h["size"], T0 - 100)])
    # run 1 (-since): the compaction finished in the run's first second or a little later,
    # the forced cache snapshot right after it
    during = T1 + rng.choice([0, 0, 1, 2])
    run1 = [(c_name, h["merged"], h["size"], during), (f_name, h["snap"], h["size"], during)]
    _write_run(tmp_path, 1, T1, run1)
    state = {**_flat(h["merged"]), **_flat(h["snap"])}
    got = _read(tmp_path)
    assert {k: got.get(k) for k in state} == state, "a live point is lost or changed"
    lo, hi = _proven(run1, T1)
    back = got.keys() - state.keys()
    assert back <= h["deleted"]
    assert not {(k, t) for k, t in back if lo <= t <= hi}, "a deleted point inside the proven range came back"


def test_since_runs_with_deletions_inside_the_proven_range_read_exactly(tmp_path: Path) -> None:
    """The generated ``-since`` chains whose deletions all lie inside the proven range read back
    exactly as the live state (before the rule, each served deleted points); there are such."""
    exact = 0
    for seed in range(120):
        rng = random.Random(seed)
        h = _history(rng)
        a_name, c_name, f_name = h["names"]
        run1 = [(c_name, h["merged"], h["size"], T1), (f_name, h["snap"], h["size"], T1)]
        lo, hi = _proven(run1, T1)
        if not h["deleted"] or not all(lo <= t <= hi for _k, t in h["deleted"]):
            continue
        dest = tmp_path / str(seed)
        dest.mkdir()
        _write_run(dest, 0, T0, [(a_name, h["a"], h["size"], T0 - 100)])
        _write_run(dest, 1, T1, run1)
        assert _read(dest) == {**_flat(h["merged"]), **_flat(h["snap"])}, seed
        exact += 1
    assert exact >= 10


@pytest.mark.parametrize("seed", range(40))
def test_range_run_cutting_the_compaction_output_loses_nothing(seed: int, tmp_path: Path) -> None:
    """A ``-start/-end`` run: the compaction output is cut (the blocks meeting the range, a
    fresh mtime), a file inside the range is sent whole with its old mtime. Every live point
    the backup carries (inside the range, inside the cut copy's span of its key, or in the
    run-0 file) is read with its live value: the proven range drops nothing a range run left
    out."""
    rng = random.Random(1000 + seed)
    h = _history(rng)
    while len({t for p in h["merged"].values() for t in p}) < 4:
        h = _history(rng)
    a_name, c_name, f_name = h["names"]
    merged = h["merged"]
    times = sorted({t for p in merged.values() for t in p})
    s, e = sorted(rng.sample(times[1:-1], 2))
    kept = {k: [b for b in gen.chunk(p, h["size"]) if b[0][-1] >= s and b[0][0] <= e] for k, p in merged.items()}
    cut = {k: {t: v for ts, vs in bl for t, v in zip(ts, vs)} for k, bl in kept.items() if bl}
    inside = {h["keys"][0]: {rng.randint(s, e): 1.5}}
    _write_run(tmp_path, 0, T0, [(a_name, h["a"], h["size"], T0 - 100)])
    _write_run(tmp_path, 1, T1, [(c_name, cut, h["size"], T1 + rng.choice([0, 1])),
                                 (f_name, inside, h["size"], T1 - 30)])
    live = {**_flat(merged), **_flat(inside)}
    spans = {k: (min(p), max(p)) for k, p in cut.items()}
    a_keys = _flat(h["a"]).keys()
    carried = {(k, t): v for (k, t), v in live.items()
               if s <= t <= e or (k in spans and spans[k][0] <= t <= spans[k][1]) or (k, t) in a_keys}
    got = _read(tmp_path)
    assert {key: got.get(key) for key in carried} == carried, "a point the range run left out was dropped"


DAY = 86_400 * NS


@pytest.mark.parametrize("kind", ["legacy", "portable"])
@pytest.mark.parametrize("seed", range(30))
def test_compaction_finished_while_earlier_shards_were_sent_replaces(seed: int, kind: str, tmp_path: Path) -> None:
    """A ``-since`` run over shards 1, 2, 3 in turn: shard 3's compaction output finished after
    the run's start but before shard 2's tar was done, so before shard 3 was asked for: it is
    whole and replaces the file it absorbed (the union is exactly the live state, whatever was
    deleted). Its forced cache snapshot comes after that moment."""
    rng = random.Random(5000 + seed)
    hist = [_history(rng, BASE + i * DAY) for i in range(3)]
    run0 = [(i + 1, [(h["names"][0], h["a"], h["size"], T0 - 100)], T0 + 1 + i) for i, h in enumerate(hist)]
    _write_kind(kind, tmp_path, 0, T0, run0)
    gap = rng.randint(2, 20)  # seconds shards 1 and 2 took
    h3 = hist[2]
    run1 = [(1, [(hist[0]["names"][2], hist[0]["snap"], hist[0]["size"], T1)], T1 + 0.4),
            (2, [(hist[1]["names"][2], hist[1]["snap"], hist[1]["size"], T1 + gap)], T1 + gap + 0.3),
            (3, [(h3["names"][1], h3["merged"], h3["size"], T1 + rng.randint(0, gap - 1)),
                 (h3["names"][2], h3["snap"], h3["size"], T1 + gap + 1)], T1 + gap + 1.5)]
    _write_kind(kind, tmp_path, 1, T1, run1)
    state = {**_flat(h3["merged"]), **_flat(h3["snap"])}
    for h in hist[:2]:
        state.update({**_flat(h["a"]), **_flat(h["snap"])})
    assert _read(tmp_path) == state


@pytest.mark.parametrize("copied", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_range_run_over_several_shards_loses_nothing(seed: int, copied: bool, tmp_path: Path) -> None:
    """A ``-start/-end`` run over shards 1, 2, 3 in turn cuts shard 3's compaction output while
    that shard is sent (after shard 2's tar was done). Every point the backup carries is read
    with its live value; also when the tars were copied without their mtimes (all younger than
    every member), where the request dating stands back."""
    rng = random.Random(7000 + seed)
    hist = [_history(rng, BASE + i * DAY) for i in range(3)]
    h3 = hist[2]
    while len({t for p in h3["merged"].values() for t in p}) < 4:
        h3 = _history(rng, BASE + 2 * DAY)
    run0 = [(i + 1, [(h["names"][0], h["a"], h["size"], T0 - 100)], T0 + 1 + i)
            for i, h in enumerate(hist[:2] + [h3])]
    _write_run(tmp_path, 0, T0, [], shards=run0)
    times = sorted({t for p in h3["merged"].values() for t in p})
    s, e = sorted(rng.sample(times[1:-1], 2))
    kept = {k: [b for b in gen.chunk(p, h3["size"]) if b[0][-1] >= s and b[0][0] <= e] for k, p in h3["merged"].items()}
    cut = {k: {t: v for ts, vs in bl for t, v in zip(ts, vs)} for k, bl in kept.items() if bl}
    gap = rng.randint(2, 20)
    later = T1 + 10_000 if copied else None
    run1 = [(1, [], later or T1 + 0.4), (2, [], later or T1 + gap + 0.3),
            (3, [(h3["names"][1], cut, h3["size"], T1 + gap + rng.choice([0, 1]))], later or T1 + gap + 1.5)]
    _write_run(tmp_path, 1, T1, [], shards=run1)
    live = _flat(h3["merged"])
    spans = {k: (min(p), max(p)) for k, p in cut.items()}
    a_keys = _flat(h3["a"]).keys()
    carried = {(k, t): v for (k, t), v in live.items()
               if s <= t <= e or (k in spans and spans[k][0] <= t <= spans[k][1]) or (k, t) in a_keys}
    got = _read(tmp_path)
    assert {key: got.get(key) for key in carried} == carried


# ------------------------------------------------------------------ real influxd -since chains


def _online(server, db: str) -> dict[tuple[bytes, int], float]:
    out: dict[tuple[bytes, int], float] = {}
    for ser in server.series("SELECT * FROM cpu GROUP BY *", db=db):
        tags = ",".join(f"{k}={v}" for k, v in sorted(ser["tags"].items()))
        for row in ser["values"]:
            for col, v in zip(ser["columns"][1:], row[1:]):
                if v is not None:
                    out[(f"cpu,{tags}#!~#{col}".encode(), row[0])] = v
    return out


def _during_run_compactions(path: Path) -> int:
    """Compaction outputs (sequence > 1) of a later increment written at or after its run's start."""
    with open_source(path) as src:
        return sum(1 for sh in src.shards for f in sh.files
                   if f.kind == "tsm" and f.increment > 0 and f.maybe_filtered and gen_seq(f.name)[1] > 1)


def gen_seq(name: str) -> tuple[int, int]:
    g, s = name.split(".", 1)[0].split("-")
    return int(g), int(s)


def _residual(src, shard, key: bytes, t: int) -> str | None:
    """Which documented residual (docs/formats.md#files-written-during-a-run) serves (key, t):
    ``masked`` (a masked file, t outside its masks' proven ranges), ``sequence`` (a file a later
    full compaction of a higher generation and lower-or-equal sequence may have absorbed), or None."""
    from influx_archive.tsm.reader import TSMReader

    layers = shard.layers()
    later = [f for f in shard.files if f.kind == "tsm"]
    with src.open_shard(shard) as opened:
        readers = {}
        for layer in layers:
            readers[layer.name] = TSMReader(opened.stream(layer.tsm), name=layer.tsm.origin, size=layer.tsm.size)

        def proven(inc: int) -> tuple[int, int]:
            lo, hi = 2**63, -(2**63)
            for layer in layers:
                if layer.tsm.increment != inc:
                    continue
                for _k, _bt, ents in readers[layer.name].iter_index():
                    for e in ents:
                        lo, hi = min(lo, e.max_time), max(hi, e.min_time)
                        if not layer.tsm.maybe_filtered and inc not in shard.range_increments:
                            lo, hi = min(lo, e.min_time), max(hi, e.max_time)
            return lo, hi

        for layer in layers:
            if key not in readers[layer.name]:
                continue
            ts, _vs = readers[layer.name].read_key(key)
            if t not in ts:
                continue
            g, s = gen_seq(layer.name)
            if layer.masks and not any(lo <= t <= hi for lo, hi in map(proven, layer.mask_increments)):
                return "masked"
            if any(f.increment > layer.tsm.increment and gen_seq(f.name)[0] > g and 2 <= gen_seq(f.name)[1] <= s
                   for f in later):
                return "sequence"
    return None


@pytest.mark.interop
@pytest.mark.slow
def test_influxd_since_chains_under_writes_deletes_and_compactions(tmp_path: Path) -> None:
    """influxd 1.6.7 ``-since`` chains (legacy and portable) taken while a writer keeps the
    cache snapshotting and compacting and points are deleted and series dropped between runs,
    until some run holds a compaction output written during it. Read offline, the union loses
    no live point, and every deleted point it serves again is one of the two documented
    residuals (outside a mask's proven range; a lower-generation file a full compaction may have
    absorbed)."""
    import datetime as dt
    import subprocess
    import threading
    import time

    import influxd

    base = BASE
    with influxd.InfluxServer(tmp_path / "srv", extra={"data.cache-snapshot-memory-size": 16384}) as srv:
        srv.start()
        srv.execute("CREATE DATABASE db")
        srv.execute("CREATE RETENTION POLICY rp ON db DURATION INF REPLICATION 1 SHARD DURATION 1h DEFAULT")
        stop = threading.Event()
        written = [0]
        failure: list[BaseException] = []

        def writer() -> None:
            n = 0
            try:
                while not stop.is_set():
                    srv.write("\n".join(f"cpu,host=w{j} v={n + i} {base + (n + i) * 10**7}"
                                        for j in range(8) for i in range(10)), db="db")
                    n += 10
                    written[0] = n
                    time.sleep(0.03)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        leg, por = tmp_path / "legacy", tmp_path / "portable"
        since = None
        try:
            for run in range(30):
                start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
                args = ["-database", "db"] + (["-since", since] if since else [])
                for dest, extra in ((leg, []), (por, ["-portable"])):
                    done = srv.backup(dest, *extra, *args)
                    assert done.returncode == 0, done.stderr
                since = start.strftime("%Y-%m-%dT%H:%M:%SZ")
                if run >= 6 and _during_run_compactions(leg) and _during_run_compactions(por):
                    break
                cut = base + (written[0] // 2) * 10**7
                srv.execute(f"DELETE FROM cpu WHERE host='w{run % 8}' AND time < {cut}", db="db")
                if run % 4 == 3:
                    srv.execute(f"DROP SERIES FROM cpu WHERE host='w{(run + 3) % 8}'", db="db")
                time.sleep(1.05)  # portable names are per second: one run per second at most
        finally:
            stop.set()
            thread.join()
        assert not failure, failure
        time.sleep(1.05)  # a portable run in the same second rewrites the last run's files in place
        for dest, extra in ((leg, []), (por, ["-portable"])):
            done = srv.backup(dest, *extra, "-database", "db", "-since", since)
            assert done.returncode == 0, done.stderr
        truth = _online(srv, "db")
    assert _during_run_compactions(leg) and _during_run_compactions(por)
    # influxd's own offline restore of the legacy chain, for contrast: every increment unpacked
    restored = tmp_path / "restored"
    done = subprocess.run([influxd.require_influxd(), "restore", "-metadir", str(restored / "meta"), "-datadir",
                           str(restored / "data"), "-database", "db", str(leg)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with influxd.InfluxServer(restored) as srv:
        srv.start()
        influxd_back = _online(srv, "db").keys() - truth.keys()
    for dest in (leg, por):
        got = _read(dest)
        assert {k: got.get(k) for k in truth} == truth, f"{dest.name}: a live point is lost or changed"
        back = sorted(got.keys() - truth.keys())
        with open_source(dest) as src:
            (shard,) = [sh for sh in src.shards if sh.files]
            unexplained = [kt for kt in back if _residual(src, shard, *kt) is None]
        assert not unexplained, f"{dest.name}: {len(unexplained)} deleted points served again: {unexplained[:5]}"
        # what we serve again, influxd's own restore serves too: deletions the chain cannot prove
        assert set(back) <= influxd_back, f"{dest.name}: served again where influxd's restore does not"
