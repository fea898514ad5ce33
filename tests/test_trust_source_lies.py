"""Numbers in a source that lie, found by review: a tar member whose size is negative (base-256 or
PAX), and a portable manifest whose metastore size is not the blob's. Every reading verb must
refuse them with one line naming the file and exit 1 (verify lists them), as they refuse every
other lie; nothing is written."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LEGACY = REPO / "fixtures" / "legacy"
PORTABLE = REPO / "fixtures" / "portable"
TSM = next((REPO / "fixtures" / "live" / "data" / "db1" / "autogen").glob("*/*.tsm"))
MEMBER = b"db1/autogen/1/" + TSM.name.encode()


def _header(name: bytes, size_field: bytes, typ: bytes = b"0") -> bytes:
    h = bytearray(512)
    h[: len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = size_field
    h[136:148] = b"%011o\0" % 1_700_000_000
    h[148:156] = b" " * 8
    h[156:157] = typ
    h[257:265] = b"ustar\x0000"
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def _pax(records: dict[bytes, bytes]) -> bytes:
    body = b""
    for k, v in records.items():
        rec = b" " + k + b"=" + v + b"\n"
        n = len(rec) + 1
        while len(str(n).encode()) + len(rec) != n:
            n += 1
        body += str(n).encode() + rec
    return _header(b"././@PaxHeader", b"%011o\0" % len(body), b"x") + _pad(body)


def _negative_tars() -> dict[str, bytes]:
    """A shard tar holding the real TSM file under a header whose size is negative."""
    data = _pad(TSM.read_bytes())
    octal = b"%011o\0" % TSM.stat().st_size
    out = {}
    for label, value in (("-1", -1), ("-512", -512), ("-2^60", -(1 << 60)), ("-2^87", -(1 << 87))):
        field = (value % (1 << 96)).to_bytes(12, "big")  # base-256, two's complement: first byte 0xff
        out[f"base256 {label}"] = _header(MEMBER, field) + data + b"\0" * 1024
    for value in (b"-1", b"-5", b"-1000000000000"):
        out[f"pax size={value.decode()}"] = _pax({b"size": value}) + _header(MEMBER, octal) + data + b"\0" * 1024
    return out


def _legacy(tmp: Path, tar: bytes) -> Path:
    src = tmp / "legacy"
    shutil.copytree(LEGACY, src)
    (src / "db1.autogen.00001.00").write_bytes(tar)
    return src


def _portable(tmp: Path, tar: bytes) -> Path:
    src = tmp / "portable"
    shutil.copytree(PORTABLE, src)
    manifest = next(src.glob("*.manifest"))
    doc = json.loads(manifest.read_text())
    entry = next(e for e in doc["files"] if e["shardID"] == 1)
    (src / entry["fileName"]).write_bytes(gzip.compress(tar))
    entry["size"] = len(tar)
    manifest.write_text(json.dumps(doc, indent=2))
    return src


def _tree(p: Path) -> dict[str, bytes]:
    return {str(q.relative_to(p)): q.read_bytes() for q in sorted(p.rglob("*")) if q.is_file()}


VERBS = ("verify", "inspect", "export", "convert", "restore")


def _run(cli, verb: str, src: Path, out: Path):
    args = {"verify": [], "inspect": ["--points"], "export": ["--out", str(out / "x.lp")],
            "convert": [str(out / "conv"), "--to", "legacy"],
            "restore": ["--metadir", str(out / "meta"), "--datadir", str(out / "data")]}[verb]
    return cli("-q", verb, str(src), *args)


@pytest.mark.parametrize("kind", ["legacy", "portable"])
def test_negative_tar_member_sizes_are_damage_for_every_verb(tmp_path, cli, kind) -> None:
    for i, (label, tar) in enumerate(_negative_tars().items()):
        case = tmp_path / str(i)
        case.mkdir()
        src = (_legacy if kind == "legacy" else _portable)(case, tar)
        before = _tree(src)
        for verb in VERBS:
            out = case / f"out-{verb}"
            out.mkdir()
            code, text, err = _run(cli, verb, src, out)
            lines = err.strip().splitlines()
            assert code == 1, (label, verb, code, err)
            assert "unexpected" not in err and "Traceback" not in err, (label, verb, err)
            if verb in ("verify", "inspect"):  # they list every finding (inspect in its summary)
                assert "damaged tar" in text + err and "claims" in text + err, (label, verb, text, err)
            else:  # the others stop at the first
                assert len(lines) == 1 and "damaged tar" in lines[0] and str(src) in lines[0], (label, verb, err)
            assert list(out.iterdir()) == [], (label, verb)  # nothing written
        assert _tree(src) == before, label


def test_a_manifest_whose_metastore_size_lies_is_refused_by_every_verb(tmp_path, cli) -> None:
    blob_size = json.loads(next(PORTABLE.glob("*.manifest")).read_text())["meta"]["size"]
    for i, size in enumerate((0, 5, blob_size - 1, blob_size + 1, blob_size * 2, 1 << 40)):
        src = tmp_path / str(i) / "src"
        shutil.copytree(PORTABLE, src)
        manifest = next(src.glob("*.manifest"))
        doc = json.loads(manifest.read_text())
        doc["meta"]["size"] = size
        manifest.write_text(json.dumps(doc, indent=2))
        for verb in VERBS:
            out = tmp_path / str(i) / f"out-{verb}"
            out.mkdir()
            code, text, err = _run(cli, verb, src, out)
            said = text + err  # verify and inspect list findings on standard output
            want = f"manifest says the metastore blob is {size} bytes"
            if verb == "inspect":  # a summary: it shows the finding and goes on
                assert code == 0 and want in said, (size, said)
                continue
            assert code == 1 and want in said and str(manifest) in said, (size, verb, code, said)
            assert said.count(want) == 1, (size, verb, said)  # said once (verify: not also as a warning)
            assert list(out.iterdir()) == [], (size, verb)
    # and the truthful manifest still restores
    code, _out, err = _run(cli, "restore", PORTABLE, tmp_path / "ok")
    assert code == 0, err
