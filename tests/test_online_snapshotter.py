"""The snapshotter client (archive/snapshotter.py): against a fake server replaying answers, and
against the real influxd 1.6.7 (docs/formats.md#snapshotter-protocol)."""

from __future__ import annotations

import io
import json
import socket
import socketserver
import struct
import tarfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.archive import snapshotter as sn
from influx_archive.archive.errors import ArchiveError, SourceError, TruncatedError, UsageError

FAST = sn.Retry(attempts=3, base=0.0, sleep=lambda s: None)


class Fake:
    """A TCP server on a free loopback port that answers connection i with ``answers[i]`` (bytes,
    or a callable taking the connection) and records every request."""

    def __init__(self, answers: list) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn = self.request
                conn.settimeout(5)
                buf = b""
                while not buf.endswith(b"\n"):  # the JSON line and its extra byte
                    data = conn.recv(65536)
                    if not data:
                        break
                    buf += data
                fake.requests.append(buf)
                answer = fake.answers.pop(0) if fake.answers else b""
                if callable(answer):
                    answer(conn)
                else:
                    conn.sendall(answer)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.block_on_close = False
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Fake:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def meta_answer(blob: bytes, node: bytes = b"null\n") -> bytes:
    return struct.pack(">QQ", sn.BACKUP_MAGIC, len(blob)) + blob + struct.pack(">Q", len(node)) + node


def shard_tar(files: dict[str, bytes]) -> bytes:
    """A tar as influxd's Go archive/tar writes it: ustar headers, data padded to 512, exactly
    1024 zero bytes at the end (no padding to a 10240 record)."""
    out = io.BytesIO()
    for name, data in files.items():
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mtime = 1_700_000_000
        out.write(ti.tobuf(tarfile.USTAR_FORMAT))
        out.write(data + b"\0" * (-len(data) % 512))
    out.write(b"\0" * 1024)
    return out.getvalue()


# ---- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,host,port",
    [
        (None, "127.0.0.1", 8088),
        ("", "127.0.0.1", 8088),
        ("10.0.0.5:8089", "10.0.0.5", 8089),
        ("db-1.example.com:1", "db-1.example.com", 1),
        ("db-1.example.com", "db-1.example.com", 8088),
        (":9000", "127.0.0.1", 9000),
        ("[::1]:8088", "::1", 8088),
        ("[fe80::1%eth0]", "fe80::1%eth0", 8088),
    ],
)
def test_parse_host_accepts(text, host, port):
    a = sn.parse_host(text)
    assert (a.host, a.port) == (host, port)


@pytest.mark.parametrize(
    "text", ["http://127.0.0.1:8088", "h:0", "h:65536", "h:-1", "h:80a", "::1:8088", "h :1", "a/b:1", "h\n:1", "h:"]
)
def test_parse_host_refuses(text):
    with pytest.raises(UsageError) as exc:
        sn.parse_host(text)
    assert "\n" not in str(exc.value)


# ---- the envelope ----------------------------------------------------------------------------


def test_envelope_is_influxds_bytes():
    # The 239 bytes influxd backup 1.6.7 sends for a metastore backup (docs/formats.md#snapshotter-protocol).
    want = (
        b'\x03\x01{"Type":1,"BackupDatabase":"","RestoreDatabase":"","BackupRetentionPolicy":"",'
        b'"RestoreRetentionPolicy":"","ShardID":0,"Since":"0001-01-01T00:00:00Z",'
        b'"ExportStart":"0001-01-01T00:00:00Z","ExportEnd":"0001-01-01T00:00:00Z","UploadSize":0}\n'
    )
    assert len(want) == 239
    assert sn.envelope(sn.METASTORE_BACKUP) == want


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_700_000_000_123_456_789, -1, -86_400 * 10**9 * 365])
def test_go_time_round_trips(ns):
    import datetime as dt

    text = sn.go_time(ns)
    assert text.endswith("Z")
    base, _, frac = text[:-1].partition(".")
    t = dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    secs = int((t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).total_seconds())
    assert secs * 10**9 + int(frac.ljust(9, "0") or 0) == ns


def test_envelope_refuses_what_crashes_influxd():
    for size in (-1, -2, -(2**62), sn.MAX_UPLOAD + 1):
        with pytest.raises(ValueError):
            sn.envelope(sn.METASTORE_UPDATE, upload_size=size)
    with pytest.raises(ValueError):
        sn.envelope(sn.SHARD_UPDATE)


# ---- type 1 --------------------------------------------------------------------------------


def test_metastore_ok_and_request_sent_whole():
    blob = bytes(range(256)) * 3
    with Fake([meta_answer(blob)]) as f:
        data = sn.Client(f.host, retry=FAST).metastore()
    assert data == meta_answer(blob)
    assert f.requests == [sn.envelope(sn.METASTORE_BACKUP)]


