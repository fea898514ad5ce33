"""influx_archive.meta: the InfluxDB 1.x metastore (meta.Data protobuf), meta.db, legacy meta.NN
framing, portable .meta (PortableData) and .manifest JSON.

Implements the metastore and backup formats of influxd 1.6.7 (services/meta, cmd/influxd/backup_util).
"""
