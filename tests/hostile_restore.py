"""Planted state for ``restore`` (its trust items): generators of cases built from the real
fixtures in ``fixtures/``.

* :func:`planted_stages` — staging directories / journals planted beside (or inside) a target's
  data directory that must be reported and left alone: wrong owner, wrong mode, links, files
  where directories belong, garbage / empty / huge / torn / old-format journals, headers naming
  other directories (elsewhere, ``/``, the source, another target, wrong device/inode), and
  operations naming ``..``, absolute paths, empty or odd components.
* :func:`stale_but_ours` — journals that do provably belong to the target but record inodes
  that are not the ones now at those paths: acted on (the staging directory goes), and nothing
  in the target is removed.
* :func:`overlapping_targets` — pairs of target sets that share a directory (the same path, a
  symlinked alias, a shared metadir or WAL dir): a second run must find the first's lock.

Each builder makes its cases below ``work`` and returns them; the tests in
``tests/test_trust_restore*.py`` run them and check the exit code, the one stderr line, that
the source and everything outside the target are unchanged, and that the planted state is
byte for byte as planted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STAGE_PREFIX = ".influx-archive-restore-"
JOURNAL_FORMAT = "influx-archive restore journal"  # what influx-archive writes (archive/ops/restore/)
OTHER_UID = 65534  # nobody
HUGE_PID = 10**30  # digits past any pid (os.kill would overflow)


@dataclass
class Case:
    name: str
    root: Path  # holds meta/ and data/ (the target) and, beside data/, planted staging dirs
    args: list[str]  # the CLI arguments of the restore to run
    code: int  # expected exit code
    mention: str  # the one stderr line must contain this (the planted path)
    planted: Path  # must be byte for byte as planted afterwards
    keep: list[Path] = field(default_factory=list)  # target paths (existing data) that must survive


def dead_pid() -> int:
    """A pid no process has now (for names of staging dirs of 'killed' runs)."""
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read())
    for pid in range(top - 1, 1, -1):
        if not os.path.exists(f"/proc/{pid}"):
            return pid
    raise RuntimeError("no free pid")


def snapshot(p: Path) -> dict[str, tuple]:
    """Everything under ``p`` (and ``p`` itself) with type, mode, owner, and content hash or link
    target; FIFOs are not opened."""
    out: dict[str, tuple] = {}

    def one(q: Path) -> tuple:
        st = os.lstat(q)
        if stat.S_ISLNK(st.st_mode):
            return ("link", os.readlink(q), st.st_uid)
        if stat.S_ISREG(st.st_mode):
            h = hashlib.sha256()
            with open(q, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            return ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_size, h.hexdigest())
        return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid)

    if not os.path.lexists(p):
        return out
    out["."] = one(p)
    if os.path.isdir(p) and not os.path.islink(p):
        for dirpath, dirnames, filenames in os.walk(p):
            for n in dirnames + filenames:
                q = Path(dirpath) / n
                out[str(q.relative_to(p))] = one(q)
    return out


def identity(p: Path) -> dict:
    st = os.stat(p)
    return {"path": str(p), "real": os.path.realpath(p), "dev": st.st_dev, "ino": st.st_ino}


def header(stage: Path, targets: dict[str, Path], **over) -> dict:
    """The first journal line the restore writes for ``stage`` and ``targets``, with overrides."""
    st = os.stat(stage)
    h = {
        "format": JOURNAL_FORMAT, "version": 2, "pid": dead_pid(), "uid": os.geteuid(),
        "stage": {"dev": st.st_dev, "ino": st.st_ino}, "main": True,
        "targets": {r: identity(p) for r, p in targets.items()},
    }
    h.update(over)
    return h


def lines(*recs) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in recs)


def moved(role: str, rel: list, p: Path | None = None) -> dict:
    st = os.lstat(p) if p is not None else None
    return {"op": "moved", "root": role, "rel": rel, "dev": st.st_dev if st else 0, "ino": st.st_ino if st else 0}


def restore_args(src: Path, root: Path, *extra: str) -> list[str]:
    return ["restore", str(src), "--metadir", str(root / "meta"), "--datadir", str(root / "data"), *extra]


def base_target(work: Path, run: Callable[[list[str]], int]) -> Path:
    """A target holding db2 of the legacy fixture (restored by ``run``), copied by each case."""
    base = work / "_base"
    if not base.exists():
        code = run(restore_args(FIXTURES / "legacy", base, "--db", "db2"))
        if code != 0:
            raise RuntimeError(f"building the base target failed with {code}")
    return base


def _shard_dir(root: Path) -> Path:
    return sorted((root / "data" / "db2").glob("*/*"))[0]


def planted_stages(work: Path, run: Callable[[list[str]], int]) -> list[Case]:
    """Cases of planted staging dirs: each must be reported (one warning line naming it), left
    alone byte for byte, and the restore of db1 beside db2 must still succeed (exit 0) with db2's
    shards intact. Built in two places: beside ``data/`` (where restores stage) and inside it."""
    base = base_target(work, run)
    pid = dead_pid()
    cases: list[Case] = []
    am_root = os.geteuid() == 0

    def make(name: str, where: str, build: Callable[[Path, Path, Path], None]) -> None:
        d = work / f"{where}-{name}"
        root = d / "root"
        shutil.copytree(base, root, symlinks=True)
        (d / "victim").mkdir()
        (d / "victim" / "precious").write_bytes(b"do not delete\n")
        (d / "victim" / "sub").mkdir()
        (d / "victim" / "sub" / "file").write_bytes(b"x" * 100)
        parent = root if where == "beside" else root / "data"
        stage = parent / f"{STAGE_PREFIX}{HUGE_PID if name.startswith('huge-pid') else pid}-0"
        build(stage, root, d)
        shard = _shard_dir(root)
        cases.append(
            Case(
                f"{where}-{name}",
                root,
                restore_args(FIXTURES / "legacy", root, "--db", "db1"),
                0,
                str(stage),
                stage,
                [shard],
            )
        )

    def valid_dir(stage: Path, mode: int = 0o700) -> None:
        stage.mkdir()
        os.chmod(stage, mode)

    def ours(stage: Path, root: Path) -> dict:
        return {"meta": root / "meta", "data": root / "data"}

    def undo_db2(stage: Path, root: Path) -> bytes:
        """A journal that, if trusted, would remove db2's first shard (its real inode)."""
        shard = _shard_dir(root)
        rel = list(shard.relative_to(root / "data").parts)
        return lines(header(stage, ours(stage, root)), moved("data", rel, shard))

    def attr_variant(mode: int = 0o700, uid: int | None = None, jmode: int = 0o600, juid: int | None = None):
        def build(stage: Path, root: Path, d: Path) -> None:
            valid_dir(stage, mode)
            (stage / "journal").write_bytes(undo_db2(stage, root))
            os.chmod(stage / "journal", jmode)
            if juid is not None:
                os.chown(stage / "journal", juid, juid)
            if uid is not None:
                os.chown(stage, uid, uid)
            os.chmod(stage, mode)
        return build

    builders: dict[str, Callable[[Path, Path, Path], None]] = {
        "mode-0755": attr_variant(0o755),
        "mode-0777": attr_variant(0o777),
        "mode-0750": attr_variant(0o750),
        "mode-1700": attr_variant(0o1700),
    }
    if am_root:
        builders["other-uid"] = attr_variant(uid=OTHER_UID)
        builders["journal-other-uid"] = attr_variant(juid=OTHER_UID)

    def stage_symlink(stage: Path, root: Path, d: Path) -> None:
        real = d / "victim" / "realstage"
        valid_dir(real)
        (real / "journal").write_bytes(undo_db2(real, root))
        stage.symlink_to(real)

    def stage_file(stage: Path, root: Path, d: Path) -> None:
        stage.write_bytes(b"not a directory\n")

    def journal_symlink(stage: Path, root: Path, d: Path) -> None:
        valid_dir(stage)
        (d / "victim" / "journal").write_bytes(undo_db2(stage, root))
        (stage / "journal").symlink_to(d / "victim" / "journal")

    def journal_fifo(stage: Path, root: Path, d: Path) -> None:
        valid_dir(stage)
        os.mkfifo(stage / "journal")

    def journal_dir(stage: Path, root: Path, d: Path) -> None:
        valid_dir(stage)
        (stage / "journal").mkdir()

    def staged_file(stage: Path) -> None:
        (stage / "0").mkdir()
        (stage / "0" / "000000001-000000001.tsm").write_bytes(b"staged")

    def no_journal(stage: Path, root: Path, d: Path) -> None:
        valid_dir(stage)
        staged_file(stage)

    def journal_bytes(data: bytes):
        def build(stage: Path, root: Path, d: Path) -> None:
            valid_dir(stage)
            (stage / "journal").write_bytes(data)
        return build

    def empty_journal_beside_staged(stage: Path, root: Path, d: Path) -> None:
        valid_dir(stage)
        (stage / "journal").write_bytes(b"")
        staged_file(stage)

    def journal_huge(stage: Path, root: Path, d: Path) -> None:
        valid_dir(stage)
        with open(stage / "journal", "wb") as f:
            f.write(undo_db2(stage, root))
            f.truncate((64 << 20) + 1)  # sparse: one byte past the largest journal read

    builders.update(
        {
            "stage-symlink": stage_symlink,
            "stage-file": stage_file,
            "journal-symlink": journal_symlink,
            "journal-fifo": journal_fifo,
            "journal-dir": journal_dir,
            "no-journal": no_journal,
            "journal-huge": journal_huge,
            "garbage": journal_bytes(os.urandom(0) + bytes(range(256)) * 4 + b"\n"),
            # an empty journal (or a torn header) alone is a run killed before it did anything,
            # removed (tests/test_trust_restore_journal.py); beside staged files it is no proof
            "empty-journal": empty_journal_beside_staged,
            "nul-lines": journal_bytes(b"\0\0\0\n\0\n"),
            "not-ascii": journal_bytes('{"format": "é"}\n'.encode()),
            "json-null": journal_bytes(b"null\n"),
            "json-list": journal_bytes(b"[1, 2, 3]\n"),
            # the journal format of earlier versions (hex paths): no proof of whose it is
            "old-format": lambda stage, root, d: journal_bytes(
                b"dir "
                + os.fsencode(d / "victim").hex().encode()
                + b"\nmoved "
                + os.fsencode(d / "victim" / "sub").hex().encode()
                + b"\n"
            )(stage, root, d),
        }
    )

    def header_variant(
        mutate: Callable[[dict, Path, Path, Path], None], ops: Callable[[Path, Path, Path], list] | None = None
    ):
        def build(stage: Path, root: Path, d: Path) -> None:
            valid_dir(stage)
            h = header(stage, ours(stage, root))
            mutate(h, stage, root, d)
            rest = (
                ops(stage, root, d)
                if ops is not None
                else [moved("data", list(_shard_dir(root).relative_to(root / "data").parts), _shard_dir(root))]
            )
            (stage / "journal").write_bytes(lines(h, *rest))
        return build

    def set_(key, value):
        return lambda h, s, r, d: h.__setitem__(key, value)

    def target(role: str, path_of: Callable[[Path, Path, Path], Path]):
        return lambda h, s, r, d: h["targets"].__setitem__(role, identity(path_of(s, r, d)))

    def victim_ops(stage: Path, root: Path, d: Path) -> list:
        return [moved("data", ["sub"], d / "victim" / "sub"), moved("data", ["precious"], d / "victim" / "precious")]

    other_root = work / "_other"

    def other(stage: Path, root: Path, d: Path) -> Path:
        if not other_root.exists():
            shutil.copytree(base, other_root, symlinks=True)
        return other_root / "data"

    def other_ops(stage: Path, root: Path, d: Path) -> list:
        shard = _shard_dir(other_root)
        return [moved("data", list(shard.relative_to(other_root / "data").parts), shard)]

    builders.update(
        {
            "format-wrong": header_variant(set_("format", "something else")),
            "version-1": header_variant(set_("version", 1)),
            "version-3": header_variant(set_("version", 3)),
            "header-uid": header_variant(set_("uid", OTHER_UID)),
            "stage-ino-wrong": header_variant(lambda h, s, r, d: h["stage"].__setitem__("ino", h["stage"]["ino"] + 1)),
            "stage-dev-wrong": header_variant(lambda h, s, r, d: h["stage"].__setitem__("dev", h["stage"]["dev"] + 1)),
            "no-stage": header_variant(lambda h, s, r, d: h.pop("stage")),
            "no-targets": header_variant(set_("targets", {})),
            "main-missing": header_variant(lambda h, s, r, d: h.pop("main")),
            "target-elsewhere": header_variant(target("data", lambda s, r, d: d / "victim"), victim_ops),
            "target-root-fs": header_variant(
                target("data", lambda s, r, d: Path("/")), lambda s, r, d: [moved("data", ["etc"], Path("/etc"))]
            ),
            "target-source": header_variant(
                target("data", lambda s, r, d: FIXTURES / "legacy"),
                lambda s, r, d: [moved("data", ["meta.00"], FIXTURES / "legacy" / "meta.00")],
            ),
            "target-other-target": header_variant(target("data", other), other_ops),
            "target-ino-wrong": header_variant(
                lambda h, s, r, d: h["targets"]["data"].__setitem__("ino", h["targets"]["data"]["ino"] + 1)
            ),
            "target-path-elsewhere": header_variant(
                lambda h, s, r, d: h["targets"]["data"].update(path=str(d / "victim"), real=str(d / "victim"))
            ),
            "target-wal-not-given": header_variant(target("wal", lambda s, r, d: d / "victim"), victim_ops),
            "target-unknown-role": header_variant(
                lambda h, s, r, d: h["targets"].__setitem__("etc", identity(Path("/etc")))
            ),
            "target-malformed": header_variant(lambda h, s, r, d: h["targets"].__setitem__("meta", {"path": 1})),
        }
    )
    bad_rels: dict[str, list] = {
        "dotdot": [".."], "dotdot-victim": ["..", "..", "victim"], "absolute": ["/etc"], "empty": [], "dot": ["."],
        "slash-inside": ["db2/autogen"], "nul": ["db2\0"], "not-string": [1], "not-list": "db2", "empty-part": [""],
        "long-part": ["x" * 256],
    }
    for label, rel in bad_rels.items():
        builders[f"op-rel-{label}"] = header_variant(
            lambda h, s, r, d: None,
            lambda s, r, d, rel=rel: [
                {"op": "moved", "root": "data", "rel": rel, "dev": 0, "ino": 0},
                moved("data", list(_shard_dir(r).relative_to(r / "data").parts), _shard_dir(r)),
            ],
        )
    builders.update(
        {
            "op-root-not-a-target": header_variant(
                lambda h, s, r, d: None,
                lambda s, r, d: [{"op": "moved", "root": "wal", "rel": ["x"], "dev": 0, "ino": 0}],
            ),
            "op-moved-no-ino": header_variant(
                lambda h, s, r, d: None, lambda s, r, d: [{"op": "moved", "root": "data", "rel": ["db2"]}]
            ),
            "op-unknown": header_variant(
                lambda h, s, r, d: None, lambda s, r, d: [{"op": "rmtree", "path": str(d / "victim")}]
            ),
            "op-meta-malformed": header_variant(
                lambda h, s, r, d: None, lambda s, r, d: [{"op": "meta", "sha256": "../../etc"}]
            ),
            "op-not-object": header_variant(lambda h, s, r, d: None, lambda s, r, d: ["moved"]),
        }
    )
    # torn or cut journals: the header cut at several places (a torn LAST line is ignored, so a
    # header that is cut has no complete header at all), and a bad line in the middle
    for cut in (1, 7, 20, 60, -2):
        def build(stage: Path, root: Path, d: Path, cut=cut) -> None:
            valid_dir(stage)
            data = undo_db2(stage, root)
            first = data.index(b"\n")
            (stage / "journal").write_bytes(data[: cut if cut > 0 else first + 1 + cut])
            staged_file(stage)  # alone, a torn header is removed (tests/test_trust_restore_journal.py)
        builders[f"header-cut-{cut}"] = build

    def middle_garbage(stage: Path, root: Path, d: Path) -> None:
        valid_dir(stage)
        data = undo_db2(stage, root)
        first = data.index(b"\n") + 1
        (stage / "journal").write_bytes(data[:first] + b"{not json\n" + data[first:])

    builders["line-garbage-middle"] = middle_garbage
    builders["huge-pid-garbage"] = journal_bytes(b"garbage\n")
    builders["huge-pid-elsewhere"] = header_variant(target("data", lambda s, r, d: d / "victim"), victim_ops)

    for where in ("beside", "inside"):
        for name, build in builders.items():
            make(name, where, build)
    return cases


