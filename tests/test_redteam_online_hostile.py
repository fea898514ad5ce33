"""Red team: `backup --host` against a hostile or broken snapshotter server (an in-process fake
that answers by request type). Every case must end in a result or one clear ArchiveError line with
a documented exit code, nothing written outside the target, and the destination either a complete
backup or absent (docs/formats.md#snapshotter-protocol)."""

from __future__ import annotations

import io
import json
import os
import socket
import socketserver
import struct
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from influx_archive.archive import snapshotter as sn
from influx_archive.archive.errors import ArchiveError
from influx_archive.archive.ops.onlinebackup import execute_online_backup, plan_online_backup
from influx_archive.meta.model import (
    Data,
    DatabaseInfo,
    RetentionPolicyInfo,
    ShardGroupInfo,
    ShardInfo,
    encode_data,
)

NO_WAIT = sn.Retry(attempts=2, base=0.0, sleep=lambda s: None)
WEEK = 7 * 86400 * 10**9
TSM = "000000001-000000001.tsm"
# a real TSM file (influxd's): a shard's data is checked block by block before it is written
REAL_TSM = next((Path(__file__).resolve().parent.parent / "fixtures" / "live" / "data" / "db1" / "autogen")
                .glob(f"*/{TSM}")).read_bytes()


class TypedFake:
    """A snapshotter on a free loopback port answering each request by its type byte:
    ``answers[type]`` is bytes or ``callable(conn, request_json) -> None``."""

    def __init__(self, answers: dict[int, bytes | Callable]) -> None:
        self.answers = answers
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn = self.request
                conn.settimeout(5)
                buf = b""
                try:
                    while not buf.endswith(b"\n"):
                        data = conn.recv(65536)
                        if not data:
                            return
                        buf += data
                    answer = fake.answers.get(buf[1], b"")
                    if callable(answer):
                        answer(conn, json.loads(buf[2:]))
                    else:
                        conn.sendall(answer)
                except OSError:
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> TypedFake:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def meta_answer(dbs: list[tuple[str, str, list[int]]]) -> bytes:
    databases = []
    sid_max = 0
    for i, (db, rp, ids) in enumerate(dbs):
        g = ShardGroupInfo(id=i + 1, start_time=0, end_time=WEEK, shards=[ShardInfo(id=s) for s in ids])
        sid_max = max([sid_max, *ids])
        r = RetentionPolicyInfo(name=rp, replica_n=1, shard_group_duration=WEEK, shard_groups=[g])
        databases.append(DatabaseInfo(name=db, default_retention_policy=rp, retention_policies=[r]))
    blob = encode_data(Data(databases=databases, max_shard_group_id=len(dbs), max_shard_id=sid_max))
    node = b"null\n"
    return struct.pack(">QQ", sn.BACKUP_MAGIC, len(blob)) + blob + struct.pack(">Q", len(node)) + node


def listing(dbs: list[tuple[str, str, list[int]]]) -> bytes:
    return json.dumps({"Paths": [f"{db}/{rp}/{i}" for db, rp, ids in dbs for i in ids]}).encode() + b"\n"


def tar_bytes(members: list[tuple[str, bytes | tuple[bytes, str]]]) -> bytes:
    """Go-style ustar; a member's value is its data, or ``(type, linkname)`` for a special one."""
    out = io.BytesIO()
    for name, what in members:
        ti = tarfile.TarInfo(name)
        ti.mtime = 1_700_000_000
        if isinstance(what, tuple):
            ti.type, ti.linkname = what
            out.write(ti.tobuf(tarfile.GNU_FORMAT))
        else:
            ti.size = len(what)
            out.write(ti.tobuf(tarfile.GNU_FORMAT))
            out.write(what + b"\0" * (-len(what) % 512))
    out.write(b"\0" * 1024)
    return out.getvalue()


