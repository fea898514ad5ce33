"""Generators of hostile sources: parsers never trust, one error is one line, sealed damage named,
nothing skipped silently, valid tar features (issues 5, 7, 8, 9, 10, 13).

Every generator copies the real fixtures under ``fixtures/`` (influxd 1.6.7 output) into a
directory, damages the copies, and returns :class:`SourceCase` objects: the path to hand to a verb,
the exact exit code each verb must give, and the text the one-line error (or, for verbs that go
on, the warning) must contain. Byte layouts: tar per POSIX ustar / pax and GNU tar; sealed
archives per ``archive/sources/sealed.py``; metastores through the project's own codec (the encoding is
tested against influxd elsewhere).

Exit codes are the documented ones (``archive/errors.py``): 1 damaged input, 3 unsupported, 4
``--salvage`` finished but left data out, 0 a verb that goes on without a refused tar member.

Use ``build_all(root)`` for every family, or one generator. ``python tests/hostile_sources.py
OUTDIR`` writes them and prints one line per case.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_corpus import _first_entry, _raw_tsm

from influx_archive.meta import files as metafiles
from influx_archive.meta.model import decode_data, encode_data
from influx_archive.tsm.block import FLOAT

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STEM = "20261125T064330Z"
MANIFEST = "INFLUX-ARCHIVE.json"

# Verb names (the test module maps each to an argv).
INSPECT, VERIFY, RESTORE, CONVERT, EXPORT = "inspect", "verify", "restore", "convert", "export"
RESTORE_SALVAGE, CONVERT_SALVAGE, BACKUP, BACKUP_SALVAGE, UNPACK = (
    "restore --salvage", "convert --salvage", "backup", "backup --salvage", "unpack")
DUMP_TSM = "dump-tsm --blocks"  # of <db>/<rp>/<id>/000000001-000000001.tsm of shard 2
REPORT_VERBS = frozenset({INSPECT, VERIFY})  # damage listed as findings on stdout

DAMAGED_ALL = {INSPECT: 1, VERIFY: 1, RESTORE: 1, CONVERT: 1, EXPORT: 1}


@dataclass(frozen=True)
class SourceCase:
    family: str
    name: str
    path: Path
    expect: dict[str, int]  # verb -> exact exit code
    mention: str  # every failing verb names this (escaped as the CLI prints it)
    as_user: str | None = None  # run the verb as this user (files root could read anyway)
    also: tuple[str, ...] = field(default_factory=tuple)  # further texts that must all be named


# Digits that are str.isdigit()/isnumeric() but not ASCII: Arabic-Indic, superscript, fullwidth,
# NKo, Bengali, a mix, a Roman numeral, mathematical bold (int() accepts it).
DIGITS = ("\u0662", "\u00b2", "\uff12", "\u07c2", "\u09e8", "2\u0662", "\u2161", "\U0001d7d0")


def _copy(root: Path, name: str, fixture: str) -> Path:
    d = root / name
    shutil.copytree(FIXTURES / fixture, d, symlinks=True)
    return d


def _tar_members(data: bytes, gz: bool = False) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    raw = gzip.decompress(data) if gz else data
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        return [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]  # type: ignore[union-attr]


def _tar(members: Iterable[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            info = copy.copy(info)
            info.mtime = 0
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.mode = 0o644
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, data if kind == tarfile.REGTYPE else None


def _set_portable_tar(d: Path, shard: int, tar: bytes, gz: bytes | None = None) -> Path:
    """Replace ``<STEM>.s<shard>.tar.gz`` and keep the manifest's size (the uncompressed tar) true."""
    f = d / f"{STEM}.s{shard}.tar.gz"
    f.write_bytes(gz if gz is not None else gzip.compress(tar, mtime=0))
    man = d / f"{STEM}.manifest"
    doc = json.loads(man.read_bytes())
    for e in doc["files"]:
        if e["fileName"] == f.name:
            e["size"] = len(tar)
    man.write_text(json.dumps(doc, indent=2))
    return f


def _shown(text: str) -> str:
    """``text`` as the CLI prints it (control characters escaped): the test's own spelling."""
    out = []
    for c in text:
        o = ord(c)
        if 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c.isprintable():
            out.append(c)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}")
    return "".join(out)


# ============================================================================ issue 7: digits


