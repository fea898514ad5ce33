"""Case generators for where outputs go (issues 2, 11, 12, 14): every verb that writes, onto
devices, FIFOs, standard output, symlinks, existing files and directories, paths equal to or
inside the source (also through a symlinked alias and ``..``), a full file system, unreadable
sources and unwritable targets.

Each generator builds what its cases need under ``root`` (copies of the real fixtures in
``fixtures/``) and returns :class:`OutCase` objects: the command line, the exact exit code, the
substring the one stderr line must contain, the source to hash before and after, the directory in
which nothing but the output may change, and an optional check of the result. The expected
outcomes follow the contract (README, ``archive/errors.py``), never the code's own output.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from influx_archive.tsm.reader import TSMReader

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

OK, DAMAGED, USAGE, FAILURE, SALVAGED = 0, 1, 2, 3, 4


@dataclass
class OutCase:
    name: str
    argv: list[str]
    code: int
    mention: str | None  # substring of the single stderr line (None: success)
    source: Path  # hashed before and after: never modified
    watch: Path  # nothing in it changes but ``allowed`` names
    allowed: tuple[str, ...] = ()  # top-level names in ``watch`` that may appear or change
    check: Callable[[OutCase, bytes], None] | None = None  # (case, captured stream bytes)
    fifo: Path | None = None  # a reader thread drains this FIFO while the command runs
    stdout_is_output: bool = False  # the output goes to stdout (captured, not checked as text)
    unprivileged: bool = False  # run without the DAC-override capabilities (EACCES cases)
    tags: tuple[str, ...] = field(default_factory=tuple)

    def __repr__(self) -> str:  # pytest ids
        return self.name


# ---------------------------------------------------------------------- sources


def build_sources(root: Path) -> dict[str, Path]:
    """Copies of the fixtures, one per source kind, plus a sealed archive of the legacy one and
    single-file sources (a legacy ``meta.00``). Paths are what the verbs get."""
    root.mkdir(parents=True, exist_ok=True)
    src = {}
    for kind in ("legacy", "portable", "live"):
        dst = root / kind
        if not dst.exists():
            shutil.copytree(FIXTURES / kind, dst, symlinks=True)
        src[kind] = dst
    sealed = root / "sealed.tar.zst"
    if not sealed.exists():
        subprocess.run(cli_argv("pack", str(src["legacy"]), str(sealed)), check=True, capture_output=True)
    src["sealed"] = sealed
    files = root / "file"
    files.mkdir(exist_ok=True)
    meta = files / "meta.00"
    if not meta.exists():
        shutil.copy(src["legacy"] / "meta.00", meta)
    src["file"] = meta
    return src


#: The interpreter lives below /root (0700) here, so the CLI cannot be run as ``nobody``; instead
#: it runs as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (dropped from the bounding and
#: inheritable sets before exec), so file permission bits apply to it as to any user: a mode 000
#: file is unreadable and a mode 0555 directory unwritable, even to their owner.
UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search"]


def cli_argv(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-c", "from influx_archive.cli.main import main; main()", *args]


# ---------------------------------------------------------------------- verbs

#: verbs writing one file: (verb, source kinds, argv builder(src, out, force))
FILE_VERBS: dict[str, tuple[tuple[str, ...], Callable[[Path, str, bool], list[str]]]] = {
    "export": (("legacy", "portable", "live", "sealed"),
               lambda s, o, f: ["export", str(s), "--out", o] + (["--force"] if f else [])),
    "export-gz": (("legacy", "sealed"),
                  lambda s, o, f: ["export", str(s), "--compress", "--out", o] + (["--force"] if f else [])),
    "pack": (("legacy", "portable", "live", "sealed"),
             lambda s, o, f: ["pack", str(s), o] + (["--force"] if f else [])),
}
#: verbs writing a directory
DIR_VERBS: dict[str, tuple[tuple[str, ...], Callable[[Path, str], list[str]]]] = {
    "convert": (("legacy", "portable", "live", "sealed"), lambda s, o: ["convert", str(s), o]),
    "trim": (("legacy", "portable"),
             lambda s, o: ["trim", str(s), o, "--start", "2026-11-24T00:00:00Z", "--end", "2026-11-24T03:00:00Z"]),
    "backup": (("live",), lambda s, o: ["backup", str(s), o]),
    "unpack": (("sealed",), lambda s, o: ["unpack", str(s), o]),
}


def _is_char(path: str, rdev: int) -> Callable[[OutCase, bytes], None]:
    def check(case: OutCase, _data: bytes) -> None:
        st = os.stat(path)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == rdev, f"{path} is no longer the device it was"

    return check


def _sealed_bytes_ok(case: OutCase, data: bytes) -> None:
    assert data[:4] == b"\x28\xb5\x2f\xfd", "not a zstd stream"
    import zstandard

    with (
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as zr,
        tarfile.open(fileobj=zr, mode="r|") as tf,
    ):
        first = tf.next()
        assert first is not None and first.name == "INFLUX-ARCHIVE.json"


def _export_bytes_ok(case: OutCase, data: bytes) -> None:
    if "--compress" in case.argv:
        import gzip

        data = gzip.decompress(data)
    text = data.decode()
    assert text.startswith("# INFLUXDB EXPORT:") and text.endswith("\n") and "# DML\n" in text


def _stream_check(verb: str) -> Callable[[OutCase, bytes], None]:
    return _sealed_bytes_ok if verb == "pack" else _export_bytes_ok


# ---------------------------------------------------------------------- generators


def stream_target_cases(root: Path, src: dict[str, Path]) -> list[OutCase]:
    """Devices, symlinks to devices, FIFOs and ``-``: file verbs stream into them (a device stays
    the device; /dev/full is ENOSPC naming it, exit 3); directory verbs refuse them (exit 3, or 2
    for ``-``) before writing anything."""
    work = root / "streams"
    work.mkdir(parents=True, exist_ok=True)
    cases = []
    null_rdev, full_rdev = os.stat("/dev/null").st_rdev, os.stat("/dev/full").st_rdev
    links = {"link-null": "/dev/null", "link-full": "/dev/full"}
    for name, target in links.items():
        p = work / name
        if not p.is_symlink():
            p.symlink_to(target)
    targets = [
        ("dev-null", "/dev/null", None), ("dev-full", "/dev/full", None),
        ("link-null", str(work / "link-null"), None), ("link-full", str(work / "link-full"), None),
        ("fifo", None, "fifo"), ("stdout", "-", None),
    ]
    n = 0
    for verb, (kinds, argv) in FILE_VERBS.items():
        base = verb.split("-")[0]
        for kind in kinds:
            for tname, tpath, special in targets:
                n += 1
                fifo = None
                if special == "fifo":
                    fifo = work / f"fifo-{n}"
                    tpath = str(fifo)
                full = tname.endswith("full")
                real = os.path.realpath(tpath) if tpath != "-" else "-"
                check = None
                if real in ("/dev/null", "/dev/full"):
                    check = _is_char(real, null_rdev if real == "/dev/null" else full_rdev)
                elif tname in ("fifo", "stdout"):
                    check = _stream_check(base)
                cases.append(OutCase(
                    f"{verb}-{kind}-{tname}", argv(src[kind], tpath, False), FAILURE if full else OK,
                    "/dev/full" if full else None, src[kind], work, allowed=(fifo.name,) if fifo else (),
                    check=check, fifo=fifo, stdout_is_output=tname == "stdout", tags=("stream",)))
    for verb, (kinds, argv) in DIR_VERBS.items():
        for kind in kinds:
            for tname, tpath, special in targets:
                n += 1
                fifo = None
                if special == "fifo":
                    fifo = work / f"fifo-{n}"
                    tpath = str(fifo)
                code = USAGE if tpath == "-" else FAILURE
                real = os.path.realpath(tpath) if tpath != "-" else "-"
                check = (
                    _is_char(real, null_rdev if real == "/dev/null" else full_rdev)
                    if real.startswith("/dev/")
                    else None
                )
                cases.append(OutCase(
                    f"{verb}-{kind}-{tname}", argv(src[kind], tpath), code,
                    "standard output" if tpath == "-" else tpath, src[kind], work,
                    allowed=(fifo.name,) if fifo else (), check=check, fifo=None, tags=("stream", "refused")))
                if fifo is not None:
                    cases[-1].tags = ("stream", "refused", "mkfifo")
                    cases[-1].fifo = fifo  # created, never opened by the verb: no reader needed
    return cases


def existing_target_cases(root: Path, src: dict[str, Path]) -> list[OutCase]:
    """An existing file is refused unless --force (then replaced, a symlink to it staying a link);
    a dangling symlink and a directory are refused with or without --force; directory verbs want
    a new or empty directory (a symlink to an empty one is resolved)."""
    cases = []
    n = 0
    for verb, (kinds, argv) in FILE_VERBS.items():
        for kind in kinds:
            for force in (False, True):
                for shape in ("file", "link-to-file", "dangling", "directory", "new-in-linked-dir"):
                    n += 1
                    work = root / "existing" / f"c{n}"
                    work.mkdir(parents=True, exist_ok=True)
                    old = work / "old.out"
                    old.write_bytes(b"precious\n")
                    if shape == "file":
                        out, code, mention, allowed = old, (OK if force else FAILURE), str(old), ("old.out",)
                    elif shape == "link-to-file":
                        out = work / "link.out"
                        out.symlink_to(old.name)
                        code, mention, allowed = (OK if force else FAILURE), str(out), ("old.out",)
                    elif shape == "dangling":
                        out = work / "dangling.out"
                        out.symlink_to("missing.out")
                        code, mention, allowed = FAILURE, str(out), ()
                    elif shape == "directory":
                        out = work / "adir"
                        out.mkdir()
                        (out / "keep").write_bytes(b"x")
                        code, mention, allowed = FAILURE, str(out), ()
                    else:
                        (work / "real").mkdir()
                        (work / "alias").symlink_to("real")
                        out = work / "alias" / "new.out"
                        code, mention, allowed = OK, None, ("real",)
                    check = _replaced_check(old, out, shape, force)
                    cases.append(OutCase(
                        f"{verb}-{kind}-{shape}-{'force' if force else 'noforce'}", argv(src[kind], str(out), force),
                        code, mention if code else None, src[kind], work, allowed=allowed, check=check,
                        tags=("existing",)))
    for verb, (kinds, argv) in DIR_VERBS.items():
        for kind in kinds:
            for shape in ("file", "nonempty", "empty", "link-to-empty", "dangling", "link-to-file"):
                n += 1
                work = root / "existing" / f"c{n}"
                work.mkdir(parents=True, exist_ok=True)
                if shape == "file":
                    out = work / "f"
                    out.write_bytes(b"precious\n")
                    code = FAILURE
                elif shape == "nonempty":
                    out = work / "d"
                    out.mkdir()
                    (out / "keep").write_bytes(b"x")
                    code = FAILURE
                elif shape == "empty":
                    out = work / "d"
                    out.mkdir()
                    code = OK
                elif shape == "link-to-empty":
                    (work / "d").mkdir()
                    out = work / "alias"
                    out.symlink_to("d")
                    code = OK
                elif shape == "dangling":
                    out = work / "alias"
                    out.symlink_to("missing")
                    code = FAILURE
                else:
                    (work / "f").write_bytes(b"precious\n")
                    out = work / "alias"
                    out.symlink_to("f")
                    code = FAILURE
                allowed = ("d",) if code == OK else ()
                check = _dir_check(out, shape) if code == OK else None
                cases.append(OutCase(f"{verb}-{kind}-{shape}", argv(src[kind], str(out)), code,
                                     str(out) if code else None, src[kind], work, allowed=allowed, check=check,
                                     tags=("existing",)))
    return cases


def _replaced_check(old: Path, out: Path, shape: str, force: bool) -> Callable[[OutCase, bytes], None]:
    def check(case: OutCase, _data: bytes) -> None:
        if shape in ("file", "link-to-file"):
            if force:
                assert old.read_bytes() != b"precious\n", "--force did not replace the file"
                assert stat.S_ISREG(os.lstat(old).st_mode)
            else:
                assert old.read_bytes() == b"precious\n"
            if shape == "link-to-file":
                assert out.is_symlink() and os.readlink(out) == old.name, "the symlink itself was replaced"
        elif shape == "dangling":
            assert out.is_symlink() and not (out.parent / "missing.out").exists(), "wrote through a dangling link"
        elif shape == "new-in-linked-dir":
            assert (out.parent.parent / "real" / "new.out").is_file()
        for p in out.parent.iterdir():
            assert ".tmp-" not in p.name, f"temporary left behind: {p}"

    return check


def _dir_check(out: Path, shape: str) -> Callable[[OutCase, bytes], None]:
    def check(case: OutCase, _data: bytes) -> None:
        real = out.parent / "d"
        assert real.is_dir() and any(real.iterdir()), "the backup is not in the destination"
        if shape == "link-to-empty":
            assert out.is_symlink() and os.readlink(out) == "d", "the symlink itself was replaced"

    return check


def inside_source_cases(root: Path, src: dict[str, Path]) -> list[OutCase]:
    """Outputs equal to, inside, or aliasing the source (symlinked alias, ``..``) are refused with
    exit 2 naming the path, with or without --force, before anything is written."""
    cases = []
    aliases = root / "aliases"
    aliases.mkdir(parents=True, exist_ok=True)
    for kind, p in src.items():
        link = aliases / f"alias-{kind}"
        if not link.is_symlink():
            link.symlink_to(p)
    for kind, s in src.items():
        alias = aliases / f"alias-{kind}"
        if s.is_dir():
            inner = {
                "legacy": ["meta.00", "db1.autogen.00001.00", "new.out"],
                "portable": ["20261125T064330Z.meta", "20261125T064330Z.s1.tar.gz", "new.out"],
                "live": ["meta/meta.db", "data/db1/autogen/1/000000001-000000001.tsm", "wal/new.out", "new.out"],
            }[kind]
            forms = []
            for rel in inner:
                forms.append((f"inside:{rel}", str(s / rel)))
                forms.append((f"alias:{rel}", str(alias / rel)))
                forms.append((f"dotdot:{rel}", str(s / "." / rel.split("/")[0] / ".." / rel) if "/" in rel else
                              str(s.parent / "aliases" / ".." / s.name / rel)))
            forms.append(("equal", str(s)))
        else:
            forms = [
                ("equal", str(s)),
                ("alias", str(alias)),
                ("dotdot", str(s.parent / ".." / s.parent.name / s.name)),
            ]
        for fname, out in forms:
            existing = os.path.lexists(out)
            for verb, (kinds, argv) in FILE_VERBS.items():
                if kind not in kinds and not (kind == "file" and verb == "export"):
                    continue
                for force in (False, True):
                    cases.append(OutCase(f"{verb}-{kind}-{fname}-{'force' if force else 'noforce'}",
                                         argv(s, out, force), USAGE, out, s, s if s.is_dir() else s.parent,
                                         tags=("inside",)))
            if existing and not os.path.isdir(out):
                continue  # a file: directory verbs are checked on new names and the source itself
            for verb, (kinds, argv) in DIR_VERBS.items():
                if kind not in kinds:
                    continue
                cases.append(OutCase(f"{verb}-{kind}-{fname}", argv(s, out), USAGE, out, s,
                                     s if s.is_dir() else s.parent, tags=("inside",)))
        if kind in ("legacy", "portable", "live", "sealed"):
            for opt in ("--datadir", "--metadir"):
                out = str(s / "restored") if s.is_dir() else str(s)
                other = str(root / f"restore-{kind}-{opt[2:]}-other")
                argv = ["restore", str(s), opt, out, "--metadir" if opt == "--datadir" else "--datadir", other]
                cases.append(OutCase(f"restore-{kind}{opt}", argv, USAGE, out, s, s if s.is_dir() else s.parent,
                                     tags=("inside",)))
    return cases


#: (verb, source kind, argv builder(src, target dir)) of writes that fill a small file system
FULL_VERBS = [
    ("export", "legacy", lambda s, d: ["export", str(s), "--out", str(d / "x.lp")]),
    ("export", "sealed", lambda s, d: ["export", str(s), "--out", str(d / "x.lp")]),
    ("export-gz", "portable", lambda s, d: ["export", str(s), "--compress", "--out", str(d / "x.lp.gz")]),
    ("pack", "legacy", lambda s, d: ["pack", str(s), str(d / "x.tar.zst")]),
    ("pack", "live", lambda s, d: ["pack", str(s), str(d / "x.tar.zst")]),
    ("convert", "legacy", lambda s, d: ["convert", str(s), str(d / "bk")]),
    ("convert", "sealed", lambda s, d: ["convert", str(s), str(d / "bk"), "--to", "portable"]),
    (
        "trim",
        "portable",
        lambda s, d: [
            "trim",
            str(s),
            str(d / "bk"),
            "--start",
            "2026-11-01T00:00:00Z",
            "--end",
            "2026-11-24T12:00:00Z",
        ],
    ),
    ("backup", "live", lambda s, d: ["backup", str(s), str(d / "bk")]),
    ("unpack", "sealed", lambda s, d: ["unpack", str(s), str(d / "bk")]),
]
#: tmpfs sizes (KiB) small enough that every output above fills them
FULL_SIZES_KB = (4, 16, 32)


def enospc_cases(mounts: dict[int, Path], src: dict[str, Path]) -> list[OutCase]:
    """ENOSPC on a small tmpfs (``mounts``: size in KiB -> mount point): exit 3 naming the target
    path, and the file system left as empty as it was (no temporary survives)."""
    cases = []
    for size, mnt in mounts.items():
        for verb, kind, argv in FULL_VERBS:
            args = argv(src[kind], mnt)
            target = _target_of(args)
            cases.append(OutCase(f"{verb}-{kind}-{size}k", args, FAILURE, target, src[kind], mnt,
                                 check=_empty_dir(mnt), tags=("enospc",)))
    return cases


def _target_of(args: list[str]) -> str:
    return args[args.index("--out") + 1] if "--out" in args else args[2]


def _empty_dir(d: Path) -> Callable[[OutCase, bytes], None]:
    def check(case: OutCase, _data: bytes) -> None:
        left = sorted(p.name for p in d.iterdir())
        assert left == [], f"left behind on the full file system: {left}"

    return check


def eacces_cases(root: Path) -> list[OutCase]:
    """Run unprivileged (see :data:`UNPRIVILEGED`): an unreadable file of each source kind (exit
    3, "source", naming it), and an unwritable target directory for every verb (exit 3,
    "target", naming it)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    src = build_sources(root / "src")
    ro = root / "ro"
    ro.mkdir(exist_ok=True)
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    os.chmod(ro, 0o555)  # no write permission for anyone, its owner included
    cases = []
    unreadable = {
        "legacy": ["db1.autogen.00002.00", "meta.01"],
        "portable": ["20261125T064330Z.s3.tar.gz", "20261125T064330Z.meta"],
        "live": ["data/db1/autogen/1/000000001-000000001.tsm", "meta/meta.db"],
    }
    n = 0
    for kind, rels in unreadable.items():
        for rel in rels:
            n += 1
            copy = root / f"unreadable-{n}"
            if not copy.exists():
                shutil.copytree(src[kind], copy)
            for dirpath, _dirnames, _filenames in os.walk(copy):
                os.chmod(dirpath, 0o755)
            victim = copy / rel
            os.chmod(victim, 0)
            out = root / f"out-{n}"
            out.mkdir(exist_ok=True)
            os.chmod(out, 0o777)
            for verb, argv in (
                ("export", ["export", str(copy), "--out", str(out / "x.lp")]),
                ("convert", ["convert", str(copy), str(out / "bk")]),
                ("pack", ["pack", str(copy), str(out / "x.tar.zst")]),
            ):
                cases.append(OutCase(f"unreadable-{kind}-{rel.replace('/', '_')}-{verb}", argv, FAILURE,
                                     str(victim), copy, out, unprivileged=True, tags=("eacces", "source")))
    sealed_copy = root / "unreadable-sealed.tar.zst"
    shutil.copy(src["sealed"], sealed_copy)
    os.chmod(sealed_copy, 0)
    out = root / "out-sealed"
    out.mkdir(exist_ok=True)
    os.chmod(out, 0o777)
    for verb, argv in (("export", ["export", str(sealed_copy), "--out", str(out / "x.lp")]),
                       ("unpack", ["unpack", str(sealed_copy), str(out / "bk")])):
        cases.append(OutCase(f"unreadable-sealed-{verb}", argv, FAILURE, str(sealed_copy), sealed_copy, out,
                             unprivileged=True, tags=("eacces", "source")))
    for verb, kind, argv in FULL_VERBS:
        args = argv(src[kind], ro)
        target = _target_of(args)
        cases.append(OutCase(f"unwritable-{verb}-{kind}", args, FAILURE, target, src[kind], ro, unprivileged=True,
                             tags=("eacces", "target")))
    return cases


