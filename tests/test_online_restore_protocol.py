"""Online restore against fake snapshotter and HTTP servers: the exact bytes we send (type 6
envelope and payload, type 7 tar with exactly the 1024-byte trailer), every way a server can
answer badly or not at all (one-line error, bounded time, never a hang), old servers refused
before anything is sent, and the CQ text rewrite of ``--newdb``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import struct
import tarfile
import threading
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.archive import snapshotter_upload as snap
from influx_archive.archive.errors import ArchiveError, UnsupportedError
from influx_archive.archive.ops.restore.online import plan_online
from influx_archive.archive.ops.restore.online_cq import quote_ident, rewrite_cq_database
from influx_archive.archive.ops.restore.online_http import check_version
from influx_archive.archive.snapshotter import Address
from influx_archive.archive.sources import open_source


@contextlib.contextmanager
def fake_server(handler: Callable[[socket.socket], None]) -> Iterator[tuple[Address, list[bytes]]]:
    """A TCP server on a free loopback port running ``handler(conn)`` for each connection; yields
    its address and the list of what each connection sent (filled by the handler's reads)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        lsock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    handler(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield Address("127.0.0.1", lsock.getsockname()[1]), got
    finally:
        stop.set()
        t.join(5)
        lsock.close()


def read_all(conn: socket.socket) -> bytes:
    buf = b""
    while chunk := conn.recv(1 << 16):
        buf += chunk
    return buf


def read_request(conn: socket.socket) -> tuple[int, dict, bytes]:
    """Mux byte, type, the JSON line; then UploadSize bytes of payload (as influxd reads them)."""
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(4096)
        assert chunk, "client closed before the JSON line"
        buf += chunk
    assert buf[0] == 3
    line, rest = buf[2:].split(b"\n", 1)
    req = json.loads(line)
    while len(rest) < req["UploadSize"]:
        chunk = conn.recv(1 << 16)
        assert chunk, "payload cut"
        rest += chunk
    return buf[1], req, rest


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 70_000, 300_000])
def test_type6_sends_upload_size_and_payload_exactly(size) -> None:
    payload = bytes(i % 251 for i in range(size))
    seen: list = []

    def handler(conn):
        typ, req, rest = read_request(conn)
        seen.append((typ, req, rest))
        conn.sendall(struct.pack(">QQ", 0x59590101, 2) + struct.pack(">QQQQ", 5, 50, 7, 70))

    with fake_server(handler) as (addr, _):
        got = snap.import_database(addr, payload, "d b\u00e9", max_pairs=2, timeout=5)
    assert got == {5: 50, 7: 70}
    ((typ, req, rest),) = seen
    assert typ == 6 and req["Type"] == 6 and req["UploadSize"] == size and rest == payload
    assert req["BackupDatabase"] == req["RestoreDatabase"] == "d b\u00e9"
    assert req["BackupRetentionPolicy"] == req["RestoreRetentionPolicy"] == ""


BAD_ID_MAPS = {
    "closed without answer": b"",
    "wrong magic": struct.pack(">QQ", 0x12345678, 0),
    "cut header": struct.pack(">Q", 0x59590101),
    "more pairs than shards": struct.pack(">QQ", 0x59590101, 3) + b"\0" * 48,
    "pairs cut": struct.pack(">QQ", 0x59590101, 2) + struct.pack(">QQ", 1, 2),
    "two shards onto one": struct.pack(">QQ", 0x59590101, 2) + struct.pack(">QQQQ", 1, 9, 2, 9),
    "new id zero": struct.pack(">QQ", 0x59590101, 1) + struct.pack(">QQ", 1, 0),
    "huge count": struct.pack(">QQ", 0x59590101, 1 << 60),
}


@pytest.mark.parametrize("answer", BAD_ID_MAPS.values(), ids=BAD_ID_MAPS.keys())
def test_type6_bad_answers_are_one_line_errors(answer) -> None:
    def handler(conn):
        read_request(conn)
        conn.sendall(answer)

    with fake_server(handler) as (addr, _), pytest.raises(ArchiveError) as info:
        snap.import_database(addr, b"x" * 10, "db", max_pairs=2, timeout=5)
    assert "db" in one_line(info.value)