def stale_but_ours(work: Path, run: Callable[[list[str]], int]) -> list[Case]:
    """Journals that provably belong to the target (this user, 0700, its own dev/ino, these
    target dirs) but whose recorded moves name inodes that are not the ones at those paths now
    (db2's real shards, files replaced since): the staging dir is removed as recovered, and
    nothing in the target goes. ``planted`` here is the data kept (``keep``)."""
    base = base_target(work, run)
    pid = dead_pid()
    cases: list[Case] = []
    variants = {
        "wrong-ino": lambda st: st.st_ino + 1,
        "wrong-ino-far": lambda st: st.st_ino + 1000003,
        "zero-ino": lambda st: 0,
    }
    for where in ("beside", "inside"):
        for name, ino_of in variants.items():
            for kind in ("shard-dir", "tsm-file", "db-dir"):
                d = work / f"stale-{where}-{name}-{kind}"
                root = d / "root"
                shutil.copytree(base, root, symlinks=True)
                parent = root if where == "beside" else root / "data"
                stage = parent / f"{STAGE_PREFIX}{pid}-0"
                stage.mkdir()
                os.chmod(stage, 0o700)
                shard = _shard_dir(root)
                p = {"shard-dir": shard, "tsm-file": sorted(shard.iterdir())[0], "db-dir": root / "data" / "db2"}[kind]
                st = os.lstat(p)
                rec = {
                    "op": "moved",
                    "root": "data",
                    "rel": list(p.relative_to(root / "data").parts),
                    "dev": st.st_dev,
                    "ino": ino_of(st),
                }
                dirs = [{"op": "dir", "root": "data", "rel": ["db2"]}]
                (stage / "journal").write_bytes(
                    lines(header(stage, {"meta": root / "meta", "data": root / "data"}), *dirs, rec)
                )
                cases.append(
                    Case(
                        f"stale-{where}-{name}-{kind}",
                        root,
                        restore_args(FIXTURES / "legacy", root, "--db", "db1"),
                        0,
                        str(stage),
                        stage,
                        [root / "data" / "db2"],
                    )
                )
    return cases


