#!/usr/bin/env python3
"""Rewrite citations of the old external spec documents into citations of docs/formats.md.

    python docs/tools/recite.py [--check] [--table docs/citations.tsv] PATH...

PATH is a file or a directory (searched for *.py and *.md). Three passes per file:

1. every row of the table (``old<TAB>new``), longest ``old`` first; whitespace in ``old`` matches
   any run of whitespace, so a citation broken across two lines is found too;
2. any other ``TSM_WAL.md §a, §b-§c`` / ``BACKUP_META.md §...`` left over, composed from the
   table's ``DOC §N`` rows (reported as "composed": check it reads well);
3. bare ``§N`` references in a file that cited exactly one of the documents (the sections of that
   document), unless they follow "RFC" or another document's name.

Then it lists what still mentions the old documents, and every changed line longer than
``--max-line`` characters. ``--check`` changes nothing and exits 1 when a file would change or a
mention remains; every anchor the table uses is checked to exist in docs/formats.md.
Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent
DEFAULT_TABLE = DOCS / "citations.tsv"
FORMATS = DOCS / "formats.md"
TARGET = "docs/formats.md#"
DOC_NAMES = {"TSM_WAL": "TSM_WAL.md", "BACKUP_META": "BACKUP_META.md"}
LEFTOVER = re.compile(r"TSM_WAL|BACKUP_META|ONLINE\.md|shared/|quirk \d")
SEC = r"§\s?\d+(?:\.\d+)?"
ITEM = rf"{SEC}(?:\s*[-\u2013]\s*{SEC})?"
GENERIC = re.compile(rf"(?P<doc>TSM_WAL|BACKUP_META)(?:\.md)?`?\s+(?P<list>{ITEM}(?:,\s*{ITEM})*)")
BARE = re.compile(rf"(?<![\w.`])(?P<list>{ITEM}(?:,\s*{ITEM})*)")


def load_table(path: Path) -> tuple[list[tuple[str, str]], dict[str, dict[str, str]]]:
    rows: list[tuple[str, str]] = []
    sections: dict[str, dict[str, str]] = {d: {} for d in DOC_NAMES.values()}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            old, new = line.split("\t")
        except ValueError:
            sys.exit(f"{path}:{n}: expected 'old<TAB>new'")
        rows.append((old, new))
        m = re.fullmatch(r"(TSM_WAL\.md|BACKUP_META\.md) §(\d+(?:\.\d+)?)", old)
        if m and new.startswith(TARGET) and "," not in new:
            sections[m.group(1)][m.group(2)] = new[len(TARGET):]
    rows.sort(key=lambda r: len(r[0]), reverse=True)
    return rows, sections


def _key(s: str) -> tuple[int, ...]:
    return tuple(int(x) for x in s.split("."))


def anchors_for(listing: str, table: dict[str, str]) -> list[str] | None:
    """Anchors for '§a, §b-§c' in one document's section table; None if a section is unknown."""
    out: list[str] = []
    for item in re.split(r",\s*", listing.strip()):
        ends = [e.strip().lstrip("§").strip() for e in re.split(r"\s*[-\u2013]\s*", item)]
        if any(e not in table for e in ends):
            return None
        if len(ends) == 1:
            picked = ends
        else:
            lo, hi = _key(ends[0]), _key(ends[1])
            chapters = len(lo) == 1 and len(hi) == 1
            picked = [s for s in sorted(table, key=_key) if lo <= _key(s) <= hi and (not chapters or "." not in s)]
        for s in picked:
            if table[s] not in out:
                out.append(table[s])
    return out


def cite(anchors: list[str]) -> str:
    return TARGET + anchors[0] + "".join(", #" + a for a in anchors[1:])


def flexible(old: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in re.split(r"\s+", old)]
    tail = r"(?![\d])(?!\.\d)" if old[-1].isdigit() else ""
    return re.compile(r"\s+".join(parts) + tail)


def recite(text: str, rows, sections, notes: list[str]) -> str:
    cited = {d for key, d in DOC_NAMES.items() if key in text}
    for old, new in rows:
        text = flexible(old).sub(lambda _m, new=new: new, text)

    def generic(m: re.Match[str]) -> str:
        found = anchors_for(m.group("list"), sections[DOC_NAMES[m.group("doc")]])
        if not found:
            notes.append(f"unknown section in {m.group(0)!r}")
            return m.group(0)
        new = cite(found)
        notes.append(f"composed {m.group(0)!r} -> {new!r}")
        return new

    text = GENERIC.sub(generic, text)
    if len(cited) == 1:
        table = sections[cited.pop()]

        def bare(m: re.Match[str]) -> str:
            before = text[max(0, m.start() - 16):m.start()]
            if re.search(r"RFC\s*\d*\s*$|\w+\.(md|txt|rst)`?\s*$", before):
                return m.group(0)
            found = anchors_for(m.group("list"), table)
            if not found:
                notes.append(f"bare {m.group(0)!r} not in the table: left as it is")
                return m.group(0)
            new = cite(found)
            notes.append(f"bare {m.group(0)!r} -> {new!r}")
            return new

        text = BARE.sub(bare, text)
    return text


def files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.suffix in (".py", ".md") and ".venv" not in q.parts))
        else:
            out.append(p)
    return out


def check_anchors(rows) -> list[str]:
    known = set(re.findall(r'<a id="([^"]+)"></a>', FORMATS.read_text(encoding="utf-8")))
    missing = []
    for _old, new in rows:
        for a in re.findall(r"#([a-z0-9-]+)", new):
            if a not in known:
                missing.append(a)
    return sorted(set(missing))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything would change")
    ap.add_argument("--max-line", type=int, default=120)
    args = ap.parse_args(argv)
    rows, sections = load_table(args.table)
    status = 0
    missing = check_anchors(rows)
    if missing:
        print(f"anchors used by {args.table} but absent from {FORMATS}: {', '.join(missing)}")
        status = 1
    for path in files(args.paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: skipped ({exc})")
            continue
        notes: list[str] = []
        new = recite(text, rows, sections, notes)
        for note in notes:
            print(f"{path}: {note}")
        if new != text:
            old_lines = set(text.splitlines())
            for n, line in enumerate(new.splitlines(), 1):
                if line not in old_lines and len(line) > args.max_line:
                    print(f"{path}:{n}: line of {len(line)} characters after the rewrite")
            if args.check:
                print(f"{path}: would change")
                status = 1
            else:
                path.write_text(new, encoding="utf-8")
                print(f"{path}: rewritten")
        for n, line in enumerate(new.splitlines(), 1):
            if LEFTOVER.search(line):
                print(f"{path}:{n}: still cites an outside document: {line.strip()}")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