def test_type6_server_that_never_answers_times_out() -> None:
    release = threading.Event()

    def handler(conn):
        read_request(conn)
        release.wait(30)  # answers nothing, keeps the connection open

    with fake_server(handler) as (addr, _):
        try:
            with pytest.raises(ArchiveError) as info:
                snap.import_database(addr, b"x", "db", max_pairs=1, timeout=5, work_timeout=0.5)
        finally:
            release.set()
    assert "no answer for 0.5 s" in one_line(info.value)


def _tar_of(data: bytes) -> tuple[list[tuple[str, bytes]], int]:
    """Members of the tar ``data`` and the bytes after the last member's data (the trailer)."""
    tf = tarfile.open(fileobj=BytesIO(data), mode="r:")
    members = []
    end = 0
    for m in tf:
        f = tf.extractfile(m)
        assert f is not None
        members.append((m.name, f.read()))
        end = m.offset_data + -(-m.size // 512) * 512
    return members, len(data) - end


@pytest.mark.parametrize(
    "sizes", [[], [0], [1], [512], [100_000], [3, 1024, 70_000]], ids=lambda s: "+".join(map(str, s)) or "none"
)
def test_type7_stream_is_exact(sizes, tmp_path: Path) -> None:
    files = []
    for i, n in enumerate(sizes):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes((i * 7 + j) % 256 for j in range(n)))
        files.append(snap.UploadFile(f"00000000{i + 1}-000000001.tsm", p))
    seen: list[bytes] = []

    def handler(conn):
        seen.append(read_all(conn))  # to the client's half-close, then EOF back

    with fake_server(handler) as (addr, _):
        sent = snap.upload_shard(addr, "my db/rp.1", 4242, files, timeout=5)
    (data,) = seen
    assert data[:2] == b"\x03\x07" and struct.unpack(">Q", data[2:10])[0] == 4242
    tar = data[10:]
    assert len(tar) % 512 == 0
    members, trailer = _tar_of(tar) if files else ([], len(tar))
    assert trailer == 1024 and tar[-1024:] == b"\0" * 1024
    assert [(n, d) for n, d in members] == [(f"my db/rp.1/4242/{f.name}", f.path.read_bytes()) for f in files]
    assert [(m.name, m.size) for m in sent] == [(f.name, f.path.stat().st_size) for f in files]


@pytest.mark.parametrize("behaviour", ["reset at once", "answers data", "never finishes"])
def test_type7_server_misbehaving_is_a_one_line_error(behaviour, tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"x" * 200_000)

    def handler(conn):
        if behaviour == "reset at once":
            conn.recv(10)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        read_all(conn)
        if behaviour == "answers data":
            conn.sendall(b"surprise")
        else:
            release.wait(30)

    release = threading.Event()
    with fake_server(handler) as (addr, _):
        try:
            with pytest.raises(ArchiveError) as info:
                snap.upload_shard(addr, "db/rp", 1, [snap.UploadFile("000000001-000000001.tsm", p)], timeout=5,
                                  work_timeout=0.5)
        finally:
            release.set()
    text = one_line(info.value)
    assert "shard 1" in text
    if behaviour == "never finishes":
        assert "no answer for 0.5 s" in text