def test_metastore_every_cut_is_an_error():
    good = meta_answer(b"x" * 40)
    with Fake([good[:cut] for cut in range(len(good)) for _ in range(3)]) as f:
        for cut in range(len(good)):
            with pytest.raises(ArchiveError) as exc:
                sn.Client(f.host, retry=FAST).metastore()
            assert isinstance(exc.value, (sn.EmptyResponse, TruncatedError)), (cut, exc.value)
            assert len(f.requests) == 3 * (cut + 1)  # retried, bounded


def test_metastore_retries_then_succeeds():
    good = meta_answer(b"meta")
    with Fake([b"", good[:10], good]) as f:
        assert sn.Client(f.host, retry=FAST).metastore() == good


@pytest.mark.parametrize(
    "answer,what",
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "HTTP port"),
        (struct.pack(">QQ", 0x59590102, 0) + struct.pack(">Q", 0), "magic"),
        (meta_answer(b"abc") + b"junk", "after the node section"),
    ],
)
def test_metastore_protocol_violations(answer, what):
    with Fake([answer]) as f, pytest.raises(sn.ProtocolError) as exc:
        sn.Client(f.host, retry=FAST).metastore()
    assert what in str(exc.value)


def test_answer_size_is_bounded():
    def endless(conn: socket.socket) -> None:
        try:
            for _ in range(64):
                conn.sendall(b"\0" * 65536)
        except OSError:
            pass

    with Fake([endless]) as f, pytest.raises(sn.ProtocolError):
        sn.Client(f.host, retry=FAST).read_response(sn.envelope(1), "metastore backup", 1 << 20)


# ---- types 3, 4 --------------------------------------------------------------------------


def test_listing_variants():
    answers = [
        b'{"Paths":["db/autogen/1","db/rp 2/12","_internal/monitor/13"]}\n',
        b'{"Paths":null}\n',
        b'{"Paths":["db\\\\rp\\\\7"]}\n',
    ]
    with Fake(answers) as f:
        c = sn.Client(f.host, retry=FAST)
        assert c.shard_paths() == [("db", "autogen", 1), ("db", "rp 2", 12), ("_internal", "monitor", 13)]
        assert c.shard_paths("db") == []
        assert c.shard_paths("db", "rp") == [("db", "rp", 7)]
    types = [r[1] for r in f.requests]
    assert types == [sn.DATABASE_INFO, sn.DATABASE_INFO, sn.RETENTION_POLICY_INFO]
    body = json.loads(f.requests[2][2:-1])
    assert (body["BackupDatabase"], body["BackupRetentionPolicy"]) == ("db", "rp")


@pytest.mark.parametrize(
    "answer", [b"not json", b'{"paths":[]}', b'{"Paths":"x"}', b'{"Paths":["a/b"]}', b'{"Paths":["a/b/c"]}',
               b'{"Paths":["a/b/\xd9\xa3"]}', b'{"Paths":[1]}', b"\xff\xfe",
               b'{"Paths":["a/b/' + b"9" * 5000 + b'"]}', b'{"Paths":["a/b/18446744073709551616"]}',
               b'{"Paths":["../b/1"]}', b'{"Paths":["a/./1"]}', b'{"Paths":["a\\u0000/b/1"]}', b'{"Paths":["//1"]}']
)
def test_listing_protocol_violations(answer):
    with Fake([answer]) as f, pytest.raises(sn.ProtocolError):
        sn.Client(f.host, retry=FAST).shard_paths()


def test_listing_unknown_database_and_old_server():
    with Fake([b""] * 6) as f:
        c = sn.Client(f.host, retry=FAST)
        with pytest.raises(SourceError, match="no database nope"):
            c.shard_paths("nope")
        with pytest.raises(sn.OldServer, match=r"1\.4 or older"):
            c.shard_paths()


# ---- type 0 --------------------------------------------------------------------------------


def test_shard_backup_complete_tar(tmp_path: Path):
    files = {"db/rp/12/000000001-000000001.tsm": b"T" * 700, "db/rp/12/000000001-000000001.tombstone": b"x" * 10}
    good = shard_tar(files)
    with Fake([good]) as f, open(tmp_path / "t", "w+b") as out:
        got = sn.Client(f.host, retry=FAST).shard_backup(12, out, since_ns=1_500_000_000_000_000_001)
        out.seek(0)
        assert out.read() == good
    assert [(e.name, e.size) for e in got] == [(n, len(d)) for n, d in files.items()]
    body = json.loads(f.requests[0][2:-1])
    assert (body["ShardID"], body["Since"]) == (12, "2017-07-14T02:40:00.000000001Z")