def non_ascii_digit_cases(root: Path) -> list[SourceCase]:
    """A number written with non-ASCII digits in every place a number is read from a name, each
    next to the real ASCII one it resembles (``٢`` beside shard ``2``): refused as damage naming
    it (``--salvage`` lists it and exits 4) — never merged into shard 2, never "unexpected"."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[SourceCase] = []
    every_verb = {**DAMAGED_ALL, RESTORE_SALVAGE: 4}
    for i, dg in enumerate(DIGITS):
        _digit_cases(root, out, i, dg, every_verb)
    return out


def _digit_cases(root: Path, out: list[SourceCase], i: int, dg: str, every_verb: dict[str, int]) -> None:
    """The cases of the ``i``-th digit of DIGITS, ``dg``, appended to ``out``."""
    # every verb for the first three digits; the rest by the two verbs that read everything
    expect = every_verb if i < 3 else {VERIFY: 1, RESTORE: 1}

    def case(place: str, fixture: str, build: Callable[[Path], str], exp: dict[str, int] = expect) -> None:
        d = _copy(root, f"{place}-{i}", fixture)
        mention = build(d)
        out.append(SourceCase("digits", f"{place}[{dg}]", d, dict(exp), mention))

    def live_shard_dir(d: Path) -> str:
        shutil.copytree(d / "data/db1/autogen/2", d / f"data/db1/autogen/{dg}")
        return f"autogen/{dg}"

    def live_wal_dir(d: Path) -> str:
        shutil.copytree(d / "wal/db1/autogen/4", d / f"wal/db1/autogen/{dg}")
        return f"autogen/{dg}"

    def live_tsm_name(d: Path) -> str:
        name = f"00000000{dg}-000000001.tsm"
        shutil.copy(d / "data/db1/autogen/2/000000001-000000001.tsm", d / f"data/db1/autogen/2/{name}")
        return name

    def live_tombstone_name(d: Path) -> str:
        name = f"000000001-00000000{dg}.tombstone"
        shutil.copy(d / "data/db1/autogen/2/000000001-000000001.tombstone", d / f"data/db1/autogen/2/{name}")
        return name

    def live_wal_name(d: Path) -> str:
        name = f"_0000{dg}.wal"
        shutil.copy(d / "wal/db1/autogen/4/_00004.wal", d / f"wal/db1/autogen/4/{name}")
        return name

    def legacy_shard_id(d: Path) -> str:
        name = f"db1.autogen.0000{dg}.00"
        shutil.copy(d / "db1.autogen.00002.00", d / name)
        return name

    def legacy_increment(d: Path) -> str:
        name = f"db1.autogen.00002.0{dg}"
        shutil.copy(d / "db1.autogen.00002.00", d / name)
        return name

    def legacy_meta(d: Path) -> str:
        name = f"meta.0{dg}"
        shutil.copy(d / "meta.01", d / name)
        return name

    def tar_member_sid(d: Path) -> str:
        f = d / "db1.autogen.00002.00"
        ms = _tar_members(f.read_bytes())
        f.write_bytes(_tar(ms + [(_renamed(ms[0][0], f"db1/autogen/{dg}/000000001-000000001.tsm"), ms[0][1])]))
        return f"db1/autogen/{dg}/"

    def tar_member_tsm(d: Path) -> str:
        f = d / "db1.autogen.00002.00"
        ms = _tar_members(f.read_bytes())
        f.write_bytes(_tar(ms + [(_renamed(ms[0][0], f"db1/autogen/2/00000000{dg}-000000001.tsm"), ms[0][1])]))
        return f"00000000{dg}-000000001.tsm"

    def targz_member_sid(d: Path) -> str:
        ms = _tar_members((d / f"{STEM}.s2.tar.gz").read_bytes(), gz=True)
        _set_portable_tar(
            d, 2, _tar(ms + [(_renamed(ms[0][0], f"db1/autogen/{dg}/000000001-000000001.tsm"), ms[0][1])])
        )
        return f"db1/autogen/{dg}/"

    def portable_file_name(d: Path) -> str:
        # only a name: the manifest says which shard the file holds; nothing is parsed from it
        new = f"{STEM}.s{dg}.tar.gz"
        os.rename(d / f"{STEM}.s2.tar.gz", d / new)
        man = d / f"{STEM}.manifest"
        doc = json.loads(man.read_bytes())
        for e in doc["files"]:
            if e["fileName"] == f"{STEM}.s2.tar.gz":
                e["fileName"] = new
        man.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
        return new

    case("live-shard-dir", "live", live_shard_dir)
    case("live-wal-dir", "live", live_wal_dir)
    case("live-tsm-name", "live", live_tsm_name)
    case("live-tombstone-name", "live", live_tombstone_name)
    case("live-wal-name", "live", live_wal_name)
    case("legacy-shard-id", "legacy", legacy_shard_id)
    case("legacy-increment", "legacy", legacy_increment)
    case("legacy-meta", "legacy", legacy_meta)
    case("tar-member-sid", "legacy", tar_member_sid)
    case("tar-member-tsm", "legacy", tar_member_tsm)
    case("targz-member-sid", "portable", targz_member_sid)
    case("portable-file-name", "portable", portable_file_name, {VERIFY: 0, INSPECT: 0, RESTORE: 0, CONVERT: 0})


def _renamed(info: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
    info = copy.copy(info)
    info.name = name
    return info


# ============================================================================ sealed archives


def _sealed_parts(archive: Path) -> tuple[dict, list[tuple[tarfile.TarInfo, bytes]]]:
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(archive.read_bytes()), read_across_frames=True).read()
    ms = _tar_members(raw)
    assert ms[0][0].name == MANIFEST
    return json.loads(ms[0][1]), [(m, d) for m, d in ms[1:]]  # type: ignore[misc]


def _seal(path: Path, manifest: bytes, members: list[tuple[tarfile.TarInfo, bytes]], extra_head: bytes = b"") -> Path:
    info = tarfile.TarInfo(MANIFEST)
    info.size = len(manifest)
    info.mode = 0o644
    tar = _tar([(info, manifest)] + list(members))
    if extra_head:
        tar = tar[:_offset_after_first(tar)] + extra_head + tar[_offset_after_first(tar):]
    path.write_bytes(zstandard.ZstdCompressor(level=3, write_checksum=True).compress(tar))
    return path


def _offset_after_first(tar: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as tf:
        first = tf.next()
        assert first is not None
        return first.offset_data + ((first.size + 511) // 512) * 512


def _packed(root: Path, fixture: str) -> Path:
    from influx_archive.archive.ops.pack import pack

    out = root / f"base-{fixture}.tar.zst"
    if not out.exists():
        root.mkdir(parents=True, exist_ok=True)
        pack(FIXTURES / fixture, out)
    return out


_JSON_VALUES: dict[str, object] = {"null": None, "true": True, "zero": 0, "neg": -1, "float": 1.5, "str": "x",
                                   "array": [], "object": {}}
# field path -> JSON kinds that are right for it (everything else is wrong)
_FIELDS: dict[str, set[str]] = {
    "": {"object"},
    "format": {"str"},
    "format_version": {"zero", "neg"},  # an integer: 0 / -1 are the wrong version (below)
    "tool": {"str"},
    "tool_version": {"str"},
    "created": {"str"},
    "source": {"object"},
    "source.kind": set(),
    "databases": {"array"},
    "time_range": {"null", "object"},
    "time_range.start": {"str"},
    "files": {"array"},
    "files.0": {"object"},
    "files.0.name": set(),
    "files.0.size": set(),
    "files.0.sha256": set(),
    "files.0.mode": {"zero"},  # 0 is a mode (nothing readable), and valid
}


def _set(doc: object, path: str, value: object) -> object:
    if path == "":
        return value
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    cur = doc
    for p in parents:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]  # type: ignore[index]
    if isinstance(cur, list):
        cur[int(last)] = value
    else:
        cur[last] = value  # type: ignore[index]
    return doc


def sealed_manifest_cases(root: Path) -> list[SourceCase]:
    """``INFLUX-ARCHIVE.json`` mutated field by field with every wrong JSON type, bad values (sizes,
    hashes, mode strings), unsafe / huge / duplicate names, a name that is both a file and a
    directory, 10^5 levels of nesting, not JSON at all: exit 1 naming ``ARCHIVE::INFLUX-ARCHIVE.json``
    for every verb; a newer format version is unsupported (exit 3)."""
    root.mkdir(parents=True, exist_ok=True)
    base = _packed(root, "legacy")
    doc, members = _sealed_parts(base)
    # files.0 is a shard tar (metadata files are listed first: pick the first shard tar)
    shard_i = next(i for i, e in enumerate(doc["files"]) if e["name"].startswith("db1.autogen."))
    doc["files"].insert(0, doc["files"].pop(shard_i))
    out: list[SourceCase] = []
    expect = {INSPECT: 1, VERIFY: 1, RESTORE: 1, CONVERT: 1, UNPACK: 1}

    def add(label: str, text: bytes, exp: dict[str, int] | None = None) -> None:
        # the manifest, or the member whose entry it damaged: named ARCHIVE::member either way
        p = _seal(root / f"m{len(out):03d}.tar.zst", text, members)
        out.append(SourceCase("sealed-manifest", label, p, dict(exp or expect), f"{p.name}::"))

    def add_doc(label: str, d: object, exp: dict[str, int] | None = None) -> None:
        add(label, json.dumps(d).encode(), exp)

    for path, right in _FIELDS.items():
        for kind, value in _JSON_VALUES.items():
            if kind not in right:  # one reader per way in: the sealed stream, the Source, unpack
                add_doc(f"{path or 'top'}={kind}", _set(doc, path, value), {VERIFY: 1, RESTORE: 1, UNPACK: 1})
    unsupported = {INSPECT: 3, VERIFY: 3, RESTORE: 3, CONVERT: 3, UNPACK: 3}
    add_doc("format_version=2", _set(doc, "format_version", 2), unsupported)
    add_doc("format_version=0", _set(doc, "format_version", 0), unsupported)
    add_doc("format=other", _set(doc, "format", "tar"))
    add_doc("source.kind=live", _set(doc, "source.kind", "live"))
    add_doc("source.kind=../x", _set(doc, "source.kind", "../x"))
    add_doc("no files", {k: v for k, v in doc.items() if k != "files"})
    add_doc("no source", {k: v for k, v in doc.items() if k != "source"})
    add_doc("databases[0]=1", _set(doc, "databases", [1]))
    e0 = doc["files"][0]
    for label, value in (("size=-1", -1), ("size=2^63", 1 << 63), ("size=10^30", 10**30), ("size+1", e0["size"] + 1),
                         ("size=true", True)):
        add_doc(label, _set(doc, "files.0.size", value))
    for label, value in (("sha=upper", e0["sha256"].upper()), ("sha=short", e0["sha256"][:63]), ("sha=zeros", "0" * 64),
                         ("sha=nonhex", "g" * 64)):
        add_doc(label, _set(doc, "files.0.sha256", value))
    for label, value in (("mode='0644'", "0644"), ("mode=rwx", "rw-r--r--"), ("mode=-1", -1), ("mode=0o10000", 0o10000),
                         ("mode=1.5", 1.5), ("mode=true", True), ("mode=[]", [420])):
        add_doc(label, _set(doc, "files.0.mode", value))
    for label, value in (
        ("name=../x", "../x"),
        ("name=/abs", "/etc/passwd"),
        ("name=a/./b", "a/./b"),
        ("name=a//b", "a//b"),
        ("name=empty", ""),
        ("name=dot", "."),
        ("name=NUL", "meta\x00.00"),
        ("name=component300", "x" * 300),
        ("name=path5000", "/".join(["d" * 200] * 25)),
        ("name=1MB", "n" * (1 << 20)),
    ):
        add_doc(label, _set(doc, "files.0.name", value))
    add_doc("duplicate name", {**doc, "files": doc["files"] + [doc["files"][0]]})
    conflict = {**e0, "name": e0["name"] + "/inner"}
    add_doc("file and directory", {**doc, "files": doc["files"] + [conflict]})
    deep = 100_000
    add("nested 10^5 (top)", ("[" * deep + "]" * deep).encode())
    text = json.dumps(doc)
    add("nested 10^5 (field)", text[:-1].encode() + b', "x": ' + b"[" * deep + b"]" * deep + b"}")
    add("not JSON", b"{this is not json")
    add("not UTF-8", b'{"format": "\xff\xfe"}')
    add("empty", b"")
    # valid JSON (trailing blanks) but past the manifest's size bound: refused before it is read
    add("over 16 MiB", json.dumps(doc).encode() + b" " * (16 << 20), {VERIFY: 1, RESTORE: 1, UNPACK: 1})
    add("unknown field (valid)", json.dumps({**doc, "comment": "kept"}).encode(),
        {INSPECT: 0, VERIFY: 0, RESTORE: 0, CONVERT: 0, UNPACK: 0})
    return out


def sealed_member_damage_cases(root: Path) -> list[SourceCase]:
    """Damage inside a sealed archive at each member: a flipped byte (the sha256 check fails), and,
    with the manifest's hash updated to match, damage the inner format finds (a TSM block CRC in a
    shard tar, a metastore frame). Every error names ``ARCHIVE.tar.zst::member``, never the
    spool directory it was read from."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[SourceCase] = []
    for fixture in ("legacy", "portable"):
        base = _packed(root, fixture)
        doc, members = _sealed_parts(base)
        for i, (m, data) in enumerate(members):
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0x01
            ms = list(members)
            ms[i] = (m, bytes(flipped))
            p = _seal(root / f"{fixture}-sha-{i:02d}.tar.zst", json.dumps(doc).encode(), ms)
            every = i in (0, len(members) - 1)  # every verb at the first and last member
            out.append(SourceCase("sealed-damage", f"{fixture} sha {m.name}", p,
                                  {INSPECT: 1, VERIFY: 1, RESTORE: 1, CONVERT: 1, EXPORT: 1, UNPACK: 1} if every
                                  else {VERIFY: 1, RESTORE: 1, UNPACK: 1},
                                  f"{p}::{m.name}"))
            inner = _inner_damage(m.name, data, gz=fixture == "portable")
            if inner is None:
                continue
            ms = list(members)
            ms[i] = (m, inner)
            d2 = copy.deepcopy(doc)
            for e in d2["files"]:
                if e["name"] == m.name:
                    e["sha256"] = hashlib.sha256(inner).hexdigest()
                    e["size"] = len(inner)
            p = _seal(root / f"{fixture}-inner-{i:02d}.tar.zst", json.dumps(d2).encode(), ms)
            exp = {VERIFY: 1, RESTORE: 1, CONVERT: 1, EXPORT: 1}
            if m.name.startswith("meta.") or m.name.endswith((".meta", ".manifest")):
                exp[INSPECT] = 1
            if m.name == "meta.00":  # an older snapshot: only verify reads it (restore takes meta.01)
                exp = {VERIFY: 1, RESTORE: 0, INSPECT: 0}
            out.append(SourceCase("sealed-damage", f"{fixture} inner {m.name}", p, exp, f"{p}::{m.name}"))
    return out


