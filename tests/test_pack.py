"""pack / unpack / reading sealed archives (issue 6)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import influxd as harness
import pytest

from influx_archive.archive.errors import ChecksumError, FormatError
from influx_archive.archive.ops.pack import pack, unpack
from influx_archive.archive.ops.verify import verify
from influx_archive.archive.sources import open_source
from influx_archive.archive.sources.sealed import MANIFEST_NAME
from influx_archive.archive.sources.shardview import open_shard_reader

FIXTURES = ["legacy", "portable", "legacy_incremental", "portable_incremental"]


def hashes(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode & 0o777)
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def served(src) -> dict:
    out = {}
    for shard in src.shards:
        if not shard.files and not shard.wal:
            continue
        with open_shard_reader(src, shard) as reader:
            for key in reader.keys():
                out[(shard.key, key)] = reader.read(key)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_pack_unpack_is_byte_identical_and_readable_in_place(name, tmp_path, fixtures_dir) -> None:
    archive = tmp_path / f"{name}.tar.zst"
    res = pack(fixtures_dir / name, archive)
    assert res.files == len(hashes(fixtures_dir / name))
    unpack(archive, tmp_path / "out")
    assert hashes(tmp_path / "out") == hashes(fixtures_dir / name)
    # every verb's reader works on the archive itself and sees the same points
    assert served(open_source(archive)) == served(open_source(fixtures_dir / name))
    assert verify(archive, deep=True).findings == []


def test_manifest_lists_every_file(tmp_path, fixtures_dir) -> None:
    archive = tmp_path / "a.tar.zst"
    pack(fixtures_dir / "portable", archive)
    import tarfile

    import zstandard

    with (
        open(archive, "rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as zr,
        tarfile.open(fileobj=zr, mode="r|") as tf,
    ):
        first = tf.next()
        doc = json.loads(tf.extractfile(first).read())
    assert first.name == MANIFEST_NAME
    assert doc["source"]["kind"] == "portable" and doc["databases"] == ["db1", "db2"]
    want = {n: h for n, (h, _) in hashes(fixtures_dir / "portable").items()}
    assert {e["name"]: e["sha256"] for e in doc["files"]} == want
    assert doc["time_range"]["start"] == "1969-07-14T00:00:00Z"


def _inflated(data: bytes) -> bytes | None:
    """The decompressed stream, or None when zstd refuses it."""
    import io

    import zstandard

    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as r:
            out = bytearray()
            while chunk := r.read(1 << 20):
                out += chunk
            return bytes(out)
    except zstandard.ZstdError:
        return None


@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
def test_a_flipped_byte_is_found_and_refused(where, tmp_path, fixtures_dir, cli) -> None:
    archive = tmp_path / "a.tar.zst"
    pack(fixtures_dir / "legacy", archive)
    data = bytearray(archive.read_bytes())
    plain = _inflated(bytes(data))
    pos = int(len(data) * where)
    data[pos] ^= 0x10
    while _inflated(bytes(data)) == plain:  # a bit zstd never uses (table padding): move on
        data[pos] ^= 0x10
        pos += 1
        data[pos] ^= 0x10
    archive.write_bytes(bytes(data))
    proc = cli("verify", str(archive))
    assert proc.returncode == 1 and proc.stdout.startswith("error: "), proc.stdout + proc.stderr
    proc = cli("unpack", str(archive), str(tmp_path / "out"))
    assert proc.returncode == 1 and not (tmp_path / "out").exists()
    proc = cli(
        "restore", str(archive), "--metadir", str(tmp_path / "r" / "meta"), "--datadir", str(tmp_path / "r" / "data")
    )
    assert proc.returncode == 1 and not (tmp_path / "r").exists(), proc.stderr


def test_hostile_members_are_refused(tmp_path) -> None:
    import io
    import tarfile

    import zstandard

    def build(members: list[tuple[tarfile.TarInfo, bytes]], listed: list[dict]) -> Path:
        manifest = json.dumps(
            {"format": "influx-archive-sealed", "files": listed, "source": {"kind": "legacy"}}
        ).encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(manifest)
            tf.addfile(info, io.BytesIO(manifest))
            for info, data in members:
                tf.addfile(info, io.BytesIO(data))
        path = tmp_path / f"h{len(list(tmp_path.iterdir()))}.tar.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
        return path

    def reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        return info, data

    evil = reg("../evil", b"x")
    link = tarfile.TarInfo("meta.00")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    big = reg("meta.00", b"y" * 100)
    sha = hashlib.sha256(b"x").hexdigest()
    cases = [
        build([evil], [{"name": "ok", "size": 1, "sha256": sha}]),
        build([(link, b"")], [{"name": "meta.00", "size": 0, "sha256": sha}]),
        build([big], [{"name": "meta.00", "size": 1, "sha256": sha}]),
        build([reg("meta.00", b"z")], [{"name": "meta.00", "size": 1, "sha256": sha}]),
    ]
    for archive in cases:
        dest = tmp_path / "dest"
        with pytest.raises((FormatError, ChecksumError)):
            unpack(archive, dest)
        assert not dest.exists()
        assert not (tmp_path / "evil").exists()


@pytest.mark.interop
def test_restore_from_archive_is_served_like_the_source(tmp_path, fixtures_dir, influxd_factory, truth, cli) -> None:
    archive = tmp_path / "live.tar.zst"
    proc = cli("pack", str(fixtures_dir / "live"), str(archive))
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "root"
    proc = cli("restore", str(archive), "--metadir", str(root / "meta"), "--datadir", str(root / "data"))
    assert proc.returncode == 0, proc.stderr
    server = influxd_factory(root)
    expected = harness.without_dead_fields(truth("live"))
    assert (
        harness.compare_truth(
            expected,
            server.dump(),
            sections={"databases", "retention_policies", "fields", "points", "users", "continuous_queries"},
        )
        == []
    )
    assert not [
        p
        for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("influx-archive-sealed-*")
        if p.stat().st_mtime > archive.stat().st_mtime + 3600
    ]


@pytest.mark.parametrize("verb", ["restore", "convert"])
def test_parallel_workers_read_the_archive_once(verb, tmp_path, fixtures_dir, monkeypatch) -> None:
    """Workers open shards out of archive order now and then; the archive must still be
    decompressed once (a container passed on the way is spooled ahead), not once per race."""
    from influx_archive.archive.ops import convert as convert_mod
    from influx_archive.archive.ops import restore as restore_mod
    from influx_archive.archive.ops.restore import shards as restore_shards
    from influx_archive.archive.sources import sealed

    archive = tmp_path / "b.tar.zst"
    pack(fixtures_dir / "legacy", archive)
    src = open_source(archive)
    assert len(src.shards) > 10
    passes = {"n": 0}
    real = sealed.iter_members

    def counting(*a, **kw):
        passes["n"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(sealed, "iter_members", counting)
    monkeypatch.setattr(restore_shards, "MAX_STAGE_WORKERS", 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    if verb == "restore":
        root = tmp_path / "root"
        restore_mod.execute_restore(restore_mod.plan_restore(src, metadir=root / "meta", datadir=root / "data"))
        files = [p for p in (root / "data").rglob("*") if p.is_file()]
    else:
        convert_mod.convert(src, tmp_path / "out", to="portable")
        files = list((tmp_path / "out").iterdir())
    assert passes["n"] == 1 and files
    containers = {f.container for s in src.shards for f in s.files}
    assert [c for c in containers if os.path.getsize(c)] == []  # every spooled container released
    src.close()


def _cut_positions(n: int) -> list[int]:
    """Every one of the last 64 bytes (the last block and the frame checksum) and 40 cuts spread
    over the rest of an archive of ``n`` bytes."""
    return sorted(set(range(max(1, n - 64), n)) | set(range(1, n, max(1, n // 40))))


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_a_cut_archive_is_refused_wherever_it_is_cut(threads, tmp_path, fixtures_dir, cli) -> None:
    """python-zstandard ends a stream cut inside the last frame's checksum silently: readers walk
    the frames and refuse a cut one (exit 1, one line naming the archive) in every verb."""
    archive = tmp_path / "a.tar.zst"
    pack(fixtures_dir / "portable", archive, threads=threads)
    data = archive.read_bytes()
    for i, at in enumerate(_cut_positions(len(data))):
        cut = tmp_path / f"cut{i}.tar.zst"
        cut.write_bytes(data[:at])
        proc = cli("verify", str(cut))
        assert proc.returncode == 1 and "error" in proc.stdout, (at, proc.stdout[-300:], proc.stderr)
        if at >= len(data) - 8 or i % 10 == 0:  # the other verbs on the checksum cuts and a sample
            for argv in (
                ["unpack", str(cut), str(tmp_path / f"u{i}")],
                [
                    "restore",
                    str(cut),
                    "--metadir",
                    str(tmp_path / f"r{i}/meta"),
                    "--datadir",
                    str(tmp_path / f"r{i}/data"),
                ],
                ["inspect", str(cut)],
            ):
                proc = cli(*argv)
                lines = proc.stderr.strip().splitlines()
                assert proc.returncode == 1, (at, argv[0], proc.stderr)
                assert len(lines) == 1 and str(cut) in lines[0] and "Traceback" not in proc.stderr, (at, argv[0], lines)
            assert not (tmp_path / f"u{i}").exists() and not (tmp_path / f"r{i}").exists(), at