def salvage_cases(root: Path, src: dict[str, Path]) -> list[OutCase]:
    """Damaged sources (one flipped byte in a TSM block of shard N; a shard tar cut in half) with
    --salvage: every verb that salvages exits 4 (EXIT_SALVAGED) naming the damaged file; the same
    verbs on the intact source with --salvage exit 0."""
    cases = []
    n = 0
    for shard in ("00001", "00002", "00004", "00017"):
        for damage in ("flip", "cut"):
            n += 1
            copy = root / "salvage" / f"{damage}-{shard}"
            if not copy.exists():
                shutil.copytree(src["legacy"], copy)
                tar = copy / f"{'db2' if shard == '00017' else 'db1'}.autogen.{shard}.00"
                _damage_tar(tar, damage)
            name = f"{'db2' if shard == '00017' else 'db1'}.autogen.{shard}.00"
            out = root / "salvage" / f"out-{n}"
            out.mkdir(parents=True, exist_ok=True)
            for verb, argv in (
                ("convert", ["convert", str(copy), str(out / "c"), "--salvage"]),
                ("convert-json", ["convert", str(copy), str(out / "j"), "--salvage", "--json"]),
                (
                    "trim",
                    [
                        "trim",
                        str(copy),
                        str(out / "t"),
                        "--salvage",
                        "--start",
                        "2026-10-01T00:00:00Z",
                        "--end",
                        "2026-12-01T00:00:00Z",
                    ],
                ),
                ("export", ["export", str(copy), "--out", str(out / "x.lp"), "--salvage"]),
                (
                    "restore",
                    [
                        "restore",
                        str(copy),
                        "--metadir",
                        str(out / "r/meta"),
                        "--datadir",
                        str(out / "r/data"),
                        "--salvage",
                    ],
                ),
            ):
                cases.append(OutCase(f"salvage-{damage}-{shard}-{verb}", argv, SALVAGED, name, copy, out,
                                     allowed=("c", "j", "t", "x.lp", "r"), tags=("salvage",)))
    out = root / "salvage" / "clean-out"
    out.mkdir(parents=True, exist_ok=True)
    for verb, argv in (("convert", ["convert", str(src["legacy"]), str(out / "c"), "--salvage"]),
                       ("export", ["export", str(src["portable"]), "--out", str(out / "x.lp"), "--salvage"]),
                       ("backup", ["backup", str(src["live"]), str(out / "b"), "--salvage"])):
        cases.append(OutCase(f"salvage-clean-{verb}", argv, OK, None, src["legacy"], out,
                             allowed=("c", "x.lp", "b"), tags=("salvage",)))
    return cases


