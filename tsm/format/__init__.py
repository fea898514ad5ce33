"""Construct definitions of the on-disk layouts (no I/O here), one module per file kind:
``tsmfile`` (TSM1 header/block frame/index/footer, TSM_WAL.md §1), ``tombstone`` (§3), ``wal`` (§4)."""
