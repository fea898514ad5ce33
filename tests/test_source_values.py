"""Every value of every fixture, read offline, equals what the source server served.

The source model + TSM reader + tombstones + WAL replay (archive.shardview) produce per-key
values; they are regrouped into the truth layout (measurement, tags, time -> fields) and compared
with fixtures/<name>.truth.json, which the real influxd answered to `SELECT * ... GROUP BY *`.
"""

from __future__ import annotations

import influxd
import pytest

from influx_archive.archive.sources import open_source
from influx_archive.archive.sources.shardview import open_shard_reader
from influx_archive.tsm import block
from influx_archive.tsm.keys import parse_series_key, split_key

TYPE_NAMES = {block.FLOAT: "float", block.INTEGER: "integer", block.BOOLEAN: "boolean", block.STRING: "string",
              block.UNSIGNED: "unsigned"}
CASES = {
    "legacy": None,
    "portable": None,
    "legacy_incremental": {"db1"},
    "portable_incremental": {"db1"},
    "live": None,
}


def offline_truth(path) -> dict:
    src = open_source(path)
    dbs: dict = {}
    # (db, rp) -> series -> time -> fields, over all shards of the RP
    points: dict[tuple[str, str], dict[tuple, dict[int, dict]]] = {}
    for shard in src.shards:
        if not shard.files and not shard.wal:
            continue
        data = dbs.setdefault(shard.database, {"data": {}})["data"].setdefault(shard.retention_policy, {})
        series_points = points.setdefault((shard.database, shard.retention_policy), {})
        with open_shard_reader(src, shard) as reader:
            for key in reader.keys():
                btype, ts, vs = reader.read(key)
                if not ts:
                    continue
                series, field = split_key(key)
                meas, tags = parse_series_key(series)
                m = meas.decode()
                fname = field.decode()
                entry = data.setdefault(m, {"fields": {}, "series": []})
                entry["fields"][fname] = TYPE_NAMES[btype]
                sk = (m, tuple((k.decode(), v.decode()) for k, v in tags))
                pts = series_points.setdefault(sk, {})
                for t, v in zip(ts, vs):
                    if isinstance(v, bytes):
                        v = v.decode("utf-8", "replace")
                    pts.setdefault(t, {})[fname] = v
    for (db, rp), series_points in points.items():
        data = dbs[db]["data"][rp]
        for (m, tags), pts in series_points.items():
            data[m]["series"].append({"tags": dict(tags), "points": sorted(pts.items())})
    return {"databases": dbs}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_every_value_equals_truth(name, fixtures_dir, truth):
    expected = truth(name)
    databases = CASES[name]
    actual = offline_truth(fixtures_dir / name)
    assert actual["databases"], "nothing was read"
    diffs = influxd.compare_truth(expected, actual, databases=databases, sections={"points"})
    assert diffs == []


def test_unpadded_legacy_shard_names_are_read_as_influxd_restore_reads_them(tmp_path) -> None:
    """influxd restore globs ``<db>.*`` and parses the third dot-field as a number, padded or not:
    a legacy backup whose shard tars were renamed ``db1.autogen.1.0`` is the same backup."""
    import shutil
    from pathlib import Path

    from influx_archive.archive.sources import open_source
    from influx_archive.meta import files as metafiles

    src = Path(__file__).resolve().parent.parent / "fixtures" / "legacy"
    renamed = tmp_path / "legacy"
    shutil.copytree(src, renamed)
    for p in sorted(renamed.iterdir()):
        parsed = metafiles.parse_legacy_shard_file_name(p.name)
        if parsed is not None:
            p.rename(renamed / f"{parsed.prefix}.{parsed.shard_id}.{parsed.n}")
    assert metafiles.parse_legacy_shard_file_name("db1.autogen.1.0") is None  # not as influxd writes it
    with open_source(src) as a, open_source(renamed) as b:
        assert [(s.database, s.retention_policy, s.id, [f.size for f in s.files]) for s in a.shards] == \
            [(s.database, s.retention_policy, s.id, [f.size for f in s.files]) for s in b.shards]
        assert len(b.shards) > 0
        assert not [f for f in b.findings if "ignored" in f.message]
