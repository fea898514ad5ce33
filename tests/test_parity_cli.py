"""influx_inspect's verbs and single-dash flags as operators type them: the flag table
(:mod:`influx_archive.cli.inspect_flags`) case by case, every alias's exit codes, one-line errors
and ``--json``, and ``verify -dir`` / ``verify-seriesfile`` against the reference binary."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from parity_helpers import run_inspect

from influx_archive.cli.inspect_flags import FLAGS, map_inspect_flags

# (argv, rewritten argv, notes) — every kind of entry, every spelling Go's flag package takes
TABLE = [
    (["export", "-datadir", "D", "-waldir", "W", "-out", "F"], ["export", "--datadir", "D", "--waldir", "W",
                                                               "--out", "F"], 0),
    (["export", "-datadir=D", "--waldir=W", "-database", "x", "-retention", "r"],
     ["export", "--datadir", "D", "--waldir=W", "--database", "x", "--retention", "r"], 0),
    (["export", "-start", "2026-01-01T00:00:00Z", "-end=2026-02-01T00:00:00Z", "-lponly", "-compress"],
     ["export", "--start", "2026-01-01T00:00:00Z", "--end", "2026-02-01T00:00:00Z", "--lponly", "--compress"], 0),
    (["export", "-compress=false", "-lponly=true", "SRC"], ["export", "--lponly", "SRC"], 0),
    (["export", "--out", "F", "SRC"], ["export", "--out", "F", "SRC"], 0),  # ours, left as typed
    (["report", "-exact", "-detailed", "-pattern", "db1", "P"], ["report", "--exact", "--detailed", "--pattern",
                                                                 "db1", "P"], 0),
    (["dumptsm", "-index", "-blocks", "-all", "-filter-key", "cpu", "F"],
     ["dumptsm", "--index", "--blocks", "--all", "--filter-key", "cpu", "F"], 0),
    (["dumptsi", "-series-file", "S", "-series", "-measurements", "P"],
     ["dumptsi", "--series-file", "S", "--series", "--measurements", "P"], 0),
    (["buildtsi", "-datadir", "D", "-waldir", "W", "-database", "x", "-retention", "r", "-shard", "3"],
     ["buildtsi", "--datadir", "D", "--waldir", "W", "--database", "x", "--retention", "r", "--shard", "3"], 0),
    (["buildtsi", "-datadir", "D", "-concurrency", "4", "-batch-size=100", "-v", "-max-log-file-size", "1"],
     ["buildtsi", "--datadir", "D"], 4),
    (["verify", "-dir", "R"], ["verify", "--dir", "R"], 0),
    (["verify-seriesfile", "-dir", "D", "-db", "x", "-v", "-c", "2"],
     ["verify-seriesfile", "--dir", "D", "--db", "x", "--verbose"], 1),
    (["verify-seriesfile", "-series-file", "S"], ["verify-seriesfile", "--series-file", "S"], 0),
    (["deletetsm", "-measurement", "cpu", "-sanitize", "-v", "a.tsm", "b.tsm"],
     ["deletetsm", "--measurement", "cpu", "--sanitize", "--verbose", "a.tsm", "b.tsm"], 0),
    (["deletetsm", "-measurement", "cpu", "--", "-odd.tsm"], ["deletetsm", "--measurement", "cpu", "--", "-odd.tsm"],
     0),
    (["export", "-out"], ["export", "--out"], 0),  # a missing value is left for the parser to name
    (["restore", "-db", "x"], ["restore", "-db", "x"], 0),  # not an influx_inspect verb: the generic rewrite's
    (["--debug", "report", "-exact", "P"], ["--debug", "report", "--exact", "P"], 0),
]


@pytest.mark.parametrize(("argv", "want", "notes"), TABLE)
def test_flag_table(argv, want, notes) -> None:
    got, said = map_inspect_flags(argv)
    assert got == want
    assert len(said) == notes and all(s.startswith("-") and "no effect" in s for s in said)


def test_every_flag_maps_to_an_option_the_verb_has() -> None:
    """No entry of the table names an option its verb lacks (checked against the real app)."""
    import typer

    from influx_archive.cli.verbs import load_all

    load_all()  # registers every verb
    from influx_archive.cli.app import app

    cmd = typer.main.get_command(app)
    for verb, flags in FLAGS.items():
        sub = cmd.commands[verb]  # type: ignore[attr-defined]
        opts = {o for p in sub.params for o in getattr(p, "opts", [])}
        for name, flag in flags.items():
            if flag.kind in ("value", "bool"):
                assert flag.target in opts, (verb, name, flag.target)


def test_ignored_flag_says_so_on_stderr(tmp_path, cli) -> None:
    proc = cli("buildtsi", "-datadir", tmp_path / "missing", "-concurrency", "3")
    assert "note: -concurrency has no effect" in proc.err
    assert proc.code == 2 and proc.err.count("error:") == 1


def test_dumptsm_alias(fixtures_dir, cli) -> None:
    tsm = next((fixtures_dir / "live" / "data" / "db2" / "autogen" / "17").glob("*.tsm"))
    full = cli("dump-tsm", tsm, "--blocks")
    assert full.code == 0
    for args in (("-all",), ("-blocks",), ("-index", "-blocks")):
        proc = cli("dumptsm", *args, tsm)
        assert proc.code == 0 and proc.out == full.out, args
    proc = cli("dumptsm", "-filter-key", "str", tsm, "--json")
    doc = json.loads(proc.out)
    assert doc["index"] and all("str" in k["key"] for k in doc["index"])
    everything = json.loads(cli("dump-tsm", tsm, "--json").out)
    assert len(doc["index"]) == sum("str" in k["key"] for k in everything["index"])
    proc = cli("dumptsm", "-filter-key", "[*?]", tsm, "--json")  # a substring, never a pattern
    assert proc.code == 0 and json.loads(proc.out)["index"] == []
    for bad in ((fixtures_dir / "nothing.tsm",), (fixtures_dir / "live" / "meta" / "meta.db",), ()):
        proc = cli("dumptsm", *bad)
        assert proc.code in (1, 2) and proc.err.count("\n") == 1, (bad, proc)


def test_dumptsi_alias_and_buildtsi_flags(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root)
    proc = cli("buildtsi", "-datadir", root / "data", "-waldir", root / "wal", "-database", "db2", "--json")
    assert proc.code == 0, proc.err
    assert all(s["database"] == "db2" for s in json.loads(proc.out)["shards"])
    ours = cli("dumptsi", "-series", root / "data" / "db2", "--json")
    same = cli("dump-tsi", "--series", root / "data" / "db2", "--json")
    assert ours.code == 0 and json.loads(ours.out) == json.loads(same.out) and json.loads(ours.out)["series"]
    proc = cli("dumptsi", root / "data" / "db2", root / "data" / "db1")
    assert proc.code == 2 and proc.err.count("\n") == 1
    proc = cli("dumptsi", "-tag-keys", root / "data" / "db2")
    assert proc.code == 2 and proc.err.count("\n") == 1


@pytest.mark.interop
def test_verify_dir_like_influx_inspect(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root)
    ours = cli("verify", "-dir", root)
    ref = run_inspect("verify", "-dir", root)
    assert ours.code == 0 and ref.returncode == 0, ours.err + ref.stderr

    def healthy(text: str) -> set[str]:
        return {ln.split(": ")[0] for ln in text.splitlines() if ln.endswith(": healthy")}

    assert healthy(ours.out) == healthy(ref.stdout) and healthy(ours.out)
    last = ours.out.splitlines()[-1]
    assert last.startswith("Broken Blocks: 0 / ")
    # we count every block in the file; influx_inspect leaves out blocks its tombstones delete
    assert int(last.split("/ ")[1]) >= int(ref.stdout.splitlines()[-1].split("/ ")[1].split(",")[0])
    doc = json.loads(cli("verify", "-dir", root, "--json").out)
    assert doc["ok"] and {f["path"] for f in doc["files"]} == healthy(ours.out)

    # a block whose CRC fails: that file (and only it) is corrupt, for both tools
    victim = sorted(healthy(ours.out))[0]
    blob = bytearray(Path(victim).read_bytes())
    blob[9] ^= 0xFF  # inside the first block (after the 5-byte header and the 4-byte CRC)
    Path(victim).write_bytes(bytes(blob))
    ours = cli("verify", "-dir", root)
    ref = run_inspect("verify", "-dir", root)
    assert ours.code == 1
    assert f"{victim}: corrupt" in ours.out and victim not in healthy(ours.out)
    assert any(ln.startswith(victim + ": got ") for ln in ref.stdout.splitlines())
    assert not ours.out.splitlines()[-1].startswith("Broken Blocks: 0 ")


@pytest.mark.interop
def test_verify_seriesfile_like_influx_inspect(tmp_path, fixtures_dir, cli) -> None:
    root = tmp_path / "root"
    shutil.copytree(fixtures_dir / "live", root)
    assert cli("build-tsi", "--datadir", root / "data", "--waldir", root / "wal").code == 0
    ours = cli("verify-seriesfile", "-dir", root / "data")
    ref = run_inspect("verify-seriesfile", "-dir", root / "data")
    assert ours.code == 0 and ref.returncode == 0
    assert "error" not in (ref.stdout + ref.stderr).lower()
    assert sorted(ln.split(": ")[0] for ln in ours.out.splitlines()) == sorted(
        str(root / "data" / db / "_series") for db in ("db1", "db2"))
    doc = json.loads(cli("verify-seriesfile", "-dir", root / "data", "-db", "db2", "--json").out)
    assert doc["ok"] and [c["database"] for c in doc["series_files"]] == ["db2"]
    # damage: a segment cut inside its header
    seg = sorted((root / "data" / "db2" / "_series").rglob("0000"))[0]
    seg.write_bytes(seg.read_bytes()[:3])
    ours = cli("verify-seriesfile", "-dir", root / "data")
    assert ours.code == 1 and "corrupt" in ours.out and str(root / "data" / "db2" / "_series") in ours.out
    for bad in (("-dir", tmp_path / "missing"), ("-dir", root / "data", "-db", "nope"), ()):
        proc = cli("verify-seriesfile", *bad)
        assert proc.code == 2 and proc.err.count("\n") == 1, (bad, proc)


def test_verify_dir_and_src_exclusive(tmp_path, cli) -> None:
    for args in ((), (tmp_path, "-dir", tmp_path)):
        proc = cli("verify", *args)
        assert proc.code == 2 and proc.err.count("\n") == 1, proc


def test_verify_dir_missing_or_empty(tmp_path, cli) -> None:
    proc = cli("verify", "-dir", tmp_path / "missing")
    assert proc.code == 2 and proc.err.count("\n") == 1 and str(tmp_path / "missing") in proc.err
    proc = cli("verify", "-dir", tmp_path)
    assert proc.code == 0 and "no TSM file found" in proc.err and proc.out == "Broken Blocks: 0 / 0\n"


def test_report_usage_errors(tmp_path, cli) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in ((), (tmp_path / "missing",), (fifo,), (tmp_path,)):
        proc = cli("report", *args, "--json")
        assert proc.code == 2, (args, proc)
        assert proc.err.count("\n") == 1 and proc.err.startswith("influx-archive: error: "), proc.err
        if args:
            assert json.loads(proc.out)["error"]["exit_code"] == 2


def test_report_reads_every_source_kind(tmp_path, fixtures_dir, cli) -> None:
    """The same exact counts from a legacy backup, its portable conversion, its sealed archive and
    the server tree restored from it (a sealed archive is read in place)."""
    legacy = fixtures_dir / "legacy"
    assert cli("convert", legacy, tmp_path / "portable", "--to", "portable").code == 0
    assert cli("pack", legacy, tmp_path / "sealed.tar.zst").code == 0
    assert cli("restore", legacy, "--metadir", tmp_path / "r" / "meta", "--datadir", tmp_path / "r" / "data",
               "--waldir", tmp_path / "r" / "wal").code == 0
    docs = []
    for src in (legacy, tmp_path / "portable", tmp_path / "sealed.tar.zst", tmp_path / "r", tmp_path / "r" / "data"):
        proc = cli("report", "-exact", src, "--json")
        assert proc.code == 0, (src, proc.err)
        doc = json.loads(proc.out)
        docs.append((doc["databases"], doc["total_series"], doc["total_keys"], doc["min_time"], doc["max_time"]))
    assert docs[0][0] and all(d == docs[0] for d in docs), docs


def test_generated_lines_every_spelling_maps_the_same() -> None:
    """Generated influx_inspect lines: each flag in Go's four spellings (-f v, --f v, -f=v, --f=v;
    booleans -f, --f, -f=true) gives the same line; positional words keep their order; words after
    ``--`` are never touched."""
    import random

    rng = random.Random(7)
    for _ in range(400):
        verb = rng.choice(sorted(FLAGS))
        table = FLAGS[verb]
        picked = rng.sample(sorted(table), k=min(len(table), rng.randint(1, 4)))
        plain: list[str] = [verb]
        spelled: list[str] = [verb]
        positional = []
        for name in picked:
            flag = table[name]
            dash = rng.choice(["-", "--"])
            if flag.kind in ("bool", "ignore-bool"):
                plain.append("-" + name)
                spelled.append(dash + name + rng.choice(["", "=true", "=1"]))
            else:
                v = rng.choice(["x", "/p/q r", "2026-01-01T00:00:00Z", "-5", "a=b"])
                plain += ["-" + name, v]
                spelled += [dash + name + "=" + v] if rng.random() < 0.5 else [dash + name, v]
            if rng.random() < 0.3:
                word = f"POS{len(positional)}"
                plain.append(word)
                spelled.append(word)
                positional.append(word)
        tail = rng.choice([[], ["--", "-datadir", "-v"]])
        got_plain, notes_plain = map_inspect_flags(plain + tail)
        got_spelled, notes_spelled = map_inspect_flags(spelled + tail)
        # our own option spelled --name is left as typed: compare after splitting --opt=value
        def canon(argv: list[str], tail: list[str] = tail) -> list[str]:
            out: list[str] = []
            for a in argv[: len(argv) - len(tail)]:
                if a.startswith("--") and "=" in a:
                    out += a.split("=", 1)
                else:
                    out.append(a)
            return out + argv[len(argv) - len(tail):]
        assert canon(got_plain) == canon(got_spelled), (plain, spelled)
        assert notes_plain == notes_spelled
        assert got_plain[len(got_plain) - len(tail):] == tail
        assert [a for a in got_plain if a.startswith("POS")] == positional
