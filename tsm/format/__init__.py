"""Construct definitions of the on-disk layouts (no I/O here), one module per file kind:
``tsmfile`` (TSM1 header/block frame/index/footer, docs/formats.md#tsm-file), ``tombstone`` (#tombstones), ``wal``
(#wal)."""
