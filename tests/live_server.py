"""A running influxd 1.6.7 populated like a production server, and its truth (for online tests).

:func:`live_server` starts an :class:`~influxd.InfluxServer` (fixtures/influxd.py: throwaway root,
free loopback ports) and fills it with:

* throwaway databases created, written to and dropped first, so the real shards have ids >= 10;
* ``db1`` (``autogen`` with 7-day shard groups, and ``hourly``: 1-hour shard groups) and ``db2``
  (``autogen`` and ``fine``: a finite 5200-week duration, 1-day shard groups, the default RP);
* points of every field type (float, integer, string, boolean), extremes included, several series
  per measurement, series long enough to fill several 1000-point TSM blocks in one shard;
* deletes whose ``.tombstone`` files are still on disk (compactions of the existing generations
  are blocked, see ``fixtures/make_fixtures.py`` ``block_compactions``): a time-range DELETE, a
  DROP SERIES, a single-point DELETE;
* users (an admin, a reader with grants on both databases, a writer), continuous queries on both
  databases and a subscription.

The :class:`Live` it yields holds the server, the TRUTH (every point, field type, RP, user, grant,
CQ as served over HTTP, ``fixtures/influxd.py``), the tombstone files and the boundaries useful to
range tests. Stopping (leaving the ``with``) stops the server.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from influxd import InfluxServer
from make_fixtures import block_compactions, tombstone_files, ts, wait_flushed

MIN = 60 * 10**9
HOUR = 60 * MIN
DAY = 24 * HOUR
#: Start of the data (fixed, so shard groups are the same in every run).
T0 = ts("2026-10-05T00:00:00Z")

USERS = {"root": True, "reader": False, "writer": False}
CQS = {
    "db1": ("cq_cpu", "CREATE CONTINUOUS QUERY cq_cpu ON db1 BEGIN SELECT mean(v) INTO db1.autogen.cpu_1h "
                      "FROM db1.autogen.cpu GROUP BY time(1h), * END"),
    "db2": ("cq_m", "CREATE CONTINUOUS QUERY cq_m ON db2 RESAMPLE EVERY 2h BEGIN SELECT max(f) INTO db2.fine.m_max "
                    "FROM db2.fine.m GROUP BY time(1d) END"),
}


@dataclass
class Live:
    server: InfluxServer
    truth: dict
    tombstones: list[Path]
    #: (db, rp, measurement, first ns, last ns) of the long series (several blocks in one shard).
    long_series: tuple[str, str, str, int, int] = ("db1", "autogen", "cpu", 0, 0)
    throwaway_shards: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.server.host


def _db1_autogen(rng: random.Random) -> str:
    # cpu: 3 hosts x 3000 points a minute apart from T0 (one shard group of 7 days, 3 blocks
    # of 1000 values per field per series), then a sparse tail over three more weeks.
    lines = []
    for h in range(3):
        for k in range(3000):
            t = T0 + k * MIN + h
            lines.append(f'cpu,host=h{h} v={rng.random() * 100!r},i={k - 1500}i,b={"t" if k % 3 else "f"},'
                         f's="p{k % 17}" {t}')
        for k in range(1, 60):
            lines.append(f"cpu,host=h{h} v={k}.5 {T0 + 3 * DAY + k * 9 * HOUR + h}")
    extremes = [
        "fl x=-0.0", "fl x=1e308", "fl x=5e-324", "fl x=-1.7976931348623157e308", "fl x=0.1",
        "in n=9223372036854775807i", "in n=-9223372036854775808i", "in n=9007199254740993i",
        r'st s="quote \"inside\" and back\\slash"', 'st s="ünïcödé ✓ 日本語"', 'st s=""',
        "bo b=true", "bo b=FALSE",
    ]
    for j, e in enumerate(extremes):
        m, _, f = e.partition(" ")
        lines.append(f"{m},k=v{j % 2} {f} {T0 + 5 * HOUR + j * 1_000_000_007}")
    lines.append(f"old,k=v f=1969.0 {ts('1969-07-20T20:17:40Z')}")  # a negative timestamp
    return "\n".join(lines) + "\n"


def _db1_hourly(rng: random.Random) -> str:
    d = T0 + 10 * DAY
    return "".join(
        f"temp,sensor={s} value={rng.random() * 40 - 10!r},n={k}i {d + k * 7 * MIN + j}\n"
        for j, s in enumerate("abc") for k in range(60)
    )


def _db2(rng: random.Random) -> tuple[str, str]:
    d = T0 + 2 * DAY
    auto = "".join(f"m,t=x f={rng.random()!r},u={k}i,ok={'true' if k % 2 else 'false'} {d + k * HOUR}\n"
                   for k in range(72))
    fine = "".join(f'm,t=y f={k}.25,s="v{k}" {d + k * 30 * MIN}\n' for k in range(200))
    return auto, fine


def populate(s: InfluxServer, *, throwaway: int = 10, seed: int = 16) -> tuple[list[Path], int]:
    """Fill ``s`` (see the module docstring). Returns the tombstone files and the number of
    throwaway shards burned."""
    rng = random.Random(seed)
    for i in range(throwaway):
        s.execute(f"CREATE DATABASE tmp{i}")
        s.write(f"x v={i} {T0}", db=f"tmp{i}")
        s.execute(f"DROP DATABASE tmp{i}")
    for q in (
        "CREATE DATABASE db1",
        "CREATE RETENTION POLICY hourly ON db1 DURATION INF REPLICATION 1 SHARD DURATION 1h",
        "CREATE DATABASE db2",
        "CREATE RETENTION POLICY fine ON db2 DURATION 5200w REPLICATION 1 SHARD DURATION 1d DEFAULT",
        "CREATE USER root WITH PASSWORD 'rootpw' WITH ALL PRIVILEGES",
        "CREATE USER reader WITH PASSWORD 'readpw'",
        "CREATE USER writer WITH PASSWORD 'writepw'",
        "GRANT READ ON db1 TO reader",
        "GRANT ALL ON db2 TO reader",
        "GRANT WRITE ON db1 TO writer",
        CQS["db1"][1],
        CQS["db2"][1],
        "CREATE SUBSCRIPTION sub1 ON db1.autogen DESTINATIONS ALL 'http://127.0.0.1:9'",
    ):
        s.execute(q)
    s.write(_db1_autogen(rng), db="db1", rp="autogen")
    s.write(_db1_hourly(rng), db="db1", rp="hourly")
    auto, fine = _db2(rng)
    s.write(auto, db="db2", rp="autogen")
    s.write(fine, db="db2", rp="fine")
    wait_flushed(s)
    block_compactions(s.data_dir)
    t_del = T0 + 2000 * MIN
    s.execute(f"DELETE FROM cpu WHERE host='h1' AND time >= {t_del} AND time < {t_del + 100 * MIN}", "db1")
    s.execute("DROP SERIES FROM temp WHERE sensor='b'", "db1")
    s.execute(f"DELETE FROM m WHERE time = {T0 + 2 * DAY + 10 * 30 * MIN}", "db2")
    stones = tombstone_files(s.root)
    dbs = {p.relative_to(s.data_dir).parts[0] for p in stones}
    if not {"db1", "db2"} <= dbs:
        raise AssertionError(f"live server: the deletes left no tombstone files in both databases: {stones}")
    return stones, throwaway


@contextlib.contextmanager
def live_server(root: Path, *, throwaway: int = 10, **server_kw) -> Iterator[Live]:
    """A started, populated server under ``root`` and its truth; stopped on exit."""
    server_kw.setdefault("cold", "1s")
    with InfluxServer(root, **server_kw) as s:
        stones, burned = populate(s, throwaway=throwaway)
        truth = s.dump()
        ids = [sh["id"] for sh in truth["shards"]]
        if not ids or min(ids) < 10:
            raise AssertionError(f"live server: shard ids {ids} should all be >= 10")
        yield Live(s, truth, stones, ("db1", "autogen", "cpu", T0, T0 + 2999 * MIN + 2), throwaway_shards=burned)