def overlapping_targets(work: Path) -> list[tuple[str, list[str], list[str], str]]:
    """(name, first target args, second target args, the directory both lock) for runs whose
    targets overlap. The first run holds its lock; the second must get exit 5 naming the first's
    pid and the shared directory's lock file."""
    out = []
    a = work / "a"
    b = work / "b"
    for p in (a, b):
        (p / "meta").mkdir(parents=True, exist_ok=True)
        (p / "data").mkdir(exist_ok=True)
    (work / "alias").symlink_to(a)
    out.append(("same-dirs", ["--metadir", str(a / "meta"), "--datadir", str(a / "data")],
                ["--metadir", str(a / "meta"), "--datadir", str(a / "data")], str(a / "meta")))
    out.append(("shared-metadir", ["--metadir", str(a / "meta"), "--datadir", str(a / "data")],
                ["--metadir", str(a / "meta"), "--datadir", str(b / "data")], str(a / "meta")))
    out.append(("shared-datadir", ["--metadir", str(a / "meta"), "--datadir", str(a / "data")],
                ["--metadir", str(b / "meta"), "--datadir", str(a / "data")], str(a / "data")))
    out.append(
        (
            "symlinked-alias",
            ["--metadir", str(a / "meta"), "--datadir", str(a / "data")],
            ["--metadir", str(work / "alias" / "meta"), "--datadir", str(work / "alias" / "data")],
            str(a / "meta"),
        )
    )
    out.append(
        (
            "waldir-is-other-datadir",
            ["--metadir", str(a / "meta"), "--datadir", str(a / "data")],
            ["--metadir", str(b / "meta"), "--datadir", str(b / "data"), "--waldir", str(a / "data")],
            str(a / "data"),
        )
    )
    out.append(("swapped-roles", ["--metadir", str(a / "meta"), "--datadir", str(a / "data")],
                ["--metadir", str(a / "data"), "--datadir", str(a / "meta")], str(a / "meta")))
    return out