def _inner_damage(name: str, data: bytes, gz: bool) -> bytes | None:
    """``data`` (a member of a packed backup) damaged where its own format notices it."""
    if name.endswith(".manifest"):
        return None  # a manifest is only read as JSON: covered by the portable manifest cases
    if name.endswith(".meta") or name.startswith("meta."):
        return data[: len(data) // 2]  # the metastore frame is cut
    ms = _tar_members(data, gz=gz)
    for j, (m, d) in enumerate(ms):
        if m.name.endswith(".tsm") and d:
            _, off, _size = _first_entry(d)
            ms[j] = (m, _flip(d, off + 6))
            tar = _tar(ms, fmt=tarfile.USTAR_FORMAT)
            return gzip.compress(tar, mtime=0) if gz else tar
    return None


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x10
    return bytes(b)


# ============================================================================ issue 8: names


NAMES = ("db\nX", "db\rX", "db\x1b[31mX", "db\x01X", "db\x7fX", "db\u202eX", "db\udcffX",
         "db\ninflux-archive: error: forged")


def _rename_db_meta(data, old: str, new: str, duplicate: bool, rp: bool = False):
    d = data.copy()
    for db in d.databases:
        if db.name == old:
            if rp:
                db.retention_policies[0].name = new
                if duplicate:
                    db.retention_policies.append(copy.deepcopy(db.retention_policies[0]))
                    db.retention_policies[-1].shard_groups = []
            else:
                db.name = new
                if duplicate:
                    twin = copy.deepcopy(db)
                    for r in twin.retention_policies:
                        r.shard_groups = []
                    d.databases.append(twin)
    return d


def control_name_cases(root: Path) -> list[SourceCase]:
    """Names read from files holding ``\\n``, ``\\r``, ESC, other controls, a bidi override or bytes
    that are not UTF-8 — as a database and an RP in a metastore (listed twice, so an error names
    it), a database directory of a server root (with a damaged TSM below it), a tar member (refused
    or cut), a series key (with a bad block CRC; dump-tsm lists it, then exits 1 naming the block):
    every verb prints ONE line per message, the
    name escaped (``\\n``, ``\\x1b``, ``\\xff``), never raw."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[SourceCase] = []
    for i, nm in enumerate(NAMES):
        shown = _shown(nm)
        for rp in (False, True):
            d = _copy(root, f"meta-{'rp' if rp else 'db'}-{i}", "legacy")
            mp = d / "meta.01"
            parsed = metafiles.parse_meta_nn(mp.read_bytes())
            data = _rename_db_meta(parsed.data, "db2", nm, duplicate=True, rp=rp)
            mp.write_bytes(metafiles.build_meta_nn(encode_data(data)))
            out.append(SourceCase("names", f"metastore {'rp' if rp else 'db'} {shown}", d, dict(DAMAGED_ALL), shown))

        d = _copy(root, f"live-dir-{i}", "live")
        os.rename(d / "data/db1", d / "data" / nm)
        os.rename(d / "wal/db1", d / "wal" / nm)
        meta_db = d / "meta/meta.db"
        meta_db.write_bytes(encode_data(_rename_db_meta(decode_data(meta_db.read_bytes()), "db1", nm, duplicate=False)))
        tsm = d / "data" / nm / "autogen/2/000000001-000000001.tsm"
        raw = tsm.read_bytes()
        _, off, _size = _first_entry(raw)
        tsm.write_bytes(_flip(raw, off + 6))
        out.append(SourceCase("names", f"live db dir {shown}", d,
                              {VERIFY: 1, RESTORE: 1, CONVERT: 1, EXPORT: 1, BACKUP: 1, INSPECT: 0}, shown))

        d = _copy(root, f"member-refused-{i}", "legacy")
        f = d / "db1.autogen.00002.00"
        ms = _tar_members(f.read_bytes())
        f.write_bytes(_tar(ms + [_info(f"db1/autogen/2/{nm}.tsm", kind=tarfile.SYMTYPE, link="/etc/passwd")]))
        out.append(
            SourceCase(
                "names", f"refused member {shown}", d, {VERIFY: 1, RESTORE: 0, CONVERT: 0, INSPECT: 0, EXPORT: 0}, shown
            )
        )

        d = _copy(root, f"member-cut-{i}", "legacy")
        f = d / "db1.autogen.00002.00"
        ms = _tar_members(f.read_bytes())
        whole = _tar(ms + [_info(f"db1/autogen/2/{nm}", b"z" * 4096)], fmt=tarfile.PAX_FORMAT)
        f.write_bytes(whole[: len(whole) - 1024 - 2048])  # inside the last member's data
        out.append(SourceCase("names", f"cut member {shown}", d, dict(DAMAGED_ALL), shown))

        d = _copy(root, f"key-{i}", "live")
        key = b"cpu,host=" + nm.encode("utf-8", "surrogateescape") + b"#!~#v"
        t0 = 1_793_664_000 * 10**9
        tsm = d / "data/db1/autogen/2/000000001-000000001.tsm"
        body = _raw_tsm(key, FLOAT, [([t0 + 1, t0 + 2], [1.0, 2.0])])
        tsm.write_bytes(_flip(body, 5 + 6))
        (d / "data/db1/autogen/2/000000001-000000001.tombstone").unlink()
        out.append(SourceCase("names", f"series key {shown}", d,
                              {VERIFY: 1, RESTORE: 1, CONVERT: 1, EXPORT: 1, BACKUP: 1, DUMP_TSM: 1}, shown))
    return out


# ============================================================================ issue 10: live roots


NONREGULAR = ("dangling-symlink", "fifo", "directory", "devzero-symlink", "unreadable")
LIVE_FILES = {
    "tsm": "data/db1/autogen/2/000000001-000000001.tsm",
    "tombstone": "data/db1/autogen/2/000000001-000000001.tombstone",
    "wal": "wal/db1/autogen/4/_00004.wal",
}


def live_nonregular_cases(root: Path) -> list[SourceCase]:
    """A server root with each of {dangling symlink, FIFO, directory, symlink to /dev/zero,
    unreadable (the verb runs as ``nobody``)} in place of a TSM, tombstone or WAL file: verify
    exit 1, backup / restore / convert refuse (exit 1), with ``--salvage`` they list it and exit 4.
    Nothing blocks (a FIFO is never opened for a blocking read)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    out: list[SourceCase] = []
    for what, rel in LIVE_FILES.items():
        for kind in NONREGULAR:
            d = _copy(root, f"{what}-{kind}", "live")
            f = d / rel
            f.unlink()
            if kind == "dangling-symlink":
                os.symlink("does-not-exist.tsm", f)
            elif kind == "fifo":
                os.mkfifo(f)
            elif kind == "directory":
                f.mkdir()
            elif kind == "devzero-symlink":
                os.symlink("/dev/zero", f)
            else:
                shutil.copy(FIXTURES / "live" / rel, f)
                os.chmod(f, 0)
                for p in [d, *d.rglob("*")]:
                    if p.is_dir() or p != f:
                        os.chmod(p, 0o755 if p.is_dir() else 0o644)
            exp = {VERIFY: 1, INSPECT: 1, RESTORE: 1, CONVERT: 1, BACKUP: 1, RESTORE_SALVAGE: 4, BACKUP_SALVAGE: 4}
            if kind == "unreadable":  # the OS refused: not damage, exit 3 naming the source (verify lists it)
                exp.update({RESTORE: 3, CONVERT: 3, BACKUP: 3})
            out.append(SourceCase("live-nonregular", f"{what} {kind}", d, exp, f.name,
                                  as_user="nobody" if kind == "unreadable" else None))
    return out


def manifest_file_name_cases(root: Path) -> list[SourceCase]:
    """A portable manifest whose ``fileName`` (of a shard, or of the metastore) is absolute,
    contains ``/`` or is ``..`` — each pointing at a real, valid copy outside the backup directory
    (so a reader that followed it would restore it): refused, exit 1, naming the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[SourceCase] = []
    outside = root / "outside"
    outside.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "portable" / f"{STEM}.s2.tar.gz", outside / f"{STEM}.s2.tar.gz")
    shutil.copy(FIXTURES / "portable" / f"{STEM}.meta", outside / f"{STEM}.meta")
    variants = {
        "absolute": lambda n: str(outside / n),
        "parent": lambda n: f"../outside/{n}",
        "subdir": lambda n: f"sub/{n}",
        "dot-slash": lambda n: f"./{n}",
        "dotdot": lambda n: "..",
        "dot": lambda n: ".",
        "empty": lambda n: "",
        "backslash": lambda n: f"sub\\{n}",
    }
    for label, fn in variants.items():
        for which in ("shard", "meta"):
            d = _copy(root, f"{which}-{label}", "portable")
            (d / "sub").mkdir()
            name = f"{STEM}.s2.tar.gz" if which == "shard" else f"{STEM}.meta"
            shutil.copy(d / name, d / "sub" / name)
            man = d / f"{STEM}.manifest"
            doc = json.loads(man.read_bytes())
            if which == "shard":
                for e in doc["files"]:
                    if e["fileName"] == name:
                        e["fileName"] = fn(name)
            else:
                doc["meta"]["fileName"] = fn(name)
            man.write_text(json.dumps(doc, indent=2))
            out.append(SourceCase("manifest-names", f"{which} {label}", d, dict(DAMAGED_ALL), man.name))
    return out


def metastore_duplicate_cases(root: Path) -> list[SourceCase]:
    """Metastores (legacy ``meta.NN``, portable ``.meta``, live ``meta.db``) that list a database,
    a retention policy, a shard group id or a shard id twice: a finding (exit 1) naming the file."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[SourceCase] = []

    def dup_db(d):
        twin = copy.deepcopy(d.databases[0])
        for r in twin.retention_policies:
            r.shard_groups = []
        d.databases.append(twin)

    def dup_rp(d):
        twin = copy.deepcopy(d.databases[0].retention_policies[0])
        twin.shard_groups = []
        d.databases[0].retention_policies.append(twin)

    def dup_shard(d):
        a = d.databases[0].retention_policies[0].shard_groups[0]
        b = d.databases[-1].retention_policies[0].shard_groups[0]
        b.shards[0].id = a.shards[0].id

    def dup_group(d):
        a = d.databases[0].retention_policies[0].shard_groups[0]
        b = d.databases[-1].retention_policies[0].shard_groups[0]
        b.id = a.id

    for label, mutate in (("database", dup_db), ("rp", dup_rp), ("shard id", dup_shard), ("group id", dup_group)):
        d = _copy(root, f"legacy-{label}", "legacy")
        mp = d / "meta.01"
        data = metafiles.parse_meta_nn(mp.read_bytes()).data.copy()
        mutate(data)
        mp.write_bytes(metafiles.build_meta_nn(encode_data(data)))
        out.append(SourceCase("meta-duplicates", f"legacy {label}", d, dict(DAMAGED_ALL), "meta.01"))

        d = _copy(root, f"portable-{label}", "portable")
        mp = d / f"{STEM}.meta"
        blob, max_node = metafiles.parse_portable_meta(mp.read_bytes())
        data = decode_data(blob)
        mutate(data)
        new = encode_data(data)
        mp.write_bytes(metafiles.build_portable_meta(new, max_node))
        man = d / f"{STEM}.manifest"
        doc = json.loads(man.read_bytes())
        doc["meta"]["size"] = len(new)
        man.write_text(json.dumps(doc, indent=2))
        out.append(SourceCase("meta-duplicates", f"portable {label}", d, dict(DAMAGED_ALL), f"{STEM}.meta"))

        d = _copy(root, f"live-{label}", "live")
        mp = d / "meta/meta.db"
        data = decode_data(mp.read_bytes())
        mutate(data)
        mp.write_bytes(encode_data(data))
        out.append(SourceCase("meta-duplicates", f"live {label}", d, {**DAMAGED_ALL, BACKUP: 1}, "meta.db"))
    return out


# ============================================================================ issue 5: tar headers


def _header(name: bytes, size: int, typeflag: bytes) -> bytes:
    """One ustar header block with a correct checksum (size in octal or base-256)."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\x00"
    h[108:116] = b"0000000\x00"
    h[116:124] = b"0000000\x00"
    if size < 8**11:
        h[124:136] = b"%011o\x00" % size
    else:
        h[124:136] = b"\x80" + size.to_bytes(11, "big")
    h[136:148] = b"00000000000\x00"
    h[156:157] = typeflag
    h[257:263] = b"ustar\x00"
    h[263:265] = b"00"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\x00 " % sum(h)
    return bytes(h)


def _pax_record(key: bytes, value: bytes) -> bytes:
    """``"<len> key=value\\n"``, the length counting itself (POSIX pax)."""
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(b"%d" % n) + len(body) != n:
        n = len(b"%d" % n) + len(body)
    return b"%d" % n + body


HUGE_CLAIMS = (1 << 30, 1 << 40, (1 << 62) + 1)
EXT_TYPES = {"pax-x": tarfile.XHDTYPE, "pax-g": tarfile.XGLTYPE, "gnu-L": tarfile.GNUTYPE_LONGNAME,
             "gnu-K": tarfile.GNUTYPE_LONGLINK}


def tar_header_cases(root: Path, *, bomb_bytes: int = 600 << 20) -> list[SourceCase]:
    """Tar extended headers (PAX ``x``/``g``, GNU long name ``L`` / long link ``K``) claiming 1 GiB,
    1 TiB, 4 EiB, placed first or after a real member, in a legacy shard tar, a portable
    ``.tar.gz`` and a sealed archive; a chain of 1000 long-name headers; and a ``.tar.gz`` whose PAX
    header really inflates to ``bomb_bytes`` (its manifest agreeing): exit 1 naming the tar, with
    memory bounded (the test checks peak RSS <= 500 MB for the bomb)."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[SourceCase] = []
    legacy_members = _tar_members((FIXTURES / "legacy/db1.autogen.00002.00").read_bytes())
    portable_members = _tar_members((FIXTURES / "portable" / f"{STEM}.s2.tar.gz").read_bytes(), gz=True)
    expect = {INSPECT: 1, VERIFY: 1, RESTORE: 1, CONVERT: 1, EXPORT: 1}
    for label, t in EXT_TYPES.items():
        for claim in HUGE_CLAIMS:
            for where in ("first", "after-member"):
                head = _header(
                    b"././@LongLink" if label.startswith("gnu") else b"PaxHeader", claim, t
                ) + b"17 path=a/b/c/d\n".ljust(512, b"\0")
                d = _copy(root, f"legacy-{label}-{claim}-{where}", "legacy")
                f = d / "db1.autogen.00002.00"
                good = _tar(legacy_members, fmt=tarfile.USTAR_FORMAT)
                cut = 0 if where == "first" else _offset_after_first(good)
                f.write_bytes(good[:cut] + head + good[cut:])
                out.append(SourceCase("tar-headers", f"legacy {label} {claim} {where}", d, dict(expect), f.name))
                if claim != HUGE_CLAIMS[0]:
                    continue
                d = _copy(root, f"portable-{label}-{claim}-{where}", "portable")
                good = _tar(portable_members, fmt=tarfile.USTAR_FORMAT)
                cut = 0 if where == "first" else _offset_after_first(good)
                f = _set_portable_tar(d, 2, good[:cut] + head + good[cut:])
                out.append(SourceCase("tar-headers", f"portable {label} {claim} {where}", d, dict(expect), f.name))
    # a chain of long-name headers, each naming the next (recursion in tarfile)
    d = _copy(root, "legacy-chain", "legacy")
    f = d / "db1.autogen.00002.00"
    chain = b"".join(
        _header(b"././@LongLink", 8, tarfile.GNUTYPE_LONGNAME) + b"x/y.tsm\0".ljust(512, b"\0") for _ in range(1000)
    )
    f.write_bytes(chain + _tar(legacy_members, fmt=tarfile.USTAR_FORMAT))
    out.append(SourceCase("tar-headers", "legacy chain of 1000 long names", d, dict(expect), f.name))
    # global PAX headers adding up (each small, many distinct keys)
    d = _copy(root, "legacy-global-sum", "legacy")
    f = d / "db1.autogen.00002.00"
    recs = b""
    for k in range(40):
        rec = _pax_record(b"k%d" % k, b"v" * 60000)
        recs += _header(b"PaxGlobal", len(rec), tarfile.XGLTYPE) + rec.ljust((len(rec) + 511) // 512 * 512, b"\0")
    f.write_bytes(recs + _tar(legacy_members, fmt=tarfile.USTAR_FORMAT))
    out.append(SourceCase("tar-headers", "legacy global PAX headers over the bound", d, dict(expect), f.name))
    # a header whose checksum is wrong after the first member: not the end of the archive
    d = _copy(root, "legacy-bad-second-header", "legacy")
    f = d / "db1.autogen.00002.00"
    good = bytearray(_tar(legacy_members, fmt=tarfile.USTAR_FORMAT))
    good[_offset_after_first(bytes(good)) + 1] ^= 0x01
    f.write_bytes(bytes(good))
    out.append(SourceCase("tar-headers", "legacy damaged second header", d, dict(expect), f.name))
    # sealed archive: a huge PAX header before a member of the outer tar
    base = _packed(root, "legacy")
    doc, members = _sealed_parts(base)
    p = _seal(root / "sealed-pax.tar.zst", json.dumps(doc).encode(), members,
              extra_head=_header(b"PaxHeader", 1 << 40, tarfile.XHDTYPE) + b"".ljust(512, b"\0"))
    out.append(
        SourceCase(
            "tar-headers", "sealed pax 1 TiB", p, {INSPECT: 1, VERIFY: 1, RESTORE: 1, CONVERT: 1, UNPACK: 1}, p.name
        )
    )
    # the bomb: a PAX header that really holds bomb_bytes (compresses ~1000:1)
    d = _copy(root, "portable-pax-bomb", "portable")
    good = _tar(portable_members, fmt=tarfile.USTAR_FORMAT)
    total = bomb_bytes  # one record "N comment=aaa...\n" of exactly this length
    rec_prefix = b"%d comment=" % total
    filler = total - len(rec_prefix) - 1
    header = _header(b"PaxHeader", total, tarfile.XHDTYPE)
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [comp.compress(header + rec_prefix)]
    chunk = b"a" * (1 << 20)
    left = filler
    while left > 0:
        n = min(left, len(chunk))
        parts.append(comp.compress(chunk[:n]))
        left -= n
    pad = (-total) % 512
    parts.append(comp.compress(b"\n" + b"\0" * pad + good))
    parts.append(comp.flush())
    tar_len = 512 + total + pad + len(good)
    f = _set_portable_tar(d, 2, b"", gz=b"".join(parts))
    man = d / f"{STEM}.manifest"
    mdoc = json.loads(man.read_bytes())
    for e in mdoc["files"]:
        if e["fileName"] == f.name:
            e["size"] = tar_len
    man.write_text(json.dumps(mdoc, indent=2))
    out.append(SourceCase("tar-bomb", f"portable pax header inflating to {bomb_bytes} bytes", d, dict(expect), f.name))
    return out


# ============================================================================ issue 13: sparse


SPARSE_FORMATS = {
    "gnu": ["--format=gnu"],
    "pax-0.0": ["--format=pax", "--sparse-version=0.0"],
    "pax-0.1": ["--format=pax", "--sparse-version=0.1"],
    "pax-1.0": ["--format=pax", "--sparse-version=1.0"],
}


def sparse_cases(root: Path) -> list[SourceCase]:
    """Shard tars made by real GNU ``tar --sparse`` (GNU, PAX 0.0, 0.1, 1.0) holding a sparse
    TSM-named member beside the real ones, as a legacy tar and a portable ``.tar.gz``: refused as
    unsupported (exit 3, "unsupported" and the tar named) by every verb — never "truncated"."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[SourceCase] = []
    work = root / "tree"
    shutil.rmtree(work, ignore_errors=True)
    for m, data in _tar_members((FIXTURES / "legacy/db1.autogen.00002.00").read_bytes()):
        if m.isfile():
            (work / m.name).parent.mkdir(parents=True, exist_ok=True)
            (work / m.name).write_bytes(data or b"")
    sparse = work / "db1/autogen/2/000000009-000000001.tsm"
    with open(sparse, "wb") as fh:
        fh.seek(1 << 20)
        fh.write(b"\x16\xd1\x16\xd1\x01" * 1000)
        fh.truncate(4 << 20)
    names = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    for label, opts in SPARSE_FORMATS.items():
        tar_path = root / f"{label}.tar"
        subprocess.run(["tar", "--sparse", *opts, "-C", str(work), "-cf", str(tar_path), *names], check=True)
        with tarfile.open(tar_path) as tf:  # the generator must really have written a sparse member
            assert any(m.sparse is not None for m in tf.getmembers()), f"tar {label} wrote no sparse member"
        d = _copy(root, f"legacy-{label}", "legacy")
        shutil.copy(tar_path, d / "db1.autogen.00002.00")
        exp = {INSPECT: 3, VERIFY: 3, RESTORE: 3, CONVERT: 3, EXPORT: 3}
        out.append(SourceCase("sparse", f"legacy {label}", d, dict(exp), "unsupported", also=("db1.autogen.00002.00",)))
        d = _copy(root, f"portable-{label}", "portable")
        f = _set_portable_tar(d, 2, tar_path.read_bytes())
        out.append(SourceCase("sparse", f"portable {label}", d, dict(exp), "unsupported", also=(f.name,)))
    return out


# ============================================================================ issue 10: members


UNSAFE_MEMBERS = {
    "dotdot": _info("../x.tsm", b"bad"),
    "dotdot-deep": _info("db1/autogen/../../../../tmp/000000009-000000001.tsm", b"bad"),
    "absolute": _info("/tmp/db1/autogen/2/000000009-000000001.tsm", b"bad"),
    "symlink": _info("db1/autogen/2/000000009-000000001.tsm", kind=tarfile.SYMTYPE, link="/etc/passwd"),
    "symlink-relative": _info("db1/autogen/2/000000008-000000001.tsm", kind=tarfile.SYMTYPE, link="../../../x"),
    "hardlink": _info("db1/autogen/2/000000007-000000001.tsm", kind=tarfile.LNKTYPE, link="../../../../etc/passwd"),
    "chardev": _info("db1/autogen/2/000000006-000000001.tsm", kind=tarfile.CHRTYPE),
    "blockdev": _info("db1/autogen/2/000000005-000000001.tsm", kind=tarfile.BLKTYPE),
    "fifo": _info("db1/autogen/2/000000004-000000001.tsm", kind=tarfile.FIFOTYPE),
    # a 200 kB name (PAX path): named, cut to a readable length
    "long-name": _info("db1/autogen/2/" + "n" * 200_000, kind=tarfile.SYMTYPE, link="/etc/passwd"),
}


def unsafe_member_cases(root: Path) -> list[SourceCase]:
    """Shard tars (legacy) and portable ``.tar.gz`` files with each unsafe member (``..``, absolute,
    symlink, hardlink, devices, FIFO), and one with all of them: ``verify`` exit 1 naming each;
    restore / convert / inspect / export go on without them (exit 0), each named in a warning."""
    root.mkdir(parents=True, exist_ok=True)
    out: list[SourceCase] = []
    goes_on = {VERIFY: 1, RESTORE: 0, CONVERT: 0, INSPECT: 0, EXPORT: 0}
    legacy = _tar_members((FIXTURES / "legacy/db1.autogen.00002.00").read_bytes())
    portable = _tar_members((FIXTURES / "portable" / f"{STEM}.s2.tar.gz").read_bytes(), gz=True)
    variants = list(UNSAFE_MEMBERS.items()) + [("all", None)]
    for label, member in variants:
        extra = list(UNSAFE_MEMBERS.values()) if member is None else [member]
        names = tuple(m.name[:1000] for m, _ in extra)
        d = _copy(root, f"legacy-{label}", "legacy")
        (d / "db1.autogen.00002.00").write_bytes(_tar(legacy + extra))
        out.append(SourceCase("unsafe-members", f"legacy {label}", d, dict(goes_on), names[0], also=names[1:]))
        d = _copy(root, f"portable-{label}", "portable")
        _set_portable_tar(d, 2, _tar(portable + extra))
        out.append(SourceCase("unsafe-members", f"portable {label}", d, dict(goes_on), names[0], also=names[1:]))
    return out


GENERATORS: dict[str, Callable[[Path], list[SourceCase]]] = {
    "digits": non_ascii_digit_cases,
    "sealed-manifest": sealed_manifest_cases,
    "sealed-damage": sealed_member_damage_cases,
    "names": control_name_cases,
    "live-nonregular": live_nonregular_cases,
    "manifest-names": manifest_file_name_cases,
    "meta-duplicates": metastore_duplicate_cases,
    "tar-headers": tar_header_cases,
    "sparse": sparse_cases,
    "unsafe-members": unsafe_member_cases,
}


def build_all(root: str | os.PathLike[str]) -> list[SourceCase]:
    root = Path(root)
    out: list[SourceCase] = []
    for name, gen in GENERATORS.items():
        out.extend(gen(root / name))
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: hostile_sources.py OUTDIR\n")
        return 2
    for c in build_all(argv[0]):
        print(f"{c.family}\t{c.name!r}\t{c.expect}\t{c.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
