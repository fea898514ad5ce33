"""Red team: `backup --host` of a real influxd 1.6.7 while its metadata changes under it (DROP
DATABASE, DROP SHARD at every point of the shard loop), two runs into one destination at once.
The backup must restore (offline, with influx-archive) to what the server served when the backup
ended: every point, field type, RP, user and CQ of the databases the final metastore holds."""

from __future__ import annotations

import random
import subprocess
import threading
from pathlib import Path

import influxd as harness
import pytest
from hostile_outputs import cli_argv

from influx_archive.archive import snapshotter as sn
from influx_archive.archive.errors import ArchiveError
from influx_archive.archive.ops.onlinebackup import execute_online_backup, plan_online_backup

pytestmark = [pytest.mark.interop, pytest.mark.slow]

DAY = 86400 * 10**9
T0 = 1_790_000_000 * 10**9  # 2026-09-21, a Monday-ish start; 7-day shard groups


def populate(s: harness.InfluxServer, db: str, weeks: int, seed: int) -> None:
    rng = random.Random(seed)
    s.execute(f"CREATE DATABASE {harness.quote_ident(db)}")
    lines = []
    for w in range(weeks):
        for k in range(60):
            t = T0 + w * 7 * DAY + k * 3_600_000_000_123 + rng.randrange(1000)
            lines.append(f'm,h=h{k % 3} f={rng.random()!r},i={rng.randrange(-99, 99)}i,b={"t" if k % 2 else "f"},'
                         f's="v{k}" {t}')
    s.write("\n".join(lines) + "\n", db=db)


def shard_ids(s: harness.InfluxServer, db: str) -> list[int]:
    return sorted(row[0] for ser in s.series("SHOW SHARDS") if ser["name"] == db for row in ser["values"])


class Hooked(sn.Client):
    """A client that runs ``hook(n)`` before its n-th shard request (0-based)."""

    def __init__(self, host: str, hook) -> None:
        super().__init__(host, timeout=60)
        self.hook = hook
        self.n = 0

    def shard_backup(self, shard_id, out, **kw):  # type: ignore[override]
        self.hook(self.n, shard_id)
        self.n += 1
        return super().shard_backup(shard_id, out, **kw)


def restored_truth(cli, backup: Path, root: Path, factory) -> dict:
    r = cli("restore", str(backup), "--metadir", str(root / "meta"), "--datadir", str(root / "data"))
    assert r.code == 0, r.err
    return factory(root).dump()


@pytest.fixture
def server(influxd_factory):
    s = influxd_factory(cold="1h")
    for i, db in enumerate(("a", "b", "c")):
        populate(s, db, 3, seed=i)
    s.execute("CREATE USER reader WITH PASSWORD 'pw'")
    s.execute('GRANT READ ON "a" TO reader')
    return s


def _cases(s: harness.InfluxServer) -> list[tuple[str, int, str]]:
    """(format, shard request number, action) — a seeded sample over every point of the loop."""
    ids = shard_ids(s, "a") + shard_ids(s, "b") + shard_ids(s, "c")
    n = len(ids) + 1  # _internal has shards too: requests past the user ones
    rng = random.Random(1607)
    out = [("legacy", 0, "DROP DATABASE b"), ("portable", len(ids) - 1, "DROP DATABASE a"),
           ("legacy", len(ids) - 2, "DROP DATABASE a")]
    for to in ("legacy", "portable"):
        k = rng.randrange(n)
        out.append((to, k, f"DROP SHARD {rng.choice(ids)}"))
    return out


def test_drops_during_the_backup_restore_to_the_final_state(server, tmp_path, cli, influxd_factory):
    s = server
    for i, (to, at, action) in enumerate(_cases(s)):
        fired = threading.Event()

        def hook(n, shard_id, at=at, action=action, fired=fired):
            if n == at and not fired.is_set():
                fired.set()
                s.execute(action)

        dest = tmp_path / f"b{i}"
        plan = plan_online_backup(Hooked(s.host, hook), dest, to=to)
        try:
            execute_online_backup(plan)
        except ArchiveError as exc:  # a clean refusal is acceptable, never a partial backup
            assert "\n" not in str(exc)
            assert not dest.exists()
            continue
        finally:
            late = not fired.is_set()
        after = s.dump()
        if late:  # the loop had fewer requests: the backup is of the state before the action
            s.execute(action)
        got = restored_truth(cli, dest, tmp_path / f"root{i}", influxd_factory)
        user_dbs = [d for d in after["databases"] if d != "_internal"]
        diffs = harness.compare_truth(harness.without_dead_fields(after), got, databases=user_dbs,
                                      sections={"points", "databases", "retention_policies", "users"})
        assert diffs == [], (to, at, action, late, diffs[:5])
        dropped = {d for d in ("a", "b", "c") if d not in after["databases"]}
        assert not dropped & set(got["databases"]), (to, at, action, late, "a dropped database came back")
        # put the server back as it was for the next case
        for j, db in enumerate(("a", "b", "c")):
            if db in dropped or action.startswith("DROP SHARD"):
                populate(s, db, 3, seed=j)


def test_two_backups_into_one_destination_at_once(server, tmp_path, cli, influxd_factory):
    """Two `backup --host` processes on one absent destination: one wins whole, the other exits 3
    with one line (never a mixed directory); nothing temporary is left."""
    for to in ("legacy", "portable"):
        dest = tmp_path / f"same-{to}"
        argv = cli_argv("backup", "--host", server.host, str(dest), "--to", to)
        procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [(p.wait(120), *p.communicate()) for p in procs]
        codes = sorted(o[0] for o in outs)
        assert codes[0] == 0, outs
        for code, _out, err in outs:
            assert code in (0, 3), outs
            assert "Traceback" not in err
            if code:
                assert len(err.strip().splitlines()) == 1, err
        r = cli("verify", str(dest))
        assert r.code == 0, r.err
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{dest.name}")]
    got = restored_truth(cli, tmp_path / "same-portable", tmp_path / "root", influxd_factory)
    want = server.dump()
    assert harness.compare_truth(harness.without_dead_fields(want), got, databases=["a", "b", "c"],
                                 sections={"points", "databases", "retention_policies"}) == []