def live_targets(server_root: Path, work: Path) -> list[tuple[str, list[str]]]:
    """(name, restore target arguments) that all land in the directories of a running influxd
    rooted at ``server_root`` (meta/, data/, wal/), directly or through an alias; the parts not
    in the server point below ``work`` (they must not be created by a refused run)."""
    s = server_root
    alias = work / "alias-data"
    if not alias.exists():
        alias.symlink_to(s / "data")
    return [
        ("all-three", ["--metadir", str(s / "meta"), "--datadir", str(s / "data"), "--waldir", str(s / "wal")]),
        ("meta-and-data", ["--metadir", str(s / "meta"), "--datadir", str(s / "data")]),
        ("data-only", ["--metadir", str(work / "m1"), "--datadir", str(s / "data")]),
        ("wal-only", ["--metadir", str(work / "m2"), "--datadir", str(work / "d2"), "--waldir", str(s / "wal")]),
        ("meta-only", ["--metadir", str(s / "meta"), "--datadir", str(work / "d3")]),
        ("aliased-data", ["--metadir", str(work / "m4"), "--datadir", str(alias)]),
        ("below-data", ["--metadir", str(work / "m5"), "--datadir", str(s / "data" / "srv")]),
        ("server-root-as-datadir", ["--metadir", str(work / "m6"), "--datadir", str(s)]),
    ]


