"""influx_archive.tsm: TSM1 files, block codecs, tombstones and WAL segments of InfluxDB 1.x.

Implements the TSM, WAL and tombstone formats of influxd 1.6.7 (tsdb/engine/tsm1). Readers take binary streams and
never print.
"""
