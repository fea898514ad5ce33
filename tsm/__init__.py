"""influx_archive.tsm: TSM1 files, block codecs, tombstones and WAL segments of InfluxDB 1.x.

Implements ../shared/spec/TSM_WAL.md. Readers take binary streams and never print.
"""
