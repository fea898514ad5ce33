"""Types of the compiled core, tsm/_speedups.c (see tsm/compiled.py). Every function returns
None (or -1) where the Python code must decide."""

from collections.abc import Sequence
from typing import Any

from typing_extensions import Buffer

def block_count(buf: Buffer, start: int, size: int, limit: int, /) -> int: ...
def wal_candidate(data: Buffer, start: int, max_payload: int, expansion: int, /) -> int: ...
def decode(section: Buffer, count: int, /) -> list[float] | None: ...
def encode(values: Sequence[float], /) -> bytes | None: ...
def s8b_decode(words: Buffer, limit: int = -1, /) -> list[int] | None: ...
def s8b_encode_all(values: Sequence[int], /) -> bytes | None: ...
def s8b_encode_windowed(values: Sequence[int], /) -> bytes | None: ...
def scan_index(
    index: Buffer, blocks_end: int, /
) -> tuple[list[bytes], bytes, int, int, list[bytes]] | None: ...
def index_frames(
    index: Buffer, positions: Buffer, keys: list[bytes], /
) -> list[tuple[int, int, bytes, int]] | None: ...
def int64_order(seq: Sequence[Any], strict: bool, /) -> int | None: ...
def all_exact(seq: Sequence[Any], kind: int, /) -> bool | None: ...
def lp_window(prefix: bytes, fields: list[list[Any]], bound: int, /) -> tuple[bytes, int, int] | None: ...
def lp_decode(block: Buffer, max_values: int, /) -> tuple[int, bytes, bytes] | None: ...
def lp_tables(pow5: Buffer, inv_pow5: Buffer, /) -> bool: ...
def lp_float_repr(value: float, /) -> str | None: ...
def wrap_sums(first: int, deltas: Sequence[int], mult: int, zigzag: bool, signed: bool, /) -> list[int] | None: ...

TSM_HEADER_SIZE: int
INDEX_ENTRY_SIZE: int
MIN_FRAME_SIZE: int
INDEX_KEY_OFFSET: int
INDEX_TYPE_AFTER_KEY: int
INDEX_COUNT_AFTER_KEY: int
INDEX_ENTRIES_AFTER_KEY: int
INDEX_RECORD_HEAD_SIZE: int
BLOCK_FLOAT: int
BLOCK_INTEGER: int
BLOCK_BOOLEAN: int
BLOCK_STRING: int
BLOCK_UNSIGNED: int
MAX_BLOCK_TYPE: int
VALUE_HEADER: int
FIRST_VALUE_END: int
INT_RAW: int
INT_PACKED: int
INT_RLE: int
STRING_MAX_EXPANSION: int
WAL_FIRST_ENTRY_TYPE: int
WAL_LAST_ENTRY_TYPE: int
WAL_ENTRY_HEADER_SIZE: int
FLOAT_SENTINEL: int
S8_MAX_VALUE: int
S8_SELECTORS: tuple[tuple[int, int], ...]
