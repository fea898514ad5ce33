"""Block value codecs (docs/formats.md#block-encodings): plain, tight Python behind a small interface.
The block frame that combines them lives in ``influx_archive.tsm.block``.

Modules: ``varint`` (Go uvarints), ``simple8b`` (word packing, both influxd drivers),
``timestamps`` (docs/formats.md#timestamp-encoding), ``floats`` (docs/formats.md#float-encoding), ``integers``
(docs/formats.md#integer-encoding int64 and docs/formats.md#unsigned-encoding uint64),
``booleans`` (docs/formats.md#boolean-encoding), ``strings`` (docs/formats.md#string-encoding).

Each value codec has ``encode(values) -> bytes`` returning the whole section (header byte
included; byte-identical to influxd) and ``decode(section, count, *, base=0) -> list`` that
returns exactly ``count`` values (the block's timestamp count) or raises ``FormatError`` with
offsets ``base + position in the section``. Timestamps: ``encode(timestamps)`` and
``decode(section, *, max_count, base=0)``. Unsigned: ``integers.encode_unsigned`` /
``integers.decode_unsigned``.
"""