def _damage_tar(tar: Path, damage: str) -> None:
    with tarfile.open(tar) as tf:
        m = next(m for m in tf.getmembers() if m.name.endswith(".tsm"))
    data = bytearray(tar.read_bytes())
    if damage == "cut":
        tar.write_bytes(bytes(data[: m.offset_data + m.size // 2]))
        return
    reader = TSMReader(io.BytesIO(bytes(data[m.offset_data: m.offset_data + m.size])), size=m.size)
    entry = min((e for _, _, es in reader.iter_index() for e in es), key=lambda e: e.offset)
    data[m.offset_data + entry.offset + 12] ^= 0x40
    tar.write_bytes(bytes(data))


#: (name, argv builder(src)) of commands piped into ``head``; output larger than a pipe buffer
#: (64 KiB) for the "large" ones, a few lines for the "small" ones
PIPE_COMMANDS = [
    ("export-large", lambda s: ["export", str(s["legacy"])]),
    ("export-large-gz", lambda s: ["export", str(s["legacy"]), "--compress"]),
    ("export-large-portable", lambda s: ["export", str(s["portable"])]),
    ("export-large-live", lambda s: ["export", str(s["live"])]),
    ("export-large-sealed", lambda s: ["export", str(s["sealed"])]),
    ("export-large-sealed-gz", lambda s: ["export", str(s["sealed"]), "--compress"]),
    ("export-large-out-dash", lambda s: ["export", str(s["legacy"]), "--out", "-"]),
    ("export-small", lambda s: ["export", str(s["legacy"]), "--db", "db2", "--rp", "short", "--lponly"]),
    ("export-small-gz", lambda s: ["export", str(s["legacy"]), "--db", "db2", "--rp", "short", "--compress"]),
    ("export-small-sealed", lambda s: ["export", str(s["sealed"]), "--db", "db2", "--rp", "short"]),
    ("pack-dash", lambda s: ["pack", str(s["legacy"]), "-"]),
    ("inspect", lambda s: ["inspect", str(s["legacy"])]),
    ("inspect-json", lambda s: ["inspect", str(s["legacy"]), "--json", "--points"]),
    ("dump-tsm", lambda s: ["dump-tsm", f"{s['legacy']}::db1/autogen/2/000000001-000000001.tsm", "--blocks"]),
    ("dump-wal", lambda s: ["dump-wal", f"{s['live']}::db1/autogen/4/_00004.wal"]),
    ("verify", lambda s: ["verify", str(s["legacy"])]),
]
#: how much the reader takes before closing the pipe
PIPE_READERS = (("head-1", ["head", "-1"]), ("head-c1", ["head", "-c", "1"]), ("true", ["true"]))


#: commands killed with SIGKILL mid-run (all read a sealed archive, so they spool its metastore):
#: (name, argv builder(sealed archive, output dir))
KILL_COMMANDS = [
    ("pack", lambda s, d: ["pack", str(s), str(d / "x.tar.zst")]),
    ("export", lambda s, d: ["export", str(s), "--out", str(d / "x.lp")]),
    ("export-gz", lambda s, d: ["export", str(s), "--compress", "--out", str(d / "x.lp.gz")]),
    ("convert", lambda s, d: ["convert", str(s), str(d / "bk"), "--to", "portable"]),
    (
        "trim",
        lambda s, d: [
            "trim",
            str(s),
            str(d / "bk"),
            "--start",
            "2026-11-01T00:00:00Z",
            "--end",
            "2026-11-30T00:00:00Z",
        ],
    ),
]
#: seconds after the first spool appears at which the process is killed
KILL_DELAYS = (0.0, 0.03, 0.1, 0.3)


def kill_cases() -> list[tuple[str, Callable[[Path, Path], list[str]], float]]:
    return [(f"{name}-{delay}", argv, delay) for name, argv in KILL_COMMANDS for delay in KILL_DELAYS]


def start_time(pid: int) -> int:
    """A process's start time in clock ticks (field 22 of /proc/PID/stat)."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return int(data[data.rindex(b")") + 2:].split()[19])


def erofs_cases(mnt: Path, src: dict[str, Path]) -> list[OutCase]:
    """A read-only file system as the target's (EROFS): exit 3 naming the target path."""
    cases = []
    for verb, kind, argv in FULL_VERBS:
        args = argv(src[kind], mnt)
        cases.append(OutCase(f"erofs-{verb}-{kind}", args, FAILURE, _target_of(args), src[kind], mnt,
                             check=_empty_dir(mnt), tags=("enospc",)))
    return cases


#: RLIMIT_FSIZE limits (bytes): every file the process writes is cut there (EFBIG, Python
#: ignores SIGXFSZ); sources that are directories, so nothing is spooled before the output
FSIZE_LIMITS = (1, 512, 4096)
FSIZE_VERBS = [v for v in FULL_VERBS if v[1] != "sealed"]


def fsize_cases(root: Path, src: dict[str, Path]) -> list[tuple[OutCase, int]]:
    """(case, limit): the output hits RLIMIT_FSIZE: exit 3 naming the target, nothing left."""
    cases = []
    for limit in FSIZE_LIMITS:
        for verb, kind, argv in FSIZE_VERBS:
            d = root / f"fsize-{limit}-{verb}-{kind}"
            d.mkdir(parents=True, exist_ok=True)
            args = argv(src[kind], d)
            cases.append((OutCase(f"fsize-{limit}-{verb}-{kind}", args, FAILURE, _target_of(args), src[kind], d,
                                  check=_empty_dir(d), tags=("enospc",)), limit))
    return cases


#: commands that spool a sealed archive into TMPDIR: (name, argv builder(sealed, out dir))
SPOOL_COMMANDS = [
    ("inspect", lambda s, d: ["inspect", str(s)]),
    ("verify", lambda s, d: ["verify", str(s)]),
    ("export", lambda s, d: ["export", str(s), "--out", str(d / "x.lp")]),
    ("convert", lambda s, d: ["convert", str(s), str(d / "bk")]),
    ("pack", lambda s, d: ["pack", str(s), str(d / "x.tar.zst")]),
    ("dump-tsm", lambda s, d: ["dump-tsm", f"{s}::db1/autogen/2/000000001-000000001.tsm"]),
]


def trailing_data_cases(root: Path, src: dict[str, Path]) -> list[tuple[str, Path, int]]:
    """(name, archive, expected verify exit code): a sealed archive with bytes after its tar:
    another zstd frame of data, of zeros beyond any padding, raw junk (all 1), and a frame of a
    few zeros (tar padding: 0). (A frame cut inside its last checksum bytes is not detected:
    python-zstandard's stream reader ends such a stream silently.)"""
    import zstandard

    root.mkdir(parents=True, exist_ok=True)
    base = src["sealed"].read_bytes()
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    variants = {
        "frame-of-data": (base + cctx.compress(b"not a tar block" * 100), DAMAGED),
        "frame-of-many-zeros": (base + cctx.compress(bytes(2 << 20)), DAMAGED),
        "raw-junk": (base + b"\x00garbage after the frame", DAMAGED),
        "frame-of-padding": (base + cctx.compress(bytes(1024)), OK),
    }
    out = []
    for name, (data, code) in variants.items():
        p = root / f"{name}.tar.zst"
        p.write_bytes(data)
        out.append((name, p, code))
    return out
