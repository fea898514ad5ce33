"""Red team: `backup --host` killed (SIGKILL, SIGTERM) at every moment that matters. The
destination must never look like a complete backup when it is not, and the next run must leave
it complete with nothing temporary left (docs/formats.md#online-backup)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import influxd as harness
import pytest
from hostile_outputs import cli_argv
from test_redteam_online_hostile import NO_WAIT, REAL_TSM, TSM, TypedFake, listing, meta_answer, tar_bytes

from influx_archive.archive import snapshotter as sn
from influx_archive.archive.ops import onlinebackup as ob
from influx_archive.archive.sources import open_source

LAYOUT = [("db", "rp", [12, 13, 14]), ("db2", "rp", [20])]
N_FILES = 4 + 1 + 1  # shard files + metastore + manifest (portable) or run record (legacy)


def _shard(conn, req) -> None:
    sid = req["ShardID"]
    db = "db2" if sid == 20 else "db"
    conn.sendall(tar_bytes([(f"{db}/rp/{sid}/{TSM}", REAL_TSM)]))


def _client(host: str) -> sn.Client:
    return sn.Client(host, retry=NO_WAIT, timeout=5)


def _killed_increment(host: str, dest: Path, to: str, at: int) -> None:
    """An increment run that dies (as SIGKILL leaves it) at its ``at``-th link into ``dest``."""
    pid = os.fork()
    if pid == 0:
        try:
            real = ob.link_into_place
            count = [0]

            def link(*a, **k):
                if count[0] == at:
                    os._exit(9)
                count[0] += 1
                return real(*a, **k)

            ob.link_into_place = link  # type: ignore[assignment]
            ob.execute_online_backup(ob.plan_online_backup(_client(host), dest, to=to, since=1))
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == (9 if at < N_FILES else 0)


def _files_per_shard(dest: Path) -> dict:
    with open_source(str(dest)) as src:
        assert not [f for f in src.findings if getattr(f, "severity", "") == "error"]
        return {s.key: len(s.files) for s in src.shards}


@pytest.mark.slow
@pytest.mark.parametrize("to", ["legacy", "portable"])
def test_increment_killed_at_every_link_is_undone_by_the_next_run(to, tmp_path):
    """Bug found: a `backup --since` killed while linking its files left them in the backup for
    good (the next run added another increment beside them), and a portable increment killed
    between its manifest and its metastore made every later restore of the whole backup fail
    (the manifest was linked first). Now the manifest is last and the next run removes what a
    killed run linked, from its journal."""
    links = N_FILES
    with TypedFake({1: meta_answer(LAYOUT), 3: listing(LAYOUT), 0: _shard}) as f:
        for at in range(links + 1):
            dest = tmp_path / f"{to}{at}"
            ob.execute_online_backup(ob.plan_online_backup(_client(f.host), dest, to=to))
            full = sorted(os.listdir(dest))
            assert _files_per_shard(dest) == {("db", "rp", 12): 1, ("db", "rp", 13): 1, ("db", "rp", 14): 1,
                                              ("db2", "rp", 20): 1}
            _killed_increment(f.host, dest, to, at)
            if to == "portable":  # a part-way increment is invisible: the manifest comes last
                want = 2 if at == links else 1
                assert set(_files_per_shard(dest).values()) == {want}, at
            if at == links:  # killed after its last link: complete, left alone
                assert len(os.listdir(dest)) == len(full) + links
            time.sleep(1.0 if to == "portable" else 0)  # a new portable timestamp
            r = ob.execute_online_backup(ob.plan_online_backup(_client(f.host), dest, to=to, since=1))
            increments = 3 if at == links else 2
            assert set(_files_per_shard(dest).values()) == {increments}, (at, sorted(os.listdir(dest)))
            assert len(os.listdir(dest)) == len(full) + links * (increments - 1), sorted(os.listdir(dest))
            if 0 < at < links:
                assert any("killed run" in w for w in r.plan.warnings), r.plan.warnings
            assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{dest.name}")]


# ---- a real influxd, a real process killed ----------------------------------------------------

DAY = 86400 * 10**9
T0 = 1_790_000_000 * 10**9


@pytest.fixture
def server(influxd_factory):
    s = influxd_factory(cold="1h")
    rng = random.Random(5)
    for db in ("a", "b"):
        s.execute(f"CREATE DATABASE {db}")
        s.write("".join(f"m,h=h{k % 4} f={rng.random()!r},i={k}i {T0 + (k % 5) * 7 * DAY + k * 10**9}\n"
                        for k in range(4000)), db=db)
    return s


def _leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}") or p.name.startswith(".influx-archive")]


@pytest.mark.interop
@pytest.mark.slow
@pytest.mark.parametrize("to", ["legacy", "portable"])
def test_backup_killed_at_random_moments(to, server, tmp_path, cli, influxd_factory):
    """SIGKILL of `backup --host` at seeded random moments (the whole run's span), then SIGTERM:
    the destination is absent or a complete backup (verify passes, restores to the truth), a
    SIGTERM run exits 143 with nothing left, and a rerun into it completes and leaves nothing."""
    ref = tmp_path / "ref"
    t = time.monotonic()
    assert subprocess.run(cli_argv("backup", "--host", server.host, str(ref), "--to", to)).returncode == 0
    span = time.monotonic() - t
    want = sorted(p.name.split(".", 1)[1] if to == "portable" else p.name for p in ref.iterdir())
    truth = harness.without_dead_fields(server.dump())
    rng = random.Random(20261202 + (to == "portable"))
    moments = sorted(rng.uniform(0.05, span * 1.2) for _ in range(6))
    work = tmp_path / "work"
    work.mkdir()
    codes = []
    for i, (sig, delay) in enumerate([(signal.SIGKILL, d) for d in moments] + [(signal.SIGTERM, span / 2)]):
        dest = work / f"b{i}"
        p = subprocess.Popen(cli_argv("backup", "--host", server.host, str(dest), "--to", to),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(sig)
        code = p.wait(60)
        err = p.stderr.read() if p.stderr else ""
        codes.append(code)
        if code == 0:  # it finished first
            pass
        elif sig == signal.SIGTERM:
            assert code == 143, (code, err)
            assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
            assert not dest.exists() and not _leftovers(work, dest.name), _leftovers(work, dest.name)
        if dest.exists():
            got = sorted(p.name.split(".", 1)[1] if to == "portable" else p.name for p in dest.iterdir())
            assert got == want, (delay, got)
            assert cli("verify", str(dest)).code == 0
        else:
            r = cli("backup", "--host", server.host, str(dest), "--to", to)
            assert r.code == 0, r.err
            assert not _leftovers(work, dest.name), _leftovers(work, dest.name)
    assert codes.count(-signal.SIGKILL) >= 3, codes  # the kills landed mid-run
    last = next(d for d in sorted(work.iterdir()) if d.is_dir() and not d.name.startswith("."))
    r = cli("restore", str(last), "--metadir", str(tmp_path / "root/meta"), "--datadir", str(tmp_path / "root/data"))
    assert r.code == 0, r.err
    got = influxd_factory(tmp_path / "root").dump()
    assert harness.compare_truth(truth, got, databases=["a", "b"],
                                 sections={"points", "databases", "retention_policies"}) == []
