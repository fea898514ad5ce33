"""Block value codecs (TSM_WAL.md §2): plain, tight Python behind a small interface.
The block frame that combines them lives in ``influx_archive.tsm.block``.

Modules: ``varint`` (Go uvarints), ``simple8b`` (word packing, both influxd drivers),
``timestamps`` (§2.1), ``floats`` (§2.2), ``integers`` (§2.3 int64 and §2.4 uint64),
``booleans`` (§2.5), ``strings`` (§2.6).

Each value codec has ``encode(values) -> bytes`` returning the whole section (header byte
included; byte-identical to influxd) and ``decode(section, count, *, base=0) -> list`` that
returns exactly ``count`` values (the block's timestamp count) or raises ``FormatError`` with
offsets ``base + position in the section``. Timestamps: ``encode(timestamps)`` and
``decode(section, *, max_count, base=0)``. Unsigned: ``integers.encode_unsigned`` /
``integers.decode_unsigned``.
"""