def test_shard_backup_every_cut_is_retried_then_fails(tmp_path: Path):
    good = shard_tar({"db/rp/3/000000001-000000001.tsm": b"T" * 1300, "db/rp/3/000000002-000000001.tsm": b"u" * 5})
    cuts = sorted(set(range(0, len(good), 512)) | {1, 511, 513, 1000, len(good) - 1, len(good) - 600})
    with Fake([good[:cut] for cut in cuts for _ in range(3)]) as f, open(tmp_path / "t", "w+b") as out:
        for i, cut in enumerate(cuts):
            with pytest.raises(ArchiveError) as exc:
                sn.Client(f.host, retry=FAST).shard_backup(3, out)
            assert isinstance(exc.value, (sn.EmptyResponse, TruncatedError)), (cut, exc.value)
            assert len(f.requests) == 3 * (i + 1)


def test_shard_backup_retry_truncates_the_file(tmp_path: Path):
    good = shard_tar({"db/rp/3/000000001-000000001.tsm": b"T" * 100})
    long_cut = good[:-512] + b"\x01" * 5000  # longer than the good answer, and damaged
    with Fake([long_cut, b"", good]) as f, open(tmp_path / "t", "w+b") as out:
        sn.Client(f.host, retry=FAST).shard_backup(3, out)
        out.seek(0)
        assert out.read() == good
    assert len(f.requests) == 3


def test_backoff_is_bounded():
    slept: list[float] = []
    with Fake([b""] * 10) as f, pytest.raises(sn.EmptyResponse, match="tried 5 times"):
        sn.Client(f.host, retry=sn.Retry(attempts=5, sleep=slept.append)).metastore()
    assert len(slept) == 4 and all(0 < s <= 4.0 for s in slept) and slept == sorted(slept)


# ---- transport errors ------------------------------------------------------------------------


def test_refused_connection():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(sn.Unreachable, match="connection refused"):
        sn.Client(f"127.0.0.1:{port}", retry=FAST).metastore()


def test_silent_server_times_out():
    def silent(conn: socket.socket) -> None:
        time.sleep(2)

    with Fake([silent]) as f, pytest.raises(sn.Unreachable, match="timed out"):
        sn.Client(f.host, timeout=0.3, retry=FAST).metastore()


def test_id_map():
    pairs = [(11, 25), (12, 26)]
    data = struct.pack(">QQ", sn.BACKUP_MAGIC, 2) + b"".join(struct.pack(">QQ", *p) for p in pairs)
    assert sn.decode_id_map(data, "x") == dict(pairs)
    for cut in range(len(data)):
        with pytest.raises(ArchiveError):
            sn.decode_id_map(data[:cut], "x")
    with pytest.raises(sn.ProtocolError):
        sn.decode_id_map(struct.pack(">QQ", sn.BACKUP_MAGIC, 1 << 60), "x")


# ---- the real influxd --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from live_server import live_server

    with live_server(tmp_path_factory.mktemp("snap")) as lv:
        yield lv


@pytest.mark.interop
def test_real_metastore_is_influxds_meta_file(live, tmp_path: Path):
    # influxd's background services may touch the metastore between the requests (seen in CI
    # under load: its file matched neither read); a few tries, each in a new directory
    for attempt in range(3):
        before = sn.Client(live.host).metastore()
        r = live.server.backup(tmp_path / f"b{attempt}")
        assert r.returncode == 0, r.stderr
        after = sn.Client(live.host).metastore()
        if (tmp_path / f"b{attempt}" / "meta.00").read_bytes() in (before, after):
            break
    assert (tmp_path / f"b{attempt}" / "meta.00").read_bytes() in (before, after)
    ours = after
    off, length = sn.check_metastore_backup(ours, "x")
    assert off + length + 8 + 5 == len(ours)


@pytest.mark.interop
def test_real_listings_match_show_shards(live):
    c = sn.Client(live.host)
    want = {(s["database"], s["retention_policy"], s["id"]) for s in live.truth["shards"]}
    assert set(c.shard_paths()) == want
    for db in ("db1", "db2"):
        assert set(c.shard_paths(db)) == {w for w in want if w[0] == db}
    assert set(c.shard_paths("db1", "hourly")) == {w for w in want if w[:2] == ("db1", "hourly")}
    with pytest.raises(SourceError):
        c.shard_paths("nope")
    with pytest.raises(SourceError):
        c.shard_paths("db1", "nope")


