"""influx_archive.meta: the InfluxDB 1.x metastore (meta.Data protobuf), meta.db, legacy meta.NN
framing, portable .meta (PortableData) and .manifest JSON.

Implements ../shared/spec/BACKUP_META.md.
"""
