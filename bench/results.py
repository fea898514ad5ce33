"""Tables of bench/run.py: the targets (met / not met), one table per dataset, the scaling table,
and bench/RESULTS.md (method header + those tables; what follows them, from ``## Notes`` or
``## Linearity`` on, is written by hand or by other bench scripts and kept)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

OURS = ("ours", "ours backup", "ours convert")
#: sections of RESULTS.md that --write-results keeps (written by hand or by other scripts)
KEPT_FROM = ("\n## Notes", "\n## Linearity")


def machine() -> str:
    cpu, mem = "unknown CPU", 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 // 1024
    except OSError:
        pass
    return (f"{os.cpu_count()} cores, {cpu}, {mem} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def _out(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr).strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def _sha256(path: str) -> str:
    import hashlib

    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return "?"
    return h.hexdigest()


def versions(inspect: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "?"

    try:
        from influx_archive.tsm.compiled import core

        compiled = core is not None
    except ImportError:
        compiled = False
    return {
        "influxd": _out(["influxd", "version"]),
        "influx_inspect": f"{inspect} (sha256 {_sha256(inspect)[:12]})",  # it has no version command
        "tar": _out(["tar", "--version"]),
        "influx-archive": v("influx-archive"),
        "typer": v("typer"),
        "compiled_core": compiled,
    }


def _t(doc_verb: dict, side: str) -> float | None:
    s = doc_verb.get(side)
    return s["seconds"] if isinstance(s, dict) and "seconds" in s else None


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "not met")


def _label(name: str, d: dict) -> str:
    info = d["info"]
    return f"{name} ({info['tsm_bytes'] / 1e6:,.0f} MB TSM)"


def targets(doc: dict) -> list[tuple[str, str, str, str]]:
    """(what, measured, target, met) rows."""
    rows: list[tuple[str, str, str, str]] = []
    sets = doc["datasets"]
    start = doc["startup"]["verify 100 KB"]["seconds"]
    for name, d in sets.items():
        v = d["verbs"]
        ours, ref = _t(v["convert"], "ours"), _t(v["convert"], "influxd backup -portable")
        if ours and ref:
            rows.append((f"convert / influxd backup -portable, {_label(name, d)}", f"{ours / ref:.2f}", "<= 1.0",
                         _met(ours / ref <= 1.0)))
    for name, d in sets.items():
        v = d["verbs"]
        ours, ref = _t(v["export"], "ours"), _t(v["export"], "influx_inspect export")
        if ours and ref:
            rows.append((f"export / influx_inspect export (wall), {_label(name, d)}", f"{ours / ref:.2f}", "<= 1.0",
                         _met(ours / ref <= 1.0)))
    for name, d in sets.items():
        t = _t(d["verbs"]["verify"], "ours")
        if not t:
            continue
        what = f"verify steady state (start-up {start * 1e3:.0f} ms subtracted), {_label(name, d)}"
        if t - start < 0.2 * t:  # nearly all start-up: the difference is noise
            rows.append((what, f"not measurable ({t:.2f} s in all)", ">= 1 GB/s", "—"))
        else:
            rate = d["verbs"]["verify"]["bytes"] / (t - start) / 1e9
            rows.append((what, f"{rate:.2f} GB/s", ">= 1 GB/s", _met(rate >= 1.0)))
    big = {n: d for n, d in sets.items() if d["verbs"]["restore"]["bytes"] >= 1e9}
    note = ""
    if not big and sets:
        n = max(sets, key=lambda k: sets[k]["verbs"]["restore"]["bytes"])
        big, note = {n: sets[n]}, " (largest here; below 1 GB)"
    for name, d in big.items():
        r = d["verbs"]["restore"]
        ours, ref = _t(r, "ours"), _t(r, "tar -x + sync")
        if ours and ref:
            rows.append((f"restore / (tar -x + sync), {r['bytes'] / 1e9:.2f} GB legacy, {name}{note}",
                         f"{ours / ref:.2f}", "<= 1.0", _met(ours / ref <= 1.0)))
    for name, d in sets.items():
        ours, ref = _t(d["verbs"]["trim"], "ours"), _t(d["verbs"]["trim"], "ours convert")
        if ours and ref:
            rows.append((f"trim inside one shard / convert, {_label(name, d)}", f"{ours / ref:.2f}", "<= 1.2",
                         _met(ours / ref <= 1.2)))
    rows += _buildtsi_targets(sets)
    scaled = {n: d for n, d in sets.items() if d.get("factor", 1) > 1}
    if scaled:
        peak = max(
            ((s[side]["rss_mib"], f"{verb} ({n})") for n, d in scaled.items() for verb, s in d["verbs"].items()
             for side in OURS if isinstance(s.get(side), dict)),
            default=(0, "-"),
        )
        rows.append((f"peak RSS, every verb, at x{doc['scale']} (largest: {peak[1]})", f"{peak[0]} MiB", "<= 200 MB",
                     _met(peak[0] * 1.048576 <= 200)))
        worst_t, worst_r = (0.0, "-"), (0.0, "-")
        for d in scaled.values():
            one = sets.get(d["base"])
            if not one:
                continue
            for verb, s in d["verbs"].items():
                t1, t10 = _t(one["verbs"].get(verb, {}), "ours"), _t(s, "ours")
                if t1 and t10:
                    worst_t = max(worst_t, (t10 / t1 / d["factor"], f"{verb} ({d['base']})"))
                    r1, r10 = one["verbs"][verb]["ours"]["rss_mib"], s["ours"]["rss_mib"]
                    worst_r = max(worst_r, (r10 / max(r1, 1), f"{verb} ({d['base']})"))
        rows.append((f"time at x{doc['scale']} / ({doc['scale']} x time at 1x), worst verb: {worst_t[1]}",
                     f"{worst_t[0]:.2f}", "~1 (linear)", "—"))
        rows.append((f"peak RSS at x{doc['scale']} / at 1x, worst verb: {worst_r[1]}", f"{worst_r[0]:.2f}",
                     "~1 (flat)", "—"))
    rows.append(("start-up: verify of a 100 KB backup", f"{start * 1e3:.0f} ms", "<= 150 ms", _met(start <= 0.150)))
    rows.append(("start-up: --help", f"{doc['startup']['--help']['seconds'] * 1e3:.0f} ms", "", "—"))
    return rows


def _buildtsi_targets(sets: dict) -> list[tuple[str, str, str, str]]:
    """build-tsi / influx_inspect buildtsi (issue 17, <= 1.0) on trees influxd ran on and on the
    same without series files; then the same for the work: each side's run on an empty data
    directory (its start-up: an interpreter and imports here, ~3 ms for the Go binary)
    subtracted, which is what decides the ratio on trees of any real size."""
    rows: list[tuple[str, str, str, str]] = []
    peer, e_ours, e_peer = "influx_inspect buildtsi", "ours, empty data directory", (
        "influx_inspect buildtsi, empty data directory")
    work = []
    for verb in ("build-tsi", "build-tsi (no _series)"):
        for name, d in sets.items():
            s = d["verbs"].get(verb)
            if not s:
                continue
            ours, ref = _t(s, "ours"), _t(s, peer)
            if ours and ref:
                rows.append((f"{verb} / {peer}, {_label(name, d)}", f"{ours / ref:.2f}", "<= 1.0",
                             _met(ours / ref <= 1.0)))
            base = d["verbs"].get("build-tsi", {})
            so, sp = _t(base, e_ours), _t(base, e_peer)
            if ours and ref and so is not None and sp is not None and ref > sp:
                r = max(ours - so, 0.0) / (ref - sp)
                work.append((f"{verb} work / {peer} work (start-up {so * 1e3:.0f} / {sp * 1e3:.0f} ms subtracted), "
                             f"{_label(name, d)}", f"{r:.2f}", "<= 1.0", _met(r <= 1.0)))
    return rows + work


def dataset_table(name: str, d: dict) -> str:
    head = ("verb", "side", "seconds (median)", "peak RSS", "ours / this", "note")
    lines = [head, tuple("---" for _ in head)]
    for verb, s in d["verbs"].items():
        ours = _t(s, "ours")
        for side, t in s.items():
            if not isinstance(t, dict) or "seconds" not in t:
                continue
            note = ""
            if "out_bytes" in s and side in s["out_bytes"]:
                note = f"output {s['out_bytes'][side] / 1e6:,.1f} MB"
            if side == "ours" and "bytes" in s:
                note = (note + "; " if note else "") + f"{s['bytes'] / t['seconds'] / 1e6:,.0f} MB/s"
            ratio = f"{ours / t['seconds']:.2f}" if ours and side != "ours" else ""
            lines.append((verb, side, f"{t['seconds']:.3f}", f"{t['rss_mib']} MiB", ratio, note))
    info = d["info"]
    desc = (f"### {name}: {info['values']:,} values, {info['series']:,} series, {info['shards']} shards, "
            f"{'/'.join(map(str, info.get('tsm_files_per_shard', [1])))} TSM file(s) per shard, "
            f"TSM {info['tsm_bytes'] / 1e6:,.0f} MB, legacy {info['legacy_bytes'] / 1e6:,.0f} MB, "
            f"portable {info['portable_bytes'] / 1e6:,.0f} MB")
    return desc + "\n\n" + _md(lines)


def scaling_table(doc: dict) -> str:
    sets = doc["datasets"]
    head = ("verb", "dataset", "1x s", f"x{doc['scale']} s", "ratio", "1x RSS", f"x{doc['scale']} RSS")
    lines = [head, tuple("---" for _ in head)]
    for d in sets.values():
        one = sets.get(d["base"])
        if d.get("factor", 1) == 1 or not one:
            continue
        for verb, s in d["verbs"].items():
            t1, t10 = _t(one["verbs"].get(verb, {}), "ours"), _t(s, "ours")
            if t1 and t10:
                lines.append((verb, d["base"], f"{t1:.2f}", f"{t10:.2f}", f"{t10 / t1:.1f}",
                              f"{one['verbs'][verb]['ours']['rss_mib']} MiB", f"{s['ours']['rss_mib']} MiB"))
    return _md(lines)


def _md(lines) -> str:
    return "\n".join("| " + " | ".join(r) + " |" for r in lines)


def render(doc: dict) -> str:
    parts = ["## Targets", "", _md([("what", "measured", "target", "met"), ("---",) * 4] + targets(doc)), ""]
    for name, d in doc["datasets"].items():
        parts += [dataset_table(name, d), ""]
    if any(d.get("factor", 1) > 1 for d in doc["datasets"].values()):
        parts += [f"### Scaling: ours at 1x and x{doc['scale']}", "", scaling_table(doc), ""]
    return "\n".join(parts)


def header(doc: dict) -> str:
    v = doc["versions"]
    return f"""# Benchmark results

`python bench/run.py --write-results` on {doc['date']} ({doc['bench_seconds']:.0f} s in all). Method in
bench/README.md: every comparison runs ours and its peers alternately in the same run, on the same
data; figures are medians of {doc['runs']} runs at 1x and of {doc['scaled_runs']} at x{doc['scale']}
(peak RSS: the largest of the runs, from `wait4`).

- machine: {doc['machine']}
- influxd: {v['influxd']} (Debian package); `influxd backup -portable` against a live server on a
  copy of the dataset's root, `influxd restore` offline
- influx_inspect: {v['influx_inspect']}, InfluxData's 1.6.7 sources; {v['tar']}
- ours: influx-archive {v['influx-archive']}, typer {v['typer']}, compiled core {'yes' if v['compiled_core'] else 'no'}
"""


def write_results(path: Path, doc: dict) -> None:
    old = path.read_text() if path.exists() else ""
    at = [old.index(k) for k in KEPT_FROM if k in old]
    kept = old[min(at):] if at else ""
    path.write_text(header(doc) + "\n" + render(doc) + kept)