@pytest.mark.interop
def test_real_shard_tar_is_influxds_and_keeps_tombstones(live, tmp_path: Path):
    c = sn.Client(live.host)
    stoned = sorted({int(p.parent.name) for p in live.tombstones})
    sid = stoned[0]
    sh = next(s for s in live.truth["shards"] if s["id"] == sid)
    r = live.server.backup(tmp_path / "b", "-db", sh["database"], "-rp", sh["retention_policy"], "-shard", str(sid))
    assert r.returncode == 0, r.stderr
    theirs = tmp_path / "b" / f"{sh['database']}.{sh['retention_policy']}.{sid:05d}.00"
    with open(tmp_path / "ours", "w+b") as out:
        got = c.shard_backup(sid, out)
    names = [e.name for e in got]
    assert any(n.endswith(".tombstone") for n in names)
    with tarfile.open(theirs) as t1, tarfile.open(tmp_path / "ours") as t2:
        a = {m.name: t1.extractfile(m).read() for m in t1 if m.isreg()}  # type: ignore[union-attr]
        b = {m.name: t2.extractfile(m).read() for m in t2 if m.isreg()}  # type: ignore[union-attr]
    assert a == b and set(names) == set(b)
    # since: nothing modified after now -> the empty tar (1024 zero bytes)
    with open(tmp_path / "since", "w+b") as out:
        assert c.shard_backup(sid, out, since_ns=time.time_ns() + 3600 * 10**9) == []
        assert out.seek(0, 2) == 1024


@pytest.mark.interop
def test_real_unknown_shard_and_unknown_type(live, tmp_path: Path):
    c = sn.Client(live.host, retry=sn.Retry(attempts=2, base=0.05))
    with open(tmp_path / "x", "w+b") as out, pytest.raises(sn.EmptyResponse, match="shard 999999"):
        c.shard_backup(999999, out)
    # type 2 is a placeholder influxd never implemented: it answers nothing
    assert c.read_response(sn.envelope(sn.SERIES_FILE_BACKUP), "series file", 100) == b""
    assert live.server.running


# ---- the online backup against a fake server ---------------------------------------------------


def _meta_blob() -> bytes:
    from influx_archive.meta.model import (
        Data,
        DatabaseInfo,
        RetentionPolicyInfo,
        ShardGroupInfo,
        ShardInfo,
        encode_data,
    )

    g = ShardGroupInfo(id=1, start_time=0, end_time=7 * 86400 * 10**9, shards=[ShardInfo(id=12)])
    rp = RetentionPolicyInfo(name="rp", replica_n=1, shard_group_duration=7 * 86400 * 10**9, shard_groups=[g])
    data = Data(databases=[DatabaseInfo(name="db", default_retention_policy="rp", retention_policies=[rp])],
                max_shard_group_id=1, max_shard_id=12)
    return meta_answer(encode_data(data))


@pytest.mark.parametrize(
    "member",
    ["db/rp/12/../../../etc/x.tsm", "db/rp/13/000000001-000000001.tsm", "db/rp/12/sub/000000001-000000001.tsm",
     "db/rp/12/fields.idx", "db/rp/12/000000001-000000001.tsm.tmp", "other/rp/12/000000001-000000001.tsm"],
)
def test_backup_refuses_a_hostile_shard_tar(member, tmp_path):
    from influx_archive.archive.ops.onlinebackup import execute_online_backup, plan_online_backup

    meta = _meta_blob()
    listing = b'{"Paths":["db/rp/12"]}\n'
    tar = shard_tar({member: b"x" * 10})
    with Fake([meta, listing, meta] + [tar] * 3) as f:
        plan = plan_online_backup(sn.Client(f.host, retry=FAST), tmp_path / "b", to="legacy")
        with pytest.raises(sn.ProtocolError, match="not a TSM or tombstone file of that shard"):
            execute_online_backup(plan)
    assert not (tmp_path / "b").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".b")]  # no temporary left
    for root in tmp_path.glob(".influx-archive-*"):
        assert not list(root.iterdir())  # the spool is gone


# ---- any answer: a result or one ArchiveError, never another exception ------------------------

def _mutations():
    good_tar = shard_tar({"db/rp/3/000000001-000000001.tsm": b"T" * 600})
    good_meta = meta_answer(b"m" * 30)
    bases = st.sampled_from([good_tar, good_meta, b'{"Paths":["db/rp/1"]}\n', b""])
    return st.one_of(
        st.binary(max_size=3000),
        st.tuples(bases, st.integers(0, 3000), st.binary(min_size=1, max_size=8)).map(
            lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]):]),
        st.tuples(bases, st.integers(0, 3000)).map(lambda t: t[0][: t[1]]),
    )


@settings(max_examples=300, deadline=None)
@given(_mutations())
def test_any_answer_is_a_result_or_one_error(data):
    for fn in (lambda: sn.check_metastore_backup(data, "x"), lambda: sn.parse_paths(data, "x"),
               lambda: sn.decode_id_map(data, "x"), lambda: sn.check_tar(io.BytesIO(data), len(data), "x")):
        try:
            fn()
        except ArchiveError as exc:
            assert "\n" not in str(exc)