def test_refused_connection_is_one_line(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(ArchiveError) as info:
        snap.fetch_metastore(Address("127.0.0.1", port), timeout=2)
    assert "refused" in one_line(info.value)


@pytest.mark.parametrize(
    "version,ok",
    [("1.4.3", False), ("1.3.0", False), ("0.13.0", False), ("v1.4.0", False), ("2.7.1", False),
     ("1.5.0", True), ("1.6.7~rc0", True), ("1.8.10", True), ("", True), ("unknown", True)],
)
def test_old_servers_are_refused(version, ok) -> None:
    if ok:
        check_version(version, "http://x")
    else:
        with pytest.raises(UnsupportedError):
            check_version(version, "http://x")


@contextlib.contextmanager
def fake_http(version: str) -> Iterator[str]:
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(204)
            self.send_header("X-Influxdb-Version", version)
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("version", ["1.4.3", "1.2.0"])
def test_old_server_is_refused_before_the_snapshotter_is_touched(version, fixtures_dir) -> None:
    connections: list[int] = []

    def handler(conn):
        connections.append(1)

    with (
        fake_server(handler) as (addr, _), fake_http(version) as url, open_source(fixtures_dir / "legacy") as src,
        pytest.raises(UnsupportedError) as info,
    ):
        plan_online(src, str(addr), http=url)
    assert "1.5" in one_line(info.value) and connections == []


def test_help_says_the_port_has_no_authentication(cli) -> None:
    proc = cli("restore", "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "NO AUTHENTICATION" in text and "never expose" in text


@pytest.mark.parametrize(
    "args",
    [["--metadir", "M"], ["--datadir", "D"], ["--merge"], ["--owner", "root"], ["--waldir", "W"], ["--force"]],
)
def test_offline_flags_with_host_are_usage_errors(args, fixtures_dir, cli) -> None:
    proc = cli("restore", str(fixtures_dir / "legacy"), "--host", "127.0.0.1:1", *args)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_http_without_host_and_missing_dirs_are_usage_errors(fixtures_dir, cli) -> None:
    assert cli("restore", str(fixtures_dir / "legacy"), "--http", "http://x").returncode == 2
    proc = cli("restore", str(fixtures_dir / "legacy"))
    assert proc.returncode == 2 and "--host" in proc.stderr


# ---- the CQ text of --newdb -------------------------------------------------------------------

def test_quote_ident_cases() -> None:
    assert quote_ident("db1") == "db1"
    assert quote_ident("_x9") == "_x9"
    assert quote_ident("my-db") == '"my-db"'
    assert quote_ident("select") == '"select"'
    assert quote_ident("1abc") == '"1abc"'
    assert quote_ident('a"b\\c') == '"a\\"b\\\\c"'
    assert quote_ident("") == '""'


TEMPLATES = [
    # ({D}: places that name the restored database; {O}: another database; {S}: text inside literals)
    "CREATE CONTINUOUS QUERY cq ON {D} BEGIN SELECT mean(v) INTO {D}.autogen.out FROM {D}.autogen.cpu "
    "GROUP BY time(1h), * END",
    "CREATE CONTINUOUS QUERY cq ON {D} BEGIN SELECT mean(v) INTO {D}..out FROM {D}..cpu GROUP BY time(5m) END",
    "CREATE CONTINUOUS QUERY cq ON {D} RESAMPLE EVERY 1m FOR 1h BEGIN SELECT max(v) INTO {D}.rp.:MEASUREMENT "
    "FROM {D}.rp./cpu.*/ GROUP BY time(1m), host END",
    "CREATE CONTINUOUS QUERY cq ON {D} BEGIN SELECT count(v) INTO out FROM cpu WHERE host = '{S}' "
    "GROUP BY time(1h) END",
    "CREATE CONTINUOUS QUERY cq ON {D} BEGIN SELECT sum(v) INTO {O}.autogen.out FROM {D}.autogen.a, {D}.autogen.b, "
    "{O}.autogen.c GROUP BY time(1h) END",
    "CREATE CONTINUOUS QUERY cq ON {D} BEGIN SELECT mean(v) INTO {D}.autogen.out FROM {D}.autogen.cpu "
    "WHERE host =~ /{S}/ AND dc != '{S}' GROUP BY time(1h) END",
    "CREATE CONTINUOUS QUERY cq ON {D} BEGIN SELECT mean(v) / 2 INTO {D}.autogen.out FROM (SELECT v FROM "
    "{D}.autogen.cpu) GROUP BY time(1h) END",
]

names = st.one_of(
    st.text(st.sampled_from(list("abcXY_09 -.\"'\\/é")), min_size=1, max_size=12),
    st.sampled_from(["select", "db1", "on", "from", "into", "autogen", "cpu", "END"]),
)


def _literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("/", "\\/")


@settings(max_examples=300, deadline=None)
@given(template=st.sampled_from(TEMPLATES), old=names, new=names, other=names)
def test_cq_rewrite_renames_the_database_and_nothing_else(template, old, new, other) -> None:
    if other in (old, new):
        other = other + "_z"
    inside = _literal(f"{quote_ident(old)}.autogen.cpu ON {quote_ident(old)}")
    q = template.format(D=quote_ident(old), O=quote_ident(other), S=inside)
    want = template.format(D=quote_ident(new), O=quote_ident(other), S=inside)
    assert rewrite_cq_database(q, old, new) == want
    assert rewrite_cq_database(want, new, old) == q


def test_cq_rewrite_refuses_unterminated_text() -> None:
    with pytest.raises(ValueError):
        rewrite_cq_database("CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT 'x FROM db.rp.m END", "db", "n")


@pytest.mark.parametrize("name", ["legacy", "portable", "portable_incremental", "live", "union_legacy"])
def test_type6_payload_holds_one_database_only(name, fixtures_dir) -> None:
    from influx_archive.archive.ops.restore.online import _trimmed
    from influx_archive.meta.model import decode_data

    with open_source(fixtures_dir / name) as src:
        assert src.meta is not None
        assert src.meta.users or name.startswith("union")
        for db in src.meta.databases:
            payload, count = _trimmed(src.meta, db)
            got = decode_data(payload)
            assert [d.name for d in got.databases] == [db.name] and got.users == []
            (one,) = got.databases
            assert one.continuous_queries == [] and one.default_retention_policy == db.default_retention_policy
            assert [r.name for r in one.retention_policies] == [r.name for r in db.retention_policies]
            live = [(r.name, g.id, [s.id for s in g.shards]) for r in db.retention_policies for g in r.shard_groups
                    if not g.deleted]
            assert [(r.name, g.id, [s.id for s in g.shards]) for r in one.retention_policies
                    for g in r.shard_groups] == live
            assert count == sum(len(s) for _, _, s in live)
            assert [[s.name for s in r.subscriptions] for r in one.retention_policies] == [
                [s.name for s in r.subscriptions] for r in db.retention_policies
            ]


@pytest.mark.parametrize("bad", [b"..", b".", b"a/b", b"a\\b", b"x\x01y", b"new\nline", b"\xff\xfeZZ"], ids=repr)
@pytest.mark.parametrize("where", ["database", "retention policy"])
def test_names_influxd_would_not_accept_are_refused_before_any_connection(bad, where, tmp_path, fixtures_dir) -> None:
    from influx_archive.meta.files import build_meta_nn, parse_meta_nn
    from influx_archive.meta.model import decode_data, encode_data

    nn = parse_meta_nn((fixtures_dir / "legacy" / "meta.01").read_bytes())
    data = decode_data(nn.blob)
    db = data.databases[0]
    marker = "~" * len(bad)  # the bytes of the name are put in after encoding (not all are UTF-8)
    if where == "database":
        db.name = marker
    else:
        db.retention_policies[0].name = marker
    blob = encode_data(data)
    field = b"\x0a" + bytes([len(bad)]) + marker.encode()  # Name = 1, length-delimited
    assert blob.count(field) == 1
    src_dir = tmp_path / "hostile"
    src_dir.mkdir()
    (src_dir / "meta.00").write_bytes(build_meta_nn(blob.replace(field, b"\x0a" + bytes([len(bad)]) + bad)))
    connections: list[int] = []
    with (
        fake_server(lambda conn: connections.append(1)) as (addr, _), open_source(src_dir) as src,
        pytest.raises(ArchiveError) as info,
    ):
        plan_online(src, str(addr), http=f"http://{addr}")
    assert connections == []
    text = one_line(info.value)
    assert "not a name influxd accepts" in text or "not valid UTF-8" in text, text


def test_snapshotter_refused_while_http_answers_is_one_line(fixtures_dir) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with (
        fake_http("1.6.7~rc0") as url, open_source(fixtures_dir / "legacy") as src,
        pytest.raises(ArchiveError) as info,
    ):
        plan_online(src, f"127.0.0.1:{port}", http=url, timeout=2)
    assert "refused" in one_line(info.value) and str(port) in str(info.value)