def planted_temp_siblings(work: Path, dest_name: str = "out") -> tuple[list[Path], list[Path], Path]:
    """Entries named like the temporaries of a killed convert/pack/export run of ``dest_name``
    (``.<name>.tmp-<dead pid>``) beside it: (those that are not provably ours — links, another
    user's — which must be left alone, genuine leftovers of this user which are removed, the
    victim directory the links point at)."""
    victim = work / "victim"
    victim.mkdir(parents=True, exist_ok=True)
    (victim / "precious").write_bytes(b"keep\n")
    pid = dead_pid()
    names = iter(range(pid, 1, -1))

    def name() -> Path:
        while True:
            p = next(names)
            if not os.path.exists(f"/proc/{p}"):
                return work / f".{dest_name}.tmp-{p}"

    alone: list[Path] = []
    gone: list[Path] = []
    p = name()
    p.symlink_to(victim)
    alone.append(p)
    p = name()
    p.symlink_to(victim / "precious")
    alone.append(p)
    p = name()
    p.symlink_to(work / "dangling")
    alone.append(p)
    if os.geteuid() == 0:
        p = name()
        p.mkdir()
        (p / "f").write_bytes(b"theirs")
        os.chown(p, OTHER_UID, OTHER_UID)
        alone.append(p)
        p = name()
        p.write_bytes(b"theirs")
        os.chown(p, OTHER_UID, OTHER_UID)
        alone.append(p)
    alive = work / f".{dest_name}.tmp-1"  # pid 1 is alive: a run still going, not touched
    alive.mkdir()
    alone.append(alive)
    p = name()
    p.mkdir()
    (p / "sub").mkdir()
    (p / "sub" / "f").write_bytes(b"mine")
    gone.append(p)
    p = name()
    p.write_bytes(b"mine")
    gone.append(p)
    p = work / f".{dest_name}.tmp-{HUGE_PID}"  # no process can have it: a leftover, removed
    p.mkdir()
    gone.append(p)
    p = work / f".{dest_name}.tmp-{HUGE_PID + 1}"
    p.symlink_to(victim)
    alone.append(p)
    return alone, gone, victim


def many_planted(work: Path, n: int) -> Path:
    """A target root with ``n`` garbage staging directories planted beside its data dir."""
    root = work / "many"
    (root / "data").mkdir(parents=True)
    pid = dead_pid()
    for i in range(n):
        stage = root / f"{STAGE_PREFIX}{pid}-{i}"
        stage.mkdir(mode=0o700)
        (stage / "journal").write_bytes(b"garbage %d\n" % i)
    return root