def snapshot(tmp: Path) -> dict[str, tuple[int, bytes]]:
    """Every path under ``tmp`` with its mode and (regular files) content, symlinks not followed."""
    out = {}
    for dirpath, dirs, files in os.walk(tmp):
        for n in dirs + files:
            p = Path(dirpath, n)
            st_ = p.lstat()
            out[str(p.relative_to(tmp))] = (st_.st_mode, p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
    return out


def run_backup(host: str, dest: Path, to: str, *, timeout: float = 5.0):
    client = sn.Client(host, retry=NO_WAIT, timeout=timeout)
    plan = plan_online_backup(client, dest, to=to)
    return execute_online_backup(plan)


def assert_clean_failure(tmp: Path, before: dict, dest: Path, exc: ArchiveError) -> None:
    assert "\n" not in str(exc)
    assert exc.exit_code in (1, 2, 3)
    assert not dest.exists(), "a failed backup left its destination"
    after = snapshot(tmp)
    left = sorted(set(after) - set(before))
    assert not left, f"a failed backup left {left}"


DBS = [("db", "rp", [12])]
SPECIAL = [
    (tarfile.SYMTYPE, "/etc/passwd"), (tarfile.SYMTYPE, "../../../../tmp/x"), (tarfile.LNKTYPE, "/etc/passwd"),
    (tarfile.LNKTYPE, f"db/rp/12/{TSM}"), (tarfile.FIFOTYPE, ""), (tarfile.CHRTYPE, ""), (tarfile.BLKTYPE, ""),
    (tarfile.DIRTYPE, ""),
]
NAMES = [f"db/rp/12/00000000{n}-000000001.tsm" for n in (2, 3)] + [
    "../../evil", "/abs/evil", "db/rp/12/../../../evil.tsm", "db/rp/12/", "db/rp/12/x\ny.tsm"]


@pytest.mark.parametrize("to", ["legacy", "portable"])
def test_special_members_are_refused_never_copied(to, tmp_path):
    """Bug found: symlinks, hard links, devices, FIFOs and directories (any name, `..` and absolute
    ones too) were left out of the member check and copied as they were into a legacy backup, and
    a duplicated member was written twice: now one ProtocolError line, nothing written."""
    cases = [[(f"db/rp/12/{TSM}", REAL_TSM), (name, kind)] for kind in SPECIAL for name in NAMES]
    cases += [[(f"db/rp/12/{TSM}", a), (f"db/rp/12/{TSM}", b)] for a, b in ((b"a", b"b"), (b"a" * 600, b"a" * 600))]
    cases += [[(name, kind)] for kind in SPECIAL for name in NAMES[:3]]
    for i, members in enumerate(cases):
        work = tmp_path / str(i)
        work.mkdir()
        before = snapshot(tmp_path)
        dest = work / "b"
        answers = {1: meta_answer(DBS), 3: listing(DBS), 0: tar_bytes(members)}
        with TypedFake(answers) as f, pytest.raises(ArchiveError) as ei:
            run_backup(f.host, dest, to)
        assert isinstance(ei.value, sn.ProtocolError), (members, ei.value)
        assert_clean_failure(tmp_path, before, dest, ei.value)


def _lying_metastores():
    """Answers to the metastore request that lie about their lengths or hold a damaged blob."""
    good = meta_answer(DBS)
    (blen,) = struct.unpack_from(">Q", good, 8)
    blob = good[16:16 + blen]
    out = []
    for length in (0, 1, blen - 1, blen + 1, 1 << 31, 1 << 40, (1 << 64) - 1):
        out.append(struct.pack(">QQ", sn.BACKUP_MAGIC, length) + blob + struct.pack(">Q", 5) + b"null\n")
    for nlen in (0, 4, 6, 1 << 33, (1 << 64) - 1):
        out.append(struct.pack(">QQ", sn.BACKUP_MAGIC, blen) + blob + struct.pack(">Q", nlen) + b"null\n")
    for cut in range(0, len(good), max(1, len(good) // 13)):
        out.append(good[:cut])
    for pos in range(16, 16 + blen, max(1, blen // 11)):  # a damaged protobuf, lengths right
        out.append(good[:pos] + bytes([good[pos] ^ 0xFF]) + good[pos + 1:])
    out.append(struct.pack(">QQ", sn.BACKUP_MAGIC, 3) + b"\xff\xff\xff" + struct.pack(">Q", 5) + b"null\n")
    return out


@pytest.mark.parametrize("to", ["legacy", "portable"])
def test_lying_or_damaged_metastores_fail_cleanly(to, tmp_path):
    for i, answer in enumerate(_lying_metastores()):
        before = snapshot(tmp_path)
        dest = tmp_path / f"b{i}"
        with TypedFake({1: answer, 3: listing(DBS), 0: tar_bytes([(f"db/rp/12/{TSM}", REAL_TSM)])}) as f:
            try:
                run_backup(f.host, dest, to)
            except ArchiveError as exc:
                assert_clean_failure(tmp_path, before, dest, exc)
            else:  # a flipped byte the protobuf still decodes: then the backup is complete
                assert sorted(os.listdir(dest))


def _stall_after(prefix: bytes, how: str) -> Callable:
    def answer(conn: socket.socket, req: dict) -> None:
        conn.sendall(prefix)
        if how == "stall":
            threading.Event().wait(3)
        elif how == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
    return answer


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stall", "reset"])
def test_stalls_and_resets_mid_answer(how, tmp_path):
    """A server that stops sending (the client's recv timeout) or resets part-way, at many points
    of each answer: one line, exit 3 (unreachable) or 1 (cut), nothing left."""
    tar = tar_bytes([(f"db/rp/12/{TSM}", REAL_TSM)])
    meta, lst = meta_answer(DBS), listing(DBS)
    cases = []
    for cut in sorted({0, 1, 9, 17, len(meta) // 2, len(meta) - 1}):
        cases.append({1: _stall_after(meta[:cut], how), 3: lst, 0: tar})
    for cut in sorted({0, 1, 511, 512, 1500, len(tar) - 1025, len(tar) - 1}):
        cases.append({1: meta, 3: lst, 0: _stall_after(tar[:cut], how)})
    for cut in (0, 5, len(lst) - 2):
        cases.append({1: meta, 3: _stall_after(lst[:cut], how), 0: tar})
    for i, answers in enumerate(cases):
        before = snapshot(tmp_path)
        dest = tmp_path / f"b{i}"
        with TypedFake(answers) as f, pytest.raises(ArchiveError) as ei:
            run_backup(f.host, dest, "legacy", timeout=0.5)
        assert_clean_failure(tmp_path, before, dest, ei.value)


def test_endless_answers_are_bounded(tmp_path, monkeypatch):
    """A server streaming without end: the metastore and listing reads stop at their bounds (made
    small here) with one line, never reading on."""
    monkeypatch.setattr(sn, "MAX_METASTORE", 1 << 20)
    monkeypatch.setattr(sn, "MAX_LISTING", 1 << 16)

    def endless(conn: socket.socket, req: dict) -> None:
        with_header = struct.pack(">QQ", sn.BACKUP_MAGIC, (1 << 64) - 1)
        try:
            conn.sendall(with_header)
            while True:
                conn.sendall(b"\0" * 65536)
        except OSError:
            pass

    for answers in ({1: endless}, {1: meta_answer(DBS), 3: endless}):
        before = snapshot(tmp_path)
        with TypedFake(answers) as f, pytest.raises(sn.ProtocolError, match="answer longer than"):
            run_backup(f.host, tmp_path / "b", "legacy")
        assert_clean_failure(tmp_path, before, tmp_path / "b", sn.ProtocolError("x"))


_NAME = st.text(
    alphabet=st.sampled_from(list("ab.-_ \t\n\r\x01\x7fé€") + ["\u2028", "\ufeff"]), min_size=1, max_size=6,
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dbs=st.lists(st.tuples(_NAME, _NAME), min_size=1, max_size=3, unique_by=lambda t: t[0]),
       to=st.sampled_from(["legacy", "portable"]))
def test_odd_names_round_trip_or_fail_cleanly(dbs, to, tmp_path_factory):
    """Database and RP names with dots, control characters, newlines, Unicode: the backup either
    fails with one line, or holds every shard under its own database and RP (read back)."""
    from influx_archive.archive.sources import open_source

    tmp = tmp_path_factory.mktemp("names")
    layout = [(db, rp, [10 + i]) for i, (db, rp) in enumerate(dbs)]
    tars = {10 + i: tar_bytes([(f"{db}/{rp}/{10 + i}/{TSM}", REAL_TSM)]) for i, (db, rp, _) in enumerate(layout)}

    def shard(conn: socket.socket, req: dict) -> None:
        conn.sendall(tars.get(req["ShardID"], b""))

    dest = tmp / "b"
    with TypedFake({1: meta_answer(layout), 3: listing(layout), 0: shard}) as f:
        try:
            run_backup(f.host, dest, to)
        except ArchiveError as exc:
            assert "\n" not in str(exc)
            assert not dest.exists()
            return
    with open_source(str(dest)) as src:
        got = sorted(s.key for s in src.shards)
    assert got == sorted((db, rp, ids[0]) for db, rp, ids in layout)


def test_colliding_shard_ids_across_databases_fail_cleanly(tmp_path):
    """Two databases in the metastore claiming the same shard id (influxd never does this):
    the backup must not write one server tar under both names silently."""
    for layout in ([("a", "r", [7]), ("b", "r", [7])], [("a", "r", [7]), ("a", "s", [7])]):
        dest = tmp_path / f"b{layout[1][0]}{layout[1][1]}"
        tar = tar_bytes([(f"a/r/7/{TSM}", REAL_TSM)])
        before = snapshot(tmp_path)
        with TypedFake({1: meta_answer(layout), 3: listing(layout), 0: tar}) as f, pytest.raises(ArchiveError) as ei:
            run_backup(f.host, dest, "legacy")
        assert_clean_failure(tmp_path, before, dest, ei.value)


@pytest.mark.slow
def test_the_cli_says_one_line_with_its_exit_code(tmp_path, cli):
    """The same hostile answers through `backup --host` and `export --host`: a documented exit
    code (1 damaged / protocol, 3 unreachable or refused), one stderr line, no traceback, and
    the --json error names the code."""
    good_meta, lst = meta_answer(DBS), listing(DBS)
    reset = _stall_after(b"", "reset")
    cases = [
        ({1: good_meta[:20]}, 1),
        ({1: struct.pack(">QQ", sn.BACKUP_MAGIC, (1 << 64) - 1) + b"x" * 100}, 1),
        ({1: b"HTTP/1.1 400 Bad Request\r\n\r\n"}, 1),
        ({1: good_meta, 3: b"<html>"}, 1),
        ({1: good_meta, 3: lst, 0: tar_bytes([(f"db/rp/12/{TSM}", (tarfile.SYMTYPE, "/etc/passwd"))])}, 1),
        ({1: good_meta, 3: lst, 0: tar_bytes([("../../evil.tsm", b"x")])}, 1),
        ({1: reset}, 3),
        ({1: good_meta, 3: lst, 0: reset}, 3),
    ]
    for i, (answers, code) in enumerate(cases):
        for verb in ("backup", "export"):
            dest = tmp_path / f"{verb}{i}"
            args = ("backup", "--host", "H", str(dest), "--json") if verb == "backup" else (
                "export", "--host", "H", "--out", str(dest))
            with TypedFake(answers) as f:
                r = cli(*[f.host if a == "H" else a for a in args])
            assert r.code == code, (verb, i, r.code, r.err)
            assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1, r.err
            if verb == "backup":
                assert json.loads(r.out)["error"]["code"], r.out
            assert not dest.exists(), (verb, i)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def _damaged_tsms() -> list[tuple[str, bytes]]:
    """The real TSM file with a byte flipped in each region (header, block frames, index, footer)
    and cut at many lengths: every one is damage a block-by-block read finds."""
    out = []
    for pos in sorted({0, 4, 5, 9, 40, 200, 700, len(REAL_TSM) // 2, len(REAL_TSM) - 30, len(REAL_TSM) - 9,
                       len(REAL_TSM) - 1}):
        out.append((f"flip@{pos}", REAL_TSM[:pos] + bytes([REAL_TSM[pos] ^ 0x5A]) + REAL_TSM[pos + 1:]))
    for cut in (0, 4, 5, 100, len(REAL_TSM) // 2, len(REAL_TSM) - 8, len(REAL_TSM) - 1):
        out.append((f"cut@{cut}", REAL_TSM[:cut]))
    out.append(("garbage", b"\x16\xd1\x16\xd1\x01" + b"\xff" * 100))
    return out


@pytest.mark.parametrize("to", ["legacy", "portable"])
def test_damaged_tsm_files_from_the_server_are_refused(to, tmp_path):
    """Bug found by review: the server's tar was checked as a tar only, and its TSM files were
    copied as they were: a backup of damaged data exited 0 (verify --host called it DAMAGED). Now
    every file is read block by block first: one line naming the shard and member, nothing
    written. (A flip the checks cannot see, such as in an index's min/max time, gives a backup.)"""
    refused = 0
    for i, (label, data) in enumerate(_damaged_tsms()):
        before = snapshot(tmp_path)
        dest = tmp_path / f"b{i}"
        answers = {1: meta_answer(DBS), 3: listing(DBS), 0: tar_bytes([(f"db/rp/12/{TSM}", data)])}
        with TypedFake(answers) as f:
            try:
                run_backup(f.host, dest, to)
            except ArchiveError as exc:
                assert_clean_failure(tmp_path, before, dest, exc)
                assert exc.exit_code == 1 and exc.member == f"db/rp/12/{TSM}" and "shard 12" in str(exc), (label, exc)
                refused += 1
                continue
        from influx_archive.archive.ops.verify import verify  # what was written must verify

        assert verify(str(dest)).ok, label  # (--deep decodes blocks: it may see more, by design)
    assert refused >= len(_damaged_tsms()) - 3, refused
    # a tombstone file that cannot be read is refused the same way
    dest = tmp_path / "tomb"
    stone = b"\x00\x00\x15\x04" + b"\x1f\x8b" * 20  # a v4 header, then no gzip stream
    bad = tar_bytes([(f"db/rp/12/{TSM}", REAL_TSM), ("db/rp/12/000000001-000000001.tombstone", stone)])
    with TypedFake({1: meta_answer(DBS), 3: listing(DBS), 0: bad}) as f, pytest.raises(ArchiveError) as ei:
        run_backup(f.host, dest, to)
    assert ei.value.exit_code == 1 and not dest.exists()


def _tar_with_mtime(mtime: int) -> bytes:
    ti = tarfile.TarInfo(f"db/rp/12/{TSM}")
    ti.size, ti.mtime = len(REAL_TSM), mtime
    return ti.tobuf(tarfile.PAX_FORMAT) + REAL_TSM + b"\0" * (-len(REAL_TSM) % 512) + b"\0" * 1024


@pytest.mark.parametrize("to", ["legacy", "portable"])
def test_member_mtimes_past_int64_nanoseconds_are_protocol_errors(to, tmp_path):
    """Bug found by review: a member mtime of +-2^40 s reached the portable manifest's
    lastModified and was refused there as a usage error (exit 2). Now a protocol error (exit 1)
    for every mtime whose nanoseconds do not fit int64, and a backup for those that do."""
    limit = sn.MAX_TIME_NS // 10**9
    for i, mtime in enumerate((limit + 1, -limit - 1, 1 << 40, -(1 << 40), 10**15, -(10**15))):
        dest = tmp_path / f"b{i}"
        with TypedFake({1: meta_answer(DBS), 3: listing(DBS), 0: _tar_with_mtime(mtime)}) as f, \
                pytest.raises(sn.ProtocolError, match="mtime") as ei:
            run_backup(f.host, dest, to)
        assert ei.value.exit_code == 1 and not dest.exists()
    for i, mtime in enumerate((0, 1, 1_700_000_000, limit)):
        dest = tmp_path / f"ok{i}"
        with TypedFake({1: meta_answer(DBS), 3: listing(DBS), 0: _tar_with_mtime(mtime)}) as f:
            run_backup(f.host, dest, to)
        assert sorted(os.listdir(dest))


def test_listings_nested_deep_or_too_long_are_protocol_errors(tmp_path):
    """Bug found by review: a listing of 100,000 nested '[' gave 'unexpected RecursionError'
    (exit 3); a 60 MB listing of 3 million shards (under the old 64 MiB bound) exhausted a 1 GiB
    address space with tracebacks. Both are one protocol error now; the bounds stay where a
    .meta file and a sane listing fit."""
    from influx_archive.meta.format import MAX_META_FILE_SIZE

    assert sn.MAX_METASTORE <= MAX_META_FILE_SIZE  # a metastore fetched can be read back from its .meta
    for depth in (1_000, 100_000, 1_000_000):
        with pytest.raises(sn.ProtocolError, match="not JSON"):
            sn.parse_paths(b"[" * depth, "listing")
        with pytest.raises(sn.ProtocolError, match="not JSON"):
            sn.parse_paths(b'{"Paths":' + b"[" * depth, "listing")
    big = b'{"Paths":[' + b",".join(b'"db/rp/%d"' % i for i in range(1, sn.MAX_LISTING // 8)) + b"]}"
    assert len(big) > sn.MAX_LISTING
    before = snapshot(tmp_path)
    with TypedFake({1: meta_answer(DBS), 3: big}) as f, pytest.raises(sn.ProtocolError, match="answer longer than"):
        run_backup(f.host, tmp_path / "b", "legacy")
    assert_clean_failure(tmp_path, before, tmp_path / "b", sn.ProtocolError("x"))
